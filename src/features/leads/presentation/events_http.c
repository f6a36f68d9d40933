/* events_http.c: GET /events and its publisher (see events_http.h).
 *
 * A stream is a struct events_stream behind the server's http_stream_ops. Its read() runs on
 * the connection's own thread: it hands out, in this order, bytes already prepared (the first
 * "retry:" line, a catch-up page, a frame too big for the server's buffer, a ping), frames
 * copied straight from the hub into the server's buffer, or, when the stream's cursor is older
 * than the hub's ring, the next page read from the store. With nothing to send it sleeps on
 * the hub until the next publication or until the heartbeat is due. A stream ends only when
 * the hub closes (the process stops) or its client goes away; read() never fails.
 *
 * Turns: a stream copies and sends only while it holds a slot of the process's gate
 * (core/gate.h, a slot per core), for a quantum of bytes or time, and never while it sleeps or
 * reads the store. Without turns, a burst leaves hundreds of streams behind the hub, all runnable
 * at once: their SCHED_IDLE threads, each of the smallest weight, together outweighed the threads
 * answering requests (saturated captures fell to 52-70 % of their rate with 1,000 streams
 * open; with turns 78-94 %, docs/performance.md). */
#include "features/leads/presentation/events_http.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/gate.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/sse_hub.h"
#include "core/uuid.h"
#include "core/xmalloc.h"
#include "features/leads/application/event_feed.h"
#include "features/leads/presentation/leads_http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME_JSON_MAX (4 * 1024 * 1024) /* an event's JSON; real ones are far smaller */
#define CATCHUP_PAGE 64                  /* events a behind stream reads from the store at once */
#define PUBLISH_PAGE 256                 /* events the publisher reads and publishes at once */
#define PEND_KEEP (64 * 1024)            /* a stream's own buffer kept between uses, at most */
#define PING ": ping\n\n"
#define STORE_RETRY_MS 1000 /* a stream whose read of the store failed tries again this late */
/* EVENTS_COALESCE_MS (events_http.h): without it, each publication (a commit: hundreds a second
 * under load) wakes every caught-up stream's thread to write a frame or two. (At saturation the
 * streams are behind anyway and copy without sleeping, in turns.) */
#define COALESCE_MS EVENTS_COALESCE_MS
/* Turns at the gate (core/gate.h): a stream copies and sends only while it holds a slot, and
 * keeps it for this many bytes or milliseconds (many blocks: one hand-over, one wake-up, per
 * quantum rather than per block), then queues again behind the others. */
#define GATE_QUANTUM_BYTES (256 * 1024)
#define GATE_QUANTUM_MS 4

struct events_stream {
    const struct events_http *eh;
    int64_t cursor;                /* the position of the last event handed out or skipped */
    char lead_id[SP_UUID_LEN + 1]; /* "" for every lead */
    struct arena *arena;           /* catch-up renders, reset after each page */
    char *pend;                    /* bytes to send before anything else: pend[off..len) */
    size_t pend_len, pend_off, pend_cap;
    int64_t last_sent;     /* sp_mono_ms() when bytes were last handed out */
    int64_t retry_at;      /* 0, or when to read the store again after a failure */
    int caught_up;         /* its last read from the hub reached the hub's high-water mark */
    struct gate_pass pass; /* its turn at eh->gate */
    struct log_limit log;
};

/* ---- frames ------------------------------------------------------------------------------- */

int
events_http_frame(struct arena *a, const struct lead_event *e, const char **out, size_t *len)
{
    struct jsonw w;
    const char *json;
    size_t json_len;
    int rc;

    jsonw_init(&w, a, FRAME_JSON_MAX);
    leads_http_event_json(&w, e);
    rc = jsonw_finish(&w, &json, &json_len);
    if (rc != SP_OK)
        return rc;
    return sse_frame_encode(a, e->id, lead_event_type_name(e->type), json, json_len, out, len);
}

/* ---- the publisher ------------------------------------------------------------------------ */

int
events_http_publish(struct sse_hub *hub, struct lead_repo *r, struct lead_feed_fence *f,
                    struct arena *a, struct sp_error *err)
{
    int64_t cursor;
    int rc = event_feed_settle(r, f, err);

    if (rc != SP_OK)
        return rc;
    cursor = sse_hub_high(hub);
    if (f->settled <= cursor)
        return SP_OK;
    if (sse_hub_readers(hub) == 0) {
        /* Nobody listens: nothing to render. A stream opening later starts at the mark, or
         * reads the store from its Last-Event-ID. */
        sse_hub_skip(hub, f->settled);
        return SP_OK;
    }
    while (cursor < f->settled) {
        struct lead_event *ev;
        struct sse_frame_in *frames;
        int n, k = 0;

        rc = event_feed_read(r, &cursor, f->settled, NULL, PUBLISH_PAGE, a, &ev, &n, err);
        if (rc != SP_OK)
            return rc;
        frames = arena_alloc(a, sizeof(*frames) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            if (events_http_frame(a, &ev[i], &frames[k].text, &frames[k].len) != SP_OK) {
                log_error("events: event %s cannot be rendered: left out of the feed", ev[i].id);
                continue;
            }
            frames[k].pos = ev[i].seq;
            frames[k].key = ev[i].lead_id;
            k++;
        }
        sse_hub_publish(hub, frames, k, cursor);
        arena_reset(a);
    }
    return SP_OK;
}

/* ---- a stream ----------------------------------------------------------------------------- */

/* Room for `more` bytes after what the stream's own buffer holds. */
static void
pend_reserve(struct events_stream *st, size_t more)
{
    size_t need = st->pend_len + more;

    if (need <= st->pend_cap)
        return;
    st->pend_cap = need > 2 * st->pend_cap ? need : 2 * st->pend_cap;
    st->pend = xrealloc(st->pend, st->pend_cap);
}

static void
pend_put(struct events_stream *st, const char *s, size_t len)
{
    pend_reserve(st, len);
    memcpy(st->pend + st->pend_len, s, len);
    st->pend_len += len;
}

/* The buffer is empty: start it over, and give back a big one. */
static void
pend_clear(struct events_stream *st)
{
    st->pend_len = 0;
    st->pend_off = 0;
    if (st->pend_cap > PEND_KEEP) {
        free(st->pend);
        st->pend = NULL;
        st->pend_cap = 0;
    }
}

/* The next page from the store, up to the hub's mark, rendered into the stream's buffer. */
static int
catch_up(struct events_stream *st)
{
    const struct events_store *store = &st->eh->store;
    struct sp_error err = {0};
    struct lead_repo *repo = NULL;
    struct lead_event *ev;
    int64_t upto = sse_hub_high(st->eh->hub);
    int n = 0, dropped;
    int rc = store->open(store->ctx, &repo, &err);

    if (rc == SP_OK) {
        rc = event_feed_read(repo, &st->cursor, upto, st->lead_id[0] ? st->lead_id : NULL,
                             CATCHUP_PAGE, st->arena, &ev, &n, &err);
        store->close(store->ctx, repo);
    }
    if (rc != SP_OK) {
        if (log_limit_pass(&st->log, 1, &dropped))
            log_warn("events: a stream cannot read the store (it stays open and tries again "
                     "in %d ms): %s",
                     STORE_RETRY_MS, err.msg);
        arena_reset(st->arena);
        return rc;
    }
    for (int i = 0; i < n; i++) {
        const char *text;
        size_t len;
        if (events_http_frame(st->arena, &ev[i], &text, &len) != SP_OK) {
            log_error("events: event %s cannot be rendered: left out of the feed", ev[i].id);
            continue;
        }
        pend_put(st, text, len);
    }
    arena_reset(st->arena);
    return SP_OK;
}

/* Frames from the hub into buf[0..cap), or into the stream's buffer when the next one is
 * bigger than cap. Returns the hub's answer; *len bytes went to buf. */
static enum sse_read
from_hub(struct events_stream *st, char *buf, size_t cap, size_t *len)
{
    const char *key = st->lead_id[0] ? st->lead_id : NULL;
    size_t need = 0, got = 0;
    enum sse_read res = sse_hub_read(st->eh->hub, &st->cursor, key, buf, cap, len, &need);

    if (res != SSE_READ_OK || need == 0)
        return res;
    pend_reserve(st, need);
    res = sse_hub_read(st->eh->hub, &st->cursor, key, st->pend, st->pend_cap, &got, &need);
    st->pend_len = got;
    return res;
}

/* Sleeps until COALESCE_MS after the stream's last bytes: a plain sleep, not a wait on the hub,
 * which would wake at every publication again. A close meanwhile is seen at most COALESCE_MS
 * late. */
static void
pace(struct events_stream *st)
{
    int64_t left = st->last_sent + COALESCE_MS - sp_mono_ms();
    struct timespec ts;

    if (left <= 0 || left > COALESCE_MS || sse_hub_closed(st->eh->hub))
        return;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)left * 1000000L;
    nanosleep(&ts, NULL);
}

/* Waits for the stream's turn to copy (not once the hub is closed: then every stream only ends). */
static void
turn_take(struct events_stream *st)
{
    if (st->eh->gate != NULL && !sse_hub_closed(st->eh->hub))
        gate_enter(st->eh->gate, &st->pass);
}

static void
turn_end(struct events_stream *st)
{
    if (st->eh->gate != NULL)
        gate_leave(st->eh->gate, &st->pass);
}

/* `n` bytes handed out under the stream's turn. */
static void
turn_count(struct events_stream *st, size_t n)
{
    st->pass.bytes += n;
    st->last_sent = sp_mono_ms();
}

/* At each read (the block before it is sent): the turn ends after its quantum. */
static void
turn_check(struct events_stream *st)
{
    if (gate_holds(&st->pass) && (st->pass.bytes >= GATE_QUANTUM_BYTES ||
                                  sp_mono_ms() - st->pass.since_ms >= GATE_QUANTUM_MS))
        turn_end(st);
}

static int
stream_read(void *ctx, char *buf, size_t cap, size_t *len)
{
    struct events_stream *st = ctx;
    struct sse_hub *hub = st->eh->hub;

    *len = 0;
    turn_check(st);
    for (;;) {
        uint64_t seen;
        int64_t wait;
        enum sse_read res;

        if (st->pend_off < st->pend_len) {
            size_t n = st->pend_len - st->pend_off;
            if (n > cap)
                n = cap;
            turn_take(st);
            memcpy(buf, st->pend + st->pend_off, n);
            st->pend_off += n;
            turn_count(st, n);
            *len = n;
            return SP_OK;
        }
        pend_clear(st);
        if (st->caught_up) {
            turn_end(st);
            pace(st);
        }
        seen = sse_hub_version(hub);
        turn_take(st);
        res = from_hub(st, buf, cap, len);
        st->caught_up = res == SSE_READ_OK && st->cursor >= sse_hub_high(hub);
        if (res == SSE_READ_CLOSED) {
            turn_end(st);
            *len = 0; /* the end of the stream */
            return SP_OK;
        }
        if (res == SSE_READ_OK && *len > 0) {
            turn_count(st, *len);
            return SP_OK;
        }
        if (res == SSE_READ_OK && st->pend_len > 0)
            continue; /* a frame bigger than buf, in pend: handed out under the same turn */
        turn_end(st); /* a read of the store or a wait comes: not under a turn */
        /* Behind the hub: the next page from the store. A failure (the database away, or
         * busy past this thread's patience under load) does not end the stream: it keeps its
         * place, pings, and tries again, so a hiccup never sends every client reconnecting. */
        if (res == SSE_READ_BEHIND && sp_mono_ms() >= st->retry_at) {
            if (catch_up(st) == SP_OK) {
                st->retry_at = 0;
                continue;
            }
            st->retry_at = sp_mono_ms() + STORE_RETRY_MS;
        }
        if (st->pend_len > 0)
            continue;
        wait = st->last_sent + st->eh->heartbeat_ms - sp_mono_ms();
        if (wait <= 0) {
            pend_put(st, PING, sizeof(PING) - 1);
            continue;
        }
        if (res == SSE_READ_BEHIND && st->retry_at - sp_mono_ms() < wait)
            wait = st->retry_at > sp_mono_ms() ? st->retry_at - sp_mono_ms() : 1;
        sse_hub_wait(hub, seen, wait);
    }
}

static void
stream_close(void *ctx)
{
    struct events_stream *st = ctx;

    turn_end(st);
    sse_hub_leave(st->eh->hub);
    arena_free(st->arena);
    free(st->pend);
    free(st);
}

static const struct http_stream_ops stream_ops = {stream_read, stream_close};

/* ---- GET /events -------------------------------------------------------------------------- */

/* Query parameters: leadId (a UUID, once) and key (the API key, read by the caller). NULL and
 * a 400 in resp when they are wrong; else the lower-cased leadId or "". */
static const char *
lead_filter(struct http_request *req, struct http_response *resp)
{
    const char *id;
    char *lower;

    for (int i = 0; i < req->nquery; i++) {
        const char *k = req->query_keys[i];
        if (strcmp(k, "leadId") != 0 && strcmp(k, "key") != 0) {
            http_error1(resp, req->arena, 400,
                        arena_printf(req->arena, "property %s should not exist", k));
            return NULL;
        }
        if (http_query_count(req, k) > 1) {
            http_error1(resp, req->arena, 400,
                        arena_printf(req->arena, "%s must be given once", k));
            return NULL;
        }
    }
    id = http_query(req, "leadId");
    if (id == NULL)
        return "";
    if (!sp_uuid_valid(id, strlen(id))) {
        http_error1(resp, req->arena, 400, "leadId must be a UUID");
        return NULL;
    }
    lower = arena_strdup(req->arena, id);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return lower;
}

/* The stream's first position: after Last-Event-ID's event, or after the newest settled one.
 * Checks that the lead of ?leadId= exists. *unknown_event is set when the failure is that
 * Last-Event-ID names no event. */
static int
start_position(const struct events_http *eh, const char *lead_id, const char *last_event_id,
               struct arena *a, int64_t *cursor, int *unknown_event, struct sp_error *err)
{
    struct lead_repo *repo = NULL;
    struct lead lead;
    int rc;

    *cursor = sse_hub_high(eh->hub);
    *unknown_event = 0;
    if (lead_id[0] == '\0' && last_event_id == NULL)
        return SP_OK;
    rc = eh->store.open(eh->store.ctx, &repo, err);
    if (rc != SP_OK)
        return rc;
    if (lead_id[0] != '\0')
        rc = lead_repo_lead_get(repo, lead_id, a, &lead, err);
    if (rc == SP_OK && last_event_id != NULL) {
        rc = event_feed_resume(repo, last_event_id, cursor, err);
        *unknown_event = rc == SP_ENOTFOUND;
    }
    eh->store.close(eh->store.ctx, repo);
    return rc;
}

void
events_http_stream(const struct events_http *eh, struct http_request *req,
                   struct http_response *resp)
{
    const char *lead_id = lead_filter(req, resp);
    const char *last = req->last_event_id;
    struct events_stream *st;
    struct sp_error err = {0};
    char retry[32];
    int64_t cursor;
    int rc, unknown_event;

    if (lead_id == NULL)
        return;
    if (last != NULL && last[0] == '\0')
        last = NULL; /* an EventSource that has seen no id yet */
    /* Joined before the position is taken: the publisher then renders for this stream, and
     * if it moved the mark without rendering, the stream reads the store instead. */
    sse_hub_join(eh->hub);
    rc = start_position(eh, lead_id, last, req->arena, &cursor, &unknown_event, &err);
    if (rc != SP_OK) {
        sse_hub_leave(eh->hub);
        if (unknown_event)
            http_error(resp, req->arena, 404, (const char *const[]){"Last-Event-ID: no such event"},
                       1, 0);
        else
            leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    st = xcalloc(1, sizeof(*st));
    st->eh = eh;
    st->cursor = cursor;
    st->pass = (struct gate_pass)GATE_PASS_INIT;
    memcpy(st->lead_id, lead_id, strlen(lead_id) + 1);
    st->arena = arena_new();
    st->last_sent = sp_mono_ms();
    snprintf(retry, sizeof(retry), "retry: %d\n\n", eh->retry_ms);
    pend_put(st, retry, strlen(retry));

    resp->status = 200;
    resp->content_type = "text/event-stream";
    (void)http_response_header(resp, "Cache-Control", "no-cache"); /* 2 of HTTP_HEADERS_MAX */
    (void)http_response_header(resp, "X-Accel-Buffering", "no");   /* nginx: do not buffer */
    resp->stream = &stream_ops;
    resp->stream_ctx = st;
}
