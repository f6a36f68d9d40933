/* queue.h: the job queue port: the SQL queue (infra/queue_sql) or the BullMQ-layout Redis queue
 * with its transactional outbox (infra/queue_redis).
 *
 * Jobs follow BullMQ's states: waiting -> active (leased) -> completed | delayed (retry with
 * backoff) -> ... | failed (dead letter). A queue value is bound to one database session, so
 * enqueue, reserve, complete, retry and fail join the caller's open unit of work. A queue whose
 * jobs live outside the database (Redis) applies the part of those steps that cannot join the
 * transaction when the caller reports the outcome of its unit of work (job_queue_after_commit /
 * job_queue_after_rollback). Strings read back live in the caller's arena. Errors: SP_EUNAVAIL
 * (backend unreachable/busy), SP_EINTERNAL. */
#pragma once

#include "core/err.h"

#include <stdint.h>

struct arena;
struct job_queue;

enum job_state { JOB_WAITING = 0, JOB_DELAYED, JOB_ACTIVE, JOB_COMPLETED, JOB_FAILED };

const char *job_state_name(enum job_state s);
int job_state_parse(const char *s, enum job_state *out);

struct job_spec {
    const char *name;       /* "send-message" */
    const char *lead_id;    /* correlation, may be NULL */
    const char *message_id; /* correlation, may be NULL */
    const char *data;       /* JSON object text */
    int max_attempts;       /* >= 1 */
    int64_t backoff_ms;     /* exponential backoff base */
};

#define JOB_ID_MAX 64 /* bytes, with the NUL */

/* How the delay before the next attempt grows (BullMQ's built-in strategies). */
enum job_backoff { JOB_BACKOFF_EXPONENTIAL = 0, JOB_BACKOFF_FIXED };

struct job {
    char id[JOB_ID_MAX];
    const char *name;
    const char *lead_id;
    const char *message_id;
    const char *data;
    enum job_state state;
    int attempts_made; /* attempts that ended (failed or completed) */
    int max_attempts;
    int64_t backoff_ms;
    enum job_backoff backoff_type;
    double backoff_jitter; /* BullMQ's jitter 0..1; < 0: the worker's default jitter */
    int stalled_count;
    const char *last_error;
    int64_t run_at;
    int64_t created_at;
    int64_t updated_at;
    int64_t finished_at; /* 0 while not finished */
    int64_t lease_until; /* set by reserve: the lease, and the fencing token of this holder */
    const char *token;   /* set by reserve on Redis: the lock token of this holder */
    const char *result;  /* set by the worker before complete: JSON return value, may be NULL */
};

struct job_queue_ops {
    const char *name;
    /* Adds a waiting job; its id goes to id_out (JOB_ID_MAX bytes). */
    int (*enqueue)(struct job_queue *q, const struct job_spec *spec, int64_t now, char *id_out,
                   struct sp_error *err);
    /* Leases the next due job (or one whose lease expired) until now + lease_ms, inside the
     * caller's unit of work. *found is 0 when none is due; then *next_due is the run time of
     * the next delayed job or 0. */
    int (*reserve)(struct job_queue *q, int64_t now, int64_t lease_ms, struct arena *a,
                   struct job *out, int *found, int64_t *next_due, struct sp_error *err);
    /* Optional (NULL: reserve one at a time): reserves up to max due jobs into out[0..*n) in one
     * round trip; *next_due as for reserve when *n is 0. */
    int (*reserve_many)(struct job_queue *q, int64_t now, int64_t lease_ms, struct arena *a,
                        struct job *out, int max, int *n, int64_t *next_due, struct sp_error *err);
    /* complete, retry and fail end the attempt of a job reserved by this caller: they return
     * SP_ECONFLICT, changing nothing, when the lease was lost (it expired and another worker took
     * the job), so a stale worker can never overwrite a newer worker's outcome. */
    /* Ends an attempt: completed. */
    int (*complete)(struct job_queue *q, const struct job *j, int64_t now, struct sp_error *err);
    /* Ends an attempt: delayed until run_at with `error` recorded. */
    int (*retry)(struct job_queue *q, const struct job *j, int64_t now, int64_t run_at,
                 const char *error, struct sp_error *err);
    /* Ends an attempt: failed for good (dead letter). */
    int (*fail)(struct job_queue *q, const struct job *j, int64_t now, const char *error,
                struct sp_error *err);
    /* The jobs correlated with a lead, oldest first. */
    int (*list_by_lead)(struct job_queue *q, const char *lead_id, struct arena *a, struct job **out,
                        int *n, struct sp_error *err);
    /* Wakes idle workers of this process (after a commit that enqueued). May be NULL. */
    void (*wake)(struct job_queue *q);

    /* The rest may be NULL (the SQL queue: everything is part of the database transaction). */
    /* The caller's unit of work committed: applies the job transitions it decided. */
    int (*after_commit)(struct job_queue *q, struct sp_error *err);
    /* The caller's unit of work rolled back: forgets them and gives back reserved jobs. */
    void (*after_rollback)(struct job_queue *q);
    /* Extends the lease of a reserved job to now + lease_ms; SP_ECONFLICT (field "job") when
     * it was lost. */
    int (*touch)(struct job_queue *q, const struct job *j, int64_t lease_ms, struct sp_error *err);
    /* touch for n jobs in one round trip: lost[i] = 1 when the lease of *jobs[i] was lost. */
    int (*touch_many)(struct job_queue *q, const struct job *const *jobs, int n, int64_t lease_ms,
                      int *lost, struct sp_error *err);
    /* Blocks until a job may be ready or timeout_ms passes (an idle worker). */
    int (*wait)(struct job_queue *q, int64_t timeout_ms, struct sp_error *err);
    /* Periodic upkeep by workers (stalled-job recovery); cheap when not due. */
    int (*maintain)(struct job_queue *q, struct sp_error *err);
};

struct job_queue {
    const struct job_queue_ops *ops;
};

static inline int SP_MUST_CHECK
job_queue_enqueue(struct job_queue *q, const struct job_spec *spec, int64_t now, char *id_out,
                  struct sp_error *err)
{
    return q->ops->enqueue(q, spec, now, id_out, err);
}
static inline int SP_MUST_CHECK
job_queue_reserve(struct job_queue *q, int64_t now, int64_t lease_ms, struct arena *a,
                  struct job *out, int *found, int64_t *next_due, struct sp_error *err)
{
    return q->ops->reserve(q, now, lease_ms, a, out, found, next_due, err);
}
static inline int SP_MUST_CHECK
job_queue_complete(struct job_queue *q, const struct job *j, int64_t now, struct sp_error *err)
{
    return q->ops->complete(q, j, now, err);
}
static inline int SP_MUST_CHECK
job_queue_retry(struct job_queue *q, const struct job *j, int64_t now, int64_t run_at,
                const char *error, struct sp_error *err)
{
    return q->ops->retry(q, j, now, run_at, error, err);
}
static inline int SP_MUST_CHECK
job_queue_fail(struct job_queue *q, const struct job *j, int64_t now, const char *error,
               struct sp_error *err)
{
    return q->ops->fail(q, j, now, error, err);
}
static inline int SP_MUST_CHECK
job_queue_list_by_lead(struct job_queue *q, const char *lead_id, struct arena *a, struct job **out,
                       int *n, struct sp_error *err)
{
    return q->ops->list_by_lead(q, lead_id, a, out, n, err);
}
static inline void
job_queue_wake(struct job_queue *q)
{
    if (q->ops->wake)
        q->ops->wake(q);
}

static inline int SP_MUST_CHECK
job_queue_after_commit(struct job_queue *q, struct sp_error *err)
{
    return q->ops->after_commit ? q->ops->after_commit(q, err) : SP_OK;
}
static inline void
job_queue_after_rollback(struct job_queue *q)
{
    if (q->ops->after_rollback)
        q->ops->after_rollback(q);
}
static inline int SP_MUST_CHECK
job_queue_touch(struct job_queue *q, const struct job *j, int64_t lease_ms, struct sp_error *err)
{
    return q->ops->touch ? q->ops->touch(q, j, lease_ms, err) : SP_OK;
}

/* The delay before the next attempt of j, after attempts_made attempts (counting the one that
 * just failed): BullMQ's formula for jobs that carry a backoff jitter >= 0 (fixed: backoff_ms;
 * exponential: round(2^(n-1) * backoff_ms); jitter j: a value in [d*(1-j), d) from `rnd`),
 * else job_backoff_delay with default_jitter_pct. */
int64_t job_retry_delay(const struct job *j, int attempts_made, int default_jitter_pct,
                        uint32_t rnd);

/* Exponential backoff: base * 2^(attempts_made - 1), capped at one hour, then reduced by up to
 * `jitter_pct` percent using `rnd` (0..UINT32_MAX). attempts_made counts the failed attempt. */
int64_t job_backoff_delay(int64_t base_ms, int attempts_made, int jitter_pct, uint32_t rnd);
