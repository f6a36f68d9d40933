/* queue_sql.c: SQL job queue (see queue_sql.h). */
#include "infra/queue_sql.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/queue_signal.h"
#include "core/rand.h"
#include "infra/db.h"
#include "infra/job_rows.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_EVERY_MS 1000 /* dead-holder checks, per process */

DB_STMT_SAME(
    SQL_ENQUEUE,
    "INSERT INTO jobs (name, lead_id, message_id, data, state, attempts_made, max_attempts,"
    " backoff_ms, run_at, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, 'waiting', 0, $5, $6, $7, $7, $7) RETURNING id");
/* The shared record, then data and backoff_ms (from JOB_RECORD_NCOLS on). */
#define JOB_COLUMNS JOB_RECORD_COLUMNS ", data, backoff_ms"
/* SQLite: INDEXED BY, because with jobs_by_state (0009) beside them and no statistics the
 * planner took that index for the state and sorted every waiting (or active) job to find the
 * first: each reservation cost O(backlog), and a worker fell to ~160 sends/s at a backlog of
 * 25,000. The partial indexes jobs_due and jobs_leased (0001) give the first row at once. */
DB_STMT(SQL_DUE,
        "SELECT " JOB_COLUMNS " FROM jobs INDEXED BY jobs_due"
        " WHERE state IN ('waiting', 'delayed') AND run_at <= $1"
        " ORDER BY run_at LIMIT 1",
        "SELECT " JOB_COLUMNS " FROM jobs"
        " WHERE state IN ('waiting', 'delayed') AND run_at <= $1"
        " ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED");
DB_STMT(SQL_EXPIRED,
        "SELECT " JOB_COLUMNS " FROM jobs INDEXED BY jobs_leased"
        " WHERE state = 'active' AND lease_until <= $1"
        " ORDER BY lease_until LIMIT 1",
        "SELECT " JOB_COLUMNS " FROM jobs"
        " WHERE state = 'active' AND lease_until <= $1"
        " ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED");
/* PostgreSQL: rows another worker is reserving are skipped, not waited for. */
DB_STMT(SQL_NEXT_DUE,
        "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_due WHERE state IN ('waiting', 'delayed')",
        "SELECT MIN(run_at) FROM jobs WHERE state IN ('waiting', 'delayed')");
DB_STMT_SAME(SQL_ACTIVATE,
             "UPDATE jobs SET state = 'active', lease_until = $2, lease_token = $3, holder = $4,"
             " stalled_count = $5, updated_at = $6 WHERE id = $1");
DB_STMT_SAME(
    SQL_COMPLETE,
    "UPDATE jobs SET state = 'completed', attempts_made = attempts_made + 1, lease_until = NULL,"
    " lease_token = NULL, holder = NULL, updated_at = $2, finished_at = $2"
    " WHERE id = $1 AND state = 'active' AND lease_token = $3");
DB_STMT_SAME(
    SQL_RETRY,
    "UPDATE jobs SET state = 'delayed', attempts_made = attempts_made + 1, lease_until = NULL,"
    " lease_token = NULL, holder = NULL, run_at = $3, last_error = $4, updated_at = $2"
    " WHERE id = $1 AND state = 'active' AND lease_token = $5");
DB_STMT_SAME(
    SQL_FAIL,
    "UPDATE jobs SET state = 'failed', attempts_made = attempts_made + 1, lease_until = NULL,"
    " lease_token = NULL, holder = NULL, last_error = $3, updated_at = $2, finished_at = $2"
    " WHERE id = $1 AND state = 'active' AND lease_token = $4");
DB_STMT_SAME(
    SQL_FAIL_STALLED,
    "UPDATE jobs SET state = 'failed', lease_until = NULL, lease_token = NULL, holder = NULL,"
    " stalled_count = stalled_count + 1, last_error = $3, updated_at = $2, finished_at = $2"
    " WHERE id = $1");
DB_STMT_SAME(SQL_BY_GROUP, "SELECT " JOB_COLUMNS " FROM jobs WHERE lead_id = $1"
                           " ORDER BY id DESC LIMIT $2");
/* The operator's list, newest first: keyset on id ($1: below this id), every state (the primary
 * key) or one ($4, on jobs_by_state), $2 a name or NULL. */
#define LIST_WHERE(name_is_null)                                                                   \
    " id < $1 AND (" name_is_null " OR name = $2) ORDER BY id DESC LIMIT $3"
DB_STMT(SQL_LIST, "SELECT " JOB_COLUMNS " FROM jobs WHERE" LIST_WHERE("$2 IS NULL"),
        "SELECT " JOB_COLUMNS " FROM jobs WHERE" LIST_WHERE("$2::text IS NULL"));
DB_STMT(SQL_LIST_STATE,
        "SELECT " JOB_COLUMNS " FROM jobs WHERE state = $4 AND" LIST_WHERE("$2 IS NULL"),
        "SELECT " JOB_COLUMNS " FROM jobs WHERE state = $4 AND" LIST_WHERE("$2::text IS NULL"));
DB_STMT_SAME(SQL_GET, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1");
/* PostgreSQL: the row held until commit, so two retries of one job run one after the other. */
DB_STMT(SQL_GET_FOR_UPDATE, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1",
        "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1 FOR UPDATE");
DB_STMT_SAME(SQL_REPROCESS,
             "UPDATE jobs SET state = 'waiting', attempts_made = 0, run_at = $2, last_error = NULL,"
             " finished_at = NULL, lease_until = NULL, lease_token = NULL, holder = NULL,"
             " updated_at = $2 WHERE id = $1 AND state = 'failed'");
DB_STMT_SAME(SQL_HELD,
             "SELECT 1 FROM jobs WHERE id = $1 AND state = 'active' AND lease_token = $2");
/* PostgreSQL: rows a transaction holds (a worker recording an outcome, another taking an expired
 * job) are skipped, not waited for: a renewal locking many rows while those transactions lock
 * some of them in another order would deadlock with them. A skipped row is renewed next round
 * (the keeper runs at least every second), if its job is still ours. */
DB_STMT(SQL_RENEW,
        "UPDATE jobs SET lease_until = $2 WHERE holder = $1 AND state = 'active'"
        " AND lease_token IN (SELECT value FROM json_each($3))",
        "UPDATE jobs SET lease_until = $2 WHERE id IN (SELECT id FROM jobs WHERE holder = $1"
        " AND state = 'active' AND lease_token IN (SELECT jsonb_array_elements_text($3::jsonb))"
        " ORDER BY id FOR UPDATE SKIP LOCKED)");
DB_STMT_SAME(SQL_HOLDERS, "SELECT DISTINCT holder FROM jobs"
                          " WHERE state = 'active' AND holder IS NOT NULL AND holder <> $1");
/* The dead holder's jobs: their leases end now, and reserve takes them as stalled jobs. */
DB_STMT_SAME(SQL_EXPIRE_HOLDER,
             "UPDATE jobs SET lease_until = $2 WHERE holder = $1 AND state = 'active'");
DB_STMT(SQL_COUNTS, JOB_COUNTS_SQL("jobs", ""), JOB_COUNTS_SQL_PG("jobs", ""));
/* PostgreSQL liveness: a session lock per holder (bigint key), released by the server when the
 * session ends. The keepalive takes it only when this session does not hold it yet (after a
 * reconnection), so the lock count stays at one. */
DB_STMT(SQL_PG_LOCK, NULL, "SELECT pg_advisory_lock($1::bigint)");
DB_STMT(SQL_PG_KEEPALIVE, NULL,
        "SELECT pg_advisory_lock($1::bigint) WHERE NOT EXISTS (SELECT 1 FROM pg_locks"
        " WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1 AND granted"
        " AND ((classid::bigint << 32) | objid::bigint) = $1::bigint)");
DB_STMT(SQL_PG_TRY, NULL, "SELECT pg_try_advisory_lock($1::bigint)");
DB_STMT(SQL_PG_UNLOCK, NULL, "SELECT pg_advisory_unlock($1::bigint)");

/* ---- the node: this process as a holder ----------------------------------------------------- */

void
queue_sql_node_init(struct queue_sql_node *n, struct queue_signal *signal, int max_stalled)
{
    uint64_t id = ((uint64_t)sp_random() << 30 ^ sp_random()) & ((1ULL << 62) - 1);

    memset(n, 0, sizeof(*n));
    n->signal = signal;
    n->max_stalled = max_stalled < 0 ? 0 : max_stalled;
    snprintf(n->holder, sizeof(n->holder), "%llu", (unsigned long long)(id ? id : 1));
    atomic_init(&n->seq, 0);
    atomic_init(&n->next_check, 0);
    atomic_init(&n->is_live, 0);
    pthread_mutex_init(&n->mu, NULL);
    lease_set_init(&n->held);
    n->fd = -1;
}

static int
lock_path(const struct queue_sql_node *n, const char *holder, char *out, size_t cap)
{
    int len = snprintf(out, cap, "%s/%s.lock", n->dir, holder);
    return len > 0 && (size_t)len < cap ? SP_OK : SP_ETOOLARGE;
}

/* Removes the files of holders that are gone (a crash leaves its file; one whose jobs were
 * all taken back by lease expiry is never looked at by maintain). A file is removed only by
 * whoever holds its lock, and a live holder never lets go of it. */
static void
sweep_dead_files(struct queue_sql_node *n)
{
    char path[PATH_MAX + 300];
    DIR *d = opendir(n->dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        int fd;
        if (len < 6 || strcmp(e->d_name + len - 5, ".lock") != 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", n->dir, e->d_name) >= (int)sizeof(path))
            continue;
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
            unlink(path);
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
}

int
queue_sql_node_live_sqlite(struct queue_sql_node *n, const char *db_path, struct sp_error *err)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 32], real[PATH_MAX];
    int len;

    /* Every process must name the same directory, whatever path it was given. */
    if (realpath(db_path, real) == NULL)
        return sp_error_set(err, SP_EINTERNAL, "DATABASE_URL", "cannot resolve %s: %s", db_path,
                            strerror(errno));
    len = snprintf(n->dir, sizeof(n->dir), "%s-workers", real);
    if (len <= 0 || (size_t)len >= sizeof(n->dir) || lock_path(n, n->holder, path, sizeof(path)) ||
        snprintf(tmp, sizeof(tmp), "%s/%s.new", n->dir, n->holder) >= (int)sizeof(tmp))
        return sp_error_set(err, SP_EINTERNAL, "DATABASE_URL", "database path too long");
    if (mkdir(n->dir, 0700) != 0 && errno != EEXIST)
        return sp_error_set(err, SP_EINTERNAL, "DATABASE_URL", "cannot create %s: %s", n->dir,
                            strerror(errno));
    sweep_dead_files(n);
    /* Locked before it gets its name: nobody can see our file unlocked (and remove it). */
    n->fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (n->fd < 0 || flock(n->fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, path) != 0)
        return sp_error_set(err, SP_EINTERNAL, "DATABASE_URL", "cannot lock %s: %s", path,
                            strerror(errno));
    atomic_store(&n->is_live, 1);
    return SP_OK;
}

int
queue_sql_node_live_pg(struct queue_sql_node *n, struct db_conn *conn,
                       int (*connect)(void *ctx, struct db_conn **out, struct sp_error *err),
                       void *ctx, struct sp_error *err)
{
    int rc;

    n->live = conn;
    n->connect = connect;
    n->connect_ctx = ctx;
    rc = db_exec(conn, &SQL_PG_LOCK, DB_ARGS(db_text(n->holder)), NULL, err);
    if (rc == SP_OK)
        atomic_store(&n->is_live, 1);
    return rc;
}

int
queue_sql_node_keepalive(struct queue_sql_node *n, struct sp_error *err)
{
    int rc;

    if (n->connect == NULL)
        return SP_OK;
    if (n->live == NULL) {
        rc = n->connect(n->connect_ctx, &n->live, err);
        if (rc != SP_OK)
            return rc;
    }
    rc = db_exec(n->live, &SQL_PG_KEEPALIVE, DB_ARGS(db_text(n->holder)), NULL, err);
    if (rc != SP_OK) {
        /* The session (and its lock) is gone: a new one takes the lock next round. */
        db_close(n->live);
        n->live = NULL;
    }
    return rc;
}

void
queue_sql_node_cleanup(struct queue_sql_node *n)
{
    char path[PATH_MAX + 32];

    if (n->fd >= 0) {
        if (lock_path(n, n->holder, path, sizeof(path)) == SP_OK)
            unlink(path);
        close(n->fd);
        n->fd = -1;
    }
    db_close(n->live);
    n->live = NULL;
    atomic_store(&n->is_live, 0);
    pthread_mutex_destroy(&n->mu);
    lease_set_cleanup(&n->held);
}

/* When `holder` was first seen without its lock (now, if it was not a suspect yet); -1 when the
 * table is full (then it is left alone this time). Clears it instead when `clear`. */
static int64_t
suspect(struct queue_sql_node *n, const char *holder, int64_t now, int clear)
{
    int64_t since = now;
    int i;

    pthread_mutex_lock(&n->mu);
    for (i = 0; i < n->nsuspects; i++)
        if (strcmp(n->suspects[i].holder, holder) == 0)
            break;
    if (clear) {
        if (i < n->nsuspects)
            n->suspects[i] = n->suspects[--n->nsuspects];
    } else if (i < n->nsuspects) {
        since = n->suspects[i].since;
    } else if (n->nsuspects < QUEUE_SQL_SUSPECTS) {
        snprintf(n->suspects[i].holder, sizeof(n->suspects[i].holder), "%s", holder);
        n->suspects[i].since = now;
        n->nsuspects++;
    } else {
        since = -1;
    }
    pthread_mutex_unlock(&n->mu);
    return since;
}

/* Whether the holder's liveness lock is free. SQLite: its file is missing or nobody holds its
 * lock; PostgreSQL: nobody holds its advisory lock. Anything we cannot tell is held: its jobs
 * then wait for their leases to expire. `forget` (SQLite): removes a free file. */
static int
holder_free(struct queue_sql *self, const char *holder, int forget)
{
    struct queue_sql_node *n = self->node;
    struct arena *a;
    struct db_rows rows;
    char path[PATH_MAX + 32];
    int dead = 0, fd;

    if (n->dir[0]) {
        if (lock_path(n, holder, path, sizeof(path)) != SP_OK || strchr(holder, '/'))
            return 0;
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return errno == ENOENT;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            dead = 1;
            if (forget)
                unlink(path);
        }
        close(fd);
        return dead;
    }
    if (!atomic_load(&n->is_live))
        return 0; /* not a worker process: leave the check to those */
    a = arena_new();
    if (db_query(self->conn, &SQL_PG_TRY, DB_ARGS(db_text(holder)), a, &rows, NULL) == SP_OK &&
        rows.nrows == 1 && db_cell(&rows, 0, 0) && db_cell(&rows, 0, 0)[0] == 't') {
        dead = 1;
        if (db_exec(self->conn, &SQL_PG_UNLOCK, DB_ARGS(db_text(holder)), NULL, NULL) != SP_OK)
            log_debug("advisory unlock of holder %s failed", holder);
    }
    arena_free(a);
    return dead;
}

/* Whether the holder is dead: its lock has been free for QUEUE_SQL_DEAD_GRACE_MS (a holder
 * reconnecting after a database restart takes its lock again within that). */
static int
holder_dead(struct queue_sql *self, const char *holder, int64_t mono)
{
    struct queue_sql_node *n = self->node;
    int64_t since;

    if (!holder_free(self, holder, 0)) {
        suspect(n, holder, mono, 1);
        return 0;
    }
    since = suspect(n, holder, mono, 0);
    if (since < 0 || mono - since < QUEUE_SQL_DEAD_GRACE_MS)
        return 0; /* seen again at a later check */
    suspect(n, holder, mono, 1);
    return n->dir[0] == '\0' || holder_free(self, holder, 1); /* SQLite: its file removed */
}

/* ---- the queue ------------------------------------------------------------------------------- */

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
                  DB_ARGS(db_text(spec->name), db_text(spec->group), db_text(spec->key),
                          db_text(spec->data), db_int(spec->max_attempts), db_int(spec->backoff_ms),
                          db_time(now)),
                  a, &rows, err);
    if (rc == SP_OK && rows.nrows != 1)
        rc = sp_error_set(err, SP_EINTERNAL, "queue", "enqueue returned no id");
    if (rc == SP_OK)
        snprintf(id_out, JOB_ID_MAX, "%s", db_cell(&rows, 0, 0));
    arena_free(a);
    return rc;
}

static int
row_to_job(const struct db_rows *rows, int i, struct job *j, struct sp_error *err)
{
    int rc = job_record_from_row(rows, i, j, err);

    j->data = db_cell(rows, i, JOB_RECORD_NCOLS);
    j->backoff_ms = db_cell_int(rows, i, JOB_RECORD_NCOLS + 1);
    j->backoff_type = JOB_BACKOFF_EXPONENTIAL;
    return rc;
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

/* Leases one job; *found = 0 when none is due. */
static int
reserve_one(struct queue_sql *self, int64_t now, int64_t lease_ms, struct arena *a, struct job *out,
            int *found, struct sp_error *err)
{
    int expired = 0;
    int rc;

    for (;;) {
        rc = pick(self, now, a, out, found, &expired, err);
        if (rc != SP_OK || !*found || !expired || out->stalled_count + 1 <= self->node->max_stalled)
            break;
        /* Its holders died or hung too often while holding it: a poison job goes to the dead
         * letters. */
        log_warn("job %s: stalled more than %d times: failed", out->id, self->node->max_stalled);
        rc = db_exec(self->conn, &SQL_FAIL_STALLED,
                     DB_ARGS(db_text(out->id), db_time(now),
                             db_text("job stalled more than allowable limit")),
                     NULL, err);
        *found = 0;
        if (rc != SP_OK)
            return rc;
    }
    if (rc != SP_OK || !*found)
        return rc;
    if (expired) {
        out->stalled_count++;
        log_info("job %s: its holder's lease ended; taken again", out->id);
    }
    snprintf(out->lease, sizeof(out->lease), "%s:%llu", self->node->holder,
             (unsigned long long)atomic_fetch_add(&self->node->seq, 1));
    out->state = JOB_ACTIVE;
    rc = db_exec(self->conn, &SQL_ACTIVATE,
                 DB_ARGS(db_text(out->id), db_time(now + lease_ms), db_text(out->lease),
                         db_text(self->node->holder), db_int(out->stalled_count), db_time(now)),
                 NULL, err);
    if (rc == SP_OK)
        lease_set_add(&self->node->held, out->id, out->lease, self);
    return rc;
}

static int
q_reserve(struct job_queue *q, int64_t now, int64_t lease_ms, int max, struct arena *a,
          struct job *out, int *n, int64_t *next_due, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    struct db_rows rows;
    int found = 1, rc = SP_OK;

    *n = 0;
    *next_due = 0;
    if (self->node->signal)
        self->seen = queue_signal_seq(self->node->signal);
    while (rc == SP_OK && found && *n < max) {
        rc = reserve_one(self, now, lease_ms, a, &out[*n], &found, err);
        if (rc == SP_OK && found)
            (*n)++;
    }
    if (rc == SP_OK && *n == 0) {
        rc = db_query(self->conn, &SQL_NEXT_DUE, DB_NOARGS, a, &rows, err);
        if (rc == SP_OK && rows.nrows == 1)
            *next_due = db_cell_int(&rows, 0, 0);
    }
    if (rc != SP_OK)
        *n = 0;
    return rc;
}

/* An attempt-ending update matched no row: the caller's lease is gone. Else the job ends with
 * the unit of work: its lease is not renewed once that commits. */
static int
fenced(struct queue_sql *self, int rc, int64_t changes, const struct job *j, struct sp_error *err)
{
    if (rc == SP_OK && changes == 0)
        return sp_error_set(err, SP_ELEASELOST, "job", "lease on job %s was lost", j->id);
    if (rc == SP_OK)
        lease_set_end(&self->node->held, j->id, j->lease);
    return rc;
}

static int
q_complete(struct job_queue *q, const struct job *j, int64_t now, struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(self_of(q)->conn, &SQL_COMPLETE,
                     DB_ARGS(db_text(j->id), db_time(now), db_text(j->lease)), &changes, err);
    return fenced(self_of(q), rc, changes, j, err);
}

static int
q_retry(struct job_queue *q, const struct job *j, int64_t now, int64_t run_at, const char *error,
        struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(
        self_of(q)->conn, &SQL_RETRY,
        DB_ARGS(db_text(j->id), db_time(now), db_time(run_at), db_text(error), db_text(j->lease)),
        &changes, err);
    return fenced(self_of(q), rc, changes, j, err);
}

static int
q_fail(struct job_queue *q, const struct job *j, int64_t now, const char *error,
       struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(self_of(q)->conn, &SQL_FAIL,
                     DB_ARGS(db_text(j->id), db_time(now), db_text(error), db_text(j->lease)),
                     &changes, err);
    return fenced(self_of(q), rc, changes, j, err);
}

/* Whether each job still carries our lease token (the outcome statements are fenced by it as
 * well; this lets a worker skip a send whose job went to another holder). */
static int
q_fence(struct job_queue *q, const struct job *const *jobs, int n, int *lost, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    int rc = SP_OK;

    for (int i = 0; rc == SP_OK && i < n; i++) {
        int64_t found = 0;
        rc = db_query_count(self->conn, &SQL_HELD,
                            DB_ARGS(db_text(jobs[i]->id), db_text(jobs[i]->lease)), &found, err);
        lost[i] = rc == SP_OK && found == 0;
        if (lost[i])
            lease_set_remove(&self->node->held, jobs[i]->id, jobs[i]->lease);
    }
    return rc;
}

static int
q_list_group(struct job_queue *q, const char *group, int max, struct arena *a, struct job **out,
             int *n, int *more, struct sp_error *err)
{
    struct db_rows rows;
    int rc = db_query(self_of(q)->conn, &SQL_BY_GROUP,
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
        rc = row_to_job(&rows, k - 1 - i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = k;
    *more = rows.nrows > max;
    return SP_OK;
}

/* A job id or list position of this queue: the decimal text of a positive integer (the jobs
 * table's key). -1 otherwise. */
static int
parse_serial(const char *s, int64_t *out)
{
    size_t len = s ? strlen(s) : 0;
    int64_t v = 0;

    if (len == 0 || len > 18 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int
q_list(struct job_queue *q, const struct job_filter *f, struct arena *a, struct job **out, int *n,
       char *next, struct sp_error *err)
{
    int64_t below = INT64_MAX;
    struct db_rows rows;
    int rc, k;

    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (f->after && parse_serial(f->after, &below) != 0)
        return sp_error_set(err, SP_EINVAL, "cursor", "cursor is not valid");
    if (f->has_state)
        rc = db_query(self_of(q)->conn, &SQL_LIST_STATE,
                      DB_ARGS(db_int(below), db_text(f->name), db_int((int64_t)f->limit + 1),
                              db_text(job_state_name(f->state))),
                      a, &rows, err);
    else
        rc = db_query(self_of(q)->conn, &SQL_LIST,
                      DB_ARGS(db_int(below), db_text(f->name), db_int((int64_t)f->limit + 1)), a,
                      &rows, err);
    if (rc != SP_OK)
        return rc;
    k = rows.nrows > f->limit ? f->limit : rows.nrows;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(k ? k : 1));
    for (int i = 0; i < k; i++) {
        rc = row_to_job(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = k;
    if (rows.nrows > k)
        snprintf(next, JOB_CURSOR_MAX, "%s", (*out)[k - 1].id);
    return SP_OK;
}

/* One job by id, with `stmt` (a plain read, or one that holds the row). */
static int
get_one(struct queue_sql *self, const struct db_stmt *stmt, const char *id, struct arena *a,
        struct job *out, struct sp_error *err)
{
    struct db_rows rows;
    int64_t serial;
    int rc;

    if (parse_serial(id, &serial) != 0)
        return sp_error_set(err, SP_EINVAL, "id", "Validation failed (job id is expected)");
    rc = db_query(self->conn, stmt, DB_ARGS(db_int(serial)), a, &rows, err);
    if (rc == SP_OK && rows.nrows == 0)
        rc = sp_error_set(err, SP_ENOTFOUND, "id", "Job %s not found", id);
    if (rc == SP_OK)
        rc = row_to_job(&rows, 0, out, err);
    return rc;
}

static int
q_get(struct job_queue *q, const char *id, struct arena *a, struct job *out, struct sp_error *err)
{
    return get_one(self_of(q), &SQL_GET, id, a, out, err);
}

static int
q_reprocess(struct job_queue *q, const char *id, int64_t now, struct arena *a, struct job *before,
            struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    int64_t changes = 0;
    int rc = get_one(self, &SQL_GET_FOR_UPDATE, id, a, before, err);

    if (rc != SP_OK)
        return rc;
    if (before->state != JOB_FAILED)
        return sp_error_set(err, SP_ECONFLICT, "state",
                            "Job %s is %s: only a failed job can be retried", before->id,
                            job_state_name(before->state));
    rc = db_exec(self->conn, &SQL_REPROCESS, DB_ARGS(db_text(before->id), db_time(now)), &changes,
                 err);
    if (rc == SP_OK && changes != 1)
        rc = sp_error_set(err, SP_EINTERNAL, "queue", "job %s: retry changed %lld rows", before->id,
                          (long long)changes);
    return rc;
}

/* Jobs are rows written in the producer's transaction: there is never a backlog. */
static int
q_count(struct job_queue *q, struct arena *a, struct job_counts *out, struct sp_error *err)
{
    struct db_rows rows;
    int rc = db_query(self_of(q)->conn, &SQL_COUNTS, DB_NOARGS, a, &rows, err);

    memset(out, 0, sizeof(*out));
    if (rc == SP_OK)
        job_counts_from_rows(&rows, a, out);
    return rc;
}

static int
q_renew(struct job_queue *q, int64_t now, int64_t lease_ms, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    struct arena *a;
    struct lease_entry *held;
    struct jsonw w;
    int n, rc;

    held = lease_set_snapshot(&self->node->held, &n);
    if (n == 0) {
        free(held);
        return SP_OK;
    }
    a = arena_new();
    jsonw_init(&w, a, 64 * (size_t)n + 16);
    jsonw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        jsonw_str(&w, held[i].token);
    jsonw_arr_end(&w);
    rc = db_exec(self->conn, &SQL_RENEW,
                 DB_ARGS(db_text(self->node->holder), db_time(now + lease_ms),
                         db_text(jsonw_finish_or(&w, "[]"))),
                 NULL, err);
    arena_free(a);
    free(held);
    return rc;
}

static int
q_maintain(struct job_queue *q, int64_t now, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);
    struct queue_sql_node *n = self->node;
    int64_t mono = sp_mono_ms(), due = atomic_load(&n->next_check);
    struct arena *a;
    struct db_rows rows;
    int rc;

    if (mono < due || !atomic_compare_exchange_strong(&n->next_check, &due, mono + CHECK_EVERY_MS))
        return SP_OK; /* not due, or another thread of this process took this turn */
    a = arena_new();
    rc = db_query(self->conn, &SQL_HOLDERS, DB_ARGS(db_text(n->holder)), a, &rows, err);
    for (int i = 0; rc == SP_OK && i < rows.nrows; i++) {
        const char *holder = db_cell(&rows, i, 0);
        int64_t changes = 0;
        if (!holder_dead(self, holder, mono))
            continue;
        rc = db_exec(self->conn, &SQL_EXPIRE_HOLDER, DB_ARGS(db_text(holder), db_time(0)), &changes,
                     err);
        if (rc == SP_OK)
            log_warn("worker process %s is gone: its %lld active jobs are taken again now", holder,
                     (long long)changes);
    }
    arena_free(a);
    (void)now;
    return rc;
}

static int
q_wait(struct job_queue *q, int64_t timeout_ms, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);

    (void)err;
    if (self->node->signal)
        queue_signal_wait(self->node->signal, self->seen, timeout_ms);
    return SP_OK;
}

/* Nothing deferred: every transition was written when it was made. */
static int
q_before_commit(struct job_queue *q, struct sp_error *err)
{
    (void)q;
    (void)err;
    return SP_OK;
}

/* The jobs were part of the transaction: only the keeper's list follows. */
static int
q_after_commit(struct job_queue *q, struct sp_error *err)
{
    struct queue_sql *self = self_of(q);

    (void)err;
    lease_set_release(&self->node->held, self, 0);
    return SP_OK;
}

static void
q_after_rollback(struct job_queue *q)
{
    struct queue_sql *self = self_of(q);
    lease_set_release(&self->node->held, self, 1);
}

static void
q_wake(struct job_queue *q)
{
    struct queue_sql *self = self_of(q);
    if (self->node->signal)
        queue_signal_wake(self->node->signal);
}

#define JOB_QUEUE_IMPL_(name) q_##name
static const struct job_queue_ops sql_queue_ops = JOB_QUEUE_OPS_TABLE("sql");

void
queue_sql_init(struct queue_sql *q, struct db_conn *conn, struct queue_sql_node *node)
{
    q->base.ops = &sql_queue_ops;
    q->conn = conn;
    q->node = node;
    q->seen = 0;
}
