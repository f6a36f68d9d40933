/* xmalloc.h: allocation that never returns NULL (out of memory: log and abort). */
#pragma once

#include <stddef.h>
#include <stdlib.h>

#define SP_OOM(len) sp_oom(__FILE__, __LINE__, (len))

_Noreturn void sp_oom(const char *file, int line, size_t len);
void *xmalloc(size_t len);
void *xcalloc(size_t n, size_t len);
void *xrealloc(void *p, size_t len);
char *xstrdup(const char *s);
/* Frees a secret (a token, a key, a header holding one) after zeroing it, in a way the compiler
 * may not drop as a dead store. NULL-safe. */
void xfree_secret(char *s);
