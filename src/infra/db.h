/* db.h: the database port (driver vtable), statement descriptors, typed query arguments,
 * result rows, and a connection pool.
 *
 * A struct db_conn is one connection, used by one thread at a time. Every statement is a static
 * descriptor (DB_STMT) holding its text for each dialect; the driver picks its own dialect's text
 * and caches the prepared statement under the descriptor's slot, so callers never test which
 * database they talk to. Queries take their values as parameters (never SQL built from strings);
 * placeholders are written $1, $2, ... in every dialect. Results are copied into the caller's
 * arena as text (NULL for SQL NULL), so no driver object escapes the driver. Drivers map their
 * failures to SP_E* codes: SP_EUNAVAIL for a database that cannot be reached or is busy,
 * SP_ECONFLICT for a constraint violation, SP_EINTERNAL otherwise. */
#pragma once

#include "core/err.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct arena;

/* DB_ARG_TIME is a point in time in ms since the epoch: an integer column in SQLite, a
 * timestamptz in PostgreSQL. Such columns read back as integer ms in every dialect. */
enum db_arg_type { DB_ARG_NULL = 0, DB_ARG_TEXT, DB_ARG_INT, DB_ARG_TIME };

/* One statement, in the text of each dialect. Declare it once, with DB_STMT or DB_STMT_SAME, as
 * a static object (file or block scope): its address and slot live as long as the process.
 *
 * A NULL text means the statement has nothing to do in that dialect (a lock SQLite needs no
 * statement for: its write transactions already exclude each other): running it succeeds at
 * once with no rows and no changes.
 *
 * Statement cache: each descriptor gets a small index, its slot, the first time any connection
 * runs it (db_stmt_slot), from one process-wide counter under a mutex; it never changes after
 * that. Each connection keeps its prepared statements in an array indexed by slot, so finding
 * one is an array access and a statement is prepared once per connection. The table is bounded
 * (DB_STMT_SLOTS): the project declares a fixed set of statements well below it, and a
 * descriptor arriving after the last slot is taken still runs, prepared for each call. */
struct db_stmt {
    const char *name;     /* the declared identifier, for messages */
    const char *sqlite;   /* or NULL: nothing to do on SQLite */
    const char *postgres; /* or NULL: nothing to do on PostgreSQL */
    atomic_int *slot;     /* 0: not assigned yet; n > 0: slot n - 1; -1: none left. NULL: never
                           * cached (a descriptor built at run time) */
};

/* Declares `id` as a static const struct db_stmt (and its slot, beside it). */
#define DB_STMT(id, sqlite_text, pg_text)                                                          \
    static atomic_int id##_slot_;                                                                  \
    static const struct db_stmt id = {#id, sqlite_text, pg_text, &id##_slot_}
/* A statement written the same in every dialect. */
#define DB_STMT_SAME(id, text) DB_STMT(id, text, text)

/* Slots in the process-wide statement table. */
#define DB_STMT_SLOTS 128

/* The descriptor's cache slot, 0..DB_STMT_SLOTS-1, assigned on first call; -1 when it has none
 * (the table is full, or st->slot is NULL): the caller then prepares it for one call. Thread-safe;
 * the fast path is one atomic load. */
int db_stmt_slot(const struct db_stmt *st);

struct db_arg {
    enum db_arg_type type;
    const char *s; /* DB_ARG_TEXT: NUL-terminated, borrowed for the call */
    int64_t i;     /* DB_ARG_INT */
};

static inline struct db_arg
db_text(const char *s)
{
    struct db_arg a = {s ? DB_ARG_TEXT : DB_ARG_NULL, s, 0};
    return a;
}

static inline struct db_arg
db_int(int64_t i)
{
    struct db_arg a = {DB_ARG_INT, NULL, i};
    return a;
}

/* An int argument that is SQL NULL when `is_null`. */
static inline struct db_arg
db_int_or_null(int64_t i, int is_null)
{
    struct db_arg a = {is_null ? DB_ARG_NULL : DB_ARG_INT, NULL, i};
    return a;
}

static inline struct db_arg
db_time(int64_t ms)
{
    struct db_arg a = {DB_ARG_TIME, NULL, ms};
    return a;
}

/* A time that is SQL NULL when 0. */
static inline struct db_arg
db_time_or_null(int64_t ms)
{
    struct db_arg a = {ms ? DB_ARG_TIME : DB_ARG_NULL, NULL, ms};
    return a;
}

#define DB_ARGS(...)                                                                               \
    ((const struct db_arg[]){__VA_ARGS__}),                                                        \
        (int)(sizeof((const struct db_arg[]){__VA_ARGS__}) / sizeof(struct db_arg))
#define DB_NOARGS NULL, 0

/* Rows of text cells in an arena: cell (r, c) is cells[r * ncols + c], NULL for SQL NULL. */
struct db_rows {
    int nrows;
    int ncols;
    char **cells;
};

static inline const char *
db_cell(const struct db_rows *rows, int r, int c)
{
    return rows->cells[r * rows->ncols + c];
}
/* The cell as an integer; 0 for NULL. */
int64_t db_cell_int(const struct db_rows *rows, int r, int c);

/* What a statement did, beyond its rows. */
struct db_counts {
    int64_t changes; /* rows it inserted, updated or deleted (0 for a SELECT) */
    int64_t nrows;   /* rows it returned */
};

/* For drivers: the outcome of a statement with no text in their dialect (nothing ran). */
static inline void
db__stmt_skipped(struct db_rows *rows, struct db_counts *counts)
{
    if (rows) {
        rows->nrows = 0;
        rows->ncols = 0;
        rows->cells = NULL;
    }
    if (counts) {
        counts->changes = 0;
        counts->nrows = 0;
    }
}

struct db_conn;

struct db_conn_ops {
    const char *name; /* "sqlite", "postgres" */
    /* 1 when many rows in one statement cost the server much less than a statement each (a
     * PostgreSQL statement's start, its messages and its executor, outweighs a small write):
     * callers may then gather small writes (sql_lead_batch.h). 0 for SQLite, where a statement
     * is a function call and gathering rows into one only adds the work of packing them. */
    int gathers_writes;
    /* Runs one statement, in the connection's dialect. `rows` (may be NULL) receives its result
     * in arena `a`; `counts` (may be NULL) what it did. With neither, nothing is waited for: a
     * driver may send the statement and report its failure at the next call of the same
     * transaction (db_pg.c). */
    int (*query)(struct db_conn *c, const struct db_stmt *st, const struct db_arg *args, int nargs,
                 struct arena *a, struct db_rows *rows, struct db_counts *counts,
                 struct sp_error *err);
    /* Runs several ';'-separated statements without parameters (migrations). */
    int (*exec_script)(struct db_conn *c, const char *sql, struct sp_error *err);
    /* A write transaction: taken so that concurrent writers serialise instead of failing. */
    int (*begin)(struct db_conn *c, struct sp_error *err);
    int (*commit)(struct db_conn *c, struct sp_error *err);
    /* Always leaves the connection outside any transaction. */
    void (*rollback)(struct db_conn *c);
    /* A read-only snapshot: the reads until end_read see one consistent state. Must not be
     * nested in a write transaction. */
    int (*begin_read)(struct db_conn *c, struct sp_error *err);
    void (*end_read)(struct db_conn *c);
    /* A cheap round trip proving the database answers and takes writes (readiness). */
    int (*ping)(struct db_conn *c, struct sp_error *err);
    void (*close)(struct db_conn *c);
};

/* Drivers embed this first. */
struct db_conn {
    const struct db_conn_ops *ops;
    /* Public, set by the connection's user (db_conn_deadline_set): the sp_mono_ms() time after
     * which no statement of this connection waits any longer for a lock held by someone else
     * (another writer, another process, another session): it fails with SP_EUNAVAIL instead.
     * One budget for all the statements and retries of a unit of work (a request, a worker
     * round), so their waits add up to at most the budget. 0: no deadline, each wait is bounded
     * by the driver's busy timeout alone. db_pool_acquire resets it to 0. */
    int64_t deadline_ms;
    /* Private to db.c: how many db_begin are open (see db_begin). */
    int depth;
    /* Private to db.c: db_conn_announce's flag and the pool's commit hook. */
    int announce;
    void (*on_commit)(void *ctx);
    void *on_commit_ctx;
};

/* Says that the current unit of work wrote something other readers wait for (timeline events:
 * GET /events): once its outermost commit succeeds, the pool's commit hook runs
 * (db_pool_on_commit); a rollback forgets it. Outside a unit of work (autocommit) the hook
 * runs at once. */
void db_conn_announce(struct db_conn *c);

/* Gives the connection's lock waits, from now on, `budget_ms` in total (see deadline_ms). */
void db_conn_deadline_set(struct db_conn *c, int64_t budget_ms);

/* Runs `st` and copies the rows it returns into arena `a` (rows->nrows: how many). */
static inline int SP_MUST_CHECK
db_query(struct db_conn *c, const struct db_stmt *st, const struct db_arg *args, int nargs,
         struct arena *a, struct db_rows *rows, struct sp_error *err)
{
    return c->ops->query(c, st, args, nargs, a, rows, NULL, err);
}

/* Runs `st` for its effect; *changes (may be NULL: then the driver may defer the statement)
 * receives the number of rows it inserted, updated or deleted. */
static inline int SP_MUST_CHECK
db_exec(struct db_conn *c, const struct db_stmt *st, const struct db_arg *args, int nargs,
        int64_t *changes, struct sp_error *err)
{
    struct db_counts counts = {0, 0};
    int rc = c->ops->query(c, st, args, nargs, NULL, NULL, changes ? &counts : NULL, err);

    if (changes)
        *changes = counts.changes;
    return rc;
}

/* Runs `st` and counts the rows it returns without copying them (no arena): an existence check
 * or a row lock (SELECT ... FOR UPDATE). */
static inline int SP_MUST_CHECK
db_query_count(struct db_conn *c, const struct db_stmt *st, const struct db_arg *args, int nargs,
               int64_t *nrows, struct sp_error *err)
{
    struct db_counts counts = {0, 0};
    int rc = c->ops->query(c, st, args, nargs, NULL, NULL, &counts, err);

    *nrows = counts.nrows;
    return rc;
}

/* A write transaction (the driver's begin). Units of work nest: a db_begin inside an open one
 * is a savepoint, its db_commit releases it and its db_rollback undoes what it wrote and
 * leaves the outer transaction open; only the outermost commit commits. So a caller may wrap
 * a use case's unit of work in a transaction of its own (an idempotent request stores its key
 * with the effect: app/idempotency.c). */
int db_begin(struct db_conn *c, struct sp_error *err) SP_MUST_CHECK;
int db_commit(struct db_conn *c, struct sp_error *err) SP_MUST_CHECK;
/* Ends the innermost unit of work without its writes. */
void db_rollback(struct db_conn *c);
/* 1 while a write transaction is open on c. */
static inline int
db_in_tx(const struct db_conn *c)
{
    return c->depth > 0;
}

static inline int
db_gathers_writes(const struct db_conn *c)
{
    return c->ops->gathers_writes;
}

/* How many units of work are open on c (0: none; 2: a savepoint in a transaction). */
static inline int
db_tx_depth(const struct db_conn *c)
{
    return c->depth;
}

static inline int SP_MUST_CHECK
db_begin_read(struct db_conn *c, struct sp_error *err)
{
    return c->ops->begin_read(c, err);
}

static inline void
db_end_read(struct db_conn *c)
{
    c->ops->end_read(c);
}

static inline int SP_MUST_CHECK
db_ping(struct db_conn *c, struct sp_error *err)
{
    return c->ops->ping(c, err);
}

static inline void
db_close(struct db_conn *c)
{
    if (c)
        c->ops->close(c);
}

/* Opens one connection; drivers provide one of these. */
typedef int (*db_connect_fn)(void *ctx, struct db_conn **out, struct sp_error *err);

/* A fixed set of connections shared by threads. */
struct db_pool;

/* A pool of up to `size` connections made with `connect`: the first is opened now (so a bad
 * URL or an unreachable database is reported at start), the others when first needed (start-up
 * stays fast however large the pool). Caller frees with db_pool_free(). */
int db_pool_new(db_connect_fn connect, void *ctx, int size, struct db_pool **out,
                struct sp_error *err) SP_MUST_CHECK;
/* Takes a free connection, waiting for one if all are busy, opening it if it was never opened.
 * Fails (SP_EUNAVAIL) only when that opening fails. The connection's deadline_ms is 0. */
int db_pool_acquire(struct db_pool *p, struct db_conn **out, struct sp_error *err) SP_MUST_CHECK;
/* Gives a connection back. */
void db_pool_release(struct db_pool *p, struct db_conn *c);
/* Sets the hook run after each announced commit (db_conn_announce) of the pool's connections, on
 * the committing thread: it must be quick and must not use the database. Set it before the
 * pool is shared between threads (it is read without a lock); NULL removes it. */
void db_pool_on_commit(struct db_pool *p, void (*fn)(void *ctx), void *ctx);
/* Closes every connection; all must have been released. NULL-safe. */
void db_pool_free(struct db_pool *p);

/* A pool's occupation at one moment (metrics). */
struct db_pool_stats {
    int size;    /* connections it may hold */
    int open;    /* connections opened so far */
    int in_use;  /* taken and not given back */
    int waiting; /* threads waiting in db_pool_acquire for one */
};

/* Thread-safe. */
void db_pool_stats(struct db_pool *p, struct db_pool_stats *out);
