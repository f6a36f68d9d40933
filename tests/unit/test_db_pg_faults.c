/* test_db_pg_faults.c: the PostgreSQL driver under a lock held by another session (hardening
 * issue, point 5): a transaction on a connection with a deadline waits for the lock only until
 * the deadline (lock_timeout: SP_EUNAVAIL, a 503), not until the statement timeout; a
 * connection without one (a worker's) keeps waiting as before. Needs the server of
 * $SALESPAD_PG_URL_FILE (t_env.h): run by `t '*_pg'`. */
#include "t.h"

#include "core/clock.h"
#include "fakes/t_env.h"
#include "infra/db.h"
#include "infra/db_pg.h"

#include <unistd.h>

DB_STMT(T_LOCK, NULL, "SELECT pg_advisory_lock($1::bigint)");
DB_STMT(T_UNLOCK, NULL, "SELECT pg_advisory_unlock($1::bigint)");
DB_STMT(T_XACT_LOCK, NULL, "SELECT pg_advisory_xact_lock($1::bigint)");

TEST(unit_db_lock_held_elsewhere_waits_until_the_deadline_only_pg)
{
    struct t_env *env = t_env_new(T_PG);
    struct db_conn *other = NULL;
    struct sp_error err = {0};
    int64_t key = 7346000000LL + (int64_t)getpid(), n = 0, t0, waited;

    ASSERT_OK(db_pg_connect(env->pg, &other, &err));
    ASSERT_OK(db_query_count(env->conn, &T_LOCK, DB_ARGS(db_int(key)), &n, &err));

    db_conn_deadline_set(other, 300);
    t0 = sp_mono_ms();
    ASSERT_OK(db_begin(other, &err));
    ASSERT_EQ(SP_EUNAVAIL, db_query_count(other, &T_XACT_LOCK, DB_ARGS(db_int(key)), &n, &err));
    waited = sp_mono_ms() - t0;
    db_rollback(other);
    ASSERT(waited >= 200);
    ASSERT(waited < 3000); /* the statement timeout is 5 s */
    sp_error_clear(&err);

    ASSERT_OK(db_query_count(env->conn, &T_UNLOCK, DB_ARGS(db_int(key)), &n, &err));
    db_conn_deadline_set(other, 2000);
    ASSERT_OK(db_begin(other, &err));
    ASSERT_OK(db_query_count(other, &T_XACT_LOCK, DB_ARGS(db_int(key)), &n, &err));
    ASSERT_OK(db_commit(other, &err));
    db_close(other);
    t_env_free(env);
}
