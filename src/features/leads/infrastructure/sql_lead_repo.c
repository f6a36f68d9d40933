/* sql_lead_repo.c: leads, messages and events stored through the database port.
 *
 * Rows are converted to domain structs here and nowhere else; every value is a parameter. */
#include "features/leads/infrastructure/sql_lead_repo.h"

#include "core/arena.h"
#include "core/log.h"
#include "infra/db.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A second lead with an address taken fails on leads_email_norm_unique or
 * leads_phone_norm_unique (0007): SP_ECONFLICT from the driver. */
DB_STMT_SAME(SQL_LEAD_INSERT, "INSERT INTO leads (id, name, email, phone, status, created_at,"
                              " updated_at, email_norm, phone_norm, name_lower)"
                              " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
#define LEAD_COLUMNS "id, name, email, phone, status, created_at, updated_at"
DB_STMT_SAME(SQL_LEAD_GET, "SELECT " LEAD_COLUMNS " FROM leads WHERE id = $1");
/* Along leads_email_norm_unique / leads_phone_norm_unique (0007): one lead at most (the
 * ORDER BY is for a database from before, where the oldest of duplicates kept the value). */
DB_STMT_SAME(SQL_LEAD_BY_EMAIL, "SELECT " LEAD_COLUMNS " FROM leads WHERE email_norm = $1"
                                " ORDER BY seq LIMIT 1");
DB_STMT_SAME(SQL_LEAD_BY_PHONE, "SELECT " LEAD_COLUMNS " FROM leads WHERE phone_norm = $1"
                                " ORDER BY seq LIMIT 1");
DB_STMT_SAME(SQL_LEAD_STATUS, "UPDATE leads SET status = $2, updated_at = $3 WHERE id = $1");
/* The lead's row, locked until the transaction ends, if it exists. SQLite needs no lock (a
 * write transaction already excludes all others): there it is an existence check. */
DB_STMT(SQL_LEAD_LOCK, "SELECT 1 FROM leads WHERE id = $1",
        "SELECT 1 FROM leads WHERE id = $1 FOR UPDATE");
DB_STMT_SAME(SQL_LEAD_TRANSITION,
             "UPDATE leads SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2");
/* Only where the lead has no address on the channel yet: an address, once there, is never
 * replaced by one taken from a reply. */
DB_STMT_SAME(SQL_LEAD_SET_EMAIL, "UPDATE leads SET email = $2, updated_at = $3, email_norm = $4"
                                 " WHERE id = $1 AND email IS NULL");
DB_STMT_SAME(SQL_LEAD_SET_PHONE, "UPDATE leads SET phone = $2, updated_at = $3, phone_norm = $4"
                                 " WHERE id = $1 AND phone IS NULL");
/* The lead list (lead_list, 0007_unique_people.sql): newest first by (created_at, seq), a
 * keyset. $1..$3 are the window: created_at from $1 to $2, and at $2 itself only seq < $3 (the
 * position the page continues from, or the largest seq when $2 is createdBefore's bound); $4
 * the rows to read. SQLite is told its index (INDEXED BY; `+` keeps a column's terms off the
 * index), as the choice depends on parameter values its planner does not weigh; PostgreSQL
 * picks the same ones, with generic plans too (a prepared statement's plan after five runs). */
#define LIST_COLUMNS LEAD_COLUMNS ", seq"
#define LIST_WINDOW "created_at >= $1 AND created_at <= $2 AND (created_at < $2 OR seq < $3)"
#define LIST_WINDOW_UNINDEXED                                                                      \
    "+created_at >= $1 AND +created_at <= $2 AND (+created_at < $2 OR seq < $3)"
#define LIST_ORDER " ORDER BY created_at DESC, seq DESC LIMIT $4"
/* No search: along leads_by_created, or leads_by_status_created ($5 the status). */
DB_STMT(SQL_LEAD_LIST,
        "SELECT " LIST_COLUMNS
        " FROM leads INDEXED BY leads_by_created WHERE " LIST_WINDOW LIST_ORDER,
        "SELECT " LIST_COLUMNS " FROM leads WHERE " LIST_WINDOW LIST_ORDER);
DB_STMT(SQL_LEAD_LIST_STATUS,
        "SELECT " LIST_COLUMNS " FROM leads INDEXED BY leads_by_status_created"
        " WHERE status = $5 AND " LIST_WINDOW LIST_ORDER,
        "SELECT " LIST_COLUMNS " FROM leads WHERE status = $5 AND " LIST_WINDOW LIST_ORDER);
/* A search `q`: the leads whose name_lower, email_norm or phone_norm starts with its prefix
 * ($5..$10: from, to of each; NULL: not compared) among the statuses asked for ($11..$15: one, or
 * all five; NULL for the others), newest first. Each plan reads, in one statement:
 *   1. a probe: the prefix's index entries (leads_by_status_name, _email, _phone), counted up
 *      to $17 (a few pages' worth): fewer, and the prefix is rare;
 *   2. unless rare, a walk newest first that tests each lead from the index alone, up to $16
 *      entries (the budget) or $4 matches (a full page);
 *   3. if the walk found fewer (or did not run), the prefix's whole range in the same index,
 *      sorted, the newest $4 kept: a rare prefix, or one whose matches are old or few.
 * A step that must not run is given a NULL bound, an empty scan: both stores evaluate a bound
 * once before the scan (SQLite evaluates any other term row by row, after reading), and a CTE
 * read twice is materialised by both. Without a status, a walk finds a page of a prefix that one
 * lead in `budget / limit` matches, the ranges stay short otherwise: a search reads at most the
 * probe, the budget and about `limit × leads in the walk / budget` range entries (matches spread
 * over time; a prefix whose matches are all old reads its range).
 * Which walk: with prefixes of three characters or more, each column's own in its bucket
 * (0013_search_buckets.sql: the leads whose column starts with the prefix's first three
 * characters, newest first), each with its own probe and range (SQL_LEAD_LIST_BUCKETS); with a
 * shorter one, the list's (leads_by_created, or leads_by_status_created with $11 the one
 * status), testing the three prefixes on each lead's row (SQL_LEAD_LIST_WALK[_STATUS]).
 * On PostgreSQL each range is read below an OFFSET 0 fence, so that only it can pick the index
 * (a generic plan would otherwise weigh the window against leads_by_created), and the bounds
 * are hidden from the planner in InitPlans (LIST_PG_HIDDEN): from their values a custom plan (a
 * prepared statement's first runs) may pick the unique index and read every lead's row for its
 * status; without them it plans as the generic plan does, these indexes alone. A walk's test is
 * in its select list, where the planner does not weigh it. */
_Static_assert(LEAD_STATUS_DEAD == 4, "the search statements name five statuses");
#define LIST_STATUSES "status IN ($11, $12, $13, $14, $15)"
#define LIST_MATCH                                                                                 \
    "((name_lower >= $5 AND name_lower < $6) OR (email_norm >= $7 AND email_norm < $8)"            \
    " OR (phone_norm >= $9 AND phone_norm < $10))"
#define LIST_PG_HIDDEN(v) "(SELECT " v ")"
/* The guards: a step runs when its bound is the value, not NULL. */
#define LIST_IF_COMMON(probe, v) "(CASE WHEN (SELECT n FROM " probe ") >= $17 THEN " v " END)"
#define LIST_IF_SHORT(walk, v) "(CASE WHEN (SELECT count(*) FROM " walk ") < $4 THEN " v " END)"
/* 1. The probe of one column (`index` is SQLite's INDEXED BY clause, or ""). */
#define LIST_PROBE(cte, index, col, from, to)                                                      \
    cte " AS (SELECT count(*) AS n FROM (SELECT 1 FROM leads" index " WHERE " LIST_STATUSES        \
        " AND " col " >= " from " AND " col " < " to " LIMIT $17) AS p)"
/* 3. The range of one column; rows come out newest first. */
#define LIST_SQLITE_RANGE(index, col, from, to)                                                    \
    "SELECT seq FROM (SELECT seq FROM leads INDEXED BY " index " WHERE " LIST_STATUSES " AND " col \
    " >= " from " AND " col " < " to " AND " LIST_WINDOW_UNINDEXED LIST_ORDER ")"
#define LIST_PG_RANGE(col, from, to)                                                               \
    "SELECT seq FROM (SELECT seq FROM (SELECT seq, created_at FROM leads WHERE " LIST_STATUSES     \
    " AND " col " >= " from " AND " col " < " to " OFFSET 0) AS r WHERE " LIST_WINDOW LIST_ORDER   \
    ") AS " col
/* 2. A walk: `source` is FROM and WHERE up to the window, `test` the match. SQLite reads a
 * subquery's rows in its ORDER BY (a co-routine) and would sort them again for an outer one,
 * reading the whole budget first: there `order` is "". */
#define LIST_WALK(cte, source, test, order)                                                        \
    cte " AS (SELECT seq FROM (SELECT seq, created_at, " test " AS m FROM leads" source            \
        " ORDER BY created_at DESC, seq DESC LIMIT $16) AS w WHERE m" order " LIMIT $4)"
#define LIST_PG_ORDER " ORDER BY created_at DESC, seq DESC"

/* The bucket walk of one column: its test (the prefix, and the status: $18, the one asked for,
 * NULL for any; `any` is $18 as PostgreSQL needs it typed) and its source. */
#define LIST_BUCKET_TEST(col, from, to, any)                                                       \
    "(" col " >= " from " AND " col " < " to " AND (" any " IS NULL OR status = $18))"
#define LIST_BUCKET_SOURCE(index, col, bucket)                                                     \
    index " WHERE substr(" col ", 1, 3) = " bucket " AND " LIST_WINDOW
/* One column's probe and walk (CTEs x"p" and x"w"), and its walk's rows and range. */
#define LIST_SQLITE_COLUMN(x, status_index, bucket_index, col, from, to)                           \
    LIST_PROBE(x "p", " INDEXED BY " status_index, col, from, to)                                  \
    ", " LIST_WALK(x "w",                                                                          \
                   LIST_BUCKET_SOURCE(" INDEXED BY " bucket_index, col,                            \
                                      LIST_IF_COMMON(x "p", "substr(" from ", 1, 3)")),            \
                   LIST_BUCKET_TEST(col, from, to, "$18"), "")
#define LIST_SQLITE_COLUMN_ROWS(x, status_index, col, from, to)                                    \
    "SELECT seq FROM " x                                                                           \
    "w UNION ALL " LIST_SQLITE_RANGE(status_index, col, LIST_IF_SHORT(x "w", from), to)
#define LIST_SQLITE_N                                                                              \
    LIST_SQLITE_COLUMN("n", "leads_by_status_name", "leads_by_name_bucket", "name_lower", "$5",    \
                       "$6")
#define LIST_SQLITE_E                                                                              \
    LIST_SQLITE_COLUMN("e", "leads_by_status_email", "leads_by_email_bucket", "email_norm", "$7",  \
                       "$8")
#define LIST_SQLITE_P                                                                              \
    LIST_SQLITE_COLUMN("p", "leads_by_status_phone", "leads_by_phone_bucket", "phone_norm", "$9",  \
                       "$10")
#define LIST_SQLITE_N_ROWS                                                                         \
    LIST_SQLITE_COLUMN_ROWS("n", "leads_by_status_name", "name_lower", "$5", "$6")
#define LIST_SQLITE_E_ROWS                                                                         \
    LIST_SQLITE_COLUMN_ROWS("e", "leads_by_status_email", "email_norm", "$7", "$8")
#define LIST_SQLITE_P_ROWS                                                                         \
    LIST_SQLITE_COLUMN_ROWS("p", "leads_by_status_phone", "phone_norm", "$9", "$10")
#define LIST_BUCKETS_SQLITE                                                                        \
    "WITH " LIST_SQLITE_N ", " LIST_SQLITE_E ", " LIST_SQLITE_P " SELECT " LIST_COLUMNS            \
    " FROM leads NOT INDEXED WHERE seq IN (" LIST_SQLITE_N_ROWS " UNION ALL " LIST_SQLITE_E_ROWS   \
    " UNION ALL " LIST_SQLITE_P_ROWS ")" LIST_ORDER
#define LIST_PG_COLUMN(x, col, from, to)                                                           \
    LIST_PROBE(x "p", "", col, LIST_PG_HIDDEN(from "::text"), LIST_PG_HIDDEN(to "::text"))         \
    ", " LIST_WALK(                                                                                \
        x "w",                                                                                     \
        LIST_BUCKET_SOURCE("", col,                                                                \
                           LIST_PG_HIDDEN(LIST_IF_COMMON(x "p", "substr(" from "::text, 1, 3)"))), \
        LIST_BUCKET_TEST(col, from, to, "$18::text"), LIST_PG_ORDER)
#define LIST_PG_RANGE_IF(walk, col, from, to)                                                      \
    LIST_PG_RANGE(col, LIST_PG_HIDDEN(LIST_IF_SHORT(walk, from "::text")),                         \
                  LIST_PG_HIDDEN(to "::text"))
#define LIST_PG_N LIST_PG_COLUMN("n", "name_lower", "$5", "$6")
#define LIST_PG_E LIST_PG_COLUMN("e", "email_norm", "$7", "$8")
#define LIST_PG_P LIST_PG_COLUMN("p", "phone_norm", "$9", "$10")
#define LIST_PG_N_ROWS                                                                             \
    "SELECT seq FROM nw UNION ALL " LIST_PG_RANGE_IF("nw", "name_lower", "$5", "$6")
#define LIST_PG_E_ROWS                                                                             \
    "SELECT seq FROM ew UNION ALL " LIST_PG_RANGE_IF("ew", "email_norm", "$7", "$8")
#define LIST_PG_P_ROWS                                                                             \
    "SELECT seq FROM pw UNION ALL " LIST_PG_RANGE_IF("pw", "phone_norm", "$9", "$10")
#define LIST_BUCKETS_PG                                                                            \
    "WITH " LIST_PG_N ", " LIST_PG_E ", " LIST_PG_P " SELECT " LIST_COLUMNS                        \
    " FROM leads WHERE seq IN (" LIST_PG_N_ROWS " UNION ALL " LIST_PG_E_ROWS                       \
    " UNION ALL " LIST_PG_P_ROWS ")" LIST_ORDER
DB_STMT(SQL_LEAD_LIST_BUCKETS, LIST_BUCKETS_SQLITE, LIST_BUCKETS_PG);

/* The list's walk: one probe of the three ranges together (CTE p), the walk testing the three
 * prefixes on each lead's row (CTE w: `index` and `status` pick the list's index), the three
 * ranges. */
#define LIST_SHORT_SOURCE(index, status, upto)                                                     \
    index " WHERE " status "created_at >= $1 AND created_at <= " upto                              \
          " AND (created_at < $2 OR seq < $3)"
#define LIST_SQLITE_PROBES                                                                         \
    "p AS (SELECT count(*) AS n FROM (SELECT 1 FROM leads INDEXED BY leads_by_status_name "        \
    "WHERE " LIST_STATUSES                                                                         \
    " AND name_lower >= $5 AND name_lower < $6 UNION ALL SELECT 1 FROM leads"                      \
    " INDEXED BY leads_by_status_email WHERE " LIST_STATUSES " AND email_norm >= $7 AND"           \
    " email_norm < $8 UNION ALL SELECT 1 FROM leads INDEXED BY leads_by_status_phone "             \
    "WHERE " LIST_STATUSES " AND phone_norm >= $9 AND phone_norm < $10 LIMIT $17))"
#define LIST_SQLITE_SHORT_WALK(index, status)                                                      \
    LIST_WALK("w", LIST_SHORT_SOURCE(" INDEXED BY " index, status, LIST_IF_COMMON("p", "$2")),     \
              LIST_MATCH, "")
#define LIST_SQLITE_SHORT_N                                                                        \
    LIST_SQLITE_RANGE("leads_by_status_name", "name_lower", LIST_IF_SHORT("w", "$5"), "$6")
#define LIST_SQLITE_SHORT_E                                                                        \
    LIST_SQLITE_RANGE("leads_by_status_email", "email_norm", LIST_IF_SHORT("w", "$7"), "$8")
#define LIST_SQLITE_SHORT_P                                                                        \
    LIST_SQLITE_RANGE("leads_by_status_phone", "phone_norm", LIST_IF_SHORT("w", "$9"), "$10")
#define LIST_SQLITE_SHORT_ROWS                                                                     \
    "SELECT seq FROM w UNION ALL " LIST_SQLITE_SHORT_N " UNION ALL " LIST_SQLITE_SHORT_E           \
    " UNION ALL " LIST_SQLITE_SHORT_P
#define LIST_SQLITE_SHORT(index, status)                                                           \
    "WITH " LIST_SQLITE_PROBES ", " LIST_SQLITE_SHORT_WALK(                                        \
        index, status) " SELECT " LIST_COLUMNS                                                     \
                       " FROM leads NOT INDEXED WHERE seq IN (" LIST_SQLITE_SHORT_ROWS             \
                       ")" LIST_ORDER
#define LIST_PG_PROBES                                                                             \
    "p AS (SELECT count(*) AS n FROM (SELECT 1 FROM leads WHERE " LIST_STATUSES                    \
    " AND name_lower >= (SELECT $5::text) AND name_lower < (SELECT $6::text) UNION ALL"            \
    " SELECT 1 FROM leads WHERE " LIST_STATUSES " AND email_norm >= (SELECT $7::text) AND"         \
    " email_norm < (SELECT $8::text) UNION ALL SELECT 1 FROM leads WHERE " LIST_STATUSES           \
    " AND phone_norm >= (SELECT $9::text) AND phone_norm < (SELECT $10::text) LIMIT $17) AS m)"
#define LIST_PG_SHORT_UPTO LIST_PG_HIDDEN(LIST_IF_COMMON("p", "$2::timestamptz"))
#define LIST_PG_SHORT_WALK(status)                                                                 \
    LIST_WALK("w", LIST_SHORT_SOURCE("", status, LIST_PG_SHORT_UPTO), LIST_MATCH, LIST_PG_ORDER)
#define LIST_PG_SHORT_ROWS                                                                         \
    "SELECT seq FROM w UNION ALL " LIST_PG_RANGE_IF(                                               \
        "w", "name_lower", "$5",                                                                   \
        "$6") " UNION ALL " LIST_PG_RANGE_IF("w", "email_norm", "$7",                              \
                                             "$8") " UNION ALL " LIST_PG_RANGE_IF("w",             \
                                                                                  "phone_norm",    \
                                                                                  "$9", "$10")
#define LIST_PG_SHORT(status)                                                                      \
    "WITH " LIST_PG_PROBES                                                                         \
    ", " LIST_PG_SHORT_WALK(status) " SELECT " LIST_COLUMNS                                        \
                                    " FROM leads WHERE seq IN (" LIST_PG_SHORT_ROWS ")" LIST_ORDER
DB_STMT(SQL_LEAD_LIST_WALK, LIST_SQLITE_SHORT("leads_by_created", ""), LIST_PG_SHORT(""));
DB_STMT(SQL_LEAD_LIST_WALK_STATUS,
        LIST_SQLITE_SHORT("leads_by_status_created", "status = $11 AND "),
        LIST_PG_SHORT("status = $11 AND "));
/* The probe's cap and a bucket walk's budget, in index entries per row asked for. A larger cap
 * sends more prefixes straight to their range, but every common prefix pays for it: at 24 per
 * row PostgreSQL's searches took a third more time in all (1,000,000 leads, scripts/bench.sh). */
#define LIST_PROBE_PER_ROW 4
#define LIST_BUDGET_PER_ROW 24
/* The number of leads, near enough for the plan (leads are never deleted), at the cost of one
 * index probe. */
DB_STMT_SAME(SQL_LEAD_LIST_SIZE, "SELECT max(seq) FROM leads");
DB_STMT_SAME(SQL_MESSAGE_INSERT,
             "INSERT INTO messages (id, lead_id, channel, direction, kind, status, attempts,"
             " last_error, provider_id, recipient, channel_message, sent_at, created_at,"
             " updated_at)"
             " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)");
#define MESSAGE_COLUMNS                                                                            \
    "id, lead_id, channel, direction, kind, status, attempts, last_error, provider_id,"            \
    " recipient, channel_message, sent_at, created_at, updated_at"
DB_STMT_SAME(SQL_MESSAGE_GET, "SELECT " MESSAGE_COLUMNS " FROM messages WHERE id = $1");
/* Along messages_by_provider_id (0006). */
DB_STMT_SAME(SQL_MESSAGE_BY_PROVIDER, "SELECT " MESSAGE_COLUMNS " FROM messages"
                                      " WHERE provider_id = $1 AND channel = $2"
                                      " AND direction = $3 ORDER BY seq DESC LIMIT 1");
/* On PostgreSQL an insert of a key another transaction holds uncommitted waits for it: DO
 * NOTHING once it commits, an insert if it rolls back. SQLite runs one writer at a time. */
DB_STMT_SAME(SQL_RECEIPT_CLAIM, "INSERT INTO inbound_receipts (source, key, created_at)"
                                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING");
DB_STMT_SAME(SQL_RECEIPT_PRUNE,
             "DELETE FROM inbound_receipts WHERE source = $1 AND created_at < $2");
DB_STMT_SAME(SQL_MESSAGE_LIST,
             "SELECT " MESSAGE_COLUMNS " FROM messages WHERE lead_id = $1 ORDER BY seq");
DB_STMT_SAME(SQL_MESSAGE_DELIVERY,
             "UPDATE messages SET status = $2, attempts = $3, last_error = $4, provider_id = $5,"
             " sent_at = $6, updated_at = $7 WHERE id = $1");
DB_STMT_SAME(SQL_EVENT_INSERT,
             "INSERT INTO lead_events (id, lead_id, type, correlation_ids, payload, created_at)"
             " VALUES ($1, $2, $3, $4, $5, $6)");
DB_STMT_SAME(SQL_EVENT_LIST, "SELECT id, lead_id, type, correlation_ids, payload, created_at"
                             " FROM lead_events WHERE lead_id = $1 ORDER BY seq");
/* Paging (lead_repo.h, struct lead_page_spec): first the positions and content sizes of at
 * most max + 1 items, newest first (numbers only: no contents are loaded), then the contents of
 * the ones that fit, by position range. Sizes are the bytes the text reads back as. */
DB_STMT_SAME(SQL_MESSAGE_CHANNELS, "SELECT channel FROM messages WHERE lead_id = $1"
                                   " GROUP BY channel ORDER BY MIN(seq)");
/* Newest first along messages_by_lead_channel; a lead's replies are few next to its sends. */
DB_STMT_SAME(SQL_MESSAGE_LAST_INBOUND, "SELECT created_at FROM messages"
                                       " WHERE lead_id = $1 AND channel = $2"
                                       " AND direction = 'inbound' ORDER BY seq DESC LIMIT 1");
DB_STMT(SQL_MESSAGE_SIZES,
        "SELECT seq, length(CAST(channel_message AS BLOB)) FROM messages"
        " WHERE lead_id = $1 AND channel = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
        "SELECT seq, octet_length(channel_message::text) FROM messages"
        " WHERE lead_id = $1 AND channel = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4");
DB_STMT_SAME(SQL_MESSAGE_RANGE, "SELECT " MESSAGE_COLUMNS " FROM messages"
                                " WHERE lead_id = $1 AND channel = $2 AND seq >= $3"
                                " AND seq <= $4 ORDER BY seq");
DB_STMT(SQL_EVENT_SIZES,
        "SELECT seq, length(CAST(payload AS BLOB)) + length(CAST(correlation_ids AS BLOB))"
        " FROM lead_events WHERE lead_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        "SELECT seq, octet_length(payload::text) + octet_length(correlation_ids::text)"
        " FROM lead_events WHERE lead_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3");
DB_STMT_SAME(SQL_EVENT_RANGE, "SELECT id, lead_id, type, correlation_ids, payload, created_at"
                              " FROM lead_events WHERE lead_id = $1 AND seq >= $2"
                              " AND seq <= $3 ORDER BY seq");

/* Do not contact (0008): at most one row per lead and channel; the first opt-out stands. */
DB_STMT_SAME(SQL_OPT_OUT_LIST, "SELECT channel, reason, source, created_at FROM lead_opt_outs"
                               " WHERE lead_id = $1 ORDER BY channel");
DB_STMT_SAME(SQL_OPT_OUT_INSERT,
             "INSERT INTO lead_opt_outs (lead_id, channel, reason, source, created_at)"
             " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING");
DB_STMT_SAME(SQL_OPT_OUT_DELETE, "DELETE FROM lead_opt_outs WHERE lead_id = $1 AND channel = $2");

/* The event feed (lead_repo.h, struct lead_feed_fence). SQLite: the last committed position
 * is settled (writers commit one at a time, in position order), and there are no writers to
 * wait for (a statement with no text returns no rows). PostgreSQL (migration 0012): every
 * transaction inserting events holds the shared advisory lock (1397768516, 1) from before it
 * takes its first position to its end. FEED_TOP is the last position handed out; the lock's
 * holders listed after it (FEED_WRITERS, by virtual transaction id) include every transaction
 * that may still commit an event at or below it; once none of them holds the lock any more
 * (FEED_WAITING), that position is settled. A transaction releases its locks only after its
 * commit is visible, so the events below it are then all readable. */
#define FEED_LOCK_HOLDERS                                                                          \
    " FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 1397768516"              \
    " AND objid = 1 AND objsubid = 2"                                                              \
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
DB_STMT(SQL_FEED_TOP, "SELECT coalesce(max(seq), 0) FROM lead_events",
        "SELECT coalesce(pg_sequence_last_value('lead_events_seq_seq'), 0)");
DB_STMT(SQL_FEED_WRITERS, NULL, "SELECT array_agg(virtualtransaction)::text" FEED_LOCK_HOLDERS);
DB_STMT(SQL_FEED_WAITING, NULL,
        "SELECT count(*)" FEED_LOCK_HOLDERS " AND virtualtransaction = ANY ($1::text[])");
#define FEED_COLUMNS "id, lead_id, type, correlation_ids, payload, created_at, seq"
/* Along the primary key, or lead_events_by_lead (lead_id, seq) for one lead. */
DB_STMT_SAME(SQL_FEED_PAGE, "SELECT " FEED_COLUMNS " FROM lead_events"
                            " WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3");
DB_STMT_SAME(SQL_FEED_PAGE_LEAD, "SELECT " FEED_COLUMNS " FROM lead_events"
                                 " WHERE lead_id = $1 AND seq > $2 AND seq <= $3"
                                 " ORDER BY seq LIMIT $4");
DB_STMT_SAME(SQL_EVENT_POSITION, "SELECT seq FROM lead_events WHERE id = $1");

static struct db_conn *
conn_of(struct lead_repo *r)
{
    return ((struct sql_lead_repo *)r)->conn;
}

static struct sql_lead_repo *
self_of(struct lead_repo *r)
{
    return (struct sql_lead_repo *)r;
}

/* Whether a write may wait in the batch: on a database that gains from it (PostgreSQL), inside
 * the repo's own unit of work, at its level (a savepoint opened by someone else below it gets
 * its writes at once). */
static int
batching(struct lead_repo *r)
{
    struct sql_lead_repo *s = self_of(r);
    return s->batch_depth > 0 && db_tx_depth(s->conn) == s->batch_depth &&
           db_gathers_writes(s->conn);
}

/* Writes the batch's rows. Every statement that reads messages or lead_events runs after it
 * (the rows must be there for it to see); the others (writes of new messages, leads, opt-outs,
 * receipts, the queue's tables) need not wait, so that a worker's round or a capture keeps its
 * rows to the end. */
static int
settle(struct lead_repo *r, struct sp_error *err)
{
    return lead_batch_flush(&self_of(r)->batch, conn_of(r), err);
}

static int
corrupt(struct sp_error *err, const char *what)
{
    return sp_error_set(err, SP_EINTERNAL, "database", "unexpected value in %s", what);
}

/* A unit of work inside another (a savepoint) writes the outer one's rows first: they are not
 * its to undo. */
static int
r_begin(struct lead_repo *r, struct sp_error *err)
{
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_begin(conn_of(r), err);
    self_of(r)->batch_depth = rc == SP_OK ? db_tx_depth(conn_of(r)) : 0;
    return rc;
}

static int
r_commit(struct lead_repo *r, struct sp_error *err)
{
    int rc = settle(r, err);

    self_of(r)->batch_depth = 0;
    return rc == SP_OK ? db_commit(conn_of(r), err) : rc; /* else the caller rolls back */
}

static void
r_rollback(struct lead_repo *r)
{
    lead_batch_drop(&self_of(r)->batch);
    self_of(r)->batch_depth = 0;
    db_rollback(conn_of(r));
}

static int
r_read_begin(struct lead_repo *r, struct sp_error *err)
{
    return db_begin_read(conn_of(r), err);
}

static void
r_read_end(struct lead_repo *r)
{
    db_end_read(conn_of(r));
}

static int
r_ping(struct lead_repo *r, struct sp_error *err)
{
    return db_ping(conn_of(r), err); /* the driver's: it knows what "writable" takes */
}

static int
r_lead_insert(struct lead_repo *r, const struct lead *l, struct sp_error *err)
{
    char email_norm[LEAD_NORM_MAX], phone_norm[LEAD_NORM_MAX], name_lower[LEAD_NORM_MAX];
    const char *folded = lead_name_fold(l->name, name_lower, sizeof(name_lower));

    if (folded == NULL)
        return sp_error_set(err, SP_ETOOLARGE, "name", "name is too long to store");
    return db_exec(conn_of(r), &SQL_LEAD_INSERT,
                   DB_ARGS(db_text(l->id), db_text(l->name), db_text(l->email), db_text(l->phone),
                           db_text(lead_status_name(l->status)), db_time(l->created_at),
                           db_time(l->updated_at),
                           db_text(lead_email_norm(l->email, email_norm, sizeof(email_norm))),
                           db_text(lead_phone_norm(l->phone, phone_norm, sizeof(phone_norm))),
                           db_text(folded)),
                   NULL, err);
}

static void
copy_id(char *dst, const char *src)
{
    snprintf(dst, SP_UUID_LEN + 1, "%s", src ? src : "");
}

/* Row i of LEAD_COLUMNS. */
static int
row_to_lead(const struct db_rows *rows, int i, struct lead *out, struct sp_error *err)
{
    memset(out, 0, sizeof(*out));
    copy_id(out->id, db_cell(rows, i, 0));
    out->name = db_cell(rows, i, 1);
    out->email = db_cell(rows, i, 2);
    out->phone = db_cell(rows, i, 3);
    if (lead_status_parse(db_cell(rows, i, 4), &out->status) != 0)
        return corrupt(err, "leads.status");
    out->created_at = db_cell_int(rows, i, 5);
    out->updated_at = db_cell_int(rows, i, 6);
    return SP_OK;
}

static int
r_lead_get(struct lead_repo *r, const char *id, struct arena *a, struct lead *out,
           struct sp_error *err)
{
    struct db_rows rows;
    int rc = db_query(conn_of(r), &SQL_LEAD_GET, DB_ARGS(db_text(id)), a, &rows, err);

    if (rc != SP_OK)
        return rc;
    if (rows.nrows == 0)
        return sp_error_set(err, SP_ENOTFOUND, "id", "Lead %s not found", id);
    return row_to_lead(&rows, 0, out, err);
}

static int
r_lead_find_by_address(struct lead_repo *r, enum channel c, const char *norm, struct arena *a,
                       struct lead *out, struct sp_error *err)
{
    struct db_rows rows;
    int rc;

    if (c != CHANNEL_EMAIL && c != CHANNEL_WHATSAPP)
        return sp_error_set(err, SP_EINVAL, "channel", "channel %s has no lead address",
                            channel_name(c));
    rc = db_query(conn_of(r), c == CHANNEL_EMAIL ? &SQL_LEAD_BY_EMAIL : &SQL_LEAD_BY_PHONE,
                  DB_ARGS(db_text(norm)), a, &rows, err);
    if (rc != SP_OK)
        return rc;
    if (rows.nrows == 0)
        return sp_error_set(err, SP_ENOTFOUND, "from", "no lead with that %s address",
                            channel_name(c));
    return row_to_lead(&rows, 0, out, err);
}

/* The end of a prefix's range: every text starting with `prefix` sorts below prefix followed
 * by U+10FFFF in byte order (UTF-8 keeps code point order), the last code point. NULL stays
 * NULL. */
static const char *
range_end(struct arena *a, const char *prefix)
{
    return prefix ? arena_printf(a, "%s\xf4\x8f\xbf\xbf", prefix) : NULL;
}

/* floor(sqrt(v)) for v >= 0. */
static int64_t
isqrt(int64_t v)
{
    int64_t x = v, y = (x + 1) / 2;

    while (y < x) {
        x = y;
        y = (x + v / x) / 2;
    }
    return x;
}

/* Whether a prefix can use its bucket: NULL (not compared), or three characters or more (a
 * character: a byte that does not continue a UTF-8 sequence; the prefixes are valid UTF-8, as
 * substr counts them in both stores). */
static int
bucketable(const char *prefix)
{
    int chars = 0;

    for (const char *p = prefix; p != NULL && *p != '\0' && chars < 3; p++)
        chars += ((unsigned char)*p & 0xc0) != 0x80;
    return prefix == NULL || chars >= 3;
}

/* A search's page (the statements above): the bucket walks when every prefix has one, else
 * the list's walk, whose budget balances the walk against the ranges it falls back to: about
 * sqrt(limit × leads) entries each at most. */
static int
list_search(struct db_conn *c, const struct lead_list_spec *spec, int64_t lo, int64_t hi,
            int64_t hs, struct arena *a, struct db_rows *rows, struct sp_error *err)
{
    const char *status = spec->has_status ? lead_status_name(spec->status) : NULL;
    int64_t limit = (int64_t)spec->max + 1, budget = limit * LIST_BUDGET_PER_ROW;
    int64_t probe = limit * LIST_PROBE_PER_ROW;
    const struct db_stmt *st = &SQL_LEAD_LIST_BUCKETS;
    const char *const b[6] = {
        spec->name_prefix,  range_end(a, spec->name_prefix),
        spec->email_prefix, range_end(a, spec->email_prefix),
        spec->phone_prefix, range_end(a, spec->phone_prefix),
    };
    const char *s[5] = {status, NULL, NULL, NULL, NULL};

    for (int i = 0; status == NULL && i < 5; i++)
        s[i] = lead_status_name((enum lead_status)i);
    if (!bucketable(b[0]) || !bucketable(b[2]) || !bucketable(b[4])) {
        int rc = db_query(c, &SQL_LEAD_LIST_SIZE, DB_NOARGS, a, rows, err);
        int64_t leads = rc == SP_OK && rows->nrows > 0 ? db_cell_int(rows, 0, 0) : 0;

        if (rc != SP_OK)
            return rc;
        budget = isqrt(limit * (leads > 0 ? leads : 1)) + 1;
        st = status ? &SQL_LEAD_LIST_WALK_STATUS : &SQL_LEAD_LIST_WALK;
    }
    {
        /* $18, the status the bucket walks test (NULL for any), is the last: the list's walk,
         * which has no use for it, is given the 17 before it (PostgreSQL refuses a parameter a
         * statement does not name). */
        const struct db_arg args[] = {
            db_time(lo),    db_time(hi),   db_int(hs),      db_int(limit), db_text(b[0]),
            db_text(b[1]),  db_text(b[2]), db_text(b[3]),   db_text(b[4]), db_text(b[5]),
            db_text(s[0]),  db_text(s[1]), db_text(s[2]),   db_text(s[3]), db_text(s[4]),
            db_int(budget), db_int(probe), db_text(status),
        };
        int n = (int)(sizeof(args) / sizeof(args[0]));

        return db_query(c, st, args, st == &SQL_LEAD_LIST_BUCKETS ? n : n - 1, a, rows, err);
    }
}

static int
r_lead_list(struct lead_repo *r, const struct lead_list_spec *spec, struct arena *a,
            struct lead **out, struct lead_list_page *page, struct sp_error *err)
{
    struct db_conn *c = conn_of(r);
    const char *status = spec->has_status ? lead_status_name(spec->status) : NULL;
    int64_t lo = spec->created_min, hi = spec->created_max, hs = INT64_MAX;
    int64_t limit = (int64_t)spec->max + 1; /* one more: is there a next page? */
    struct db_rows rows;
    int rc;

    *out = NULL;
    memset(page, 0, sizeof(*page));
    if (spec->after.seq > 0 && spec->after.created_at <= hi) {
        hi = spec->after.created_at;
        hs = spec->after.seq;
    }
    if (lo > hi)
        return SP_OK;
    if (spec->name_prefix != NULL || spec->email_prefix != NULL || spec->phone_prefix != NULL)
        rc = list_search(c, spec, lo, hi, hs, a, &rows, err);
    else if (status == NULL)
        rc = db_query(c, &SQL_LEAD_LIST,
                      DB_ARGS(db_time(lo), db_time(hi), db_int(hs), db_int(limit)), a, &rows, err);
    else
        rc = db_query(c, &SQL_LEAD_LIST_STATUS,
                      DB_ARGS(db_time(lo), db_time(hi), db_int(hs), db_int(limit), db_text(status)),
                      a, &rows, err);
    if (rc != SP_OK)
        return rc;
    page->n = rows.nrows < spec->max ? rows.nrows : spec->max;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(page->n ? page->n : 1));
    for (int i = 0; i < page->n; i++) {
        rc = row_to_lead(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    if (rows.nrows > spec->max) {
        page->has_next = 1;
        page->next.created_at = db_cell_int(&rows, page->n - 1, 5);
        page->next.seq = db_cell_int(&rows, page->n - 1, 7);
    }
    return SP_OK;
}

static int
r_lead_update_status(struct lead_repo *r, const char *id, enum lead_status s, int64_t now,
                     struct sp_error *err)
{
    int64_t changes = 0;
    int rc =
        db_exec(conn_of(r), &SQL_LEAD_STATUS,
                DB_ARGS(db_text(id), db_text(lead_status_name(s)), db_time(now)), &changes, err);
    if (rc == SP_OK && changes == 0)
        rc = sp_error_set(err, SP_ENOTFOUND, "id", "Lead %s not found", id);
    return rc;
}

static int
r_lead_lock(struct lead_repo *r, const char *id, struct sp_error *err)
{
    int64_t found = 0;
    int rc = db_query_count(conn_of(r), &SQL_LEAD_LOCK, DB_ARGS(db_text(id)), &found, err);

    if (rc == SP_OK && found == 0)
        rc = sp_error_set(err, SP_ENOTFOUND, "id", "Lead %s not found", id);
    return rc;
}

static int
r_lead_transition(struct lead_repo *r, const char *id, enum lead_status from, enum lead_status to,
                  int64_t now, int *changed, struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(conn_of(r), &SQL_LEAD_TRANSITION,
                     DB_ARGS(db_text(id), db_text(lead_status_name(from)),
                             db_text(lead_status_name(to)), db_time(now)),
                     &changes, err);
    *changed = rc == SP_OK && changes > 0;
    return rc;
}

static int
r_lead_set_address(struct lead_repo *r, const char *id, enum channel c, const char *address,
                   int64_t now, int *changed, struct sp_error *err)
{
    char norm[LEAD_NORM_MAX];
    int64_t changes = 0;
    int rc;

    *changed = 0;
    if (c != CHANNEL_EMAIL && c != CHANNEL_WHATSAPP)
        return sp_error_set(err, SP_EINVAL, "channel", "channel %s has no lead address",
                            channel_name(c));
    rc = db_exec(conn_of(r), c == CHANNEL_EMAIL ? &SQL_LEAD_SET_EMAIL : &SQL_LEAD_SET_PHONE,
                 DB_ARGS(db_text(id), db_text(address), db_time(now),
                         db_text(lead_address_norm(c, address, norm, sizeof(norm)))),
                 &changes, err);
    *changed = rc == SP_OK && changes > 0;
    return rc;
}

/* A new message need not wait for the batch: nothing kept back touches it (the updates are of
 * stored messages, events reference leads), and the seq of one table orders nothing of the
 * other. A capture's events thus go out as one statement. */
static int
r_message_insert(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    return db_exec(conn_of(r), &SQL_MESSAGE_INSERT,
                   DB_ARGS(db_text(m->id), db_text(m->lead_id), db_text(channel_name(m->channel)),
                           db_text(message_direction_name(m->direction)),
                           db_text(message_kind_name(m->kind)),
                           db_text(message_status_name(m->status)), db_int(m->attempts),
                           db_text(m->last_error), db_text(m->provider_id), db_text(m->recipient),
                           db_text(m->channel_message), db_time_or_null(m->sent_at),
                           db_time(m->created_at), db_time(m->updated_at)),
                   NULL, err);
}

static int
row_to_message(const struct db_rows *rows, int i, struct message *m, struct sp_error *err)
{
    memset(m, 0, sizeof(*m));
    copy_id(m->id, db_cell(rows, i, 0));
    copy_id(m->lead_id, db_cell(rows, i, 1));
    if (channel_parse(db_cell(rows, i, 2), &m->channel) != 0 ||
        message_direction_parse(db_cell(rows, i, 3), &m->direction) != 0 ||
        message_kind_parse(db_cell(rows, i, 4), &m->kind) != 0 ||
        message_status_parse(db_cell(rows, i, 5), &m->status) != 0)
        return corrupt(err, "messages");
    m->attempts = (int)db_cell_int(rows, i, 6);
    m->last_error = db_cell(rows, i, 7);
    m->provider_id = db_cell(rows, i, 8);
    m->recipient = db_cell(rows, i, 9);
    m->channel_message = db_cell(rows, i, 10);
    m->sent_at = db_cell_int(rows, i, 11);
    m->created_at = db_cell_int(rows, i, 12);
    m->updated_at = db_cell_int(rows, i, 13);
    return SP_OK;
}

static int
r_message_get(struct lead_repo *r, const char *id, struct arena *a, struct message *out,
              struct sp_error *err)
{
    struct db_rows rows;
    int rc = lead_batch_has_message(&self_of(r)->batch, id) ? settle(r, err) : SP_OK;

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_MESSAGE_GET, DB_ARGS(db_text(id)), a, &rows, err);

    if (rc != SP_OK)
        return rc;
    if (rows.nrows == 0)
        return sp_error_set(err, SP_ENOTFOUND, "messageId", "message %s not found", id);
    return row_to_message(&rows, 0, out, err);
}

static int
r_message_find_by_provider(struct lead_repo *r, enum channel c, enum message_direction d,
                           const char *provider_id, struct arena *a, struct message *out,
                           struct sp_error *err)
{
    struct db_rows rows;
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_MESSAGE_BY_PROVIDER,
                      DB_ARGS(db_text(provider_id), db_text(channel_name(c)),
                              db_text(message_direction_name(d))),
                      a, &rows, err);

    if (rc != SP_OK)
        return rc;
    if (rows.nrows == 0)
        return sp_error_set(err, SP_ENOTFOUND, "providerId", "no %s message with that id",
                            channel_name(c));
    return row_to_message(&rows, 0, out, err);
}

static int
r_receipt_claim(struct lead_repo *r, const char *source, const char *key, int64_t now, int *fresh,
                struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(conn_of(r), &SQL_RECEIPT_CLAIM,
                     DB_ARGS(db_text(source), db_text(key), db_time(now)), &changes, err);

    *fresh = rc == SP_OK && changes > 0;
    return rc;
}

static int
r_receipt_prune(struct lead_repo *r, const char *source, int64_t before, struct sp_error *err)
{
    return db_exec(conn_of(r), &SQL_RECEIPT_PRUNE, DB_ARGS(db_text(source), db_time(before)), NULL,
                   err);
}

/* In the batch inside a unit of work; a second update of one message writes the first. */
static int
r_message_update_delivery(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    struct lead_batch *b = &self_of(r)->batch;
    int rc = SP_OK;

    if (!batching(r))
        return db_exec(conn_of(r), &SQL_MESSAGE_DELIVERY,
                       DB_ARGS(db_text(m->id), db_text(message_status_name(m->status)),
                               db_int(m->attempts), db_text(m->last_error), db_text(m->provider_id),
                               db_time_or_null(m->sent_at), db_time(m->updated_at)),
                       NULL, err);
    if (lead_batch_has_message(b, m->id))
        rc = settle(r, err);
    if (rc == SP_OK)
        lead_batch_message(b, m);
    return rc == SP_OK && lead_batch_full(b) ? settle(r, err) : rc;
}

static int
r_message_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct message **out,
               int *n, struct sp_error *err)
{
    struct db_rows rows;
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_MESSAGE_LIST, DB_ARGS(db_text(lead_id)), a, &rows, err);
    *out = NULL;
    *n = 0;
    if (rc != SP_OK)
        return rc;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(rows.nrows ? rows.nrows : 1));
    for (int i = 0; i < rows.nrows; i++) {
        rc = row_to_message(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = rows.nrows;
    return SP_OK;
}

static int
r_message_channels(struct lead_repo *r, const char *lead_id, enum channel out[CHANNEL_COUNT],
                   int *n, struct sp_error *err)
{
    struct db_rows rows = {0, 0, NULL};
    struct arena *a = arena_new();
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_MESSAGE_CHANNELS, DB_ARGS(db_text(lead_id)), a, &rows, err);
    *n = 0;
    for (int i = 0; rc == SP_OK && i < rows.nrows; i++) {
        if (i >= CHANNEL_COUNT || channel_parse(db_cell(&rows, i, 0), &out[i]) != 0)
            rc = corrupt(err, "messages.channel");
        else
            *n = i + 1;
    }
    arena_free(a);
    return rc;
}

static int
r_message_last_inbound(struct lead_repo *r, const char *lead_id, enum channel c, int64_t *at,
                       struct sp_error *err)
{
    struct db_rows rows;
    struct arena *a = arena_new();
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_MESSAGE_LAST_INBOUND,
                      DB_ARGS(db_text(lead_id), db_text(channel_name(c))), a, &rows, err);

    *at = rc == SP_OK && rows.nrows > 0 ? db_cell_int(&rows, 0, 0) : 0;
    arena_free(a);
    return rc;
}

/* The range of positions [*lo, *hi] a page takes from `sizes` (rows of position and size,
 * newest first, at most spec->max + 1 of them); page->next set. *hi == 0: nothing to read. */
static void
page_cut(const struct db_rows *sizes, const struct lead_page_spec *spec, int64_t *lo, int64_t *hi,
         struct lead_page_info *page)
{
    size_t used = 0;
    int k = 0;

    while (k < sizes->nrows && k < spec->max) {
        size_t len = (size_t)db_cell_int(sizes, k, 1);
        if (k > 0 && (len > spec->budget || used > spec->budget - len))
            break;
        used += len;
        k++;
    }
    *hi = k > 0 ? db_cell_int(sizes, 0, 0) : 0;
    *lo = k > 0 ? db_cell_int(sizes, k - 1, 0) : 0;
    page->n = 0;
    page->next = k < sizes->nrows ? *lo : 0;
}

static int64_t
before_of(const struct lead_page_spec *spec)
{
    return spec->before > 0 ? spec->before : INT64_MAX;
}

static int
r_message_page(struct lead_repo *r, const char *lead_id, enum channel c,
               const struct lead_page_spec *spec, struct arena *a, struct message **out,
               struct lead_page_info *page, struct sp_error *err)
{
    struct db_rows rows;
    int64_t lo = 0, hi = 0;
    int rc;

    *out = NULL;
    page->n = 0;
    page->next = 0;
    rc = settle(r, err);
    if (rc != SP_OK)
        return rc;
    rc = db_query(conn_of(r), &SQL_MESSAGE_SIZES,
                  DB_ARGS(db_text(lead_id), db_text(channel_name(c)), db_int(before_of(spec)),
                          db_int(spec->max + 1)),
                  a, &rows, err);
    if (rc == SP_OK)
        page_cut(&rows, spec, &lo, &hi, page);
    if (rc != SP_OK || hi == 0)
        return rc;
    rc = db_query(conn_of(r), &SQL_MESSAGE_RANGE,
                  DB_ARGS(db_text(lead_id), db_text(channel_name(c)), db_int(lo), db_int(hi)), a,
                  &rows, err);
    if (rc != SP_OK)
        return rc;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(rows.nrows ? rows.nrows : 1));
    for (int i = 0; i < rows.nrows; i++) {
        rc = row_to_message(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    page->n = rows.nrows;
    return SP_OK;
}

/* In the batch inside a unit of work. */
static int
r_event_append(struct lead_repo *r, const struct lead_event *e, struct sp_error *err)
{
    struct lead_batch *b = &self_of(r)->batch;
    int rc = SP_OK;

    if (!batching(r)) {
        rc = db_exec(conn_of(r), &SQL_EVENT_INSERT,
                     DB_ARGS(db_text(e->id), db_text(e->lead_id),
                             db_text(lead_event_type_name(e->type)), db_text(e->correlation_ids),
                             db_text(e->payload), db_time(e->created_at)),
                     NULL, err);
    } else {
        lead_batch_event(b, e);
        if (lead_batch_full(b))
            rc = settle(r, err);
    }
    if (rc == SP_OK)
        db_conn_announce(conn_of(r)); /* the feed's readers learn of it after the commit */
    return rc;
}

static int
row_to_event(const struct db_rows *rows, int i, struct lead_event *e, struct sp_error *err)
{
    copy_id(e->id, db_cell(rows, i, 0));
    copy_id(e->lead_id, db_cell(rows, i, 1));
    if (lead_event_type_parse(db_cell(rows, i, 2), &e->type) != 0)
        return corrupt(err, "lead_events.type");
    e->correlation_ids = db_cell(rows, i, 3);
    e->payload = db_cell(rows, i, 4);
    e->created_at = db_cell_int(rows, i, 5);
    return SP_OK;
}

static int
r_event_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct lead_event **out,
             int *n, struct sp_error *err)
{
    struct db_rows rows;
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_EVENT_LIST, DB_ARGS(db_text(lead_id)), a, &rows, err);
    *out = NULL;
    *n = 0;
    if (rc != SP_OK)
        return rc;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(rows.nrows ? rows.nrows : 1));
    for (int i = 0; i < rows.nrows; i++) {
        rc = row_to_event(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    *n = rows.nrows;
    return SP_OK;
}

static int
r_event_page(struct lead_repo *r, const char *lead_id, const struct lead_page_spec *spec,
             struct arena *a, struct lead_event **out, struct lead_page_info *page,
             struct sp_error *err)
{
    struct db_rows rows;
    int64_t lo = 0, hi = 0;
    int rc;

    *out = NULL;
    page->n = 0;
    page->next = 0;
    rc = settle(r, err);
    if (rc != SP_OK)
        return rc;
    rc = db_query(conn_of(r), &SQL_EVENT_SIZES,
                  DB_ARGS(db_text(lead_id), db_int(before_of(spec)), db_int(spec->max + 1)), a,
                  &rows, err);
    if (rc == SP_OK)
        page_cut(&rows, spec, &lo, &hi, page);
    if (rc != SP_OK || hi == 0)
        return rc;
    rc = db_query(conn_of(r), &SQL_EVENT_RANGE, DB_ARGS(db_text(lead_id), db_int(lo), db_int(hi)),
                  a, &rows, err);
    if (rc != SP_OK)
        return rc;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(rows.nrows ? rows.nrows : 1));
    for (int i = 0; i < rows.nrows; i++) {
        rc = row_to_event(&rows, i, &(*out)[i], err);
        if (rc != SP_OK)
            return rc;
    }
    page->n = rows.nrows;
    return SP_OK;
}

static int
r_opt_out_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct lead_opt_outs *out,
               struct sp_error *err)
{
    struct db_rows rows;
    int rc = db_query(conn_of(r), &SQL_OPT_OUT_LIST, DB_ARGS(db_text(lead_id)), a, &rows, err);

    memset(out, 0, sizeof(*out));
    for (int i = 0; rc == SP_OK && i < rows.nrows; i++) {
        struct lead_opt_out *o = &out->v[i];
        if (i >= CHANNEL_COUNT || channel_parse(db_cell(&rows, i, 0), &o->channel) != 0 ||
            opt_out_source_parse(db_cell(&rows, i, 2), &o->source) != 0)
            return corrupt(err, "lead_opt_outs");
        o->reason = db_cell(&rows, i, 1);
        o->at = db_cell_int(&rows, i, 3);
        out->n = i + 1;
    }
    return rc;
}

static int
r_opt_out_insert(struct lead_repo *r, const char *lead_id, const struct lead_opt_out *o,
                 int *inserted, struct sp_error *err)
{
    int64_t changes = 0;
    int rc =
        db_exec(conn_of(r), &SQL_OPT_OUT_INSERT,
                DB_ARGS(db_text(lead_id), db_text(channel_name(o->channel)), db_text(o->reason),
                        db_text(opt_out_source_name(o->source)), db_time(o->at)),
                &changes, err);

    *inserted = rc == SP_OK && changes > 0;
    return rc;
}

static int
r_opt_out_delete(struct lead_repo *r, const char *lead_id, enum channel c, int *deleted,
                 struct sp_error *err)
{
    int64_t changes = 0;
    int rc = db_exec(conn_of(r), &SQL_OPT_OUT_DELETE,
                     DB_ARGS(db_text(lead_id), db_text(channel_name(c))), &changes, err);

    *deleted = rc == SP_OK && changes > 0;
    return rc;
}

/* The fence's round: settles a pending mark when its writers are gone, then (with no mark
 * pending) takes a new one, settled at once when nobody is writing events. */
static int
r_event_feed_settle(struct lead_repo *r, struct lead_feed_fence *f, struct sp_error *err)
{
    struct arena *a = arena_new();
    struct db_rows rows;
    int64_t top;
    const char *writers;
    int rc = settle(r, err);

    if (rc != SP_OK)
        goto out;
    if (f->mark > 0) {
        rc = db_query(conn_of(r), &SQL_FEED_WAITING, DB_ARGS(db_text(f->writers)), a, &rows, err);
        if (rc != SP_OK)
            goto out;
        if (rows.nrows == 0 || db_cell_int(&rows, 0, 0) == 0) {
            if (f->mark > f->settled)
                f->settled = f->mark;
            f->mark = 0;
        }
    }
    if (f->mark > 0)
        goto out;
    rc = db_query(conn_of(r), &SQL_FEED_TOP, DB_NOARGS, a, &rows, err);
    if (rc != SP_OK)
        goto out;
    top = rows.nrows > 0 ? db_cell_int(&rows, 0, 0) : 0;
    if (top <= f->settled)
        goto out;
    rc = db_query(conn_of(r), &SQL_FEED_WRITERS, DB_NOARGS, a, &rows, err);
    if (rc != SP_OK)
        goto out;
    writers = rows.nrows > 0 ? db_cell(&rows, 0, 0) : NULL;
    if (writers == NULL || strcmp(writers, "{}") == 0) {
        f->settled = top;
    } else if (strlen(writers) < sizeof(f->writers)) {
        memcpy(f->writers, writers, strlen(writers) + 1);
        f->mark = top;
    } else {
        /* More writers than the fence can name: nothing settles this round (a later one, with
         * fewer transactions in flight, will). */
        rc = sp_error_set(err, SP_EUNAVAIL, "database", "event feed: %zu bytes of writers",
                          strlen(writers));
    }
out:
    arena_free(a);
    return rc;
}

static int
r_event_feed_page(struct lead_repo *r, int64_t after, int64_t upto, const char *lead_id, int max,
                  struct arena *a, struct lead_event **out, int *n, int *scanned, int64_t *last,
                  struct sp_error *err)
{
    struct db_rows rows;
    int rc, k = 0;

    *out = NULL;
    *n = 0;
    *scanned = 0;
    *last = 0;
    rc = settle(r, err);
    if (rc != SP_OK)
        return rc;
    if (lead_id != NULL)
        rc = db_query(conn_of(r), &SQL_FEED_PAGE_LEAD,
                      DB_ARGS(db_text(lead_id), db_int(after), db_int(upto), db_int(max)), a, &rows,
                      err);
    else
        rc = db_query(conn_of(r), &SQL_FEED_PAGE, DB_ARGS(db_int(after), db_int(upto), db_int(max)),
                      a, &rows, err);
    if (rc != SP_OK)
        return rc;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(rows.nrows ? rows.nrows : 1));
    for (int i = 0; i < rows.nrows; i++) {
        struct sp_error bad = {0};
        *last = db_cell_int(&rows, i, 6);
        if (row_to_event(&rows, i, &(*out)[k], &bad) != SP_OK) {
            log_warn("events: event %s left out of the feed: %s", db_cell(&rows, i, 0), bad.msg);
            continue;
        }
        (*out)[k++].seq = *last;
    }
    *n = k;
    *scanned = rows.nrows;
    return SP_OK;
}

static int
r_event_position(struct lead_repo *r, const char *id, int64_t *pos, struct sp_error *err)
{
    struct arena *a = arena_new();
    struct db_rows rows;
    int rc = settle(r, err);

    if (rc == SP_OK)
        rc = db_query(conn_of(r), &SQL_EVENT_POSITION, DB_ARGS(db_text(id)), a, &rows, err);

    *pos = 0;
    if (rc == SP_OK && rows.nrows == 0)
        rc = sp_error_set(err, SP_ENOTFOUND, "id", "event not found");
    else if (rc == SP_OK)
        *pos = db_cell_int(&rows, 0, 0);
    arena_free(a);
    return rc;
}

static const struct lead_repo_ops sql_ops = {
    .name = "sql",
    .begin = r_begin,
    .commit = r_commit,
    .rollback = r_rollback,
    .read_begin = r_read_begin,
    .read_end = r_read_end,
    .ping = r_ping,
    .lead_insert = r_lead_insert,
    .lead_get = r_lead_get,
    .lead_update_status = r_lead_update_status,
    .lead_lock = r_lead_lock,
    .lead_transition = r_lead_transition,
    .lead_set_address = r_lead_set_address,
    .lead_find_by_address = r_lead_find_by_address,
    .lead_list = r_lead_list,
    .message_insert = r_message_insert,
    .message_find_by_provider = r_message_find_by_provider,
    .message_get = r_message_get,
    .message_update_delivery = r_message_update_delivery,
    .message_list = r_message_list,
    .message_last_inbound = r_message_last_inbound,
    .message_channels = r_message_channels,
    .message_page = r_message_page,
    .event_append = r_event_append,
    .event_list = r_event_list,
    .event_page = r_event_page,
    .event_feed_settle = r_event_feed_settle,
    .event_feed_page = r_event_feed_page,
    .event_position = r_event_position,
    .receipt_claim = r_receipt_claim,
    .receipt_prune = r_receipt_prune,
    .opt_out_list = r_opt_out_list,
    .opt_out_insert = r_opt_out_insert,
    .opt_out_delete = r_opt_out_delete,
};

void
sql_lead_repo_init(struct sql_lead_repo *r, struct db_conn *conn)
{
    r->base.ops = &sql_ops;
    r->conn = conn;
    lead_batch_init(&r->batch);
    r->batch_depth = 0;
}
