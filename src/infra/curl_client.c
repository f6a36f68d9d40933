/* curl_client.c: libcurl behind one small interface (see curl_client.h). */
#include "infra/curl_client.h"

#include "core/arena.h"
#include "core/xmalloc.h"

#include <ctype.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define PARTIAL_MAX 1024 /* one reply line being received; the rest of a longer one is dropped */

static pthread_key_t handle_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void
handle_free(void *h)
{
    curl_easy_cleanup(h);
}

static void
make_key(void)
{
    key_ok = pthread_key_create(&handle_key, handle_free) == 0;
}

int
curl_client_global_init(struct sp_error *err)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return sp_error_set(err, SP_EINTERNAL, "curl", "libcurl failed to initialise");
    pthread_once(&key_once, make_key);
    if (!key_ok) {
        curl_global_cleanup();
        return sp_error_set(err, SP_EINTERNAL, "curl", "no thread key for the curl handles");
    }
    return SP_OK;
}

void
curl_client_global_cleanup(void)
{
    if (key_ok) {
        CURL *h = pthread_getspecific(handle_key);
        if (h) {
            pthread_setspecific(handle_key, NULL);
            curl_easy_cleanup(h);
        }
    }
    curl_global_cleanup();
}

/* Forgets the calling thread's handle and the connections it kept: after a failed exchange
 * their state is unknown (a stalled server may still answer the old command). */
static void
drop_thread_handle(CURL *h)
{
    pthread_setspecific(handle_key, NULL);
    curl_easy_cleanup(h);
}

/* The calling thread's handle, its options back to defaults (its connections kept). NULL when
 * libcurl cannot make one. */
static CURL *
thread_handle(void)
{
    CURL *h;

    if (!key_ok)
        return NULL;
    h = pthread_getspecific(handle_key);
    if (h) {
        curl_easy_reset(h);
        return h;
    }
    h = curl_easy_init();
    if (h && pthread_setspecific(handle_key, h) != 0) {
        curl_easy_cleanup(h);
        h = NULL;
    }
    return h;
}

/* ---- what the server says -------------------------------------------------------------------- */

struct capture {
    char line[CURL_REPLY_LINE_MAX + 1];     /* the last complete reply line */
    char err_line[CURL_REPLY_LINE_MAX + 1]; /* the last one with a 4xx or 5xx code */
    char partial[PARTIAL_MAX];
    size_t npartial;
    const char *ca_file;
};

static void
capture_line(struct capture *c)
{
    size_t n = 0;

    if (c->npartial == 0)
        return;
    for (size_t i = 0; i < c->npartial && n < CURL_REPLY_LINE_MAX; i++) {
        unsigned char ch = (unsigned char)c->partial[i];
        c->line[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    while (n > 0 && c->line[n - 1] == ' ')
        n--;
    c->line[n] = '\0';
    c->npartial = 0;
    /* A refusal is followed by our QUIT and the server's 221: the refusal is what matters. */
    if ((c->line[0] == '4' || c->line[0] == '5') && isdigit((unsigned char)c->line[1]) &&
        isdigit((unsigned char)c->line[2]))
        memcpy(c->err_line, c->line, n + 1);
}

/* Only what the server sends (CURLINFO_HEADER_IN: its reply lines) is looked at: what we send
 * (CURLINFO_HEADER_OUT) carries the AUTH exchange and is never read. */
static int
on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *userp)
{
    struct capture *c = userp;

    (void)h;
    if (type != CURLINFO_HEADER_IN)
        return 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n')
            capture_line(c);
        else if (data[i] != '\r' && c->npartial < sizeof(c->partial))
            c->partial[c->npartial++] = data[i];
    }
    return 0;
}

/* Adds the extra CA bundle to the store libcurl already filled with the system's. */
static CURLcode
on_ssl_ctx(CURL *h, void *ssl_ctx, void *userp)
{
    struct capture *c = userp;
    X509_STORE *store = SSL_CTX_get_cert_store(ssl_ctx);

    (void)h;
    if (c->ca_file == NULL)
        return CURLE_OK;
    if (store == NULL || X509_STORE_load_file(store, c->ca_file) != 1)
        return CURLE_SSL_CACERT_BADFILE;
    return CURLE_OK;
}

struct upload {
    const char *p;
    size_t len, off;
};

static size_t
on_read(char *dst, size_t size, size_t nitems, void *userp)
{
    struct upload *u = userp;
    size_t n = size * nitems;

    if (n > u->len - u->off)
        n = u->len - u->off;
    memcpy(dst, u->p + u->off, n);
    u->off += n;
    return n;
}

struct download {
    struct arena *a;
    char *p;
    size_t len, cap, max;
    int over;
};

static size_t
on_write(char *src, size_t size, size_t nmemb, void *userp)
{
    struct download *d = userp;
    size_t n = size * nmemb;

    if (d->len + n > d->max) {
        d->over = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (d->len + n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        char *p;
        while (cap < d->len + n + 1)
            cap *= 2;
        p = arena_alloc(d->a, cap);
        if (d->len)
            memcpy(p, d->p, d->len);
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->len, src, n);
    d->len += n;
    d->p[d->len] = '\0';
    return n;
}

/* TLS verified, timeouts, no signals (threads), the extra CA bundle, the reply capture.
 * Fails only when an extra CA bundle is asked of a libcurl whose TLS is not OpenSSL. */
static int
common_options(CURL *h, struct capture *c, const char *ca_file, long connect_ms, long total_ms,
               char *errbuf, struct sp_error *err)
{
    c->ca_file = ca_file && ca_file[0] ? ca_file : NULL;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx) != CURLE_OK && c->ca_file)
        return sp_error_set(err, SP_EPROVIDER, "provider",
                            "this libcurl's TLS is not OpenSSL: it cannot add a CA bundle");
    curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, c);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms > 0 ? connect_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total_ms > 0 ? total_ms : 30000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L); /* feeds on_debug; nothing goes to stderr */
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
    return SP_OK;
}

static int
transport_error(CURLcode cc, const char *what, const char *errbuf, struct sp_error *err)
{
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    int code = cc == CURLE_OPERATION_TIMEDOUT ? SP_ETIMEDOUT : SP_EPROVIDER;

    return sp_error_set(err, code, "provider", "%s: %s", what, detail);
}

static size_t
on_discard(char *src, size_t size, size_t nmemb, void *userp)
{
    (void)src;
    (void)userp;
    return size * nmemb;
}

/* check: connect, EHLO, STARTTLS, AUTH, then NOOP instead of a message. */
static int
smtp_call(const struct curl_smtp_request *req, int check, struct arena *a, struct curl_reply *out,
          struct sp_error *err)
{
    struct capture cap;
    struct upload up = {req->data, req->data_len, 0};
    struct curl_slist *rcpt = NULL;
    char errbuf[CURL_ERROR_SIZE];
    CURL *h = thread_handle();
    CURLcode cc;
    long code = 0;
    int rc;

    memset(&cap, 0, sizeof(cap));
    errbuf[0] = '\0';
    out->code = 0;
    out->line = "";
    out->body = "";
    out->body_len = 0;
    out->retry_after_s = 0;
    if (h == NULL)
        return sp_error_set(err, SP_EPROVIDER, "provider", "smtp: no curl handle");
    if (!check) {
        rcpt = curl_slist_append(NULL, arena_printf(a, "<%s>", req->rcpt_to));
        if (rcpt == NULL)
            return sp_error_set(err, SP_EPROVIDER, "provider", "smtp: out of memory");
    }
    if (common_options(h, &cap, req->ca_file, req->connect_timeout_ms, req->timeout_ms, errbuf,
                       err) != SP_OK) {
        curl_easy_reset(h);
        curl_slist_free_all(rcpt);
        return SP_EPROVIDER;
    }
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_USE_SSL,
                     req->require_tls ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
    if (req->username && req->username[0]) {
        curl_easy_setopt(h, CURLOPT_USERNAME, req->username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, req->password ? req->password : "");
    }
    if (check) {
        /* no envelope, no upload: libcurl sends the custom command after the log-in, and
         * hands its answer to the write callback (stdout by default): dropped */
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "NOOP");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_discard);
    } else {
        curl_easy_setopt(h, CURLOPT_MAIL_FROM, arena_printf(a, "<%s>", req->mail_from));
        curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &up);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->data_len);
    }

    cc = curl_easy_perform(h);
    capture_line(&cap); /* a last line without its LF (the connection dropped) */
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    out->code = code;
    out->line = arena_strdup(a, cc != CURLE_OK && cap.err_line[0] ? cap.err_line : cap.line);
    rc = cc == CURLE_OK ? SP_OK : transport_error(cc, "smtp", errbuf, err);
    if (cc == CURLE_OK)
        curl_easy_reset(h); /* forgets the password and our stack; the connection stays */
    else
        drop_thread_handle(h);
    curl_slist_free_all(rcpt);
    return rc;
}

int
curl_client_smtp_send(const struct curl_smtp_request *req, struct arena *a, struct curl_reply *out,
                      struct sp_error *err)
{
    return smtp_call(req, 0, a, out, err);
}

int
curl_client_smtp_check(const struct curl_smtp_request *req, struct arena *a, struct curl_reply *out,
                       struct sp_error *err)
{
    return smtp_call(req, 1, a, out, err);
}

static int
http_call(const struct curl_http_request *req, int is_get, struct arena *a, struct curl_reply *out,
          struct sp_error *err)
{
    struct capture cap;
    struct download down = {a, NULL, 0, 0, req->max_body, 0};
    struct curl_slist *hdrs = NULL, *next;
    char errbuf[CURL_ERROR_SIZE];
    CURL *h = thread_handle();
    CURLcode cc;
    long code = 0;
    int rc = SP_OK;

    memset(&cap, 0, sizeof(cap));
    errbuf[0] = '\0';
    out->code = 0;
    out->line = "";
    out->body = "";
    out->body_len = 0;
    out->retry_after_s = 0;
    if (h == NULL)
        return sp_error_set(err, SP_EPROVIDER, "provider", "http: no curl handle");
    if (req->content_type)
        hdrs = curl_slist_append(hdrs, arena_printf(a, "Content-Type: %s", req->content_type));
    for (const char *const *p = req->headers; p && *p && rc == SP_OK; p++) {
        next = curl_slist_append(hdrs, *p);
        if (next == NULL)
            rc = sp_error_set(err, SP_EPROVIDER, "provider", "http: out of memory");
        else
            hdrs = next;
    }
    if (rc != SP_OK) {
        curl_slist_free_all(hdrs);
        return rc;
    }
    if (common_options(h, &cap, req->ca_file, req->connect_timeout_ms, req->timeout_ms, errbuf,
                       err) != SP_OK) {
        curl_easy_reset(h);
        curl_slist_free_all(hdrs);
        return SP_EPROVIDER;
    }
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    if (is_get) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &down);

    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    out->code = code;
    out->body = down.p ? down.p : "";
    out->body_len = down.len;
    if (cc == CURLE_OK) {
        curl_off_t ra = 0;
        if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            out->retry_after_s = ra < 86400 ? (long)ra : 86400L;
    }
    if (down.over)
        rc = sp_error_set(err, SP_ETOOLARGE, "provider", "http: response larger than %zu bytes",
                          req->max_body);
    else if (cc != CURLE_OK)
        rc = transport_error(cc, "http", errbuf, err);
    if (rc == SP_OK)
        curl_easy_reset(h); /* drops the header list and our stack pointers before they go */
    else
        drop_thread_handle(h);
    curl_slist_free_all(hdrs);
    return rc;
}

int
curl_client_http_post(const struct curl_http_request *req, struct arena *a, struct curl_reply *out,
                      struct sp_error *err)
{
    return http_call(req, 0, a, out, err);
}

int
curl_client_http_get(const struct curl_http_request *req, struct arena *a, struct curl_reply *out,
                     struct sp_error *err)
{
    return http_call(req, 1, a, out, err);
}

int
curl_client_url_ok(const char *u)
{
    static const char *const loopback[] = {"http://127.0.0.1:", "http://127.0.0.1/",
                                           "http://localhost:", "http://localhost/",
                                           "http://[::1]:",     "http://[::1]/"};

    if (strpbrk(u, " \t\r\n?#") != NULL)
        return 0;
    if (strncmp(u, "https://", 8) == 0 && u[8] != '\0')
        return 1;
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
        if (strncmp(u, loopback[i], strlen(loopback[i])) == 0)
            return 1;
    return 0;
}

char *
curl_client_bearer(const char *token)
{
    static const char prefix[] = "Authorization: Bearer ";
    size_t n = sizeof(prefix) + strlen(token);
    char *h = xmalloc(n);

    snprintf(h, n, "%s%s", prefix, token);
    return h;
}
