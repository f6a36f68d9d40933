/* test_router.c: the router, reason phrases and the NestJS-style error body, with no sockets. */
#include "t.h"

#include "core/arena.h"
#include "core/http.h"

#include <strings.h>

/* What the recording handler saw. */
struct seen {
    int calls;
    const char *tag;
    int nparams;
    const char *params[HTTP_PARAMS_MAX];
};

static void
record(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct seen *seen = ctx;

    seen->calls++;
    seen->nparams = req->nparams;
    for (int i = 0; i < req->nparams; i++)
        seen->params[i] = req->params[i];
    http_json(resp, 200, "{}", 2);
}

static void
tag_handler(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct seen *seen = ctx;

    (void)req;
    seen->calls++;
    http_json(resp, 200, seen->tag, strlen(seen->tag));
}

/* The value of a header added with http_response_header, or NULL. */
static const char *
resp_header(const struct http_response *resp, const char *name)
{
    for (int i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

/* Dispatches one request through `r` with a fresh arena (freed by the caller). */
static void
dispatch(const struct http_router *r, struct arena *a, const char *method, const char *path,
         struct http_request *req, struct http_response *resp)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->path = path;
    req->arena = a;
    http_router_dispatch(r, req, resp);
}

TEST(http_router_matches_param)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "POST", "/leads/:id/reply", record, &seen));
    dispatch(&r, a, "POST", "/leads/abc-123/reply", &req, &resp);
    ASSERT_EQ(1, seen.calls);
    ASSERT_EQ(200, resp.status);
    ASSERT_EQ(1, seen.nparams);
    ASSERT_EQ(1, req.nparams);
    ASSERT_STREQ("abc-123", seen.params[0]);
    arena_free(a);
}

TEST(http_router_captures_params_in_order)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/a/:x/b/:y", record, &seen));
    dispatch(&r, a, "GET", "/a/1/b/two", &req, &resp);
    ASSERT_EQ(1, seen.calls);
    ASSERT_EQ(2, seen.nparams);
    ASSERT_STREQ("1", seen.params[0]);
    ASSERT_STREQ("two", seen.params[1]);
    arena_free(a);
}

TEST(http_router_param_needs_one_nonempty_segment)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/leads/:id", record, &seen));
    dispatch(&r, a, "GET", "/leads/", &req, &resp);
    ASSERT_EQ(404, resp.status);
    dispatch(&r, a, "GET", "/leads/a/b", &req, &resp);
    ASSERT_EQ(404, resp.status);
    dispatch(&r, a, "GET", "/leads", &req, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_EQ(0, seen.calls);
    arena_free(a);
}

TEST(http_router_trailing_slash_is_not_found)
{
    struct http_router r;
    struct seen seen = {.tag = "\"leads\""};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/leads", tag_handler, &seen));
    dispatch(&r, a, "GET", "/leads/", &req, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_STREQ("{\"message\":\"Cannot GET /leads/\",\"error\":\"Not Found\",\"statusCode\":404}",
                 resp.body);
    dispatch(&r, a, "GET", "/leads", &req, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_EQ(1, seen.calls);
    arena_free(a);
}

TEST(http_router_first_matching_route_wins)
{
    struct http_router r;
    struct seen lit = {.tag = "\"literal\""}, par = {.tag = "\"param\""};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/leads/stats", tag_handler, &lit));
    ASSERT_OK(http_router_add(&r, "GET", "/leads/:id", tag_handler, &par));
    dispatch(&r, a, "GET", "/leads/stats", &req, &resp);
    ASSERT_STREQ("\"literal\"", resp.body);
    dispatch(&r, a, "GET", "/leads/42", &req, &resp);
    ASSERT_STREQ("\"param\"", resp.body);
    dispatch(&r, a, "GET", "/", &req, &resp);
    ASSERT_EQ(404, resp.status);
    arena_free(a);
}

TEST(http_router_not_found_body)
{
    struct http_router r;
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    dispatch(&r, a, "GET", "/nope", &req, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_STREQ("{\"message\":\"Cannot GET /nope\",\"error\":\"Not Found\",\"statusCode\":404}",
                 resp.body);
    ASSERT_EQ(strlen(resp.body), resp.body_len);
    ASSERT_STREQ("application/json", resp.content_type);
    ASSERT(resp.allow == NULL);
    arena_free(a);
}

TEST(http_router_method_not_allowed_lists_allow)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/leads/:id", record, &seen));
    ASSERT_OK(http_router_add(&r, "DELETE", "/leads/:id", record, &seen));
    ASSERT_OK(http_router_add(&r, "GET", "/leads/:id", record, &seen)); /* listed once */
    ASSERT_OK(http_router_add(&r, "POST", "/health", record, &seen));   /* other path */
    dispatch(&r, a, "POST", "/leads/7", &req, &resp);
    ASSERT_EQ(0, seen.calls);
    ASSERT_EQ(405, resp.status);
    ASSERT_STREQ("GET, HEAD, DELETE, OPTIONS", resp.allow);
    ASSERT_STREQ("{\"message\":[\"Method POST not allowed on /leads/7\"],"
                 "\"error\":\"Method Not Allowed\",\"statusCode\":405}",
                 resp.body);
    arena_free(a);
}

TEST(http_router_add_rejects_full_table_and_bad_patterns)
{
    struct http_router r;
    struct seen seen = {0};

    http_router_init(&r);
    ASSERT_EQ(-1, http_router_add(&r, "GET", "leads", record, &seen));
    ASSERT_EQ(-1, http_router_add(&r, "GET", "/a/:b/:c/:d/:e/:f", record, &seen));
    ASSERT_EQ(-1, http_router_add(&r, "GET", "/x", NULL, &seen));
    for (int i = 0; i < HTTP_ROUTES_MAX; i++)
        ASSERT_OK(http_router_add(&r, "GET", "/x", record, &seen));
    ASSERT_EQ(-1, http_router_add(&r, "GET", "/x", record, &seen));
}

TEST(http_error_escapes_messages)
{
    struct http_response resp = {0};
    struct arena *a = arena_new();
    const char *msgs[] = {"say \"hi\"\\", "line1\nline2\ttab\x01", "caf\xc3\xa9 \xe2\x82\xac"};

    http_error(&resp, a, 400, msgs, 3, 1);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ("{\"message\":[\"say \\\"hi\\\"\\\\\",\"line1\\nline2\\ttab\\u0001\","
                 "\"caf\xc3\xa9 \xe2\x82\xac\"],\"error\":\"Bad Request\",\"statusCode\":400}",
                 resp.body);
    ASSERT_EQ(strlen(resp.body), resp.body_len);
    arena_free(a);
}

TEST(http_error_replaces_invalid_utf8)
{
    struct http_response resp = {0};
    struct arena *a = arena_new();
    const char *msg = "a\xff"
                      "b\xc3"; /* stray byte, then a truncated sequence */

    http_error(&resp, a, 404, &msg, 1, 0);
    ASSERT_STREQ("{\"message\":\"a\xef\xbf\xbd"
                 "b\xef\xbf\xbd\",\"error\":\"Not Found\","
                 "\"statusCode\":404}",
                 resp.body);
    arena_free(a);
}

TEST(http_error_string_form)
{
    struct http_response resp = {0};
    struct arena *a = arena_new();
    const char *msg = "Unexpected token } in JSON at position 9";

    http_error(&resp, a, 400, &msg, 1, 0);
    ASSERT_STREQ("{\"message\":\"Unexpected token } in JSON at position 9\","
                 "\"error\":\"Bad Request\",\"statusCode\":400}",
                 resp.body);
    ASSERT_STREQ("application/json", resp.content_type);
    arena_free(a);
}

TEST(http_error1_renders_an_array)
{
    struct http_response resp = {0};
    struct arena *a = arena_new();

    http_error1(&resp, a, 413, "request entity too large");
    ASSERT_EQ(413, resp.status);
    ASSERT_STREQ("{\"message\":[\"request entity too large\"],\"error\":\"Payload Too Large\","
                 "\"statusCode\":413}",
                 resp.body);
    http_error1(&resp, a, 599, "odd");
    ASSERT_STREQ("{\"message\":[\"odd\"],\"error\":\"Error\",\"statusCode\":599}", resp.body);
    arena_free(a);
}

TEST(http_reason_phrases)
{
    ASSERT_STREQ("OK", http_reason(200));
    ASSERT_STREQ("Created", http_reason(201));
    ASSERT_STREQ("Accepted", http_reason(202));
    ASSERT_STREQ("No Content", http_reason(204));
    ASSERT_STREQ("Bad Request", http_reason(400));
    ASSERT_STREQ("Unauthorized", http_reason(401));
    ASSERT_STREQ("Forbidden", http_reason(403));
    ASSERT_STREQ("Not Found", http_reason(404));
    ASSERT_STREQ("Method Not Allowed", http_reason(405));
    ASSERT_STREQ("Request Timeout", http_reason(408));
    ASSERT_STREQ("Conflict", http_reason(409));
    ASSERT_STREQ("Payload Too Large", http_reason(413));
    ASSERT_STREQ("Unsupported Media Type", http_reason(415));
    ASSERT_STREQ("Unprocessable Entity", http_reason(422));
    ASSERT_STREQ("Too Many Requests", http_reason(429));
    ASSERT_STREQ("Internal Server Error", http_reason(500));
    ASSERT_STREQ("Service Unavailable", http_reason(503));
    ASSERT_STREQ("Error", http_reason(299));
}

TEST(http_json_sets_fields)
{
    struct http_response resp = {0};

    http_json(&resp, 201, "{\"id\":1}", 8);
    ASSERT_EQ(201, resp.status);
    ASSERT_EQ(8, resp.body_len);
    ASSERT_STREQ("{\"id\":1}", resp.body);
    ASSERT_STREQ("application/json", resp.content_type);
}

/* ---- issue 7: raw-path routing, entity checks, HEAD / OPTIONS / CORS ---------------------- */

/* A table like the app's: a literal route and two parametrised ones on /leads. */
static void
leads_table(struct http_router *r, struct seen *seen)
{
    http_router_init(r);
    ASSERT_OK(http_router_add(r, "POST", "/leads", record, seen));
    ASSERT_OK(http_router_add(r, "POST", "/leads/:id/reply", record, seen));
    ASSERT_OK(http_router_add(r, "GET", "/leads/:id", record, seen));
}

TEST(http_router_decodes_params)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    dispatch(&r, a, "GET", "/leads/a%20b%41%e2%82%ac+", &req, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("a bA\xe2\x82\xac+", seen.params[0]); /* '+' is no space in a path */
    dispatch(&r, a, "POST", "/leads/x%3Ay/reply", &req, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("x:y", seen.params[0]);
    arena_free(a);
}

TEST(http_issue_7_encoded_slash_in_param_is_400)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    /* Decoded before routing, this was POST /leads/<id>/reply and stored a reply. */
    dispatch(&r, a, "POST", "/leads/0190f0f0-0000-7000-8000-000000000000%2Freply", &req, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ("{\"message\":[\"id must not contain an encoded slash (%2F)\"],"
                 "\"error\":\"Bad Request\",\"statusCode\":400}",
                 resp.body);
    dispatch(&r, a, "GET", "/leads/a%2fb", &req, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_EQ(0, seen.calls);
    arena_free(a);
}

TEST(http_issue_7_encoded_nul_in_param_is_400)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    dispatch(&r, a, "GET", "/leads/0190f0f0-0000-7000-8000-000000000000%00x", &req, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ("{\"message\":[\"id must not contain an encoded NUL (%00)\"],"
                 "\"error\":\"Bad Request\",\"statusCode\":400}",
                 resp.body);
    ASSERT_EQ(0, seen.calls);
    arena_free(a);
}

TEST(http_issue_7_malformed_escape_in_param_is_400)
{
    static const char *const paths[] = {"/leads/ab%zz", "/leads/ab%4", "/leads/ab%",
                                        "/leads/%g1/reply", "/leads/%%41"};
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        dispatch(&r, a, i == 3 ? "POST" : "GET", paths[i], &req, &resp);
        ASSERT_EQ(400, resp.status);
        ASSERT_STREQ("{\"message\":[\"id has a malformed percent-encoding\"],"
                     "\"error\":\"Bad Request\",\"statusCode\":400}",
                     resp.body);
    }
    ASSERT_EQ(0, seen.calls);
    arena_free(a);
}

TEST(http_router_literal_segments_match_raw)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    dispatch(&r, a, "POST", "/lead%73", &req, &resp); /* %73 is 's': still not /leads */
    ASSERT_EQ(404, resp.status);
    ASSERT_STREQ("{\"message\":\"Cannot POST /lead%73\",\"error\":\"Not Found\","
                 "\"statusCode\":404}",
                 resp.body);
    dispatch(&r, a, "POST", "/leads%2Fx%2Freply", &req, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_EQ(0, seen.calls);
    arena_free(a);
}

TEST(http_pct_decode_modes)
{
    struct arena *a = arena_new();
    const char *out;

    ASSERT_EQ(HTTP_DECODE_OK, http_pct_decode(a, "a%2Fb+c", 7, HTTP_DECODE_QUERY, &out));
    ASSERT_STREQ("a/b+c", out);
    ASSERT_EQ(HTTP_DECODE_SLASH, http_pct_decode(a, "a%2Fb", 5, HTTP_DECODE_PATH, &out));
    ASSERT(out == NULL);
    ASSERT_EQ(HTTP_DECODE_NUL, http_pct_decode(a, "%00", 3, HTTP_DECODE_QUERY, &out));
    ASSERT_EQ(HTTP_DECODE_MALFORMED, http_pct_decode(a, "%0", 2, HTTP_DECODE_QUERY, &out));
    ASSERT_EQ(HTTP_DECODE_MALFORMED, http_pct_decode(a, "%+1", 3, HTTP_DECODE_QUERY, &out));
    ASSERT_EQ(HTTP_DECODE_OK, http_pct_decode(a, "abc", 2, HTTP_DECODE_PATH, &out));
    ASSERT_STREQ("ab", out); /* bounded by len, not by the NUL */
    ASSERT_EQ(HTTP_DECODE_OK, http_pct_decode(a, "", 0, HTTP_DECODE_PATH, &out));
    ASSERT_STREQ("", out);
    arena_free(a);
}

/* Dispatches POST /leads with a body and the given entity headers. */
static void
dispatch_entity(const struct http_router *r, struct arena *a, const char *type, const char *coding,
                struct http_response *resp)
{
    struct http_request req = {0};

    req.method = "POST";
    req.path = "/leads";
    req.arena = a;
    req.content_type = type;
    req.content_encoding = coding;
    req.body = "{}";
    req.body_len = 2;
    http_router_dispatch(r, &req, resp);
}

TEST(http_issue_7_content_encoding_is_415)
{
    static const char *const refused[] = {"gzip",           "GZIP",   "deflate",   "br",
                                          "identity, gzip", "x-gzip", "(too long)"};
    static const char *const accepted[] = {"identity", "IDENTITY", " identity ", "", "identity,"};
    struct http_router r;
    struct seen seen = {0};
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        dispatch_entity(&r, a, "application/json", refused[i], &resp);
        ASSERT_EQ(415, resp.status);
    }
    ASSERT_EQ(0, seen.calls);
    dispatch_entity(&r, a, "application/json", "gzip", &resp);
    ASSERT_STREQ("{\"message\":\"Unsupported Content-Encoding gzip: send the body uncompressed\","
                 "\"error\":\"Unsupported Media Type\",\"statusCode\":415}",
                 resp.body);
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        dispatch_entity(&r, a, "application/json", accepted[i], &resp);
        ASSERT_EQ(200, resp.status);
    }
    ASSERT_EQ((int)(sizeof(accepted) / sizeof(accepted[0])), seen.calls);
    arena_free(a);
}

TEST(http_issue_7_charset_other_than_utf8_is_415)
{
    static const char *const refused[] = {"application/json; charset=utf-16",
                                          "application/json;charset=UTF-16LE",
                                          "application/json; charset=\"utf-16\"",
                                          "application/json; charset = latin1",
                                          "application/json; charset=\"utf-8",
                                          "application/json; a=\"x;y\"; charset=utf-32",
                                          "application/json; charset=utf-8; charset=utf-16"};
    static const char *const accepted[] = {"application/json",
                                           "application/json; charset=utf-8",
                                           "application/json;charset=UTF-8",
                                           "application/json; charset=\"utf-8\"",
                                           "application/json; charset=\"utf\\-8\"",
                                           "application/x-www-form-urlencoded; charset=utf-8",
                                           "application/json; boundary=\"charset=utf-16\"",
                                           "application/json; flag"};
    struct http_router r;
    struct seen seen = {0};
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        dispatch_entity(&r, a, refused[i], NULL, &resp);
        if (resp.status != 415)
            fprintf(stderr, "accepted: %s\n", refused[i]);
        ASSERT_EQ(415, resp.status);
    }
    ASSERT_EQ(0, seen.calls);
    dispatch_entity(&r, a, refused[0], NULL, &resp);
    ASSERT_STREQ("{\"message\":\"Unsupported Content-Type application/json; charset=utf-16: "
                 "the charset must be utf-8\",\"error\":\"Unsupported Media Type\","
                 "\"statusCode\":415}",
                 resp.body);
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        dispatch_entity(&r, a, accepted[i], NULL, &resp);
        if (resp.status != 200)
            fprintf(stderr, "refused: %s\n", accepted[i]);
        ASSERT_EQ(200, resp.status);
    }
    arena_free(a);
}

TEST(http_router_head_runs_get)
{
    struct http_router r;
    struct seen seen = {.tag = "{\"a\":1}"};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/health", tag_handler, &seen));
    ASSERT_OK(http_router_add(&r, "POST", "/leads", tag_handler, &seen));
    dispatch(&r, a, "HEAD", "/health", &req, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_EQ(1, seen.calls);
    /* The body stays: the server sends its length and drops it (tests/http/test_server.c). */
    ASSERT_STREQ("{\"a\":1}", resp.body);
    dispatch(&r, a, "HEAD", "/leads", &req, &resp);
    ASSERT_EQ(405, resp.status);
    ASSERT_STREQ("POST, OPTIONS", resp.allow);
    ASSERT_EQ(1, seen.calls);
    arena_free(a);
}

TEST(http_router_options_lists_methods)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    dispatch(&r, a, "OPTIONS", "/leads/42", &req, &resp);
    ASSERT_EQ(204, resp.status);
    ASSERT_EQ(0, resp.body_len);
    ASSERT_STREQ("GET, HEAD, OPTIONS", resp.allow);
    ASSERT_EQ(0, resp.nheaders); /* CORS is off */
    dispatch(&r, a, "OPTIONS", "/leads", &req, &resp);
    ASSERT_EQ(204, resp.status);
    ASSERT_STREQ("POST, OPTIONS", resp.allow);
    dispatch(&r, a, "OPTIONS", "/nope", &req, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_EQ(0, seen.calls);
    arena_free(a);
}

/* Dispatches a CORS request: a preflight when `acr_method` is set. */
static void
dispatch_cors(const struct http_router *r, struct arena *a, const char *method, const char *origin,
              const char *acr_method, struct http_request *req, struct http_response *resp)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->path = "/leads/42";
    req->origin = origin;
    req->acr_method = acr_method;
    req->arena = a;
    http_router_dispatch(r, req, resp);
}

TEST(http_router_cors_off_by_default)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    dispatch_cors(&r, a, "OPTIONS", "https://app.example.com", "GET", &req, &resp);
    ASSERT_EQ(204, resp.status);
    ASSERT_EQ(0, resp.nheaders);
    ASSERT(http_is_preflight(&req));
    dispatch_cors(&r, a, "GET", "https://app.example.com", NULL, &req, &resp);
    ASSERT_EQ(0, resp.nheaders);
    ASSERT(!http_is_preflight(&req));
    arena_free(a);
}

TEST(http_router_cors_preflight_and_actual)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    http_router_set_cors(&r, "https://a.example, https://app.example.com");
    dispatch_cors(&r, a, "OPTIONS", "https://app.example.com", "GET", &req, &resp);
    ASSERT_EQ(204, resp.status);
    ASSERT_STREQ("https://app.example.com", resp_header(&resp, "Access-Control-Allow-Origin"));
    ASSERT_STREQ("GET, HEAD, OPTIONS", resp_header(&resp, "Access-Control-Allow-Methods"));
    ASSERT_STREQ("X-API-Key, Content-Type, Idempotency-Key",
                 resp_header(&resp, "Access-Control-Allow-Headers"));
    ASSERT_STREQ("600", resp_header(&resp, "Access-Control-Max-Age"));
    ASSERT_STREQ("Origin", resp_header(&resp, "Vary"));
    ASSERT_EQ(0, seen.calls);
    dispatch_cors(&r, a, "GET", "https://app.example.com", NULL, &req, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("https://app.example.com", resp_header(&resp, "Access-Control-Allow-Origin"));
    ASSERT(resp_header(&resp, "Access-Control-Allow-Methods") == NULL);
    /* Errors carry it too, so a browser app can read them. */
    dispatch_cors(&r, a, "DELETE", "https://a.example", NULL, &req, &resp);
    ASSERT_EQ(405, resp.status);
    ASSERT_STREQ("https://a.example", resp_header(&resp, "Access-Control-Allow-Origin"));
    arena_free(a);
}

TEST(http_router_preflight_never_runs_a_handler)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "OPTIONS", "/leads/:id", record, &seen));
    dispatch_cors(&r, a, "OPTIONS", "https://app.example.com", "GET", &req, &resp);
    ASSERT_EQ(204, resp.status);
    ASSERT_EQ(0, seen.calls); /* it skipped the API-key check: the table answers it */
    dispatch_cors(&r, a, "OPTIONS", NULL, NULL, &req, &resp);
    ASSERT_EQ(1, seen.calls); /* a plain OPTIONS is an ordinary request */
    arena_free(a);
}

TEST(http_router_cors_disallowed_origin_gets_nothing)
{
    static const char *const origins[] = {"https://evil.example",
                                          "https://app.example.co",
                                          "https://app.example.com.evil",
                                          "HTTPS://APP.EXAMPLE.COM",
                                          "null",
                                          ""};
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    http_router_set_cors(&r, "https://app.example.com");
    for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
        dispatch_cors(&r, a, "OPTIONS", origins[i], "GET", &req, &resp);
        ASSERT_EQ(204, resp.status);
        ASSERT_EQ(0, resp.nheaders);
        dispatch_cors(&r, a, "GET", origins[i], NULL, &req, &resp);
        ASSERT_EQ(0, resp.nheaders);
    }
    arena_free(a);
}

TEST(http_router_cors_any_origin)
{
    struct http_router r;
    struct seen seen = {0};
    struct http_request req;
    struct http_response resp;
    struct arena *a = arena_new();

    leads_table(&r, &seen);
    http_router_set_cors(&r, "*");
    dispatch_cors(&r, a, "GET", "https://whoever.example", NULL, &req, &resp);
    ASSERT_STREQ("*", resp_header(&resp, "Access-Control-Allow-Origin"));
    dispatch_cors(&r, a, "GET", NULL, NULL, &req, &resp); /* no Origin: not a CORS request */
    ASSERT_EQ(0, resp.nheaders);
    http_router_set_cors(&r, "");
    dispatch_cors(&r, a, "GET", "https://whoever.example", NULL, &req, &resp);
    ASSERT_EQ(0, resp.nheaders);
    arena_free(a);
}

TEST(http_response_header_is_bounded)
{
    struct http_response resp = {0};

    for (int i = 0; i < HTTP_HEADERS_MAX; i++)
        ASSERT_OK(http_response_header(&resp, "X-A", "1"));
    ASSERT_EQ(-1, http_response_header(&resp, "X-A", "1"));
    ASSERT_EQ(HTTP_HEADERS_MAX, resp.nheaders);
}

/* What a request is about before dispatch (its metrics label, its limits): the first route
 * whose pattern matches the raw path, whatever the method; NULL for a path no route has. */
TEST(http_router_find_names_the_route_pattern)
{
    struct http_router r;
    struct seen s = {0};

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "POST", "/leads", record, &s));
    ASSERT_OK(http_router_add(&r, "GET", "/leads/:id", record, &s));
    ASSERT_OK(http_router_add(&r, "POST", "/leads/:id/reply", record, &s));
    ASSERT_OK(http_router_add(&r, "GET", "/webhooks/whatsapp", record, &s));
    ASSERT_OK(http_router_add(&r, "POST", "/webhooks/whatsapp", record, &s));
    ASSERT(http_router_find(&r, "/leads") == &r.routes[0]);
    ASSERT_STREQ("/leads/:id", http_router_find(&r, "/leads/abc")->pattern);
    ASSERT_STREQ("/leads/:id", http_router_find(&r, "/leads/x%2Fy")->pattern); /* raw segment */
    ASSERT_STREQ("/leads/:id/reply", http_router_find(&r, "/leads/abc/reply")->pattern);
    ASSERT(http_router_find(&r, "/webhooks/whatsapp") == &r.routes[3]); /* the first of two */
    ASSERT(http_router_find(&r, "/leads/") == NULL);
    ASSERT(http_router_find(&r, "/lead%73") == NULL);
    ASSERT(http_router_find(&r, "/nope") == NULL);
    ASSERT(http_router_find(&r, "") == NULL);
    ASSERT(http_router_find(&r, NULL) == NULL);
    ASSERT_EQ(0, s.calls);
}
