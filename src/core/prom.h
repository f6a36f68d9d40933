/* prom.h: the Prometheus text exposition format (version 0.0.4) and a latency histogram.
 *
 * A writer renders metric families (# HELP, # TYPE, then samples) into a bounded buffer in an
 * arena; label values are escaped as the format wants (\\, \", \n), so any bytes may be given.
 * The histogram counts observations in fixed latency buckets from 1 ms to 10 s with atomics, so
 * any thread may observe while another renders; the rendered buckets are cumulative, with +Inf
 * equal to _count. Which metrics a process has, and their names, are the application's. */
#pragma once

#include "core/err.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct arena;

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct prom_label {
    const char *name;  /* a valid label name (static) */
    const char *value; /* any bytes, NUL-terminated; NULL is "" */
};

struct prom_writer {
    struct arena *arena; /* borrowed: the buffer lives there */
    char *buf;
    size_t len, cap, max;
    int is_full; /* max reached: prom_finish says SP_ETOOLARGE */
};

/* Starts an empty text of at most `max` bytes in `a`. */
void prom_init(struct prom_writer *w, struct arena *a, size_t max);
/* The # HELP and # TYPE lines of family `name` (type: "counter", "gauge", "histogram"). */
void prom_family(struct prom_writer *w, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. A double is written in the shortest exact form. */
void prom_sample(struct prom_writer *w, const char *name, const struct prom_label *labels, int n,
                 double value);
void prom_sample_int(struct prom_writer *w, const char *name, const struct prom_label *labels,
                     int n, int64_t value);
/* The text (in the arena, valid until it is reset) and its length; SP_ETOOLARGE when it went
 * over max (the text is then cut at a line's end). */
int prom_finish(struct prom_writer *w, const char **out, size_t *len) SP_MUST_CHECK;

/* Upper bounds of the latency buckets, in microseconds: 1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms,
 * 1, 2.5, 5, 10 s; then +Inf. */
#define PROM_LATENCY_BUCKETS 13
extern const int64_t prom_latency_bounds_us[PROM_LATENCY_BUCKETS];

struct prom_histogram {
    atomic_uint_fast64_t counts[PROM_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative */
    atomic_uint_fast64_t sum_us;
};

/* Counts one observation of `us` microseconds (negative counts as 0). Lock-free. */
void prom_histogram_observe(struct prom_histogram *h, int64_t us);
/* Observations so far (the sum of the buckets). */
uint64_t prom_histogram_count(const struct prom_histogram *h);
/* The samples of `h` under family `name` with labels[0..n) (n <= 7) plus le: name_bucket (one
 * line per bound and +Inf, cumulative), name_sum (seconds), name_count. The counts are read
 * once, so the lines agree with each other even while other threads observe. */
void prom_histogram_write(struct prom_writer *w, const char *name, const struct prom_label *labels,
                          int n, const struct prom_histogram *h);
