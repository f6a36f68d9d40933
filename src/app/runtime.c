/* runtime.c: the process's background threads, all run by one mechanism (struct bg_thread):
 * the workers (reserve, send, record), the keeper (renews the leases of every job the process
 * holds, every lease/3, whatever the workers are doing, so a slow send never loses its job; on
 * PostgreSQL it also keeps the process's liveness lock), and the outbox relay (with Redis).
 * Stopping: the workers first (their in-flight jobs finish and keep their leases to the end),
 * then the keeper, then the relay (a last pass publishes what the API committed). */
#include "app/wiring.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/xmalloc.h"
#include "features/leads/application/delivery.h"
#include "infra/redis.h"

#include <stdlib.h>
#include <string.h>

#define WORKER_ERROR_PAUSE_MS 1000
#define WORKER_JITTER_PCT 20
#define KEEPER_MIN_MS 20
#define KEEPER_MAX_MS 1000

static void *
bg_main(void *arg)
{
    struct bg_thread *t = arg;
    t->run(t);
    return NULL;
}

static int
bg_start(struct bg_thread *t, struct app *app, const char *what, void (*run)(struct bg_thread *),
         struct queue_signal *wake)
{
    t->app = app;
    t->run = run;
    t->wake = wake;
    atomic_init(&t->stopping, 0);
    if (pthread_create(&t->tid, NULL, bg_main, t) != 0) {
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

/* Sleeps up to ms, or less when the thread is told to stop. */
static void
pause_ms(struct bg_thread *t, int64_t ms)
{
    uint64_t seen = queue_signal_seq(t->wake);
    if (!atomic_load(&t->stopping))
        queue_signal_wait(t->wake, seen, ms);
}

/* ---- workers --------------------------------------------------------------------------------- */

/* An idle worker waits for work (the queue's own way), at most until the next delayed job. */
static void
worker_idle(struct bg_thread *t, struct session *s, int64_t next_due)
{
    int64_t wait = t->app->queue->idle_wait_ms;
    struct sp_error err = {0};

    if (next_due > 0) {
        int64_t until = next_due - sp_clock_now_ms(&sp_clock_real);
        if (until < wait)
            wait = until < 1 ? 1 : until;
    }
    if (job_queue_wait(s->queue, wait, &err) != SP_OK) {
        log_warn("worker: %s", err.msg);
        pause_ms(t, WORKER_ERROR_PAUSE_MS);
    }
}

/* Logs a failed round: once per outage for all threads, then at debug level. */
static void
worker_failed(struct app *app, int *failing, int rc, const struct sp_error *err)
{
    int first = (*failing)++ == 0 && atomic_fetch_add(&app->workers_failing, 1) == 0;

    if (first || !sp_err_retryable(rc))
        log_warn("worker: %s: %s", sp_err_name(rc), err->msg);
    else
        log_debug("worker: %s: %s", sp_err_name(rc), err->msg);
}

static void
worker_run(struct bg_thread *t)
{
    struct app *app = t->app;
    struct arena *a = arena_new();
    struct redis *redis = app_thread_redis(app);
    struct delivery_deps d;
    struct delivery_pace pace;
    struct session s;
    int failing = 0; /* rounds failed in a row */

    for (;;) {
        struct sp_error err = {0};
        if (atomic_load(&t->stopping))
            goto out;
        if (session_open(app, &s, redis, &err) == SP_OK)
            break;
        log_warn("worker: %s", err.msg);
        pause_ms(t, WORKER_ERROR_PAUSE_MS);
    }
    memset(&d, 0, sizeof(d));
    d.repo = &s.repo.base;
    d.queue = s.queue;
    d.clock = &sp_clock_real;
    d.senders = &app->senders;
    d.lease_ms = app->cfg->job_lease_ms;
    delivery_pace_init(&pace, app->cfg->worker_batch, app->cfg->worker_batch_ms);
    d.pace = &pace;
    d.jitter_pct = WORKER_JITTER_PCT;
    d.random = sp_random;
    d.gen = app->gen;
    d.fallback = app->fallback_gen;
    d.policy = &app->policy;
    d.counters = &app->sends;

    while (!atomic_load(&t->stopping)) {
        struct sp_error err = {0};
        int64_t next_due = 0;
        int did_work = 0;
        int rc;

        if (job_queue_maintain(s.queue, sp_clock_now_ms(&sp_clock_real), &err) != SP_OK) {
            if (err.code != SP_EUNAVAIL) /* an outage: the round below says so */
                log_warn("worker: stalled-job check: %s", err.msg);
            sp_error_clear(&err);
        }
        rc = leads_delivery_tick(&d, a, &did_work, &next_due, &err);
        arena_reset(a);
        if (rc != SP_OK) {
            worker_failed(app, &failing, rc, &err);
            pause_ms(t, WORKER_ERROR_PAUSE_MS);
            continue;
        }
        if (failing > 0 && atomic_fetch_sub(&app->workers_failing, 1) == 1)
            log_info("workers: working again");
        failing = 0;
        if (!did_work)
            worker_idle(t, &s, next_due);
    }
    session_close(app, &s);
out:
    redis_free(redis);
    arena_free(a);
}

/* ---- the keeper ------------------------------------------------------------------------------ */

/* One renewal of every lease the process holds; logged once per failure streak. */
static void
keep_leases(struct app *app, struct redis *redis, int *failing)
{
    struct sp_error err = {0};
    struct session s;
    int rc = queue_sql_node_keepalive(&app->node, &err);

    if (rc == SP_OK)
        rc = session_open(app, &s, redis, &err);
    if (rc == SP_OK) {
        rc =
            job_queue_renew(s.queue, sp_clock_now_ms(&sp_clock_real), app->cfg->job_lease_ms, &err);
        session_close(app, &s);
    }
    if (rc != SP_OK && !*failing)
        log_warn("lease renewal: %s", err.msg);
    else if (rc == SP_OK && *failing)
        log_info("lease renewal: working again");
    *failing = rc != SP_OK;
}

static void
keeper_run(struct bg_thread *t)
{
    struct app *app = t->app;
    struct redis *redis = app_thread_redis(app);
    /* BullMQ renews every lockDuration / 2; a third leaves slack. At least once a second, so
     * that a liveness lock lost with its connection (a database restart) is taken again well
     * within the others' grace period (QUEUE_SQL_DEAD_GRACE_MS). */
    int64_t every = app->cfg->job_lease_ms / 3;
    int failing = 0;

    if (every > KEEPER_MAX_MS)
        every = KEEPER_MAX_MS;
    if (every < KEEPER_MIN_MS)
        every = KEEPER_MIN_MS;
    while (!atomic_load(&t->stopping)) {
        keep_leases(app, redis, &failing);
        pause_ms(t, every);
    }
    redis_free(redis);
}

/* ---- the outbox relay ------------------------------------------------------------------------ */

static void
relay_run(struct bg_thread *t)
{
    struct redis *redis = app_thread_redis(t->app);
    outbox_relay_run(&t->app->relay, redis, &t->stopping);
    redis_free(redis);
}

int
runtime_start(struct app *app, int nworkers)
{
    int rc = SP_OK;

    if (app->queue->redis)
        rc = bg_start(&app->relayer, app, "outbox relay", relay_run, &app->relay_signal);
    if (rc == SP_OK && nworkers > 0)
        rc = bg_start(&app->keeper, app, "lease keeper", keeper_run, &app->signal);
    if (rc == SP_OK && nworkers > 0)
        app->workers = xcalloc((size_t)nworkers, sizeof(*app->workers));
    for (int i = 0; rc == SP_OK && i < nworkers; i++) {
        rc = bg_start(&app->workers[i], app, "worker", worker_run, &app->signal);
        if (rc == SP_OK)
            app->nworkers++;
    }
    return rc;
}

void
runtime_stop(struct app *app)
{
    /* Every worker is told first, then each is joined: they finish in parallel. */
    for (int i = 0; i < app->nworkers; i++)
        atomic_store(&app->workers[i].stopping, 1);
    for (int i = 0; i < app->nworkers; i++)
        bg_stop(&app->workers[i]);
    free(app->workers);
    app->workers = NULL;
    app->nworkers = 0;
    bg_stop(&app->keeper); /* after the workers: their last jobs keep their leases to the end */
    bg_stop(&app->relayer);
}
