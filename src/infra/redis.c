/* redis.c: one Redis connection with scripts by SHA (see redis.h). */
#include "infra/redis.h"

#include "core/log.h"
#include "core/xmalloc.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/time.h>

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 5000 /* above the longest BZPOPMIN block of a worker (250 ms) */
#define RECONNECT_QUIET_MS 1000 /* log a failed connect at most once per this interval */
#define SHA_LEN 40
/* Deeper than any reply of our commands and scripts; it bounds the copy's recursion. */
#define REPLY_DEPTH_MAX 16

struct redis {
    char host[256];
    int port;
    int db;
    char user[128];
    char password[256];
    char label[320]; /* host:port/db for logs */
    redisContext *ctx;
    const struct redis_script *scripts;
    int nscripts;
    char (*sha)[SHA_LEN + 1];
    size_t reply_max; /* bytes a copied reply may take */
};

/* Process-wide: Redis was found unreachable and not reachable since (logs say so once). */
static atomic_int redis_down;

/* ---- URL ---------------------------------------------------------------------------------- */

static int
copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* redis://[[user]:password@]host[:port][/db] */
static int
parse_url(struct redis *r, const char *url, struct sp_error *err)
{
    const char *p, *at, *slash, *colon, *hend;
    char *end;
    long v;

    if (url == NULL || strncmp(url, "redis://", 8) != 0)
        return sp_error_set(err, SP_EINVAL, "REDIS_URL",
                            "config: REDIS_URL: must be redis://[:password@]host[:port][/db]");
    p = url + 8;
    slash = strchr(p, '/');
    hend = slash ? slash : p + strlen(p);
    at = memrchr(p, '@', (size_t)(hend - p));
    if (at) {
        const char *c = memchr(p, ':', (size_t)(at - p));
        if (c == NULL)
            c = at; /* user only: no password */
        if (copy_part(r->user, sizeof(r->user), p, (size_t)(c - p)) != 0 ||
            (c < at &&
             copy_part(r->password, sizeof(r->password), c + 1, (size_t)(at - c - 1)) != 0))
            return sp_error_set(err, SP_EINVAL, "REDIS_URL", "config: REDIS_URL: user too long");
        p = at + 1;
    }
    colon = memchr(p, ':', (size_t)(hend - p));
    if (copy_part(r->host, sizeof(r->host), p, (size_t)((colon ? colon : hend) - p)) != 0 ||
        r->host[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "REDIS_URL", "config: REDIS_URL: bad host");
    r->port = 6379;
    if (colon) {
        v = strtol(colon + 1, &end, 10);
        if (end != hend || v < 1 || v > 65535)
            return sp_error_set(err, SP_EINVAL, "REDIS_URL", "config: REDIS_URL: bad port");
        r->port = (int)v;
    }
    r->db = 0;
    if (slash && slash[1] != '\0') {
        v = strtol(slash + 1, &end, 10);
        if (*end != '\0' || v < 0 || v > 100000)
            return sp_error_set(err, SP_EINVAL, "REDIS_URL",
                                "config: REDIS_URL: the path must be a database number");
        r->db = (int)v;
    }
    snprintf(r->label, sizeof(r->label), "%s:%d/%d", r->host, r->port, r->db);
    return SP_OK;
}

const char *
redis_url_redact(const char *url, char *out, size_t cap)
{
    const char *p, *at, *slash, *colon;

    if (cap == 0)
        return out;
    if (url == NULL) {
        out[0] = '\0';
        return out;
    }
    p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
    slash = strchr(p, '/');
    at = memrchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (colon == NULL)
        snprintf(out, cap, "%s", url);
    else
        snprintf(out, cap, "%.*s***%s", (int)(colon + 1 - url), url, at);
    return out;
}

/* ---- connection --------------------------------------------------------------------------- */

int
redis_new(const char *url, const struct redis_script *scripts, int nscripts, struct redis **out,
          struct sp_error *err)
{
    struct redis *r = xcalloc(1, sizeof(*r));
    int rc = parse_url(r, url, err);

    if (rc != SP_OK) {
        free(r);
        return rc;
    }
    r->scripts = scripts;
    r->nscripts = nscripts;
    r->sha = xcalloc((size_t)(nscripts > 0 ? nscripts : 1), sizeof(*r->sha));
    r->reply_max = REDIS_VALUE_MAX;
    *out = r;
    return SP_OK;
}

void
redis_disconnect(struct redis *r)
{
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
}

void
redis_free(struct redis *r)
{
    if (r == NULL)
        return;
    redis_disconnect(r);
    free(r->sha);
    free(r);
}

void
redis_set_reply_max(struct redis *r, size_t bytes)
{
    r->reply_max = bytes ? bytes : REDIS_VALUE_MAX;
}

static void
raw_free(redisReply *rep)
{
    if (rep)
        freeReplyObject(rep);
}

/* ---- replies: hiredis's reply copied into one block of our own ---------------------------- */

/* The block holds the top value, then every array's items (nodes bytes), then the strings and
 * their NULs (strs bytes); nodes + strs stay within max. */
struct copy {
    size_t max, nodes, strs;
    struct redis_value *node; /* filling: the next free value */
    char *str;                /* filling: the next free string byte */
};

/* Our type of a hiredis reply type; -1 for RESP3 types (we never send HELLO 3). */
static int
type_of(int t)
{
    switch (t) {
    case REDIS_REPLY_STRING:
        return RV_STR;
    case REDIS_REPLY_ARRAY:
        return RV_ARR;
    case REDIS_REPLY_INTEGER:
        return RV_INT;
    case REDIS_REPLY_NIL:
        return RV_NIL;
    case REDIS_REPLY_STATUS:
        return RV_STATUS;
    case REDIS_REPLY_ERROR:
        return RV_ERR;
    default:
        return -1;
    }
}

/* Counts `add` bytes into *part unless the block would pass the cap. */
static int
take_bytes(struct copy *c, size_t *part, size_t add)
{
    if (add > c->max - c->nodes - c->strs)
        return SP_ETOOLARGE;
    *part += add;
    return SP_OK;
}

/* Adds the bytes of rep's items and strings (its own value is counted by its parent). */
static int
measure(struct copy *c, const redisReply *rep, int depth)
{
    int type = type_of(rep->type), rc = SP_OK;

    if (type < 0)
        return SP_EINTERNAL;
    if (depth > REPLY_DEPTH_MAX)
        return SP_ETOOLARGE;
    if (type == RV_STR || type == RV_STATUS || type == RV_ERR)
        return rep->len < c->max ? take_bytes(c, &c->strs, rep->len + 1) : SP_ETOOLARGE;
    if (type != RV_ARR)
        return SP_OK;
    if (rep->elements > c->max / sizeof(struct redis_value))
        return SP_ETOOLARGE;
    rc = take_bytes(c, &c->nodes, rep->elements * sizeof(struct redis_value));
    for (size_t i = 0; rc == SP_OK && i < rep->elements; i++)
        rc = measure(c, rep->element[i], depth + 1);
    return rc;
}

static void
fill(struct copy *c, const redisReply *rep, struct redis_value *v)
{
    *v = (struct redis_value){.type = (enum redis_type)type_of(rep->type), .str = ""};
    switch (v->type) {
    case RV_INT:
        v->integer = rep->integer;
        break;
    case RV_STR:
    case RV_STATUS:
    case RV_ERR:
        memcpy(c->str, rep->str, rep->len);
        c->str[rep->len] = '\0';
        v->str = c->str;
        v->len = rep->len;
        c->str += rep->len + 1;
        break;
    case RV_ARR: {
        struct redis_value *items = c->node;
        c->node += rep->elements;
        for (size_t i = 0; i < rep->elements; i++)
            fill(c, rep->element[i], &items[i]);
        v->n = rep->elements;
        v->items = v->n ? items : NULL;
        break;
    }
    case RV_NIL:
        break;
    }
}

/* Copies rep into *out and frees rep, whatever happens. */
static int
take_reply(struct redis *r, redisReply *rep, struct redis_value **out, struct sp_error *err)
{
    struct copy c = {.max = r->reply_max};
    int rc = take_bytes(&c, &c.nodes, sizeof(struct redis_value));
    char *block;

    *out = NULL;
    if (rc == SP_OK)
        rc = measure(&c, rep, 0);
    if (rc == SP_OK) {
        block = xmalloc(c.nodes + c.strs);
        c.node = (struct redis_value *)block + 1;
        c.str = block + c.nodes;
        fill(&c, rep, (struct redis_value *)block);
        *out = (struct redis_value *)block;
    }
    raw_free(rep);
    if (rc == SP_ETOOLARGE)
        return sp_error_set(err, rc, "redis", "redis %s: reply larger than %zu bytes", r->label,
                            c.max);
    if (rc != SP_OK)
        return sp_error_set(err, rc, "redis", "redis %s: unexpected reply type", r->label);
    return SP_OK;
}

void
redis_value_free(struct redis_value *v)
{
    free(v); /* one block: see take_reply */
}

void
redis_values_free(struct redis_value **replies, int n)
{
    for (int i = 0; i < n; i++) {
        redis_value_free(replies[i]);
        replies[i] = NULL;
    }
}

static struct timeval
tv_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* The connection is gone: drop it so the next call reconnects. */
static int
io_error(struct redis *r, const char *what, struct sp_error *err)
{
    int rc = sp_error_set(err, SP_EUNAVAIL, "redis", "redis %s: %s", r->label,
                          r->ctx && r->ctx->errstr[0] ? r->ctx->errstr : what);
    redis_disconnect(r);
    return rc;
}

/* An error reply: retryable when the server is loading, busy or out of memory. */
static int
reply_error(struct redis *r, const redisReply *rep, struct sp_error *err)
{
    static const char *const transient[] = {"LOADING",  "BUSY",     "OOM",        "MASTERDOWN",
                                            "TRYAGAIN", "READONLY", "CLUSTERDOWN"};
    int code = SP_EINTERNAL;

    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        if (strncmp(rep->str, transient[i], strlen(transient[i])) == 0)
            code = SP_EUNAVAIL;
    return sp_error_set(err, code, "redis", "redis %s: %.*s", r->label, (int)rep->len, rep->str);
}

/* A raw command on the open connection; error replies become SP_E* codes. */
static int
raw(struct redis *r, int argc, const char **argv, const size_t *lens, redisReply **out,
    struct sp_error *err)
{
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, lens);

    *out = NULL;
    if (rep == NULL)
        return io_error(r, "connection lost", err);
    if (rep->type == REDIS_REPLY_ERROR) {
        int rc = reply_error(r, rep, err);
        freeReplyObject(rep);
        return rc;
    }
    *out = rep;
    return SP_OK;
}

static int
load_script(struct redis *r, int i, struct sp_error *err)
{
    const char *argv[] = {"SCRIPT", "LOAD", r->scripts[i].lua};
    redisReply *rep;
    int rc = raw(r, 3, argv, NULL, &rep, err);

    if (rc != SP_OK)
        return rc;
    if (rep->type != REDIS_REPLY_STRING || rep->len != SHA_LEN) {
        freeReplyObject(rep);
        return sp_error_set(err, SP_EINTERNAL, "redis", "SCRIPT LOAD %s: unexpected reply",
                            r->scripts[i].name);
    }
    memcpy(r->sha[i], rep->str, SHA_LEN);
    r->sha[i][SHA_LEN] = '\0';
    freeReplyObject(rep);
    return SP_OK;
}

static int
handshake(struct redis *r, struct sp_error *err)
{
    redisReply *rep = NULL;
    int rc = SP_OK;

    if (r->password[0]) {
        const char *argv[] = {"AUTH", r->user, r->password};
        rc = r->user[0] ? raw(r, 3, argv, NULL, &rep, err)
                        : raw(r, 2, (const char *[]){"AUTH", r->password}, NULL, &rep, err);
        raw_free(rep);
    }
    if (rc == SP_OK && r->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->db);
        rc = raw(r, 2, (const char *[]){"SELECT", db}, NULL, &rep, err);
        raw_free(rep);
    }
    for (int i = 0; rc == SP_OK && i < r->nscripts; i++)
        rc = load_script(r, i, err);
    return rc;
}

static int
ensure(struct redis *r, struct sp_error *err)
{
    int rc;

    if (r->ctx)
        return SP_OK;
    r->ctx = redisConnectWithTimeout(r->host, r->port, tv_ms(CONNECT_TIMEOUT_MS));
    if (r->ctx == NULL)
        return sp_error_set(err, SP_EUNAVAIL, "redis", "redis %s: out of memory", r->label);
    if (r->ctx->err) {
        rc = io_error(r, "cannot connect", err);
        if (atomic_exchange(&redis_down, 1) == 0)
            log_warn("redis %s unreachable; calls answer unavailable until it is back", r->label);
        return rc;
    }
    redisSetTimeout(r->ctx, tv_ms(COMMAND_TIMEOUT_MS));
    redisEnableKeepAlive(r->ctx);
    rc = handshake(r, err);
    if (rc != SP_OK) {
        redis_disconnect(r);
        return rc;
    }
    if (atomic_exchange(&redis_down, 0) == 1)
        log_info("redis %s reachable again", r->label);
    return SP_OK;
}

int
redis_ping(struct redis *r, struct sp_error *err)
{
    struct redis_value *rep;
    int rc = redis_command(r, 1, (const char *[]){"PING"}, NULL, &rep, err);

    redis_value_free(rep);
    return rc;
}

int
redis_command(struct redis *r, int argc, const char **argv, const size_t *lens,
              struct redis_value **out, struct sp_error *err)
{
    redisReply *rep = NULL;
    int rc = ensure(r, err);

    *out = NULL;
    if (rc == SP_OK)
        rc = raw(r, argc, argv, lens, &rep, err);
    return rc == SP_OK ? take_reply(r, rep, out, err) : rc;
}

#define MAX_ARGS 32

/* EVALSHA sha 0 argv... into argv2/lens2. */
static int
build_evalsha(struct redis *r, int script, int argc, const char *const *argv, const size_t *lens,
              const char **argv2, size_t *lens2, struct sp_error *err)
{
    if (script < 0 || script >= r->nscripts || argc + 3 > MAX_ARGS)
        return sp_error_set(err, SP_EINTERNAL, "redis", "bad script call");
    argv2[0] = "EVALSHA";
    argv2[1] = r->sha[script];
    argv2[2] = "0";
    lens2[0] = 7;
    lens2[1] = SHA_LEN;
    lens2[2] = 1;
    for (int i = 0; i < argc; i++) {
        argv2[3 + i] = argv[i];
        lens2[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    return SP_OK;
}

int
redis_script_call(struct redis *r, int script, int argc, const char **argv, const size_t *lens,
                  struct redis_value **out, struct sp_error *err)
{
    const char *argv2[MAX_ARGS];
    size_t lens2[MAX_ARGS];
    redisReply *rep = NULL;
    int rc = ensure(r, err);

    *out = NULL;
    for (int tries = 0; rc == SP_OK; tries++) {
        struct sp_error e = {0};
        rc = build_evalsha(r, script, argc, argv, lens, argv2, lens2, err);
        if (rc == SP_OK)
            rc = raw(r, argc + 3, argv2, lens2, &rep, &e);
        if (rc == SP_OK || tries > 0 || strstr(e.msg, "NOSCRIPT") == NULL) {
            if (rc != SP_OK && err && err->code == SP_OK)
                *err = e;
            break;
        }
        /* The server lost its scripts (SCRIPT FLUSH): load this one again and retry once. */
        rc = load_script(r, script, err);
    }
    return rc == SP_OK ? take_reply(r, rep, out, err) : rc;
}

static int
pipe_send(struct redis *r, int script, int argc, const char *const *argv, const size_t *lens,
          struct sp_error *err)
{
    const char *argv2[MAX_ARGS];
    size_t lens2[MAX_ARGS];
    int rc = ensure(r, err);

    if (rc == SP_OK)
        rc = build_evalsha(r, script, argc, argv, lens, argv2, lens2, err);
    if (rc == SP_OK && redisAppendCommandArgv(r->ctx, argc + 3, argv2, lens2) != REDIS_OK)
        rc = io_error(r, "cannot queue a command", err);
    return rc;
}

static int
pipe_reply(struct redis *r, struct redis_value **out, struct sp_error *err)
{
    void *rep = NULL;

    *out = NULL;
    if (r->ctx == NULL)
        return sp_error_set(err, SP_EUNAVAIL, "redis", "redis %s: connection lost", r->label);
    if (redisGetReply(r->ctx, &rep) != REDIS_OK || rep == NULL)
        return io_error(r, "connection lost", err);
    if (((redisReply *)rep)->type == REDIS_REPLY_ERROR) {
        int rc = reply_error(r, rep, err);
        if (strstr(((redisReply *)rep)->str, "NOSCRIPT")) {
            /* The server lost its scripts: reconnecting loads them again. */
            rc = io_error(r, "scripts flushed", NULL);
        }
        freeReplyObject(rep);
        return rc;
    }
    return take_reply(r, rep, out, err);
}

int
redis_pipeline(struct redis *r, const struct redis_call *calls, int n, struct redis_value **replies,
               struct sp_error *err)
{
    int rc = SP_OK, sent = 0;

    for (int i = 0; i < n; i++)
        replies[i] = NULL;
    for (int i = 0; rc == SP_OK && i < n; i++) {
        rc = pipe_send(r, calls[i].script, calls[i].argc, calls[i].argv, NULL, err);
        sent += rc == SP_OK;
    }
    for (int i = 0; i < sent; i++) {
        int x = pipe_reply(r, &replies[i], err);
        if (x != SP_OK && rc == SP_OK)
            rc = x;
        if (x == SP_EUNAVAIL)
            break; /* the connection was reset: the other replies are gone */
    }
    return rc;
}
