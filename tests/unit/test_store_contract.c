/* test_store_contract.c: one contract for the lead repository and the job queue, run against
 * the in-memory fake (mem) and the real adapters: SQLite on a temp-file database (sqlite),
 * PostgreSQL (pg) and, for the queue, Redis in BullMQ's layout (redis), so the fake the other
 * unit tests rely on behaves like the real things (a contract test). */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "features/leads/infrastructure/sql_lead_batch.h"
#include "infra/db.h"

#include <time.h>

/* Message ids for jobs: UUIDs, as the service makes them (a uuid column in PostgreSQL). */
#define M1 "00000000-0000-4000-9000-0000000000a1"
#define M2 "00000000-0000-4000-9000-0000000000a2"
#define M3 "00000000-0000-4000-9000-0000000000a3"

static int lead_n;

/* A lead with a fresh id "00000000-0000-4000-8000-00000000000N". */
static struct lead
mk_lead(const char *name, const char *email, const char *phone, int64_t at)
{
    struct lead l;

    memset(&l, 0, sizeof(l));
    snprintf(l.id, sizeof(l.id), "00000000-0000-4000-8000-%012d", ++lead_n);
    l.name = name;
    l.email = email;
    l.phone = phone;
    l.status = LEAD_STATUS_NEW;
    l.created_at = at;
    l.updated_at = at;
    return l;
}

static struct message
mk_message(const struct lead *l, int n, enum channel c, int64_t at)
{
    struct message m;

    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "00000000-0000-4000-9000-%012d", n);
    memcpy(m.lead_id, l->id, sizeof(m.lead_id));
    m.channel = c;
    m.direction = MESSAGE_OUTBOUND;
    m.kind = MESSAGE_KIND_WELCOME;
    m.status = MESSAGE_QUEUED;
    m.recipient = c == CHANNEL_EMAIL ? l->email : l->phone;
    m.channel_message = "{\"to\":\"x\",\"text\":\"hi\"}";
    m.created_at = at;
    m.updated_at = at;
    return m;
}

static struct lead_event
mk_event(const struct lead *l, int n, enum lead_event_type t, int64_t at)
{
    struct lead_event e;

    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "00000000-0000-4000-a000-%012d", n);
    memcpy(e.lead_id, l->id, sizeof(e.lead_id));
    e.type = t;
    e.correlation_ids = "{\"leadId\":\"x\"}";
    e.payload = "{\"n\":1}";
    e.created_at = at;
    return e;
}

static void
insert_lead(struct t_env *env, const struct lead *l)
{
    struct sp_error err = {0};
    ASSERT_OK(lead_repo_lead_insert(env->repo, l, &err));
}

static void
enqueue(struct t_env *env, const char *lead_id, const char *message_id, int64_t now, char *id)
{
    struct sp_error err = {0};
    struct job_spec spec = {"send-message", message_id, lead_id, "{\"k\":1}", 3, 1000};
    ASSERT_OK(job_queue_enqueue(env->queue, &spec, now, id, &err));
}

/* Reserves at `now` in the caller's unit of work (or none); returns found. */
static int
reserve_in_uow(struct t_env *env, int64_t now, struct job *out, int64_t *next_due)
{
    struct sp_error err = {0};
    int found = 0;
    int64_t nd = 0;
    ASSERT_OK(job_queue_reserve(env->queue, now, 1000, 1, env->arena, out, &found, &nd, &err));
    if (next_due)
        *next_due = nd;
    return found;
}

static struct job
job_by_id(struct t_env *env, const char *lead_id, const char *id)
{
    struct job *j;
    int n;
    t_env_jobs(env, lead_id, &j, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(j[i].id, id) == 0)
            return j[i];
    t_fail(__FILE__, __LINE__, "job %s not listed", id);
}

/* ---- lead repo ------------------------------------------------------------------------- */

TEST_ALL(unit_contract_lead_round_trip)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    char name[] = "Ann \"Q\" O'Neil \xc3\xa9";
    struct lead l = mk_lead(name, "ann@example.com", NULL, 1000), got;

    insert_lead(env, &l);
    name[0] = 'X'; /* the store kept its own copy */
    ASSERT_OK(lead_repo_lead_get(env->repo, l.id, env->arena, &got, &err));
    ASSERT_STREQ(l.id, got.id);
    ASSERT_STREQ("Ann \"Q\" O'Neil \xc3\xa9", got.name);
    ASSERT_STREQ("ann@example.com", got.email);
    ASSERT(got.phone == NULL);
    ASSERT_EQ(LEAD_STATUS_NEW, got.status);
    ASSERT_EQ(1000, got.created_at);
    ASSERT_EQ(1000, got.updated_at);

    ASSERT_OK(lead_repo_lead_update_status(env->repo, l.id, LEAD_STATUS_REPLIED, 2000, &err));
    ASSERT_OK(lead_repo_lead_get(env->repo, l.id, env->arena, &got, &err));
    ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    ASSERT_EQ(1000, got.created_at);
    ASSERT_EQ(2000, got.updated_at);
    ASSERT_OK(lead_repo_ping(env->repo, &err));
    t_env_free(env);
}

TEST_ALL(unit_contract_lead_not_found)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead got;
    const char *id = "00000000-0000-4000-8000-00000000dead";

    ASSERT_EQ(SP_ENOTFOUND, lead_repo_lead_get(env->repo, id, env->arena, &got, &err));
    ASSERT_STREQ("id", err.field);
    /* the 404 body shows this message (leads_http_error) */
    ASSERT_STREQ("Lead 00000000-0000-4000-8000-00000000dead not found", err.msg);
    sp_error_clear(&err);
    ASSERT_EQ(SP_ENOTFOUND, lead_repo_lead_update_status(env->repo, id, LEAD_STATUS_DEAD, 1, &err));
    t_env_free(env);
}

TEST_ALL(unit_contract_constraints_are_conflicts)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead ghost = mk_lead("Ghost", "g@example.com", NULL, 1000); /* never inserted */
    struct message m = mk_message(&l, 1, CHANNEL_EMAIL, 1000);
    struct message orphan = mk_message(&ghost, 2, CHANNEL_EMAIL, 1000);
    struct lead_event e = mk_event(&ghost, 1, EVENT_LEAD_ADDED, 1000);
    char id[JOB_ID_MAX];
    struct job_spec spec = {"send-message", NULL, ghost.id, "{}", 3, 1000};

    insert_lead(env, &l);
    ASSERT_EQ(SP_ECONFLICT, lead_repo_lead_insert(env->repo, &l, &err));
    sp_error_clear(&err);
    ASSERT_OK(lead_repo_message_insert(env->repo, &m, &err));
    ASSERT_EQ(SP_ECONFLICT, lead_repo_message_insert(env->repo, &m, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_ECONFLICT, lead_repo_message_insert(env->repo, &orphan, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_ECONFLICT, lead_repo_event_append(env->repo, &e, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_ECONFLICT, job_queue_enqueue(env->queue, &spec, 1000, id, &err));
    t_env_free(env);
}

/* PostgreSQL sends statements that need no answer without waiting (pipeline mode): an error of
 * one may surface at a later call of the transaction, the commit at the latest. Either way the
 * transaction commits nothing, and the connection serves the next one. */
TEST_ALL(unit_contract_failed_statement_fails_its_transaction)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead l2 = mk_lead("Bea", "bea@example.com", NULL, 1000);
    struct lead l3 = mk_lead("Cid", "cid@example.com", NULL, 1000);
    struct lead got;
    int rc;

    insert_lead(env, &l);
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_lead_insert(env->repo, &l2, &err));
    rc = lead_repo_lead_insert(env->repo, &l, &err); /* a duplicate */
    if (rc == SP_OK)
        rc = lead_repo_commit(env->repo, &err);
    else
        lead_repo_rollback(env->repo);
    ASSERT_EQ(SP_ECONFLICT, rc);
    sp_error_clear(&err);
    ASSERT_EQ(SP_ENOTFOUND, lead_repo_lead_get(env->repo, l2.id, env->arena, &got, &err));
    sp_error_clear(&err);

    /* Statements sent, then rolled back: none stays. */
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_lead_insert(env->repo, &l2, &err));
    lead_repo_rollback(env->repo);
    ASSERT_EQ(SP_ENOTFOUND, lead_repo_lead_get(env->repo, l2.id, env->arena, &got, &err));
    sp_error_clear(&err);

    /* A query after statements sent reads their effects. */
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_lead_insert(env->repo, &l3, &err));
    ASSERT_OK(lead_repo_lead_get(env->repo, l3.id, env->arena, &got, &err));
    ASSERT_STREQ("Cid", got.name);
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    ASSERT_OK(lead_repo_lead_get(env->repo, l3.id, env->arena, &got, &err));
    t_env_free(env);
}

TEST_ALL(unit_contract_messages)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", "+1", 1000);
    struct lead b = mk_lead("Bob", "bob@example.com", NULL, 1000);
    struct message m[4];
    struct message *list, got;
    int n;

    insert_lead(env, &a);
    insert_lead(env, &b);
    /* same created_at for two of them: order is insertion order, not time */
    m[0] = mk_message(&a, 1, CHANNEL_WHATSAPP, 3000);
    m[1] = mk_message(&b, 2, CHANNEL_EMAIL, 3000);
    m[2] = mk_message(&a, 3, CHANNEL_EMAIL, 3000);
    m[3] = mk_message(&a, 4, CHANNEL_EMAIL, 4000);
    m[3].direction = MESSAGE_INBOUND;
    m[3].kind = MESSAGE_KIND_REPLY;
    m[3].status = MESSAGE_RECEIVED;
    m[3].recipient = NULL;
    for (int i = 0; i < 4; i++)
        ASSERT_OK(lead_repo_message_insert(env->repo, &m[i], &err));

    ASSERT_OK(lead_repo_message_list(env->repo, a.id, env->arena, &list, &n, &err));
    ASSERT_EQ(3, n);
    ASSERT_STREQ(m[0].id, list[0].id);
    ASSERT_STREQ(m[2].id, list[1].id);
    ASSERT_STREQ(m[3].id, list[2].id);
    ASSERT_EQ(CHANNEL_WHATSAPP, list[0].channel);
    ASSERT_STREQ("+1", list[0].recipient);
    ASSERT_EQ(MESSAGE_INBOUND, list[2].direction);
    ASSERT_EQ(MESSAGE_KIND_REPLY, list[2].kind);
    ASSERT_EQ(MESSAGE_RECEIVED, list[2].status);
    ASSERT(list[2].recipient == NULL);
    ASSERT(list[2].last_error == NULL && list[2].provider_id == NULL);
    ASSERT_EQ(0, list[2].sent_at);
    ASSERT_JSON_SAME("{\"to\":\"x\",\"text\":\"hi\"}", list[2].channel_message);

    ASSERT_OK(lead_repo_message_list(env->repo, "00000000-0000-4000-8000-000000000999", env->arena,
                                     &list, &n, &err));
    ASSERT_EQ(0, n);

    /* delivery updates */
    got = m[2];
    got.status = MESSAGE_SENT;
    got.attempts = 2;
    got.last_error = NULL;
    got.provider_id = "prov-1";
    got.sent_at = 5000;
    got.updated_at = 5000;
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &got, &err));
    memset(&got, 0, sizeof(got));
    ASSERT_OK(lead_repo_message_get(env->repo, m[2].id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_SENT, got.status);
    ASSERT_EQ(2, got.attempts);
    ASSERT_STREQ("prov-1", got.provider_id);
    ASSERT_EQ(5000, got.sent_at);
    ASSERT_EQ(5000, got.updated_at);
    ASSERT_EQ(3000, got.created_at);
    ASSERT_STREQ("ana@example.com", got.recipient);

    got.status = MESSAGE_QUEUED;
    got.last_error = "boom";
    got.provider_id = NULL;
    got.sent_at = 0;
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &got, &err));
    ASSERT_OK(lead_repo_message_get(env->repo, m[2].id, env->arena, &got, &err));
    ASSERT_STREQ("boom", got.last_error);
    ASSERT(got.provider_id == NULL);
    ASSERT_EQ(0, got.sent_at);

    ASSERT_EQ(SP_ENOTFOUND, lead_repo_message_get(env->repo, "00000000-0000-4000-9000-0000000000ff",
                                                  env->arena, &got, &err));
    ASSERT_STREQ("messageId", err.field);
    t_env_free(env);
}

TEST_ALL(unit_contract_events_in_order)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead b = mk_lead("Bob", "bob@example.com", NULL, 1000);
    struct lead_event e[4], *list;
    int n;

    insert_lead(env, &a);
    insert_lead(env, &b);
    e[0] = mk_event(&a, 1, EVENT_LEAD_ADDED, 1000);
    e[1] = mk_event(&b, 2, EVENT_LEAD_ADDED, 1000);
    e[2] = mk_event(&a, 3, EVENT_STATUS_CHANGED, 1000);
    e[3] = mk_event(&a, 4, EVENT_AI_REPLY_SENT, 900); /* an older timestamp, appended last */
    e[2].payload = "{\"from\":\"new\",\"to\":\"replied\"}";
    for (int i = 0; i < 4; i++)
        ASSERT_OK(lead_repo_event_append(env->repo, &e[i], &err));
    ASSERT_OK(lead_repo_event_list(env->repo, a.id, env->arena, &list, &n, &err));
    ASSERT_EQ(3, n);
    ASSERT_STREQ(e[0].id, list[0].id);
    ASSERT_STREQ(e[2].id, list[1].id);
    ASSERT_STREQ(e[3].id, list[2].id);
    ASSERT_EQ(EVENT_STATUS_CHANGED, list[1].type);
    ASSERT_STREQ(a.id, list[1].lead_id);
    ASSERT_JSON_SAME("{\"from\":\"new\",\"to\":\"replied\"}", list[1].payload);
    ASSERT_JSON_SAME("{\"leadId\":\"x\"}", list[1].correlation_ids);
    ASSERT_EQ(900, list[2].created_at);
    t_env_free(env);
}

TEST_ALL(unit_contract_rollback_and_commit)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead b = mk_lead("Bob", "bob@example.com", NULL, 1000);
    struct message m = mk_message(&a, 1, CHANNEL_EMAIL, 1000);
    struct lead_event e = mk_event(&a, 1, EVENT_LEAD_ADDED, 1000);
    struct t_counts c;
    struct job *jobs;
    struct lead got;
    char id[JOB_ID_MAX];
    int n;

    ASSERT_OK(lead_repo_begin(env->repo, &err));
    insert_lead(env, &a);
    ASSERT_OK(lead_repo_message_insert(env->repo, &m, &err));
    ASSERT_OK(lead_repo_event_append(env->repo, &e, &err));
    enqueue(env, a.id, m.id, 1000, id);
    t_env_counts(env, &c); /* the unit of work sees its own writes */
    ASSERT_EQ(1, c.jobs);
    lead_repo_rollback(env->repo);

    t_env_counts(env, &c);
    ASSERT_EQ(0, c.leads);
    ASSERT_EQ(0, c.messages);
    ASSERT_EQ(0, c.events);
    ASSERT_EQ(0, c.jobs); /* the enqueue rolled back with the data */
    ASSERT_EQ(SP_ENOTFOUND, lead_repo_lead_get(env->repo, a.id, env->arena, &got, &err));
    lead_repo_rollback(env->repo); /* rollback outside a unit of work is harmless */

    ASSERT_OK(lead_repo_begin(env->repo, &err));
    insert_lead(env, &b);
    enqueue(env, b.id, NULL, 1000, id);
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    t_env_counts(env, &c);
    ASSERT_EQ(1, c.leads);
    ASSERT_EQ(1, c.jobs);
    t_env_jobs(env, b.id, &jobs, &n);
    ASSERT_EQ(1, n);
    ASSERT_STREQ(id, jobs[0].id);
    t_env_free(env);
}

/* A unit of work's writes, read back inside it and after it: the SQL repo keeps delivery
 * updates and events back until something reads them or the commit (sql_lead_batch.h), which
 * no caller may be able to tell. Events big enough to pass the batch's size bound on the way. */
#define BIG_EVENTS 300
static const char *
big_payload(struct t_env *env, int i)
{
    char pad[2001];

    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    return arena_printf(env->arena, "{\"i\":%d,\"pad\":\"%s\"}", i, pad);
}

static void
append_big_events(struct t_env *env, const struct lead *l, int from)
{
    struct sp_error err = {0};

    for (int i = 0; i < BIG_EVENTS; i++) {
        struct lead_event e = mk_event(l, from + i, EVENT_MESSAGE_SENT, 2000 + i);
        e.payload = big_payload(env, i);
        ASSERT_OK(lead_repo_event_append(env->repo, &e, &err));
    }
}

static void
assert_big_events(struct t_env *env, const struct lead *l, int want)
{
    struct sp_error err = {0};
    struct lead_event *list;
    int n;

    ASSERT_OK(lead_repo_event_list(env->repo, l->id, env->arena, &list, &n, &err));
    ASSERT_EQ(want, n);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(2000 + i, list[i].created_at); /* in the order appended */
        ASSERT_JSON_SAME(big_payload(env, i), list[i].payload);
    }
}

TEST_ALL(unit_contract_unit_of_work_reads_its_own_writes)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct message m = mk_message(&a, 1, CHANNEL_EMAIL, 1000);
    struct message m2 = mk_message(&a, 2, CHANNEL_EMAIL, 1000);
    struct message got;

    insert_lead(env, &a);
    ASSERT_OK(lead_repo_message_insert(env->repo, &m, &err));
    ASSERT_OK(lead_repo_message_insert(env->repo, &m2, &err));

    ASSERT_OK(lead_repo_begin(env->repo, &err));
    m.status = MESSAGE_SENDING;
    m.attempts = 1;
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &m, &err));
    m2.status = MESSAGE_SENDING;
    m2.attempts = 1;
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &m2, &err));
    ASSERT_OK(lead_repo_message_get(env->repo, m.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_SENDING, got.status); /* a claim of a second job of the same message */
    ASSERT_EQ(1, got.attempts);
    m.status = MESSAGE_SENT; /* the same message twice in one unit of work: the last stands */
    m.provider_id = "prov-1";
    m.sent_at = 3000;
    m.updated_at = 3000;
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &m, &err));
    append_big_events(env, &a, 1);
    assert_big_events(env, &a, BIG_EVENTS);
    ASSERT_OK(lead_repo_commit(env->repo, &err));

    ASSERT_OK(lead_repo_message_get(env->repo, m.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_SENT, got.status);
    ASSERT_STREQ("prov-1", got.provider_id);
    ASSERT_EQ(3000, got.sent_at);
    ASSERT_OK(lead_repo_message_get(env->repo, m2.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_SENDING, got.status);
    ASSERT_EQ(1, got.attempts);
    assert_big_events(env, &a, BIG_EVENTS);

    /* Rolled back, past the size bound too: nothing of it stays. */
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    m2.status = MESSAGE_SENT;
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &m2, &err));
    append_big_events(env, &a, 1 + BIG_EVENTS);
    lead_repo_rollback(env->repo);
    assert_big_events(env, &a, BIG_EVENTS);
    ASSERT_OK(lead_repo_message_get(env->repo, m2.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_SENDING, got.status);
    t_env_free(env);
}

/* Units of work nest (db_begin's savepoints): an inner one's rollback undoes its own writes and
 * keeps the outer one's written before it, whoever opened the outer one. */
TEST_SQL(unit_contract_nested_unit_of_work_keeps_the_outer_writes)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead_event e1 = mk_event(&a, 1, EVENT_LEAD_ADDED, 1000);
    struct lead_event e2 = mk_event(&a, 2, EVENT_STATUS_CHANGED, 1000);
    struct lead_event e3 = mk_event(&a, 3, EVENT_MESSAGE_SENT, 1000);
    struct lead_event *list;
    int n;

    insert_lead(env, &a);
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_event_append(env->repo, &e1, &err));
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_event_append(env->repo, &e2, &err));
    lead_repo_rollback(env->repo);
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    ASSERT_OK(lead_repo_event_list(env->repo, a.id, env->arena, &list, &n, &err));
    ASSERT_EQ(1, n);
    ASSERT_STREQ(e1.id, list[0].id);

    /* The outer one opened on the connection (as app/idempotency.c does), committed after. */
    ASSERT_OK(db_begin(env->conn, &err));
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_OK(lead_repo_event_append(env->repo, &e3, &err));
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    ASSERT_OK(db_commit(env->conn, &err));
    ASSERT_OK(lead_repo_event_list(env->repo, a.id, env->arena, &list, &n, &err));
    ASSERT_EQ(2, n);
    ASSERT_STREQ(e3.id, list[1].id);
    t_env_free(env);
}

/* The batch's two statements, in each dialect (the repo gathers rows on PostgreSQL only, so
 * SQLite's texts are run here): every column written, NULLs included, events in order. */
TEST_SQL(unit_contract_batch_statements_write_their_rows)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct message m1 = mk_message(&a, 1, CHANNEL_EMAIL, 1000);
    struct message m2 = mk_message(&a, 2, CHANNEL_WHATSAPP, 1000);
    struct lead_event e[3];
    struct lead_event *list;
    struct message got;
    struct lead_batch b;
    int n;

    insert_lead(env, &a);
    ASSERT_OK(lead_repo_message_insert(env->repo, &m1, &err));
    m2.last_error = "was";
    ASSERT_OK(lead_repo_message_insert(env->repo, &m2, &err));
    lead_batch_init(&b);
    m1.status = MESSAGE_SENT;
    m1.attempts = 2;
    m1.provider_id = "prov-\"1\"";
    m1.sent_at = 5000;
    m1.updated_at = 5001;
    lead_batch_message(&b, &m1);
    m2.status = MESSAGE_QUEUED;
    m2.last_error = NULL;
    m2.updated_at = 6000;
    lead_batch_message(&b, &m2);
    ASSERT(lead_batch_has_message(&b, m2.id));
    for (int i = 0; i < 3; i++) {
        e[i] = mk_event(&a, i + 1, EVENT_MESSAGE_SENT, 9000 - i);
        e[i].payload = arena_printf(env->arena, "{\"k\":\"v\\\"%d\",\"n\":[%d]}", i, i);
        lead_batch_event(&b, &e[i]);
    }
    ASSERT(!lead_batch_full(&b));
    ASSERT_OK(lead_batch_flush(&b, env->conn, &err));
    ASSERT(!lead_batch_has_message(&b, m2.id)); /* emptied */

    ASSERT_OK(lead_repo_message_get(env->repo, m1.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_SENT, got.status);
    ASSERT_EQ(2, got.attempts);
    ASSERT_STREQ("prov-\"1\"", got.provider_id);
    ASSERT(got.last_error == NULL);
    ASSERT_EQ(5000, got.sent_at);
    ASSERT_EQ(5001, got.updated_at);
    ASSERT_OK(lead_repo_message_get(env->repo, m2.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_QUEUED, got.status);
    ASSERT(got.last_error == NULL && got.provider_id == NULL);
    ASSERT_EQ(0, got.sent_at);
    ASSERT_EQ(6000, got.updated_at);
    ASSERT_OK(lead_repo_event_list(env->repo, a.id, env->arena, &list, &n, &err));
    ASSERT_EQ(3, n);
    for (int i = 0; i < 3; i++) {
        ASSERT_STREQ(e[i].id, list[i].id);
        ASSERT_EQ(EVENT_MESSAGE_SENT, list[i].type);
        ASSERT_EQ(9000 - i, list[i].created_at);
        ASSERT_JSON_SAME(e[i].payload, list[i].payload);
        ASSERT_JSON_SAME(e[i].correlation_ids, list[i].correlation_ids);
    }
    lead_batch_drop(&b); /* harmless when empty */
    t_env_free(env);
}

/* A row kept back that the database refuses fails the commit, and the whole unit of work. */
TEST_SQL(unit_contract_refused_row_fails_the_commit)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead ghost = mk_lead("Gus", "gus@example.com", NULL, 1000); /* never stored */
    struct message m = mk_message(&a, 1, CHANNEL_EMAIL, 1000);
    struct lead_event e1 = mk_event(&a, 1, EVENT_MESSAGE_SENT, 1000);
    struct lead_event e2 = mk_event(&ghost, 2, EVENT_MESSAGE_SENT, 1000);
    struct lead_event *list;
    struct message got;
    int n, rc;

    insert_lead(env, &a);
    ASSERT_OK(lead_repo_message_insert(env->repo, &m, &err));
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    m.status = MESSAGE_SENT;
    rc = lead_repo_message_update_delivery(env->repo, &m, &err);
    if (rc == SP_OK)
        rc = lead_repo_event_append(env->repo, &e1, &err);
    if (rc == SP_OK)
        rc = lead_repo_event_append(env->repo, &e2, &err); /* its lead does not exist */
    if (rc == SP_OK)
        rc = lead_repo_commit(env->repo, &err);
    ASSERT(rc != SP_OK);
    lead_repo_rollback(env->repo);
    sp_error_clear(&err);
    ASSERT_OK(lead_repo_event_list(env->repo, a.id, env->arena, &list, &n, &err));
    ASSERT_EQ(0, n);
    ASSERT_OK(lead_repo_message_get(env->repo, m.id, env->arena, &got, &err));
    ASSERT_EQ(MESSAGE_QUEUED, got.status);
    t_env_free(env);
}

/* ---- queue ----------------------------------------------------------------------------- */

/* The queue cases run on Redis too (TEST_QUEUE). What they need there, backend-neutrally: a job
 * enqueued reaches Redis through the relay (t_env_publish); reserve and the outcomes run in a unit
 * of work whose end is reported to the queue (Redis applies the outcome after commit); a lease
 * lapses by t_env_expire_leases (Redis locks expire in real time and the stalled check hands the
 * job out again), where the other backends see the clock move past it. */

/* Reserves at `now` in a unit of work of its own, as the worker does; returns found. */
static int
reserve(struct t_env *env, int64_t now, struct job *out, int64_t *next_due)
{
    struct sp_error err = {0};
    int found;

    ASSERT_OK(lead_repo_begin(env->repo, &err));
    found = reserve_in_uow(env, now, out, next_due);
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    ASSERT_OK(job_queue_after_commit(env->queue, &err));
    return found;
}

enum end { END_COMPLETE, END_RETRY, END_FAIL };

/* Ends an attempt in a unit of work, as the worker does: committed and reported when the queue
 * accepts the outcome, else rolled back and reported. Returns the outcome's code. */
static int
end_attempt(struct t_env *env, enum end how, const struct job *j, int64_t now, int64_t run_at,
            const char *error)
{
    struct sp_error err = {0};
    int rc;

    ASSERT_OK(lead_repo_begin(env->repo, &err));
    if (how == END_COMPLETE)
        rc = job_queue_complete(env->queue, j, now, &err);
    else if (how == END_RETRY)
        rc = job_queue_retry(env->queue, j, now, run_at, error, &err);
    else
        rc = job_queue_fail(env->queue, j, now, error, &err);
    if (rc != SP_OK) {
        lead_repo_rollback(env->repo);
        job_queue_after_rollback(env->queue);
        return rc;
    }
    ASSERT_OK(job_queue_before_commit(env->queue, &err));
    ASSERT_OK(lead_repo_commit(env->repo, &err));
    ASSERT_OK(job_queue_after_commit(env->queue, &err));
    return SP_OK;
}

/* Redis locks expire in real time (PX), whatever the cases' clock says: where a case is about a
 * lease kept or let go by the keeper's renewal, Redis lets `ms` real milliseconds pass (the
 * leases there are the cases' 1000 ms, real). The other backends read the case's clock values. */
static void
redis_time_passes(enum t_backend backend, long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    if (backend == T_REDIS)
        while (nanosleep(&ts, &ts) != 0)
            ;
}

TEST_QUEUE(unit_contract_queue_enqueue_reserve_complete)
{
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job j;
    char id[JOB_ID_MAX];
    int64_t next_due = -1;

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT(id[0] != '\0');
    if (backend == T_REDIS)
        ASSERT_STREQ(M1, id); /* BullMQ's jobId: the producer's key names the job */
    j = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_WAITING, j.state);
    ASSERT_STREQ("send-message", j.name);
    ASSERT_STREQ(M1, j.key);
    ASSERT_STREQ(a.id, j.group);
    if (backend != T_REDIS) {
        /* Redis lists the job's record (its outbox row) without the data and backoff, as
         * queue.h allows for list_group; the job it hands out carries them (below). */
        ASSERT_JSON_SAME("{\"k\":1}", j.data);
        ASSERT_EQ(1000, j.backoff_ms);
    }
    ASSERT_EQ(3, j.max_attempts);
    ASSERT_EQ(0, j.attempts_made);
    ASSERT_EQ(1000, j.run_at);
    ASSERT_EQ(1000, j.created_at);
    ASSERT_EQ(0, j.finished_at);
    ASSERT(j.last_error == NULL);

    if (backend != T_REDIS) {
        ASSERT_EQ(0, reserve(env, 999, &j, &next_due)); /* not due yet */
        ASSERT_EQ(1000, next_due);
    }
    /* Redis: a published job is in `wait`, ready whatever the caller's clock says (BullMQ has no
     * not-before time for a waiting job; only delayed ones have a due time: the retry case). */
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL));
    ASSERT_STREQ(id, j.id);
    ASSERT_EQ(JOB_ACTIVE, j.state);
    if (backend != T_REDIS)
        ASSERT_STREQ(M1, j.key); /* Redis: a fetched job has no key but its id, the key (above) */
    ASSERT_JSON_SAME("{\"k\":1}", j.data);
    ASSERT_EQ(1000, j.backoff_ms);
    ASSERT_EQ(3, j.max_attempts);
    ASSERT_EQ(JOB_ACTIVE, job_by_id(env, a.id, id).state);
    t_env_check_stalled(env, 1500); /* its holder lives: Redis's stalled check leaves it */
    ASSERT_EQ(0, reserve(env, 1500, NULL, &next_due)); /* leased until 2000 */
    ASSERT_EQ(0, next_due);

    ASSERT_OK(end_attempt(env, END_COMPLETE, &j, 1600, 0, NULL));
    j = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_EQ(1600, j.finished_at);
    ASSERT_EQ(1600, j.updated_at);
    t_env_expire_leases(env, 100000);
    ASSERT_EQ(0, reserve(env, 100000, NULL, &next_due)); /* lease gone with completion */
    t_env_free(env);
}

static int64_t
counted(const struct job_counts *c, const char *name, enum job_state state)
{
    int64_t n = 0;

    for (int i = 0; i < c->n; i++)
        if (strcmp(c->by_state[i].name, name) == 0 && c->by_state[i].state == state)
            n += c->by_state[i].n;
    return n;
}

static void
count_jobs(struct t_env *env, struct job_counts *c)
{
    struct sp_error err = {0};

    ASSERT_OK(job_queue_count(env->queue, env->arena, c, &err));
}

/* job_queue_count (GET /metrics): jobs by name and state, and the backlog not yet in the queue
 * (Redis: outbox rows the relay has not published). */
TEST_QUEUE(unit_contract_queue_count)
{
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job_spec gen = {"generate-reply", M3, NULL, "{\"k\":2}", 3, 1000};
    struct sp_error err = {0};
    struct job_counts c;
    struct job j;
    char id[JOB_ID_MAX];

    count_jobs(env, &c);
    ASSERT_EQ(0, c.n);
    ASSERT_EQ(0, c.backlog);
    ASSERT_EQ(0, c.backlog_oldest_at);
    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    enqueue(env, a.id, M2, 2000, id);
    gen.group = a.id;
    ASSERT_OK(job_queue_enqueue(env->queue, &gen, 3000, id, &err));
    count_jobs(env, &c);
    ASSERT_EQ(2, c.n);
    ASSERT_EQ(2, counted(&c, "send-message", JOB_WAITING));
    ASSERT_EQ(1, counted(&c, "generate-reply", JOB_WAITING));
    ASSERT_EQ(backend == T_REDIS ? 3 : 0, c.backlog);
    ASSERT_EQ(backend == T_REDIS ? 1000 : 0, c.backlog_oldest_at);

    t_env_publish(env);
    count_jobs(env, &c);
    ASSERT_EQ(0, c.backlog); /* published: in the queue now */
    ASSERT_EQ(0, c.backlog_oldest_at);
    ASSERT_EQ(2, counted(&c, "send-message", JOB_WAITING));

    ASSERT_EQ(1, reserve(env, 5000, &j, NULL));
    count_jobs(env, &c);
    ASSERT_EQ(1, counted(&c, j.name, JOB_ACTIVE));
    ASSERT_OK(end_attempt(env, END_FAIL, &j, 5100, 0, "gave up"));
    count_jobs(env, &c);
    ASSERT_EQ(0, counted(&c, j.name, JOB_ACTIVE));
    ASSERT_EQ(1, counted(&c, j.name, JOB_FAILED));
    ASSERT_EQ(2, counted(&c, "send-message", JOB_WAITING) +
                     counted(&c, "generate-reply", JOB_WAITING));
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_retry_waits_for_run_at)
{
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job j;
    char id[JOB_ID_MAX];
    int64_t next_due = 0;

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL));
    ASSERT_OK(end_attempt(env, END_RETRY, &j, 1100, 5000, "provider down"));
    j = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_DELAYED, j.state);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_EQ(5000, j.run_at);
    ASSERT_STREQ("provider down", j.last_error);
    ASSERT_EQ(0, j.finished_at);

    ASSERT_EQ(0, reserve(env, 4999, NULL, &next_due));
    ASSERT_EQ(5000, next_due);
    ASSERT_EQ(1, reserve(env, 5000, &j, NULL));
    ASSERT_STREQ(id, j.id);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_STREQ("provider down", j.last_error);

    ASSERT_OK(end_attempt(env, END_FAIL, &j, 5100, 0, "gave up"));
    j = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_FAILED, j.state);
    ASSERT_EQ(2, j.attempts_made);
    ASSERT_STREQ("gave up", j.last_error);
    ASSERT_EQ(5100, j.finished_at);
    t_env_expire_leases(env, 1000000);
    ASSERT_EQ(0, reserve(env, 1000000, NULL, &next_due)); /* dead letters stay put */
    ASSERT_EQ(0, next_due);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_due_order)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job j;
    char id1[JOB_ID_MAX], id2[JOB_ID_MAX], id3[JOB_ID_MAX];

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 3000, id1);
    enqueue(env, a.id, M2, 1000, id2);
    enqueue(env, a.id, M3, 2000, id3);
    t_env_publish(env); /* Redis: in created_at order, into `wait`, which is first in first out */
    ASSERT_EQ(1, reserve(env, 10000, &j, NULL));
    ASSERT_STREQ(id2, j.id);
    ASSERT_EQ(1, reserve(env, 10000, &j, NULL));
    ASSERT_STREQ(id3, j.id);
    ASSERT_EQ(1, reserve(env, 10000, &j, NULL));
    ASSERT_STREQ(id1, j.id);
    ASSERT_EQ(0, reserve(env, 10000, &j, NULL));
    {
        /* listed by lead, oldest first: in enqueue order on mem and SQL (the order the jobs
         * were written); Redis lists its records (outbox rows) by created_at, the enqueue's
         * time, which this case makes go backwards */
        struct job *list;
        int n, more;
        ASSERT_OK(job_queue_list_group(env->queue, a.id, 3, env->arena, &list, &n, &more, &err));
        ASSERT_EQ(3, n);
        ASSERT_EQ(0, more);
        if (backend != T_REDIS) {
            ASSERT_STREQ(id1, list[0].id);
            ASSERT_STREQ(id2, list[1].id);
            ASSERT_STREQ(id3, list[2].id);
        } else {
            ASSERT_STREQ(id2, list[0].id);
            ASSERT_STREQ(id3, list[1].id);
            ASSERT_STREQ(id1, list[2].id);
        }
    }
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_stalled_recovery)
{
    /* a worker that dies holding a job loses it when the lease expires */
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job j;
    char id[JOB_ID_MAX];

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL)); /* leased until 2000 */
    ASSERT_EQ(0, j.stalled_count);
    t_env_check_stalled(env, 1999); /* Redis: the lock is alive, the job stays */
    ASSERT_EQ(0, reserve(env, 1999, &j, NULL));
    t_env_expire_leases(env, 2000);
    ASSERT_EQ(1, reserve(env, 2000, &j, NULL));
    ASSERT_STREQ(id, j.id);
    ASSERT_EQ(1, j.stalled_count);
    ASSERT_EQ(JOB_ACTIVE, j.state);
    ASSERT_EQ(1, job_by_id(env, a.id, id).stalled_count);
    ASSERT_EQ(0, job_by_id(env, a.id, id).attempts_made); /* a stall is not an attempt */

    t_env_expire_leases(env, 3000);
    ASSERT_EQ(1, reserve(env, 3000, &j, NULL));
    ASSERT_EQ(2, j.stalled_count);
    /* the third stall exceeds the limit (QUEUE_MAX_STALLED, 2 here): the job is failed
     * instead of handed out */
    t_env_expire_leases(env, 4000);
    ASSERT_EQ(0, reserve(env, 4000, &j, NULL));
    j = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_FAILED, j.state);
    ASSERT_EQ(3, j.stalled_count);
    ASSERT_STREQ("job stalled more than allowable limit", j.last_error);
    if (backend != T_REDIS)
        ASSERT_EQ(4000, j.finished_at);
    else /* the stalled check stamps the record it fails with the wall clock, not its `now` */
        ASSERT(j.finished_at >= 4000);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_renew_keeps_a_slow_job)
{
    /* the keeper's renewal extends every lease the process holds: a job that runs longer than
     * its lease is not handed out again, and its outcome is still ours to record */
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct sp_error err = {0};
    struct job j, other;
    const struct job *jp = &j;
    char id[JOB_ID_MAX];
    int lost = -1;

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL)); /* leased until 2000 */
    redis_time_passes(backend, 550);
    ASSERT_OK(job_queue_renew(env->queue, 1600, 1000, &err));
    redis_time_passes(backend, 550); /* Redis: the lock taken by reserve alone would be gone */
    ASSERT_OK(job_queue_renew(env->queue, 2300, 1000, &err));
    t_env_check_stalled(env, 3000);
    ASSERT_EQ(0, reserve(env, 3000, &other, NULL)); /* renewed until 3300 */
    ASSERT_OK(job_queue_fence(env->queue, &jp, 1, &lost, &err));
    ASSERT_EQ(0, lost);
    ASSERT_OK(end_attempt(env, END_COMPLETE, &j, 3100, 0, NULL));
    j = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    ASSERT_EQ(0, j.stalled_count);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_abandoned_job_is_not_renewed)
{
    /* a unit of work that rolls back drops its jobs from the renewal: a job whose outcome could
     * not be recorded lapses and is taken again, instead of being renewed for ever */
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct sp_error err = {0};
    struct job j, again;
    char id[JOB_ID_MAX];

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL)); /* leased until 2000 */
    ASSERT_OK(job_queue_after_commit(env->queue, &err));
    ASSERT_OK(job_queue_renew(env->queue, 1500, 1000, &err)); /* until 2500 */
    t_env_check_stalled(env, 2200);
    ASSERT_EQ(0, reserve(env, 2200, &again, NULL));
    ASSERT_EQ(1, t_env_leases_held(env));
    job_queue_after_rollback(env->queue); /* the outcome's unit of work failed for good */
    ASSERT_EQ(0, t_env_leases_held(env));
    redis_time_passes(backend, 550);
    ASSERT_OK(job_queue_renew(env->queue, 2400, 1000, &err)); /* not ours to renew any more */
    /* Redis: 1100 ms after the last renewal that counted, its lock has lapsed (had the renewal
     * above extended it, the lock would live and the check would leave the job) */
    redis_time_passes(backend, 550);
    t_env_check_stalled(env, 2500);
    ASSERT_EQ(1, reserve(env, 2500, &again, NULL));
    ASSERT_STREQ(id, again.id);
    ASSERT_EQ(1, again.stalled_count);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_lost_lease_is_fenced)
{
    /* a holder whose lease expired and whose job went to another holder changes nothing */
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct sp_error err = {0};
    struct job stale, fresh;
    const struct job *jp = &stale, *fp = &fresh;
    char id[JOB_ID_MAX];
    int lost = -1;

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &stale, NULL));
    t_env_expire_leases(env, 2000);
    ASSERT_EQ(1, reserve(env, 2000, &fresh, NULL)); /* expired: taken again */
    ASSERT(strcmp(stale.lease, fresh.lease) != 0);
    ASSERT_OK(job_queue_fence(env->queue, &jp, 1, &lost, &err));
    ASSERT_EQ(1, lost);
    if (backend != T_REDIS) {
        ASSERT_EQ(SP_ELEASELOST, end_attempt(env, END_COMPLETE, &stale, 2100, 0, NULL));
        ASSERT_EQ(SP_ELEASELOST, end_attempt(env, END_FAIL, &stale, 2100, 0, "x"));
    } else {
        /* Redis fences through `fence` alone (above; the worker records no outcome for a job
         * reported lost): complete writes the database record in the transaction, unfenced, and
         * the Redis side after commit, where the script refuses a lock not ours: the job stays
         * the fresh holder's. */
        ASSERT_OK(end_attempt(env, END_COMPLETE, &stale, 2100, 0, NULL));
        ASSERT_OK(job_queue_fence(env->queue, &fp, 1, &lost, &err));
        ASSERT_EQ(0, lost);
    }
    ASSERT_OK(end_attempt(env, END_COMPLETE, &fresh, 2200, 0, NULL));
    ASSERT_EQ(JOB_COMPLETED, job_by_id(env, a.id, id).state);
    t_env_expire_leases(env, 100000);
    ASSERT_EQ(0, reserve(env, 100000, &fresh, NULL)); /* completed for good */
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_expired_lease_before_due_jobs)
{
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job j;
    char stalled[JOB_ID_MAX], fresh[JOB_ID_MAX];

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, stalled);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL));
    enqueue(env, a.id, M2, 1500, fresh);
    t_env_publish(env);
    t_env_expire_leases(env, 2500); /* Redis: back to the end of `wait` fetched from */
    ASSERT_EQ(1, reserve(env, 2500, &j, NULL));
    ASSERT_STREQ(stalled, j.id);
    ASSERT_EQ(1, reserve(env, 2500, &j, NULL));
    ASSERT_STREQ(fresh, j.id);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_reserve_joins_the_unit_of_work)
{
    /* queue.h: reserve runs inside the caller's unit of work; rolling it back un-leases (the
     * caller reports the rollback: Redis gives the job back then) */
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct job j;
    char id[JOB_ID_MAX];

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_OK(lead_repo_begin(env->repo, &err));
    ASSERT_EQ(1, reserve_in_uow(env, 1000, &j, NULL));
    lead_repo_rollback(env->repo);
    job_queue_after_rollback(env->queue);
    ASSERT_EQ(0, t_env_leases_held(env));
    ASSERT_EQ(JOB_WAITING, job_by_id(env, a.id, id).state);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL));
    ASSERT_STREQ(id, j.id);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_job_without_lead)
{
    /* no group and no key: on Redis a fetched job never carries them, so what this checks there
     * is that a job whose record has no lead is published and handed out under its id */
    struct t_env *env = t_env_new(backend);
    struct job j;
    char id[JOB_ID_MAX];

    enqueue(env, NULL, NULL, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL));
    ASSERT_STREQ(id, j.id);
    ASSERT(j.group == NULL);
    ASSERT(j.key == NULL);
    t_env_free(env);
}

/* Regression (issue 3, seen on PostgreSQL): two workers sending a new lead's two welcome
 * messages at once both recorded new -> contacted. The transition is a compare-and-set. */
TEST_ALL(unit_contract_lead_transition_is_compare_and_set)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l = mk_lead("Ann", "ann@example.com", NULL, 1000), got;
    int changed = -1;

    insert_lead(env, &l);
    ASSERT_OK(lead_repo_lead_transition(env->repo, l.id, LEAD_STATUS_NEW, LEAD_STATUS_CONTACTED,
                                        2000, &changed, &err));
    ASSERT_EQ(1, changed);
    ASSERT_OK(lead_repo_lead_transition(env->repo, l.id, LEAD_STATUS_NEW, LEAD_STATUS_CONTACTED,
                                        3000, &changed, &err));
    ASSERT_EQ(0, changed); /* the second one sees the change already made */
    ASSERT_OK(lead_repo_lead_get(env->repo, l.id, env->arena, &got, &err));
    ASSERT_EQ(LEAD_STATUS_CONTACTED, got.status);
    ASSERT_EQ(2000, got.updated_at);
    ASSERT_OK(lead_repo_lead_transition(env->repo, "00000000-0000-4000-8000-999999999999",
                                        LEAD_STATUS_NEW, LEAD_STATUS_CONTACTED, 3000, &changed,
                                        &err));
    ASSERT_EQ(0, changed);
    t_env_free(env);
}

/* Hardening #1: a reply's sender becomes the lead's address only where it has none, a
 * compare-and-set like the status transition. */
TEST_ALL(unit_hostile_h1_contract_lead_set_address_only_fills_a_missing_address)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l = mk_lead("Ann", NULL, "+351912345678", 1000), got;
    int changed = -1;

    insert_lead(env, &l);
    ASSERT_OK(lead_repo_lead_set_address(env->repo, l.id, CHANNEL_WHATSAPP, "+15550001234", 2000,
                                         &changed, &err));
    ASSERT_EQ(0, changed); /* it has a phone: kept */
    ASSERT_OK(lead_repo_lead_set_address(env->repo, l.id, CHANNEL_EMAIL, "ann@work.example", 3000,
                                         &changed, &err));
    ASSERT_EQ(1, changed);
    ASSERT_OK(lead_repo_lead_set_address(env->repo, l.id, CHANNEL_EMAIL, "eve@example.org", 4000,
                                         &changed, &err));
    ASSERT_EQ(0, changed); /* the second one sees the address already there */
    ASSERT_OK(lead_repo_lead_get(env->repo, l.id, env->arena, &got, &err));
    ASSERT_STREQ("ann@work.example", got.email);
    ASSERT_STREQ("+351912345678", got.phone);
    ASSERT_EQ(3000, got.updated_at);
    ASSERT_EQ(SP_EINVAL, lead_repo_lead_set_address(env->repo, l.id, CHANNEL_LINKEDIN, "x", 5000,
                                                    &changed, &err));
    ASSERT_EQ(0, changed);
    t_env_free(env);
}

/* ---- the operator's verbs: list, get, reprocess ------------------------------------------- */

/* A job named `name` for lead_id (key: message_id) enqueued at `now`. */
static void
enqueue_named(struct t_env *env, const char *name, const char *lead_id, const char *message_id,
              int64_t now, char *id)
{
    struct sp_error err = {0};
    struct job_spec spec = {name, message_id, lead_id, "{\"k\":1}", 3, 1000};
    ASSERT_OK(job_queue_enqueue(env->queue, &spec, now, id, &err));
}

/* list with a filter; the ids listed, space-separated, into the arena (next into `next`). */
static const char *
list_ids(struct t_env *env, const struct job_filter *f, char *next)
{
    struct sp_error err = {0};
    struct job *jobs;
    char *out = arena_strdup(env->arena, "");
    int n = -1;

    ASSERT_OK(job_queue_list(env->queue, f, env->arena, &jobs, &n, next, &err));
    ASSERT(n >= 0 && n <= f->limit);
    for (int i = 0; i < n; i++)
        out = (char *)arena_printf(env->arena, "%s%s%s", out, i ? " " : "", jobs[i].id);
    return out;
}

static const char *
join_ids(struct t_env *env, const char *const *ids, int n)
{
    char *out = arena_strdup(env->arena, "");
    for (int i = 0; i < n; i++)
        out = (char *)arena_printf(env->arena, "%s%s%s", out, i ? " " : "", ids[i]);
    return out;
}

/* An id no job has, and one this backend cannot have made. */
static const char *
unknown_id(enum t_backend backend)
{
    return backend == T_REDIS ? "00000000-0000-4000-9000-00000000ffff" : "999999";
}

static const char *
malformed_id(enum t_backend backend)
{
    return backend == T_REDIS ? "999999" : "00000000-0000-4000-9000-00000000ffff";
}

TEST_QUEUE(unit_contract_queue_list_pages_newest_first)
{
    /* keyset pages, newest first: a job added while paging is not seen on the later pages,
     * and no job is seen twice or skipped */
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct lead b = mk_lead("Bea", "bea@example.com", NULL, 1000);
    char id[6][JOB_ID_MAX], next[JOB_CURSOR_MAX], cursor[JOB_CURSOR_MAX];
    const char *ids[6];
    struct job_filter f = {0};
    struct sp_error err = {0};
    struct job *jobs;
    int n;

    insert_lead(env, &a);
    insert_lead(env, &b);
    enqueue_named(env, "send-message", a.id, M1, 1000, id[0]);
    enqueue_named(env, "generate-reply", b.id, M2, 2000, id[1]);
    enqueue_named(env, "send-message", a.id, M3, 3000, id[2]);
    enqueue_named(env, "send-message", b.id, "00000000-0000-4000-9000-0000000000a4", 4000, id[3]);
    enqueue_named(env, "generate-reply", a.id, "00000000-0000-4000-9000-0000000000a5", 5000, id[4]);
    t_env_publish(env);
    for (int i = 0; i < 5; i++)
        ids[i] = id[4 - i];

    f.limit = 2;
    ASSERT_STREQ(join_ids(env, ids, 2), list_ids(env, &f, next));
    ASSERT(next[0] != '\0');
    memcpy(cursor, next, sizeof(cursor));
    f.after = cursor;
    ASSERT_STREQ(join_ids(env, ids + 2, 2), list_ids(env, &f, next));
    ASSERT(next[0] != '\0');
    /* a job added now is newer than every page still to come */
    enqueue_named(env, "send-message", b.id, "00000000-0000-4000-9000-0000000000a6", 6000, id[5]);
    t_env_publish(env);
    memcpy(cursor, next, sizeof(cursor));
    ASSERT_STREQ(join_ids(env, ids + 4, 1), list_ids(env, &f, next));
    ASSERT_STREQ("", next); /* the last page */

    /* from the top again: the new job first, every record as list_group shows it */
    f.after = NULL;
    f.limit = JOB_LIST_MAX;
    ASSERT_OK(job_queue_list(env->queue, &f, env->arena, &jobs, &n, next, &err));
    ASSERT_EQ(6, n);
    ASSERT_STREQ("", next);
    ASSERT_STREQ(id[5], jobs[0].id);
    ASSERT_STREQ(id[0], jobs[5].id);
    ASSERT_STREQ("send-message", jobs[5].name);
    ASSERT_STREQ(a.id, jobs[5].group);
    ASSERT_STREQ(M1, jobs[5].key);
    ASSERT_EQ(JOB_WAITING, jobs[5].state);
    ASSERT_EQ(0, jobs[5].attempts_made);
    ASSERT_EQ(3, jobs[5].max_attempts);
    ASSERT_EQ(1000, jobs[5].created_at);
    ASSERT_EQ(1000, jobs[5].run_at);
    ASSERT(jobs[5].last_error == NULL);

    /* by name, paged too */
    f.name = "generate-reply";
    f.limit = 1;
    ASSERT_STREQ(id[4], list_ids(env, &f, next));
    memcpy(cursor, next, sizeof(cursor));
    f.after = cursor;
    ASSERT_STREQ(id[1], list_ids(env, &f, next));
    ASSERT_STREQ("", next);
    f.name = "no-such-job";
    f.after = NULL;
    ASSERT_STREQ("", list_ids(env, &f, next));
    ASSERT_STREQ("", next);

    /* a position this queue did not make */
    f.name = NULL;
    f.after = "not a position";
    ASSERT_EQ(SP_EINVAL, job_queue_list(env->queue, &f, env->arena, &jobs, &n, next, &err));
    ASSERT_STREQ("cursor", err.field);
    t_env_free(env);
}

TEST_QUEUE(unit_contract_queue_list_by_state_and_get)
{
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    char id[4][JOB_ID_MAX], next[JOB_CURSOR_MAX], cursor[JOB_CURSOR_MAX];
    struct job_filter f = {0};
    struct sp_error err = {0};
    struct job j, got;

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id[0]);
    enqueue(env, a.id, M2, 2000, id[1]);
    enqueue(env, a.id, M3, 3000, id[2]);
    enqueue(env, a.id, "00000000-0000-4000-9000-0000000000a4", 4000, id[3]);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 5000, &j, NULL)); /* the oldest */
    ASSERT_STREQ(id[0], j.id);
    ASSERT_OK(end_attempt(env, END_FAIL, &j, 5100, 0, "gave up"));
    ASSERT_EQ(1, reserve(env, 5200, &j, NULL));
    ASSERT_STREQ(id[1], j.id);
    ASSERT_OK(end_attempt(env, END_COMPLETE, &j, 5300, 0, NULL));
    ASSERT_EQ(1, reserve(env, 5400, &j, NULL)); /* left active */
    ASSERT_STREQ(id[2], j.id);

    f.limit = 10;
    f.has_state = 1;
    f.state = JOB_FAILED;
    ASSERT_STREQ(id[0], list_ids(env, &f, next));
    f.state = JOB_COMPLETED;
    ASSERT_STREQ(id[1], list_ids(env, &f, next));
    f.state = JOB_ACTIVE;
    ASSERT_STREQ(id[2], list_ids(env, &f, next));
    f.state = JOB_WAITING;
    ASSERT_STREQ(id[3], list_ids(env, &f, next));
    f.state = JOB_DELAYED;
    ASSERT_STREQ("", list_ids(env, &f, next));
    ASSERT_STREQ("", next);
    /* a state's pages are keyset pages too */
    ASSERT_OK(end_attempt(env, END_FAIL, &j, 5500, 0, "gave up too"));
    f.state = JOB_FAILED;
    f.limit = 1;
    ASSERT_STREQ(id[2], list_ids(env, &f, next));
    memcpy(cursor, next, sizeof(cursor));
    f.after = cursor;
    ASSERT_STREQ(id[0], list_ids(env, &f, next));
    ASSERT_STREQ("", next);

    ASSERT_OK(job_queue_get(env->queue, id[0], env->arena, &got, &err));
    ASSERT_STREQ(id[0], got.id);
    ASSERT_EQ(JOB_FAILED, got.state);
    ASSERT_EQ(1, got.attempts_made);
    ASSERT_STREQ("gave up", got.last_error);
    ASSERT_EQ(5100, got.finished_at);
    ASSERT_STREQ(M1, got.key);
    ASSERT_STREQ(a.id, got.group);
    ASSERT_EQ(SP_ENOTFOUND, job_queue_get(env->queue, unknown_id(backend), env->arena, &got, &err));
    ASSERT_STREQ("id", err.field);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, job_queue_get(env->queue, malformed_id(backend), env->arena, &got, &err));
    ASSERT_STREQ("id", err.field);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, job_queue_get(env->queue, "", env->arena, &got, &err));
    t_env_free(env);
}

/* reprocess in a unit of work of its own, committed or rolled back. */
static int
reprocess_in_uow(struct t_env *env, const char *id, int64_t now, int commit, struct job *before,
                 struct sp_error *err)
{
    int rc;

    ASSERT_OK(lead_repo_begin(env->repo, err));
    rc = job_queue_reprocess(env->queue, id, now, env->arena, before, err);
    if (rc != SP_OK || !commit) {
        lead_repo_rollback(env->repo);
        job_queue_after_rollback(env->queue);
        return rc;
    }
    ASSERT_OK(lead_repo_commit(env->repo, err));
    job_queue_wake(env->queue);
    return SP_OK;
}

TEST_QUEUE(unit_contract_queue_reprocess_puts_a_failed_job_back)
{
    /* BullMQ's job.retry() with its attempts reset: waiting, due now, no attempts, no error or
     * finish time; the rest of the job stays; only a failed job */
    struct t_env *env = t_env_new(backend);
    struct lead a = mk_lead("Ana", "ana@example.com", NULL, 1000);
    struct sp_error err = {0};
    struct job j, before, got;
    char id[JOB_ID_MAX];

    insert_lead(env, &a);
    enqueue(env, a.id, M1, 1000, id);
    t_env_publish(env);
    ASSERT_EQ(1, reserve(env, 1000, &j, NULL));
    ASSERT_EQ(0, j.requeued);
    ASSERT_OK(end_attempt(env, END_RETRY, &j, 1100, 1200, "provider down"));
    ASSERT_EQ(1, reserve(env, 1200, &j, NULL));
    ASSERT_OK(end_attempt(env, END_FAIL, &j, 1300, 0, "gave up"));

    /* rolled back: nothing changed (and on Redis nothing reaches the relay) */
    ASSERT_OK(reprocess_in_uow(env, id, 2000, 0, &before, &err));
    t_env_publish(env);
    ASSERT_EQ(JOB_FAILED, job_by_id(env, a.id, id).state);
    ASSERT_EQ(0, reserve(env, 2000, &j, NULL));

    ASSERT_OK(reprocess_in_uow(env, id, 2000, 1, &before, &err));
    ASSERT_STREQ(id, before.id);
    ASSERT_EQ(JOB_FAILED, before.state);
    ASSERT_EQ(2, before.attempts_made);
    ASSERT_STREQ("gave up", before.last_error);
    ASSERT_EQ(1300, before.finished_at);
    ASSERT_OK(job_queue_get(env->queue, id, env->arena, &got, &err));
    ASSERT_EQ(JOB_WAITING, got.state);
    ASSERT_EQ(0, got.attempts_made);
    ASSERT(got.last_error == NULL);
    ASSERT_EQ(0, got.finished_at);
    ASSERT_EQ(2000, got.run_at);
    ASSERT_EQ(2000, got.updated_at);
    ASSERT_EQ(1000, got.created_at);
    ASSERT_EQ(3, got.max_attempts);
    ASSERT_STREQ(M1, got.key);
    ASSERT_STREQ(a.id, got.group);
    /* once is enough: it is not failed any more */
    ASSERT_EQ(SP_ECONFLICT, reprocess_in_uow(env, id, 2001, 1, &before, &err));
    ASSERT_STREQ("state", err.field);
    ASSERT_EQ(JOB_WAITING, before.state);
    sp_error_clear(&err);

    t_env_publish(env); /* Redis: the relay moves the job from `failed` back to `wait` */
    ASSERT_EQ(1, reserve(env, 2000, &j, NULL));
    ASSERT_STREQ(id, j.id);
    ASSERT_EQ(0, j.attempts_made);
    ASSERT_EQ(3, j.max_attempts);
    ASSERT_JSON_SAME("{\"k\":1}", j.data);
    ASSERT_EQ(backend == T_REDIS, j.requeued); /* Redis: it came back from `failed` there */
    ASSERT_OK(end_attempt(env, END_COMPLETE, &j, 2100, 0, NULL));
    got = job_by_id(env, a.id, id);
    ASSERT_EQ(JOB_COMPLETED, got.state);
    ASSERT_EQ(1, got.attempts_made);
    ASSERT_EQ(2100, got.finished_at);

    ASSERT_EQ(SP_ECONFLICT, reprocess_in_uow(env, id, 3000, 1, &before, &err));
    ASSERT_EQ(JOB_COMPLETED, before.state);
    sp_error_clear(&err);
    ASSERT_EQ(SP_ENOTFOUND, reprocess_in_uow(env, unknown_id(backend), 3000, 1, &before, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, reprocess_in_uow(env, malformed_id(backend), 3000, 1, &before, &err));
    t_env_free(env);
}
