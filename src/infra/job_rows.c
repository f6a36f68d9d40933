/* job_rows.c: the job record row reader shared by the SQL and Redis queues (see job_rows.h). */
#include "infra/job_rows.h"

#include "core/queue.h"
#include "infra/db.h"

#include <stdio.h>
#include <string.h>

int
job_record_from_row(const struct db_rows *rows, int i, struct job *j, struct sp_error *err)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", db_cell(rows, i, 0));
    j->name = db_cell(rows, i, 1);
    j->group = db_cell(rows, i, 2);
    j->key = db_cell(rows, i, 3);
    if (job_state_parse(db_cell(rows, i, 4), &j->state) != 0)
        return sp_error_set(err, SP_EINTERNAL, "queue", "unexpected job state");
    j->attempts_made = (int)db_cell_int(rows, i, 5);
    j->max_attempts = (int)db_cell_int(rows, i, 6);
    j->stalled_count = (int)db_cell_int(rows, i, 7);
    j->last_error = db_cell(rows, i, 8);
    j->run_at = db_cell_int(rows, i, 9);
    j->created_at = db_cell_int(rows, i, 10);
    j->updated_at = db_cell_int(rows, i, 11);
    j->finished_at = db_cell_int(rows, i, 12);
    j->jitter_pct = JOB_JITTER_WORKER;
    return SP_OK;
}
