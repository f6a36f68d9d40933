/* http.h: socket-free HTTP request/response types, the router, and the JSON error body.
 *
 * Handlers see a fully read request (body bounded by HTTP_BODY_MAX) and fill a response whose
 * body lives in the request's arena. The router and handlers never touch sockets, so tests call
 * them directly (tests/http). The libmicrohttpd wrapper in http_server.h feeds them. */
#pragma once

#include <stddef.h>

struct arena;

#define HTTP_BODY_MAX (1024 * 1024)
#define HTTP_PARAMS_MAX 4
#define HTTP_QUERY_MAX 8 /* query-string arguments kept; a request with more is refused (400) */

struct http_request {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* without the query string */
    const char *content_type; /* header value or NULL */
    const char *api_key;      /* X-API-Key header value or NULL */
    const char *body;         /* NUL-terminated copy, may contain NULs; NULL when empty */
    size_t body_len;
    struct arena *arena; /* per-request arena, owns everything below */
    int nparams;         /* filled by the router: values of ":name" segments */
    const char *params[HTTP_PARAMS_MAX];
    int nquery; /* query-string arguments, percent-decoded, in the order sent */
    const char *query_keys[HTTP_QUERY_MAX];
    const char *query_values[HTTP_QUERY_MAX]; /* "" for a key sent without a value */
};

struct http_response {
    int status;
    const char *body; /* in the request arena, or static */
    size_t body_len;
    const char *content_type; /* default application/json */
    int retry_after;          /* seconds; 0 means no Retry-After header */
    const char *allow;        /* Allow header for 405, or NULL */
};

typedef void (*http_handler_fn)(void *ctx, struct http_request *req, struct http_response *resp);

struct http_route {
    const char *method;  /* exact method */
    const char *pattern; /* "/leads/:id/reply": ":x" matches one non-empty segment */
    http_handler_fn fn;
    void *ctx;
};

#define HTTP_ROUTES_MAX 16

struct http_router {
    int n;
    struct http_route routes[HTTP_ROUTES_MAX];
};

void http_router_init(struct http_router *r);
/* Returns 0, or -1 when the table is full (a programming error at start-up). */
int http_router_add(struct http_router *r, const char *method, const char *pattern,
                    http_handler_fn fn, void *ctx);
/* Dispatches `req`: the matching route's handler, else 404 (no path matches) or 405 with an
 * Allow header (the path matches with another method). Always fills `resp`. */
void http_router_dispatch(const struct http_router *r, struct http_request *req,
                          struct http_response *resp);

/* The value of the query argument `key` (the first, if it was sent several times), or NULL when
 * it was not sent. Borrowed from the request. */
const char *http_query(const struct http_request *req, const char *key);
/* How many times `key` was sent. */
int http_query_count(const struct http_request *req, const char *key);

/* Reason phrase for a status ("Bad Request"); "Error" for unknown codes. */
const char *http_reason(int status);
/* Fills resp with status and the NestJS-style error body
 * {"message":["..."],"error":"<reason>","statusCode":N}. `messages` has n entries (n >= 1);
 * as_array=0 renders the single message as a plain string (the malformed-JSON form). */
void http_error(struct http_response *resp, struct arena *a, int status,
                const char *const *messages, int n, int as_array);
/* Shorthand for one message rendered as an array. */
void http_error1(struct http_response *resp, struct arena *a, int status, const char *message);
/* Sets a JSON body (already in the arena or static). */
void http_json(struct http_response *resp, int status, const char *body, size_t len);
