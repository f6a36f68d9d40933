/* err.h: the project's error codes and the error-detail carrier.
 *
 * Fallible functions return SP_OK (0) or a negative SP_E* code. Detail travels in an optional
 * struct sp_error: the first error set wins, so the innermost, most precise message survives. */
#pragma once

#include <stddef.h>

#define SP_MUST_CHECK __attribute__((warn_unused_result))

/* name, retryable, message */
#define SP_ERRORS(X)                                                                               \
    X(EINVAL, 0, "invalid input")                                                                  \
    X(ENOTFOUND, 0, "not found")                                                                   \
    X(ECONFLICT, 0, "already exists")                                                              \
    X(ETOOLARGE, 0, "too large")                                                                   \
    X(EUNAVAIL, 1, "dependency unavailable")                                                       \
    X(ETIMEDOUT, 1, "timed out")                                                                   \
    X(EPROVIDER, 1, "channel or AI provider failed")                                               \
    X(EPERMANENT, 0, "provider refused permanently")                                               \
    X(EINTERNAL, 0, "internal error")                                                              \
    X(ELEASELOST, 0, "job lease lost") /* another worker holds the job now */

enum sp_err {
    SP_OK = 0,
#define SP_ERR_ENUM(name, retry, text) SP_##name,
    SP__ERR_BASE = -100,
    SP_ERRORS(SP_ERR_ENUM)
#undef SP_ERR_ENUM
};

#define SP_ERROR_FIELD_MAX 32
#define SP_ERROR_MSG_MAX 200

struct sp_error {
    int code;                       /* SP_OK until the first error is set */
    char field[SP_ERROR_FIELD_MAX]; /* the input field or setting concerned, or "" */
    char msg[SP_ERROR_MSG_MAX];     /* one line, no PII */
    /* A provider's own word on when to try again (an HTTP Retry-After), in ms; 0: none. The
     * worker waits at least this long before the next attempt of a retryable failure. */
    long long retry_after_ms;
};

/* Short name of a code, e.g. "EINVAL"; "OK" for 0 and "EUNKNOWN" for anything else. */
const char *sp_err_name(int code);
/* Human text of a code. */
const char *sp_err_str(int code);
/* Whether an operation that failed with `code` may succeed if tried again. */
int sp_err_retryable(int code);

/* Record an error in `err` (may be NULL) unless one is already recorded; returns `code`.
 * `field` may be NULL. The message is printf-formatted and truncated to fit. */
int sp_error_set(struct sp_error *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Forget any recorded error. */
void sp_error_clear(struct sp_error *err);
