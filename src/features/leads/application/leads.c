/* leads.c: capture, reply and details use cases and the handlers of LeadAdded / LeadReplied. */
#include "features/leads/application/leads.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/event_bus.h"
#include "core/jsonr.h"
#include "core/jsonw.h"
#include "core/uuid.h"
#include "features/leads/domain/content_gen.h"
#include "features/leads/domain/lead_repo.h"

#include <string.h>

#define PAYLOAD_MAX (MESSAGE_CONTENT_MAX + 4096)

const char *
leads_correlation_json(struct arena *a, const char *lead_id, const char *message_id,
                       const char *job_id)
{
    struct jsonw w;
    jsonw_init(&w, a, 512);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "leadId", lead_id);
    if (message_id)
        jsonw_kstr(&w, "messageId", message_id);
    if (job_id)
        jsonw_kstr(&w, "jobId", job_id);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

int
leads_event_append(struct lead_repo *repo, const char *lead_id, enum lead_event_type type,
                   const char *correlation, const char *payload, int64_t now, struct sp_error *err)
{
    struct lead_event e;

    memset(&e, 0, sizeof(e));
    sp_uuid_v7(e.id);
    memcpy(e.lead_id, lead_id, SP_UUID_LEN + 1);
    e.type = type;
    e.correlation_ids = correlation;
    e.payload = payload;
    e.created_at = now;
    return lead_repo_event_append(repo, &e, err);
}

/* Lengths are in characters as the NestJS build counted them (UTF-16 code units), and no
 * field may hold control or bidirectional formatting characters (lead_text_check). */
static int
validate_input(const struct lead_input *in, struct sp_error *err)
{
    int rc;

    if (in->name == NULL || in->name[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "name", "name should not be empty");
    rc = lead_text_field_check("name", in->name, strlen(in->name), LEAD_NAME_MAX, err);
    if (rc != SP_OK)
        return rc;
    if (in->email == NULL && in->phone == NULL)
        return sp_error_set(err, SP_EINVAL, "email", "Either email or phone must be provided");
    if (in->email && !lead_email_valid(in->email, strlen(in->email)))
        return sp_error_set(err, SP_EINVAL, "email", "email must be an email");
    if (in->phone && in->phone[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "phone", "phone should not be empty");
    if (in->phone)
        return lead_text_field_check("phone", in->phone, strlen(in->phone), LEAD_PHONE_MAX, err);
    return SP_OK;
}

static const char *
lead_payload(struct arena *a, const struct lead *l)
{
    struct jsonw w;
    jsonw_init(&w, a, PAYLOAD_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "id", l->id);
    jsonw_kstr(&w, "name", l->name);
    jsonw_kstr(&w, "email", l->email);
    jsonw_kstr(&w, "phone", l->phone);
    jsonw_kstr(&w, "status", lead_status_name(l->status));
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

/* Runs `body` between begin and commit; rolls back on any error. */
static int
in_transaction(const struct leads_deps *d, int rc_body, struct sp_error *err)
{
    if (rc_body != SP_OK) {
        lead_repo_rollback(d->repo);
        return rc_body;
    }
    return lead_repo_commit(d->repo, err);
}

static int
create_in_tx(const struct leads_deps *d, struct arena *a, const struct lead *l,
             struct sp_error *err)
{
    struct leads_event_ctx ev = {d, a, l, NULL, l->created_at, 0, 0};
    int rc;

    rc = lead_repo_lead_insert(d->repo, l, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, l->id, EVENT_LEAD_ADDED,
                                leads_correlation_json(a, l->id, NULL, NULL), lead_payload(a, l),
                                l->created_at, err);
    if (rc == SP_OK)
        rc = event_bus_publish(d->bus, LEADS_EV_LEAD_ADDED, &ev, err);
    return rc;
}

/* After a capture refused by the store (SP_ECONFLICT, rolled back): the lead that has its email
 * or phone, read after the unit of work so that one committed by a concurrent capture is seen.
 * Returns SP_ECONFLICT with *out that lead, or with out->id empty when none has it (a conflict
 * on something else), or the error of the lookup. */
static int
existing_person(const struct leads_deps *d, const struct lead_input *in, struct arena *a,
                struct lead *out, struct sp_error *err)
{
    char ebuf[LEAD_NORM_MAX], pbuf[LEAD_NORM_MAX];
    const char *email = lead_email_norm(in->email, ebuf, sizeof(ebuf));
    const char *phone = lead_phone_norm(in->phone, pbuf, sizeof(pbuf));
    const char *field = "email";
    struct sp_error lookup = {0};
    int rc = SP_ENOTFOUND;

    if (email != NULL)
        rc = lead_repo_lead_find_by_address(d->repo, CHANNEL_EMAIL, email, a, out, &lookup);
    if (rc == SP_ENOTFOUND && phone != NULL) {
        sp_error_clear(&lookup);
        field = "phone";
        rc = lead_repo_lead_find_by_address(d->repo, CHANNEL_WHATSAPP, phone, a, out, &lookup);
    }
    sp_error_clear(err); /* the driver's words name our indexes: not for the client */
    if (rc != SP_OK && rc != SP_ENOTFOUND) {
        if (err)
            *err = lookup;
        return rc;
    }
    if (rc != SP_OK)
        memset(out, 0, sizeof(*out));
    return sp_error_set(err, SP_ECONFLICT, field, "Lead already exists");
}

int
leads_create(const struct leads_deps *d, const struct lead_input *in, struct arena *a,
             struct lead *out, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int rc;

    rc = validate_input(in, err);
    if (rc != SP_OK)
        return rc;
    memset(out, 0, sizeof(*out));
    sp_uuid_v7(out->id);
    out->name = in->name;
    out->email = in->email;
    out->phone = in->phone;
    out->status = LEAD_STATUS_NEW;
    out->created_at = now;
    out->updated_at = now;

    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = in_transaction(d, create_in_tx(d, a, out, err), err);
    if (rc == SP_ECONFLICT)
        return existing_person(d, in, a, out, err);
    if (rc == SP_OK)
        job_queue_wake(d->queue);
    return rc;
}

/* Job data: what a worker (ours or a Node BullMQ one) needs to send the message. */
static const char *
job_data(struct arena *a, const struct message *m, const char *correlation)
{
    struct jsonw w;
    jsonw_init(&w, a, PAYLOAD_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "leadId", m->lead_id);
    jsonw_kstr(&w, "channel", channel_name(m->channel));
    jsonw_kstr(&w, "kind", message_kind_name(m->kind));
    jsonw_kraw(&w, "channelMessage", m->channel_message);
    jsonw_kraw(&w, "correlationIds", correlation);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

void
leads_answer_id(const char *inbound_id, char *out)
{
    memcpy(out, inbound_id, SP_UUID_LEN + 1);
    out[14] = '8';
}

int
leads__queue_outbound(const struct leads_deps *d, struct arena *a, const struct lead *l,
                      enum channel c, enum message_kind kind, const char *id,
                      const struct generated *content, int64_t now, struct sp_error *err)
{
    struct message m;
    struct job_spec spec;
    char job_id[sizeof(((struct job *)0)->id)];
    const char *to = lead_address_for(l, c);
    struct jsonw w;
    int rc;

    /* Outbound messages go to the lead's own address and nowhere else, whatever the generator
     * (an AI reading the prospect's text) put in its message. */
    if (to == NULL)
        return sp_error_set(err, SP_EINVAL, channel_name(c), "lead has no %s address",
                            channel_name(c));
    if (content->to != NULL && strcmp(content->to, to) != 0)
        return sp_error_set(err, SP_EINTERNAL, "to",
                            "generated %s message is not addressed to the lead", channel_name(c));
    memset(&m, 0, sizeof(m));
    if (id != NULL)
        memcpy(m.id, id, SP_UUID_LEN + 1);
    else
        sp_uuid_v7(m.id);
    memcpy(m.lead_id, l->id, SP_UUID_LEN + 1);
    m.channel = c;
    m.direction = MESSAGE_OUTBOUND;
    m.kind = kind;
    m.status = MESSAGE_QUEUED;
    m.recipient = to;
    m.channel_message = content->channel_message;
    m.created_at = now;
    m.updated_at = now;
    rc = lead_repo_message_insert(d->repo, &m, err);
    if (rc != SP_OK)
        return rc;

    memset(&spec, 0, sizeof(spec));
    spec.name = SEND_MESSAGE_JOB;
    spec.group = l->id;
    spec.key = m.id;
    spec.data = job_data(a, &m, leads_correlation_json(a, l->id, m.id, NULL));
    spec.max_attempts = d->policy->job_attempts;
    spec.backoff_ms = d->policy->job_backoff_ms;
    rc = job_queue_enqueue(d->queue, &spec, now, job_id, err);
    if (rc != SP_OK)
        return rc;

    jsonw_init(&w, a, PAYLOAD_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m.id);
    jsonw_kstr(&w, "channel", channel_name(c));
    jsonw_kstr(&w, "kind", message_kind_name(kind));
    jsonw_kstr(&w, "jobId", job_id);
    jsonw_obj_end(&w);
    return leads_event_append(d->repo, l->id, EVENT_MESSAGE_QUEUED,
                              leads_correlation_json(a, l->id, m.id, job_id),
                              jsonw_finish_or(&w, "{}"), now, err);
}

int
leads_on_lead_added(void *ctx, const void *payload, struct sp_error *err)
{
    const struct leads_event_ctx *ev = payload;
    const struct leads_deps *d = ev->deps;
    enum channel channels[2];
    int n = lead_welcome_channels(ev->lead, channels);
    int rc = SP_OK;

    (void)ctx;
    for (int i = 0; rc == SP_OK && i < n; i++) {
        struct generated content = {0};
        if (!(d->policy->sendable & (1u << channels[i])))
            continue; /* no sender configured for this channel: nothing to queue */
        rc = content_gen_welcome(d->gen, ev->lead, channels[i], ev->arena, &content, err);
        if (rc == SP_OK)
            rc = leads__queue_outbound(d, ev->arena, ev->lead, channels[i], MESSAGE_KIND_WELCOME,
                                       NULL, &content, ev->now, err);
    }
    return rc;
}

/* The prospect's text in a channel message: an email's body, a WhatsApp text (arena), or NULL. */
static const char *
inbound_text(struct arena *a, enum channel c, const char *channel_message)
{
    char *buf = arena_alloc(a, MESSAGE_CONTENT_MAX + 1);

    if (jsonr_str(channel_message, c == CHANNEL_EMAIL ? "body" : "text", buf,
                  MESSAGE_CONTENT_MAX + 1) != SP_OK)
        return NULL;
    return buf;
}

/* A stop request, or a message without words (an image, a reaction), gets no answer: the
 * timeline says why. */
static int
skip_answer(const struct leads_deps *d, const struct leads_event_ctx *ev, const char *reason,
            struct sp_error *err)
{
    const struct message *in = ev->inbound;
    struct jsonw w;

    jsonw_init(&w, ev->arena, 512);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", in->id);
    jsonw_kstr(&w, "channel", channel_name(in->channel));
    jsonw_kstr(&w, "reason", reason);
    jsonw_obj_end(&w);
    return leads_event_append(d->repo, ev->lead->id, EVENT_AI_REPLY_SKIPPED,
                              leads_correlation_json(ev->arena, ev->lead->id, in->id, NULL),
                              jsonw_finish_or(&w, "{}"), ev->now, err);
}

int
leads_on_lead_replied(void *ctx, const void *payload, struct sp_error *err)
{
    const struct leads_event_ctx *ev = payload;
    const struct leads_deps *d = ev->deps;
    const struct message *in = ev->inbound;
    struct job_spec spec;
    char job_id[JOB_ID_MAX];
    struct lead_opt_outs opt_outs;
    struct jsonw w;
    int rc;

    (void)ctx;
    if (!ev->answerable)
        return skip_answer(d, ev, "not_text", err);
    /* "Stop": no answer, and the lead is opted out of the channel (source "reply"), in the
     * reply's unit of work; a channel opted out before gets no answer either. */
    if (reply_stop_requested(inbound_text(ev->arena, in->channel, in->channel_message))) {
        rc = leads__opt_out_in_tx(d, ev->arena, ev->lead->id, 1u << in->channel,
                                  LEADS_REASON_STOP_REQUESTED, OPT_OUT_SOURCE_REPLY, in->id,
                                  ev->now, NULL, err);
        return rc != SP_OK ? rc : skip_answer(d, ev, "stop_requested", err);
    }
    rc = lead_repo_opt_out_list(d->repo, ev->lead->id, ev->arena, &opt_outs, err);
    if (rc != SP_OK)
        return rc;
    if (lead_opt_out_find(&opt_outs, in->channel) != NULL)
        return skip_answer(d, ev, "opted_out", err);
    if (ev->address_in_use && lead_address_for(ev->lead, in->channel) == NULL)
        return skip_answer(d, ev, "address_in_use", err);
    /* The answer needs an address: a lead without one on the channel (and no "from" to adopt)
     * was refused before anything was stored. */
    if (lead_address_for(ev->lead, in->channel) == NULL)
        return sp_error_set(err, SP_EINVAL, "messageContent",
                            "lead has no %s address and messageContent.from is missing",
                            channel_name(in->channel));
    jsonw_init(&w, ev->arena, 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", in->id);
    jsonw_kstr(&w, "leadId", ev->lead->id);
    jsonw_kstr(&w, "channel", channel_name(in->channel));
    jsonw_kraw(&w, "correlationIds", leads_correlation_json(ev->arena, ev->lead->id, in->id, NULL));
    jsonw_obj_end(&w);
    memset(&spec, 0, sizeof(spec));
    spec.name = GENERATE_REPLY_JOB;
    spec.group = ev->lead->id;
    spec.key = in->id;
    spec.data = jsonw_finish_or(&w, "{}");
    spec.max_attempts = d->policy->job_attempts;
    spec.backoff_ms = d->policy->job_backoff_ms;
    return job_queue_enqueue(d->queue, &spec, ev->now, job_id, err);
}

const char *
leads_status_change_payload(struct arena *a, enum lead_status from, enum lead_status to,
                            const char *reason)
{
    struct jsonw w;
    jsonw_init(&w, a, 512);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "from", lead_status_name(from));
    jsonw_kstr(&w, "to", lead_status_name(to));
    jsonw_kstr(&w, "reason", reason);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

/* The newest page of each channel the lead has messages on, in order of first message. */
static int
details_messages(const struct leads_deps *d, const char *id, struct arena *a,
                 struct lead_details *out, struct sp_error *err)
{
    const struct lead_page_spec spec = {0, LEADS_DETAILS_ITEMS, LEADS_LIST_BUDGET};
    enum channel order[CHANNEL_COUNT];
    int n = 0;
    int rc = lead_repo_message_channels(d->repo, id, order, &n, err);

    for (int i = 0; rc == SP_OK && i < n; i++) {
        struct lead_channel_page *cp = &out->channels[i];
        struct lead_page_info page = {0, 0};

        cp->channel = order[i];
        rc = lead_repo_message_page(d->repo, id, order[i], &spec, a, &cp->messages, &page, err);
        cp->nmessages = page.n;
        cp->next = page.next;
        out->nchannels = i + 1;
    }
    return rc;
}

int
leads_get_details(const struct leads_deps *d, const char *id, struct arena *a,
                  struct lead_details *out, struct sp_error *err)
{
    const struct lead_page_spec spec = {0, LEADS_DETAILS_ITEMS, LEADS_LIST_BUDGET};
    struct lead_page_info page = {0, 0};
    int rc;

    memset(out, 0, sizeof(*out));
    /* One snapshot for all the reads: a worker committing in between must not show a message
     * "sent" without its event, or a job "completed" next to a message still "queued". */
    rc = lead_repo_read_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_lead_get(d->repo, id, a, &out->lead, err);
    if (rc == SP_OK)
        rc = lead_repo_opt_out_list(d->repo, id, a, &out->opt_outs, err);
    if (rc == SP_OK)
        rc = details_messages(d, id, a, out, err);
    if (rc == SP_OK)
        rc = lead_repo_event_page(d->repo, id, &spec, a, &out->events, &page, err);
    out->nevents = page.n;
    out->events_next = page.next;
    if (rc == SP_OK)
        rc = job_queue_list_group(d->queue, id, LEADS_DETAILS_ITEMS, a, &out->jobs, &out->njobs,
                                  &out->jobs_more, err);
    lead_repo_read_end(d->repo);
    return rc;
}

/* The spec of a paging query, or SP_EINVAL. */
static int
page_spec(int64_t before, int limit, struct lead_page_spec *spec, struct sp_error *err)
{
    if (limit < 1 || limit > LEADS_PAGE_MAX)
        return sp_error_set(err, SP_EINVAL, "limit", "limit must be an integer from 1 to %d",
                            LEADS_PAGE_MAX);
    if (before < 0)
        return sp_error_set(err, SP_EINVAL, "cursor", "cursor is not valid");
    spec->before = before;
    spec->max = limit;
    spec->budget = LEADS_LIST_BUDGET;
    return SP_OK;
}

int
leads_list_messages(const struct leads_deps *d, const char *id, enum channel c, int64_t before,
                    int limit, struct arena *a, struct message **out, struct lead_page_info *page,
                    struct sp_error *err)
{
    struct lead_page_spec spec;
    struct lead lead;
    int rc = page_spec(before, limit, &spec, err);

    *out = NULL;
    page->n = 0;
    page->next = 0;
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_read_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_lead_get(d->repo, id, a, &lead, err);
    if (rc == SP_OK)
        rc = lead_repo_message_page(d->repo, id, c, &spec, a, out, page, err);
    lead_repo_read_end(d->repo);
    return rc;
}

int
leads_list_events(const struct leads_deps *d, const char *id, int64_t before, int limit,
                  struct arena *a, struct lead_event **out, struct lead_page_info *page,
                  struct sp_error *err)
{
    struct lead_page_spec spec;
    struct lead lead;
    int rc = page_spec(before, limit, &spec, err);

    *out = NULL;
    page->n = 0;
    page->next = 0;
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_read_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_lead_get(d->repo, id, a, &lead, err);
    if (rc == SP_OK)
        rc = lead_repo_event_page(d->repo, id, &spec, a, out, page, err);
    lead_repo_read_end(d->repo);
    return rc;
}

/* The bounds of the list's created_at window, inclusive, from the query's exclusive ones; 0
 * when the window is empty. */
static int
created_window(const struct leads_list_query *q, int64_t *min, int64_t *max)
{
    if (q->created_after >= LEAD_TIME_MAX || q->created_before <= LEAD_TIME_MIN)
        return 0;
    *min = q->created_after < LEAD_TIME_MIN ? LEAD_TIME_MIN : q->created_after + 1;
    *max = q->created_before > LEAD_TIME_MAX ? LEAD_TIME_MAX : q->created_before - 1;
    return *min <= *max;
}

/* The prefixes a search text compares with (struct lead_list_spec). */
static int
search_prefixes(const char *q, struct arena *a, struct lead_list_spec *spec, struct sp_error *err)
{
    size_t len;
    char *t, *buf;
    int rc;

    while (*q == ' ' || *q == '\t')
        q++;
    len = strlen(q);
    while (len > 0 && (q[len - 1] == ' ' || q[len - 1] == '\t'))
        len--;
    if (len == 0)
        return sp_error_set(err, SP_EINVAL, "q", "q should not be empty");
    rc = lead_text_field_check("q", q, len, LEAD_NAME_MAX, err);
    if (rc != SP_OK)
        return rc;
    t = arena_strndup(a, q, len);
    buf = arena_alloc(a, 3 * (len + 1));
    spec->name_prefix = lead_name_fold(t, buf, len + 1);
    spec->email_prefix = lead_email_norm(t, buf + len + 1, len + 1);
    if (spec->email_prefix != NULL && !lead_email_prefix_possible(spec->email_prefix))
        spec->email_prefix = NULL; /* "ana s": no email to read for */
    spec->phone_prefix = lead_phone_query(t, buf + 2 * (len + 1), len + 1);
    return SP_OK;
}

int
leads_list(const struct leads_deps *d, const struct leads_list_query *q, struct arena *a,
           struct lead **out, struct lead_list_page *page, struct sp_error *err)
{
    struct lead_list_spec spec;
    int rc;

    *out = NULL;
    memset(page, 0, sizeof(*page));
    if (q->limit < 1 || q->limit > LEAD_LIST_MAX)
        return sp_error_set(err, SP_EINVAL, "limit", "limit must be an integer from 1 to %d",
                            LEAD_LIST_MAX);
    if (q->after.seq < 0 || (q->after.seq > 0 && (q->after.created_at < LEAD_TIME_MIN ||
                                                  q->after.created_at > LEAD_TIME_MAX)))
        return sp_error_set(err, SP_EINVAL, "cursor", "cursor is not valid");
    memset(&spec, 0, sizeof(spec));
    spec.has_status = q->has_status;
    spec.status = q->status;
    spec.after = q->after;
    spec.max = q->limit;
    if (q->q != NULL) {
        rc = search_prefixes(q->q, a, &spec, err);
        if (rc != SP_OK)
            return rc;
    }
    if (!created_window(q, &spec.created_min, &spec.created_max))
        return SP_OK; /* nothing can be in it */
    return lead_repo_lead_list(d->repo, &spec, a, out, page, err);
}
