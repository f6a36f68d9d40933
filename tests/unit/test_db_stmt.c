/* test_db_stmt.c: statement descriptors (db.h) on both drivers: each descriptor gets one stable
 * slot, safely under threads and within a bounded table; the driver runs its own dialect's
 * text, skips a NULL text, and prepares a statement once per connection and descriptor;
 * `changes` counts only rows written, db_query_count the rows returned. Also checks that the
 * SQLite and PostgreSQL migrations build the same tables and columns. The *_pg tests need a
 * PostgreSQL server (ctest's unit_pg). */
#include "t.h"

#include "core/arena.h"
#include "core/log.h"
#include "fakes/t_env.h"
#include "infra/db.h"

#include <pthread.h>

/* Descriptors made at run time, each with its own slot counter. */
#define RT_MAX (DB_STMT_SLOTS + 8)
static atomic_int rt_slots[RT_MAX];
static struct db_stmt rt[RT_MAX];

static void
rt_init(int n, const char *text)
{
    for (int i = 0; i < n; i++) {
        atomic_init(&rt_slots[i], 0);
        rt[i].name = "rt";
        rt[i].sqlite = text;
        rt[i].postgres = text;
        rt[i].slot = &rt_slots[i];
    }
}

/* The single cell of a one-row, one-column result. */
static const char *
one_cell(struct db_conn *c, const struct db_stmt *st, struct arena *a)
{
    struct db_rows rows;
    struct sp_error err = {0};

    ASSERT_OK(db_query(c, st, DB_NOARGS, a, &rows, &err));
    ASSERT_EQ(1, rows.nrows);
    ASSERT_EQ(1, rows.ncols);
    return db_cell(&rows, 0, 0);
}

TEST(unit_db_stmt_slot_is_stable_and_per_descriptor)
{
    DB_STMT_SAME(a, "SELECT 1");
    DB_STMT_SAME(b, "SELECT 1"); /* the same text: still a statement of its own */
    const struct db_stmt uncached = {"uncached", "SELECT 1", "SELECT 1", NULL};
    int sa = db_stmt_slot(&a), sb = db_stmt_slot(&b);

    ASSERT(sa >= 0 && sa < DB_STMT_SLOTS);
    ASSERT(sb >= 0 && sb < DB_STMT_SLOTS);
    ASSERT(sa != sb);
    ASSERT_EQ(sa, db_stmt_slot(&a));
    ASSERT_EQ(sb, db_stmt_slot(&b));
    ASSERT_EQ(-1, db_stmt_slot(&uncached));
}

#define RACE_THREADS 4
#define RACE_STMTS 24

static void *
race_main(void *arg)
{
    int *out = arg;
    int shift = out[0];

    /* Each thread walks the descriptors from a different start, so they meet on new ones. */
    for (int k = 0; k < RACE_STMTS; k++) {
        int i = (k + shift) % RACE_STMTS;
        out[i] = db_stmt_slot(&rt[i]);
    }
    return NULL;
}

TEST(unit_db_stmt_slots_assigned_once_under_threads)
{
    DB_STMT_SAME(before, "SELECT 1");
    DB_STMT_SAME(after, "SELECT 2");
    int got[RACE_THREADS][RACE_STMTS];
    pthread_t th[RACE_THREADS];
    int base, seen[RACE_STMTS] = {0};

    rt_init(RACE_STMTS, "SELECT 1");
    base = db_stmt_slot(&before);
    for (int t = 0; t < RACE_THREADS; t++) {
        got[t][0] = t * (RACE_STMTS / RACE_THREADS);
        ASSERT_EQ(0, pthread_create(&th[t], NULL, race_main, got[t]));
    }
    for (int t = 0; t < RACE_THREADS; t++)
        ASSERT_EQ(0, pthread_join(th[t], NULL));
    for (int i = 0; i < RACE_STMTS; i++) {
        int s = got[0][i];
        for (int t = 1; t < RACE_THREADS; t++)
            ASSERT_EQ(s, got[t][i]); /* every thread sees the descriptor's one slot */
        ASSERT(s > base && s <= base + RACE_STMTS);
        ASSERT_EQ(0, seen[s - base - 1]++);
    }
    /* No slot was taken and lost in a race: the next descriptor gets the next one. */
    ASSERT_EQ(base + RACE_STMTS + 1, db_stmt_slot(&after));
}

TEST(unit_db_stmt_table_is_bounded)
{
    int last = 0, n = 0;

    sp_log_level = SP_LOG_ERROR; /* the warning about the full table is expected */
    rt_init(RT_MAX, "SELECT 1");
    for (; n < RT_MAX; n++) {
        int s = db_stmt_slot(&rt[n]);
        if (s < 0)
            break;
        ASSERT(s < DB_STMT_SLOTS);
        last = s;
    }
    ASSERT_EQ(DB_STMT_SLOTS - 1, last);
    ASSERT(n < RT_MAX);
    ASSERT_EQ(-1, db_stmt_slot(&rt[n])); /* and stays without one */
}

TEST_SQL(unit_db_stmt_runs_its_dialect)
{
    DB_STMT(which, "SELECT 'sqlite'", "SELECT 'postgres'");
    DB_STMT(sqlite_only, "SELECT 1", NULL);
    DB_STMT(pg_only, NULL, "SELECT 1");
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct db_rows rows;
    int64_t n = -1;

    ASSERT_STREQ(backend == T_PG ? "postgres" : "sqlite", one_cell(env->conn, &which, env->arena));
    /* A NULL text: nothing runs, nothing is returned. */
    ASSERT_OK(db_query(env->conn, backend == T_PG ? &sqlite_only : &pg_only, DB_NOARGS, env->arena,
                       &rows, &err));
    ASSERT_EQ(0, rows.nrows);
    ASSERT_OK(
        db_query_count(env->conn, backend == T_PG ? &sqlite_only : &pg_only, DB_NOARGS, &n, &err));
    ASSERT_EQ(0, n);
    ASSERT_OK(
        db_query_count(env->conn, backend == T_PG ? &pg_only : &sqlite_only, DB_NOARGS, &n, &err));
    ASSERT_EQ(1, n);
    t_env_free(env);
}

/* The statements prepared on the connection with this text: their names on PostgreSQL,
 * "cached" for each on SQLite (where they have none). */
static int
prepared_with(struct t_env *env, const char *text, char names[][16], int cap)
{
    DB_STMT(listing, "SELECT 'cached' FROM sqlite_stmt WHERE sql = $1",
            "SELECT name FROM pg_prepared_statements WHERE statement = $1 ORDER BY name");
    struct sp_error err = {0};
    struct db_rows rows;
    int rc = db_query(env->conn, &listing, DB_ARGS(db_text(text)), env->arena, &rows, &err);

    if (rc != SP_OK && env->backend == T_SQLITE)
        t_skip("this SQLite has no sqlite_stmt table (SQLITE_ENABLE_STMTVTAB): %s", err.msg);
    ASSERT_OK(rc);
    for (int i = 0; i < rows.nrows && i < cap; i++)
        snprintf(names[i], 16, "%s", db_cell(&rows, i, 0));
    return rows.nrows;
}

TEST_SQL(unit_db_stmt_prepared_once_per_descriptor)
{
    static const char text[] = "SELECT 'cache me'";
    DB_STMT_SAME(first, text);
    DB_STMT_SAME(second, text);
    struct t_env *env = t_env_new(backend);
    char names[4][16], want[16];

    for (int i = 0; i < 3; i++)
        ASSERT_STREQ("cache me", one_cell(env->conn, &first, env->arena));
    ASSERT_EQ(1, prepared_with(env, text, names, 4));
    snprintf(want, sizeof(want), "s%d", db_stmt_slot(&first));
    ASSERT_STREQ(backend == T_PG ? want : "cached", names[0]);
    /* Keyed by the descriptor, not the text: a second descriptor is a second statement. */
    ASSERT_STREQ("cache me", one_cell(env->conn, &second, env->arena));
    ASSERT_EQ(2, prepared_with(env, text, names, 4));
    t_env_free(env);
}

TEST_SQL(unit_db_stmt_without_slot_runs_uncached)
{
    static const char text[] = "SELECT 'no slot left'";
    struct t_env *env = t_env_new(backend); /* migrations first: their statements keep slots */
    char names[4][16];
    int n = 0;

    rt_init(RT_MAX, text);
    while (n < RT_MAX && db_stmt_slot(&rt[n]) >= 0)
        n++;
    ASSERT(n < RT_MAX);
    for (int i = 0; i < 2; i++)
        ASSERT_STREQ("no slot left", one_cell(env->conn, &rt[n], env->arena));
    /* The slotted ones are cached, the one without a slot is not (prepared for each call). */
    ASSERT_STREQ("no slot left", one_cell(env->conn, &rt[0], env->arena));
    ASSERT_EQ(1, prepared_with(env, text, names, 4));
    t_env_free(env);
}

TEST_SQL(unit_db_changes_count_only_rows_written)
{
    DB_STMT_SAME(insert, "INSERT INTO leads (id, name, status, created_at, updated_at)"
                         " VALUES ($1, 'x', 'new', $2, $2)");
    DB_STMT_SAME(insert_returning, "INSERT INTO leads (id, name, status, created_at, updated_at)"
                                   " VALUES ($1, 'x', 'new', $2, $2) RETURNING id");
    DB_STMT_SAME(touch, "UPDATE leads SET name = 'y'");
    DB_STMT_SAME(touch_none, "UPDATE leads SET name = 'z' WHERE id = $1");
    DB_STMT_SAME(select_all, "SELECT id FROM leads");
    DB_STMT_SAME(ddl, "CREATE TABLE IF NOT EXISTS t_changes (x INTEGER)");
    static const char id1[] = "00000000-0000-4000-8000-000000000001";
    static const char id2[] = "00000000-0000-4000-8000-000000000002";
    static const char id3[] = "00000000-0000-4000-8000-000000000003";
    struct t_env *env = t_env_new(backend);
    struct db_conn *c = env->conn;
    struct sp_error err = {0};
    int64_t changes = -1, n = -1;

    ASSERT_OK(db_exec(c, &insert, DB_ARGS(db_text(id1), db_time(T_NOW)), &changes, &err));
    ASSERT_EQ(1, changes);
    ASSERT_OK(db_exec(c, &insert_returning, DB_ARGS(db_text(id2), db_time(T_NOW)), &changes, &err));
    ASSERT_EQ(1, changes);
    ASSERT_OK(db_exec(c, &touch, DB_NOARGS, &changes, &err));
    ASSERT_EQ(2, changes);
    /* A SELECT right after a write: rows returned are not changes. */
    ASSERT_OK(db_exec(c, &select_all, DB_NOARGS, &changes, &err));
    ASSERT_EQ(0, changes);
    ASSERT_OK(db_query_count(c, &select_all, DB_NOARGS, &n, &err));
    ASSERT_EQ(2, n);
    ASSERT_OK(db_exec(c, &touch, DB_NOARGS, &changes, &err));
    ASSERT_OK(db_exec(c, &ddl, DB_NOARGS, &changes, &err)); /* not the UPDATE's count again */
    ASSERT_EQ(0, changes);
    ASSERT_OK(db_exec(c, &touch_none, DB_ARGS(db_text(id3)), &changes, &err));
    ASSERT_EQ(0, changes);
    ASSERT_OK(db_query_count(c, &touch, DB_NOARGS, &n, &err)); /* no RETURNING: no rows */
    ASSERT_EQ(0, n);
    t_env_free(env);
}

/* Units of work nest (db_begin in an open transaction is a savepoint): an inner rollback undoes
 * the inner writes only, an inner commit keeps them for the outer one, and only the outer commit
 * makes anything visible; a failed statement inside (PostgreSQL aborts the whole transaction
 * on one) is undone by the inner rollback and the outer one goes on. */
TEST_SQL(unit_db_units_of_work_nest)
{
    DB_STMT_SAME(insert, "INSERT INTO leads (id, name, status, created_at, updated_at)"
                         " VALUES ($1, 'x', 'new', $2, $2)");
    DB_STMT_SAME(count, "SELECT id FROM leads");
    static const char id1[] = "00000000-0000-4000-8000-000000000011";
    static const char id2[] = "00000000-0000-4000-8000-000000000012";
    static const char id3[] = "00000000-0000-4000-8000-000000000013";
    struct t_env *env = t_env_new(backend);
    struct db_conn *c = env->conn;
    struct sp_error err = {0};
    int64_t n = -1, changes = 0;

    ASSERT_OK(db_begin(c, &err));
    ASSERT(db_in_tx(c));
    ASSERT_OK(db_exec(c, &insert, DB_ARGS(db_text(id1), db_time(T_NOW)), &changes, &err));
    ASSERT_OK(db_begin(c, &err)); /* inner, rolled back */
    ASSERT_OK(db_exec(c, &insert, DB_ARGS(db_text(id2), db_time(T_NOW)), &changes, &err));
    db_rollback(c);
    ASSERT(db_in_tx(c));
    ASSERT_OK(db_begin(c, &err)); /* inner, failing on a duplicate id, rolled back */
    ASSERT(db_exec(c, &insert, DB_ARGS(db_text(id1), db_time(T_NOW)), &changes, &err) != SP_OK);
    db_rollback(c);
    ASSERT_OK(db_begin(c, &err)); /* inner, committed */
    ASSERT_OK(db_exec(c, &insert, DB_ARGS(db_text(id3), db_time(T_NOW)), &changes, &err));
    ASSERT_OK(db_commit(c, &err));
    ASSERT(db_in_tx(c));
    ASSERT_OK(db_commit(c, &err));
    ASSERT(!db_in_tx(c));
    ASSERT_OK(db_query_count(c, &count, DB_NOARGS, &n, &err));
    ASSERT_EQ(2, n); /* id1 and id3 */

    /* An outer rollback undoes the inner commits too. */
    ASSERT_OK(db_begin(c, &err));
    ASSERT_OK(db_begin(c, &err));
    ASSERT_OK(db_exec(c, &insert, DB_ARGS(db_text(id2), db_time(T_NOW)), &changes, &err));
    ASSERT_OK(db_commit(c, &err));
    db_rollback(c);
    ASSERT(!db_in_tx(c));
    ASSERT_OK(db_query_count(c, &count, DB_NOARGS, &n, &err));
    ASSERT_EQ(2, n);
    t_env_free(env);
}

/* "table.column not-null" for each column of `rows` (table, column, not-null flag), sorted
 * bytewise (PostgreSQL's ORDER BY would follow the database's collation). */
static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char **
column_lines(const struct db_rows *rows, struct arena *a)
{
    const char **lines = arena_alloc(a, sizeof(*lines) * (size_t)(rows->nrows + 1));

    for (int i = 0; i < rows->nrows; i++)
        lines[i] = arena_printf(a, "%s.%s %s", db_cell(rows, i, 0), db_cell(rows, i, 1),
                                db_cell_int(rows, i, 2) ? "NOT NULL" : "NULL");
    qsort(lines, (size_t)rows->nrows, sizeof(*lines), cmp_str);
    lines[rows->nrows] = NULL;
    return lines;
}

/* After all migrations, both dialects have the same tables with the same columns and
 * nullability (types differ by design: timestamptz against integer ms, uuid against text). A
 * column added to one migration set and forgotten in the other fails here. */
TEST(unit_db_schemas_match_pg)
{
    /* Primary keys count as NOT NULL: SQLite's table_info leaves them 0, PostgreSQL implies it. */
    DB_STMT(columns,
            "SELECT m.name, p.name, p.\"notnull\" OR p.pk > 0 FROM sqlite_master m,"
            " pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
            "SELECT table_name, column_name, CASE is_nullable WHEN 'NO' THEN 1 ELSE 0 END"
            " FROM information_schema.columns WHERE table_schema = current_schema()");
    struct t_env *pg = t_env_new(T_PG); /* first: skips without a server */
    struct t_env *lite = t_env_new(T_SQLITE);
    struct sp_error err = {0};
    struct db_rows prows, srows;
    const char **pl, **sl;
    int i;

    ASSERT_OK(db_query(pg->conn, &columns, DB_NOARGS, pg->arena, &prows, &err));
    ASSERT_OK(db_query(lite->conn, &columns, DB_NOARGS, lite->arena, &srows, &err));
    ASSERT(srows.nrows > 50); /* every table, not an empty schema */
    pl = column_lines(&prows, pg->arena);
    sl = column_lines(&srows, lite->arena);
    for (i = 0; pl[i] && sl[i]; i++)
        ASSERT_STREQ(pl[i], sl[i]);
    ASSERT_STREQ(pl[i] ? pl[i] : "(end)", sl[i] ? sl[i] : "(end)");
    t_env_free(lite);
    t_env_free(pg);
}
