/* bullmq.h: the BullMQ script layer: our Lua scripts (the .lua files in src/infra/bullmq/) over
 * BullMQ's Redis data layout, the arguments they take, the decoding of what they return, and the
 * registry of locks a process holds.
 *
 * The queue adapter (queue_redis) and the outbox relay call the scripts through this layer;
 * neither builds script arguments or reads script replies itself. The layout and each
 * script's KEYS/ARGV are described in docs/redis-layout.md and in each script's header. */
#pragma once

#include "core/queue.h"
#include "infra/redis.h"

#include <pthread.h>

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
    BULLMQ_NSCRIPTS
};

/* The script table every Redis connection of the queue loads (see redis_new). */
extern const struct redis_script bullmq_scripts[BULLMQ_NSCRIPTS];

/* A script's "this lock is not ours" code (release() in common.lua) as text. */
const char *bullmq_release_text(long long code);

/* The extend call of one lock: argv (4 entries) borrowed from the arguments. */
void bullmq_extend_call(const char *prefix, const char *id, const char *token, const char *slease,
                        struct redis_call *call);
/* Whether an extend reply says the lock is not ours (no reply: cannot tell, so not lost). */
int bullmq_extend_lost(const redisReply *rep);

/* A fetched job's hash (HGETALL-style field/value array) into j: name, data, opts (attempts,
 * backoff), attemptsMade, stalled count, timestamp, failedReason. Strings go to arena a. */
void bullmq_hash_to_job(const redisReply *h, struct arena *a, struct job *j);

/* The locks this process holds (reserved jobs whose outcome is not in Redis yet), renewed by
 * the keeper. Thread-safe. */
struct bullmq_lock {
    char id[JOB_ID_MAX];
    char token[JOB_LEASE_MAX];
};

struct bullmq_locks {
    pthread_mutex_t mu;
    struct bullmq_lock *list;
    int n, cap;
};

void bullmq_locks_init(struct bullmq_locks *l);
void bullmq_locks_cleanup(struct bullmq_locks *l);
void bullmq_locks_add(struct bullmq_locks *l, const char *id, const char *token);
void bullmq_locks_remove(struct bullmq_locks *l, const char *id, const char *token);
/* A copy of the list (caller frees with free()); *n entries. */
struct bullmq_lock *bullmq_locks_snapshot(struct bullmq_locks *l, int *n);
