/* job_rows.c: the job record row reader shared by the SQL and Redis queues (see job_rows.h). */
#include "infra/job_rows.h"

#include "core/arena.h"
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

void
job_counts_from_rows(const struct db_rows *rows, struct arena *a, struct job_counts *out)
{
    out->by_state = arena_alloc(a, sizeof(*out->by_state) * JOB_COUNTS_MAX);
    out->n = 0;
    for (int i = 0; i < rows->nrows; i++) {
        const char *name = db_cell(rows, i, 0);
        enum job_state state;
        int k = 0;

        if (name == NULL || job_state_parse(db_cell(rows, i, 1), &state) != 0)
            continue;
        while (k < out->n &&
               (out->by_state[k].state != state || strcmp(out->by_state[k].name, name) != 0))
            k++;
        if (k == out->n) {
            if (out->n == JOB_COUNTS_MAX)
                continue;
            out->by_state[k] = (struct job_count){name, state, 0};
            out->n++;
        }
        out->by_state[k].n += db_cell_int(rows, i, 2);
    }
}
