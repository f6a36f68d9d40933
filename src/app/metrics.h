/* metrics.h: the process's metrics and GET /metrics, in Prometheus's text format.
 *
 * In-process counters (this process's own, from its start; every process exposes its own):
 * HTTP requests by route pattern, method and status, and their latency histogram by route and
 * method, counted here by routes_handle; the send-message jobs' outcomes by channel, counted by
 * the workers in a struct delivery_counters. Read from the database at each scrape (the same for
 * every process sharing it): jobs by name and state, and the outbox's backlog (the Redis queue).
 * Read from the process: its database pool. The names, labels and their meaning are in
 * docs/http-api.md (GET /metrics).
 *
 * Cardinality is bounded: a route label is a pattern of the route table ("/leads/:id"), never a
 * path, and every path that matches none is "unmatched"; methods outside the standard set are
 * "other". Thread-safety: metrics_http_observe from any thread (relaxed atomics); the rest at
 * start-up and shutdown. */
#pragma once

#include "core/http.h"
#include "core/prom.h"

#include <stdatomic.h>
#include <stdint.h>

struct app;

#define METRICS_ROUTES (HTTP_ROUTES_MAX + 1) /* slot 0: "unmatched" */
#define METRICS_METHODS 8                    /* GET HEAD POST PUT PATCH DELETE OPTIONS other */
#define METRICS_STATUSES 16                  /* distinct statuses per route and method */

/* The statuses one route and method answered: a slot is claimed for a status the first time. */
struct metrics_statuses {
    atomic_int status[METRICS_STATUSES]; /* 0: free */
    atomic_uint_fast64_t n[METRICS_STATUSES];
    atomic_uint_fast64_t other; /* statuses past METRICS_STATUSES (never seen in practice) */
};

struct http_metrics {
    int nroutes;                          /* slots used in `patterns` */
    const char *patterns[METRICS_ROUTES]; /* borrowed from the router; [0] "unmatched" */
    int slot_of_route[HTTP_ROUTES_MAX];   /* router table index -> pattern slot */
    const struct http_route *routes;      /* the router's table (borrowed) */
    struct metrics_statuses requests[METRICS_ROUTES][METRICS_METHODS];
    struct prom_histogram latency[METRICS_ROUTES][METRICS_METHODS];
    int64_t started_at_ms; /* wall-clock start of the process */
};

/* A zeroed set for `router`'s routes, as they are now (call after the last http_router_add).
 * Caller frees with metrics_free(). */
struct http_metrics *metrics_new(const struct http_router *router);
/* NULL-safe. */
void metrics_free(struct http_metrics *m);
/* Counts one answered request: `route` as http_router_find gave it (NULL: unmatched), the
 * request's method, the answer's status, and its latency in microseconds. */
void metrics_http_observe(struct http_metrics *m, const struct http_route *route,
                          const char *method, int status, int64_t us);

/* GET /metrics: renders every metric of the process into resp (text/plain; version=0.0.4). The
 * database's gauges come from one session; with the database unreachable the in-process
 * metrics are still answered, with salespad_database_up 0. ctx is the struct app. */
void metrics_route(void *ctx, struct http_request *req, struct http_response *resp);
