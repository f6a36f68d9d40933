/* test_db_sqlite_group.c: group commit in the SQLite driver (db_sqlite.c). A transaction that
 * rolls back after seeing a pending group's rows must not return before that group commits:
 * its caller acts on what it saw. Regression test for a capture answered 409 without the
 * existing lead's id (the lookup after the conflict ran before the winner's row was committed).
 *
 * The threads are staged so the race happens every time: the winner's commit leaves its row
 * pending (a loser is queued), the loser hits the unique index, and a third transaction is
 * queued behind the loser when it rolls back, so the loser is not the one to commit the group.
 * And a write outside a transaction joins the writer queue like any transaction. */
#include "t.h"

#include "core/clock.h"
#include "infra/db.h"
#include "infra/db_sqlite.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define DB "t.db"

DB_STMT(T_INSERT, "INSERT INTO u (x) VALUES (1)", NULL);
DB_STMT(T_FIND, "SELECT x FROM u WHERE x = 1", NULL);

struct actor {
    struct db_conn *c;
    atomic_int reached; /* 1 once it wrote, and waits for go */
    atomic_int go;
    atomic_int done;
    int insert_rc, end_rc, read_rc;
    int64_t seen; /* rows with x = 1 the actor's own handle sees once its transaction ended */
};

static void
poll_for(atomic_int *flag, int ms)
{
    int64_t until = sp_mono_ms() + ms;

    while (atomic_load(flag) == 0 && sp_mono_ms() < until)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

static void
poll_until(atomic_int *flag)
{
    poll_for(flag, 10000);
}

static void
poll_queued(struct db_sqlite *s, int n)
{
    int64_t until = sp_mono_ms() + 10000;

    while (db_sqlite_writers_queued(s) != n && sp_mono_ms() < until)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

/* begin, insert x = 1, wait for go, then commit if the insert worked, else roll back; read. */
static void *
actor_main(void *arg)
{
    struct actor *a = arg;
    struct sp_error err = {0};

    a->end_rc = db_begin(a->c, &err);
    if (a->end_rc != SP_OK)
        return NULL;
    a->insert_rc = db_exec(a->c, &T_INSERT, DB_NOARGS, NULL, &err);
    sp_error_clear(&err);
    atomic_store(&a->reached, 1);
    poll_until(&a->go);
    if (a->insert_rc == SP_OK) {
        a->end_rc = db_commit(a->c, &err);
    } else {
        db_rollback(a->c);
        a->end_rc = SP_OK;
    }
    sp_error_clear(&err);
    a->read_rc = db_query_count(a->c, &T_FIND, DB_NOARGS, &a->seen, &err);
    atomic_store(&a->done, 1);
    return NULL;
}

TEST(unit_sqlite_rollback_after_a_conflict_waits_for_the_pending_group)
{
    struct db_sqlite *s = NULL;
    struct actor w = {0}, l = {0}, t = {0};
    struct sp_error err = {0};
    pthread_t tw, tl, tt;

    ASSERT_OK(db_sqlite_new(DB, &s, &err));
    ASSERT_OK(db_sqlite_connect(s, &w.c, &err));
    ASSERT_OK(db_sqlite_connect(s, &l.c, &err));
    ASSERT_OK(db_sqlite_connect(s, &t.c, &err));
    ASSERT_OK(w.c->ops->exec_script(w.c,
                                    "CREATE TABLE u (x INTEGER UNIQUE);"
                                    "CREATE TABLE schema_migrations (version TEXT);"
                                    "INSERT INTO schema_migrations VALUES ('t');",
                                    &err));

    ASSERT_EQ(0, pthread_create(&tw, NULL, actor_main, &w));
    poll_until(&w.reached);
    ASSERT_EQ(0, pthread_create(&tl, NULL, actor_main, &l));
    poll_queued(s, 1);
    ASSERT_EQ(1, db_sqlite_writers_queued(s));
    atomic_store(&w.go, 1); /* commits, and waits in the group: the loser is queued */
    poll_until(&l.reached); /* the loser hit the unique index on the winner's pending row */
    ASSERT_EQ(SP_ECONFLICT, l.insert_rc);
    ASSERT_EQ(0, pthread_create(&tt, NULL, actor_main, &t));
    poll_queued(s, 1); /* the third is queued behind the loser */
    ASSERT_EQ(1, db_sqlite_writers_queued(s));
    atomic_store(&l.go, 1);
    /* The loser rolls back; the third takes the writer and holds it (waits for go) with the
     * group still uncommitted. The loser must still be waiting: a negative, so checked for a
     * while (200 ms) rather than polled for. */
    poll_for(&l.done, 200);
    ASSERT_EQ(0, atomic_load(&l.done));
    atomic_store(&t.go, 1); /* the third ends its transaction and commits the group */
    ASSERT_EQ(0, pthread_join(tl, NULL));

    ASSERT_OK(l.read_rc);
    ASSERT_EQ(1, l.seen); /* the row that made its insert a conflict is committed by now */
    ASSERT_EQ(0, pthread_join(tt, NULL));
    ASSERT_EQ(0, pthread_join(tw, NULL));
    ASSERT_OK(w.end_rc);
    ASSERT_EQ(SP_ECONFLICT, t.insert_rc);
    ASSERT_EQ(1, t.seen);
    db_close(t.c);
    db_close(l.c);
    db_close(w.c);
    db_sqlite_free(s);
}

struct lone_writer {
    struct db_conn *c;
    int rc;
    atomic_int done;
};

static void *
lone_writer_main(void *arg)
{
    struct lone_writer *lw = arg;
    struct sp_error err = {0};

    lw->rc = db_exec(lw->c, &T_INSERT, DB_NOARGS, NULL, &err); /* no db_begin: autocommit */
    atomic_store(&lw->done, 1);
    return NULL;
}

/* A write outside a transaction queues for the writer like a transaction: it never takes
 * SQLite's write lock on a handle of its own beside the writer (regression: lease renewals,
 * autocommit UPDATEs, starved in the busy handler under load and failed "database is locked"). */
TEST(unit_sqlite_write_outside_a_transaction_queues_for_the_writer)
{
    struct db_sqlite *s = NULL;
    struct db_conn *holder = NULL;
    struct lone_writer lw = {0};
    struct sp_error err = {0};
    pthread_t t;
    int64_t n = 0;

    ASSERT_OK(db_sqlite_new(DB, &s, &err));
    ASSERT_OK(db_sqlite_connect(s, &holder, &err));
    ASSERT_OK(db_sqlite_connect(s, &lw.c, &err));
    ASSERT_OK(holder->ops->exec_script(holder,
                                       "CREATE TABLE u (x INTEGER);"
                                       "CREATE TABLE schema_migrations (version TEXT);"
                                       "INSERT INTO schema_migrations VALUES ('t');",
                                       &err));
    ASSERT_OK(db_begin(holder, &err));
    ASSERT_OK(db_exec(holder, &T_INSERT, DB_NOARGS, NULL, &err));
    ASSERT_EQ(0, pthread_create(&t, NULL, lone_writer_main, &lw));
    poll_queued(s, 1);
    ASSERT_EQ(1, db_sqlite_writers_queued(s)); /* waiting for the writer, not in SQLite */
    ASSERT_EQ(0, atomic_load(&lw.done));
    ASSERT_OK(db_commit(holder, &err));
    ASSERT_EQ(0, pthread_join(t, NULL));
    ASSERT_OK(lw.rc);
    ASSERT_OK(db_query_count(holder, &T_FIND, DB_NOARGS, &n, &err));
    ASSERT_EQ(2, n);
    db_close(lw.c);
    db_close(holder);
    db_sqlite_free(s);
}
