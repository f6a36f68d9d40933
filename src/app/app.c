/* app.c: the composition root: builds the process from the configuration (database and its
 * migrations, the queue backend chosen once, senders, event bus, policy), starts the HTTP server
 * (routes.c) and the background threads (runtime.c), waits for SIGTERM/SIGINT, and tears it all
 * down in reverse order. The only file that names concrete adapters. */
#include "app/app.h"

#include "app/wiring.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/http_server.h"
#include "core/log.h"
#include "features/leads/infrastructure/mock_content.h"
#include "features/leads/infrastructure/openai_content.h"
#include "features/messaging/infrastructure/mock_sender.h"
#include "features/messaging/infrastructure/smtp_sender.h"
#include "features/messaging/infrastructure/whatsapp_sender.h"
#include "infra/curl_client.h"
#include "infra/db.h"
#include "infra/db_pg.h"
#include "infra/db_sqlite.h"
#include "infra/migrate.h"
#include "infra/redis.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* glibc's allocator settings (see malloc_tune): allocations from this size up get a mapping of
 * their own; busy threads share this many arenas. */
#define MMAP_THRESHOLD (128 * 1024)
#define MALLOC_ARENAS 2

/* ---- sessions and the queue backend ---------------------------------------------------------- */

static void
bind_sql(struct app *app, struct session *s, struct redis *redis)
{
    (void)redis;
    queue_sql_init(&s->sql_queue, s->conn, &app->node);
    s->queue = &s->sql_queue.base;
}

static void
unbind_sql(struct session *s)
{
    (void)s;
}

static void
bind_redis(struct app *app, struct session *s, struct redis *redis)
{
    queue_redis_init(&s->redis_queue, &app->rq, s->conn, redis);
    s->queue = &s->redis_queue.base;
}

static void
unbind_redis(struct session *s)
{
    queue_redis_cleanup(&s->redis_queue);
}

static const struct queue_backend sql_backend = {"in the database", 0, 200, bind_sql, unbind_sql};
static const struct queue_backend redis_backend = {"redis", 1, 1000, bind_redis, unbind_redis};

int
session_open(struct app *app, struct session *s, struct redis *redis, struct sp_error *err)
{
    int rc = db_pool_acquire(app->pool, &s->conn, err);

    if (rc != SP_OK)
        return rc;
    sql_lead_repo_init(&s->repo, s->conn);
    app->queue->bind(app, s, redis);
    return SP_OK;
}

void
session_close(struct app *app, struct session *s)
{
    app->queue->unbind(s);
    db_pool_release(app->pool, s->conn);
}

struct redis *
app_thread_redis(struct app *app)
{
    struct redis *r = NULL;
    struct sp_error err = {0};

    if (app->queue->redis &&
        redis_new(app->cfg->redis_url, bullmq_scripts, BULLMQ_NSCRIPTS, &r, &err) != SP_OK) {
        log_error("redis: %s", err.msg); /* unreachable: the URL was checked at start */
        abort();
    }
    return r;
}

/* BullMQ's requirement: a Redis that may evict keys can drop a lock or a job. Warns (CONFIG may
 * be disabled on managed servers: then nothing is said). */
static void
check_eviction_policy(struct redis *r)
{
    struct redis_value *rep = NULL;
    struct sp_error err = {0};

    if (redis_command(r, 3, (const char *[]){"CONFIG", "GET", "maxmemory-policy"}, NULL, &rep,
                      &err) == SP_OK &&
        rep->type == RV_ARR && rep->n == 2 && rep->items[1].type == RV_STR &&
        strcmp(rep->items[1].str, "noeviction") != 0)
        log_warn("redis maxmemory-policy is %s: set it to noeviction, or a full Redis may drop "
                 "queued jobs and locks",
                 rep->items[1].str);
    redis_value_free(rep);
}

/* With REDIS_URL: the BullMQ-layout queue. Redis down at start is not fatal: captures go to
 * the outbox meanwhile. */
static int
use_redis(struct app *app, enum app_mode mode, struct sp_error *err)
{
    const struct config *cfg = app->cfg;
    struct redis *probe = NULL;
    char label[256];
    int rc = redis_new(cfg->redis_url, bullmq_scripts, BULLMQ_NSCRIPTS, &probe, err);

    if (rc != SP_OK)
        return rc;
    if (mode != APP_MIGRATE && redis_ping(probe, err) != SP_OK)
        log_warn("%s (the service starts anyway and retries)", err->msg);
    else if (mode != APP_MIGRATE)
        check_eviction_policy(probe);
    redis_free(probe);
    sp_error_clear(err);
    app->queue = &redis_backend;
    queue_redis_shared_init(&app->rq, cfg->queue_prefix, cfg->queue_name, cfg->queue_keep_completed,
                            cfg->queue_stalled_interval_ms, cfg->queue_max_stalled,
                            cfg->job_lease_ms, &app->relay_signal);
    redis_url_redact(cfg->redis_url, label, sizeof(label));
    snprintf(app->queue_label, sizeof(app->queue_label), "%s %s", label, app->rq.prefix);
    return SP_OK;
}

/* A worker process of the database queue makes itself known as a live lease holder (see
 * queue_sql.h): a dead worker's jobs are then taken again at once. */
static int
node_live(struct app *app, struct sp_error *err)
{
    struct db_conn *c = NULL;
    int rc;

    if (app->sqlite)
        return queue_sql_node_live_sqlite(&app->node, app->sqlite_path, err);
    rc = db_pg_connect(app->pg, &c, err);
    if (rc != SP_OK)
        return rc;
    return queue_sql_node_live_pg(&app->node, c, db_pg_connect, app->pg, err);
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
    app->sqlite_path = path;
    rc = db_sqlite_new(path, &app->sqlite, err);
    if (rc == SP_OK)
        rc = db_sqlite_connect(app->sqlite, &c, err);
    if (rc == SP_OK)
        rc = db_migrate(c, sp_migrations_sqlite, sp_migrations_sqlite_count, NULL, err);
    db_close(c);
    /* After the migration, which may wait longer for another process migrating. */
    if (rc == SP_OK)
        db_sqlite_set_busy_timeout(app->sqlite, app->cfg->db_busy_timeout_ms);
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
                        "\"%.60s\")",
                        app->db_label); /* redacted: a key=value string may hold a password */
}

/* Whether a provider talks to the outside (through libcurl). */
static int
uses_curl(const struct config *c)
{
    return strcmp(c->email_provider, "smtp") == 0 || strcmp(c->whatsapp_provider, "cloud") == 0 ||
           strcmp(c->ai_provider, "openai") == 0;
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
    /* libcurl starts before any worker thread: its global init is not thread-safe. Only a
     * real provider needs it: with the mocks, its TLS library's start-up (about 3 MB of
     * resident pages) is skipped. */
    if (uses_curl(app->cfg)) {
        rc = curl_client_global_init(err);
        if (rc != SP_OK)
            return rc;
        app->curl_ready = 1;
    }
    if (strcmp(app->cfg->email_provider, "smtp") == 0) {
        const struct config *c = app->cfg;
        struct smtp_sender_config sc = {
            c->smtp_url,   c->smtp_username,      c->smtp_password,      c->smtp_ca_file,
            c->email_from, c->email_reply_domain, c->email_reply_secret, (long)c->smtp_timeout_ms,
            c->public_url, c->unsubscribe_secret};
        rc = smtp_sender_new(&sc, &app->smtp, err);
        if (rc != SP_OK)
            return rc;
        app->senders.by_channel[CHANNEL_EMAIL] = smtp_sender_base(app->smtp);
    }
    if (strcmp(app->cfg->whatsapp_provider, "cloud") == 0) {
        const struct config *c = app->cfg;
        struct whatsapp_sender_config wc = {
            c->whatsapp_api_url,       c->whatsapp_phone_number_id,
            c->whatsapp_token,         c->whatsapp_welcome_template,
            c->whatsapp_template_lang, (long)c->whatsapp_timeout_ms};
        rc = whatsapp_sender_new(&wc, &app->whatsapp, err);
        if (rc != SP_OK)
            return rc;
        app->senders.by_channel[CHANNEL_WHATSAPP] = whatsapp_sender_base(app->whatsapp);
    }
    return SP_OK;
}

/* The answers' generator (AI_PROVIDER) and its fallback (AI_FALLBACK). */
static int
ai_init(struct app *app, struct sp_error *err)
{
    const struct config *c = app->cfg;
    int rc;

    app->gen = mock_content_gen();
    app->fallback_gen = strcmp(c->ai_fallback, "template") == 0 ? mock_content_gen() : NULL;
    if (strcmp(c->ai_provider, "openai") == 0) {
        struct openai_content_config oc = {c->ai_base_url, c->ai_api_key, c->ai_model,
                                           c->ai_system_prompt ? c->ai_system_prompt
                                                               : OPENAI_PROMPT_DEFAULT,
                                           (long)c->ai_timeout_ms};
        rc = openai_content_new(&oc, &app->openai, err);
        if (rc != SP_OK)
            return rc;
        app->gen = openai_content_base(app->openai);
    }
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
    events_feed_close(app->feed); /* the streams end now, so the server stops in its usual time */
    if (app->server)
        http_server_stop(app->server);
    app->server = NULL;
    runtime_stop(app);
    events_feed_free(app->feed); /* after the workers: their last commits are announced */
    app->feed = NULL;
    queue_sql_node_cleanup(&app->node);
    db_pool_free(app->pool);
    db_sqlite_free(app->sqlite);
    db_pg_free(app->pg);
    mock_sender_free(app->mock);
    smtp_sender_free(app->smtp);
    whatsapp_sender_free(app->whatsapp);
    openai_content_free(app->openai);
    if (app->curl_ready)
        curl_client_global_cleanup(); /* the worker threads, its users, have exited */
    if (app->queue == &redis_backend)
        queue_redis_shared_cleanup(&app->rq);
    queue_signal_cleanup(&app->signal);
    queue_signal_cleanup(&app->relay_signal);
    api_keys_free(&app->keys);
    idempotency_cleanup(&app->idem);
    throttle_cleanup(&app->throttle);
    metrics_free(app->metrics);
}

static int
start_http(struct app *app, struct sp_error *err)
{
    const struct config *cfg = app->cfg;
    struct http_server_config hc = {
        .host = cfg->host,
        .port = cfg->port,
        .handler = routes_handle,
        .ctx = app,
        .header_timeout_ms = cfg->http_header_timeout_ms,
        .body_min_rate = cfg->http_body_min_rate,
        .max_conns_per_ip = cfg->http_max_conns_per_ip,
        .body_budget = (size_t)cfg->http_body_budget_mb * 1024 * 1024,
        /* Inbound email comes with its attachments (dropped once counted). */
        .large_body_prefix = "/webhooks/email",
        .large_body_max = (size_t)cfg->email_webhook_max_mb * 1024 * 1024,
    };

    routes_init(app);
    return http_server_start(&hc, &app->server, err);
}

/* glibc's allocator, set before any thread starts.
 * - Request bodies (up to 1 MiB each) are malloc'd and freed per request. glibc raises its mmap
 *   threshold after such a free and then keeps later big buffers on the heap, where a load of
 *   partial bodies stayed resident after it ended. A fixed threshold keeps every buffer over
 *   128 KiB in its own mapping, returned to the system on free.
 * - Each connection has a thread: by default glibc gives busy threads up to 8 arenas per core,
 *   each keeping its own freed chunks; under 64 connections that held about 3 MB more than
 *   MALLOC_ARENAS arenas do, at the same request rates (docs/performance.md). */
static void
malloc_tune(void)
{
    /* Only another allocator refuses them (ASan's, musl's): nothing a user can act on. */
    if (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1)
        log_debug("mallopt(M_MMAP_THRESHOLD) refused: big request buffers may stay resident");
    if (mallopt(M_ARENA_MAX, MALLOC_ARENAS) != 1)
        log_debug("mallopt(M_ARENA_MAX) refused: more memory per connection");
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

    malloc_tune();
    memset(&app, 0, sizeof(app));
    app.cfg = cfg;
    app.queue = &sql_backend;
    snprintf(app.queue_label, sizeof(app.queue_label), "%s", sql_backend.label);
    config_url_redact(cfg->database_url, app.db_label, sizeof(app.db_label));
    queue_signal_init(&app.signal);
    queue_signal_init(&app.relay_signal);
    queue_sql_node_init(&app.node, &app.signal, cfg->queue_max_stalled);
    if (cfg->redis_url && use_redis(&app, mode, &err) != SP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        app_cleanup(&app);
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
    if (rc == SP_OK && nworkers > 0 && app.queue == &sql_backend)
        rc = node_live(&app, &err);
    if (rc == SP_OK)
        rc = senders_init(&app, &err);
    if (rc == SP_OK)
        rc = ai_init(&app, &err);
    if (rc == SP_OK)
        rc = bus_init(&app);
    if (rc == SP_OK) {
        app.policy.job_attempts = cfg->job_attempts;
        app.policy.job_backoff_ms = cfg->job_backoff_ms;
        app.policy.sendable = sender_registry_mask(&app.senders);
        outbox_relay_init(&app.relay, app.pool, &app.rq, &app.relay_signal);
        rc = events_feed_start(&app, with_http, &app.feed, &err);
    }
    if (rc == SP_OK)
        rc = runtime_start(&app, nworkers);
    if (rc == SP_OK && with_http)
        rc = start_http(&app, &err);
    if (rc != SP_OK) {
        fprintf(stderr, "%s\n", err.msg[0] ? err.msg : sp_err_str(rc));
        app_cleanup(&app);
        return rc == SP_EINVAL ? 2 : 1;
    }
    if (with_http)
        log_info("salespad %s listening on http://%s:%d (database %s, queue %s, %d workers, "
                 "ready in %lld ms)",
                 SP_VERSION, cfg->host, http_server_port(app.server), app.db_label, app.queue_label,
                 nworkers, (long long)(sp_mono_ms() - t0));
    else
        log_info("salespad %s worker started (database %s, queue %s, %d workers)", SP_VERSION,
                 app.db_label, app.queue_label, nworkers);

    sig = wait_for_signal(&set);
    log_info("received %s: finishing in-flight requests and jobs", strsignal(sig));
    if (app.server)
        http_server_quiesce(app.server);
    app_cleanup(&app);
    log_info("shutdown complete");
    return 0;
}

/* ---- routes --------------------------------------------------------------------------------- */

int
app_print_routes(const struct config *cfg, FILE *f)
{
    struct app app;

    /* What app_run sets up before anything can fail, so that app_cleanup undoes routes_init
     * (and whatever it may allocate) exactly as it does after serving. */
    memset(&app, 0, sizeof(app));
    app.cfg = cfg;
    app.queue = &sql_backend;
    queue_signal_init(&app.signal);
    queue_signal_init(&app.relay_signal);
    queue_sql_node_init(&app.node, &app.signal, cfg->queue_max_stalled);
    routes_init(&app);
    for (int i = 0; i < app.router.n; i++)
        fprintf(f, "%s %s\n", app.router.routes[i].method, app.router.routes[i].pattern);
    app_cleanup(&app);
    return 0;
}

/* ---- check-providers ------------------------------------------------------------------------ */

/* Prints "<what>: <label>: ok (<detail>)" or "...: FAILED: <error>"; returns 1 on failure. */
static int
check_line(FILE *f, const char *what, const char *label, int rc, const char *detail,
           const struct sp_error *err)
{
    if (rc == SP_OK) {
        fprintf(f, "%-9s %s: ok (%s)\n", what, label, detail);
        return 0;
    }
    fprintf(f, "%-9s %s: FAILED: %s: %s\n", what, label, sp_err_name(rc),
            err->msg[0] ? err->msg : sp_err_str(rc));
    return 1;
}

int
app_check_providers(const struct config *c, FILE *f)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    const char *detail = "";
    char label[200];
    int failed = 0, bad_setting = 0, rc;

    if (curl_client_global_init(&err) != SP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        arena_free(a);
        return 1;
    }
    if (strcmp(c->email_provider, "smtp") == 0) {
        struct smtp_sender_config sc = {
            c->smtp_url,   c->smtp_username,      c->smtp_password,      c->smtp_ca_file,
            c->email_from, c->email_reply_domain, c->email_reply_secret, (long)c->smtp_timeout_ms,
            c->public_url, c->unsubscribe_secret};
        struct smtp_sender *s = NULL;
        config_url_redact(c->smtp_url, label, sizeof(label));
        rc = smtp_sender_new(&sc, &s, &err);
        bad_setting |= rc == SP_EINVAL;
        if (rc == SP_OK)
            rc = smtp_sender_check(s, a, &detail, &err);
        failed |= check_line(f, "email:", arena_printf(a, "smtp %s", label), rc, detail, &err);
        smtp_sender_free(s);
    } else {
        fprintf(f, "%-9s mock (nothing to check)\n", "email:");
    }
    sp_error_clear(&err);
    if (strcmp(c->whatsapp_provider, "cloud") == 0) {
        struct whatsapp_sender_config wc = {
            c->whatsapp_api_url,       c->whatsapp_phone_number_id,
            c->whatsapp_token,         c->whatsapp_welcome_template,
            c->whatsapp_template_lang, (long)c->whatsapp_timeout_ms};
        struct whatsapp_sender *s = NULL;
        rc = whatsapp_sender_new(&wc, &s, &err);
        bad_setting |= rc == SP_EINVAL;
        if (rc == SP_OK)
            rc = whatsapp_sender_check(s, a, &detail, &err);
        failed |= check_line(f, "whatsapp:", arena_printf(a, "cloud %s", c->whatsapp_api_url), rc,
                             detail, &err);
        whatsapp_sender_free(s);
    } else {
        fprintf(f, "%-9s mock (nothing to check)\n", "whatsapp:");
    }
    sp_error_clear(&err);
    if (strcmp(c->ai_provider, "openai") == 0) {
        struct openai_content_config oc = {c->ai_base_url, c->ai_api_key, c->ai_model,
                                           c->ai_system_prompt ? c->ai_system_prompt
                                                               : OPENAI_PROMPT_DEFAULT,
                                           (long)c->ai_timeout_ms};
        struct openai_content *g = NULL;
        rc = openai_content_new(&oc, &g, &err);
        bad_setting |= rc == SP_EINVAL;
        if (rc == SP_OK)
            rc = openai_content_check(g, a, &detail, &err);
        failed |=
            check_line(f, "ai:", arena_printf(a, "openai %s", c->ai_base_url), rc, detail, &err);
        openai_content_free(g);
    } else {
        fprintf(f, "%-9s mock (nothing to check)\n", "ai:");
    }
    fflush(f);
    curl_client_global_cleanup();
    arena_free(a);
    return bad_setting ? 2 : failed ? 1 : 0;
}
