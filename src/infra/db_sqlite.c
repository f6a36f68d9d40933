/* db_sqlite.c: the SQLite driver behind the database port.
 *
 * Each SQLite handle caches its prepared statements in an array indexed by the statement
 * descriptor's slot (db_stmt_slot in db.h); a statement runs its descriptor's `sqlite` text. Reads
 * outside a transaction use the connection's own handle. Write transactions take the process-wide
 * writer mutex and run on the one writer handle shared by the process: SQLite serialises writers
 * anyway, and a single writer keeps its page cache warm (a handle's cache is dropped whenever
 * another handle commits), which roughly doubles write throughput. Threads of one process thus
 * queue on the mutex instead of sleeping in SQLite's busy handler; other processes wait through the
 * busy timeout.
 *
 * Group commit: a logical transaction is a SAVEPOINT inside an outer write transaction on the
 * writer handle. When it ends and other threads are queued for the writer, it leaves its
 * changes pending and waits; the last transaction of the group (nobody queued behind it, or the
 * group is full) COMMITs for everyone and wakes them with the common result. So commit()
 * returns only once the changes are committed, and a failed logical transaction rolls back to
 * its savepoint without touching the others. Under load this amortises each commit's WAL
 * write over many transactions. A transaction that rolls back while a group is pending also
 * waits for the group's commit (it saw the group's rows), and a write outside any transaction
 * runs as a transaction of its own on the writer (write_alone), never on a reader's handle.
 *
 * Checkpoints: the writer does not checkpoint inside COMMIT (wal_autocheckpoint=0), where the
 * fsyncs would stall every queued writer; a checkpointer thread with its own handle runs PASSIVE
 * checkpoints when the WAL passes CHECKPOINT_PAGES (signalled by the WAL hook) or every second.
 *
 * Waiting: a lock held elsewhere (another process's write transaction) is waited for through a
 * busy handler of our own, and the writer mutex with a timed lock, both until the connection's
 * deadline (db_conn deadline_ms: one budget for a whole request), or for the busy timeout when
 * it has none. So a request never queues behind N others each waiting their full timeout.
 *
 * The files underneath: the first connection pins the database file (its device and inode).
 * Before each transaction and each read outside one, the file at the path must still be that
 * file (not removed, not replaced by another, e.g. by an empty directory put back), and the
 * files SQLite writes must be writable: the -shm file always, the database and -wal files for
 * writes and the readiness probe. A failed check is SP_EUNAVAIL, logged once when the fault
 * starts and once when it ends. Connections opened after the pin never create the file, so an
 * unmigrated database is never made and used. Why check instead of letting SQLite fail: the
 * -shm file is mapped in memory, and writing to a mapped page of a file made immutable under
 * us (chattr +i) is a SIGBUS, not an error code; there is no setting that stops SQLite mapping
 * it short of exclusive locking, which would shut out the worker processes. The check and the
 * write are not atomic: a flag set in the microseconds between them still faults (documented
 * in docs). A file moved away and back is the pinned file again and works again.
 *
 * Recovery: the writer handle is closed and opened again at the next write transaction after
 * it failed for a reason other than a lock or a constraint (read-only, I/O error...), and a
 * writer that SQLite opened read-only (the file was not writable at that moment) is refused and
 * closed: so the writer recovers by itself once the file is writable again. */
#include "infra/db_sqlite.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "infra/db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 5000 /* until db_sqlite_set_busy_timeout */
#define BUSY_SLEEP_MAX_MS 10
#define GROUP_POLL_MS 50
#define ROWS_MAX 100000
#define GROUP_MAX 64 /* logical transactions per commit */
#define CHECKPOINT_PAGES 1000
#define CHECKPOINT_EVERY_MS 1000

/* One SQLite handle and its statement cache: stmts[slot], NULL until first prepared. */
struct handle {
    sqlite3 *db;
    sqlite3_stmt *stmts[DB_STMT_SLOTS];
    /* For the busy handler: the deadline (sp_mono_ms) of the statement running, 0 for none:
     * then busy_ms from the first retry. Set by whoever runs a statement (arm). */
    int64_t wait_until;
    int64_t wait_start;
    int busy_ms;
};

/* A logical transaction waiting for its group's commit (lives on the waiter's stack). */
struct group_waiter {
    struct group_waiter *next;
    int done;
    int rc;
    struct sp_error err;
};

struct db_sqlite {
    char *path;
    int busy_timeout_ms;
    /* The database file, pinned by the first connection (see the top of the file). */
    int pinned;
    dev_t dev;
    ino_t ino;
    atomic_int file_fault;    /* a file check is failing: logged when it starts and ends */
    pthread_mutex_t write_mu; /* held for the whole of a logical write transaction */
    pthread_cond_t group_cv;  /* signalled when a group commits */
    atomic_int queued;        /* threads waiting to take write_mu */
    atomic_llong vm_steps;    /* SQLite VM steps of the statements run (db_sqlite_vm_steps) */
    /* Guarded by write_mu: */
    struct handle *writer; /* opened at the first write transaction */
    int writer_stale;      /* failed for a reason other than a lock: reopen it */
    int outer_open;        /* BEGIN IMMEDIATE issued, COMMIT pending */
    int group_n;           /* logical transactions in the open group */
    struct group_waiter *waiters;
    /* The checkpointer thread, started with the writer. */
    pthread_t ckpt_thread;
    int ckpt_running;          /* started with the first writer; lives until db_sqlite_free */
    struct handle ckpt_handle; /* the checkpointer's, opened before it starts, closed by it */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    int ckpt_wanted; /* guarded by ckpt_mu */
    int ckpt_stop;   /* guarded by ckpt_mu */
};

struct sqlite_conn {
    struct db_conn base; /* first */
    struct db_sqlite *owner;
    struct handle own;  /* reads outside transactions */
    struct handle *cur; /* &own, or owner->writer inside a write transaction */
    int in_tx;
};

/* Opens a handle; the writer gets a larger page cache (it is the hot one). */
static int handle_open(struct db_sqlite *o, int writer, struct handle *h, struct sp_error *err);
static void handle_close(struct handle *h);

/* ---- waiting for locks ------------------------------------------------------------------- */

/* SQLite's busy handler: retries until the handle's deadline (see struct handle). */
static int
busy_wait(void *arg, int count)
{
    struct handle *h = arg;
    int64_t now = sp_mono_ms(), until, step;
    struct timespec ts;

    if (count == 0)
        h->wait_start = now;
    until = h->wait_until ? h->wait_until : h->wait_start + h->busy_ms;
    if (now >= until)
        return 0;
    step = count < 4 ? (int64_t)1 << count : BUSY_SLEEP_MAX_MS;
    if (step > until - now)
        step = until - now;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)step * 1000000L;
    nanosleep(&ts, NULL);
    return 1;
}

/* Gives the statements about to run on `h` the connection's deadline. */
static void
arm(struct handle *h, const struct db_conn *c)
{
    h->wait_until = c->deadline_ms;
}

/* Takes the writer mutex, waiting until `deadline` (0: the busy timeout from now). */
static int
writer_lock(struct db_sqlite *o, int64_t deadline, struct sp_error *err)
{
    int64_t start = sp_mono_ms(), left;
    struct timespec ts;
    int rc;

    if (pthread_mutex_trylock(&o->write_mu) == 0)
        return SP_OK;
    left = (deadline ? deadline : start + o->busy_timeout_ms) - start;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (left > 0) {
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    rc = pthread_mutex_timedlock(&o->write_mu, &ts);
    if (rc == 0)
        return SP_OK;
    return sp_error_set(err, SP_EUNAVAIL, "database",
                        "sqlite: database busy (waited %lld ms for the write lock)",
                        (long long)(sp_mono_ms() - start));
}

/* ---- the files underneath ---------------------------------------------------------------- */

static int
file_fault(struct db_sqlite *o, struct sp_error *err, const char *what, int e)
{
    char msg[sizeof(err->msg)];

    snprintf(msg, sizeof(msg), "sqlite: database file %s %s%s%s", o->path, what, e ? ": " : "",
             e ? strerror(e) : "");
    /* Logged here, once per fault, rather than where it is handled: every request and worker
     * round meets it, and the log should say when the database went bad and when it came back. */
    if (atomic_exchange(&o->file_fault, 1) == 0)
        log_error("%s; answering 503 until it is fixed", msg);
    return sp_error_set(err, SP_EUNAVAIL, "database", "%s", msg);
}

/* One of the database's files must be writable if it exists (access(2) sees the immutable flag,
 * a read-only mount and, for anyone but root, the mode). */
static int
side_writable(const struct db_sqlite *o, const char *suffix, int *e)
{
    char p[PATH_MAX + 8];

    if (snprintf(p, sizeof(p), "%s%s", o->path, suffix) >= (int)sizeof(p))
        return 1; /* cannot be a real path */
    if (faccessat(AT_FDCWD, p, W_OK, AT_EACCESS) == 0 || errno == ENOENT)
        return 1;
    *e = errno;
    return 0;
}

/* See the top of the file. `for_write`: the database and -wal files must be writable too. */
static int
file_check(struct db_sqlite *o, int for_write, struct sp_error *err)
{
    struct stat st;
    int e = 0;

    if (!o->pinned)
        return SP_OK;
    if (stat(o->path, &st) != 0)
        return file_fault(o, err, "was removed (or its directory moved)", errno);
    if (st.st_dev != o->dev || st.st_ino != o->ino)
        return file_fault(o, err, "was replaced by another file since start", 0);
    if (!side_writable(o, "-shm", &e))
        return file_fault(o, err, "is not writable (its -shm file)", e);
    if (for_write && (!side_writable(o, "", &e) || !side_writable(o, "-wal", &e)))
        return file_fault(o, err, "is not writable", e);
    if (atomic_load_explicit(&o->file_fault, memory_order_relaxed) &&
        atomic_exchange(&o->file_fault, 0) == 1)
        log_info("sqlite: database file %s is usable again", o->path);
    return SP_OK;
}

/* Records the file the first connection opened. */
static void
file_pin(struct db_sqlite *o)
{
    struct stat st;

    if (o->pinned || strcmp(o->path, ":memory:") == 0 || stat(o->path, &st) != 0)
        return;
    o->dev = st.st_dev;
    o->ino = st.st_ino;
    o->pinned = 1;
}

/* After a failure on the writer (write_mu held): a failure of the file underneath (read-only,
 * I/O error, the file gone...) may have left the handle unusable for good: it is reopened at the
 * next transaction. A lock, a constraint or a bad statement leaves it as it is. */
static void
writer_failed(struct db_sqlite *o)
{
    if (o->writer == NULL)
        return;
    switch (sqlite3_errcode(o->writer->db) & 0xff) {
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PERM:
    case SQLITE_FULL:
        o->writer_stale = 1;
        break;
    default:
        break;
    }
}

static int
map_rc(sqlite3 *db, int rc, struct sp_error *err)
{
    int prim = rc & 0xff;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

    switch (prim) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
        return sp_error_set(err, SP_EUNAVAIL, "database", "sqlite: %s", msg);
    case SQLITE_CONSTRAINT:
        return sp_error_set(err, SP_ECONFLICT, "database", "sqlite: %s", msg);
    default:
        return sp_error_set(err, SP_EINTERNAL, "database", "sqlite: %s", msg);
    }
}

/* The prepared statement for `st` (whose sqlite text is not NULL): from the cache, or prepared
 * now and cached when the descriptor has a slot. *cached says whether the statement stays
 * owned by the cache; if not, the caller finalizes it after use. */
static int
prepare(struct handle *c, const struct db_stmt *st, sqlite3_stmt **out, int *cached,
        struct sp_error *err)
{
    int slot = db_stmt_slot(st);
    sqlite3_stmt *stmt = NULL;
    int rc;

    *cached = slot >= 0;
    if (slot >= 0 && c->stmts[slot]) {
        *out = c->stmts[slot];
        return SP_OK;
    }
    rc = sqlite3_prepare_v3(c->db, st->sqlite, -1, slot >= 0 ? SQLITE_PREPARE_PERSISTENT : 0, &stmt,
                            NULL);
    if (rc != SQLITE_OK)
        return map_rc(c->db, rc, err);
    if (slot >= 0)
        c->stmts[slot] = stmt;
    *out = stmt;
    return SP_OK;
}

static int
bind_args(struct handle *c, sqlite3_stmt *stmt, const struct db_arg *args, int nargs,
          struct sp_error *err)
{
    int count = sqlite3_bind_parameter_count(stmt);

    for (int i = 1; i <= count; i++) {
        const char *name = sqlite3_bind_parameter_name(stmt, i);
        long idx = name && name[0] == '$' ? strtol(name + 1, NULL, 10) : 0;
        const struct db_arg *a;
        int rc;

        if (idx < 1 || idx > nargs)
            return sp_error_set(err, SP_EINTERNAL, "database", "sqlite: parameter %d unbound", i);
        a = &args[idx - 1];
        switch (a->type) {
        case DB_ARG_TEXT:
            rc = sqlite3_bind_text(stmt, i, a->s, -1, SQLITE_STATIC);
            break;
        case DB_ARG_INT:
        case DB_ARG_TIME:
            rc = sqlite3_bind_int64(stmt, i, a->i);
            break;
        default:
            rc = sqlite3_bind_null(stmt, i);
            break;
        }
        if (rc != SQLITE_OK)
            return map_rc(c->db, rc, err);
    }
    return SP_OK;
}

/* Steps through all rows, copying cells into the arena when `rows` is wanted. */
static int
collect(struct handle *c, sqlite3_stmt *stmt, struct arena *a, struct db_rows *rows,
        int64_t *returned, struct sp_error *err)
{
    int ncols = sqlite3_column_count(stmt);
    size_t cap = 0, n = 0;
    char **cells = NULL;
    int rc;

    *returned = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        ++*returned;
        if (rows == NULL)
            continue;
        if (n / (size_t)(ncols ? ncols : 1) >= ROWS_MAX) {
            free(cells);
            return sp_error_set(err, SP_ETOOLARGE, "database", "query returned too many rows");
        }
        if (n + (size_t)ncols > cap) {
            cap = cap ? cap * 2 : (size_t)ncols * 16;
            cells = xrealloc(cells, cap * sizeof(*cells));
        }
        for (int col = 0; col < ncols; col++) {
            const unsigned char *txt = sqlite3_column_text(stmt, col);
            cells[n++] =
                txt ? arena_strndup(a, (const char *)txt, (size_t)sqlite3_column_bytes(stmt, col))
                    : NULL;
        }
    }
    if (rc != SQLITE_DONE) {
        free(cells);
        return map_rc(c->db, rc, err);
    }
    if (rows) {
        rows->ncols = ncols;
        rows->nrows = ncols ? (int)(n / (size_t)ncols) : 0;
        rows->cells = arena_alloc(a, (n ? n : 1) * sizeof(*cells));
        if (n)
            memcpy(rows->cells, cells, n * sizeof(*cells));
    }
    free(cells);
    return SP_OK;
}

static int sq_begin(struct db_conn *base, struct sp_error *err);
static int sq_commit(struct db_conn *base, struct sp_error *err);
static void sq_rollback(struct db_conn *base);
static int sq_query(struct db_conn *base, const struct db_stmt *st, const struct db_arg *args,
                    int nargs, struct arena *a, struct db_rows *rows, struct db_counts *counts,
                    struct sp_error *err);

/* A write outside a transaction (a lease renewal, a maintenance UPDATE) runs as a transaction of
 * its own on the writer, behind the writer mutex like any other. On the connection's own handle
 * it would take SQLite's write lock beside the writer: under load the writer holds that lock
 * almost without a break (one group after another), so the statement starved in the busy
 * handler until its timeout ("database is locked": lease renewals failed and leases lapsed),
 * and while it did hold the lock, the writer and every thread queued behind it waited. */
static int
write_alone(struct db_conn *base, const struct db_stmt *st, const struct db_arg *args, int nargs,
            struct arena *a, struct db_rows *rows, struct db_counts *counts, struct sp_error *err)
{
    int rc = sq_begin(base, err);

    if (rc != SP_OK)
        return rc;
    rc = sq_query(base, st, args, nargs, a, rows, counts, err);
    if (rc != SP_OK) {
        sq_rollback(base);
        return rc;
    }
    return sq_commit(base, err);
}

static int
sq_query(struct db_conn *base, const struct db_stmt *st, const struct db_arg *args, int nargs,
         struct arena *a, struct db_rows *rows, struct db_counts *counts, struct sp_error *err)
{
    struct sqlite_conn *conn = (struct sqlite_conn *)base;
    struct handle *c = conn->cur;
    sqlite3_stmt *stmt = NULL;
    int64_t returned = 0, total;
    int cached = 0;
    int rc;

    if (st->sqlite == NULL) {
        db__stmt_skipped(rows, counts);
        return SP_OK;
    }
    if (!conn->in_tx && sqlite3_get_autocommit(c->db)) { /* a read snapshot checked at its start */
        rc = file_check(conn->owner, 0, err);
        if (rc != SP_OK)
            return rc;
    }
    arm(c, base);
    rc = prepare(c, st, &stmt, &cached, err);
    if (rc != SP_OK)
        return rc;
    if (!conn->in_tx && sqlite3_get_autocommit(c->db) && !sqlite3_stmt_readonly(stmt)) {
        if (!cached)
            sqlite3_finalize(stmt);
        return write_alone(base, st, args, nargs, a, rows, counts, err);
    }
    /* sqlite3_changes64 keeps the count of the last INSERT, UPDATE or DELETE, whatever ran
     * since: only a statement that changed the handle's total changed rows itself. */
    total = sqlite3_total_changes64(c->db);
    rc = bind_args(c, stmt, args, nargs, err);
    if (rc == SP_OK)
        rc = collect(c, stmt, a, rows, &returned, err);
    atomic_fetch_add(&conn->owner->vm_steps,
                     sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_VM_STEP, 1));
    if (rc == SP_OK && counts) {
        counts->nrows = returned;
        counts->changes = sqlite3_total_changes64(c->db) != total ? sqlite3_changes64(c->db) : 0;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!cached)
        sqlite3_finalize(stmt);
    if (rc != SP_OK && conn->in_tx)
        writer_failed(conn->owner);
    return rc;
}

static int
sq_exec_script(struct db_conn *base, const char *sql, struct sp_error *err)
{
    struct handle *h = ((struct sqlite_conn *)base)->cur;
    int rc;

    arm(h, base);
    rc = sqlite3_exec(h->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SP_OK : map_rc(h->db, rc, err);
}

/* Runs a fixed statement (BEGIN, SAVEPOINT...) through the statement cache. */
static int
exec_fixed(struct handle *h, const struct db_stmt *st, struct sp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int cached = 0;
    int rc = prepare(h, st, &stmt, &cached, err);

    if (rc != SP_OK)
        return rc;
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (!cached)
        sqlite3_finalize(stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SP_OK : map_rc(h->db, rc, err);
}

/* The driver's own statements: SQLite only. */
DB_STMT(SQL_BEGIN, "BEGIN IMMEDIATE", NULL);
DB_STMT(SQL_BEGIN_READ, "BEGIN", NULL);
DB_STMT(SQL_COMMIT, "COMMIT", NULL);
DB_STMT(SQL_ROLLBACK, "ROLLBACK", NULL);
DB_STMT(SQL_SAVEPOINT, "SAVEPOINT sp_tx", NULL);
DB_STMT(SQL_RELEASE, "RELEASE sp_tx", NULL);
DB_STMT(SQL_ROLLBACK_TO, "ROLLBACK TO sp_tx", NULL);
DB_STMT(SQL_PING, "SELECT 1 FROM schema_migrations LIMIT 1", NULL);

/* Commits the open group (write_mu held) and wakes its waiters with the result. */
static int
group_flush(struct db_sqlite *o, struct sp_error *err)
{
    struct sp_error cerr = {0};
    int rc = SP_OK;

    if (o->outer_open) {
        if (sqlite3_get_autocommit(o->writer->db)) {
            /* SQLite rolled the outer transaction back by itself (I/O error, disk full). */
            rc = sp_error_set(&cerr, SP_EUNAVAIL, "database", "sqlite: transaction was lost");
            o->writer_stale = 1;
        } else {
            rc = exec_fixed(o->writer, o->group_n > 0 ? &SQL_COMMIT : &SQL_ROLLBACK, &cerr);
            if (rc != SP_OK)
                writer_failed(o);
            if (rc != SP_OK && !sqlite3_get_autocommit(o->writer->db))
                (void)exec_fixed(o->writer, &SQL_ROLLBACK, NULL); /* best effort: already failing */
        }
        o->outer_open = 0;
    }
    for (struct group_waiter *w = o->waiters; w; w = w->next) {
        w->rc = rc;
        w->err = cerr;
        w->done = 1;
    }
    o->waiters = NULL;
    o->group_n = 0;
    pthread_cond_broadcast(&o->group_cv);
    if (rc != SP_OK && err)
        *err = cerr;
    return rc;
}

/* Ends a logical transaction (write_mu held; released on return). `joined` says whether its
 * changes are part of the group. Returns the group's commit result for joined transactions.
 *
 * A transaction that rolls back while a group is pending waits for that group too: it ran on
 * the writer handle and saw the group's uncommitted rows (a unique index it hit, a row it
 * read), and its caller may act on them at once, e.g. look up on its own handle the lead whose
 * address made a capture a conflict. Returning before the group commits would let that lookup
 * find nothing. */
static int
leave(struct sqlite_conn *c, int joined, struct sp_error *err)
{
    struct db_sqlite *o = c->owner;
    struct group_waiter self = {0};
    int waits = joined || o->group_n > 0;
    int rc = SP_OK;

    c->in_tx = 0;
    c->cur = &c->own;
    if (waits) {
        self.next = o->waiters;
        o->waiters = &self;
    }
    if (joined)
        o->group_n++;
    if (o->group_n > 0 && o->group_n < GROUP_MAX && atomic_load(&o->queued) > 0) {
        /* Someone queued behind us will commit for us (or hand on to the next). A queued
         * thread may give up instead (its deadline passed): whoever finds nobody queued any
         * more commits the group itself. */
        while (waits && !self.done) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += GROUP_POLL_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&o->group_cv, &o->write_mu, &ts);
            if (!self.done && atomic_load(&o->queued) == 0)
                (void)group_flush(o, NULL); /* sets self.rc and self.err */
        }
        if (joined) {
            rc = self.rc;
            if (rc != SP_OK && err)
                *err = self.err;
        }
    } else {
        rc = group_flush(o, err);
        if (!joined)
            rc = SP_OK;
    }
    pthread_mutex_unlock(&o->write_mu);
    return rc;
}

/* Called by SQLite after each commit on the writer with the WAL's size in pages. */
static int
wal_hook(void *ctx, sqlite3 *db, const char *name, int pages)
{
    struct db_sqlite *o = ctx;

    (void)db;
    (void)name;
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&o->ckpt_mu);
        o->ckpt_wanted = 1;
        pthread_cond_signal(&o->ckpt_cv);
        pthread_mutex_unlock(&o->ckpt_mu);
    }
    return SQLITE_OK;
}

static void
checkpoint(struct handle *h)
{
    int rc = sqlite3_wal_checkpoint_v2(h->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log_warn("sqlite checkpoint failed: %s", sqlite3_errmsg(h->db));
}

static void *
checkpointer_main(void *arg)
{
    struct db_sqlite *o = arg;
    struct handle *h = &o->ckpt_handle;

    pthread_mutex_lock(&o->ckpt_mu);
    while (!o->ckpt_stop) {
        if (!o->ckpt_wanted) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += CHECKPOINT_EVERY_MS / 1000;
            pthread_cond_timedwait(&o->ckpt_cv, &o->ckpt_mu, &ts);
        }
        o->ckpt_wanted = 0;
        pthread_mutex_unlock(&o->ckpt_mu);
        if (file_check(o, 1, NULL) == SP_OK)
            checkpoint(h);
        pthread_mutex_lock(&o->ckpt_mu);
    }
    pthread_mutex_unlock(&o->ckpt_mu);
    if (file_check(o, 1, NULL) == SP_OK)
        checkpoint(h);
    handle_close(h);
    return NULL;
}

static int
open_writer(struct db_sqlite *o, struct sp_error *err)
{
    struct handle *w;
    int rc;

    if (o->writer && o->writer_stale && !o->outer_open) {
        log_info("sqlite: reopening the writer connection after: %s",
                 sqlite3_errmsg(o->writer->db));
        handle_close(o->writer);
        free(o->writer);
        o->writer = NULL;
    }
    if (o->writer)
        return SP_OK;
    o->writer_stale = 0;
    w = xcalloc(1, sizeof(*w));
    rc = handle_open(o, 1, w, err);
    if (rc == SP_OK &&
        sqlite3_exec(w->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL) != SQLITE_OK)
        rc = map_rc(w->db, SQLITE_ERROR, err);
    /* Opened read-only (the file was not writable a moment ago): it would stay so for good. */
    if (rc == SP_OK && sqlite3_db_readonly(w->db, "main") == 1)
        rc =
            sp_error_set(err, SP_EUNAVAIL, "database", "sqlite: database %s is read-only", o->path);
    if (rc != SP_OK) {
        handle_close(w);
        free(w);
        return rc;
    }
    /* The checkpointer's handle is opened here, right after the file check of this
     * transaction, not by the thread at some later moment (see the top of the file). */
    if (!o->ckpt_running) {
        struct sp_error cerr = {0};
        if (handle_open(o, 0, &o->ckpt_handle, &cerr) != SP_OK)
            log_warn("sqlite checkpointer: %s", cerr.msg); /* the writer does it (below) */
        else if (pthread_create(&o->ckpt_thread, NULL, checkpointer_main, o) == 0)
            o->ckpt_running = 1;
        else
            handle_close(&o->ckpt_handle);
    }
    if (o->ckpt_running) {
        sqlite3_wal_hook(w->db, wal_hook, o);
    } else {
        log_warn("sqlite: no checkpointer thread; the writer checkpoints by itself");
        sqlite3_exec(w->db, "PRAGMA wal_autocheckpoint=1000", NULL, NULL, NULL);
    }
    o->writer = w;
    return SP_OK;
}

static int
sq_begin(struct db_conn *base, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    struct db_sqlite *o = c->owner;
    int rc;

    rc = file_check(o, 1, err);
    if (rc != SP_OK)
        return rc;
    atomic_fetch_add(&o->queued, 1);
    rc = writer_lock(o, base->deadline_ms, err);
    atomic_fetch_sub(&o->queued, 1);
    if (rc != SP_OK) {
        /* A group may be waiting for us to commit it: its last member will notice. */
        pthread_cond_broadcast(&o->group_cv);
        return rc;
    }
    rc = open_writer(o, err);
    if (rc == SP_OK)
        arm(o->writer, base);
    if (rc == SP_OK && !o->outer_open) {
        rc = exec_fixed(o->writer, &SQL_BEGIN, err);
        o->outer_open = rc == SP_OK;
    }
    if (rc == SP_OK)
        rc = exec_fixed(o->writer, &SQL_SAVEPOINT, err);
    if (rc != SP_OK) {
        writer_failed(o);
        (void)leave(c, 0, NULL); /* flushes a pending group if we were its last hope */
        return rc;
    }
    c->cur = o->writer;
    c->in_tx = 1;
    return SP_OK;
}

static int
sq_commit(struct db_conn *base, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int rc;

    if (!c->in_tx)
        return sp_error_set(err, SP_EINTERNAL, "database", "commit outside a transaction");
    arm(c->owner->writer, base);
    rc = exec_fixed(c->owner->writer, &SQL_RELEASE, err);
    if (rc != SP_OK) {
        writer_failed(c->owner);
        if (!sqlite3_get_autocommit(c->owner->writer->db)) {
            (void)exec_fixed(c->owner->writer, &SQL_ROLLBACK_TO, NULL); /* already failing */
            (void)exec_fixed(c->owner->writer, &SQL_RELEASE, NULL);
        }
        (void)leave(c, 0, NULL);
        return rc;
    }
    return leave(c, 1, err);
}

static void
sq_rollback(struct db_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    struct handle *w = c->owner->writer;

    if (!c->in_tx)
        return;
    if (!sqlite3_get_autocommit(w->db) && (exec_fixed(w, &SQL_ROLLBACK_TO, NULL) != SP_OK ||
                                           exec_fixed(w, &SQL_RELEASE, NULL) != SP_OK))
        log_error("sqlite rollback failed: %s", sqlite3_errmsg(w->db));
    (void)leave(c, 0, NULL);
}

/* A deferred transaction on the connection's own handle: the first read takes the snapshot,
 * and no writer is blocked by it (WAL). */
static int
sq_begin_read(struct db_conn *base, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    int rc;

    if (c->in_tx)
        return sp_error_set(err, SP_EINTERNAL, "database", "read snapshot inside a transaction");
    rc = file_check(c->owner, 0, err);
    if (rc != SP_OK)
        return rc;
    arm(&c->own, base);
    return exec_fixed(&c->own, &SQL_BEGIN_READ, err);
}

static void
sq_end_read(struct db_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    if (!sqlite3_get_autocommit(c->own.db) && exec_fixed(&c->own, &SQL_ROLLBACK, NULL) != SP_OK)
        log_error("sqlite: ending a read snapshot failed: %s", sqlite3_errmsg(c->own.db));
}

/* Readiness: the pinned file is there and writable, and answers. */
static int
sq_ping(struct db_conn *base, struct sp_error *err)
{
    int rc = file_check(((struct sqlite_conn *)base)->owner, 1, err);
    return rc == SP_OK ? sq_query(base, &SQL_PING, NULL, 0, NULL, NULL, NULL, err) : rc;
}

static void
handle_close(struct handle *h)
{
    for (int i = 0; i < DB_STMT_SLOTS; i++) {
        sqlite3_finalize(h->stmts[i]); /* NULL-safe */
        h->stmts[i] = NULL;
    }
    sqlite3_close_v2(h->db);
    h->db = NULL;
}

static void
sq_close(struct db_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    if (c == NULL)
        return;
    if (c->in_tx)
        sq_rollback(base);
    handle_close(&c->own);
    free(c);
}

static const struct db_conn_ops sqlite_ops = {
    .name = "sqlite",
    .query = sq_query,
    .exec_script = sq_exec_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .begin_read = sq_begin_read,
    .end_read = sq_end_read,
    .ping = sq_ping,
    .close = sq_close,
};

int
db_sqlite_new(const char *path, struct db_sqlite **out, struct sp_error *err)
{
    struct db_sqlite *s;

    if (path == NULL || path[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "DATABASE_URL", "sqlite path is empty");
    s = xcalloc(1, sizeof(*s));
    s->path = xstrdup(path);
    s->busy_timeout_ms = BUSY_TIMEOUT_MS;
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_cond_init(&s->group_cv, NULL);
    pthread_mutex_init(&s->ckpt_mu, NULL);
    pthread_cond_init(&s->ckpt_cv, NULL);
    *out = s;
    return SP_OK;
}

int
db_sqlite_writers_queued(struct db_sqlite *s)
{
    return atomic_load(&s->queued);
}

int64_t
db_sqlite_vm_steps(struct db_sqlite *s)
{
    return atomic_load(&s->vm_steps);
}

void
db_sqlite_set_busy_timeout(struct db_sqlite *s, int ms)
{
    s->busy_timeout_ms = ms > 0 ? ms : 1;
}

void
db_sqlite_free(struct db_sqlite *s)
{
    if (s == NULL)
        return;
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_stop = 1;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
        pthread_join(s->ckpt_thread, NULL);
    }
    if (s->writer) {
        handle_close(s->writer);
        free(s->writer);
    }
    pthread_cond_destroy(&s->ckpt_cv);
    pthread_mutex_destroy(&s->ckpt_mu);
    pthread_cond_destroy(&s->group_cv);
    pthread_mutex_destroy(&s->write_mu);
    free(s->path);
    free(s);
}

/* SQLite counts the memory it holds (SQLITE_CONFIG_MEMSTATUS, on by default) under one mutex
 * for the whole process, taken on every allocation: with a reader per request thread, a search
 * that copies values (GET /leads?q=) spent more time waking threads queued on that mutex than in
 * SQLite (perf, 8 connections). Nothing here reads those counts. The setting must come before
 * SQLite initialises; if something in the process already has, it stays on (SQLITE_MISUSE). */
static void
memstatus_off(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int
handle_open(struct db_sqlite *o, int writer, struct handle *h, struct sp_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const char *path = o->path;
    static const char setup[] = "PRAGMA journal_mode=WAL;"
                                "PRAGMA synchronous=NORMAL;"
                                "PRAGMA foreign_keys=ON;"
                                "PRAGMA temp_store=MEMORY;";
    /* Only the first connection may create the file (see the top of the file). */
    int flags = SQLITE_OPEN_READWRITE | (o->pinned ? 0 : SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX;
    int rc;

    (void)pthread_once(&once, memstatus_off);
    memset(h, 0, sizeof(*h));
    h->busy_ms = o->busy_timeout_ms;
    rc = file_check(o, 0, err);
    if (rc != SP_OK)
        return rc;
    rc = sqlite3_open_v2(path, &h->db, flags, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_handler(h->db, busy_wait, h);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->db, setup, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->db, writer ? "PRAGMA cache_size=-2048" : "PRAGMA cache_size=-256",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sp_error_set(err, SP_EUNAVAIL, "DATABASE_URL", "cannot open sqlite database %s: %s",
                          path, h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc));
        sqlite3_close_v2(h->db);
        h->db = NULL;
        return rc;
    }
    return SP_OK;
}

int
db_sqlite_connect(void *ctx, struct db_conn **out, struct sp_error *err)
{
    struct db_sqlite *s = ctx;
    struct sqlite_conn *c = xcalloc(1, sizeof(*c));
    int rc;

    c->base.ops = &sqlite_ops;
    c->owner = s;
    c->cur = &c->own;
    rc = handle_open(s, 0, &c->own, err);
    if (rc != SP_OK) {
        free(c);
        return rc;
    }
    file_pin(s);
    *out = &c->base;
    return SP_OK;
}
