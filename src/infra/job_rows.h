/* job_rows.h: the job record as both SQL-backed queues store it (the `jobs` table of queue_sql.c
 * and the `outbox` of queue_redis.c share these columns), and its one row reader.
 *
 * A statement selects JOB_RECORD_COLUMNS first, then any columns of its own from index
 * JOB_RECORD_NCOLS on, which its caller decodes. Not the place for queue semantics: what a
 * state or an attempt means is core/queue.h's. */
#pragma once

#include "core/err.h"
#include "core/queue.h"

struct arena;
struct db_rows;

#define JOB_RECORD_COLUMNS                                                                         \
    "id, name, lead_id, message_id, state, attempts_made, max_attempts, stalled_count,"            \
    " last_error, run_at, created_at, updated_at, finished_at"
#define JOB_RECORD_NCOLS 13

/* Fills `j` (zeroed first) from the JOB_RECORD_COLUMNS of row `i`. Strings point into `rows`'
 * cells (valid as long as their arena). SP_EINTERNAL for a state the queue does not know. */
int job_record_from_row(const struct db_rows *rows, int i, struct job *j,
                        struct sp_error *err) SP_MUST_CHECK;

/* The counts statement of both queues over `from` (a table), `and_where` narrowing its rows
 * (" AND ..." or ""), in each dialect (see GET /metrics in docs/http-api.md for the cost). On
 * SQLite, in two parts: the live states and the dead letters by name and state, on the state
 * index (jobs_by_state, outbox_by_state), costing the rows in them; then the completed jobs by
 * name, the part that grows with the table; at 1,000,000 jobs half the time of one GROUP BY,
 * which sorts every row. PostgreSQL's parallel scan and hash aggregate do one GROUP BY faster
 * than the two parts. At most JOB_COUNTS_MAX rows from each part. */
#define JOB_COUNTS_SQL(from, and_where)                                                            \
    "SELECT * FROM (SELECT name, state, COUNT(*) FROM " from                                       \
    " WHERE state IN ('waiting', 'delayed', 'active', 'failed')" and_where                         \
    " GROUP BY name, state" JOB_COUNTS_LIMIT_ ") AS live UNION ALL SELECT * FROM"                  \
    " (SELECT name, 'completed', COUNT(*) FROM " from " WHERE state = 'completed'" and_where       \
    " GROUP BY name" JOB_COUNTS_LIMIT_ ") AS done"
#define JOB_COUNTS_SQL_PG(from, where)                                                             \
    "SELECT name, state, COUNT(*) FROM " from where " GROUP BY name, state" JOB_COUNTS_LIMIT_
#define JOB_COUNTS_LIMIT_ " LIMIT " JOB_ROWS_STR_(JOB_COUNTS_MAX)
#define JOB_ROWS_STR_(x) JOB_ROWS_STR2_(x)
#define JOB_ROWS_STR2_(x) #x
/* Fills out->by_state / out->n (in `a`) from the rows of JOB_COUNTS_SQL statements: rows of
 * one name and state are added up (several statements' rows may be given at once), rows in a
 * state the queue does not know are skipped, at most JOB_COUNTS_MAX pairs are kept. The backlog
 * fields are left alone. */
void job_counts_from_rows(const struct db_rows *rows, struct arena *a, struct job_counts *out);
