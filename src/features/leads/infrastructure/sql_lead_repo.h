/* sql_lead_repo.h: the lead repository on the database port (SQLite now, PostgreSQL later).
 * One SQL text per operation, with $n parameters, shared by every dialect. */
#pragma once

#include "features/leads/domain/lead_repo.h"

struct db_conn;

struct sql_lead_repo {
    struct lead_repo base; /* first */
    struct db_conn *conn;  /* borrowed */
};

/* Binds `r` to `conn` (borrowed; must outlive r). */
void sql_lead_repo_init(struct sql_lead_repo *r, struct db_conn *conn);
