/* lease_set.c: the leases a process holds (see lease_set.h). */
#include "core/lease_set.h"

#include "core/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
lease_set_init(struct lease_set *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
}

void
lease_set_cleanup(struct lease_set *s)
{
    pthread_mutex_destroy(&s->mu);
    free(s->list);
    s->list = NULL;
    s->n = s->cap = 0;
}

void
lease_set_add(struct lease_set *s, const char *id, const char *token, const void *owner)
{
    struct lease_entry *e;

    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->list = xrealloc(s->list, (size_t)s->cap * sizeof(*s->list));
    }
    e = &s->list[s->n++];
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(e->token, sizeof(e->token), "%s", token);
    e->owner = owner;
    e->ended = 0;
    pthread_mutex_unlock(&s->mu);
}

static int
find(const struct lease_set *s, const char *id, const char *token)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->list[i].id, id) == 0 && strcmp(s->list[i].token, token) == 0)
            return i;
    return -1;
}

void
lease_set_end(struct lease_set *s, const char *id, const char *token)
{
    int i;

    pthread_mutex_lock(&s->mu);
    i = find(s, id, token);
    if (i >= 0)
        s->list[i].ended = 1;
    pthread_mutex_unlock(&s->mu);
}

void
lease_set_release(struct lease_set *s, const void *owner, int all)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n;) {
        struct lease_entry *e = &s->list[i];
        if (e->owner == owner && (all || e->ended))
            *e = s->list[--s->n];
        else
            i++;
    }
    pthread_mutex_unlock(&s->mu);
}

void
lease_set_remove(struct lease_set *s, const char *id, const char *token)
{
    int i;

    pthread_mutex_lock(&s->mu);
    i = find(s, id, token);
    if (i >= 0)
        s->list[i] = s->list[--s->n];
    pthread_mutex_unlock(&s->mu);
}

struct lease_entry *
lease_set_snapshot(struct lease_set *s, int *n)
{
    struct lease_entry *copy;

    pthread_mutex_lock(&s->mu);
    *n = s->n;
    copy = xmalloc((size_t)(s->n ? s->n : 1) * sizeof(*copy));
    if (s->n > 0) /* list is NULL until the first entry */
        memcpy(copy, s->list, (size_t)s->n * sizeof(*copy));
    pthread_mutex_unlock(&s->mu);
    return copy;
}
