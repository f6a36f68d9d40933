/* queue.c: job state names and the backoff formula shared by queue implementations. */
#include "core/queue.h"

#include <math.h>
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
job_backoff_delay(int64_t base_ms, int attempts_made, int jitter_pct, uint32_t rnd)
{
    int64_t d = base_ms < 0 ? 0 : base_ms;
    int shift = attempts_made - 1;

    if (shift < 0)
        shift = 0;
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

/* BullMQ never caps its delays; this cap only keeps absurd settings from overflowing. */
#define BULLMQ_DELAY_CAP_MS (30LL * 24 * 3600 * 1000)

int64_t
job_retry_delay(const struct job *j, int attempts_made, int default_jitter_pct, uint32_t rnd)
{
    double d = j->backoff_ms < 0 ? 0 : (double)j->backoff_ms;

    if (j->backoff_jitter < 0)
        return job_backoff_delay(j->backoff_ms, attempts_made, default_jitter_pct, rnd);
    if (j->backoff_type == JOB_BACKOFF_EXPONENTIAL)
        d = round(ldexp(d, attempts_made > 1 ? attempts_made - 1 : 0));
    if (d > (double)BULLMQ_DELAY_CAP_MS)
        d = (double)BULLMQ_DELAY_CAP_MS;
    if (j->backoff_jitter > 0 && d > 0) {
        double jit = j->backoff_jitter > 1 ? 1 : j->backoff_jitter;
        double lo = d * (1 - jit);
        d = floor(lo + (d - lo) * ((double)rnd / 4294967296.0));
    }
    return (int64_t)d;
}
