/* clock.h: the clock port (real or fake) and UTC ISO-8601 formatting.
 *
 * Domain and application code ask a `const struct sp_clock *` for the time so tests can fix it. */
#pragma once

#include <stdint.h>

struct sp_clock {
    int64_t (*now_ms)(const struct sp_clock *c); /* milliseconds since the Unix epoch */
};

static inline int64_t
sp_clock_now_ms(const struct sp_clock *c)
{
    return c->now_ms(c);
}

/* The wall clock (CLOCK_REALTIME). */
extern const struct sp_clock sp_clock_real;

/* Monotonic milliseconds, for timeouts and latency; unrelated to wall time. */
int64_t sp_mono_ms(void);
/* Monotonic microseconds (request latencies). */
int64_t sp_mono_us(void);
/* sp_mono_ms() as a clock: for intervals that must not jump with the wall clock (rate limits).
 * Its values are not epoch times. */
extern const struct sp_clock sp_clock_mono;

/* "2026-11-27T14:37:45.686Z" is 24 characters. */
#define SP_ISO_TIME_LEN 24
/* Parses "YYYY-MM-DD[T ]HH:MM:SS[.fraction](Z|+00|+00:00)" (UTC only) into ms since the epoch;
 * fractions beyond milliseconds are truncated. Returns 0, or -1 when `s` is not such a time. */
int sp_time_parse(const char *s, int64_t *ms);
/* Formats `ms` as ISO-8601 UTC with milliseconds into out[SP_ISO_TIME_LEN + 1]. */
void sp_time_iso(int64_t ms, char *out);
