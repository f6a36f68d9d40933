/* queue.c: job state names and the worker's retry policy (see queue.h). */
#include "core/queue.h"

#include <string.h>

static const char *const state_names[] = {"waiting", "delayed", "active", "completed", "failed"};

const char *
job_state_name(enum job_state s)
{
    return (int)s >= 0 && (int)s < 5 ? state_names[s] : "unknown";
}

int
job_state_parse(const char *s, enum job_state *out)
{
    for (int i = 0; s && i < 5; i++) {
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum job_state)i;
            return 0;
        }
    }
    return -1;
}

#define BACKOFF_CAP_MS (3600LL * 1000)

int64_t
job_backoff_delay(enum job_backoff type, int64_t base_ms, int attempts_made, int jitter_pct,
                  uint32_t rnd)
{
    int64_t d = base_ms < 0 ? 0 : base_ms;
    int shift = type == JOB_BACKOFF_FIXED ? 0 : attempts_made - 1;

    for (int i = 0; i < shift && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    if (jitter_pct > 0 && d > 0) {
        int64_t span = d * jitter_pct / 100;
        d -= (int64_t)(((uint64_t)span * rnd) / UINT32_MAX);
    }
    return d;
}
