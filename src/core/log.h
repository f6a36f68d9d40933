/* log.h: one line per event on stderr, as logfmt text or JSON (LOG_FORMAT).
 *
 * The macros test the level before formatting anything. Messages carry no PII above debug.
 * Thread-safe: each line is written with a single write(2). */
#pragma once

enum log_level { SP_LOG_ERROR = 0, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG };
enum log_format { LOG_TEXT = 0, LOG_JSON };

extern enum log_level sp_log_level;

void log_setup(enum log_level level, enum log_format format);
/* Parses "error", "warn", "info", "debug"; returns 0 on success, -1 otherwise. */
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SP_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= sp_log_level)                                                                 \
            log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);                                     \
    } while (0)
#define log_error(...) SP_LOG(SP_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) SP_LOG(SP_LOG_WARN, __VA_ARGS__)
#define log_info(...) SP_LOG(SP_LOG_INFO, __VA_ARGS__)
#define log_debug(...) SP_LOG(SP_LOG_DEBUG, __VA_ARGS__)

/* A cap for lines a client can cause at will (an aborted connection, a malformed request): at
 * most `per_s` such lines a second are written; the next one written says how many were
 * dropped. Zero-initialised; shared by threads. */
struct log_limit {
    _Atomic long long second;
    _Atomic int count;
    _Atomic int dropped;
};

/* Returns 1 when a line may be written now, and then *dropped = lines dropped since the last. */
int log_limit_pass(struct log_limit *l, int per_s, int *dropped);
