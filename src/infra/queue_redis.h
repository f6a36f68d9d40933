/* queue_redis.h: the job queue in Redis, in BullMQ's data layout, fed by a transactional outbox.
 *
 * enqueue writes the job to the database's `outbox` table inside the caller's transaction; the
 * relay (outbox_relay.h) publishes committed rows to Redis. Workers reserve from Redis (the
 * `fetch` script: due delayed jobs promoted, wait -> active under a lock token); complete,
 * retry and fail update the outbox row (SalesPad's record of the job, read by list_group)
 * inside the caller's transaction and run their script when it commits (after_commit). Jobs
 * reserved in a unit of work that rolls back are given back untouched. fence checks (and
 * extends) the locks of a batch whose lease is in doubt; renew extends every lock the process's
 * workers hold (the keeper, every lease/3: BullMQ's lock renewal); wait blocks on the marker
 * (BZPOPMIN) like BullMQ's workers; maintain runs BullMQ's stalled-job check at most once per
 * interval across every worker of the queue: a dead worker's jobs come back when their lock has
 * expired. The scripts and their arguments are the BullMQ layer's (bullmq.h). */
#pragma once

#include "core/queue.h"
#include "core/lease_set.h"
#include "infra/bullmq.h"

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
    int max_stalled;             /* stalls a job survives (QUEUE_MAX_STALLED) */
    int64_t lock_ms;             /* lock duration (JOB_LEASE_MS) */
    double jitter;               /* opts.backoff.jitter written on new jobs (for Node workers) */
    int stacktrace_limit;        /* failed-attempt reasons kept per job */
    struct queue_signal *relay;  /* poked after a commit that enqueued; may be NULL */
    char worker_id[40];          /* lock tokens are "<worker_id>:<n>:<i>" */
    atomic_uint_fast64_t token_seq;
    atomic_int_fast64_t next_stalled_check; /* monotonic ms */
    struct lease_set held;                  /* the locks the keeper renews */
};

/* Fills the shared settings; prefix and name are QUEUE_PREFIX and QUEUE_NAME. */
void queue_redis_shared_init(struct queue_redis_shared *s, const char *prefix, const char *name,
                             int keep_completed, int64_t stalled_interval_ms, int max_stalled,
                             int64_t lock_ms, struct queue_signal *relay);

void queue_redis_shared_cleanup(struct queue_redis_shared *s);

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
