/* rate_limit.h: token buckets keyed by bytes, in a fixed-size table shared by threads.
 *
 * Each key (an API key's identity, a client address: the caller decides) has a bucket of
 * `burst` tokens refilled at `rate` tokens per second; a request takes one token or is refused,
 * and a refused request takes nothing. Memory is bounded whatever the number of keys: the table
 * holds RATE_LIMIT_BUCKETS buckets in sets of RATE_LIMIT_WAYS; a key hashes (with a seed of the
 * table's own) to one set, and a key new to a full set takes the place of the set's least
 * recently used bucket. An evicted key starts again with a full bucket, which is what it would
 * have after being idle long enough to refill; only when more keys than buckets are busy at
 * once can a client get a fresh burst early. Keys are told apart by that 64-bit seeded hash,
 * not stored: two keys share a bucket only on a hash collision.
 *
 * Time comes from a clock port (sp_clock_mono in the service, a fake in tests); a clock going
 * backwards refills nothing. Not the place for policy (which requests are limited, by what key):
 * that is the application's. Thread-safety: every function may be called from any thread (one
 * mutex per set). */
#pragma once

#include "core/err.h"

#include <stddef.h>

struct sp_clock;

#define RATE_LIMIT_BUCKETS 4096
#define RATE_LIMIT_WAYS 8

struct rate_limit;

/* What one request got, and what the RateLimit-* headers say. */
struct rate_limit_verdict {
    int allowed;       /* 1: a token was taken */
    int limit;         /* the burst (RateLimit-Limit) */
    int remaining;     /* whole tokens left after this request (RateLimit-Remaining) */
    int reset_s;       /* seconds until the bucket is full again (RateLimit-Reset) */
    int retry_after_s; /* refused: seconds until a token is back, >= 1 (Retry-After); else 0 */
};

/* A table of buckets of `burst` (>= 1) tokens refilled at `rate` (> 0) tokens per second, timed
 * by `clock` (borrowed: must outlive the table). SP_EINVAL for a bad rate or burst. Caller frees
 * with rate_limit_free(). */
int rate_limit_new(double rate, int burst, const struct sp_clock *clock,
                   struct rate_limit **out) SP_MUST_CHECK;
/* NULL-safe. */
void rate_limit_free(struct rate_limit *rl);
/* Takes a token from the bucket of key[0..len) (borrowed, any bytes) if it has one. */
void rate_limit_take(struct rate_limit *rl, const void *key, size_t len,
                     struct rate_limit_verdict *out);
/* Buckets holding a key (for tests: never more than RATE_LIMIT_BUCKETS). */
int rate_limit_used(struct rate_limit *rl);
