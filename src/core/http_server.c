/* http_server.c: libmicrohttpd (0.9.75) glue: one thread per connection (plus one poll thread
 * accepting them) feeding fully read requests to a single handler (normally the router).
 *
 * Thread model: every connection has its own thread (MHD_USE_THREAD_PER_CONNECTION, small
 * stacks), so a handler blocked on the database blocks only its own connection, and /health is
 * never queued behind busy handlers. The epoll pool it replaced ran handlers inline on 16
 * threads, each owning hundreds of connections; measured with wrk on SQLite the two are within
 * run-to-run noise (see the commit message). Concurrency against the database is bounded by its
 * connection pool, not here. Long-lived responses (server-sent events) fit the same model: a
 * stream is a response whose content callback waits on its connection's own thread; 1,000
 * streams are 1,000 mostly idle threads (256 KiB of address space each, about 12 KiB of it
 * resident, plus about 22 KiB of libmicrohttpd's connection pool: docs/performance.md),
 * counted in CONN_LIMIT and the per-address cap, never reaped (CONN_HANDLER phase), and run
 * in SCHED_IDLE, so that they take only the CPU the requests leave (stream_read).
 *
 * libmicrohttpd calls the access handler several times per request: once with the headers only,
 * once per body chunk, and a last time with no data. We answer on that last call: answering on
 * the first one makes 0.9.75 close the connection after the response, which costs keep-alive.
 * That close is what we want for the refusals decided on the headers (bad framing 400/501, a
 * declared body over the limit 413, over the body budget 503), so those are answered at once.
 * Per-request state (arena, body buffer) is taken from a small per-server freelist on the first
 * call and given back in the request-completed callback, which also runs for aborted requests.
 *
 * Hostile clients: libmicrohttpd caps connections (in all and per client address) and its idle
 * timeout, but that timeout restarts on every byte. So each connection is tracked from the
 * connection notifications (start/close) and core/conn_reaper shuts down those whose headers are
 * not complete HTTP_HEADER_TIMEOUT_MS after the request began, or whose body falls below a
 * minimum average rate. The bodies being buffered share one budget, charged as buffers grow.
 * This file does no routing and knows no JSON beyond http_error1(). */
#include "core/http_server.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/conn_reaper.h"
#include "core/log.h"
#include "core/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONN_TIMEOUT_S 30
#define CONN_LIMIT 4096
#define LISTEN_BACKLOG 1024
/* Per-connection thread stack. Handlers run SQLite/libpq on it; 256 KiB is several times their
 * deepest use, and 4096 connections then reserve 1 GiB of address space, not of memory. */
#define THREAD_STACK_SIZE (256 * 1024)
/* Idle per-request states kept for reuse, and the largest body buffer worth keeping with one. */
#define STATE_POOL_MAX 64
#define STATE_BODY_KEEP (64 * 1024)
#define BODY_INITIAL_CAP 4096
#define DRAIN_MAX_MS 10000   /* how long stop waits for requests in flight */
#define RETRY_AFTER_BUSY_S 1 /* Retry-After on a 503 for the body budget */
#define MHD_LOG_PER_S 10     /* libmicrohttpd messages logged per second, at most */
/* A streamed body's buffer (libmicrohttpd allocates it with the response): what one read() may
 * fill, so one write to the socket. */
#define STREAM_BLOCK (16 * 1024)

/* One request's private state, hung on libmicrohttpd's per-request pointer. */
struct req_state {
    struct req_state *next; /* freelist link while idle */
    struct arena *arena;    /* owned */
    char *body;             /* owned, xrealloc'd, at most body_max + 1 bytes */
    size_t len;
    size_t cap;
    size_t body_max; /* HTTP_BODY_MAX, or the large body limit of its path (on_headers) */
    size_t charged;  /* bytes of the body budget this request holds (>= cap while in flight) */
    int too_large;   /* the body (declared or received) exceeds body_max */
    int over_budget; /* the body budget could not hold this body */
    int is_answered; /* a response was queued early; ignore any further call */
};

struct http_server {
    struct MHD_Daemon *daemon;
    http_handler_fn handler;
    void *ctx;
    char host[INET6_ADDRSTRLEN];
    int port;
    size_t body_budget;
    atomic_size_t body_used;
    const char *large_body_prefix; /* borrowed from the configuration */
    size_t large_body_max;         /* bytes charged by requests in flight, <= body_budget */
    atomic_int is_quiesced; /* set: new connections are closed as soon as they are accepted */
    atomic_int in_flight;   /* requests between their first call and their completion */
    pthread_mutex_t lock;   /* guards the freelist below; taken by connection threads */
    struct req_state *idle;
    int nidle;
    struct conn_reaper *reaper; /* closes connections too slow to send their request */
    struct log_limit mhd_log;   /* rate limit of libmicrohttpd's own messages */
};

static void track_phase(struct MHD_Connection *conn, enum conn_phase phase);

/* ---- body budget ------------------------------------------------------------------------------
 */

/* Takes n bytes from the budget; 0 when they do not fit (nothing taken). */
static int
budget_take(struct http_server *s, size_t n)
{
    size_t used = atomic_load(&s->body_used);

    do {
        if (n > s->body_budget - used)
            return 0;
    } while (!atomic_compare_exchange_weak(&s->body_used, &used, used + n));
    return 1;
}

static void
budget_give(struct http_server *s, size_t n)
{
    atomic_fetch_sub(&s->body_used, n);
}

/* ---- per-request state ------------------------------------------------------------------------
 */

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

/* Resets `st`, returns its budget and keeps it for the next request, or frees it when the
 * freelist is full. Big buffers are freed at once: with the fixed mmap threshold set by the
 * application (app.c) they go straight back to the system. */
static void
state_put(struct http_server *s, struct req_state *st)
{
    arena_reset(st->arena);
    if (st->cap > STATE_BODY_KEEP) {
        free(st->body);
        st->body = NULL;
        st->cap = 0;
    }
    budget_give(s, st->charged);
    st->charged = 0;
    st->len = 0;
    st->too_large = 0;
    st->over_budget = 0;
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

/* Grows the body buffer to hold at least `need` bytes (need <= body_max + 1), charging the
 * growth to the body budget first. Returns 0, or -1 when the budget cannot hold it (the buffer
 * is left as it was). */
static int
body_reserve(struct http_server *s, struct req_state *st, size_t need)
{
    size_t cap = st->cap ? st->cap : BODY_INITIAL_CAP;

    /* A first buffer is sized exactly (a declared length charges no more than it needs);
     * a body of unknown length grows by doubling. */
    if (cap < need && st->cap == 0)
        cap = need;
    while (cap < need)
        cap *= 2;
    if (cap > st->body_max + 1)
        cap = st->body_max + 1;
    if (cap < st->cap)
        cap = st->cap;
    if (cap > st->charged) {
        if (!budget_take(s, cap - st->charged))
            return -1;
        st->charged = cap;
    }
    if (cap > st->cap) {
        st->body = xrealloc(st->body, cap);
        st->cap = cap;
    }
    return 0;
}

/* Appends one upload chunk. Past body_max or the budget it only marks the request and
 * drops the data, so the connection can still be read to the end and answered. */
static void
body_append(struct http_server *s, struct req_state *st, const char *data, size_t len)
{
    if (st->too_large || st->over_budget)
        return;
    if (len > st->body_max - st->len) {
        st->too_large = 1;
        return;
    }
    if (body_reserve(s, st, st->len + len + 1) != 0) {
        st->over_budget = 1;
        return;
    }
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
add_headers(struct MHD_Response *r, const struct http_response *resp, int is_last)
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
    /* libmicrohttpd closes after an early answer anyway; saying so tells the client (and a
     * proxy in front) not to send another request on this connection. A stream's connection
     * closes after it too (stream_read). */
    if (is_last && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)
        return -1;
    return 0;
}

/* ---- streamed bodies (struct http_stream_ops) -------------------------------------------------
 *
 * libmicrohttpd calls the content reader on the connection's own thread whenever the socket can
 * take more; in this thread model the reader may block (returning 0 would make the thread spin),
 * so a stream waits inside read() and the thread sleeps with it. The free callback runs once,
 * when the response is destroyed: after the last read, or without any read (a HEAD, a client
 * gone before the headers were sent, the daemon stopping). */
struct stream_box {
    const struct http_stream_ops *ops;
    void *ctx;
    int is_idle_class;
};

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_box *b = cls;
    size_t len = 0;

    (void)pos;
    /* A stream is background work: its thread runs under SCHED_IDLE, so it gets the CPU that
     * the threads answering requests leave. A nice value would not do: a publication wakes
     * every stream at once, and a thousand runnable threads at nice 10 still outweigh a few
     * request threads at nice 0; SCHED_IDLE's weight is the smallest there is. A thread may
     * take SCHED_IDLE but not give it up without privileges, which is why a stream's connection
     * closes after it (send_response): this thread never serves another request. (Smallest is
     * not nothing: hundreds of runnable SCHED_IDLE threads still weigh as much as a request
     * thread, so the stream itself also limits how many of its kind run: events_http.c's
     * turns.) */
    if (!b->is_idle_class) {
        struct sched_param none = {0};
        int rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
        b->is_idle_class = 1;
        if (rc != 0)
            log_debug("http: a stream thread keeps its scheduling class: %s", strerror(rc));
    }
    if (b->ops->read(b->ctx, buf, max, &len) != SP_OK)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return len > 0 ? (ssize_t)len : MHD_CONTENT_READER_END_OF_STREAM;
}

static void
stream_free(void *cls)
{
    struct stream_box *b = cls;

    b->ops->close(b->ctx);
    free(b);
}

/* Hands the response's stream to a callback response (which owns it from then on, even when
 * this fails). */
static struct MHD_Response *
stream_response(const struct http_response *resp)
{
    struct stream_box *b = xcalloc(1, sizeof(*b));
    struct MHD_Response *r;

    b->ops = resp->stream;
    b->ctx = resp->stream_ctx;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, b,
                                          stream_free);
    if (r == NULL)
        stream_free(b);
    return r;
}

/* Copies `resp` into a libmicrohttpd response and queues it; is_last closes the connection. */
static enum MHD_Result
send_response(struct MHD_Connection *conn, const struct http_response *resp, int is_last)
{
    size_t len = resp->body ? resp->body_len : 0;
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (resp->stream != NULL)
        r = stream_response(resp);
    else
        r = MHD_create_response_from_buffer(len, unconst(len ? resp->body : ""),
                                            MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        log_error("http: cannot create response (%zu bytes)", len);
        return MHD_NO;
    }
    if (add_headers(r, resp, is_last || resp->stream != NULL) != 0) {
        log_error("http: cannot add response headers");
        MHD_destroy_response(r);
        return MHD_NO;
    }
    ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Answers on the headers call, before any body is read; libmicrohttpd then closes the
 * connection, so the unread body can never be taken for a next request. */
static enum MHD_Result
send_early(struct MHD_Connection *conn, struct req_state *st, int status, const char *message)
{
    struct http_response resp = {0};

    track_phase(conn, CONN_HANDLER); /* answered: never reaped while the answer goes out */
    http_error1(&resp, st->arena, status, message);
    if (status == 503)
        resp.retry_after = RETRY_AFTER_BUSY_S;
    st->is_answered = 1;
    return send_response(conn, &resp, 1);
}

/* ---- framing (RFC 9112) -----------------------------------------------------------------------
 */

static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Whether `s` is a token (RFC 9110 5.6.2), as methods and field names must be. */
static int
is_token(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && strspn(s, tchar) == len;
}

/* libmicrohttpd 0.9.75 hands the method over as a C string starting the request line, with the
 * target right after its one space, both in the connection's read buffer. A NUL inside the
 * method ends that string early ("GE\0T" reads as "GE"), which shows only as a gap between the
 * method's end and the target. */
static int
method_ok(const char *method, const char *url)
{
    return is_token(method) && url == method + strlen(method) + 1;
}

/* What the header block says about the body's framing and the target host. */
struct framing {
    int n_length; /* Content-Length fields */
    int n_host;
    int n_coding;       /* Transfer-Encoding fields */
    const char *coding; /* the last Transfer-Encoding value */
    const char *length; /* the first Content-Length value */
    int lengths_differ;
    int has_bad_name; /* a field name that is not a token (whitespace before the colon) */
};

static enum MHD_Result
framing_scan(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct framing *f = cls;

    (void)kind;
    /* "Transfer-Encoding : chunked" arrives as a field named "Transfer-Encoding " that the
     * library ignores, while a proxy may frame by it (RFC 9112 5.1: reject). */
    if (!is_token(key))
        f->has_bad_name = 1;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->n_length++;
        if (f->n_length == 1)
            f->length = value;
        else if (value == NULL || f->length == NULL || strcmp(value, f->length) != 0)
            f->lengths_differ = 1;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        f->n_host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->n_coding++;
        f->coding = value;
    }
    return MHD_YES;
}

/* The framing verdict for a request: 0 (acceptable), or the status to refuse it with and a
 * message. libmicrohttpd 0.9.75 accepts each of these and frames the body its own way, which a
 * proxy in front may frame differently (request smuggling), so each one closes the connection. */
static int
framing_check(struct MHD_Connection *conn, const char *method, const char *url, const char *version,
              const char **message)
{
    struct framing f = {0};

    if (!method_ok(method, url)) {
        *message = "invalid method";
        return 400;
    }
    if (MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_scan, &f) < 0) {
        *message = "unreadable headers";
        return 400;
    }
    if (f.has_bad_name) {
        *message = "invalid header field name";
        return 400;
    }
    if (f.n_coding > 0 && f.n_length > 0) {
        *message = "Content-Length and Transfer-Encoding together";
        return 400;
    }
    if (f.n_length > 1) {
        *message = f.lengths_differ ? "conflicting Content-Length" : "repeated Content-Length";
        return 400;
    }
    if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && f.n_host != 1) {
        *message = f.n_host ? "repeated Host header" : "missing Host header";
        return 400;
    }
    if (f.n_coding > 1 || (f.n_coding == 1 && strcasecmp(f.coding, "chunked") != 0)) {
        *message = "only the chunked transfer coding is supported";
        return 501;
    }
    return 0;
}

/* Whether the declared Content-Length, if any, is over the limit. MHD has already rejected a
 * malformed one, so an unparsable value is simply ignored here. */
static int
declared_too_large(struct MHD_Connection *conn, size_t max, size_t *declared)
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
    if (n > max)
        return 1;
    *declared = (size_t)n;
    return 0;
}

/* ---- connection tracking (core/conn_reaper) ---------------------------------------------------
 */

static struct conn_track *
track_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

/* Moves the connection to `phase`, restarting its clock. */
static void
track_phase(struct MHD_Connection *conn, enum conn_phase phase)
{
    struct conn_track *t = track_of(conn);

    if (t != NULL)
        conn_track_phase(t, phase);
}

static void
track_body(struct MHD_Connection *conn, size_t len)
{
    struct conn_track *t = track_of(conn);

    if (t != NULL)
        conn_track_body(t, len);
}

/* libmicrohttpd's "closed" notification runs before it closes the socket, which is what
 * conn_reaper_remove() needs. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *s = cls;
    const union MHD_ConnectionInfo *info;

    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_reaper_remove(s->reaper, *socket_context);
        *socket_context = NULL;
        return;
    }
    if (toe != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL) {
        log_warn("http: connection without a socket; it is not tracked");
        return;
    }
    *socket_context = conn_reaper_add(s->reaper, info->connect_fd);
}

/* ---- the access handler -----------------------------------------------------------------------
 */

/* First call: headers only. Refuses bad framing, a declared body over the limit (whether or not
 * the client waits for "100 Continue") and a body the budget cannot hold, all before the body is
 * read; otherwise reserves the body buffer from Content-Length. */
static enum MHD_Result
on_headers(struct http_server *s, struct MHD_Connection *conn, struct req_state *st,
           const char *url, const char *method, const char *version)
{
    const char *message = NULL;
    size_t declared;
    int status = framing_check(conn, method, url, version, &message);

    if (status != 0)
        return send_early(conn, st, status, message);
    st->body_max = HTTP_BODY_MAX;
    if (s->large_body_prefix != NULL &&
        strncmp(url, s->large_body_prefix, strlen(s->large_body_prefix)) == 0)
        st->body_max = s->large_body_max;
    if (declared_too_large(conn, st->body_max, &declared)) {
        st->too_large = 1;
        return send_early(conn, st, 413, "request entity too large");
    }
    if (declared > 0 && body_reserve(s, st, declared + 1) != 0)
        return send_early(conn, st, 503, "server busy: too many request bodies in flight");
    track_phase(conn, CONN_BODY);
    return MHD_YES;
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

/* ---- multipart/form-data: libmicrohttpd's post processor over the buffered body ----------
 *
 * The post processor reads the boundary from the connection's Content-Type, so it is made on
 * the connection while its handler runs. It hands a field's value in pieces (off > 0 for the
 * continuation of the same field): pieces are joined. A file part's bytes are not kept (the
 * webhooks count attachments and drop them). MHD_destroy_post_processor answers MHD_NO when
 * the body ended inside a part: a truncated body is malformed. */
struct form_walk {
    struct http_request *req;
    struct http_form_field *fields;
    int n;
    char *last;      /* fields[n - 1].value, writable, or NULL */
    size_t cap_last; /* bytes allocated at last */
    const char *bad;
};

static enum MHD_Result
on_form_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
             const char *content_type, const char *transfer_encoding, const char *data,
             uint64_t off, size_t size)
{
    struct form_walk *w = cls;
    struct http_form_field *f;

    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    if (off > 0 && w->n > 0 && strcmp(w->fields[w->n - 1].name, key ? key : "") == 0) {
        f = &w->fields[w->n - 1];
    } else {
        if (w->n >= HTTP_FORM_FIELDS_MAX) {
            w->bad = "too many form fields";
            return MHD_NO;
        }
        f = &w->fields[w->n++];
        f->name = arena_strdup(w->req->arena, key ? key : "");
        f->filename = filename ? arena_strdup(w->req->arena, filename) : NULL;
        f->value = "";
        f->value_len = 0;
        w->last = NULL;
        w->cap_last = 0;
    }
    if (f->filename != NULL || size == 0)
        return MHD_YES;
    if (f->value_len + size + 1 > w->cap_last) {
        size_t cap = (f->value_len + size + 1) * 2;
        char *buf = arena_alloc(w->req->arena, cap);

        if (w->last != NULL)
            memcpy(buf, w->last, f->value_len);
        w->last = buf;
        w->cap_last = cap;
    }
    memcpy(w->last + f->value_len, data, size);
    f->value_len += size;
    w->last[f->value_len] = '\0';
    f->value = w->last;
    return MHD_YES;
}

static int
server_multipart(struct http_request *req, struct http_form_field **fields, int *n,
                 const char **why)
{
    struct form_walk w = {req, *fields, 0, NULL, 0, NULL};
    struct MHD_PostProcessor *pp;
    enum MHD_Result ok, done;

    *n = 0;
    pp = MHD_create_post_processor(req->server_conn, 16 * 1024, on_form_part, &w);
    if (pp == NULL) {
        *why = "Malformed multipart/form-data: the boundary is missing";
        return -1;
    }
    ok = req->body_len > 0 ? MHD_post_process(pp, req->body, req->body_len) : MHD_YES;
    done = MHD_destroy_post_processor(pp);
    if (ok != MHD_YES || done != MHD_YES || w.bad != NULL) {
        *why = w.bad ? w.bad : "Malformed multipart/form-data body";
        return -1;
    }
    *n = w.n;
    return 0;
}

/* The peer's numeric address in the arena, or NULL when libmicrohttpd cannot say. An
 * IPv4-mapped IPv6 address (an IPv4 client of a dual-stack socket) is given as plain IPv4, so a
 * client has one address whatever the socket it came through. */
static const char *
client_addr(struct MHD_Connection *conn, struct arena *a)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char buf[INET6_ADDRSTRLEN];
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    const char *ok = NULL;

    if (info == NULL || info->client_addr == NULL)
        return NULL;
    if (info->client_addr->sa_family == AF_INET) {
        memcpy(&v4, info->client_addr, sizeof(v4));
        ok = inet_ntop(AF_INET, &v4.sin_addr, buf, sizeof(buf));
    } else if (info->client_addr->sa_family == AF_INET6) {
        memcpy(&v6, info->client_addr, sizeof(v6));
        if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr))
            ok = inet_ntop(AF_INET, &v6.sin6_addr.s6_addr[12], buf, sizeof(buf));
        else
            ok = inet_ntop(AF_INET6, &v6.sin6_addr, buf, sizeof(buf));
    }
    return ok ? arena_strdup(a, buf) : NULL;
}

/* Last call: the whole body is in. Runs the handler and queues its response. */
static enum MHD_Result
on_request(struct http_server *s, struct MHD_Connection *conn, struct req_state *st,
           const char *url, const char *method)
{
    struct http_request req = {0};
    struct http_response resp = {0};
    struct query_walk walk = {&req, NULL};

    track_phase(conn, CONN_HANDLER);
    if (st->too_large || st->over_budget) {
        http_error1(&resp, st->arena, st->too_large ? 413 : 503,
                    st->too_large ? "request entity too large"
                                  : "server busy: too many request bodies in flight");
        resp.retry_after = st->too_large ? 0 : RETRY_AFTER_BUSY_S;
        return send_response(conn, &resp, 0);
    }
    req.method = method;
    req.path = url;
    req.content_type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    req.content_encoding = header_all(conn, st->arena, MHD_HTTP_HEADER_CONTENT_ENCODING);
    req.origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    req.acr_method =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Access-Control-Request-Method");
    req.if_none_match =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    req.api_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
    req.hub_signature = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Hub-Signature-256");
    req.idempotency_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    req.last_event_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    req.authorization =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    req.client_addr = client_addr(conn, st->arena);
    req.multipart = server_multipart;
    req.server_conn = conn;
    if (st->len > 0) {
        st->body[st->len] = '\0';
        req.body = st->body;
        req.body_len = st->len;
    }
    req.arena = st->arena;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_query_arg, &walk);
    if (walk.bad) {
        http_error1(&resp, st->arena, 400, walk.bad);
        return send_response(conn, &resp, 0);
    }
    s->handler(s->ctx, &req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        log_error("http: handler for %s returned invalid status %d", method, resp.status);
        if (resp.stream != NULL)
            resp.stream->close(resp.stream_ctx);
        memset(&resp, 0, sizeof(resp));
        http_error1(&resp, st->arena, 500, "Internal server error");
    }
    return send_response(conn, &resp, 0);
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

    if (st == NULL) {
        st = state_get(s);
        *con_cls = st;
        atomic_fetch_add(&s->in_flight, 1);
        return on_headers(s, conn, st, url, method, version);
    }
    if (*upload_data_size > 0) {
        track_body(conn, *upload_data_size);
        body_append(s, st, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->is_answered)
        return MHD_YES;
    return on_request(s, conn, st, url, method);
}

/* Whether a debug line about a client's doing (an aborted request, libmicrohttpd's messages on
 * a connection) is let through: at most MHD_LOG_PER_S a second (see on_mhd_log). */
static int
noise_pass(struct http_server *s, int *dropped)
{
    return sp_log_level >= SP_LOG_DEBUG && log_limit_pass(&s->mhd_log, MHD_LOG_PER_S, dropped);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req_state *st = *con_cls;
    int dropped;

    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && noise_pass(s, &dropped))
        log_debug("http: request ended early (code %d; %d similar messages dropped before this "
                  "one)",
                  (int)toe, dropped);
    /* The next request on a kept-alive connection gets the header deadline from now: an idle
     * keep-alive connection is closed after HTTP_HEADER_TIMEOUT_MS too. */
    track_phase(conn, CONN_HEADERS);
    if (st == NULL)
        return;
    *con_cls = NULL;
    state_put(s, st);
    atomic_fetch_sub(&s->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* libmicrohttpd's own diagnostics, one line each. Nearly all of them are about one client's
 * connection (reset by the peer, refused at the limit, malformed): noise a client causes at
 * will, thousands a second under attack. So they are debug lines, at most MHD_LOG_PER_S a
 * second, the next one let through saying how many were dropped. Start-up failures are logged
 * by our own code. */
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_server *s = cls;
    char buf[256];
    size_t len;
    int dropped;

    if (!noise_pass(s, &dropped))
        return;
    if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
        return;
    len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    if (dropped > 0)
        log_debug("mhd: %s (%d similar messages dropped before this one)", buf, dropped);
    else
        log_debug("mhd: %s", buf);
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
    if (cfg->port < 0 || cfg->port > 65535)
        return sp_error_set(err, SP_EINVAL, "port", "must be 0..65535 (got %d)", cfg->port);
    if (cfg->header_timeout_ms < 0 || cfg->body_min_rate < 0 || cfg->max_conns_per_ip < 0)
        return sp_error_set(err, SP_EINVAL, "limits", "must not be negative");
    return SP_OK;
}

static struct MHD_Daemon *
daemon_start(struct http_server *s, const struct sockaddr_storage *addr, int is_v6,
             unsigned int per_ip)
{
    unsigned int flags =
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    /* Not strict: at level 1, 0.9.75 answers an HTTP/1.1 request without Host with its status
     * line and headers sent twice, and it still accepts whitespace before a field's colon.
     * framing_check() makes both checks (and the others) with our JSON error body instead.
     * Errors the library answers itself before the access handler runs (414, 431, 505, a
     * malformed header line or chunk) keep its fixed HTML bodies: 0.9.75 has no hook to
     * replace them. One of them cannot be fixed from here: a Content-Length that is not a
     * number gets the library's 400 with its header block written twice (the same fault as
     * the strict missing-Host answer). The connection is closed after it, so nothing is
     * smuggled, but the client sees a garbled body. TODO(hardening #6): gone with a newer
     * libmicrohttpd; until then a proxy in front should reject such requests. */
    struct MHD_OptionItem limits[] = {
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)per_ip, NULL},
        {MHD_OPTION_STRICT_FOR_CLIENT, 0, NULL},
        {MHD_OPTION_THREAD_STACK_SIZE, (intptr_t)THREAD_STACK_SIZE, NULL},
        {MHD_OPTION_END, 0, NULL},
    };

    if (is_v6)
        flags |= MHD_USE_DUAL_STACK;
    /* The logger goes first so that errors about later options reach it. */
    return MHD_start_daemon(
        flags, 0, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr, MHD_OPTION_ARRAY, limits,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none,
        s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONN_LIMIT,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)LISTEN_BACKLOG, MHD_OPTION_END);
}

/* Frees the server struct and its idle states; the daemon and the reaper must be stopped. */
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

/* Allocates the server with its locks and limits (0 in cfg picks the default). */
static int
server_new(const struct http_server_config *cfg, struct http_server **out, struct sp_error *err)
{
    struct http_server *s = xcalloc(1, sizeof(*s));
    int rc = pthread_mutex_init(&s->lock, NULL);

    if (rc != 0) {
        free(s);
        return sp_error_set(err, SP_EINTERNAL, NULL, "http server lock: %s", strerror(rc));
    }
    s->handler = cfg->handler;
    s->ctx = cfg->ctx;
    s->body_budget = cfg->body_budget ? cfg->body_budget : HTTP_BODY_BUDGET_DEFAULT;
    s->large_body_prefix = cfg->large_body_max > HTTP_BODY_MAX ? cfg->large_body_prefix : NULL;
    s->large_body_max = cfg->large_body_max;
    snprintf(s->host, sizeof(s->host), "%s",
             strcmp(cfg->host, "localhost") ? cfg->host : "127.0.0.1");
    *out = s;
    return SP_OK;
}

int
http_server_start(const struct http_server_config *cfg, struct http_server **out,
                  struct sp_error *err)
{
    struct sockaddr_storage addr;
    const union MHD_DaemonInfo *info;
    struct http_server *s = NULL;
    int is_v6, rc;
    unsigned int per_ip;

    *out = NULL;
    rc = check_config(cfg, err);
    if (rc == SP_OK)
        rc = parse_host(cfg->host, cfg->port, &addr, &is_v6, err);
    if (rc == SP_OK)
        rc = server_new(cfg, &s, err);
    if (rc != SP_OK)
        return rc;
    rc = conn_reaper_start(
        cfg->header_timeout_ms ? cfg->header_timeout_ms : HTTP_HEADER_TIMEOUT_MS_DEFAULT,
        cfg->body_min_rate ? cfg->body_min_rate : HTTP_BODY_MIN_RATE_DEFAULT, &s->reaper, err);
    if (rc != SP_OK) {
        server_free(s);
        return rc;
    }
    per_ip = (unsigned int)(cfg->max_conns_per_ip ? cfg->max_conns_per_ip
                                                  : HTTP_MAX_CONNS_PER_IP_DEFAULT);
    s->daemon = daemon_start(s, &addr, is_v6, per_ip);
    if (s->daemon == NULL) {
        rc = sp_error_set(err, SP_EUNAVAIL, "port", "cannot listen on %s port %d", s->host,
                          cfg->port);
        conn_reaper_stop(s->reaper);
        server_free(s);
        return rc;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = (info && info->port) ? (int)info->port : cfg->port;
    log_info("http: listening on %s port %d (a thread per connection, at most %u per client "
             "address)",
             s->host, s->port, per_ip);
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
    MHD_stop_daemon(s->daemon); /* joins the connection threads; running handlers finish first */
    conn_reaper_stop(s->reaper);
    server_free(s);
}
