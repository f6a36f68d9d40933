/* sql_lead_repo.h: the lead repository on the database port (SQLite and PostgreSQL).
 * One SQL text per operation, with $n parameters, shared by every dialect, except the row lock
 * of lead_lock (FOR UPDATE on PostgreSQL; SQLite's write transaction already serializes). */
#pragma once

#include "features/leads/domain/lead_repo.h"

struct db_conn;

struct sql_lead_repo {
    struct lead_repo base; /* first */
    struct db_conn *conn;  /* borrowed */
};

/* Binds `r` to `conn` (borrowed; must outlive r). */
void sql_lead_repo_init(struct sql_lead_repo *r, struct db_conn *conn);
