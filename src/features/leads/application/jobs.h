/* jobs.h: the operator's use cases over the job queue (GET /jobs, GET /jobs/:id, POST
 * /jobs/:id/retry): list the jobs, read one, and put a failed one back in line.
 *
 * They belong to the leads slice because a job is a lead's: retrying a send-message job puts its
 * message back to `queued` and writes a message_retried event on the lead's timeline, in the
 * unit of work that resets the job. What a job record holds, and what a retry does to it on
 * each backend (BullMQ's job.retry() on Redis), is the queue port's (core/queue.h). Not the
 * place for the worker's retries after a failed attempt (delivery.h). Everything returned is
 * allocated in the caller's arena. */
#pragma once

#include "core/err.h"
#include "core/queue.h"

struct arena;
struct leads_deps;
struct message;

#define LEADS_JOBS_PAGE_DEFAULT 20 /* GET /jobs without limit */

/* A page of the jobs f selects, newest first: out[0..*n), and in next (JOB_CURSOR_MAX bytes)
 * the position of the page after, "" after the last. SP_EINVAL (field "limit") for a limit
 * out of 1..JOB_LIST_MAX, (field "cursor") for a position the queue did not make. */
int leads_list_jobs(const struct leads_deps *d, const struct job_filter *f, struct arena *a,
                    struct job **out, int *n, char *next, struct sp_error *err) SP_MUST_CHECK;

/* One job. SP_ENOTFOUND for an unknown id, SP_EINVAL (field "id") for one the queue cannot
 * have made. */
int leads_get_job(const struct leads_deps *d, const char *id, struct arena *a, struct job *out,
                  struct sp_error *err) SP_MUST_CHECK;

/* Puts failed job `id` back in line (job_queue_reprocess: waiting, due now, attempts reset,
 * history kept), in one unit of work with, for a send-message job, its message back from
 * `failed` to `queued` (its attempts and last error kept: the count of sends tried and the
 * latest failure until the next outcome) and a message_retried event on the lead's timeline;
 * then wakes the workers (on Redis, the relay that moves the job there). *out is the job as it
 * is after the commit. SP_ECONFLICT (field "state") when the job is not failed, SP_ENOTFOUND,
 * SP_EINVAL as leads_get_job; storage errors otherwise (nothing changed). */
int leads_retry_job(const struct leads_deps *d, const char *id, struct arena *a, struct job *out,
                    struct sp_error *err) SP_MUST_CHECK;

/* Slice-private (delivery.c too): the payload of message_retried for message m of job
 * `job_id`: {"messageId","channel","jobId","attempts","lastError","source"}, source "api"
 * (this route) or "queue" (the job came back through BullMQ: a Node client's job.retry()). */
const char *leads__message_retried_payload(struct arena *a, const struct message *m,
                                           const char *job_id, const char *source);
