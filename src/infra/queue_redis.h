/* queue_redis.h: the job queue in Redis, in BullMQ's data layout, fed by a transactional outbox.
 *
 * enqueue writes the job to the database's `outbox` table inside the caller's transaction; the
 * relay (outbox_relay.h) publishes committed rows to Redis with the `add` script (job id = the
 * row id, so a row published twice is one job) and marks them relayed. Workers reserve from
 * Redis (`fetch`: due delayed jobs promoted, wait -> active under a lock token); complete,
 * retry and fail update the outbox row (SalesPad's record of the job, read by list_by_lead)
 * inside the caller's transaction and run the Redis script when it commits (after_commit).
 * Jobs reserved in a unit of work that rolls back are given back untouched. touch extends the
 * lock; wait blocks on the marker (BZPOPMIN) like BullMQ's workers; maintain runs the
 * stalled-job check at most once per interval across every worker of the queue.
 * The scripts are our own (src/infra/bullmq/), written against the layout. */
#pragma once

#include "core/queue.h"
#include "infra/redis.h"

#include <pthread.h>
#include <stdatomic.h>

struct db_conn;
struct redis;
struct queue_signal;

/* Settings and process-wide state shared by every queue_redis of a process. */
struct queue_redis_shared {
    char prefix[140];            /* "<QUEUE_PREFIX>:<QUEUE_NAME>:" */
    int keep_completed;          /* completed jobs kept in Redis: -1 all, 0 none, else newest N */
    int keep_failed;             /* likewise for failed jobs (-1: all, the default) */
    int64_t stalled_interval_ms; /* stalled-check period */
    int max_stalled;             /* stalls before a job fails */
    double jitter;               /* opts.backoff.jitter of new jobs */
    int stacktrace_limit;        /* failed-attempt reasons kept per job */
    struct queue_signal *relay;  /* poked after a commit that enqueued; may be NULL */
    char worker_id[40];          /* lock tokens are "<worker_id>:<n>" */
    atomic_uint_fast64_t token_seq;
    atomic_int_fast64_t next_stalled_check; /* monotonic ms */
    /* The jobs this process holds (reserved, outcome not yet in Redis), whose locks
     * queue_redis_renew_locks keeps alive. */
    pthread_mutex_t held_mu;
    struct queue_redis_held *held;
    int nheld, held_cap;
};

struct queue_redis_held {
    char id[JOB_ID_MAX];
    char token[96];
};

/* Fills the shared settings; prefix and name are QUEUE_PREFIX and QUEUE_NAME. */
void queue_redis_shared_init(struct queue_redis_shared *s, const char *prefix, const char *name,
                             int keep_completed, int64_t stalled_interval_ms, int max_stalled,
                             struct queue_signal *relay);

void queue_redis_shared_cleanup(struct queue_redis_shared *s);

/* Extends the lock of every job the process holds to lock_ms from now (BullMQ renews its locks
 * every lockDuration / 2, whatever the processor is doing): a long send keeps its job. A job
 * whose lock is not ours any more is forgotten. Called by a timer thread with its own
 * connection. */
int queue_redis_renew_locks(struct queue_redis_shared *s, struct redis *r, int64_t lock_ms,
                            struct sp_error *err) SP_MUST_CHECK;

/* The script table every Redis connection of the queue loads (see redis_new). */
extern const struct redis_script queue_redis_scripts[];
extern const int queue_redis_nscripts;

struct queue_redis_op; /* a transition waiting for the caller's commit */

struct queue_redis {
    struct job_queue base; /* first */
    struct queue_redis_shared *shared;
    struct db_conn *conn; /* borrowed: the session's connection */
    struct redis *redis;  /* borrowed, may be NULL (API sessions only enqueue and list) */
    struct queue_redis_op *ops;
    int nops, cap;
};

void queue_redis_init(struct queue_redis *q, struct queue_redis_shared *shared,
                      struct db_conn *conn, struct redis *redis);
/* Frees what the unit-of-work bookkeeping allocated. */
void queue_redis_cleanup(struct queue_redis *q);

/* Publishes up to `limit` unrelayed outbox rows to Redis and marks them relayed, in one
 * database transaction (rows another relay holds are skipped on PostgreSQL). *n = rows
 * published. Used by the relay thread and by tests. */
int queue_redis_relay_batch(struct queue_redis *q, int limit, int *n,
                            struct sp_error *err) SP_MUST_CHECK;
