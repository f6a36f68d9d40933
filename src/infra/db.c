/* db.c: driver-independent parts of the database port: result helpers and the pool. */
#include "infra/db.h"

#include "core/xmalloc.h"

#include <stdlib.h>

int64_t
db_cell_int(const struct db_rows *rows, int r, int c)
{
    const char *s = db_cell(rows, r, c);
    return s ? strtoll(s, NULL, 10) : 0;
}

struct db_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int size;
    int nfree;
    struct db_conn **all;
    struct db_conn **free_list;
};

int
db_pool_new(db_connect_fn connect, void *ctx, int size, struct db_pool **out, struct sp_error *err)
{
    struct db_pool *p = xcalloc(1, sizeof(*p));
    int rc = SP_OK;

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->all = xcalloc((size_t)size, sizeof(*p->all));
    p->free_list = xcalloc((size_t)size, sizeof(*p->free_list));
    for (int i = 0; i < size; i++) {
        rc = connect(ctx, &p->all[i], err);
        if (rc != SP_OK)
            break;
        p->size++;
        p->free_list[p->nfree++] = p->all[i];
    }
    if (rc != SP_OK) {
        db_pool_free(p);
        return rc;
    }
    *out = p;
    return SP_OK;
}

struct db_conn *
db_pool_acquire(struct db_pool *p)
{
    struct db_conn *c;

    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    c = p->free_list[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return c;
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
