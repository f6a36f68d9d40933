/* db_pg.h: the PostgreSQL driver (libpq) behind the database port.
 *
 * One PGconn per struct db_conn (a pool slot: one per HTTP or worker thread). Statements are
 * prepared once per connection, under their descriptor's slot (db.h); every value is
 * a parameter. Sessions run in UTC with a statement timeout. A transaction begun on a
 * connection with a deadline (db_conn deadline_ms) gets the time left as its lock_timeout: a lock
 * held by another session past it fails the statement with SP_EUNAVAIL. A lost
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

/* db_connect_fn for struct db_pg. Fails with SP_EUNAVAIL when the server cannot be reached. */
int db_pg_connect(void *pg, struct db_conn **out, struct sp_error *err) SP_MUST_CHECK;

/* LISTEN/NOTIFY on a connection of this driver that one thread uses for nothing else (LISTEN and
 * NOTIFY themselves go through the port's exec_script):
 * - db_pg_session_id: the server process of the session, 0 while the connection is lost. A
 *   statement re-establishes a lost connection, and LISTENs belong to the session: when the id
 *   changes, they must be issued again.
 * - db_pg_socket: the socket to wait on (readable: something arrived), -1 while lost.
 * - db_pg_notifications: reads what arrived without blocking; *count receives the number of
 *   notifications sent by other sessions. SP_EUNAVAIL when the connection is lost. */
int db_pg_session_id(struct db_conn *c);
int db_pg_socket(struct db_conn *c);
int db_pg_notifications(struct db_conn *c, int *count, struct sp_error *err) SP_MUST_CHECK;
