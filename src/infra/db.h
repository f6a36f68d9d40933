/* db.h: the database port (driver vtable), typed query arguments, result rows, and a
 * connection pool.
 *
 * A struct db_conn is one connection, used by one thread at a time. Queries take their values
 * as parameters (never SQL built from strings); placeholders are written $1, $2, ... in every
 * dialect. Results are copied into the caller's arena as text (NULL for SQL NULL), so no driver
 * object escapes the driver. Drivers map their failures to SP_E* codes: SP_EUNAVAIL for a
 * database that cannot be reached or is busy, SP_ECONFLICT for a constraint violation,
 * SP_EINTERNAL otherwise. */
#pragma once

#include "core/err.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct arena;

/* DB_ARG_TIME is a point in time in ms since the epoch: an integer column in SQLite, a
 * timestamptz in PostgreSQL. Such columns read back as integer ms in every dialect. */
enum db_arg_type { DB_ARG_NULL = 0, DB_ARG_TEXT, DB_ARG_INT, DB_ARG_TIME };

/* The SQL dialect of a connection, for the few statements that must differ (row locking). */
enum db_dialect { DB_DIALECT_SQLITE = 0, DB_DIALECT_POSTGRES };

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

struct db_conn;

struct db_conn_ops {
    const char *name; /* "sqlite", "postgres" */
    enum db_dialect dialect;
    /* Runs one statement. `rows` (may be NULL) receives its result in arena `a`; `changes` (may
     * be NULL) the number of rows it inserted, updated or deleted, or, for a SELECT, returned. */
    int (*query)(struct db_conn *c, const char *sql, const struct db_arg *args, int nargs,
                 struct arena *a, struct db_rows *rows, int64_t *changes, struct sp_error *err);
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
    /* A cheap round trip proving the database answers. */
    int (*ping)(struct db_conn *c, struct sp_error *err);
    void (*close)(struct db_conn *c);
};

/* Drivers embed this first. */
struct db_conn {
    const struct db_conn_ops *ops;
};

static inline int SP_MUST_CHECK
db_query(struct db_conn *c, const char *sql, const struct db_arg *args, int nargs, struct arena *a,
         struct db_rows *rows, struct sp_error *err)
{
    return c->ops->query(c, sql, args, nargs, a, rows, NULL, err);
}

static inline int SP_MUST_CHECK
db_exec(struct db_conn *c, const char *sql, const struct db_arg *args, int nargs, int64_t *changes,
        struct sp_error *err)
{
    return c->ops->query(c, sql, args, nargs, NULL, NULL, changes, err);
}

static inline int SP_MUST_CHECK
db_begin(struct db_conn *c, struct sp_error *err)
{
    return c->ops->begin(c, err);
}

static inline int SP_MUST_CHECK
db_commit(struct db_conn *c, struct sp_error *err)
{
    return c->ops->commit(c, err);
}

static inline void
db_rollback(struct db_conn *c)
{
    c->ops->rollback(c);
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
 * Fails (SP_EUNAVAIL) only when that opening fails. */
int db_pool_acquire(struct db_pool *p, struct db_conn **out, struct sp_error *err) SP_MUST_CHECK;
/* Gives a connection back. */
void db_pool_release(struct db_pool *p, struct db_conn *c);
/* Closes every connection; all must have been released. NULL-safe. */
void db_pool_free(struct db_pool *p);
