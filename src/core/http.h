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
/* Extra response headers (CORS, Vary, RateLimit-*, Idempotent-Replayed, ...). */
#define HTTP_HEADERS_MAX 12

/* Header names and values are borrowed from the server (valid for the request's lifetime).
 *
 * `path` is the path as it came on the wire, still percent-encoded (the server keeps
 * libmicrohttpd from unescaping it): the router matches raw segments, so an encoded '/' can
 * never split a segment, and decodes each ":name" parameter itself. Query arguments: with the
 * same setting libmicrohttpd hands them out with '+' turned into a space but %XX left as is;
 * whoever starts reading them (MHD_GET_ARGUMENT_KIND) must decode them with
 * http_pct_decode(..., HTTP_DECODE_QUERY, ...). */
struct http_form_field;

struct http_request {
    const char *method;           /* "GET", "POST", ... */
    const char *path;             /* raw, percent-encoded, without the query string */
    const char *content_type;     /* header value or NULL */
    const char *content_encoding; /* every Content-Encoding value joined by ", ", or NULL */
    const char *origin;           /* Origin header or NULL (CORS) */
    const char *acr_method;       /* Access-Control-Request-Method or NULL (CORS preflight) */
    const char *if_none_match;    /* If-None-Match header value or NULL (static files) */
    const char *api_key;          /* X-API-Key header value or NULL */
    const char *hub_signature;    /* X-Hub-Signature-256 header value or NULL (webhooks) */
    const char *idempotency_key;  /* Idempotency-Key header value or NULL */
    const char *last_event_id;    /* Last-Event-ID header value or NULL (GET /events) */
    const char *authorization;    /* Authorization header value or NULL */
    const char *client_addr;      /* the peer's numeric address ("192.0.2.7", "2001:db8::1"; an
                                     IPv4-mapped IPv6 address as IPv4), or NULL outside a server */
    const char *body;             /* NUL-terminated copy, may contain NULs; NULL when empty */
    size_t body_len;
    struct arena *arena; /* per-request arena, owns everything below */
    int nparams;         /* filled by the router: decoded values of ":name" segments */
    const char *params[HTTP_PARAMS_MAX];
    int nquery; /* query-string arguments, percent-decoded, in the order sent */
    const char *query_keys[HTTP_QUERY_MAX];
    const char *query_values[HTTP_QUERY_MAX]; /* "" for a key sent without a value */
    /* Set by the server: decodes a multipart/form-data body (http_request_form); NULL
     * outside a server, where multipart bodies are refused. */
    int (*multipart)(struct http_request *req, struct http_form_field **fields, int *n,
                     const char **why);
    void *server_conn; /* the server's, for multipart */
};

/* One field of a form body (application/x-www-form-urlencoded or multipart/form-data), decoded
 * by http_request_form(). */
struct http_form_field {
    const char *name;  /* NUL-terminated */
    const char *value; /* NUL-terminated copy; may hold NULs (value_len is its length) */
    size_t value_len;
    const char *filename; /* multipart file part: its filename ("" when none given), else NULL */
};

struct http_header {
    const char *name;  /* static */
    const char *value; /* in the request arena, or static */
};

/* A body produced over time (server-sent events), sent with chunked encoding and no
 * Content-Length. read() runs on the connection's own thread each time the connection can take
 * more, and may block until it has something: it puts 1..cap bytes in buf and sets *len
 * (SP_OK), or sets *len = 0 to end the response normally (SP_OK), or returns a negative SP_E*
 * code to cut the connection. close() runs exactly once when the response is over (ended,
 * failed, the client gone, or never sent: a HEAD, a server stopping), never while read() runs;
 * it frees ctx. Whoever receives a response with a stream owns it: the server, or a test that
 * calls the router directly (it calls close itself). */
struct http_stream_ops {
    int (*read)(void *ctx, char *buf, size_t cap, size_t *len);
    void (*close)(void *ctx);
};

struct http_response {
    int status;
    const char *body; /* in the request arena, or static */
    size_t body_len;
    const char *content_type; /* default application/json */
    int retry_after;          /* seconds; 0 means no Retry-After header */
    const char *allow;        /* Allow header for 405 and OPTIONS, or NULL */
    int nheaders;             /* further headers, added with http_response_header() */
    struct http_header headers[HTTP_HEADERS_MAX];
    const struct http_stream_ops *stream; /* NULL, or the body is this stream (body unused) */
    void *stream_ctx;                     /* the stream's, owned by it */
};

typedef void (*http_handler_fn)(void *ctx, struct http_request *req, struct http_response *resp);

struct http_route {
    const char *method;  /* exact method */
    const char *pattern; /* "/leads/:id/reply": ":x" matches one non-empty segment */
    http_handler_fn fn;
    void *ctx;
};

#define HTTP_ROUTES_MAX 32

struct http_router {
    int n;
    struct http_route routes[HTTP_ROUTES_MAX];
    const char *cors_origins; /* borrowed; NULL: CORS off (see http_router_set_cors) */
};

void http_router_init(struct http_router *r);
/* Turns CORS on for `origins`: "*" or a comma-separated list of exact origins
 * ("https://app.example.com"); NULL or "" turns it off. Borrowed: must outlive the router. */
void http_router_set_cors(struct http_router *r, const char *origins);
/* Returns 0, or -1 when the table is full (a programming error at start-up). */
int http_router_add(struct http_router *r, const char *method, const char *pattern,
                    http_handler_fn fn, void *ctx);
/* Dispatches `req`: the matching route's handler, else 404 (no path matches) or 405 with an
 * Allow header (the path matches with another method). Always fills `resp`.
 * - HEAD runs the GET handler; the server sends its headers and Content-Length, no body.
 * - OPTIONS on a known path answers 204 with Allow (GET implies HEAD; OPTIONS is listed too),
 *   and, for an allowed Origin's preflight, the Access-Control-Allow-* headers.
 * - A ":name" segment is percent-decoded; a malformed escape, %2F or %00 in it answers 400.
 * - A Content-Encoding other than identity, or a charset other than UTF-8, answers 415.
 * - When CORS is on, a response to an allowed Origin carries Access-Control-Allow-Origin. */
void http_router_dispatch(const struct http_router *r, struct http_request *req,
                          struct http_response *resp);
/* The route whose pattern matches `path` (the first one, whatever its method), or NULL when no
 * pattern does: what a request is about before it is dispatched (its metrics label, limits).
 * Matches like dispatch does, on the raw path; decodes nothing. Borrowed from the router. */
const struct http_route *http_router_find(const struct http_router *r, const char *path);
/* Whether `req` is a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method):
 * browsers send it without credentials, so it must not need the API key. */
int http_is_preflight(const struct http_request *req);
/* Adds Access-Control-Allow-Origin (and Vary: Origin) to a response built outside the router
 * (the 401 of the API-key check) when req's Origin is allowed. */
void http_router_cors(const struct http_router *r, const struct http_request *req,
                      struct http_response *resp);

/* Adds a response header; returns 0, or -1 when HTTP_HEADERS_MAX are already set (a
 * programming error: the router never needs more). Both strings are borrowed. */
int http_response_header(struct http_response *resp, const char *name, const char *value);

enum http_decode_mode {
    HTTP_DECODE_PATH,  /* a path segment: %2F and %00 are refused */
    HTTP_DECODE_QUERY, /* a query value as libmicrohttpd leaves it: %00 is refused */
};
enum http_decode_result {
    HTTP_DECODE_OK = 0,
    HTTP_DECODE_MALFORMED = -1, /* '%' not followed by two hex digits */
    HTTP_DECODE_SLASH = -2,     /* %2F in a path segment */
    HTTP_DECODE_NUL = -3,       /* %00 */
};
/* Percent-decodes s[0..len) into a NUL-terminated arena string (*out; valid until the arena
 * is reset). Returns HTTP_DECODE_OK, or one of the negative codes with *out set to NULL. */
int http_pct_decode(struct arena *a, const char *s, size_t len, enum http_decode_mode mode,
                    const char **out);

/* At most this many fields in a form body; more is refused. */
#define HTTP_FORM_FIELDS_MAX 128

/* Decodes the request's form body into fields[0..*n) (request arena):
 * application/x-www-form-urlencoded here ('+' is a space, %XY a byte; %00 refused; empty pairs
 * skipped), multipart/form-data through the server (libmicrohttpd's post processor; a file
 * part's bytes are not kept: its value is empty and its filename set). Returns 0, or -1 with
 * *why (a message for a 400, or for a 415 when *is_type is set: the body is not a form). */
int http_request_form(struct http_request *req, struct http_form_field **fields, int *n,
                      int *is_type, const char **why);
/* The value of field `name` (the last one sent), or NULL. */
const struct http_form_field *http_form_get(const struct http_form_field *fields, int n,
                                            const char *name);

/* 1 when the Content-Type `ct` is the media type `type` (case-insensitive; parameters after
 * ';' ignored). */
int http_media_is(const char *ct, const char *type);

/* The value of the query argument `key` (the first, if it was sent several times), or NULL when
 * it was not sent. Borrowed from the request. */
const char *http_query(const struct http_request *req, const char *key);
/* How many times `key` was sent. */
int http_query_count(const struct http_request *req, const char *key);

/* Reason phrase for a status ("Bad Request"); "Error" for unknown codes. */
const char *http_reason(int status);
/* The body of an error answer: its shape is the application's, not the router's (the
 * service's is the NestJS contract's: app/error_body.c). A renderer gets the status, the
 * messages (n >= 1) and whether they were given as a list (as_array: 1) or as one sentence
 * (0), and returns the body in the arena with its length in *len. It must accept any bytes in
 * the messages (a path a client sent) and always return valid JSON. */
typedef const char *(*http_error_render_fn)(struct arena *a, int status,
                                            const char *const *messages, int n, int as_array,
                                            size_t *len);
/* Installs the renderer of every error body (NULL: the neutral one,
 * {"status":N,"error":"<reason>","messages":[...]}). Call it once at start-up, before the
 * server runs: requests read it without a lock. */
void http_error_render_set(http_error_render_fn fn);
/* An error bound for renderers: an error body never needs more (messages are one line each). */
#define HTTP_ERROR_BODY_MAX (64 * 1024)

/* Fills resp with status and the installed renderer's error body. `messages` has n entries
 * (NULL or n = 0: the reason phrase); as_array=0 asks for the single message as a plain
 * sentence (the malformed-JSON form). */
void http_error(struct http_response *resp, struct arena *a, int status,
                const char *const *messages, int n, int as_array);
/* Shorthand for one message rendered as an array. */
void http_error1(struct http_response *resp, struct arena *a, int status, const char *message);
/* Sets a JSON body (already in the arena or static). */
void http_json(struct http_response *resp, int status, const char *body, size_t len);
