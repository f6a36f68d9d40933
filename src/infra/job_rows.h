/* job_rows.h: the job record as both SQL-backed queues store it (the `jobs` table of queue_sql.c
 * and the `outbox` of queue_redis.c share these columns), and its one row reader.
 *
 * A statement selects JOB_RECORD_COLUMNS first, then any columns of its own from index
 * JOB_RECORD_NCOLS on, which its caller decodes. Not the place for queue semantics: what a
 * state or an attempt means is core/queue.h's. */
#pragma once

#include "core/err.h"

struct db_rows;
struct job;

#define JOB_RECORD_COLUMNS                                                                         \
    "id, name, lead_id, message_id, state, attempts_made, max_attempts, stalled_count,"            \
    " last_error, run_at, created_at, updated_at, finished_at"
#define JOB_RECORD_NCOLS 13

/* Fills `j` (zeroed first) from the JOB_RECORD_COLUMNS of row `i`. Strings point into `rows`'
 * cells (valid as long as their arena). SP_EINTERNAL for a state the queue does not know. */
int job_record_from_row(const struct db_rows *rows, int i, struct job *j,
                        struct sp_error *err) SP_MUST_CHECK;
