/* test_events_feed.c: GET /events below the socket: the SSE encoder and the hub's ring
 * (core/sse_hub), the feed's reads and resume positions on every backend
 * (application/event_feed), the PostgreSQL fence that keeps a late commit of a smaller position
 * from being skipped (sql_lead_repo, migration 0012), and streams read through their
 * http_stream_ops (presentation/events_http): in order, resumed exactly after Last-Event-ID
 * from the ring or from the store, one lead's only, heartbeats, the end at close. */
#include "t.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/gate.h"
#include "core/http.h"
#include "core/sse_hub.h"
#include "fakes/t_env.h"
#include "features/leads/application/event_feed.h"
#include "features/leads/presentation/events_http.h"
#include "infra/db.h"
#include "infra/db_pg.h"

#include <string.h>
#include <time.h>

/* ---- the wire format ------------------------------------------------------------------------ */

static const char *
encode(struct arena *a, const char *id, const char *event, const char *data)
{
    const char *out;
    size_t len;

    ASSERT_OK(sse_frame_encode(a, id, event, data, strlen(data), &out, &len));
    ASSERT_EQ(strlen(out), len);
    return out;
}

TEST(unit_sse_frame_encode)
{
    struct arena *a = arena_new();
    const char *out;
    size_t len;

    ASSERT_STREQ("id: 1\nevent: lead_added\ndata: {\"a\":1}\n\n",
                 encode(a, "1", "lead_added", "{\"a\":1}"));
    /* Every line break of the data (LF, CRLF, CR) starts a data line: EventSource joins them
     * back with LF. */
    ASSERT_STREQ("id: 2\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
                 encode(a, "2", NULL, "a\nb\r\nc\rd"));
    ASSERT_STREQ("data: \ndata: \n\n", encode(a, NULL, NULL, "\n"));
    ASSERT_STREQ("data: \n\n", encode(a, NULL, NULL, ""));
    /* An id or type with a line break would inject fields. */
    ASSERT_EQ(SP_EINVAL, sse_frame_encode(a, "1\nevent: x", "t", "{}", 2, &out, &len));
    ASSERT_EQ(SP_EINVAL, sse_frame_encode(a, "1", "t\r", "{}", 2, &out, &len));
    arena_free(a);
}

/* ---- the hub -------------------------------------------------------------------------------- */

/* Publishes one frame "<pos><key>;" (text easy to compare) at pos with key. */
static void
pub(struct sse_hub *h, int64_t pos, const char *key, int64_t high)
{
    char text[32];
    struct sse_frame_in f;

    snprintf(text, sizeof(text), "%lld%s;", (long long)pos, key);
    f.pos = pos;
    f.key = key;
    f.text = text;
    f.len = strlen(text);
    sse_hub_publish(h, &f, 1, high > pos ? high : pos);
}

/* Reads into a 256-byte buffer; returns the text (static) and checks the answer. */
static const char *
hub_read(struct sse_hub *h, int64_t *cursor, const char *key, enum sse_read want)
{
    static char buf[257];
    size_t len = 0, need = 0;

    ASSERT_EQ(want, sse_hub_read(h, cursor, key, buf, 256, &len, &need));
    ASSERT_EQ(0, need);
    buf[len] = '\0';
    return buf;
}

TEST(unit_sse_hub_reads_after_cursor_and_filters)
{
    struct sse_hub *h = sse_hub_new(16, 1 << 20, 0);
    int64_t c = 0, ca = 0;

    pub(h, 1, "a", 0);
    pub(h, 2, "b", 0);
    pub(h, 4, "a", 0); /* position 3: rolled back, or another lead's on a filtered read */
    pub(h, 5, "b", 7); /* the mark moves past positions with no event */
    ASSERT_STREQ("1a;2b;4a;5b;", hub_read(h, &c, NULL, SSE_READ_OK));
    ASSERT_EQ(7, c);
    ASSERT_STREQ("1a;4a;", hub_read(h, &ca, "a", SSE_READ_OK));
    ASSERT_EQ(7, ca); /* past every frame looked at, then to the mark */
    ASSERT_STREQ("", hub_read(h, &c, NULL, SSE_READ_OK));
    c = 2; /* resumed after 2 */
    ASSERT_STREQ("4a;5b;", hub_read(h, &c, NULL, SSE_READ_OK));
    c = 9; /* ahead of this hub (another process published further): nothing, never back */
    ASSERT_STREQ("", hub_read(h, &c, NULL, SSE_READ_OK));
    ASSERT_EQ(9, c);
    pub(h, 8, "a", 0);
    ASSERT_STREQ("", hub_read(h, &c, NULL, SSE_READ_OK));
    pub(h, 10, "b", 0);
    ASSERT_STREQ("10b;", hub_read(h, &c, NULL, SSE_READ_OK));
    /* Out of order: a programming error, dropped. */
    pub(h, 3, "a", 0);
    ASSERT_STREQ("", hub_read(h, &c, NULL, SSE_READ_OK));
    ASSERT_EQ(10, sse_hub_high(h));
    sse_hub_free(h);
}

TEST(unit_sse_hub_whole_frames_only)
{
    struct sse_hub *h = sse_hub_new(16, 1 << 20, 0);
    char buf[8];
    size_t len, need;
    int64_t c = 0;

    pub(h, 1, "aa", 0);          /* "1aa;": 4 bytes */
    pub(h, 2, "bb", 0);          /* 4 bytes */
    pub(h, 3, "ccccccccccc", 0); /* 13 bytes */
    ASSERT_EQ(SSE_READ_OK, sse_hub_read(h, &c, NULL, buf, 6, &len, &need));
    ASSERT_EQ(4, len); /* the second frame does not fit: left for the next read */
    ASSERT_EQ(0, need);
    ASSERT_EQ(1, c);
    ASSERT_EQ(SSE_READ_OK, sse_hub_read(h, &c, NULL, buf, 8, &len, &need));
    ASSERT_EQ(4, len);
    ASSERT_EQ(2, c);
    /* Bigger than the buffer: nothing copied, its size said, the cursor stays before it. */
    ASSERT_EQ(SSE_READ_OK, sse_hub_read(h, &c, NULL, buf, 8, &len, &need));
    ASSERT_EQ(0, len);
    ASSERT_EQ(13, need);
    ASSERT_EQ(2, c);
    sse_hub_free(h);
}

TEST(unit_sse_hub_ring_bounds_and_behind)
{
    struct sse_hub *h = sse_hub_new(3, 1 << 20, 0);
    int64_t c = 0;

    for (int i = 1; i <= 5; i++)
        pub(h, i, "k", 0);
    /* 1 and 2 were dropped: a cursor before 2 must read the store first. */
    ASSERT_STREQ("", hub_read(h, &c, NULL, SSE_READ_BEHIND));
    ASSERT_EQ(0, c);
    c = 1;
    hub_read(h, &c, NULL, SSE_READ_BEHIND);
    c = 2;
    ASSERT_STREQ("3k;4k;5k;", hub_read(h, &c, NULL, SSE_READ_OK));
    sse_hub_free(h);

    /* The byte bound: frames of 3 bytes, 7 bytes kept at most: two frames. */
    h = sse_hub_new(100, 7, 0);
    for (int i = 1; i <= 4; i++)
        pub(h, i, "k", 0);
    c = 2;
    ASSERT_STREQ("3k;4k;", hub_read(h, &c, NULL, SSE_READ_OK));
    c = 1;
    hub_read(h, &c, NULL, SSE_READ_BEHIND);
    sse_hub_free(h);
}

TEST(unit_sse_hub_skip_wait_close)
{
    struct sse_hub *h = sse_hub_new(8, 1 << 20, 5);
    int64_t c = 5;
    uint64_t v = sse_hub_version(h);

    ASSERT_EQ(0, sse_hub_wait(h, v, 1)); /* nothing happened */
    pub(h, 6, "k", 0);
    ASSERT_EQ(1, sse_hub_wait(h, v, 1000)); /* already happened: returns at once */
    /* No reader: the mark moves, the frames go; a reader still before it reads the store. */
    sse_hub_skip(h, 9);
    ASSERT_EQ(9, sse_hub_high(h));
    hub_read(h, &c, NULL, SSE_READ_BEHIND);
    c = 9;
    hub_read(h, &c, NULL, SSE_READ_OK);
    /* Frames older than the age bound go; a reader before them reads the store. */
    pub(h, 10, "k", 0);
    pub(h, 11, "k", 0);
    c = 9;
    sse_hub_expire(h, 60000);
    ASSERT_STREQ("10k;11k;", hub_read(h, &c, NULL, SSE_READ_OK));
    sse_hub_expire(h, -1);
    c = 9;
    hub_read(h, &c, NULL, SSE_READ_BEHIND);
    c = 11;
    hub_read(h, &c, NULL, SSE_READ_OK);
    sse_hub_join(h);
    sse_hub_join(h);
    sse_hub_leave(h);
    ASSERT_EQ(1, sse_hub_readers(h));
    v = sse_hub_version(h);
    sse_hub_close(h);
    ASSERT_EQ(1, sse_hub_wait(h, v, 1000));
    ASSERT_EQ(1, sse_hub_wait(h, sse_hub_version(h), 1000)); /* closed: never sleeps */
    hub_read(h, &c, NULL, SSE_READ_CLOSED);
    sse_hub_free(h);
}

/* ---- the feed's reads, on every backend ----------------------------------------------------- */

/* Every event id of the store in feed order, via event_feed_read pages of `max`. */
static int
read_all(struct t_env *env, int64_t *cursor, int64_t upto, const char *lead_id, int max,
         char ids[][SP_UUID_LEN + 1], int cap)
{
    struct sp_error err = {0};
    int total = 0;

    while (*cursor < upto) {
        struct lead_event *ev;
        int n;
        ASSERT_OK(
            event_feed_read(env->repo, cursor, upto, lead_id, max, env->arena, &ev, &n, &err));
        ASSERT(n <= max);
        for (int i = 0; i < n; i++) {
            ASSERT(total < cap);
            ASSERT(ev[i].seq <= *cursor);
            if (lead_id)
                ASSERT_STREQ(lead_id, ev[i].lead_id);
            memcpy(ids[total++], ev[i].id, SP_UUID_LEN + 1);
        }
    }
    ASSERT_EQ(upto, *cursor);
    return total;
}

/* The ids of a lead's timeline, in its order. */
static int
timeline(struct t_env *env, const char *lead_id, char ids[][SP_UUID_LEN + 1], int cap)
{
    struct lead_event *ev;
    int n;

    t_env_events(env, lead_id, &ev, &n);
    ASSERT(n <= cap);
    for (int i = 0; i < n; i++)
        memcpy(ids[i], ev[i].id, SP_UUID_LEN + 1);
    return n;
}

/* Settles everything written so far. On PostgreSQL other tests' writers (same database, other
 * schemas) may be in flight: a mark waits for them too, so this polls, up to 10 s. */
static void
settle(struct t_env *env, struct lead_feed_fence *f)
{
    struct sp_error err = {0};
    int64_t deadline = sp_mono_ms() + 10000;

    while (sp_mono_ms() < deadline) {
        int64_t before = f->settled;
        ASSERT_OK(event_feed_settle(env->repo, f, &err));
        if (f->mark == 0 && f->settled == before)
            return;
        if (f->mark > 0)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    ASSERT(!"the fence never settled");
}

TEST_ALL(unit_event_feed_reads_in_order)
{
    struct t_env *env = t_env_new(backend);
    static struct lead_feed_fence f;
    struct lead l1, l2, l3;
    char all[32][SP_UUID_LEN + 1], one[32][SP_UUID_LEN + 1], want[32][SP_UUID_LEN + 1];
    int64_t cursor = 0;
    int n, nw;

    memset(&f, 0, sizeof(f));
    settle(env, &f);
    ASSERT_EQ(0, f.settled);
    t_env_create(env, "A", "a@example.com", "+15550000001", &l1);
    t_env_create(env, "B", "b@example.com", NULL, &l2);
    t_env_create(env, "C", NULL, "+15550000003", &l3);
    settle(env, &f);
    /* 3 + 2 + 2 events; pages of 2 end exactly at the end once and short once. */
    n = read_all(env, &cursor, f.settled, NULL, 2, all, 32);
    ASSERT_EQ(7, n);
    nw = timeline(env, l1.id, want, 32);
    nw += timeline(env, l2.id, want + nw, 32 - nw);
    nw += timeline(env, l3.id, want + nw, 32 - nw);
    ASSERT_EQ(7, nw);
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[i], all[i]);
    /* Nothing more until something is written. */
    ASSERT_EQ(0, read_all(env, &cursor, f.settled, NULL, 2, all, 32));
    /* One lead's: its events only; the cursor still goes to the end. */
    cursor = 0;
    n = read_all(env, &cursor, f.settled, l2.id, 1, one, 32);
    ASSERT_EQ(2, n);
    ASSERT_STREQ(want[3], one[0]);
    ASSERT_STREQ(want[4], one[1]);
    t_env_free(env);
}

TEST_ALL(unit_event_feed_resume_after_last_event_id)
{
    struct t_env *env = t_env_new(backend);
    static struct lead_feed_fence f;
    struct lead l1, l2;
    struct sp_error err = {0};
    char seen[32][SP_UUID_LEN + 1], rest[32][SP_UUID_LEN + 1], want[32][SP_UUID_LEN + 1];
    char upper[SP_UUID_LEN + 1];
    int64_t cursor = 0, resumed;
    int n, nr, nw;

    memset(&f, 0, sizeof(f));
    t_env_create(env, "A", "a@example.com", "+15550000001", &l1);
    settle(env, &f);
    n = read_all(env, &cursor, f.settled, NULL, 50, seen, 32);
    ASSERT_EQ(3, n);
    /* The client drops after the second event; meanwhile another lead comes in. */
    t_env_create(env, "B", "b@example.com", "+15550000002", &l2);
    settle(env, &f);
    ASSERT_OK(event_feed_resume(env->repo, seen[1], &resumed, &err));
    nr = read_all(env, &resumed, f.settled, NULL, 2, rest, 32);
    nw = timeline(env, l1.id, want, 32);
    nw += timeline(env, l2.id, want + nw, 32 - nw);
    ASSERT_EQ(6, nw);
    ASSERT_EQ(4, nr); /* the third event of A, then B's three: none lost, none repeated */
    for (int i = 0; i < nr; i++)
        ASSERT_STREQ(want[2 + i], rest[i]);
    /* Ids in upper case are the same ids. */
    for (int i = 0; i <= SP_UUID_LEN; i++)
        upper[i] = (char)(seen[1][i] >= 'a' && seen[1][i] <= 'f' ? seen[1][i] - 32 : seen[1][i]);
    ASSERT_OK(event_feed_resume(env->repo, upper, &resumed, &err));
    ASSERT_EQ(1, read_all(env, &resumed, f.settled, l1.id, 5, rest, 32)); /* A's third */
    ASSERT_EQ(SP_ENOTFOUND,
              event_feed_resume(env->repo, "2728542f-1069-401c-a54f-4ab8a3a46a06", &resumed, &err));
    ASSERT_EQ(SP_EINVAL, event_feed_resume(env->repo, "17", &resumed, &err));
    ASSERT_EQ(SP_EINVAL, event_feed_resume(env->repo, NULL, &resumed, &err));
    t_env_free(env);
}

/* ---- the PostgreSQL fence ------------------------------------------------------------------- */

/* A second session on the env's schema. */
static struct db_conn *
second_session(struct t_env *env)
{
    DB_STMT(set_path, NULL, "SELECT set_config('search_path', $1, false)");
    struct sp_error err = {0};
    struct db_conn *c = NULL;

    ASSERT_OK(db_pg_connect(env->pg, &c, &err));
    ASSERT_OK(db_exec(c, &set_path, DB_ARGS(db_text(env->pg_schema)), NULL, &err));
    return c;
}

/* Positions are taken at insert time and transactions commit in any order: a transaction that
 * took position p and commits after one that took p + 1 must not be skipped by a reader that
 * already went past p + 1. The naive reader (the largest committed position) does exactly that;
 * the fence holds the settled position below p until that transaction ends. */
TEST(unit_event_feed_fence_waits_for_a_late_commit_pg)
{
    DB_STMT(max_seq, NULL, "SELECT max(seq) FROM lead_events");
    struct t_env *env = t_env_new(T_PG);
    static struct lead_feed_fence f;
    struct db_conn *late = second_session(env);
    struct sql_lead_repo late_repo;
    struct sp_error err = {0};
    struct lead l1, l2;
    struct lead_event e;
    struct db_rows rows;
    char ids[32][SP_UUID_LEN + 1];
    int64_t cursor, p;
    int n;

    memset(&f, 0, sizeof(f));
    t_env_create(env, "A", "a@example.com", NULL, &l1); /* positions 1, 2 */
    settle(env, &f);
    ASSERT_EQ(2, f.settled);
    cursor = f.settled;

    /* The late transaction takes position 3 and stays open. */
    sql_lead_repo_init(&late_repo, late);
    memset(&e, 0, sizeof(e));
    memcpy(e.id, "01930000-0000-7000-8000-000000000003", SP_UUID_LEN + 1);
    memcpy(e.lead_id, l1.id, SP_UUID_LEN + 1);
    e.type = EVENT_STATUS_CHANGED;
    e.correlation_ids = "{}";
    e.payload = "{\"late\":true}";
    e.created_at = T_NOW;
    ASSERT_OK(lead_repo_begin(&late_repo.base, &err));
    ASSERT_OK(lead_repo_event_append(&late_repo.base, &e, &err));
    /* A read of the events writes the unit of work's own first (the repo's batch): it takes 3. */
    ASSERT_OK(lead_repo_event_position(&late_repo.base, e.id, &p, &err));
    ASSERT_EQ(3, p);

    /* Meanwhile another lead commits positions 4 and 5. */
    t_env_create(env, "B", "b@example.com", NULL, &l2);
    ASSERT_OK(db_query(env->conn, &max_seq, DB_NOARGS, env->arena, &rows, &err));
    ASSERT_EQ(5, db_cell_int(&rows, 0, 0)); /* what a naive reader would resume after */

    for (int i = 0; i < 5; i++) /* marks, waits: never past 2 while 3 may still commit */
        ASSERT_OK(event_feed_settle(env->repo, &f, &err));
    ASSERT_EQ(2, f.settled);
    ASSERT(f.mark >= 5);
    ASSERT_EQ(0, read_all(env, &cursor, f.settled, NULL, 10, ids, 32));

    ASSERT_OK(lead_repo_commit(&late_repo.base, &err));
    settle(env, &f);
    ASSERT_EQ(5, f.settled);
    n = read_all(env, &cursor, f.settled, NULL, 10, ids, 32);
    ASSERT_EQ(3, n);
    ASSERT_STREQ(e.id, ids[0]); /* the late one first: its position comes first */
    ASSERT_OK(event_feed_resume(env->repo, ids[0], &p, &err));
    ASSERT_EQ(3, p);
    db_close(late);
    t_env_free(env);
}

/* A rolled-back writer leaves a hole, which settles like any other position. */
TEST(unit_event_feed_fence_rolled_back_writer_pg)
{
    struct t_env *env = t_env_new(T_PG);
    static struct lead_feed_fence f;
    struct db_conn *late = second_session(env);
    struct sql_lead_repo late_repo;
    struct sp_error err = {0};
    struct lead l1, l2;
    struct lead_event e;
    char ids[32][SP_UUID_LEN + 1];
    int64_t cursor = 0, p;

    memset(&f, 0, sizeof(f));
    t_env_create(env, "A", "a@example.com", NULL, &l1);
    sql_lead_repo_init(&late_repo, late);
    memset(&e, 0, sizeof(e));
    memcpy(e.id, "01930000-0000-7000-8000-000000000009", SP_UUID_LEN + 1);
    memcpy(e.lead_id, l1.id, SP_UUID_LEN + 1);
    e.type = EVENT_STATUS_CHANGED;
    e.correlation_ids = "{}";
    e.payload = "{}";
    ASSERT_OK(lead_repo_begin(&late_repo.base, &err));
    ASSERT_OK(lead_repo_event_append(&late_repo.base, &e, &err));
    ASSERT_OK(lead_repo_event_position(&late_repo.base, e.id, &p, &err)); /* takes 3 now */
    ASSERT_EQ(3, p);
    t_env_create(env, "B", "b@example.com", NULL, &l2);
    lead_repo_rollback(&late_repo.base);
    settle(env, &f);
    ASSERT_EQ(5, f.settled); /* 1, 2 (A), 3 (rolled back), 4, 5 (B) */
    ASSERT_EQ(4, read_all(env, &cursor, f.settled, NULL, 10, ids, 32));
    db_close(late);
    t_env_free(env);
}

/* ---- streams -------------------------------------------------------------------------------- */

/* The streams' store: the backend itself, or through the fault injector when a test armed
 * env->faults (the env's own reads, env->repo, never fail). */
static int
env_store_open(void *ctx, struct lead_repo **out, struct sp_error *err)
{
    struct t_env *env = ctx;

    (void)err;
    *out = env->faults.fail_at > 0 ? &env->frepo.base : env->repo;
    return SP_OK;
}

static void
env_store_close(void *ctx, struct lead_repo *r)
{
    (void)ctx;
    (void)r;
}

struct t_feed {
    struct t_env *env;
    struct sse_hub *hub;
    struct events_http eh;
    struct lead_feed_fence fence;
    struct arena *arena;
};

static struct t_feed *
feed_new(enum t_backend backend, size_t ring_frames)
{
    struct t_feed *tf = calloc(1, sizeof(*tf));

    tf->env = t_env_new(backend);
    tf->hub = sse_hub_new(ring_frames, 1 << 20, 0);
    tf->eh.hub = tf->hub;
    tf->eh.store.open = env_store_open;
    tf->eh.store.close = env_store_close;
    tf->eh.store.ctx = tf->env;
    tf->eh.heartbeat_ms = 30;
    tf->eh.retry_ms = 1500;
    tf->arena = arena_new();
    return tf;
}

static void
feed_free(struct t_feed *tf)
{
    sse_hub_free(tf->hub);
    arena_free(tf->arena);
    t_env_free(tf->env);
    free(tf);
}

/* One publishing round (until everything written is settled and published). */
static void
feed_round(struct t_feed *tf)
{
    struct sp_error err = {0};
    int64_t deadline = sp_mono_ms() + 10000;

    while (sp_mono_ms() < deadline) {
        ASSERT_OK(events_http_publish(tf->hub, tf->env->repo, &tf->fence, tf->arena, &err));
        if (tf->fence.mark == 0)
            return;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    ASSERT(!"the feed never settled");
}

/* GET /events with a query and Last-Event-ID; the response (a stream when 200). */
static void
open_stream(struct t_feed *tf, const char *lead_id, const char *last_event_id,
            struct http_response *resp)
{
    struct http_request req;

    memset(&req, 0, sizeof(req));
    memset(resp, 0, sizeof(*resp));
    req.method = "GET";
    req.path = "/events";
    req.arena = tf->env->arena;
    req.last_event_id = last_event_id;
    if (lead_id) {
        req.nquery = 1;
        req.query_keys[0] = "leadId";
        req.query_values[0] = lead_id;
    }
    events_http_stream(&tf->eh, &req, resp);
}

/* Reads the stream until `want` events came, or a ping did (nothing more within the heartbeat),
 * or its end; ids[] receives the events' ids, *pings the pings seen. Returns the number of
 * events. Every frame is checked: an event's id, type and JSON data, a ping, or the retry. */
static int
read_events(struct http_response *resp, int want, char ids[][SP_UUID_LEN + 1], int *pings,
            int *ended)
{
    static char text[1 << 16];
    size_t used = 0;
    int n = 0;

    *pings = 0;
    *ended = 0;
    while (n < want && *pings == 0) {
        char buf[4096];
        size_t len = 0;
        ASSERT_OK(resp->stream->read(resp->stream_ctx, buf, sizeof(buf), &len));
        if (len == 0) {
            *ended = 1;
            break;
        }
        ASSERT(used + len < sizeof(text));
        memcpy(text + used, buf, len);
        used += len;
        text[used] = '\0';
        for (;;) {
            char *end = strstr(text, "\n\n");
            size_t taken;
            if (end == NULL)
                break;
            *end = '\0';
            if (strncmp(text, "id: ", 4) == 0) {
                ASSERT(n < 64);
                memcpy(ids[n], text + 4, SP_UUID_LEN);
                ids[n][SP_UUID_LEN] = '\0';
                ASSERT(strncmp(text + 4 + SP_UUID_LEN, "\nevent: ", 8) == 0);
                ASSERT_CONTAINS(text, "\ndata: {\"id\":\"");
                n++;
            } else if (strcmp(text, ": ping") == 0) {
                (*pings)++;
            } else {
                ASSERT_STREQ("retry: 1500", text);
            }
            /* A byte loop, not memmove: valgrind takes the fortified memmove for a memcpy. */
            taken = (size_t)(end + 2 - text);
            used -= taken;
            for (size_t k = 0; k <= used; k++)
                text[k] = text[taken + k];
        }
    }
    return n;
}

static void
stream_close(struct http_response *resp)
{
    resp->stream->close(resp->stream_ctx);
}

TEST_ALL(unit_events_stream_in_order_and_resumed)
{
    struct t_feed *tf = feed_new(backend, 1024);
    struct http_response s1, s2;
    struct lead l1, l2, l3;
    char got[64][SP_UUID_LEN + 1], want[64][SP_UUID_LEN + 1];
    int pings, ended, n, nw;

    /* Before the stream: not sent to it (it starts after the newest settled event). */
    t_env_create(tf->env, "Old", "old@example.com", NULL, &l1);
    feed_round(tf);
    open_stream(tf, NULL, NULL, &s1);
    ASSERT_EQ(200, s1.status);
    ASSERT_STREQ("text/event-stream", s1.content_type);
    ASSERT(s1.stream != NULL);
    t_env_create(tf->env, "A", "a@example.com", "+15550000001", &l2);
    feed_round(tf);
    n = read_events(&s1, 3, got, &pings, &ended);
    nw = timeline(tf->env, l2.id, want, 64);
    ASSERT_EQ(3, nw);
    ASSERT_EQ(3, n);
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[i], got[i]);
    /* Drops after the first of A's events: the reconnection gets exactly the rest, then B's. */
    stream_close(&s1);
    t_env_create(tf->env, "B", "b@example.com", NULL, &l3);
    feed_round(tf);
    open_stream(tf, NULL, want[0], &s2);
    ASSERT_EQ(200, s2.status);
    n = read_events(&s2, 64, got, &pings, &ended);
    nw = timeline(tf->env, l3.id, want + 3, 61);
    ASSERT_EQ(4, n);
    ASSERT_EQ(1, pings); /* then silence: a heartbeat */
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[1 + i], got[i]);
    stream_close(&s2);
    feed_free(tf);
}

/* A resume older than the ring reads the store first, then the ring, without a gap or a
 * repeat at the seam; a stream that falls behind the ring does the same. */
TEST_ALL(unit_events_stream_catches_up_from_the_store)
{
    struct t_feed *tf = feed_new(backend, 4);
    struct http_response s;
    struct lead l[12];
    char got[64][SP_UUID_LEN + 1], want[64][SP_UUID_LEN + 1];
    int pings, ended, n, nw = 0;

    open_stream(tf, NULL, NULL, &s); /* a reader: rounds render */
    for (int i = 0; i < 12; i++) {
        char name[8], phone[16];
        snprintf(name, sizeof(name), "L%d", i);
        snprintf(phone, sizeof(phone), "+155500000%02d", i);
        t_env_create(tf->env, name, NULL, phone, &l[i]); /* 2 events each */
        nw += timeline(tf->env, l[i].id, want + nw, 64 - nw);
    }
    feed_round(tf); /* 24 events through a ring of 4: the stream is behind it */
    n = read_events(&s, 64, got, &pings, &ended);
    ASSERT_EQ(24, n);
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[i], got[i]);
    stream_close(&s);
    /* Resumed from the fifth event: 19 more, the first 15 from the store. */
    open_stream(tf, NULL, want[4], &s);
    n = read_events(&s, 64, got, &pings, &ended);
    ASSERT_EQ(19, n);
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[5 + i], got[i]);
    stream_close(&s);
    feed_free(tf);
}

TEST_ALL(unit_events_stream_one_lead)
{
    struct t_feed *tf = feed_new(backend, 1024);
    struct http_response s, r;
    struct lead a, b;
    char got[64][SP_UUID_LEN + 1], want[64][SP_UUID_LEN + 1];
    int pings, ended, n;

    t_env_create(tf->env, "A", "a@example.com", NULL, &a);
    feed_round(tf);
    open_stream(tf, a.id, NULL, &s);
    ASSERT_EQ(200, s.status);
    t_env_create(tf->env, "B", "b@example.com", "+15550000002", &b);
    /* A's reply: its events only reach this stream. */
    {
        struct reply_input in = {a.id, CHANNEL_EMAIL, "{\"body\":\"hi\"}"};
        char mid[SP_UUID_LEN + 1];
        struct sp_error err = {0};
        ASSERT_OK(leads_reply(&tf->env->deps, &in, tf->env->arena, mid, &err));
    }
    feed_round(tf);
    n = read_events(&s, 64, got, &pings, &ended);
    ASSERT(n >= 1);
    ASSERT_EQ(n + 2, timeline(tf->env, a.id, want, 64)); /* lead_added, message_queued before */
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[2 + i], got[i]);
    stream_close(&s);
    /* Resumed on the lead from its first event: the rest of its own. */
    open_stream(tf, a.id, want[0], &r);
    n = read_events(&r, 64, got, &pings, &ended);
    ASSERT_EQ(timeline(tf->env, a.id, want, 64) - 1, n);
    stream_close(&r);
    feed_free(tf);
}

TEST(unit_events_stream_refusals)
{
    struct t_feed *tf = feed_new(T_MEM, 16);
    struct http_response r;
    struct http_request req;
    struct lead a;

    t_env_create(tf->env, "A", "a@example.com", NULL, &a);
    open_stream(tf, "nope", NULL, &r);
    ASSERT_EQ(400, r.status);
    ASSERT_CONTAINS(r.body, "leadId must be a UUID");
    open_stream(tf, "2728542f-1069-401c-a54f-4ab8a3a46a06", NULL, &r);
    ASSERT_EQ(404, r.status);
    open_stream(tf, NULL, "2728542f-1069-401c-a54f-4ab8a3a46a06", &r);
    ASSERT_EQ(404, r.status);
    ASSERT_CONTAINS(r.body, "Last-Event-ID: no such event");
    open_stream(tf, NULL, "17", &r);
    ASSERT_EQ(400, r.status);
    ASSERT_CONTAINS(r.body, "Last-Event-ID must be a UUID");
    memset(&req, 0, sizeof(req));
    memset(&r, 0, sizeof(r));
    req.method = "GET";
    req.path = "/events";
    req.arena = tf->env->arena;
    req.nquery = 1;
    req.query_keys[0] = "since";
    req.query_values[0] = "1";
    events_http_stream(&tf->eh, &req, &r);
    ASSERT_EQ(400, r.status);
    ASSERT_CONTAINS(r.body, "property since should not exist");
    ASSERT(r.stream == NULL);
    ASSERT_EQ(0, sse_hub_readers(tf->hub)); /* refusals leave no reader behind */
    /* An empty Last-Event-ID (an EventSource that saw no id yet) is no Last-Event-ID. */
    open_stream(tf, a.id, "", &r);
    ASSERT_EQ(200, r.status);
    stream_close(&r);
    ASSERT_EQ(0, sse_hub_readers(tf->hub));
    feed_free(tf);
}

TEST(unit_events_stream_heartbeat_and_close)
{
    struct t_feed *tf = feed_new(T_MEM, 16);
    struct http_response s;
    char got[4][SP_UUID_LEN + 1];
    int pings, ended;

    open_stream(tf, NULL, NULL, &s);
    ASSERT_EQ(0, read_events(&s, 1, got, &pings, &ended));
    ASSERT_EQ(1, pings);
    ASSERT_EQ(0, read_events(&s, 1, got, &pings, &ended));
    ASSERT_EQ(1, pings);
    sse_hub_close(tf->hub); /* the process stops: the stream ends at once */
    ASSERT_EQ(0, read_events(&s, 1, got, &pings, &ended));
    ASSERT_EQ(1, ended);
    stream_close(&s);
    feed_free(tf);
}

/* The store fails while a stream is behind the ring: the stream stays open (pings), keeps its
 * place, and once the store answers again it continues exactly where it was. */
TEST(unit_events_stream_survives_a_store_failure)
{
    struct t_feed *tf = feed_new(T_MEM, 4);
    struct http_response s;
    struct lead l[6];
    char got[64][SP_UUID_LEN + 1], want[64][SP_UUID_LEN + 1];
    int pings, ended, n = 0, nw = 0;
    int64_t deadline;

    for (int i = 0; i < 6; i++) {
        char name[8], phone[16];
        snprintf(name, sizeof(name), "L%d", i);
        snprintf(phone, sizeof(phone), "+155500001%02d", i);
        t_env_create(tf->env, name, NULL, phone, &l[i]);
        nw += timeline(tf->env, l[i].id, want + nw, 64 - nw);
    }
    open_stream(tf, NULL, NULL, &s); /* a reader, so the round renders */
    stream_close(&s);
    feed_round(tf);
    open_stream(tf, NULL, want[0], &s); /* behind a ring of 4: it must read the store */
    ASSERT_EQ(200, s.status);
    fault_plan_arm(&tf->env->faults, 1, SP_EUNAVAIL);
    tf->env->faults.sticky = 1;
    ASSERT_EQ(0, read_events(&s, 64, got, &pings, &ended));
    ASSERT_EQ(1, pings);
    ASSERT_EQ(0, ended);
    ASSERT(tf->env->faults.injected >= 1);
    tf->env->faults.fail_at = 0; /* the store is back */
    deadline = sp_mono_ms() + 5000;
    while (n < nw - 1 && sp_mono_ms() < deadline)
        n += read_events(&s, 64 - n, got + n, &pings, &ended);
    ASSERT_EQ(nw - 1, n);
    for (int i = 0; i < n; i++)
        ASSERT_STREQ(want[1 + i], got[i]);
    stream_close(&s);
    feed_free(tf);
}

/* A row the feed cannot read (an event type this build does not know: a newer process wrote
 * it) is left out; it never stops the feed, whatever the page size. */
TEST_SQL(unit_event_feed_skips_an_unknown_type)
{
    DB_STMT_SAME(insert, "INSERT INTO lead_events (id, lead_id, type, correlation_ids, payload,"
                         " created_at) VALUES ($1, $2, 'from_the_future', '{}', '{}', $3)");
    struct t_env *env = t_env_new(backend);
    static struct lead_feed_fence f;
    struct sp_error err = {0};
    struct lead a, b;
    char all[32][SP_UUID_LEN + 1], want[32][SP_UUID_LEN + 1];
    int64_t cursor = 0;
    int nw;

    memset(&f, 0, sizeof(f));
    t_env_create(env, "A", "a@example.com", NULL, &a);
    ASSERT_OK(db_exec(
        env->conn, &insert,
        DB_ARGS(db_text("01930000-0000-7000-8000-0000000000ff"), db_text(a.id), db_time(T_NOW)),
        NULL, &err));
    t_env_create(env, "B", "b@example.com", NULL, &b);
    settle(env, &f);
    nw = timeline(env, b.id, want, 32);
    for (int max = 1; max <= 3; max++) {
        int n;
        cursor = 0;
        n = read_all(env, &cursor, f.settled, NULL, max, all, 32);
        ASSERT_EQ(4, n); /* A's two, B's two: the unknown one left out */
        ASSERT_STREQ(want[0], all[2]);
        ASSERT_STREQ(want[nw - 1], all[3]);
    }
    t_env_free(env);
}

/* A stream caught up with the hub hands out the next publications no sooner than
 * EVENTS_COALESCE_MS after its last bytes, all of them in one read: a thousand streams are not
 * each woken and written to at every commit. (A lower bound on time, never an upper one.) */
TEST(unit_events_stream_coalesces_publications)
{
    struct t_feed *tf = feed_new(T_MEM, 1024);
    struct http_response s;
    struct lead a, b, c;
    char got[64][SP_UUID_LEN + 1];
    char buf[1 << 16];
    size_t len = 0;
    int pings, ended;
    int64_t t0;

    open_stream(tf, NULL, NULL, &s);
    ASSERT_EQ(200, s.status);
    t_env_create(tf->env, "A", "a@example.com", NULL, &a);
    feed_round(tf);
    t0 = sp_mono_ms(); /* before the stream's last bytes: a lower bound holds from here */
    ASSERT_EQ(2, read_events(&s, 2, got, &pings, &ended)); /* caught up */
    t_env_create(tf->env, "B", "b@example.com", NULL, &b);
    feed_round(tf);
    t_env_create(tf->env, "C", "c@example.com", NULL, &c);
    feed_round(tf);
    ASSERT_OK(s.stream->read(s.stream_ctx, buf, sizeof(buf) - 1, &len));
    ASSERT(sp_mono_ms() - t0 >= EVENTS_COALESCE_MS);
    buf[len] = '\0';
    ASSERT_CONTAINS(buf, b.id);
    ASSERT_CONTAINS(buf, c.id); /* both publications in the one read */
    stream_close(&s);
    feed_free(tf);
}

/* Streams take turns at the gate (core/gate.h) to copy: a stream whose client stopped reading
 * right after a read (its send blocked, its turn held) keeps the others waiting no longer than
 * the gate's lease, and its close gives back nothing it no longer holds. */
TEST(unit_events_stream_turns_a_stalled_stream_holds_no_more_than_its_lease)
{
    struct t_feed *tf = feed_new(T_MEM, 1024);
    struct sp_error err = {0};
    struct http_response stalled, other;
    struct lead a;
    char got[64][SP_UUID_LEN + 1];
    int pings, ended;
    int64_t t0;

    ASSERT_OK(gate_new(1, 200, &tf->eh.gate, &err));
    open_stream(tf, NULL, NULL, &stalled);
    open_stream(tf, NULL, NULL, &other);
    t_env_create(tf->env, "A", "a@example.com", NULL, &a);
    feed_round(tf);
    t0 = sp_mono_ms(); /* the stalled stream's turn starts after this */
    ASSERT_EQ(2, read_events(&stalled, 2, got, &pings, &ended)); /* and reads no more */
    ASSERT_EQ(0, gate_waiters(tf->eh.gate));
    ASSERT_EQ(2, read_events(&other, 2, got, &pings, &ended));
    ASSERT(sp_mono_ms() - t0 >= 200);           /* it did wait for the lease (a lower bound only) */
    stream_close(&stalled);                     /* a stale turn: nothing given back, */
    ASSERT_EQ(0, gate_slots_free(tf->eh.gate)); /* other holds the slot */
    stream_close(&other);
    ASSERT_EQ(1, gate_slots_free(tf->eh.gate));
    ASSERT_EQ(0, gate_waiters(tf->eh.gate));
    gate_free(tf->eh.gate);
    feed_free(tf);
}
