/* migrate.h: numbered schema migrations, applied in order and recorded in schema_migrations.
 *
 * The .sql files under migrations/<dialect>/ are compiled into the binary (cmake/embed_sql.cmake);
 * each is applied at most once, inside one write transaction together with its record, so
 * several processes starting at once apply each migration exactly once. */
#pragma once

#include "core/err.h"

struct db_conn;

struct migration {
    const char *name; /* file name without .sql, e.g. "0001_init" */
    const char *sql;
};

extern const struct migration sp_migrations_sqlite[];
extern const int sp_migrations_sqlite_count;
extern const struct migration sp_migrations_postgres[];
extern const int sp_migrations_postgres_count;

/* Applies the missing migrations; *applied (may be NULL) receives how many were applied. */
int db_migrate(struct db_conn *c, const struct migration *list, int n, int *applied,
               struct sp_error *err) SP_MUST_CHECK;
