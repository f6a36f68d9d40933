/* http_server.c: libmicrohttpd (0.9.75) glue: one epoll daemon with a thread pool feeding fully
 * read requests to a single handler (normally the router).
 *
 * libmicrohttpd calls the access handler several times per request: once with the headers only,
 * once per body chunk, and a last time with no data. We answer only on that last call: answering
 * on the first one makes 0.9.75 close the connection after the response, which costs keep-alive
 * and ~4x throughput. Per-request state (arena, body buffer) is taken from a small per-server
 * freelist on the first call and given back in the request-completed callback, which also runs
 * for aborted requests. This file does no routing and knows no JSON beyond http_error1(). */
#include "core/http_server.h"

#include "core/arena.h"
#include "core/log.h"
#include "core/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_TIMEOUT_S 30
#define CONN_LIMIT 4096
#define LISTEN_BACKLOG 1024
/* Idle per-request states kept for reuse, and the largest body buffer worth keeping with one. */
#define STATE_POOL_MAX 64
#define STATE_BODY_KEEP (64 * 1024)
#define BODY_INITIAL_CAP 4096

/* One request's private state, hung on libmicrohttpd's per-request pointer. */
#define DRAIN_MAX_MS 10000 /* how long stop waits for requests in flight */

struct req_state {
    struct req_state *next; /* freelist link while idle */
    struct arena *arena;    /* owned */
    char *body;             /* owned, xrealloc'd, at most HTTP_BODY_MAX + 1 bytes */
    size_t len;
    size_t cap;
    int too_large;   /* the body (declared or received) exceeds HTTP_BODY_MAX */
    int is_answered; /* a response was queued early; ignore any further call */
};

struct http_server {
    struct MHD_Daemon *daemon;
    http_handler_fn handler;
    void *ctx;
    char host[INET6_ADDRSTRLEN];
    int port;
    atomic_int is_quiesced; /* set: new connections are closed as soon as they are accepted */
    atomic_int in_flight;   /* requests between their first call and their completion */
    pthread_mutex_t lock;   /* guards the freelist below; taken by pool threads */
    struct req_state *idle;
    int nidle;
};

static struct req_state *
state_get(struct http_server *s)
{
    struct req_state *st;

    pthread_mutex_lock(&s->lock);
    st = s->idle;
    if (st) {
        s->idle = st->next;
        s->nidle--;
    }
    pthread_mutex_unlock(&s->lock);
    if (st == NULL) {
        st = xcalloc(1, sizeof(*st));
        st->arena = arena_new();
    }
    st->next = NULL;
    return st;
}

static void
state_free(struct req_state *st)
{
    if (st == NULL)
        return;
    arena_free(st->arena);
    free(st->body);
    free(st);
}

/* Resets `st` and keeps it for the next request, or frees it when the freelist is full. */
static void
state_put(struct http_server *s, struct req_state *st)
{
    arena_reset(st->arena);
    if (st->cap > STATE_BODY_KEEP) {
        free(st->body);
        st->body = NULL;
        st->cap = 0;
    }
    st->len = 0;
    st->too_large = 0;
    st->is_answered = 0;
    pthread_mutex_lock(&s->lock);
    if (s->nidle < STATE_POOL_MAX) {
        st->next = s->idle;
        s->idle = st;
        s->nidle++;
        st = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    state_free(st);
}

/* Grows the body buffer to hold at least `need` bytes (need <= HTTP_BODY_MAX + 1). */
static void
body_reserve(struct req_state *st, size_t need)
{
    size_t cap = st->cap ? st->cap : BODY_INITIAL_CAP;

    if (st->cap >= need)
        return;
    while (cap < need)
        cap *= 2;
    if (cap > (size_t)HTTP_BODY_MAX + 1)
        cap = (size_t)HTTP_BODY_MAX + 1;
    st->body = xrealloc(st->body, cap);
    st->cap = cap;
}

/* Appends one upload chunk; past HTTP_BODY_MAX it only marks the request too large and drops
 * the data, so the connection can still be read to the end and kept alive. */
static void
body_append(struct req_state *st, const char *data, size_t len)
{
    if (st->too_large)
        return;
    if (len > (size_t)HTTP_BODY_MAX - st->len) {
        st->too_large = 1;
        return;
    }
    body_reserve(st, st->len + len + 1);
    memcpy(st->body + st->len, data, len);
    st->len += len;
}

/* MHD_create_response_from_buffer takes a non-const pointer even with MHD_RESPMEM_MUST_COPY,
 * where it only reads from it. */
static void *
unconst(const void *p)
{
    return (void *)(uintptr_t)p;
}

static int
add_headers(struct MHD_Response *r, const struct http_response *resp)
{
    const char *type = resp->content_type ? resp->content_type : "application/json; charset=utf-8";
    char retry[16];

    /* A 204 has no content, hence no type (OPTIONS answers). */
    if (resp->status != 204 &&
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES)
        return -1;
    if (resp->retry_after > 0) {
        snprintf(retry, sizeof(retry), "%d", resp->retry_after);
        if (MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry) != MHD_YES)
            return -1;
    }
    if (resp->allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow) != MHD_YES)
        return -1;
    for (int i = 0; i < resp->nheaders; i++)
        if (MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value) != MHD_YES)
            return -1;
    return 0;
}

/* Copies `resp` into a libmicrohttpd response and queues it. */
static enum MHD_Result
send_response(struct MHD_Connection *conn, const struct http_response *resp)
{
    size_t len = resp->body ? resp->body_len : 0;
    struct MHD_Response *r;
    enum MHD_Result ret;

    r = MHD_create_response_from_buffer(len, unconst(len ? resp->body : ""), MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        log_error("http: cannot create response (%zu bytes)", len);
        return MHD_NO;
    }
    if (add_headers(r, resp) != 0) {
        log_error("http: cannot add response headers");
        MHD_destroy_response(r);
        return MHD_NO;
    }
    ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
send_too_large(struct MHD_Connection *conn, struct req_state *st)
{
    struct http_response resp = {0};

    http_error1(&resp, st->arena, 413, "request entity too large");
    return send_response(conn, &resp);
}

/* Whether the declared Content-Length, if any, is over the limit. MHD has already rejected a
 * malformed one, so an unparsable value is simply ignored here. */
static int
declared_too_large(struct MHD_Connection *conn, size_t *declared)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n;
    char *end;

    *declared = 0;
    if (v == NULL)
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0')
        return errno == ERANGE;
    if (n > HTTP_BODY_MAX)
        return 1;
    *declared = (size_t)n;
    return 0;
}

/* First call: headers only. Reserves the body buffer from Content-Length and, when a client
 * announcing a too large body waits for "100 Continue", refuses it now so the body is never
 * sent (libmicrohttpd then closes the connection, which is what we want for such a client). */
static enum MHD_Result
on_headers(struct MHD_Connection *conn, struct req_state *st)
{
    const char *expect;
    size_t declared;

    if (!declared_too_large(conn, &declared)) {
        if (declared > 0)
            body_reserve(st, declared + 1);
        return MHD_YES;
    }
    st->too_large = 1;
    expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    if (expect == NULL || strcasecmp(expect, "100-continue") != 0)
        return MHD_YES; /* the body is on its way: discard it and answer at the end */
    st->is_answered = 1;
    return send_too_large(conn, st);
}

/* Collects every value of one request header (MHD_lookup_connection_value sees only the
 * first), joined by ", " in the arena and bounded, so that "Content-Encoding: identity" sent
 * before "Content-Encoding: gzip" cannot hide the second. */
struct header_join {
    const char *name;
    struct arena *arena;
    const char *joined; /* NULL until a value is seen */
    int is_full;        /* HEADER_JOIN_MAX reached: the rest is dropped */
};

#define HEADER_JOIN_MAX 1024

static enum MHD_Result
header_join_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct header_join *j = cls;

    (void)kind;
    if (key == NULL || value == NULL || j->is_full || strcasecmp(key, j->name) != 0)
        return MHD_YES;
    if (j->joined == NULL && strlen(value) < HEADER_JOIN_MAX) {
        j->joined = arena_strdup(j->arena, value);
    } else if (j->joined != NULL && strlen(j->joined) + strlen(value) < HEADER_JOIN_MAX) {
        j->joined = arena_printf(j->arena, "%s, %s", j->joined, value);
    } else {
        /* Marked rather than cut: "(too long)" is no coding we accept, so it is refused. */
        j->joined = arena_printf(j->arena, "%s, (too long)", j->joined ? j->joined : "");
        j->is_full = 1;
    }
    return MHD_YES;
}

static const char *
header_all(struct MHD_Connection *conn, struct arena *a, const char *name)
{
    struct header_join j = {name, a, NULL, 0};

    (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, header_join_one, &j); /* a count */
    return j.joined;
}

/* Leaves URLs and query arguments percent-encoded: libmicrohttpd would otherwise decode the
 * path in place before routing, so "/leads/x%2Freply" would reach the router as a reply path
 * and "%00" would cut the id short. The router decodes each parameter itself (http.h). */
static size_t
unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* Query arguments as collected from libmicrohttpd; `bad` names why they are refused. */
struct query_walk {
    struct http_request *req;
    const char *bad; /* NULL, or the 400 message */
};

/* Collects one query-string argument into the request, percent-decoded into its arena (the
 * server keeps libmicrohttpd from decoding: see unescape_none). */
static enum MHD_Result
on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct query_walk *w = cls;
    struct http_request *req = w->req;
    const char *k = NULL, *v = NULL;

    (void)kind;
    if (req->nquery >= HTTP_QUERY_MAX) {
        w->bad = "too many query parameters";
        return MHD_NO;
    }
    key = key ? key : "";
    value = value ? value : "";
    if (http_pct_decode(req->arena, key, strlen(key), HTTP_DECODE_QUERY, &k) != HTTP_DECODE_OK ||
        http_pct_decode(req->arena, value, strlen(value), HTTP_DECODE_QUERY, &v) !=
            HTTP_DECODE_OK) {
        w->bad = "malformed query string (a bad %-escape or an encoded NUL)";
        return MHD_NO;
    }
    req->query_keys[req->nquery] = k;
    req->query_values[req->nquery] = v;
    req->nquery++;
    return MHD_YES;
}

/* Last call: the whole body is in. Runs the handler and queues its response. */
static enum MHD_Result
on_request(struct http_server *s, struct MHD_Connection *conn, struct req_state *st,
           const char *url, const char *method)
{
    struct http_request req = {0};
    struct http_response resp = {0};
    struct query_walk walk = {&req, NULL};

    if (st->too_large)
        return send_too_large(conn, st);
    req.method = method;
    req.path = url;
    req.content_type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    req.content_encoding = header_all(conn, st->arena, MHD_HTTP_HEADER_CONTENT_ENCODING);
    req.origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    req.acr_method =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Access-Control-Request-Method");
    req.api_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
    if (st->len > 0) {
        st->body[st->len] = '\0';
        req.body = st->body;
        req.body_len = st->len;
    }
    req.arena = st->arena;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_query_arg, &walk);
    if (walk.bad) {
        http_error1(&resp, st->arena, 400, walk.bad);
        return send_response(conn, &resp);
    }
    s->handler(s->ctx, &req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        log_error("http: handler for %s returned invalid status %d", method, resp.status);
        memset(&resp, 0, sizeof(resp));
        http_error1(&resp, st->arena, 500, "Internal server error");
    }
    return send_response(conn, &resp);
}

/* Accept policy: once quiesced, every new connection is closed right away. */
static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct http_server *s = cls;

    (void)addr;
    (void)addrlen;
    return atomic_load(&s->is_quiesced) ? MHD_NO : MHD_YES;
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req_state *st = *con_cls;

    (void)version;
    if (st == NULL) {
        st = state_get(s);
        *con_cls = st;
        atomic_fetch_add(&s->in_flight, 1);
        return on_headers(conn, st);
    }
    if (*upload_data_size > 0) {
        body_append(st, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->is_answered)
        return MHD_YES;
    return on_request(s, conn, st, url, method);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req_state *st = *con_cls;

    (void)conn;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("http: request ended early (code %d)", (int)toe);
    if (st == NULL)
        return;
    *con_cls = NULL;
    state_put(s, st);
    atomic_fetch_sub(&s->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* libmicrohttpd's own diagnostics, one line each. */
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[256];
    size_t len;

    (void)cls;
    if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
        return;
    len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    log_warn("mhd: %s", buf);
}

/* Parses a numeric IPv4/IPv6 address (or "localhost") into *addr with the port set. */
static int
parse_host(const char *host, int port, struct sockaddr_storage *addr, int *is_v6,
           struct sp_error *err)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;

    memset(addr, 0, sizeof(*addr));
    *is_v6 = 0;
    if (host != NULL && strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (host != NULL && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return SP_OK;
    }
    if (host != NULL && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *is_v6 = 1;
        return SP_OK;
    }
    return sp_error_set(err, SP_EINVAL, "host", "not a numeric address");
}

static int
check_config(const struct http_server_config *cfg, struct sp_error *err)
{
    if (cfg->handler == NULL)
        return sp_error_set(err, SP_EINVAL, "handler", "missing");
    if (cfg->threads < 1)
        return sp_error_set(err, SP_EINVAL, "threads", "must be >= 1 (got %d)", cfg->threads);
    if (cfg->port < 0 || cfg->port > 65535)
        return sp_error_set(err, SP_EINVAL, "port", "must be 0..65535 (got %d)", cfg->port);
    return SP_OK;
}

static struct MHD_Daemon *
daemon_start(struct http_server *s, const struct sockaddr_storage *addr, int is_v6,
             unsigned int threads)
{
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    /* One thread means no pool at all (the internal epoll thread serves alone): MHD warns about
     * a pool size of 0 or 1, so the option is left out then. */
    struct MHD_OptionItem pool[] = {
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };

    if (threads <= 1)
        pool[0].option = MHD_OPTION_END;
    if (is_v6)
        flags |= MHD_USE_DUAL_STACK;
    /* The logger goes first so that errors about later options reach it. */
    return MHD_start_daemon(
        flags, 0, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr, MHD_OPTION_ARRAY, pool,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none,
        s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)CONN_LIMIT, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)LISTEN_BACKLOG,
        MHD_OPTION_END);
}

/* Frees the server struct and its idle states; the daemon must be stopped already. */
static void
server_free(struct http_server *s)
{
    struct req_state *st, *next;

    for (st = s->idle; st; st = next) {
        next = st->next;
        state_free(st);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int
http_server_start(const struct http_server_config *cfg, struct http_server **out,
                  struct sp_error *err)
{
    struct sockaddr_storage addr;
    const union MHD_DaemonInfo *info;
    struct http_server *s;
    int is_v6, rc;

    *out = NULL;
    rc = check_config(cfg, err);
    if (rc == SP_OK)
        rc = parse_host(cfg->host, cfg->port, &addr, &is_v6, err);
    if (rc != SP_OK)
        return rc;
    s = xcalloc(1, sizeof(*s));
    rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0) {
        free(s);
        return sp_error_set(err, SP_EINTERNAL, NULL, "pthread_mutex_init: %s", strerror(rc));
    }
    s->handler = cfg->handler;
    s->ctx = cfg->ctx;
    snprintf(s->host, sizeof(s->host), "%s",
             strcmp(cfg->host, "localhost") ? cfg->host : "127.0.0.1");
    s->daemon = daemon_start(s, &addr, is_v6, (unsigned int)cfg->threads);
    if (s->daemon == NULL) {
        rc = sp_error_set(err, SP_EUNAVAIL, "port", "cannot listen on %s port %d", s->host,
                          cfg->port);
        server_free(s);
        return rc;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = (info && info->port) ? (int)info->port : cfg->port;
    log_info("http: listening on %s port %d (%d threads)", s->host, s->port, cfg->threads);
    *out = s;
    return SP_OK;
}

int
http_server_port(const struct http_server *s)
{
    return s->port;
}

void
http_server_quiesce(struct http_server *s)
{
    /* MHD_quiesce_daemon races with the epoll pool threads in libmicrohttpd 0.9.75 (it panics
     * with "Failed to remove listen FD from epoll set" when a pool thread drops the listen
     * socket at the same moment), so new connections are refused by the accept policy instead. */
    if (s != NULL)
        atomic_store(&s->is_quiesced, 1);
}

/* After quiesce: lets requests already started finish (bounded), ignoring idle keep-alive
 * connections, which have no request in flight. */
static void
drain(struct http_server *s)
{
    struct timespec tick = {0, 5 * 1000 * 1000};
    int waited_ms = 0;

    while (atomic_load(&s->in_flight) > 0 && waited_ms < DRAIN_MAX_MS) {
        nanosleep(&tick, NULL);
        waited_ms += 5;
    }
    if (atomic_load(&s->in_flight) > 0)
        log_warn("http: %d requests still in flight after %d ms; closing them",
                 atomic_load(&s->in_flight), DRAIN_MAX_MS);
}

void
http_server_stop(struct http_server *s)
{
    if (s == NULL)
        return;
    if (atomic_load(&s->is_quiesced))
        drain(s);
    MHD_stop_daemon(s->daemon); /* joins the pool threads; running handlers finish first */
    server_free(s);
}
