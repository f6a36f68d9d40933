/* fuzz_common.h: shared helpers of the libFuzzer targets in tests/fuzz (see README.md).
 *
 * Every invariant violation prints what was expected and calls abort(), which libFuzzer reports
 * as a crash and saves the input as crash-<sha1>. The targets link the test fakes (t_env), whose
 * ASSERT/t_fail are routed here too, so a failing fake assertion is also a crash. */
#pragma once

#include "core/http.h"
#include "fakes/t_env.h"

#include <jansson.h>
#include <stddef.h>

_Noreturn void fz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail(__FILE__, __LINE__, __VA_ARGS__);                                              \
    } while (0)

/* Quiets the logger once per process (the fakes set it too). */
void fz_init(void);

/* Checks the response envelope shared by every answer: status in {200,201,400,404,413,415},
 * content type application/json, body_len == strlen(body), the body a JSON object (duplicate
 * keys rejected) and, for 4xx, the NestJS error shape {"message","error","statusCode"} with
 * statusCode == status and error == http_reason(status). `also_ok` is one more status to
 * accept (the router's 405 when a fuzzed path segment holds a '/'), 0 for none. Returns the
 * parsed body (caller json_decref()s it). */
json_t *fz_check_response(const struct http_response *resp, int also_ok);

/* Fails unless two count snapshots are equal; `what` names the request in the message. */
void fz_check_counts_equal(const struct t_counts *before, const struct t_counts *after,
                           const char *what);

/* Fails unless the store is outside a unit of work (every path closed what it opened). */
void fz_check_no_open_tx(struct t_env *env);

/* The string member `key` of obj, or NULL (absent, null or not a string). */
const char *fz_str(json_t *obj, const char *key);
