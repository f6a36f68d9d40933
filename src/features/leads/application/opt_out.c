/* opt_out.c: do not contact: a lead's opt-outs per channel, set and cleared in one unit of
 * work under the lead's lock, each change an event on the timeline (opted_out, opted_in).
 *
 * Enforcement is not here: the worker reads the opt-outs when it claims a message and
 * suppresses the send (delivery.c), and a reply on an opted-out channel gets no answer
 * (leads.c). This file only records who asked, when and why. */
#include "features/leads/application/leads.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "features/leads/domain/lead_repo.h"

#include <string.h>

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

static int
check_channels(unsigned channels, struct sp_error *err)
{
    if (channels == 0 || (channels & ~LEAD_OPT_OUT_CHANNELS) != 0)
        return sp_error_set(err, SP_EINVAL, "channel",
                            "channel must be one of the following values: email, whatsapp");
    return SP_OK;
}

static const char *
opt_out_payload(struct arena *a, enum channel c, const char *reason, enum opt_out_source source,
                const char *message_id)
{
    struct jsonw w;

    jsonw_init(&w, a, 4096);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "channel", channel_name(c));
    jsonw_kstr(&w, "reason", reason);
    jsonw_kstr(&w, "source", opt_out_source_name(source));
    if (message_id)
        jsonw_kstr(&w, "messageId", message_id);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

int
leads__opt_out_in_tx(const struct leads_deps *d, struct arena *a, const char *lead_id,
                     unsigned channels, const char *reason, enum opt_out_source source,
                     const char *message_id, int64_t now, int *added, struct sp_error *err)
{
    int rc = SP_OK;

    if (added)
        *added = 0;
    for (int c = 0; rc == SP_OK && c < CHANNEL_COUNT; c++) {
        struct lead_opt_out o = {(enum channel)c, reason, source, now};
        int inserted = 0;

        if (!(channels & (1u << c)))
            continue;
        rc = lead_repo_opt_out_insert(d->repo, lead_id, &o, &inserted, err);
        if (rc == SP_OK && inserted)
            rc = leads_event_append(d->repo, lead_id, EVENT_OPTED_OUT,
                                    leads_correlation_json(a, lead_id, message_id, NULL),
                                    opt_out_payload(a, o.channel, reason, source, message_id), now,
                                    err);
        if (rc == SP_OK && inserted && added)
            (*added)++;
    }
    return rc;
}

static int
opt_out_in_tx(const struct leads_deps *d, const struct opt_out_input *in, struct arena *a,
              int64_t now, struct lead_opt_outs *out, struct sp_error *err)
{
    int rc = lead_repo_lead_lock(d->repo, in->lead_id, err);

    if (rc == SP_OK)
        rc = leads__opt_out_in_tx(d, a, in->lead_id, in->channels, in->reason, in->source, NULL,
                                  now, NULL, err);
    if (rc == SP_OK)
        rc = lead_repo_opt_out_list(d->repo, in->lead_id, a, out, err);
    return rc;
}

int
leads_opt_out(const struct leads_deps *d, const struct opt_out_input *in, struct arena *a,
              struct lead_opt_outs *out, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int rc;

    memset(out, 0, sizeof(*out));
    rc = check_channels(in->channels, err);
    if (rc == SP_OK && in->reason != NULL && in->reason[0] == '\0')
        rc = sp_error_set(err, SP_EINVAL, "reason", "reason should not be empty");
    if (rc == SP_OK && in->reason != NULL)
        rc = lead_text_field_check("reason", in->reason, strlen(in->reason),
                                   LEAD_OPT_OUT_REASON_MAX, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = finish(d, opt_out_in_tx(d, in, a, now, out, err), err);
    if (rc != SP_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

static int
opt_in_in_tx(const struct leads_deps *d, const char *lead_id, unsigned channels, struct arena *a,
             int64_t now, struct lead_opt_outs *out, struct sp_error *err)
{
    int rc = lead_repo_lead_lock(d->repo, lead_id, err);

    for (int c = 0; rc == SP_OK && c < CHANNEL_COUNT; c++) {
        int deleted = 0;
        struct jsonw w;

        if (!(channels & (1u << c)))
            continue;
        rc = lead_repo_opt_out_delete(d->repo, lead_id, (enum channel)c, &deleted, err);
        if (rc != SP_OK || !deleted)
            continue;
        jsonw_init(&w, a, 256);
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "channel", channel_name((enum channel)c));
        jsonw_kstr(&w, "source", opt_out_source_name(OPT_OUT_SOURCE_API));
        jsonw_obj_end(&w);
        rc = leads_event_append(d->repo, lead_id, EVENT_OPTED_IN,
                                leads_correlation_json(a, lead_id, NULL, NULL),
                                jsonw_finish_or(&w, "{}"), now, err);
    }
    if (rc == SP_OK)
        rc = lead_repo_opt_out_list(d->repo, lead_id, a, out, err);
    return rc;
}

int
leads_opt_in(const struct leads_deps *d, const char *lead_id, unsigned channels, struct arena *a,
             struct lead_opt_outs *out, struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    int rc;

    memset(out, 0, sizeof(*out));
    rc = check_channels(channels, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = finish(d, opt_in_in_tx(d, lead_id, channels, a, now, out, err), err);
    if (rc != SP_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

int
leads_get_opt_outs(const struct leads_deps *d, const char *lead_id, struct arena *a,
                   struct lead *lead, struct lead_opt_outs *out, struct sp_error *err)
{
    struct lead l;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = lead_repo_read_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = lead_repo_lead_get(d->repo, lead_id, a, lead ? lead : &l, err);
    if (rc == SP_OK)
        rc = lead_repo_opt_out_list(d->repo, lead_id, a, out, err);
    lead_repo_read_end(d->repo);
    return rc;
}
