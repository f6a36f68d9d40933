/* migrate.c: applies embedded migrations once each, in name order, in one write transaction. */
#include "infra/migrate.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "infra/db.h"

#include <string.h>

DB_STMT_SAME(SQL_CREATE, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version TEXT PRIMARY KEY,"
                         " applied_at BIGINT NOT NULL)");
/* Several processes starting at once: one migrates, the others wait, then see it done. SQLite
 * needs no statement: its write transactions already exclude each other. */
DB_STMT(SQL_LOCK, NULL, "SELECT pg_advisory_xact_lock(7346517)");
DB_STMT_SAME(SQL_APPLIED, "SELECT version FROM schema_migrations");
DB_STMT_SAME(SQL_RECORD, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)");

static int
is_applied(const struct db_rows *rows, const char *name)
{
    for (int r = 0; r < rows->nrows; r++)
        if (strcmp(db_cell(rows, r, 0), name) == 0)
            return 1;
    return 0;
}

int
db_migrate(struct db_conn *c, const struct migration *list, int n, int *applied,
           struct sp_error *err)
{
    struct arena *a = arena_new();
    struct db_rows rows = {0};
    int count = 0;
    int rc;

    rc = db_begin(c, err);
    if (rc != SP_OK)
        goto out;
    rc = db_exec(c, &SQL_LOCK, DB_NOARGS, NULL, err);
    if (rc == SP_OK)
        rc = db_exec(c, &SQL_CREATE, DB_NOARGS, NULL, err);
    if (rc == SP_OK)
        rc = db_query(c, &SQL_APPLIED, DB_NOARGS, a, &rows, err);
    for (int i = 0; rc == SP_OK && i < n; i++) {
        if (is_applied(&rows, list[i].name))
            continue;
        rc = c->ops->exec_script(c, list[i].sql, err);
        if (rc == SP_OK)
            rc = db_exec(c, &SQL_RECORD,
                         DB_ARGS(db_text(list[i].name), db_int(sp_clock_now_ms(&sp_clock_real))),
                         NULL, err);
        if (rc == SP_OK) {
            log_info("migration applied: %s", list[i].name);
            count++;
        }
    }
    if (rc == SP_OK)
        rc = db_commit(c, err);
    else
        db_rollback(c);
out:
    if (applied)
        *applied = count;
    arena_free(a);
    return rc;
}
