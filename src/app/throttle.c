/* throttle.c: the rate-limit policy (see throttle.h). */
#include "app/throttle.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/http.h"

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#define KEY_MAX 64

int
throttle_init(struct throttle *t, double rps, int burst)
{
    double b = burst;

    t->buckets = NULL;
    if (!(rps >= 0) || burst < 0)
        return SP_EINVAL;
    if (rps == 0)
        return SP_OK;
    if (burst == 0) {
        b = ceil(rps);
        b = b < 1 ? 1 : b > INT_MAX ? INT_MAX : b;
    }
    return rate_limit_new(rps, (int)b, &sp_clock_mono, &t->buckets);
}

void
throttle_cleanup(struct throttle *t)
{
    rate_limit_free(t->buckets);
    t->buckets = NULL;
}

/* Requests never limited (see throttle.h). */
static int
is_exempt(const struct http_request *req)
{
    const char *p = req->path ? req->path : "";

    return strcmp(p, "/health") == 0 || strncmp(p, "/webhooks/", 10) == 0 ||
           strncmp(p, "/unsubscribe/", 13) == 0 || strcmp(p, "/") == 0 ||
           strncmp(p, "/ui/", 4) == 0 || http_is_preflight(req);
}

/* The bucket key of a request: its API key's index, else its client address (IPv4 whole, IPv6
 * by its /64). key[KEY_MAX]; returns the length. */
static size_t
bucket_key(const struct http_request *req, int key_index, unsigned char *key)
{
    const char *addr = req->client_addr;
    unsigned char ip[16];
    size_t len;

    if (key_index >= 0) {
        key[0] = 'k';
        memcpy(key + 1, &key_index, sizeof(key_index));
        return 1 + sizeof(key_index);
    }
    if (addr && inet_pton(AF_INET, addr, ip) == 1) {
        key[0] = '4';
        memcpy(key + 1, ip, 4);
        return 5;
    }
    if (addr && inet_pton(AF_INET6, addr, ip) == 1) {
        key[0] = '6';
        memcpy(key + 1, ip, 8); /* the /64 */
        return 9;
    }
    /* No address (not from a socket): one bucket for all of them. */
    len = addr ? strnlen(addr, KEY_MAX - 1) : 0;
    key[0] = 's';
    memcpy(key + 1, addr ? addr : "", len);
    return 1 + len;
}

void
throttle_check(struct throttle *t, const struct http_request *req, int key_index,
               struct throttle_verdict *out)
{
    unsigned char key[KEY_MAX];
    size_t len;

    memset(out, 0, sizeof(*out));
    if (t->buckets == NULL || is_exempt(req))
        return;
    len = bucket_key(req, key_index, key);
    out->applies = 1;
    rate_limit_take(t->buckets, key, len, &out->v);
}

void
throttle_refuse(const struct throttle_verdict *tv, struct http_request *req,
                struct http_response *resp)
{
    const char *msg =
        arena_printf(req->arena, "Too many requests: retry in %d s", tv->v.retry_after_s);

    http_error1(resp, req->arena, 429, msg);
    resp->retry_after = tv->v.retry_after_s;
}

void
throttle_headers(const struct throttle_verdict *tv, struct http_request *req,
                 struct http_response *resp)
{
    int rc = 0;

    if (!tv->applies)
        return;
    rc |=
        http_response_header(resp, "RateLimit-Limit", arena_printf(req->arena, "%d", tv->v.limit));
    rc |= http_response_header(resp, "RateLimit-Remaining",
                               arena_printf(req->arena, "%d", tv->v.remaining));
    rc |= http_response_header(resp, "RateLimit-Reset",
                               arena_printf(req->arena, "%d", tv->v.reset_s));
    (void)rc; /* cannot fail: an answer carries at most 4 other headers (CORS, Idempotent-Replayed)
                 of HTTP_HEADERS_MAX */
}
