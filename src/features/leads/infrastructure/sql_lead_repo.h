/* sql_lead_repo.h: the lead repository on the database port (SQLite or PostgreSQL).
 * One statement descriptor per operation, with $n parameters; its text differs by dialect only
 * where it must (the lead lock). */
#pragma once

#include "features/leads/domain/lead_repo.h"
#include "features/leads/infrastructure/sql_lead_batch.h"

struct db_conn;

struct sql_lead_repo {
    struct lead_repo base; /* first */
    struct db_conn *conn;  /* borrowed */
    /* Inside the repo's own unit of work (begin), on a database that gathers writes
     * (db_gathers_writes), message delivery updates and events wait in `batch`
     * (sql_lead_batch.h) while the connection is at `batch_depth` (its db_begin depth then; 0:
     * outside, every write goes out at once). */
    struct lead_batch batch;
    int batch_depth;
};

/* Binds `r` to `conn` (borrowed; must outlive r). Nothing to free: a batch is empty once its
 * unit of work ends (commit or rollback). */
void sql_lead_repo_init(struct sql_lead_repo *r, struct db_conn *conn);
