/* test_leads_unique.c: one lead per person (#11): a capture of an email (trimmed,
 * case-insensitive) or phone (its digits) another lead has is refused with that lead, the store's
 * unique indexes deciding, and the inbound path copes with them: a sender created concurrently
 * is looked up again, an address another lead has is not adopted. On the fake and on the real
 * stores (the unique indexes of migration 0007). */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "infra/db.h"
#include "infra/db_sqlite.h"
#include "infra/migrate.h"

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

/* leads_create expected to be refused as the person of `owner`, on `field`. */
static void
expect_person(struct t_env *env, const char *email, const char *phone, const char *owner,
              const char *field)
{
    struct lead_input in = {"Someone", email, phone};
    struct sp_error err = {0};
    struct lead out;

    ASSERT_EQ(SP_ECONFLICT, leads_create(&env->deps, &in, env->arena, &out, &err));
    ASSERT_STREQ(owner, out.id);
    ASSERT_STREQ(field, err.field);
    ASSERT_STREQ("Lead already exists", err.msg);
    ASSERT_EQ(0, env->faults.open_tx);
}

TEST_ALL(unit_leads_unique_capture_of_a_known_person_is_a_conflict)
{
    struct t_env *env = t_env_new(backend);
    struct lead ana, bea, got;

    t_env_create(env, "Ana", "ana@example.com", "+351 912 345 678", &ana);
    assert_counts(env, 1, 2, 3, 2);
    expect_person(env, "ANA@Example.COM", NULL, ana.id, "email");
    expect_person(env, NULL, "351912345678", ana.id, "phone");
    expect_person(env, NULL, "+351-(912)-345.678", ana.id, "phone");
    /* a new email does not make another person of a known phone */
    expect_person(env, "ana.work@example.com", "+351912345678", ana.id, "phone");
    expect_person(env, "ana@example.com", "+1 555 0100", ana.id, "email");
    /* nothing stored, nothing queued */
    assert_counts(env, 1, 2, 3, 2);
    t_env_lead(env, ana.id, &got);
    ASSERT_STREQ("Ana", got.name);

    /* another person; and a phone without digits matches no one */
    t_env_create(env, "Bea", "bea@example.com", "+351 912 345 679", &bea);
    t_env_create(env, "Cid", NULL, "n/a", &got);
    t_env_create(env, "Dan", NULL, "n/a", &got);
    assert_counts(env, 4, 6, 10, 6);
    t_env_free(env);
}

/* Whatever call fails, the capture of a known person stores nothing and says either who it is
 * or what failed. */
TEST(unit_leads_unique_conflict_fault_at_every_call)
{
    int injected_somewhere = 0;

    for (int n = 1; n < 20; n++) {
        struct t_env *env = t_env_new(T_MEM);
        struct lead_input in = {"Ana again", "ANA@example.com", NULL};
        struct sp_error err = {0};
        struct lead ana, out;
        int rc;

        t_env_create(env, "Ana", "ana@example.com", NULL, &ana);
        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_create(&env->deps, &in, env->arena, &out, &err);
        if (env->faults.injected) {
            injected_somewhere = 1;
            ASSERT_EQ(SP_EUNAVAIL, rc);
            ASSERT_CONTAINS(err.msg, "injected");
        } else {
            ASSERT_EQ(SP_ECONFLICT, rc);
            ASSERT_STREQ(ana.id, out.id);
        }
        ASSERT_EQ(0, env->faults.open_tx);
        assert_counts(env, 1, 1, 2, 1);
        t_env_free(env);
    }
    ASSERT(injected_somewhere);
}

static int
count_type(struct t_env *env, const char *lead_id, enum lead_event_type t, struct lead_event *last)
{
    struct lead_event *e;
    int ne, k = 0;

    t_env_events(env, lead_id, &e, &ne);
    for (int i = 0; i < ne; i++)
        if (e[i].type == t) {
            k++;
            if (last)
                *last = e[i];
        }
    return k;
}

static int
count_jobs(struct t_env *env, const char *lead_id, const char *name)
{
    struct job *j;
    int nj, k = 0;

    t_env_jobs(env, lead_id, &j, &nj);
    for (int i = 0; i < nj; i++)
        k += strcmp(j[i].name, name) == 0;
    return k;
}

/* An email from an unknown sender makes a lead of it; when a concurrent unit of work stored a
 * lead with that address right after our lookup (the lookup is hidden once), the store refuses
 * the second lead and the reply is taken in again: it goes to that lead, no new one is made. */
TEST_ALL(unit_leads_unique_sender_created_concurrently_is_looked_up_again)
{
    struct t_env *env = t_env_new(backend);
    struct inbound_reply in;
    struct inbound_result out;
    struct sp_error err = {0};
    struct message *m;
    struct lead bob;
    int nm;

    t_env_create(env, "Bob", "bob@example.com", NULL, &bob);
    memset(&in, 0, sizeof(in));
    in.source = REPLY_SOURCE_EMAIL;
    in.channel = CHANNEL_EMAIL;
    in.from = "Bob@Example.com";
    in.from_name = "Bob B.";
    in.create_lead = 1;
    in.content = "{\"from\":\"Bob@Example.com\",\"subject\":\"Re\",\"body\":\"price?\"}";
    in.answerable = 1;
    fault_plan_arm(&env->faults, 0, 0);
    env->faults.hide_addresses = 1;
    ASSERT_OK(leads_receive(&env->deps, &in, env->arena, &out, &err));
    ASSERT_EQ(0, env->faults.hide_addresses); /* the first lookup missed it */
    ASSERT_STREQ(bob.id, out.lead_id);
    ASSERT_EQ(0, out.lead_created);
    ASSERT_EQ(0, env->faults.open_tx);
    t_env_messages(env, bob.id, &m, &nm);
    ASSERT_EQ(2, nm); /* the welcome and the reply */
    ASSERT_EQ(MESSAGE_INBOUND, m[1].direction);
    ASSERT_STREQ(out.message_id, m[1].id);
    ASSERT_EQ(1, count_type(env, bob.id, EVENT_REPLY_RECEIVED, NULL));
    ASSERT_EQ(1, count_jobs(env, bob.id, GENERATE_REPLY_JOB));
    assert_counts(env, 1, 2, 4, 2); /* one lead: nothing of the refused one is left */

    /* a sender nobody has yet still becomes a lead */
    in.from = "carol@example.com";
    in.content = "{\"from\":\"carol@example.com\",\"subject\":\"Hi\",\"body\":\"hello\"}";
    ASSERT_OK(leads_receive(&env->deps, &in, env->arena, &out, &err));
    ASSERT_EQ(1, out.lead_created);
    assert_counts(env, 2, 3, 7, 3);
    t_env_free(env);
}

/* A phone-only lead replying by email from an address another lead has: the reply is kept on
 * the lead, the address is not adopted (it stays the other lead's), and nothing answers it (there
 * is nowhere to send the answer): an ai_reply_skipped event says why. The same when the other
 * lead got the address concurrently, right after our lookup (the store refuses the adoption and
 * the reply is taken in again). */
TEST_ALL(unit_leads_unique_address_of_another_lead_is_not_adopted)
{
    struct t_env *env = t_env_new(backend);

    for (int hide = 0; hide < 2; hide++) {
        char content[256], email[64], phone[32], mid[SP_UUID_LEN + 1];
        struct reply_input in = {NULL, CHANNEL_EMAIL, content};
        struct sp_error err = {0};
        struct lead ana, bob, got;
        struct lead_event skipped;
        struct message *m;
        int nm;

        snprintf(phone, sizeof(phone), "+35191234567%d", hide);
        snprintf(email, sizeof(email), "bob%d@example.com", hide);
        snprintf(content, sizeof(content),
                 "{\"from\":\"BOB%d@example.com\",\"subject\":\"Hi\","
                 "\"body\":\"what does it cost?\"}",
                 hide);
        t_env_create(env, "Ana", NULL, phone, &ana);
        t_env_create(env, "Bob", email, NULL, &bob);
        in.lead_id = ana.id;
        fault_plan_arm(&env->faults, 0, 0);
        env->faults.hide_addresses = hide;
        ASSERT_OK(leads_reply(&env->deps, &in, env->arena, mid, &err));
        ASSERT_EQ(0, env->faults.hide_addresses);
        ASSERT_EQ(0, env->faults.open_tx);
        t_env_lead(env, ana.id, &got);
        ASSERT(got.email == NULL);
        t_env_lead(env, bob.id, &got);
        ASSERT_STREQ(email, got.email);
        t_env_messages(env, ana.id, &m, &nm);
        ASSERT_EQ(2, nm);
        ASSERT_STREQ(mid, m[1].id);
        ASSERT_EQ(CHANNEL_EMAIL, m[1].channel);
        ASSERT_EQ(MESSAGE_INBOUND, m[1].direction);
        ASSERT_EQ(0, count_type(env, ana.id, EVENT_ADDRESS_ADDED, NULL));
        ASSERT_EQ(1, count_type(env, ana.id, EVENT_REPLY_RECEIVED, NULL));
        ASSERT_EQ(1, count_type(env, ana.id, EVENT_AI_REPLY_SKIPPED, &skipped));
        ASSERT_STREQ("address_in_use", t_json_str(skipped.payload, "reason"));
        ASSERT_STREQ(mid, t_json_str(skipped.payload, "messageId"));
        ASSERT_EQ(0, count_jobs(env, ana.id, GENERATE_REPLY_JOB));
        t_env_lead(env, ana.id, &got);
        ASSERT_EQ(LEAD_STATUS_REPLIED, got.status);
    }
    t_env_free(env);
}

/* ---- migration 0007 on a database from before ------------------------------------------- */

/* The migrations of `backend` before 0007_unique_people, and all of them. */
static void
migrations_of(enum t_backend backend, const struct migration **list, int *before, int *all)
{
    *list = backend == T_PG ? sp_migrations_postgres : sp_migrations_sqlite;
    *all = backend == T_PG ? sp_migrations_postgres_count : sp_migrations_sqlite_count;
    for (*before = 0; *before < *all; (*before)++)
        if (strcmp((*list)[*before].name, "0007_unique_people") == 0)
            return;
    t_fail(__FILE__, __LINE__, "no migration 0007_unique_people");
}

/* An old database may hold several leads of one person (0006 had no unique index): 0007 keeps
 * the normalised address on the oldest lead of each group, clears it on the newer ones (their
 * email and phone stay as given), fills name_lower, and from then on the rule holds. SQLite: a
 * file of its own; PostgreSQL: a schema of its own on the env's connection. */
TEST_SQL(unit_leads_unique_migration_keeps_the_oldest_of_duplicates)
{
    DB_STMT_SAME(old_lead, "INSERT INTO leads (id, name, email, phone, status, created_at,"
                           " updated_at, email_norm, phone_norm)"
                           " VALUES ($1, $2, $3, $4, 'new', $5, $5, $6, $7)");
    DB_STMT_SAME(norms, "SELECT name, email_norm, phone_norm, name_lower FROM leads ORDER BY seq");
    DB_STMT(set_path, NULL, "SELECT set_config('search_path', $1, false)");
    static const char *const rows[][5] = {
        /* name, email, phone, email_norm, phone_norm (as 0006 filled them) */
        {"Ana", "ana@example.com", "+351 912", "ana@example.com", "351912"},
        {"ANA Again", "ANA@example.com", "351912", "ana@example.com", "351912"},
        {"Bob", "bob@example.com", NULL, "bob@example.com", NULL},
        {"Ana Three", "Ana@Example.com", "+351-912", "ana@example.com", "351912"},
        {"Cid", NULL, "(351) 912", NULL, "351912"},
        {"Dan", NULL, "+44 20", NULL, "4420"},
    };
    static const char *const want[][4] = {
        {"Ana", "ana@example.com", "351912", "ana"},
        {"ANA Again", NULL, NULL, "ana again"},
        {"Bob", "bob@example.com", NULL, "bob"},
        {"Ana Three", NULL, NULL, "ana three"},
        {"Cid", NULL, NULL, "cid"},
        {"Dan", NULL, "4420", "dan"},
    };
    struct t_env *env = t_env_new(backend);
    const struct migration *list;
    struct db_sqlite *file = NULL;
    struct db_conn *c = env->conn;
    struct sql_lead_repo repo;
    struct sp_error err = {0};
    struct db_rows got;
    struct lead l, found;
    int before, all;
    char schema[64];

    migrations_of(backend, &list, &before, &all);
    if (backend == T_PG) {
        char sql[128];
        snprintf(schema, sizeof(schema), "%s_old", env->pg_schema);
        snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
        ASSERT_OK(c->ops->exec_script(c, sql, &err));
        ASSERT_OK(db_exec(c, &set_path, DB_ARGS(db_text(schema)), NULL, &err));
    } else {
        ASSERT_OK(db_sqlite_new("old.db", &file, &err));
        ASSERT_OK(db_sqlite_connect(file, &c, &err));
    }
    ASSERT_OK(db_migrate(c, list, before, NULL, &err));
    for (int i = 0; i < 6; i++) {
        char id[SP_UUID_LEN + 1];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i + 1);
        ASSERT_OK(db_exec(c, &old_lead,
                          DB_ARGS(db_text(id), db_text(rows[i][0]), db_text(rows[i][1]),
                                  db_text(rows[i][2]), db_time(T_NOW + i), db_text(rows[i][3]),
                                  db_text(rows[i][4])),
                          NULL, &err));
    }
    ASSERT_OK(db_migrate(c, list, all, NULL, &err));
    ASSERT_OK(db_query(c, &norms, DB_NOARGS, env->arena, &got, &err));
    ASSERT_EQ(6, got.nrows);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++)
            if (!(want[i][k] == NULL ? db_cell(&got, i, k) == NULL
                                     : db_cell(&got, i, k) != NULL &&
                                           strcmp(want[i][k], db_cell(&got, i, k)) == 0))
                t_fail(__FILE__, __LINE__, "row %d column %d: want %s, got %s", i, k,
                       want[i][k] ? want[i][k] : "NULL",
                       db_cell(&got, i, k) ? db_cell(&got, i, k) : "NULL");

    /* from now on: one lead per person, and the address finds the oldest */
    sql_lead_repo_init(&repo, c);
    memset(&l, 0, sizeof(l));
    snprintf(l.id, sizeof(l.id), "00000000-0000-4000-8000-%012d", 7);
    l.name = "Ana Four";
    l.email = "ana@EXAMPLE.com";
    l.status = LEAD_STATUS_NEW;
    l.created_at = l.updated_at = T_NOW + 10;
    ASSERT_EQ(SP_ECONFLICT, lead_repo_lead_insert(&repo.base, &l, &err));
    sp_error_clear(&err);
    ASSERT_OK(lead_repo_lead_find_by_address(&repo.base, CHANNEL_WHATSAPP, "351912", env->arena,
                                             &found, &err));
    ASSERT_STREQ("00000000-0000-4000-8000-000000000001", found.id);

    if (backend == T_PG) {
        char sql[160];
        snprintf(sql, sizeof(sql), "SET client_min_messages TO warning; DROP SCHEMA %s CASCADE",
                 schema);
        ASSERT_OK(c->ops->exec_script(c, sql, &err));
        ASSERT_OK(db_exec(c, &set_path, DB_ARGS(db_text(env->pg_schema)), NULL, &err));
    } else {
        db_close(c);
        db_sqlite_free(file);
    }
    t_env_free(env);
}
