/* log.c: level-checked line logger (logfmt or JSON) with UTC millisecond timestamps. */
#include "core/log.h"

#include "core/clock.h"
#include "core/utf8.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum log_level sp_log_level = SP_LOG_INFO;
static enum log_format log_fmt = LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_setup(enum log_level level, enum log_format format)
{
    sp_log_level = level;
    log_fmt = format;
}

int
log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int
log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = LOG_JSON;
    else
        return -1;
    return 0;
}

/* Appends `s` to buf escaped for a JSON string (or a quoted logfmt value, same rules). Text
 * from outside (a request path, a database error) may hold any bytes: a byte that does not
 * start valid UTF-8 becomes U+FFFD, so every line stays valid JSON. */
static size_t
put_escaped(char *buf, size_t pos, size_t cap, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;

    while (*u && pos + 7 < cap) {
        size_t n = sp_utf8_decode(u, 4, NULL); /* a NUL ends a cut sequence */
        if (n == 0) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\ufffd");
            u++;
        } else if (*u == '"' || *u == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)*u++;
        } else if (*u < 0x20 || *u == 0x7f) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", *u++);
        } else if (pos + n + 7 < cap) {
            memcpy(buf + pos, u, n);
            pos += n;
            u += n;
        } else {
            break; /* a whole character only */
        }
    }
    return pos;
}

int
log_limit_pass(struct log_limit *l, int per_s, int *dropped)
{
    long long now = sp_clock_now_ms(&sp_clock_real) / 1000;
    long long seen = atomic_load(&l->second);

    if (seen != now && atomic_compare_exchange_strong(&l->second, &seen, now))
        atomic_store(&l->count, 0);
    if (atomic_fetch_add(&l->count, 1) >= per_s) {
        atomic_fetch_add(&l->dropped, 1);
        return 0;
    }
    *dropped = atomic_exchange(&l->dropped, 0);
    return 1;
}

void
log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024], out[1400], ts[SP_ISO_TIME_LEN + 1];
    const char *base = strrchr(file, '/');
    size_t pos;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_time_iso(sp_clock_now_ms(&sp_clock_real), ts);
    base = base ? base + 1 : file;

    if (log_fmt == LOG_JSON) {
        pos = (size_t)snprintf(out, sizeof(out),
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"src\":\"%s:%d\",\"msg\":\"", ts,
                               level_names[level], base, line);
        pos = put_escaped(out, pos, sizeof(out) - 4, msg);
        out[pos++] = '"';
        out[pos++] = '}';
    } else {
        pos = (size_t)snprintf(out, sizeof(out), "%s %-5s src=%s:%d msg=\"", ts, level_names[level],
                               base, line);
        pos = put_escaped(out, pos, sizeof(out) - 4, msg);
        out[pos++] = '"';
    }
    out[pos++] = '\n';
    /* One write per line keeps lines whole across threads; a failed log write has nowhere to go. */
    if (write(STDERR_FILENO, out, pos) < 0)
        return;
}
