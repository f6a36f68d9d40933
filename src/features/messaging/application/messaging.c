/* messaging.c: send-message job processing (see messaging.h). */
#include "features/messaging/application/messaging.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/uuid.h"
#include "features/leads/application/leads.h"
#include "features/leads/domain/lead_repo.h"
#include "features/messaging/domain/sender.h"

#include <stdlib.h>
#include <string.h>

static const char *
correlation(struct arena *a, const struct message *m, const struct job *j)
{
    return leads_correlation_json(a, m->lead_id, m->id, j->id);
}

/* A unit of work: the database transaction, and the queue told how it ended (a Redis queue
 * applies its job transitions after the commit, and gives reserved jobs back after a rollback). */
static int
uow_begin(const struct messaging_deps *d, struct sp_error *err)
{
    return lead_repo_begin(d->repo, err);
}

static void
uow_rollback(const struct messaging_deps *d)
{
    lead_repo_rollback(d->repo);
    job_queue_after_rollback(d->queue);
}

/* *committed tells whether the database part committed (then a queue error is only logged by
 * the queue: the outcome is recorded, and the jobs go out again after their lock expires). */
static int
uow_commit(const struct messaging_deps *d, int *committed, struct sp_error *err)
{
    int rc = lead_repo_commit(d->repo, err);

    *committed = rc == SP_OK;
    if (rc != SP_OK) {
        job_queue_after_rollback(d->queue);
        return rc;
    }
    return job_queue_after_commit(d->queue, err);
}

/* What the claim step decided about a reserved job. */
enum claim_result { CLAIM_SEND = 0, CLAIM_SKIP, CLAIM_GONE, CLAIM_LOST };

/* Ends a job that needs no send. A lost lease (another worker owns the job now) is fine here:
 * there is nothing of ours to record. */
static int
end_unsent(const struct messaging_deps *d, const struct job *j, int64_t now, int complete,
           const char *why, struct sp_error *err)
{
    struct sp_error jerr = {0};
    int rc = complete ? job_queue_complete(d->queue, j, now, &jerr)
                      : job_queue_fail(d->queue, j, now, why, &jerr);

    if (rc == SP_ECONFLICT && strcmp(jerr.field, "job") == 0)
        return SP_OK;
    if (rc != SP_OK && err && err->code == SP_OK)
        *err = jerr;
    return rc;
}

/* A job this worker cannot run (another producer's, on a shared queue): why, or NULL. */
static const char *
unrunnable(const struct job *j)
{
    if (j->name == NULL || strcmp(j->name, SEND_MESSAGE_JOB) != 0)
        return "salespad worker: no handler for this job name (it runs send-message jobs)";
    if (j->message_id == NULL || !sp_uuid_valid(j->message_id, strlen(j->message_id)))
        return "salespad worker: data.messageId is missing or not a message id";
    return NULL;
}

/* Inside the caller's unit of work: dedupe and claim. CLAIM_SKIP when the message is already
 * sent (the job completes), CLAIM_GONE when the message no longer exists (the job fails). */
static int
claim_in_tx(const struct messaging_deps *d, const struct job *j, struct arena *a, struct message *m,
            struct lead *l, enum claim_result *res, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    struct sp_error lookup = {0};
    const char *why;
    int rc;

    *res = CLAIM_SEND;
    if ((why = unrunnable(j)) != NULL) {
        *res = CLAIM_GONE;
        return end_unsent(d, j, now, 0, why, err);
    }
    rc = lead_repo_message_get(d->repo, j->message_id, a, m, &lookup);
    if (rc == SP_ENOTFOUND) {
        *res = CLAIM_GONE;
        return end_unsent(d, j, now, 0, "salespad worker: message not found", err);
    }
    if (rc != SP_OK) {
        if (err && err->code == SP_OK)
            *err = lookup;
        return rc;
    }
    if (m->status == MESSAGE_SENT || m->direction != MESSAGE_OUTBOUND) {
        *res = CLAIM_SKIP;
        return end_unsent(d, j, now, 1, NULL, err);
    }
    if (m->status == MESSAGE_FAILED) {
        /* Failed for good already (the job's own end was lost, e.g. Redis was down): no
         * second round of sends. */
        *res = CLAIM_GONE;
        return end_unsent(d, j, now, 0, "salespad worker: message already failed for good", err);
    }
    rc = lead_repo_lead_get(d->repo, m->lead_id, a, l, err);
    if (rc != SP_OK)
        return rc;
    m->status = MESSAGE_SENDING;
    m->attempts++;
    m->updated_at = now;
    return lead_repo_message_update_delivery(d->repo, m, err);
}

static int
record_sent(const struct messaging_deps *d, struct job *j, struct arena *a, struct message *m,
            const struct lead *l, const char *provider_id, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    const char *corr = correlation(a, m, j);
    enum lead_status to = lead_status_after_sent(l->status);
    struct jsonw w;
    int rc;

    m->status = MESSAGE_SENT;
    m->sent_at = now;
    m->updated_at = now;
    m->last_error = NULL;
    m->provider_id = provider_id;
    jsonw_init(&w, a, 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "channel", channel_name(m->channel));
    jsonw_kint(&w, "attempt", m->attempts);
    jsonw_kstr(&w, "providerId", provider_id);
    jsonw_obj_end(&w);

    /* The job first: it fails with SP_ECONFLICT, changing nothing, if our lease was lost. Its
     * return value (BullMQ's returnvalue) is the message_sent payload. */
    j->result = jsonw_finish_or(&w, "{}");
    rc = job_queue_complete(d->queue, j, now, err);
    if (rc == SP_OK)
        rc = lead_repo_message_update_delivery(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_SENT, corr,
                                jsonw_finish_or(&w, "{}"), now, err);
    if (rc == SP_OK && m->kind == MESSAGE_KIND_AI_REPLY)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_AI_REPLY_SENT, corr,
                                jsonw_finish_or(&w, "{}"), now, err);
    if (rc == SP_OK && to != l->status) {
        /* Compare-and-set: of two messages of a new lead sent at once, one records the change. */
        int changed = 0;
        rc = lead_repo_lead_transition(d->repo, l->id, l->status, to, now, &changed, err);
        if (rc == SP_OK && changed)
            rc = leads_event_append(d->repo, l->id, EVENT_STATUS_CHANGED, corr,
                                    leads_status_change_payload(a, l->status, to, "message_sent"),
                                    now, err);
    }
    return rc;
}

static int
record_failure(const struct messaging_deps *d, const struct job *j, struct arena *a,
               struct message *m, int send_rc, const char *error, int *will_retry,
               struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int attempts_made = j->attempts_made + 1;
    int64_t run_at = 0;
    struct jsonw w;
    int rc;

    *will_retry = sp_err_retryable(send_rc) && attempts_made < j->max_attempts;
    if (*will_retry) {
        uint32_t rnd = d->random ? d->random() : 0;
        run_at = now + job_retry_delay(j, attempts_made, d->jitter_pct, rnd);
    }
    m->status = *will_retry ? MESSAGE_QUEUED : MESSAGE_FAILED;
    m->last_error = error;
    m->updated_at = now;
    jsonw_init(&w, a, 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "channel", channel_name(m->channel));
    jsonw_kint(&w, "attempt", m->attempts);
    jsonw_kstr(&w, "error", error);
    jsonw_kstr(&w, "code", sp_err_name(send_rc));
    jsonw_kbool(&w, "willRetry", *will_retry);
    if (*will_retry)
        jsonw_ktime(&w, "nextAttemptAt", run_at, 0);
    jsonw_obj_end(&w);

    /* The job first: it fails with SP_ECONFLICT, changing nothing, if our lease was lost. */
    rc = *will_retry ? job_queue_retry(d->queue, j, now, run_at, error, err)
                     : job_queue_fail(d->queue, j, now, error, err);
    if (rc == SP_OK)
        rc = lead_repo_message_update_delivery(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_FAILED, correlation(a, m, j),
                                jsonw_finish_or(&w, "{}"), now, err);
    return rc;
}

static int
deliver(const struct messaging_deps *d, struct arena *a, const struct message *m,
        const struct lead *l, const char **provider_id, struct sp_error *send_err)
{
    struct sender *s = sender_registry_get(d->senders, m->channel);
    struct send_request req;

    if (s == NULL)
        return sp_error_set(send_err, SP_EPERMANENT, "channel", "no sender for channel %s",
                            channel_name(m->channel));
    memset(&req, 0, sizeof(req));
    req.channel = m->channel;
    req.to = m->recipient ? m->recipient : lead_address_for(l, m->channel);
    if (req.to == NULL)
        return sp_error_set(send_err, SP_EPERMANENT, "to", "message has no %s address",
                            channel_name(m->channel));
    req.message_id = m->id;
    req.idempotency_key = m->id;
    req.attempt = m->attempts;
    req.channel_message = m->channel_message;
    return sender_send(s, &req, a, provider_id, send_err);
}

/* One job of a batch, from reservation to outcome. */
struct work {
    struct job job;
    struct message msg;
    struct lead lead;
    enum claim_result res;
    int send_rc;
    const char *provider_id;
    struct sp_error send_err;
    enum messaging_outcome outcome;
};

/* Records one send's outcome inside the caller's unit of work. */
static int
record_outcome(const struct messaging_deps *d, struct arena *a, struct work *w,
               struct sp_error *err)
{
    int will_retry = 0;
    int rc;

    if (w->send_rc == SP_OK) {
        w->outcome = MESSAGING_SENT;
        return record_sent(d, &w->job, a, &w->msg, &w->lead, w->provider_id ? w->provider_id : "",
                           err);
    }
    rc = record_failure(
        d, &w->job, a, &w->msg, w->send_rc,
        arena_strdup(a, w->send_err.msg[0] ? w->send_err.msg : sp_err_str(w->send_rc)), &will_retry,
        err);
    w->outcome = will_retry ? MESSAGING_RETRY : MESSAGING_DEAD;
    return rc;
}

static int
record_in_tx(const struct messaging_deps *d, struct arena *a, struct work *w, int fenced,
             struct sp_error *err)
{
    struct sp_error rerr = {0};
    int rc = SP_OK;

    /* A queue outside the database fences here (unless the batch was fenced at once): if our
     * lock on the job is gone (it expired during the send and the job went to another worker),
     * that worker's outcome stands. */
    if (!fenced)
        rc = job_queue_touch(d->queue, &w->job, d->lease_ms, &rerr);
    if (rc == SP_EUNAVAIL) {
        /* The queue cannot tell (Redis down): the send happened, so its outcome is recorded;
         * left unrecorded, the message would go out again once the job is handed out anew. */
        sp_error_clear(&rerr);
        rc = SP_OK;
    }
    /* The lead first (in lead order across the batch): its timeline entries stay together. */
    if (rc == SP_OK)
        rc = lead_repo_lead_lock(d->repo, w->msg.lead_id, &rerr);
    if (rc == SP_OK)
        rc = record_outcome(d, a, w, &rerr);
    if (rc == SP_ECONFLICT && strcmp(rerr.field, "job") == 0) {
        /* Our lease expired during the send and another worker owns the job now: its outcome
         * stands; ours is dropped (nothing was written for this job). */
        log_warn("job %s: lease lost during the send; outcome not recorded", w->job.id);
        w->outcome = MESSAGING_LEASE_LOST;
        return SP_OK;
    }
    if (rc != SP_OK && err && err->code == SP_OK)
        *err = rerr;
    return rc;
}

#define RECORD_TRIES 5

static int
by_lead(const void *x, const void *y)
{
    const struct work *a = *(const struct work *const *)x, *b = *(const struct work *const *)y;
    int c = strcmp(a->msg.lead_id, b->msg.lead_id);
    return c ? c : strcmp(a->msg.id, b->msg.id);
}

/* Checks the leases of the batch's jobs in one round trip, before the unit of work (so that it
 * holds its row locks for less time), and drops from order[0..*m) the jobs whose lease was lost.
 * Returns 1 when done; 0 when the queue cannot (then record_in_tx checks each job). */
static int
fence_batch(const struct messaging_deps *d, struct arena *a, struct work **order, int *m)
{
    const struct job **jobs;
    int *lost, kept = 0, rc;
    struct sp_error err = {0};

    if (d->queue->ops->touch_many == NULL || *m == 0)
        return 0;
    jobs = arena_alloc(a, sizeof(*jobs) * (size_t)*m);
    lost = arena_alloc(a, sizeof(*lost) * (size_t)*m);
    for (int i = 0; i < *m; i++)
        jobs[i] = &order[i]->job;
    rc = d->queue->ops->touch_many(d->queue, jobs, *m, d->lease_ms, lost, &err);
    if (rc != SP_OK) {
        /* Cannot tell (Redis down): the sends happened, so their outcomes are recorded. */
        log_debug("lease check of %d jobs failed (%s); recording anyway", *m, err.msg);
        return 1;
    }
    for (int i = 0; i < *m; i++) {
        if (lost[i]) {
            log_warn("job %s: lease lost during the send; outcome not recorded", order[i]->job.id);
            order[i]->outcome = MESSAGING_LEASE_LOST;
        } else {
            order[kept++] = order[i];
        }
    }
    *m = kept;
    return 1;
}

/* One unit of work recording every sent job of the batch. Rows are touched in lead order so two
 * workers recording at once (PostgreSQL) lock leads in the same order and cannot deadlock. */
static int
record_batch(const struct messaging_deps *d, struct arena *a, struct work *ws, int n,
             int *committed, struct sp_error *err)
{
    struct work **order = arena_alloc(a, sizeof(*order) * (size_t)n);
    int m = 0, fenced, rc;

    *committed = 0;
    for (int i = 0; i < n; i++)
        if (ws[i].res == CLAIM_SEND)
            order[m++] = &ws[i];
    qsort(order, (size_t)m, sizeof(*order), by_lead);
    fenced = fence_batch(d, a, order, &m);
    rc = uow_begin(d, err);
    if (rc != SP_OK)
        return rc;
    for (int i = 0; rc == SP_OK && i < m; i++)
        rc = record_in_tx(d, a, order[i], fenced, err);
    if (rc != SP_OK) {
        uow_rollback(d);
        return rc;
    }
    return uow_commit(d, committed, err);
}

/* Renews the leases of the jobs from ws[from] on that are still to be sent (BullMQ renews its
 * locks every lockDuration / 2): slow sends must not let them expire mid-batch. */
static void
keep_leases(const struct messaging_deps *d, struct work *ws, int from, int n)
{
    for (int i = from; i < n; i++) {
        struct sp_error err = {0};
        int rc;
        if (ws[i].res != CLAIM_SEND)
            continue;
        rc = job_queue_touch(d->queue, &ws[i].job, d->lease_ms, &err);
        if (rc == SP_ECONFLICT && strcmp(err.field, "job") == 0) {
            /* Another worker has it now: sending it too would be a second send. */
            log_warn("job %s: lease lost before its send; left to its new owner", ws[i].job.id);
            ws[i].res = CLAIM_LOST;
        } else if (rc != SP_OK) {
            log_warn("job %s: lease not renewed: %s", ws[i].job.id, err.msg);
        }
    }
}

/* After a committed claim: calls the sender for each job to send, then records every outcome in
 * a second unit of work. */
static int
send_and_record(const struct messaging_deps *d, struct arena *a, struct work *ws, int n,
                struct sp_error *err)
{
    int64_t renewed = sp_clock_now_ms(d->clock);
    int rc, any = 0;

    for (int i = 0; i < n; i++) {
        struct work *w = &ws[i];
        if (w->res == CLAIM_SKIP)
            w->outcome = MESSAGING_DUPLICATE;
        if (w->res == CLAIM_GONE)
            w->outcome = MESSAGING_DEAD;
        if (w->res == CLAIM_SEND && sp_clock_now_ms(d->clock) - renewed >= d->lease_ms / 2) {
            keep_leases(d, ws, i, n);
            renewed = sp_clock_now_ms(d->clock);
        }
        if (w->res == CLAIM_LOST)
            w->outcome = MESSAGING_LEASE_LOST;
        if (w->res != CLAIM_SEND)
            continue;
        w->send_rc = deliver(d, a, &w->msg, &w->lead, &w->provider_id, &w->send_err);
        any = 1;
    }
    if (!any)
        return SP_OK;
    /* The sends happened: a transient failure (deadlock, serialization, busy) must not leave
     * their outcome unrecorded, or the jobs would be taken again after their lease and sent
     * twice. The record is rebuilt from scratch on each try. */
    for (int tries = 1;; tries++) {
        struct sp_error terr = {0};
        int committed = 0;
        rc = record_batch(d, a, ws, n, &committed, &terr);
        if (rc == SP_OK || committed || !sp_err_retryable(rc) || tries == RECORD_TRIES) {
            if (rc != SP_OK && err && err->code == SP_OK)
                *err = terr;
            return rc;
        }
        log_info("recording %d send outcomes failed (%s), retrying", n, terr.msg);
    }
}

int
messaging_process(const struct messaging_deps *d, const struct job *j, struct arena *a,
                  enum messaging_outcome *outcome, struct sp_error *err)
{
    struct work *w = arena_alloc(a, sizeof(*w));
    int rc;

    int committed = 0;

    w->job = *j;
    rc = uow_begin(d, err);
    if (rc != SP_OK)
        return rc;
    rc = claim_in_tx(d, &w->job, a, &w->msg, &w->lead, &w->res, err);
    if (rc != SP_OK) {
        uow_rollback(d);
        return rc;
    }
    rc = uow_commit(d, &committed, err);
    if (committed)
        rc = send_and_record(d, a, w, 1, err);
    *outcome = w->outcome;
    return rc;
}

static const char *
outcome_name(enum messaging_outcome o)
{
    switch (o) {
    case MESSAGING_SENT:
        return "sent";
    case MESSAGING_DUPLICATE:
        return "already sent";
    case MESSAGING_RETRY:
        return "failed, will retry";
    case MESSAGING_LEASE_LOST:
        return "lease lost, outcome dropped";
    default:
        return "failed for good";
    }
}

static void
log_outcome(const struct work *w)
{
    const struct job *j = &w->job;
    const char *mid = j->message_id ? j->message_id : "-";

    if (w->outcome == MESSAGING_RETRY || w->outcome == MESSAGING_DEAD)
        log_info("job %s message %s attempt %d of %d: %s", j->id, mid, j->attempts_made + 1,
                 j->max_attempts, outcome_name(w->outcome));
    else
        log_debug("job %s message %s attempt %d of %d: %s", j->id, mid, j->attempts_made + 1,
                  j->max_attempts, outcome_name(w->outcome));
}

int
messaging_worker_tick(const struct messaging_deps *d, struct arena *a, int *did_work,
                      int64_t *next_due, struct sp_error *err)
{
    int batch = d->batch > 0 ? d->batch : 1;
    struct work *ws = arena_alloc(a, sizeof(*ws) * (size_t)batch);
    int n = 0, found = 1, committed = 0;
    int rc;

    *did_work = 0;
    /* Reserve and claim a batch in one unit of work, send, then record the batch in another:
     * two write transactions per batch instead of several per job. */
    rc = uow_begin(d, err);
    if (rc != SP_OK)
        return rc;
    if (d->queue->ops->reserve_many) {
        /* One round trip for the whole batch: consecutive jobs (a lead's messages) stay with
         * one worker, which keeps workers from queueing on each other's lead locks. */
        struct job *js = arena_alloc(a, sizeof(*js) * (size_t)batch);
        rc = d->queue->ops->reserve_many(d->queue, sp_clock_now_ms(d->clock), d->lease_ms, a, js,
                                         batch, &n, next_due, err);
        for (int i = 0; rc == SP_OK && i < n; i++) {
            ws[i].job = js[i];
            rc = claim_in_tx(d, &ws[i].job, a, &ws[i].msg, &ws[i].lead, &ws[i].res, err);
        }
    }
    while (d->queue->ops->reserve_many == NULL && rc == SP_OK && found && n < batch) {
        struct work *w = &ws[n];
        rc = job_queue_reserve(d->queue, sp_clock_now_ms(d->clock), d->lease_ms, a, &w->job, &found,
                               next_due, err);
        if (rc == SP_OK && found) {
            rc = claim_in_tx(d, &w->job, a, &w->msg, &w->lead, &w->res, err);
            n++;
        }
    }
    if (rc != SP_OK) {
        uow_rollback(d);
        return rc;
    }
    rc = uow_commit(d, &committed, err);
    if (!committed || n == 0)
        return rc;
    /* A queue error after the commit (already logged by the queue) does not undo the claims:
     * the sends go ahead. */
    *did_work = 1;
    if (n == batch)
        *next_due = 0; /* more may be due right away */
    rc = send_and_record(d, a, ws, n, err);
    for (int i = 0; rc == SP_OK && i < n; i++)
        log_outcome(&ws[i]);
    return rc;
}
