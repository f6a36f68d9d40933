/* bullmq.h: the BullMQ script layer: the table of our Lua scripts (the .lua files in
 * src/infra/bullmq/) over BullMQ's Redis data layout, and the decoding of what they return (a
 * fetched job's hash, a lock check, a "not your lock" code).
 *
 * The queue adapter (queue_redis) and the outbox relay call the scripts by these numbers; the
 * arguments of each call are listed in the script's header, and the layout in
 * docs/redis-layout.md. The locks a process holds are kept in a lease_set (core/lease_set.h),
 * as the database queue keeps its leases. */
#pragma once

#include "core/queue.h"
#include "infra/redis.h"

struct arena;

enum bullmq_script {
    BULLMQ_ADD = 0,
    BULLMQ_FETCH,
    BULLMQ_COMPLETE,
    BULLMQ_RETRY,
    BULLMQ_FAIL,
    BULLMQ_EXTEND,
    BULLMQ_GIVEBACK,
    BULLMQ_STALLED,
    BULLMQ_REPROCESS,
    BULLMQ_NSCRIPTS
};

/* The script table every Redis connection of the queue loads (see redis_new). */
extern const struct redis_script bullmq_scripts[BULLMQ_NSCRIPTS];

/* A script's "this lock is not ours" code (release() in common.lua), or reprocess's -4/-5, as
 * text. */
const char *bullmq_release_text(long long code);

/* The extend call of one lock: argv (4 entries) borrowed from the arguments. */
void bullmq_extend_call(const char *prefix, const char *id, const char *token, const char *slease,
                        struct redis_call *call);
/* Whether an extend reply says the lock is not ours (no reply: cannot tell, so not lost). */
int bullmq_extend_lost(const struct redis_value *rep);

/* A fetched job's hash (HGETALL-style field/value array) into j: name, data, opts (attempts,
 * backoff), attemptsMade, stalled count, timestamp, failedReason, requeued. Strings go to
 * arena a. */
void bullmq_hash_to_job(const struct redis_value *h, struct arena *a, struct job *j);
/* Whether a job's hash shows it was put back in line from `failed` (a stacktrace but no
 * failedReason: BullMQ's reprocessJob and our reprocess delete the latter and keep the former),
 * as opposed to a job whose recorded failure never reached Redis (see bullmq.c). */
int bullmq_hash_requeued(const struct redis_value *h);
