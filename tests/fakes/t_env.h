/* t_env.h: a complete set of dependencies for use-case, worker and HTTP tests.
 *
 * t_env_new() wires the leads and messaging slices to a storage backend (the in-memory fake, a
 * real SQLite file "t.db" in the test's temporary cwd, or a fresh schema on a real PostgreSQL
 * server, migrated), wrapped in the fault
 * injectors, with a fixed clock, the mock content generator, a scripted sender on email and
 * WhatsApp, and an event bus with the leads handlers subscribed. Policy: 3 attempts, 1000 ms
 * backoff, email and whatsapp sendable; lease 30 s, no jitter. Reads made by tests through
 * env->repo / env->queue bypass fault injection. Free with t_env_free(). */
#pragma once

#include "t.h"

#include "core/event_bus.h"
#include "fakes/fake_io.h"
#include "fakes/faulty.h"
#include "fakes/mem_store.h"
#include "fakes/t_json.h"
#include "features/leads/application/leads.h"
#include "features/leads/infrastructure/sql_lead_repo.h"
#include "features/leads/application/delivery.h"
#include "infra/queue_sql.h"

enum t_backend { T_MEM = 0, T_SQLITE, T_PG };

/* T_PG: the server is named by the file $SALESPAD_PG_URL_FILE (one libpq URL; CTest's `pg`
 * fixture writes it, tests/pg/pgserver.sh). Each t_env_new(T_PG) creates a schema
 * t_<pid>_<n> in that database, puts it first on the connection's search_path, migrates it, and
 * t_env_free() drops it. Without a readable URL file the test is skipped (t_skip), unless the
 * environment says CI=true: then it fails, so CI cannot pass without PostgreSQL. */
#define T_PG_URL_FILE_ENV "SALESPAD_PG_URL_FILE"

/* Defines three tests, name_mem, name_sqlite and name_pg, running one body against each
 * backend; the body receives `enum t_backend backend`. */
#define TEST_ALL(name)                                                                             \
    static void name##_body(enum t_backend backend);                                               \
    TEST(name##_mem)                                                                               \
    {                                                                                              \
        name##_body(T_MEM);                                                                        \
    }                                                                                              \
    TEST(name##_sqlite)                                                                            \
    {                                                                                              \
        name##_body(T_SQLITE);                                                                     \
    }                                                                                              \
    TEST(name##_pg)                                                                                \
    {                                                                                              \
        name##_body(T_PG);                                                                         \
    }                                                                                              \
    static void name##_body(enum t_backend backend)

/* The name from before PostgreSQL: the same three tests. */
#define TEST_BOTH(name) TEST_ALL(name)

/* JSON read back from the store: key order counts on mem and SQLite (the text is kept as
 * written), only the value on PostgreSQL (jsonb keeps neither key order nor formatting). */
#define ASSERT_JSON_STORED(backend, want, got)                                                     \
    do {                                                                                           \
        if ((backend) == T_PG)                                                                     \
            ASSERT_JSON_SAME((want), (got));                                                       \
        else                                                                                       \
            ASSERT_JSON_EQ((want), (got));                                                         \
    } while (0)

/* 2026-11-27T14:37:45.686Z, the reference's example timestamp. */
#define T_NOW 1795790265686LL
#define T_LEASE_MS 30000
#define T_MAX_STALLED 2 /* lease losses a job survives, on every backend */

struct db_sqlite;
struct db_pg;
struct db_conn;

struct t_env {
    enum t_backend backend;
    struct arena *arena; /* for use-case outputs; tests may reset it */

    /* T_MEM */
    struct mem_store *store;
    struct mem_repo mem_repo;
    struct mem_queue mem_queue;
    /* T_SQLITE and T_PG (conn, sql_repo, sql_queue) */
    struct db_sqlite *sqlite;
    struct db_pg *pg;
    char pg_schema[48];
    struct db_conn *conn;
    struct sql_lead_repo sql_repo;
    struct queue_sql_node node; /* no liveness: one process */
    struct queue_sql sql_queue;

    struct lead_repo *repo; /* the backend itself (no fault injection) */
    struct job_queue *queue;
    struct fault_plan faults; /* arm with fault_plan_arm() */
    struct faulty_repo frepo;
    struct faulty_queue fqueue;

    struct fake_clock clock;
    struct fake_sender sender;
    struct sender_registry senders;
    struct event_bus bus;
    struct leads_policy policy;
    struct leads_deps deps;     /* repo/queue are the fault-injecting wrappers */
    struct delivery_deps mdeps; /* same */
};

struct t_env *t_env_new(enum t_backend backend);
void t_env_free(struct t_env *env);

/* Rows stored, read directly from the backend. */
struct t_counts {
    int leads, messages, events, jobs;
};
void t_env_counts(struct t_env *env, struct t_counts *out);

/* leads_create with the given fields (NULL: absent); fails the test unless it succeeds. */
void t_env_create(struct t_env *env, const char *name, const char *email, const char *phone,
                  struct lead *out);
/* One leads_delivery_tick at the clock's time through the fault-injecting deps; returns
 * did_work and fails the test if the tick fails. *next_due (may be NULL) receives the tick's. */
int t_env_tick(struct t_env *env, int64_t *next_due);

/* Reads through env->repo / env->queue into env->arena; fail the test on error. */
void t_env_messages(struct t_env *env, const char *lead_id, struct message **out, int *n);
void t_env_events(struct t_env *env, const char *lead_id, struct lead_event **out, int *n);
void t_env_jobs(struct t_env *env, const char *lead_id, struct job **out, int *n);
void t_env_lead(struct t_env *env, const char *id, struct lead *out);
