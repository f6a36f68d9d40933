/* t_env.c: test dependency wiring (see t_env.h). */
#include "fakes/t_env.h"

#include "t.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "features/leads/infrastructure/mock_content.h"
#include "infra/db.h"
#include "infra/db_pg.h"
#include "infra/db_sqlite.h"
#include "infra/migrate.h"
#include "infra/outbox_relay.h"
#include "infra/redis.h"

#include <errno.h>
#include <unistd.h>

/* The SQLite file and the lead repository on it (T_SQLITE and T_REDIS). */
static void
open_sqlite_repo(struct t_env *env)
{
    struct sp_error err = {0};

    ASSERT_OK(db_sqlite_new("t.db", &env->sqlite, &err));
    ASSERT_OK(db_sqlite_connect(env->sqlite, &env->conn, &err));
    ASSERT_OK(db_migrate(env->conn, sp_migrations_sqlite, sp_migrations_sqlite_count, NULL, &err));
    sql_lead_repo_init(&env->sql_repo, env->conn);
    env->repo = &env->sql_repo.base;
}

static void
open_sqlite(struct t_env *env)
{
    open_sqlite_repo(env);
    queue_sql_node_init(&env->node, NULL, T_MAX_STALLED);
    queue_sql_init(&env->sql_queue, env->conn, &env->node);
    env->queue = &env->sql_queue.base;
}

/* Without a server: skipped, except in CI (CI=true), where every server is required. */
_Noreturn static void
server_unavailable(const char *server, const char *url_env, const char *why)
{
    const char *ci = getenv("CI");

    if (ci != NULL && strcmp(ci, "true") == 0)
        t_fail(__FILE__, __LINE__, "%s test without a server (CI=true): %s", server, why);
    t_skip("no %s server: %s (run through ctest, or set %s)", server, why, url_env);
}

/* The server URL from the file $url_env names (its first line). */
static void
read_url_file(const char *server, const char *url_env, char *url, size_t size)
{
    const char *path = getenv(url_env);
    char why[320];
    FILE *f;
    size_t n;

    if (path == NULL || path[0] == '\0') {
        snprintf(why, sizeof(why), "%s is not set", url_env);
        server_unavailable(server, url_env, why);
    }
    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, sizeof(why), "cannot read %s: %s", path, strerror(errno));
        server_unavailable(server, url_env, why);
    }
    n = fread(url, 1, size - 1, f);
    fclose(f);
    url[n] = '\0';
    while (n > 0 && (url[n - 1] == '\n' || url[n - 1] == '\r' || url[n - 1] == ' '))
        url[--n] = '\0';
    if (n == 0) {
        snprintf(why, sizeof(why), "%s is empty", path);
        server_unavailable(server, url_env, why);
    }
}

/* A fresh schema per t_env, first on this connection's search_path: every table the migrations
 * create, and every unqualified name the repositories use, resolves there. */
static void
open_pg(struct t_env *env)
{
    DB_STMT(set_path, NULL, "SELECT set_config('search_path', $1, false)");
    static int n;
    struct sp_error err = {0};
    char url[1024], sql[96];
    int rc;

    read_url_file("PostgreSQL", T_PG_URL_FILE_ENV, url, sizeof(url));
    ASSERT_OK(db_pg_new(url, &env->pg, &err));
    rc = db_pg_connect(env->pg, &env->conn, &err);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "connect to %s: %s: %s", url, sp_err_name(rc), err.msg);
    snprintf(env->pg_schema, sizeof(env->pg_schema), "t_%ld_%d", (long)getpid(), ++n);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", env->pg_schema);
    rc = env->conn->ops->exec_script(env->conn, sql, &err);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "%s: %s: %s", sql, sp_err_name(rc), err.msg);
    ASSERT_OK(db_exec(env->conn, &set_path, DB_ARGS(db_text(env->pg_schema)), NULL, &err));
    rc = db_migrate(env->conn, sp_migrations_postgres, sp_migrations_postgres_count, NULL, &err);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "migrate %s: %s: %s", env->pg_schema, sp_err_name(rc), err.msg);
    sql_lead_repo_init(&env->sql_repo, env->conn);
    queue_sql_node_init(&env->node, NULL, T_MAX_STALLED);
    queue_sql_init(&env->sql_queue, env->conn, &env->node);
    env->repo = &env->sql_repo.base;
    env->queue = &env->sql_queue.base;
}

static void
drop_pg_schema(struct t_env *env)
{
    struct sp_error err = {0};
    char sql[128];

    if (env->conn == NULL || env->pg_schema[0] == '\0')
        return;
    db_rollback(env->conn); /* a test may end inside a unit of work */
    /* No NOTICE per dropped table on stderr. */
    snprintf(sql, sizeof(sql), "SET client_min_messages TO warning; DROP SCHEMA %s CASCADE",
             env->pg_schema);
    if (env->conn->ops->exec_script(env->conn, sql, &err) != SP_OK)
        t_fail(__FILE__, __LINE__, "%s: %s", sql, err.msg);
}

/* T_REDIS: the SQLite records and outbox, the jobs in Redis under a queue name no other t_env
 * uses (the server outlives the test: CTest's fixture serves the whole run). The stalled check
 * runs only when a test forces it (t_env_check_stalled): its interval is a minute. */
static void
open_redis(struct t_env *env)
{
    static int n;
    struct sp_error err = {0};
    char url[512], name[64];

    open_sqlite_repo(env);
    read_url_file("Redis", T_REDIS_URL_FILE_ENV, url, sizeof(url));
    ASSERT_OK(redis_new(url, bullmq_scripts, BULLMQ_NSCRIPTS, &env->redis, &err));
    if (redis_ping(env->redis, &err) != SP_OK)
        server_unavailable("Redis", T_REDIS_URL_FILE_ENV, err.msg);
    snprintf(name, sizeof(name), "tc%ld_%d_%lld", (long)getpid(), ++n, (long long)sp_mono_ms());
    queue_redis_shared_init(&env->rshared, "bull", name, -1, 60000, T_MAX_STALLED, T_LEASE_MS,
                            NULL);
    queue_redis_init(&env->rqueue, &env->rshared, env->conn, env->redis);
    env->queue = &env->rqueue.base;
}

static void
close_redis(struct t_env *env)
{
    if (env->backend != T_REDIS)
        return;
    queue_redis_cleanup(&env->rqueue);
    redis_free(env->redis);
    queue_redis_shared_cleanup(&env->rshared);
}

struct t_env *
t_env_new(enum t_backend backend)
{
    struct t_env *env = xcalloc(1, sizeof(*env));

    sp_log_level = SP_LOG_ERROR; /* keep test output to failures; this child's global only */
    env->backend = backend;
    env->arena = arena_new();
    if (backend == T_SQLITE) {
        open_sqlite(env);
    } else if (backend == T_PG) {
        open_pg(env);
    } else if (backend == T_REDIS) {
        open_redis(env);
    } else {
        env->store = mem_store_new();
        mem_repo_init(&env->mem_repo, env->store);
        mem_queue_init(&env->mem_queue, env->store);
        env->repo = &env->mem_repo.base;
        env->queue = &env->mem_queue.base;
    }
    fault_plan_arm(&env->faults, 0, 0);
    faulty_repo_init(&env->frepo, env->repo, &env->faults);
    faulty_queue_init(&env->fqueue, env->queue, &env->faults);

    fake_clock_init(&env->clock, T_NOW);
    fake_sender_init(&env->sender);
    env->senders.by_channel[CHANNEL_EMAIL] = &env->sender.base;
    env->senders.by_channel[CHANNEL_WHATSAPP] = &env->sender.base;

    event_bus_init(&env->bus);
    ASSERT_OK(event_bus_subscribe(&env->bus, LEADS_EV_LEAD_ADDED, leads_on_lead_added, NULL));
    ASSERT_OK(event_bus_subscribe(&env->bus, LEADS_EV_LEAD_REPLIED, leads_on_lead_replied, NULL));

    env->policy.job_attempts = 3;
    env->policy.job_backoff_ms = 1000;
    env->policy.sendable = sender_registry_mask(&env->senders);

    env->deps.repo = &env->frepo.base;
    env->deps.queue = &env->fqueue.base;
    env->deps.bus = &env->bus;
    env->deps.clock = &env->clock.base;
    env->deps.gen = mock_content_gen();
    env->deps.policy = &env->policy;

    env->mdeps.repo = &env->frepo.base;
    env->mdeps.queue = &env->fqueue.base;
    env->mdeps.clock = &env->clock.base;
    env->mdeps.senders = &env->senders;
    env->mdeps.lease_ms = T_LEASE_MS;
    env->mdeps.jitter_pct = 0;
    env->mdeps.random = NULL;
    env->mdeps.gen = mock_content_gen();
    env->mdeps.fallback = mock_content_gen();
    env->mdeps.policy = &env->policy;
    return env;
}

void
t_env_free(struct t_env *env)
{
    if (env == NULL)
        return;
    if (env->backend == T_PG)
        drop_pg_schema(env);
    close_redis(env);
    db_close(env->conn);
    if (env->backend == T_SQLITE || env->backend == T_PG)
        queue_sql_node_cleanup(&env->node);
    db_sqlite_free(env->sqlite);
    db_pg_free(env->pg);
    mem_store_free(env->store);
    arena_free(env->arena);
    free(env);
}

static int
sql_count(struct t_env *env, const struct db_stmt *sql)
{
    struct db_rows rows;
    struct sp_error err = {0};
    struct arena *a = arena_new();
    int n;

    ASSERT_OK(db_query(env->conn, sql, DB_NOARGS, a, &rows, &err));
    ASSERT_EQ(1, rows.nrows);
    n = (int)db_cell_int(&rows, 0, 0);
    arena_free(a);
    return n;
}

void
t_env_counts(struct t_env *env, struct t_counts *out)
{
    DB_STMT_SAME(leads, "SELECT COUNT(*) FROM leads");
    DB_STMT_SAME(messages, "SELECT COUNT(*) FROM messages");
    DB_STMT_SAME(events, "SELECT COUNT(*) FROM lead_events");
    DB_STMT_SAME(jobs, "SELECT COUNT(*) FROM jobs");
    DB_STMT_SAME(outbox, "SELECT COUNT(*) FROM outbox"); /* the Redis queue's job records */

    if (env->backend != T_MEM) {
        out->leads = sql_count(env, &leads);
        out->messages = sql_count(env, &messages);
        out->events = sql_count(env, &events);
        out->jobs = sql_count(env, env->backend == T_REDIS ? &outbox : &jobs);
    } else {
        out->leads = env->store->cur.nleads;
        out->messages = env->store->cur.nmsgs;
        out->events = env->store->cur.nevents;
        out->jobs = env->store->cur.njobs;
    }
}

void
t_env_create(struct t_env *env, const char *name, const char *email, const char *phone,
             struct lead *out)
{
    struct lead_input in = {name, email, phone};
    struct sp_error err = {0};
    int rc = leads_create(&env->deps, &in, env->arena, out, &err);

    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "leads_create: %s: %s", sp_err_name(rc), err.msg);
}

#define T_HOLD_MS (100LL * 365 * 24 * 3600 * 1000) /* ms: 100 years, past any test's clock */

/* hold: moves the run time of every job that is not a generate-reply job T_HOLD_MS ahead; else
 * moves back those held (a job added meanwhile stays as it is). */
static void
hold_other_jobs(struct t_env *env, int hold)
{
    DB_STMT(held, "UPDATE jobs SET run_at = run_at + $1 WHERE name <> 'generate-reply'",
            "UPDATE jobs SET run_at = run_at + $1::bigint * interval '1 millisecond' "
            "WHERE name <> 'generate-reply'");
    DB_STMT(unheld, "UPDATE jobs SET run_at = run_at - $1 WHERE run_at >= $1",
            "UPDATE jobs SET run_at = run_at - $1::bigint * interval '1 millisecond' "
            "WHERE run_at >= to_timestamp($1::bigint / 1000.0)");
    struct sp_error err = {0};

    if (env->backend == T_MEM) {
        for (int i = 0; i < env->store->cur.njobs; i++) {
            struct job *j = &env->store->cur.jobs[i].j;
            if (hold && strcmp(j->name, GENERATE_REPLY_JOB) != 0)
                j->run_at += T_HOLD_MS;
            else if (!hold && j->run_at >= T_HOLD_MS)
                j->run_at -= T_HOLD_MS;
        }
        return;
    }
    if (env->backend == T_REDIS)
        t_fail(__FILE__, __LINE__, "t_env_answer: not on T_REDIS");
    if (db_exec(env->conn, hold ? &held : &unheld, DB_ARGS(db_int(T_HOLD_MS)), NULL, &err) != SP_OK)
        t_fail(__FILE__, __LINE__, "hold_other_jobs: %s", err.msg);
}

int
t_env_answer(struct t_env *env)
{
    int n = 0;

    for (;;) {
        int did;
        hold_other_jobs(env, 1);
        did = t_env_tick(env, NULL);
        hold_other_jobs(env, 0);
        if (!did)
            return n;
        n++;
    }
}

int
t_env_tick(struct t_env *env, int64_t *next_due)
{
    struct sp_error err = {0};
    int64_t due = 0;
    int did = 0;
    int rc = leads_delivery_tick(&env->mdeps, env->arena, &did, &due, &err);

    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "leads_delivery_tick: %s: %s", sp_err_name(rc), err.msg);
    if (next_due)
        *next_due = due;
    return did;
}

void
t_env_messages(struct t_env *env, const char *lead_id, struct message **out, int *n)
{
    struct sp_error err = {0};
    ASSERT_OK(lead_repo_message_list(env->repo, lead_id, env->arena, out, n, &err));
}

void
t_env_events(struct t_env *env, const char *lead_id, struct lead_event **out, int *n)
{
    struct sp_error err = {0};
    ASSERT_OK(lead_repo_event_list(env->repo, lead_id, env->arena, out, n, &err));
}

void
t_env_jobs(struct t_env *env, const char *lead_id, struct job **out, int *n)
{
    struct sp_error err = {0};
    int more = 0;

    ASSERT_OK(
        job_queue_list_group(env->queue, lead_id, T_JOBS_ALL, env->arena, out, n, &more, &err));
    ASSERT_EQ(0, more);
}

void
t_env_lead(struct t_env *env, const char *id, struct lead *out)
{
    struct sp_error err = {0};
    ASSERT_OK(lead_repo_lead_get(env->repo, id, env->arena, out, &err));
}

void
t_env_publish(struct t_env *env)
{
    struct sp_error err = {0};
    int n = 0, rc;

    if (env->backend != T_REDIS)
        return;
    rc = outbox_relay_batch(env->conn, env->redis, &env->rshared, 1000, &n, &err);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "outbox_relay_batch: %s: %s", sp_err_name(rc), err.msg);
}

/* The only raw Redis access of the contract: a Lua snippet run on the test's queue (ARGV[1] is
 * its key prefix) for its effect on keys the queue API has no verb for; its reply is not read. */
static void
redis_eval(struct t_env *env, const char *lua)
{
    const char *argv[] = {"EVAL", lua, "0", env->rshared.prefix};
    struct redis_value *rep = NULL;
    struct sp_error err = {0};
    int rc = redis_command(env->redis, 4, argv, NULL, &rep, &err);

    redis_value_free(rep);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "redis EVAL: %s: %s", sp_err_name(rc), err.msg);
}

/* One stalled check now, whenever the last one ran: the queue's turn and the `stalled-check`
 * key (which keeps other workers from checking within the interval) are cleared first. */
static void
redis_stalled_check(struct t_env *env, int64_t now)
{
    struct sp_error err = {0};
    int rc;

    redis_eval(env, "return redis.call('DEL', ARGV[1] .. 'stalled-check')");
    atomic_store(&env->rshared.next_stalled_check, 0);
    rc = job_queue_maintain(env->queue, now, &err);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "maintain: %s: %s", sp_err_name(rc), err.msg);
}

void
t_env_check_stalled(struct t_env *env, int64_t now)
{
    if (env->backend != T_REDIS)
        return;
    redis_stalled_check(env, now); /* marks the active jobs (and recovers jobs marked before) */
    redis_stalled_check(env, now); /* recovers the marked ones whose lock is gone */
}

void
t_env_expire_leases(struct t_env *env, int64_t now)
{
    if (env->backend != T_REDIS)
        return;
    redis_eval(env, "for _, id in ipairs(redis.call('LRANGE', ARGV[1] .. 'active', 0, -1)) do"
                    " redis.call('DEL', ARGV[1] .. id .. ':lock') end return 0");
    t_env_check_stalled(env, now);
}

int
t_env_leases_held(struct t_env *env)
{
    struct lease_set *held = env->backend == T_MEM     ? &env->store->held
                             : env->backend == T_REDIS ? &env->rshared.held
                                                       : &env->node.held;
    int n = 0;

    free(lease_set_snapshot(held, &n));
    return n;
}
