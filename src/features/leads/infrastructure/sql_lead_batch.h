/* sql_lead_batch.h: the lead repository's deferred writes (sql_lead_repo.c).
 *
 * A worker's round writes, for every message of its batch, the message's delivery columns and
 * one or two timeline events: hundreds of one-row statements per transaction, where each costs
 * PostgreSQL far more to start than to run (its protocol messages, a plan lookup, a snapshot,
 * the locks of the table and of each of its indexes). On such a database (db_gathers_writes:
 * not SQLite, where packing the rows costs more than it saves), inside a unit of work, the
 * repository therefore keeps those rows here and writes them as two statements, all the delivery
 * updates in one and all the events in another (their rows in a JSON array, a parameter like any
 * other), when the unit of work commits, or earlier when a statement might read them (the rules are
 * the repository's) or when the rows reach LEAD_BATCH_FLUSH_BYTES.
 *
 * Nothing else changes: the events keep their order (the array's, which is the order they were
 * appended in), a failed row fails its statement and with it the unit of work, as it would have
 * at its own statement a moment earlier. A batch is tied to one connection; its rows live in an
 * arena of their own, freed once written or dropped. */
#pragma once

#include "core/err.h"
#include "core/jsonw.h"
#include "core/uuid.h"
#include "features/leads/domain/lead.h"

struct arena;
struct db_conn;

/* Rows are written once their JSON passes this size (a bound on the batch's memory). */
#define LEAD_BATCH_FLUSH_BYTES (256 * 1024)

struct lead_batch {
    struct arena *arena; /* NULL while empty */
    struct jsonw messages, events;
    int nmessages, nevents;
    char (*message_ids)[SP_UUID_LEN + 1]; /* the messages with a row here, nmessages of them */
    int ids_cap;
};

void lead_batch_init(struct lead_batch *b);
/* Keeps m's delivery columns (those of lead_repo's message_update_delivery); a second row of
 * the same message replaces the first. */
void lead_batch_message(struct lead_batch *b, const struct message *m);
void lead_batch_event(struct lead_batch *b, const struct lead_event *e);
/* 1 when message `id` has a row here (a read of it must see the row: write first). */
int lead_batch_has_message(const struct lead_batch *b, const char *id);
/* 1 when the rows have reached LEAD_BATCH_FLUSH_BYTES. */
int lead_batch_full(const struct lead_batch *b);
/* Writes the rows (at most two statements) and empties the batch, written or not. */
int lead_batch_flush(struct lead_batch *b, struct db_conn *c, struct sp_error *err);
/* Empties the batch without writing (the unit of work rolled back). */
void lead_batch_drop(struct lead_batch *b);
