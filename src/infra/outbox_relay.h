/* outbox_relay.h: the relay from the database's `outbox` table to the Redis queue.
 *
 * The transaction that queues a job writes it to the outbox (queue_redis enqueue); the relay
 * publishes committed, unrelayed rows to Redis with the `add` script (job id = the row id, so a
 * row published twice is one job), and an operator's retry of a failed job (POST
 * /jobs/:id/retry) with the `reprocess` script, and marks them relayed, in one database
 * transaction per
 * batch (rows another relay holds are skipped on PostgreSQL). It runs as one thread per
 * process: woken after each commit that enqueued, and every second for rows other processes
 * left behind (a crash between their commit and their relay). Redis down: captures go on, rows
 * wait, the relay retries with a capped backoff and says so once per outage. */
#pragma once

#include "core/err.h"

#include <stdatomic.h>

struct db_conn;
struct db_pool;
struct queue_redis_shared;
struct queue_signal;
struct redis;

/* Publishes up to `limit` unrelayed outbox rows to Redis and marks them relayed, in one
 * database transaction on `conn`: a new job with the `add` script, an operator's retry of a
 * failed job (requeued_at set) with `reprocess` (or `add` again when its hash is gone; a retry
 * whose job is still active in Redis, its failure not applied there yet, is kept for a later
 * pass). *n = rows marked relayed. Used by the relay loop and by tests. */
int outbox_relay_batch(struct db_conn *conn, struct redis *redis,
                       const struct queue_redis_shared *shared, int limit, int *n,
                       struct sp_error *err) SP_MUST_CHECK;

struct outbox_relay {
    struct db_pool *pool;                    /* borrowed */
    const struct queue_redis_shared *shared; /* borrowed */
    struct queue_signal *signal;             /* borrowed: poked after commits that enqueued */
    atomic_int ok;                           /* the last pass reached Redis (for /ready) */
};

void outbox_relay_init(struct outbox_relay *r, struct db_pool *pool,
                       const struct queue_redis_shared *shared, struct queue_signal *signal);

/* The relay loop, on the calling thread with its own Redis connection (borrowed), until
 * *stopping is set and the signal poked; a last pass then publishes what is left. */
void outbox_relay_run(struct outbox_relay *r, struct redis *redis, const atomic_int *stopping);
