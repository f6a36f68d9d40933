/* delivery.c: send-message job processing and the worker tick (see delivery.h). */
#include "features/leads/application/delivery.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonr.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/uuid.h"
#include "features/leads/application/jobs.h"
#include "features/leads/application/leads.h"
#include "features/leads/domain/content_gen.h"
#include "features/leads/domain/lead_repo.h"
#include "features/messaging/domain/sender.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IN_REPLY_TO_MAX 998 /* one header line */
/* The longest wait a provider's Retry-After may impose on one retry: past it the job's own
 * backoff (and max_attempts) keep the say, so a bogus header cannot park a message for days. */
#define RETRY_AFTER_MAX_MS (60LL * 60 * 1000)

static const char *
correlation(struct arena *a, const struct message *m, const struct job *j)
{
    return leads_correlation_json(a, m->lead_id, m->id, j->id);
}

/* A unit of work: the database transaction, and the queue told how it ended (a Redis queue
 * applies its job transitions after the commit, and gives reserved jobs back after a rollback). */
static int
uow_begin(const struct delivery_deps *d, struct sp_error *err)
{
    return lead_repo_begin(d->repo, err);
}

static void
uow_rollback(const struct delivery_deps *d)
{
    lead_repo_rollback(d->repo);
    job_queue_after_rollback(d->queue);
}

/* *committed tells whether the database part committed (then a queue error is only logged by
 * the queue: the outcome is recorded, and the jobs go out again after their lock expires). */
static int
uow_commit(const struct delivery_deps *d, int *committed, struct sp_error *err)
{
    int rc = job_queue_before_commit(d->queue, err);

    if (rc != SP_OK) {
        *committed = 0;
        uow_rollback(d);
        return rc;
    }
    rc = lead_repo_commit(d->repo, err);
    *committed = rc == SP_OK;
    if (rc != SP_OK) {
        job_queue_after_rollback(d->queue);
        return rc;
    }
    return job_queue_after_commit(d->queue, err);
}

/* What the claim step decided about a reserved job. CLAIM_SUPPRESS: the lead opted out of the
 * message's channel; the record step marks it suppressed and completes the job, no send. */
enum claim_result { CLAIM_SEND = 0, CLAIM_SKIP, CLAIM_GONE, CLAIM_LOST, CLAIM_SUPPRESS };

/* One job of a batch, from reservation to outcome. */
struct work {
    struct job job;
    int is_gen; /* a generate-reply job: msg is the inbound message it answers */
    struct message msg;
    struct lead lead;
    int64_t last_inbound; /* answers: when the lead last wrote on the channel, 0 never */
    enum claim_result res;
    struct lead_opt_out opt_out; /* CLAIM_SUPPRESS: the opt-out that stops the send */
    int send_rc;
    const char *provider_id;
    struct sp_error send_err;
    enum delivery_outcome outcome;
    /* generate-reply */
    char answer_id[SP_UUID_LEN + 1];
    struct conversation conv;
    struct generated answer;
};

/* Ends a job that needs no send. A lost lease (another worker owns the job now) is fine here:
 * there is nothing of ours to record. */
static int
end_unsent(const struct delivery_deps *d, const struct job *j, int64_t now, int complete,
           const char *why, struct sp_error *err)
{
    struct sp_error jerr = {0};
    int rc = complete ? job_queue_complete(d->queue, j, now, &jerr)
                      : job_queue_fail(d->queue, j, now, why, &jerr);

    if (rc == SP_ELEASELOST)
        return SP_OK;
    if (rc != SP_OK && err && err->code == SP_OK)
        *err = jerr;
    return rc;
}

int
leads_delivery_message_id(const struct job *j, char *out)
{
    if (jsonr_str(j->data, "messageId", out, SP_UUID_LEN + 1) != SP_OK ||
        !sp_uuid_valid(out, strlen(out)))
        return SP_EINVAL;
    return SP_OK;
}

/* A job this worker cannot run (another producer's, on a shared queue): why, or NULL. Else
 * message_id receives the message it is about. */
static const char *
unrunnable(const struct job *j, char *message_id)
{
    if (j->name == NULL || strcmp(j->name, SEND_MESSAGE_JOB) != 0)
        return "salespad worker: no handler for this job name (it runs send-message and "
               "generate-reply jobs)";
    if (leads_delivery_message_id(j, message_id) != SP_OK)
        return "salespad worker: data.messageId is missing or not a message id";
    return NULL;
}

/* Whether a message in status s has had its outcome: sent (and maybe delivered or read since)
 * or suppressed. Its job only completes. */
static int
message_done(enum message_status s)
{
    return s == MESSAGE_SENT || s == MESSAGE_DELIVERED || s == MESSAGE_READ ||
           s == MESSAGE_SUPPRESSED;
}

/* The leads and opt-outs the claims of one unit of work have read: a lead's two welcomes are
 * usually in the same batch, and nothing in a claim changes either, so the claim of its second
 * message reads neither again. Arena-backed, one entry per lead (found by lead.id), at most
 * `cap`. */
struct claim_memo {
    struct claim_memo_entry {
        struct lead lead;
        struct lead_opt_outs opt_outs;
    } * v;
    int n, cap;
};

/* The lead of a message and its opt-outs: from the memo (may be NULL) or read, then kept. */
static int
claim_lead(const struct delivery_deps *d, struct claim_memo *memo, const char *lead_id,
           struct arena *a, struct lead *l, struct lead_opt_outs *opt_outs, struct sp_error *err)
{
    int rc;

    for (int i = 0; memo && i < memo->n; i++) {
        if (strcmp(memo->v[i].lead.id, lead_id) == 0) {
            *l = memo->v[i].lead;
            *opt_outs = memo->v[i].opt_outs;
            return SP_OK;
        }
    }
    rc = lead_repo_lead_get(d->repo, lead_id, a, l, err);
    /* Do not contact, checked at send time, for every kind of message: read in the claim's
     * transaction, the last one before the send. An opt-out committed after this read finds
     * the message already on its way (at most the sends in flight at that moment). */
    if (rc == SP_OK)
        rc = lead_repo_opt_out_list(d->repo, lead_id, a, opt_outs, err);
    if (rc == SP_OK && memo && memo->n < memo->cap) {
        struct claim_memo_entry *e = &memo->v[memo->n++];
        e->lead = *l;
        e->opt_outs = *opt_outs;
    }
    return rc;
}

/* Inside the caller's unit of work: dedupe and claim. CLAIM_SKIP when the message is already
 * sent or suppressed (the job completes), CLAIM_GONE when the message no longer exists (the job
 * fails), CLAIM_SUPPRESS when the lead opted out of the message's channel (nothing is written
 * here: the record step suppresses it, under the lead's lock). *last_inbound receives when the
 * lead last wrote on the message's channel (answers only). */
static int
claim_in_tx(const struct delivery_deps *d, const struct job *j, struct arena *a,
            struct claim_memo *memo, struct message *m, struct lead *l, int64_t *last_inbound,
            struct lead_opt_out *opt_out, enum claim_result *res, struct sp_error *err)
{
    struct lead_opt_outs opt_outs;
    const struct lead_opt_out *o;
    int64_t now = sp_clock_now_ms(d->clock);
    struct sp_error lookup = {0};
    char message_id[SP_UUID_LEN + 1];
    const char *why;
    int rc;

    *res = CLAIM_SEND;
    *last_inbound = 0;
    if ((why = unrunnable(j, message_id)) != NULL) {
        *res = CLAIM_GONE;
        return end_unsent(d, j, now, 0, why, err);
    }
    rc = lead_repo_message_get(d->repo, message_id, a, m, &lookup);
    if (rc == SP_ENOTFOUND) {
        *res = CLAIM_GONE;
        return end_unsent(d, j, now, 0, "salespad worker: message not found", err);
    }
    if (rc != SP_OK) {
        if (err && err->code == SP_OK)
            *err = lookup;
        return rc;
    }
    if (message_done(m->status) || m->direction != MESSAGE_OUTBOUND) {
        *res = CLAIM_SKIP;
        return end_unsent(d, j, now, 1, NULL, err);
    }
    if (m->status == MESSAGE_FAILED && !j->requeued) {
        /* Failed for good already (the job's own end was lost, e.g. Redis was down): no
         * second round of sends. */
        *res = CLAIM_GONE;
        return end_unsent(d, j, now, 0, "salespad worker: message already failed for good", err);
    }
    rc = claim_lead(d, memo, m->lead_id, a, l, &opt_outs, err);
    if (rc != SP_OK)
        return rc;
    if (m->status == MESSAGE_FAILED) {
        /* Put back in line from `failed` through BullMQ (a Node client's job.retry(), Bull
         * Board): a retry like POST /jobs/:id/retry, which the timeline learns of now. */
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_RETRIED, correlation(a, m, j),
                                leads__message_retried_payload(a, m, j->id, "queue"), now, err);
        if (rc != SP_OK)
            return rc;
    }
    o = lead_opt_out_find(&opt_outs, m->channel);
    if (o != NULL) {
        *opt_out = *o;
        *res = CLAIM_SUPPRESS;
        return SP_OK;
    }
    /* WhatsApp's 24-hour window is measured from the lead's newest inbound message on the
     * channel, read here from the stored replies (the answer's own inbound, or a later one),
     * in the claim's transaction; the sender compares it with the time of the send. A welcome
     * needs no look-up: it is always a template. */
    if (m->kind != MESSAGE_KIND_WELCOME) {
        rc = lead_repo_message_last_inbound(d->repo, m->lead_id, m->channel, last_inbound, err);
        if (rc != SP_OK)
            return rc;
    }
    m->status = MESSAGE_SENDING;
    m->attempts++;
    m->updated_at = now;
    return lead_repo_message_update_delivery(d->repo, m, err);
}

static int
is_generate(const struct job *j)
{
    return j->name != NULL && strcmp(j->name, GENERATE_REPLY_JOB) == 0;
}

/* Inside the caller's unit of work, for a generate-reply job: reads what the generator needs.
 * CLAIM_SKIP when the answer exists already (the job completes), CLAIM_GONE when there is
 * nothing to answer (the job fails). Nothing is written. */
static int
claim_generate(const struct delivery_deps *d, struct work *w, struct arena *a, struct sp_error *err)
{
    const struct lead_page_spec spec = {0, CONTENT_HISTORY_MAX, LEADS_LIST_BUDGET};
    struct lead_page_info page = {0, 0};
    int64_t now = sp_clock_now_ms(d->clock);
    struct sp_error lookup = {0};
    char inbound_id[SP_UUID_LEN + 1];
    struct message answer, *hist = NULL;
    const char *why = NULL;
    int rc;

    w->is_gen = 1;
    w->res = CLAIM_SEND;
    if (leads_delivery_message_id(&w->job, inbound_id) != SP_OK)
        why = "salespad worker: data.messageId is missing or not a message id";
    if (why == NULL) {
        rc = lead_repo_message_get(d->repo, inbound_id, a, &w->msg, &lookup);
        if (rc == SP_ENOTFOUND)
            why = "salespad worker: message not found";
        else if (rc != SP_OK)
            goto lookup_failed;
        else if (w->msg.direction != MESSAGE_INBOUND)
            why = "salespad worker: generate-reply names a message that is not a reply";
    }
    if (why == NULL && d->gen == NULL)
        why = "salespad worker: no content generator configured";
    if (why != NULL) {
        w->res = CLAIM_GONE;
        return end_unsent(d, &w->job, now, 0, why, err);
    }
    leads_answer_id(inbound_id, w->answer_id);
    rc = lead_repo_message_get(d->repo, w->answer_id, a, &answer, &lookup);
    if (rc == SP_OK) {
        w->res = CLAIM_SKIP; /* answered already: a run that died after its commit */
        return end_unsent(d, &w->job, now, 1, NULL, err);
    }
    if (rc != SP_ENOTFOUND)
        goto lookup_failed;
    rc = lead_repo_lead_get(d->repo, w->msg.lead_id, a, &w->lead, err);
    if (rc != SP_OK)
        return rc;
    if (lead_address_for(&w->lead, w->msg.channel) == NULL) {
        w->res = CLAIM_GONE;
        return end_unsent(d, &w->job, now, 0, "salespad worker: the lead has no address there",
                          err);
    }
    rc = lead_repo_message_page(d->repo, w->msg.lead_id, w->msg.channel, &spec, a, &hist, &page,
                                err);
    w->conv.messages = hist;
    w->conv.n = page.n;
    return rc;
lookup_failed:
    if (err && err->code == SP_OK)
        *err = lookup;
    return rc;
}

/* The claim of any reserved job, by its name. memo: NULL, or this unit of work's (see
 * struct claim_memo). */
static int
claim_work(const struct delivery_deps *d, struct work *w, struct arena *a, struct claim_memo *memo,
           struct sp_error *err)
{
    if (is_generate(&w->job))
        return claim_generate(d, w, a, err);
    w->is_gen = 0;
    return claim_in_tx(d, &w->job, a, memo, &w->msg, &w->lead, &w->last_inbound, &w->opt_out,
                       &w->res, err);
}

/* When a job that failed its attempts_made-th attempt runs again: the longer of its backoff and
 * the provider's Retry-After (capped at RETRY_AFTER_MAX_MS). */
static int64_t
retry_at(const struct delivery_deps *d, const struct job *j, int attempts_made,
         int64_t retry_after_ms, int64_t now)
{
    uint32_t rnd = d->random ? d->random() : 0;
    int jitter = j->jitter_pct == JOB_JITTER_WORKER ? d->jitter_pct : j->jitter_pct;
    int64_t delay = job_backoff_delay(j->backoff_type, j->backoff_ms, attempts_made, jitter, rnd);

    if (retry_after_ms > RETRY_AFTER_MAX_MS)
        retry_after_ms = RETRY_AFTER_MAX_MS;
    return now + (retry_after_ms > delay ? retry_after_ms : delay);
}

/* *status_after: the lead's status once this commits, when we changed it (else unchanged). */
static int
record_sent(const struct delivery_deps *d, struct job *j, struct arena *a, struct message *m,
            const struct lead *l, const char *provider_id, enum lead_status *status_after,
            struct sp_error *err)
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

    /* The job first: it fails with SP_ELEASELOST, changing nothing, if our lease was lost. Its
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
        if (rc == SP_OK && changed)
            *status_after = to;
    }
    return rc;
}

/* A message to a channel the lead opted out of: suppressed, no send, the job completed with
 * the message_suppressed payload as its return value. The job first, as in record_sent. */
static int
record_suppressed(const struct delivery_deps *d, struct job *j, struct arena *a, struct message *m,
                  const struct lead_opt_out *o, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    struct jsonw w;
    int rc;

    m->status = MESSAGE_SUPPRESSED;
    m->updated_at = now;
    jsonw_init(&w, a, 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "channel", channel_name(m->channel));
    jsonw_kstr(&w, "kind", message_kind_name(m->kind));
    jsonw_kstr(&w, "reason", "opted_out");
    jsonw_kstr(&w, "optOutSource", opt_out_source_name(o->source));
    jsonw_ktime(&w, "optedOutAt", o->at, 0);
    jsonw_obj_end(&w);
    j->result = jsonw_finish_or(&w, "{}");
    rc = job_queue_complete(d->queue, j, now, err);
    if (rc == SP_OK)
        rc = lead_repo_message_update_delivery(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_SUPPRESSED, correlation(a, m, j),
                                j->result, now, err);
    return rc;
}

/* retry_after_ms: the provider's own wait before the next attempt (0: none); the retry waits
 * the longer of it (capped at RETRY_AFTER_MAX_MS) and the job's backoff. */
static int
record_failure(const struct delivery_deps *d, const struct job *j, struct arena *a,
               struct message *m, int send_rc, const char *error, int64_t retry_after_ms,
               int *will_retry, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int attempts_made = j->attempts_made + 1;
    int64_t run_at = 0;
    struct jsonw w;
    int rc;

    *will_retry = sp_err_retryable(send_rc) && attempts_made < j->max_attempts;
    if (*will_retry)
        run_at = retry_at(d, j, attempts_made, retry_after_ms, now);
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

    /* The job first: it fails with SP_ELEASELOST, changing nothing, if our lease was lost. */
    rc = *will_retry ? job_queue_retry(d->queue, j, now, run_at, error, err)
                     : job_queue_fail(d->queue, j, now, error, err);
    if (rc == SP_OK)
        rc = lead_repo_message_update_delivery(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, m->lead_id, EVENT_MESSAGE_FAILED, correlation(a, m, j),
                                jsonw_finish_or(&w, "{}"), now, err);
    return rc;
}

/* The string `key` of a channel message (an answer's "inReplyTo", "references"), or NULL. */
static const char *
thread_field(struct arena *a, const char *channel_message, const char *key)
{
    char buf[IN_REPLY_TO_MAX + 1];

    if (channel_message == NULL || jsonr_str(channel_message, key, buf, sizeof(buf)) != SP_OK ||
        buf[0] == '\0')
        return NULL;
    return arena_strdup(a, buf);
}

static int
deliver(const struct delivery_deps *d, struct arena *a, const struct message *m,
        const struct lead *l, int64_t last_inbound, const char **provider_id,
        struct sp_error *send_err)
{
    struct sender *s = sender_registry_get(d->senders, m->channel);
    struct send_request req;

    if (s == NULL)
        return sp_error_set(send_err, SP_EPERMANENT, "channel", "no sender for channel %s",
                            channel_name(m->channel));
    memset(&req, 0, sizeof(req));
    req.channel = m->channel;
    /* Only ever to the lead's own address (read in the claim's transaction): a message row
     * addressed elsewhere (written by an older build that answered a reply's "from") is not
     * sent, nor is an address that could break a header line (stored before it was checked). */
    req.to = lead_address_for(l, m->channel);
    if (req.to == NULL)
        return sp_error_set(send_err, SP_EPERMANENT, "to", "lead has no %s address",
                            channel_name(m->channel));
    if (m->recipient != NULL && strcmp(m->recipient, req.to) != 0)
        return sp_error_set(send_err, SP_EPERMANENT, "to",
                            "message is addressed to someone other than the lead");
    if (lead_text_check(req.to, strlen(req.to), SIZE_MAX) != LEAD_TEXT_OK)
        return sp_error_set(send_err, SP_EPERMANENT, "to",
                            "the lead's %s address holds control characters",
                            channel_name(m->channel));
    req.to_name = l->name;
    req.lead_id = l->id;
    req.message_id = m->id;
    req.idempotency_key = m->id;
    req.attempt = m->attempts;
    req.channel_message = m->channel_message;
    req.in_reply_to = thread_field(a, m->channel_message, "inReplyTo");
    req.references = thread_field(a, m->channel_message, "references");
    req.kind = m->kind;
    req.last_inbound_at = last_inbound;
    return sender_send(s, &req, a, provider_id, send_err);
}

/* The leads deps the answer's writes need (no bus: no event handler runs from a job). */
static struct leads_deps
answer_deps(const struct delivery_deps *d)
{
    struct leads_deps ld;

    memset(&ld, 0, sizeof(ld));
    ld.repo = d->repo;
    ld.queue = d->queue;
    ld.clock = d->clock;
    ld.gen = d->gen;
    ld.policy = d->policy;
    return ld;
}

/* The References of an answer to the inbound email: its own References ("references" of its
 * channel message, "<a> <b>") and then its Message-ID, the oldest ids dropped when the line
 * would pass REFERENCES_MAX (RFC 5322 3.6.4: the parent's References, then the parent). */
#define REFERENCES_MAX 900
static const char *
thread_references(struct arena *a, const char *inbound_message, const char *id)
{
    char refs[IN_REPLY_TO_MAX + 1];
    const char *all, *p;

    if (jsonr_str(inbound_message, "references", refs, sizeof(refs)) != SP_OK || refs[0] == '\0')
        return arena_printf(a, "<%s>", id);
    all = arena_printf(a, "%s <%s>", refs, id);
    for (p = all; strlen(p) > REFERENCES_MAX;) { /* drop the oldest id */
        const char *next = strstr(p + 1, " <");
        if (next == NULL)
            return arena_printf(a, "<%s>", id);
        p = next + 1;
    }
    return p;
}

/* The answer's channel message with "inReplyTo": "<id>" and "references" added, where id is
 * the inbound email's Message-Id ("messageId" of its channel message, as the email webhook stores
 * it), so the answer threads on it (In-Reply-To, References). Other channels, an inbound message
 * without one (the simulation route), or a generator's text that is not an object: as is. */
static const char *
threaded_answer(struct arena *a, const struct message *inbound, const char *answer)
{
    char id[IN_REPLY_TO_MAX + 1];
    const char *end, *extra;
    struct jsonw w;
    size_t len;

    if (inbound->channel != CHANNEL_EMAIL || answer == NULL ||
        jsonr_str(inbound->channel_message, "messageId", id, sizeof(id) - 2) != SP_OK ||
        id[0] == '\0')
        return answer;
    len = strlen(answer);
    while (len > 0 && (answer[len - 1] == ' ' || answer[len - 1] == '\n'))
        len--;
    if (len < 2 || answer[0] != '{' || answer[len - 1] != '}')
        return answer;
    jsonw_init(&w, a, 2 * IN_REPLY_TO_MAX + 64);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "inReplyTo", arena_printf(a, "<%s>", id));
    jsonw_kstr(&w, "references", thread_references(a, inbound->channel_message, id));
    jsonw_obj_end(&w);
    extra = jsonw_finish_or(&w, NULL);
    if (extra == NULL)
        return answer;
    end = answer + len - 1; /* the closing brace */
    while (end > answer + 1 && (end[-1] == ' ' || end[-1] == '\n'))
        end--;
    return arena_printf(a, "%.*s%s%s", (int)(end - answer), answer, end[-1] == '{' ? "" : ",",
                        extra + 1);
}

/* {"messageId":answer[,"fallback":"template"]}: a generate-reply job's return value. */
static const char *
generate_result(struct arena *a, const char *answer_id, int fallback)
{
    struct jsonw w;

    jsonw_init(&w, a, 256);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", answer_id);
    if (fallback)
        jsonw_kstr(&w, "fallback", "template");
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

/* The model failed for good: the ai_reply_failed event, then the template answer (when there is
 * a fallback and it can answer) or the job's failure. */
static int
record_gen_failed(const struct delivery_deps *d, struct arena *a, struct work *w, const char *error,
                  int attempts_made, int64_t now, struct sp_error *err)
{
    struct leads_deps ld = answer_deps(d);
    struct generated fb = {0};
    struct sp_error fberr = {0};
    int has_fb =
        d->fallback != NULL && content_gen_answer(d->fallback, &w->lead, w->msg.channel,
                                                  w->msg.channel_message, a, &fb, &fberr) == SP_OK;
    struct jsonw jw;
    int rc;

    jsonw_init(&jw, a, 1024);
    jsonw_obj_begin(&jw);
    jsonw_kstr(&jw, "messageId", w->msg.id);
    jsonw_kstr(&jw, "channel", channel_name(w->msg.channel));
    jsonw_kint(&jw, "attempt", attempts_made);
    jsonw_kstr(&jw, "error", error);
    jsonw_kstr(&jw, "code", sp_err_name(w->send_rc));
    jsonw_kstr(&jw, "fallback", has_fb ? "template" : "none");
    if (has_fb)
        jsonw_kstr(&jw, "answerId", w->answer_id);
    jsonw_obj_end(&jw);

    if (has_fb) {
        w->job.result = generate_result(a, w->answer_id, 1);
        rc = job_queue_complete(d->queue, &w->job, now, err);
    } else {
        rc = job_queue_fail(d->queue, &w->job, now, error, err);
    }
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, w->msg.lead_id, EVENT_AI_REPLY_FAILED,
                                leads_correlation_json(a, w->msg.lead_id, w->msg.id, w->job.id),
                                jsonw_finish_or(&jw, "{}"), now, err);
    if (rc == SP_OK && has_fb) {
        fb.channel_message = threaded_answer(a, &w->msg, fb.channel_message);
        rc = leads__queue_outbound(&ld, a, &w->lead, w->msg.channel, MESSAGE_KIND_AI_REPLY,
                                   w->answer_id, &fb, now, err);
    }
    w->outcome = has_fb ? DELIVERY_FALLBACK : DELIVERY_DEAD;
    return rc;
}

/* Records a generate-reply job's outcome inside the caller's unit of work: the answer and its
 * send job, a retry, or the fallback. The job's transition comes first (it fails with
 * SP_ELEASELOST, changing nothing, when our lease was lost). */
static int
record_generated(const struct delivery_deps *d, struct arena *a, struct work *w,
                 struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int attempts_made = w->job.attempts_made + 1;
    struct leads_deps ld = answer_deps(d);
    struct sp_error lookup = {0};
    struct message existing;
    const char *error;
    int rc;

    /* Idempotency: the answer's id is fixed by the inbound message. */
    rc = lead_repo_message_get(d->repo, w->answer_id, a, &existing, &lookup);
    if (rc == SP_OK) {
        w->outcome = DELIVERY_DUPLICATE;
        return job_queue_complete(d->queue, &w->job, now, err);
    }
    if (rc != SP_ENOTFOUND) {
        if (err && err->code == SP_OK)
            *err = lookup;
        return rc;
    }
    if (w->send_rc == SP_OK) {
        w->outcome = DELIVERY_SENT;
        w->job.result = generate_result(a, w->answer_id, 0);
        w->answer.channel_message = threaded_answer(a, &w->msg, w->answer.channel_message);
        rc = job_queue_complete(d->queue, &w->job, now, err);
        if (rc == SP_OK)
            rc = leads__queue_outbound(&ld, a, &w->lead, w->msg.channel, MESSAGE_KIND_AI_REPLY,
                                       w->answer_id, &w->answer, now, err);
        return rc;
    }
    error = arena_strdup(a, w->send_err.msg[0] ? w->send_err.msg : sp_err_str(w->send_rc));
    if (sp_err_retryable(w->send_rc) && attempts_made < w->job.max_attempts) {
        w->outcome = DELIVERY_RETRY;
        return job_queue_retry(d->queue, &w->job, now,
                               retry_at(d, &w->job, attempts_made, w->send_err.retry_after_ms, now),
                               error, err);
    }
    return record_gen_failed(d, a, w, error, attempts_made, now, err);
}

/* Records one send's outcome inside the caller's unit of work. */
static int
record_outcome(const struct delivery_deps *d, struct arena *a, struct work *w,
               enum lead_status *status_after, struct sp_error *err)
{
    int will_retry = 0;
    int rc;

    if (w->res == CLAIM_SUPPRESS) {
        w->outcome = DELIVERY_SUPPRESSED;
        return record_suppressed(d, &w->job, a, &w->msg, &w->opt_out, err);
    }
    if (w->is_gen)
        return record_generated(d, a, w, err);
    if (w->send_rc == SP_OK) {
        w->outcome = DELIVERY_SENT;
        return record_sent(d, &w->job, a, &w->msg, &w->lead, w->provider_id ? w->provider_id : "",
                           status_after, err);
    }
    rc = record_failure(
        d, &w->job, a, &w->msg, w->send_rc,
        arena_strdup(a, w->send_err.msg[0] ? w->send_err.msg : sp_err_str(w->send_rc)),
        w->send_err.retry_after_ms, &will_retry, err);
    w->outcome = will_retry ? DELIVERY_RETRY : DELIVERY_DEAD;
    return rc;
}

/* `same_lead`: the work recorded just before in this unit of work was of the same lead, which
 * is thus locked already. *changed_to: the status an earlier record of this unit of work gave
 * the lead, -1 for none; set when this record changes it. */
static int
record_in_tx(const struct delivery_deps *d, struct arena *a, struct work *w, int same_lead,
             int *changed_to, struct sp_error *err)
{
    struct sp_error rerr = {0};
    enum lead_status loaded = w->lead.status, after;
    int rc = SP_OK;

    /* The lead first (in lead order across the batch): its timeline entries stay together. */
    if (!same_lead) {
        *changed_to = -1;
        rc = lead_repo_lead_lock(d->repo, w->msg.lead_id, &rerr);
    } else if (*changed_to >= 0) {
        /* We changed it: no compare-and-set from the claimed status, bound to find nothing. */
        w->lead.status = (enum lead_status)(*changed_to);
    }
    after = w->lead.status;
    if (rc == SP_OK)
        rc = record_outcome(d, a, w, &after, &rerr);
    if (rc == SP_OK && after != w->lead.status)
        *changed_to = (int)after;
    w->lead.status = loaded; /* as claimed: a retry of the whole record starts from it again */
    if (rc == SP_ELEASELOST) {
        /* Our lease was lost during the send and another worker owns the job now: its outcome
         * stands; ours is dropped (nothing was written for this job). */
        log_warn("job %s: lease lost during the send; outcome not recorded", w->job.id);
        w->outcome = DELIVERY_LEASE_LOST;
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

/* Whether the leases of a batch reserved (or last checked) at `since` may have been lost by
 * now. Within half a lease they cannot: reserve gave them a full lease, and the keeper renews
 * them every third of one. Past that (a slow provider, a hung process), they are checked. */
static int
leases_in_doubt(const struct delivery_deps *d, int64_t since)
{
    return sp_clock_now_ms(d->clock) - since >= d->lease_ms / 2;
}

/* Checks the leases of list[0..*m) in one call to the queue and drops from the list the works
 * whose job is not ours any more (their outcome: DELIVERY_LEASE_LOST). Cannot tell (Redis
 * down): keeps them all, since a send that happened must have its outcome recorded. */
static void
fence_works(const struct delivery_deps *d, struct arena *a, struct work **list, int *m,
            const char *when)
{
    const struct job **jobs;
    int *lost, kept = 0, rc;
    struct sp_error err = {0};

    if (*m == 0)
        return;
    jobs = arena_alloc(a, sizeof(*jobs) * (size_t)*m);
    lost = arena_alloc(a, sizeof(*lost) * (size_t)*m);
    for (int i = 0; i < *m; i++)
        jobs[i] = &list[i]->job;
    rc = job_queue_fence(d->queue, jobs, *m, lost, &err);
    if (rc != SP_OK) {
        log_debug("lease check of %d jobs failed (%s); going on", *m, err.msg);
        return;
    }
    for (int i = 0; i < *m; i++) {
        if (lost[i]) {
            log_warn("job %s: lease lost %s; left to its new owner", list[i]->job.id, when);
            list[i]->res = CLAIM_LOST;
            list[i]->outcome = DELIVERY_LEASE_LOST;
        } else {
            list[kept++] = list[i];
        }
    }
    *m = kept;
}

/* One unit of work recording every sent job of the batch. Rows are touched in lead order so two
 * workers recording at once (PostgreSQL) lock leads in the same order and cannot deadlock. */
static int
record_batch(const struct delivery_deps *d, struct arena *a, struct work *ws, int n,
             int64_t checked, int *committed, struct sp_error *err)
{
    struct work **order = arena_alloc(a, sizeof(*order) * (size_t)n);
    int changed_to = -1; /* see record_in_tx */
    int m = 0, rc;

    *committed = 0;
    for (int i = 0; i < n; i++)
        if (ws[i].res == CLAIM_SEND || ws[i].res == CLAIM_SUPPRESS)
            order[m++] = &ws[i];
    qsort(order, (size_t)m, sizeof(*order), by_lead);
    if (leases_in_doubt(d, checked))
        fence_works(d, a, order, &m, "during the send (outcome not recorded)");
    rc = uow_begin(d, err);
    if (rc != SP_OK)
        return rc;
    for (int i = 0; rc == SP_OK && i < m; i++) {
        int same = i > 0 && strcmp(order[i - 1]->msg.lead_id, order[i]->msg.lead_id) == 0;
        rc = record_in_tx(d, a, order[i], same, &changed_to, err);
    }
    if (rc != SP_OK) {
        uow_rollback(d);
        return rc;
    }
    return uow_commit(d, committed, err);
}

/* After a committed claim: calls the sender for each job to send, then records every outcome in
 * a second unit of work. */
/* Checks the leases of the jobs still to send, ws[from..n). */
static void
fence_unsent(const struct delivery_deps *d, struct arena *a, struct work *ws, int from, int n)
{
    struct work **list = arena_alloc(a, sizeof(*list) * (size_t)(n - from));
    int m = 0;

    for (int i = from; i < n; i++)
        if (ws[i].res == CLAIM_SEND)
            list[m++] = &ws[i];
    fence_works(d, a, list, &m, "before its send (not sent)");
}

/* The sends of a round: how many, and the time they took (struct delivery_pace). */
struct send_round {
    int sent;
    int64_t spent_ms;
};

/* After a committed claim at `reserved_at`: calls the sender for each job to send, then
 * records every outcome in a second unit of work. *recorded tells whether every outcome is in
 * the database (nothing was to be recorded, or the record committed), even when the queue's
 * part after the commit failed. */
static int
send_and_record(const struct delivery_deps *d, struct arena *a, struct work *ws, int n,
                int64_t reserved_at, int *recorded, struct send_round *round, struct sp_error *err)
{
    int64_t checked = reserved_at, started = sp_clock_now_ms(d->clock);
    int rc, any = 0;

    *recorded = 0;
    round->sent = 0;

    for (int i = 0; i < n; i++) {
        struct work *w = &ws[i];
        if (w->res == CLAIM_SKIP)
            w->outcome = DELIVERY_DUPLICATE;
        if (w->res == CLAIM_GONE)
            w->outcome = DELIVERY_DEAD;
        if (w->res == CLAIM_SUPPRESS)
            any = 1; /* nothing to send, but its outcome is recorded below */
        if (w->res == CLAIM_SEND && leases_in_doubt(d, checked)) {
            /* A job lost now went to another worker: sending it too would be a second send. */
            fence_unsent(d, a, ws, i, n);
            checked = sp_clock_now_ms(d->clock);
        }
        if (w->res != CLAIM_SEND)
            continue;
        if (w->is_gen)
            w->send_rc =
                content_gen_answer_in(d->gen, &w->lead, w->msg.channel, w->msg.channel_message,
                                      &w->conv, a, &w->answer, &w->send_err);
        else
            w->send_rc =
                deliver(d, a, &w->msg, &w->lead, w->last_inbound, &w->provider_id, &w->send_err);
        any = 1;
        round->sent++;
    }
    round->spent_ms = sp_clock_now_ms(d->clock) - started;
    if (!any) {
        *recorded = 1;
        return SP_OK;
    }
    /* The sends happened: a transient failure (deadlock, serialization, busy) must not leave
     * their outcome unrecorded, or the jobs would be taken again after their lease and sent
     * twice. The record is rebuilt from scratch on each try. */
    for (int tries = 1;; tries++) {
        struct sp_error terr = {0};
        int committed = 0;
        rc = record_batch(d, a, ws, n, checked, &committed, &terr);
        *recorded = committed;
        if (committed)
            job_queue_wake(d->queue); /* answers queued their send jobs */
        if (rc == SP_OK || committed || !sp_err_retryable(rc) || tries == RECORD_TRIES) {
            if (rc != SP_OK && err && err->code == SP_OK)
                *err = terr;
            return rc;
        }
        log_info("recording %d send outcomes failed (%s), retrying", n, terr.msg);
    }
}

const char *
delivery_outcome_label(enum delivery_outcome o)
{
    /* No default: a new outcome must get its label here (-Wswitch). */
    switch (o) {
    case DELIVERY_SENT:
        return "sent";
    case DELIVERY_DUPLICATE:
        return "duplicate";
    case DELIVERY_RETRY:
        return "retried";
    case DELIVERY_DEAD:
        return "failed";
    case DELIVERY_LEASE_LOST:
        return "lease_lost";
    case DELIVERY_FALLBACK:
        return "fallback";
    case DELIVERY_SUPPRESSED:
        return "suppressed";
    case DELIVERY_OUTCOME_COUNT:
        break;
    }
    return "unknown";
}

/* Counts a recorded outcome (see struct delivery_counters). */
static void
count_outcome(const struct delivery_deps *d, const struct work *w)
{
    if (d->counters == NULL || w->is_gen || w->res == CLAIM_GONE || w->msg.id[0] == '\0')
        return;
    if ((unsigned)w->msg.channel >= CHANNEL_COUNT || (unsigned)w->outcome >= DELIVERY_OUTCOME_COUNT)
        return;
    atomic_fetch_add_explicit(&d->counters->sends[w->msg.channel][w->outcome], 1,
                              memory_order_relaxed);
}

int
leads_deliver(const struct delivery_deps *d, const struct job *j, struct arena *a,
              enum delivery_outcome *outcome, struct sp_error *err)
{
    struct work *w = arena_alloc(a, sizeof(*w));
    int rc;

    int committed = 0, recorded = 0;
    struct send_round round;

    w->job = *j;
    rc = uow_begin(d, err);
    if (rc != SP_OK)
        return rc;
    rc = claim_work(d, w, a, NULL, err);
    if (rc != SP_OK) {
        uow_rollback(d);
        return rc;
    }
    rc = uow_commit(d, &committed, err);
    /* Reserved by the caller at an unknown time: its lease is checked before the send. */
    if (committed)
        rc = send_and_record(d, a, w, 1, sp_clock_now_ms(d->clock) - d->lease_ms, &recorded, &round,
                             err);
    if (recorded)
        count_outcome(d, w);
    *outcome = w->outcome;
    return rc;
}

static const char *
outcome_name(enum delivery_outcome o)
{
    switch (o) {
    case DELIVERY_SENT:
        return "sent";
    case DELIVERY_DUPLICATE:
        return "already sent";
    case DELIVERY_RETRY:
        return "failed, will retry";
    case DELIVERY_LEASE_LOST:
        return "lease lost, outcome dropped";
    case DELIVERY_FALLBACK:
        return "model failed for good, template answer written";
    case DELIVERY_SUPPRESSED:
        return "suppressed: the lead opted out of the channel";
    default:
        return "failed for good";
    }
}

static void
log_outcome(const struct work *w)
{
    const struct job *j = &w->job;
    const char *mid = w->msg.id[0] ? w->msg.id : "-";

    if (w->outcome == DELIVERY_RETRY || w->outcome == DELIVERY_DEAD ||
        w->outcome == DELIVERY_FALLBACK || w->outcome == DELIVERY_SUPPRESSED)
        log_info("job %s message %s attempt %d of %d: %s", j->id, mid, j->attempts_made + 1,
                 j->max_attempts, outcome_name(w->outcome));
    else
        log_debug("job %s message %s attempt %d of %d: %s", j->id, mid, j->attempts_made + 1,
                  j->max_attempts, outcome_name(w->outcome));
}

void
delivery_pace_init(struct delivery_pace *p, int max, int64_t budget_ms)
{
    p->max = max > 0 ? max : 1;
    p->budget_ms = budget_ms > 0 ? budget_ms : 1;
    p->size = p->max < DELIVERY_PACE_START ? p->max : DELIVERY_PACE_START;
}

void
delivery_pace_update(struct delivery_pace *p, int reserved, int sent, int64_t spent_ms)
{
    if (sent <= 0)
        return; /* nothing timed */
    if (spent_ms < 0)
        spent_ms = 0; /* the wall clock stepped back */
    if (spent_ms > p->budget_ms) {
        int64_t fit = (int64_t)sent * p->budget_ms / spent_ms;
        p->size = fit < 1 ? 1 : fit < p->size ? (int)fit : p->size;
    } else if (reserved >= p->size && spent_ms * 2 <= p->budget_ms) {
        p->size = p->size > p->max / 2 ? p->max : p->size * 2;
    }
}

int
leads_delivery_tick(const struct delivery_deps *d, struct arena *a, int *did_work,
                    int64_t *next_due, struct sp_error *err)
{
    int batch = d->pace ? d->pace->size : d->batch > 0 ? d->batch : 1;
    struct send_round round = {0, 0};
    struct claim_memo memo;
    struct work *ws = arena_alloc(a, sizeof(*ws) * (size_t)batch);
    struct job *js = arena_alloc(a, sizeof(*js) * (size_t)batch);
    int64_t reserved_at = sp_clock_now_ms(d->clock);
    int n = 0, committed = 0, recorded = 0;
    int rc;

    *did_work = 0;
    /* Reserve and claim a batch in one unit of work, send, then record the batch in another:
     * two write transactions per batch instead of several per job. */
    rc = uow_begin(d, err);
    if (rc != SP_OK)
        return rc;
    rc = job_queue_reserve(d->queue, reserved_at, d->lease_ms, batch, a, js, &n, next_due, err);
    memo.v = arena_alloc(a, sizeof(*memo.v) * (size_t)batch);
    memo.n = 0;
    memo.cap = batch;
    for (int i = 0; rc == SP_OK && i < n; i++) {
        ws[i].job = js[i];
        rc = claim_work(d, &ws[i], a, &memo, err);
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
    rc = send_and_record(d, a, ws, n, reserved_at, &recorded, &round, err);
    if (d->pace) {
        int was = d->pace->size;
        delivery_pace_update(d->pace, n, round.sent, round.spent_ms);
        if (d->pace->size != was)
            log_debug("worker: batch of %d jobs, %d sends in %lld ms: next batch %d", n, round.sent,
                      (long long)round.spent_ms, d->pace->size);
    }
    for (int i = 0; i < n; i++) {
        if (rc == SP_OK)
            log_outcome(&ws[i]);
        if (recorded)
            count_outcome(d, &ws[i]);
    }
    return rc;
}
