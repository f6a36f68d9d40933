/* messaging.h: the send-message job processor and the worker tick.
 *
 * The processor makes delivery at-most-once from our side: in one unit of work it checks the
 * message (already sent: the job just completes) and marks it sending with attempts+1; then it
 * calls the sender with the message id as idempotency key; then, in a second unit of work, it
 * records the outcome (sent + events + lead status, or the failure with a retry or the dead
 * letter) together with the job's transition. The job transition is fenced by the lease: a
 * worker whose lease expired mid-send records nothing. */
#pragma once

#include "core/err.h"
#include "core/queue.h"

#include <stdint.h>

struct arena;
struct lead_repo;
struct sender_registry;
struct sp_clock;

struct messaging_deps {
    struct lead_repo *repo; /* bound to the same session as queue */
    struct job_queue *queue;
    const struct sp_clock *clock;
    const struct sender_registry *senders;
    int64_t lease_ms;         /* how long a reserved job stays ours */
    int batch;                /* jobs reserved per tick (>= 1) */
    int jitter_pct;           /* backoff jitter, 0..100 */
    uint32_t (*random)(void); /* for jitter; NULL means no jitter */
};

/* Outcome of one processed job, for logs and tests. */
enum messaging_outcome {
    MESSAGING_SENT = 0,
    MESSAGING_DUPLICATE,  /* message was already sent: job completed without sending */
    MESSAGING_RETRY,      /* failed, will retry */
    MESSAGING_DEAD,       /* failed for good */
    MESSAGING_LEASE_LOST, /* our lease expired mid-send: another worker's outcome stands */
};

/* Processes one reserved send-message job. Returns an error only when the outcome could not be
 * recorded (storage down): the job's lease then expires and it is taken again. */
int messaging_process(const struct messaging_deps *d, const struct job *j, struct arena *a,
                      enum messaging_outcome *outcome, struct sp_error *err) SP_MUST_CHECK;

/* Reserves and processes up to d->batch jobs. *did_work tells whether a job was processed;
 * *next_due (when idle) is when the next delayed job becomes due, or 0. */
int messaging_worker_tick(const struct messaging_deps *d, struct arena *a, int *did_work,
                          int64_t *next_due, struct sp_error *err) SP_MUST_CHECK;
