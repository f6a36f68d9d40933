/* conn_reaper.c: see conn_reaper.h. */
#include "core/conn_reaper.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define REAPER_TICK_MS 250 /* how late the reaper may notice a late connection, at most */

struct conn_track {
    struct conn_track *prev, *next; /* under the reaper's lock */
    int fd;
    int is_reaped; /* under the reaper's lock */
    /* Written by the connection's thread without the lock, read by the reaper: a phase change
     * stores body_len and since_ms before the phase, so a reaper that sees the new phase also
     * sees its clock; any mix it can see is never late by mistake. */
    atomic_int phase;       /* enum conn_phase */
    atomic_llong since_ms;  /* monotonic start of the phase */
    atomic_ullong body_len; /* bytes received in CONN_BODY */
};

struct conn_reaper {
    int header_timeout_ms;
    int body_min_rate;
    pthread_mutex_t lock; /* guards the list and is_stopping */
    pthread_cond_t wake;
    struct conn_track *conns;
    int is_stopping;
    pthread_t thread;
};

/* Whether the connection is too slow (see conn_reaper.h). */
static int
is_late(const struct conn_reaper *r, const struct conn_track *t, int64_t now)
{
    int phase = atomic_load(&t->phase);
    int64_t elapsed = now - (int64_t)atomic_load(&t->since_ms);
    uint64_t body_len = atomic_load(&t->body_len);

    if (t->is_reaped || phase == CONN_HANDLER)
        return 0;
    if (phase == CONN_HEADERS)
        return elapsed > r->header_timeout_ms;
    elapsed -= r->header_timeout_ms;
    return elapsed > 0 && body_len * 1000 < (uint64_t)r->body_min_rate * (uint64_t)elapsed;
}

/* Under the lock: shuts down every late connection; returns how many. */
static int
reap_late(struct conn_reaper *r, int64_t now)
{
    int n = 0;

    for (struct conn_track *t = r->conns; t; t = t->next) {
        if (!is_late(r, t, now))
            continue;
        t->is_reaped = 1;
        if (shutdown(t->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
            log_warn("http: shutdown of a late connection: %s", strerror(errno));
        n++;
    }
    return n;
}

static void *
reaper_main(void *arg)
{
    struct conn_reaper *r = arg;
    struct timespec until;
    int n;

    pthread_mutex_lock(&r->lock);
    while (!r->is_stopping) {
        n = reap_late(r, sp_mono_ms());
        if (n > 0)
            log_info("http: closed %d connections too slow to send their request", n);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += REAPER_TICK_MS * 1000L * 1000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        /* ETIMEDOUT is the usual wake-up; stop sets is_stopping before it signals. */
        (void)pthread_cond_timedwait(&r->wake, &r->lock, &until);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* A condition variable on the monotonic clock, as the reaper's deadlines are. */
static int
cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);

    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

int
conn_reaper_start(int header_timeout_ms, int body_min_rate, struct conn_reaper **out,
                  struct sp_error *err)
{
    struct conn_reaper *r = xcalloc(1, sizeof(*r));
    const char *what = "mutex";
    int rc;

    *out = NULL;
    r->header_timeout_ms = header_timeout_ms;
    r->body_min_rate = body_min_rate;
    rc = pthread_mutex_init(&r->lock, NULL);
    if (rc == 0) {
        what = "condition variable";
        rc = cond_init_monotonic(&r->wake);
        if (rc == 0) {
            what = "thread";
            rc = pthread_create(&r->thread, NULL, reaper_main, r);
            if (rc == 0) {
                *out = r;
                return SP_OK;
            }
            pthread_cond_destroy(&r->wake);
        }
        pthread_mutex_destroy(&r->lock);
    }
    free(r);
    return sp_error_set(err, SP_EINTERNAL, NULL, "connection reaper %s: %s", what, strerror(rc));
}

void
conn_reaper_stop(struct conn_reaper *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->is_stopping = 1;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    if (r->conns != NULL)
        log_error("http: connection reaper stopped with connections still registered");
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

struct conn_track *
conn_reaper_add(struct conn_reaper *r, int fd)
{
    struct conn_track *t = xcalloc(1, sizeof(*t));

    t->fd = fd;
    atomic_init(&t->phase, (int)CONN_HEADERS);
    atomic_init(&t->since_ms, (long long)sp_mono_ms());
    atomic_init(&t->body_len, 0);
    pthread_mutex_lock(&r->lock);
    t->next = r->conns;
    if (r->conns)
        r->conns->prev = t;
    r->conns = t;
    pthread_mutex_unlock(&r->lock);
    return t;
}

void
conn_reaper_remove(struct conn_reaper *r, struct conn_track *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    if (t->prev)
        t->prev->next = t->next;
    else
        r->conns = t->next;
    if (t->next)
        t->next->prev = t->prev;
    pthread_mutex_unlock(&r->lock);
    free(t);
}

void
conn_track_phase(struct conn_track *t, enum conn_phase phase)
{
    atomic_store(&t->body_len, 0);
    atomic_store(&t->since_ms, (long long)sp_mono_ms());
    atomic_store(&t->phase, (int)phase);
}

void
conn_track_body(struct conn_track *t, size_t len)
{
    atomic_fetch_add(&t->body_len, (unsigned long long)len);
}
