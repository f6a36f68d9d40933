/* throttle.h: the rate-limit policy (RATE_LIMIT_RPS, RATE_LIMIT_BURST) over core/rate_limit.
 *
 * Which requests are limited, by what key, and what the answer says; the buckets themselves are
 * core/rate_limit's. A request is counted against the bucket of its API key when API_KEYS is set
 * and it carries a valid one, else against the bucket of its client address (an IPv6 address by
 * its /64, what one host or customer usually holds; so a request with a missing or wrong key is
 * paced by its address too, which slows key guessing). Never limited: GET /health (probes),
 * the providers' webhooks (/webhooks/...: a provider delivers from a few shared addresses in
 * bursts, and each request is signed), the unsubscribe links (/unsubscribe/...: RFC 8058's
 * one-click POSTs come from the mailbox providers' few addresses, an opt-out must never be
 * refused, and the token is the credential), the dashboard's files (/ and /ui/...: served from
 * memory, one page load asks for a dozen at once before any API call, and a 429 on one breaks
 * the page while sparing nothing), and CORS preflights (answered from the route table, and a
 * browser cannot read a 429 on one). Off (every request allowed, no header) when
 * RATE_LIMIT_RPS is 0. Thread-safety: any thread. */
#pragma once

#include "core/err.h"
#include "core/rate_limit.h"

struct http_request;
struct http_response;

struct throttle {
    struct rate_limit *buckets; /* owned; NULL: limits off */
};

/* rps 0: off; else burst 0 means one second's worth (ceil(rps), at least 1). SP_EINVAL for a
 * negative rate or burst. Caller frees with throttle_cleanup(). */
int throttle_init(struct throttle *t, double rps, int burst) SP_MUST_CHECK;
void throttle_cleanup(struct throttle *t);

/* The verdict on one request, before anything else runs. */
struct throttle_verdict {
    int applies; /* the request is subject to the limit: its answer gets the headers */
    struct rate_limit_verdict v;
};

/* Decides for `req` (key_index: the index of its valid API key, -1 when it has none); takes a
 * token when the limit applies. */
void throttle_check(struct throttle *t, const struct http_request *req, int key_index,
                    struct throttle_verdict *out);
/* The answer to a refused request: 429 with the NestJS error body and Retry-After. */
void throttle_refuse(const struct throttle_verdict *tv, struct http_request *req,
                     struct http_response *resp);
/* Adds RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset to the final answer of a
 * request the limit applies to (allowed or refused); nothing otherwise. */
void throttle_headers(const struct throttle_verdict *tv, struct http_request *req,
                      struct http_response *resp);
