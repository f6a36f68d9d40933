/* jobs.c: the operator's job use cases (see jobs.h). */
#include "features/leads/application/jobs.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "features/leads/application/leads.h"
#include "features/leads/domain/lead_repo.h"

#include <string.h>

int
leads_list_jobs(const struct leads_deps *d, const struct job_filter *f, struct arena *a,
                struct job **out, int *n, char *next, struct sp_error *err)
{
    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (f->limit < 1 || f->limit > JOB_LIST_MAX)
        return sp_error_set(err, SP_EINVAL, "limit", "limit must be an integer from 1 to %d",
                            JOB_LIST_MAX);
    return job_queue_list(d->queue, f, a, out, n, next, err);
}

int
leads_get_job(const struct leads_deps *d, const char *id, struct arena *a, struct job *out,
              struct sp_error *err)
{
    return job_queue_get(d->queue, id, a, out, err);
}

const char *
leads__message_retried_payload(struct arena *a, const struct message *m, const char *job_id,
                               const char *source)
{
    struct jsonw w;

    jsonw_init(&w, a, 2048);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", m->id);
    jsonw_kstr(&w, "channel", channel_name(m->channel));
    jsonw_kstr(&w, "jobId", job_id);
    jsonw_kint(&w, "attempts", m->attempts);
    jsonw_kstr(&w, "lastError", m->last_error);
    jsonw_kstr(&w, "source", source);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, "{}");
}

/* The message of send-message job j back in line, with the event. A job whose message is gone
 * (or that names none) only goes back to the queue: its worker fails it again, saying why. */
static int
requeue_message(const struct leads_deps *d, const struct job *j, struct arena *a, int64_t now,
                struct sp_error *err)
{
    struct sp_error lookup = {0};
    struct message m;
    int rc;

    if (j->name == NULL || strcmp(j->name, SEND_MESSAGE_JOB) != 0 || j->key == NULL)
        return SP_OK;
    rc = lead_repo_message_get(d->repo, j->key, a, &m, &lookup);
    if (rc == SP_ENOTFOUND)
        return SP_OK;
    if (rc != SP_OK) {
        if (err && err->code == SP_OK)
            *err = lookup;
        return rc;
    }
    if (m.status == MESSAGE_FAILED) {
        /* The worker sends a queued message; a failed one would be failed again at once. */
        m.status = MESSAGE_QUEUED;
        m.updated_at = now;
        rc = lead_repo_message_update_delivery(d->repo, &m, err);
        if (rc != SP_OK)
            return rc;
    }
    return leads_event_append(d->repo, m.lead_id, EVENT_MESSAGE_RETRIED,
                              leads_correlation_json(a, m.lead_id, m.id, j->id),
                              leads__message_retried_payload(a, &m, j->id, "api"), now, err);
}

static int
retry_in_tx(const struct leads_deps *d, const struct job *cur, int64_t now, struct arena *a,
            struct sp_error *err)
{
    struct job before;
    int rc = SP_OK;

    /* The lead first, then the job, as the worker records an outcome: no lock-order deadlock. */
    if (cur->group)
        rc = lead_repo_lead_lock(d->repo, cur->group, err);
    if (rc == SP_OK)
        rc = job_queue_reprocess(d->queue, cur->id, now, a, &before, err);
    if (rc == SP_OK)
        rc = requeue_message(d, &before, a, now, err);
    return rc;
}

int
leads_retry_job(const struct leads_deps *d, const char *id, struct arena *a, struct job *out,
                struct sp_error *err)
{
    int64_t now = sp_clock_now_ms(d->clock);
    struct sp_error rerr = {0};
    struct job cur;
    int rc;

    /* A bad id, an unknown job or one that is not failed needs no write transaction. */
    rc = job_queue_get(d->queue, id, a, &cur, err);
    if (rc != SP_OK)
        return rc;
    if (cur.state != JOB_FAILED)
        return sp_error_set(err, SP_ECONFLICT, "state",
                            "Job %s is %s: only a failed job can be retried", cur.id,
                            job_state_name(cur.state));
    rc = lead_repo_begin(d->repo, err);
    if (rc != SP_OK)
        return rc;
    rc = retry_in_tx(d, &cur, now, a, err);
    if (rc != SP_OK) {
        lead_repo_rollback(d->repo);
        job_queue_after_rollback(d->queue);
        return rc;
    }
    rc = lead_repo_commit(d->repo, err);
    if (rc != SP_OK) {
        job_queue_after_rollback(d->queue);
        return rc;
    }
    job_queue_wake(d->queue);
    if (job_queue_get(d->queue, cur.id, a, out, &rerr) != SP_OK) {
        /* Committed: the retry stands. What the reset left, as reprocess wrote it. */
        *out = cur;
        out->state = JOB_WAITING;
        out->attempts_made = 0;
        out->last_error = NULL;
        out->finished_at = 0;
        out->run_at = now;
        out->updated_at = now;
    }
    return SP_OK;
}
