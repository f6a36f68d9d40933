#pragma once
/* queue.h: the job queue port, in the worker's verbs.
 *
 * Jobs follow BullMQ's states: waiting -> active (leased) -> completed | delayed (retry) ->
 * ... | failed (dead letter). A queue value is bound to one database session: enqueue, reserve,
 * complete, retry and fail join the caller's open unit of work. A queue whose jobs live outside
 * the database (Redis) applies the part of those steps that cannot join the transaction when
 * the caller reports how its unit of work ended (after_commit / after_rollback); a queue whose
 * jobs are rows applies nothing there.
 *
 * Every operation is mandatory: an adapter with nothing to do for one implements it as a cheap
 * no-op, so callers never test for a missing operation. The list below (JOB_QUEUE_OPS) is the
 * single source of the vtable, its inline wrappers, and the test doubles that wrap or fake it.
 *
 * Leases. reserve hands out a job under a lease that lasts lease_ms; the lease is an opaque
 * token (struct job.lease) that only the adapter reads. While the process lives, `renew`, called
 * by one keeper thread per process every lease/3 (at least every second), extends every lease
 * the process's workers hold, so a slow job keeps its lease however long it runs; a unit of
 * work that rolls back drops its jobs from that set, so an abandoned job lapses. A job whose holder
 * stopped renewing (hung or dead) is handed out again once its lease expires, or at once when
 * `maintain` proves the holder dead; after QUEUE_MAX_STALLED such losses it fails. complete, retry
 * and fail are fenced by the lease: they return SP_ELEASELOST, changing nothing, when the job is
 * not ours any more.
 *
 * What a job is about (a message id, a lead id) travels in its data (JSON) and in `group`, an
 * opaque key the producer chooses so that list_group can show a set of jobs together. Strings
 * read back live in the caller's arena.
 *
 * The operator's verbs: list (every job, newest first, a keyset page at a time), get (one job)
 * and reprocess (a failed job back in line, BullMQ's job.retry()). Job ids and list positions
 * are the backend's own text: an id or position it could not have made is SP_EINVAL, not
 * SP_ENOTFOUND, so a client's typo is told apart from a job that is gone.
 *
 * Errors: SP_EUNAVAIL (backend unreachable or busy), SP_ELEASELOST (fencing), SP_EINVAL and
 * SP_ENOTFOUND (the operator's verbs), SP_ECONFLICT (reprocess of a job that is not failed),
 * SP_EINTERNAL. Thread-safety: one queue value per thread. */
#include "core/err.h"

#include <stdint.h>

struct arena;
struct job_queue;

enum job_state { JOB_WAITING = 0, JOB_DELAYED, JOB_ACTIVE, JOB_COMPLETED, JOB_FAILED };

const char *job_state_name(enum job_state s);
int job_state_parse(const char *s, enum job_state *out);

/* How the delay before the next attempt grows (BullMQ's built-in strategies). */
enum job_backoff { JOB_BACKOFF_EXPONENTIAL = 0, JOB_BACKOFF_FIXED };

struct job_spec {
    const char *name;   /* "send-message" */
    const char *key;    /* the producer's key for this job (one job per key: BullMQ's jobId on
                           Redis); NULL: the queue names the job */
    const char *group;  /* listed together by list_group; may be NULL */
    const char *data;   /* JSON object text: everything the handler needs */
    int max_attempts;   /* >= 1 */
    int64_t backoff_ms; /* exponential backoff base */
};

#define JOB_ID_MAX 64      /* bytes, with the NUL */
#define JOB_LEASE_MAX 112  /* bytes, with the NUL */
#define JOB_CURSOR_MAX 112 /* bytes, with the NUL: a position in the list of jobs */
#define JOB_JITTER_WORKER (-1)
#define JOB_LIST_MAX 100 /* jobs per page of list */

struct job {
    char id[JOB_ID_MAX];
    char lease[JOB_LEASE_MAX]; /* set by reserve: this holder's token, read by the adapter */
    const char *name;
    const char *key;   /* the producer's key (job_spec.key), may be NULL */
    const char *group; /* may be NULL */
    const char *data;  /* NULL in list_group results */
    enum job_state state;
    int attempts_made; /* attempts that ended (failed or completed) */
    int max_attempts;
    int64_t backoff_ms;
    enum job_backoff backoff_type;
    int jitter_pct; /* the job's own jitter (BullMQ's opts.backoff.jitter), 0..100, or
                       JOB_JITTER_WORKER: the worker's setting */
    int stalled_count;
    const char *last_error;
    int64_t run_at;
    int64_t created_at;
    int64_t updated_at;
    int64_t finished_at; /* 0 while not finished */
    const char *result;  /* set by the worker before complete: JSON return value, may be NULL */
    int requeued; /* set by reserve (Redis): the job comes back from `failed`, put back in line
                     in Redis (reprocess, or a BullMQ client's job.retry()), so a failure the
                     caller recorded for it is history; 0 on the other backends, whose retry
                     goes through reprocess alone and whose callers update their records then */
};

/* Which jobs list returns: every job, or only those in one state and/or of one name, newest
 * (last enqueued) first, from the position `after` on. */
struct job_filter {
    int has_state;        /* 0: any state */
    enum job_state state; /* when has_state */
    const char *name;     /* NULL: any name */
    const char *after;    /* NULL: from the newest; else a `next` a previous list returned */
    int limit;            /* 1..JOB_LIST_MAX */
};

/* How many jobs of one name are in one state (job_queue_count). */
struct job_count {
    const char *name; /* in the caller's arena */
    enum job_state state;
    int64_t n;
};

/* The queue's jobs counted (job_queue_count), for metrics. */
struct job_counts {
    struct job_count *by_state; /* [n], in the caller's arena; only the (name, state) pairs that
                                   have jobs, at most JOB_COUNTS_MAX of them */
    int n;
    int64_t backlog;           /* jobs committed but not yet in the queue (the Redis queue's
                                  outbox rows not relayed yet); 0 for a queue of rows */
    int64_t backlog_oldest_at; /* created_at (ms) of the oldest of them; 0 when none */
};

#define JOB_COUNTS_MAX 64

/* X(name, parameters after the queue, arguments after the queue): the operations that can
 * fail, each returning SP_OK or a negative SP_E* code. */
#define JOB_QUEUE_OPS(X)                                                                           \
    /* Adds a waiting job; its id goes to id_out (JOB_ID_MAX bytes). */                            \
    X(enqueue, (const struct job_spec *spec, int64_t now, char *id_out, struct sp_error *err),     \
      (spec, now, id_out, err))                                                                    \
    /* Leases up to max due jobs (and jobs whose lease expired) into out[0..*n) until              \
     * now + lease_ms. With *n == 0, *next_due is the run time of the next delayed job or 0. */    \
    X(reserve,                                                                                     \
      (int64_t now, int64_t lease_ms, int max, struct arena *a, struct job *out, int *n,           \
       int64_t *next_due, struct sp_error *err),                                                   \
      (now, lease_ms, max, a, out, n, next_due, err))                                              \
    /* Ends an attempt: completed (j->result is its return value). */                              \
    X(complete, (const struct job *j, int64_t now, struct sp_error *err), (j, now, err))           \
    /* Ends an attempt: delayed until run_at with `error` recorded. */                             \
    X(retry,                                                                                       \
      (const struct job *j, int64_t now, int64_t run_at, const char *error, struct sp_error *err), \
      (j, now, run_at, error, err))                                                                \
    /* Ends an attempt: failed for good (dead letter). */                                          \
    X(fail, (const struct job *j, int64_t now, const char *error, struct sp_error *err),           \
      (j, now, error, err))                                                                        \
    /* Before recording outcomes: lost[i] = 1 for each of jobs[0..n) that is not ours any more     \
     * (a queue whose outcomes are fenced inside the transaction reports none lost). */            \
    X(fence, (const struct job *const *jobs, int n, int *lost, struct sp_error *err),              \
      (jobs, n, lost, err))                                                                        \
    /* The newest max (>= 1) jobs of a group, oldest first; *more = 1 when it has older ones.      \
     * Reads at most max + 1 rows, so a group with a long history costs no more. */                \
    X(list_group,                                                                                  \
      (const char *group, int max, struct arena *a, struct job **out, int *n, int *more,           \
       struct sp_error *err),                                                                      \
      (group, max, a, out, n, more, err))                                                          \
    /* The jobs f selects, newest first: at most f->limit of them in out[0..*n) (caller's          \
     * arena); next (JOB_CURSOR_MAX bytes) receives the position of the page after, or "" when     \
     * this one is the last. Keyset pages on an index of (state,) position: any page of a state    \
     * costs the same (a name is checked on the rows the index gives: job names are few).          \
     * SP_EINVAL (field "cursor") for a position this queue did not make. */                       \
    X(list,                                                                                        \
      (const struct job_filter *f, struct arena *a, struct job **out, int *n, char *next,          \
       struct sp_error *err),                                                                      \
      (f, a, out, n, next, err))                                                                   \
    /* The job `id`, as list shows it. SP_ENOTFOUND when there is none, SP_EINVAL (field "id")     \
     * for an id this queue could not have made. */                                                \
    X(get, (const char *id, struct arena *a, struct job *out, struct sp_error *err),               \
      (id, a, out, err))                                                                           \
    /* Puts failed job `id` back in line (BullMQ's job.retry() with its attempts reset):           \
     * waiting, due at `now`, no attempt made or started, no last error or finish time; its        \
     * data, creation time, stalled count and history (BullMQ's stacktrace) stay. *before          \
     * receives the job as it was. Joins the caller's unit of work (Redis: the record now, the     \
     * move in Redis by the outbox relay once it commits). SP_ECONFLICT (field "state") when       \
     * the job is not failed, with *before filled; SP_ENOTFOUND and SP_EINVAL as get. */           \
    X(reprocess,                                                                                   \
      (const char *id, int64_t now, struct arena *a, struct job *before, struct sp_error *err),    \
      (id, now, a, before, err))                                                                   \
    /* Counts the queue's jobs by name and state, and its backlog (struct job_counts): what the    \
     * queue records of every job, not only this process's. One aggregate read. */                 \
    X(count, (struct arena * a, struct job_counts * out, struct sp_error * err), (a, out, err))    \
    /* Extends to now + lease_ms the lease of every job this process holds (the keeper). */        \
    X(renew, (int64_t now, int64_t lease_ms, struct sp_error * err), (now, lease_ms, err))         \
    /* Recovery of jobs whose holder died or stalled; cheap when not due. */                       \
    X(maintain, (int64_t now, struct sp_error * err), (now, err))                                  \
    /* Blocks an idle worker until a job may be ready or timeout_ms passes. */                     \
    X(wait, (int64_t timeout_ms, struct sp_error * err), (timeout_ms, err))                        \
    /* The caller's unit of work is about to commit: writes, in it, what the queue deferred        \
     * (Redis: the completed jobs' records, one statement for all). On an error the caller rolls   \
     * back. Every unit of work that completes a job calls it before its commit. */                \
    X(before_commit, (struct sp_error * err), (err))                                               \
    /* The caller's unit of work committed: applies the transitions it decided. */                 \
    X(after_commit, (struct sp_error * err), (err))

/* The operations that cannot fail. */
#define JOB_QUEUE_VOID_OPS(X)                                                                      \
    /* The caller's unit of work rolled back: forgets it, gives reserved jobs back. */             \
    X(after_rollback, (void), ())                                                                  \
    /* Wakes idle workers of this process (after a commit that enqueued). */                       \
    X(wake, (void), ())

#define JOB_QUEUE_PARAMS_(...) (struct job_queue * q, ##__VA_ARGS__)
#define JOB_QUEUE_FIELD_(name, params, args) int(*name) JOB_QUEUE_PARAMS_ params;
#define JOB_QUEUE_VOID_FIELD_(name, params, args) void (*name)(struct job_queue * q);

struct job_queue_ops {
    const char *name;
    JOB_QUEUE_OPS(JOB_QUEUE_FIELD_)
    JOB_QUEUE_VOID_OPS(JOB_QUEUE_VOID_FIELD_)
};

struct job_queue {
    const struct job_queue_ops *ops;
};

/* job_queue_<op>(q, ...): the wrappers every caller uses. */
#define JOB_QUEUE_WRAPPER_(name, params, args)                                                     \
    static inline int SP_MUST_CHECK job_queue_##name JOB_QUEUE_PARAMS_ params                      \
    {                                                                                              \
        return q->ops->name JOB_QUEUE_ARGS_ args;                                                  \
    }
#define JOB_QUEUE_ARGS_(...) (q, ##__VA_ARGS__)
JOB_QUEUE_OPS(JOB_QUEUE_WRAPPER_)

static inline void
job_queue_after_rollback(struct job_queue *q)
{
    q->ops->after_rollback(q);
}

static inline void
job_queue_wake(struct job_queue *q)
{
    q->ops->wake(q);
}

/* An ops table naming prefix_<op> for every operation: a forgotten one fails to compile. */
#define JOB_QUEUE_OP_INIT_(name, params, args) .name = JOB_QUEUE_IMPL_(name),
#define JOB_QUEUE_OPS_TABLE(label)                                                                 \
    {                                                                                              \
        .name = label, JOB_QUEUE_OPS(JOB_QUEUE_OP_INIT_) JOB_QUEUE_VOID_OPS(JOB_QUEUE_OP_INIT_)    \
    }

/* The worker's retry policy, the only one: after attempts_made attempts (counting the one that
 * just failed), fixed: base_ms; exponential: base_ms * 2^(attempts_made - 1); capped at one
 * hour; then reduced by up to jitter_pct percent using rnd (0..UINT32_MAX). */
int64_t job_backoff_delay(enum job_backoff type, int64_t base_ms, int attempts_made, int jitter_pct,
                          uint32_t rnd);
