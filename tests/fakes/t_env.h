/* t_env.h: a complete set of dependencies for use-case, worker and HTTP tests.
 *
 * t_env_new() wires the leads and messaging slices to a storage backend (the in-memory fake, a
 * real SQLite file "t.db" in the test's temporary cwd, a fresh schema on a real PostgreSQL
 * server, migrated, or that SQLite file with the Redis queue on a real Redis server), wrapped in
 * the fault injectors, with a fixed clock, the mock content generator, a scripted sender on
 * email and WhatsApp, and an event bus with the leads handlers subscribed. Policy: 3 attempts,
 * 1000 ms backoff, email and whatsapp sendable; lease 30 s, no jitter. Reads made by tests
 * through env->repo / env->queue bypass fault injection. Free with t_env_free(). */
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
#include "infra/queue_redis.h"
#include "infra/queue_sql.h"

enum t_backend { T_MEM = 0, T_SQLITE, T_PG, T_REDIS };

/* T_PG: the server is named by the file $SALESPAD_PG_URL_FILE (one libpq URL; CTest's `pg`
 * fixture writes it, tests/pg/pgserver.sh). Each t_env_new(T_PG) creates a schema
 * t_<pid>_<n> in that database, puts it first on the connection's search_path, migrates it, and
 * t_env_free() drops it. Without a readable URL file the test is skipped (t_skip), unless the
 * environment says CI=true: then it fails, so CI cannot pass without PostgreSQL. */
#define T_PG_URL_FILE_ENV "SALESPAD_PG_URL_FILE"

/* T_REDIS: the lead records and the queue's outbox (its job records) in the SQLite file, the jobs
 * in Redis in BullMQ's layout (queue_redis.h), under a queue name of this t_env's own. The server
 * is named by $SALESPAD_REDIS_URL_FILE (CTest's `redis` fixture, tests/redis/redisserver.sh);
 * without it, skipped or, under CI=true, failed, as for PostgreSQL. Jobs reach Redis only through
 * the relay (t_env_publish) and outcomes only after commit (job_queue_after_commit); leases are
 * Redis locks that expire in real time (t_env_check_stalled, t_env_expire_leases). */
#define T_REDIS_URL_FILE_ENV "SALESPAD_REDIS_URL_FILE"

/* One test, name<suffix>, running name's body on `backend`. */
#define T_VARIANT(name, suffix, backend)                                                           \
    TEST(name##suffix)                                                                             \
    {                                                                                              \
        name##_body(backend);                                                                      \
    }

/* Defines name_sqlite and name_pg: one body on each SQL backend. */
#define TEST_SQL(name)                                                                             \
    static void name##_body(enum t_backend backend);                                               \
    T_VARIANT(name, _sqlite, T_SQLITE)                                                             \
    T_VARIANT(name, _pg, T_PG)                                                                     \
    static void name##_body(enum t_backend backend)

/* Defines three tests, name_mem, name_sqlite and name_pg, running one body against each
 * backend; the body receives `enum t_backend backend`. */
#define TEST_ALL(name)                                                                             \
    static void name##_body(enum t_backend backend);                                               \
    T_VARIANT(name, _mem, T_MEM)                                                                   \
    TEST_SQL(name)

/* For the job queue's contract: the three tests of TEST_ALL and name_redis on T_REDIS (run by
 * CTest's unit_redis, `t *_redis`, with both servers). */
#define TEST_QUEUE(name)                                                                           \
    static void name##_body(enum t_backend backend);                                               \
    T_VARIANT(name, _redis, T_REDIS)                                                               \
    TEST_ALL(name)

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
    /* T_REDIS (conn and sql_repo as for T_SQLITE) */
    struct redis *redis;
    struct queue_redis_shared rshared;
    struct queue_redis rqueue;

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

/* Backend-neutral steps for the queue's contract (no-ops where the clock and the transaction
 * do it all):
 * t_env_publish: jobs enqueued so far reach the queue: on T_REDIS the relay publishes the
 * committed outbox rows; elsewhere the enqueue did it.
 * t_env_check_stalled: the leases' holder-death detection runs at `now`: on T_REDIS BullMQ's
 * stalled check, forced due, twice (a job is marked by one check and recovered by the next if
 * its lock is gone then); a live lock keeps its job. Elsewhere reserve sees expired leases itself.
 * t_env_expire_leases: every lease held lapses, as by the clock moving past it: on T_REDIS the
 * active jobs' locks are deleted (what PX does in real time), then t_env_check_stalled. Elsewhere
 * the cases move the clock past the lease instead. */
void t_env_publish(struct t_env *env);
void t_env_check_stalled(struct t_env *env, int64_t now);
void t_env_expire_leases(struct t_env *env, int64_t now);
/* The leases this process's keeper renews (the queue's lease_set), every backend. */
int t_env_leases_held(struct t_env *env);

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

/* Runs the generate-reply jobs that are due, and only them, until none is left (the other jobs
 * are held back meanwhile by moving their run time far ahead, and back after each tick): what a
 * worker does a moment after a reply, with the welcomes left unsent. Returns the ticks that did
 * work. Not on T_REDIS. */
int t_env_answer(struct t_env *env);

/* Reads through env->repo / env->queue into env->arena; fail the test on error. */
void t_env_messages(struct t_env *env, const char *lead_id, struct message **out, int *n);
void t_env_events(struct t_env *env, const char *lead_id, struct lead_event **out, int *n);
#define T_JOBS_ALL 100000 /* more jobs than any test makes */
void t_env_jobs(struct t_env *env, const char *lead_id, struct job **out, int *n);
void t_env_lead(struct t_env *env, const char *id, struct lead *out);
