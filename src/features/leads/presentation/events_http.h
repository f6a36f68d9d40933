/* events_http.h: GET /events, the timeline of every lead as server-sent events, and the
 * publisher that feeds the process's hub (core/sse_hub.h) from the store.
 *
 * Each event is one frame: "id: <event id>", "event: <type>", "data: <the event's JSON, as
 * GET /leads/:id shows it>". Events come in feed order (event_feed.h): a stream starts after
 * the newest settled event, or after the one named by Last-Event-ID, and then gets every later
 * event exactly once, across reconnections and across processes; ?leadId= keeps one lead's.
 * A stream reads the hub, or the store while it is behind the hub (resuming from an older event,
 * or too slow for the hub's ring), and sends a comment (": ping") when it has been silent for
 * heartbeat_ms. It ends when the hub closes (the process stops): clients reconnect with their
 * Last-Event-ID. */
#pragma once

#include "core/err.h"
#include "core/http.h"
#include "features/leads/domain/lead_repo.h"

struct arena;
struct gate;
struct sse_hub;

/* How a stream reaches the store for one short read: open() lends a repository (on a pooled
 * session), close() gives it back. Streams never hold a session while they wait. */
struct events_store {
    int (*open)(void *ctx, struct lead_repo **out, struct sp_error *err);
    void (*close)(void *ctx, struct lead_repo *r);
    void *ctx;
};

/* Shared by every stream of the process; must outlive them (every stream's close). */
/* A stream that has caught up with the hub hands out its next frames this long after its last
 * bytes at the earliest, all that arrived meanwhile at once (see events_http.c). */
#define EVENTS_COALESCE_MS 40

struct events_http {
    struct sse_hub *hub; /* borrowed */
    struct gate *gate;   /* borrowed; NULL: streams copy without taking turns (events_http.c) */
    struct events_store store;
    int heartbeat_ms; /* the longest silence on a stream: then ": ping" */
    int retry_ms;     /* sent as "retry:": the client's reconnection delay */
};

/* GET /events[?leadId=<uuid>], with Last-Event-ID optionally: 200 and a stream; 400 for a bad
 * leadId, Last-Event-ID or query parameter; 404 for an unknown lead or event; 503 when the
 * store cannot be read. The query may carry `key` (the API key, checked by the caller). */
void events_http_stream(const struct events_http *eh, struct http_request *req,
                        struct http_response *resp);

/* One round of the publisher: settles what the store allows (f), then, when some stream
 * listens, renders the events between the hub's mark and the settled position and publishes
 * them; with none, only moves the mark. `a` is reset as it goes. Errors from storage. (The
 * caller expires old frames: sse_hub_expire.) */
int events_http_publish(struct sse_hub *hub, struct lead_repo *r, struct lead_feed_fence *f,
                        struct arena *a, struct sp_error *err) SP_MUST_CHECK;

/* One event as an SSE frame, in arena `a`. SP_ETOOLARGE for an event beyond any bound. */
int events_http_frame(struct arena *a, const struct lead_event *e, const char **out,
                      size_t *len) SP_MUST_CHECK;
