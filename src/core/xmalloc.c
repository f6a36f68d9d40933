/* xmalloc.c: checked allocation; out of memory is fatal for a supervised service. */
#include "core/xmalloc.h"

#include <stdio.h>
#include <string.h>

void
sp_oom(const char *file, int line, size_t len)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes at %s:%d\n", len, file, line);
    abort();
}

void *
xmalloc(size_t len)
{
    void *p = malloc(len ? len : 1);
    if (p == NULL)
        SP_OOM(len);
    return p;
}

void *
xcalloc(size_t n, size_t len)
{
    void *p = calloc(n ? n : 1, len ? len : 1);
    if (p == NULL)
        SP_OOM(n * len);
    return p;
}

void *
xrealloc(void *p, size_t len)
{
    void *q = realloc(p, len ? len : 1);
    if (q == NULL)
        SP_OOM(len);
    return q;
}

char *
xstrdup(const char *s)
{
    size_t len = strlen(s);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len + 1);
    return p;
}

void
xfree_secret(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}
