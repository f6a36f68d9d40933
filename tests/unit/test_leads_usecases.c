/* test_leads_usecases.c: leads_create, leads_reply and leads_get_details on the fakes (and, for
 * the main paths, on a real SQLite file): what one unit of work stores, what a failure leaves
 * behind (nothing: the fault-injection torture tests), and the seed defects they must not repeat
 * (#3 atomic capture, #6 WhatsApp answer address, #7 replies on channels without a sender). */
#include "t.h"

#include "core/arena.h"
#include "core/clock.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"

static void
assert_counts(struct t_env *env, int leads, int messages, int events, int jobs)
{
    struct t_counts c;
    t_env_counts(env, &c);
    ASSERT_EQ(leads, c.leads);
    ASSERT_EQ(messages, c.messages);
    ASSERT_EQ(events, c.events);
    ASSERT_EQ(jobs, c.jobs);
}

static const char *
iso(int64_t ms)
{
    static char buf[SP_ISO_TIME_LEN + 1];
    sp_time_iso(ms, buf);
    return buf;
}

/* Appends op to the space-separated list ops[cap] unless it is there already. */
static void
note_op(char *ops, size_t cap, const char *op)
{
    size_t len = strlen(ops);
    if (strstr(ops, op) == NULL)
        snprintf(ops + len, cap - len, "%s ", op);
}

/* ---- capture --------------------------------------------------------------------------- */

TEST_ALL(unit_leads_create_email_and_phone)
{
    struct t_env *env = t_env_new(backend);
    struct lead l, got;
    struct message *m;
    struct lead_event *e;
    struct job *j;
    int nm, ne, nj;
    char want[1024];

    t_env_create(env, "John Doe", "john@example.com", "+1234567890", &l);
    ASSERT(sp_uuid_valid(l.id, strlen(l.id)));
    ASSERT_EQ(LEAD_STATUS_NEW, l.status);
    ASSERT_EQ(T_NOW, l.created_at);
    ASSERT_EQ(T_NOW, l.updated_at);
    ASSERT_EQ(0, env->faults.open_tx);
    assert_counts(env, 1, 2, 3, 2);

    t_env_lead(env, l.id, &got);
    ASSERT_STREQ("John Doe", got.name);
    ASSERT_STREQ("john@example.com", got.email);
    ASSERT_STREQ("+1234567890", got.phone);
    ASSERT_EQ(LEAD_STATUS_NEW, got.status);

    /* two welcome messages, email first, queued and addressed per channel */
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(2, nm);
    ASSERT_EQ(CHANNEL_EMAIL, m[0].channel);
    ASSERT_EQ(CHANNEL_WHATSAPP, m[1].channel);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(MESSAGE_OUTBOUND, m[i].direction);
        ASSERT_EQ(MESSAGE_KIND_WELCOME, m[i].kind);
        ASSERT_EQ(MESSAGE_QUEUED, m[i].status);
        ASSERT_EQ(0, m[i].attempts);
        ASSERT_EQ(0, m[i].sent_at);
        ASSERT_STREQ(l.id, m[i].lead_id);
        ASSERT_EQ(T_NOW, m[i].created_at);
    }
    ASSERT_STREQ("john@example.com", m[0].recipient);
    ASSERT_STREQ("Welcome, John Doe!", t_json_str(m[0].channel_message, "subject"));
    ASSERT_STREQ("+1234567890", m[1].recipient);
    ASSERT_STREQ("+1234567890", t_json_str(m[1].channel_message, "to"));

    /* lead_added, then one message_queued per message */
    t_env_events(env, l.id, &e, &ne);
    ASSERT_EQ(3, ne);
    ASSERT_EQ(EVENT_LEAD_ADDED, e[0].type);
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"John Doe\",\"email\":\"john@example.com\","
             "\"phone\":\"+1234567890\",\"status\":\"new\"}",
             l.id);
    ASSERT_JSON_STORED(backend, want, e[0].payload);
    snprintf(want, sizeof(want), "{\"leadId\":\"%s\"}", l.id);
    ASSERT_JSON_STORED(backend, want, e[0].correlation_ids);
    ASSERT_EQ(T_NOW, e[0].created_at);

    t_env_jobs(env, l.id, &j, &nj);
    ASSERT_EQ(2, nj);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(EVENT_MESSAGE_QUEUED, e[i + 1].type);
        ASSERT_STREQ(m[i].id, t_json_str(e[i + 1].payload, "messageId"));
        ASSERT_STREQ(j[i].id, t_json_str(e[i + 1].payload, "jobId"));
        ASSERT_STREQ(channel_name(m[i].channel), t_json_str(e[i + 1].payload, "channel"));
        ASSERT_STREQ("welcome", t_json_str(e[i + 1].payload, "kind"));
        ASSERT_STREQ(m[i].id, t_json_str(e[i + 1].correlation_ids, "messageId"));

        ASSERT_STREQ(SEND_MESSAGE_JOB, j[i].name);
        ASSERT_STREQ(l.id, j[i].group);
        ASSERT_STREQ(m[i].id, j[i].key);
        ASSERT_EQ(JOB_WAITING, j[i].state);
        ASSERT_EQ(3, j[i].max_attempts); /* seed defect #1: attempts and backoff are set */
        ASSERT_EQ(1000, j[i].backoff_ms);
        ASSERT_EQ(0, j[i].attempts_made);
        ASSERT_EQ(T_NOW, j[i].run_at);
        ASSERT_STREQ(m[i].id, t_json_str(j[i].data, "messageId"));
        ASSERT_STREQ(l.id, t_json_str(j[i].data, "leadId"));
        ASSERT_STREQ(channel_name(m[i].channel), t_json_str(j[i].data, "channel"));
    }
    if (backend == T_MEM) {
        /* everything in one unit of work, and the workers were poked after commit */
        ASSERT_EQ(1, env->store->begins);
        ASSERT_EQ(1, env->store->commits);
        ASSERT_EQ(0, env->store->rollbacks);
        ASSERT_EQ(1, env->mem_queue.wakes);
    }
    t_env_free(env);
}

TEST(unit_leads_create_email_only)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;
    struct message *m;
    int nm;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT(l.phone == NULL);
    assert_counts(env, 1, 1, 2, 1);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(CHANNEL_EMAIL, m[0].channel);
    ASSERT_STREQ("ana@example.com", m[0].recipient);
    t_env_free(env);
}

TEST(unit_leads_create_phone_only)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead l, got;
    struct message *m;
    int nm;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    assert_counts(env, 1, 1, 2, 1);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(CHANNEL_WHATSAPP, m[0].channel);
    ASSERT_STREQ("+351912345678", m[0].recipient);
    t_env_lead(env, l.id, &got);
    ASSERT(got.email == NULL);
    t_env_free(env);
}

TEST(unit_leads_create_skips_channels_without_sender)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;
    struct message *m;
    int nm;

    env->policy.sendable = 1u << CHANNEL_EMAIL;
    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    assert_counts(env, 1, 1, 2, 1);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(CHANNEL_EMAIL, m[0].channel);
    t_env_free(env);
}

/* Expects SP_EINVAL on `field` with `msg`, and no storage touched at all. */
static void
expect_invalid(const char *name, const char *email, const char *phone, const char *field,
               const char *msg)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead_input in = {name, email, phone};
    struct sp_error err = {0};
    struct lead out;

    ASSERT_EQ(SP_EINVAL, leads_create(&env->deps, &in, env->arena, &out, &err));
    ASSERT_EQ(SP_EINVAL, err.code);
    ASSERT_STREQ(field, err.field);
    if (msg)
        ASSERT_STREQ(msg, err.msg);
    assert_counts(env, 0, 0, 0, 0);
    ASSERT_EQ(0, env->faults.calls); /* validation happens before any storage call */
    t_env_free(env);
}

TEST(unit_leads_create_validation)
{
    char long_name[LEAD_NAME_MAX + 2];
    char long_phone[LEAD_PHONE_MAX + 2];

    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    memset(long_phone, '1', sizeof(long_phone) - 1);
    long_phone[sizeof(long_phone) - 1] = '\0';

    expect_invalid(NULL, "a@b.co", NULL, "name", "name should not be empty");
    expect_invalid("", "a@b.co", NULL, "name", "name should not be empty");
    expect_invalid(long_name, "a@b.co", NULL, "name", NULL);
    expect_invalid("Ana", NULL, NULL, "email", "Either email or phone must be provided");
    expect_invalid("Ana", "not-an-email", NULL, "email", "email must be an email");
    expect_invalid("Ana", "", "+1", "email", "email must be an email");
    expect_invalid("Ana", NULL, "", "phone", NULL);
    expect_invalid("Ana", NULL, long_phone, "phone", NULL);
}

TEST(unit_leads_create_accepts_limits)
{
    struct t_env *env = t_env_new(T_MEM);
    char name[LEAD_NAME_MAX + 1];
    char phone[LEAD_PHONE_MAX + 1];
    struct lead l;

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memset(phone, '1', sizeof(phone) - 1);
    phone[sizeof(phone) - 1] = '\0';
    t_env_create(env, name, NULL, phone, &l);
    assert_counts(env, 1, 1, 2, 1);
    t_env_free(env);
}

/* Fault-injection torture: fail call N for N = 1, 2, ... until a run makes fewer than N calls
 * (it then succeeded). Every failing run must return the injected error and store nothing. */
TEST_ALL(unit_leads_create_fault_at_every_call)
{
    struct t_env *env = t_env_new(backend);
    char ops[512] = "";
    int n;

    for (n = 1; n < 200; n++) {
        struct lead_input in = {"John Doe", "john@example.com", "+1234567890"};
        struct sp_error err = {0};
        struct lead out;
        int rc;

        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_create(&env->deps, &in, env->arena, &out, &err);
        if (env->faults.injected == 0) {
            ASSERT_OK(rc); /* all calls made without reaching n: the run succeeded */
            break;
        }
        if (rc != SP_EUNAVAIL)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): want EUNAVAIL, got %s", n,
                   env->faults.last_op, sp_err_name(rc));
        ASSERT_EQ(SP_EUNAVAIL, err.code);
        ASSERT_EQ(0, env->faults.open_tx);
        assert_counts(env, 0, 0, 0, 0);
        note_op(ops, sizeof(ops), env->faults.last_op);
        arena_reset(env->arena);
    }
    ASSERT(n > 1);
    /* every kind of call the capture makes was made to fail at least once */
    ASSERT_CONTAINS(ops, "begin");
    ASSERT_CONTAINS(ops, "lead_insert");
    ASSERT_CONTAINS(ops, "event_append");
    ASSERT_CONTAINS(ops, "message_insert");
    ASSERT_CONTAINS(ops, "enqueue");
    ASSERT_CONTAINS(ops, "commit");
    assert_counts(env, 1, 2, 3, 2);
    t_env_free(env);
}

TEST(unit_leads_create_error_code_passes_through)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead_input in = {"Ana", "ana@example.com", NULL};
    struct sp_error err = {0};
    struct lead out;

    fault_plan_arm(&env->faults, 2, SP_EINTERNAL);
    ASSERT_EQ(SP_EINTERNAL, leads_create(&env->deps, &in, env->arena, &out, &err));
    ASSERT_EQ(SP_EINTERNAL, err.code);
    ASSERT_EQ(1, env->store->rollbacks);
    ASSERT_EQ(0, env->mem_queue.wakes); /* no wake for a rolled-back capture */
    assert_counts(env, 0, 0, 0, 0);
    t_env_free(env);
}

/* ---- reply ----------------------------------------------------------------------------- */

/* The use case alone: the reply and its generate-reply job, no answer yet. */
static int
reply_only(struct t_env *env, const char *lead_id, enum channel c, const char *content,
           char *id_out, struct sp_error *err)
{
    struct reply_input in = {lead_id, c, content};
    return leads_reply(&env->deps, &in, env->arena, id_out, err);
}

/* The reply, then its answer as the worker writes it a moment later. */
static int
reply(struct t_env *env, const char *lead_id, enum channel c, const char *content, char *id_out,
      struct sp_error *err)
{
    struct reply_input in = {lead_id, c, content};
    int rc = leads_reply(&env->deps, &in, env->arena, id_out, err);

    /* the worker's generate-reply job, a moment later (the welcomes stay unsent) */
    if (rc == SP_OK)
        t_env_answer(env);
    return rc;
}

TEST_ALL(unit_leads_reply_on_whatsapp)
{
    static const char content[] = "{\"from\":\"+1234567890\",\"text\":\"How much does it cost?\"}";
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1];
    struct lead l, got;
    struct message *m;
    struct lead_event *e;
    struct job *j;
    int nm, ne, nj;

    t_env_create(env, "John Doe", "john@example.com", "+1234567890", &l);
    env->clock.now = T_NOW + 5000;
    ASSERT_OK(reply(env, l.id, CHANNEL_WHATSAPP, content, mid, &err));
    ASSERT(sp_uuid_valid(mid, strlen(mid)));
    ASSERT_EQ(0, env->faults.open_tx);
    assert_counts(env, 1, 4, 6, 4);

    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    ASSERT_EQ(T_NOW + 5000, got.updated_at);
    ASSERT_EQ(T_NOW, got.created_at);

    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(4, nm);
    /* the stored inbound message */
    ASSERT_STREQ(mid, m[2].id);
    ASSERT_EQ(CHANNEL_WHATSAPP, m[2].channel);
    ASSERT_EQ(MESSAGE_INBOUND, m[2].direction);
    ASSERT_EQ(MESSAGE_KIND_REPLY, m[2].kind);
    ASSERT_EQ(MESSAGE_RECEIVED, m[2].status);
    ASSERT_JSON_STORED(backend, content, m[2].channel_message);
    /* the AI answer: same channel, queued, addressed to the phone (seed defect #6) */
    ASSERT_EQ(CHANNEL_WHATSAPP, m[3].channel);
    ASSERT_EQ(MESSAGE_OUTBOUND, m[3].direction);
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, m[3].kind);
    ASSERT_EQ(MESSAGE_QUEUED, m[3].status);
    ASSERT_STREQ("+1234567890", m[3].recipient);
    ASSERT_STREQ("+1234567890", t_json_str(m[3].channel_message, "to"));
    ASSERT_STREQ("pricing", t_json_str(m[3].channel_message, "intent"));
    ASSERT_EQ(T_NOW + 5000, m[3].created_at);

    t_env_events(env, l.id, &e, &ne);
    ASSERT_EQ(6, ne);
    ASSERT_EQ(EVENT_REPLY_RECEIVED, e[3].type);
    ASSERT_STREQ(mid, t_json_str(e[3].payload, "messageId"));
    ASSERT_STREQ("whatsapp", t_json_str(e[3].payload, "channel"));
    ASSERT_STREQ("How much does it cost?", t_json_str(e[3].payload, "messageContent.text"));
    ASSERT_EQ(EVENT_STATUS_CHANGED, e[4].type);
    ASSERT_JSON_STORED(backend,
                       "{\"from\":\"new\",\"to\":\"replied\",\"reason\":\"reply_received\"}",
                       e[4].payload);
    ASSERT_EQ(EVENT_MESSAGE_QUEUED, e[5].type);
    ASSERT_STREQ("ai_reply", t_json_str(e[5].payload, "kind"));
    ASSERT_STREQ(m[3].id, t_json_str(e[5].payload, "messageId"));

    t_env_jobs(env, l.id, &j, &nj);
    ASSERT_EQ(4, nj);
    /* the reply's generate-reply job, done; then the answer's send job */
    ASSERT_STREQ(GENERATE_REPLY_JOB, j[2].name);
    ASSERT_STREQ(mid, j[2].key);
    ASSERT_STREQ(mid, t_json_str(j[2].data, "messageId"));
    ASSERT_EQ(JOB_COMPLETED, j[2].state);
    ASSERT_STREQ(SEND_MESSAGE_JOB, j[3].name);
    ASSERT_STREQ(m[3].id, j[3].key);
    ASSERT_STREQ("ai_reply", t_json_str(j[3].data, "kind"));
    ASSERT_EQ(T_NOW + 5000, j[3].run_at);
    {
        char want[SP_UUID_LEN + 1];
        leads_answer_id(mid, want);
        ASSERT_STREQ(want, m[3].id); /* keyed by the inbound message */
    }
    t_env_free(env);
}

TEST(unit_leads_reply_on_email_answers_the_thread)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1];
    struct lead l;
    struct message *m;
    int nm;

    t_env_create(env, "John Doe", "john@example.com", "+1234567890", &l);
    ASSERT_OK(reply(env, l.id, CHANNEL_EMAIL,
                    "{\"from\":\"john@example.com\",\"subject\":\"RE: Welcome, John Doe!\","
                    "\"body\":\"Can we book a demo?\"}",
                    mid, &err));
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(4, nm);
    ASSERT_EQ(CHANNEL_EMAIL, m[3].channel);
    ASSERT_STREQ("john@example.com", m[3].recipient);
    ASSERT_STREQ("RE: Welcome, John Doe!", t_json_str(m[3].channel_message, "subject"));
    ASSERT_STREQ("demo", t_json_str(m[3].channel_message, "intent"));
    t_env_free(env);
}

TEST(unit_leads_second_reply_changes_no_status)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1];
    struct lead l;
    struct lead_event *e;
    int ne, changes = 0;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    ASSERT_OK(reply(env, l.id, CHANNEL_WHATSAPP, "{\"text\":\"hi\"}", mid, &err));
    ASSERT_OK(reply(env, l.id, CHANNEL_WHATSAPP, "{\"text\":\"hello?\"}", mid, &err));
    t_env_events(env, l.id, &e, &ne);
    for (int i = 0; i < ne; i++)
        changes += e[i].type == EVENT_STATUS_CHANGED;
    ASSERT_EQ(1, changes);
    assert_counts(env, 1, 5, 2 + 3 + 2, 5);
    t_env_free(env);
}

TEST(unit_leads_reply_on_channel_without_sender_is_einval)
{
    /* seed defect #7: refused with 400 before anything is stored */
    static const enum channel refused[] = {CHANNEL_LINKEDIN, CHANNEL_VOICE, CHANNEL_ADS};
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    for (int i = 0; i < 3; i++) {
        struct sp_error err = {0};
        char mid[SP_UUID_LEN + 1];
        int calls_before = env->faults.calls;

        ASSERT_EQ(SP_EINVAL, reply(env, l.id, refused[i], "{\"text\":\"hi\"}", mid, &err));
        ASSERT_STREQ("channel", err.field);
        ASSERT_CONTAINS(err.msg, channel_name(refused[i]));
        ASSERT_EQ(calls_before, env->faults.calls);
    }
    /* a channel whose sender is not configured is refused the same way */
    {
        struct sp_error err = {0};
        char mid[SP_UUID_LEN + 1];
        env->policy.sendable = 1u << CHANNEL_EMAIL;
        ASSERT_EQ(SP_EINVAL, reply(env, l.id, CHANNEL_WHATSAPP, "{\"text\":\"hi\"}", mid, &err));
    }
    assert_counts(env, 1, 2, 3, 2);
    t_env_free(env);
}

TEST_ALL(unit_leads_reply_unknown_lead_is_enotfound)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1];
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(SP_ENOTFOUND, reply(env, "00000000-0000-4000-8000-000000000000", CHANNEL_EMAIL,
                                  "{\"body\":\"hi\"}", mid, &err));
    ASSERT_EQ(SP_ENOTFOUND, err.code);
    ASSERT_EQ(0, env->faults.open_tx);
    assert_counts(env, 1, 1, 2, 1);
    t_env_free(env);
}

TEST(unit_leads_reply_without_any_address_stores_nothing)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1];
    struct lead l, got;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    /* an email reply from a phone-only lead with no "from": the answer has nowhere to go */
    ASSERT_EQ(SP_EINVAL,
              reply(env, l.id, CHANNEL_EMAIL, "{\"subject\":\"x\",\"body\":\"hi\"}", mid, &err));
    ASSERT_STREQ("messageContent", err.field);
    assert_counts(env, 1, 1, 2, 1);
    t_env_lead(env, l.id, &got);
    ASSERT_EQ(LEAD_STATUS_NEW, got.status);

    /* with a "from", the answer goes there */
    sp_error_clear(&err);
    ASSERT_OK(reply(env, l.id, CHANNEL_EMAIL,
                    "{\"from\":\"ana@work.example\",\"subject\":\"x\",\"body\":\"hi\"}", mid,
                    &err));
    {
        struct message *m;
        int nm;
        t_env_messages(env, l.id, &m, &nm);
        ASSERT_EQ(3, nm);
        ASSERT_STREQ("ana@work.example", m[2].recipient);
    }
    t_env_free(env);
}

TEST_ALL(unit_leads_reply_fault_at_every_call)
{
    struct t_env *env = t_env_new(backend);
    struct lead l;
    char ops[512] = "";
    int n;

    t_env_create(env, "John Doe", "john@example.com", "+1234567890", &l);
    env->clock.now = T_NOW + 1000;
    for (n = 1; n < 200; n++) {
        struct sp_error err = {0};
        char mid[SP_UUID_LEN + 1];
        struct lead got;
        int rc;

        struct reply_input in = {l.id, CHANNEL_WHATSAPP, "{\"text\":\"price?\"}"};

        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_reply(&env->deps, &in, env->arena, mid, &err);
        if (env->faults.injected == 0) {
            ASSERT_OK(rc);
            break;
        }
        if (rc != SP_EUNAVAIL)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): want EUNAVAIL, got %s", n,
                   env->faults.last_op, sp_err_name(rc));
        ASSERT_EQ(0, env->faults.open_tx);
        assert_counts(env, 1, 2, 3, 2);
        t_env_lead(env, l.id, &got);
        ASSERT_EQ(LEAD_STATUS_NEW, got.status);
        ASSERT_EQ(T_NOW, got.updated_at);
        note_op(ops, sizeof(ops), env->faults.last_op);
        arena_reset(env->arena);
    }
    ASSERT(n > 1);
    ASSERT_CONTAINS(ops, "lead_get");
    ASSERT_CONTAINS(ops, "lead_transition");
    ASSERT_CONTAINS(ops, "message_insert");
    ASSERT_CONTAINS(ops, "enqueue");
    ASSERT_CONTAINS(ops, "commit");
    /* the reply and its generate-reply job; the answer comes from the worker */
    assert_counts(env, 1, 3, 5, 3);
    t_env_free(env);
}

/* ---- details --------------------------------------------------------------------------- */

TEST_ALL(unit_leads_details_oldest_first_and_per_lead)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a, b;
    struct lead_details d;
    char mid[SP_UUID_LEN + 1];

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &a);
    env->clock.now += 10;
    t_env_create(env, "Bob", "bob@example.com", NULL, &b);
    env->clock.now += 10;
    ASSERT_OK(reply(env, a.id, CHANNEL_WHATSAPP, "{\"text\":\"demo?\"}", mid, &err));

    ASSERT_OK(leads_get_details(&env->deps, a.id, env->arena, &d, &err));
    ASSERT_STREQ(a.id, d.lead.id);
    ASSERT_STREQ("Ana", d.lead.name);
    ASSERT_EQ(LEAD_STATUS_REPLIED, d.lead.status);
    ASSERT_EQ(2, d.nchannels);
    ASSERT_EQ(CHANNEL_EMAIL, d.channels[0].channel);
    ASSERT_EQ(1, d.channels[0].nmessages);
    ASSERT_EQ(CHANNEL_EMAIL, d.channels[0].messages[0].channel);
    ASSERT_EQ(CHANNEL_WHATSAPP, d.channels[1].channel);
    ASSERT_EQ(3, d.channels[1].nmessages);
    ASSERT_EQ(MESSAGE_KIND_WELCOME, d.channels[1].messages[0].kind);
    ASSERT_STREQ(mid, d.channels[1].messages[1].id);
    ASSERT_EQ(MESSAGE_KIND_AI_REPLY, d.channels[1].messages[2].kind);
    ASSERT_EQ(0, d.channels[0].next);
    ASSERT_EQ(0, d.channels[1].next);
    ASSERT_EQ(0, d.events_next);
    ASSERT_EQ(0, d.jobs_more);
    for (int i = 1; i < d.channels[1].nmessages; i++)
        ASSERT(d.channels[1].messages[i - 1].created_at <= d.channels[1].messages[i].created_at);
    ASSERT_EQ(6, d.nevents);
    ASSERT_EQ(EVENT_LEAD_ADDED, d.events[0].type);
    ASSERT_EQ(EVENT_MESSAGE_QUEUED, d.events[1].type);
    ASSERT_EQ(EVENT_MESSAGE_QUEUED, d.events[2].type);
    ASSERT_EQ(EVENT_REPLY_RECEIVED, d.events[3].type);
    ASSERT_EQ(EVENT_STATUS_CHANGED, d.events[4].type);
    ASSERT_EQ(EVENT_MESSAGE_QUEUED, d.events[5].type);
    for (int i = 0; i < d.nevents; i++)
        ASSERT_STREQ(a.id, d.events[i].lead_id);
    ASSERT_EQ(4, d.njobs);
    ASSERT_STREQ(d.channels[0].messages[0].id, d.jobs[0].key);
    ASSERT_STREQ(d.channels[1].messages[0].id, d.jobs[1].key);
    ASSERT_STREQ(d.channels[1].messages[1].id, d.jobs[2].key); /* generate-reply */
    ASSERT_STREQ(d.channels[1].messages[2].id, d.jobs[3].key);

    ASSERT_OK(leads_get_details(&env->deps, b.id, env->arena, &d, &err));
    ASSERT_EQ(1, d.nchannels);
    ASSERT_EQ(1, d.channels[0].nmessages);
    ASSERT_EQ(2, d.nevents);
    ASSERT_EQ(1, d.njobs);
    ASSERT_STREQ(iso(T_NOW + 10), iso(d.lead.created_at));
    t_env_free(env);
}

TEST_ALL(unit_leads_details_unknown_is_enotfound)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead_details d;

    ASSERT_EQ(SP_ENOTFOUND, leads_get_details(&env->deps, "00000000-0000-4000-8000-000000000000",
                                              env->arena, &d, &err));
    ASSERT_STREQ("id", err.field);
    t_env_free(env);
}

TEST(unit_leads_details_storage_failure)
{
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;
    struct lead_details d;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    /* read_begin, lead_get, message_channels, message_page, event_page, list_group */
    for (int n = 1; n <= 6; n++) {
        struct sp_error err = {0};
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        ASSERT_EQ(SP_EUNAVAIL, leads_get_details(&env->deps, l.id, env->arena, &d, &err));
    }
    t_env_free(env);
}

/* ---- hardening #1: the reply route is not an open relay ---------------------------------- */

/* The event types of a lead's timeline, space-separated, into buf[cap]. */
static const char *
event_types(struct t_env *env, const char *lead_id, char *buf, size_t cap)
{
    struct lead_event *e;
    int ne;

    buf[0] = '\0';
    t_env_events(env, lead_id, &e, &ne);
    for (int i = 0; i < ne; i++)
        note_op(buf, cap, lead_event_type_name(e[i].type));
    return buf;
}

/* A phone-only lead replying by email with a valid "from": the address becomes the lead's, the
 * timeline says so, and the answer goes to it (the lead's own address now). */
TEST_ALL(unit_hostile_h1_reply_from_is_adopted_as_the_leads_address)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1], types[512];
    struct lead l, got;
    struct message *m;
    struct lead_event *e;
    int nm, ne;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    env->clock.now = T_NOW + 7;
    ASSERT_OK(reply(env, l.id, CHANNEL_EMAIL,
                    "{\"from\":\"ana@work.example\",\"subject\":\"Hi\",\"body\":\"price?\"}", mid,
                    &err));
    t_env_lead(env, l.id, &got);
    ASSERT_STREQ("ana@work.example", got.email);
    ASSERT_STREQ("+351912345678", got.phone);
    ASSERT_EQ(T_NOW + 7, got.updated_at);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(3, nm);
    ASSERT_STREQ("ana@work.example", m[2].recipient);
    ASSERT_STREQ("ana@work.example", t_json_str(m[2].channel_message, "to"));
    ASSERT_CONTAINS(event_types(env, l.id, types, sizeof(types)), "address_added");
    t_env_events(env, l.id, &e, &ne);
    for (int i = 0; i < ne; i++) {
        if (strcmp(lead_event_type_name(e[i].type), "address_added") != 0)
            continue;
        ASSERT_STREQ("email", t_json_str(e[i].payload, "channel"));
        ASSERT_STREQ("ana@work.example", t_json_str(e[i].payload, "address"));
        ASSERT_STREQ(mid, t_json_str(e[i].payload, "messageId"));
        ASSERT_STREQ(mid, t_json_str(e[i].correlation_ids, "messageId"));
    }
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

/* A "from" that is not an address of the channel is refused before anything is stored. */
TEST_ALL(unit_hostile_h1_reply_from_must_be_an_address_of_the_channel)
{
    static const struct {
        enum channel c;
        const char *content;
    } bad[] = {
        {CHANNEL_EMAIL, "{\"from\":\"\\r\\nBcc: x@evil.com\",\"body\":\"hi\"}"},
        {CHANNEL_EMAIL, "{\"from\":\"victim@example.org\\r\\nBcc: x@evil.com\",\"body\":\"hi\"}"},
        {CHANNEL_EMAIL, "{\"from\":\"Victim <victim@example.org>\",\"body\":\"hi\"}"},
        {CHANNEL_EMAIL, "{\"from\":\"+351912345678\",\"body\":\"hi\"}"},
        {CHANNEL_EMAIL, "{\"from\":\"a@\\u0080\\u0080.\\u0080\\u0080\",\"body\":\"hi\"}"},
        {CHANNEL_EMAIL, "{\"from\":\"\",\"body\":\"hi\"}"},
        {CHANNEL_WHATSAPP, "{\"from\":\"not a phone <script>\",\"text\":\"hi\"}"},
        {CHANNEL_WHATSAPP, "{\"from\":\"ana@work.example\",\"text\":\"hi\"}"},
        {CHANNEL_WHATSAPP, "{\"from\":\"+35191\\n2345678\",\"text\":\"hi\"}"},
        {CHANNEL_WHATSAPP, "{\"from\":\"+351\\u202e912345678\",\"text\":\"hi\"}"},
    };
    struct t_env *env = t_env_new(backend);
    struct lead phone_only, email_only, both, got;

    t_env_create(env, "Ana", NULL, "+351912345678", &phone_only);
    t_env_create(env, "Bob", "bob@example.com", NULL, &email_only);
    t_env_create(env, "Cy", "cy@example.com", "+15550001234", &both);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct lead *targets[] = {&phone_only, &email_only, &both};
        for (int t = 0; t < 3; t++) {
            struct sp_error err = {0};
            char mid[SP_UUID_LEN + 1];
            int rc = reply(env, targets[t]->id, bad[i].c, bad[i].content, mid, &err);
            if (rc != SP_EINVAL)
                t_fail(__FILE__, __LINE__, "content %s to lead %d: want EINVAL, got %s",
                       bad[i].content, t, sp_err_name(rc));
            ASSERT_STREQ("messageContent.from", err.field);
            ASSERT_STREQ(bad[i].c == CHANNEL_EMAIL ? "messageContent.from must be an email"
                                                   : "messageContent.from must be a phone number",
                         err.msg);
        }
    }
    assert_counts(env, 3, 4, 2 + 2 + 3, 4);
    t_env_lead(env, phone_only.id, &got);
    ASSERT(got.email == NULL);
    t_env_lead(env, email_only.id, &got);
    ASSERT(got.phone == NULL);
    t_env_free(env);
}

/* A lead that has an address on the channel keeps it: a different (valid) "from" is only kept
 * on the reply's own record, and the answer goes to the lead's address. */
TEST_ALL(unit_hostile_h1_reply_from_never_replaces_the_leads_address)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1], types[512];
    struct lead l, got;
    struct message *m;
    int nm;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    ASSERT_OK(reply(env, l.id, CHANNEL_EMAIL,
                    "{\"from\":\"victim@example.org\",\"subject\":\"Buy now\",\"body\":\"hi\"}",
                    mid, &err));
    ASSERT_OK(reply(env, l.id, CHANNEL_WHATSAPP, "{\"from\":\"+15550009999\",\"text\":\"hi\"}", mid,
                    &err));
    t_env_lead(env, l.id, &got);
    ASSERT_STREQ("ana@example.com", got.email);
    ASSERT_STREQ("+351912345678", got.phone);
    t_env_messages(env, l.id, &m, &nm);
    ASSERT_EQ(6, nm);
    ASSERT_STREQ("victim@example.org", t_json_str(m[2].channel_message, "from"));
    ASSERT_STREQ("ana@example.com", m[3].recipient);
    ASSERT_STREQ("ana@example.com", t_json_str(m[3].channel_message, "to"));
    ASSERT_STREQ("+15550009999", t_json_str(m[4].channel_message, "from"));
    ASSERT_STREQ("+351912345678", m[5].recipient);
    ASSERT(strstr(event_types(env, l.id, types, sizeof(types)), "address_added") == NULL);
    t_env_free(env);
}

/* The adoption is part of the reply's unit of work: a failure at any call leaves the lead
 * without the address, and nothing of the reply stored. */
TEST_ALL(unit_hostile_h1_reply_adoption_fault_at_every_call)
{
    struct t_env *env = t_env_new(backend);
    struct lead l, got;
    int n;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    for (n = 1; n < 200; n++) {
        struct sp_error err = {0};
        char mid[SP_UUID_LEN + 1];
        int rc;

        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = reply_only(env, l.id, CHANNEL_EMAIL, "{\"from\":\"ana@work.example\",\"body\":\"hi\"}",
                        mid, &err);
        if (env->faults.injected == 0) {
            ASSERT_OK(rc);
            break;
        }
        if (rc != SP_EUNAVAIL)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): want EUNAVAIL, got %s", n,
                   env->faults.last_op, sp_err_name(rc));
        ASSERT_EQ(0, env->faults.open_tx);
        assert_counts(env, 1, 1, 2, 1);
        t_env_lead(env, l.id, &got);
        ASSERT(got.email == NULL);
        arena_reset(env->arena);
    }
    ASSERT(n > 1);
    t_env_lead(env, l.id, &got);
    ASSERT_STREQ("ana@work.example", got.email);
    t_env_free(env);
}

/* ---- hardening #7: input limits and characters ------------------------------------------ */

/* Repeats the UTF-8 sequence `unit` n times into buf (NUL-terminated). */
static char *
repeat(char *buf, const char *unit, int n)
{
    size_t ul = strlen(unit);
    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * ul, unit, ul);
    buf[(size_t)n * ul] = '\0';
    return buf;
}

TEST(unit_hostile_h7_lengths_count_utf16_code_units)
{
    struct t_env *env = t_env_new(T_MEM);
    char name[1100], phone[300], email[1100];
    struct lead l;

    /* 130 "é": 260 bytes, 130 characters */
    t_env_create(env, repeat(name, "\xc3\xa9", 130), NULL, "+351912345678", &l);
    /* 255 "é" is the limit; a 4-byte character counts twice (a surrogate pair) */
    t_env_create(env, repeat(name, "\xc3\xa9", 255), NULL, "+351912345679", &l);
    t_env_create(env, repeat(name, "\xf0\x9f\x98\x80", 127), NULL, "+351912345670", &l);
    /* 50 "٣" (Arabic-Indic digit, 2 bytes): a 50-character phone */
    t_env_create(env, "Ana", NULL, repeat(phone, "\xd9\xa3", 50), &l);
    /* an email of 255 characters (not bytes) with a non-ASCII domain */
    {
        char label[200];
        repeat(label, "\xc3\xa9", 60);
        snprintf(email, sizeof(email), "a@%s.%s.%s.%s.abcdefghi", label, label, label, label);
    }
    t_env_create(env, "Ana", email, NULL, &l);
    t_env_free(env);

    expect_invalid(repeat(name, "\xc3\xa9", 256), NULL, "+1", "name",
                   "name must be shorter than or equal to 255 characters");
    expect_invalid(repeat(name, "\xf0\x9f\x98\x80", 128), NULL, "+1", "name",
                   "name must be shorter than or equal to 255 characters");
    expect_invalid("Ana", NULL, repeat(phone, "\xd9\xa3", 51), "phone",
                   "phone must be shorter than or equal to 50 characters");
}

TEST(unit_hostile_h7_control_and_bidi_characters_are_refused)
{
    static const char *const bad_emails[] = {
        "a@\xc2\x80\xc2\x80.\xc2\x80\xc2\x80", /* C1 controls */
        "a@b\x7f.co",                          /* DEL */
        "ana@ex\xe2\x80\xae"
        "ample.com",                   /* RIGHT-TO-LEFT OVERRIDE */
        "ana@example.c\xe2\x81\xa6om", /* LEFT-TO-RIGHT ISOLATE */
        "ana\xe2\x80\xaa@example.com", /* LEFT-TO-RIGHT EMBEDDING */
        "ana@exa\xffmple.com",         /* invalid UTF-8 */
        "ana@exa\xc3mple.com",         /* truncated sequence */
        "ana@ex\xc0\xaf"
        "ample.com", /* overlong */
        "ana@ex\xed\xa0\x80"
        "ample.com", /* a UTF-16 surrogate */
    };
    static const char *const bad_phones[] = {
        "+351\r\n912345678", "+351\x01", "+351\xc2\x85", "+351\xe2\x80\xae 912", "+351\xe2\x81\xa9",
    };
    static const char *const bad_names[] = {
        "Ana\r\nBcc: x@evil.com", "Ana\tB",          "Ana\x7f", "Ana\xc2\x9b",
        "Ana\xe2\x80\xae",        "Ana\xe2\x81\xa8",
    };
    const char *msg = "must not contain control or bidirectional formatting characters";
    char want[128];

    for (size_t i = 0; i < sizeof(bad_emails) / sizeof(bad_emails[0]); i++)
        expect_invalid("Ana", bad_emails[i], NULL, "email", "email must be an email");
    snprintf(want, sizeof(want), "phone %s", msg);
    for (size_t i = 0; i < sizeof(bad_phones) / sizeof(bad_phones[0]); i++)
        expect_invalid("Ana", NULL, bad_phones[i], "phone", want);
    snprintf(want, sizeof(want), "name %s", msg);
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        expect_invalid(bad_names[i], NULL, "+351912345678", "name", want);
    /* not UTF-8 at all (a caller other than the JSON parser, which refuses it itself) */
    expect_invalid("Ana\xff", NULL, "+351912345678", "name", "name must be valid UTF-8");
    expect_invalid("Ana", NULL, "+351\xff", "phone", "phone must be valid UTF-8");
}

/* ---- issue 4: a lead with a long history ----------------------------------------------- */

/* A reply on email whose content is about `len` bytes of JSON. */
static void
big_reply(struct t_env *env, const char *lead_id, size_t len, char *id_out)
{
    struct sp_error err = {0};
    char *content = arena_alloc(env->arena, len + 64);
    size_t n = (size_t)snprintf(content, len + 64, "{\"subject\":\"re\",\"body\":\"");

    memset(content + n, 'x', len);
    memcpy(content + n + len, "\"}", 3);
    ASSERT_OK(reply(env, lead_id, CHANNEL_EMAIL, content, id_out, &err));
    env->clock.now += 1;
}

/* 70 replies of 60 KB: the details hold the newest email messages and events within the list
 * budget (never all of them), with cursors, and the paging queries give every older item
 * exactly once, in the order the whole list always had. */
TEST_ALL(unit_issue_4_details_bounded_and_paged)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct lead_details d;
    struct message *all, *page_msgs;
    struct lead_event *all_ev, *page_ev;
    struct lead_page_info page;
    int nall, nall_ev, seen, seen_ev;
    int64_t next;
    size_t bytes;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    for (int i = 0; i < 70; i++) {
        char mid[SP_UUID_LEN + 1];
        big_reply(env, l.id, 60 * 1024, mid);
        arena_reset(env->arena);
    }
    t_env_messages(env, l.id, &all, &nall);
    ASSERT_EQ(141, nall); /* welcome + 70 x (reply + AI answer) */
    t_env_events(env, l.id, &all_ev, &nall_ev);

    ASSERT_OK(leads_get_details(&env->deps, l.id, env->arena, &d, &err));
    ASSERT_EQ(1, d.nchannels);
    ASSERT(d.channels[0].nmessages > 1);
    ASSERT(d.channels[0].nmessages <= LEADS_DETAILS_ITEMS);
    ASSERT(d.channels[0].next > 0);
    bytes = 0;
    for (int i = 0; i < d.channels[0].nmessages; i++)
        bytes += strlen(d.channels[0].messages[i].channel_message);
    ASSERT(bytes <= LEADS_LIST_BUDGET);
    /* the newest, oldest first: the tail of the whole list */
    seen = d.channels[0].nmessages;
    for (int i = 0; i < seen; i++)
        ASSERT_STREQ(all[nall - seen + i].id, d.channels[0].messages[i].id);
    /* 141 jobs (welcome + 70 generate-reply + 70 answers): the newest 50, oldest first, and
     * "older ones exist" */
    {
        struct job *jobs;
        int njobs;
        t_env_jobs(env, l.id, &jobs, &njobs);
        ASSERT_EQ(141, njobs);
        ASSERT_EQ(LEADS_DETAILS_ITEMS, d.njobs);
        ASSERT_EQ(1, d.jobs_more);
        for (int i = 0; i < d.njobs; i++)
            ASSERT_STREQ(jobs[njobs - d.njobs + i].id, d.jobs[i].id);
    }
    ASSERT(d.nevents > 1 && d.nevents <= LEADS_DETAILS_ITEMS);
    ASSERT(d.events_next > 0);
    seen_ev = d.nevents;
    for (int i = 0; i < seen_ev; i++)
        ASSERT_STREQ(all_ev[nall_ev - seen_ev + i].id, d.events[i].id);

    /* page back to the start: every older item once, in order */
    next = d.channels[0].next;
    while (next > 0) {
        ASSERT_OK(leads_list_messages(&env->deps, l.id, CHANNEL_EMAIL, next, 30, env->arena,
                                      &page_msgs, &page, &err));
        ASSERT(page.n >= 1 && page.n <= 30);
        for (int i = 0; i < page.n; i++)
            ASSERT_STREQ(all[nall - seen - page.n + i].id, page_msgs[i].id);
        seen += page.n;
        next = page.next;
    }
    ASSERT_EQ(nall, seen);
    next = d.events_next;
    while (next > 0) {
        ASSERT_OK(
            leads_list_events(&env->deps, l.id, next, 100, env->arena, &page_ev, &page, &err));
        ASSERT(page.n >= 1);
        for (int i = 0; i < page.n; i++)
            ASSERT_STREQ(all_ev[nall_ev - seen_ev - page.n + i].id, page_ev[i].id);
        seen_ev += page.n;
        next = page.next;
    }
    ASSERT_EQ(nall_ev, seen_ev);
    t_env_free(env);
}

/* Without a cursor the paging queries give the newest page; at most `limit` items; small items
 * stop at the count, not the budget. */
TEST_ALL(unit_issue_4_pages_by_count)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct message *all, *msgs;
    struct lead_page_info page;
    int nall;
    char mid[SP_UUID_LEN + 1];

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &l);
    for (int i = 0; i < 5; i++)
        big_reply(env, l.id, 10, mid);
    t_env_messages(env, l.id, &all, &nall);
    ASSERT_EQ(12, nall); /* email + whatsapp welcome, 5 x 2 on email */
    ASSERT_OK(
        leads_list_messages(&env->deps, l.id, CHANNEL_EMAIL, 0, 4, env->arena, &msgs, &page, &err));
    ASSERT_EQ(4, page.n);
    ASSERT(page.next > 0);
    ASSERT_STREQ(all[nall - 4].id, msgs[0].id);
    ASSERT_STREQ(all[nall - 1].id, msgs[3].id);
    ASSERT_OK(leads_list_messages(&env->deps, l.id, CHANNEL_EMAIL, page.next, 100, env->arena,
                                  &msgs, &page, &err));
    ASSERT_EQ(7, page.n); /* the rest of email: welcome + 6; whatsapp's welcome is not there */
    ASSERT_EQ(0, page.next);
    ASSERT_STREQ(all[0].id, msgs[0].id);
    ASSERT_OK(leads_list_messages(&env->deps, l.id, CHANNEL_WHATSAPP, 0, 100, env->arena, &msgs,
                                  &page, &err));
    ASSERT_EQ(1, page.n);
    ASSERT_EQ(0, page.next);
    ASSERT_OK(leads_list_messages(&env->deps, l.id, CHANNEL_VOICE, 0, 100, env->arena, &msgs, &page,
                                  &err));
    ASSERT_EQ(0, page.n);
    ASSERT_EQ(0, page.next);
    t_env_free(env);
}

TEST_ALL(unit_issue_4_paging_errors)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct message *msgs;
    struct lead_event *ev;
    struct lead_page_info page;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(SP_ENOTFOUND,
              leads_list_messages(&env->deps, "00000000-0000-4000-8000-000000000000", CHANNEL_EMAIL,
                                  0, 10, env->arena, &msgs, &page, &err));
    ASSERT_EQ(SP_ENOTFOUND, leads_list_events(&env->deps, "00000000-0000-4000-8000-000000000000", 0,
                                              10, env->arena, &ev, &page, &err));
    memset(&err, 0, sizeof(err));
    ASSERT_EQ(SP_EINVAL, leads_list_messages(&env->deps, l.id, CHANNEL_EMAIL, 0, 0, env->arena,
                                             &msgs, &page, &err));
    ASSERT_STREQ("limit", err.field);
    memset(&err, 0, sizeof(err));
    ASSERT_EQ(SP_EINVAL, leads_list_events(&env->deps, l.id, 0, LEADS_PAGE_MAX + 1, env->arena, &ev,
                                           &page, &err));
    memset(&err, 0, sizeof(err));
    ASSERT_EQ(SP_EINVAL, leads_list_events(&env->deps, l.id, -1, 10, env->arena, &ev, &page, &err));
    ASSERT_STREQ("cursor", err.field);
    t_env_free(env);
}
