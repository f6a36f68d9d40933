/* db.c: driver-independent parts of the database port: statement slots, result helpers and
 * the pool. */
#include "infra/db.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"

#include <stdlib.h>
#include <string.h>

/* The process-wide statement table: slots handed out so far. A mutex, not a bare atomic
 * counter, so that two threads meeting a new descriptor at once cannot both take a slot for it
 * (the loser's would be lost for good); it is taken once per descriptor, never on the fast path. */
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static int slots_used;

int
db_stmt_slot(const struct db_stmt *st)
{
    int v;

    if (st->slot == NULL)
        return -1;
    /* Relaxed: the slot number is the only thing published, and it never changes once set. */
    v = atomic_load_explicit(st->slot, memory_order_relaxed);
    if (v == 0) {
        pthread_mutex_lock(&slot_mu);
        v = atomic_load_explicit(st->slot, memory_order_relaxed);
        if (v == 0) {
            v = slots_used < DB_STMT_SLOTS ? ++slots_used : -1;
            if (v < 0)
                log_warn("statement table full (%d slots): %s is prepared for each call",
                         DB_STMT_SLOTS, st->name);
            atomic_store_explicit(st->slot, v, memory_order_relaxed);
        }
        pthread_mutex_unlock(&slot_mu);
    }
    return v > 0 ? v - 1 : -1;
}

void
db_conn_deadline_set(struct db_conn *c, int64_t budget_ms)
{
    c->deadline_ms = sp_mono_ms() + (budget_ms > 0 ? budget_ms : 1);
}

int64_t
db_cell_int(const struct db_rows *rows, int r, int c)
{
    const char *s = db_cell(rows, r, c);
    return s ? strtoll(s, NULL, 10) : 0;
}

struct db_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    db_connect_fn connect;
    void *ctx;
    int size;
    int nfree;
    int nwaiting;                 /* threads blocked in db_pool_acquire */
    struct db_conn **all;         /* [size]; NULL until opened */
    struct db_conn **free_list;   /* [size]; entries may be NULL: a slot not opened yet */
    void (*on_commit)(void *ctx); /* db_pool_on_commit */
    void *on_commit_ctx;
};

int
db_pool_new(db_connect_fn connect, void *ctx, int size, struct db_pool **out, struct sp_error *err)
{
    struct db_pool *p = xcalloc(1, sizeof(*p));
    int rc;

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->connect = connect;
    p->ctx = ctx;
    p->size = size;
    p->all = xcalloc((size_t)size, sizeof(*p->all));
    p->free_list = xcalloc((size_t)size, sizeof(*p->free_list));
    rc = connect(ctx, &p->all[0], err);
    if (rc != SP_OK) {
        db_pool_free(p);
        return rc;
    }
    /* A stack: unopened slots at the bottom, so open connections are always reused first. */
    for (int i = 1; i < size; i++)
        p->free_list[p->nfree++] = NULL;
    p->free_list[p->nfree++] = p->all[0];
    *out = p;
    return SP_OK;
}

/* Remembers a newly opened connection so that db_pool_free closes it. */
static void
adopt(struct db_pool *p, struct db_conn *c)
{
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->size; i++) {
        if (p->all[i] == NULL) {
            p->all[i] = c;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

int
db_pool_acquire(struct db_pool *p, struct db_conn **out, struct sp_error *err)
{
    struct db_conn *c;
    int rc;

    pthread_mutex_lock(&p->mu);
    p->nwaiting++;
    while (p->nfree == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    p->nwaiting--;
    c = p->free_list[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    if (c == NULL) {
        rc = p->connect(p->ctx, &c, err);
        if (rc != SP_OK) {
            db_pool_release(p, NULL); /* the slot stays unopened */
            return rc;
        }
        adopt(p, c);
    }
    c->deadline_ms = 0;
    c->depth = 0;
    c->announce = 0;
    c->on_commit = p->on_commit;
    c->on_commit_ctx = p->on_commit_ctx;
    *out = c;
    return SP_OK;
}

void
db_pool_on_commit(struct db_pool *p, void (*fn)(void *ctx), void *ctx)
{
    p->on_commit = fn;
    p->on_commit_ctx = ctx;
}

void
db_pool_release(struct db_pool *p, struct db_conn *c)
{
    pthread_mutex_lock(&p->mu);
    p->free_list[p->nfree++] = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void
db_pool_stats(struct db_pool *p, struct db_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    out->size = p->size;
    out->in_use = p->size - p->nfree;
    out->waiting = p->nwaiting;
    for (int i = 0; i < p->size; i++)
        out->open += p->all[i] != NULL;
    pthread_mutex_unlock(&p->mu);
}

void
db_pool_free(struct db_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->size; i++)
        db_close(p->all[i]);
    free(p->all);
    free(p->free_list);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- nested units of work ---------------------------------------------------------------
 *
 * Savepoints of one name: both engines roll back to / release the most recent savepoint of a
 * name, so one name serves every depth. On PostgreSQL a failed statement aborts the whole
 * transaction, and ROLLBACK TO SAVEPOINT is what makes it usable again: an inner unit that
 * failed leaves the outer one as it was before the inner began. */
DB_STMT_SAME(SQL_NEST_BEGIN, "SAVEPOINT sp_nest");
DB_STMT_SAME(SQL_NEST_RELEASE, "RELEASE SAVEPOINT sp_nest");
DB_STMT_SAME(SQL_NEST_UNDO, "ROLLBACK TO SAVEPOINT sp_nest");

int
db_begin(struct db_conn *c, struct sp_error *err)
{
    int64_t n = 0;
    int rc;

    if (c->depth > 0) {
        rc = db_exec(c, &SQL_NEST_BEGIN, DB_NOARGS, &n, err);
        if (rc == SP_OK)
            c->depth++;
        return rc;
    }
    rc = c->ops->begin(c, err);
    if (rc == SP_OK)
        c->depth = 1;
    return rc;
}

int
db_commit(struct db_conn *c, struct sp_error *err)
{
    int64_t n = 0;
    int rc;

    if (c->depth > 1) {
        rc = db_exec(c, &SQL_NEST_RELEASE, DB_NOARGS, &n, err);
        if (rc != SP_OK) {
            db_rollback(c); /* the inner unit's writes go; the outer one stays open */
            return rc;
        }
        c->depth--;
        return SP_OK;
    }
    c->depth = 0;
    rc = c->ops->commit(c, err);
    if (rc == SP_OK && c->announce && c->on_commit)
        c->on_commit(c->on_commit_ctx);
    c->announce = 0;
    return rc;
}

void
db_conn_announce(struct db_conn *c)
{
    if (c->depth > 0)
        c->announce = 1;
    else if (c->on_commit)
        c->on_commit(c->on_commit_ctx);
}

void
db_rollback(struct db_conn *c)
{
    int64_t n = 0;

    if (c->depth > 1) {
        if (db_exec(c, &SQL_NEST_UNDO, DB_NOARGS, &n, NULL) != SP_OK ||
            db_exec(c, &SQL_NEST_RELEASE, DB_NOARGS, &n, NULL) != SP_OK) {
            /* The inner unit cannot be undone alone: the whole transaction goes. */
            log_warn("database: a nested unit of work could not be undone: rolling back all");
            c->depth = 0;
            c->announce = 0;
            c->ops->rollback(c);
            return;
        }
        c->depth--;
        return;
    }
    c->depth = 0;
    c->announce = 0;
    c->ops->rollback(c);
}
