/* manual.c: an operator's message to a lead (kind manual), queued like every other outbound
 * message (leads__queue_outbound) and delivered by the same worker.
 *
 * Do not contact: a message to a channel the lead opted out of is refused at once (409 at the
 * HTTP edge), nothing stored: the operator is there to read why, where a message accepted and
 * then suppressed would look like a success until someone opened the timeline. An opt-out that
 * arrives after the message was accepted still stops it: the worker checks again at send time. */
#include "features/leads/application/leads.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/uuid.h"
#include "features/leads/domain/content_gen.h"
#include "features/leads/domain/lead_repo.h"

#include <string.h>

/* The stored channel message: the lead's address as "to", then the operator's parts, in the
 * shape generated messages have (content_gen.h). NULL when it would pass MESSAGE_CONTENT_MAX. */
static const char *
manual_content(struct arena *a, const struct manual_input *in, const char *to)
{
    struct jsonw w;

    jsonw_init(&w, a, MESSAGE_CONTENT_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "to", to);
    if (in->channel == CHANNEL_EMAIL) {
        jsonw_kstr(&w, "subject", in->subject);
        jsonw_kstr(&w, "body", in->body);
    } else {
        jsonw_kstr(&w, "text", in->text);
    }
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, NULL);
}

static int
manual_in_tx(const struct leads_deps *d, const struct manual_input *in, struct arena *a,
             int64_t now, struct message *out, struct sp_error *err)
{
    struct lead_opt_outs opt_outs;
    struct generated content = {NULL, NULL};
    char id[SP_UUID_LEN + 1];
    struct lead l;
    int rc;

    /* Under the lead's lock: an opt-out committing meanwhile is either seen here or comes
     * after the message is queued (and then suppresses it at send time). */
    rc = lead_repo_lead_lock(d->repo, in->lead_id, err);
    if (rc == SP_OK)
        rc = lead_repo_lead_get(d->repo, in->lead_id, a, &l, err);
    if (rc == SP_OK)
        rc = lead_repo_opt_out_list(d->repo, in->lead_id, a, &opt_outs, err);
    if (rc != SP_OK)
        return rc;
    if (lead_opt_out_find(&opt_outs, in->channel) != NULL)
        return sp_error_set(err, SP_ECONFLICT, "channel",
                            "Lead %s opted out of %s: the message was not queued", l.id,
                            channel_name(in->channel));
    content.to = lead_address_for(&l, in->channel);
    if (content.to == NULL)
        return sp_error_set(err, SP_EINVAL, "channel", "lead has no %s address",
                            channel_name(in->channel));
    content.channel_message = manual_content(a, in, content.to);
    if (content.channel_message == NULL)
        return sp_error_set(err, SP_EINVAL, "channelMessage",
                            "channelMessage must be at most %d bytes", MESSAGE_CONTENT_MAX);
    sp_uuid_v7(id);
    rc = leads__queue_outbound(d, a, &l, in->channel, MESSAGE_KIND_MANUAL, id, &content, now, err);
    if (rc == SP_OK)
        rc = lead_repo_message_get(d->repo, id, a, out, err);
    return rc;
}

int
leads_send_manual(const struct leads_deps *d, const struct manual_input *in, struct arena *a,
                  struct message *out, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int rc;

    memset(out, 0, sizeof(*out));
    if (!(d->policy->sendable & (1u << in->channel)))
        return sp_error_set(err, SP_EINVAL, "channel",
                            "channel %s has no sender: messages go out on email, whatsapp",
                            channel_name(in->channel));
    rc = lead_manual_message_check(in->channel, in->subject, in->body, in->text, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = manual_in_tx(d, in, a, now, out, err);
    if (rc != SP_OK) {
        lead_repo_rollback(d->repo);
        return rc;
    }
    rc = lead_repo_commit(d->repo, err);
    if (rc == SP_OK)
        job_queue_wake(d->queue);
    return rc;
}
