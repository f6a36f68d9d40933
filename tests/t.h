/* t.h: the test harness (in the spirit of beanstalkd's ct and libuv's task.h).
 *
 * TEST(name) { ... } registers a test at load time. The runner (t_main.c) runs each test in a
 * forked child inside its own temporary directory (the child's cwd), so a crash or leak in one
 * test cannot affect another. Selection (t_main.c): `./t unit_ http_` runs the tests whose names
 * start with one of the prefixes; a pattern with '*' or '?' is matched as a glob against the
 * whole name (`./t '*_pg'`); `-x PATTERN` (prefix or glob, repeatable) leaves tests out
 * (`./t -x '*_pg' unit_`). A test that calls t_skip() is reported as skipped, not passed. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*t_fn)(void);
void t_register(const char *name, t_fn fn);
/* Reports a failure and ends the test (child exits 1). */
_Noreturn void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the test as skipped (child exits T_SKIP_STATUS) with the reason on stderr. */
#define T_SKIP_STATUS 77
_Noreturn void t_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void t_reg_##name(void)                                    \
    {                                                                                              \
        t_register(#name, test_##name);                                                            \
    }                                                                                              \
    static void test_##name(void)

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            t_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);                             \
    } while (0)

#define ASSERT_EQ(want, got)                                                                       \
    do {                                                                                           \
        long long w_ = (long long)(want), g_ = (long long)(got);                                   \
        if (w_ != g_)                                                                              \
            t_fail(__FILE__, __LINE__, "%s == %s: want %lld, got %lld", #want, #got, w_, g_);      \
    } while (0)

#define ASSERT_OK(rc) ASSERT_EQ(0, (rc))

#define ASSERT_STREQ(want, got)                                                                    \
    do {                                                                                           \
        const char *w_ = (want), *g_ = (got);                                                      \
        if (w_ == NULL || g_ == NULL || strcmp(w_, g_) != 0)                                       \
            t_fail(__FILE__, __LINE__, "%s == %s: want \"%s\", got \"%s\"", #want, #got,           \
                   w_ ? w_ : "(null)", g_ ? g_ : "(null)");                                        \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            t_fail(__FILE__, __LINE__, "%s contains \"%s\": got \"%s\"", #hay, n_,                 \
                   h_ ? h_ : "(null)");                                                            \
    } while (0)
