/* test_opt_out_http.c: the do-not-contact routes called directly with in-memory requests on
 * the fake storage: POST and DELETE /leads/:id/opt-out, "optOut" in GET /leads/:id, the manual
 * messages of POST /leads/:id/messages (201, 400 bodies, the 409 of an opted-out channel), and
 * the one-click unsubscribe pages (GET changes nothing, POST opts out, bad tokens 404). */
#include "t.h"

#include "core/arena.h"
#include "core/http.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "features/leads/presentation/leads_http.h"
#include "features/messaging/infrastructure/email_mime.h"
#include "features/messaging/presentation/unsubscribe_http.h"

#include <string.h>

#define JSON "application/json"
#define UNKNOWN_ID "2728542f-1069-401c-a54f-4ab8a3a46a06"
#define SECRET "unsubscribe-secret-0123456789"
#define BAD(msg) "{\"message\":[" msg "],\"error\":\"Bad Request\",\"statusCode\":400}"

typedef void (*handler_fn)(const struct leads_deps *d, struct http_request *req,
                           struct http_response *resp);

static void
build(struct t_env *env, struct http_request *req, const char *method, const char *body,
      const char *param)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->path = "/test";
    req->content_type = body ? JSON : NULL;
    req->arena = env->arena;
    if (body && body[0]) {
        req->body = arena_strdup(env->arena, body);
        req->body_len = strlen(body);
    }
    if (param) {
        req->nparams = 1;
        req->params[0] = param;
    }
}

static void
call(struct t_env *env, handler_fn fn, const char *method, const char *body, const char *id,
     struct http_response *resp)
{
    struct http_request req;

    build(env, &req, method, body, id);
    memset(resp, 0, sizeof(*resp));
    fn(&env->deps, &req, resp);
    ASSERT(resp->body != NULL);
    ASSERT_STREQ("application/json", resp->content_type);
}

/* DELETE /leads/:id/opt-out with query arguments (key, value pairs; NULL-terminated). */
static void
opt_in(struct t_env *env, const char *id, const char *const *query, struct http_response *resp)
{
    struct http_request req;

    build(env, &req, "DELETE", NULL, id);
    for (; query && query[0]; query += 2) {
        req.query_keys[req.nquery] = query[0];
        req.query_values[req.nquery++] = query[1];
    }
    memset(resp, 0, sizeof(*resp));
    leads_http_opt_in(&env->deps, &req, resp);
    ASSERT_STREQ("application/json", resp->content_type);
}

static const char *
header_of(const struct http_response *resp, const char *name)
{
    for (int i = 0; i < resp->nheaders; i++)
        if (strcmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

TEST(http_opt_out_post_and_delete)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    const char *none[] = {NULL};
    const char *wa[] = {"channel", "whatsapp", NULL};
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    call(env, leads_http_opt_out, "POST", "{\"channel\":\"email\",\"reason\":\"asked by phone\"}",
         l.id, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_JSON_EQ(arena_printf(env->arena,
                                "{\"leadId\":\"%s\",\"optOut\":{\"email\":{\"reason\":\"asked by "
                                "phone\",\"at\":\"2026-11-27T14:37:45.686Z\",\"source\":\"api\"}}}",
                                l.id),
                   resp.body);
    /* no body: every channel; the email opt-out keeps its reason */
    call(env, leads_http_opt_out, "POST", NULL, l.id, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("asked by phone", t_json_str(resp.body, "optOut.email.reason"));
    ASSERT_STREQ("api", t_json_str(resp.body, "optOut.whatsapp.source"));

    /* the details show it, after the NestJS members */
    call(env, leads_http_details, "GET", NULL, l.id, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_CONTAINS(resp.body, "],\"optOut\":{\"email\":{\"reason\":\"asked by phone\"");

    opt_in(env, l.id, wa, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("api", t_json_str(resp.body, "optOut.email.source"));
    ASSERT(t_json_str(resp.body, "optOut.whatsapp.source") == NULL);
    opt_in(env, l.id, none, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_JSON_EQ(arena_printf(env->arena, "{\"leadId\":\"%s\",\"optOut\":{}}", l.id), resp.body);
    /* and an ordinary lead's details have no "optOut" */
    call(env, leads_http_details, "GET", NULL, l.id, &resp);
    ASSERT(strstr(resp.body, "optOut") == NULL);
    t_env_free(env);
}

TEST(http_opt_out_errors)
{
    static const struct {
        const char *body;
        const char *want;
    } cases[] = {
        {"{\"channel\":\"sms\"}", BAD("\"channel must be one of the following values: email, "
                                      "whatsapp\"")},
        {"{\"channel\":\"linkedin\"}", BAD("\"channel must be one of the following values: "
                                           "email, whatsapp\"")},
        {"{\"channel\":1,\"reason\":2}",
         BAD("\"channel must be one of the following values: email, whatsapp\","
             "\"reason must be a string\"")},
        {"{\"reason\":\" \"}", BAD("\"reason should not be empty\"")},
        {"{\"reason\":\"a\\u202eb\"}",
         BAD("\"reason must not contain control or bidirectional formatting characters\"")},
        {"{\"channels\":[\"email\"]}", BAD("\"property channels should not exist\"")},
    };
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    const char *bad_key[] = {"chanel", "email", NULL};
    const char *bad_channel[] = {"channel", "voice", NULL};
    const char *twice[] = {"channel", "email", "channel", "whatsapp", NULL};
    struct t_counts before, after;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    t_env_counts(env, &before);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        call(env, leads_http_opt_out, "POST", cases[i].body, l.id, &resp);
        ASSERT_EQ(400, resp.status);
        ASSERT_STREQ(cases[i].want, resp.body);
    }
    opt_in(env, l.id, bad_key, &resp);
    ASSERT_STREQ(BAD("\"property chanel should not exist\""), resp.body);
    opt_in(env, l.id, bad_channel, &resp);
    ASSERT_STREQ(BAD("\"channel must be one of the following values: email, whatsapp\""),
                 resp.body);
    opt_in(env, l.id, twice, &resp);
    ASSERT_STREQ(BAD("\"channel must be given once\""), resp.body);
    call(env, leads_http_opt_out, "POST", NULL, "not-a-uuid", &resp);
    ASSERT_EQ(400, resp.status);
    call(env, leads_http_opt_out, "POST", NULL, UNKNOWN_ID, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_STREQ("{\"message\":\"Lead " UNKNOWN_ID " not found\",\"error\":\"Not Found\","
                 "\"statusCode\":404}",
                 resp.body);
    opt_in(env, UNKNOWN_ID, NULL, &resp);
    ASSERT_EQ(404, resp.status);
    t_env_counts(env, &after);
    ASSERT_EQ(before.events, after.events);
    t_env_free(env);
}

TEST(http_manual_message_201_400_409)
{
    static const struct {
        const char *body;
        const char *want;
    } cases[] = {
        {"{}", BAD("\"channel must be one of the following values: email, whatsapp, linkedin, "
                   "voice, ads\",\"channelMessage should not be empty\",\"channelMessage must "
                   "be an object\"")},
        {"{\"channel\":\"email\",\"channelMessage\":\"hi\"}",
         BAD("\"channelMessage must be an object\"")},
        {"{\"channel\":\"email\",\"channelMessage\":{\"subject\":\"s\"}}",
         BAD("\"channelMessage.body should not be empty\"")},
        {"{\"channel\":\"email\",\"channelMessage\":{\"subject\":1,\"body\":\"b\",\"to\":\"x@y.z\"}"
         "}",
         BAD("\"property channelMessage.to should not exist\",\"channelMessage.subject must be a "
             "string\"")},
        {"{\"channel\":\"email\",\"channelMessage\":{\"subject\":\"a\\r\\nBcc: e@evil.test\","
         "\"body\":\"b\"}}",
         BAD("\"channelMessage.subject must not contain control or bidirectional formatting "
             "characters\"")},
        {"{\"channel\":\"whatsapp\",\"channelMessage\":{\"text\":\"\"}}",
         BAD("\"channelMessage.text should not be empty\"")},
        {"{\"channel\":\"linkedin\",\"channelMessage\":{\"text\":\"hi\"}}",
         BAD("\"channel linkedin has no sender: messages go out on email, whatsapp\"")},
        {"{\"channel\":\"whatsapp\",\"channelMessage\":{\"text\":\"hi\"},\"kind\":\"manual\"}",
         BAD("\"property kind should not exist\"")},
    };
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct t_counts before, after;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    call(env, leads_http_send_message, "POST",
         "{\"channel\":\"email\",\"channelMessage\":{\"subject\":\"Our offer\",\"body\":\"Hi "
         "Ana\"}}",
         l.id, &resp);
    ASSERT_EQ(201, resp.status);
    ASSERT_STREQ("email", t_json_str(resp.body, "channel"));
    ASSERT_STREQ("manual", t_json_str(resp.body, "kind"));
    ASSERT_STREQ("queued", t_json_str(resp.body, "status"));
    ASSERT_STREQ("outbound", t_json_str(resp.body, "direction"));
    ASSERT_STREQ("ana@example.com", t_json_str(resp.body, "channelMessage.to"));
    ASSERT_STREQ("Our offer", t_json_str(resp.body, "channelMessage.subject"));
    ASSERT_EQ(0, t_json_int(resp.body, "attempts"));

    t_env_counts(env, &before);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        call(env, leads_http_send_message, "POST", cases[i].body, l.id, &resp);
        ASSERT_EQ(400, resp.status);
        ASSERT_STREQ(cases[i].want, resp.body);
    }
    call(env, leads_http_opt_out, "POST", "{\"channel\":\"whatsapp\"}", l.id, &resp);
    ASSERT_EQ(200, resp.status);
    t_env_counts(env, &before);
    call(env, leads_http_send_message, "POST",
         "{\"channel\":\"whatsapp\",\"channelMessage\":{\"text\":\"hi\"}}", l.id, &resp);
    ASSERT_EQ(409, resp.status);
    ASSERT_STREQ(arena_printf(env->arena,
                              "{\"message\":\"Lead %s opted out of whatsapp: the message was "
                              "not queued\",\"error\":\"Conflict\",\"statusCode\":409}",
                              l.id),
                 resp.body);
    call(env, leads_http_send_message, "POST",
         "{\"channel\":\"email\",\"channelMessage\":{\"subject\":\"s\",\"body\":\"b\"}}",
         UNKNOWN_ID, &resp);
    ASSERT_EQ(404, resp.status);
    t_env_counts(env, &after);
    ASSERT_EQ(before.messages, after.messages);
    ASSERT_EQ(before.jobs, after.jobs);
    t_env_free(env);
}

/* ---- unsubscribe ----------------------------------------------------------------------------- */

typedef void (*unsub_fn)(const struct unsubscribe_config *c, const struct leads_deps *d,
                         struct http_request *req, struct http_response *resp);

static void
unsub(struct t_env *env, unsub_fn fn, const char *secret, const char *method, const char *token,
      struct http_response *resp)
{
    struct unsubscribe_config c = {secret};
    struct http_request req;

    build(env, &req, method, NULL, token);
    if (strcmp(method, "POST") == 0) { /* RFC 8058's body */
        req.content_type = "application/x-www-form-urlencoded";
        req.body = "List-Unsubscribe=One-Click";
        req.body_len = strlen(req.body);
    }
    memset(resp, 0, sizeof(*resp));
    fn(&c, &env->deps, &req, resp);
    ASSERT(resp->body != NULL);
    ASSERT_EQ(strlen(resp->body), resp->body_len);
}

static const char *
token_for(struct t_env *env, const char *lead_id)
{
    char *t = arena_alloc(env->arena, EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1);
    ASSERT_OK(email_unsubscribe_token(SECRET, strlen(SECRET), lead_id, t));
    return t;
}

TEST(http_unsubscribe_get_changes_nothing_post_opts_out)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct lead_opt_outs o;
    struct sp_error err = {0};
    struct t_counts before, after;
    const char *token;
    struct lead l;

    t_env_create(env, "Ana", "&ana@example.com", NULL, &l);
    token = token_for(env, l.id);
    t_env_counts(env, &before);
    unsub(env, unsubscribe_http_page, SECRET, "GET", token, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("text/html; charset=utf-8", resp.content_type);
    ASSERT_CONTAINS(resp.body, "<!DOCTYPE html>");
    ASSERT_CONTAINS(resp.body, "<form method=\"post\">");
    ASSERT_CONTAINS(resp.body, "<button type=\"submit\">Unsubscribe</button>");
    /* the address masked and escaped; nothing loaded from elsewhere */
    ASSERT_CONTAINS(resp.body, "<strong>&amp;***@example.com</strong>");
    ASSERT(strstr(resp.body, "ana@") == NULL);
    ASSERT(strstr(resp.body, "http") == NULL);
    ASSERT(strstr(resp.body, "<script") == NULL);
    ASSERT_CONTAINS(header_of(&resp, "Content-Security-Policy"), "default-src 'none'");
    ASSERT_STREQ("no-referrer", header_of(&resp, "Referrer-Policy"));
    ASSERT_STREQ("no-store", header_of(&resp, "Cache-Control"));
    t_env_counts(env, &after);
    ASSERT_EQ(before.events, after.events);
    ASSERT_OK(leads_get_opt_outs(&env->deps, l.id, env->arena, NULL, &o, &err));
    ASSERT_EQ(0, o.n);

    /* POST: opted out of email (source unsubscribe); again: 200, nothing new */
    unsub(env, unsubscribe_http_confirm, SECRET, "POST", token, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("text/html; charset=utf-8", resp.content_type);
    ASSERT_CONTAINS(resp.body, "You are unsubscribed");
    unsub(env, unsubscribe_http_confirm, SECRET, "POST", token, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_OK(leads_get_opt_outs(&env->deps, l.id, env->arena, NULL, &o, &err));
    ASSERT_EQ(1, o.n);
    ASSERT_EQ(CHANNEL_EMAIL, o.v[0].channel);
    ASSERT_EQ(OPT_OUT_SOURCE_UNSUBSCRIBE, o.v[0].source);
    ASSERT_STREQ("one_click_unsubscribe", o.v[0].reason);
    t_env_counts(env, &after);
    ASSERT_EQ(before.events + 1, after.events);

    /* the page now says so, without a form */
    unsub(env, unsubscribe_http_page, SECRET, "GET", token, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_CONTAINS(resp.body, "You are unsubscribed");
    ASSERT(strstr(resp.body, "<form") == NULL);
    t_env_free(env);
}

TEST(http_unsubscribe_bad_tokens_404)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct t_counts before, after;
    char forged[EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1];
    const char *bad[4];
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    memcpy(forged, token_for(env, l.id), sizeof(forged));
    forged[40] = forged[40] == 'a' ? 'b' : 'a';
    bad[0] = forged;
    bad[1] = "short";
    bad[2] = token_for(env, UNKNOWN_ID); /* a good MAC, but no such lead */
    bad[3] = l.id;
    t_env_counts(env, &before);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsub(env, unsubscribe_http_page, SECRET, "GET", bad[i], &resp);
        ASSERT_EQ(404, resp.status);
        ASSERT_STREQ("text/html; charset=utf-8", resp.content_type);
        ASSERT_CONTAINS(resp.body, "Link not valid");
        unsub(env, unsubscribe_http_confirm, SECRET, "POST", bad[i], &resp);
        ASSERT_EQ(404, resp.status);
        ASSERT_STREQ("{\"message\":\"Unsubscribe link not valid\",\"error\":\"Not Found\","
                     "\"statusCode\":404}",
                     resp.body);
    }
    /* without UNSUBSCRIBE_SECRET no token is good */
    unsub(env, unsubscribe_http_confirm, NULL, "POST", token_for(env, l.id), &resp);
    ASSERT_EQ(404, resp.status);
    unsub(env, unsubscribe_http_page, "", "GET", token_for(env, l.id), &resp);
    ASSERT_EQ(404, resp.status);
    t_env_counts(env, &after);
    ASSERT_EQ(before.events, after.events);
    t_env_free(env);
}

TEST(http_unsubscribe_storage_failure_is_503)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    env->faults.sticky = 1;
    unsub(env, unsubscribe_http_page, SECRET, "GET", token_for(env, l.id), &resp);
    ASSERT_EQ(503, resp.status);
    ASSERT_STREQ("text/html; charset=utf-8", resp.content_type);
    ASSERT_EQ(1, resp.retry_after);
    unsub(env, unsubscribe_http_confirm, SECRET, "POST", token_for(env, l.id), &resp);
    ASSERT_EQ(503, resp.status);
    ASSERT_EQ(1, resp.retry_after);
    fault_plan_arm(&env->faults, 0, 0);
    t_env_free(env);
}
