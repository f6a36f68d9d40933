/* log.c: level-checked line logger (logfmt or JSON) with UTC millisecond timestamps. */
#include "core/log.h"

#include "core/clock.h"

#include <stdarg.h>
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

/* Appends `s` to buf escaped for a JSON string (or a quoted logfmt value, same rules). */
static size_t
put_escaped(char *buf, size_t pos, size_t cap, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
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
