/* delivery.h: the delivery use case: the send-message and generate-reply job processors and the
 * worker tick.
 *
 * Delivery belongs to the leads slice: a message is part of a lead's conversation, its outcome
 * lands on the lead's timeline and moves the lead's status, all in one unit of work with the
 * job's transition. The channel senders it calls stay in the messaging slice, behind its sender
 * port (features/messaging/domain/sender.h).
 *
 * The processor sends a message at most once per lease (a send in flight when its worker dies
 * goes out again, with the same idempotency key): in one unit of work it checks the
 * message (already sent: the job just completes) and marks it sending with attempts+1; then it
 * calls the sender with the message id as idempotency key; then, in a second unit of work, it
 * records the outcome (sent + events + lead status, or the failure with a retry or the dead
 * letter) together with the job's transition. The job transition is fenced by the lease: a
 * worker whose lease was lost mid-send records nothing. Leases are kept alive meanwhile by the
 * process's keeper (job_queue_renew), not by this code; once half a lease has passed since the
 * batch was reserved, the worker checks its leases (job_queue_fence) before each further send
 * and before recording, so a job that went to another worker is neither sent nor recorded. The
 * retry delay is the worker's policy (job_backoff_delay), whatever the backend. */
#pragma once

/* Do not contact: the claim also reads the lead's opt-outs; a message to a channel the lead
 * opted out of (any kind: welcome, ai_reply, manual) is not sent: the record's unit of work
 * marks it suppressed, appends message_suppressed and completes the job. */

/* generate-reply (leads.h, GENERATE_REPLY_JOB): in the claim's unit of work the worker reads the
 * inbound message, the lead and the conversation on the channel (the newest CONTENT_HISTORY_MAX
 * messages), and completes the job at once when the answer already exists (its id is fixed by
 * the inbound message: leads_answer_id); then it calls the content generator, outside any
 * transaction; then, in the record's unit of work, it writes the answer (an ai_reply message),
 * its send-message job and its message_queued event, and completes the job. A retryable
 * generator error (SP_EPROVIDER, SP_ETIMEDOUT, SP_EUNAVAIL) retries the job with its backoff, or
 * later when the provider's Retry-After says so; a permanent one, or the last attempt, writes the
 * fallback generator's answer instead (AI_FALLBACK=template) with an ai_reply_failed event, or
 * only that event and the job's failure (AI_FALLBACK=none: `fallback` NULL). */

#include "core/err.h"
#include "core/queue.h"
#include "features/leads/domain/lead.h"

#include <stdatomic.h>
#include <stdint.h>

struct arena;
struct content_gen;
struct delivery_counters;
struct leads_policy;
struct lead_repo;
struct sender_registry;
struct sp_clock;

struct delivery_deps {
    struct lead_repo *repo; /* bound to the same session as queue */
    struct job_queue *queue;
    const struct sp_clock *clock;
    const struct sender_registry *senders;
    int64_t lease_ms;                  /* how long a reserved job stays ours without renewal */
    int batch;                         /* jobs reserved per tick (>= 1), unless pace is set */
    struct delivery_pace *pace;        /* the batch size adapted to the sends' time; NULL: batch */
    int jitter_pct;                    /* backoff jitter, 0..100 */
    uint32_t (*random)(void);          /* for jitter; NULL means no jitter */
    struct content_gen *gen;           /* answers (generate-reply jobs) */
    struct content_gen *fallback;      /* answers when gen failed for good; NULL: none */
    const struct leads_policy *policy; /* attempts and backoff of the answers' send jobs */
    /* The send outcomes are counted here (metrics); NULL: not counted. */
    struct delivery_counters *counters;
};

/* Outcome of one processed job, for logs, metrics and tests. */
enum delivery_outcome {
    DELIVERY_SENT = 0,   /* sent; for generate-reply: the answer was written */
    DELIVERY_DUPLICATE,  /* message was already sent: job completed without sending */
    DELIVERY_RETRY,      /* failed, will retry */
    DELIVERY_DEAD,       /* failed for good */
    DELIVERY_LEASE_LOST, /* our lease was lost mid-send: another worker's outcome stands */
    DELIVERY_FALLBACK,   /* generate-reply: the model failed for good, the template answered */
    DELIVERY_SUPPRESSED, /* the lead opted out of the channel: not sent, job completed */
    DELIVERY_OUTCOME_COUNT
};

/* An outcome's name in metrics: "sent", "duplicate", "retried", "failed", "lease_lost",
 * "fallback", "suppressed". Static. */
const char *delivery_outcome_label(enum delivery_outcome o);

/* The send-message jobs' outcomes by channel, for the process's metrics (rendered by app/).
 * A job counts once its outcome is recorded (a record that failed counts nothing: the job runs
 * again); a job whose message could not be read (gone, another producer's job) has no channel
 * and does not count; generate-reply jobs do not count (they send nothing themselves: their
 * answer's send-message job does). Shared by every worker thread: relaxed atomics, only
 * incremented here. Zero it (memset or static storage) before use. */
struct delivery_counters {
    atomic_uint_fast64_t sends[CHANNEL_COUNT][DELIVERY_OUTCOME_COUNT];
};

/* The message a send-message job is about: data.messageId copied into out (SP_UUID_LEN + 1
 * bytes). SP_EINVAL when the data has none or it is not a message id. */
int leads_delivery_message_id(const struct job *j, char *out) SP_MUST_CHECK;

/* Processes one reserved send-message job. Returns an error only when the outcome could not be
 * recorded (storage down): the job's lease then expires and it is taken again. */
int leads_deliver(const struct delivery_deps *d, const struct job *j, struct arena *a,
                  enum delivery_outcome *outcome, struct sp_error *err) SP_MUST_CHECK;

/* A worker's batch size, adapted to how long its sends take. A batch's sends run one after the
 * other and their outcomes are recorded together, in one transaction: a bigger batch spreads
 * the cost of its two transactions (reserve and claim, then record) over more jobs, but holds
 * its first outcomes back until its last send is done, and leaves fewer jobs to the other
 * workers. So the size starts small, doubles after each full batch whose sends took at most
 * half of budget_ms (WORKER_BATCH_MS), up to max (WORKER_BATCH), and falls at once to what fits
 * in budget_ms after one that took longer. Only the sends' time counts: a slow database makes
 * no batch smaller (smaller batches would load it more). One per worker thread. */
struct delivery_pace {
    int size;          /* jobs to reserve next round, 1..max */
    int max;           /* >= 1 */
    int64_t budget_ms; /* >= 1 */
};

#define DELIVERY_PACE_START 4 /* the first batch's size (at most max) */

void delivery_pace_init(struct delivery_pace *p, int max, int64_t budget_ms);
/* After a round that reserved `reserved` jobs (p->size at most) and made `sent` sends (or
 * answers) in `spent_ms`: the next round's size. */
void delivery_pace_update(struct delivery_pace *p, int reserved, int sent, int64_t spent_ms);

/* Reserves and processes up to d->pace->size jobs (d->batch without a pace). *did_work tells
 * whether a job was processed; *next_due (when idle) is when the next delayed job becomes due,
 * or 0. */
int leads_delivery_tick(const struct delivery_deps *d, struct arena *a, int *did_work,
                        int64_t *next_due, struct sp_error *err) SP_MUST_CHECK;
