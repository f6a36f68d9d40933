/* db_sqlite.c: the SQLite driver behind the database port.
 *
 * Each connection caches its prepared statements, keyed by the address of the (static) SQL
 * text. Write transactions take the process-wide writer mutex, then BEGIN IMMEDIATE, so threads
 * of one process queue on the mutex instead of sleeping in SQLite's busy handler. */
#include "infra/db_sqlite.h"

#include "core/arena.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "infra/db.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE_MAX 64
#define BUSY_TIMEOUT_MS 5000
#define ROWS_MAX 100000

struct db_sqlite {
    char *path;
    pthread_mutex_t write_mu;
};

struct stmt_entry {
    const char *sql;
    sqlite3_stmt *stmt;
};

struct sqlite_conn {
    struct db_conn base; /* first */
    struct db_sqlite *owner;
    sqlite3 *db;
    int in_tx;
    int nstmts;
    struct stmt_entry stmts[STMT_CACHE_MAX];
};

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

static int
prepare(struct sqlite_conn *c, const char *sql, sqlite3_stmt **out, struct sp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    for (int i = 0; i < c->nstmts; i++) {
        if (c->stmts[i].sql == sql) {
            *out = c->stmts[i].stmt;
            return SP_OK;
        }
    }
    rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK)
        return map_rc(c->db, rc, err);
    if (c->nstmts < STMT_CACHE_MAX) {
        c->stmts[c->nstmts].sql = sql;
        c->stmts[c->nstmts].stmt = stmt;
        c->nstmts++;
    } else {
        /* Cache full: should not happen with the project's fixed statement set. */
        log_warn("sqlite statement cache full; statement not cached");
    }
    *out = stmt;
    return SP_OK;
}

static int
is_cached(const struct sqlite_conn *c, const sqlite3_stmt *stmt)
{
    for (int i = 0; i < c->nstmts; i++)
        if (c->stmts[i].stmt == stmt)
            return 1;
    return 0;
}

static int
bind_args(struct sqlite_conn *c, sqlite3_stmt *stmt, const struct db_arg *args, int nargs,
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
collect(struct sqlite_conn *c, sqlite3_stmt *stmt, struct arena *a, struct db_rows *rows,
        struct sp_error *err)
{
    int ncols = sqlite3_column_count(stmt);
    size_t cap = 0, n = 0;
    char **cells = NULL;
    int rc;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
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
            cells[n++] = txt ? arena_strndup(a, (const char *)txt,
                                             (size_t)sqlite3_column_bytes(stmt, col))
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

static int
sq_query(struct db_conn *base, const char *sql, const struct db_arg *args, int nargs,
         struct arena *a, struct db_rows *rows, int64_t *changes, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    sqlite3_stmt *stmt = NULL;
    int rc;

    rc = prepare(c, sql, &stmt, err);
    if (rc != SP_OK)
        return rc;
    rc = bind_args(c, stmt, args, nargs, err);
    if (rc == SP_OK)
        rc = collect(c, stmt, a, rows, err);
    if (rc == SP_OK && changes)
        *changes = sqlite3_changes64(c->db);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!is_cached(c, stmt))
        sqlite3_finalize(stmt);
    return rc;
}

static int
sq_exec_script(struct db_conn *base, const char *sql, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SP_OK : map_rc(c->db, rc, err);
}

static int
sq_begin(struct db_conn *base, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int rc;

    pthread_mutex_lock(&c->owner->write_mu);
    rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        pthread_mutex_unlock(&c->owner->write_mu);
        return map_rc(c->db, rc, err);
    }
    c->in_tx = 1;
    return SP_OK;
}

static void
end_tx(struct sqlite_conn *c)
{
    if (c->in_tx) {
        c->in_tx = 0;
        pthread_mutex_unlock(&c->owner->write_mu);
    }
}

static int
sq_commit(struct db_conn *base, struct sp_error *err)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;
    int rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        rc = map_rc(c->db, rc, err);
        if (!sqlite3_get_autocommit(c->db))
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        end_tx(c);
        return rc;
    }
    end_tx(c);
    return SP_OK;
}

static void
sq_rollback(struct db_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    if (!sqlite3_get_autocommit(c->db) &&
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
        log_error("sqlite rollback failed: %s", sqlite3_errmsg(c->db));
    end_tx(c);
}

static int
sq_ping(struct db_conn *base, struct sp_error *err)
{
    static const char sql[] = "SELECT 1 FROM schema_migrations LIMIT 1";
    return sq_query(base, sql, NULL, 0, NULL, NULL, NULL, err);
}

static void
sq_close(struct db_conn *base)
{
    struct sqlite_conn *c = (struct sqlite_conn *)base;

    if (c == NULL)
        return;
    end_tx(c);
    for (int i = 0; i < c->nstmts; i++)
        sqlite3_finalize(c->stmts[i].stmt);
    sqlite3_close_v2(c->db);
    free(c);
}

static const struct db_conn_ops sqlite_ops = {
    "sqlite", sq_query, sq_exec_script, sq_begin, sq_commit, sq_rollback, sq_ping, sq_close,
};

int
db_sqlite_new(const char *path, struct db_sqlite **out, struct sp_error *err)
{
    struct db_sqlite *s;

    if (path == NULL || path[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "DATABASE_URL", "sqlite path is empty");
    s = xcalloc(1, sizeof(*s));
    s->path = xstrdup(path);
    pthread_mutex_init(&s->write_mu, NULL);
    *out = s;
    return SP_OK;
}

void
db_sqlite_free(struct db_sqlite *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->write_mu);
    free(s->path);
    free(s);
}

int
db_sqlite_connect(void *ctx, struct db_conn **out, struct sp_error *err)
{
    static const char setup[] = "PRAGMA journal_mode=WAL;"
                                "PRAGMA synchronous=NORMAL;"
                                "PRAGMA foreign_keys=ON;";
    struct db_sqlite *s = ctx;
    struct sqlite_conn *c = xcalloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc;

    c->base.ops = &sqlite_ops;
    c->owner = s;
    rc = sqlite3_open_v2(s->path, &c->db, flags, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, setup, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sp_error_set(err, SP_EUNAVAIL, "DATABASE_URL", "cannot open sqlite database %s: %s",
                          s->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close_v2(c->db);
        free(c);
        return rc;
    }
    *out = &c->base;
    return SP_OK;
}
