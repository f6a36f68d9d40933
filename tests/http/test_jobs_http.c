/* test_jobs_http.c: the job routes (GET /jobs, GET /jobs/:id, POST /jobs/:id/retry) called
 * directly with in-memory requests on the fake storage: exact bodies of the job record and the
 * page, the 400s naming every bad parameter, 404, 409 and 503 (docs/http-api.md). */
#include "t.h"

#include "core/arena.h"
#include "core/http.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "features/leads/presentation/jobs_http.h"

typedef void (*handler_fn)(const struct leads_deps *d, struct http_request *req,
                           struct http_response *resp);

#define BAD(...) "{\"message\":[" __VA_ARGS__ "],\"error\":\"Bad Request\",\"statusCode\":400}"

/* Calls `fn` like the router does: `id` (may be NULL) is :id, kv[0..2n) the query (decoded). */
static void
call(struct t_env *env, handler_fn fn, const char *method, const char *id, const char *const *kv,
     int n, struct http_response *resp)
{
    struct http_request req;

    memset(&req, 0, sizeof(req));
    memset(resp, 0, sizeof(*resp));
    req.method = method;
    req.path = id ? arena_printf(env->arena, "/jobs/%s", id) : "/jobs";
    req.arena = env->arena;
    if (id) {
        req.nparams = 1;
        req.params[0] = id;
    }
    for (int i = 0; i < n; i++) {
        req.query_keys[i] = kv[2 * i];
        req.query_values[i] = kv[2 * i + 1];
    }
    req.nquery = n;
    fn(&env->deps, &req, resp);
    ASSERT(resp->body != NULL);
    ASSERT_EQ(strlen(resp->body), resp->body_len);
}

static void
list(struct t_env *env, const char *const *kv, int n, struct http_response *resp)
{
    call(env, jobs_http_list, "GET", NULL, kv, n, resp);
}

/* A lead whose email welcome failed for good (job 1) and whose WhatsApp welcome was sent
 * (job 2). */
static void
one_failed_one_sent(struct t_env *env, struct lead *l)
{
    env->sender.fail_first = 1;
    env->sender.fail_code = SP_EPERMANENT;
    t_env_create(env, "Ana", "ana@example.com", "+15550001111", l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, t_env_tick(env, NULL));
}

/* GET /jobs/:id's body, in the arena. */
static const char *
record(struct t_env *env, const char *id)
{
    struct http_response resp;

    call(env, jobs_http_get, "GET", id, NULL, 0, &resp);
    ASSERT_EQ(200, resp.status);
    return resp.body;
}

TEST(http_jobs_record_and_page_shapes)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct message *m;
    struct lead l;
    char want[2048];
    int n;

    one_failed_one_sent(env, &l);
    t_env_messages(env, l.id, &m, &n);
    ASSERT_EQ(2, n);
    call(env, jobs_http_get, "GET", "1", NULL, 0, &resp);
    ASSERT_EQ(200, resp.status);
    snprintf(want, sizeof(want),
             "{\"id\":\"1\",\"leadId\":\"%s\",\"name\":\"send-message\",\"messageId\":\"%s\","
             "\"state\":\"failed\",\"attemptsMade\":1,\"maxAttempts\":3,"
             "\"lastError\":\"fake: scripted failure 1\","
             "\"createdAt\":\"2026-11-27T14:37:45.686Z\","
             "\"updatedAt\":\"2026-11-27T14:37:45.686Z\",\"runAt\":\"2026-11-27T14:37:45.686Z\","
             "\"finishedAt\":\"2026-11-27T14:37:45.686Z\"}",
             l.id, m[0].id);
    ASSERT_STREQ(want, resp.body);

    /* newest first, one per page, then the last page */
    list(env, (const char *[]){"limit", "1"}, 1, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ(
        arena_printf(env->arena, "{\"items\":[%s],\"nextCursor\":\"jobs.2\"}", record(env, "2")),
        resp.body);
    ASSERT_CONTAINS(resp.body, "\"state\":\"completed\"");
    list(env, (const char *[]){"limit", "1", "cursor", "jobs.2"}, 2, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ(arena_printf(env->arena, "{\"items\":[%s],\"nextCursor\":null}", record(env, "1")),
                 resp.body);
    list(env, NULL, 0, &resp); /* the default page holds both */
    ASSERT_STREQ(arena_printf(env->arena, "{\"items\":[%s,%s],\"nextCursor\":null}",
                              record(env, "2"), record(env, "1")),
                 resp.body);
    /* filters */
    list(env, (const char *[]){"state", "failed", "name", "send-message"}, 2, &resp);
    ASSERT_STREQ(arena_printf(env->arena, "{\"items\":[%s],\"nextCursor\":null}", record(env, "1")),
                 resp.body);
    list(env, (const char *[]){"name", "generate-reply"}, 1, &resp);
    ASSERT_STREQ("{\"items\":[],\"nextCursor\":null}", resp.body);
    t_env_free(env);
}

TEST(http_jobs_list_400_names_every_bad_parameter)
{
    static const struct {
        int n;
        const char *kv[8];
        const char *want;
    } bad[] = {
        {1,
         {"state", "dead"},
         BAD("\"state must be one of the following values: waiting, delayed, active, completed, "
             "failed\"")},
        {1, {"limit", "0"}, BAD("\"limit must be an integer from 1 to 100\"")},
        {1, {"limit", "101"}, BAD("\"limit must be an integer from 1 to 100\"")},
        {1, {"limit", "2x"}, BAD("\"limit must be an integer from 1 to 100\"")},
        {1, {"limit", ""}, BAD("\"limit must be an integer from 1 to 100\"")},
        {1, {"cursor", "x"}, BAD("\"cursor is not valid\"")},
        {1, {"cursor", "jobs."}, BAD("\"cursor is not valid\"")},
        {1, {"cursor", "jobs.abc"}, BAD("\"cursor is not valid\"")}, /* the queue's check */
        {1, {"name", ""}, BAD("\"name should not be empty\"")},
        {1, {"name", "a\tb"}, BAD("\"name must be text without control characters\"")},
        {1, {"sort", "asc"}, BAD("\"property sort should not exist\"")},
        {2, {"state", "failed", "state", "waiting"}, BAD("\"state must be given once\"")},
        {4,
         {"sort", "asc", "state", "dead", "limit", "1000", "cursor", "nope"},
         BAD("\"property sort should not exist\","
             "\"state must be one of the following values: waiting, delayed, active, completed, "
             "failed\",\"limit must be an integer from 1 to 100\",\"cursor is not valid\"")},
    };
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        list(env, bad[i].kv, bad[i].n, &resp);
        if (resp.status != 400 || strcmp(bad[i].want, resp.body) != 0)
            t_fail(__FILE__, __LINE__, "case %zu:\n      want 400 %s\n      got  %d %s", i,
                   bad[i].want, resp.status, resp.body);
    }
    t_env_free(env);
}

TEST(http_jobs_retry_200_409_404_400)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct lead l;

    one_failed_one_sent(env, &l);
    env->clock.now = T_NOW + 1000;
    call(env, jobs_http_retry, "POST", "1", NULL, 0, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("1", t_json_str(resp.body, "id"));
    ASSERT_STREQ("waiting", t_json_str(resp.body, "state"));
    ASSERT_EQ(0, t_json_int(resp.body, "attemptsMade"));
    ASSERT_CONTAINS(resp.body, "\"lastError\":null");
    ASSERT_CONTAINS(resp.body, "\"finishedAt\":null");
    ASSERT_STREQ("2026-11-27T14:37:46.686Z", t_json_str(resp.body, "runAt"));

    call(env, jobs_http_retry, "POST", "1", NULL, 0, &resp);
    ASSERT_EQ(409, resp.status);
    ASSERT_STREQ("{\"message\":\"Job 1 is waiting: only a failed job can be retried\","
                 "\"error\":\"Conflict\",\"statusCode\":409}",
                 resp.body);
    call(env, jobs_http_retry, "POST", "2", NULL, 0, &resp);
    ASSERT_EQ(409, resp.status);
    ASSERT_CONTAINS(resp.body, "Job 2 is completed");
    call(env, jobs_http_retry, "POST", "77", NULL, 0, &resp);
    ASSERT_STREQ("{\"message\":\"Job 77 not found\",\"error\":\"Not Found\",\"statusCode\":404}",
                 resp.body);
    call(env, jobs_http_get, "GET", "77", NULL, 0, &resp);
    ASSERT_EQ(404, resp.status);
    for (const char *const *id = (const char *const[]){"abc", "0", "-1", "1.5", "a b", NULL}; *id;
         id++) {
        call(env, jobs_http_retry, "POST", *id, NULL, 0, &resp);
        ASSERT_STREQ("{\"message\":\"Validation failed (job id is expected)\","
                     "\"error\":\"Bad Request\",\"statusCode\":400}",
                     resp.body);
        call(env, jobs_http_get, "GET", *id, NULL, 0, &resp);
        ASSERT_EQ(400, resp.status);
    }
    t_env_free(env);
}

TEST(http_jobs_storage_failures_are_503)
{
    struct t_env *env = t_env_new(T_MEM);
    struct http_response resp;
    struct lead l;

    one_failed_one_sent(env, &l);
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    list(env, NULL, 0, &resp);
    ASSERT_EQ(503, resp.status);
    ASSERT_EQ(1, resp.retry_after);
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    call(env, jobs_http_get, "GET", "1", NULL, 0, &resp);
    ASSERT_EQ(503, resp.status);
    fault_plan_arm(&env->faults, 3, SP_EUNAVAIL); /* get, begin, then the lead's lock */
    call(env, jobs_http_retry, "POST", "1", NULL, 0, &resp);
    ASSERT_EQ(503, resp.status);
    fault_plan_arm(&env->faults, 0, 0);
    call(env, jobs_http_get, "GET", "1", NULL, 0, &resp);
    ASSERT_STREQ("failed", t_json_str(resp.body, "state"));
    t_env_free(env);
}
