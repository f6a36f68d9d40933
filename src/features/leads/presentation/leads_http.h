/* leads_http.h: the leads controller: parses and validates requests (NestJS ValidationPipe
 * messages), calls the use cases, renders responses, and maps SP_E* codes to HTTP statuses.
 * Never answers 5xx for bad input. */
#pragma once

#include "core/http.h"

struct leads_deps;
struct sp_error;

/* POST /leads; 409 with the existing lead's id (leadId) for a person already stored. */
void leads_http_create(const struct leads_deps *d, struct http_request *req,
                       struct http_response *resp);
/* POST /leads/:id/reply */
void leads_http_reply(const struct leads_deps *d, struct http_request *req,
                      struct http_response *resp);
/* GET /leads?status=&q=&createdAfter=&createdBefore=&limit=&cursor= : a page of the leads,
 * newest first, {"items":[lead...],"nextCursor":"..."|null}. */
void leads_http_list(const struct leads_deps *d, struct http_request *req,
                     struct http_response *resp);
/* GET /leads/:id */
void leads_http_details(const struct leads_deps *d, struct http_request *req,
                        struct http_response *resp);

/* GET /leads/:id/messages?channel=&cursor=&limit= : a page of one channel's older messages. */
void leads_http_messages(const struct leads_deps *d, struct http_request *req,
                         struct http_response *resp);
/* GET /leads/:id/events?cursor=&limit= : a page of older events. */
void leads_http_events(const struct leads_deps *d, struct http_request *req,
                       struct http_response *resp);

/* Renders a use-case error: 400/404/409/413/503 (+Retry-After)/500 with the JSON error body. */
void leads_http_error(struct http_response *resp, struct arena *a, int code,
                      const struct sp_error *err);
