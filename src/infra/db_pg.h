/* db_pg.h: the PostgreSQL driver (libpq) behind the database port.
 *
 * One PGconn per struct db_conn (a pool slot: one per HTTP or worker thread). Statements are
 * prepared once per connection, under their descriptor's slot (db.h); every value is
 * a parameter. Sessions run in UTC with a statement timeout and, once set, a lock timeout. A lost
 * connection makes the calls fail with SP_EUNAVAIL and is re-established on a later call (at most
 * every RECONNECT_MS), so the service recovers from a database outage without a restart. */
#pragma once

#include "core/err.h"

struct db_conn;
struct db_pg;

/* `url` is a libpq connection URI (postgres://user@host:port/db?...). Caller frees with
 * db_pg_free() after every connection is closed. */
int db_pg_new(const char *url, struct db_pg **out, struct sp_error *err) SP_MUST_CHECK;
void db_pg_free(struct db_pg *p);
/* PostgreSQL's lock_timeout for the connections opened after the call (0: none): a statement
 * waiting that long for a lock held by another session fails with SP_EUNAVAIL. The statement
 * timeout (5 s) is raised to it if lower. */
void db_pg_set_lock_timeout(struct db_pg *p, int ms);
/* db_connect_fn for struct db_pg. Fails with SP_EUNAVAIL when the server cannot be reached. */
int db_pg_connect(void *pg, struct db_conn **out, struct sp_error *err) SP_MUST_CHECK;
