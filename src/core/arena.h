/* arena.h: a bump allocator for one request or one job.
 *
 * Everything a request parses, reads from the database or renders is allocated here and released
 * at once by arena_reset() or arena_free(). Allocation failure aborts (xmalloc.h's OOM policy).
 * What goes in is bounded by its producers (HTTP_BODY_MAX, field limits, jsonw limits). */
#pragma once

#include <stdarg.h>
#include <stddef.h>

struct arena;

/* A new arena; caller frees with arena_free(). Never returns NULL. */
struct arena *arena_new(void);
/* NULL-safe. */
void arena_free(struct arena *a);
/* Release every allocation but keep the first block for reuse. */
void arena_reset(struct arena *a);
/* Zeroed memory, 16-byte aligned, valid until the next reset. Never returns NULL. */
void *arena_alloc(struct arena *a, size_t len);
char *arena_strndup(struct arena *a, const char *s, size_t len);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Bytes handed out since the last reset. */
size_t arena_used(const struct arena *a);
