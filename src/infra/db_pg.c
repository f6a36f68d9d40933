/* db_pg.c: the PostgreSQL driver (see db_pg.h).
 *
 * A statement runs its descriptor's `postgres` text, prepared once per connection under the
 * name "s<slot>" (db_stmt_slot in db.h), so whether it is prepared is one array access. */
#include "infra/db_pg.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "infra/db.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARAMS_MAX 32
#define ROWS_MAX 100000
#define CONNECT_TIMEOUT_S "3"
#define STATEMENT_TIMEOUT_MS 5000
#define RECONNECT_MS 500
#define TIMESTAMPTZ_OID 1184

struct db_pg {
    char *url;
};

struct pg_conn {
    struct db_conn base; /* first */
    struct db_pg *owner;
    PGconn *pg;
    int in_tx;
    int pipelined; /* in libpq pipeline mode: statements sent, their results not read yet */
    int64_t last_reconnect;                /* monotonic ms of the last reconnection attempt */
    unsigned char prepared[DB_STMT_SLOTS]; /* by slot: prepared in this session */
};

/* Prepared statements die with the session. */
static void
forget_prepared(struct pg_conn *c)
{
    memset(c->prepared, 0, sizeof(c->prepared));
}

/* The server-side name of the statement in `slot`. */
static void
stmt_name(int slot, char out[16])
{
    snprintf(out, 16, "s%d", slot);
}

static int
conn_lost(struct pg_conn *c)
{
    return c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK;
}

/* Maps a failed result (or a dead connection) to an SP_E* code. */
static int
map_error(struct pg_conn *c, const PGresult *res, struct sp_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    char text[160];
    size_t n;

    if (msg == NULL || msg[0] == '\0')
        msg = c->pg ? PQerrorMessage(c->pg) : "no connection";
    snprintf(text, sizeof(text), "%s", msg);
    n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    if (conn_lost(c) || state == NULL || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0 || strncmp(state, "53", 2) == 0 ||
        strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
        strcmp(state, "55P03") == 0) /* lock_timeout: the lock is held elsewhere */
        return sp_error_set(err, SP_EUNAVAIL, "database", "postgres: %s", text);
    if (strcmp(state, "57014") == 0)
        return sp_error_set(err, SP_ETIMEDOUT, "database", "postgres: %s", text);
    if (strncmp(state, "23", 2) == 0) /* integrity constraint violations, as SQLite's */
        return sp_error_set(err, SP_ECONFLICT, "database", "postgres: %s", text);
    if (strncmp(state, "22", 2) == 0)
        return sp_error_set(err, SP_EINVAL, "database", "postgres: %s", text);
    return sp_error_set(err, SP_EINTERNAL, "database", "postgres: %s", text);
}

/* Server notices (e.g. "relation already exists, skipping") go to the log, one line each,
 * never raw to stderr. */
static void
on_notice(void *arg, const char *message)
{
    char line[256];
    size_t n;

    (void)arg;
    snprintf(line, sizeof(line), "%s", message);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = '\0';
    log_debug("postgres: %s", line);
}

/* The user's own `options` from the URL, if any, so ours can be added to them (libpq would
 * otherwise let one replace the other). */
static void
user_options(const char *url, char *out, size_t cap)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);

    out[0] = '\0';
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val)
            snprintf(out, cap, "%s ", o->val);
    PQconninfoFree(opts);
}

/* plan_cache_mode=force_generic_plan: a prepared statement is planned once per session, from
 * its text alone. By default PostgreSQL plans each of its first five runs for the values given
 * (custom plans) and only then may settle on the generic plan: a new session's first runs of a
 * big statement (GET /leads?q=) paid about 1 ms of planning each, and a custom plan can differ
 * from the one the statements are written and checked for (sql_lead_repo.c). Every statement
 * here is written for the generic plan. PostgreSQL 12 or later. */
static PGconn *
open_pg(const struct db_pg *owner)
{
    const char *url = owner->url;
    static const char *const keys[] = {"dbname", "connect_timeout", "application_name", "options",
                                       NULL};
    char mine[512], options[800];
    const char *values[5];
    PGconn *pg;

    user_options(url, mine, sizeof(mine));
    snprintf(options, sizeof(options),
             "%s-c statement_timeout=%d -c TimeZone=UTC -c DateStyle=ISO "
             "-c client_min_messages=warning -c plan_cache_mode=force_generic_plan",
             mine, STATEMENT_TIMEOUT_MS);
    values[0] = url;
    values[1] = CONNECT_TIMEOUT_S;
    values[2] = "salespad";
    values[3] = options;
    values[4] = NULL;
    /* expand_dbname=1: `url` supplies every parameter it names; ours (later) fill the rest, and
     * `options` carries the URL's own options first. */
    pg = PQconnectdbParams(keys, values, 1);
    if (pg)
        PQsetNoticeProcessor(pg, on_notice, NULL);
    return pg;
}

/* Re-establishes a lost connection, at most every RECONNECT_MS so an outage fails fast (unless
 * `force`: the connection was just found dead, typically idle across a server restart). */
static int
ensure_connected(struct pg_conn *c, int force, struct sp_error *err)
{
    int64_t now;

    if (!conn_lost(c))
        return SP_OK;
    now = sp_mono_ms();
    if (!force && c->last_reconnect && now - c->last_reconnect < RECONNECT_MS)
        return sp_error_set(err, SP_EUNAVAIL, "database", "postgres: connection lost");
    c->last_reconnect = now;
    PQfinish(c->pg);
    forget_prepared(c);
    c->in_tx = 0;
    c->pipelined = 0;
    c->pg = open_pg(c->owner);
    if (conn_lost(c))
        return map_error(c, NULL, err);
    log_info("postgres: reconnected");
    return SP_OK;
}

/* ---- deferred statements (pipeline mode) --------------------------------------------------
 * Inside a transaction, a statement whose caller wants neither rows nor a row count is sent
 * without waiting for its result (libpq pipeline mode); the results are read, and the first
 * error returned, by the next call that needs an answer: a query, the COMMIT (sent in the same
 * round trip) or a rollback. A capture (BEGIN, eight INSERTs, COMMIT) then costs two round trips
 * instead of ten. An error thus surfaces at a later call of the same transaction, which the
 * caller rolls back as it would have: nothing is committed. */

static int
defer(struct pg_conn *c, const char *name, int nargs, const char *const *values,
      struct sp_error *err)
{
    if (!c->pipelined) {
        if (PQenterPipelineMode(c->pg) != 1)
            return map_error(c, NULL, err);
        c->pipelined = 1;
    }
    if (PQsendQueryPrepared(c->pg, name, nargs, values, NULL, NULL, 0) != 1)
        return map_error(c, NULL, err);
    return SP_OK;
}

/* Reads every pending result up to a sync and leaves pipeline mode; the first error wins. */
static int
drain(struct pg_conn *c, struct sp_error *err)
{
    int rc = SP_OK;

    if (!c->pipelined)
        return SP_OK;
    if (PQpipelineSync(c->pg) != 1) {
        /* No sync to read up to: the connection is unusable. */
        rc = map_error(c, NULL, err);
        PQfinish(c->pg);
        c->pg = NULL;
        forget_prepared(c);
        c->pipelined = 0;
        return rc;
    }
    while (rc == SP_OK || !conn_lost(c)) {
        PGresult *res = PQgetResult(c->pg);
        ExecStatusType st;
        if (res == NULL) {
            if (conn_lost(c)) {
                if (rc == SP_OK)
                    rc = map_error(c, NULL, err);
                break;
            }
            continue; /* the end of one statement's results */
        }
        st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED &&
            rc == SP_OK)
            rc = map_error(c, res, err);
        PQclear(res);
        if (rc != SP_OK && conn_lost(c))
            break;
    }
    if (!conn_lost(c) && PQexitPipelineMode(c->pg) != 1 && rc == SP_OK)
        rc = map_error(c, NULL, err);
    c->pipelined = 0;
    return rc;
}

/* Prepares `st` (with a postgres text) unless this session has already: `name` (16 bytes)
 * receives its name, "" for a descriptor without a slot (prepared unnamed, for this call). */
static int
prepare(struct pg_conn *c, const struct db_stmt *st, int slot, char *name, struct sp_error *err)
{
    PGresult *res;
    int rc = SP_OK;

    name[0] = '\0';
    if (slot >= 0)
        stmt_name(slot, name);
    if (slot >= 0 && c->prepared[slot])
        return SP_OK;
    res = PQprepare(c->pg, name, st->postgres, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = map_error(c, res, err);
    else if (slot >= 0)
        c->prepared[slot] = 1;
    PQclear(res);
    return rc;
}

/* Renders the arguments as text parameters into bufs (one 32-byte slot each). */
static int
render_args(const struct db_arg *args, int nargs, const char **values, char (*bufs)[32],
            struct sp_error *err)
{
    if (nargs > PARAMS_MAX)
        return sp_error_set(err, SP_EINTERNAL, "database", "too many parameters");
    for (int i = 0; i < nargs; i++) {
        switch (args[i].type) {
        case DB_ARG_TEXT:
            values[i] = args[i].s;
            break;
        case DB_ARG_INT:
            snprintf(bufs[i], 32, "%lld", (long long)args[i].i);
            values[i] = bufs[i];
            break;
        case DB_ARG_TIME:
            sp_time_iso(args[i].i, bufs[i]);
            values[i] = bufs[i];
            break;
        default:
            values[i] = NULL;
            break;
        }
    }
    return SP_OK;
}

/* Copies a result into the arena; timestamptz columns become integer ms. */
static int
collect(const PGresult *res, struct arena *a, struct db_rows *rows, struct sp_error *err)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);

    if (nrows > ROWS_MAX)
        return sp_error_set(err, SP_ETOOLARGE, "database", "query returned too many rows");
    rows->nrows = nrows;
    rows->ncols = ncols;
    rows->cells = arena_alloc(a, sizeof(char *) * (size_t)(nrows * ncols > 0 ? nrows * ncols : 1));
    for (int c = 0; c < ncols; c++) {
        int is_time = PQftype(res, c) == TIMESTAMPTZ_OID;
        for (int r = 0; r < nrows; r++) {
            const char *v;
            int64_t ms;
            if (PQgetisnull(res, r, c))
                continue;
            v = PQgetvalue(res, r, c);
            if (is_time) {
                if (sp_time_parse(v, &ms) != 0)
                    return sp_error_set(err, SP_EINTERNAL, "database",
                                        "postgres: unexpected timestamp %.40s", v);
                rows->cells[r * ncols + c] = arena_printf(a, "%lld", (long long)ms);
            } else {
                rows->cells[r * ncols + c] = arena_strndup(a, v, (size_t)PQgetlength(res, r, c));
            }
        }
    }
    return SP_OK;
}

/* Rows a command inserted, updated or deleted: PQcmdTuples also counts the rows of a SELECT
 * (and of FETCH, MOVE, COPY), which are not changes. */
static int64_t
changed_rows(PGresult *res)
{
    static const char *const tags[] = {"INSERT ", "UPDATE ", "DELETE ", "MERGE "};
    const char *status = PQcmdStatus(res), *n;

    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        if (strncmp(status, tags[i], strlen(tags[i])) == 0) {
            n = PQcmdTuples(res);
            return n && n[0] ? strtoll(n, NULL, 10) : 0;
        }
    }
    return 0;
}

static int
pg_query(struct db_conn *base, const struct db_stmt *st, const struct db_arg *args, int nargs,
         struct arena *a, struct db_rows *rows, struct db_counts *counts, struct sp_error *err)
{
    struct pg_conn *c = (struct pg_conn *)base;
    const char *values[PARAMS_MAX];
    char bufs[PARAMS_MAX][32];
    char name[16];
    PGresult *res;
    int slot, rc;

    if (st->postgres == NULL) {
        db__stmt_skipped(rows, counts);
        return SP_OK;
    }
    slot = db_stmt_slot(st);
    rc = c->in_tx ? (conn_lost(c) ? map_error(c, NULL, err) : SP_OK) : ensure_connected(c, 0, err);
    if (rc == SP_OK)
        rc = render_args(args, nargs, values, bufs, err);
    if (rc == SP_OK && c->in_tx && rows == NULL && counts == NULL && slot >= 0 &&
        c->prepared[slot]) {
        stmt_name(slot, name);
        return defer(c, name, nargs, values, err);
    }
    if (rc == SP_OK)
        rc = drain(c, err); /* an answer is wanted (or a statement to prepare): read the rest */
    if (rc == SP_OK)
        rc = prepare(c, st, slot, name, err);
    if (rc != SP_OK)
        return rc;
    res = PQexecPrepared(c->pg, name, nargs, values, NULL, NULL, 0);
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
        if (rows)
            rc = collect(res, a, rows, err);
        break;
    case PGRES_COMMAND_OK:
        if (rows)
            memset(rows, 0, sizeof(*rows));
        break;
    default:
        rc = map_error(c, res, err);
        break;
    }
    if (rc == SP_OK && counts) {
        counts->changes = changed_rows(res);
        counts->nrows = PQntuples(res);
    }
    PQclear(res);
    return rc;
}

static int
exec_simple(struct pg_conn *c, const char *sql, struct sp_error *err)
{
    PGresult *res;
    int rc = drain(c, err);
    ExecStatusType st;

    if (rc != SP_OK)
        return rc;
    res = PQexec(c->pg, sql);
    st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = map_error(c, res, err);
    PQclear(res);
    return rc;
}

static int
pg_exec_script(struct db_conn *base, const char *sql, struct sp_error *err)
{
    struct pg_conn *c = (struct pg_conn *)base;
    int rc = c->in_tx ? SP_OK : ensure_connected(c, 0, err);
    return rc == SP_OK ? exec_simple(c, sql, err) : rc;
}

static void pg_rollback(struct db_conn *base);

/* A transaction's lock_timeout (ms, as text): the time left of its connection's deadline. */
DB_STMT(SQL_LOCK_BUDGET, NULL, "SELECT set_config('lock_timeout', $1, true)");

/* Gives the transaction just begun the connection's remaining budget as its lock_timeout, so a
 * lock held by another session is answered (55P03: SP_EUNAVAIL) within the request's budget.
 * Sent without waiting (pipelined) once prepared: no extra round trip. Only connections with a
 * deadline (requests): workers keep waiting up to the statement timeout, as their transactions
 * wait for one another's row locks by design. */
static int
set_lock_budget(struct pg_conn *c, struct sp_error *err)
{
    int64_t left = c->base.deadline_ms - sp_mono_ms();
    char ms[24];

    if (c->base.deadline_ms == 0)
        return SP_OK;
    snprintf(ms, sizeof(ms), "%lld", (long long)(left > 0 ? left : 1));
    return pg_query(&c->base, &SQL_LOCK_BUDGET, DB_ARGS(db_text(ms)), NULL, NULL, NULL, err);
}

/* Starts a transaction with `sql`. A connection found dead here held no work yet, so it is
 * re-established at once and the BEGIN tried again: after a server restart the idle pooled
 * connections do not each cost a failed request. */
static int
begin_with(struct pg_conn *c, const char *sql, struct sp_error *err)
{
    struct sp_error first = {0};
    int rc = ensure_connected(c, 0, err);

    if (rc != SP_OK)
        return rc;
    rc = exec_simple(c, sql, &first);
    if (rc != SP_OK && conn_lost(c)) {
        rc = ensure_connected(c, 1, err);
        if (rc == SP_OK)
            rc = exec_simple(c, sql, err);
    } else if (rc != SP_OK && err && err->code == SP_OK) {
        *err = first;
    }
    c->in_tx = rc == SP_OK;
    if (rc == SP_OK) {
        rc = set_lock_budget(c, err);
        if (rc != SP_OK)
            pg_rollback(&c->base); /* a failed begin leaves no transaction open */
    }
    return rc;
}

static int
pg_begin(struct db_conn *base, struct sp_error *err)
{
    return begin_with((struct pg_conn *)base, "BEGIN", err);
}

static int
pg_commit(struct db_conn *base, struct sp_error *err)
{
    struct pg_conn *c = (struct pg_conn *)base;
    int rc;

    if (c->pipelined) {
        /* The deferred statements and the COMMIT in one round trip. */
        int drc;
        rc = PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1
                 ? SP_OK
                 : map_error(c, NULL, err);
        drc = drain(c, err);
        if (rc == SP_OK)
            rc = drc;
    } else {
        rc = exec_simple(c, "COMMIT", err);
    }
    /* A failed statement leaves the transaction aborted and its COMMIT undone: end it. */
    if (rc != SP_OK && c->pg && !conn_lost(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        (void)exec_simple(c, "ROLLBACK", NULL);
    /* A failed COMMIT ends the transaction too (it rolls back). */
    c->in_tx = 0;
    return rc;
}

static void
pg_rollback(struct db_conn *base)
{
    struct pg_conn *c = (struct pg_conn *)base;

    if (c->pg && c->pipelined)
        (void)drain(c, NULL); /* the statements sent are undone with the rest */
    if (c->pg && !conn_lost(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
        exec_simple(c, "ROLLBACK", NULL) != SP_OK)
        log_warn("postgres: rollback failed: %s", PQerrorMessage(c->pg));
    c->in_tx = 0;
}

static int
pg_begin_read(struct db_conn *base, struct sp_error *err)
{
    return begin_with((struct pg_conn *)base, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                      err);
}

static void
pg_end_read(struct db_conn *base)
{
    pg_rollback(base);
}

static int
pg_ping(struct db_conn *base, struct sp_error *err)
{
    struct pg_conn *c = (struct pg_conn *)base;
    int rc = begin_with(c, "BEGIN READ ONLY", err); /* reconnects a dead pooled connection */

    if (rc == SP_OK)
        rc = exec_simple(c, "SELECT 1", err);
    pg_rollback(base);
    return rc;
}

static void
pg_close(struct db_conn *base)
{
    struct pg_conn *c = (struct pg_conn *)base;

    if (c == NULL)
        return;
    PQfinish(c->pg);
    free(c);
}

static const struct db_conn_ops pg_ops = {
    .name = "postgres",
    .gathers_writes = 1,
    .query = pg_query,
    .exec_script = pg_exec_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .begin_read = pg_begin_read,
    .end_read = pg_end_read,
    .ping = pg_ping,
    .close = pg_close,
};

int
db_pg_new(const char *url, struct db_pg **out, struct sp_error *err)
{
    struct db_pg *p;

    if (url == NULL ||
        (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0))
        return sp_error_set(err, SP_EINVAL, "DATABASE_URL",
                            "config: DATABASE_URL: expected postgres://user@host:port/db");
    p = xcalloc(1, sizeof(*p));
    p->url = xstrdup(url);
    *out = p;
    return SP_OK;
}

void
db_pg_free(struct db_pg *p)
{
    if (p == NULL)
        return;
    free(p->url);
    free(p);
}

int
db_pg_connect(void *ctx, struct db_conn **out, struct sp_error *err)
{
    struct db_pg *p = ctx;
    struct pg_conn *c = xcalloc(1, sizeof(*c));
    int rc;

    c->base.ops = &pg_ops;
    c->owner = p;
    c->pg = open_pg(p);
    if (conn_lost(c)) {
        rc = sp_error_set(err, SP_EUNAVAIL, "DATABASE_URL", "cannot connect to postgres: %s",
                          c->pg ? PQerrorMessage(c->pg) : "out of memory");
        /* libpq messages end with a newline; one-line errors only */
        for (char *q = err ? err->msg : NULL; q && *q; q++)
            if (*q == '\n')
                *q = ' ';
        PQfinish(c->pg);
        free(c);
        return rc;
    }
    *out = &c->base;
    return SP_OK;
}

/* ---- LISTEN/NOTIFY ------------------------------------------------------------------------ */

int
db_pg_session_id(struct db_conn *base)
{
    struct pg_conn *c = (struct pg_conn *)base;

    return conn_lost(c) ? 0 : PQbackendPID(c->pg);
}

int
db_pg_socket(struct db_conn *base)
{
    struct pg_conn *c = (struct pg_conn *)base;

    return conn_lost(c) ? -1 : PQsocket(c->pg);
}

int
db_pg_notifications(struct db_conn *base, int *count, struct sp_error *err)
{
    struct pg_conn *c = (struct pg_conn *)base;
    PGnotify *n;
    int self;

    *count = 0;
    if (conn_lost(c) || PQconsumeInput(c->pg) != 1)
        return sp_error_set(err, SP_EUNAVAIL, "database", "postgres: listening connection lost");
    self = PQbackendPID(c->pg);
    for (n = PQnotifies(c->pg); n != NULL; n = PQnotifies(c->pg)) {
        *count += n->be_pid != self;
        PQfreemem(n);
    }
    /* A lost connection can read as a clean end: libpq then marks it bad. */
    if (conn_lost(c))
        return sp_error_set(err, SP_EUNAVAIL, "database", "postgres: listening connection lost");
    return SP_OK;
}
