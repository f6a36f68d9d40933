/* test_inbound.c: the inbound use cases (application/inbound.c) on the fakes and, for the main
 * paths, on a real SQLite file (TEST_ALL): leads_receive finding the lead (by id, by thread, by
 * the sender's normalised address, or making one), deduplication by provider id and one-time
 * token, the answer skipped for messages without words and for stop requests, leads_reply as
 * the API's door, leads_forget_receipts; leads_apply_receipt moving an outbound message along
 * sent -> delivered -> read or to failed; and the fault-injection torture tests: a storage
 * failure at any call leaves the store exactly as it was. */
#include "t.h"

#include <stdarg.h>

#include "core/arena.h"
#include "core/clock.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "infra/db.h"

#define UNKNOWN_ID "00000000-0000-4000-8000-000000000000"

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

/* Rows of inbound_receipts (the claims of provider ids and tokens). */
static int
receipt_count(struct t_env *env)
{
    DB_STMT_SAME(all_receipts, "SELECT 1 FROM inbound_receipts");
    struct sp_error err = {0};
    int64_t n = 0;

    if (env->backend == T_MEM)
        return env->store->cur.nreceipts;
    ASSERT_OK(db_query_count(env->conn, &all_receipts, DB_NOARGS, &n, &err));
    return (int)n;
}

/* Appends to buf[cap] at *len; fails the test if it does not fit. */
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        t_fail(__FILE__, __LINE__, "fingerprint buffer too small");
    *len += (size_t)n;
}

#define FP_MAX 16384

/* What the store holds, as text: the row counts (receipts too), and for each lead of ids[] its
 * fields, its messages (with their delivery fields), its events and its jobs. Two equal
 * fingerprints mean nothing was written in between. */
static void
fingerprint(struct t_env *env, const char *const *ids, int nids, char *buf)
{
    struct t_counts c;
    size_t len = 0;

    t_env_counts(env, &c);
    put(buf, FP_MAX, &len, "leads %d messages %d events %d jobs %d receipts %d\n", c.leads,
        c.messages, c.events, c.jobs, receipt_count(env));
    for (int i = 0; i < nids; i++) {
        struct lead l;
        struct message *m;
        struct lead_event *e;
        struct job *j;
        int nm, ne, nj;

        t_env_lead(env, ids[i], &l);
        put(buf, FP_MAX, &len, "lead %s %s %s %s %s %lld\n", l.id, l.name, l.email ? l.email : "-",
            l.phone ? l.phone : "-", lead_status_name(l.status), (long long)l.updated_at);
        t_env_messages(env, ids[i], &m, &nm);
        for (int k = 0; k < nm; k++)
            put(buf, FP_MAX, &len, " message %s %s %d %s %s %lld\n", m[k].id,
                message_status_name(m[k].status), m[k].attempts,
                m[k].last_error ? m[k].last_error : "-", m[k].provider_id ? m[k].provider_id : "-",
                (long long)m[k].updated_at);
        t_env_events(env, ids[i], &e, &ne);
        for (int k = 0; k < ne; k++)
            put(buf, FP_MAX, &len, " event %s %s\n", e[k].id, lead_event_type_name(e[k].type));
        t_env_jobs(env, ids[i], &j, &nj);
        for (int k = 0; k < nj; k++)
            put(buf, FP_MAX, &len, " job %s %s %s\n", j[k].id, j[k].name,
                job_state_name(j[k].state));
    }
}

/* Appends op to the space-separated list ops[cap] unless it is there already. */
static void
note_op(char *ops, size_t cap, const char *op)
{
    size_t len = strlen(ops);
    if (strstr(ops, op) == NULL)
        snprintf(ops + len, cap - len, "%s ", op);
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

/* The newest event of `type` of the lead; fails the test when there is none. */
static struct lead_event
last_of(struct t_env *env, const char *lead_id, enum lead_event_type type)
{
    struct lead_event *e;
    int n;
    t_env_events(env, lead_id, &e, &n);
    for (int i = n - 1; i >= 0; i--)
        if (e[i].type == type)
            return e[i];
    t_fail(__FILE__, __LINE__, "lead %s has no %s event", lead_id, lead_event_type_name(type));
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

static int
count_jobs(struct t_env *env, const char *lead_id, const char *name)
{
    struct job *j;
    int n, k = 0;
    t_env_jobs(env, lead_id, &j, &n);
    for (int i = 0; i < n; i++)
        k += strcmp(j[i].name, name) == 0;
    return k;
}

/* A message from `from` on WhatsApp as the webhook hands it over: answerable, a lead made for
 * an unknown sender. content is the stored JSON (a literal: it must outlive arena resets). */
static struct inbound_reply
wa_in(const char *from, const char *content, const char *wamid)
{
    struct inbound_reply in;

    memset(&in, 0, sizeof(in));
    in.source = REPLY_SOURCE_WHATSAPP;
    in.channel = CHANNEL_WHATSAPP;
    in.from = from;
    in.create_lead = 1;
    in.content = content;
    in.answerable = 1;
    in.provider_id = wamid;
    return in;
}

/* The same for an email (the Mailgun door). */
static struct inbound_reply
email_in(const char *from, const char *content, const char *message_id, const char *token)
{
    struct inbound_reply in;

    memset(&in, 0, sizeof(in));
    in.source = REPLY_SOURCE_EMAIL;
    in.channel = CHANNEL_EMAIL;
    in.from = from;
    in.create_lead = 1;
    in.content = content;
    in.answerable = 1;
    in.provider_id = message_id;
    in.once_token = token;
    return in;
}

static int
receive(struct t_env *env, const struct inbound_reply *in, struct inbound_result *out,
        struct sp_error *err)
{
    return leads_receive(&env->deps, in, env->arena, out, err);
}

/* leads_receive that must succeed (and close its unit of work). */
static void
receive_ok(struct t_env *env, const struct inbound_reply *in, struct inbound_result *out)
{
    struct sp_error err = {0};
    int rc = receive(env, in, out, &err);

    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "leads_receive: %s: %s", sp_err_name(rc), err.msg);
    ASSERT_EQ(0, env->faults.open_tx);
}

#define TEXT(t) "{\"type\":\"text\",\"text\":\"" t "\"}"
#define BODY(b) "{\"subject\":\"Re: Welcome\",\"body\":\"" b "\"}"

/* ---- leads_receive: finding the lead ------------------------------------------------------ */

TEST_ALL(unit_inbound_receive_by_lead_id)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_reply in;
    struct inbound_result out;
    struct lead ana, bob, got;
    struct message m;
    struct lead_event e;
    struct job *j;
    int nj;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    t_env_create(env, "Bob", NULL, "+15550001111", &bob);
    env->clock.now = T_NOW + 50;
    /* the id names the lead, even when the sender is another lead's address */
    in = wa_in("+15550001111",
               "{\"from\":\"+15550001111\",\"type\":\"text\",\"text\":\"How much?\"}", "wamid.A");
    in.lead_id = ana.id;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT(sp_uuid_valid(out.message_id, strlen(out.message_id)));
    ASSERT_EQ(0, out.lead_created);
    ASSERT_EQ(0, out.duplicate);
    ASSERT_EQ(0, out.token_replayed);
    /* Ana: 2 welcomes + the reply; lead_added, 2 queued, reply_received, status_changed */
    assert_counts(env, 2, 4, 3 + 2 + 2, 4);
    ASSERT_EQ(1, receipt_count(env));

    m = message_at(env, ana.id, 2);
    ASSERT_STREQ(out.message_id, m.id);
    ASSERT_EQ(CHANNEL_WHATSAPP, m.channel);
    ASSERT_EQ(MESSAGE_INBOUND, m.direction);
    ASSERT_EQ(MESSAGE_KIND_REPLY, m.kind);
    ASSERT_EQ(MESSAGE_RECEIVED, m.status);
    ASSERT_STREQ("wamid.A", m.provider_id);
    ASSERT(m.recipient == NULL);
    ASSERT_EQ(T_NOW + 50, m.created_at);
    ASSERT_STREQ("How much?", t_json_str(m.channel_message, "text"));

    e = last_of(env, ana.id, EVENT_REPLY_RECEIVED);
    ASSERT_STREQ(out.message_id, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ("whatsapp", t_json_str(e.payload, "channel"));
    ASSERT_STREQ("whatsapp", t_json_str(e.payload, "source"));
    ASSERT_STREQ("wamid.A", t_json_str(e.payload, "providerId"));
    ASSERT_STREQ("How much?", t_json_str(e.payload, "messageContent.text"));
    ASSERT_STREQ(out.message_id, t_json_str(e.correlation_ids, "messageId"));
    ASSERT_EQ(T_NOW + 50, e.created_at);
    e = last_of(env, ana.id, EVENT_STATUS_CHANGED);
    ASSERT_JSON_STORED(
        backend, "{\"from\":\"new\",\"to\":\"replied\",\"reason\":\"reply_received\"}", e.payload);

    t_env_jobs(env, ana.id, &j, &nj);
    ASSERT_EQ(3, nj);
    ASSERT_STREQ(GENERATE_REPLY_JOB, j[2].name);
    ASSERT_STREQ(out.message_id, j[2].key);
    ASSERT_STREQ(out.message_id, t_json_str(j[2].data, "messageId"));

    t_env_lead(env, ana.id, &got);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    ASSERT_EQ(T_NOW + 50, got.updated_at);
    ASSERT_STREQ("+351912345678", got.phone); /* the sender is not adopted: Ana has a phone */
    t_env_lead(env, bob.id, &got);
    ASSERT_EQ(LEAD_STATUS_NEW, got.status);
    ASSERT_EQ(1, count_events(env, bob.id, EVENT_LEAD_ADDED));
    ASSERT_EQ(0, count_events(env, bob.id, EVENT_REPLY_RECEIVED));
    if (backend == T_MEM) {
        ASSERT_EQ(3, env->store->begins);
        ASSERT_EQ(3, env->store->commits);
        ASSERT_EQ(3, env->mem_queue.wakes);
    }
    t_env_free(env);
}

/* An email answering our message: the thread's first id that is one of our outbound messages
 * on the channel names the lead, before the sender's address. */
TEST_ALL(unit_inbound_receive_by_thread_id)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct lead ana, bob;
    struct message welcome;
    const char *thread[4];
    struct inbound_reply in;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    t_env_create(env, "Bob", "bob@example.com", NULL, &bob);
    welcome = message_at(env, ana.id, 0);
    ASSERT_EQ(CHANNEL_EMAIL, welcome.channel);
    thread[0] = "CAF+x1@mail.gmail.com"; /* not one of ours: skipped */
    thread[1] = NULL;
    thread[2] = UNKNOWN_ID; /* a UUID, but no message of ours */
    thread[3] = welcome.id;
    in = email_in("bob@example.com", BODY("Sounds good"), "<r1@mail.example>", NULL);
    in.thread_ids = thread;
    in.nthread_ids = 4;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT_EQ(0, out.lead_created);
    ASSERT_STREQ(out.message_id, message_at(env, ana.id, 2).id);
    ASSERT_EQ(MESSAGE_INBOUND, message_at(env, ana.id, 2).direction);
    ASSERT_EQ(1, count_events(env, ana.id, EVENT_REPLY_RECEIVED));
    ASSERT_EQ(0, count_events(env, bob.id, EVENT_REPLY_RECEIVED));
    assert_counts(env, 2, 4, 3 + 2 + 2, 4);
    t_env_free(env);
}

/* An inbound message's id, or an outbound message's on another channel, names no thread: the
 * lookup goes on to the sender's address (or finds nothing). */
TEST_ALL(unit_inbound_receive_thread_ignores_inbound_and_other_channel)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana, bob;
    struct message wa_welcome;
    const char *thread[2];
    struct sp_error err = {0};
    char before[FP_MAX], after[FP_MAX];
    const char *ids[2];

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    t_env_create(env, "Bob", "bob@example.com", NULL, &bob);
    ids[0] = ana.id;
    ids[1] = bob.id;
    /* an email Ana sent us: inbound */
    in = email_in("ana@example.com", BODY("first"), "<a1@mail.example>", NULL);
    receive_ok(env, &in, &out);
    ASSERT_STREQ(ana.id, out.lead_id);
    wa_welcome = message_at(env, ana.id, 1);
    ASSERT_EQ(CHANNEL_WHATSAPP, wa_welcome.channel);

    thread[0] = wa_welcome.id;  /* ours, outbound, but WhatsApp */
    thread[1] = out.message_id; /* email, but inbound */
    in = email_in("bob@example.com", BODY("second"), "<b1@mail.example>", NULL);
    in.thread_ids = thread;
    in.nthread_ids = 2;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(bob.id, out.lead_id); /* by the sender */

    /* without a sender and without create_lead: nothing found, nothing stored */
    fingerprint(env, ids, 2, before);
    in = email_in(NULL, BODY("third"), "<c1@mail.example>", "tok-c1");
    in.thread_ids = thread;
    in.nthread_ids = 2;
    in.create_lead = 0;
    memset(&out, 'x', sizeof(out));
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    ASSERT_EQ(SP_ENOTFOUND, err.code);
    ASSERT_EQ(0, out.lead_id[0]);
    ASSERT_EQ(0, out.message_id[0]);
    ASSERT_EQ(0, env->faults.open_tx);
    fingerprint(env, ids, 2, after);
    ASSERT_STREQ(before, after);
    t_env_free(env);
}

/* Thread ids that are not UUIDs (or NULL) are skipped without a lookup. */
TEST(unit_inbound_receive_thread_skips_non_uuids_without_lookup)
{
    static const char *const junk[] = {"",
                                       "CAF+x1@mail.gmail.com",
                                       NULL,
                                       "0190c2b8-7f3a-7c1d-9e4b-2a6f8d0c1e5",   /* one short */
                                       "0190c2b8-7f3a-7c1d-9e4b-2a6f8d0c1e5ff", /* one long */
                                       "0190c2b87f3a7c1d9e4b2a6f8d0c1e5fabcd"};
    struct t_env *env = t_env_new(T_MEM);
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    const char *one[1] = {UNKNOWN_ID};
    int calls_none, calls_junk, calls_one;

    in = email_in(NULL, BODY("hi"), NULL, NULL);
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    calls_none = env->faults.calls;

    fault_plan_arm(&env->faults, 0, 0);
    in.thread_ids = junk;
    in.nthread_ids = (int)(sizeof(junk) / sizeof(junk[0]));
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    calls_junk = env->faults.calls;

    fault_plan_arm(&env->faults, 0, 0);
    in.thread_ids = one;
    in.nthread_ids = 1;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    calls_one = env->faults.calls;

    ASSERT_EQ(calls_none, calls_junk);    /* begin only */
    ASSERT_EQ(calls_none + 1, calls_one); /* begin, message_get */
    assert_counts(env, 0, 0, 0, 0);
    t_env_free(env);
}

/* The sender's email matches a lead's whatever its case and surrounding blanks. */
TEST_ALL(unit_inbound_receive_by_from_email_normalised)
{
    static const char *const senders[] = {"Ana.Silva@Example.com", "ana.silva@example.com",
                                          "ANA.SILVA@EXAMPLE.COM", "  ana.silva@EXAMPLE.com\t"};
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    struct lead ana, bob, got;

    t_env_create(env, "Bob", "bob@example.com", NULL, &bob);
    t_env_create(env, "Ana", "Ana.Silva@Example.com", NULL, &ana);
    for (size_t i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
        in = email_in(senders[i], BODY("hello"), NULL, NULL);
        in.create_lead = 0;
        receive_ok(env, &in, &out);
        if (strcmp(ana.id, out.lead_id) != 0)
            t_fail(__FILE__, __LINE__, "sender \"%s\" went to %s", senders[i], out.lead_id);
    }
    /* a different address, or the same one on the other channel, is no match */
    in = email_in("ana.silva@example.org", BODY("hello"), NULL, NULL);
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    in = wa_in("ana.silva@example.com", TEXT("hello"), NULL);
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    t_env_lead(env, ana.id, &got);
    ASSERT_STREQ("Ana.Silva@Example.com", got.email); /* kept as captured */
    assert_counts(env, 2, 2 + 4, 2 + 2 + 4 + 1, 2 + 4);
    t_env_free(env);
}

/* The sender's phone matches a lead's by its digits: "+1 (631) 555-1181" is 16315551181. */
TEST_ALL(unit_inbound_receive_by_from_phone_digits)
{
    static const char *const senders[] = {"+16315551181", "16315551181", "+1 631-555-1181",
                                          "+1 (631) 555-1181"};
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    struct lead ana, bob;

    t_env_create(env, "Bob", NULL, "+1 (631) 555-1182", &bob);
    t_env_create(env, "Ana", NULL, "+1 (631) 555-1181", &ana);
    for (size_t i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
        in = wa_in(senders[i], TEXT("hi"), NULL);
        in.create_lead = 0;
        receive_ok(env, &in, &out);
        if (strcmp(ana.id, out.lead_id) != 0)
            t_fail(__FILE__, __LINE__, "sender \"%s\" went to %s", senders[i], out.lead_id);
    }
    in = wa_in("+16315551183", TEXT("hi"), NULL);
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    in = wa_in("+6315551181", TEXT("hi"), NULL); /* no country code: other digits */
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    ASSERT_EQ(4, count_events(env, ana.id, EVENT_REPLY_RECEIVED));
    ASSERT_EQ(0, count_events(env, bob.id, EVENT_REPLY_RECEIVED));
    t_env_free(env);
}

/* Two leads with one address: the oldest gets the message, on either channel. */
/* One lead per person (migration 0007): a second capture of the address is refused, so the
 * sender's address names exactly one lead, whatever case or formatting the reply uses. */
TEST_ALL(unit_inbound_receive_address_names_one_lead)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead_input li = {"Ana (again)", "ANA@example.com", NULL};
    struct inbound_result out;
    struct inbound_reply in;
    struct lead old, dup;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &old);
    env->clock.now += 10;
    ASSERT_EQ(SP_ECONFLICT, leads_create(&env->deps, &li, env->arena, &dup, &err));

    in = email_in("Ana@Example.com", BODY("hi"), NULL, NULL);
    in.create_lead = 0;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(old.id, out.lead_id);
    in = wa_in("+351 912 345 678", TEXT("hi"), NULL);
    in.create_lead = 0;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(old.id, out.lead_id);
    t_env_free(env);
}

/* ---- leads_receive: a new lead ----------------------------------------------------------------
 */

TEST_ALL(unit_inbound_receive_creates_lead_from_whatsapp_sender)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out, again;
    struct inbound_reply in;
    struct lead got;
    struct message *m;
    struct lead_event *e;
    struct job *j;
    int nm, ne, nj;
    char want[1024];

    env->clock.now = T_NOW + 5;
    in = wa_in("+351912345678", "{\"from\":\"+351912345678\",\"type\":\"text\",\"text\":\"Hi!\"}",
               "wamid.N1");
    in.from_name = "Maria Silva";
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.lead_created);
    ASSERT(sp_uuid_valid(out.lead_id, strlen(out.lead_id)));
    ASSERT(sp_uuid_valid(out.message_id, strlen(out.message_id)));
    assert_counts(env, 1, 1, 3, 1);

    t_env_lead(env, out.lead_id, &got);
    ASSERT_STREQ("Maria Silva", got.name);
    ASSERT_STREQ("+351912345678", got.phone);
    ASSERT(got.email == NULL);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    ASSERT_EQ(T_NOW + 5, got.created_at);
    ASSERT_EQ(T_NOW + 5, got.updated_at);

    /* the prospect wrote first: no welcome, only the reply */
    t_env_messages(env, out.lead_id, &m, &nm);
    ASSERT_EQ(1, nm);
    ASSERT_STREQ(out.message_id, m[0].id);
    ASSERT_EQ(MESSAGE_INBOUND, m[0].direction);
    ASSERT_EQ(MESSAGE_KIND_REPLY, m[0].kind);

    t_env_events(env, out.lead_id, &e, &ne);
    ASSERT_EQ(3, ne);
    ASSERT_EQ(EVENT_LEAD_ADDED, e[0].type);
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"Maria Silva\",\"email\":null,\"phone\":\"+351912345678\","
             "\"status\":\"new\",\"source\":\"whatsapp\"}",
             out.lead_id);
    ASSERT_JSON_STORED(backend, want, e[0].payload);
    snprintf(want, sizeof(want), "{\"leadId\":\"%s\"}", out.lead_id);
    ASSERT_JSON_STORED(backend, want, e[0].correlation_ids);
    ASSERT_EQ(EVENT_REPLY_RECEIVED, e[1].type);
    ASSERT_STREQ("whatsapp", t_json_str(e[1].payload, "source"));
    ASSERT_STREQ("wamid.N1", t_json_str(e[1].payload, "providerId"));
    ASSERT_STREQ(out.message_id, t_json_str(e[1].payload, "messageId"));
    ASSERT_EQ(EVENT_STATUS_CHANGED, e[2].type);
    ASSERT_JSON_STORED(backend,
                       "{\"from\":\"new\",\"to\":\"replied\",\"reason\":\"reply_received\"}",
                       e[2].payload);
    for (int i = 0; i < ne; i++)
        ASSERT_EQ(T_NOW + 5, e[i].created_at);

    t_env_jobs(env, out.lead_id, &j, &nj);
    ASSERT_EQ(1, nj);
    ASSERT_STREQ(GENERATE_REPLY_JOB, j[0].name);
    ASSERT_STREQ(out.message_id, j[0].key);
    ASSERT_EQ(0, count_jobs(env, out.lead_id, SEND_MESSAGE_JOB));
    if (backend == T_MEM) {
        ASSERT_EQ(1, env->store->commits);
        ASSERT_EQ(1, env->mem_queue.wakes);
    }

    /* the sender's next message finds the lead made for it */
    in = wa_in("+351912345678", TEXT("Still there?"), "wamid.N2");
    in.from_name = "Someone Else";
    receive_ok(env, &in, &again);
    ASSERT_EQ(0, again.lead_created);
    ASSERT_STREQ(out.lead_id, again.lead_id);
    t_env_lead(env, out.lead_id, &got);
    ASSERT_STREQ("Maria Silva", got.name);
    assert_counts(env, 1, 2, 4, 2);
    t_env_free(env);
}

TEST_ALL(unit_inbound_receive_creates_lead_from_email_sender)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead got;
    struct lead_event e;

    in = email_in("Bob@Example.com", BODY("Tell me more"), "<m1@mail.example>", "tok-1");
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.lead_created);
    t_env_lead(env, out.lead_id, &got);
    ASSERT_STREQ("Bob@Example.com", got.name); /* no display name: the address */
    ASSERT_STREQ("Bob@Example.com", got.email);
    ASSERT(got.phone == NULL);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    e = last_of(env, out.lead_id, EVENT_LEAD_ADDED);
    ASSERT_STREQ("email", t_json_str(e.payload, "source"));
    e = last_of(env, out.lead_id, EVENT_REPLY_RECEIVED);
    ASSERT_STREQ("email", t_json_str(e.payload, "source"));
    ASSERT_STREQ("<m1@mail.example>", t_json_str(e.payload, "providerId"));
    assert_counts(env, 1, 1, 3, 1);
    ASSERT_EQ(2, receipt_count(env)); /* the token and the Message-Id */
    ASSERT_EQ(1, count_jobs(env, out.lead_id, GENERATE_REPLY_JOB));
    t_env_free(env);
}

/* A display name that cannot be a lead's name (none, blank, control or bidi characters, bad
 * UTF-8, over 255 characters) gives way to the address. */
TEST(unit_inbound_receive_new_lead_name_falls_back_to_address)
{
    char long_name[LEAD_NAME_MAX + 2], max_name[LEAD_NAME_MAX + 1];
    struct {
        const char *name;
        int kept; /* 1: the lead is named so; 0: named after its address */
    } cases[] = {
        {NULL, 0},
        {"", 0},
        {" ", 0},
        {"    ", 0},
        {"\t", 0},
        {"Ana\x01", 0},
        {"Ana\r\nBcc: x@evil.example", 0},
        {"Ana\x7f", 0},
        {"\xc2\x85"
         "Ana",
         0}, /* NEL, a C1 control */
        {"\xe2\x80\xae"
         "anA",
         0}, /* RIGHT-TO-LEFT OVERRIDE */
        {"Ana\xe2\x80\xa8"
         "Silva",
         0}, /* LINE SEPARATOR */
        {"\xff\xfe"
         "Ana",
         0},            /* not UTF-8 */
        {"\xc3", 0},    /* truncated sequence */
        {long_name, 0}, /* 256 characters */
        {max_name, 1},  /* 255 characters */
        {"Jos\xc3\xa9 Mar\xc3\xad"
         "a",
         1},
        {"Ana", 1},
        {"A", 1},
    };
    struct t_env *env = t_env_new(T_MEM);

    memset(long_name, 'a', LEAD_NAME_MAX + 1);
    long_name[LEAD_NAME_MAX + 1] = '\0';
    memset(max_name, 'b', LEAD_NAME_MAX);
    max_name[LEAD_NAME_MAX] = '\0';
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char from[32];
        struct inbound_reply in;
        struct inbound_result out;
        struct lead got;
        struct lead_event e;
        const char *want;

        snprintf(from, sizeof(from), "+1555000%04zu", i);
        in = wa_in(from, TEXT("hi"), NULL);
        in.from_name = cases[i].name;
        receive_ok(env, &in, &out);
        ASSERT_EQ(1, out.lead_created);
        t_env_lead(env, out.lead_id, &got);
        want = cases[i].kept ? cases[i].name : from;
        if (strcmp(want, got.name) != 0)
            t_fail(__FILE__, __LINE__, "case %zu: want name \"%s\", got \"%s\"", i, want, got.name);
        e = last_of(env, out.lead_id, EVENT_LEAD_ADDED);
        ASSERT_STREQ(want, t_json_str(e.payload, "name"));
    }
    t_env_free(env);
}

/* ---- leads_receive: nothing matches, nothing stored ---------------------------------------- */

TEST_ALL(unit_inbound_receive_no_match_is_enotfound)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    struct lead ana;
    const char *thread[1] = {UNKNOWN_ID};
    char before[FP_MAX], after[FP_MAX];
    const char *ids[1];

    t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
    ids[0] = ana.id;
    fingerprint(env, ids, 1, before);

    /* a stranger, an unknown thread, create_lead 0 */
    in = email_in("stranger@example.org", BODY("hi"), "<s1@mail.example>", "tok-s1");
    in.thread_ids = thread;
    in.nthread_ids = 1;
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    ASSERT_EQ(SP_ENOTFOUND, err.code);
    ASSERT_EQ(0, out.lead_created);
    ASSERT_EQ(0, out.message_id[0]);
    ASSERT_EQ(0, env->faults.open_tx);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after); /* the claims were rolled back with the rest */

    /* an unknown lead id names nothing, even when the sender is a lead's address */
    sp_error_clear(&err);
    in = email_in("ana@example.com", BODY("hi"), "<s2@mail.example>", NULL);
    in.lead_id = UNKNOWN_ID;
    in.create_lead = 0;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    ASSERT_STREQ("id", err.field);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after);

    /* create_lead, but no sender to make a lead of */
    sp_error_clear(&err);
    in = email_in(NULL, BODY("hi"), "<s3@mail.example>", "tok-s3");
    in.lead_id = UNKNOWN_ID;
    ASSERT_EQ(SP_ENOTFOUND, receive(env, &in, &out, &err));
    ASSERT_STREQ("from", err.field);
    ASSERT_EQ(0, out.lead_created);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after);

    /* the provider's retry, now from a known sender, is taken in: no claim was left behind */
    in = email_in("ana@example.com", BODY("hi"), "<s1@mail.example>", "tok-s1");
    in.create_lead = 0;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT_EQ(0, out.duplicate);
    ASSERT_EQ(0, out.token_replayed);
    t_env_free(env);
}

/* Regression: a lookup that found nothing (the reply token's lead, the thread) left its
 * SP_ENOTFOUND in err, and sp_error_set keeps the first error, so a later failure of the unit
 * of work (here its commit) returned SP_EUNAVAIL with err still saying "not found"; and a
 * success returned with that stale error in err. */
TEST_ALL(unit_inbound_receive_failure_after_fallen_through_lookup_reports_itself)
{
    struct t_env *env = t_env_new(backend);
    const char *thread[1] = {UNKNOWN_ID};
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    struct lead ana;
    int calls;

    t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
    in = email_in("ana@example.com", BODY("one"), "<x1@mail.example>", NULL);
    in.lead_id = UNKNOWN_ID; /* a reply token naming a lead since gone */
    in.thread_ids = thread;
    in.nthread_ids = 1;
    receive_ok(env, &in, &out); /* Ana is replied from now on: the runs below match */

    fault_plan_arm(&env->faults, 0, 0);
    in.provider_id = "<x2@mail.example>";
    ASSERT_OK(receive(env, &in, &out, &err));
    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT_EQ(SP_OK, err.code); /* no stale error on success */
    ASSERT_STREQ("", err.msg);
    calls = env->faults.calls;

    fault_plan_arm(&env->faults, calls, SP_EUNAVAIL); /* the commit */
    in.provider_id = "<x3@mail.example>";
    ASSERT_EQ(SP_EUNAVAIL, receive(env, &in, &out, &err));
    ASSERT_STREQ("commit", env->faults.last_op);
    ASSERT_EQ(SP_EUNAVAIL, err.code);
    ASSERT_CONTAINS(err.msg, "injected failure of commit");
    ASSERT_EQ(2, count_events(env, ana.id, EVENT_REPLY_RECEIVED));
    t_env_free(env);
}

/* A lead found by its id that has no address on the channel, and no sender to adopt: refused,
 * nothing stored; with a sender, the sender becomes its address. */
TEST(unit_inbound_receive_lead_without_address_on_channel)
{
    struct t_env *env = t_env_new(T_MEM);
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    struct lead ana, got;
    struct lead_event e;
    char before[FP_MAX], after[FP_MAX];
    const char *ids[1];

    t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
    ids[0] = ana.id;
    fingerprint(env, ids, 1, before);
    in = wa_in(NULL, TEXT("hi"), "wamid.X1");
    in.lead_id = ana.id;
    ASSERT_EQ(SP_EINVAL, receive(env, &in, &out, &err));
    ASSERT_STREQ("messageContent", err.field);
    ASSERT_EQ(0, env->faults.open_tx);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after);

    in = wa_in("+351912345678", TEXT("hi"), "wamid.X1");
    in.lead_id = ana.id;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(ana.id, out.lead_id);
    t_env_lead(env, ana.id, &got);
    ASSERT_STREQ("+351912345678", got.phone);
    e = last_of(env, ana.id, EVENT_ADDRESS_ADDED);
    ASSERT_STREQ("whatsapp", t_json_str(e.payload, "channel"));
    ASSERT_STREQ("+351912345678", t_json_str(e.payload, "address"));
    ASSERT_STREQ(out.message_id, t_json_str(e.payload, "messageId"));
    ASSERT_EQ(1, count_jobs(env, ana.id, GENERATE_REPLY_JOB));
    t_env_free(env);
}

TEST(unit_inbound_receive_refuses_bad_input_before_storage)
{
    struct t_env *env = t_env_new(T_MEM);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana;
    char *big = malloc(MESSAGE_CONTENT_MAX + 2);

    ASSERT(big != NULL);
    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    fault_plan_arm(&env->faults, 0, 0);
    {
        static const enum channel refused[] = {CHANNEL_LINKEDIN, CHANNEL_VOICE, CHANNEL_ADS};
        for (int i = 0; i < 3; i++) {
            struct sp_error err = {0};
            in = wa_in("+351912345678", TEXT("hi"), "wamid.B1");
            in.channel = refused[i];
            ASSERT_EQ(SP_EINVAL, receive(env, &in, &out, &err));
            ASSERT_STREQ("channel", err.field);
        }
    }
    {
        struct sp_error err = {0};
        in = wa_in("+351912345678", NULL, "wamid.B1");
        ASSERT_EQ(SP_EINVAL, receive(env, &in, &out, &err));
        ASSERT_STREQ("messageContent", err.field);
    }
    {
        struct sp_error err = {0};
        memset(big, ' ', MESSAGE_CONTENT_MAX + 1);
        big[0] = '{';
        big[MESSAGE_CONTENT_MAX] = '}';
        big[MESSAGE_CONTENT_MAX + 1] = '\0';
        in = wa_in("+351912345678", big, "wamid.B1");
        ASSERT_EQ(SP_EINVAL, receive(env, &in, &out, &err));
        ASSERT_STREQ("messageContent", err.field);
        ASSERT_CONTAINS(err.msg, "too large");
    }
    {
        struct sp_error err = {0};
        env->policy.sendable = 1u << CHANNEL_EMAIL; /* no WhatsApp sender configured */
        in = wa_in("+351912345678", TEXT("hi"), "wamid.B1");
        ASSERT_EQ(SP_EINVAL, receive(env, &in, &out, &err));
        ASSERT_STREQ("channel", err.field);
    }
    ASSERT_EQ(0, env->faults.calls); /* no storage call at all */
    assert_counts(env, 1, 2, 3, 2);
    ASSERT_EQ(0, receipt_count(env));
    free(big);
    t_env_free(env);
}

/* ---- leads_receive: duplicates and replays -------------------------------------------------- */

TEST_ALL(unit_inbound_receive_duplicate_provider_id_stores_nothing)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana;
    char before[FP_MAX], after[FP_MAX];
    const char *ids[1];

    t_env_create(env, "Ana", NULL, "+351912345678", &ana);
    ids[0] = ana.id;
    in = wa_in("+351912345678", TEXT("hi"), "wamid.D1");
    receive_ok(env, &in, &out);
    ASSERT_EQ(0, out.duplicate);
    fingerprint(env, ids, 1, before);

    /* the same wamid again: as redelivered, and even from another (unknown) sender */
    env->clock.now += 1000;
    in = wa_in("+351912345678", TEXT("hi"), "wamid.D1");
    memset(&out, 'x', sizeof(out));
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.duplicate);
    ASSERT_EQ(0, out.token_replayed);
    ASSERT_EQ(0, out.lead_created);
    ASSERT_EQ(0, out.lead_id[0]);
    ASSERT_EQ(0, out.message_id[0]);
    in = wa_in("+15550009999", TEXT("other"), "wamid.D1");
    in.from_name = "Eve";
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.duplicate);
    ASSERT_EQ(0, out.lead_created);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after);
    if (backend == T_MEM)
        ASSERT_EQ(2, env->mem_queue.wakes); /* the capture and the first receive only */

    /* provider ids are per source: the same text as an email's Message-Id is another message */
    in = email_in("ana@example.com", BODY("hi"), "wamid.D1", NULL);
    in.lead_id = ana.id;
    receive_ok(env, &in, &out);
    ASSERT_EQ(0, out.duplicate);
    ASSERT_STREQ(ana.id, out.lead_id);
    t_env_free(env);
}

TEST_ALL(unit_inbound_receive_replayed_token_stores_nothing)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana;
    char before[FP_MAX], after[FP_MAX];
    const char *ids[1];

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    ids[0] = ana.id;
    in = email_in("ana@example.com", BODY("one"), "<t1@mail.example>", "tok-1");
    receive_ok(env, &in, &out);
    ASSERT_EQ(0, out.token_replayed);
    fingerprint(env, ids, 1, before);

    /* the token again, on another message: a replayed delivery */
    in = email_in("ana@example.com", BODY("two"), "<t2@mail.example>", "tok-1");
    memset(&out, 'x', sizeof(out));
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.token_replayed);
    ASSERT_EQ(0, out.duplicate);
    ASSERT_EQ(0, out.lead_created);
    ASSERT_EQ(0, out.lead_id[0]);
    ASSERT_EQ(0, out.message_id[0]);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after);

    /* the same token from another door is another token */
    in = wa_in("+351912345678", TEXT("three"), "wamid.T3");
    in.once_token = "tok-1";
    receive_ok(env, &in, &out);
    ASSERT_EQ(0, out.token_replayed);
    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT_EQ(2, count_events(env, ana.id, EVENT_REPLY_RECEIVED));
    t_env_free(env);
}

/* leads_forget_receipts forgets the claims of one source made before a time, and only those. */
TEST_ALL(unit_inbound_forget_receipts)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct sp_error err = {0};
    struct lead ana;

    t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
    in = email_in("ana@example.com", BODY("one"), "<f1@mail.example>", "tok-old");
    receive_ok(env, &in, &out);
    env->clock.now = T_NOW + 60000;
    in = email_in("ana@example.com", BODY("two"), "<f2@mail.example>", "tok-new");
    receive_ok(env, &in, &out);
    ASSERT_EQ(4, receipt_count(env));

    ASSERT_OK(leads_forget_receipts(&env->deps, "email-token", T_NOW + 60000, &err));
    ASSERT_EQ(3, receipt_count(env));
    ASSERT_EQ(0, env->faults.open_tx);

    /* tok-old is forgotten: a delivery bearing it is taken in (a new message) */
    in = email_in("ana@example.com", BODY("three"), "<f3@mail.example>", "tok-old");
    receive_ok(env, &in, &out);
    ASSERT_EQ(0, out.token_replayed);
    /* tok-new is not (claimed at `before`, not before it) */
    in = email_in("ana@example.com", BODY("four"), "<f4@mail.example>", "tok-new");
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.token_replayed);
    /* the Message-Ids of source "email" were not forgotten */
    in = email_in("ana@example.com", BODY("one"), "<f1@mail.example>", NULL);
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.duplicate);
    ASSERT_EQ(3, count_events(env, ana.id, EVENT_REPLY_RECEIVED));

    /* a storage failure is returned */
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    ASSERT_EQ(SP_EUNAVAIL, leads_forget_receipts(&env->deps, "email-token", T_NOW * 2, &err));
    t_env_free(env);
}

/* ---- leads_receive: messages that get no answer --------------------------------------------- */

TEST_ALL(unit_inbound_receive_not_answerable_skips_the_answer)
{
    static const char image[] = "{\"from\":\"+351912345678\",\"type\":\"image\",\"wamid\":\"w\","
                                "\"raw\":{\"type\":\"image\",\"image\":{\"id\":\"123\"}}}";
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana, got;
    struct lead_event e;
    char want[512];

    t_env_create(env, "Ana", NULL, "+351912345678", &ana);
    in = wa_in("+351912345678", image, "wamid.I1");
    in.answerable = 0;
    receive_ok(env, &in, &out);
    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT_EQ(0, count_jobs(env, ana.id, GENERATE_REPLY_JOB));
    assert_counts(env, 1, 2, 2 + 3, 1);
    e = last_of(env, ana.id, EVENT_AI_REPLY_SKIPPED);
    snprintf(want, sizeof(want),
             "{\"messageId\":\"%s\",\"channel\":\"whatsapp\",\"reason\":\"not_text\"}",
             out.message_id);
    ASSERT_JSON_STORED(backend, want, e.payload);
    ASSERT_STREQ(out.message_id, t_json_str(e.correlation_ids, "messageId"));
    t_env_lead(env, ana.id, &got);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status); /* still a reply */

    /* a new lead's first message may be one too */
    in = wa_in("+15550002222", image, "wamid.I2");
    in.answerable = 0;
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, out.lead_created);
    ASSERT_EQ(0, count_jobs(env, out.lead_id, GENERATE_REPLY_JOB));
    ASSERT_STREQ("not_text",
                 t_json_str(last_of(env, out.lead_id, EVENT_AI_REPLY_SKIPPED).payload, "reason"));
    assert_counts(env, 2, 3, 5 + 4, 1);
    t_env_free(env);
}

TEST(unit_inbound_receive_stop_request_skips_the_answer)
{
    struct t_env *env = t_env_new(T_MEM);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    in = wa_in("+351912345678", TEXT("STOP"), "wamid.S1");
    receive_ok(env, &in, &out);
    ASSERT_EQ(0, count_jobs(env, ana.id, GENERATE_REPLY_JOB));
    ASSERT_STREQ("stop_requested",
                 t_json_str(last_of(env, ana.id, EVENT_AI_REPLY_SKIPPED).payload, "reason"));
    ASSERT_STREQ(out.message_id,
                 t_json_str(last_of(env, ana.id, EVENT_AI_REPLY_SKIPPED).payload, "messageId"));

    in = email_in("ana@example.com", BODY("Please unsubscribe me"), "<u1@mail.example>", NULL);
    receive_ok(env, &in, &out);
    ASSERT_EQ(2, count_events(env, ana.id, EVENT_AI_REPLY_SKIPPED));
    ASSERT_STREQ("email",
                 t_json_str(last_of(env, ana.id, EVENT_AI_REPLY_SKIPPED).payload, "channel"));
    ASSERT_EQ(0, count_jobs(env, ana.id, GENERATE_REPLY_JOB));

    /* each stop request opted the lead out of its channel (do not contact) */
    ASSERT_EQ(2, count_events(env, ana.id, EVENT_OPTED_OUT));

    /* a stop word later in the message is not a request (once the lead may be contacted on
     * WhatsApp again: while opted out, no message there is answered) */
    {
        struct lead_opt_outs oo;
        struct sp_error err = {0};
        ASSERT_OK(leads_opt_in(&env->deps, ana.id, 1u << CHANNEL_WHATSAPP, env->arena, &oo, &err));
    }
    in = wa_in("+351912345678", TEXT("Can we stop by on Friday?"), "wamid.S2");
    receive_ok(env, &in, &out);
    ASSERT_EQ(1, count_jobs(env, ana.id, GENERATE_REPLY_JOB));
    ASSERT_EQ(2, count_events(env, ana.id, EVENT_AI_REPLY_SKIPPED));
    ASSERT_EQ(2, count_events(env, ana.id, EVENT_OPTED_OUT));
    t_env_free(env);
}

/* ---- leads_reply: the API's door ------------------------------------------------------------- */

TEST_ALL(unit_inbound_reply_api_goes_through_receive)
{
    struct t_env *env = t_env_new(backend);
    struct reply_input in;
    struct sp_error err = {0};
    char mid[SP_UUID_LEN + 1];
    struct lead ana, bob;
    struct lead_event e;
    struct message m;

    t_env_create(env, "Ana", "ana@example.com", "+351912345678", &ana);
    t_env_create(env, "Bob", "bob@example.com", NULL, &bob);
    in.lead_id = ana.id;
    in.channel = CHANNEL_WHATSAPP;
    in.content = "{\"text\":\"Any discounts?\"}";
    ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
    ASSERT(sp_uuid_valid(mid, strlen(mid)));
    m = message_at(env, ana.id, 2);
    ASSERT_STREQ(mid, m.id);
    ASSERT(m.provider_id == NULL);
    e = last_of(env, ana.id, EVENT_REPLY_RECEIVED);
    ASSERT_STREQ("api", t_json_str(e.payload, "source"));
    ASSERT(t_json_str(e.payload, "providerId") == NULL);
    ASSERT_STREQ(mid, t_json_str(e.payload, "messageId"));
    ASSERT_EQ(1, count_jobs(env, ana.id, GENERATE_REPLY_JOB));
    ASSERT_EQ(0, receipt_count(env)); /* nothing to claim */

    /* the API never makes a lead nor matches by sender: an unknown id is SP_ENOTFOUND */
    sp_error_clear(&err);
    in.lead_id = UNKNOWN_ID;
    in.channel = CHANNEL_EMAIL;
    in.content = "{\"from\":\"bob@example.com\",\"body\":\"hi\"}";
    ASSERT_EQ(SP_ENOTFOUND, leads_reply(&env->deps, &in, env->arena, mid, &err));
    ASSERT_STREQ("id", err.field);
    ASSERT_EQ(0, count_events(env, bob.id, EVENT_REPLY_RECEIVED));
    assert_counts(env, 2, 4, 3 + 2 + 2, 4);
    t_env_free(env);
}

/* Regression: leads_reply judged messageContent.from before the channel, so a reply on a
 * channel without a sender that carried a "from" got "messageContent.from must be a phone
 * number" instead of the channel's error (http_issue_h1_reply_from_is_validated). */
TEST(unit_inbound_reply_channel_checked_before_from)
{
    static const enum channel refused[] = {CHANNEL_LINKEDIN, CHANNEL_VOICE, CHANNEL_ADS};
    struct t_env *env = t_env_new(T_MEM);
    struct lead ana;

    t_env_create(env, "Ana", NULL, "+351912345678", &ana);
    for (int i = 0; i < 3; i++) {
        struct reply_input in = {ana.id, refused[i], "{\"from\":\"ana\",\"text\":\"x\"}"};
        struct sp_error err = {0};
        char mid[SP_UUID_LEN + 1];

        ASSERT_EQ(SP_EINVAL, leads_reply(&env->deps, &in, env->arena, mid, &err));
        ASSERT_STREQ("channel", err.field);
        ASSERT_CONTAINS(err.msg, "has no sender");
    }
    {
        /* a configured channel's "from" is still judged */
        struct reply_input in = {ana.id, CHANNEL_WHATSAPP, "{\"from\":\"ana\",\"text\":\"x\"}"};
        struct sp_error err = {0};
        char mid[SP_UUID_LEN + 1];

        ASSERT_EQ(SP_EINVAL, leads_reply(&env->deps, &in, env->arena, mid, &err));
        ASSERT_STREQ("messageContent.from", err.field);
        /* and, once its sender is gone, the channel is what is wrong */
        sp_error_clear(&err);
        env->policy.sendable = 1u << CHANNEL_EMAIL;
        ASSERT_EQ(SP_EINVAL, leads_reply(&env->deps, &in, env->arena, mid, &err));
        ASSERT_STREQ("channel", err.field);
    }
    assert_counts(env, 1, 1, 2, 1);
    t_env_free(env);
}

/* ---- leads_apply_receipt ------------------------------------------------------------------- */

/* A phone-only lead whose WhatsApp welcome was sent (provider id "fake-1"). */
static void
sent_welcome(struct t_env *env, struct lead *l, struct message *m)
{
    t_env_create(env, "Ana", NULL, "+351912345678", l);
    env->clock.now = T_NOW + 100;
    ASSERT_EQ(1, t_env_tick(env, NULL));
    *m = message_at(env, l->id, 0);
    ASSERT_EQ(MESSAGE_SENT, m->status);
    ASSERT_STREQ("fake-1", m->provider_id);
}

static int
apply(struct t_env *env, const char *provider_id, enum message_status s, const char *error,
      int *applied, struct sp_error *err)
{
    struct delivery_receipt r = {CHANNEL_WHATSAPP, provider_id, s, error};
    return leads_apply_receipt(&env->deps, &r, env->arena, applied, err);
}

TEST_ALL(unit_inbound_receipt_sent_delivered_read)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct message m, got;
    struct lead_event e;
    int applied = -1, events;
    char want[512];

    sent_welcome(env, &l, &m);
    events = count_events(env, l.id, EVENT_MESSAGE_DELIVERED);
    ASSERT_EQ(0, events);

    env->clock.now = T_NOW + 200;
    ASSERT_OK(apply(env, "fake-1", MESSAGE_DELIVERED, NULL, &applied, &err));
    ASSERT_EQ(1, applied);
    got = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_DELIVERED, got.status);
    ASSERT_EQ(T_NOW + 200, got.updated_at);
    ASSERT_EQ(T_NOW + 100, got.sent_at); /* the rest of the delivery is kept */
    ASSERT_EQ(1, got.attempts);
    ASSERT_STREQ("fake-1", got.provider_id);
    ASSERT(got.last_error == NULL);
    e = last_of(env, l.id, EVENT_MESSAGE_DELIVERED);
    snprintf(want, sizeof(want),
             "{\"messageId\":\"%s\",\"channel\":\"whatsapp\",\"providerId\":\"fake-1\","
             "\"status\":\"delivered\"}",
             m.id);
    ASSERT_JSON_STORED(backend, want, e.payload);
    ASSERT_STREQ(m.id, t_json_str(e.correlation_ids, "messageId"));
    ASSERT_STREQ(l.id, t_json_str(e.correlation_ids, "leadId"));
    ASSERT_EQ(T_NOW + 200, e.created_at);

    env->clock.now = T_NOW + 300;
    ASSERT_OK(apply(env, "fake-1", MESSAGE_READ, NULL, &applied, &err));
    ASSERT_EQ(1, applied);
    ASSERT_EQ(MESSAGE_READ, message_at(env, l.id, 0).status);
    e = last_of(env, l.id, EVENT_MESSAGE_READ);
    ASSERT_STREQ("read", t_json_str(e.payload, "status"));
    ASSERT_EQ(T_NOW + 300, e.created_at);

    /* then nothing moves it: repeats, older statuses, a late failure */
    {
        static const enum message_status late[] = {MESSAGE_READ, MESSAGE_DELIVERED, MESSAGE_SENT,
                                                   MESSAGE_FAILED};
        struct t_counts before, after;

        t_env_counts(env, &before);
        for (int i = 0; i < 4; i++) {
            env->clock.now += 10;
            applied = -1;
            ASSERT_OK(apply(env, "fake-1", late[i], "too late", &applied, &err));
            ASSERT_EQ(0, applied);
        }
        t_env_counts(env, &after);
        ASSERT_EQ(before.events, after.events);
        got = message_at(env, l.id, 0);
        ASSERT_EQ(MESSAGE_READ, got.status);
        ASSERT_EQ(T_NOW + 300, got.updated_at);
        ASSERT(got.last_error == NULL);
    }
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_DELIVERED));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_READ));
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_FAILED));
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_free(env);
}

/* Read arrives before delivered (webhooks are not ordered): the late delivered changes nothing. */
TEST_ALL(unit_inbound_receipt_read_then_delivered)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct message m;
    int applied = -1;

    sent_welcome(env, &l, &m);
    ASSERT_OK(apply(env, "fake-1", MESSAGE_READ, NULL, &applied, &err));
    ASSERT_EQ(1, applied);
    ASSERT_OK(apply(env, "fake-1", MESSAGE_DELIVERED, NULL, &applied, &err));
    ASSERT_EQ(0, applied);
    ASSERT_EQ(MESSAGE_READ, message_at(env, l.id, 0).status);
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_DELIVERED));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_READ));
    t_env_free(env);
}

TEST_ALL(unit_inbound_receipt_failed_before_delivered)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l, got_lead;
    struct message m, got;
    struct lead_event e;
    int applied = -1;
    char want[512];

    sent_welcome(env, &l, &m);
    env->clock.now = T_NOW + 400;
    ASSERT_OK(
        apply(env, "fake-1", MESSAGE_FAILED, "131026: Message undeliverable", &applied, &err));
    ASSERT_EQ(1, applied);
    got = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_FAILED, got.status);
    ASSERT_STREQ("131026: Message undeliverable", got.last_error);
    ASSERT_EQ(T_NOW + 400, got.updated_at);
    e = last_of(env, l.id, EVENT_MESSAGE_FAILED);
    snprintf(want, sizeof(want),
             "{\"messageId\":\"%s\",\"channel\":\"whatsapp\",\"providerId\":\"fake-1\","
             "\"status\":\"failed\",\"error\":\"131026: Message undeliverable\"}",
             m.id);
    ASSERT_JSON_STORED(backend, want, e.payload);
    /* the lead stays contacted: the receipt is about the message */
    t_env_lead(env, l.id, &got_lead);
    ASSERT_EQ(LEAD_STATUS_CONTACTED, got_lead.status);

    /* a failed message stays failed */
    ASSERT_OK(apply(env, "fake-1", MESSAGE_DELIVERED, NULL, &applied, &err));
    ASSERT_EQ(0, applied);
    ASSERT_OK(apply(env, "fake-1", MESSAGE_READ, NULL, &applied, &err));
    ASSERT_EQ(0, applied);
    ASSERT_EQ(MESSAGE_FAILED, message_at(env, l.id, 0).status);
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_DELIVERED));
    t_env_free(env);
}

TEST(unit_inbound_receipt_failed_without_error_text)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l;
    struct message m;
    int applied = -1;

    sent_welcome(env, &l, &m);
    ASSERT_OK(apply(env, "fake-1", MESSAGE_FAILED, NULL, &applied, &err));
    ASSERT_EQ(1, applied);
    ASSERT_STREQ("the provider reported the message failed", message_at(env, l.id, 0).last_error);
    ASSERT_STREQ("the provider reported the message failed",
                 t_json_str(last_of(env, l.id, EVENT_MESSAGE_FAILED).payload, "error"));
    t_env_free(env);
}

TEST_ALL(unit_inbound_receipt_failed_after_delivered_not_applied)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct message m, got;
    int applied = -1;

    sent_welcome(env, &l, &m);
    ASSERT_OK(apply(env, "fake-1", MESSAGE_DELIVERED, NULL, &applied, &err));
    ASSERT_EQ(1, applied);
    ASSERT_OK(apply(env, "fake-1", MESSAGE_FAILED, "late", &applied, &err));
    ASSERT_EQ(0, applied);
    got = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_DELIVERED, got.status);
    ASSERT(got.last_error == NULL);
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_FAILED));
    t_env_free(env);
}

TEST_ALL(unit_inbound_receipt_unknown_provider_id_is_enotfound)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct message m;
    int applied = -1;
    char before[FP_MAX], after[FP_MAX];
    const char *ids[1];

    sent_welcome(env, &l, &m);
    ids[0] = l.id;
    fingerprint(env, ids, 1, before);
    ASSERT_EQ(SP_ENOTFOUND, apply(env, "wamid.nobody", MESSAGE_DELIVERED, NULL, &applied, &err));
    ASSERT_EQ(SP_ENOTFOUND, err.code);
    ASSERT_EQ(0, applied);
    /* the right id on the wrong channel is unknown too */
    {
        struct delivery_receipt r = {CHANNEL_EMAIL, "fake-1", MESSAGE_DELIVERED, NULL};
        sp_error_clear(&err);
        applied = -1;
        ASSERT_EQ(SP_ENOTFOUND, leads_apply_receipt(&env->deps, &r, env->arena, &applied, &err));
        ASSERT_EQ(0, applied);
    }
    ASSERT_EQ(0, env->faults.open_tx);
    fingerprint(env, ids, 1, after);
    ASSERT_STREQ(before, after);
    t_env_free(env);
}

/* A message not out yet (queued, sending) or held back (suppressed) is not moved by a receipt
 * that names it (as if the provider answered before we recorded the send). */
TEST_ALL(unit_inbound_receipt_for_unsent_message_not_applied)
{
    static const enum message_status unsent[] = {MESSAGE_QUEUED, MESSAGE_SENDING,
                                                 MESSAGE_SUPPRESSED};
    static const enum message_status receipts[] = {MESSAGE_SENT, MESSAGE_DELIVERED, MESSAGE_READ,
                                                   MESSAGE_FAILED};
    struct t_env *env = t_env_new(backend);
    struct lead l;
    struct message m;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    for (int s = 0; s < 3; s++) {
        struct sp_error err = {0};
        char before[FP_MAX], after[FP_MAX];
        const char *ids[1] = {l.id};

        m = message_at(env, l.id, 0);
        m.status = unsent[s];
        m.provider_id = "wamid.early";
        ASSERT_OK(lead_repo_message_update_delivery(env->repo, &m, &err));
        fingerprint(env, ids, 1, before);
        for (int r = 0; r < 4; r++) {
            int applied = -1;
            ASSERT_OK(apply(env, "wamid.early", receipts[r], "x", &applied, &err));
            if (applied != 0)
                t_fail(__FILE__, __LINE__, "%s receipt applied to a %s message",
                       message_status_name(receipts[r]), message_status_name(unsent[s]));
        }
        fingerprint(env, ids, 1, after);
        ASSERT_STREQ(before, after);
    }
    t_env_free(env);
}

/* Receipts are for our outbound messages: an inbound message's provider id is not matched. */
TEST_ALL(unit_inbound_receipt_ignores_inbound_messages)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct inbound_result out;
    struct inbound_reply in;
    struct lead l;
    int applied = -1;

    t_env_create(env, "Ana", NULL, "+351912345678", &l);
    in = wa_in("+351912345678", TEXT("hi"), "wamid.IN1");
    receive_ok(env, &in, &out);
    ASSERT_EQ(SP_ENOTFOUND, apply(env, "wamid.IN1", MESSAGE_READ, NULL, &applied, &err));
    ASSERT_EQ(0, applied);
    ASSERT_EQ(MESSAGE_RECEIVED, message_at(env, l.id, 1).status);
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_READ));
    t_env_free(env);
}

/* ---- fault injection: a failure at any call leaves the store as it was --------------------- */

/* Fails call N of leads_receive(in) for N = 1, 2, ... until a run makes fewer than N calls (it
 * then succeeded, into *out). Every failing run must return the injected error, close its unit of
 * work and leave the fingerprint of ids[] (counts and receipts included) as it was. The
 * operations made to fail are noted in ops. */
static void
receive_fault_loop(struct t_env *env, const struct inbound_reply *in, const char *const *ids,
                   int nids, struct inbound_result *out, char *ops, size_t cap)
{
    char before[FP_MAX], after[FP_MAX];
    int n;

    fingerprint(env, ids, nids, before);
    for (n = 1; n < 200; n++) {
        struct sp_error err = {0};
        int rc;

        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = receive(env, in, out, &err);
        if (env->faults.injected == 0) {
            ASSERT_OK(rc);
            break;
        }
        if (rc != SP_EUNAVAIL)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): want EUNAVAIL, got %s", n,
                   env->faults.last_op, sp_err_name(rc));
        note_op(ops, cap, env->faults.last_op);
        ASSERT_EQ(SP_EUNAVAIL, err.code);
        ASSERT_EQ(0, env->faults.open_tx);
        ASSERT_EQ(0, out->lead_created);
        ASSERT_EQ(0, out->duplicate);
        ASSERT_EQ(0, out->token_replayed);
        ASSERT_EQ(0, out->message_id[0]);
        fingerprint(env, ids, nids, after);
        if (strcmp(before, after) != 0)
            t_fail(__FILE__, __LINE__, "fault at call %d changed the store:\n%s---\n%s", n, before,
                   after);
        if (env->backend == T_MEM)
            ASSERT_EQ(0, env->store->in_tx);
        arena_reset(env->arena);
    }
    fault_plan_arm(&env->faults, 0, 0);
    ASSERT(n > 1);
    ASSERT(n < 200);
}

/* A new sender by email: every claim, lookup and write of a lead's making. */
TEST_ALL(unit_inbound_receive_new_lead_fault_at_every_call)
{
    struct t_env *env = t_env_new(backend);
    const char *thread[1] = {UNKNOWN_ID};
    struct inbound_result out, again;
    struct inbound_reply in;
    struct lead ana, got;
    const char *ids[1];
    char ops[512] = "";

    t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
    ids[0] = ana.id;
    env->clock.now = T_NOW + 1000;
    in = email_in("new@example.org", BODY("Who are you?"), "<n1@mail.example>", "tok-n1");
    in.from_name = "New Person";
    in.thread_ids = thread;
    in.nthread_ids = 1;
    receive_fault_loop(env, &in, ids, 1, &out, ops, sizeof(ops));
    ASSERT_CONTAINS(ops, "begin");
    ASSERT_CONTAINS(ops, "receipt_claim");
    ASSERT_CONTAINS(ops, "message_get");
    ASSERT_CONTAINS(ops, "lead_find_by_address");
    ASSERT_CONTAINS(ops, "lead_insert");
    ASSERT_CONTAINS(ops, "event_append");
    ASSERT_CONTAINS(ops, "message_insert");
    ASSERT_CONTAINS(ops, "lead_transition");
    ASSERT_CONTAINS(ops, "enqueue");
    ASSERT_CONTAINS(ops, "commit");

    /* the run that succeeded stored it all, once */
    ASSERT_EQ(1, out.lead_created);
    t_env_lead(env, out.lead_id, &got);
    ASSERT_STREQ("New Person", got.name);
    ASSERT_STREQ("new@example.org", got.email);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    assert_counts(env, 2, 2, 2 + 3, 2);
    ASSERT_EQ(2, receipt_count(env));
    /* and its claims hold */
    receive_ok(env, &in, &again);
    ASSERT_EQ(1, again.token_replayed);
    in.once_token = "tok-n2";
    receive_ok(env, &in, &again);
    ASSERT_EQ(1, again.duplicate);
    assert_counts(env, 2, 2, 2 + 3, 2);
    t_env_free(env);
}

/* An existing lead found by the thread, its reply claimed by Message-Id and token. */
TEST_ALL(unit_inbound_receive_existing_lead_fault_at_every_call)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana, got;
    struct message welcome;
    const char *thread[1];
    const char *ids[1];
    char ops[512] = "";

    t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
    ids[0] = ana.id;
    welcome = message_at(env, ana.id, 0);
    thread[0] = welcome.id;
    env->clock.now = T_NOW + 1000;
    in = email_in("ana@example.com", BODY("What does it cost?"), "<e1@mail.example>", "tok-e1");
    in.thread_ids = thread;
    in.nthread_ids = 1;
    receive_fault_loop(env, &in, ids, 1, &out, ops, sizeof(ops));
    ASSERT_CONTAINS(ops, "begin");
    ASSERT_CONTAINS(ops, "receipt_claim");
    ASSERT_CONTAINS(ops, "message_get");
    ASSERT_CONTAINS(ops, "lead_lock");
    ASSERT_CONTAINS(ops, "lead_get");
    ASSERT_CONTAINS(ops, "message_insert");
    ASSERT_CONTAINS(ops, "event_append");
    ASSERT_CONTAINS(ops, "lead_transition");
    ASSERT_CONTAINS(ops, "enqueue");
    ASSERT_CONTAINS(ops, "commit");
    ASSERT(strstr(ops, "lead_find_by_address") == NULL); /* the thread named the lead */

    ASSERT_STREQ(ana.id, out.lead_id);
    ASSERT_EQ(0, out.lead_created);
    t_env_lead(env, ana.id, &got);
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    ASSERT_EQ(T_NOW + 1000, got.updated_at);
    assert_counts(env, 1, 2, 2 + 2, 2);
    ASSERT_EQ(2, receipt_count(env));
    t_env_free(env);
}

/* The other ways to an existing lead: by the sender's address, and by id with the sender
 * adopted as the lead's address; and a message that gets no answer. */
TEST(unit_inbound_receive_other_paths_fault_at_every_call)
{
    struct t_env *env = t_env_new(T_MEM);
    struct inbound_result out;
    struct inbound_reply in;
    struct lead ana, bob, got;
    const char *ids[2];
    char ops[512] = "";

    t_env_create(env, "Ana", NULL, "+1 (631) 555-1181", &ana);
    t_env_create(env, "Bob", "bob@example.com", NULL, &bob);
    ids[0] = ana.id;
    ids[1] = bob.id;

    in = wa_in("+16315551181", TEXT("price?"), "wamid.F1");
    receive_fault_loop(env, &in, ids, 2, &out, ops, sizeof(ops));
    ASSERT_CONTAINS(ops, "lead_find_by_address");
    ASSERT_CONTAINS(ops, "lead_lock");
    ASSERT_STREQ(ana.id, out.lead_id);

    ops[0] = '\0';
    in = wa_in("+15550003333", TEXT("price?"), "wamid.F2");
    in.lead_id = bob.id;
    receive_fault_loop(env, &in, ids, 2, &out, ops, sizeof(ops));
    ASSERT_CONTAINS(ops, "lead_set_address");
    t_env_lead(env, bob.id, &got);
    ASSERT_STREQ("+15550003333", got.phone);
    ASSERT_EQ(1, count_events(env, bob.id, EVENT_ADDRESS_ADDED));

    ops[0] = '\0';
    in = wa_in("+16315551181", "{\"type\":\"sticker\"}", "wamid.F3");
    in.answerable = 0;
    receive_fault_loop(env, &in, ids, 2, &out, ops, sizeof(ops));
    ASSERT(strstr(ops, "enqueue") == NULL);
    ASSERT_EQ(1, count_events(env, ana.id, EVENT_AI_REPLY_SKIPPED));
    t_env_free(env);
}

TEST_ALL(unit_inbound_receipt_fault_at_every_call)
{
    struct t_env *env = t_env_new(backend);
    char before[FP_MAX], after[FP_MAX], ops[512] = "";
    const char *ids[1];
    struct lead l;
    struct message m, got;
    int n, applied = -1;

    sent_welcome(env, &l, &m);
    ids[0] = l.id;
    env->clock.now = T_NOW + 2000;
    fingerprint(env, ids, 1, before);
    for (n = 1; n < 100; n++) {
        struct sp_error err = {0};
        int rc;

        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        applied = -1;
        rc = apply(env, "fake-1", MESSAGE_FAILED, "131049: not delivered", &applied, &err);
        if (env->faults.injected == 0) {
            ASSERT_OK(rc);
            break;
        }
        if (rc != SP_EUNAVAIL)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): want EUNAVAIL, got %s", n,
                   env->faults.last_op, sp_err_name(rc));
        note_op(ops, sizeof(ops), env->faults.last_op);
        ASSERT_EQ(SP_EUNAVAIL, err.code);
        ASSERT_EQ(0, applied);
        ASSERT_EQ(0, env->faults.open_tx);
        fingerprint(env, ids, 1, after);
        if (strcmp(before, after) != 0)
            t_fail(__FILE__, __LINE__, "fault at call %d changed the store:\n%s---\n%s", n, before,
                   after);
        arena_reset(env->arena);
    }
    fault_plan_arm(&env->faults, 0, 0);
    ASSERT(n > 1 && n < 100);
    ASSERT_CONTAINS(ops, "begin");
    ASSERT_CONTAINS(ops, "message_find_by_provider");
    ASSERT_CONTAINS(ops, "lead_lock");
    ASSERT_CONTAINS(ops, "lead_get");
    ASSERT_CONTAINS(ops, "message_get");
    ASSERT_CONTAINS(ops, "message_update_delivery");
    ASSERT_CONTAINS(ops, "event_append");
    ASSERT_CONTAINS(ops, "commit");
    ASSERT_EQ(1, applied);
    got = message_at(env, l.id, 0);
    ASSERT_EQ(MESSAGE_FAILED, got.status);
    ASSERT_STREQ("131049: not delivered", got.last_error);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_FAILED));
    t_env_free(env);
}
