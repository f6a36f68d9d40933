/* idempotency.h: safe retries of POST requests with an Idempotency-Key header.
 *
 * The same key with the same request (method, path, content type, body) within
 * IDEMPOTENCY_TTL_S replays the stored status and body with `Idempotent-Replayed: true`; the
 * same key with a different request answers 422; a request while the first one with that key
 * is still running answers 409. Keys are scoped by client: the API key (its digest), or one
 * scope for all when API_KEYS is unset.
 *
 * The key is stored in the unit of work of the request's effect: the route opens a
 * transaction around the handler (the use case's own unit of work nests in it: db_begin), and
 * a 2xx answer is stored in it before the commit. So a key is stored if and only if its effect
 * is, whatever fails in between, on every POST route alike. Across processes the key's
 * primary key decides: a second process running the same key concurrently fails to store it
 * and its effect rolls back (409). Error answers are not stored: a retry runs again. */
#pragma once

#include "core/err.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct db_conn;
struct http_request;
struct http_response;

#define IDEMPOTENCY_KEY_MAX 255
#define IDEMPOTENCY_FLYING_MAX 1024 /* keys running at once in this process */

struct idempotency {
    int64_t ttl_ms;
    int scoped; /* API_KEYS is set: each API key has keys of its own */
    pthread_mutex_t mu;
    unsigned char flying[IDEMPOTENCY_FLYING_MAX][32]; /* digests of the running keys */
    int nflying;
    atomic_uint calls; /* paces the pruning */
};

/* One idempotent request in progress (idempotency_start to idempotency_finish). */
struct idempotency_call {
    char scope[33];
    const char *key;
    char hash[65];
    unsigned char digest[32]; /* of scope and key: the in-flight entry */
    int64_t now;
};

enum idempotency_start {
    IDEMPOTENCY_SKIP = 0, /* not a POST, or no key: run the handler as usual */
    IDEMPOTENCY_DONE,     /* resp is filled (a replay, or a 400/409/422/503): do not run it */
    IDEMPOTENCY_RUN,      /* a transaction is open on conn: run the handler, then finish */
};

void idempotency_init(struct idempotency *im, int64_t ttl_s, int scoped_by_api_key);
void idempotency_cleanup(struct idempotency *im);

enum idempotency_start idempotency_start(struct idempotency *im, struct db_conn *conn,
                                         struct http_request *req, struct http_response *resp,
                                         struct idempotency_call *call);
/* After the handler ran: stores a 2xx answer with the effect and commits, or rolls back.
 * Returns 1 when something was committed (the caller wakes the workers: the use case's own
 * wake came before this commit). resp becomes a 409 or 503 when the key could not be stored. */
int idempotency_finish(struct idempotency *im, struct db_conn *conn, struct http_request *req,
                       struct http_response *resp, struct idempotency_call *call);
