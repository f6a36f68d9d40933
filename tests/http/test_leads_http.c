/* test_leads_http.c: the leads controller called directly with in-memory requests (no sockets)
 * on the fake storage: status codes and exact JSON bodies of the NestJS
 * contract (docs/http-api.md), plus the storage-failure answers (503 with Retry-After, 500). */
#include "t.h"

#include "core/arena.h"
#include "core/http.h"
#include "core/xmalloc.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "features/leads/presentation/leads_http.h"

#include <jansson.h>

typedef void (*handler_fn)(const struct leads_deps *d, struct http_request *req,
                           struct http_response *resp);

#define JSON "application/json"
#define FORM "application/x-www-form-urlencoded"
#define UNKNOWN_ID "2728542f-1069-401c-a54f-4ab8a3a46a06"

/* Calls `fn` with a request built like the server builds it (body copied, NUL-terminated, in
 * the request arena). `id` (may be NULL) is the :id route parameter. */
static void
call(struct t_env *env, handler_fn fn, const char *method, const char *content_type,
     const char *body, const char *id, struct http_response *resp)
{
    struct http_request req;

    memset(&req, 0, sizeof(req));
    memset(resp, 0, sizeof(*resp));
    req.method = method;
    req.path = id ? arena_printf(env->arena, "/leads/%s", id) : "/leads";
    req.content_type = content_type;
    req.arena = env->arena;
    if (body && body[0]) {
        req.body = arena_strdup(env->arena, body);
        req.body_len = strlen(body);
    }
    if (id) {
        req.nparams = 1;
        req.params[0] = id;
    }
    fn(&env->deps, &req, resp);
    ASSERT(resp->body != NULL);
    ASSERT_EQ(strlen(resp->body), resp->body_len);
    ASSERT_STREQ("application/json", resp->content_type);
}

static void
post_lead(struct t_env *env, const char *ct, const char *body, struct http_response *resp)
{
    call(env, leads_http_create, "POST", ct, body, NULL, resp);
}

static void
post_reply(struct t_env *env, const char *id, const char *body, struct http_response *resp)
{
    call(env, leads_http_reply, "POST", JSON, body, id, resp);
}

static void
get_details(struct t_env *env, const char *id, struct http_response *resp)
{
    call(env, leads_http_details, "GET", NULL, NULL, id, resp);
}

static void
assert_nothing_stored(struct t_env *env)
{
    struct t_counts c;
    t_env_counts(env, &c);
    ASSERT_EQ(0, c.leads);
    ASSERT_EQ(0, c.messages);
    ASSERT_EQ(0, c.events);
    ASSERT_EQ(0, c.jobs);
}

/* Creates a lead over HTTP and copies its id out. */
static void
create(struct t_env *env, const char *body, char *id)
{
    struct http_response resp;
    post_lead(env, JSON, body, &resp);
    ASSERT_EQ(201, resp.status);
    snprintf(id, SP_UUID_LEN + 1, "%s", t_json_str(resp.body, "id"));
}

/* ---- POST /leads ----------------------------------------------------------------------- */

TEST(http_leads_create_201_shape)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char want[1024];
    const char *id;

    post_lead(env, JSON,
              "{\"name\":\"John Doe\",\"email\":\"john@example.com\",\"phone\":\"+1234567890\"}",
              &resp);
    ASSERT_EQ(201, resp.status);
    ASSERT_EQ(0, resp.retry_after);
    id = t_json_str(resp.body, "id");
    ASSERT(id && sp_uuid_valid(id, strlen(id)));
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"John Doe\",\"email\":\"john@example.com\","
             "\"phone\":\"+1234567890\",\"status\":\"new\","
             "\"createdAt\":\"2026-11-27T14:37:45.686Z\","
             "\"updatedAt\":\"2026-11-27T14:37:45.686Z\"}",
             id);
    ASSERT_STREQ(want, resp.body);
    t_env_free(env);
}

TEST(http_leads_create_absent_contact_is_null)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char want[1024];

    post_lead(env, JSON, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", &resp);
    ASSERT_EQ(201, resp.status);
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"Ana\",\"email\":\"ana@example.com\",\"phone\":null,"
             "\"status\":\"new\",\"createdAt\":\"2026-11-27T14:37:45.686Z\","
             "\"updatedAt\":\"2026-11-27T14:37:45.686Z\"}",
             t_json_str(resp.body, "id"));
    ASSERT_STREQ(want, resp.body);

    post_lead(env, JSON, "{\"name\":\"Bo\",\"phone\":\"+351912345678\",\"email\":null}", &resp);
    ASSERT_EQ(201, resp.status);
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"Bo\",\"email\":null,\"phone\":\"+351912345678\","
             "\"status\":\"new\",\"createdAt\":\"2026-11-27T14:37:45.686Z\","
             "\"updatedAt\":\"2026-11-27T14:37:45.686Z\"}",
             t_json_str(resp.body, "id"));
    ASSERT_STREQ(want, resp.body);
    t_env_free(env);
}

TEST(http_leads_create_stores_capture_atomically)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct t_counts c;

    post_lead(env, JSON, "{\"name\":\"Ana\",\"email\":\"ana@example.com\",\"phone\":\"+1\"}",
              &resp);
    ASSERT_EQ(201, resp.status);
    t_env_counts(env, &c);
    ASSERT_EQ(1, c.leads);
    ASSERT_EQ(2, c.messages);
    ASSERT_EQ(3, c.events);
    ASSERT_EQ(2, c.jobs);
    t_env_free(env);
}

/* One validation case: request body and the exact response body. */
struct bad_case {
    const char *body;
    const char *want;
};

static void
expect_400(const struct bad_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct t_env *env = t_env_new(T_MEM);
        struct http_response resp;

        post_lead(env, JSON, cases[i].body, &resp);
        if (resp.status != 400 || strcmp(cases[i].want, resp.body) != 0)
            t_fail(__FILE__, __LINE__, "body %s:\n      want 400 %s\n      got  %d %s",
                   cases[i].body, cases[i].want, resp.status, resp.body);
        assert_nothing_stored(env);
        t_env_free(env);
    }
}

#define BAD(...) "{\"message\":[" __VA_ARGS__ "],\"error\":\"Bad Request\",\"statusCode\":400}"

TEST(http_leads_create_400_bodies_of_the_reference)
{
    /* the NestJS build's 400 bodies for POST /leads, as its clients see them */
    static const struct bad_case cases[] = {
        {"{\"email\":\"john@example.com\"}",
         BAD("\"name should not be empty\",\"name must be a string\"")},
        {"{\"name\":\"John Doe\"}", BAD("\"Either email or phone must be provided\"")},
        {"{\"name\":\"John Doe\",\"email\":\"not-an-email\"}", BAD("\"email must be an email\"")},
        {"{\"name\":\"John Doe\",\"phone\":1234567890}", BAD("\"phone must be a string\"")},
        {"{\"name\":\"John Doe\",\"email\":\"john@example.com\",\"foo\":\"bar\"}",
         BAD("\"property foo should not exist\"")},
        {"{\"name\":\"\"}",
         BAD("\"Either email or phone must be provided\",\"name should not be empty\"")},
    };
    expect_400(cases, sizeof(cases) / sizeof(cases[0]));
}

TEST(http_leads_create_400_combinations)
{
    static const struct bad_case cases[] = {
        {"{}", BAD("\"Either email or phone must be provided\",\"name should not be empty\","
                   "\"name must be a string\"")},
        {"{\"name\":null,\"phone\":\"+1\"}",
         BAD("\"name should not be empty\",\"name must be a string\"")},
        {"{\"name\":42,\"phone\":\"+1\"}", BAD("\"name must be a string\"")},
        {"{\"name\":[\"x\"],\"phone\":\"+1\"}", BAD("\"name must be a string\"")},
        {"{\"name\":\"Ana\",\"email\":42}", BAD("\"email must be a string\"")},
        {"{\"name\":\"Ana\",\"email\":\"\"}", BAD("\"email must be an email\"")},
        {"{\"name\":\"Ana\",\"phone\":\"\"}", BAD("\"phone should not be empty\"")},
        {"{\"foo\":1,\"name\":\"Ana\",\"bar\":2,\"phone\":\"+1\"}",
         BAD("\"property foo should not exist\",\"property bar should not exist\"")},
        {"{\"foo\":1,\"name\":\"\"}",
         BAD("\"property foo should not exist\",\"Either email or phone must be provided\","
             "\"name should not be empty\"")},
    };
    expect_400(cases, sizeof(cases) / sizeof(cases[0]));
}

TEST(http_leads_create_400_lengths)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char name[LEAD_NAME_MAX + 2], body[1024];

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"phone\":\"+1\"}", name);
    post_lead(env, JSON, body, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ(BAD("\"name must be shorter than or equal to 255 characters\""), resp.body);
    name[LEAD_NAME_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"phone\":\"+1\"}", name);
    post_lead(env, JSON, body, &resp);
    ASSERT_EQ(201, resp.status);
    t_env_free(env);
}

static void
assert_string_message_400(const char *body)
{
    json_t *root = json_loads(body, 0, NULL);

    ASSERT(root != NULL);
    ASSERT(json_is_string(json_object_get(root, "message")));
    ASSERT_STREQ("Bad Request", json_string_value(json_object_get(root, "error")));
    ASSERT_EQ(400, json_integer_value(json_object_get(root, "statusCode")));
    ASSERT_EQ(3, json_object_size(root));
    json_decref(root);
    ASSERT(strncmp(body, "{\"message\":\"", 12) == 0); /* key order as NestJS */
}

TEST(http_leads_create_malformed_json)
{
    static const char *const bodies[] = {
        "{", "{x", "{\"name\":", "{\"name\":\"a\",}", "nul", "{\"name\":\"a\"} trailing"};

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct t_env *env = t_env_new(T_MEM);
        struct http_response resp;

        post_lead(env, JSON, bodies[i], &resp);
        ASSERT_EQ(400, resp.status);
        assert_string_message_400(resp.body);
        ASSERT_CONTAINS(t_json_str(resp.body, "message"), " in JSON at position ");
        assert_nothing_stored(env);
        t_env_free(env);
    }
}

TEST(http_leads_create_non_object_body)
{
    static const char *const bodies[] = {"[]", "[{\"name\":\"a\"}]", "\"John\"", "42", "null"};

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct t_env *env = t_env_new(T_MEM);
        struct http_response resp;

        post_lead(env, JSON, bodies[i], &resp);
        if (resp.status != 400)
            t_fail(__FILE__, __LINE__, "body %s: got %d %s", bodies[i], resp.status, resp.body);
        assert_string_message_400(resp.body);
        assert_nothing_stored(env);
        t_env_free(env);
    }
}

TEST(http_leads_create_empty_body_is_validated)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    post_lead(env, NULL, "", &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ(BAD("\"Either email or phone must be provided\",\"name should not be empty\","
                     "\"name must be a string\""),
                 resp.body);
    t_env_free(env);
}

TEST(http_leads_create_form_urlencoded)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    post_lead(env, FORM, "name=John+Doe&email=john%40example.com", &resp);
    ASSERT_EQ(201, resp.status);
    ASSERT_STREQ("John Doe", t_json_str(resp.body, "name"));
    ASSERT_STREQ("john@example.com", t_json_str(resp.body, "email"));
    ASSERT_CONTAINS(resp.body, "\"phone\":null");

    post_lead(env, FORM "; charset=utf-8", "phone=%2B351912345678&name=Ana%20Lu%C3%ADsa", &resp);
    ASSERT_EQ(201, resp.status);
    ASSERT_STREQ("Ana Lu\xc3\xadsa", t_json_str(resp.body, "name"));
    ASSERT_STREQ("+351912345678", t_json_str(resp.body, "phone"));

    post_lead(env, FORM, "name=Ana&phone=1&foo=bar", &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ(BAD("\"property foo should not exist\""), resp.body);

    post_lead(env, FORM, "name=%zz&phone=1", &resp);
    ASSERT_EQ(400, resp.status);
    assert_string_message_400(resp.body);
    t_env_free(env);
}

TEST(http_leads_create_content_types)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    static const char body[] = "{\"name\":\"Ana\",\"phone\":\"+1\"}";

    post_lead(env, "text/plain", body, &resp);
    ASSERT_EQ(415, resp.status);
    ASSERT_STREQ("{\"message\":\"Unsupported Content-Type text/plain: send application/json or "
                 "application/x-www-form-urlencoded\",\"error\":\"Unsupported Media Type\","
                 "\"statusCode\":415}",
                 resp.body);
    post_lead(env, NULL, body, &resp);
    ASSERT_EQ(415, resp.status);
    ASSERT_CONTAINS(resp.body, "(none)");
    post_lead(env, "application/jsonp", body, &resp);
    ASSERT_EQ(415, resp.status);
    assert_nothing_stored(env);

    post_lead(env, "application/json; charset=utf-8", body, &resp);
    ASSERT_EQ(201, resp.status);
    post_lead(env, "Application/JSON", "{\"name\":\"Bea\",\"phone\":\"+2\"}", &resp);
    ASSERT_EQ(201, resp.status);
    t_env_free(env);
}

TEST(http_leads_create_storage_unavailable_is_503)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    for (int n = 1; n <= 3; n++) {
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        post_lead(env, JSON, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", &resp);
        ASSERT_EQ(503, resp.status);
        ASSERT(resp.retry_after > 0);
        ASSERT_STREQ("{\"message\":[\"Service temporarily unavailable, retry later\"],"
                     "\"error\":\"Service Unavailable\",\"statusCode\":503}",
                     resp.body);
        assert_nothing_stored(env);
    }
    fault_plan_arm(&env->faults, 2, SP_ETIMEDOUT);
    post_lead(env, JSON, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", &resp);
    ASSERT_EQ(503, resp.status);
    ASSERT(resp.retry_after > 0);
    t_env_free(env);
}

TEST(http_leads_create_internal_error_is_500)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    fault_plan_arm(&env->faults, 2, SP_EINTERNAL);
    post_lead(env, JSON, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", &resp);
    ASSERT_EQ(500, resp.status);
    ASSERT_EQ(0, resp.retry_after);
    ASSERT_STREQ("{\"message\":\"Internal server error\",\"error\":\"Internal Server Error\","
                 "\"statusCode\":500}",
                 resp.body);
    ASSERT(strstr(resp.body, "injected") == NULL); /* no internal detail leaks to the client */
    assert_nothing_stored(env);
    t_env_free(env);
}

/* ---- POST /leads/:id/reply ------------------------------------------------------------- */

TEST(http_leads_reply_201)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1], want[128];
    const char *mid;
    struct message *m;
    int nm;

    create(env, "{\"name\":\"John Doe\",\"email\":\"john@example.com\",\"phone\":\"+1234567890\"}",
           id);
    post_reply(env, id,
               "{\"channel\":\"whatsapp\",\"messageContent\":{\"from\":\"+1234567890\","
               "\"text\":\"Can we schedule a demo?\"}}",
               &resp);
    ASSERT_EQ(201, resp.status);
    mid = t_json_str(resp.body, "messageId");
    ASSERT(mid && sp_uuid_valid(mid, strlen(mid)));
    snprintf(want, sizeof(want), "{\"messageId\":\"%s\"}", mid);
    ASSERT_STREQ(want, resp.body);
    t_env_messages(env, id, &m, &nm);
    ASSERT_EQ(3, nm); /* the reply; its answer is the worker's */
    ASSERT_EQ(1, t_env_answer(env));
    t_env_messages(env, id, &m, &nm);
    ASSERT_EQ(4, nm);
    ASSERT_STREQ(t_json_str(resp.body, "messageId"), m[2].id);
    ASSERT_STREQ("{\"from\":\"+1234567890\",\"text\":\"Can we schedule a demo?\"}",
                 m[2].channel_message);
    ASSERT_STREQ("+1234567890", m[3].recipient);
    t_env_free(env);
}

TEST(http_leads_reply_validation_bodies)
{
    static const struct bad_case cases[] = {
        /* the NestJS build's 400 bodies for POST /leads/:id/reply */
        {"{\"channel\":\"sms\",\"messageContent\":{\"text\":\"hi\"}}",
         BAD("\"channel must be one of the following values: email, whatsapp, linkedin, voice, "
             "ads\"")},
        {"{\"channel\":\"email\"}",
         BAD("\"messageContent should not be empty\",\"messageContent must be an object\"")},
        /* and their neighbours */
        {"{\"messageContent\":{\"text\":\"hi\"}}",
         BAD("\"channel must be one of the following values: email, whatsapp, linkedin, voice, "
             "ads\"")},
        {"{\"channel\":\"EMAIL\",\"messageContent\":{\"text\":\"hi\"}}",
         BAD("\"channel must be one of the following values: email, whatsapp, linkedin, voice, "
             "ads\"")},
        {"{\"channel\":\"email\",\"messageContent\":\"hi\"}",
         BAD("\"messageContent must be an object\"")},
        {"{\"channel\":\"email\",\"messageContent\":{}}",
         BAD("\"messageContent should not be empty\"")},
        {"{\"channel\":\"email\",\"messageContent\":{\"body\":5}}",
         BAD("\"messageContent.body must be a string\"")},
        {"{\"channel\":\"email\",\"messageContent\":{\"body\":\"x\"},\"extra\":1}",
         BAD("\"property extra should not exist\"")},
        {"{}", BAD("\"channel must be one of the following values: email, whatsapp, linkedin, "
                   "voice, ads\",\"messageContent should not be empty\","
                   "\"messageContent must be an object\"")},
    };
    struct t_env *env = t_env_new(T_MEM);
    char id[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_response resp;
        struct t_counts c;

        post_reply(env, id, cases[i].body, &resp);
        if (resp.status != 400 || strcmp(cases[i].want, resp.body) != 0)
            t_fail(__FILE__, __LINE__, "body %s:\n      want 400 %s\n      got  %d %s",
                   cases[i].body, cases[i].want, resp.status, resp.body);
        t_env_counts(env, &c);
        ASSERT_EQ(1, c.messages);
    }
    t_env_free(env);
}

TEST(http_leads_reply_on_channel_without_sender_is_400)
{
    /* seed defect #7: the NestJS build answered 201 and failed silently later */
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];
    struct t_counts c;

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    post_reply(env, id, "{\"channel\":\"linkedin\",\"messageContent\":{\"text\":\"hi\"}}", &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ(BAD("\"channel linkedin has no sender: replies are accepted on email, "
                     "whatsapp\""),
                 resp.body);
    post_reply(env, id, "{\"channel\":\"voice\",\"messageContent\":{\"text\":\"hi\"}}", &resp);
    ASSERT_EQ(400, resp.status);
    t_env_counts(env, &c);
    ASSERT_EQ(1, c.messages);
    ASSERT_EQ(2, c.events);
    t_env_free(env);
}

TEST(http_leads_bad_id_is_400)
{
    static const char *const ids[] = {"123", "not-a-uuid", "2728542f-1069-401c-a54f-4ab8a3a46a0",
                                      "2728542f-1069-401c-a54f-4ab8a3a46a06x",
                                      "2728542f_1069_401c_a54f_4ab8a3a46a06"};
    static const char want[] =
        "{\"message\":\"Validation failed (uuid is expected)\",\"error\":\"Bad Request\","
        "\"statusCode\":400}";
    struct t_env *env = t_env_new(T_MEM);

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct http_response resp;
        get_details(env, ids[i], &resp);
        ASSERT_EQ(400, resp.status);
        ASSERT_STREQ(want, resp.body);
        post_reply(env, ids[i], "{\"channel\":\"email\",\"messageContent\":{\"body\":\"x\"}}",
                   &resp);
        ASSERT_EQ(400, resp.status);
        ASSERT_STREQ(want, resp.body);
    }
    assert_nothing_stored(env);
    t_env_free(env);
}

TEST(http_leads_unknown_id_is_404)
{
    static const char want[] = "{\"message\":\"Lead " UNKNOWN_ID
                               " not found\",\"error\":\"Not Found\",\"statusCode\":404}";
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    get_details(env, UNKNOWN_ID, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_STREQ(want, resp.body);
    post_reply(env, UNKNOWN_ID, "{\"channel\":\"email\",\"messageContent\":{\"body\":\"x\"}}",
               &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_STREQ(want, resp.body);
    assert_nothing_stored(env);
    t_env_free(env);
}

TEST(http_leads_uppercase_id_finds_the_lead)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1], upper[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    for (int i = 0; i <= SP_UUID_LEN; i++)
        upper[i] = (char)(id[i] >= 'a' && id[i] <= 'f' ? id[i] - 'a' + 'A' : id[i]);
    get_details(env, upper, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ(id, t_json_str(resp.body, "lead.id"));
    t_env_free(env);
}

TEST(http_leads_reply_storage_failures)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    post_reply(env, id, "{\"channel\":\"email\",\"messageContent\":{\"body\":\"x\"}}", &resp);
    ASSERT_EQ(503, resp.status);
    ASSERT(resp.retry_after > 0);
    fault_plan_arm(&env->faults, 3, SP_EINTERNAL);
    post_reply(env, id, "{\"channel\":\"email\",\"messageContent\":{\"body\":\"x\"}}", &resp);
    ASSERT_EQ(500, resp.status);
    t_env_free(env);
}

/* ---- GET /leads/:id -------------------------------------------------------------------- */

static json_t *
load(const char *body)
{
    json_t *v = json_loads(body, 0, NULL);
    ASSERT(v != NULL && json_is_object(v));
    return v;
}

/* The object's keys, comma-joined in order, into buf. */
static const char *
keys(json_t *obj, char *buf, size_t len)
{
    const char *k;
    json_t *v;
    size_t o = 0;

    buf[0] = '\0';
    json_object_foreach(obj, k, v)
    {
        o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "," : "", k);
        ASSERT(o < len);
    }
    return buf;
}

static const char *
dump(json_t *v)
{
    static char buf[8192];
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    snprintf(buf, sizeof(buf), "%s", s ? s : "");
    free(s);
    return buf;
}

TEST(http_leads_details_shape)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1], want[2048], kb[512];
    json_t *root, *lead, *by, *email, *wa, *events, *jobs, *msg;
    const char *welcome_body;

    create(env, "{\"name\":\"John Doe\",\"email\":\"john@example.com\",\"phone\":\"+1234567890\"}",
           id);
    env->clock.now = T_NOW + 1000;
    post_reply(env, id,
               "{\"channel\":\"whatsapp\",\"messageContent\":{\"from\":\"+1234567890\","
               "\"text\":\"price?\"}}",
               &resp);
    ASSERT_EQ(201, resp.status);
    ASSERT_EQ(1, t_env_answer(env)); /* the worker's answer */
    get_details(env, id, &resp);
    ASSERT_EQ(200, resp.status);

    root = load(resp.body);
    ASSERT_STREQ("lead,messagesByChannel,events,jobs", keys(root, kb, sizeof(kb)));

    lead = json_object_get(root, "lead");
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"John Doe\",\"email\":\"john@example.com\","
             "\"phone\":\"+1234567890\",\"status\":\"replied\","
             "\"createdAt\":\"2026-11-27T14:37:45.686Z\","
             "\"updatedAt\":\"2026-11-27T14:37:46.686Z\"}",
             id);
    ASSERT_STREQ(want, dump(lead));
    snprintf(want, sizeof(want), "{\"lead\":{\"id\":\"%s\",", id);
    ASSERT(strncmp(resp.body, want, strlen(want)) == 0);

    /* messages grouped by channel, channels in order of their first message, oldest first */
    by = json_object_get(root, "messagesByChannel");
    ASSERT_STREQ("email,whatsapp", keys(by, kb, sizeof(kb)));
    email = json_object_get(by, "email");
    wa = json_object_get(by, "whatsapp");
    ASSERT_EQ(1, json_array_size(email));
    ASSERT_EQ(3, json_array_size(wa));

    msg = json_array_get(email, 0);
    ASSERT(strncmp(keys(msg, kb, sizeof(kb)), "id,channel,channelMessage,createdAt", 35) == 0);
    ASSERT_STREQ("email", json_string_value(json_object_get(msg, "channel")));
    ASSERT_STREQ("2026-11-27T14:37:45.686Z", json_string_value(json_object_get(msg, "createdAt")));
    ASSERT_STREQ("to,subject,body", keys(json_object_get(msg, "channelMessage"), kb, sizeof(kb)));
    ASSERT_STREQ("john@example.com",
                 json_string_value(json_object_get(json_object_get(msg, "channelMessage"), "to")));
    ASSERT_STREQ("Welcome, John Doe!", json_string_value(json_object_get(
                                           json_object_get(msg, "channelMessage"), "subject")));
    welcome_body =
        json_string_value(json_object_get(json_object_get(msg, "channelMessage"), "body"));
    ASSERT(welcome_body && strncmp(welcome_body, "Hi John Doe,\n\n", 14) == 0);
    /* the defect #8 additions */
    ASSERT_STREQ("outbound", json_string_value(json_object_get(msg, "direction")));
    ASSERT_STREQ("queued", json_string_value(json_object_get(msg, "status")));
    ASSERT(json_is_null(json_object_get(msg, "sentAt")));
    ASSERT(json_is_null(json_object_get(msg, "providerId")));

    msg = json_array_get(wa, 0);
    ASSERT_STREQ("to,text", keys(json_object_get(msg, "channelMessage"), kb, sizeof(kb)));
    ASSERT_STREQ("+1234567890",
                 json_string_value(json_object_get(json_object_get(msg, "channelMessage"), "to")));
    ASSERT(
        strncmp(json_string_value(json_object_get(json_object_get(msg, "channelMessage"), "text")),
                "Hi John Doe! ", 13) == 0);
    msg = json_array_get(wa, 1);
    ASSERT_STREQ("inbound", json_string_value(json_object_get(msg, "direction")));
    ASSERT_STREQ("{\"from\":\"+1234567890\",\"text\":\"price?\"}",
                 dump(json_object_get(msg, "channelMessage")));
    msg = json_array_get(wa, 2);
    ASSERT_STREQ("ai_reply", json_string_value(json_object_get(msg, "kind")));
    ASSERT_STREQ("+1234567890",
                 json_string_value(json_object_get(json_object_get(msg, "channelMessage"), "to")));

    /* events oldest first, each in the reference's shape */
    events = json_object_get(root, "events");
    ASSERT_EQ(6, json_array_size(events));
    {
        static const char *const types[] = {"lead_added",     "message_queued", "message_queued",
                                            "reply_received", "status_changed", "message_queued"};
        for (size_t i = 0; i < 6; i++) {
            json_t *e = json_array_get(events, i);
            ASSERT_STREQ("id,type,leadId,correlationIds,payload,createdAt",
                         keys(e, kb, sizeof(kb)));
            ASSERT_STREQ(types[i], json_string_value(json_object_get(e, "type")));
            ASSERT_STREQ(id, json_string_value(json_object_get(e, "leadId")));
        }
    }
    snprintf(want, sizeof(want), "{\"leadId\":\"%s\"}", id);
    ASSERT_STREQ(want, dump(json_object_get(json_array_get(events, 0), "correlationIds")));
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"John Doe\",\"email\":\"john@example.com\","
             "\"phone\":\"+1234567890\",\"status\":\"new\"}",
             id);
    ASSERT_STREQ(want, dump(json_object_get(json_array_get(events, 0), "payload")));

    /* the jobs of the lead */
    jobs = json_object_get(root, "jobs");
    ASSERT_EQ(4, json_array_size(jobs));
    {
        /* the reply's generate-reply job, done: it names the reply */
        json_t *g = json_array_get(jobs, 2);
        ASSERT_STREQ("generate-reply", json_string_value(json_object_get(g, "name")));
        ASSERT_STREQ("completed", json_string_value(json_object_get(g, "state")));
        ASSERT_EQ(1, json_integer_value(json_object_get(g, "attemptsMade")));
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(wa, 1), "id")),
                     json_string_value(json_object_get(g, "messageId")));
        json_array_remove(jobs, 2);
    }
    for (size_t i = 0; i < 3; i++) {
        json_t *j = json_array_get(jobs, i);
        ASSERT_STREQ("send-message", json_string_value(json_object_get(j, "name")));
        ASSERT_STREQ("waiting", json_string_value(json_object_get(j, "state")));
        ASSERT_EQ(0, json_integer_value(json_object_get(j, "attemptsMade")));
        ASSERT_EQ(3, json_integer_value(json_object_get(j, "maxAttempts")));
    }
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(email, 0), "id")),
                 json_string_value(json_object_get(json_array_get(jobs, 0), "messageId")));
    json_decref(root);
    t_env_free(env);
}

TEST(http_leads_details_omits_channels_without_messages)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1], kb[256];
    json_t *root;

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    get_details(env, id, &resp);
    ASSERT_EQ(200, resp.status);
    root = load(resp.body);
    ASSERT_STREQ("email", keys(json_object_get(root, "messagesByChannel"), kb, sizeof(kb)));
    json_decref(root);

    create(env, "{\"name\":\"Bo\",\"phone\":\"+351912345678\"}", id);
    get_details(env, id, &resp);
    root = load(resp.body);
    ASSERT_STREQ("whatsapp", keys(json_object_get(root, "messagesByChannel"), kb, sizeof(kb)));
    ASSERT(json_is_null(json_object_get(json_object_get(root, "lead"), "email")));
    json_decref(root);

    /* no sender at all: no message, an empty object */
    env->policy.sendable = 0;
    create(env, "{\"name\":\"Cy\",\"phone\":\"+1\"}", id);
    get_details(env, id, &resp);
    ASSERT_CONTAINS(resp.body, "\"messagesByChannel\":{}");
    t_env_free(env);
}

TEST(http_leads_details_after_delivery)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];
    json_t *root, *msg, *job;

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    env->clock.now = T_NOW + 2000;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    get_details(env, id, &resp);
    root = load(resp.body);
    ASSERT_STREQ("contacted",
                 json_string_value(json_object_get(json_object_get(root, "lead"), "status")));
    msg = json_array_get(json_object_get(json_object_get(root, "messagesByChannel"), "email"), 0);
    ASSERT_STREQ("sent", json_string_value(json_object_get(msg, "status")));
    ASSERT_STREQ("2026-11-27T14:37:47.686Z", json_string_value(json_object_get(msg, "sentAt")));
    ASSERT_EQ(1, json_integer_value(json_object_get(msg, "attempts")));
    ASSERT_STREQ("fake-1", json_string_value(json_object_get(msg, "providerId")));
    job = json_array_get(json_object_get(root, "jobs"), 0);
    ASSERT_STREQ("completed", json_string_value(json_object_get(job, "state")));
    ASSERT_STREQ("2026-11-27T14:37:47.686Z", json_string_value(json_object_get(job, "finishedAt")));
    json_decref(root);
    t_env_free(env);
}

TEST(http_leads_details_storage_failures)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    for (int n = 1; n <= 6; n++) { /* every read of the details (leads.c) */
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        get_details(env, id, &resp);
        ASSERT_EQ(503, resp.status);
        ASSERT(resp.retry_after > 0);
    }
    fault_plan_arm(&env->faults, 1, SP_EINTERNAL);
    get_details(env, id, &resp);
    ASSERT_EQ(500, resp.status);
    ASSERT_EQ(0, resp.retry_after);
    t_env_free(env);
}

/* ---- issue 4: a lead with a long history ----------------------------------------------- */

#define BIG_REPLIES 70
#define BIG_BODY (60 * 1024)

/* BIG_REPLIES email replies of about BIG_BODY bytes each, over HTTP. */
static void
big_history(struct t_env *env, char *id)
{
    size_t cap = BIG_BODY + 128;
    char *body = xmalloc(cap);
    size_t n = (size_t)snprintf(body, cap,
                                "{\"channel\":\"email\",\"messageContent\":{\"subject\":\"re\","
                                "\"body\":\"");
    struct http_response resp;

    memset(body + n, 'x', BIG_BODY);
    snprintf(body + n + BIG_BODY, cap - n - BIG_BODY, "\"}}");
    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    for (int i = 0; i < BIG_REPLIES; i++) {
        env->clock.now += 1;
        post_reply(env, id, body, &resp);
        ASSERT_EQ(201, resp.status);
        ASSERT_EQ(1, t_env_answer(env));
        arena_reset(env->arena);
    }
    free(body);
}

/* Was: 500 "response exceeds 8388608 bytes" for ever. Now 200, the newest items within the
 * list budgets, and "more" names the lists cut short. */
static void
issue_4_details(enum t_backend backend)
{
    struct t_env *env = t_env_new(backend);
    struct http_response resp;
    char id[SP_UUID_LEN + 1], kb[256];
    json_t *root, *email, *events, *more;

    big_history(env, id);
    get_details(env, id, &resp);
    ASSERT_EQ(200, resp.status);
    /* the request's memory: the rows read and the rendered answer (docs/http-api.md: below
     * about 12 MiB for any lead; here 2 lists of contents) */
    ASSERT(arena_used(env->arena) < 4 * 1024 * 1024);
    /* 2 lists of contents (email, events) within 512 KiB each, plus the envelopes */
    ASSERT(resp.body_len < 2 * 512 * 1024 + 256 * 1024);
    root = load(resp.body);
    email = json_object_get(json_object_get(root, "messagesByChannel"), "email");
    events = json_object_get(root, "events");
    ASSERT(json_array_size(email) >= 2 && json_array_size(email) < 2 * BIG_REPLIES + 1);
    ASSERT(json_array_size(events) >= 2);
    more = json_object_get(root, "more");
    ASSERT(json_is_object(more));
    ASSERT_STREQ("email,events,jobs", keys(more, kb, sizeof(kb)));
    ASSERT(json_is_true(json_object_get(more, "jobs")));
    ASSERT_EQ(50, json_array_size(json_object_get(root, "jobs")));
    ASSERT_STREQ("lead,messagesByChannel,events,jobs,more", keys(root, kb, sizeof(kb)));
    /* the newest last, as for every lead: the last email message is the last AI answer */
    ASSERT_STREQ("ai_reply", json_string_value(json_object_get(
                                 json_array_get(email, json_array_size(email) - 1), "kind")));
    json_decref(root);
    t_env_free(env);
}

TEST(http_issue_4_big_lead_details_is_200_and_bounded_mem)
{
    issue_4_details(T_MEM);
}

TEST(http_issue_4_big_lead_details_is_200_and_bounded_sqlite)
{
    issue_4_details(T_SQLITE);
}

/* GET /leads/:id/<what> with query arguments kv[0..2n). */
static void
get_page(struct t_env *env, handler_fn fn, const char *id, const char *const *kv, int n,
         struct http_response *resp)
{
    struct http_request req;

    memset(&req, 0, sizeof(req));
    memset(resp, 0, sizeof(*resp));
    req.method = "GET";
    req.path = arena_printf(env->arena, "/leads/%s/page", id);
    req.arena = env->arena;
    req.nparams = 1;
    req.params[0] = id;
    for (int i = 0; i < n; i++) {
        req.query_keys[i] = kv[2 * i];
        req.query_values[i] = kv[2 * i + 1];
    }
    req.nquery = n;
    fn(&env->deps, &req, resp);
    ASSERT(resp->body != NULL);
    ASSERT_EQ(strlen(resp->body), resp->body_len);
}

/* Appends the "id"s of the array's items to ids (a JSON array of strings), checking each is new. */
static void
collect_ids(json_t *ids, json_t *items)
{
    size_t i;
    json_t *it;

    json_array_foreach(items, i, it)
    {
        const char *mid = json_string_value(json_object_get(it, "id"));
        size_t j;
        json_t *seen;
        ASSERT(mid != NULL);
        json_array_foreach(ids, j, seen) ASSERT(strcmp(json_string_value(seen), mid) != 0);
        json_array_append_new(ids, json_string(mid));
    }
}

/* Follows `cursor` through pages of fn (kv0: the fixed query arguments) until nextCursor is
 * null, collecting ids. */
static void
page_through(struct t_env *env, handler_fn fn, const char *id, const char *channel,
             const char *cursor, json_t *ids)
{
    char cur[128];

    snprintf(cur, sizeof(cur), "%s", cursor);
    while (cur[0]) {
        const char *kv[] = {"cursor", cur, "limit", "7", "channel", channel};
        struct http_response resp;
        json_t *root, *next;
        char kb[64];

        get_page(env, fn, id, kv, channel ? 3 : 2, &resp);
        ASSERT_EQ(200, resp.status);
        ASSERT_STREQ("application/json", resp.content_type);
        root = load(resp.body);
        ASSERT_STREQ("items,nextCursor", keys(root, kb, sizeof(kb)));
        ASSERT(json_array_size(json_object_get(root, "items")) >= 1);
        ASSERT(json_array_size(json_object_get(root, "items")) <= 7);
        collect_ids(ids, json_object_get(root, "items"));
        next = json_object_get(root, "nextCursor");
        snprintf(cur, sizeof(cur), "%s", json_is_string(next) ? json_string_value(next) : "");
        json_decref(root);
    }
}

/* The details plus the pages behind "more" give every message and event exactly once. */
TEST(http_issue_4_paging_returns_the_rest_once)
{
    struct t_env *env = t_env_new(T_SQLITE);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];
    json_t *root, *msg_ids = json_array(), *ev_ids = json_array();
    struct t_counts c;

    big_history(env, id);
    get_details(env, id, &resp);
    ASSERT_EQ(200, resp.status);
    root = load(resp.body);
    collect_ids(msg_ids, json_object_get(json_object_get(root, "messagesByChannel"), "email"));
    collect_ids(ev_ids, json_object_get(root, "events"));
    page_through(env, leads_http_messages, id, "email", t_json_str(resp.body, "more.email"),
                 msg_ids);
    page_through(env, leads_http_events, id, NULL, t_json_str(resp.body, "more.events"), ev_ids);
    t_env_counts(env, &c);
    ASSERT_EQ(c.messages, (int)json_array_size(msg_ids));
    ASSERT_EQ(c.events, (int)json_array_size(ev_ids));
    json_decref(root);
    json_decref(msg_ids);
    json_decref(ev_ids);
    t_env_free(env);
}

/* Without a cursor a page is the newest; an ordinary lead fits in one page. */
TEST(http_issue_4_first_page_and_small_lead)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];
    const char *kv[] = {"channel", "whatsapp"};
    json_t *root;

    create(env, "{\"name\":\"Ana\",\"phone\":\"+351912345678\"}", id);
    get_page(env, leads_http_messages, id, kv, 1, &resp);
    ASSERT_EQ(200, resp.status);
    root = load(resp.body);
    ASSERT_EQ(1, json_array_size(json_object_get(root, "items")));
    json_decref(root);
    ASSERT_CONTAINS(resp.body, "\"kind\":\"welcome\"");
    ASSERT_CONTAINS(resp.body, "\"nextCursor\":null}");
    get_page(env, leads_http_events, id, NULL, 0, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_CONTAINS(resp.body, "\"type\":\"lead_added\"");
    ASSERT_CONTAINS(resp.body, "\"nextCursor\":null}");
    get_page(env, leads_http_messages, id, (const char *[]){"channel", "email"}, 1, &resp);
    ASSERT_STREQ("{\"items\":[],\"nextCursor\":null}", resp.body);
    t_env_free(env);
}

TEST(http_issue_4_paging_400_and_404)
{
    static const struct {
        int n;
        const char *kv[6];
        const char *message;
    } bad[] = {
        {0, {NULL}, "channel must be one of"},
        {1, {"channel", "fax"}, "channel must be one of"},
        {2, {"channel", "email", "cursor", "garbage"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", "email.0"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", "email.-3"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", "email.12x"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", "email.1234567890123456789"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", "whatsapp.5"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", "events.5"}, "cursor is not valid"},
        {2, {"channel", "email", "cursor", ""}, "cursor is not valid"},
        {2, {"channel", "email", "limit", "0"}, "limit must be an integer from 1 to 100"},
        {2, {"channel", "email", "limit", "101"}, "limit must be an integer from 1 to 100"},
        {2, {"channel", "email", "limit", "-1"}, "limit must be an integer from 1 to 100"},
        {2, {"channel", "email", "limit", "5x"}, "limit must be an integer from 1 to 100"},
        {2, {"channel", "email", "sort", "asc"}, "property sort should not exist"},
        {3, {"channel", "email", "limit", "5", "limit", "6"}, "limit must be given once"},
    };
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", id);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        get_page(env, leads_http_messages, id, bad[i].kv, bad[i].n, &resp);
        ASSERT_EQ(400, resp.status);
        ASSERT_CONTAINS(resp.body, bad[i].message);
        ASSERT_CONTAINS(resp.body, "\"statusCode\":400");
    }
    get_page(env, leads_http_events, id, (const char *[]){"cursor", "email.5"}, 1, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_CONTAINS(resp.body, "cursor is not valid");
    get_page(env, leads_http_events, id, (const char *[]){"channel", "email"}, 1, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_CONTAINS(resp.body, "property channel should not exist");
    get_page(env, leads_http_events, "not-a-uuid", NULL, 0, &resp);
    ASSERT_EQ(400, resp.status);
    get_page(env, leads_http_events, UNKNOWN_ID, NULL, 0, &resp);
    ASSERT_EQ(404, resp.status);
    get_page(env, leads_http_messages, UNKNOWN_ID, (const char *[]){"channel", "email"}, 1, &resp);
    ASSERT_EQ(404, resp.status);
    get_page(env, leads_http_events, id, (const char *[]){"cursor", "events.99999"}, 1, &resp);
    ASSERT_EQ(200, resp.status); /* a well-formed cursor past the end: the newest items */
    t_env_free(env);
}

TEST(http_leads_error_status_table)
{
    /* leads_http.h: 400/404/409/413/503 (+Retry-After)/500 */
    static const struct {
        int code, status, retry;
    } table[] = {
        {SP_EINVAL, 400, 0},    {SP_ENOTFOUND, 404, 0}, {SP_ECONFLICT, 409, 0},
        {SP_ETOOLARGE, 413, 0}, {SP_EUNAVAIL, 503, 1},  {SP_ETIMEDOUT, 503, 1},
        {SP_EINTERNAL, 500, 0},
    };
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct http_response resp = {0};
        struct sp_error err = {0};
        sp_error_set(&err, table[i].code, "f", "detail %d", table[i].code);
        leads_http_error(&resp, a, table[i].code, &err);
        ASSERT_EQ(table[i].status, resp.status);
        ASSERT_EQ(table[i].retry, resp.retry_after > 0);
        ASSERT_EQ(table[i].status, t_json_int(resp.body, "statusCode"));
        ASSERT_STREQ(http_reason(table[i].status), t_json_str(resp.body, "error"));
    }
    arena_free(a);
}

/* Regression (issue 2, found by tests/fuzz): a raw NUL byte cut a form value or key short and a
 * non-UTF-8 key was silently dropped, so these bodies were stored (201) instead of refused. */
TEST(http_issue_2_form_body_nul_and_bad_keys_are_refused)
{
    static const struct {
        const char *body;
        size_t len;
    } cases[] = {
        {"name=Ana\0<script>&phone=1", 26},
        {"name\0evil=Ana&phone=1", 21},
        {"name=Ana&phone=%2B1&%FF=x", 25},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct t_env *env = t_env_new(T_MEM);
        struct http_request req;
        struct http_response resp;

        memset(&req, 0, sizeof(req));
        memset(&resp, 0, sizeof(resp));
        req.method = "POST";
        req.path = "/leads";
        req.content_type = FORM;
        req.arena = env->arena;
        req.body = cases[i].body;
        req.body_len = cases[i].len;
        leads_http_create(&env->deps, &req, &resp);
        if (resp.status != 400)
            t_fail(__FILE__, __LINE__, "case %zu: got %d %s", i, resp.status, resp.body);
        assert_string_message_400(resp.body);
        assert_nothing_stored(env);
        t_env_free(env);
    }
}

/* Hardening #1: a reply's "from" must be an address of the channel (400 otherwise); a valid one
 * becomes the address of a lead that has none on the channel. */
TEST(http_issue_h1_reply_from_is_validated)
{
    static const struct bad_case cases[] = {
        {"{\"channel\":\"email\",\"messageContent\":{\"from\":\"\\r\\nBcc: x@evil.com\","
         "\"subject\":\"Buy now\",\"body\":\"hi\"}}",
         BAD("\"messageContent.from must be an email\"")},
        {"{\"channel\":\"email\",\"messageContent\":{\"from\":\"Eve <eve@example.org>\"}}",
         BAD("\"messageContent.from must be an email\"")},
        {"{\"channel\":\"whatsapp\",\"messageContent\":{\"from\":\"not a phone <script>\","
         "\"text\":\"hi\"}}",
         BAD("\"messageContent.from must be a phone number\"")},
        {"{\"channel\":\"whatsapp\",\"messageContent\":{\"from\":\"+351\\r\\n912\"}}",
         BAD("\"messageContent.from must be a phone number\"")},
    };
    struct t_env *env = t_env_new(T_MEM);
    char id[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"phone\":\"+351912345678\"}", id);
    {
        /* on a channel without a sender the from is not judged: the channel is what is wrong */
        struct http_response resp;
        post_reply(
            env, id,
            "{\"channel\":\"linkedin\",\"messageContent\":{\"from\":\"ana\",\"text\":\"x\"}}",
            &resp);
        ASSERT_STREQ(BAD("\"channel linkedin has no sender: replies are accepted on email, "
                         "whatsapp\""),
                     resp.body);
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_response resp;
        struct t_counts c;

        post_reply(env, id, cases[i].body, &resp);
        if (resp.status != 400 || strcmp(cases[i].want, resp.body) != 0)
            t_fail(__FILE__, __LINE__, "body %s:\n      want 400 %s\n      got  %d %s",
                   cases[i].body, cases[i].want, resp.status, resp.body);
        t_env_counts(env, &c);
        ASSERT_EQ(1, c.messages);
        ASSERT_EQ(2, c.events);
    }
    t_env_free(env);
}

TEST(http_issue_h1_reply_from_becomes_the_leads_address)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1];

    create(env, "{\"name\":\"Ana\",\"phone\":\"+351912345678\"}", id);
    post_reply(env, id,
               "{\"channel\":\"email\",\"messageContent\":{\"from\":\"ana@work.example\","
               "\"subject\":\"Hi\",\"body\":\"price?\"}}",
               &resp);
    ASSERT_EQ(201, resp.status);
    get_details(env, id, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("ana@work.example", t_json_str(resp.body, "lead.email"));
    ASSERT_CONTAINS(resp.body, "\"type\":\"address_added\"");
    ASSERT_CONTAINS(resp.body,
                    "\"payload\":{\"channel\":\"email\",\"address\":\"ana@work.example\"");
    t_env_free(env);
}

/* Hardening #7: lengths in characters (UTF-16 code units, as NestJS), and no control or
 * bidirectional formatting characters in name, email and phone. */
TEST(http_issue_h7_create_lengths_and_characters)
{
    static const struct bad_case cases[] = {
        {"{\"name\":\"Ana\\r\\nBcc: x@evil.com\",\"phone\":\"+1\"}",
         BAD("\"name must not contain control or bidirectional formatting characters\"")},
        {"{\"name\":\"Ana\\u202e\",\"phone\":\"+1\"}",
         BAD("\"name must not contain control or bidirectional formatting characters\"")},
        {"{\"name\":\"Ana\",\"email\":\"a@\\u0080\\u0080.\\u0080\\u0080\"}",
         BAD("\"email must be an email\"")},
        {"{\"name\":\"Ana\",\"email\":\"ana@exa\\u2066mple.com\"}",
         BAD("\"email must be an email\"")},
        {"{\"name\":\"Ana\",\"phone\":\"+351\\u0085912\"}",
         BAD("\"phone must not contain control or bidirectional formatting characters\"")},
    };
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char body[2048], name[1100];
    size_t o = 0;

    expect_400(cases, sizeof(cases) / sizeof(cases[0]));
    /* 130 "é" is 260 bytes but 130 characters */
    for (int i = 0; i < 130; i++, o += 2)
        memcpy(name + o, "\xc3\xa9", 2);
    name[o] = '\0';
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"phone\":\"+1\"}", name);
    post_lead(env, JSON, body, &resp);
    ASSERT_EQ(201, resp.status);
    ASSERT_STREQ(name, t_json_str(resp.body, "name"));
    /* 128 "😀" are 256 UTF-16 code units */
    o = 0;
    for (int i = 0; i < 128; i++, o += 4)
        memcpy(name + o, "\xf0\x9f\x98\x80", 4);
    name[o] = '\0';
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"phone\":\"+1\"}", name);
    post_lead(env, JSON, body, &resp);
    ASSERT_EQ(400, resp.status);
    ASSERT_STREQ(BAD("\"name must be shorter than or equal to 255 characters\""), resp.body);
    t_env_free(env);
}

/* ---- #11: one lead per person, GET /leads ------------------------------------------------ */

/* A capture of a person already stored: 409 with the NestJS body and the lead's id, whatever
 * the body type, and nothing stored. */
TEST(http_issue_11_known_person_is_409_with_the_lead_id)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    char id[SP_UUID_LEN + 1], want[512];
    struct t_counts c;

    create(env, "{\"name\":\"Ana\",\"email\":\"ana@example.com\",\"phone\":\"+351 912 345 678\"}",
           id);
    snprintf(want, sizeof(want),
             "{\"message\":\"Lead already exists\",\"error\":\"Conflict\",\"statusCode\":409,"
             "\"leadId\":\"%s\"}",
             id);
    post_lead(env, JSON, "{\"name\":\"Ana B\",\"email\":\"ANA@Example.com\"}", &resp);
    ASSERT_EQ(409, resp.status);
    ASSERT_STREQ(want, resp.body);
    post_lead(env, FORM, "name=Ana&phone=%2B351-912-345-678", &resp);
    ASSERT_EQ(409, resp.status);
    ASSERT_STREQ(want, resp.body);
    t_env_counts(env, &c);
    ASSERT_EQ(1, c.leads);
    ASSERT_EQ(2, c.jobs);
    t_env_free(env);
}

/* GET /leads with the query `qs` ("k=v&k=v", values as decoded by the server). */
static void
get_list(struct t_env *env, const char *qs, struct http_response *resp)
{
    struct http_request req;
    char *copy = arena_strdup(env->arena, qs);

    memset(&req, 0, sizeof(req));
    memset(resp, 0, sizeof(*resp));
    req.method = "GET";
    req.path = "/leads";
    req.arena = env->arena;
    for (char *p = copy; *p && req.nquery < HTTP_QUERY_MAX;) {
        char *amp = strchr(p, '&'), *eq;
        if (amp)
            *amp = '\0';
        eq = strchr(p, '=');
        if (eq)
            *eq = '\0';
        req.query_keys[req.nquery] = p;
        req.query_values[req.nquery++] = eq ? eq + 1 : "";
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    leads_http_list(&env->deps, &req, resp);
    ASSERT(resp->body != NULL);
    ASSERT_STREQ("application/json", resp->content_type);
}

TEST(http_issue_11_list_pages)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp, created[3];
    const char *cursor;
    char want[2048], qs[128];

    post_lead(env, JSON, "{\"name\":\"Ana\",\"email\":\"ana@example.com\"}", &created[0]);
    env->clock.now += 1000;
    post_lead(env, JSON, "{\"name\":\"Bea\",\"phone\":\"+1 555\"}", &created[1]);
    env->clock.now += 1000;
    post_lead(env, JSON, "{\"name\":\"Anabela\",\"email\":\"ab@example.com\"}", &created[2]);

    /* items exactly as POST /leads rendered them, newest first; no next page */
    get_list(env, "", &resp);
    ASSERT_EQ(200, resp.status);
    snprintf(want, sizeof(want), "{\"items\":[%s,%s,%s],\"nextCursor\":null}", created[2].body,
             created[1].body, created[0].body);
    ASSERT_STREQ(want, resp.body);

    /* page by page with the opaque cursor (22 characters of base64url) */
    get_list(env, "limit=2", &resp);
    snprintf(want, sizeof(want), "{\"items\":[%s,%s],", created[2].body, created[1].body);
    ASSERT_EQ(0, strncmp(want, resp.body, strlen(want)));
    cursor = t_json_str(resp.body, "nextCursor");
    ASSERT(cursor != NULL);
    ASSERT_EQ(22, (long)strlen(cursor));
    ASSERT_EQ(strlen(cursor), strspn(cursor, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                             "0123456789-_"));
    snprintf(qs, sizeof(qs), "limit=2&cursor=%s", cursor);
    get_list(env, qs, &resp);
    snprintf(want, sizeof(want), "{\"items\":[%s],\"nextCursor\":null}", created[0].body);
    ASSERT_STREQ(want, resp.body);

    /* the filters */
    get_list(env, "q=AN&status=new&createdAfter=2026-11-27&createdBefore=2026-11-28T00:00:00Z",
             &resp);
    snprintf(want, sizeof(want), "{\"items\":[%s,%s],\"nextCursor\":null}", created[2].body,
             created[0].body);
    ASSERT_STREQ(want, resp.body);
    get_list(env, "q=+1 5", &resp);
    snprintf(want, sizeof(want), "{\"items\":[%s],\"nextCursor\":null}", created[1].body);
    ASSERT_STREQ(want, resp.body);
    get_list(env, "status=replied", &resp);
    ASSERT_STREQ("{\"items\":[],\"nextCursor\":null}", resp.body);
    /* the latest position a cursor can name: before it, everything */
    get_list(env, "limit=1&cursor=AADmd9If2_8AAAAAAAAAAQ", &resp);
    snprintf(want, sizeof(want), "{\"items\":[%s],", created[2].body);
    ASSERT_EQ(0, strncmp(want, resp.body, strlen(want)));
    t_env_free(env);
}

TEST(http_issue_11_list_bad_parameters_are_400)
{
    static const struct bad_case cases[] = {
        {"limit=0", BAD("\"limit must be an integer from 1 to 100\"")},
        {"limit=101", BAD("\"limit must be an integer from 1 to 100\"")},
        {"limit=2x", BAD("\"limit must be an integer from 1 to 100\"")},
        {"limit=", BAD("\"limit must be an integer from 1 to 100\"")},
        {"status=open", BAD("\"status must be one of the following values: new, contacted, "
                            "replied, converted, dead\"")},
        {"q=", BAD("\"q should not be empty\"")},
        {"q= \t", BAD("\"q should not be empty\"")},
        {"createdAfter=yesterday", BAD("\"createdAfter must be a valid ISO 8601 date string\"")},
        {"createdBefore=2026-13-01", BAD("\"createdBefore must be a valid ISO 8601 date string\"")},
        {"cursor=abc", BAD("\"cursor is not valid\"")},
        {"cursor=AAAAAAAAAAAAAAAAAAAAAA", BAD("\"cursor is not valid\"")}, /* seq 0 */
        {"cursor=AAAAAAAAAAAAAAAAAAAAAB", BAD("\"cursor is not valid\"")}, /* stray bits */
        {"cursor=AADmd9If3AAAAAAAAAAAAQ", BAD("\"cursor is not valid\"")}, /* after 9999 */
        {"sort=name", BAD("\"property sort should not exist\"")},
        {"limit=1&limit=2", BAD("\"limit must be given once\"")},
        {"limit=0&status=x&page=2",
         BAD("\"property page should not exist\",\"status must be one of the following values: "
             "new, contacted, replied, converted, dead\",\"limit must be an integer from 1 to "
             "100\"")},
    };
    struct t_env *env = t_env_new(T_MEM);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_response resp;

        get_list(env, cases[i].body, &resp);
        if (resp.status != 400 || strcmp(cases[i].want, resp.body) != 0)
            t_fail(__FILE__, __LINE__, "query %s:\n      want 400 %s\n      got  %d %s",
                   cases[i].body, cases[i].want, resp.status, resp.body);
    }
    t_env_free(env);
}

TEST(http_issue_11_list_storage_failure_is_503)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    get_list(env, "q=ana", &resp);
    ASSERT_EQ(503, resp.status);
    ASSERT_EQ(1, resp.retry_after);
    t_env_free(env);
}
