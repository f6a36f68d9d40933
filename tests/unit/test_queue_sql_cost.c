/* test_queue_sql_cost.c: the SQL queue's reservation costs the same whatever the backlog.
 * Measured in SQLite virtual-machine steps (db_sqlite_vm_steps): deterministic, unlike time.
 * Regression test: with the jobs_by_state index (0009) SQLite's planner sorted every waiting
 * job to find the first, so a reservation cost O(backlog) and a worker fell to ~160 sends/s
 * with 25,000 messages queued. */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_env.h"
#include "infra/db.h"
#include "infra/db_sqlite.h"

#include <stdio.h>

static void
enqueue_n(struct t_env *env, const char *lead_id, int from, int n)
{
    struct sp_error err = {0};

    ASSERT_OK(db_begin(env->conn, &err));
    for (int i = from; i < from + n; i++) {
        char mid[40], id[64];
        struct job_spec spec = {"send-message", mid, lead_id, "{\"k\":1}", 3, 1000};
        snprintf(mid, sizeof(mid), "00000000-0000-4000-9000-%012d", i);
        ASSERT_OK(job_queue_enqueue(env->queue, &spec, 1000 + i, id, &err));
    }
    ASSERT_OK(db_commit(env->conn, &err));
}

/* VM steps of one reservation (and of the next-due lookup it makes). */
static int64_t
reserve_cost(struct t_env *env)
{
    struct sp_error err = {0};
    struct job j;
    int found = 0;
    int64_t next_due = 0, before = db_sqlite_vm_steps(env->sqlite);

    ASSERT_OK(
        job_queue_reserve(env->queue, 1000000, 1000, 1, env->arena, &j, &found, &next_due, &err));
    ASSERT_EQ(1, found);
    return db_sqlite_vm_steps(env->sqlite) - before;
}

TEST(unit_queue_sql_reserve_cost_does_not_grow_with_the_backlog)
{
    struct t_env *env = t_env_new(T_SQLITE);
    struct sp_error err = {0};
    struct lead l;
    int64_t small, big;

    memset(&l, 0, sizeof(l));
    snprintf(l.id, sizeof(l.id), "00000000-0000-4000-8000-000000000001");
    l.name = "Ana";
    l.email = "ana@example.com";
    l.status = LEAD_STATUS_NEW;
    l.created_at = l.updated_at = 1000;
    ASSERT_OK(lead_repo_lead_insert(env->repo, &l, &err));

    enqueue_n(env, l.id, 0, 20);
    (void)reserve_cost(env); /* the first prepares the statements */
    small = reserve_cost(env);
    enqueue_n(env, l.id, 20, 3000);
    big = reserve_cost(env);
    if (big >= 2 * small + 100)
        t_fail(__FILE__, __LINE__,
               "a reservation took %lld VM steps with 18 jobs waiting, %lld with 3,018",
               (long long)small, (long long)big);
    t_env_free(env);
}
