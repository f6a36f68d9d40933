/* test_generate_reply.c: reply -> generate-reply job -> answer + send-message job, on the fakes
 * and on SQL: the answer is written by the worker, not the request; it continues the
 * conversation; a job run twice writes one answer; model errors are retried (Retry-After
 * honoured) and then fall back to the template with an ai_reply_failed event (or to nothing);
 * a stop request gets no answer; a storage failure at any call of the job converges. */
#include "t.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "features/leads/domain/content_gen.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"

/* A scripted model: fails its first fail_first answers with fail_code (and retry_after_ms),
 * then answers "model says hi" on the lead's address; records what it was given. */
struct script_gen {
    struct content_gen base; /* first */
    int fail_first;
    int fail_code;
    long long retry_after_ms;
    int ncalls;
    int last_nconv;
    enum message_direction last_dirs[CONTENT_HISTORY_MAX];
};

static int
script_welcome(struct content_gen *g, const struct lead *l, enum channel c, struct arena *a,
               struct generated *out, struct sp_error *err)
{
    (void)g;
    (void)l;
    (void)c;
    (void)a;
    (void)out;
    return sp_error_set(err, SP_EINTERNAL, "welcome", "not used");
}

static int
script_answer(struct content_gen *base, const struct lead *l, enum channel c, const char *inbound,
              const struct conversation *conv, struct arena *a, struct generated *out,
              struct sp_error *err)
{
    struct script_gen *g = (struct script_gen *)base;
    struct jsonw w;

    (void)inbound;
    g->ncalls++;
    g->last_nconv = conv ? conv->n : 0;
    for (int i = 0; conv && i < conv->n && i < CONTENT_HISTORY_MAX; i++)
        g->last_dirs[i] = conv->messages[i].direction;
    if (g->ncalls <= g->fail_first) {
        sp_error_set(err, g->fail_code, "provider", "ai: scripted failure %d", g->ncalls);
        if (err)
            err->retry_after_ms = g->retry_after_ms;
        return g->fail_code;
    }
    jsonw_init(&w, a, 4096);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "to", lead_address_for(l, c));
    jsonw_kstr(&w, "text", "model says hi");
    jsonw_obj_end(&w);
    out->to = lead_address_for(l, c);
    out->channel_message = jsonw_finish_or(&w, "{}");
    return SP_OK;
}

static const struct content_gen_ops script_ops = {"script", script_welcome, script_answer};

static void
script_init(struct script_gen *g, struct t_env *env, int fail_first, int code)
{
    memset(g, 0, sizeof(*g));
    g->base.ops = &script_ops;
    g->fail_first = fail_first;
    g->fail_code = code;
    env->mdeps.gen = &g->base;
}

static int
count_events(struct t_env *env, const char *lead_id, enum lead_event_type type,
             struct lead_event *last)
{
    struct lead_event *e;
    int n, k = 0;
    t_env_events(env, lead_id, &e, &n);
    for (int i = 0; i < n; i++)
        if (e[i].type == type) {
            k++;
            if (last)
                *last = e[i];
        }
    return k;
}

/* A phone-only lead whose welcome is sent, then a reply on WhatsApp: only its job is due. Each
 * lead of an env has a phone of its own (one lead per person). */
static void
lead_with_reply(struct t_env *env, const char *text, struct lead *l, char *mid)
{
    struct sp_error err = {0};
    char content[256], phone[32];
    struct reply_input in = {NULL, CHANNEL_WHATSAPP, content};
    struct t_counts c;

    t_env_counts(env, &c);
    snprintf(phone, sizeof(phone), "+3519123456%02d", 78 + c.leads);
    t_env_create(env, "Ana", NULL, phone, l);
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* the welcome */
    snprintf(content, sizeof(content), "{\"text\":\"%s\"}", text);
    in.lead_id = l->id;
    env->clock.now += 1000;
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
}

static struct job
job_named(struct t_env *env, const char *lead_id, const char *name, int *count)
{
    struct job *j, found;
    int n;

    memset(&found, 0, sizeof(found));
    *count = 0;
    t_env_jobs(env, lead_id, &j, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(j[i].name, name) == 0) {
            found = j[i];
            ++*count;
        }
    return found;
}

TEST_ALL(unit_generate_reply_answer_comes_from_the_job)
{
    struct t_env *env = t_env_new(backend);
    char mid[SP_UUID_LEN + 1], want[SP_UUID_LEN + 1];
    struct script_gen g;
    struct message *m;
    struct job j;
    int nm, nj;
    struct lead l;

    script_init(&g, env, 0, 0);
    lead_with_reply(env, "What does it cost?", &l, mid);
    /* the request stored the reply and its job, and no answer */
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(2, nm);
    j = job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
    ASSERT_EQ(1, nj);
    ASSERT_STREQ(mid, j.key);
    ASSERT_STREQ(mid, t_json_str(j.data, "messageId"));
    ASSERT_STREQ(l.id, t_json_str(j.data, "leadId"));
    ASSERT_STREQ("whatsapp", t_json_str(j.data, "channel"));
    ASSERT_EQ(JOB_WAITING, j.state);
    ASSERT_EQ(0, g.ncalls);

    /* the worker: the model sees the conversation, oldest first (welcome, then the reply) */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, g.ncalls);
    ASSERT_EQ(2, g.last_nconv);
    ASSERT_EQ(MESSAGE_OUTBOUND, g.last_dirs[0]);
    ASSERT_EQ(MESSAGE_INBOUND, g.last_dirs[1]);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(3, nm);
    leads_answer_id(mid, want);
    ASSERT_STREQ(want, m[2].id);
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, m[2].kind);
    ASSERT_EQ(MESSAGE_QUEUED, m[2].status);
    ASSERT_STREQ("model says hi", t_json_str(m[2].channel_message, "text"));
    j = job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    j = job_named(env, l.id, SEND_MESSAGE_JOB, &nj);
    ASSERT_EQ(2, nj);
    ASSERT_STREQ(want, j.key);

    /* then the send */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(MESSAGE_SENT, m[2].status);
    ASSERT_EQ(2, env->sender.ncalls);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_AI_REPLY_SENT, NULL));
    t_env_free(env);
}

/* A second generate-reply job for the same reply (a crash after the model answered, another
 * producer's duplicate): the answer exists, the job completes, nothing is written twice. */
TEST_ALL(unit_generate_reply_twice_writes_one_answer)
{
    struct t_env *env = t_env_new(backend);
    char mid[SP_UUID_LEN + 1], job_id[JOB_ID_MAX], key[SP_UUID_LEN + 1];
    struct sp_error err = {0};
    struct script_gen g;
    struct job_spec spec;
    struct t_counts c0, c1;
    struct message *m;
    struct lead l;
    int nm, nj;

    script_init(&g, env, 0, 0);
    lead_with_reply(env, "hello", &l, mid);
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* the answer */
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* its send */
    t_env_counts(env, &c0);

    memset(&spec, 0, sizeof(spec));
    spec.name = GENERATE_REPLY_JOB;
    spec.group = l.id;
    sp_uuid_v4(key); /* another job id (a UUID: the key column's type on PostgreSQL) */
    spec.key = key;
    spec.data = arena_printf(env->arena, "{\"messageId\":\"%s\"}", mid);
    spec.max_attempts = 3;
    spec.backoff_ms = 1000;
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(job_queue_enqueue(env->queue, &spec, env->clock.now, job_id, &err));
    ASSERT_OK(lead_repo_commit(env->repo, &err));

    env->clock.now += 10;
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* the duplicate */
    ASSERT_EQ(1, g.ncalls);              /* found answered in the claim: no model call */
    t_env_counts(env, &c1);
    ASSERT_EQ(c0.messages, c1.messages);
    ASSERT_EQ(c0.events, c1.events);
    ASSERT_EQ(c0.jobs + 1, c1.jobs);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(3, nm);
    job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
    ASSERT_EQ(2, nj);
    ASSERT_EQ(JOB_COMPLETED, job_named(env, l.id, GENERATE_REPLY_JOB, &nj).state);
    t_env_free(env);
}

/* Retryable model errors: retried with the job's backoff, or the provider's longer
 * Retry-After; the last attempt falls back to the template, with an ai_reply_failed event. */
TEST_ALL(unit_generate_reply_retries_then_falls_back_to_the_template)
{
    struct t_env *env = t_env_new(backend);
    char mid[SP_UUID_LEN + 1], want[SP_UUID_LEN + 1];
    struct script_gen g;
    struct lead_event e = {0};
    struct message *m;
    struct job j;
    int64_t t0;
    struct lead l;
    int nm, nj;

    script_init(&g, env, 100, SP_EPROVIDER);
    g.retry_after_ms = 7000; /* longer than the first backoff (1000 ms) */
    lead_with_reply(env, "What is the price?", &l, mid);
    t0 = env->clock.now;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    j = job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
    ASSERT_EQ(JOB_DELAYED, j.state);
    ASSERT_EQ(t0 + 7000, j.run_at);
    ASSERT_STREQ("ai: scripted failure 1", j.last_error);
    ASSERT_EQ(0, t_env_tick(env, NULL)); /* not due yet */

    g.retry_after_ms = 0;
    env->clock.now = t0 + 7000;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    j = job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
    ASSERT_EQ(JOB_DELAYED, j.state);
    ASSERT_EQ(t0 + 7000 + 2000, j.run_at); /* exponential: 1000 * 2 */
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(2, nm);
    ASSERT_EQ(0, count_events(env, l.id, EVENT_AI_REPLY_FAILED, NULL));

    env->clock.now = t0 + 9000;
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* the third and last attempt */
    ASSERT_EQ(3, g.ncalls);
    j = job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(3, nm);
    leads_answer_id(mid, want);
    ASSERT_STREQ(want, m[2].id);
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, m[2].kind);
    ASSERT_STREQ("pricing", t_json_str(m[2].channel_message, "intent")); /* the template */
    ASSERT_EQ(1, count_events(env, l.id, EVENT_AI_REPLY_FAILED, &e));
    ASSERT_STREQ("template", t_json_str(e.payload, "fallback"));
    ASSERT_STREQ(mid, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ(want, t_json_str(e.payload, "answerId"));
    ASSERT_STREQ("EPROVIDER", t_json_str(e.payload, "code"));
    ASSERT_STREQ("ai: scripted failure 3", t_json_str(e.payload, "error"));
    t_env_free(env);
}

/* A permanent model error (a refused key, an unknown model) falls back at once; with
 * AI_FALLBACK=none there is no answer, the job fails and the timeline says so. */
TEST_ALL(unit_generate_reply_permanent_error_and_no_fallback)
{
    struct t_env *env = t_env_new(backend);
    char mid[SP_UUID_LEN + 1];
    struct script_gen g;
    struct lead_event e = {0};
    struct message *m;
    struct lead l;
    int nm, nj;

    script_init(&g, env, 100, SP_EPERMANENT);
    env->mdeps.fallback = NULL;
    lead_with_reply(env, "hi", &l, mid);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, g.ncalls);
    ASSERT_EQ(JOB_FAILED, job_named(env, l.id, GENERATE_REPLY_JOB, &nj).state);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(2, nm);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_AI_REPLY_FAILED, &e));
    ASSERT_STREQ("none", t_json_str(e.payload, "fallback"));
    ASSERT(t_json_str(e.payload, "answerId") == NULL);
    ASSERT_EQ(0, t_env_tick(env, NULL));
    t_env_free(env);
}

/* "STOP", "unsubscribe me": no generate-reply job, an ai_reply_skipped event. */
TEST_ALL(unit_generate_reply_stop_request_gets_no_answer)
{
    static const char *const stops[] = {"STOP", "Unsubscribe me please", "remove me from this"};
    struct t_env *env = t_env_new(backend);
    struct lead_event e = {0};
    struct script_gen g;
    int nj;

    script_init(&g, env, 0, 0);
    for (int i = 0; i < 3; i++) {
        char mid[SP_UUID_LEN + 1];
        struct lead l;
        lead_with_reply(env, stops[i], &l, mid);
        job_named(env, l.id, GENERATE_REPLY_JOB, &nj);
        ASSERT_EQ(0, nj);
        ASSERT_EQ(1, count_events(env, l.id, EVENT_AI_REPLY_SKIPPED, &e));
        ASSERT_STREQ(mid, t_json_str(e.payload, "messageId"));
        ASSERT_STREQ("stop_requested", t_json_str(e.payload, "reason"));
        {
            struct lead got;
            t_env_lead(env, l.id, &got);
            ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
        }
        ASSERT_EQ(0, t_env_tick(env, NULL));
    }
    ASSERT_EQ(0, g.ncalls);
    t_env_free(env);
}

/* A storage failure at any call of the generate-reply job's tick: whatever the call, the job
 * ends with exactly one answer, one send job for it, one message_queued event for it. */
TEST_ALL(unit_generate_reply_fault_at_every_call_converges)
{
    int n, injected_somewhere = 0;

    for (n = 1; n < 100; n++) {
        struct t_env *env = t_env_new(backend);
        char mid[SP_UUID_LEN + 1], want[SP_UUID_LEN + 1];
        struct sp_error err = {0};
        struct script_gen g;
        struct message *m;
        struct lead_event *e;
        int did = 0, rc, injected, nm, ne, nj, queued = 0;
        int64_t next_due = 0;
        struct lead l;

        script_init(&g, env, 0, 0);
        lead_with_reply(env, "tell me more", &l, mid);
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_delivery_tick(&env->mdeps, env->arena, &did, &next_due, &err);
        injected = env->faults.injected;
        fault_plan_arm(&env->faults, 0, 0);
        ASSERT_EQ(0, env->faults.open_tx);
        if (!injected) {
            ASSERT_OK(rc);
            t_env_free(env);
            break;
        }
        injected_somewhere = 1;
        for (int ticks = 0; ticks < 10; ticks++) {
            if (!t_env_tick(env, NULL))
                env->clock.now += T_LEASE_MS;
            if (job_named(env, l.id, GENERATE_REPLY_JOB, &nj).state == JOB_COMPLETED &&
                job_named(env, l.id, SEND_MESSAGE_JOB, &nj).state == JOB_COMPLETED && nj == 2)
                break;
        }
        t_env_messages(env, l.id, &m, &nm);
        if (nm != 3)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): %d messages", n, env->faults.last_op,
                   nm);
        leads_answer_id(mid, want);
        ASSERT_STREQ(want, m[2].id);
        ASSERT_EQ(MESSAGE_SENT, m[2].status);
        job_named(env, l.id, SEND_MESSAGE_JOB, &nj);
        ASSERT_EQ(2, nj);
        t_env_events(env, l.id, &e, &ne);
        for (int i = 0; i < ne; i++)
            queued += e[i].type == EVENT_MESSAGE_QUEUED &&
                      strcmp(t_json_str(e[i].payload, "messageId"), want) == 0;
        ASSERT_EQ(1, queued);
        ASSERT(g.ncalls >= 1 && g.ncalls <= 2);
        t_env_free(env);
    }
    ASSERT(injected_somewhere);
    ASSERT(n > 3);
}
