/* test_prom.c: core/prom's text format writer (families, label escaping, numbers, the size
 * bound) and its latency histogram (bucket edges, cumulative rendering, _count and _sum). The
 * integration test test_metrics.py parses a whole scrape with Prometheus's own parser. */
#include "t.h"

#include "core/arena.h"
#include "core/prom.h"

static const char *
finish(struct prom_writer *w)
{
    const char *out = NULL;
    size_t len = 0;

    ASSERT_OK(prom_finish(w, &out, &len));
    ASSERT_EQ(strlen(out), len);
    return out;
}

TEST(unit_prom_family_samples_and_escaping)
{
    struct arena *a = arena_new();
    struct prom_writer w;
    struct prom_label l[2] = {{"route", "/leads/:id"}, {"odd", "a\"b\\c\nd"}};

    prom_init(&w, a, 4096);
    prom_family(&w, "x_total", "counter", "Things\\counted\nhere.");
    prom_sample_int(&w, "x_total", l, 2, 42);
    prom_sample_int(&w, "x_total", NULL, 0, -7);
    prom_sample(&w, "x_total", l, 1, 0.1);
    prom_sample(&w, "x_total", NULL, 0, 1.0 / 0.0);
    prom_sample(&w, "x_total", NULL, 0, 0.0 / 0.0);
    prom_sample(&w, "x_total", NULL, 0, 1796281282.988);
    ASSERT_STREQ("# HELP x_total Things\\\\counted\\nhere.\n"
                 "# TYPE x_total counter\n"
                 "x_total{route=\"/leads/:id\",odd=\"a\\\"b\\\\c\\nd\"} 42\n"
                 "x_total -7\n"
                 "x_total{route=\"/leads/:id\"} 0.1\n"
                 "x_total +Inf\n"
                 "x_total NaN\n"
                 "x_total 1796281282.988\n",
                 finish(&w));
    arena_free(a);
}

TEST(unit_prom_over_the_limit_is_cut_at_a_line)
{
    struct arena *a = arena_new();
    struct prom_writer w;
    const char *out;
    size_t len;

    prom_init(&w, a, 40);
    prom_sample_int(&w, "first_metric", NULL, 0, 1); /* 15 bytes */
    prom_sample_int(&w, "second_metric", NULL, 0, 2);
    prom_sample_int(&w, "third_metric_name", NULL, 0, 3); /* does not fit */
    prom_sample_int(&w, "x", NULL, 0, 4);                 /* nor anything after it */
    ASSERT_EQ(SP_ETOOLARGE, prom_finish(&w, &out, &len));
    ASSERT_STREQ("first_metric 1\nsecond_metric 2\n", out);
    arena_free(a);
}

TEST(unit_prom_grows_past_its_first_block)
{
    struct arena *a = arena_new();
    struct prom_writer w;
    const char *out;

    prom_init(&w, a, 1 << 20);
    for (int i = 0; i < 5000; i++)
        prom_sample_int(&w, "m", NULL, 0, i);
    out = finish(&w);
    ASSERT(strncmp(out, "m 0\nm 1\n", 8) == 0);
    ASSERT_CONTAINS(out, "\nm 4999\n");
    arena_free(a);
}

TEST(unit_prom_histogram_buckets_are_cumulative)
{
    static struct prom_histogram h; /* zeroed */
    struct arena *a = arena_new();
    struct prom_writer w;
    struct prom_label l = {"route", "/x"};
    const char *out;

    prom_histogram_observe(&h, 1000);     /* le 0.001: the bound is inclusive */
    prom_histogram_observe(&h, 1001);     /* le 0.0025 */
    prom_histogram_observe(&h, -5);       /* a clock step: counted as 0 */
    prom_histogram_observe(&h, 700000);   /* le 1 */
    prom_histogram_observe(&h, 99000000); /* past 10 s: +Inf only */
    ASSERT_EQ(5, prom_histogram_count(&h));
    prom_init(&w, a, 8192);
    prom_histogram_write(&w, "lat_seconds", &l, 1, &h);
    out = finish(&w);
    ASSERT_CONTAINS(out, "lat_seconds_bucket{route=\"/x\",le=\"0.001\"} 2\n"
                         "lat_seconds_bucket{route=\"/x\",le=\"0.0025\"} 3\n"
                         "lat_seconds_bucket{route=\"/x\",le=\"0.005\"} 3\n");
    ASSERT_CONTAINS(out, "lat_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
                         "lat_seconds_bucket{route=\"/x\",le=\"1\"} 4\n");
    ASSERT_CONTAINS(out, "lat_seconds_bucket{route=\"/x\",le=\"10\"} 4\n"
                         "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5\n"
                         "lat_seconds_sum{route=\"/x\"} 99.702001\n"
                         "lat_seconds_count{route=\"/x\"} 5\n");
    arena_free(a);
}
