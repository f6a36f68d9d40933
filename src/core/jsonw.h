/* jsonw.h: a small streaming JSON writer into an arena, with a size limit.
 *
 * Used to render responses, event payloads and job data without building a tree. Commas are
 * inserted automatically; keys and strings are escaped. Exceeding `limit` sets `overflow`
 * and further writes are ignored: check jsonw_finish(). */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct arena;

#define JSONW_DEPTH_MAX 16

struct jsonw {
    struct arena *arena;
    char *buf;
    size_t len, cap, limit;
    int overflow;
    int depth;
    int need_comma[JSONW_DEPTH_MAX];
};

void jsonw_init(struct jsonw *w, struct arena *a, size_t limit);
void jsonw_obj_begin(struct jsonw *w);
void jsonw_obj_end(struct jsonw *w);
void jsonw_arr_begin(struct jsonw *w);
void jsonw_arr_end(struct jsonw *w);
/* Writes "key": inside an object; follow it with exactly one value. */
void jsonw_key(struct jsonw *w, const char *key);
void jsonw_str(struct jsonw *w, const char *s); /* NULL writes null */
void jsonw_strn(struct jsonw *w, const char *s, size_t len);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, int v);
void jsonw_null(struct jsonw *w);
/* Writes already-serialized JSON text as a value (trusted: from our own writer or storage). NULL
 * writes null. */
void jsonw_raw(struct jsonw *w, const char *json);
/* ISO-8601 UTC time from ms; 0 writes null when null_if_zero. */
void jsonw_time(struct jsonw *w, int64_t ms, int null_if_zero);

/* Key-value shorthands. */
void jsonw_kstr(struct jsonw *w, const char *key, const char *s);
void jsonw_kint(struct jsonw *w, const char *key, int64_t v);
void jsonw_kbool(struct jsonw *w, const char *key, int v);
void jsonw_kraw(struct jsonw *w, const char *key, const char *json);
void jsonw_ktime(struct jsonw *w, const char *key, int64_t ms, int null_if_zero);

/* The finished text, or `fallback` on overflow (for documents built from bounded fields, where
 * overflow cannot happen in practice). */
const char *jsonw_finish_or(struct jsonw *w, const char *fallback);
/* NUL-terminates and returns the text (in the arena) and its length, or SP_ETOOLARGE. */
int jsonw_finish(struct jsonw *w, const char **out, size_t *len) SP_MUST_CHECK;
