/* test_router.c: the router, reason phrases and the NestJS-style error body, with no sockets. */
#include "t.h"

#include "core/arena.h"
#include "core/http.h"

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
    ASSERT_STREQ("GET, DELETE", resp.allow);
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
