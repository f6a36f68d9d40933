/* redis.h: one Redis connection (hiredis, blocking) with Lua scripts called by SHA.
 *
 * A connection belongs to one thread. It connects lazily and again after any I/O error, so a
 * Redis restart costs the calls made while it is down (SP_EUNAVAIL) and nothing else. Scripts
 * are registered up front (redis_new) and loaded on each (re)connection with SCRIPT LOAD; calls
 * use EVALSHA and reload once on NOSCRIPT (a SCRIPT FLUSH). Replies are hiredis redisReply
 * values owned by the caller (redis_reply_free). */
#pragma once

#include "core/err.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

struct redis;

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

/* One command; *out receives the reply (never an error reply: those become SP_E* codes). */
int redis_command(struct redis *r, int argc, const char **argv, const size_t *lens,
                  redisReply **out, struct sp_error *err) SP_MUST_CHECK;

/* Runs script number `script` with no KEYS and argv as ARGV. */
int redis_script_call(struct redis *r, int script, int argc, const char **argv, const size_t *lens,
                      redisReply **out, struct sp_error *err) SP_MUST_CHECK;

/* Pipelining: append n script calls, then read their n replies in order. redis_pipe_send
 * queues a call; redis_pipe_reply reads the next reply (an error reply of a script call is
 * returned as SP_EINTERNAL with its text, the connection stays usable). After an SP_EUNAVAIL
 * the connection is reset and the remaining replies are lost. */
int redis_pipe_send(struct redis *r, int script, int argc, const char **argv, const size_t *lens,
                    struct sp_error *err) SP_MUST_CHECK;
int redis_pipe_reply(struct redis *r, redisReply **out, struct sp_error *err) SP_MUST_CHECK;

/* Drops the connection (the next call reconnects). */
void redis_disconnect(struct redis *r);

void redis_reply_free(redisReply *reply);

/* `url` with any password replaced by ***, into out[cap]. */
const char *redis_url_redact(const char *url, char *out, size_t cap);
