/* test_delivery.c: the send-message worker on the fakes: delivery, the lead's first contact,
 * retries with backoff, the dead letter, permanent errors, dedupe of already-sent messages and
 * the idempotency key; plus a torture test showing that a storage failure at any point of a
 * job still converges to exactly one recorded delivery. */
#include "t.h"

#include "core/arena.h"
#include "core/clock.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"

static const char *
iso(int64_t ms)
{
    static char buf[SP_ISO_TIME_LEN + 1];
    sp_time_iso(ms, buf);
    return buf;
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
job_at(struct t_env *env, const char *lead_id, int i)
{
    struct job *j;
    int n;
    t_env_jobs(env, lead_id, &j, &n);
    ASSERT(i < n);
    return j[i];
}

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

static struct lead_event
last_event(struct t_env *env, const char *lead_id, int back)
{
    struct lead_event *e;
    int n;
    t_env_events(env, lead_id, &e, &n);
    ASSERT(n - 1 - back >= 0);
    return e[n - 1 - back];
}

TEST_ALL(unit_delivery_sends_welcome_and_contacts_lead)
{
    struct t_env *env = t_env_new(backend);
    struct lead l, got;
    struct message m;
    struct job j;
    struct lead_event e;
    int64_t next_due = -1;

    t_env_create(env, "John Doe", "john@example.com", "+1234567890", &l);
    env->clock.now = T_NOW + 100;
    ASSERT_EQ(1, t_env_tick(env, NULL));

    m = message_at(env, l.id, 0);
    ASSERT_EQ(CHANNEL_EMAIL, m.channel);
    ASSERT_EQ(MESSAGE_SENT, m.status);
    ASSERT_EQ(T_NOW + 100, m.sent_at);
    ASSERT_EQ(1, m.attempts);
    ASSERT_STREQ("fake-1", m.provider_id);
    ASSERT(m.last_error == NULL);

    /* message_sent (seed defect #2: recorded when sent, not when queued), then new -> contacted */
    e = last_event(env, l.id, 1);
    ASSERT_EQ(EVENT_MESSAGE_SENT, e.type);
    ASSERT_STREQ(m.id, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ("email", t_json_str(e.payload, "channel"));
    ASSERT_STREQ("fake-1", t_json_str(e.payload, "providerId"));
    ASSERT_EQ(1, t_json_int(e.payload, "attempt"));
    ASSERT_EQ(T_NOW + 100, e.created_at);
    e = last_event(env, l.id, 0);
    ASSERT_EQ(EVENT_STATUS_CHANGED, e.type);
    ASSERT_JSON_STORED(
        backend, "{\"from\":\"new\",\"to\":\"contacted\",\"reason\":\"message_sent\"}", e.payload);
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
    ASSERT_EQ(T_NOW + 100, got.updated_at);

    j = job_at(env, l.id, 0);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_EQ(T_NOW + 100, j.finished_at);

    /* the WhatsApp welcome: sent, but the lead is contacted only once */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    m = message_at(env, l.id, 1);
    ASSERT_EQ(MESSAGE_SENT, m.status);
    ASSERT_EQ(2, env->sender.ncalls);
    ASSERT_EQ(CHANNEL_WHATSAPP, env->sender.calls[1].channel);
    ASSERT_STREQ("+1234567890", env->sender.calls[1].to);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_STATUS_CHANGED));
    ASSERT_EQ(2, count_events(env, l.id, EVENT_MESSAGE_SENT));
    ASSERT_EQ(JOB_COMPLETED, job_at(env, l.id, 1).state);

    /* nothing left */
    ASSERT_EQ(0, t_env_tick(env, &next_due));
    ASSERT_EQ(0, next_due);
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

TEST(unit_delivery_sender_gets_message_id_as_idempotency_key)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;
    struct message m;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    m = message_at(env, l.id, 0);
    ASSERT_EQ(1, env->sender.ncalls);
    ASSERT_EQ(CHANNEL_EMAIL, env->sender.calls[0].channel);
    ASSERT_STREQ("ana@example.com", env->sender.calls[0].to);
    ASSERT_STREQ(m.id, env->sender.calls[0].message_id);
    ASSERT_STREQ(m.id, env->sender.calls[0].idempotency_key);
    ASSERT_STREQ(l.id, env->sender.calls[0].lead_id);
    ASSERT_STREQ("Ana", env->sender.calls[0].to_name);
    ASSERT_STREQ("(null)", env->sender.calls[0].in_reply_to); /* a welcome answers nothing */
    ASSERT_EQ(1, env->sender.calls[0].attempt);
    ASSERT_JSON_EQ(m.channel_message, env->sender.calls[0].channel_message);
    t_env_free(env);
}

TEST(unit_delivery_ai_reply_sent_event)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct reply_input in = {NULL, CHANNEL_WHATSAPP, "{\"text\":\"book a demo\"}"};
    char mid[SP_UUID_LEN + 1];
    struct lead l, got;
    struct message m;
    struct lead_event e;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* welcome: contacted */
    in.lead_id = l.id;
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* generate-reply: the AI answer written */
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* the AI answer sent */

    m = message_at(env, l.id, 2);
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, m.kind);
    ASSERT_EQ(MESSAGE_SENT, m.status);
    ASSERT_STREQ("+351912345678", env->sender.calls[1].to);
    e = last_event(env, l.id, 1);
    ASSERT_EQ(EVENT_MESSAGE_SENT, e.type);
    e = last_event(env, l.id, 0);
    ASSERT_EQ(EVENT_AI_REPLY_SENT, e.type);
    ASSERT_STREQ(m.id, t_json_str(e.payload, "messageId"));
    /* a sent answer does not move a replied lead back to contacted */
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    ASSERT_EQ(2, count_events(env, l.id, EVENT_STATUS_CHANGED)); /* contacted, replied */
    t_env_free(env);
}

TEST_ALL(unit_delivery_retryable_failure_is_delayed)
{
    struct t_env *env = t_env_new(backend);
    struct lead l, got;
    struct message m;
    struct job j;
    struct lead_event e;
    int64_t next_due = 0;

    env->sender.fail_first = 1;
    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(1, t_env_tick(env, NULL));

    m = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_QUEUED, m.status); /* back to queued: it will be tried again */
    ASSERT_EQ(1, m.attempts);
    ASSERT_STREQ("fake: scripted failure 1", m.last_error);
    ASSERT_EQ(0, m.sent_at);
    e = last_event(env, l.id, 0);
    ASSERT_EQ(EVENT_MESSAGE_FAILED, e.type);
    ASSERT_EQ(1, t_json_int(e.payload, "willRetry"));
    ASSERT_STREQ("EPROVIDER", t_json_str(e.payload, "code"));
    ASSERT_STREQ("fake: scripted failure 1", t_json_str(e.payload, "error"));
    ASSERT_STREQ(iso(T_NOW + 1000), t_json_str(e.payload, "nextAttemptAt"));
    j = job_at(env, l.id, 0);
    ASSERT_EQ(JOB_DELAYED, j.state);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_EQ(T_NOW + 1000, j.run_at); /* now + backoff base */
    ASSERT_STREQ("fake: scripted failure 1", j.last_error);
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_NEW, got.status);

    /* not before run_at */
    ASSERT_EQ(0, t_env_tick(env, &next_due));
    ASSERT_EQ(T_NOW + 1000, next_due);
    env->clock.now = T_NOW + 999;
    ASSERT_EQ(0, t_env_tick(env, NULL));

    env->clock.now = T_NOW + 1000;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    m = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_SENT, m.status);
    ASSERT_EQ(2, m.attempts);
    ASSERT(m.last_error == NULL);
    ASSERT_EQ(2, env->sender.ncalls);
    ASSERT_EQ(2, env->sender.calls[1].attempt);
    ASSERT_STREQ(env->sender.calls[0].idempotency_key, env->sender.calls[1].idempotency_key);
    j = job_at(env, l.id, 0);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    ASSERT_EQ(2, j.attempts_made);
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
    t_env_free(env);
}

TEST_ALL(unit_delivery_last_attempt_goes_to_dead_letter)
{
    struct t_env *env = t_env_new(backend);
    struct lead l, got;
    struct message m;
    struct job j;
    struct lead_event e;
    int64_t next_due = -1;

    env->sender.fail_first = 100;
    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(T_NOW + 1000, job_at(env, l.id, 0).run_at);
    env->clock.now = T_NOW + 1000;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    j = job_at(env, l.id, 0);
    ASSERT_EQ(JOB_DELAYED, j.state);
    ASSERT_EQ(T_NOW + 1000 + 2000, j.run_at); /* exponential: 1 s, then 2 s */
    env->clock.now = T_NOW + 3000;
    ASSERT_EQ(1, t_env_tick(env, NULL));

    j = job_at(env, l.id, 0);
    ASSERT_EQ(JOB_FAILED, j.state);
    ASSERT_EQ(3, j.attempts_made);
    ASSERT_EQ(T_NOW + 3000, j.finished_at);
    ASSERT_STREQ("fake: scripted failure 3", j.last_error);
    m = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_FAILED, m.status);
    ASSERT_EQ(3, m.attempts);
    ASSERT_EQ(3, count_events(env, l.id, EVENT_MESSAGE_FAILED));
    e = last_event(env, l.id, 0);
    ASSERT_EQ(EVENT_MESSAGE_FAILED, e.type);
    ASSERT_EQ(0, t_json_int(e.payload, "willRetry"));
    ASSERT(t_json_str(e.payload, "nextAttemptAt") == NULL);
    ASSERT_EQ(3, env->sender.ncalls);

    /* the dead letter is never taken again */
    env->clock.now = T_NOW + 10000000;
    ASSERT_EQ(0, t_env_tick(env, &next_due));
    ASSERT_EQ(0, next_due);
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_NEW, got.status);
    t_env_free(env);
}

/* The send outcomes by channel (GET /metrics): a retry then a send on email, a send on
 * WhatsApp, a permanent failure, a duplicate; an answer job and a job without a message do not
 * count. */
TEST_ALL(unit_delivery_counts_outcomes_by_channel)
{
    static struct delivery_counters c; /* zeroed */
    struct t_env *env = t_env_new(backend);
    struct lead l, bounced;

    env->mdeps.counters = &c;
    env->sender.fail_first = 1; /* the first call: the email */
    t_env_create(env, "Ana", "ana@example.com", "+15550001111", &l);
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* one job per tick */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_RETRY]);
    ASSERT_EQ(1, c.sends[CHANNEL_WHATSAPP][DELIVERY_SENT]);
    env->clock.now += 1000;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_SENT]);

    env->sender.fail_first = env->sender.ncalls + 100;
    env->sender.fail_code = SP_EPERMANENT;
    t_env_create(env, "Bo", "bounce@example.com", NULL, &bounced);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_DEAD]);

    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_RETRY]);
    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_SENT]);
    ASSERT_EQ(1, c.sends[CHANNEL_WHATSAPP][DELIVERY_SENT]);
    ASSERT_EQ(0, c.sends[CHANNEL_EMAIL][DELIVERY_DUPLICATE]);
    ASSERT_EQ(0, c.sends[CHANNEL_WHATSAPP][DELIVERY_RETRY]);
    ASSERT_STREQ("retried", delivery_outcome_label(DELIVERY_RETRY));
    ASSERT_STREQ("failed", delivery_outcome_label(DELIVERY_DEAD));
    t_env_free(env);
}

TEST(unit_delivery_counts_duplicates_not_missing_messages)
{
    static struct delivery_counters c; /* zeroed */
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l;
    struct job stale, j;
    enum delivery_outcome outcome = DELIVERY_SENT;
    struct job_spec spec = {SEND_MESSAGE_JOB,
                            "00000000-0000-4000-8000-000000000000",
                            NULL,
                            "{\"messageId\":\"00000000-0000-4000-8000-000000000000\"}",
                            3,
                            1000};
    char id[JOB_ID_MAX];
    int found = 0;
    int64_t next_due = 0;

    env->mdeps.counters = &c;
    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_OK(job_queue_reserve(env->queue, T_NOW, T_LEASE_MS, 1, env->arena, &stale, &found,
                                &next_due, &err));
    env->clock.now = T_NOW + T_LEASE_MS; /* the stale job goes to another worker, sent there */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_OK(leads_deliver(&env->mdeps, &stale, env->arena, &outcome, &err));
    ASSERT_EQ(DELIVERY_DUPLICATE, outcome);
    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_SENT]);
    ASSERT_EQ(1, c.sends[CHANNEL_EMAIL][DELIVERY_DUPLICATE]);

    spec.group = l.id; /* a job whose message does not exist: no channel, not a send */
    ASSERT_OK(job_queue_enqueue(env->queue, &spec, env->clock.now, id, &err));
    ASSERT_OK(job_queue_reserve(env->queue, env->clock.now, T_LEASE_MS, 1, env->arena, &j, &found,
                                &next_due, &err));
    ASSERT_EQ(1, found);
    ASSERT_OK(leads_deliver(&env->mdeps, &j, env->arena, &outcome, &err));
    ASSERT_EQ(DELIVERY_DEAD, outcome);
    for (int ch = 0; ch < CHANNEL_COUNT; ch++)
        ASSERT_EQ(0, c.sends[ch][DELIVERY_DEAD]);
    t_env_free(env);
}

TEST(unit_delivery_permanent_error_is_dead_at_once)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;
    struct job j;
    struct lead_event e;

    env->sender.fail_first = 100;
    env->sender.fail_code = SP_EPERMANENT;
    t_env_create(env, "Ana", "bounce@example.com", NULL, &l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, env->sender.ncalls);
    j = job_at(env, l.id, 0);
    ASSERT_EQ(JOB_FAILED, j.state);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_EQ(MESSAGE_FAILED, message_at(env, l.id, 0).status);
    e = last_event(env, l.id, 0);
    ASSERT_EQ(0, t_json_int(e.payload, "willRetry"));
    ASSERT_STREQ("EPERMANENT", t_json_str(e.payload, "code"));
    env->clock.now += 3600 * 1000;
    ASSERT_EQ(0, t_env_tick(env, NULL));
    t_env_free(env);
}

TEST(unit_delivery_non_retryable_codes_are_dead_at_once)
{
    static const int codes[] = {SP_EINVAL, SP_EINTERNAL, SP_EPERMANENT};
    for (int i = 0; i < 3; i++) {
        struct t_env *env = t_env_new(T_MEM);
        struct lead l;

        env->sender.fail_first = 1;
        env->sender.fail_code = codes[i];
        t_env_create(env, "Ana", "ana@example.com", NULL, &l);
        ASSERT_EQ(1, t_env_tick(env, NULL));
        ASSERT_EQ(JOB_FAILED, job_at(env, l.id, 0).state);
        t_env_free(env);
    }
    {
        struct t_env *env = t_env_new(T_MEM);
        struct lead l;

        env->sender.fail_first = 1;
        env->sender.fail_code = SP_ETIMEDOUT; /* retryable */
        t_env_create(env, "Ana", "ana@example.com", NULL, &l);
        ASSERT_EQ(1, t_env_tick(env, NULL));
        ASSERT_EQ(JOB_DELAYED, job_at(env, l.id, 0).state);
        t_env_free(env);
    }
}

TEST(unit_delivery_already_sent_is_not_sent_again)
{
    /* A worker reserves the job and stalls past its lease; another worker takes the job over
     * (stalled recovery) and sends. When the first one resumes, the message is already sent:
     * the job completes without calling the sender. */
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l;
    struct job stale;
    enum delivery_outcome outcome = DELIVERY_SENT;
    int found = 0;
    int64_t next_due = 0;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_OK(job_queue_reserve(env->queue, T_NOW, T_LEASE_MS, 1, env->arena, &stale, &found,
                                &next_due, &err));
    ASSERT_EQ(1, found);
    env->clock.now = T_NOW + T_LEASE_MS;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(1, env->sender.ncalls);
    ASSERT_EQ(1, job_at(env, l.id, 0).stalled_count);

    ASSERT_OK(leads_deliver(&env->mdeps, &stale, env->arena, &outcome, &err));
    ASSERT_EQ(DELIVERY_DUPLICATE, outcome);
    ASSERT_EQ(1, env->sender.ncalls); /* not called again */
    ASSERT_EQ(JOB_COMPLETED, job_at(env, l.id, 0).state);
    ASSERT_EQ(MESSAGE_SENT, message_at(env, l.id, 0).status);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SENT));
    t_env_free(env);
}

TEST(unit_delivery_inbound_message_job_is_skipped)
{
    /* a job pointing at an inbound message (never sent by us) completes without sending */
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct reply_input in = {NULL, CHANNEL_EMAIL, "{\"from\":\"a@b.co\",\"body\":\"hi\"}"};
    char mid[SP_UUID_LEN + 1];
    struct lead l;
    struct job j = {0};
    enum delivery_outcome outcome = DELIVERY_SENT;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    in.lead_id = l.id;
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    snprintf(j.id, sizeof(j.id), "%s", "999");
    j.name = SEND_MESSAGE_JOB;
    j.data = arena_printf(env->arena, "{\"messageId\":\"%s\"}", mid);
    j.max_attempts = 3;
    ASSERT_OK(leads_deliver(&env->mdeps, &j, env->arena, &outcome, &err));
    ASSERT_EQ(DELIVERY_DUPLICATE, outcome);
    ASSERT_EQ(0, env->sender.ncalls);
    t_env_free(env);
}

TEST(unit_delivery_missing_message_fails_job)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l;
    struct job_spec spec = {SEND_MESSAGE_JOB,
                            "00000000-0000-4000-8000-000000000000",
                            NULL,
                            "{\"messageId\":\"00000000-0000-4000-8000-000000000000\"}",
                            3,
                            1000};
    char id[JOB_ID_MAX];
    enum delivery_outcome outcome = DELIVERY_SENT;
    struct job j;
    int found = 0;
    int64_t next_due = 0;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    spec.group = l.id;
    ASSERT_OK(job_queue_enqueue(env->queue, &spec, T_NOW, id, &err));
    ASSERT_OK(job_queue_reserve(env->queue, T_NOW, T_LEASE_MS, 1, env->arena, &j, &found, &next_due,
                                &err));
    ASSERT_EQ(1, found);
    ASSERT_OK(leads_deliver(&env->mdeps, &j, env->arena, &outcome, &err));
    ASSERT_EQ(DELIVERY_DEAD, outcome);
    ASSERT_EQ(JOB_FAILED, job_at(env, l.id, 1).state);
    ASSERT_EQ(1, env->sender.ncalls);
    t_env_free(env);
}

/* A storage failure at call N of the first tick (claim or outcome) leaves the job to be taken
 * again once its lease expires; whatever N, the message ends up sent, recorded once, and every
 * delivery attempt carried the same idempotency key. */
TEST(unit_delivery_fault_at_every_call_converges)
{
    int n, injected_somewhere = 0;

    for (n = 1; n < 100; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct sp_error err = {0};
        struct lead l, got;
        struct message m;
        int did = 0, rc, ticks = 0, injected;
        int64_t next_due = 0;

        static struct delivery_counters counters;

        memset(&counters, 0, sizeof(counters));
        env->mdeps.counters = &counters;
        t_env_create(env, "Ana", "ana@example.com", NULL, &l);
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
        /* A failure while recording the outcome is retried at once (the send happened, so it
         * must be recorded, not redone): the tick then succeeds with one send. */
        ASSERT(rc == SP_EUNAVAIL || rc == SP_OK);
        if (rc == SP_OK)
            ASSERT_EQ(1, env->sender.ncalls);
        /* recover: keep ticking, moving past leases, until the queue is drained */
        for (ticks = 0; ticks < 10; ticks++) {
            if (!t_env_tick(env, NULL))
                env->clock.now += T_LEASE_MS;
            if (job_at(env, l.id, 0).state == JOB_COMPLETED)
                break;
        }
        m = message_at(env, l.id, 0);
        if (m.status != MESSAGE_SENT)
            t_fail(__FILE__, __LINE__, "fault at call %d: message %s, job %s", n,
                   message_status_name(m.status), job_state_name(job_at(env, l.id, 0).state));
        ASSERT_EQ(JOB_COMPLETED, job_at(env, l.id, 0).state);
        ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SENT));
        ASSERT_EQ(1, count_events(env, l.id, EVENT_STATUS_CHANGED));
        ASSERT(env->sender.ncalls >= 1 && env->sender.ncalls <= 2);
        for (int i = 0; i < env->sender.ncalls; i++)
            ASSERT_STREQ(m.id, env->sender.calls[i].idempotency_key);
        t_env_lead(env, l.id, &got);
        ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
        /* Counted once, when recorded: an outcome whose record failed counted nothing. */
        for (int o = 0; o < DELIVERY_OUTCOME_COUNT; o++)
            if (counters.sends[CHANNEL_EMAIL][o] != (o == DELIVERY_SENT))
                t_fail(__FILE__, __LINE__, "fault at call %d: %llu %s", n,
                       (unsigned long long)counters.sends[CHANNEL_EMAIL][o],
                       delivery_outcome_label(o));
        t_env_free(env);
    }
    ASSERT(injected_somewhere);
    ASSERT(n > 4);
}

TEST(unit_delivery_storage_failure_on_reserve)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l;
    int did = 1;
    int64_t next_due = 0;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    env->faults.sticky = 1;
    ASSERT_EQ(SP_EUNAVAIL, leads_delivery_tick(&env->mdeps, env->arena, &did, &next_due, &err));
    ASSERT_EQ(0, did);
    ASSERT_EQ(0, env->sender.ncalls);
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

/* Regression (issue 2, found in review): a worker whose lease expired mid-send must not
 * overwrite the outcome recorded by the worker that took the job over, or the message would be
 * re-queued and sent a second time by our side. */
static struct t_env *stale_env;
static int stale_reentered;

static int
stale_racing_send(struct sender *s, const struct send_request *req, struct arena *a,
                  const char **provider_id, struct sp_error *err)
{
    struct sp_error e2 = {0};
    int did = 0;
    int64_t next_due = 0;

    (void)s;
    (void)req;
    (void)provider_id;
    if (stale_reentered)
        return sp_error_set(err, SP_EINTERNAL, NULL, "racing sender called twice");
    stale_reentered = 1;
    stale_env->clock.now += T_LEASE_MS; /* worker A stalls past its lease... */
    stale_env->senders.by_channel[CHANNEL_EMAIL] = &stale_env->sender.base;
    ASSERT_OK(leads_delivery_tick(&stale_env->mdeps, a, &did, &next_due, &e2)); /* ...B sends */
    ASSERT_EQ(1, did);
    return sp_error_set(err, SP_EPROVIDER, NULL, "A timed out"); /* then A's send fails */
}

static const struct sender_ops stale_racing_ops = {"racing", stale_racing_send};

TEST_ALL(unit_issue_2_stale_worker_cannot_overwrite_outcome)
{
    struct t_env *env = t_env_new(backend);
    struct sender racing = {&stale_racing_ops};
    struct lead l;
    struct message *m;
    struct job *j;
    int nm, nj;

    stale_env = env;
    env->senders.by_channel[CHANNEL_EMAIL] = &racing;
    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* A's tick; B's runs inside A's send */

    t_env_messages(env, l.id, &m, &nm);
    t_env_jobs(env, l.id, &j, &nj);
    ASSERT_EQ(MESSAGE_SENT, m[0].status); /* B's outcome stands */
    ASSERT(m[0].sent_at != 0);
    ASSERT_EQ(JOB_COMPLETED, j[0].state);
    ASSERT_EQ(1, j[0].attempts_made);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SENT));
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_FAILED));

    env->clock.now += 3600 * 1000;
    while (t_env_tick(env, NULL))
        ;
    ASSERT_EQ(1, env->sender.ncalls); /* never sent again */
    t_env_free(env);
}

/* Writes an outbound email message addressed to `to` for lead l, with its send-message job,
 * as an older build (or a bug) could have stored it; returns the message id in mid. */
static void
plant_outbound(struct t_env *env, const struct lead *l, const char *to, char *mid)
{
    struct sp_error err = {0};
    struct message m;
    struct job_spec spec;
    char job_id[JOB_ID_MAX];

    memset(&m, 0, sizeof(m));
    sp_uuid_v7(m.id);
    memcpy(m.lead_id, l->id, SP_UUID_LEN + 1);
    m.channel = CHANNEL_EMAIL;
    m.direction = MESSAGE_OUTBOUND;
    m.kind = MESSAGE_KIND_AI_REPLY;
    m.status = MESSAGE_QUEUED;
    m.recipient = to;
    m.channel_message =
        arena_printf(env->arena, "{\"to\":\"%s\",\"subject\":\"RE: Buy now\",\"body\":\"x\"}", to);
    m.created_at = m.updated_at = env->clock.now;
    memset(&spec, 0, sizeof(spec));
    spec.name = SEND_MESSAGE_JOB;
    spec.key = m.id;
    spec.group = l->id;
    spec.data = arena_printf(env->arena, "{\"messageId\":\"%s\"}", m.id);
    spec.max_attempts = 3;
    spec.backoff_ms = 1000;
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_message_insert(env->repo, &m, &err));
    ASSERT_OK(job_queue_enqueue(env->queue, &spec, env->clock.now, job_id, &err));
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    memcpy(mid, m.id, SP_UUID_LEN + 1);
}

/* Hardening #1, defence in depth: the worker sends only to the lead's own address. A queued
 * message addressed elsewhere (the old relay stored those) fails for good without a send. */
TEST_ALL(unit_hostile_h1_delivery_sends_only_to_the_leads_address)
{
    struct t_env *env = t_env_new(backend);
    char to_victim[SP_UUID_LEN + 1], to_stranger[SP_UUID_LEN + 1];
    struct lead phone_only, with_email;
    struct message *m;
    int nm;

    t_env_create(env, "Ana", NULL, "+351912345678", &phone_only);
    t_env_create(env, "Bob", "bob@example.com", NULL, &with_email);
    plant_outbound(env, &phone_only, "victim@example.org", to_victim);
    plant_outbound(env, &with_email, "victim@example.org", to_stranger);
    while (t_env_tick(env, NULL))
        ;
    ASSERT_EQ(2, env->sender.ncalls); /* the two welcome messages only */
    for (int i = 0; i < env->sender.ncalls; i++)
        ASSERT(strcmp("victim@example.org", env->sender.calls[i].to) != 0);
    t_env_messages(env, phone_only.id, &m, &nm);
    ASSERT_STREQ(to_victim, m[1].id);
    ASSERT_EQ(MESSAGE_FAILED, m[1].status);
    ASSERT_STREQ("lead has no email address", m[1].last_error);
    t_env_messages(env, with_email.id, &m, &nm);
    ASSERT_STREQ(to_stranger, m[1].id);
    ASSERT_EQ(MESSAGE_FAILED, m[1].status);
    ASSERT_STREQ("message is addressed to someone other than the lead", m[1].last_error);
    t_env_free(env);
}

/* A lead stored before addresses were checked, with a line break in its email address: the
 * worker does not hand it to a sender (it would become a header). */
TEST(unit_hostile_h1_delivery_refuses_an_address_with_a_line_break)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l = {.name = "Eve", .email = "eve@example.com\r\nBcc: x@evil.com"};
    char mid[SP_UUID_LEN + 1];
    struct message *m;
    int nm;

    sp_uuid_v7(l.id);
    l.created_at = l.updated_at = T_NOW;
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_lead_insert(env->repo, &l, &err));
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    plant_outbound(env, &l, l.email, mid);
    while (t_env_tick(env, NULL))
        ;
    ASSERT_EQ(0, env->sender.ncalls);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(MESSAGE_FAILED, m[0].status);
    ASSERT_STREQ("the lead's email address holds control characters", m[0].last_error);
    t_env_free(env);
}

/* WhatsApp's 24-hour window: the sender learns when the lead last wrote on the channel (the
 * newest stored inbound message), for answers; a welcome carries 0 (no look-up). */
TEST_ALL(unit_delivery_answer_carries_the_last_inbound_time)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct reply_input in = {NULL, CHANNEL_WHATSAPP, "{\"text\":\"pricing?\"}"};
    char mid[SP_UUID_LEN + 1];
    struct lead l;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(MESSAGE_KIND_WELCOME, env->sender.calls[0].kind);
    ASSERT_EQ(0, env->sender.calls[0].last_inbound_at);

    env->clock.now = T_NOW + 5000;
    in.lead_id = l.id;
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    env->clock.now = T_NOW + 9000;       /* sent a little later: the reply's time, not the send's */
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* generate-reply */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(2, env->sender.ncalls);
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, env->sender.calls[1].kind);
    ASSERT_EQ(T_NOW + 5000, env->sender.calls[1].last_inbound_at);
    t_env_free(env);
}

/* A provider's Retry-After longer than the job's backoff decides the next attempt; a shorter
 * one leaves the backoff; a huge one is capped at an hour. */
TEST(unit_delivery_retry_after_is_honoured)
{
    static const struct {
        long long retry_after_ms, want_delay;
    } cases[] = {{30000, 30000}, {200, 1000}, {7LL * 24 * 3600 * 1000, 3600LL * 1000}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct t_env *env = t_env_new(T_MEM);
        struct lead l;
        struct job j;
        struct lead_event e;

        env->sender.fail_first = 1;
        env->sender.retry_after_ms = cases[i].retry_after_ms;
        t_env_create(env, "Ana", "ana@example.com", NULL, &l);
        ASSERT_EQ(1, t_env_tick(env, NULL));
        j = job_at(env, l.id, 0);
        ASSERT_EQ(JOB_DELAYED, j.state);
        ASSERT_EQ(T_NOW + cases[i].want_delay, j.run_at);
        e = last_event(env, l.id, 0);
        ASSERT_STREQ(iso(T_NOW + cases[i].want_delay), t_json_str(e.payload, "nextAttemptAt"));
        t_env_free(env);
    }
}

/* Both welcomes of a lead in one batch: one unit of work records them, the lead is locked once
 * and moves to contacted once (the second record knows the first changed it); with a storage
 * failure at any call of that tick, the retries and the recovery still end with both messages
 * sent, each recorded once, and a single status change. */
TEST(unit_delivery_one_batch_two_messages_of_a_lead_fault_at_every_call)
{
    int n, injected_somewhere = 0;

    for (n = 1; n < 200; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct sp_error err = {0};
        struct lead l, got;
        int did = 0, rc, injected;
        int64_t next_due = 0;

        env->mdeps.batch = 8;
        t_env_create(env, "Ana", "ana@example.com", "+1234567890", &l);
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_delivery_tick(&env->mdeps, env->arena, &did, &next_due, &err);
        injected = env->faults.injected;
        fault_plan_arm(&env->faults, 0, 0);
        ASSERT_EQ(0, env->faults.open_tx);
        if (!injected) {
            ASSERT_OK(rc);
            ASSERT_EQ(2, env->sender.ncalls); /* one tick, both sent */
        }
        injected_somewhere |= injected;
        for (int ticks = 0; ticks < 10; ticks++) {
            if (!t_env_tick(env, NULL))
                env->clock.now += T_LEASE_MS;
            if (job_at(env, l.id, 0).state == JOB_COMPLETED &&
                job_at(env, l.id, 1).state == JOB_COMPLETED)
                break;
        }
        for (int i = 0; i < 2; i++) {
            ASSERT_EQ(MESSAGE_SENT, message_at(env, l.id, i).status);
            ASSERT_EQ(JOB_COMPLETED, job_at(env, l.id, i).state);
        }
        ASSERT_EQ(2, count_events(env, l.id, EVENT_MESSAGE_SENT));
        ASSERT_EQ(1, count_events(env, l.id, EVENT_STATUS_CHANGED));
        t_env_lead(env, l.id, &got);
        ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
        t_env_free(env);
        if (!injected)
            break;
    }
    ASSERT(injected_somewhere);
    ASSERT(n > 10); /* the loop reached past the claim into the record */
}

TEST_SQL(unit_delivery_one_batch_two_messages_of_a_lead)
{
    struct t_env *env = t_env_new(backend);
    struct lead l, got;
    int did = 0;
    struct sp_error err = {0};
    int64_t next_due = 0;

    env->mdeps.batch = 8;
    t_env_create(env, "Ana", "ana@example.com", "+1234567890", &l);
    ASSERT_OK(leads_delivery_tick(&env->mdeps, env->arena, &did, &next_due, &err));
    ASSERT_EQ(2, env->sender.ncalls);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(MESSAGE_SENT, message_at(env, l.id, i).status);
    ASSERT_EQ(2, count_events(env, l.id, EVENT_MESSAGE_SENT));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_STATUS_CHANGED));
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
    t_env_free(env);
}

/* The batch size (struct delivery_pace): it doubles after a full batch of fast sends, up to the
 * most; holds after a batch not full or whose sends took more than half the budget; falls at
 * once to what fits in the budget after a slow one; untouched by a round without sends. */
TEST(unit_delivery_pace_grows_holds_and_shrinks)
{
    struct delivery_pace p;

    delivery_pace_init(&p, 128, 100);
    ASSERT_EQ(DELIVERY_PACE_START, p.size);
    delivery_pace_update(&p, 4, 4, 0);
    ASSERT_EQ(8, p.size);
    delivery_pace_update(&p, 8, 8, 50); /* half the budget: still fast */
    ASSERT_EQ(16, p.size);
    delivery_pace_update(&p, 16, 16, 51);
    ASSERT_EQ(16, p.size);
    delivery_pace_update(&p, 10, 10, 0); /* not full: no demand seen for more */
    ASSERT_EQ(16, p.size);
    delivery_pace_update(&p, 16, 0, 5000); /* nothing sent (all skipped): nothing timed */
    ASSERT_EQ(16, p.size);
    delivery_pace_update(&p, 16, 16, 400); /* 25 ms a send: 4 fit in 100 ms */
    ASSERT_EQ(4, p.size);
    delivery_pace_update(&p, 4, 4, 1000); /* 250 ms a send: one at a time */
    ASSERT_EQ(1, p.size);
    delivery_pace_update(&p, 1, 1, 1000);
    ASSERT_EQ(1, p.size);
    delivery_pace_update(&p, 1, 1, -30); /* the wall clock stepped back: as fast */
    ASSERT_EQ(2, p.size);
    for (int i = 0; i < 10; i++)
        delivery_pace_update(&p, p.size, p.size, 1);
    ASSERT_EQ(128, p.size);

    delivery_pace_init(&p, 100, 100); /* a most that is not a power of two */
    for (int i = 0; i < 10; i++)
        delivery_pace_update(&p, p.size, p.size, 0);
    ASSERT_EQ(100, p.size);
    delivery_pace_init(&p, 1, 100);
    ASSERT_EQ(1, p.size);
    delivery_pace_update(&p, 1, 1, 0);
    ASSERT_EQ(1, p.size);
    delivery_pace_init(&p, 0, 0); /* nonsense in: a usable pace out */
    ASSERT_EQ(1, p.size);
    ASSERT_EQ(1, p.budget_ms);
}

/* The worker's rounds with a pace: with an instant provider each full round reserves twice as
 * many jobs as the last; once each send takes 60 ms the next round takes what fits in the
 * 100 ms budget, one job, and stays there while sends take more than half of it; fast again, it
 * grows again. Every message is sent once. */
TEST_SQL(unit_delivery_tick_batches_follow_the_send_time)
{
    struct t_env *env = t_env_new(backend);
    struct delivery_pace pace;
    struct lead l;
    int calls = 0;
    const struct {
        int64_t latency_ms;
        int sends, size_after;
    } rounds[] = {{0, 4, 8},  {0, 8, 16}, {0, 16, 16}, {60, 16, 1},
                  {60, 1, 1}, {0, 1, 2},  {0, 2, 4}};

    delivery_pace_init(&pace, 16, 100);
    env->mdeps.pace = &pace;
    env->sender.clock = &env->clock;
    for (int i = 0; i < 50; i++) {
        char name[32], email[64];
        snprintf(name, sizeof(name), "Lead %d", i);
        snprintf(email, sizeof(email), "lead%d@example.com", i);
        t_env_create(env, name, email, NULL, &l);
    }
    for (size_t i = 0; i < sizeof(rounds) / sizeof(rounds[0]); i++) {
        env->sender.latency_ms = rounds[i].latency_ms;
        ASSERT_EQ(1, t_env_tick(env, NULL));
        ASSERT_EQ(rounds[i].sends, env->sender.ncalls - calls);
        ASSERT_EQ(rounds[i].size_after, pace.size);
        calls = env->sender.ncalls;
    }
    while (t_env_tick(env, NULL))
        ;
    ASSERT_EQ(50, env->sender.ncalls);
    t_env_free(env);
}

/* A claim reads the message's lead and its opt-outs once per lead of a batch: the two welcomes
 * of each of two leads, four jobs in one round, read two leads and two opt-out lists. The
 * memo does not outlive its unit of work: an opt-out committed between two rounds stops the
 * second round's send. */
TEST_SQL(unit_delivery_batch_reads_each_lead_once)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a, b;
    int did = 0;
    int64_t next_due = 0;

    env->mdeps.batch = 4;
    t_env_create(env, "Ana", "ana@example.com", "+1234567890", &a);
    t_env_create(env, "Bea", "bea@example.com", "+1234567891", &b);
    env->faults.count_op = "lead_get";
    ASSERT_OK(leads_delivery_tick(&env->mdeps, env->arena, &did, &next_due, &err));
    ASSERT_EQ(4, env->sender.ncalls);
    ASSERT_EQ(2, env->faults.counted);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(MESSAGE_SENT, message_at(env, a.id, i).status);
        ASSERT_EQ(MESSAGE_SENT, message_at(env, b.id, i).status);
    }
    ASSERT_EQ(1, count_events(env, a.id, EVENT_STATUS_CHANGED));
    ASSERT_EQ(1, count_events(env, b.id, EVENT_STATUS_CHANGED));

    env->faults.count_op = "opt_out_list";
    env->faults.counted = 0;
    t_env_create(env, "Cid", "cid@example.com", "+1234567892", &a);
    env->mdeps.batch = 1;
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* Cid's email */
    ASSERT_EQ(1, env->faults.counted);
    ASSERT_EQ(5, env->sender.ncalls);
    {
        struct opt_out_input in = {a.id, 1u << CHANNEL_WHATSAPP, NULL, OPT_OUT_SOURCE_API};
        struct lead_opt_outs outs;
        ASSERT_OK(leads_opt_out(&env->deps, &in, env->arena, &outs, &err));
    }
    env->faults.counted = 0;
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* Cid's WhatsApp: read again, suppressed */
    ASSERT_EQ(1, env->faults.counted);
    ASSERT_EQ(5, env->sender.ncalls);
    ASSERT_EQ(MESSAGE_SUPPRESSED, message_at(env, a.id, 1).status);
    t_env_free(env);
}
