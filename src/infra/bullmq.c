/* bullmq.c: the BullMQ script layer (see bullmq.h). */
#include "infra/bullmq.h"

#include "core/arena.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char sp_lua_add[], sp_lua_fetch[], sp_lua_complete[], sp_lua_retry[], sp_lua_fail[],
    sp_lua_extend[], sp_lua_giveback[], sp_lua_stalled[], sp_lua_reprocess[];

const struct redis_script bullmq_scripts[BULLMQ_NSCRIPTS] = {
    [BULLMQ_ADD] = {"add", sp_lua_add},
    [BULLMQ_FETCH] = {"fetch", sp_lua_fetch},
    [BULLMQ_COMPLETE] = {"complete", sp_lua_complete},
    [BULLMQ_RETRY] = {"retry", sp_lua_retry},
    [BULLMQ_FAIL] = {"fail", sp_lua_fail},
    [BULLMQ_EXTEND] = {"extend", sp_lua_extend},
    [BULLMQ_GIVEBACK] = {"giveback", sp_lua_giveback},
    [BULLMQ_STALLED] = {"stalled", sp_lua_stalled},
    [BULLMQ_REPROCESS] = {"reprocess", sp_lua_reprocess},
};

/* A script's code for "this lock is not ours": release() in common.lua. */
const char *
bullmq_release_text(long long code)
{
    switch (code) {
    case -1:
        return "the job no longer exists";
    case -2:
        return "its lock expired";
    case -6:
        return "another worker holds its lock";
    case -3:
        return "it is not active";
    case -4:
        return "it is active: its last attempt's outcome has not reached Redis yet";
    case -5:
        return "it is neither failed nor active (retried or removed by someone else)";
    default:
        return "unexpected script result";
    }
}

/* The extend call of one held lock. */
void
bullmq_extend_call(const char *prefix, const char *id, const char *token, const char *slease,
                   struct redis_call *call)
{
    call->script = BULLMQ_EXTEND;
    call->argc = 4;
    call->argv[0] = prefix;
    call->argv[1] = id;
    call->argv[2] = token ? token : "";
    call->argv[3] = slease;
}

/* Whether an extend reply says the lock is ours (no reply: cannot tell, so not lost). */
int
bullmq_extend_lost(const struct redis_value *rep)
{
    return rep && (rep->type != RV_INT || rep->integer != 1);
}

/* opts.backoff: a number (fixed delay) or {type, delay, jitter}. */
static void
parse_backoff(json_t *b, struct job *j)
{
    j->backoff_type = JOB_BACKOFF_FIXED;
    j->backoff_ms = 0;
    j->jitter_pct = 0; /* BullMQ's default: none */
    if (json_is_number(b)) {
        j->backoff_ms = (int64_t)json_number_value(b);
        return;
    }
    if (!json_is_object(b))
        return;
    if (json_is_number(json_object_get(b, "delay")))
        j->backoff_ms = (int64_t)json_number_value(json_object_get(b, "delay"));
    if (json_is_number(json_object_get(b, "jitter"))) {
        double jit = json_number_value(json_object_get(b, "jitter"));
        j->jitter_pct = jit <= 0 ? 0 : jit >= 1 ? 100 : (int)(jit * 100 + 0.5);
    }
    if (json_is_string(json_object_get(b, "type"))) {
        const char *t = json_string_value(json_object_get(b, "type"));
        if (strcmp(t, "exponential") == 0)
            j->backoff_type = JOB_BACKOFF_EXPONENTIAL;
        else if (strcmp(t, "fixed") != 0)
            log_warn("job %s: backoff type \"%s\" is a Node function; retrying at fixed delay",
                     j->id, t);
    }
    if (j->backoff_ms < 0)
        j->backoff_ms = 0;
}

static void
parse_opts(const char *opts, struct job *j)
{
    json_t *o = opts ? json_loads(opts, 0, NULL) : NULL;

    j->max_attempts = 1;
    j->backoff_type = JOB_BACKOFF_FIXED;
    if (o && json_is_integer(json_object_get(o, "attempts")) &&
        json_integer_value(json_object_get(o, "attempts")) > 1)
        j->max_attempts = (int)json_integer_value(json_object_get(o, "attempts"));
    if (o)
        parse_backoff(json_object_get(o, "backoff"), j);
    json_decref(o);
}

static const char *
field(const struct redis_value *h, const char *name)
{
    for (size_t i = 0; i + 1 < h->n; i += 2)
        if (h->items[i].type == RV_STR && strcmp(h->items[i].str, name) == 0 &&
            h->items[i + 1].type == RV_STR)
            return h->items[i + 1].str;
    return NULL;
}

static int64_t
field_int(const struct redis_value *h, const char *name)
{
    const char *v = field(h, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

void
bullmq_hash_to_job(const struct redis_value *h, struct arena *a, struct job *j)
{
    const char *atm = field(h, "atm");

    j->name = arena_strdup(a, field(h, "name") ? field(h, "name") : "");
    j->data = arena_strdup(a, field(h, "data") ? field(h, "data") : "null");
    parse_opts(field(h, "opts"), j);
    j->attempts_made = (int)(atm ? strtol(atm, NULL, 10) : field_int(h, "attemptsMade"));
    j->stalled_count = (int)field_int(h, "stc");
    j->created_at = field_int(h, "timestamp");
    j->last_error = field(h, "failedReason") ? arena_strdup(a, field(h, "failedReason")) : NULL;
    j->state = JOB_ACTIVE;
    j->requeued = bullmq_hash_requeued(h);
}

/* A failed attempt leaves its reason in both failedReason and the stacktrace (fail, retry and
 * BullMQ's own moveToFinished write the two); putting the job back in line from `failed`
 * (BullMQ's reprocessJob, our reprocess) deletes failedReason and keeps the stacktrace. Nothing
 * else removes failedReason: a job whose failure was recorded in the database but never reached
 * Redis (a worker that died, Redis down after the commit) comes back through the stalled check
 * with failedReason as it was (set, if an attempt failed before) or with no stacktrace at all. */
int
bullmq_hash_requeued(const struct redis_value *h)
{
    const char *st = field(h, "stacktrace");

    return field(h, "failedReason") == NULL && st != NULL && strcmp(st, "[]") != 0 && st[0] != '\0';
}
