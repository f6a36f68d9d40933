/* redis.h: one blocking Redis connection with Lua scripts called by SHA.
 *
 * A connection belongs to one thread. It connects lazily and again after any I/O error, so a
 * Redis restart costs the calls made while it is down (SP_EUNAVAIL) and nothing else. Scripts
 * are registered up front (redis_new) and loaded on each (re)connection with SCRIPT LOAD; calls
 * use EVALSHA and reload once on NOSCRIPT (a SCRIPT FLUSH).
 *
 * Replies are struct redis_value trees of our own, copied out of the client library's reply
 * into one heap block the caller frees with redis_value_free: the library and its types stay
 * inside redis.c (scripts/lint.sh checks), and a reply larger than the connection's cap
 * (REDIS_VALUE_MAX by default) is SP_ETOOLARGE. */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct redis;

/* RV_, not REDIS_: the client library's macros (REDIS_ERR, REDIS_OK...) would clash in redis.c. */
enum redis_type { RV_NIL = 0, RV_INT, RV_STR, RV_ARR, RV_ERR, RV_STATUS };

/* One reply value. Read-only; every pointer points into the block of the top-level value. */
struct redis_value {
    enum redis_type type;
    long long integer;               /* RV_INT */
    const char *str;                 /* RV_STR, RV_ERR, RV_STATUS: len bytes and a NUL; else "" */
    size_t len;                      /* of str */
    size_t n;                        /* RV_ARR: items[0..n) */
    const struct redis_value *items; /* RV_ARR; NULL otherwise */
};

/* Bytes a reply may take once copied (the values, the strings and their NULs). */
#define REDIS_VALUE_MAX ((size_t)64 << 20)

/* Frees a reply (NULL-safe). */
void redis_value_free(struct redis_value *v);

struct redis_script {
    const char *name; /* for logs */
    const char *lua;
};

/* url: redis://[[user]:password@]host[:port][/db]. Does not connect (see redis_ping). The
 * script table must outlive the connection. */
int redis_new(const char *url, const struct redis_script *scripts, int nscripts, struct redis **out,
              struct sp_error *err) SP_MUST_CHECK;
void redis_free(struct redis *r);

/* Connects if needed and checks the server answers. */
int redis_ping(struct redis *r, struct sp_error *err) SP_MUST_CHECK;

/* The reply size cap of this connection (tests lower it); 0 restores REDIS_VALUE_MAX. */
void redis_set_reply_max(struct redis *r, size_t bytes);

/* One command; *out receives the reply (never a top-level error reply: those become SP_E*
 * codes), or NULL on error. */
int redis_command(struct redis *r, int argc, const char **argv, const size_t *lens,
                  struct redis_value **out, struct sp_error *err) SP_MUST_CHECK;

/* Runs script number `script` with no KEYS and argv as ARGV. */
int redis_script_call(struct redis *r, int script, int argc, const char **argv, const size_t *lens,
                      struct redis_value **out, struct sp_error *err) SP_MUST_CHECK;

/* One script call of a pipeline: script number `script` with argv[0..argc) as ARGV. */
#define REDIS_CALL_ARGS_MAX 8
struct redis_call {
    int script;
    int argc;
    const char *argv[REDIS_CALL_ARGS_MAX];
};

/* Sends the n calls in one round trip and reads their replies into replies[0..n). A call whose
 * reply is an error, is too large (SP_ETOOLARGE), or that got none (the connection was lost:
 * SP_EUNAVAIL, the connection is reset), has a NULL reply. Returns the first error. Free with
 * redis_values_free. */
int redis_pipeline(struct redis *r, const struct redis_call *calls, int n,
                   struct redis_value **replies, struct sp_error *err) SP_MUST_CHECK;
void redis_values_free(struct redis_value **replies, int n);

/* Drops the connection (the next call reconnects). */
void redis_disconnect(struct redis *r);

/* `url` with any password replaced by ***, into out[cap]. */
const char *redis_url_redact(const char *url, char *out, size_t cap);
