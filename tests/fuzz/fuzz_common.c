/* fuzz_common.c: shared helpers of the libFuzzer targets (see fuzz_common.h). */
#include "fuzz/fuzz_common.h"

#include "app/error_body.h"

#include "core/log.h"
#include "t.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
fz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* The fakes' assertions (tests/t.h) end up here: a crash libFuzzer can save. */
void
t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "\nFAKE ASSERTION at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* The fuzz targets use the in-memory backend only, which never skips; a skip is a bug here. */
void
t_skip(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "\nFAKE SKIP (not expected in a fuzz target): ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* t.h declares it; nothing registers tests in a fuzz binary. */
void
t_register(const char *name, t_fn fn)
{
    (void)name;
    (void)fn;
}

void
fz_init(void)
{
    sp_log_level = SP_LOG_ERROR;
    error_body_install(); /* the service's error body, as app/routes.c installs it */
}

static int
status_allowed(int status)
{
    switch (status) {
    case 200:
    case 201:
    case 400:
    case 404:
    case 413:
    case 415:
        return 1;
    default:
        return 0;
    }
}

const char *
fz_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void
check_error_shape(json_t *root, int status, const char *body)
{
    json_t *msg = json_object_get(root, "message");
    json_t *code = json_object_get(root, "statusCode");
    const char *error = fz_str(root, "error");

    FZ_CHECK(json_object_size(root) == 3, "error body must have 3 members: %s", body);
    FZ_CHECK(json_is_integer(code) && json_integer_value(code) == status,
             "statusCode must be %d: %s", status, body);
    FZ_CHECK(error && strcmp(error, http_reason(status)) == 0, "error must be \"%s\": %s",
             http_reason(status), body);
    if (json_is_array(msg)) {
        size_t i;
        json_t *m;
        FZ_CHECK(json_array_size(msg) > 0, "message array must not be empty: %s", body);
        json_array_foreach(msg, i, m)
        {
            FZ_CHECK(json_is_string(m), "message[%zu] must be a string: %s", i, body);
        }
    } else {
        FZ_CHECK(json_is_string(msg), "message must be a string or an array: %s", body);
    }
}

json_t *
fz_check_response(const struct http_response *resp, int also_ok)
{
    json_error_t jerr;
    json_t *root;

    FZ_CHECK(status_allowed(resp->status) || (also_ok && resp->status == also_ok),
             "status %d is not one of 200/201/400/404/413/415: %.*s", resp->status,
             (int)(resp->body_len > 2000 ? 2000 : resp->body_len), resp->body ? resp->body : "");
    FZ_CHECK(resp->body != NULL, "status %d without a body", resp->status);
    FZ_CHECK(resp->content_type == NULL || strcmp(resp->content_type, "application/json") == 0,
             "content type %s", resp->content_type);
    FZ_CHECK(strlen(resp->body) == resp->body_len, "body_len %zu but strlen %zu", resp->body_len,
             strlen(resp->body));
    FZ_CHECK(resp->retry_after == 0, "Retry-After %d on status %d", resp->retry_after,
             resp->status);
    root = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, &jerr);
    FZ_CHECK(root != NULL, "status %d body is not JSON (%s at %d): %.*s", resp->status, jerr.text,
             jerr.position, (int)(resp->body_len > 2000 ? 2000 : resp->body_len), resp->body);
    FZ_CHECK(json_is_object(root), "body is not a JSON object: %s", resp->body);
    if (resp->status >= 400)
        check_error_shape(root, resp->status, resp->body);
    return root;
}

void
fz_check_counts_equal(const struct t_counts *b, const struct t_counts *a, const char *what)
{
    FZ_CHECK(b->leads == a->leads && b->messages == a->messages && b->events == a->events &&
                 b->jobs == a->jobs,
             "%s changed the store: leads %d->%d messages %d->%d events %d->%d jobs %d->%d", what,
             b->leads, a->leads, b->messages, a->messages, b->events, a->events, b->jobs, a->jobs);
}

void
fz_check_no_open_tx(struct t_env *env)
{
    FZ_CHECK(!env->store->in_tx, "the store is left inside a unit of work");
    FZ_CHECK(!env->faults.open_tx, "a unit of work begun through the deps is still open");
}
