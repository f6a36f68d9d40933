/* test_db_sqlite_faults.c: the SQLite driver under a hostile file system (hardening issue,
 * point 5): a lock held elsewhere is waited for until the connection's deadline only; a database
 * file removed or replaced after start is refused (SP_EUNAVAIL), never created afresh; a file
 * made immutable is refused before SQLite writes to it, and usable again once it is not.
 * Each test runs in its own temporary directory (t.h); "another process" is a second struct
 * db_sqlite on the same file, which shares nothing in memory with the first. */
#include "t.h"

#include "core/clock.h"
#include "infra/db.h"
#include "infra/db_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define DB "t.db"

DB_STMT(T_INSERT, "INSERT INTO t (x) VALUES (1)", NULL);

static void
open_db(struct db_sqlite **s, struct db_conn **c)
{
    struct sp_error err = {0};

    ASSERT_OK(db_sqlite_new(DB, s, &err));
    ASSERT_OK(db_sqlite_connect(*s, c, &err));
}

static void
make_table(struct db_conn *c)
{
    struct sp_error err = {0};

    ASSERT_OK(c->ops->exec_script(c,
                                  "CREATE TABLE IF NOT EXISTS t (x INTEGER);"
                                  "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT);"
                                  "INSERT INTO schema_migrations VALUES ('t');",
                                  &err));
}

static int
insert_one(struct db_conn *c, struct sp_error *err)
{
    int rc = db_begin(c, err);

    if (rc != SP_OK)
        return rc;
    rc = db_exec(c, &T_INSERT, DB_NOARGS, NULL, err);
    if (rc == SP_OK)
        return db_commit(c, err);
    db_rollback(c);
    return rc;
}

/* Sets or clears the immutable flag; 0 when the file system or privileges do not allow it. */
static int
set_immutable(const char *path, int on)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    int flags = 0, ok;

    if (fd < 0)
        return 0;
    ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (ok) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    close(fd);
    return ok;
}

TEST(unit_db_conn_deadline_is_reset_by_the_pool)
{
    struct db_sqlite *s = NULL;
    struct db_pool *p = NULL;
    struct db_conn *c = NULL;
    struct sp_error err = {0};
    int64_t now = sp_mono_ms();

    ASSERT_OK(db_sqlite_new(DB, &s, &err));
    ASSERT_OK(db_pool_new(db_sqlite_connect, s, 1, &p, &err));
    ASSERT_OK(db_pool_acquire(p, &c, &err));
    ASSERT_EQ(0, c->deadline_ms);
    db_conn_deadline_set(c, 1500);
    ASSERT(c->deadline_ms >= now + 1500 && c->deadline_ms < now + 60000);
    db_pool_release(p, c);
    ASSERT_OK(db_pool_acquire(p, &c, &err));
    ASSERT_EQ(0, c->deadline_ms); /* the next user starts without the last one's budget */
    db_pool_release(p, c);
    db_pool_free(p);
    db_sqlite_free(s);
}

TEST(unit_sqlite_lock_held_elsewhere_waits_until_the_deadline_only)
{
    struct db_sqlite *s = NULL, *other = NULL;
    struct db_conn *c = NULL, *holder = NULL;
    struct sp_error err = {0};
    int64_t t0, waited;

    open_db(&s, &c);
    make_table(c);
    db_sqlite_set_busy_timeout(s, 60000); /* the deadline, not the busy timeout, must end it */
    ASSERT_OK(db_sqlite_new(DB, &other, &err));
    ASSERT_OK(db_sqlite_connect(other, &holder, &err));
    ASSERT_OK(db_begin(holder, &err)); /* another "process" holds the write lock */

    db_conn_deadline_set(c, 150);
    t0 = sp_mono_ms();
    ASSERT_EQ(SP_EUNAVAIL, insert_one(c, &err));
    waited = sp_mono_ms() - t0;
    ASSERT(waited >= 100);
    ASSERT(waited < 5000);
    sp_error_clear(&err);

    /* The budget is spent: the next statement of the same request does not wait again. */
    t0 = sp_mono_ms();
    ASSERT_EQ(SP_EUNAVAIL, insert_one(c, &err));
    ASSERT(sp_mono_ms() - t0 < 100);
    sp_error_clear(&err);

    db_rollback(holder);
    db_conn_deadline_set(c, 2000);
    ASSERT_OK(insert_one(c, &err));
    db_close(holder);
    db_sqlite_free(other);
    db_close(c);
    db_sqlite_free(s);
}

TEST(unit_sqlite_removed_database_is_refused_and_never_created_again)
{
    struct db_sqlite *s = NULL;
    struct db_conn *c = NULL, *late = NULL;
    struct sp_error err = {0};

    open_db(&s, &c);
    make_table(c);
    ASSERT_OK(insert_one(c, &err));
    ASSERT_EQ(0, unlink(DB));
    (void)unlink(DB "-wal"); /* may not exist: ENOENT is fine */
    (void)unlink(DB "-shm");

    ASSERT_EQ(SP_EUNAVAIL, insert_one(c, &err)); /* not a write into the deleted file */
    ASSERT(strstr(err.msg, "removed") != NULL);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EUNAVAIL, db_ping(c, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_EUNAVAIL, db_sqlite_connect(s, &late, &err)); /* a pool slot opened later */
    ASSERT(access(DB, F_OK) != 0);                             /* nothing created */
    db_close(c);
    db_sqlite_free(s);
}

/* Moves the database with its -wal and -shm files (a WAL file belongs to its database). */
static void
move_db(const char *from, const char *to)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char a[64], b[64];

    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof(a), "%s%s", from, suffix[i]);
        snprintf(b, sizeof(b), "%s%s", to, suffix[i]);
        ASSERT(rename(a, b) == 0 || errno == ENOENT);
    }
}

TEST(unit_sqlite_replaced_database_is_refused_until_the_pinned_file_is_back)
{
    struct db_sqlite *s = NULL, *impostor = NULL;
    struct db_conn *c = NULL, *ic = NULL;
    struct sp_error err = {0};

    open_db(&s, &c);
    make_table(c);
    move_db(DB, "away.db");
    ASSERT_OK(db_sqlite_new(DB, &impostor, &err)); /* an empty database at the same path */
    ASSERT_OK(db_sqlite_connect(impostor, &ic, &err));
    db_close(ic);
    db_sqlite_free(impostor);

    ASSERT_EQ(SP_EUNAVAIL, insert_one(c, &err));
    ASSERT(strstr(err.msg, "replaced") != NULL);
    sp_error_clear(&err);

    ASSERT_EQ(0, unlink(DB));
    move_db("away.db", DB); /* the pinned file is back: it works again */
    ASSERT_OK(insert_one(c, &err));
    ASSERT_OK(db_ping(c, &err));
    db_close(c);
    db_sqlite_free(s);
}

TEST(unit_sqlite_immutable_database_is_not_ready_and_the_writer_recovers)
{
    struct db_sqlite *s = NULL;
    struct db_conn *c = NULL;
    struct sp_error err = {0};
    int insert_rc, ping_rc;

    open_db(&s, &c);
    make_table(c);
    if (!set_immutable(DB, 1))
        t_skip("cannot set the immutable flag here (needs root on ext4/xfs/btrfs)");
    insert_rc = insert_one(c, &err); /* the writer is opened now: refused */
    sp_error_clear(&err);
    ping_rc = db_ping(c, &err);   /* readiness reflects writability */
    ASSERT(set_immutable(DB, 0)); /* first: a failed test must not leave an undeletable file */
    ASSERT_EQ(SP_EUNAVAIL, insert_rc);
    ASSERT_EQ(SP_EUNAVAIL, ping_rc);
    ASSERT(strstr(err.msg, "not writable") != NULL);
    sp_error_clear(&err);

    ASSERT_OK(insert_one(c, &err)); /* no restart */
    ASSERT_OK(db_ping(c, &err));
    db_close(c);
    db_sqlite_free(s);
}

TEST(unit_sqlite_immutable_shm_is_refused_before_sqlite_maps_a_write)
{
    struct db_sqlite *s = NULL;
    struct db_conn *c = NULL;
    struct sp_error err = {0};
    int insert_rc;

    open_db(&s, &c);
    make_table(c);
    ASSERT_OK(insert_one(c, &err));
    if (!set_immutable(DB "-shm", 1))
        t_skip("cannot set the immutable flag here (needs root on ext4/xfs/btrfs)");
    sync(); /* the mapped pages written back: a write to them would now be a SIGBUS */
    insert_rc = insert_one(c, &err);
    sp_error_clear(&err);
    ASSERT(set_immutable(DB "-shm", 0));
    ASSERT_EQ(SP_EUNAVAIL, insert_rc);
    ASSERT_OK(insert_one(c, &err));
    db_close(c);
    db_sqlite_free(s);
}
