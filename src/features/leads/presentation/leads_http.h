/* leads_http.h: the leads controller: parses and validates requests (NestJS ValidationPipe
 * messages), calls the use cases, renders responses, and maps SP_E* codes to HTTP statuses.
 * Never answers 5xx for bad input. */
#pragma once

#include "core/http.h"

struct jsonw;
struct lead_event;
struct leads_deps;
struct lead_opt_outs;
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

/* Writes one timeline event as the JSON object GET /leads/:id shows in its "events" (the data
 * of a GET /events frame too): {"id","type","leadId","correlationIds","payload","createdAt"}. */
void leads_http_event_json(struct jsonw *w, const struct lead_event *e);

/* POST /leads/:id/opt-out {"channel"?, "reason"?}: 200 {"leadId","optOut"}; no channel: all. */
void leads_http_opt_out(const struct leads_deps *d, struct http_request *req,
                        struct http_response *resp);
/* DELETE /leads/:id/opt-out?channel= : 200 {"leadId","optOut"}; no channel: all. */
void leads_http_opt_in(const struct leads_deps *d, struct http_request *req,
                       struct http_response *resp);
/* POST /leads/:id/messages {"channel","channelMessage"}: an operator's message, 201 with the
 * message; 409 when the lead opted out of the channel. */
void leads_http_send_message(const struct leads_deps *d, struct http_request *req,
                             struct http_response *resp);

/* Writes the lead's opt-outs as a JSON object, one member per channel opted out of:
 * {"email":{"reason","at","source"}} ({} when none). */
void leads_http_render_opt_outs(struct jsonw *w, const struct lead_opt_outs *o);

/* Renders a use-case error: 400/404/409/413/503 (+Retry-After)/500 with the JSON error body. */
void leads_http_error(struct http_response *resp, struct arena *a, int code,
                      const struct sp_error *err);
