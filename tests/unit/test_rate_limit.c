/* test_rate_limit.c: core/rate_limit's token buckets on a fake clock: the burst then refusals,
 * refill over time (and the header values along the way), fractional rates, one bucket per key,
 * bounded memory with least-recently-used eviction, a clock going backwards, and exactly `burst`
 * tokens handed out to threads racing for one key. */
#include "t.h"

#include "core/rate_limit.h"
#include "fakes/fake_io.h"

#include <pthread.h>

#define KEY(s) (s), strlen(s)

static struct rate_limit *
limiter(double rate, int burst, struct fake_clock *clock)
{
    struct rate_limit *rl = NULL;

    ASSERT_OK(rate_limit_new(rate, burst, &clock->base, &rl));
    return rl;
}

TEST(unit_rate_limit_rejects_bad_settings)
{
    struct fake_clock clock;
    struct rate_limit *rl = (struct rate_limit *)1;

    fake_clock_init(&clock, 0);
    ASSERT_EQ(SP_EINVAL, rate_limit_new(0, 1, &clock.base, &rl));
    ASSERT(rl == NULL);
    ASSERT_EQ(SP_EINVAL, rate_limit_new(-1, 1, &clock.base, &rl));
    ASSERT_EQ(SP_EINVAL, rate_limit_new(1, 0, &clock.base, &rl));
    ASSERT_EQ(SP_EINVAL, rate_limit_new(1.0 / 0.0, 1, &clock.base, &rl));
    rate_limit_free(NULL);
}

TEST(unit_rate_limit_burst_then_refused_then_refilled)
{
    struct fake_clock clock;
    struct rate_limit *rl;
    struct rate_limit_verdict v;

    fake_clock_init(&clock, 1000000);
    rl = limiter(2, 3, &clock); /* 3 at once, then one every 500 ms */
    for (int i = 0; i < 3; i++) {
        rate_limit_take(rl, KEY("alice"), &v);
        ASSERT_EQ(1, v.allowed);
        ASSERT_EQ(3, v.limit);
        ASSERT_EQ(2 - i, v.remaining);
        ASSERT_EQ(0, v.retry_after_s);
    }
    ASSERT_EQ(2, v.reset_s); /* 3 tokens back at 2 per second: 1.5 s, rounded up */
    rate_limit_take(rl, KEY("alice"), &v);
    ASSERT_EQ(0, v.allowed);
    ASSERT_EQ(0, v.remaining);
    ASSERT_EQ(1, v.retry_after_s); /* 0.5 s to the next token: at least 1 */
    ASSERT_EQ(2, v.reset_s);

    /* A refused request takes nothing: 499 ms later there is still no whole token... */
    clock.now += 499;
    rate_limit_take(rl, KEY("alice"), &v);
    ASSERT_EQ(0, v.allowed);
    /* ...and at 500 ms exactly one. */
    clock.now += 1;
    rate_limit_take(rl, KEY("alice"), &v);
    ASSERT_EQ(1, v.allowed);
    ASSERT_EQ(0, v.remaining);
    rate_limit_take(rl, KEY("alice"), &v);
    ASSERT_EQ(0, v.allowed);

    /* Idle long enough: full again, never more than the burst. */
    clock.now += 60 * 1000;
    for (int i = 0; i < 3; i++) {
        rate_limit_take(rl, KEY("alice"), &v);
        ASSERT_EQ(1, v.allowed);
    }
    rate_limit_take(rl, KEY("alice"), &v);
    ASSERT_EQ(0, v.allowed);
    rate_limit_free(rl);
}

TEST(unit_rate_limit_fractional_rate)
{
    struct fake_clock clock;
    struct rate_limit *rl;
    struct rate_limit_verdict v;

    fake_clock_init(&clock, 0);
    rl = limiter(0.3, 1, &clock); /* one request every 3.33 s */
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(1, v.allowed);
    ASSERT_EQ(4, v.reset_s);
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(0, v.allowed);
    ASSERT_EQ(4, v.retry_after_s); /* 3.33 s, rounded up */
    clock.now += 3333;
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(0, v.allowed);
    ASSERT_EQ(1, v.retry_after_s);
    clock.now += 1; /* 3334 ms: 1.0002 tokens */
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(1, v.allowed);
    rate_limit_free(rl);
}

TEST(unit_rate_limit_one_bucket_per_key)
{
    struct fake_clock clock;
    struct rate_limit *rl;
    struct rate_limit_verdict v;

    fake_clock_init(&clock, 0);
    rl = limiter(1, 2, &clock);
    rate_limit_take(rl, KEY("alice"), &v);
    rate_limit_take(rl, KEY("alice"), &v);
    rate_limit_take(rl, KEY("alice"), &v);
    ASSERT_EQ(0, v.allowed);
    rate_limit_take(rl, KEY("bob"), &v); /* bob's bucket is his own */
    ASSERT_EQ(1, v.allowed);
    ASSERT_EQ(1, v.remaining);
    rate_limit_take(rl, "alice\0x", 7, &v); /* keys are bytes, not C strings */
    ASSERT_EQ(1, v.allowed);
    ASSERT_EQ(3, rate_limit_used(rl));
    rate_limit_free(rl);
}

TEST(unit_rate_limit_memory_is_bounded_and_evicts_the_idlest)
{
    struct fake_clock clock;
    struct rate_limit *rl;
    struct rate_limit_verdict v;
    char key[32];
    int busy_allowed = 0;

    fake_clock_init(&clock, 0);
    rl = limiter(1, 1, &clock);
    for (int i = 0; i < 20000; i++) {
        clock.now += 1;
        snprintf(key, sizeof(key), "client-%d", i);
        rate_limit_take(rl, KEY(key), &v);
        ASSERT_EQ(1, v.allowed); /* a new key, or an evicted one, starts full */
        if (i % 1000 == 0)
            ASSERT(rate_limit_used(rl) <= RATE_LIMIT_BUCKETS);
        /* "busy" asks every 64 ms: always among the most recently used of its set, so never
         * the one evicted, and paced at 1 per second */
        if (i % 64 == 0) {
            rate_limit_take(rl, KEY("busy"), &v);
            busy_allowed += v.allowed;
        }
    }
    ASSERT_EQ(RATE_LIMIT_BUCKETS, rate_limit_used(rl));
    /* 20 s of fake time: 1 token at first and 1 per second since (an evicted bucket would have
     * started full again, up to 313 times) */
    ASSERT(busy_allowed >= 20 && busy_allowed <= 21);
    rate_limit_free(rl);
}

TEST(unit_rate_limit_clock_going_back_refills_nothing)
{
    struct fake_clock clock;
    struct rate_limit *rl;
    struct rate_limit_verdict v;

    fake_clock_init(&clock, 50000);
    rl = limiter(1, 1, &clock);
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(1, v.allowed);
    clock.now -= 10000;
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(0, v.allowed);
    clock.now += 10000; /* back where it was: still no time has passed for the bucket */
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(0, v.allowed);
    clock.now += 1000;
    rate_limit_take(rl, KEY("k"), &v);
    ASSERT_EQ(1, v.allowed);
    rate_limit_free(rl);
}

#define RACERS 4
#define RACE_TAKES 2000

struct race {
    struct rate_limit *rl;
    int allowed;
};

static void *
racer(void *arg)
{
    struct race *r = arg;
    struct rate_limit_verdict v;

    for (int i = 0; i < RACE_TAKES; i++) {
        rate_limit_take(r->rl, KEY("shared"), &v);
        r->allowed += v.allowed;
    }
    return NULL;
}

TEST(unit_rate_limit_threads_share_one_bucket_exactly)
{
    struct fake_clock clock; /* never moves: exactly the burst is handed out */
    struct race races[RACERS];
    pthread_t tids[RACERS];
    struct rate_limit *rl;
    int total = 0;

    fake_clock_init(&clock, 0);
    rl = limiter(1, 1000, &clock);
    for (int i = 0; i < RACERS; i++) {
        races[i] = (struct race){rl, 0};
        ASSERT_OK(pthread_create(&tids[i], NULL, racer, &races[i]));
    }
    for (int i = 0; i < RACERS; i++) {
        ASSERT_OK(pthread_join(tids[i], NULL));
        total += races[i].allowed;
    }
    ASSERT_EQ(1000, total);
    rate_limit_free(rl);
}
