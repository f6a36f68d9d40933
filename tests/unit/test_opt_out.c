/* test_opt_out.c: do not contact on the fakes and both SQL backends: opting a lead out of a
 * channel and back in (events, the first opt-out standing, validation), a reply asking to stop,
 * the worker suppressing every kind of message to an opted-out channel at send time, and the
 * operator's manual messages; plus the fail-every-call loops showing that a storage failure at
 * any point leaves all or nothing, and that a suppression converges to exactly one. */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"

#include <string.h>

#define BOTH ((1u << CHANNEL_EMAIL) | (1u << CHANNEL_WHATSAPP))
#define EMAIL_ONLY (1u << CHANNEL_EMAIL)
#define WA_ONLY (1u << CHANNEL_WHATSAPP)

static int
count_events(struct t_env *env, const char *lead_id, enum lead_event_type type)
{
    struct lead_event *e;
    int n, k = 0;
    t_env_events(env, lead_id, &e, &n);
    for (int i = 0; i < n; i++)
        k += e[i].type == type;
    return k;
}

/* The newest event of `type` (fails the test when there is none). */
static struct lead_event
last_of(struct t_env *env, const char *lead_id, enum lead_event_type type)
{
    struct lead_event *e;
    int n;
    t_env_events(env, lead_id, &e, &n);
    for (int i = n - 1; i >= 0; i--)
        if (e[i].type == type)
            return e[i];
    t_fail(__FILE__, __LINE__, "no %s event", lead_event_type_name(type));
    return e[0];
}

static struct message
message_at(struct t_env *env, const char *lead_id, int i)
{
    struct message *m;
    int n;
    t_env_messages(env, lead_id, &m, &n);
    ASSERT(i < n);
    return m[i];
}

static struct job
job_of(struct t_env *env, const char *lead_id, const char *message_id)
{
    struct job *j;
    int n;
    t_env_jobs(env, lead_id, &j, &n);
    for (int i = 0; i < n; i++)
        if (j[i].key && strcmp(j[i].key, message_id) == 0)
            return j[i];
    t_fail(__FILE__, __LINE__, "no job for message %s", message_id);
    return j[0];
}

static void
opt_out(struct t_env *env, const char *lead_id, unsigned channels, const char *reason,
        struct lead_opt_outs *out)
{
    struct opt_out_input in = {lead_id, channels, reason, OPT_OUT_SOURCE_API};
    struct sp_error err = {0};
    ASSERT_OK(leads_opt_out(&env->deps, &in, env->arena, out, &err));
}

static struct lead_opt_outs
stored_opt_outs(struct t_env *env, const char *lead_id)
{
    struct lead_opt_outs o;
    struct sp_error err = {0};
    ASSERT_OK(lead_repo_opt_out_list(env->repo, lead_id, env->arena, &o, &err));
    return o;
}

/* ---- opting out and back in ---------------------------------------------------------------- */

TEST_ALL(unit_opt_out_records_and_opts_back_in)
{
    struct t_env *env = t_env_new(backend);
    struct lead_opt_outs o;
    struct lead_details det;
    struct sp_error err = {0};
    struct lead_event e;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    env->clock.now = T_NOW + 10;
    opt_out(env, l.id, EMAIL_ONLY, "asked by phone", &o);
    ASSERT_EQ(1, o.n);
    ASSERT_EQ(CHANNEL_EMAIL, o.v[0].channel);
    ASSERT_STREQ("asked by phone", o.v[0].reason);
    ASSERT_EQ(OPT_OUT_SOURCE_API, o.v[0].source);
    ASSERT_EQ(T_NOW + 10, o.v[0].at);
    e = last_of(env, l.id, EVENT_OPTED_OUT);
    ASSERT_JSON_STORED(backend,
                       "{\"channel\":\"email\",\"reason\":\"asked by phone\",\"source\":\"api\"}",
                       e.payload);
    ASSERT_STREQ(l.id, t_json_str(e.correlation_ids, "leadId"));
    ASSERT_EQ(T_NOW + 10, e.created_at);

    /* again, and then all channels: the first email opt-out stands, whatsapp is added */
    env->clock.now = T_NOW + 20;
    opt_out(env, l.id, EMAIL_ONLY, "again", &o);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_OPTED_OUT));
    opt_out(env, l.id, BOTH, NULL, &o);
    ASSERT_EQ(2, o.n);
    ASSERT_EQ(CHANNEL_EMAIL, o.v[0].channel);
    ASSERT_STREQ("asked by phone", o.v[0].reason);
    ASSERT_EQ(T_NOW + 10, o.v[0].at);
    ASSERT_EQ(CHANNEL_WHATSAPP, o.v[1].channel);
    ASSERT(o.v[1].reason == NULL);
    ASSERT_EQ(T_NOW + 20, o.v[1].at);
    ASSERT_EQ(2, count_events(env, l.id, EVENT_OPTED_OUT));

    /* the details show them, in the same snapshot as the lead */
    ASSERT_OK(leads_get_details(&env->deps, l.id, env->arena, &det, &err));
    ASSERT_EQ(2, det.opt_outs.n);

    /* back in on whatsapp: an opted_in event; a second time changes nothing */
    ASSERT_OK(leads_opt_in(&env->deps, l.id, WA_ONLY, env->arena, &o, &err));
    ASSERT_EQ(1, o.n);
    ASSERT_EQ(CHANNEL_EMAIL, o.v[0].channel);
    e = last_of(env, l.id, EVENT_OPTED_IN);
    ASSERT_JSON_STORED(backend, "{\"channel\":\"whatsapp\",\"source\":\"api\"}", e.payload);
    ASSERT_OK(leads_opt_in(&env->deps, l.id, WA_ONLY, env->arena, &o, &err));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_OPTED_IN));
    ASSERT_OK(leads_opt_in(&env->deps, l.id, BOTH, env->arena, &o, &err));
    ASSERT_EQ(0, o.n);
    ASSERT_EQ(0, stored_opt_outs(env, l.id).n);
    ASSERT_EQ(2, count_events(env, l.id, EVENT_OPTED_IN));
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

TEST(unit_opt_out_refuses_bad_input_and_unknown_leads)
{
    static const struct {
        unsigned channels;
        const char *reason;
        const char *field;
    } bad[] = {
        {0, NULL, "channel"},
        {1u << CHANNEL_LINKEDIN, NULL, "channel"},
        {BOTH | (1u << CHANNEL_VOICE), NULL, "channel"},
        {EMAIL_ONLY, "", "reason"},
        {EMAIL_ONLY, "line\nbreak", "reason"},
        {EMAIL_ONLY, "\xff", "reason"},
    };
    struct t_env *env = t_env_new(T_MEM);
    char long_reason[LEAD_OPT_OUT_REASON_MAX + 2];
    struct lead_opt_outs o;
    struct t_counts before, after;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    t_env_counts(env, &before);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct opt_out_input in = {l.id, bad[i].channels, bad[i].reason, OPT_OUT_SOURCE_API};
        struct sp_error err = {0};
        ASSERT_EQ(SP_EINVAL, leads_opt_out(&env->deps, &in, env->arena, &o, &err));
        ASSERT_STREQ(bad[i].field, err.field);
        ASSERT_EQ(0, o.n);
    }
    memset(long_reason, 'x', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    {
        struct opt_out_input in = {l.id, EMAIL_ONLY, long_reason, OPT_OUT_SOURCE_API};
        struct sp_error err = {0};
        ASSERT_EQ(SP_EINVAL, leads_opt_out(&env->deps, &in, env->arena, &o, &err));
        ASSERT_STREQ("reason must be shorter than or equal to 500 characters", err.msg);
        long_reason[LEAD_OPT_OUT_REASON_MAX] = '\0'; /* exactly the limit is fine */
        sp_error_clear(&err);
        ASSERT_OK(leads_opt_out(&env->deps, &in, env->arena, &o, &err));
        ASSERT_OK(leads_opt_in(&env->deps, l.id, EMAIL_ONLY, env->arena, &o, &err));
        t_env_counts(env, &before);
    }
    {
        struct opt_out_input in = {"2728542f-1069-401c-a54f-4ab8a3a46a06", BOTH, NULL,
                                   OPT_OUT_SOURCE_API};
        struct sp_error err = {0};
        ASSERT_EQ(SP_ENOTFOUND, leads_opt_out(&env->deps, &in, env->arena, &o, &err));
        sp_error_clear(&err);
        ASSERT_EQ(SP_ENOTFOUND, leads_opt_in(&env->deps, in.lead_id, BOTH, env->arena, &o, &err));
        sp_error_clear(&err);
        ASSERT_EQ(SP_EINVAL, leads_opt_in(&env->deps, l.id, 0, env->arena, &o, &err));
        sp_error_clear(&err);
        ASSERT_EQ(SP_ENOTFOUND,
                  leads_get_opt_outs(&env->deps, in.lead_id, env->arena, NULL, &o, &err));
    }
    t_env_counts(env, &after);
    ASSERT_EQ(before.events, after.events);
    ASSERT_EQ(0, stored_opt_outs(env, l.id).n);
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

/* A storage failure at any call of an opt-out or an opt-in leaves nothing behind (no opt-out
 * without its event, no event without its opt-out) and closes its unit of work. */
TEST(unit_opt_out_fault_at_every_call_is_all_or_nothing)
{
    int n, injected_somewhere = 0;

    for (n = 1; n < 50; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct opt_out_input in;
        struct sp_error err = {0};
        struct lead_opt_outs o;
        struct lead l;
        int rc, injected, events;

        t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
        events = count_events(env, l.id, EVENT_LEAD_ADDED) +
                 count_events(env, l.id, EVENT_MESSAGE_QUEUED);
        in = (struct opt_out_input){l.id, BOTH, "no more", OPT_OUT_SOURCE_API};
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_opt_out(&env->deps, &in, env->arena, &o, &err);
        injected = env->faults.injected;
        fault_plan_arm(&env->faults, 0, 0);
        ASSERT_EQ(0, env->faults.open_tx);
        if (!injected) {
            ASSERT_OK(rc);
            ASSERT_EQ(2, o.n);
            ASSERT_EQ(2, count_events(env, l.id, EVENT_OPTED_OUT));
            t_env_free(env);
            break;
        }
        injected_somewhere = 1;
        ASSERT_EQ(SP_EUNAVAIL, rc);
        ASSERT_EQ(0, o.n);
        ASSERT_EQ(0, stored_opt_outs(env, l.id).n);
        ASSERT_EQ(0, count_events(env, l.id, EVENT_OPTED_OUT));
        ASSERT_EQ(events, count_events(env, l.id, EVENT_LEAD_ADDED) +
                              count_events(env, l.id, EVENT_MESSAGE_QUEUED));
        t_env_free(env);
    }
    ASSERT(injected_somewhere);
    ASSERT(n > 4);

    for (n = 1; n < 50; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct sp_error err = {0};
        struct lead_opt_outs o;
        struct lead l;
        int rc, injected;

        t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
        opt_out(env, l.id, BOTH, NULL, &o);
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_opt_in(&env->deps, l.id, BOTH, env->arena, &o, &err);
        injected = env->faults.injected;
        fault_plan_arm(&env->faults, 0, 0);
        ASSERT_EQ(0, env->faults.open_tx);
        if (!injected) {
            ASSERT_OK(rc);
            ASSERT_EQ(0, stored_opt_outs(env, l.id).n);
            ASSERT_EQ(2, count_events(env, l.id, EVENT_OPTED_IN));
            t_env_free(env);
            break;
        }
        ASSERT_EQ(SP_EUNAVAIL, rc);
        ASSERT_EQ(2, stored_opt_outs(env, l.id).n);
        ASSERT_EQ(0, count_events(env, l.id, EVENT_OPTED_IN));
        t_env_free(env);
    }
    ASSERT(n > 3);
}

/* ---- a reply asking to stop ------------------------------------------------------------------ */

TEST_ALL(unit_opt_out_stop_reply_opts_out_of_its_channel)
{
    struct t_env *env = t_env_new(backend);
    struct reply_input in = {NULL, CHANNEL_EMAIL, "{\"subject\":\"Re\",\"body\":\"Unsubscribe\"}"};
    char mid[SP_UUID_LEN + 1];
    struct sp_error err = {0};
    struct lead_opt_outs o;
    struct lead_event e;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    in.lead_id = l.id;
    env->clock.now = T_NOW + 5;
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    o = stored_opt_outs(env, l.id);
    ASSERT_EQ(1, o.n);
    ASSERT_EQ(CHANNEL_EMAIL, o.v[0].channel);
    ASSERT_EQ(OPT_OUT_SOURCE_REPLY, o.v[0].source);
    ASSERT_STREQ("stop_requested", o.v[0].reason);
    ASSERT_EQ(T_NOW + 5, o.v[0].at);
    e = last_of(env, l.id, EVENT_OPTED_OUT);
    ASSERT_STREQ("reply", t_json_str(e.payload, "source"));
    ASSERT_STREQ(mid, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ(mid, t_json_str(e.correlation_ids, "messageId"));
    ASSERT_STREQ("stop_requested",
                 t_json_str(last_of(env, l.id, EVENT_AI_REPLY_SKIPPED).payload, "reason"));

    /* another email reply: no answer while opted out; WhatsApp is still answered */
    in.content = "{\"subject\":\"Re\",\"body\":\"what does it cost?\"}";
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    ASSERT_STREQ("opted_out",
                 t_json_str(last_of(env, l.id, EVENT_AI_REPLY_SKIPPED).payload, "reason"));
    in.channel = CHANNEL_WHATSAPP;
    in.content = "{\"text\":\"what does it cost?\"}";
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    ASSERT_EQ(2, count_events(env, l.id, EVENT_AI_REPLY_SKIPPED));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_OPTED_OUT));
    t_env_free(env);
}

/* The opt-out rides on the reply's unit of work: a failure anywhere stores neither. */
TEST(unit_opt_out_stop_reply_fault_at_every_call)
{
    int n;

    for (n = 1; n < 60; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct reply_input in = {NULL, CHANNEL_WHATSAPP, "{\"text\":\"STOP\"}"};
        char mid[SP_UUID_LEN + 1];
        struct sp_error err = {0};
        struct lead l;
        int rc, injected;

        t_env_create(env, "Ana", NULL, "+351912345678", &l);
        in.lead_id = l.id;
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_reply(&env->deps, &in, env->arena, mid, &err);
        injected = env->faults.injected;
        fault_plan_arm(&env->faults, 0, 0);
        ASSERT_EQ(0, env->faults.open_tx);
        if (!injected) {
            ASSERT_OK(rc);
            ASSERT_EQ(1, stored_opt_outs(env, l.id).n);
            t_env_free(env);
            break;
        }
        ASSERT_EQ(SP_EUNAVAIL, rc);
        ASSERT_EQ(0, stored_opt_outs(env, l.id).n);
        ASSERT_EQ(0, count_events(env, l.id, EVENT_REPLY_RECEIVED));
        ASSERT_EQ(0, count_events(env, l.id, EVENT_OPTED_OUT));
        t_env_free(env);
    }
    ASSERT(n > 4);
}

/* ---- suppression at send time ------------------------------------------------------------ */

TEST_ALL(unit_opt_out_welcome_suppressed_at_send_time)
{
    static struct delivery_counters counters; /* zeroed */
    struct t_env *env = t_env_new(backend);
    struct lead_opt_outs o;
    struct lead_event e;
    struct message m;
    struct lead l, got;
    struct job j;

    env->mdeps.counters = &counters;
    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    opt_out(env, l.id, EMAIL_ONLY, NULL, &o); /* after the welcomes were queued */
    env->clock.now = T_NOW + 100;
    while (t_env_tick(env, NULL))
        ;
    /* email: suppressed, never sent; the job completed with the event's payload */
    m = message_at(env, l.id, 0);
    ASSERT_EQ(CHANNEL_EMAIL, m.channel);
    ASSERT_EQ(MESSAGE_SUPPRESSED, m.status);
    ASSERT_EQ(0, m.attempts);
    ASSERT_EQ(0, m.sent_at);
    ASSERT_EQ(T_NOW + 100, m.updated_at);
    j = job_of(env, l.id, m.id);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    e = last_of(env, l.id, EVENT_MESSAGE_SUPPRESSED);
    ASSERT_STREQ(m.id, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ("email", t_json_str(e.payload, "channel"));
    ASSERT_STREQ("welcome", t_json_str(e.payload, "kind"));
    ASSERT_STREQ("opted_out", t_json_str(e.payload, "reason"));
    ASSERT_STREQ("api", t_json_str(e.payload, "optOutSource"));
    ASSERT_STREQ(j.id, t_json_str(e.correlation_ids, "jobId"));
    /* whatsapp: sent as usual, and it alone contacted the lead */
    ASSERT_EQ(1, env->sender.ncalls);
    ASSERT_EQ(CHANNEL_WHATSAPP, env->sender.calls[0].channel);
    ASSERT_EQ(MESSAGE_SENT, message_at(env, l.id, 1).status);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SUPPRESSED));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SENT));
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
    ASSERT_EQ(0, env->faults.open_tx);
    /* the metrics' send outcomes (GET /metrics) */
    ASSERT_EQ(1, counters.sends[CHANNEL_EMAIL][DELIVERY_SUPPRESSED]);
    ASSERT_EQ(0, counters.sends[CHANNEL_EMAIL][DELIVERY_SENT]);
    ASSERT_EQ(1, counters.sends[CHANNEL_WHATSAPP][DELIVERY_SENT]);
    ASSERT_STREQ("suppressed", delivery_outcome_label(DELIVERY_SUPPRESSED));
    t_env_free(env);
}

/* Every kind: an AI answer and a manual message queued before the opt-out are suppressed too;
 * once the lead is back in, new messages go out again (the suppressed ones stay suppressed). */
TEST_SQL(unit_opt_out_every_kind_is_suppressed)
{
    struct t_env *env = t_env_new(backend);
    struct reply_input in = {NULL, CHANNEL_WHATSAPP, "{\"text\":\"book a demo\"}"};
    struct manual_input man = {NULL, CHANNEL_EMAIL, "Hello", "A word from us", NULL};
    char mid[SP_UUID_LEN + 1];
    struct sp_error err = {0};
    struct lead_opt_outs o;
    struct message *ms, manual;
    struct lead l;
    int n;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    while (t_env_tick(env, NULL)) /* both welcomes sent */
        ;
    in.lead_id = l.id;
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    ASSERT_EQ(1, t_env_answer(env)); /* the AI answer is queued, not sent */
    man.lead_id = l.id;
    ASSERT_OK(leads_send_manual(&env->deps, &man, env->arena, &manual, &err));
    opt_out(env, l.id, BOTH, "GDPR request", &o);
    while (t_env_tick(env, NULL))
        ;
    t_env_messages(env, l.id, &ms, &n);
    ASSERT_EQ(5, n); /* 2 welcomes, the reply, the answer, the manual message */
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, ms[3].kind);
    ASSERT_EQ(MESSAGE_SUPPRESSED, ms[3].status);
    ASSERT_EQ(MESSAGE_KIND_MANUAL, ms[4].kind);
    ASSERT_EQ(MESSAGE_SUPPRESSED, ms[4].status);
    ASSERT_EQ(2, env->sender.ncalls); /* the welcomes only */
    ASSERT_EQ(2, count_events(env, l.id, EVENT_MESSAGE_SUPPRESSED));
    ASSERT_EQ(0, count_events(env, l.id, EVENT_AI_REPLY_SENT));

    /* back in: a new manual message goes out */
    ASSERT_OK(leads_opt_in(&env->deps, l.id, EMAIL_ONLY, env->arena, &o, &err));
    ASSERT_OK(leads_send_manual(&env->deps, &man, env->arena, &manual, &err));
    while (t_env_tick(env, NULL))
        ;
    ASSERT_EQ(3, env->sender.ncalls);
    ASSERT_EQ(MESSAGE_KIND_MANUAL, env->sender.calls[2].kind);
    ASSERT_EQ(MESSAGE_SUPPRESSED, message_at(env, l.id, 4).status);
    ASSERT_EQ(MESSAGE_SENT, message_at(env, l.id, 5).status);
    t_env_free(env);
}

/* A storage failure at call N of the tick that meets an opted-out message: the job is taken
 * again after its lease, and whatever N the message ends suppressed once, never sent. */
TEST(unit_opt_out_suppression_fault_at_every_call_converges)
{
    int n, injected_somewhere = 0;

    for (n = 1; n < 100; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct sp_error err = {0};
        struct lead_opt_outs o;
        struct message m;
        struct lead l;
        int did = 0, rc, injected;
        int64_t next_due = 0;

        t_env_create(env, "Ana", "ana@example.com", NULL, &l);
        opt_out(env, l.id, EMAIL_ONLY, NULL, &o);
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
            m = message_at(env, l.id, 0);
            if (job_of(env, l.id, m.id).state == JOB_COMPLETED)
                break;
            if (!t_env_tick(env, NULL))
                env->clock.now += T_LEASE_MS;
        }
        m = message_at(env, l.id, 0);
        if (m.status != MESSAGE_SUPPRESSED)
            t_fail(__FILE__, __LINE__, "fault at call %d: message %s", n,
                   message_status_name(m.status));
        ASSERT_EQ(JOB_COMPLETED, job_of(env, l.id, m.id).state);
        ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SUPPRESSED));
        ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_SENT));
        ASSERT_EQ(0, env->sender.ncalls);
        t_env_free(env);
    }
    ASSERT(injected_somewhere);
    ASSERT(n > 4);
}

/* A job taken again after its message was suppressed (the job's own end lost) only completes. */
TEST(unit_opt_out_suppressed_message_is_not_reconsidered)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead_opt_outs o;
    struct sp_error err = {0};
    struct message m;
    struct lead l;
    const struct mem_job *row;
    enum delivery_outcome outcome;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    opt_out(env, l.id, EMAIL_ONLY, NULL, &o);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    m = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_SUPPRESSED, m.status);
    ASSERT_OK(leads_opt_in(&env->deps, l.id, EMAIL_ONLY, env->arena, &o, &err));
    row = mem_store_job(env->store, job_of(env, l.id, m.id).id);
    ASSERT(row != NULL);
    ASSERT_OK(leads_deliver(&env->mdeps, &row->j, env->arena, &outcome, &err));
    ASSERT_EQ(DELIVERY_DUPLICATE, outcome);
    ASSERT_EQ(0, env->sender.ncalls);
    ASSERT_EQ(MESSAGE_SUPPRESSED, message_at(env, l.id, 0).status);
    t_env_free(env);
}

/* ---- manual messages ------------------------------------------------------------------------ */

TEST_ALL(unit_manual_message_is_queued_and_sent)
{
    struct t_env *env = t_env_new(backend);
    struct manual_input email = {NULL, CHANNEL_EMAIL, "Our offer", "Dear Ana,\n\nhere it is.",
                                 NULL};
    struct manual_input wa = {NULL, CHANNEL_WHATSAPP, NULL, NULL, "See you Friday"};
    struct sp_error err = {0};
    struct message m;
    struct lead_event e;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    while (t_env_tick(env, NULL)) /* the welcomes */
        ;
    email.lead_id = wa.lead_id = l.id;
    env->clock.now = T_NOW + 50;
    ASSERT_OK(leads_send_manual(&env->deps, &email, env->arena, &m, &err));
    ASSERT_EQ(MESSAGE_KIND_MANUAL, m.kind);
    ASSERT_EQ(MESSAGE_QUEUED, m.status);
    ASSERT_EQ(MESSAGE_OUTBOUND, m.direction);
    ASSERT_EQ(CHANNEL_EMAIL, m.channel);
    ASSERT_STREQ(l.id, m.lead_id);
    ASSERT_STREQ("ana@example.com", m.recipient);
    ASSERT_EQ(T_NOW + 50, m.created_at);
    ASSERT_JSON_STORED(backend,
                       "{\"to\":\"ana@example.com\",\"subject\":\"Our offer\","
                       "\"body\":\"Dear Ana,\\n\\nhere it is.\"}",
                       m.channel_message);
    e = last_of(env, l.id, EVENT_MESSAGE_QUEUED);
    ASSERT_STREQ(m.id, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ("manual", t_json_str(e.payload, "kind"));
    ASSERT_EQ(JOB_WAITING, job_of(env, l.id, m.id).state);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(MESSAGE_SENT, message_at(env, l.id, 2).status);
    ASSERT_EQ(3, env->sender.ncalls);
    ASSERT_EQ(MESSAGE_KIND_MANUAL, env->sender.calls[2].kind);
    ASSERT_STREQ("ana@example.com", env->sender.calls[2].to);

    ASSERT_OK(leads_send_manual(&env->deps, &wa, env->arena, &m, &err));
    ASSERT_JSON_STORED(backend, "{\"to\":\"+351912345678\",\"text\":\"See you Friday\"}",
                       m.channel_message);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(4, env->sender.ncalls);
    ASSERT_EQ(CHANNEL_WHATSAPP, env->sender.calls[3].channel);
    ASSERT_EQ(MESSAGE_KIND_MANUAL, env->sender.calls[3].kind);
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

TEST(unit_manual_message_refusals_store_nothing)
{
    static const struct {
        enum channel c;
        const char *subject, *body, *text;
        int rc;
        const char *field;
    } bad[] = {
        {CHANNEL_LINKEDIN, NULL, NULL, "hi", SP_EINVAL, "channel"},
        {CHANNEL_EMAIL, NULL, "body", NULL, SP_EINVAL, "channelMessage.subject"},
        {CHANNEL_EMAIL, "  ", "body", NULL, SP_EINVAL, "channelMessage.subject"},
        {CHANNEL_EMAIL, "a\r\nBcc: x@evil.com", "body", NULL, SP_EINVAL, "channelMessage.subject"},
        {CHANNEL_EMAIL, "subject", "", NULL, SP_EINVAL, "channelMessage.body"},
        {CHANNEL_EMAIL, "subject", "bell\a", NULL, SP_EINVAL, "channelMessage.body"},
        {CHANNEL_WHATSAPP, NULL, NULL, NULL, SP_EINVAL, "channelMessage.text"},
        {CHANNEL_WHATSAPP, NULL, NULL, "\n\t ", SP_EINVAL, "channelMessage.text"},
        {CHANNEL_WHATSAPP, NULL, NULL, "hi", SP_EINVAL, "channel"}, /* no phone */
    };
    struct t_env *env = t_env_new(T_MEM);
    char *big = arena_alloc(env->arena, MANUAL_TEXT_MAX + 2);
    struct t_counts before, after;
    struct lead_opt_outs o;
    struct message m;
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    t_env_counts(env, &before);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct manual_input in = {l.id, bad[i].c, bad[i].subject, bad[i].body, bad[i].text};
        struct sp_error err = {0};
        ASSERT_EQ(bad[i].rc, leads_send_manual(&env->deps, &in, env->arena, &m, &err));
        ASSERT_STREQ(bad[i].field, err.field);
    }
    memset(big, 'x', MANUAL_TEXT_MAX + 1);
    big[MANUAL_TEXT_MAX + 1] = '\0';
    {
        struct manual_input in = {l.id, CHANNEL_EMAIL, big, "body", NULL};
        struct sp_error err = {0};
        ASSERT_EQ(SP_EINVAL, leads_send_manual(&env->deps, &in, env->arena, &m, &err));
        ASSERT_STREQ("channelMessage.subject must be shorter than or equal to 255 characters",
                     err.msg);
    }
    {
        struct manual_input in = {"2728542f-1069-401c-a54f-4ab8a3a46a06", CHANNEL_EMAIL, "s", "b",
                                  NULL};
        struct sp_error err = {0};
        ASSERT_EQ(SP_ENOTFOUND, leads_send_manual(&env->deps, &in, env->arena, &m, &err));
    }
    /* opted out: refused at once (409 at the HTTP edge), nothing stored */
    opt_out(env, l.id, EMAIL_ONLY, NULL, &o);
    t_env_counts(env, &before);
    {
        struct manual_input in = {l.id, CHANNEL_EMAIL, "s", "b", NULL};
        struct sp_error err = {0};
        ASSERT_EQ(SP_ECONFLICT, leads_send_manual(&env->deps, &in, env->arena, &m, &err));
        ASSERT_CONTAINS(err.msg, "opted out of email");
    }
    t_env_counts(env, &after);
    ASSERT_EQ(before.messages, after.messages);
    ASSERT_EQ(before.events, after.events);
    ASSERT_EQ(before.jobs, after.jobs);
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

/* The message, its job and its event commit together or not at all. */
TEST(unit_manual_message_fault_at_every_call_is_all_or_nothing)
{
    int n;

    for (n = 1; n < 50; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct manual_input in = {NULL, CHANNEL_EMAIL, "s", "b", NULL};
        struct sp_error err = {0};
        struct t_counts before, after;
        struct message m;
        struct lead l;
        int rc, injected;

        t_env_create(env, "Ana", "ana@example.com", NULL, &l);
        in.lead_id = l.id;
        t_env_counts(env, &before);
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_send_manual(&env->deps, &in, env->arena, &m, &err);
        injected = env->faults.injected;
        fault_plan_arm(&env->faults, 0, 0);
        ASSERT_EQ(0, env->faults.open_tx);
        t_env_counts(env, &after);
        if (!injected) {
            ASSERT_OK(rc);
            ASSERT_EQ(before.messages + 1, after.messages);
            ASSERT_EQ(before.jobs + 1, after.jobs);
            ASSERT_EQ(before.events + 1, after.events);
            t_env_free(env);
            break;
        }
        ASSERT_EQ(SP_EUNAVAIL, rc);
        ASSERT_EQ(before.messages, after.messages);
        ASSERT_EQ(before.jobs, after.jobs);
        ASSERT_EQ(before.events, after.events);
        t_env_free(env);
    }
    ASSERT(n > 4);
}

/* ---- the domain's rules --------------------------------------------------------------------- */

TEST(unit_opt_out_domain_names_and_channels)
{
    enum opt_out_source s;
    struct lead_opt_outs list = {1, {{CHANNEL_WHATSAPP, NULL, OPT_OUT_SOURCE_REPLY, 1}}};
    struct sp_error err = {0};

    ASSERT_STREQ("api", opt_out_source_name(OPT_OUT_SOURCE_API));
    ASSERT_STREQ("reply", opt_out_source_name(OPT_OUT_SOURCE_REPLY));
    ASSERT_STREQ("unsubscribe", opt_out_source_name(OPT_OUT_SOURCE_UNSUBSCRIBE));
    ASSERT_OK(opt_out_source_parse("unsubscribe", &s));
    ASSERT_EQ(OPT_OUT_SOURCE_UNSUBSCRIBE, s);
    ASSERT(opt_out_source_parse("operator", &s) != 0);
    ASSERT_STREQ("opted_out", lead_event_type_name(EVENT_OPTED_OUT));
    ASSERT_STREQ("opted_in", lead_event_type_name(EVENT_OPTED_IN));
    ASSERT_STREQ("message_suppressed", lead_event_type_name(EVENT_MESSAGE_SUPPRESSED));
    ASSERT(lead_opt_out_channel_valid(CHANNEL_EMAIL));
    ASSERT(lead_opt_out_channel_valid(CHANNEL_WHATSAPP));
    ASSERT(!lead_opt_out_channel_valid(CHANNEL_ADS));
    ASSERT(lead_opt_out_find(&list, CHANNEL_WHATSAPP) == &list.v[0]);
    ASSERT(lead_opt_out_find(&list, CHANNEL_EMAIL) == NULL);
    ASSERT(lead_opt_out_find(NULL, CHANNEL_EMAIL) == NULL);
    /* manual parts: line breaks and tabs in a body or text, never in a subject; emoji count 2 */
    ASSERT_OK(lead_manual_message_check(CHANNEL_EMAIL, "Olá 😀", "a\r\n\tb", NULL, &err));
    ASSERT_OK(lead_manual_message_check(CHANNEL_WHATSAPP, NULL, NULL, "a\nb", &err));
    ASSERT_EQ(SP_EINVAL, lead_manual_message_check(CHANNEL_EMAIL, "a\tb", "b", NULL, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL,
              lead_manual_message_check(CHANNEL_WHATSAPP, NULL, NULL, "\xe2\x80\xae", &err));
    ASSERT_STREQ("channelMessage.text", err.field);
}
