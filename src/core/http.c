/* http.c: the socket-free half of the HTTP layer: route matching, reason phrases, form
 * bodies, and error answers (their body's shape is installed by the application).
 *
 * Routing works on the raw, still percent-encoded path: literal segments compare encoded and
 * each ":name" parameter is decoded here, refusing what would change its meaning (an encoded
 * '/' or NUL). The router also answers HEAD (through the GET handler), OPTIONS and CORS from
 * the route table, and refuses request entities the parsers would misread (415).
 *
 * Everything rendered here (captured path parameters, error bodies, the Allow list) is allocated
 * in the request arena, so nothing needs freeing by the caller. This file knows nothing about
 * sockets or libmicrohttpd (that is http_server.c), and nothing about domain errors (the mapping
 * from SP_E* codes to statuses lives with the callers). */
#include "core/http.h"

#include "core/arena.h"
#include "core/hex.h"
#include "core/jsonw.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A borrowed slice of the request path or of a pattern. */
struct seg {
    const char *ptr;
    size_t len;
};

/* Longest Allow value: every route contributing a distinct method (GET adding HEAD), OPTIONS,
 * and ", " separators. */
#define ALLOW_MAX ((HTTP_ROUTES_MAX * 2 + 1) * 16)
/* Request headers a preflight may announce (what our routes read). */
#define CORS_ALLOW_HEADERS "X-API-Key, Content-Type, Idempotency-Key"
#define CORS_MAX_AGE "600"

/* One route whose pattern matches the path: its ":name" segments, raw and decoded. */
struct match {
    int ncaps;
    struct seg caps[HTTP_PARAMS_MAX];  /* raw slices of the path */
    struct seg names[HTTP_PARAMS_MAX]; /* names from the pattern, without the ':' */
};

void
http_router_init(struct http_router *r)
{
    memset(r, 0, sizeof(*r));
}

void
http_router_set_cors(struct http_router *r, const char *origins)
{
    r->cors_origins = origins && origins[0] ? origins : NULL;
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

int
http_response_header(struct http_response *resp, const char *name, const char *value)
{
    if (resp->nheaders >= HTTP_HEADERS_MAX)
        return -1;
    resp->headers[resp->nheaders].name = name;
    resp->headers[resp->nheaders].value = value;
    resp->nheaders++;
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

/* Matches the raw `path` against `pattern` segment by segment. Literal segments compare byte
 * for byte, still encoded, so "/lead%73" is not "/leads" and "%2F" never splits a segment. On a
 * match returns 1 and fills m with the ":x" segments (borrowed slices); otherwise returns 0. */
static int
path_match(const char *pattern, const char *path, struct match *m)
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
            m->caps[n] = (struct seg){s, slen};
            m->names[n] = (struct seg){p + 1, plen - 1};
            n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
    }
    if (*p != '\0' || *s != '\0')
        return 0;
    m->ncaps = n;
    return 1;
}

int
http_media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);

    if (ct == NULL || strncasecmp(ct, type, n) != 0)
        return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

/* Decodes one urlencoded name or value ('+' is a space); -1 on a bad escape or a NUL. */
static int
form_part_decode(struct arena *a, const char *s, size_t len, const char **out, size_t *out_len)
{
    char *buf = arena_alloc(a, len + 1);
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (s[i] == '\0')
            return -1;
        if (s[i] != '%') {
            buf[o++] = s[i] == '+' ? ' ' : s[i];
            continue;
        }
        if (i + 2 >= len)
            return -1;
        hi = sp_hex_digit((unsigned char)s[i + 1]);
        lo = sp_hex_digit((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        buf[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

static int
form_urlencoded(struct http_request *req, struct http_form_field *f, int *n, const char **why)
{
    const char *p = req->body ? req->body : "";
    const char *end = p + req->body_len;

    *n = 0;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *name_end = eq ? eq : pair_end;
        size_t name_len = 0;

        if (pair_end > p) {
            if (*n >= HTTP_FORM_FIELDS_MAX) {
                *why = "too many form fields";
                return -1;
            }
            f[*n].filename = NULL;
            if (form_part_decode(req->arena, p, (size_t)(name_end - p), &f[*n].name, &name_len) !=
                    0 ||
                form_part_decode(req->arena, eq ? eq + 1 : pair_end,
                                 eq ? (size_t)(pair_end - eq - 1) : 0, &f[*n].value,
                                 &f[*n].value_len) != 0) {
                *why = "Malformed form body: bad percent-encoding";
                return -1;
            }
            (*n)++;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

int
http_request_form(struct http_request *req, struct http_form_field **fields, int *n, int *is_type,
                  const char **why)
{
    *fields = arena_alloc(req->arena, sizeof(**fields) * HTTP_FORM_FIELDS_MAX);
    *n = 0;
    *is_type = 0;
    if (http_media_is(req->content_type, "application/x-www-form-urlencoded"))
        return form_urlencoded(req, *fields, n, why);
    if (http_media_is(req->content_type, "multipart/form-data")) {
        if (req->multipart == NULL) {
            *why = "multipart/form-data is not available here";
            return -1;
        }
        return req->multipart(req, fields, n, why);
    }
    *is_type = 1;
    *why = "Content-Type must be multipart/form-data or application/x-www-form-urlencoded";
    return -1;
}

const struct http_form_field *
http_form_get(const struct http_form_field *fields, int n, const char *name)
{
    for (int i = n - 1; i >= 0; i--)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

int
http_pct_decode(struct arena *a, const char *s, size_t len, enum http_decode_mode mode,
                const char **out)
{
    char *dst = arena_alloc(a, len + 1); /* decoding never grows the text */
    size_t o = 0;

    *out = NULL;
    for (size_t i = 0; i < len; i++) {
        int hi, lo, c;

        if (s[i] != '%') {
            dst[o++] = s[i];
            continue;
        }
        if (len - i < 3)
            return HTTP_DECODE_MALFORMED;
        hi = sp_hex_digit((unsigned char)s[i + 1]);
        lo = sp_hex_digit((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0)
            return HTTP_DECODE_MALFORMED;
        c = hi * 16 + lo;
        /* A NUL would silently cut every C string built from the value short. */
        if (c == 0)
            return HTTP_DECODE_NUL;
        /* A decoded '/' would let one segment pose as two further down (ids in log lines,
         * URLs built from them): a path parameter never legitimately holds one. */
        if (c == '/' && mode == HTTP_DECODE_PATH)
            return HTTP_DECODE_SLASH;
        dst[o++] = (char)c;
        i += 2;
    }
    dst[o] = '\0';
    *out = dst;
    return HTTP_DECODE_OK;
}

/* The end of the 400 message for a parameter that does not decode ("id <why>"). */
static const char *
decode_why(int rc)
{
    switch (rc) {
    case HTTP_DECODE_SLASH:
        return "must not contain an encoded slash (%2F)";
    case HTTP_DECODE_NUL:
        return "must not contain an encoded NUL (%00)";
    default:
        return "has a malformed percent-encoding";
    }
}

/* Decodes m's captures into req->params; on a bad one answers 400 naming the parameter and
 * returns -1 (req->params untouched). */
static int
params_decode(struct http_request *req, struct http_response *resp, const struct match *m)
{
    const char *vals[HTTP_PARAMS_MAX];

    for (int i = 0; i < m->ncaps; i++) {
        int rc =
            http_pct_decode(req->arena, m->caps[i].ptr, m->caps[i].len, HTTP_DECODE_PATH, &vals[i]);
        if (rc != HTTP_DECODE_OK) {
            const char *msg = arena_printf(req->arena, "%.*s %s", (int)m->names[i].len,
                                           m->names[i].ptr, decode_why(rc));
            http_error1(resp, req->arena, 400, msg);
            return -1;
        }
    }
    req->nparams = m->ncaps;
    for (int i = 0; i < m->ncaps; i++)
        req->params[i] = vals[i];
    return 0;
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

/* Whether a route for `route_method` serves `method`: HEAD is served by GET (the server drops
 * the body and keeps the headers). */
static int
method_serves(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return 1;
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Whether every coding in a Content-Encoding list is "identity" (an empty list is). */
static int
coding_is_identity(const char *v)
{
    while (*v) {
        const char *tok, *end;

        while (*v == ',' || is_ows(*v))
            v++;
        tok = v;
        while (*v && *v != ',')
            v++;
        end = v;
        while (end > tok && is_ows(end[-1]))
            end--;
        if (end > tok && !((size_t)(end - tok) == 8 && strncasecmp(tok, "identity", 8) == 0))
            return 0;
    }
    return 1;
}

/* Reads one parameter value at *p (a token, or a quoted-string whose escapes are undone) into
 * out[cap]; advances *p past it. Returns 0, or -1 when it does not fit or a quote is open. */
static int
param_value(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    size_t o = 0;

    if (*s == '"') {
        for (s++; *s && *s != '"'; s++) {
            if (*s == '\\' && s[1])
                s++;
            if (o + 1 >= cap)
                return -1;
            out[o++] = *s;
        }
        if (*s != '"')
            return -1;
        s++;
    } else {
        for (; *s && *s != ';' && !is_ows(*s); s++) {
            if (o + 1 >= cap)
                return -1;
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    *p = s;
    return 0;
}

/* Whether every charset parameter of a Content-Type is UTF-8 (none at all is fine): the JSON
 * and form parsers read UTF-8 only, so another charset would be misread, not converted. */
static int
charset_is_utf8(const char *ct)
{
    const char *p = strchr(ct, ';');
    char val[32]; /* the longest registered charset name is 40; longer is not UTF-8 anyway */

    while (p && *p) {
        const char *name;
        size_t nlen;

        while (*p == ';' || is_ows(*p))
            p++;
        name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        nlen = (size_t)(p - name);
        while (nlen > 0 && is_ows(name[nlen - 1]))
            nlen--;
        if (*p != '=')
            continue; /* a parameter without a value: nothing to check */
        p++;
        while (is_ows(*p))
            p++;
        if (param_value(&p, val, sizeof(val)) != 0)
            return !(nlen == 7 && strncasecmp(name, "charset", 7) == 0);
        if (nlen == 7 && strncasecmp(name, "charset", 7) == 0 && strcasecmp(val, "utf-8") != 0)
            return 0;
        p += strcspn(p, ";"); /* skip whatever trails the value up to the next parameter */
    }
    return 1;
}

/* The entity checks every routed request passes before its handler: a compressed body or a
 * non-UTF-8 one would otherwise reach the parsers and come back as a baffling 400. */
static int
entity_ok(struct http_request *req, struct http_response *resp)
{
    const char *msg;

    if (req->content_encoding && !coding_is_identity(req->content_encoding)) {
        msg =
            arena_printf(req->arena, "Unsupported Content-Encoding %s: send the body uncompressed",
                         req->content_encoding);
        http_error(resp, req->arena, 415, &msg, 1, 0);
        return 0;
    }
    if (req->content_type && !charset_is_utf8(req->content_type)) {
        msg = arena_printf(req->arena, "Unsupported Content-Type %s: the charset must be utf-8",
                           req->content_type);
        http_error(resp, req->arena, 415, &msg, 1, 0);
        return 0;
    }
    return 1;
}

/* Whether `origin` is one of the router's CORS origins; *is_any is set for the "*" form. */
static int
cors_allowed(const struct http_router *r, const char *origin, int *is_any)
{
    size_t olen = origin ? strlen(origin) : 0;

    *is_any = 0;
    if (r->cors_origins == NULL || olen == 0)
        return 0;
    for (const char *p = r->cors_origins; *p;) {
        size_t len;

        while (*p == ',' || is_ows(*p))
            p++;
        len = strcspn(p, ",");
        while (len > 0 && is_ows(p[len - 1]))
            len--;
        if (len == 1 && p[0] == '*') {
            *is_any = 1;
            return 1;
        }
        if (len > 0 && len == olen && memcmp(p, origin, len) == 0)
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

void
http_router_cors(const struct http_router *r, const struct http_request *req,
                 struct http_response *resp)
{
    int is_any, rc = 0;

    if (!cors_allowed(r, req->origin, &is_any))
        return;
    /* "*" needs no echo; an echoed origin makes the answer depend on Origin, which caches must
     * know. Vary is sent in both cases: harmless, and one rule less. */
    rc |= http_response_header(resp, "Access-Control-Allow-Origin",
                               is_any ? "*" : arena_strdup(req->arena, req->origin));
    rc |= http_response_header(resp, "Vary", "Origin");
    (void)rc; /* cannot fail: CORS sets at most 5 of HTTP_HEADERS_MAX headers */
}

const struct http_route *
http_router_find(const struct http_router *r, const char *path)
{
    struct match m;

    for (int i = 0; path != NULL && i < r->n; i++)
        if (path_match(r->routes[i].pattern, path, &m))
            return &r->routes[i];
    return NULL;
}

int
http_is_preflight(const struct http_request *req)
{
    return req->method && strcmp(req->method, "OPTIONS") == 0 && req->origin && req->acr_method;
}

/* OPTIONS without a route of its own: 204 with Allow, plus what a preflight from an allowed
 * origin needs (Access-Control-Allow-Origin itself is added with every CORS answer). */
static void
options(const struct http_router *r, struct http_request *req, struct http_response *resp,
        const char *allow)
{
    int is_any, rc = 0;

    resp->status = 204;
    resp->allow = arena_strdup(req->arena, allow);
    if (!http_is_preflight(req) || !cors_allowed(r, req->origin, &is_any))
        return;
    rc |= http_response_header(resp, "Access-Control-Allow-Methods", resp->allow);
    rc |= http_response_header(resp, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
    rc |= http_response_header(resp, "Access-Control-Max-Age", CORS_MAX_AGE);
    (void)rc; /* cannot fail: see http_router_cors */
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

/* Scans the table for the path: returns the route serving the method, with its parameters
 * decoded into req->params, or NULL; fills allow with every method the path takes. A path
 * whose captures do not decode answers 400 right here (*is_answered), whatever the method: it
 * names no resource at all. */
static const struct http_route *
route_find(const struct http_router *r, struct http_request *req, struct http_response *resp,
           char *allow, size_t cap, int *is_answered)
{
    const struct http_route *found = NULL;
    struct match m, run = {0};

    *is_answered = 0;
    for (int i = 0; i < r->n; i++) {
        const struct http_route *route = &r->routes[i];

        if (!path_match(route->pattern, req->path, &m))
            continue;
        /* Validates every matching route's captures, not only the one that runs. */
        if (params_decode(req, resp, &m) != 0) {
            *is_answered = 1;
            return NULL;
        }
        allow_add(allow, cap, route->method);
        if (strcmp(route->method, "GET") == 0)
            allow_add(allow, cap, "HEAD");
        if (found == NULL && method_serves(route->method, req->method)) {
            found = route;
            run = m;
        }
    }
    if (allow[0] != '\0')
        allow_add(allow, cap, "OPTIONS");
    /* req->params now holds the last match's values: put back those of the route that runs. */
    if (found != NULL && params_decode(req, resp, &run) != 0)
        found = NULL; /* cannot happen: the same captures decoded above */
    return found;
}

/* Fills resp for a request whose path decoded: the route's handler, or OPTIONS, 405 or 404. */
static void
answer(const struct http_router *r, const struct http_route *route, struct http_request *req,
       struct http_response *resp, const char *allow)
{
    if (route != NULL) {
        if (entity_ok(req, resp))
            route->fn(route->ctx, req, resp);
    } else if (allow[0] != '\0' && strcmp(req->method, "OPTIONS") == 0) {
        options(r, req, resp, allow);
    } else if (allow[0] != '\0') {
        not_allowed(req, resp, req->method, req->path, allow);
    } else {
        not_found(req, resp, req->method, req->path);
    }
}

void
http_router_dispatch(const struct http_router *r, struct http_request *req,
                     struct http_response *resp)
{
    char allow[ALLOW_MAX] = "";
    const struct http_route *route;
    int is_answered;

    memset(resp, 0, sizeof(*resp));
    req->nparams = 0;
    if (req->method == NULL)
        req->method = "";
    if (req->path == NULL)
        req->path = "";
    route = route_find(r, req, resp, allow, sizeof(allow), &is_answered);
    /* A preflight never reaches a handler, even an OPTIONS one: it skips the API-key check. */
    if (route != NULL && http_is_preflight(req))
        route = NULL;
    if (!is_answered)
        answer(r, route, req, resp, allow);
    http_router_cors(r, req, resp);
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

/* The neutral body, until the application installs its own. */
static const char *
render_default(struct arena *a, int status, const char *const *messages, int n, int as_array,
               size_t *len)
{
    struct jsonw w;
    const char *body;

    (void)as_array;
    jsonw_init(&w, a, HTTP_ERROR_BODY_MAX);
    jsonw_obj_begin(&w);
    jsonw_kint(&w, "status", status);
    jsonw_kstr(&w, "error", http_reason(status));
    jsonw_key(&w, "messages");
    jsonw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        jsonw_str(&w, messages[i]);
    jsonw_arr_end(&w);
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, &body, len) != SP_OK) {
        body = "{}";
        *len = 2;
    }
    return body;
}

static _Atomic(http_error_render_fn) error_render = render_default;

void
http_error_render_set(http_error_render_fn fn)
{
    atomic_store(&error_render, fn ? fn : render_default);
}

void
http_error(struct http_response *resp, struct arena *a, int status, const char *const *messages,
           int n, int as_array)
{
    http_error_render_fn fn = atomic_load(&error_render);
    const char *reason = http_reason(status);
    size_t len = 0;
    const char *body;

    if (messages == NULL || n <= 0) { /* the reason phrase stands for a missing message */
        messages = &reason;
        n = 1;
    }
    body = fn(a, status, messages, n, as_array, &len);
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
