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
#include "infra/queue_sql.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WORKER_POLL_MS 200
#define WORKER_ERROR_PAUSE_MS 1000

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
};

/* One database session: a connection with the repository and queue bound to it. */
struct session {
    struct db_conn *conn;
    struct sql_lead_repo repo;
    struct queue_sql queue;
};

/* Fails (SP_EUNAVAIL) only when a pooled connection had to be opened and could not be. */
static int
session_open(struct app *app, struct session *s, struct sp_error *err)
{
    int rc = db_pool_acquire(app->pool, &s->conn, err);

    if (rc != SP_OK)
        return rc;
    sql_lead_repo_init(&s->repo, s->conn);
    queue_sql_init(&s->queue, s->conn, &app->signal);
    return SP_OK;
}

static void
session_close(struct app *app, struct session *s)
{
    db_pool_release(app->pool, s->conn);
}

static struct leads_deps
leads_deps_for(struct app *app, struct session *s)
{
    struct leads_deps d = {&s->repo.base,  &s->queue.base,     &app->bus,
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
    int rc = session_open(app, &s, &err);

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
    struct app *app = ctx;
    struct sp_error err = {0};
    struct session s;
    int rc;

    rc = session_open(app, &s, &err);
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
    http_json(resp, 200, body, sizeof(body) - 1);
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

static void *
worker_main(void *arg)
{
    struct app *app = arg;
    struct arena *a = arena_new();
    struct session s;
    struct messaging_deps d;

    for (;;) {
        struct sp_error err = {0};
        if (atomic_load(&app->stopping)) {
            arena_free(a);
            return NULL;
        }
        if (session_open(app, &s, &err) == SP_OK)
            break;
        log_warn("worker: %s", err.msg);
        queue_signal_wait(&app->signal, queue_signal_seq(&app->signal), WORKER_ERROR_PAUSE_MS);
    }
    memset(&d, 0, sizeof(d));
    d.repo = &s.repo.base;
    d.queue = &s.queue.base;
    d.clock = &sp_clock_real;
    d.senders = &app->senders;
    d.lease_ms = app->cfg->job_lease_ms;
    d.batch = app->cfg->worker_batch;
    d.jitter_pct = 20;
    d.random = sp_random;

    while (!atomic_load(&app->stopping)) {
        struct sp_error err = {0};
        uint64_t seen = queue_signal_seq(&app->signal);
        int64_t next_due = 0, wait = WORKER_POLL_MS;
        int did_work = 0;
        int rc = messaging_worker_tick(&d, a, &did_work, &next_due, &err);

        arena_reset(a);
        if (rc != SP_OK) {
            log_warn("worker: %s: %s", sp_err_name(rc), err.msg);
            queue_signal_wait(&app->signal, queue_signal_seq(&app->signal), WORKER_ERROR_PAUSE_MS);
            continue;
        }
        if (did_work)
            continue;
        if (next_due > 0) {
            int64_t until = next_due - sp_clock_now_ms(&sp_clock_real);
            if (until < wait)
                wait = until < 1 ? 1 : until;
        }
        queue_signal_wait(&app->signal, seen, wait);
    }
    session_close(app, &s);
    arena_free(a);
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
                                    app->cfg->mock_fail_rate};
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
    db_pool_free(app->pool);
    db_sqlite_free(app->sqlite);
    db_pg_free(app->pg);
    mock_sender_free(app->mock);
    queue_signal_cleanup(&app->signal);
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
    int pool = mode == APP_MIGRATE ? 0 : (with_http ? cfg->http_threads : 0) + nworkers + 1;
    sigset_t set;
    int rc, sig;

    memset(&app, 0, sizeof(app));
    app.cfg = cfg;
    config_url_redact(cfg->database_url, app.db_label, sizeof(app.db_label));
    queue_signal_init(&app.signal);
    if (cfg->redis_url) {
        fprintf(stderr, "config: REDIS_URL: the Redis queue is not supported by this build yet; "
                        "unset it to use the database queue\n");
        queue_signal_cleanup(&app.signal);
        return 2;
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
        log_info(
            "salespad %s listening on http://%s:%d (database %s, %d workers, ready in %lld ms)",
            SP_VERSION, cfg->host, http_server_port(app.server), cfg->database_url, nworkers,
            (long long)(sp_mono_ms() - t0));
    else
        log_info("salespad %s worker started (database %s, %d workers)", SP_VERSION, app.db_label,
                 nworkers);

    sig = wait_for_signal(&set);
    log_info("received %s: finishing in-flight requests and jobs", strsignal(sig));
    if (app.server)
        http_server_quiesce(app.server);
    app_cleanup(&app);
    log_info("shutdown complete");
    return 0;
}
