/* gate.c: see gate.h.
 *
 * Waiters queue in arrival order, each on a condition variable of its own (on its stack), so a
 * freed slot wakes exactly one thread: a broadcast would make a thousand streams runnable to
 * find that one of them may go, the very thing the gate is for. Only the queue's head sleeps
 * with a deadline (the oldest lease's end), to take a slot whose holder overstays; the others
 * sleep until the head before them is served, which wakes the next head. */
#include "core/gate.h"

#include "core/clock.h"
#include "core/xmalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct waiter {
    pthread_cond_t cv;
    int monotonic; /* cv's deadlines are on CLOCK_MONOTONIC (else CLOCK_REALTIME) */
    int slot;      /* -1 until granted */
    struct waiter *next;
};

struct slot {
    uint64_t gen; /* moves on at every grant and release: a pass with an older one is stale */
    int busy;
    int64_t since_ms;
};

struct gate {
    pthread_mutex_t mu;
    int nslots, lease_ms;
    int nwaiting;
    struct slot *slots;
    struct waiter *head, *tail;
};

int
gate_new(int slots, int lease_ms, struct gate **out, struct sp_error *err)
{
    struct gate *g;

    *out = NULL;
    if (slots < 1 || lease_ms < 1)
        return sp_error_set(err, SP_EINVAL, "gate", "slots and lease must be positive");
    g = xcalloc(1, sizeof(*g));
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return sp_error_set(err, SP_EINTERNAL, "gate", "cannot create its lock");
    }
    g->nslots = slots;
    g->lease_ms = lease_ms;
    g->slots = xcalloc((size_t)slots, sizeof(*g->slots));
    *out = g;
    return SP_OK;
}

void
gate_free(struct gate *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g->slots);
    free(g);
}

/* Whether p holds slot p->slot still; the caller holds the lock. */
static int
holds_live(const struct gate *g, const struct gate_pass *p)
{
    return p->slot >= 0 && p->slot < g->nslots && g->slots[p->slot].busy &&
           g->slots[p->slot].gen == p->gen;
}

static int
free_slot(const struct gate *g)
{
    for (int i = 0; i < g->nslots; i++)
        if (!g->slots[i].busy)
            return i;
    return -1;
}

/* The busy slot granted longest ago (every slot is busy). */
static int
oldest_slot(const struct gate *g)
{
    int s = 0;

    for (int i = 1; i < g->nslots; i++)
        if (g->slots[i].since_ms < g->slots[s].since_ms)
            s = i;
    return s;
}

static void
take(struct gate *g, int s)
{
    g->slots[s].gen++;
    g->slots[s].busy = 1;
    g->slots[s].since_ms = sp_mono_ms();
}

/* Slot s to the queue's head, which leaves the queue; the next head is woken to keep the
 * deadline watch. The caller holds the lock. */
static void
grant_head(struct gate *g, int s)
{
    struct waiter *w = g->head;

    take(g, s);
    w->slot = s;
    g->head = w->next;
    if (g->head == NULL)
        g->tail = NULL;
    pthread_cond_signal(&w->cv);
    if (g->head != NULL)
        pthread_cond_signal(&g->head->cv);
}

/* The moment `due` (sp_mono_ms() time) on the clock of w's condition variable. */
static void
deadline_ts(const struct waiter *w, int64_t due, struct timespec *ts)
{
    if (!w->monotonic) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        due += (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - sp_mono_ms();
    }
    ts->tv_sec = (time_t)(due / 1000);
    ts->tv_nsec = (long)(due % 1000) * 1000000L;
}

/* Queues the caller and sleeps until it is granted a slot; the caller holds the lock. */
static int
wait_turn(struct gate *g)
{
    struct waiter w = {.slot = -1, .next = NULL};
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    w.monotonic = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0;
    pthread_cond_init(&w.cv, &attr);
    pthread_condattr_destroy(&attr);
    if (g->tail != NULL)
        g->tail->next = &w;
    else
        g->head = &w;
    g->tail = &w;
    g->nwaiting++;
    while (w.slot < 0) {
        if (g->head == &w) {
            int s = free_slot(g);
            int64_t due;
            struct timespec ts;

            if (s < 0) {
                s = oldest_slot(g);
                due = g->slots[s].since_ms + g->lease_ms;
                if (due > sp_mono_ms()) {
                    deadline_ts(&w, due, &ts);
                    pthread_cond_timedwait(&w.cv, &g->mu, &ts);
                    continue;
                }
                /* Its holder overstayed: its pass goes stale (take() moves the generation). */
            }
            grant_head(g, s);
        } else {
            pthread_cond_wait(&w.cv, &g->mu);
        }
    }
    g->nwaiting--;
    pthread_cond_destroy(&w.cv);
    return w.slot;
}

void
gate_enter(struct gate *g, struct gate_pass *p)
{
    int s;

    pthread_mutex_lock(&g->mu);
    if (holds_live(g, p)) {
        pthread_mutex_unlock(&g->mu);
        return;
    }
    s = g->head == NULL ? free_slot(g) : -1;
    if (s >= 0)
        take(g, s);
    else
        s = wait_turn(g);
    p->slot = s;
    p->gen = g->slots[s].gen;
    p->since_ms = g->slots[s].since_ms;
    p->bytes = 0;
    pthread_mutex_unlock(&g->mu);
}

void
gate_leave(struct gate *g, struct gate_pass *p)
{
    if (p->slot < 0)
        return;
    pthread_mutex_lock(&g->mu);
    if (holds_live(g, p)) {
        if (g->head != NULL) {
            grant_head(g, p->slot);
        } else {
            g->slots[p->slot].busy = 0;
            g->slots[p->slot].gen++;
        }
    }
    pthread_mutex_unlock(&g->mu);
    p->slot = -1;
}

int
gate_holds(const struct gate_pass *p)
{
    return p->slot >= 0;
}

int
gate_waiters(struct gate *g)
{
    int n;

    pthread_mutex_lock(&g->mu);
    n = g->nwaiting;
    pthread_mutex_unlock(&g->mu);
    return n;
}

int
gate_slots_free(struct gate *g)
{
    int n = 0;

    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < g->nslots; i++)
        n += !g->slots[i].busy;
    pthread_mutex_unlock(&g->mu);
    return n;
}
