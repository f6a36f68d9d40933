/* db_sqlite.h: the SQLite driver (embedded default).
 *
 * WAL mode, synchronous=NORMAL, foreign keys on, a busy timeout for other processes, and
 * prepared statements cached per connection. Writers inside one process serialise on a mutex
 * shared by all connections opened from the same struct db_sqlite, so they never spin on
 * SQLITE_BUSY; other processes wait through the busy timeout. */
#pragma once

#include "core/err.h"

#include <stdint.h>

struct db_conn;
struct db_sqlite;

/* `path` is a file name or ":memory:" (each connection then has its own database). Caller frees
 * with db_sqlite_free() after every connection is closed. */
int db_sqlite_new(const char *path, struct db_sqlite **out, struct sp_error *err) SP_MUST_CHECK;
void db_sqlite_free(struct db_sqlite *s);
/* The longest a statement waits for a lock held elsewhere when its connection has no deadline
 * (db_conn deadline_ms), and the longest any wait lasts then. Default 5000 ms. Call before
 * connections are opened (it applies to those opened after). */
void db_sqlite_set_busy_timeout(struct db_sqlite *s, int ms);
/* Threads of this process waiting for the writer right now (for tests that stage a group). */
int db_sqlite_writers_queued(struct db_sqlite *s);
/* SQLite virtual-machine steps of every statement run so far through this database's
 * connections: a deterministic measure of a query's work, for tests of its cost. */
int64_t db_sqlite_vm_steps(struct db_sqlite *s);
/* db_connect_fn for struct db_sqlite. */
int db_sqlite_connect(void *sqlite, struct db_conn **out, struct sp_error *err) SP_MUST_CHECK;
