/* outbox_relay.c: outbox rows to Redis (see outbox_relay.h). */
#include "infra/outbox_relay.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/queue_signal.h"
#include "core/xmalloc.h"
#include "infra/bullmq.h"
#include "infra/db.h"
#include "infra/queue_redis.h"
#include "infra/redis.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RELAY_BATCH 256
#define RELAY_SCAN_MS 1000 /* rows other processes left behind are found within this */
#define RELAY_RETRY_MIN_MS 50
#define RELAY_RETRY_MAX_MS 2000
#define RELAY_BUSY_ROWS 8   /* a pass that published this many: captures are streaming in */
#define RELAY_COALESCE_MS 5 /* then the next pass waits this long */

/* PostgreSQL: the relayed mark's commit does not wait for the WAL flush. */
DB_STMT(SQL_ASYNC_COMMIT, NULL, "SET LOCAL synchronous_commit = off");
/* Column 5, requeued_at: an operator's retry of the (failed) job to apply (queue_redis.c). */
DB_STMT(SQL_UNRELAYED,
        "SELECT id, name, data, opts, created_at, requeued_at FROM outbox WHERE relayed_at IS NULL"
        " AND (queue = $2 OR queue IS NULL) ORDER BY created_at LIMIT $1",
        "SELECT id, name, data, opts, created_at, requeued_at FROM outbox WHERE relayed_at IS NULL"
        " AND (queue = $2 OR queue IS NULL) ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED");
/* $2: a JSON array of the published ids. */
DB_STMT(SQL_RELAYED,
        "UPDATE outbox SET relayed_at = $1, requeued_at = NULL"
        " WHERE id IN (SELECT value FROM json_each($2))",
        "UPDATE outbox SET relayed_at = $1, requeued_at = NULL"
        " WHERE id IN (SELECT jsonb_array_elements_text($2::jsonb))");

/* Row i's `add` call: the job as the capture wrote it. */
static void
add_call(const struct queue_redis_shared *shared, const struct db_rows *rows, int i,
         struct redis_call *c)
{
    c->script = BULLMQ_ADD;
    c->argc = 8;
    c->argv[0] = shared->prefix;
    for (int col = 0; col < 5; col++) /* id, name, data, opts, timestamp */
        c->argv[1 + col] = db_cell(rows, i, col);
    c->argv[6] = "0"; /* delay */
    c->argv[7] = "0"; /* priority */
}

static int
is_retry(const struct db_rows *rows, int i)
{
    return db_cell(rows, i, 5) != NULL;
}

/* What a reprocess reply leaves to do for its row: 0 done, 1 add the job afresh (its hash is
 * gone: removed from `failed` by a BullMQ client), 2 keep it for a later pass (a worker still
 * holds the job: its failure has not reached Redis yet). */
static int
retry_outcome(const struct db_rows *rows, int i, const struct redis_value *rep)
{
    long long code = rep && rep->type == RV_INT ? rep->integer : -99;

    if (code == 0)
        return 0;
    if (code == -1)
        return 1;
    if (code == -4)
        return 2;
    log_warn("job %s: retry not applied in Redis: %s", db_cell(rows, i, 0),
             bullmq_release_text(code));
    return 0;
}

/* Publishes the rows: `add` for a new job, `reprocess` for a retried one (then `add` when its
 * hash is gone). done[i] = 1 for each row whose work is over (to mark relayed). */
static int
publish(struct redis *redis, const struct queue_redis_shared *shared, const struct db_rows *rows,
        int *done, struct sp_error *err)
{
    int n = rows->nrows, nadd = 0, rc;
    struct redis_call *calls = xcalloc((size_t)(n ? n : 1), sizeof(*calls));
    struct redis_value **replies = xcalloc((size_t)(n ? n : 1), sizeof(*replies));
    int *again = xcalloc((size_t)(n ? n : 1), sizeof(*again));

    for (int i = 0; i < n; i++) {
        struct redis_call *c = &calls[i];
        if (!is_retry(rows, i)) {
            add_call(shared, rows, i, c);
            continue;
        }
        c->script = BULLMQ_REPROCESS;
        c->argc = 2;
        c->argv[0] = shared->prefix;
        c->argv[1] = db_cell(rows, i, 0);
    }
    rc = redis_pipeline(redis, calls, n, replies, err);
    for (int i = 0; rc == SP_OK && i < n; i++) {
        int what = is_retry(rows, i) ? retry_outcome(rows, i, replies[i]) : 0;
        done[i] = what != 2;
        if (what == 1)
            again[nadd++] = i;
    }
    redis_values_free(replies, n);
    if (rc == SP_OK && nadd > 0) {
        for (int k = 0; k < nadd; k++)
            add_call(shared, rows, again[k], &calls[k]);
        rc = redis_pipeline(redis, calls, nadd, replies, err);
        redis_values_free(replies, nadd);
    }
    free(again);
    free(replies);
    free(calls);
    return rc;
}

int
outbox_relay_batch(struct db_conn *conn, struct redis *redis,
                   const struct queue_redis_shared *shared, int limit, int *n, struct sp_error *err)
{
    struct arena *a = arena_new();
    struct db_rows rows;
    struct jsonw w;
    int *done = NULL, ndone = 0;
    int rc;

    *n = 0;
    rc = db_begin(conn, err);
    if (rc != SP_OK) {
        arena_free(a);
        return rc;
    }
    /* The relayed mark need not survive a crash (a row published again is the same job): its
     * commit does not wait for the WAL flush, and leaves the flushes to the captures. */
    rc = db_exec(conn, &SQL_ASYNC_COMMIT, DB_NOARGS, NULL, err);
    if (rc == SP_OK)
        rc = db_query(conn, &SQL_UNRELAYED, DB_ARGS(db_int(limit), db_text(shared->prefix)), a,
                      &rows, err);
    if (rc == SP_OK && rows.nrows > 0) {
        done = arena_alloc(a, sizeof(*done) * (size_t)rows.nrows);
        rc = publish(redis, shared, &rows, done, err);
    }
    if (rc == SP_OK && rows.nrows > 0) {
        jsonw_init(&w, a, 64 * (size_t)rows.nrows);
        jsonw_arr_begin(&w);
        for (int i = 0; i < rows.nrows; i++) {
            if (done[i])
                jsonw_str(&w, db_cell(&rows, i, 0));
            ndone += done[i];
        }
        jsonw_arr_end(&w);
        if (ndone > 0)
            rc = db_exec(conn, &SQL_RELAYED,
                         DB_ARGS(db_time(sp_clock_now_ms(&sp_clock_real)),
                                 db_text(jsonw_finish_or(&w, "[]"))),
                         NULL, err);
    }
    if (rc == SP_OK)
        rc = db_commit(conn, err);
    else
        db_rollback(conn);
    if (rc == SP_OK)
        *n = ndone;
    arena_free(a);
    return rc;
}

void
outbox_relay_init(struct outbox_relay *r, struct db_pool *pool,
                  const struct queue_redis_shared *shared, struct queue_signal *signal)
{
    r->pool = pool;
    r->shared = shared;
    r->signal = signal;
    atomic_init(&r->ok, 1);
}

/* One pass: publishes every unrelayed outbox row. Returns the rows published, or -1. */
static int
relay_pass(struct outbox_relay *r, struct redis *redis, const atomic_int *stopping,
           int *logged_down)
{
    struct sp_error err = {0};
    struct db_conn *conn = NULL;
    int total = 0, n = 0, rc;

    rc = db_pool_acquire(r->pool, &conn, &err);
    if (rc == SP_OK) {
        do {
            rc = outbox_relay_batch(conn, redis, r->shared, RELAY_BATCH, &n, &err);
            total += rc == SP_OK ? n : 0;
        } while (rc == SP_OK && n == RELAY_BATCH && !atomic_load(stopping));
        db_pool_release(r->pool, conn);
    }
    atomic_store(&r->ok, rc == SP_OK || strcmp(err.field, "redis") != 0);
    if (rc != SP_OK) {
        if (!*logged_down)
            log_warn("outbox relay: %s; captured jobs wait in the outbox and go out when it is "
                     "back",
                     err.msg);
        *logged_down = 1;
        return -1;
    }
    if (*logged_down)
        log_info("outbox relay: publishing again");
    *logged_down = 0;
    return total;
}

void
outbox_relay_run(struct outbox_relay *r, struct redis *redis, const atomic_int *stopping)
{
    int64_t retry_ms = RELAY_RETRY_MIN_MS;
    int logged_down = 0;

    for (;;) {
        uint64_t seen = queue_signal_seq(r->signal);
        int stop = atomic_load(stopping);
        int n = relay_pass(r, redis, stopping, &logged_down);

        if (n > 0)
            log_debug("outbox relay: %d jobs published", n);
        if (stop)
            break; /* the final pass after the API stopped is done */
        if (n < 0) {
            queue_signal_wait(r->signal, queue_signal_seq(r->signal), retry_ms);
            retry_ms = retry_ms * 2 > RELAY_RETRY_MAX_MS ? RELAY_RETRY_MAX_MS : retry_ms * 2;
            continue;
        }
        retry_ms = RELAY_RETRY_MIN_MS;
        if (n >= RELAY_BUSY_ROWS) {
            /* Captures are streaming in: let a few more commit before the next pass, so that
             * passes (database transactions) stay few and large. At rest, a job is published
             * as soon as its capture commits. */
            struct timespec ts = {0, RELAY_COALESCE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        queue_signal_wait(r->signal, seen, RELAY_SCAN_MS);
    }
}
