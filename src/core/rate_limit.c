/* rate_limit.c: token buckets in a set-associative table (see rate_limit.h). */
#include "core/rate_limit.h"

#include "core/clock.h"
#include "core/rand.h"
#include "core/xmalloc.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define NSETS (RATE_LIMIT_BUCKETS / RATE_LIMIT_WAYS)
/* Floating-point slack: 0.3 tokens/s for 3333.33 ms must make one whole token. */
#define EPSILON 1e-9

struct bucket {
    uint64_t key; /* the key's seeded hash; 0: free */
    double tokens;
    int64_t last_ms; /* the clock's time of the last take or refill: LRU order too */
};

struct set {
    pthread_mutex_t mu;
    struct bucket ways[RATE_LIMIT_WAYS];
};

struct rate_limit {
    double rate; /* tokens per second */
    int burst;
    const struct sp_clock *clock;
    uint64_t seed;
    struct set sets[NSETS];
};

int
rate_limit_new(double rate, int burst, const struct sp_clock *clock, struct rate_limit **out)
{
    struct rate_limit *rl;

    *out = NULL;
    if (!(rate > 0) || !isfinite(rate) || burst < 1 || clock == NULL)
        return SP_EINVAL;
    rl = xcalloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst;
    rl->clock = clock;
    /* Unknown outside the process: a client cannot pick keys that crowd one set. */
    rl->seed = ((uint64_t)sp_random() << 32) | sp_random();
    for (int i = 0; i < NSETS; i++)
        pthread_mutex_init(&rl->sets[i].mu, NULL);
    *out = rl;
    return SP_OK;
}

void
rate_limit_free(struct rate_limit *rl)
{
    if (rl == NULL)
        return;
    for (int i = 0; i < NSETS; i++)
        pthread_mutex_destroy(&rl->sets[i].mu);
    free(rl);
}

/* FNV-1a over the seed and the key, then a 64-bit finalizer (splitmix64's) so that the low bits
 * picking the set depend on every byte. Never 0 (the free mark). */
static uint64_t
key_hash(uint64_t seed, const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h ? h : 1;
}

/* The key's bucket in `s` (locked): its own, else a free one, else the least recently used
 * one, which starts full for the new key. */
static struct bucket *
bucket_of(struct rate_limit *rl, struct set *s, uint64_t key, int64_t now)
{
    struct bucket *victim = &s->ways[0];

    for (int i = 0; i < RATE_LIMIT_WAYS; i++) {
        struct bucket *b = &s->ways[i];

        if (b->key == key)
            return b;
        if (victim->key != 0 && (b->key == 0 || b->last_ms < victim->last_ms))
            victim = b;
    }
    victim->key = key;
    victim->tokens = rl->burst;
    victim->last_ms = now;
    return victim;
}

/* Whole seconds (rounded up) for `tokens` tokens to come back at the table's rate. */
static int
seconds_for(const struct rate_limit *rl, double tokens)
{
    double s = tokens <= EPSILON ? 0 : ceil(tokens / rl->rate - EPSILON);

    return s > 1e9 ? 1000000000 : (int)s;
}

void
rate_limit_take(struct rate_limit *rl, const void *key, size_t len, struct rate_limit_verdict *out)
{
    uint64_t h = key_hash(rl->seed, key, len);
    struct set *s = &rl->sets[h % NSETS];
    int64_t now = sp_clock_now_ms(rl->clock);
    struct bucket *b;
    double tokens;

    pthread_mutex_lock(&s->mu);
    b = bucket_of(rl, s, h, now);
    if (now > b->last_ms) {
        b->tokens += (double)(now - b->last_ms) * rl->rate / 1000.0;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->last_ms = now;
    }
    out->allowed = b->tokens >= 1.0 - EPSILON;
    if (out->allowed)
        b->tokens = b->tokens - 1.0 < 0 ? 0 : b->tokens - 1.0;
    tokens = b->tokens;
    pthread_mutex_unlock(&s->mu);

    out->limit = rl->burst;
    out->remaining = (int)floor(tokens + EPSILON);
    out->reset_s = seconds_for(rl, rl->burst - tokens);
    out->retry_after_s = 0;
    if (!out->allowed) {
        out->retry_after_s = seconds_for(rl, 1.0 - tokens);
        if (out->retry_after_s < 1)
            out->retry_after_s = 1;
    }
}

int
rate_limit_used(struct rate_limit *rl)
{
    int n = 0;

    for (int i = 0; i < NSETS; i++) {
        pthread_mutex_lock(&rl->sets[i].mu);
        for (int w = 0; w < RATE_LIMIT_WAYS; w++)
            n += rl->sets[i].ways[w].key != 0;
        pthread_mutex_unlock(&rl->sets[i].mu);
    }
    return n;
}
