/* jobs_http.h: the operator's job routes (GET /jobs, GET /jobs/:id, POST /jobs/:id/retry) and
 * the job record every route shows (these and the `jobs` of GET /leads/:id). Parses and checks
 * the query and the id, calls the use cases (application/jobs.h), renders the answers; errors
 * have the NestJS body, and bad input is never a 5xx. */
#pragma once

#include "core/http.h"

struct job;
struct jsonw;
struct leads_deps;

/* GET /jobs?state=&name=&limit=&cursor= : a page of jobs, newest first. */
void jobs_http_list(const struct leads_deps *d, struct http_request *req,
                    struct http_response *resp);
/* GET /jobs/:id */
void jobs_http_get(const struct leads_deps *d, struct http_request *req,
                   struct http_response *resp);
/* POST /jobs/:id/retry */
void jobs_http_retry(const struct leads_deps *d, struct http_request *req,
                     struct http_response *resp);

/* The job record as a JSON object: id, [leadId,] name, messageId, state, attemptsMade,
 * maxAttempts, lastError, createdAt, updatedAt, runAt, finishedAt. with_lead adds leadId (the
 * job routes; a lead's details leave it out: it is the lead's own id). */
void jobs_http_render(struct jsonw *w, const struct job *j, int with_lead);
