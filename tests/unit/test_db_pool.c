/* test_db_pool.c: the connection pool opens its first connection at once and the others on
 * demand; a failed opening is an error for that caller only and leaves the slot usable. */
#include "t.h"

#include "core/xmalloc.h"
#include "infra/db.h"

struct fake_db {
    int opened;
    int fail_next;
};

static void
fake_close(struct db_conn *c)
{
    free(c);
}

static const struct db_conn_ops fake_ops = {.name = "fake", .close = fake_close};

static int
fake_connect(void *ctx, struct db_conn **out, struct sp_error *err)
{
    struct fake_db *db = ctx;
    struct db_conn *c;

    if (db->fail_next) {
        db->fail_next = 0;
        return sp_error_set(err, SP_EUNAVAIL, "database", "refused");
    }
    c = xcalloc(1, sizeof(*c));
    c->ops = &fake_ops;
    db->opened++;
    *out = c;
    return SP_OK;
}

TEST(unit_db_pool_opens_lazily)
{
    struct fake_db db = {0, 0};
    struct db_pool *p = NULL;
    struct db_conn *a = NULL, *b = NULL, *c = NULL;
    struct sp_error err = {0};

    ASSERT_OK(db_pool_new(fake_connect, &db, 3, &p, &err));
    ASSERT_EQ(1, db.opened); /* only the first, to check the database at start */
    ASSERT_OK(db_pool_acquire(p, &a, &err));
    ASSERT_EQ(1, db.opened);
    ASSERT_OK(db_pool_acquire(p, &b, &err));
    ASSERT_EQ(2, db.opened);
    ASSERT(a != b);

    db.fail_next = 1;
    ASSERT_EQ(SP_EUNAVAIL, db_pool_acquire(p, &c, &err));
    ASSERT_STREQ("refused", err.msg);
    sp_error_clear(&err);
    ASSERT_OK(db_pool_acquire(p, &c, &err)); /* the slot was given back */
    ASSERT_EQ(3, db.opened);

    db_pool_release(p, a);
    db_pool_release(p, b);
    db_pool_release(p, c);
    ASSERT_OK(db_pool_acquire(p, &a, &err)); /* reused, nothing new opened */
    ASSERT_EQ(3, db.opened);
    db_pool_release(p, a);
    db_pool_free(p); /* closes all three (ASan/valgrind would see a leak otherwise) */
}

TEST(unit_db_pool_reports_the_first_connection_failure)
{
    struct fake_db db = {0, 1};
    struct db_pool *p = NULL;
    struct sp_error err = {0};

    ASSERT_EQ(SP_EUNAVAIL, db_pool_new(fake_connect, &db, 4, &p, &err));
    ASSERT(p == NULL);
}
