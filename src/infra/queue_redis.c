/* queue_redis.c: BullMQ-layout Redis queue with a transactional outbox (see queue_redis.h). */
#include "infra/queue_redis.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/lease_set.h"
#include "core/log.h"
#include "core/uuid.h"
#include "core/xmalloc.h"
#include "infra/db.h"
#include "infra/job_rows.h"
#include "core/queue_signal.h"
#include "infra/bullmq.h"
#include "infra/redis.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MAX_MS 250 /* longest block on the marker */

/* ---- SQL ---------------------------------------------------------------------------------- */

DB_STMT_SAME(SQL_ENQUEUE,
             "INSERT INTO outbox (id, name, lead_id, message_id, data, opts, state, attempts_made,"
             " max_attempts, run_at, created_at, updated_at, queue)"
             " VALUES ($1, $2, $3, $4, $5, $6, 'waiting', 0, $7, $8, $8, $8, $9)");
/* The record, without the payload (data): what GET /leads/:id shows. */
DB_STMT_SAME(SQL_BY_GROUP, "SELECT " JOB_RECORD_COLUMNS " FROM outbox WHERE lead_id = $1"
                           " ORDER BY created_at DESC, id DESC LIMIT $2");
/* The operator's list of this queue's records (rows from before the queue column included),
 * newest first: keyset on (created_at, id) below ($1, $2), $3 a name or NULL, every state
 * (outbox_by_created) or one ($6, outbox_by_state). */
#define LIST_WHERE(below, name_is_null)                                                            \
    " (created_at, id) < " below " AND (" name_is_null " OR name = $3)"                            \
    " AND (queue = $5 OR queue IS NULL) ORDER BY created_at DESC, id DESC LIMIT $4"
DB_STMT(SQL_LIST,
        "SELECT " JOB_RECORD_COLUMNS " FROM outbox WHERE" LIST_WHERE("($1, $2)", "$3 IS NULL"),
        "SELECT " JOB_RECORD_COLUMNS
        " FROM outbox WHERE" LIST_WHERE("($1::timestamptz, $2::text)", "$3::text IS NULL"));
DB_STMT(SQL_LIST_STATE,
        "SELECT " JOB_RECORD_COLUMNS
        " FROM outbox WHERE state = $6 AND" LIST_WHERE("($1, $2)", "$3 IS NULL"),
        "SELECT " JOB_RECORD_COLUMNS
        " FROM outbox WHERE state = $6 AND" LIST_WHERE("($1::timestamptz, $2::text)",
                                                       "$3::text IS NULL"));
DB_STMT_SAME(SQL_GET, "SELECT " JOB_RECORD_COLUMNS " FROM outbox"
                      " WHERE id = $1 AND (queue = $2 OR queue IS NULL)");
/* PostgreSQL: the row held until commit (two retries of one job, the relay, a worker's outcome
 * run one after the other). */
DB_STMT(SQL_GET_FOR_UPDATE,
        "SELECT " JOB_RECORD_COLUMNS " FROM outbox WHERE id = $1 AND (queue = $2 OR queue IS NULL)",
        "SELECT " JOB_RECORD_COLUMNS " FROM outbox WHERE id = $1 AND (queue = $2 OR queue IS NULL)"
        " FOR UPDATE");
/* The record of a retried job, and the retry for the relay to apply in Redis (requeued_at with
 * relayed_at NULL: outbox_relay.c). */
DB_STMT_SAME(SQL_REPROCESS,
             "UPDATE outbox SET state = 'waiting', attempts_made = 0, last_error = NULL,"
             " finished_at = NULL, run_at = $2, updated_at = $2, relayed_at = NULL,"
             " requeued_at = $2 WHERE id = $1 AND state = 'failed'");
/* $1: a JSON array of job ids. An active job has not finished (one put back in line by a BullMQ
 * client still shows its failure until now). */
DB_STMT(SQL_ACTIVE,
        "UPDATE outbox SET state = 'active', updated_at = $2, finished_at = NULL"
        " WHERE id IN (SELECT value FROM json_each($1))",
        "UPDATE outbox SET state = 'active', updated_at = $2, finished_at = NULL"
        " WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))");
/* The records of the jobs a unit of work completed, in one statement: $1 a JSON array of
 * {"id","a" (attempts made),"t" (ms since the epoch)}. */
#define COMPLETED_SET(at)                                                                          \
    "UPDATE outbox SET state = 'completed', attempts_made = c.a, updated_at = " at                 \
    ", finished_at = " at
#define COMPLETED_FROM_SQLITE                                                                      \
    " FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.a') AS a,"            \
    " json_extract(value, '$.t') AS t FROM json_each($1)) AS c"
#define COMPLETED_AT_PG "timestamptz 'epoch' + c.t * interval '1 millisecond'"
#define COMPLETED_FROM_PG " FROM jsonb_to_recordset($1::jsonb) AS c(id text, a integer, t bigint)"
DB_STMT(SQL_COMPLETED, COMPLETED_SET("c.t") COMPLETED_FROM_SQLITE " WHERE outbox.id = c.id",
        COMPLETED_SET(COMPLETED_AT_PG) COMPLETED_FROM_PG " WHERE outbox.id = c.id");
DB_STMT_SAME(SQL_DELAYED, "UPDATE outbox SET state = 'delayed', attempts_made = $2,"
                          " updated_at = $3, run_at = $4, last_error = $5 WHERE id = $1");
DB_STMT_SAME(
    SQL_FAILED,
    "UPDATE outbox SET state = 'failed', attempts_made = $2, updated_at = $3, finished_at = $3,"
    " last_error = $4 WHERE id = $1");
/* Only a record still showing the dead worker's attempt ($3: the check's start): another worker
 * may have taken the job again and even finished it since the check moved it. */
DB_STMT_SAME(
    SQL_STALLED,
    "UPDATE outbox SET state = 'waiting', stalled_count = stalled_count + 1, updated_at = $2"
    " WHERE id = $1 AND state = 'active' AND updated_at < $3");
DB_STMT_SAME(
    SQL_STALLED_FAILED,
    "UPDATE outbox SET state = 'failed', stalled_count = stalled_count + 1, updated_at = $2,"
    " finished_at = $2, last_error = 'job stalled more than allowable limit'"
    " WHERE id = $1 AND state = 'active' AND updated_at < $3");

/* The queue's job records, and those of older builds, which have no queue (theirs too, as the
 * relay says). */
DB_STMT(SQL_COUNTS, JOB_COUNTS_SQL("outbox", " AND (queue = $1 OR queue IS NULL)"),
        JOB_COUNTS_SQL_PG("outbox", " WHERE queue = $1 OR queue IS NULL"));
/* The relay's backlog, on its index (outbox_unrelayed). */
DB_STMT_SAME(SQL_BACKLOG, "SELECT COUNT(*), MIN(created_at) FROM outbox"
                          " WHERE relayed_at IS NULL AND (queue = $1 OR queue IS NULL)");

/* ---- shared ------------------------------------------------------------------------------- */

void
queue_redis_shared_init(struct queue_redis_shared *s, const char *prefix, const char *name,
                        int keep_completed, int64_t stalled_interval_ms, int max_stalled,
                        int64_t lock_ms, struct queue_signal *relay)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->prefix, sizeof(s->prefix), "%s:%s:", prefix, name);
    s->keep_completed = keep_completed;
    s->keep_failed = -1;
    s->stalled_interval_ms = stalled_interval_ms;
    s->max_stalled = max_stalled;
    s->lock_ms = lock_ms;
    s->jitter = 0.2;
    s->stacktrace_limit = 10;
    s->relay = relay;
    sp_uuid_v4(s->worker_id);
    atomic_init(&s->token_seq, 0);
    atomic_init(&s->next_stalled_check, 0);
    lease_set_init(&s->held);
}

void
queue_redis_shared_cleanup(struct queue_redis_shared *s)
{
    lease_set_cleanup(&s->held);
}

/* ---- unit-of-work bookkeeping ------------------------------------------------------------- */

enum op_kind { OP_COMPLETE, OP_RETRY, OP_FAIL, OP_RESERVED };

struct queue_redis_op {
    enum op_kind kind;
    char id[JOB_ID_MAX];
    char token[JOB_LEASE_MAX];
    int64_t now;
    int64_t delay;
    char *text;    /* OP_COMPLETE: return value JSON; OP_RETRY/OP_FAIL: the reason (owned) */
    int attempts;  /* OP_COMPLETE: attempts made, this one included */
    int unwritten; /* OP_COMPLETE: its record is still to write (before_commit) */
};

static struct queue_redis *
self_of(struct job_queue *q)
{
    return (struct queue_redis *)q;
}

static struct queue_redis_op *
op_push(struct queue_redis *q, enum op_kind kind, const struct job *j, int64_t now,
        const char *text)
{
    struct queue_redis_op *op;

    if (q->nops == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->ops = xrealloc(q->ops, (size_t)q->cap * sizeof(*q->ops));
    }
    op = &q->ops[q->nops++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    snprintf(op->id, sizeof(op->id), "%s", j->id);
    snprintf(op->token, sizeof(op->token), "%s", j->lease);
    op->now = now;
    op->text = text ? xstrdup(text) : NULL;
    if (kind != OP_RESERVED)
        lease_set_end(&q->shared->held, op->id, op->token);
    return op;
}

/* What ops_clear stops renewing the locks of (lease_set.h). */
enum release { RELEASE_NONE, RELEASE_ENDED, RELEASE_ALL };

/* Forgets the ops of the ended unit of work, and the locks the keeper renews: after a commit
 * those of the jobs whose outcome was written; after a rollback all of this session's (the
 * reserved ones were given back; one whose outcome was abandoned must lapse so that the stalled
 * check can hand it out again). */
static void
ops_clear(struct queue_redis *q, enum release release)
{
    if (release != RELEASE_NONE)
        lease_set_release(&q->shared->held, q, release == RELEASE_ALL);
    for (int i = 0; i < q->nops; i++)
        free(q->ops[i].text);
    q->nops = 0;
}

void
queue_redis_cleanup(struct queue_redis *q)
{
    ops_clear(q, RELEASE_NONE);
    free(q->ops);
    q->ops = NULL;
    q->cap = 0;
}

static int
need_redis(struct queue_redis *q, struct sp_error *err)
{
    if (q->redis == NULL)
        return sp_error_set(err, SP_EINTERNAL, "queue", "this session has no Redis connection");
    return SP_OK;
}

/* ---- enqueue (outbox) and the job record ------------------------------------------------ */

static int
q_enqueue(struct job_queue *base, const struct job_spec *spec, int64_t now, char *id_out,
          struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    char opts[320], keep[48] = "";
    char id[JOB_ID_MAX];

    if (spec->key && strlen(spec->key) < JOB_ID_MAX)
        snprintf(id, sizeof(id), "%s", spec->key); /* one job per key (BullMQ's jobId) */
    else
        sp_uuid_v7(id);
    /* BullMQ's removeOnComplete: a count keeps the newest N, true keeps none. */
    if (q->shared->keep_completed == 0)
        snprintf(keep, sizeof(keep), ",\"removeOnComplete\":true");
    else if (q->shared->keep_completed > 0)
        snprintf(keep, sizeof(keep), ",\"removeOnComplete\":%d", q->shared->keep_completed);
    snprintf(opts, sizeof(opts),
             "{\"attempts\":%d,\"backoff\":{\"type\":\"exponential\",\"delay\":%lld,"
             "\"jitter\":%g},\"jobId\":\"%s\"%s}",
             spec->max_attempts, (long long)spec->backoff_ms, q->shared->jitter, id, keep);
    snprintf(id_out, JOB_ID_MAX, "%s", id);
    return db_exec(q->conn, &SQL_ENQUEUE,
                   DB_ARGS(db_text(id), db_text(spec->name), db_text(spec->group),
                           db_text(spec->key), db_text(spec->data), db_text(opts),
                           db_int(spec->max_attempts), db_time(now), db_text(q->shared->prefix)),
                   NULL, err);
}

static int
q_list_group(struct job_queue *base, const char *group, int max, struct arena *a, struct job **out,
             int *n, int *more, struct sp_error *err)
{
    struct db_rows rows;
    int rc = db_query(self_of(base)->conn, &SQL_BY_GROUP,
                      DB_ARGS(db_text(group), db_int((int64_t)max + 1)), a, &rows, err);
    int k;

    *out = NULL;
    *n = 0;
    *more = 0;
    if (rc != SP_OK)
        return rc;
    k = rows.nrows > max ? max : rows.nrows; /* rows are newest first */
    *out = arena_alloc(a, sizeof(**out) * (size_t)(k ? k : 1));
    for (int i = 0; i < k; i++) {
        rc = job_record_from_row(&rows, k - 1 - i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = k;
    *more = rows.nrows > max;
    return SP_OK;
}

/* A list position: "<created_at ms>.<id>". -1 when s is not one. */
static int
parse_position(const char *s, int64_t *at, const char **id)
{
    const char *dot = s ? strchr(s, '.') : NULL;
    int64_t v = 0;

    if (dot == NULL || dot == s || dot - s > 15 || dot[1] == '\0' || strlen(dot + 1) >= JOB_ID_MAX)
        return -1;
    for (const char *p = s; p < dot; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    for (const char *p = dot + 1; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return -1;
    *at = v;
    *id = dot + 1;
    return 0;
}

#define LIST_TOP_MS 253402300799999LL /* 9999-12-31T23:59:59.999Z: above every record */

static int
q_list(struct job_queue *base, const struct job_filter *f, struct arena *a, struct job **out,
       int *n, char *next, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    int64_t at = LIST_TOP_MS;
    const char *below = "";
    struct db_rows rows;
    int rc, k;

    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (f->after && parse_position(f->after, &at, &below) != 0)
        return sp_error_set(err, SP_EINVAL, "cursor", "cursor is not valid");
    if (f->has_state)
        rc = db_query(q->conn, &SQL_LIST_STATE,
                      DB_ARGS(db_time(at), db_text(below), db_text(f->name),
                              db_int((int64_t)f->limit + 1), db_text(q->shared->prefix),
                              db_text(job_state_name(f->state))),
                      a, &rows, err);
    else
        rc = db_query(q->conn, &SQL_LIST,
                      DB_ARGS(db_time(at), db_text(below), db_text(f->name),
                              db_int((int64_t)f->limit + 1), db_text(q->shared->prefix)),
                      a, &rows, err);
    if (rc != SP_OK)
        return rc;
    k = rows.nrows > f->limit ? f->limit : rows.nrows;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(k ? k : 1));
    for (int i = 0; i < k; i++) {
        rc = job_record_from_row(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = k;
    if (rows.nrows > k)
        snprintf(next, JOB_CURSOR_MAX, "%lld.%s", (long long)(*out)[k - 1].created_at,
                 (*out)[k - 1].id);
    return SP_OK;
}

/* One record by id, with `stmt` (a plain read, or one that holds the row). The queue's job ids
 * are message ids (UUIDs): anything else is not an id of ours. */
static int
get_record(struct queue_redis *q, const struct db_stmt *stmt, const char *id, struct arena *a,
           struct job *out, struct sp_error *err)
{
    char lower[SP_UUID_LEN + 1];
    struct db_rows rows;
    int rc;

    if (id == NULL || !sp_uuid_valid(id, strlen(id)))
        return sp_error_set(err, SP_EINVAL, "id", "Validation failed (job id is expected)");
    for (int i = 0; i <= SP_UUID_LEN; i++)
        lower[i] = (char)(id[i] >= 'A' && id[i] <= 'Z' ? id[i] - 'A' + 'a' : id[i]);
    rc =
        db_query(q->conn, stmt, DB_ARGS(db_text(lower), db_text(q->shared->prefix)), a, &rows, err);
    if (rc == SP_OK && rows.nrows == 0)
        rc = sp_error_set(err, SP_ENOTFOUND, "id", "Job %s not found", lower);
    if (rc == SP_OK)
        rc = job_record_from_row(&rows, 0, out, err);
    return rc;
}

static int
q_get(struct job_queue *base, const char *id, struct arena *a, struct job *out,
      struct sp_error *err)
{
    return get_record(self_of(base), &SQL_GET, id, a, out, err);
}

/* The record changes in the caller's transaction; the relay, woken after the commit (wake),
 * moves the job in Redis with the `reprocess` script (outbox_relay.c). */
static int
q_reprocess(struct job_queue *base, const char *id, int64_t now, struct arena *a,
            struct job *before, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    int64_t changes = 0;
    int rc = get_record(q, &SQL_GET_FOR_UPDATE, id, a, before, err);

    if (rc != SP_OK)
        return rc;
    if (before->state != JOB_FAILED)
        return sp_error_set(err, SP_ECONFLICT, "state",
                            "Job %s is %s: only a failed job can be retried", before->id,
                            job_state_name(before->state));
    rc =
        db_exec(q->conn, &SQL_REPROCESS, DB_ARGS(db_text(before->id), db_time(now)), &changes, err);
    if (rc == SP_OK && changes != 1)
        rc = sp_error_set(err, SP_EINTERNAL, "queue", "job %s: retry changed %lld rows", before->id,
                          (long long)changes);
    return rc;
}

/* From the outbox, SalesPad's record of its jobs (a job of another producer is not in it), and
 * the rows the relay has not published yet. Needs no Redis connection. */
static int
q_count(struct job_queue *base, struct arena *a, struct job_counts *out, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    struct db_rows rows;
    int rc = db_query(q->conn, &SQL_COUNTS, DB_ARGS(db_text(q->shared->prefix)), a, &rows, err);

    memset(out, 0, sizeof(*out));
    if (rc == SP_OK)
        job_counts_from_rows(&rows, a, out);
    if (rc == SP_OK)
        rc = db_query(q->conn, &SQL_BACKLOG, DB_ARGS(db_text(q->shared->prefix)), a, &rows, err);
    if (rc == SP_OK && rows.nrows == 1) {
        out->backlog = db_cell_int(&rows, 0, 0);
        out->backlog_oldest_at = db_cell_int(&rows, 0, 1);
    }
    return rc;
}

static void
q_wake(struct job_queue *base)
{
    struct queue_redis *q = self_of(base);
    if (q->shared->relay)
        queue_signal_wake(q->shared->relay);
}

/* ---- reserve ------------------------------------------------------------------------------ */

/* Fails a fetched job this worker cannot carry (an id longer than JOB_ID_MAX - 1): it would
 * otherwise come back after every stalled check. */
static int
fail_uncarried(struct queue_redis *q, const char *id, const char *token, const char *snow,
               struct sp_error *err)
{
    const char *argv[7] = {
        q->shared->prefix, id, token, snow, "salespad worker: job id too long", "-1", "10"};
    struct redis_value *rep = NULL;
    int rc;

    log_warn("fetch: job id \"%.40s...\" longer than %d bytes: failed", id, JOB_ID_MAX - 1);
    rc = redis_script_call(q->redis, BULLMQ_FAIL, 7, argv, NULL, &rep, err);
    redis_value_free(rep);
    return rc;
}

/* Reserves up to max jobs with one script call, and marks their records active with one
 * statement. */
static int
q_reserve(struct job_queue *base, int64_t now, int64_t lease_ms, int max, struct arena *a,
          struct job *out, int *n, int64_t *next_due, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    char snow[24], slease[24], skeep[16], smax[16], token[72];
    const char *argv[6];
    struct redis_value *rep = NULL;
    struct jsonw w;
    int rc = need_redis(q, err);

    *n = 0;
    *next_due = 0;
    if (rc != SP_OK)
        return rc;
    snprintf(snow, sizeof(snow), "%lld", (long long)now);
    snprintf(slease, sizeof(slease), "%lld", (long long)lease_ms);
    snprintf(skeep, sizeof(skeep), "%d", q->shared->keep_failed);
    snprintf(smax, sizeof(smax), "%d", max);
    snprintf(token, sizeof(token), "%s:%llu", q->shared->worker_id,
             (unsigned long long)atomic_fetch_add(&q->shared->token_seq, 1));
    argv[0] = q->shared->prefix;
    argv[1] = snow;
    argv[2] = token;
    argv[3] = slease;
    argv[4] = skeep;
    argv[5] = smax;
    rc = redis_script_call(q->redis, BULLMQ_FETCH, 6, argv, NULL, &rep, err);
    if (rc != SP_OK)
        return rc;
    if (rep->type != RV_ARR || rep->n < 1 || rep->n % 2 != 1 || rep->items[0].type != RV_INT) {
        redis_value_free(rep);
        return sp_error_set(err, SP_EINTERNAL, "queue", "fetch: unexpected reply");
    }
    *next_due = rep->items[0].integer;
    jsonw_init(&w, a, 80 * (size_t)max + 16);
    jsonw_arr_begin(&w);
    for (size_t i = 1; rc == SP_OK && i + 1 < rep->n; i += 2) {
        const struct redis_value *id = &rep->items[i], *h = &rep->items[i + 1];
        char jtoken[JOB_LEASE_MAX];
        struct job *j = &out[*n];
        snprintf(jtoken, sizeof(jtoken), "%s:%zu", token, (i + 1) / 2);
        if (id->type != RV_STR || h->type != RV_ARR) {
            rc = sp_error_set(err, SP_EINTERNAL, "queue", "fetch: unexpected reply");
            break;
        }
        if (id->len >= JOB_ID_MAX) {
            rc = fail_uncarried(q, id->str, jtoken, snow, err);
            continue;
        }
        memset(j, 0, sizeof(*j));
        snprintf(j->id, sizeof(j->id), "%s", id->str);
        bullmq_hash_to_job(h, a, j);
        snprintf(j->lease, sizeof(j->lease), "%s", jtoken);
        j->run_at = now;
        op_push(q, OP_RESERVED, j, now, NULL);
        lease_set_add(&q->shared->held, j->id, jtoken, q);
        jsonw_str(&w, j->id);
        (*n)++;
    }
    jsonw_arr_end(&w);
    redis_value_free(rep);
    if (rc == SP_OK && *n > 0)
        rc = db_exec(q->conn, &SQL_ACTIVE,
                     DB_ARGS(db_text(jsonw_finish_or(&w, "[]")), db_time(now)), NULL, err);
    return rc;
}

/* ---- outcomes ----------------------------------------------------------------------------- */

/* The record is written by before_commit, with those of the unit of work's other completed
 * jobs (a batch's outcomes: one statement instead of one per job); Redis after the commit. */
static int
q_complete(struct job_queue *base, const struct job *j, int64_t now, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    struct queue_redis_op *op = op_push(q, OP_COMPLETE, j, now, j->result ? j->result : "null");

    (void)err;
    op->attempts = j->attempts_made + 1;
    op->unwritten = 1;
    return SP_OK;
}

static int
q_before_commit(struct job_queue *base, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    struct arena *a;
    struct jsonw w;
    int n = 0, rc;

    for (int i = 0; i < q->nops; i++)
        n += q->ops[i].unwritten;
    if (n == 0)
        return SP_OK;
    a = arena_new();
    jsonw_init(&w, a, (size_t)n * 96 + 16);
    jsonw_arr_begin(&w);
    for (int i = 0; i < q->nops; i++) {
        const struct queue_redis_op *op = &q->ops[i];
        if (!op->unwritten)
            continue;
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "id", op->id);
        jsonw_kint(&w, "a", op->attempts);
        jsonw_kint(&w, "t", op->now);
        jsonw_obj_end(&w);
    }
    jsonw_arr_end(&w);
    rc = db_exec(q->conn, &SQL_COMPLETED, DB_ARGS(db_text(jsonw_finish_or(&w, "[]"))), NULL, err);
    arena_free(a);
    for (int i = 0; rc == SP_OK && i < q->nops; i++)
        q->ops[i].unwritten = 0;
    return rc;
}

static int
q_retry(struct job_queue *base, const struct job *j, int64_t now, int64_t run_at, const char *error,
        struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    int rc = db_exec(q->conn, &SQL_DELAYED,
                     DB_ARGS(db_text(j->id), db_int(j->attempts_made + 1), db_time(now),
                             db_time(run_at), db_text(error)),
                     NULL, err);
    if (rc == SP_OK)
        op_push(q, OP_RETRY, j, now, error ? error : "failed")->delay =
            run_at > now ? run_at - now : 0;
    return rc;
}

static int
q_fail(struct job_queue *base, const struct job *j, int64_t now, const char *error,
       struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    int rc =
        db_exec(q->conn, &SQL_FAILED,
                DB_ARGS(db_text(j->id), db_int(j->attempts_made + 1), db_time(now), db_text(error)),
                NULL, err);
    if (rc == SP_OK)
        op_push(q, OP_FAIL, j, now, error ? error : "failed");
    return rc;
}

/* Numbers rendered for one op's script call. */
struct op_bufs {
    char v[3][24];
};

/* The script call of an op (ARGV as in the .lua headers). */
static void
op_call(struct queue_redis *q, const struct queue_redis_op *op, struct op_bufs *b,
        struct redis_call *call)
{
    const char **argv = call->argv;

    argv[0] = q->shared->prefix;
    argv[1] = op->id;
    argv[2] = op->token;
    snprintf(b->v[0], sizeof(b->v[0]), "%lld", (long long)op->now);
    argv[3] = b->v[0];
    switch (op->kind) {
    case OP_COMPLETE:
        call->script = BULLMQ_COMPLETE;
        argv[4] = op->text;
        snprintf(b->v[1], sizeof(b->v[1]), "%d", q->shared->keep_completed);
        argv[5] = b->v[1];
        call->argc = 6;
        break;
    case OP_RETRY:
        call->script = BULLMQ_RETRY;
        snprintf(b->v[1], sizeof(b->v[1]), "%lld", (long long)op->delay);
        argv[4] = b->v[1];
        argv[5] = op->text;
        snprintf(b->v[2], sizeof(b->v[2]), "%d", q->shared->stacktrace_limit);
        argv[6] = b->v[2];
        call->argc = 7;
        break;
    case OP_FAIL:
        call->script = BULLMQ_FAIL;
        argv[4] = op->text;
        snprintf(b->v[1], sizeof(b->v[1]), "%d", q->shared->keep_failed);
        argv[5] = b->v[1];
        snprintf(b->v[2], sizeof(b->v[2]), "%d", q->shared->stacktrace_limit);
        argv[6] = b->v[2];
        call->argc = 7;
        break;
    default:
        call->script = BULLMQ_GIVEBACK; /* OP_RESERVED: giveback(P, id, token) */
        call->argc = 3;
        break;
    }
}

/* Runs the scripts of the ops of one kind class (reserved ones or outcomes), pipelined. */
static int
run_ops(struct queue_redis *q, int reserved, struct sp_error *err)
{
    struct redis_call *calls = xcalloc((size_t)q->nops, sizeof(*calls));
    struct op_bufs *bufs = xcalloc((size_t)q->nops, sizeof(*bufs));
    struct redis_value **replies = xcalloc((size_t)q->nops, sizeof(*replies));
    const char **ids = xcalloc((size_t)q->nops, sizeof(*ids));
    int n = 0, rc;

    for (int i = 0; i < q->nops; i++) {
        if ((q->ops[i].kind == OP_RESERVED) != reserved)
            continue;
        op_call(q, &q->ops[i], &bufs[n], &calls[n]);
        ids[n++] = q->ops[i].id;
    }
    rc = redis_pipeline(q->redis, calls, n, replies, err);
    for (int i = 0; i < n; i++)
        if (replies[i] && replies[i]->type == RV_INT && replies[i]->integer != 0)
            log_warn("job %s: not updated in Redis: %s", ids[i],
                     bullmq_release_text(replies[i]->integer));
    redis_values_free(replies, n);
    free(ids);
    free(replies);
    free(bufs);
    free(calls);
    return rc;
}

static int
q_after_commit(struct job_queue *base, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    int rc = SP_OK;

    for (int i = 0; i < q->nops; i++)
        if (q->ops[i].unwritten)
            log_error("job %s: completed in a unit of work that committed without before_commit:"
                      " its record still shows it active",
                      q->ops[i].id);

    if (q->nops > 0 && need_redis(q, NULL) == SP_OK)
        rc = run_ops(q, 0, err);
    if (rc != SP_OK)
        log_warn("job outcomes not written to Redis (%s): the jobs stay active until the "
                 "stalled check hands them out again",
                 err && err->msg[0] ? err->msg : sp_err_str(rc));
    ops_clear(q, RELEASE_ENDED);
    return rc;
}

static void
q_after_rollback(struct job_queue *base)
{
    struct queue_redis *q = self_of(base);
    struct sp_error err = {0};

    if (q->nops > 0 && need_redis(q, NULL) == SP_OK && run_ops(q, 1, &err) != SP_OK)
        log_warn("reserved jobs not given back (%s); the stalled check hands them out again",
                 err.msg);
    ops_clear(q, RELEASE_ALL);
}

/* Extends the locks of jobs[0..n) in one round trip: lost[i] = 1 when one is not ours. */
static int
extend_many(struct queue_redis *q, const struct job *const *jobs, int n, int64_t lease_ms,
            int *lost, struct sp_error *err)
{
    struct redis_call *calls;
    struct redis_value **replies;
    char slease[24];
    int rc = need_redis(q, err);

    if (rc != SP_OK || n <= 0)
        return rc;
    calls = xcalloc((size_t)n, sizeof(*calls));
    replies = xcalloc((size_t)n, sizeof(*replies));
    snprintf(slease, sizeof(slease), "%lld", (long long)lease_ms);
    for (int i = 0; i < n; i++)
        bullmq_extend_call(q->shared->prefix, jobs[i]->id, jobs[i]->lease, slease, &calls[i]);
    rc = redis_pipeline(q->redis, calls, n, replies, err);
    for (int i = 0; i < n; i++)
        lost[i] = bullmq_extend_lost(replies[i]);
    redis_values_free(replies, n);
    free(replies);
    free(calls);
    return rc;
}

/* ---- lock renewal ------------------------------------------------------------------------- */

/* Extends the lock of every job the process holds to lock_ms from now (BullMQ renews its locks
 * every lockDuration / 2, whatever the processor is doing): a long send keeps its job. A job
 * whose lock is not ours any more is forgotten. */
static int
renew_locks(struct queue_redis_shared *s, struct redis *r, int64_t lock_ms, struct sp_error *err)
{
    struct lease_entry *list;
    struct redis_call *calls;
    struct redis_value **replies;
    char slock[24];
    int n, rc;

    list = lease_set_snapshot(&s->held, &n);
    calls = xcalloc((size_t)(n ? n : 1), sizeof(*calls));
    replies = xcalloc((size_t)(n ? n : 1), sizeof(*replies));
    snprintf(slock, sizeof(slock), "%lld", (long long)lock_ms);
    for (int i = 0; i < n; i++)
        bullmq_extend_call(s->prefix, list[i].id, list[i].token, slock, &calls[i]);
    rc = redis_pipeline(r, calls, n, replies, err);
    for (int i = 0; i < n; i++) {
        if (bullmq_extend_lost(replies[i])) {
            log_debug("job %s: lock lost; no longer renewed", list[i].id);
            lease_set_remove(&s->held, list[i].id, list[i].token);
        }
    }
    redis_values_free(replies, n);
    free(replies);
    free(calls);
    free(list);
    return rc;
}

/* ---- wiring ------------------------------------------------------------------------------- */

/* Outcomes are written to Redis only after the commit: the locks are checked (and extended)
 * before the transaction instead. */
static int
q_fence(struct job_queue *base, const struct job *const *jobs, int n, int *lost,
        struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    return extend_many(q, jobs, n, q->shared->lock_ms, lost, err);
}

static int
q_renew(struct job_queue *base, int64_t now, int64_t lease_ms, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    int rc = need_redis(q, err);

    (void)now;
    return rc != SP_OK ? rc : renew_locks(q->shared, q->redis, lease_ms, err);
}

static int
q_wait(struct job_queue *base, int64_t timeout_ms, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    char key[sizeof(q->shared->prefix) + 8], secs[24];
    struct redis_value *rep = NULL;
    int rc = need_redis(q, err);

    if (rc != SP_OK)
        return rc;
    if (timeout_ms < 1)
        timeout_ms = 1;
    if (timeout_ms > WAIT_MAX_MS)
        timeout_ms = WAIT_MAX_MS; /* a stop request is seen that soon */
    snprintf(key, sizeof(key), "%smarker", q->shared->prefix);
    snprintf(secs, sizeof(secs), "%.3f", (double)timeout_ms / 1000.0);
    rc = redis_command(q->redis, 3, (const char *[]){"BZPOPMIN", key, secs}, NULL, &rep, err);
    redis_value_free(rep);
    return rc;
}

/* Updates SalesPad's record of jobs the stalled check moved; one statement per job (no
 * transaction spanning rows that workers update too: no lock-order deadlocks). */
static int
record_stalled(struct queue_redis *q, const struct redis_value *ids, const struct db_stmt *sql,
               int64_t checked, struct sp_error *err)
{
    int64_t now = checked; /* the caller's clock, as every other record */
    int rc = SP_OK;

    if (ids->type != RV_ARR)
        return SP_OK;
    for (size_t i = 0; i < ids->n; i++) {
        const char *id = ids->items[i].str;
        int r;
        log_warn("job %s: its worker stopped renewing its lock; %s", id,
                 sql == &SQL_STALLED ? "handed out again" : "failed: stalled too often");
        r = db_begin(q->conn, err);
        if (r == SP_OK)
            r = db_exec(q->conn, sql, DB_ARGS(db_text(id), db_time(now), db_time(checked)), NULL,
                        err);
        if (r == SP_OK)
            r = db_commit(q->conn, err);
        else
            db_rollback(q->conn);
        if (r != SP_OK && rc == SP_OK)
            rc = r;
    }
    return rc;
}

static int
q_maintain(struct job_queue *base, int64_t now, struct sp_error *err)
{
    struct queue_redis *q = self_of(base);
    struct queue_redis_shared *s = q->shared;
    int64_t mono = sp_mono_ms(), due = atomic_load(&s->next_stalled_check), checked;
    char snow[24], sint[24], smax[16], skeep[16];
    struct redis_value *rep = NULL;
    int rc;

    if (mono < due || q->redis == NULL ||
        !atomic_compare_exchange_strong(&s->next_stalled_check, &due,
                                        mono + s->stalled_interval_ms))
        return SP_OK; /* not due, or another thread of this process took this turn */
    checked = now;
    snprintf(snow, sizeof(snow), "%lld", (long long)checked);
    snprintf(sint, sizeof(sint), "%lld", (long long)s->stalled_interval_ms);
    snprintf(smax, sizeof(smax), "%d", s->max_stalled);
    snprintf(skeep, sizeof(skeep), "%d", s->keep_failed);
    rc = redis_script_call(q->redis, BULLMQ_STALLED, 5,
                           (const char *[]){s->prefix, snow, sint, smax, skeep}, NULL, &rep, err);
    if (rc == SP_OK && rep->type == RV_ARR && rep->n == 2) {
        rc = record_stalled(q, &rep->items[0], &SQL_STALLED, checked, err);
        if (rc == SP_OK)
            rc = record_stalled(q, &rep->items[1], &SQL_STALLED_FAILED, checked, err);
    }
    redis_value_free(rep);
    return rc;
}

#define JOB_QUEUE_IMPL_(name) q_##name
static const struct job_queue_ops redis_queue_ops = JOB_QUEUE_OPS_TABLE("redis");

void
queue_redis_init(struct queue_redis *q, struct queue_redis_shared *shared, struct db_conn *conn,
                 struct redis *redis)
{
    memset(q, 0, sizeof(*q));
    q->base.ops = &redis_queue_ops;
    q->shared = shared;
    q->conn = conn;
    q->redis = redis;
}
