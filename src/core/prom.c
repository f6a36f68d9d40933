/* prom.c: Prometheus text format writer and latency histogram (see prom.h). */
#include "core/prom.h"

#include "core/arena.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_CAP 4096
#define LINE_MAX_LABELS 8

const int64_t prom_latency_bounds_us[PROM_LATENCY_BUCKETS] = {
    1000,   2500,   5000,    10000,   25000,   50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

void
prom_init(struct prom_writer *w, struct arena *a, size_t max)
{
    w->arena = a;
    w->cap = max < INITIAL_CAP ? max : INITIAL_CAP;
    w->buf = arena_alloc(a, w->cap + 1);
    w->len = 0;
    w->max = max;
    w->is_full = 0;
}

/* Appends s[0..n), growing the buffer by doubling up to max. */
static void
put(struct prom_writer *w, const char *s, size_t n)
{
    if (w->is_full)
        return;
    if (n > w->max - w->len) {
        w->is_full = 1;
        return;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap * 2;
        char *buf;

        while (cap < w->len + n)
            cap *= 2;
        if (cap > w->max)
            cap = w->max;
        buf = arena_alloc(w->arena, cap + 1);
        memcpy(buf, w->buf, w->len);
        w->buf = buf;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void
puts_(struct prom_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* A label value, escaped: backslash, double quote and line feed. */
static void
put_value(struct prom_writer *w, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            put(w, "\\\\", 2);
        else if (*p == '"')
            put(w, "\\\"", 2);
        else if (*p == '\n')
            put(w, "\\n", 2);
        else
            put(w, p, 1);
    }
}

/* HELP text: backslash and line feed are escaped (quotes are not, there). */
static void
put_help(struct prom_writer *w, const char *h)
{
    for (const char *p = h; *p; p++) {
        if (*p == '\\')
            put(w, "\\\\", 2);
        else if (*p == '\n')
            put(w, "\\n", 2);
        else
            put(w, p, 1);
    }
}

void
prom_family(struct prom_writer *w, const char *name, const char *type, const char *help)
{
    puts_(w, "# HELP ");
    puts_(w, name);
    put(w, " ", 1);
    put_help(w, help);
    puts_(w, "\n# TYPE ");
    puts_(w, name);
    put(w, " ", 1);
    puts_(w, type);
    put(w, "\n", 1);
}

static void
put_name_labels(struct prom_writer *w, const char *name, const char *suffix,
                const struct prom_label *labels, int n)
{
    puts_(w, name);
    if (suffix)
        puts_(w, suffix);
    if (n <= 0)
        return;
    put(w, "{", 1);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            put(w, ",", 1);
        puts_(w, labels[i].name);
        put(w, "=\"", 2);
        put_value(w, labels[i].value);
        put(w, "\"", 1);
    }
    put(w, "}", 1);
}

/* The shortest of %.15g / %.17g that reads back as v; +Inf, -Inf and NaN as the format has them. */
static void
put_double(struct prom_writer *w, double v)
{
    char buf[32];

    if (isnan(v)) {
        puts_(w, "NaN");
        return;
    }
    if (isinf(v)) {
        puts_(w, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof(buf), "%.17g", v);
    puts_(w, buf);
}

void
prom_sample(struct prom_writer *w, const char *name, const struct prom_label *labels, int n,
            double value)
{
    put_name_labels(w, name, NULL, labels, n);
    put(w, " ", 1);
    put_double(w, value);
    put(w, "\n", 1);
}

void
prom_sample_int(struct prom_writer *w, const char *name, const struct prom_label *labels, int n,
                int64_t value)
{
    char buf[24];

    put_name_labels(w, name, NULL, labels, n);
    snprintf(buf, sizeof(buf), " %" PRId64 "\n", value);
    puts_(w, buf);
}

int
prom_finish(struct prom_writer *w, const char **out, size_t *len)
{
    if (w->is_full) {
        /* Cut after the last complete line: a scraper never sees half a sample. */
        while (w->len > 0 && w->buf[w->len - 1] != '\n')
            w->len--;
    }
    w->buf[w->len] = '\0';
    *out = w->buf;
    *len = w->len;
    return w->is_full ? SP_ETOOLARGE : SP_OK;
}

/* ---- histogram ------------------------------------------------------------------------------ */

void
prom_histogram_observe(struct prom_histogram *h, int64_t us)
{
    int i = 0;

    if (us < 0)
        us = 0;
    while (i < PROM_LATENCY_BUCKETS && us > prom_latency_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint_fast64_t)us, memory_order_relaxed);
}

uint64_t
prom_histogram_count(const struct prom_histogram *h)
{
    uint64_t n = 0;

    for (int i = 0; i <= PROM_LATENCY_BUCKETS; i++)
        n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    return n;
}

void
prom_histogram_write(struct prom_writer *w, const char *name, const struct prom_label *labels,
                     int n, const struct prom_histogram *h)
{
    struct prom_label l[LINE_MAX_LABELS];
    uint64_t counts[PROM_LATENCY_BUCKETS + 1], total = 0;
    uint64_t sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    char le[32], line[24];

    if (n > LINE_MAX_LABELS - 1)
        n = LINE_MAX_LABELS - 1;
    memcpy(l, labels, sizeof(*l) * (size_t)n);
    for (int i = 0; i <= PROM_LATENCY_BUCKETS; i++)
        counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    l[n].name = "le";
    for (int i = 0; i <= PROM_LATENCY_BUCKETS; i++) {
        total += counts[i];
        if (i < PROM_LATENCY_BUCKETS) {
            snprintf(le, sizeof(le), "%g", (double)prom_latency_bounds_us[i] / 1e6);
            l[n].value = le;
        } else {
            l[n].value = "+Inf";
        }
        put_name_labels(w, name, "_bucket", l, n + 1);
        snprintf(line, sizeof(line), " %" PRIu64 "\n", total);
        puts_(w, line);
    }
    put_name_labels(w, name, "_sum", labels, n);
    put(w, " ", 1);
    put_double(w, (double)sum_us / 1e6);
    put(w, "\n", 1);
    put_name_labels(w, name, "_count", labels, n);
    snprintf(line, sizeof(line), " %" PRIu64 "\n", total);
    puts_(w, line);
}
