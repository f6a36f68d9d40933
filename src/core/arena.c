/* arena.c: chunked bump allocator; large requests get a block of their own. */
#include "core/arena.h"

#include "core/xmalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ARENA_BLOCK 8192
#define ARENA_ALIGN 16

struct block {
    struct block *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct block *head; /* current block; the first block created is the last in the list */
    size_t total;
};

static struct block *
block_new(size_t cap)
{
    struct block *b = xmalloc(sizeof(*b) + cap);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

struct arena *
arena_new(void)
{
    struct arena *a = xmalloc(sizeof(*a));
    a->head = block_new(ARENA_BLOCK);
    a->total = 0;
    return a;
}

void
arena_free(struct arena *a)
{
    struct block *b, *next;

    if (a == NULL)
        return;
    for (b = a->head; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

void
arena_reset(struct arena *a)
{
    struct block *b = a->head;

    while (b->next) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
    b->used = 0;
    a->head = b;
    a->total = 0;
}

void *
arena_alloc(struct arena *a, size_t len)
{
    size_t need = (len + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    struct block *b = a->head;
    void *p;

    if (need < len)
        SP_OOM(len);
    if (b->cap - b->used < need) {
        size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;
        struct block *nb = block_new(cap);
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    p = b->data + b->used;
    b->used += need;
    a->total += need;
    memset(p, 0, len);
    return p;
}

char *
arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *
arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return arena_strdup(a, "");
    p = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t
arena_used(const struct arena *a)
{
    return a->total;
}
