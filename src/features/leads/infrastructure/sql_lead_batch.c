/* sql_lead_batch.c: the lead repository's deferred writes (see sql_lead_batch.h). */
#include "features/leads/infrastructure/sql_lead_batch.h"

#include "core/arena.h"
#include "infra/db.h"

#include <string.h>

/* A row is never cut: a batch is written once it passes LEAD_BATCH_FLUSH_BYTES, so only a
 * single row larger than this could overflow (then the write fails, SP_ETOOLARGE). */
#define BATCH_JSON_LIMIT ((size_t)64 * 1024 * 1024)

/* $1: a JSON array of {"id","s" (status),"a" (attempts),"e" (last error),"p" (provider id),
 * "st" (sent at, ms or null),"t" (updated at, ms)}, one per message. SQLite walks the array and
 * finds each message by its id (messages' unique index); so does PostgreSQL (a nested loop on
 * messages_id_key: the array's estimate is 100 rows). */
#define DELIVERY_SET(sent, at)                                                                     \
    "UPDATE messages SET status = u.s, attempts = u.a, last_error = u.e, provider_id = u.p,"       \
    " sent_at = " sent ", updated_at = " at
#define DELIVERY_FROM_SQLITE                                                                       \
    " FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.s') AS s,"            \
    " json_extract(value, '$.a') AS a, json_extract(value, '$.e') AS e,"                           \
    " json_extract(value, '$.p') AS p, json_extract(value, '$.st') AS st,"                         \
    " json_extract(value, '$.t') AS t FROM json_each($1)) AS u"
#define PG_MS(col) "timestamptz 'epoch' + " col " * interval '1 millisecond'"
#define DELIVERY_FROM_PG                                                                           \
    " FROM jsonb_to_recordset($1::jsonb)"                                                          \
    " AS u(id uuid, s text, a integer, e text, p text, st bigint, t bigint)"
DB_STMT(SQL_BATCH_DELIVERY,
        DELIVERY_SET("u.st", "u.t") DELIVERY_FROM_SQLITE " WHERE messages.id = u.id",
        DELIVERY_SET(PG_MS("u.st"), PG_MS("u.t")) DELIVERY_FROM_PG " WHERE messages.id = u.id");

/* $1: a JSON array of {"i" (its place),"id","l" (lead id),"y" (type),"c" (correlation ids),
 * "p" (payload),"t" (created at, ms)}; the JSON texts c and p as strings. Inserted in array
 * order, so each event's seq (taken per row, by PostgreSQL's trigger or as SQLite's rowid)
 * follows it. */
#define EVENTS_INTO                                                                                \
    "INSERT INTO lead_events (id, lead_id, type, correlation_ids, payload, created_at)"
#define EVENTS_SQLITE                                                                              \
    " SELECT json_extract(value, '$.id'), json_extract(value, '$.l'),"                             \
    " json_extract(value, '$.y'), json_extract(value, '$.c'), json_extract(value, '$.p'),"         \
    " json_extract(value, '$.t') FROM json_each($1) ORDER BY json_extract(value, '$.i')"
#define EVENTS_PG                                                                                  \
    " SELECT e.id, e.l, e.y, e.c::jsonb, e.p::jsonb, " PG_MS(                                      \
        "e.t") " FROM jsonb_to_recordset($1::jsonb)"                                               \
               " AS e(i integer, id uuid, l uuid, y text, c text, p text, t bigint) ORDER BY e.i"
DB_STMT(SQL_BATCH_EVENTS, EVENTS_INTO EVENTS_SQLITE, EVENTS_INTO EVENTS_PG);

void
lead_batch_init(struct lead_batch *b)
{
    memset(b, 0, sizeof(*b));
}

static void
batch_open(struct lead_batch *b)
{
    if (b->arena != NULL)
        return;
    b->arena = arena_new();
    jsonw_init(&b->messages, b->arena, BATCH_JSON_LIMIT);
    jsonw_init(&b->events, b->arena, BATCH_JSON_LIMIT);
    jsonw_arr_begin(&b->messages);
    jsonw_arr_begin(&b->events);
    b->nmessages = b->nevents = 0;
    b->message_ids = NULL;
    b->ids_cap = 0;
}

static void
time_or_null(struct jsonw *w, const char *key, int64_t ms)
{
    jsonw_key(w, key);
    if (ms)
        jsonw_int(w, ms);
    else
        jsonw_null(w);
}

static void
message_row(struct jsonw *w, const struct message *m)
{
    jsonw_obj_begin(w);
    jsonw_kstr(w, "id", m->id);
    jsonw_kstr(w, "s", message_status_name(m->status));
    jsonw_kint(w, "a", m->attempts);
    jsonw_kstr(w, "e", m->last_error);
    jsonw_kstr(w, "p", m->provider_id);
    time_or_null(w, "st", m->sent_at);
    jsonw_kint(w, "t", m->updated_at);
    jsonw_obj_end(w);
}

void
lead_batch_message(struct lead_batch *b, const struct message *m)
{
    batch_open(b);
    if (b->nmessages == b->ids_cap) {
        int cap = b->ids_cap ? 2 * b->ids_cap : 64;
        char(*ids)[SP_UUID_LEN + 1] = arena_alloc(b->arena, sizeof(*ids) * (size_t)cap);
        if (b->nmessages > 0)
            memcpy(ids, b->message_ids, sizeof(*ids) * (size_t)b->nmessages);
        b->message_ids = ids;
        b->ids_cap = cap;
    }
    memcpy(b->message_ids[b->nmessages], m->id, sizeof(b->message_ids[0]));
    b->message_ids[b->nmessages][SP_UUID_LEN] = '\0';
    b->nmessages++;
    message_row(&b->messages, m);
}

void
lead_batch_event(struct lead_batch *b, const struct lead_event *e)
{
    struct jsonw *w = &b->events;

    batch_open(b);
    jsonw_obj_begin(w);
    jsonw_kint(w, "i", b->nevents++);
    jsonw_kstr(w, "id", e->id);
    jsonw_kstr(w, "l", e->lead_id);
    jsonw_kstr(w, "y", lead_event_type_name(e->type));
    jsonw_kstr(w, "c", e->correlation_ids);
    jsonw_kstr(w, "p", e->payload);
    jsonw_kint(w, "t", e->created_at);
    jsonw_obj_end(w);
}

int
lead_batch_has_message(const struct lead_batch *b, const char *id)
{
    for (int i = 0; i < b->nmessages; i++)
        if (strcmp(b->message_ids[i], id) == 0)
            return 1;
    return 0;
}

int
lead_batch_full(const struct lead_batch *b)
{
    return b->arena != NULL && b->messages.len + b->events.len >= LEAD_BATCH_FLUSH_BYTES;
}

void
lead_batch_drop(struct lead_batch *b)
{
    arena_free(b->arena);
    lead_batch_init(b);
}

static int
write_rows(struct db_conn *c, const struct db_stmt *st, struct jsonw *w, struct sp_error *err)
{
    const char *json;
    size_t len;

    jsonw_arr_end(w);
    if (jsonw_finish(w, &json, &len) != SP_OK)
        return sp_error_set(err, SP_ETOOLARGE, "database", "a timeline row is too large to store");
    return db_exec(c, st, DB_ARGS(db_text(json)), NULL, err);
}

int
lead_batch_flush(struct lead_batch *b, struct db_conn *c, struct sp_error *err)
{
    int rc = SP_OK;

    if (b->arena == NULL)
        return SP_OK;
    if (b->nmessages > 0)
        rc = write_rows(c, &SQL_BATCH_DELIVERY, &b->messages, err);
    if (rc == SP_OK && b->nevents > 0)
        rc = write_rows(c, &SQL_BATCH_EVENTS, &b->events, err);
    lead_batch_drop(b);
    return rc;
}
