/* inbound.c: what comes in: a prospect's message from any door (leads_receive, and
 * leads_reply for the simulation route) and a provider's delivery receipts
 * (leads_apply_receipt).
 *
 * Deduplication rides on the unit of work: the provider's id of a message (and a delivery's
 * one-time token) is claimed first (lead_repo_receipt_claim), so a redelivery, even one running
 * at the same moment, finds the claim and stores nothing; and a unit of work that fails leaves
 * no claim behind, so the provider's retry is taken in. */
#include "features/leads/application/leads.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/event_bus.h"
#include "core/jsonr.h"
#include "core/jsonw.h"
#include "core/uuid.h"
#include "features/leads/domain/lead_repo.h"

#include <stdio.h>
#include <string.h>

#define PAYLOAD_MAX (MESSAGE_CONTENT_MAX + 4096)

/* Commits when the body succeeded; rolls back otherwise. */
static int
finish(const struct leads_deps *d, int rc_body, struct sp_error *err)
{
    if (rc_body != SP_OK) {
        lead_repo_rollback(d->repo);
        return rc_body;
    }
    return lead_repo_commit(d->repo, err);
}

/* Moves the lead to replied with a status_changed event. A compare-and-set, re-read when a
 * concurrent worker moved the lead meanwhile, so the event names the status really left. */
static int
reply_status_change(const struct leads_deps *d, struct arena *a, struct lead *l,
                    const char *message_id, int64_t now, struct sp_error *err)
{
    for (int tries = 0; tries < 3; tries++) {
        enum lead_status to = lead_status_after_reply(l->status);
        int changed = 0;
        int rc;

        if (to == l->status)
            return SP_OK;
        rc = lead_repo_lead_transition(d->repo, l->id, l->status, to, now, &changed, err);
        if (rc == SP_OK && changed) {
            rc = leads_event_append(d->repo, l->id, EVENT_STATUS_CHANGED,
                                    leads_correlation_json(a, l->id, message_id, NULL),
                                    leads_status_change_payload(a, l->status, to, "reply_received"),
                                    now, err);
            l->status = to;
            l->updated_at = now;
            return rc;
        }
        if (rc == SP_OK)
            rc = lead_repo_lead_get(d->repo, l->id, a, l, err);
        if (rc != SP_OK)
            return rc;
    }
    return sp_error_set(err, SP_EUNAVAIL, "status", "lead status kept changing; retry");
}

/* Gives a lead that has no address on the reply's channel the reply's (validated) sender as
 * its address, with an address_added event. A compare-and-set under the lead's lock: if the
 * lead got an address meanwhile, it keeps it and the lead is re-read. One lead per person: an
 * address another lead has is not adopted (*in_use set; the reply is kept, unanswered). The
 * lookup is not what enforces it: if a concurrent unit of work gives the address to a lead
 * right after it, the store refuses ours (SP_ECONFLICT) and leads_receive runs again, when the
 * lookup finds that lead. */
static int
adopt_address(const struct leads_deps *d, struct arena *a, struct lead *l, enum channel c,
              const char *from, const char *message_id, int64_t now, int *in_use,
              struct sp_error *err)
{
    char buf[LEAD_NORM_MAX];
    const char *norm = lead_address_norm(c, from, buf, sizeof(buf));
    struct sp_error lookup = {0};
    struct lead owner;
    struct jsonw w;
    int changed = 0;
    int rc;

    *in_use = 0;
    rc = norm ? lead_repo_lead_find_by_address(d->repo, c, norm, a, &owner, &lookup) : SP_ENOTFOUND;
    if (rc == SP_OK && strcmp(owner.id, l->id) != 0) {
        *in_use = 1;
        return SP_OK;
    }
    if (rc != SP_OK && rc != SP_ENOTFOUND) {
        if (err && err->code == SP_OK)
            *err = lookup;
        return rc;
    }
    rc = lead_repo_lead_set_address(d->repo, l->id, c, from, now, &changed, err);
    if (rc != SP_OK)
        return rc;
    if (!changed)
        return lead_repo_lead_get(d->repo, l->id, a, l, err);
    if (c == CHANNEL_EMAIL)
        l->email = from;
    else
        l->phone = from;
    l->updated_at = now;
    jsonw_init(&w, a, 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "channel", channel_name(c));
    jsonw_kstr(&w, "address", from);
    jsonw_kstr(&w, "messageId", message_id);
    jsonw_kstr(&w, "reason", "reply_from");
    jsonw_obj_end(&w);
    return leads_event_append(d->repo, l->id, EVENT_ADDRESS_ADDED,
                              leads_correlation_json(a, l->id, message_id, NULL),
                              jsonw_finish_or(&w, "{}"), now, err);
}

/* The lead `id`, locked for the unit of work. */
static int
lead_take(const struct leads_deps *d, const char *id, struct arena *a, struct lead *l,
          struct sp_error *err)
{
    int rc = lead_repo_lead_lock(d->repo, id, err);

    return rc == SP_OK ? lead_repo_lead_get(d->repo, id, a, l, err) : rc;
}

/* The lead of the first of our outbound messages on the channel the message answers;
 * SP_ENOTFOUND when none of them is one. */
static int
lead_by_thread(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
               struct lead *l, struct sp_error *err)
{
    for (int i = 0; i < in->nthread_ids; i++) {
        struct sp_error lookup = {0};
        struct message m;
        int rc;

        if (in->thread_ids[i] == NULL ||
            !sp_uuid_valid(in->thread_ids[i], strlen(in->thread_ids[i])))
            continue;
        rc = lead_repo_message_get(d->repo, in->thread_ids[i], a, &m, &lookup);
        if (rc == SP_ENOTFOUND)
            continue;
        if (rc != SP_OK) {
            *err = lookup;
            return rc;
        }
        if (m.direction == MESSAGE_OUTBOUND && m.channel == in->channel)
            return lead_take(d, m.lead_id, a, l, err);
    }
    return sp_error_set(err, SP_ENOTFOUND, "inReplyTo", "no message of ours is answered");
}

/* The lead whose address on the channel is the sender's. */
static int
lead_by_address(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
                struct lead *l, struct sp_error *err)
{
    char buf[LEAD_NORM_MAX];
    const char *norm = lead_address_norm(in->channel, in->from, buf, sizeof(buf));
    struct lead found;
    int rc;

    if (norm == NULL)
        return sp_error_set(err, SP_ENOTFOUND, "from", "no sender address");
    rc = lead_repo_lead_find_by_address(d->repo, in->channel, norm, a, &found, err);
    return rc == SP_OK ? lead_take(d, found.id, a, l, err) : rc;
}

/* A new lead for an unknown sender: named after the sender (else its address), with the
 * sender's address, status new until the reply moves it; a lead_added event saying where it
 * came from. No welcome: the prospect wrote first. */
static int
lead_from_sender(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
                 int64_t now, struct lead *l, struct sp_error *err)
{
    struct sp_error name_err = {0};
    const char *name = in->from_name;
    struct jsonw w;
    int rc;

    if (in->from == NULL)
        return sp_error_set(err, SP_ENOTFOUND, "from", "no lead and no sender to make one of");
    if (name == NULL || name[strspn(name, " ")] == '\0' || /* none, or blank */
        lead_text_field_check("name", name, strlen(name), LEAD_NAME_MAX, &name_err) != SP_OK)
        name = in->from;
    memset(l, 0, sizeof(*l));
    sp_uuid_v7(l->id);
    l->name = name;
    if (in->channel == CHANNEL_EMAIL)
        l->email = in->from;
    else
        l->phone = in->from;
    l->status = LEAD_STATUS_NEW;
    l->created_at = now;
    l->updated_at = now;
    rc = lead_repo_lead_insert(d->repo, l, err);
    if (rc != SP_OK)
        return rc;
    jsonw_init(&w, a, 2048);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "id", l->id);
    jsonw_kstr(&w, "name", l->name);
    jsonw_kstr(&w, "email", l->email);
    jsonw_kstr(&w, "phone", l->phone);
    jsonw_kstr(&w, "status", lead_status_name(l->status));
    jsonw_kstr(&w, "source", reply_source_name(in->source));
    jsonw_obj_end(&w);
    return leads_event_append(d->repo, l->id, EVENT_LEAD_ADDED,
                              leads_correlation_json(a, l->id, NULL, NULL),
                              jsonw_finish_or(&w, "{}"), now, err);
}

/* Finds (and locks) the message's lead by the rules of struct inbound_reply. */
static int
lead_resolve(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
             int64_t now, struct lead *l, struct inbound_result *out, struct sp_error *err)
{
    int rc = SP_ENOTFOUND;

    if (in->lead_id != NULL) {
        rc = lead_take(d, in->lead_id, a, l, err);
        if (rc != SP_ENOTFOUND || !in->create_lead)
            return rc; /* the route's :id names the lead or nothing */
    }
    /* Each lookup that finds nothing leaves its SP_ENOTFOUND in err, and sp_error_set keeps
     * the first error: cleared before the next lookup, so a later failure reports itself. */
    if (in->nthread_ids > 0) {
        sp_error_clear(err);
        rc = lead_by_thread(d, in, a, l, err);
    }
    if (rc == SP_ENOTFOUND && in->from != NULL) {
        sp_error_clear(err);
        rc = lead_by_address(d, in, a, l, err);
    }
    if (rc != SP_ENOTFOUND || !in->create_lead)
        return rc;
    memset(err, 0, sizeof(*err));
    out->lead_created = 1;
    return lead_from_sender(d, in, a, now, l, err);
}

static const char *
received_payload(struct arena *a, const struct inbound_reply *in, const struct message *m)
{
    struct jsonw w;

    jsonw_init(&w, a, PAYLOAD_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "channel", channel_name(m->channel));
    jsonw_kstr(&w, "source", reply_source_name(in->source));
    if (in->provider_id)
        jsonw_kstr(&w, "providerId", in->provider_id);
    jsonw_kraw(&w, "messageContent", m->channel_message);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

/* Claims the delivery's token and the message's provider id; *taken when either was seen. */
static int
claim_receipts(const struct leads_deps *d, const struct inbound_reply *in, int64_t now,
               struct inbound_result *out, struct sp_error *err)
{
    char source[32];
    int fresh = 1;
    int rc = SP_OK;

    if (in->once_token != NULL) {
        snprintf(source, sizeof(source), "%s-token", reply_source_name(in->source));
        rc = lead_repo_receipt_claim(d->repo, source, in->once_token, now, &fresh, err);
        out->token_replayed = rc == SP_OK && !fresh;
    }
    if (rc == SP_OK && fresh && in->provider_id != NULL) {
        rc = lead_repo_receipt_claim(d->repo, reply_source_name(in->source), in->provider_id, now,
                                     &fresh, err);
        out->duplicate = rc == SP_OK && !fresh;
    }
    return rc;
}

static int
receive_in_tx(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
              struct message *m, int64_t now, struct inbound_result *out, struct sp_error *err)
{
    struct lead l;
    int in_use = 0;
    int rc;

    rc = claim_receipts(d, in, now, out, err);
    if (rc != SP_OK || out->duplicate || out->token_replayed)
        return rc;
    rc = lead_resolve(d, in, a, now, &l, out, err);
    if (rc != SP_OK)
        return rc;
    memcpy(m->lead_id, l.id, SP_UUID_LEN + 1);
    rc = lead_repo_message_insert(d->repo, m, err);
    if (rc == SP_OK)
        rc = leads_event_append(d->repo, l.id, EVENT_REPLY_RECEIVED,
                                leads_correlation_json(a, l.id, m->id, NULL),
                                received_payload(a, in, m), now, err);
    if (rc == SP_OK && in->from != NULL && lead_address_for(&l, m->channel) == NULL)
        rc = adopt_address(d, a, &l, m->channel, in->from, m->id, now, &in_use, err);
    if (rc == SP_OK)
        rc = reply_status_change(d, a, &l, m->id, now, err);
    if (rc == SP_OK) {
        struct leads_event_ctx ev = {d, a, &l, m, now, in->answerable, in_use};
        rc = event_bus_publish(d->bus, LEADS_EV_LEAD_REPLIED, &ev, err);
    }
    if (rc == SP_OK)
        memcpy(out->lead_id, l.id, SP_UUID_LEN + 1);
    return rc;
}

int
leads_receive(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
              struct inbound_result *out, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    struct message m;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!(d->policy->sendable & (1u << in->channel)))
        return sp_error_set(err, SP_EINVAL, "channel",
                            "channel %s has no sender: replies are accepted on email, whatsapp",
                            channel_name(in->channel));
    if (in->content == NULL)
        return sp_error_set(err, SP_EINVAL, "messageContent", "messageContent should not be empty");
    if (strlen(in->content) > MESSAGE_CONTENT_MAX)
        return sp_error_set(err, SP_EINVAL, "messageContent", "messageContent is too large");
    memset(&m, 0, sizeof(m));
    sp_uuid_v7(m.id);
    m.channel = in->channel;
    m.direction = MESSAGE_INBOUND;
    m.kind = MESSAGE_KIND_REPLY;
    m.status = MESSAGE_RECEIVED;
    m.provider_id = in->provider_id;
    m.channel_message = in->content;
    m.created_at = now;
    m.updated_at = now;

    /* One lead per person: a unit of work that gave the sender's address to a lead (a new
     * one, or one adopting it) is refused by the store (SP_ECONFLICT) when a concurrent one did
     * so first; it runs once more, and its lookup then finds that lead. */
    for (int attempt = 0;; attempt++) {
        rc = lead_repo_begin(d->repo, err);
        if (rc != SP_OK)
            return rc;
        rc = receive_in_tx(d, in, a, &m, now, out, err);
        if (rc == SP_OK && (out->duplicate || out->token_replayed)) {
            lead_repo_rollback(d->repo); /* nothing was written but the claims' lookups */
            return SP_OK;
        }
        rc = finish(d, rc, err);
        if (rc != SP_ECONFLICT || attempt > 0)
            break;
        memset(out, 0, sizeof(*out));
        sp_error_clear(err);
    }
    if (rc == SP_OK) {
        memcpy(out->message_id, m.id, SP_UUID_LEN + 1);
        job_queue_wake(d->queue);
    } else {
        out->lead_created = 0;
    }
    return rc;
}

/* The reply's sender (messageContent.from) into *from (arena), NULL when absent or null; a
 * sender that is not an address of the channel is SP_EINVAL. */
static int
reply_from(const struct reply_input *in, struct arena *a, const char **from, struct sp_error *err)
{
    char buf[4 * LEAD_EMAIL_MAX + 1];
    int rc = jsonr_str(in->content, "from", buf, sizeof(buf));

    *from = NULL;
    if (rc == SP_EINVAL)
        return SP_OK; /* no string "from" (presentation refuses other types) */
    if (rc != SP_OK || !lead_address_valid(in->channel, buf, strlen(buf)))
        return sp_error_set(err, SP_EINVAL, "messageContent.from", "messageContent.from %s",
                            in->channel == CHANNEL_EMAIL ? "must be an email"
                                                         : "must be a phone number");
    *from = arena_strdup(a, buf);
    return SP_OK;
}

int
leads_reply(const struct leads_deps *d, const struct reply_input *in, struct arena *a,
            char *message_id, struct sp_error *err)
{
    struct inbound_reply r;
    struct inbound_result out;
    int rc;

    memset(&r, 0, sizeof(r));
    r.source = REPLY_SOURCE_API;
    r.channel = in->channel;
    r.lead_id = in->lead_id;
    r.content = in->content;
    r.answerable = 1;
    /* The "from" is judged only when leads_receive would take the message: a channel without
     * a sender, or no or too large content, is what is wrong then (its error, from there). */
    if ((d->policy->sendable & (1u << in->channel)) && in->content != NULL &&
        strlen(in->content) <= MESSAGE_CONTENT_MAX) {
        rc = reply_from(in, a, &r.from, err);
        if (rc != SP_OK)
            return rc;
    }
    rc = leads_receive(d, &r, a, &out, err);
    if (rc == SP_OK)
        memcpy(message_id, out.message_id, SP_UUID_LEN + 1);
    return rc;
}

int
leads_forget_receipts(const struct leads_deps *d, const char *source, int64_t before,
                      struct sp_error *err)
{
    return lead_repo_receipt_prune(d->repo, source, before, err);
}

/* ---- delivery receipts --------------------------------------------------------------- */

static enum lead_event_type
receipt_event(enum message_status s)
{
    switch (s) {
    case MESSAGE_DELIVERED:
        return EVENT_MESSAGE_DELIVERED;
    case MESSAGE_READ:
        return EVENT_MESSAGE_READ;
    case MESSAGE_FAILED:
        return EVENT_MESSAGE_FAILED;
    default:
        return EVENT_MESSAGE_SENT;
    }
}

static int
receipt_in_tx(const struct leads_deps *d, const struct delivery_receipt *in, struct arena *a,
              int64_t now, int *applied, struct sp_error *err)
{
    enum message_status to;
    struct message m;
    struct lead l;
    struct jsonw w;
    int rc;

    rc = lead_repo_message_find_by_provider(d->repo, in->channel, MESSAGE_OUTBOUND, in->provider_id,
                                            a, &m, err);
    /* Under the lead's lock, re-read: a concurrent receipt may have moved it meanwhile. */
    if (rc == SP_OK)
        rc = lead_take(d, m.lead_id, a, &l, err);
    if (rc == SP_OK)
        rc = lead_repo_message_get(d->repo, m.id, a, &m, err);
    if (rc != SP_OK || !message_receipt_applies(m.status, in->status, &to))
        return rc;
    *applied = 1;
    m.status = to;
    if (to == MESSAGE_FAILED)
        m.last_error = in->error ? in->error : "the provider reported the message failed";
    m.updated_at = now;
    rc = lead_repo_message_update_delivery(d->repo, &m, err);
    if (rc != SP_OK)
        return rc;
    jsonw_init(&w, a, 2048);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m.id);
    jsonw_kstr(&w, "channel", channel_name(m.channel));
    jsonw_kstr(&w, "providerId", in->provider_id);
    jsonw_kstr(&w, "status", message_status_name(to));
    if (to == MESSAGE_FAILED)
        jsonw_kstr(&w, "error", m.last_error);
    jsonw_obj_end(&w);
    return leads_event_append(d->repo, l.id, receipt_event(to),
                              leads_correlation_json(a, l.id, m.id, NULL),
                              jsonw_finish_or(&w, "{}"), now, err);
}

int
leads_apply_receipt(const struct leads_deps *d, const struct delivery_receipt *in, struct arena *a,
                    int *applied, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int rc;

    *applied = 0;
    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = finish(d, receipt_in_tx(d, in, a, now, applied, err), err);
    if (rc != SP_OK)
        *applied = 0;
    return rc;
}
