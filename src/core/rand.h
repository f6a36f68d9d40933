/* rand.h: fast non-cryptographic random numbers (jitter, simulated failures), thread-safe. */
#pragma once

#include <stdint.h>

/* Uniform 32-bit value from a per-thread xorshift generator seeded by getrandom(2). */
uint32_t sp_random(void);
/* Uniform double in [0, 1). */
double sp_random_unit(void);
