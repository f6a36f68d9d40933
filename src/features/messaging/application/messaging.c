/* messaging.c: send-message job processing (see messaging.h). */
#include "features/messaging/application/messaging.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "features/leads/application/leads.h"
#include "features/leads/domain/lead_repo.h"
#include "features/messaging/domain/sender.h"

#include <string.h>

static const char *
finish_or_empty(struct jsonw *w)
{
    const char *s;
    if (jsonw_finish(w, &s, NULL) != SP_OK)
        return "{}";
    return s;
}

static const char *
correlation(struct arena *a, const struct message *m, const struct job *j)
{
    struct jsonw w;
    jsonw_init(&w, a, 512);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "leadId", m->lead_id);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "jobId", j->id);
    jsonw_obj_end(&w);
    return finish_or_empty(&w);
}

/* Unit of work 1: dedupe and claim. *skip is set when the message is already sent. */
static int
claim(const struct messaging_deps *d, const struct job *j, struct arena *a, struct message *m,
      struct lead *l, int *skip, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int rc;

    *skip = 0;
    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_message_get(d->repo, j->message_id ? j->message_id : "", a, m, err);
    if (rc == SP_OK && (m->status == MESSAGE_SENT || m->direction != MESSAGE_OUTBOUND)) {
        *skip = 1;
        rc = job_queue_complete(d->queue, j, now, err);
    } else if (rc == SP_OK) {
        rc = lead_repo_lead_get(d->repo, m->lead_id, a, l, err);
        m->status = MESSAGE_SENDING;
        m->attempts++;
        m->updated_at = now;
        if (rc == SP_OK)
            rc = lead_repo_message_update_delivery(d->repo, m, err);
    }
    if (rc != SP_OK) {
        lead_repo_rollback(d->repo);
        return rc;
    }
    return lead_repo_commit(d->repo, err);
}

static int
record_sent(const struct messaging_deps *d, const struct job *j, struct arena *a,
            struct message *m, const struct lead *l, const char *provider_id, struct sp_error *err)
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

    rc = lead_repo_message_update_delivery(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_SENT, corr,
                                finish_or_empty(&w), now, err);
    if (rc == SP_OK && m->kind == MESSAGE_KIND_AI_REPLY)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_AI_REPLY_SENT, corr,
                                finish_or_empty(&w), now, err);
    if (rc == SP_OK && to != l->status) {
        /* Re-read inside this unit of work: a reply may have moved the lead meanwhile. */
        struct lead cur;
        rc = lead_repo_lead_get(d->repo, l->id, a, &cur, err);
        to = lead_status_after_sent(cur.status);
        if (rc == SP_OK && to != cur.status) {
            struct jsonw s;
            jsonw_init(&s, a, 256);
            jsonw_obj_begin(&s);
            jsonw_kstr(&s, "from", lead_status_name(cur.status));
            jsonw_kstr(&s, "to", lead_status_name(to));
            jsonw_kstr(&s, "reason", "message_sent");
            jsonw_obj_end(&s);
            rc = lead_repo_lead_update_status(d->repo, l->id, to, now, err);
            if (rc == SP_OK)
                rc = leads_event_append(d->repo, l->id, EVENT_STATUS_CHANGED, corr,
                                        finish_or_empty(&s), now, err);
        }
    }
    if (rc == SP_OK)
        rc = job_queue_complete(d->queue, j, now, err);
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
        run_at = now + job_backoff_delay(j->backoff_ms, attempts_made, d->jitter_pct, rnd);
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

    rc = lead_repo_message_update_delivery(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_FAILED, correlation(a, m, j),
                                finish_or_empty(&w), now, err);
    if (rc == SP_OK)
        rc = *will_retry ? job_queue_retry(d->queue, j, now, run_at, error, err)
                         : job_queue_fail(d->queue, j, now, error, err);
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

int
messaging_process(const struct messaging_deps *d, const struct job *j, struct arena *a,
                  enum messaging_outcome *outcome, struct sp_error *err)
{
    struct message m;
    struct lead l;
    struct sp_error send_err = {0};
    const char *provider_id = NULL;
    int skip = 0, will_retry = 0;
    int rc, send_rc;

    rc = claim(d, j, a, &m, &l, &skip, err);
    if (rc == SP_ENOTFOUND) {
        /* The message is gone (lead deleted): nothing can ever be sent for this job. */
        sp_error_clear(err);
        rc = lead_repo_begin(d->repo, err);
        if (rc == SP_OK) {
            rc = job_queue_fail(d->queue, j, sp_clock_now_ms(d->clock), "message not found", err);
            rc = rc == SP_OK ? lead_repo_commit(d->repo, err) : (lead_repo_rollback(d->repo), rc);
        }
        *outcome = MESSAGING_DEAD;
        return rc;
    }
    if (rc != SP_OK)
        return rc;
    if (skip) {
        *outcome = MESSAGING_DUPLICATE;
        return SP_OK;
    }

    send_rc = deliver(d, a, &m, &l, &provider_id, &send_err);

    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    if (send_rc == SP_OK) {
        rc = record_sent(d, j, a, &m, &l, provider_id ? provider_id : "", err);
        *outcome = MESSAGING_SENT;
    } else {
        const char *msg = send_err.msg[0] ? send_err.msg : sp_err_str(send_rc);
        rc = record_failure(d, j, a, &m, send_rc, arena_strdup(a, msg), &will_retry, err);
        *outcome = will_retry ? MESSAGING_RETRY : MESSAGING_DEAD;
    }
    if (rc != SP_OK) {
        lead_repo_rollback(d->repo);
        return rc;
    }
    return lead_repo_commit(d->repo, err);
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
    default:
        return "failed for good";
    }
}

int
messaging_worker_tick(const struct messaging_deps *d, struct arena *a, int *did_work,
                      int64_t *next_due, struct sp_error *err)
{
    struct job j;
    enum messaging_outcome outcome = MESSAGING_SENT;
    int found = 0;
    int rc;

    *did_work = 0;
    rc = job_queue_reserve(d->queue, sp_clock_now_ms(d->clock), d->lease_ms, a, &j, &found,
                           next_due, err);
    if (rc != SP_OK || !found)
        return rc;
    *did_work = 1;
    rc = messaging_process(d, &j, a, &outcome, err);
    if (rc == SP_OK)
        log_debug("job %s %s (message %s, attempt %d of %d): %s", j.id, j.name,
                  j.message_id ? j.message_id : "-", j.attempts_made + 1, j.max_attempts,
                  outcome_name(outcome));
    if (rc == SP_OK && (outcome == MESSAGING_RETRY || outcome == MESSAGING_DEAD))
        log_info("job %s message %s %s", j.id, j.message_id ? j.message_id : "-",
                 outcome_name(outcome));
    return rc;
}
