/* test_queue_redis.c: the BullMQ-layout Redis queue and its outbox, against a real Redis
 * (the file $SALESPAD_REDIS_URL_FILE names it; CTest's `redis` fixture writes it) and a real
 * SQLite database. Every test uses a queue name of its own. Without a server the tests are
 * skipped, except under CI=true, where they fail. */
#include "t.h"

#include "fakes/t_env.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/queue.h"
#include "infra/db.h"
#include "infra/db_sqlite.h"
#include "infra/migrate.h"
#include "core/queue_signal.h"
#include "infra/outbox_relay.h"
#include "infra/queue_redis.h"
#include "infra/queue_sql.h"
#include "infra/redis.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REDIS_URL_FILE_ENV "SALESPAD_REDIS_URL_FILE"

struct rq {
    struct db_sqlite *sq;
    struct db_conn *conn;
    struct redis *r;
    struct queue_redis_shared sh;
    struct queue_signal sig;
    struct queue_redis q;
    struct arena *a;
    char name[64];
};

_Noreturn static void
redis_unavailable(const char *why)
{
    const char *ci = getenv("CI");

    if (ci != NULL && strcmp(ci, "true") == 0)
        t_fail(__FILE__, __LINE__, "Redis test without a server (CI=true): %s", why);
    t_skip("no Redis server: %s (run through ctest, or set %s)", why, REDIS_URL_FILE_ENV);
}

static void
read_url(char *url, size_t size)
{
    const char *path = getenv(REDIS_URL_FILE_ENV);
    FILE *f;
    size_t n;

    if (path == NULL || path[0] == '\0')
        redis_unavailable(REDIS_URL_FILE_ENV " is not set");
    f = fopen(path, "r");
    if (f == NULL)
        redis_unavailable(strerror(errno));
    n = fread(url, 1, size - 1, f);
    fclose(f);
    url[n] = '\0';
    while (n > 0 && (url[n - 1] == '\n' || url[n - 1] == ' '))
        url[--n] = '\0';
}

static void
rq_open(struct rq *e, int keep_completed, int max_stalled)
{
    static int seq;
    char url[512];
    struct sp_error err = {0};

    memset(e, 0, sizeof(*e));
    read_url(url, sizeof(url));
    log_setup(SP_LOG_ERROR, LOG_TEXT);
    ASSERT_OK(db_sqlite_new("t.db", &e->sq, &err));
    ASSERT_OK(db_sqlite_connect(e->sq, &e->conn, &err));
    ASSERT_OK(db_migrate(e->conn, sp_migrations_sqlite, sp_migrations_sqlite_count, NULL, &err));
    ASSERT_OK(redis_new(url, bullmq_scripts, BULLMQ_NSCRIPTS, &e->r, &err));
    if (redis_ping(e->r, &err) != SP_OK)
        redis_unavailable(err.msg);
    snprintf(e->name, sizeof(e->name), "tq%d_%d_%lld", (int)getpid(), seq++,
             (long long)sp_mono_ms());
    queue_signal_init(&e->sig);
    queue_redis_shared_init(&e->sh, "bull", e->name, keep_completed, 60000, max_stalled, 30000,
                            &e->sig);
    queue_redis_init(&e->q, &e->sh, e->conn, e->r);
    e->a = arena_new();
}

static void
rq_close(struct rq *e)
{
    queue_redis_cleanup(&e->q);
    redis_free(e->r);
    db_close(e->conn);
    db_sqlite_free(e->sq);
    queue_redis_shared_cleanup(&e->sh);
    queue_signal_cleanup(&e->sig);
    arena_free(e->a);
}

/* "%P<id><suffix>": a key of one job (the prefix is filled in by rcmd). */
static const char *
jkey(struct rq *e, const char *id, const char *suffix)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%%P%s%s", id, suffix);
    return arena_strdup(e->a, buf);
}

/* A Redis command on the test's queue: "%P" in an argument becomes the key prefix. */
static struct redis_value *
rcmd(struct rq *e, const char *first, ...)
{
    const char *argv[16];
    char bufs[16][256];
    int argc = 0;
    va_list ap;
    struct redis_value *rep = NULL;
    struct sp_error err = {0};

    va_start(ap, first);
    for (const char *s = first; s && argc < 16; s = va_arg(ap, const char *), argc++) {
        const char *p = strstr(s, "%P");
        if (p)
            snprintf(bufs[argc], sizeof(bufs[argc]), "%.*s%s%s", (int)(p - s), s, e->sh.prefix,
                     p + 2);
        else
            snprintf(bufs[argc], sizeof(bufs[argc]), "%s", s);
        argv[argc] = bufs[argc];
    }
    va_end(ap);
    if (redis_command(e->r, argc, argv, NULL, &rep, &err) != SP_OK)
        t_fail(__FILE__, __LINE__, "redis %s: %s", first, err.msg);
    return rep;
}

static long long
rint_(struct rq *e, const char *a0, const char *a1, const char *a2)
{
    struct redis_value *rep = rcmd(e, a0, a1, a2, NULL);
    long long v = rep->type == RV_INT   ? rep->integer
                  : rep->type == RV_STR ? strtoll(rep->str, NULL, 10)
                                        : -999;
    redis_value_free(rep);
    return v;
}

/* HGET P<id> field into the arena ("" when missing). */
static const char *
hget(struct rq *e, const char *id, const char *field)
{
    char key[200];
    struct redis_value *rep;
    const char *v;

    snprintf(key, sizeof(key), "%%P%s", id);
    rep = rcmd(e, "HGET", key, field, NULL);
    v = arena_strdup(e->a, rep->type == RV_STR ? rep->str : "");
    redis_value_free(rep);
    return v;
}

static void
enqueue(struct rq *e, const char *message_id, char *id)
{
    struct job_spec spec = {
        "send-message", message_id, NULL, "{\"messageId\":\"m\",\"leadId\":\"l\"}", 3, 1000};
    struct sp_error err = {0};

    ASSERT_OK(db_begin(e->conn, &err));
    ASSERT_OK(job_queue_enqueue(&e->q.base, &spec, sp_clock_now_ms(&sp_clock_real), id, &err));
    ASSERT_OK(db_commit(e->conn, &err));
}

static int
relay(struct rq *e)
{
    struct sp_error err = {0};
    int n = -1;

    ASSERT_OK(outbox_relay_batch(e->conn, e->r, &e->sh, 100, &n, &err));
    return n;
}

static void
reserve(struct rq *e, int64_t now, int64_t lease, struct job *j, int *found, int64_t *next_due)
{
    struct sp_error err = {0};

    ASSERT_OK(db_begin(e->conn, &err));
    ASSERT_OK(job_queue_reserve(&e->q.base, now, lease, 1, e->a, j, found, next_due, &err));
    ASSERT_OK(db_commit(e->conn, &err));
    ASSERT_OK(job_queue_after_commit(&e->q.base, &err));
}

static const char *
outbox_state(struct rq *e, const char *id)
{
    DB_STMT_SAME(sql, "SELECT state, attempts_made FROM outbox WHERE id = $1");
    struct db_rows rows;
    struct sp_error err = {0};

    ASSERT_OK(db_query(e->conn, &sql, DB_ARGS(db_text(id)), e->a, &rows, &err));
    ASSERT_EQ(1, rows.nrows);
    {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s/%s", db_cell(&rows, 0, 0), db_cell(&rows, 0, 1));
        return arena_strdup(e->a, buf);
    }
}

/* ---- tests -------------------------------------------------------------------------------- */

static const char *
lock_of(struct rq *e, const char *id)
{
    struct redis_value *rep = rcmd(e, "GET", jkey(e, id, ":lock"), NULL);
    const char *v = arena_strdup(e->a, rep->type == RV_STR ? rep->str : "");
    redis_value_free(rep);
    return v;
}

/* Ends an attempt in a unit of work, as the worker does. */
enum end { END_COMPLETE, END_RETRY, END_FAIL };

static void
end_attempt(struct rq *e, struct job *j, enum end how, int64_t now, int64_t run_at)
{
    struct sp_error err = {0};

    ASSERT_OK(db_begin(e->conn, &err));
    j->result = "{\"ok\":true}";
    if (how == END_COMPLETE)
        ASSERT_OK(job_queue_complete(&e->q.base, j, now, &err));
    else if (how == END_RETRY)
        ASSERT_OK(job_queue_retry(&e->q.base, j, now, run_at, "boom", &err));
    else
        ASSERT_OK(job_queue_fail(&e->q.base, j, now, "gone", &err));
    ASSERT_OK(job_queue_before_commit(&e->q.base, &err));
    ASSERT_OK(db_commit(e->conn, &err));
    ASSERT_OK(job_queue_after_commit(&e->q.base, &err));
}

/* Reserves the one ready job (fails the test when there is none). */
static void
take(struct rq *e, int64_t now, int64_t lease, struct job *j)
{
    int found = 0;
    int64_t next_due = 0;

    reserve(e, now, lease, j, &found, &next_due);
    ASSERT_EQ(1, found);
}

TEST(unit_queue_redis_relay_publishes_each_outbox_row_once_redis)
{
    DB_STMT_SAME(unrelay, "UPDATE outbox SET relayed_at = NULL");
    struct rq e;
    char id[JOB_ID_MAX], id2[JOB_ID_MAX];
    struct sp_error err = {0};

    rq_open(&e, -1, 1);
    enqueue(&e, "01a21df5-17c0-742c-81de-35b9d32a2d63", id);
    ASSERT_STREQ("01a21df5-17c0-742c-81de-35b9d32a2d63", id); /* job id = message id */
    enqueue(&e, NULL, id2);
    ASSERT_EQ(2, relay(&e));
    ASSERT_EQ(0, relay(&e)); /* marked relayed */
    ASSERT_EQ(2, rint_(&e, "GET", "%Pid", NULL));
    ASSERT_EQ(2, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_EQ(0, rint_(&e, "ZSCORE", "%Pmarker", "0"));
    ASSERT_STREQ("send-message", hget(&e, id, "name"));
    ASSERT_STREQ("0", hget(&e, id, "delay"));
    ASSERT_STREQ("0", hget(&e, id, "priority"));
    ASSERT_CONTAINS(hget(&e, id, "opts"), "\"attempts\":3");
    ASSERT_CONTAINS(hget(&e, id, "opts"),
                    "\"backoff\":{\"type\":\"exponential\",\"delay\":1000,\"jitter\":0.2}");
    ASSERT_STREQ("{\"messageId\":\"m\",\"leadId\":\"l\"}", hget(&e, id, "data"));
    ASSERT_EQ(10000, rint_(&e, "HGET", "%Pmeta", "opts.maxLenEvents"));
    /* Published again (a crash between publish and mark): still one job. */
    ASSERT_OK(db_exec(e.conn, &unrelay, DB_NOARGS, NULL, &err));
    ASSERT_EQ(2, relay(&e));
    ASSERT_EQ(2, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_EQ(4, rint_(&e, "GET", "%Pid", NULL)); /* BullMQ counts every add */
    ASSERT_STREQ("waiting/0", outbox_state(&e, id));
    rq_close(&e);
}

TEST(unit_queue_redis_fetch_then_complete_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j, none;
    int found = 1;
    int64_t next_due = -1, now = sp_clock_now_ms(&sp_clock_real);

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    take(&e, now, 30000, &j);
    ASSERT_STREQ(id, j.id);
    ASSERT_STREQ("{\"messageId\":\"m\",\"leadId\":\"l\"}", j.data);
    ASSERT_EQ(3, j.max_attempts);
    ASSERT_EQ(0, j.attempts_made);
    ASSERT_EQ(1000, j.backoff_ms);
    ASSERT(j.backoff_type == JOB_BACKOFF_EXPONENTIAL);
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_STREQ("1", hget(&e, id, "ats"));
    ASSERT_EQ(now, strtoll(hget(&e, id, "processedOn"), NULL, 10));
    ASSERT_STREQ(j.lease, lock_of(&e, id));
    ASSERT_STREQ("active/0", outbox_state(&e, id));
    reserve(&e, now, 30000, &none, &found, &next_due); /* nothing else is ready */
    ASSERT_EQ(0, found);
    ASSERT_EQ(0, next_due);

    end_attempt(&e, &j, END_COMPLETE, now + 5, 0);
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_EQ(now + 5, rint_(&e, "ZSCORE", "%Pcompleted", id));
    ASSERT_STREQ("1", hget(&e, id, "atm"));
    ASSERT_EQ(now + 5, strtoll(hget(&e, id, "finishedOn"), NULL, 10));
    ASSERT_STREQ("{\"ok\":true}", hget(&e, id, "returnvalue"));
    ASSERT_STREQ("", lock_of(&e, id));
    ASSERT_STREQ("completed/1", outbox_state(&e, id));
    rq_close(&e);
}

TEST(unit_queue_redis_retry_goes_to_delayed_with_bullmq_score_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j, none;
    int found = 1;
    int64_t next_due = 0, now = sp_clock_now_ms(&sp_clock_real);
    struct redis_value *rep;

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    take(&e, now, 30000, &j);
    end_attempt(&e, &j, END_RETRY, now, now + 60000);
    rep = rcmd(&e, "ZSCORE", "%Pdelayed", id, NULL);
    ASSERT(rep->type == RV_STR);
    ASSERT_EQ(now + 60000, strtoll(rep->str, NULL, 10) / 4096); /* due = floor(score / 4096) */
    redis_value_free(rep);
    ASSERT_EQ(now + 60000, rint_(&e, "ZSCORE", "%Pmarker", "1"));
    ASSERT_STREQ("60000", hget(&e, id, "delay"));
    ASSERT_STREQ("1", hget(&e, id, "atm"));
    ASSERT_STREQ("boom", hget(&e, id, "failedReason"));
    ASSERT_STREQ("[\"boom\"]", hget(&e, id, "stacktrace"));
    ASSERT_STREQ("delayed/1", outbox_state(&e, id));
    /* Not due yet: nothing to take, and the next due time is known. */
    reserve(&e, now + 59999, 30000, &none, &found, &next_due);
    ASSERT_EQ(0, found);
    ASSERT_EQ(now + 60000, next_due);
    /* Due: promoted and taken, with its attempts so far. */
    take(&e, now + 60000, 30000, &j);
    ASSERT_STREQ(id, j.id);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_STREQ("0", hget(&e, id, "delay"));
    ASSERT_EQ(0, rint_(&e, "ZCARD", "%Pdelayed", NULL));
    rq_close(&e);
}

TEST(unit_queue_redis_fail_is_final_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    int64_t now = sp_clock_now_ms(&sp_clock_real);
    struct redis_value *rep;
    int exhausted = 0;

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    for (int attempt = 1; attempt <= 2; attempt++) {
        take(&e, now, 30000, &j);
        end_attempt(&e, &j, END_RETRY, now, now); /* no backoff: straight back to wait */
    }
    take(&e, now, 30000, &j);
    ASSERT_EQ(2, j.attempts_made);
    end_attempt(&e, &j, END_FAIL, now + 1, 0);
    ASSERT_EQ(now + 1, rint_(&e, "ZSCORE", "%Pfailed", id));
    ASSERT_STREQ("3", hget(&e, id, "atm"));
    ASSERT_STREQ("gone", hget(&e, id, "failedReason"));
    ASSERT_STREQ("[\"boom\",\"boom\",\"gone\"]", hget(&e, id, "stacktrace"));
    ASSERT_STREQ("failed/3", outbox_state(&e, id));
    rep = rcmd(&e, "XRANGE", "%Pevents", "-", "+", NULL);
    for (size_t i = 0; i < rep->n; i++) {
        const struct redis_value *f = &rep->items[i].items[1];
        if (strcmp(f->items[1].str, "retries-exhausted") == 0)
            exhausted++;
    }
    redis_value_free(rep);
    ASSERT_EQ(1, exhausted);
    rq_close(&e);
}

TEST(unit_queue_redis_lost_lock_is_a_conflict_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    const struct job *jp = &j;
    int lost = -1;
    struct sp_error err = {0};
    int64_t now = sp_clock_now_ms(&sp_clock_real);

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    take(&e, now, 30000, &j);
    ASSERT_OK(job_queue_fence(&e.q.base, &jp, 1, &lost, &err));
    ASSERT_EQ(0, lost);
    redis_value_free(rcmd(&e, "SET", jkey(&e, id, ":lock"), "someone-else", NULL));
    ASSERT_OK(job_queue_fence(&e.q.base, &jp, 1, &lost, &err));
    ASSERT_EQ(1, lost);
    /* A stale outcome reaching Redis anyway changes nothing there. */
    end_attempt(&e, &j, END_COMPLETE, now, 0);
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_EQ(0, rint_(&e, "ZCARD", "%Pcompleted", NULL));
    rq_close(&e);
}

TEST(unit_queue_redis_rollback_gives_reserved_jobs_back_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    int found = 0;
    int64_t next_due = 0, now = sp_clock_now_ms(&sp_clock_real);
    struct sp_error err = {0};

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    ASSERT_OK(db_begin(e.conn, &err));
    ASSERT_OK(job_queue_reserve(&e.q.base, now, 30000, 1, e.a, &j, &found, &next_due, &err));
    ASSERT_EQ(1, found);
    db_rollback(e.conn);
    job_queue_after_rollback(&e.q.base);
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_STREQ("0", hget(&e, id, "ats"));
    ASSERT_STREQ("", lock_of(&e, id));
    ASSERT_STREQ("waiting/0", outbox_state(&e, id));
    take(&e, now, 30000, &j);
    ASSERT_STREQ(id, j.id);
    rq_close(&e);
}

/* Runs the stalled check now, whatever ran before. */
static void
stalled_check(struct rq *e)
{
    struct sp_error err = {0};

    redis_value_free(rcmd(e, "DEL", "%Pstalled-check", NULL));
    atomic_store(&e->sh.next_stalled_check, 0);
    ASSERT_OK(job_queue_maintain(&e->q.base, sp_clock_now_ms(&sp_clock_real), &err));
}

TEST(unit_queue_redis_stalled_job_is_recovered_then_failed_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j, again;
    int64_t now = sp_clock_now_ms(&sp_clock_real);
    struct redis_value *rep;
    int stalled_events = 0;

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    take(&e, now - 1000, 30000, &j); /* the dead worker took it a second ago */
    stalled_check(&e);               /* marks it */
    ASSERT_EQ(1, rint_(&e, "SISMEMBER", "%Pstalled", id));
    stalled_check(&e); /* its lock is alive: nothing happens */
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pactive", NULL));
    /* The worker dies: its lock expires. */
    redis_value_free(rcmd(&e, "DEL", jkey(&e, id, ":lock"), NULL));
    stalled_check(&e);
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_STREQ("1", hget(&e, id, "stc"));
    ASSERT_STREQ("", hget(&e, id, "atm")); /* a stall is not an attempt */
    ASSERT_STREQ("waiting/0", outbox_state(&e, id));
    rep = rcmd(&e, "XRANGE", "%Pevents", "-", "+", NULL);
    for (size_t i = 0; i < rep->n; i++)
        stalled_events += strcmp(rep->items[i].items[1].items[1].str, "stalled") == 0;
    redis_value_free(rep);
    ASSERT_EQ(1, stalled_events);
    /* Taken again, and its worker dies again: more than QUEUE_MAX_STALLED=1 stalls fail it. */
    take(&e, now - 1000, 30000, &again);
    ASSERT_EQ(1, again.stalled_count);
    stalled_check(&e);
    redis_value_free(rcmd(&e, "DEL", jkey(&e, id, ":lock"), NULL));
    stalled_check(&e);
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT(rint_(&e, "ZSCORE", "%Pfailed", id) > 0);
    ASSERT_STREQ("job stalled more than allowable limit", hget(&e, id, "failedReason"));
    ASSERT_CONTAINS(outbox_state(&e, id), "failed/");
    rq_close(&e);
}

TEST(unit_queue_redis_keeps_the_newest_completed_jobs_redis)
{
    struct rq e;
    char ids[3][JOB_ID_MAX];
    struct job j;
    int64_t now = sp_clock_now_ms(&sp_clock_real);

    rq_open(&e, 2, 1);
    for (int i = 0; i < 3; i++)
        enqueue(&e, NULL, ids[i]);
    ASSERT_EQ(3, relay(&e));
    ASSERT_CONTAINS(hget(&e, ids[0], "opts"), "\"removeOnComplete\":2");
    for (int i = 0; i < 3; i++) {
        take(&e, now, 30000, &j);
        end_attempt(&e, &j, END_COMPLETE, now + i, 0);
    }
    ASSERT_EQ(2, rint_(&e, "ZCARD", "%Pcompleted", NULL));
    ASSERT_EQ(0, rint_(&e, "EXISTS", jkey(&e, ids[0], ""), NULL));
    ASSERT_EQ(1, rint_(&e, "EXISTS", jkey(&e, ids[2], ""), NULL));
    rq_close(&e);
}

/* ---- replies (redis.h's copy of the client library's reply) ------------------------------ */

TEST(unit_redis_reply_keeps_every_type_and_nesting_redis)
{
    struct rq e;
    struct redis_value *rep = NULL;
    struct sp_error err = {0};
    const char *lua = "return {7, 'a\\0b', false, {-2, 'x'}, redis.status_reply('OK'),"
                      " redis.error_reply('ERR nested'), {}}";

    rq_open(&e, -1, 1);
    ASSERT_OK(redis_command(e.r, 3, (const char *[]){"EVAL", lua, "0"}, NULL, &rep, &err));
    ASSERT_EQ(RV_ARR, rep->type);
    ASSERT_EQ(7, rep->n);
    ASSERT_EQ(RV_INT, rep->items[0].type);
    ASSERT_EQ(7, rep->items[0].integer);
    ASSERT_STREQ("", rep->items[0].str);
    ASSERT_EQ(RV_STR, rep->items[1].type);
    ASSERT_EQ(3, rep->items[1].len); /* binary-safe: the NUL is kept */
    ASSERT(memcmp(rep->items[1].str, "a\0b", 4) == 0);
    ASSERT_EQ(RV_NIL, rep->items[2].type);
    ASSERT(rep->items[2].items == NULL);
    ASSERT_EQ(RV_ARR, rep->items[3].type);
    ASSERT_EQ(2, rep->items[3].n);
    ASSERT_EQ(-2, rep->items[3].items[0].integer);
    ASSERT_STREQ("x", rep->items[3].items[1].str);
    ASSERT_EQ(RV_STATUS, rep->items[4].type);
    ASSERT_STREQ("OK", rep->items[4].str);
    ASSERT_EQ(RV_ERR, rep->items[5].type);
    ASSERT_STREQ("ERR nested", rep->items[5].str);
    ASSERT_EQ(RV_ARR, rep->items[6].type);
    ASSERT_EQ(0, rep->items[6].n);
    redis_value_free(rep);
    /* A top-level error reply is an error code, with no reply. */
    ASSERT_EQ(SP_EINTERNAL,
              redis_command(e.r, 3,
                            (const char *[]){"EVAL", "return redis.error_reply('BOOM')", "0"}, NULL,
                            &rep, &err));
    ASSERT(rep == NULL);
    ASSERT_CONTAINS(err.msg, "BOOM");
    rq_close(&e);
}

TEST(unit_redis_reply_over_the_cap_is_too_large_and_the_connection_goes_on_redis)
{
    struct rq e;
    struct redis_value *rep = NULL, *replies[2] = {NULL, NULL};
    struct redis_call calls[2];
    struct sp_error err = {0};
    char key[300];
    const size_t need = sizeof(struct redis_value) + 11; /* GET of 10 bytes: value, bytes, NUL */

    rq_open(&e, -1, 1);
    snprintf(key, sizeof(key), "%sbig", e.sh.prefix);
    redis_value_free(rcmd(&e, "SET", "%Pbig", "0123456789", NULL));
    redis_set_reply_max(e.r, need);
    ASSERT_OK(redis_command(e.r, 2, (const char *[]){"GET", key}, NULL, &rep, &err));
    ASSERT_EQ(10, rep->len);
    ASSERT_STREQ("0123456789", rep->str);
    redis_value_free(rep);
    redis_set_reply_max(e.r, need - 1);
    ASSERT_EQ(SP_ETOOLARGE, redis_command(e.r, 2, (const char *[]){"GET", key}, NULL, &rep, &err));
    ASSERT(rep == NULL);
    ASSERT_CONTAINS(err.msg, "larger than");
    /* Pipelined: a too-large reply is NULL, and the replies after it are still read. */
    for (int i = 0; i < 2; i++)
        bullmq_extend_call(e.sh.prefix, "no-such-job", "t", "1000", &calls[i]);
    redis_set_reply_max(e.r, 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_ETOOLARGE, redis_pipeline(e.r, calls, 2, replies, &err));
    ASSERT(replies[0] == NULL && replies[1] == NULL);
    redis_set_reply_max(e.r, 0); /* back to REDIS_VALUE_MAX: the connection is in step */
    sp_error_clear(&err);
    ASSERT_OK(redis_pipeline(e.r, calls, 2, replies, &err));
    ASSERT_EQ(RV_INT, replies[0]->type);
    ASSERT_EQ(RV_INT, replies[1]->type);
    redis_values_free(replies, 2);
    ASSERT_EQ(10, rint_(&e, "STRLEN", "%Pbig", NULL));
    rq_close(&e);
}

/* ---- the worker on the Redis queue ------------------------------------------------------- */

/* A slow provider: each send moves the clock past half the lease; the first one also makes the
 * lock of the other job someone else's (as if it had expired and been taken). */
struct slow_sender {
    struct sender base;
    struct t_env *env;
    struct rq *rq;
    int calls;
    int steal_own; /* the send's own job loses its lock instead */
    char first[40];
};

static int
slow_send(struct sender *s, const struct send_request *req, struct arena *a,
          const char **provider_id, struct sp_error *err)
{
    struct slow_sender *ss = (struct slow_sender *)s;
    struct redis_value *rep;

    (void)a;
    (void)err;
    if (ss->calls++ == 0) {
        snprintf(ss->first, sizeof(ss->first), "%s", req->message_id);
        /* the other job of the lead: its lock goes to another worker */
        rep = rcmd(ss->rq, "LRANGE", "%Pactive", "0", "-1", NULL);
        for (size_t i = 0; i < rep->n; i++)
            if ((strcmp(rep->items[i].str, req->message_id) == 0) == ss->steal_own)
                redis_value_free(
                    rcmd(ss->rq, "SET", jkey(ss->rq, rep->items[i].str, ":lock"), "other", NULL));
        redis_value_free(rep);
    }
    ss->env->clock.now += T_LEASE_MS / 2 + 1;
    *provider_id = "p";
    return SP_OK;
}

static const struct sender_ops slow_sender_ops = {"slow", slow_send};

/* The use cases and the worker of a t_env (SQLite) on the Redis queue. */
struct wenv {
    struct t_env *env;
    struct rq e;
    struct queue_redis q;
    struct slow_sender ss;
};

static void
wenv_open(struct wenv *w)
{
    w->env = t_env_new(T_SQLITE);
    rq_open(&w->e, -1, 1);
    queue_redis_init(&w->q, &w->e.sh, w->env->conn, w->e.r);
    w->env->deps.queue = &w->q.base;
    w->env->mdeps.queue = &w->q.base;
    w->env->mdeps.batch = 16;
}

/* Sends through the slow provider instead of the fake one. */
static void
wenv_slow_sender(struct wenv *w, int steal_own)
{
    memset(&w->ss, 0, sizeof(w->ss));
    w->ss.base.ops = &slow_sender_ops;
    w->ss.env = w->env;
    w->ss.rq = &w->e;
    w->ss.steal_own = steal_own;
    w->env->senders.by_channel[CHANNEL_EMAIL] = &w->ss.base;
    w->env->senders.by_channel[CHANNEL_WHATSAPP] = &w->ss.base;
}

/* Publishes the outbox (returns the rows published), then runs one worker tick (*did). */
static int
wenv_relay_and_tick(struct wenv *w, int *did)
{
    struct sp_error err = {0};
    int n = 0;
    int64_t next_due = 0;

    ASSERT_OK(outbox_relay_batch(w->env->conn, w->e.r, &w->e.sh, 10, &n, &err));
    ASSERT_OK(leads_delivery_tick(&w->env->mdeps, w->env->arena, did, &next_due, &err));
    return n;
}

static void
wenv_close(struct wenv *w)
{
    queue_redis_cleanup(&w->q);
    rq_close(&w->e);
    t_env_free(w->env);
}

TEST(unit_queue_redis_worker_renews_leases_and_skips_lost_jobs_redis)
{
    struct wenv w;
    struct lead l;
    struct message *ms;
    int n, did = 0;

    wenv_open(&w);
    wenv_slow_sender(&w, 0);
    t_env_create(w.env, "Ann", "ann@example.com", "+14155550100", &l);
    ASSERT_EQ(2, wenv_relay_and_tick(&w, &did));
    ASSERT_EQ(1, did);
    /* The second job's lease was found lost when it was renewed before its send: not sent. */
    ASSERT_EQ(1, w.ss.calls);
    t_env_messages(w.env, l.id, &ms, &n);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(strcmp(ms[i].id, w.ss.first) == 0 ? MESSAGE_SENT : MESSAGE_SENDING, ms[i].status);
    ASSERT_EQ(1, rint_(&w.e, "ZCARD", "%Pcompleted", NULL));
    ASSERT_EQ(1, rint_(&w.e, "LLEN", "%Pactive", NULL)); /* the other owner's */
    wenv_close(&w);
}

/* Another producer's job on a shared queue (inserted into the outbox and relayed). */
static void
foreign_job(struct t_env *env, const char *id, const char *name, const char *data)
{
    DB_STMT_SAME(sql, "INSERT INTO outbox (id, name, data, opts, state, max_attempts, run_at,"
                      " created_at, updated_at) VALUES ($1, $2, $3, '{\"attempts\":3}', 'waiting',"
                      " 3, 0, 0, 0)");
    struct sp_error err = {0};

    ASSERT_OK(
        db_exec(env->conn, &sql, DB_ARGS(db_text(id), db_text(name), db_text(data)), NULL, &err));
}

TEST(unit_queue_redis_jobs_salespad_cannot_run_fail_without_blocking_the_queue_redis)
{
    struct wenv w;
    struct lead l;
    int did = 0;

    wenv_open(&w);
    foreign_job(w.env, "x1", "send-message", "{\"messageId\":\"not-a-uuid\"}");
    foreign_job(w.env, "x2", "resize-image",
                "{\"messageId\":\"01a21df5-17c0-742c-81de-35b9d32a2d63\"}");
    foreign_job(w.env, "x3", "send-message", "[1,2]");
    foreign_job(w.env, "x4", "send-message",
                "{\"messageId\":\"01a21df5-17c0-742c-81de-35b9d32a2d63\"}");
    t_env_create(w.env, "Ann", "ann@example.com", NULL, &l);
    ASSERT_EQ(5, wenv_relay_and_tick(&w, &did));
    ASSERT_EQ(4, rint_(&w.e, "ZCARD", "%Pfailed", NULL));
    ASSERT_CONTAINS(hget(&w.e, "x1", "failedReason"), "not a message id");
    ASSERT_CONTAINS(hget(&w.e, "x2", "failedReason"), "no handler for this job name");
    ASSERT_CONTAINS(hget(&w.e, "x3", "failedReason"), "not a message id");
    ASSERT_CONTAINS(hget(&w.e, "x4", "failedReason"), "message not found");
    ASSERT_EQ(1, rint_(&w.e, "ZCARD", "%Pcompleted", NULL)); /* Ann's welcome email */
    ASSERT_EQ(1, w.env->sender.ncalls);
    wenv_close(&w);
}

TEST(unit_queue_redis_paused_queue_follows_the_bullmq_major_redis)
{
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    int found = 1;
    int64_t next_due = 0, now = sp_clock_now_ms(&sp_clock_real);

    rq_open(&e, -1, 1);
    /* Paused by a BullMQ 5 client: new jobs go to its `paused` list (renamed over `wait` when
     * it resumes), and nothing is handed out. */
    redis_value_free(rcmd(&e, "HSET", "%Pmeta", "paused", "1", "version", "bullmq:5.81.5", NULL));
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Ppaused", NULL));
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pwait", NULL));
    reserve(&e, now, 30000, &j, &found, &next_due);
    ASSERT_EQ(0, found);
    /* BullMQ 6 keeps a paused queue's jobs in `wait`. */
    redis_value_free(rcmd(&e, "HSET", "%Pmeta", "version", "bullmq:6.7.0", NULL));
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));
    reserve(&e, now, 30000, &j, &found, &next_due);
    ASSERT_EQ(0, found);
    /* Resumed: handed out. */
    redis_value_free(rcmd(&e, "HDEL", "%Pmeta", "paused", NULL));
    take(&e, now, 30000, &j);
    rq_close(&e);
}

TEST(unit_queue_redis_job_id_too_long_fails_instead_of_looping_redis)
{
    DB_STMT_SAME(insert_long_id,
                 "INSERT INTO outbox (id, name, data, opts, state, max_attempts, run_at,"
                 " created_at, updated_at) VALUES ($1, 'send-message', '{}', '{}', 'waiting',"
                 " 1, 0, 0, 0)");
    struct rq e;
    struct job j;
    int found = 1;
    int64_t next_due = 0, now = sp_clock_now_ms(&sp_clock_real);
    char id[100];
    struct sp_error err = {0};

    rq_open(&e, -1, 1);
    memset(id, 'z', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    ASSERT_OK(db_exec(e.conn, &insert_long_id, DB_ARGS(db_text(id)), NULL, &err));
    ASSERT_EQ(1, relay(&e));
    reserve(&e, now, 30000, &j, &found, &next_due);
    ASSERT_EQ(0, found);
    ASSERT_EQ(0, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_EQ(1, rint_(&e, "ZCARD", "%Pfailed", NULL));
    rq_close(&e);
}

TEST(unit_queue_redis_stalled_check_never_reopens_a_newer_record_redis)
{
    /* The check moves a job back to wait; before it updates the record, another worker takes
     * the job again and finishes it. The late update must not turn "completed" into
     * "waiting" (it did, under load). */
    DB_STMT_SAME(complete_record, "UPDATE outbox SET state = 'completed', attempts_made = 1,"
                                  " updated_at = $2 WHERE id = $1");
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    int64_t now = sp_clock_now_ms(&sp_clock_real);
    struct sp_error err = {0};

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    take(&e, now - 1000, 30000, &j);
    stalled_check(&e);
    redis_value_free(rcmd(&e, "DEL", jkey(&e, id, ":lock"), NULL));
    ASSERT_OK(
        db_exec(e.conn, &complete_record, DB_ARGS(db_text(id), db_time(now + 60000)), NULL, &err));
    stalled_check(&e);
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL)); /* Redis: handed out again */
    ASSERT_STREQ("completed/1", outbox_state(&e, id));
    rq_close(&e);
}

TEST(unit_queue_redis_outcome_of_a_job_whose_lock_was_lost_is_dropped_redis)
{
    struct wenv w;
    struct lead l;
    struct message *ms;
    int n, did = 0;

    wenv_open(&w);
    wenv_slow_sender(&w, 1);
    t_env_create(w.env, "Ann", "ann@example.com", NULL, &l);
    (void)wenv_relay_and_tick(&w, &did);
    /* Sent, but the lock went to another worker during the send: its outcome will stand. */
    ASSERT_EQ(1, w.ss.calls);
    t_env_messages(w.env, l.id, &ms, &n);
    ASSERT_EQ(1, n);
    ASSERT_EQ(MESSAGE_SENDING, ms[0].status);
    ASSERT_EQ(0, rint_(&w.e, "ZCARD", "%Pcompleted", NULL));
    ASSERT_EQ(1, rint_(&w.e, "LLEN", "%Pactive", NULL));
    ASSERT_STREQ("active/0", outbox_state(&w.e, w.ss.first));
    wenv_close(&w);
}

/* ---- the operator's retry (reprocess) -------------------------------------------------------- */

/* reprocess through the port in a committed unit of work, as POST /jobs/:id/retry does. */
static void
retry_job(struct rq *e, const char *id, int64_t now)
{
    struct sp_error err = {0};
    struct job before;

    ASSERT_OK(db_begin(e->conn, &err));
    ASSERT_OK(job_queue_reprocess(&e->q.base, id, now, e->a, &before, &err));
    ASSERT_OK(db_commit(e->conn, &err));
    job_queue_wake(&e->q.base);
}

/* The newest entry of the events stream: "event=<name> f=v ..." in the arena. */
static const char *
last_event_of(struct rq *e)
{
    struct redis_value *rep = rcmd(e, "XREVRANGE", "%Pevents", "+", "-", "COUNT", "1", NULL);
    char buf[512] = "";
    size_t len = 0;

    ASSERT(rep->type == RV_ARR && rep->n == 1);
    for (size_t i = 0; i + 1 < rep->items[0].items[1].n; i += 2) {
        const struct redis_value *f = rep->items[0].items[1].items;
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s=%s", i ? " " : "", f[i].str,
                                f[i + 1].str);
    }
    redis_value_free(rep);
    return arena_strdup(e->a, buf);
}

static const char *
outbox_relay_state(struct rq *e, const char *id)
{
    DB_STMT_SAME(sql, "SELECT relayed_at IS NULL, requeued_at IS NULL FROM outbox WHERE id = $1");
    struct db_rows rows;
    struct sp_error err = {0};

    ASSERT_OK(db_query(e->conn, &sql, DB_ARGS(db_text(id)), e->a, &rows, &err));
    ASSERT_EQ(1, rows.nrows);
    return arena_printf(e->a, "%s%s",
                        strcmp(db_cell(&rows, 0, 0), "1") == 0 ? "unrelayed" : "relayed",
                        strcmp(db_cell(&rows, 0, 1), "1") == 0 ? "" : "+retry");
}

/* A job that failed for good (its one attempt), in Redis and in its record. */
static void
failed_job(struct rq *e, char *id, int64_t now)
{
    struct job j;

    enqueue(e, NULL, id);
    ASSERT_EQ(1, relay(e));
    take(e, now, 30000, &j);
    end_attempt(e, &j, END_FAIL, now + 1, 0);
    ASSERT_EQ(now + 1, rint_(e, "ZSCORE", "%Pfailed", id));
    ASSERT_STREQ("failed/1", outbox_state(e, id));
}

TEST(unit_queue_redis_retry_moves_the_job_as_bullmq_does_redis)
{
    /* BullMQ's Job.retry('failed', {resetAttemptsMade, resetAttemptsStarted}): the ended run's
     * fields go, the history stays, the job is back on the wait list with a waiting event */
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    int64_t now = sp_clock_now_ms(&sp_clock_real);

    rq_open(&e, -1, 1);
    failed_job(&e, id, now);
    redis_value_free(rcmd(&e, "DEL", "%Pmarker", NULL));
    retry_job(&e, id, now + 10);
    /* the record now; Redis once the relay runs (woken by the commit in the service) */
    ASSERT_STREQ("waiting/0", outbox_state(&e, id));
    ASSERT_STREQ("unrelayed+retry", outbox_relay_state(&e, id));
    ASSERT_EQ(1, rint_(&e, "ZCARD", "%Pfailed", NULL));
    ASSERT_EQ(1, relay(&e));
    ASSERT_STREQ("relayed", outbox_relay_state(&e, id));
    ASSERT_EQ(0, rint_(&e, "ZCARD", "%Pfailed", NULL));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_EQ(0, rint_(&e, "ZSCORE", "%Pmarker", "0"));
    for (const char *const *f =
             (const char *const[]){"finishedOn", "processedOn", "failedReason", "atm", "ats", NULL};
         *f; f++)
        if (hget(&e, id, *f)[0] != '\0')
            t_fail(__FILE__, __LINE__, "field %s left on the retried job: %s", *f,
                   hget(&e, id, *f));
    ASSERT_STREQ("[\"gone\"]", hget(&e, id, "stacktrace"));
    ASSERT_STREQ("send-message", hget(&e, id, "name"));
    ASSERT_STREQ(arena_printf(e.a, "event=waiting jobId=%s prev=failed", id), last_event_of(&e));
    ASSERT_EQ(0, relay(&e)); /* applied once */
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));

    take(&e, now + 20, 30000, &j);
    ASSERT_STREQ(id, j.id);
    ASSERT_EQ(0, j.attempts_made);
    ASSERT_EQ(1, j.requeued);
    ASSERT_STREQ("1", hget(&e, id, "ats"));
    end_attempt(&e, &j, END_COMPLETE, now + 30, 0);
    ASSERT_STREQ("completed/1", outbox_state(&e, id));
    ASSERT_STREQ("1", hget(&e, id, "atm"));
    rq_close(&e);
}

TEST(unit_queue_redis_retry_waits_for_a_failure_still_on_its_way_redis)
{
    /* the record says failed but the worker's fail script has not run yet (the job is still
     * active, locked, in Redis): the relay keeps the retry until it has */
    struct rq e;
    char id[JOB_ID_MAX];
    struct job j;
    struct sp_error err = {0};
    int64_t now = sp_clock_now_ms(&sp_clock_real);

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, id);
    ASSERT_EQ(1, relay(&e));
    take(&e, now, 30000, &j);
    ASSERT_OK(db_begin(e.conn, &err));
    ASSERT_OK(job_queue_fail(&e.q.base, &j, now + 1, "gone", &err));
    ASSERT_OK(db_commit(e.conn, &err)); /* the outcome's Redis part not applied yet */
    retry_job(&e, id, now + 2);
    ASSERT_EQ(0, relay(&e));
    ASSERT_STREQ("unrelayed+retry", outbox_relay_state(&e, id));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pactive", NULL));
    ASSERT_OK(job_queue_after_commit(&e.q.base, &err)); /* now it fails in Redis */
    ASSERT_EQ(1, rint_(&e, "ZCARD", "%Pfailed", NULL));
    ASSERT_EQ(1, relay(&e));
    ASSERT_EQ(0, rint_(&e, "ZCARD", "%Pfailed", NULL));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_STREQ("relayed", outbox_relay_state(&e, id));
    rq_close(&e);
}

TEST(unit_queue_redis_retry_of_a_job_gone_from_redis_or_already_back_redis)
{
    struct rq e;
    char gone[JOB_ID_MAX], back[JOB_ID_MAX];
    int64_t now = sp_clock_now_ms(&sp_clock_real);
    const char *argv[2];
    struct redis_value *rep = NULL;
    struct sp_error err = {0};

    rq_open(&e, -1, 1);
    failed_job(&e, gone, now);
    failed_job(&e, back, now);
    /* removed from `failed` by a BullMQ client (Queue.clean): added afresh from the record */
    redis_value_free(rcmd(&e, "DEL", jkey(&e, gone, ""), NULL));
    redis_value_free(rcmd(&e, "ZREM", "%Pfailed", gone, NULL));
    retry_job(&e, gone, now + 10);
    ASSERT_EQ(1, relay(&e));
    ASSERT_EQ(1, rint_(&e, "LLEN", "%Pwait", NULL));
    ASSERT_STREQ("send-message", hget(&e, gone, "name"));
    ASSERT_STREQ("", hget(&e, gone, "atm"));
    ASSERT_STREQ("relayed", outbox_relay_state(&e, gone));
    /* retried meanwhile through BullMQ (here: our script, as job.retry() would): left alone,
     * not pushed twice */
    argv[0] = e.sh.prefix;
    argv[1] = back;
    ASSERT_OK(redis_script_call(e.r, BULLMQ_REPROCESS, 2, argv, NULL, &rep, &err));
    ASSERT_EQ(0, rep->integer);
    redis_value_free(rep);
    retry_job(&e, back, now + 10);
    ASSERT_EQ(1, relay(&e));
    ASSERT_STREQ("relayed", outbox_relay_state(&e, back));
    ASSERT_EQ(2, rint_(&e, "LLEN", "%Pwait", NULL)); /* gone, and back once */
    rq_close(&e);
}

/* The records of the jobs a unit of work completes are written by before_commit, all in one
 * statement, inside the unit of work: until then they show the jobs active, and a rollback after
 * it leaves them so; a commit without it writes none (and logs an error). */
TEST(unit_queue_redis_completed_records_written_before_commit_redis)
{
    struct rq e;
    char a[JOB_ID_MAX], b[JOB_ID_MAX];
    struct job ja, jb;
    int64_t now = sp_clock_now_ms(&sp_clock_real);
    struct sp_error err = {0};

    rq_open(&e, -1, 1);
    enqueue(&e, NULL, a);
    enqueue(&e, NULL, b);
    ASSERT_EQ(2, relay(&e));
    take(&e, now, 30000, &ja);
    take(&e, now, 30000, &jb);

    /* Rolled back after before_commit: nothing written. */
    ASSERT_OK(db_begin(e.conn, &err));
    ASSERT_OK(job_queue_complete(&e.q.base, &ja, now + 1, &err));
    ASSERT_OK(job_queue_complete(&e.q.base, &jb, now + 2, &err));
    ASSERT_STREQ("active/0", outbox_state(&e, a)); /* deferred */
    ASSERT_OK(job_queue_before_commit(&e.q.base, &err));
    ASSERT_STREQ("completed/1", outbox_state(&e, a));
    db_rollback(e.conn);
    job_queue_after_rollback(&e.q.base);
    ASSERT_STREQ("active/0", outbox_state(&e, a));
    ASSERT_STREQ("active/0", outbox_state(&e, b));

    /* Committed without before_commit: the record is not written (Redis moves the job). */
    ASSERT_OK(db_begin(e.conn, &err));
    ASSERT_OK(job_queue_complete(&e.q.base, &ja, now + 4, &err));
    ASSERT_OK(db_commit(e.conn, &err));
    ASSERT_OK(job_queue_after_commit(&e.q.base, &err));
    ASSERT_STREQ("active/0", outbox_state(&e, a));
    ASSERT_EQ(1, rint_(&e, "ZCARD", "%Pcompleted", NULL));

    /* As the worker does it. */
    ASSERT_OK(db_begin(e.conn, &err));
    ASSERT_OK(job_queue_complete(&e.q.base, &jb, now + 6, &err));
    ASSERT_OK(job_queue_before_commit(&e.q.base, &err));
    ASSERT_OK(db_commit(e.conn, &err));
    ASSERT_OK(job_queue_after_commit(&e.q.base, &err));
    ASSERT_STREQ("completed/1", outbox_state(&e, b));
    ASSERT_EQ(2, rint_(&e, "ZCARD", "%Pcompleted", NULL));
    rq_close(&e);
}
