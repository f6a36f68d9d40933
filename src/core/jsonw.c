/* jsonw.c: streaming JSON writer (see jsonw.h). */
#include "core/jsonw.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/utf8.h"

#include <stdio.h>
#include <string.h>

void
jsonw_init(struct jsonw *w, struct arena *a, size_t limit)
{
    memset(w, 0, sizeof(*w));
    w->arena = a;
    w->limit = limit;
    w->cap = 256;
    w->buf = arena_alloc(a, w->cap);
}

static void
put(struct jsonw *w, const char *s, size_t n)
{
    if (w->overflow)
        return;
    if (w->len + n + 1 > w->limit) {
        w->overflow = 1;
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap * 2;
        char *nb;
        while (cap < w->len + n + 1)
            cap *= 2;
        if (cap > w->limit + 1)
            cap = w->limit + 1;
        nb = arena_alloc(w->arena, cap);
        memcpy(nb, w->buf, w->len);
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void
putc_(struct jsonw *w, char c)
{
    put(w, &c, 1);
}

/* Called before every value or key: writes the comma when needed. */
static void
sep(struct jsonw *w)
{
    if (w->depth > 0 && w->need_comma[w->depth - 1])
        putc_(w, ',');
    if (w->depth > 0)
        w->need_comma[w->depth - 1] = 1;
}

static void
open_(struct jsonw *w, char c)
{
    sep(w);
    putc_(w, c);
    if (w->depth >= JSONW_DEPTH_MAX) {
        w->overflow = 1;
        return;
    }
    w->need_comma[w->depth++] = 0;
}

static void
close_(struct jsonw *w, char c)
{
    putc_(w, c);
    if (w->depth > 0)
        w->depth--;
}

void
jsonw_obj_begin(struct jsonw *w)
{
    open_(w, '{');
}

void
jsonw_obj_end(struct jsonw *w)
{
    close_(w, '}');
}

void
jsonw_arr_begin(struct jsonw *w)
{
    open_(w, '[');
}

void
jsonw_arr_end(struct jsonw *w)
{
    close_(w, ']');
}

/* The JSON string literal of s[0..n). Control characters are escaped as JSON.stringify does;
 * valid UTF-8 is copied as is; a byte that does not start a valid sequence becomes U+FFFD, so
 * the text is valid JSON whatever bytes s holds (a path a client sent, a provider's answer). */
static void
put_escaped(struct jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0;

    putc_(w, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char x[6];

        if (c >= 0x80) {
            size_t len = sp_utf8_decode(u + i, n - i, NULL);
            if (len > 0) {
                i += len - 1;
                continue;
            }
            esc = SP_UTF8_REPLACEMENT;
        } else if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c == '\t') {
            esc = "\\t";
        } else if (c == '\b') {
            esc = "\\b";
        } else if (c == '\f') {
            esc = "\\f";
        } else if (c >= 0x20) {
            continue;
        }
        put(w, s + start, i - start);
        start = i + 1;
        if (esc) {
            put(w, esc, strlen(esc));
        } else {
            memcpy(x, "\\u00", 4);
            x[4] = hex[c >> 4];
            x[5] = hex[c & 0xf];
            put(w, x, 6);
        }
    }
    put(w, s + start, n - start);
    putc_(w, '"');
}

void
jsonw_key(struct jsonw *w, const char *key)
{
    sep(w);
    put_escaped(w, key, strlen(key));
    putc_(w, ':');
    /* the value that follows must not write a comma */
    if (w->depth > 0)
        w->need_comma[w->depth - 1] = 0;
}

/* After a value inside a container, the next item needs a comma. */
static void
after_value(struct jsonw *w)
{
    if (w->depth > 0)
        w->need_comma[w->depth - 1] = 1;
}

void
jsonw_strn(struct jsonw *w, const char *s, size_t len)
{
    sep(w);
    put_escaped(w, s, len);
    after_value(w);
}

void
jsonw_str(struct jsonw *w, const char *s)
{
    if (s == NULL) {
        jsonw_null(w);
        return;
    }
    jsonw_strn(w, s, strlen(s));
}

void
jsonw_int(struct jsonw *w, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
    sep(w);
    put(w, buf, (size_t)n);
    after_value(w);
}

void
jsonw_bool(struct jsonw *w, int v)
{
    sep(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
    after_value(w);
}

void
jsonw_null(struct jsonw *w)
{
    sep(w);
    put(w, "null", 4);
    after_value(w);
}

void
jsonw_raw(struct jsonw *w, const char *json)
{
    if (json == NULL) {
        jsonw_null(w);
        return;
    }
    sep(w);
    put(w, json, strlen(json));
    after_value(w);
}

void
jsonw_time(struct jsonw *w, int64_t ms, int null_if_zero)
{
    char ts[SP_ISO_TIME_LEN + 1];

    if (ms == 0 && null_if_zero) {
        jsonw_null(w);
        return;
    }
    sp_time_iso(ms, ts);
    jsonw_strn(w, ts, SP_ISO_TIME_LEN);
}

void
jsonw_kstr(struct jsonw *w, const char *key, const char *s)
{
    jsonw_key(w, key);
    jsonw_str(w, s);
}

void
jsonw_kint(struct jsonw *w, const char *key, int64_t v)
{
    jsonw_key(w, key);
    jsonw_int(w, v);
}

void
jsonw_kbool(struct jsonw *w, const char *key, int v)
{
    jsonw_key(w, key);
    jsonw_bool(w, v);
}

void
jsonw_kraw(struct jsonw *w, const char *key, const char *json)
{
    jsonw_key(w, key);
    jsonw_raw(w, json);
}

void
jsonw_ktime(struct jsonw *w, const char *key, int64_t ms, int null_if_zero)
{
    jsonw_key(w, key);
    jsonw_time(w, ms, null_if_zero);
}

const char *
jsonw_finish_or(struct jsonw *w, const char *fallback)
{
    const char *s;
    return jsonw_finish(w, &s, NULL) == SP_OK ? s : fallback;
}

int
jsonw_finish(struct jsonw *w, const char **out, size_t *len)
{
    if (w->overflow)
        return SP_ETOOLARGE;
    w->buf[w->len] = '\0';
    *out = w->buf;
    if (len)
        *len = w->len;
    return SP_OK;
}
