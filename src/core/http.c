/* http.c: the socket-free half of the HTTP layer: route matching, reason phrases and the
 * NestJS-style JSON error body.
 *
 * Everything rendered here (captured path parameters, error bodies, the Allow list) is allocated
 * in the request arena, so nothing needs freeing by the caller. This file knows nothing about
 * sockets or libmicrohttpd (that is http_server.c), and nothing about domain errors (the mapping
 * from SP_E* codes to statuses lives with the callers). */
#include "core/http.h"

#include "core/arena.h"

#include <stdio.h>
#include <string.h>

/* A borrowed slice of the request path (one captured ":param" segment). */
struct seg {
    const char *ptr;
    size_t len;
};

/* Longest Allow value: every route contributing a distinct method plus ", " separators. */
#define ALLOW_MAX (HTTP_ROUTES_MAX * 16)

void
http_router_init(struct http_router *r)
{
    memset(r, 0, sizeof(*r));
}

/* Number of ":x" segments in a pattern. */
static int
pattern_nparams(const char *pattern)
{
    int n = 0;

    for (const char *p = pattern; *p; p++)
        if (*p == ':' && p > pattern && p[-1] == '/')
            n++;
    return n;
}

int
http_router_add(struct http_router *r, const char *method, const char *pattern, http_handler_fn fn,
                void *ctx)
{
    struct http_route *route;

    if (r->n >= HTTP_ROUTES_MAX || method == NULL || pattern == NULL || fn == NULL)
        return -1;
    if (pattern[0] != '/' || pattern_nparams(pattern) > HTTP_PARAMS_MAX)
        return -1;
    route = &r->routes[r->n++];
    route->method = method;
    route->pattern = pattern;
    route->fn = fn;
    route->ctx = ctx;
    return 0;
}

const char *
http_query(const struct http_request *req, const char *key)
{
    for (int i = 0; i < req->nquery; i++)
        if (strcmp(req->query_keys[i], key) == 0)
            return req->query_values[i];
    return NULL;
}

int
http_query_count(const struct http_request *req, const char *key)
{
    int n = 0;

    for (int i = 0; i < req->nquery; i++)
        n += strcmp(req->query_keys[i], key) == 0;
    return n;
}

/* Length of the segment starting at s (up to the next '/' or the end). */
static size_t
seg_len(const char *s)
{
    const char *end = strchr(s, '/');

    return end ? (size_t)(end - s) : strlen(s);
}

/* Matches `path` against `pattern` segment by segment. On a match returns 1 and stores the
 * ":x" segments (borrowed slices of path) in caps / *ncaps; otherwise returns 0. */
static int
path_match(const char *pattern, const char *path, struct seg caps[HTTP_PARAMS_MAX], int *ncaps)
{
    const char *p = pattern, *s = path;
    int n = 0;

    while (*p == '/' && *s == '/') {
        size_t plen, slen;

        p++;
        s++;
        plen = seg_len(p);
        slen = seg_len(s);
        if (*p == ':') {
            if (slen == 0 || n >= HTTP_PARAMS_MAX)
                return 0;
            caps[n].ptr = s;
            caps[n].len = slen;
            n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
    }
    if (*p != '\0' || *s != '\0')
        return 0;
    *ncaps = n;
    return 1;
}

/* Copies the captured segments into the request as NUL-terminated arena strings. */
static void
set_params(struct http_request *req, const struct seg *caps, int n)
{
    req->nparams = n;
    for (int i = 0; i < n; i++)
        req->params[i] = arena_strndup(req->arena, caps[i].ptr, caps[i].len);
}

/* Appends `method` to the Allow list unless it is already there. */
static void
allow_add(char *allow, size_t cap, const char *method)
{
    size_t mlen = strlen(method), used = strlen(allow);
    const char *p = allow;

    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == mlen && memcmp(p, method, mlen) == 0)
            return;
        p += len;
        p += strspn(p, ", ");
    }
    if (used + mlen + 3 > cap)
        return; /* cannot happen with ALLOW_MAX and sane method names */
    if (used > 0) {
        memcpy(allow + used, ", ", 2);
        used += 2;
    }
    memcpy(allow + used, method, mlen + 1);
}

static void
not_found(struct http_request *req, struct http_response *resp, const char *method,
          const char *path)
{
    const char *msg = arena_printf(req->arena, "Cannot %s %s", method, path);

    http_error(resp, req->arena, 404, &msg, 1, 0);
}

static void
not_allowed(struct http_request *req, struct http_response *resp, const char *method,
            const char *path, const char *allow)
{
    const char *msg = arena_printf(req->arena, "Method %s not allowed on %s", method, path);

    http_error(resp, req->arena, 405, &msg, 1, 1);
    resp->allow = arena_strdup(req->arena, allow);
}

void
http_router_dispatch(const struct http_router *r, struct http_request *req,
                     struct http_response *resp)
{
    const char *method = req->method ? req->method : "";
    const char *path = req->path ? req->path : "";
    char allow[ALLOW_MAX] = "";
    struct seg caps[HTTP_PARAMS_MAX];
    int ncaps = 0;

    memset(resp, 0, sizeof(*resp));
    req->nparams = 0;
    for (int i = 0; i < r->n; i++) {
        const struct http_route *route = &r->routes[i];

        if (!path_match(route->pattern, path, caps, &ncaps))
            continue;
        if (strcmp(route->method, method) == 0) {
            set_params(req, caps, ncaps);
            route->fn(route->ctx, req, resp);
            return;
        }
        allow_add(allow, sizeof(allow), route->method);
    }
    if (allow[0] != '\0')
        not_allowed(req, resp, method, path, allow);
    else
        not_found(req, resp, method, path);
}

static const struct {
    int status;
    const char *text;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"}, /* NestJS's wording (RFC 9110 says Content Too Large) */
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Entity"},
    {429, "Too Many Requests"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

const char *
http_reason(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "Error";
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. Rejects
 * overlong forms, surrogates and code points above U+10FFFF, like a strict decoder. */
static size_t
utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Writes the JSON escape of one ASCII byte (or nothing for bytes that need none) to out, which
 * has room for 7 bytes; returns the escape's length, 0 meaning "copy the byte as is". */
static size_t
ascii_escape(unsigned char c, char out[7])
{
    static const char shorts[] = {'b', 't', 'n', 0, 'f', 'r'}; /* for 0x08 .. 0x0D */

    if (c == '"' || c == '\\') {
        out[0] = '\\';
        out[1] = (char)c;
        return 2;
    }
    if (c >= 0x20)
        return 0;
    if (c >= 0x08 && c <= 0x0D && shorts[c - 0x08] != 0) {
        out[0] = '\\';
        out[1] = shorts[c - 0x08];
        return 2;
    }
    return (size_t)snprintf(out, 7, "\\u%04x", (unsigned)c);
}

/* Appends n bytes at dst + pos (or only measures when dst is NULL); returns the new position. */
static size_t
put_bytes(char *dst, size_t pos, const char *src, size_t n)
{
    if (dst)
        memcpy(dst + pos, src, n);
    return pos + n;
}

/* Appends the JSON string literal for `s` (quotes included) at dst + pos and returns the new
 * position. With dst == NULL only measures. Control characters are escaped the way
 * JSON.stringify does; valid UTF-8 is copied as is; each invalid byte becomes U+FFFD so the body
 * is always valid JSON whatever the client put in the path. */
static size_t
put_json_string(char *dst, size_t pos, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    char esc[7];

    pos = put_bytes(dst, pos, "\"", 1);
    while (*p) {
        size_t n;

        if (*p < 0x80) {
            n = ascii_escape(*p, esc);
            pos = n > 0 ? put_bytes(dst, pos, esc, n) : put_bytes(dst, pos, (const char *)p, 1);
            p++;
        } else {
            n = utf8_len(p);
            if (n == 0) {
                pos = put_bytes(dst, pos, "\xEF\xBF\xBD", 3);
                p++;
            } else {
                pos = put_bytes(dst, pos, (const char *)p, n);
                p += n;
            }
        }
    }
    return put_bytes(dst, pos, "\"", 1);
}

/* Appends a literal string at dst + pos (or only measures when dst is NULL). */
static size_t
put_raw(char *dst, size_t pos, const char *s)
{
    return put_bytes(dst, pos, s, strlen(s));
}

/* Renders the whole error body at dst (or measures it when dst is NULL); returns its length. */
static size_t
render_error(char *dst, int status, const char *const *messages, int n, int as_array)
{
    char code[32];
    size_t pos = 0;

    pos = put_raw(dst, pos, "{\"message\":");
    if (as_array) {
        pos = put_raw(dst, pos, "[");
        for (int i = 0; i < n; i++) {
            if (i > 0)
                pos = put_raw(dst, pos, ",");
            pos = put_json_string(dst, pos, messages[i]);
        }
        pos = put_raw(dst, pos, "]");
    } else {
        pos = put_json_string(dst, pos, n > 0 ? messages[0] : http_reason(status));
    }
    pos = put_raw(dst, pos, ",\"error\":");
    pos = put_json_string(dst, pos, http_reason(status));
    snprintf(code, sizeof(code), ",\"statusCode\":%d}", status);
    return put_raw(dst, pos, code);
}

void
http_error(struct http_response *resp, struct arena *a, int status, const char *const *messages,
           int n, int as_array)
{
    size_t len;
    char *body;

    if (messages == NULL || n < 0)
        n = 0;
    len = render_error(NULL, status, messages, n, as_array);
    body = arena_alloc(a, len + 1);
    render_error(body, status, messages, n, as_array);
    body[len] = '\0';
    http_json(resp, status, body, len);
}

void
http_error1(struct http_response *resp, struct arena *a, int status, const char *message)
{
    http_error(resp, a, status, &message, 1, 1);
}

void
http_json(struct http_response *resp, int status, const char *body, size_t len)
{
    resp->status = status;
    resp->body = body;
    resp->body_len = len;
    resp->content_type = "application/json";
}
