/* rand.c: per-thread xorshift64* generator. */
#include "core/rand.h"

#include <sys/random.h>

static _Thread_local uint64_t state;

uint32_t
sp_random(void)
{
    uint64_t x = state;

    if (x == 0) {
        if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x) || x == 0)
            x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&state;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

double
sp_random_unit(void)
{
    return sp_random() / 4294967296.0;
}
