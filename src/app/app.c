/* app.c: wiring and lifecycle (see app.h). */
#include "app/app.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/event_bus.h"
#include "core/http.h"
#include "core/http_server.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/xmalloc.h"
#include "features/leads/application/leads.h"
#include "features/leads/infrastructure/mock_content.h"
#include "features/leads/infrastructure/sql_lead_repo.h"
#include "features/leads/presentation/leads_http.h"
#include "features/messaging/application/messaging.h"
#include "features/messaging/domain/sender.h"
#include "features/messaging/infrastructure/mock_sender.h"
#include "infra/db.h"
#include "infra/db_pg.h"
#include "infra/db_sqlite.h"
#include "infra/migrate.h"
#include "infra/queue_redis.h"
#include "infra/queue_sql.h"
#include "infra/redis.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKER_POLL_MS 200
#define WORKER_ERROR_PAUSE_MS 1000
#define RELAY_BATCH 256
#define RELAY_SCAN_MS 1000 /* rows other processes left behind are found within this */
#define RELAY_RETRY_MAX_MS 2000
#define RELAY_BUSY_ROWS 8   /* a pass that published this many: captures are streaming in */
#define RELAY_COALESCE_MS 5 /* then the next pass waits this long */

/* A background thread of the process, stopped by a flag and a wake-up of its signal. */
struct bg_thread {
    pthread_t tid;
    int running;
    atomic_int stopping;
    struct queue_signal *wake; /* the signal the thread waits on */
};

static int
bg_start(struct bg_thread *t, const char *what, void *(*fn)(void *), void *arg,
         struct queue_signal *wake)
{
    t->wake = wake;
    atomic_init(&t->stopping, 0);
    if (pthread_create(&t->tid, NULL, fn, arg) != 0) {
        log_error("cannot start the %s thread", what);
        return SP_EINTERNAL;
    }
    t->running = 1;
    return SP_OK;
}

static void
bg_stop(struct bg_thread *t)
{
    if (!t->running)
        return;
    atomic_store(&t->stopping, 1);
    queue_signal_wake(t->wake);
    pthread_join(t->tid, NULL);
    t->running = 0;
}

struct app {
    const struct config *cfg;
    struct db_sqlite *sqlite;
    struct db_pg *pg;
    char db_label[128]; /* DATABASE_URL without its password, for logs */
    struct db_pool *pool;
    struct queue_signal signal;
    struct mock_sender *mock;
    struct sender_registry senders;
    struct event_bus bus;
    struct leads_policy policy;
    struct http_router router;
    struct http_server *server;
    int nworkers;
    pthread_t *workers;
    atomic_int stopping;
    /* REDIS_URL set: the BullMQ-layout queue, fed by the outbox relay thread */
    int use_redis;
    char redis_label[256]; /* REDIS_URL without its password */
    struct queue_redis_shared rq;
    struct queue_signal relay_signal;
    struct bg_thread relay;     /* the outbox relay */
    atomic_int relay_ok;        /* the last relay pass reached Redis */
    struct bg_thread keeper;    /* renews the locks of the jobs this process holds */
    atomic_int workers_failing; /* worker threads whose last round failed */
};

/* One database session: a connection with the repository and queue bound to it. */
struct session {
    struct db_conn *conn;
    struct sql_lead_repo repo;
    struct queue_sql sql_queue;
    struct queue_redis redis_queue;
    struct job_queue *queue;
};

/* Fails (SP_EUNAVAIL) only when a pooled connection had to be opened and could not be. `redis`
 * is the calling thread's Redis connection (workers and the relay), or NULL. */
static int
session_open(struct app *app, struct session *s, struct redis *redis, struct sp_error *err)
{
    int rc = db_pool_acquire(app->pool, &s->conn, err);

    if (rc != SP_OK)
        return rc;
    sql_lead_repo_init(&s->repo, s->conn);
    if (app->use_redis) {
        queue_redis_init(&s->redis_queue, &app->rq, s->conn, redis);
        s->queue = &s->redis_queue.base;
    } else {
        queue_sql_init(&s->sql_queue, s->conn, &app->signal);
        s->queue = &s->sql_queue.base;
    }
    return SP_OK;
}

static void
session_close(struct app *app, struct session *s)
{
    if (app->use_redis)
        queue_redis_cleanup(&s->redis_queue);
    db_pool_release(app->pool, s->conn);
}

static struct leads_deps
leads_deps_for(struct app *app, struct session *s)
{
    struct leads_deps d = {&s->repo.base,  s->queue,           &app->bus,
                           &sp_clock_real, mock_content_gen(), &app->policy};
    return d;
}

typedef void (*leads_route_fn)(const struct leads_deps *d, struct http_request *req,
                               struct http_response *resp);

static void
with_session(struct app *app, leads_route_fn fn, struct http_request *req,
             struct http_response *resp)
{
    struct session s;
    struct leads_deps d;
    struct sp_error err = {0};
    int rc = session_open(app, &s, NULL, &err);

    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    d = leads_deps_for(app, &s);
    fn(&d, req, resp);
    session_close(app, &s);
}

static void
route_create(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_create, req, resp);
}

static void
route_reply(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_reply, req, resp);
}

static void
route_details(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_details, req, resp);
}

static void
route_health(void *ctx, struct http_request *req, struct http_response *resp)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)ctx;
    (void)req;
    http_json(resp, 200, body, sizeof(body) - 1);
}

static void
route_ready(void *ctx, struct http_request *req, struct http_response *resp)
{
    static const char body[] = "{\"status\":\"ready\",\"database\":\"ok\"}";
    /* Redis down does not stop captures (the outbox keeps their jobs): still ready. */
    static const char body_redis_ok[] =
        "{\"status\":\"ready\",\"database\":\"ok\",\"queue\":\"ok\"}";
    static const char body_redis_down[] =
        "{\"status\":\"ready\",\"database\":\"ok\",\"queue\":\"redis unreachable: jobs wait "
        "in the outbox\"}";
    struct app *app = ctx;
    struct sp_error err = {0};
    struct session s;
    int rc;

    rc = session_open(app, &s, NULL, &err);
    if (rc == SP_OK) {
        rc = lead_repo_ping(&s.repo.base, &err);
        session_close(app, &s);
    }
    if (rc != SP_OK) {
        log_warn("readiness check failed: %s", err.msg);
        http_error1(resp, req->arena, 503, "database unavailable");
        resp->retry_after = 1;
        return;
    }
    if (!app->use_redis)
        http_json(resp, 200, body, sizeof(body) - 1);
    else if (atomic_load(&app->relay_ok))
        http_json(resp, 200, body_redis_ok, sizeof(body_redis_ok) - 1);
    else
        http_json(resp, 200, body_redis_down, sizeof(body_redis_down) - 1);
}

/* Constant-time comparison of one candidate key against the comma-separated list. */
static int
api_key_ok(const char *keys, const char *given)
{
    size_t glen = given ? strlen(given) : 0;
    int ok = 0;

    if (glen == 0)
        return 0;
    for (const char *p = keys; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == glen) {
            unsigned diff = 0;
            for (size_t i = 0; i < len; i++)
                diff |= (unsigned)(p[i] ^ given[i]);
            ok |= diff == 0;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return ok;
}

static void
handle(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;

    if (app->cfg->api_keys && strcmp(req->path, "/health") != 0 &&
        !api_key_ok(app->cfg->api_keys, req->api_key)) {
        http_error(resp, req->arena, 401,
                   (const char *const[]){"Missing or invalid API key (X-API-Key header)"}, 1, 0);
        return;
    }
    http_router_dispatch(&app->router, req, resp);
    if (resp->status >= 500)
        log_warn("%s %s -> %d", req->method, req->path, resp->status);
    else
        log_debug("%s %s -> %d", req->method, req->path, resp->status);
}

static void
routes_init(struct app *app)
{
    struct http_router *r = &app->router;
    int rc = 0;

    http_router_init(r);
    rc |= http_router_add(r, "GET", "/health", route_health, app);
    rc |= http_router_add(r, "GET", "/ready", route_ready, app);
    rc |= http_router_add(r, "POST", "/leads", route_create, app);
    rc |= http_router_add(r, "POST", "/leads/:id/reply", route_reply, app);
    rc |= http_router_add(r, "GET", "/leads/:id", route_details, app);
    if (rc != 0) {
        log_error("route table full");
        abort();
    }
}

/* Sleeps up to ms, or less when the process is told to stop. */
static void
pause_ms(struct app *app, int64_t ms)
{
    queue_signal_wait(&app->signal, queue_signal_seq(&app->signal), ms);
}

/* The calling thread's Redis connection (NULL without REDIS_URL). */
static struct redis *
thread_redis(struct app *app)
{
    struct redis *r = NULL;
    struct sp_error err = {0};

    if (app->use_redis && redis_new(app->cfg->redis_url, queue_redis_scripts, queue_redis_nscripts,
                                    &r, &err) != SP_OK) {
        log_error("redis: %s", err.msg); /* unreachable: the URL was checked at start */
        abort();
    }
    return r;
}

/* An idle worker waits for work: on the Redis marker, or on this process's signal (SQL). */
static void
worker_idle(struct app *app, struct session *s, uint64_t seen, int64_t next_due)
{
    int64_t wait = app->use_redis ? 1000 : WORKER_POLL_MS;
    struct sp_error err = {0};

    if (next_due > 0) {
        int64_t until = next_due - sp_clock_now_ms(&sp_clock_real);
        if (until < wait)
            wait = until < 1 ? 1 : until;
    }
    if (s->queue->ops->wait == NULL) {
        queue_signal_wait(&app->signal, seen, wait);
    } else if (s->queue->ops->wait(s->queue, wait, &err) != SP_OK) {
        log_warn("worker: %s", err.msg);
        pause_ms(app, WORKER_ERROR_PAUSE_MS);
    }
}

static void *
worker_main(void *arg)
{
    struct app *app = arg;
    struct arena *a = arena_new();
    struct redis *redis = thread_redis(app);
    struct session s;
    struct messaging_deps d;
    int failing = 0; /* rounds failed in a row */

    for (;;) {
        struct sp_error err = {0};
        if (atomic_load(&app->stopping)) {
            redis_free(redis);
            arena_free(a);
            return NULL;
        }
        if (session_open(app, &s, redis, &err) == SP_OK)
            break;
        log_warn("worker: %s", err.msg);
        pause_ms(app, WORKER_ERROR_PAUSE_MS);
    }
    memset(&d, 0, sizeof(d));
    d.repo = &s.repo.base;
    d.queue = s.queue;
    d.clock = &sp_clock_real;
    d.senders = &app->senders;
    d.lease_ms = app->cfg->job_lease_ms;
    d.batch = app->cfg->worker_batch;
    d.jitter_pct = 20;
    d.random = sp_random;

    while (!atomic_load(&app->stopping)) {
        struct sp_error err = {0};
        uint64_t seen = queue_signal_seq(&app->signal);
        int64_t next_due = 0;
        int did_work = 0;
        int rc;

        if (s.queue->ops->maintain && s.queue->ops->maintain(s.queue, &err) != SP_OK) {
            if (err.code != SP_EUNAVAIL) /* an outage: the round below says so */
                log_warn("worker: stalled-job check: %s", err.msg);
            sp_error_clear(&err);
        }
        rc = messaging_worker_tick(&d, a, &did_work, &next_due, &err);
        arena_reset(a);
        if (rc != SP_OK) {
            /* A dependency down: said once per outage for all threads, then at debug level. */
            int first = failing++ == 0 && atomic_fetch_add(&app->workers_failing, 1) == 0;
            if (first || !sp_err_retryable(rc))
                log_warn("worker: %s: %s", sp_err_name(rc), err.msg);
            else
                log_debug("worker: %s: %s", sp_err_name(rc), err.msg);
            pause_ms(app, WORKER_ERROR_PAUSE_MS);
            continue;
        }
        if (failing > 0 && atomic_fetch_sub(&app->workers_failing, 1) == 1)
            log_info("workers: working again");
        failing = 0;
        if (!did_work)
            worker_idle(app, &s, seen, next_due);
    }
    session_close(app, &s);
    redis_free(redis);
    arena_free(a);
    return NULL;
}

/* BullMQ's requirement: a Redis that may evict keys can drop a lock or a job. Warns (CONFIG may
 * be disabled on managed servers: then nothing is said). */
static void
check_eviction_policy(struct redis *r)
{
    redisReply *rep = NULL;
    struct sp_error err = {0};

    if (redis_command(r, 3, (const char *[]){"CONFIG", "GET", "maxmemory-policy"}, NULL, &rep,
                      &err) == SP_OK &&
        rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[1]->str, "noeviction") != 0)
        log_warn("redis maxmemory-policy is %s: set it to noeviction, or a full Redis may drop "
                 "queued jobs and locks",
                 rep->element[1]->str);
    redis_reply_free(rep);
}

/* ---- lock renewal (REDIS_URL) -------------------------------------------------------------- */

static void *
keeper_main(void *arg)
{
    struct app *app = arg;
    struct redis *redis = thread_redis(app);
    int64_t every = app->cfg->job_lease_ms / 3; /* BullMQ: lockDuration / 2; a third for slack */

    if (every < 20)
        every = 20;
    while (!atomic_load(&app->keeper.stopping)) {
        struct sp_error err = {0};
        uint64_t seen = queue_signal_seq(&app->signal);
        if (queue_redis_renew_locks(&app->rq, redis, app->cfg->job_lease_ms, &err) != SP_OK)
            log_warn("lock renewal: %s", err.msg);
        queue_signal_wait(&app->signal, seen, every);
    }
    redis_free(redis);
    return NULL;
}

/* ---- the outbox relay (REDIS_URL) ---------------------------------------------------------- */

/* One pass: publishes every unrelayed outbox row. Returns the rows published, or -1. */
static int
relay_pass(struct app *app, struct redis *redis, int *logged_down)
{
    struct sp_error err = {0};
    struct session s;
    int total = 0, n = 0, rc;

    rc = session_open(app, &s, redis, &err);
    if (rc == SP_OK) {
        do {
            rc = queue_redis_relay_batch(&s.redis_queue, RELAY_BATCH, &n, &err);
            total += rc == SP_OK ? n : 0;
        } while (rc == SP_OK && n == RELAY_BATCH && !atomic_load(&app->relay.stopping));
        session_close(app, &s);
    }
    atomic_store(&app->relay_ok, rc == SP_OK || strcmp(err.field, "redis") != 0);
    if (rc != SP_OK) {
        if (!*logged_down)
            log_warn("outbox relay: %s; captured jobs wait in the outbox and go out when it is "
                     "back",
                     err.msg);
        *logged_down = 1;
        return -1;
    }
    if (*logged_down)
        log_info("outbox relay: publishing again");
    *logged_down = 0;
    return total;
}

static void *
relay_main(void *arg)
{
    struct app *app = arg;
    struct redis *redis = thread_redis(app);
    int64_t retry_ms = 50;
    int logged_down = 0;

    for (;;) {
        uint64_t seen = queue_signal_seq(&app->relay_signal);
        int stopping = atomic_load(&app->relay.stopping);
        int n = relay_pass(app, redis, &logged_down);

        if (n > 0)
            log_debug("outbox relay: %d jobs published", n);
        if (stopping)
            break; /* the final pass after the API stopped is done */
        if (n < 0) {
            queue_signal_wait(&app->relay_signal, queue_signal_seq(&app->relay_signal), retry_ms);
            retry_ms = retry_ms * 2 > RELAY_RETRY_MAX_MS ? RELAY_RETRY_MAX_MS : retry_ms * 2;
            continue;
        }
        retry_ms = 50;
        if (n >= RELAY_BUSY_ROWS) {
            /* Captures are streaming in: let a few more commit before the next pass, so that
             * passes (database transactions) stay few and large. At rest, a job is published
             * as soon as its capture commits. */
            struct timespec ts = {0, RELAY_COALESCE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        queue_signal_wait(&app->relay_signal, seen, RELAY_SCAN_MS);
    }
    redis_free(redis);
    return NULL;
}

static int
workers_start(struct app *app, int n)
{
    app->workers = xcalloc((size_t)n, sizeof(*app->workers));
    for (int i = 0; i < n; i++) {
        if (pthread_create(&app->workers[i], NULL, worker_main, app) != 0) {
            log_error("cannot start worker thread %d", i);
            return SP_EINTERNAL;
        }
        app->nworkers++;
    }
    return SP_OK;
}

static void
workers_stop(struct app *app)
{
    atomic_store(&app->stopping, 1);
    queue_signal_wake(&app->signal);
    for (int i = 0; i < app->nworkers; i++)
        pthread_join(app->workers[i], NULL);
    free(app->workers);
    app->workers = NULL;
    app->nworkers = 0;
}

static int
open_sqlite(struct app *app, const char *path, int pool_size, struct sp_error *err)
{
    struct db_conn *c = NULL;
    int rc;

    if (strncmp(path, "//", 2) == 0)
        path += 2;
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0)
        return sp_error_set(err, SP_EINVAL, "DATABASE_URL",
                            "config: DATABASE_URL: sqlite needs a file path (connections of "
                            "one process share it)");
    rc = db_sqlite_new(path, &app->sqlite, err);
    if (rc == SP_OK)
        rc = db_sqlite_connect(app->sqlite, &c, err);
    if (rc == SP_OK)
        rc = db_migrate(c, sp_migrations_sqlite, sp_migrations_sqlite_count, NULL, err);
    db_close(c);
    if (rc == SP_OK && pool_size > 0)
        rc = db_pool_new(db_sqlite_connect, app->sqlite, pool_size, &app->pool, err);
    return rc;
}

static int
open_postgres(struct app *app, const char *url, int pool_size, struct sp_error *err)
{
    struct db_conn *c = NULL;
    int rc;

    rc = db_pg_new(url, &app->pg, err);
    if (rc == SP_OK)
        rc = db_pg_connect(app->pg, &c, err);
    if (rc == SP_OK)
        rc = db_migrate(c, sp_migrations_postgres, sp_migrations_postgres_count, NULL, err);
    db_close(c);
    if (rc == SP_OK && pool_size > 0)
        rc = db_pool_new(db_pg_connect, app->pg, pool_size, &app->pool, err);
    return rc;
}

/* DATABASE_URL picks the driver here and nowhere else. */
static int
open_database(struct app *app, int pool_size, struct sp_error *err)
{
    const char *url = app->cfg->database_url;

    if (strncmp(url, "sqlite:", 7) == 0)
        return open_sqlite(app, url + 7, pool_size, err);
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return open_postgres(app, url, pool_size, err);
    return sp_error_set(err, SP_EINVAL, "DATABASE_URL",
                        "config: DATABASE_URL: must be sqlite:<path> or postgres://... (got "
                        "\"%.40s\")",
                        url);
}

static int
senders_init(struct app *app, struct sp_error *err)
{
    struct mock_sender_config mc = {app->cfg->mock_sink, app->cfg->mock_fail_first,
                                    app->cfg->mock_fail_rate, app->cfg->mock_send_delay_ms};
    int rc = mock_sender_new(&mc, &app->mock, err);

    if (rc != SP_OK)
        return rc;
    memset(&app->senders, 0, sizeof(app->senders));
    app->senders.by_channel[CHANNEL_EMAIL] = mock_sender_base(app->mock);
    app->senders.by_channel[CHANNEL_WHATSAPP] = mock_sender_base(app->mock);
    return SP_OK;
}

static int
bus_init(struct app *app)
{
    int rc;
    event_bus_init(&app->bus);
    rc = event_bus_subscribe(&app->bus, LEADS_EV_LEAD_ADDED, leads_on_lead_added, NULL);
    if (rc == SP_OK)
        rc = event_bus_subscribe(&app->bus, LEADS_EV_LEAD_REPLIED, leads_on_lead_replied, NULL);
    return rc;
}

/* Blocks until SIGTERM or SIGINT; the signals are blocked in every thread. */
static int
wait_for_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}

static void
app_cleanup(struct app *app)
{
    if (app->server)
        http_server_stop(app->server);
    app->server = NULL;
    if (app->workers)
        workers_stop(app);
    bg_stop(&app->keeper); /* after the workers: their last jobs keep their locks to the end */
    bg_stop(&app->relay);
    db_pool_free(app->pool);
    db_sqlite_free(app->sqlite);
    db_pg_free(app->pg);
    mock_sender_free(app->mock);
    if (app->use_redis)
        queue_redis_shared_cleanup(&app->rq);
    queue_signal_cleanup(&app->signal);
    queue_signal_cleanup(&app->relay_signal);
}

static int
start_http(struct app *app, struct sp_error *err)
{
    struct http_server_config hc = {app->cfg->host, app->cfg->port, app->cfg->http_threads, handle,
                                    app};
    routes_init(app);
    return http_server_start(&hc, &app->server, err);
}

int
app_run(const struct config *cfg, enum app_mode mode)
{
    struct app app;
    struct sp_error err = {0};
    int64_t t0 = sp_mono_ms();
    int with_http = mode == APP_SERVE || mode == APP_SERVE_API;
    int nworkers = mode == APP_SERVE || mode == APP_WORKER ? cfg->worker_concurrency : 0;
    int pool = mode == APP_MIGRATE ? 0 : (with_http ? cfg->http_threads : 0) + nworkers + 2;
    sigset_t set;
    int rc, sig;

    memset(&app, 0, sizeof(app));
    app.cfg = cfg;
    config_url_redact(cfg->database_url, app.db_label, sizeof(app.db_label));
    queue_signal_init(&app.signal);
    queue_signal_init(&app.relay_signal);
    atomic_init(&app.relay_ok, 1);
    if (cfg->redis_url) {
        struct redis *probe = NULL;
        rc = redis_new(cfg->redis_url, queue_redis_scripts, queue_redis_nscripts, &probe, &err);
        if (rc != SP_OK) {
            fprintf(stderr, "%s\n", err.msg);
            app_cleanup(&app);
            return 2;
        }
        /* Redis down at start is not fatal: captures go to the outbox meanwhile. */
        if (mode != APP_MIGRATE && redis_ping(probe, &err) != SP_OK)
            log_warn("%s (the service starts anyway and retries)", err.msg);
        else if (mode != APP_MIGRATE)
            check_eviction_policy(probe);
        redis_free(probe);
        sp_error_clear(&err);
        app.use_redis = 1;
        redis_url_redact(cfg->redis_url, app.redis_label, sizeof(app.redis_label));
        queue_redis_shared_init(&app.rq, cfg->queue_prefix, cfg->queue_name,
                                cfg->queue_keep_completed, cfg->queue_stalled_interval_ms,
                                cfg->queue_max_stalled, &app.relay_signal);
    }
    /* Block the shutdown signals before any thread starts so only sigwait sees them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = open_database(&app, pool, &err);
    if (rc == SP_OK && mode == APP_MIGRATE) {
        log_info("migrations are up to date (%s)", app.db_label);
        app_cleanup(&app);
        return 0;
    }
    if (rc == SP_OK)
        rc = senders_init(&app, &err);
    if (rc == SP_OK)
        rc = bus_init(&app);
    if (rc == SP_OK) {
        app.policy.job_attempts = cfg->job_attempts;
        app.policy.job_backoff_ms = cfg->job_backoff_ms;
        app.policy.sendable = sender_registry_mask(&app.senders);
    }
    if (rc == SP_OK && app.use_redis)
        rc = bg_start(&app.relay, "outbox relay", relay_main, &app, &app.relay_signal);
    if (rc == SP_OK && app.use_redis && nworkers > 0)
        rc = bg_start(&app.keeper, "lock renewal", keeper_main, &app, &app.signal);
    if (rc == SP_OK && nworkers > 0)
        rc = workers_start(&app, nworkers);
    if (rc == SP_OK && with_http)
        rc = start_http(&app, &err);
    if (rc != SP_OK) {
        fprintf(stderr, "%s\n", err.msg[0] ? err.msg : sp_err_str(rc));
        app_cleanup(&app);
        return rc == SP_EINVAL ? 2 : 1;
    }
    if (with_http)
        log_info("salespad %s listening on http://%s:%d (database %s, queue %s%s%s, %d workers, "
                 "ready in %lld ms)",
                 SP_VERSION, cfg->host, http_server_port(app.server), app.db_label,
                 app.use_redis ? app.redis_label : "in the database", app.use_redis ? " " : "",
                 app.use_redis ? app.rq.prefix : "", nworkers, (long long)(sp_mono_ms() - t0));
    else
        log_info("salespad %s worker started (database %s, queue %s%s%s, %d workers)", SP_VERSION,
                 app.db_label, app.use_redis ? app.redis_label : "in the database",
                 app.use_redis ? " " : "", app.use_redis ? app.rq.prefix : "", nworkers);

    sig = wait_for_signal(&set);
    log_info("received %s: finishing in-flight requests and jobs", strsignal(sig));
    if (app.server)
        http_server_quiesce(app.server);
    app_cleanup(&app);
    log_info("shutdown complete");
    return 0;
}
