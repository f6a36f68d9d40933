/* idempotency.c: Idempotency-Key on POST routes (see idempotency.h). */
#include "app/idempotency.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/hex.h"
#include "core/http.h"
#include "core/log.h"
#include "infra/db.h"

#include <stdio.h>
#include <string.h>

#define PRUNE_EVERY 256

DB_STMT_SAME(SQL_IDEM_GET, "SELECT request_hash, status, content_type, body, created_at"
                           " FROM idempotency_keys WHERE scope = $1 AND key = $2");
/* A live row of the key wins (no change: the caller answers 409); an expired one is replaced. */
DB_STMT_SAME(SQL_IDEM_PUT,
             "INSERT INTO idempotency_keys (scope, key, request_hash, status, content_type, body,"
             " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
             " ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash,"
             " status = excluded.status, content_type = excluded.content_type,"
             " body = excluded.body, created_at = excluded.created_at"
             " WHERE idempotency_keys.created_at < $8");
DB_STMT_SAME(SQL_IDEM_PRUNE, "DELETE FROM idempotency_keys WHERE created_at < $1");

void
idempotency_init(struct idempotency *im, int64_t ttl_s, int scoped_by_api_key)
{
    memset(im, 0, sizeof(*im));
    im->ttl_ms = ttl_s * 1000;
    im->scoped = scoped_by_api_key;
    pthread_mutex_init(&im->mu, NULL);
    atomic_init(&im->calls, 0);
}

void
idempotency_cleanup(struct idempotency *im)
{
    pthread_mutex_destroy(&im->mu);
}

/* 1..IDEMPOTENCY_KEY_MAX visible ASCII characters (what clients send: UUIDs, ULIDs, ...). */
static int
key_valid(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return 0;
    return 1;
}

/* The request's digest: method, path, content type and body, each length-prefixed. */
static void
request_hash(const struct http_request *req, char out[65])
{
    const char *parts[] = {req->method, req->path, req->content_type ? req->content_type : ""};
    size_t lens[] = {strlen(parts[0]), strlen(parts[1]), strlen(parts[2])};
    size_t total = 0, pos = 0;
    unsigned char d[SP_SHA256_LEN];
    char *buf;

    for (int i = 0; i < 3; i++)
        total += 21 + lens[i];
    total += 21 + req->body_len;
    buf = arena_alloc(req->arena, total);
    for (int i = 0; i < 3; i++)
        pos += (size_t)snprintf(buf + pos, total - pos, "%zu:%s", lens[i], parts[i]);
    pos += (size_t)snprintf(buf + pos, total - pos, "%zu:", req->body_len);
    if (req->body_len > 0)
        memcpy(buf + pos, req->body, req->body_len);
    sp_sha256(buf, pos + req->body_len, d);
    sp_hex_encode(d, sizeof(d), out);
}

/* Adds the call's digest to the running keys; 0 when it is running already (or the table is
 * full: then the request is told to retry, as for a running key). */
static int
flying_add(struct idempotency *im, const unsigned char d[32])
{
    int ok = 1;

    pthread_mutex_lock(&im->mu);
    for (int i = 0; ok && i < im->nflying; i++)
        if (memcmp(im->flying[i], d, 32) == 0)
            ok = 0;
    if (ok && im->nflying == IDEMPOTENCY_FLYING_MAX)
        ok = 0;
    if (ok)
        memcpy(im->flying[im->nflying++], d, 32);
    pthread_mutex_unlock(&im->mu);
    return ok;
}

static void
flying_remove(struct idempotency *im, const unsigned char d[32])
{
    pthread_mutex_lock(&im->mu);
    for (int i = 0; i < im->nflying; i++) {
        if (memcmp(im->flying[i], d, 32) == 0) {
            memcpy(im->flying[i], im->flying[--im->nflying], 32);
            break;
        }
    }
    pthread_mutex_unlock(&im->mu);
}

static void
running(struct http_response *resp, struct arena *a)
{
    http_error1(resp, a, 409, "A request with this Idempotency-Key is still being processed");
    resp->retry_after = 1;
}

/* Answers from a stored row: a replay, or 422 for another request under the key. 0 when the
 * key has no live row. */
static int
answer_stored(struct idempotency *im, struct db_conn *conn, struct http_request *req,
              struct http_response *resp, const struct idempotency_call *call)
{
    struct sp_error err = {0};
    struct db_rows rows;
    int rc = db_query(conn, &SQL_IDEM_GET, DB_ARGS(db_text(call->scope), db_text(call->key)),
                      req->arena, &rows, &err);

    if (rc != SP_OK) {
        log_warn("idempotency: reading key failed: %s", err.msg);
        http_error1(resp, req->arena, 503, "Service temporarily unavailable, retry later");
        resp->retry_after = 1;
        return 1;
    }
    if (rows.nrows == 0 || db_cell_int(&rows, 0, 4) < call->now - im->ttl_ms)
        return 0;
    if (strcmp(db_cell(&rows, 0, 0), call->hash) != 0) {
        http_error1(resp, req->arena, 422,
                    "Idempotency-Key was already used with a different request");
        return 1;
    }
    resp->status = (int)db_cell_int(&rows, 0, 1);
    resp->content_type = db_cell(&rows, 0, 2);
    resp->body = db_cell(&rows, 0, 3);
    resp->body_len = strlen(resp->body);
    (void)http_response_header(resp, "Idempotent-Replayed", "true");
    return 1;
}

enum idempotency_start
idempotency_start(struct idempotency *im, struct db_conn *conn, struct http_request *req,
                  struct http_response *resp, struct idempotency_call *call)
{
    struct sp_error err = {0};
    unsigned char d[SP_SHA256_LEN];
    char *sk;

    if (strcmp(req->method, "POST") != 0 || req->idempotency_key == NULL)
        return IDEMPOTENCY_SKIP;
    memset(call, 0, sizeof(*call));
    if (!key_valid(req->idempotency_key)) {
        http_error1(resp, req->arena, 400,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters");
        return IDEMPOTENCY_DONE;
    }
    call->key = req->idempotency_key;
    call->now = sp_clock_now_ms(&sp_clock_real);
    if (im->scoped && req->api_key != NULL) {
        sp_sha256(req->api_key, strlen(req->api_key), d);
        sp_hex_encode(d, 16, call->scope);
    }
    request_hash(req, call->hash);
    sk = arena_printf(req->arena, "%s\n%s", call->scope, call->key);
    sp_sha256(sk, strlen(sk), call->digest);
    /* A stored answer first: replays never mark the key running, so that retries arriving
     * together all replay instead of telling each other "still being processed". Read again
     * once marked: the run before us may have stored its answer in between. */
    if (answer_stored(im, conn, req, resp, call))
        return IDEMPOTENCY_DONE;
    if (!flying_add(im, call->digest)) {
        running(resp, req->arena);
        return IDEMPOTENCY_DONE;
    }
    if (answer_stored(im, conn, req, resp, call)) {
        flying_remove(im, call->digest);
        return IDEMPOTENCY_DONE;
    }
    if (db_begin(conn, &err) != SP_OK) {
        flying_remove(im, call->digest);
        log_warn("idempotency: begin failed: %s", err.msg);
        http_error1(resp, req->arena, 503, "Service temporarily unavailable, retry later");
        resp->retry_after = 1;
        return IDEMPOTENCY_DONE;
    }
    return IDEMPOTENCY_RUN;
}

static void
prune(struct idempotency *im, struct db_conn *conn, int64_t now)
{
    struct sp_error err = {0};

    if (atomic_fetch_add(&im->calls, 1) % PRUNE_EVERY != 0)
        return;
    if (db_exec(conn, &SQL_IDEM_PRUNE, DB_ARGS(db_time(now - im->ttl_ms)), NULL, &err) != SP_OK)
        log_warn("idempotency: pruning old keys failed: %s", err.msg);
}

/* Stores the answer under the key, in the open transaction: SP_ECONFLICT when a live row of
 * the key is there (another process ran it meanwhile). */
static int
store(struct idempotency *im, struct db_conn *conn, const struct http_response *resp,
      const struct idempotency_call *call, struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(conn, &SQL_IDEM_PUT,
                     DB_ARGS(db_text(call->scope), db_text(call->key), db_text(call->hash),
                             db_int(resp->status),
                             db_text(resp->content_type ? resp->content_type : "application/json"),
                             db_text(resp->body ? resp->body : ""), db_time(call->now),
                             db_time(call->now - im->ttl_ms)),
                     &changes, err);

    if (rc == SP_OK && changes == 0)
        return sp_error_set(err, SP_ECONFLICT, "Idempotency-Key", "key stored meanwhile");
    return rc;
}

int
idempotency_finish(struct idempotency *im, struct db_conn *conn, struct http_request *req,
                   struct http_response *resp, struct idempotency_call *call)
{
    struct sp_error err = {0};
    int committed = 0;
    int rc;

    if (resp->status < 200 || resp->status > 299 || !db_in_tx(conn)) {
        db_rollback(conn); /* nothing happened: nothing to keep */
        flying_remove(im, call->digest);
        return 0;
    }
    rc = store(im, conn, resp, call, &err);
    if (rc == SP_OK)
        rc = db_commit(conn, &err);
    else
        db_rollback(conn);
    if (rc == SP_ECONFLICT) {
        running(resp, req->arena); /* the other one's effect stands; ours is undone */
    } else if (rc != SP_OK) {
        log_warn("idempotency: storing the key with its effect failed: %s", err.msg);
        memset(resp, 0, sizeof(*resp));
        http_error1(resp, req->arena, 503, "Service temporarily unavailable, retry later");
        resp->retry_after = 1;
    } else {
        committed = 1;
        prune(im, conn, call->now);
    }
    flying_remove(im, call->digest);
    return committed;
}
