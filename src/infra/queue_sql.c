/* queue_sql.c: SQL job queue (see queue_sql.h). */
#include "infra/queue_sql.h"

#include "core/arena.h"
#include "infra/db.h"
#include "infra/job_rows.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_STALLED_DEFAULT 3

DB_STMT_SAME(SQL_ENQUEUE,
             "INSERT INTO jobs (name, lead_id, message_id, data, state, attempts_made,"
             " max_attempts, backoff_ms, run_at, created_at, updated_at)"
             " VALUES ($1, $2, $3, $4, 'waiting', 0, $5, $6, $7, $7, $7) RETURNING id");
/* The shared job record, then this table's own columns (row_to_job). */
#define JOB_COLUMNS JOB_RECORD_COLUMNS ", data, backoff_ms"
/* PostgreSQL: rows another worker is reserving are skipped, not waited for. */
DB_STMT(SQL_DUE,
        "SELECT " JOB_COLUMNS " FROM jobs"
        " WHERE state IN ('waiting', 'delayed') AND run_at <= $1"
        " ORDER BY run_at LIMIT 1",
        "SELECT " JOB_COLUMNS " FROM jobs"
        " WHERE state IN ('waiting', 'delayed') AND run_at <= $1"
        " ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED");
DB_STMT(SQL_EXPIRED,
        "SELECT " JOB_COLUMNS " FROM jobs"
        " WHERE state = 'active' AND lease_until <= $1"
        " ORDER BY lease_until LIMIT 1",
        "SELECT " JOB_COLUMNS " FROM jobs"
        " WHERE state = 'active' AND lease_until <= $1"
        " ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED");
DB_STMT_SAME(SQL_NEXT_DUE, "SELECT MIN(run_at) FROM jobs WHERE state IN ('waiting', 'delayed')");
DB_STMT_SAME(SQL_ACTIVATE, "UPDATE jobs SET state = 'active', lease_until = $2,"
                           " stalled_count = $3, updated_at = $4 WHERE id = $1");
DB_STMT_SAME(SQL_COMPLETE, "UPDATE jobs SET state = 'completed', attempts_made = attempts_made + 1,"
                           " lease_until = NULL, updated_at = $2, finished_at = $2"
                           " WHERE id = $1 AND state = 'active' AND lease_until = $3");
DB_STMT_SAME(SQL_RETRY, "UPDATE jobs SET state = 'delayed', attempts_made = attempts_made + 1,"
                        " lease_until = NULL, run_at = $3, last_error = $4, updated_at = $2"
                        " WHERE id = $1 AND state = 'active' AND lease_until = $5");
DB_STMT_SAME(SQL_FAIL, "UPDATE jobs SET state = 'failed', attempts_made = attempts_made + 1,"
                       " lease_until = NULL, last_error = $3, updated_at = $2, finished_at = $2"
                       " WHERE id = $1 AND state = 'active' AND lease_until = $4");
DB_STMT_SAME(SQL_FAIL_STALLED,
             "UPDATE jobs SET state = 'failed', lease_until = NULL,"
             " stalled_count = stalled_count + 1, last_error = $3, updated_at = $2,"
             " finished_at = $2 WHERE id = $1");
DB_STMT_SAME(SQL_BY_LEAD, "SELECT " JOB_COLUMNS " FROM jobs WHERE lead_id = $1 ORDER BY id");

void
queue_signal_init(struct queue_signal *s)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    s->seq = 0;
}

void
queue_signal_cleanup(struct queue_signal *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void
queue_signal_wake(struct queue_signal *s)
{
    pthread_mutex_lock(&s->mu);
    s->seq++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

uint64_t
queue_signal_seq(struct queue_signal *s)
{
    uint64_t v;
    pthread_mutex_lock(&s->mu);
    v = s->seq;
    pthread_mutex_unlock(&s->mu);
    return v;
}

void
queue_signal_wait(struct queue_signal *s, uint64_t seen, int64_t timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->seq == seen) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&s->mu);
}

static struct queue_sql *
self_of(struct job_queue *q)
{
    return (struct queue_sql *)q;
}

static int
q_enqueue(struct job_queue *q, const struct job_spec *spec, int64_t now, char *id_out,
          struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    struct arena *a = arena_new();
    struct db_rows rows;
    int rc;

    rc = db_query(self->conn, &SQL_ENQUEUE,
                  DB_ARGS(db_text(spec->name), db_text(spec->lead_id), db_text(spec->message_id),
                          db_text(spec->data), db_int(spec->max_attempts), db_int(spec->backoff_ms),
                          db_time(now)),
                  a, &rows, err);
    if (rc == SP_OK && rows.nrows != 1)
        rc = sp_error_set(err, SP_EINTERNAL, "queue", "enqueue returned no id");
    if (rc == SP_OK)
        snprintf(id_out, sizeof(((struct job *)0)->id), "%s", db_cell(&rows, 0, 0));
    arena_free(a);
    return rc;
}

static int
row_to_job(const struct db_rows *rows, int i, struct job *j, struct sp_error *err)
{
    int rc = job_record_from_row(rows, i, j, err);

    if (rc != SP_OK)
        return rc;
    j->data = db_cell(rows, i, JOB_RECORD_NCOLS);
    j->backoff_ms = db_cell_int(rows, i, JOB_RECORD_NCOLS + 1);
    j->backoff_jitter = -1; /* the worker's default jitter (job_backoff_delay) */
    return SP_OK;
}

/* Inside the reserve transaction: picks a due or expired job; *found tells which. */
static int
pick(struct queue_sql *self, int64_t now, struct arena *a, struct job *out, int *found,
     int *expired, struct sp_error *err)
{
    struct db_rows rows;
    int rc;

    *found = 0;
    *expired = 0;
    rc = db_query(self->conn, &SQL_EXPIRED, DB_ARGS(db_time(now)), a, &rows, err);
    if (rc != SP_OK)
        return rc;
    if (rows.nrows == 0) {
        rc = db_query(self->conn, &SQL_DUE, DB_ARGS(db_time(now)), a, &rows, err);
        if (rc != SP_OK)
            return rc;
    } else {
        *expired = 1;
    }
    if (rows.nrows == 0)
        return SP_OK;
    *found = 1;
    return row_to_job(&rows, 0, out, err);
}

static int
q_reserve(struct job_queue *q, int64_t now, int64_t lease_ms, struct arena *a, struct job *out,
          int *found, int64_t *next_due, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    struct db_rows rows;
    int expired = 0;
    int rc;

    *found = 0;
    *next_due = 0;
    for (;;) {
        rc = pick(self, now, a, out, found, &expired, err);
        if (rc != SP_OK || !*found || !expired || out->stalled_count + 1 < self->max_stalled)
            break;
        /* Its worker died too often while holding it: a poison job goes to the dead letters. */
        rc = db_exec(self->conn, &SQL_FAIL_STALLED,
                     DB_ARGS(db_text(out->id), db_time(now),
                             db_text("job stalled more than allowable limit")),
                     NULL, err);
        *found = 0;
        if (rc != SP_OK)
            break;
    }
    if (rc == SP_OK && *found) {
        if (expired)
            out->stalled_count++;
        rc = db_exec(self->conn, &SQL_ACTIVATE,
                     DB_ARGS(db_text(out->id), db_time(now + lease_ms), db_int(out->stalled_count),
                             db_time(now)),
                     NULL, err);
        out->state = JOB_ACTIVE;
        out->lease_until = now + lease_ms;
    } else if (rc == SP_OK) {
        rc = db_query(self->conn, &SQL_NEXT_DUE, DB_NOARGS, a, &rows, err);
        if (rc == SP_OK && rows.nrows == 1)
            *next_due = db_cell_int(&rows, 0, 0);
    }
    if (rc != SP_OK)
        *found = 0;
    return rc;
}

/* An attempt-ending update matched no row: the caller's lease is gone. */
static int
fenced(int rc, int64_t changes, const struct job *j, struct sp_error *err)
{
    if (rc == SP_OK && changes == 0)
        return sp_error_set(err, SP_ECONFLICT, "job", "lease on job %s was lost", j->id);
    return rc;
}

static int
q_complete(struct job_queue *q, const struct job *j, int64_t now, struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(self_of(q)->conn, &SQL_COMPLETE,
                     DB_ARGS(db_text(j->id), db_time(now), db_time(j->lease_until)), &changes, err);
    return fenced(rc, changes, j, err);
}

static int
q_retry(struct job_queue *q, const struct job *j, int64_t now, int64_t run_at, const char *error,
        struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(self_of(q)->conn, &SQL_RETRY,
                     DB_ARGS(db_text(j->id), db_time(now), db_time(run_at), db_text(error),
                             db_time(j->lease_until)),
                     &changes, err);
    return fenced(rc, changes, j, err);
}

static int
q_fail(struct job_queue *q, const struct job *j, int64_t now, const char *error,
       struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(self_of(q)->conn, &SQL_FAIL,
                     DB_ARGS(db_text(j->id), db_time(now), db_text(error), db_time(j->lease_until)),
                     &changes, err);
    return fenced(rc, changes, j, err);
}

static int
q_list_by_lead(struct job_queue *q, const char *lead_id, struct arena *a, struct job **out, int *n,
               struct sp_error *err)
{
    struct db_rows rows;
    int rc = db_query(self_of(q)->conn, &SQL_BY_LEAD, DB_ARGS(db_text(lead_id)), a, &rows, err);

    *out = NULL;
    *n = 0;
    if (rc != SP_OK)
        return rc;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(rows.nrows ? rows.nrows : 1));
    for (int i = 0; i < rows.nrows; i++) {
        rc = row_to_job(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = rows.nrows;
    return SP_OK;
}

static void
q_wake(struct job_queue *q)
{
    struct queue_sql *self = self_of(q);
    if (self->signal)
        queue_signal_wake(self->signal);
}

static const struct job_queue_ops sql_queue_ops = {
    .name = "sql",
    .enqueue = q_enqueue,
    .reserve = q_reserve,
    .complete = q_complete,
    .retry = q_retry,
    .fail = q_fail,
    .list_by_lead = q_list_by_lead,
    .wake = q_wake,
};

void
queue_sql_init(struct queue_sql *q, struct db_conn *conn, struct queue_signal *signal)
{
    q->base.ops = &sql_queue_ops;
    q->conn = conn;
    q->signal = signal;
    q->max_stalled = MAX_STALLED_DEFAULT;
}
