/* events_feed.c: the process's part of GET /events: its hub (core/sse_hub.h), the thread that
 * publishes into it (features/leads/presentation/events_http.h), how that thread learns that
 * events were committed, and the stores the streams read from.
 *
 * One thread per process, whatever the number of streams. It sleeps in poll() on an eventfd
 * and, on PostgreSQL, on a connection of its own that LISTENs on "salespad_events", and runs a
 * publishing round when:
 * - this process committed events: every pooled connection's announced commit (db.h,
 *   db_conn_announce, made by the event repository) pokes the eventfd;
 * - another process did: on PostgreSQL it NOTIFYs after its commit (below); on SQLite nothing
 *   tells, so a round runs every FEED_POLL_SQLITE_MS anyway (one indexed max() read);
 * - a PostgreSQL round left a position waiting for writers to end (the fence, lead_repo.h): it
 *   is checked again FEED_ROUND_MIN_MS later;
 * - at least every FEED_POLL_PG_MS on PostgreSQL, should a notification be lost.
 * Rounds are at least FEED_ROUND_MIN_MS apart, so that under load one publication (and one
 * wake-up of every stream) carries many events. With no stream open, rounds run on the timer
 * only and render nothing (they only move the hub's mark): a stream opened then starts at that
 * mark, so it may get the events of the last FEED_POLL_*_MS before it opened.
 *
 * NOTIFY is sent after the commit, by this thread, not in the writing transaction: PostgreSQL
 * serialises the commits of all transactions that NOTIFY (a database-wide lock held through
 * the commit record's flush), which would cap captures at one commit flush at a time. One
 * NOTIFY, carrying nothing, covers every commit of the last FEED_NOTIFY_GAP_MS; receivers read
 * the table. A worker process on PostgreSQL runs this thread only to NOTIFY; on SQLite it runs
 * none. */
#include "app/wiring.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/gate.h"
#include "core/log.h"
#include "core/sse_hub.h"
#include "core/xmalloc.h"
#include "features/leads/presentation/events_http.h"
#include "infra/db.h"
#include "infra/db_pg.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FEED_ROUND_MIN_MS 100
#define FEED_POLL_SQLITE_MS 100
#define FEED_POLL_PG_MS 250
#define FEED_NOTIFY_GAP_MS 10
#define FEED_RECONNECT_MS 1000
#define FEED_RETRY_MS 2000 /* the clients' reconnection delay (SSE retry:) */
/* The ring: the recent events (128k at most, 64 MiB of frames at most, 2 minutes old at
 * most): enough for a thousand streams to fall behind through a burst of overload and catch up
 * from memory (each event rendered once); a stream further behind reads the store, rendering
 * for itself. The age bound gives a quiet process its memory back. */
#define HUB_FRAMES (128 * 1024)
#define HUB_BYTES ((size_t)64 * 1024 * 1024)
#define HUB_MAX_AGE_MS (120 * 1000)
/* Streams reading the store at once (a resume, a slow client): the others wait their turn, so
 * that a thousand of them never hold the pool's connections the API needs. */
#define STORE_READERS 4
/* Streams copying and sending at once (core/gate.h): one per core the process may use (two on
 * the machine it was measured on), at most GATE_SLOTS_MAX; more would only add runnable threads, as
 * one stream fills a socket at memory speed. A stream whose client stops reading holds its slot
 * GATE_LEASE_MS at most. */
#define GATE_SLOTS_MAX 16
#define GATE_LEASE_MS 100
#define NEVER INT64_MAX

struct events_feed {
    struct app *app;
    struct sse_hub *hub; /* NULL without HTTP: the thread only NOTIFYs */
    struct gate *gate;   /* the streams' turns; with the hub */
    struct events_http http;
    struct lead_feed_fence fence;
    struct arena *arena;
    pthread_mutex_t slots_mu; /* guards the two below */
    pthread_cond_t slots_cv;
    int slots_free;   /* of STORE_READERS */
    int closing;      /* events_feed_close: no more store reads for streams */
    int wake_fd;      /* eventfd: pokes and stop */
    atomic_int poked; /* a poke is on its way to the thread */
    atomic_int stopping;
    pthread_t tid;
    int running;
    int is_pg;
    struct db_conn *listen; /* PostgreSQL: LISTEN and NOTIFY; NULL until connected */
    int listen_session;     /* the session LISTEN was issued on (0: not yet) */
    int64_t round_due, notify_due, last_round, last_notify, last_connect;
    int failing;        /* rounds failed in a row (logged once per streak) */
    int listen_failing; /* LISTEN or its connection failed in a row (logged once) */
};

/* ---- the stores of the streams ----------------------------------------------------------- */

/* Waits for a store slot; 0 when the feed is closing (the stream is about to end). */
static int
slot_take(struct events_feed *f)
{
    int ok;

    pthread_mutex_lock(&f->slots_mu);
    while (f->slots_free == 0 && !f->closing)
        pthread_cond_wait(&f->slots_cv, &f->slots_mu);
    ok = !f->closing;
    if (ok)
        f->slots_free--;
    pthread_mutex_unlock(&f->slots_mu);
    return ok;
}

static void
slot_give(struct events_feed *f)
{
    pthread_mutex_lock(&f->slots_mu);
    f->slots_free++;
    pthread_cond_signal(&f->slots_cv);
    pthread_mutex_unlock(&f->slots_mu);
}

static int
store_open(void *ctx, struct lead_repo **out, struct sp_error *err)
{
    struct events_feed *f = ctx;
    struct session *s;
    int rc;

    if (!slot_take(f))
        return sp_error_set(err, SP_EUNAVAIL, NULL, "events: the process is stopping");
    s = xmalloc(sizeof(*s));
    rc = session_open(f->app, s, NULL, err);
    if (rc != SP_OK) {
        slot_give(f);
        free(s);
        return rc;
    }
    /* No request deadline: a stream's read is background work that may wait its turn (each
     * lock wait is still bounded by the driver's busy timeout), and a failure is retried. */
    *out = &s->repo.base; /* first member of the session's repo, itself in the session */
    return SP_OK;
}

static void
store_close(void *ctx, struct lead_repo *r)
{
    struct events_feed *f = ctx;
    /* r is &s->repo.base, the first member of s->repo (store_open). */
    struct session *s = (struct session *)(void *)((char *)r - offsetof(struct session, repo));

    session_close(f->app, s);
    free(s);
    slot_give(f);
}

/* ---- pokes ------------------------------------------------------------------------------- */

static void
wake(struct events_feed *f)
{
    uint64_t one = 1;

    if (write(f->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("events: cannot wake the feed thread: %s", strerror(errno));
}

void
events_feed_poke(void *ctx)
{
    struct events_feed *f = ctx;

    if (!atomic_exchange(&f->poked, 1))
        wake(f);
}

/* ---- the thread --------------------------------------------------------------------------- */

static int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Logs the first failure of a streak of the listening connection; the end of it at info. */
static void
listen_failed(struct events_feed *f, const char *what, const struct sp_error *err)
{
    if (f->listen_failing++ == 0)
        log_warn("events: %s (retrying every %d ms; other processes' events are found by "
                 "polling meanwhile): %s",
                 what, FEED_RECONNECT_MS, err->msg);
}

/* PostgreSQL: (re)connects the listening connection and issues LISTEN on a new session, at
 * most every FEED_RECONNECT_MS while that fails. Returns 1 when it just started listening
 * (notifications may have been missed meanwhile). */
static int
ensure_listening(struct events_feed *f, int64_t now)
{
    struct sp_error err = {0};
    int session;

    if (f->listen != NULL) {
        session = db_pg_session_id(f->listen);
        if (session != 0 && (session == f->listen_session || f->hub == NULL))
            return 0; /* listening (or, in a worker, connected: it only notifies) */
    }
    if (f->last_connect && now - f->last_connect < FEED_RECONNECT_MS)
        return 0;
    f->last_connect = now;
    f->listen_session = 0;
    if (f->listen == NULL && db_pg_connect(f->app->pg, &f->listen, &err) != SP_OK) {
        listen_failed(f, "cannot connect to hear other processes' events", &err);
        return 0;
    }
    if (f->hub == NULL)
        return 0;
    if (f->listen->ops->exec_script(f->listen, "LISTEN salespad_events", &err) != SP_OK) {
        listen_failed(f, "LISTEN failed", &err);
        return 0;
    }
    f->listen_session = db_pg_session_id(f->listen);
    if (f->listen_failing > 0)
        log_info("events: listening to other processes' events again");
    f->listen_failing = 0;
    return 1;
}

static void
notify(struct events_feed *f, int64_t now)
{
    struct sp_error err = {0};

    f->notify_due = NEVER;
    f->last_notify = now;
    if (f->listen == NULL)
        ensure_listening(f, now);
    if (f->listen != NULL &&
        f->listen->ops->exec_script(f->listen, "NOTIFY salespad_events", &err) != SP_OK)
        log_debug("events: NOTIFY failed: %s", err.msg); /* the others' timer catches up */
}

/* One publishing round on a pooled session. */
static void
round_run(struct events_feed *f, int64_t now)
{
    struct sp_error err = {0};
    struct session s;
    int rc = session_open(f->app, &s, NULL, &err);

    if (rc == SP_OK) {
        rc = events_http_publish(f->hub, &s.repo.base, &f->fence, f->arena, &err);
        session_close(f->app, &s);
    }
    sse_hub_expire(f->hub, HUB_MAX_AGE_MS);
    arena_reset(f->arena);
    if (rc != SP_OK && f->failing++ == 0)
        log_warn("events: the feed cannot read new events (retrying): %s", err.msg);
    else if (rc == SP_OK && f->failing > 0) {
        log_info("events: the feed reads new events again");
        f->failing = 0;
    }
    f->last_round = now;
    if ((f->fence.mark > 0 || rc != SP_OK) && sse_hub_readers(f->hub) > 0)
        f->round_due = now + FEED_ROUND_MIN_MS;
    else
        f->round_due = now + (f->is_pg ? FEED_POLL_PG_MS : FEED_POLL_SQLITE_MS);
}

/* Something was committed (here or elsewhere): a round soon, if a stream listens. */
static void
round_soon(struct events_feed *f)
{
    if (f->hub != NULL && sse_hub_readers(f->hub) > 0)
        f->round_due = min64(f->round_due, f->last_round + FEED_ROUND_MIN_MS);
}

/* Waits for a poke, a notification or the next due time; returns what arrived. */
static void
wait_for_work(struct events_feed *f, int64_t now, int *local, int *remote)
{
    struct pollfd fds[2];
    int nfds = 1, count = 0;
    int64_t due = min64(f->round_due, f->notify_due);
    int timeout = due == NEVER ? FEED_POLL_PG_MS : (int)(due > now ? due - now : 0);
    uint64_t v;
    struct sp_error err = {0};

    *local = 0;
    *remote = 0;
    fds[0].fd = f->wake_fd;
    fds[0].events = POLLIN;
    if (f->listen_session != 0 && db_pg_socket(f->listen) >= 0) {
        fds[1].fd = db_pg_socket(f->listen);
        fds[1].events = POLLIN;
        nfds = 2;
    }
    if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR)
        log_warn("events: poll: %s", strerror(errno));
    if (fds[0].revents & POLLIN) {
        atomic_store(&f->poked, 0); /* before the read: a later poke writes again */
        if (read(f->wake_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            *local = 1;
    }
    if (nfds == 2 && fds[1].revents != 0) {
        if (db_pg_notifications(f->listen, &count, &err) != SP_OK) {
            listen_failed(f, "the listening connection was lost", &err);
            f->listen_session = 0;
            f->last_connect = 0; /* listen again at once */
        }
        *remote = count > 0;
    }
}

static void *
feed_main(void *arg)
{
    struct events_feed *f = arg;

    for (;;) {
        int64_t now = sp_mono_ms();
        int local, remote;

        if (f->is_pg && ensure_listening(f, now))
            round_soon(f); /* notifications may have been missed while not listening */
        wait_for_work(f, now, &local, &remote);
        if (atomic_load(&f->stopping))
            break;
        now = sp_mono_ms();
        if (local && f->is_pg)
            f->notify_due = min64(f->notify_due, f->last_notify + FEED_NOTIFY_GAP_MS);
        if (local || remote)
            round_soon(f);
        if (now >= f->notify_due)
            notify(f, now);
        if (f->hub != NULL && now >= f->round_due)
            round_run(f, now);
    }
    /* Commits announced since the last NOTIFY (the workers finishing their jobs) are told. */
    if (f->notify_due != NEVER)
        notify(f, sp_mono_ms());
    return NULL;
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* The CPUs this process may run on (its affinity: a container's cpuset), 1..GATE_SLOTS_MAX. */
static int
cores_usable(void)
{
    cpu_set_t set;
    long n = 0;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > GATE_SLOTS_MAX ? GATE_SLOTS_MAX : (int)n;
}

int
events_feed_start(struct app *app, int with_streams, struct events_feed **out, struct sp_error *err)
{
    struct events_feed *f;

    *out = NULL;
    if (!with_streams && app->pg == NULL)
        return SP_OK; /* a SQLite worker: the serve processes poll the table */
    f = xcalloc(1, sizeof(*f));
    f->app = app;
    f->is_pg = app->pg != NULL;
    f->arena = arena_new();
    pthread_mutex_init(&f->slots_mu, NULL);
    pthread_cond_init(&f->slots_cv, NULL);
    f->slots_free = STORE_READERS;
    atomic_init(&f->poked, 0);
    atomic_init(&f->stopping, 0);
    f->round_due = with_streams ? 0 : NEVER;
    f->notify_due = NEVER;
    f->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (f->wake_fd < 0) {
        int e = errno;
        arena_free(f->arena);
        pthread_cond_destroy(&f->slots_cv);
        pthread_mutex_destroy(&f->slots_mu);
        free(f);
        return sp_error_set(err, SP_EINTERNAL, NULL, "events: eventfd: %s", strerror(e));
    }
    if (with_streams) {
        int slots = cores_usable();
        int rc = gate_new(slots, GATE_LEASE_MS, &f->gate, err);
        if (rc != SP_OK) {
            events_feed_free(f); /* not running yet: frees what was made */
            return rc;
        }
        f->hub = sse_hub_new(HUB_FRAMES, HUB_BYTES, 0);
        f->http.hub = f->hub;
        f->http.gate = f->gate;
        f->http.store.open = store_open;
        f->http.store.close = store_close;
        f->http.store.ctx = f;
        f->http.heartbeat_ms = app->cfg->events_heartbeat_ms;
        f->http.retry_ms = FEED_RETRY_MS;
    }
    /* Before any thread uses the pool (db_pool_on_commit). */
    db_pool_on_commit(app->pool, events_feed_poke, f);
    if (pthread_create(&f->tid, NULL, feed_main, f) != 0) {
        db_pool_on_commit(app->pool, NULL, NULL);
        events_feed_free(f);
        return sp_error_set(err, SP_EINTERNAL, NULL, "events: cannot start the feed thread");
    }
    f->running = 1;
    *out = f;
    return SP_OK;
}

const struct events_http *
events_feed_http(const struct events_feed *f)
{
    return f != NULL && f->hub != NULL ? &f->http : NULL;
}

void
events_feed_close(struct events_feed *f)
{
    if (f == NULL || f->hub == NULL)
        return;
    /* Streams waiting for a store slot give up (they would otherwise read page after page,
     * their turn after turn, while the server waits for them to end). */
    pthread_mutex_lock(&f->slots_mu);
    f->closing = 1;
    pthread_cond_broadcast(&f->slots_cv);
    pthread_mutex_unlock(&f->slots_mu);
    sse_hub_close(f->hub);
}

void
events_feed_free(struct events_feed *f)
{
    if (f == NULL)
        return;
    if (f->running) {
        atomic_store(&f->stopping, 1);
        wake(f);
        pthread_join(f->tid, NULL);
    }
    db_close(f->listen);
    sse_hub_free(f->hub);
    gate_free(f->gate);
    arena_free(f->arena);
    pthread_cond_destroy(&f->slots_cv);
    pthread_mutex_destroy(&f->slots_mu);
    close(f->wake_fd);
    free(f);
}
