/* sql_lead_repo.h: the lead repository on the database port (SQLite or PostgreSQL).
 * One statement descriptor per operation, with $n parameters; its text differs by dialect only
 * where it must (the lead lock). */
#pragma once

#include "features/leads/domain/lead_repo.h"

struct db_conn;

struct sql_lead_repo {
    struct lead_repo base; /* first */
    struct db_conn *conn;  /* borrowed */
};

/* Binds `r` to `conn` (borrowed; must outlive r). */
void sql_lead_repo_init(struct sql_lead_repo *r, struct db_conn *conn);
