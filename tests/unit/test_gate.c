/* test_gate.c: core/gate: never more holders than slots, turns in arrival order (a thread that
 * leaves and enters again queues behind the waiters), a holder that overstays its lease loses
 * the slot to the oldest waiter and its late leave changes nothing. Waits poll, no sleeps. */
#include "t.h"

#include "core/clock.h"
#include "core/gate.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

/* Polls until `g` has `n` waiters (at most 10 s). */
static int
waiters_reach(struct gate *g, int n)
{
    int64_t until = sp_mono_ms() + 10000;

    while (gate_waiters(g) != n) {
        if (sp_mono_ms() > until)
            return 0;
        sched_yield();
    }
    return 1;
}

/* ---- at most `slots` inside ---------------------------------------------------------------- */

struct crowd {
    struct gate *g;
    atomic_int inside, most, done;
};

static void *
crowd_member(void *arg)
{
    struct crowd *c = arg;
    struct gate_pass p = GATE_PASS_INIT;

    for (int i = 0; i < 300; i++) {
        gate_enter(c->g, &p);
        int now = atomic_fetch_add(&c->inside, 1) + 1;
        int most = atomic_load(&c->most);
        while (now > most && !atomic_compare_exchange_weak(&c->most, &most, now))
            ;
        for (int k = 0; k < 3; k++)
            sched_yield(); /* stay inside a little: let the others try */
        atomic_fetch_sub(&c->inside, 1);
        atomic_fetch_add(&c->done, 1);
        gate_leave(c->g, &p);
    }
    return NULL;
}

TEST(unit_gate_never_lets_in_more_than_its_slots)
{
    struct crowd c = {0};
    struct sp_error err = {0};
    pthread_t t[8];

    ASSERT_OK(gate_new(2, 60000, &c.g, &err));
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(0, pthread_create(&t[i], NULL, crowd_member, &c));
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    ASSERT_EQ(8 * 300, atomic_load(&c.done));
    ASSERT(atomic_load(&c.most) <= 2);
    ASSERT_EQ(2, atomic_load(&c.most)); /* and it did let two in */
    ASSERT_EQ(0, gate_waiters(c.g));
    gate_free(c.g);
}

TEST(unit_gate_refuses_no_slots)
{
    struct gate *g = NULL;
    struct sp_error err = {0};

    ASSERT_EQ(SP_EINVAL, gate_new(0, 100, &g, &err));
    ASSERT(g == NULL);
    ASSERT_EQ(SP_EINVAL, gate_new(1, 0, &g, &err));
}

/* ---- arrival order -------------------------------------------------------------------------- */

struct queuer {
    struct gate *g;
    atomic_int *next; /* the order of service, shared */
    int served;       /* this one's place in it */
};

static void *
queue_up(void *arg)
{
    struct queuer *q = arg;
    struct gate_pass p = GATE_PASS_INIT;

    gate_enter(q->g, &p);
    q->served = atomic_fetch_add(q->next, 1);
    gate_leave(q->g, &p);
    return NULL;
}

TEST(unit_gate_serves_in_arrival_order_without_barging)
{
    struct gate *g = NULL;
    struct sp_error err = {0};
    struct gate_pass mine = GATE_PASS_INIT;
    atomic_int next = 0;
    struct queuer q[3];
    pthread_t t[3];

    ASSERT_OK(gate_new(1, 60000, &g, &err));
    gate_enter(g, &mine);
    ASSERT(gate_holds(&mine));
    for (int i = 0; i < 3; i++) {
        q[i] = (struct queuer){g, &next, -1};
        ASSERT_EQ(0, pthread_create(&t[i], NULL, queue_up, &q[i]));
        ASSERT(waiters_reach(g, i + 1)); /* queued before the next one starts */
    }
    /* Leaving and entering again: the three waiting go first. */
    gate_leave(g, &mine);
    ASSERT(!gate_holds(&mine));
    gate_enter(g, &mine);
    int me = atomic_fetch_add(&next, 1);
    gate_leave(g, &mine);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ASSERT_EQ(i, q[i].served);
    }
    ASSERT_EQ(3, me);
    gate_free(g);
}

TEST(unit_gate_enter_while_holding_keeps_the_slot)
{
    struct gate *g = NULL;
    struct sp_error err = {0};
    struct gate_pass p = GATE_PASS_INIT, other = GATE_PASS_INIT;

    ASSERT_OK(gate_new(2, 60000, &g, &err));
    gate_enter(g, &p);
    int slot = p.slot;
    p.bytes = 5;
    gate_enter(g, &p); /* held: no second slot, the count kept */
    ASSERT_EQ(slot, p.slot);
    ASSERT_EQ(5, (int)p.bytes);
    gate_enter(g, &other); /* the second slot is still free */
    ASSERT(other.slot != p.slot);
    gate_leave(g, &p);
    gate_leave(g, &p); /* twice: a no-op */
    gate_leave(g, &other);
    ASSERT_EQ(0, gate_waiters(g));
    gate_free(g);
}

/* ---- leases --------------------------------------------------------------------------------- */

struct taker {
    struct gate *g;
    struct gate_pass p;
};

static void *
take_slot(void *arg)
{
    struct taker *k = arg;

    gate_enter(k->g, &k->p);
    return NULL;
}

TEST(unit_gate_an_overstayed_lease_goes_to_the_oldest_waiter)
{
    struct gate *g = NULL;
    struct sp_error err = {0};
    struct gate_pass stuck = GATE_PASS_INIT;
    struct taker a = {0};
    pthread_t ta;

    /* A lease long enough for the checks below, even under valgrind. */
    ASSERT_OK(gate_new(1, 1000, &g, &err));
    gate_enter(g, &stuck); /* and never leaves in time: a client that stopped reading */
    a.g = g;
    a.p = (struct gate_pass)GATE_PASS_INIT;
    ASSERT_EQ(0, pthread_create(&ta, NULL, take_slot, &a));
    pthread_join(ta, NULL);
    ASSERT(a.p.since_ms - stuck.since_ms >= 1000); /* not before the lease ran out */
    ASSERT(gate_holds(&a.p));
    /* The stale holder's leave frees nothing: a still holds the only slot. */
    gate_leave(g, &stuck);
    ASSERT(!gate_holds(&stuck));
    ASSERT_EQ(0, gate_slots_free(g));
    gate_leave(g, &a.p);
    ASSERT_EQ(1, gate_slots_free(g));
    gate_free(g);
}

/* Holders that never leave, one after another: each waiter, once at the head of the queue,
 * takes the slot when its holder's lease ends (none waits for ever behind a head served by a
 * steal). Joins are bounded: a missed wake-up fails the test instead of hanging it. */
TEST(unit_gate_every_waiter_gets_a_turn_behind_stuck_holders)
{
    struct gate *g = NULL;
    struct sp_error err = {0};
    struct gate_pass stuck = GATE_PASS_INIT;
    struct taker k[3];
    pthread_t t[3];

    ASSERT_OK(gate_new(1, 50, &g, &err));
    gate_enter(g, &stuck);
    for (int i = 0; i < 3; i++) {
        k[i] = (struct taker){g, GATE_PASS_INIT};
        ASSERT_EQ(0, pthread_create(&t[i], NULL, take_slot, &k[i])); /* holds for ever */
    }
    for (int i = 0; i < 3; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 20;
        ASSERT_EQ(0, pthread_timedjoin_np(t[i], NULL, &until));
        ASSERT(gate_holds(&k[i].p));
    }
    /* One slot, taken three times over, a lease apart at least. */
    int64_t grants[4] = {stuck.since_ms, k[0].p.since_ms, k[1].p.since_ms, k[2].p.since_ms};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 4; j++)
            ASSERT(grants[j] - grants[i] >= 50 || grants[i] - grants[j] >= 50);
    ASSERT_EQ(0, gate_waiters(g));
    gate_free(g);
}
