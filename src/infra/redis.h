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

/* One script call of a pipeline: script number `script` with argv[0..argc) as ARGV. */
#define REDIS_CALL_ARGS_MAX 8
struct redis_call {
    int script;
    int argc;
    const char *argv[REDIS_CALL_ARGS_MAX];
};

/* Sends the n calls in one round trip and reads their replies into replies[0..n). A call whose
 * reply is an error, or that got none (the connection was lost: SP_EUNAVAIL, the connection is
 * reset), has a NULL reply. Returns the first error. Free with redis_replies_free. */
int redis_pipeline(struct redis *r, const struct redis_call *calls, int n, redisReply **replies,
                   struct sp_error *err) SP_MUST_CHECK;
void redis_replies_free(redisReply **replies, int n);

/* Drops the connection (the next call reconnects). */
void redis_disconnect(struct redis *r);

void redis_reply_free(redisReply *reply);

/* `url` with any password replaced by ***, into out[cap]. */
const char *redis_url_redact(const char *url, char *out, size_t cap);
