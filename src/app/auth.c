/* auth.c: see auth.h. */
#include "app/auth.h"

#include "core/xmalloc.h"

#include <stdlib.h>
#include <string.h>

void
api_keys_init(struct api_keys *k, const char *csv)
{
    int n = 0;

    k->n = 0;
    k->digest = NULL;
    if (csv == NULL || csv[0] == '\0')
        return;
    for (const char *p = csv; p; p = strchr(p + 1, ','))
        n++;
    k->digest = xcalloc((size_t)n, sizeof(*k->digest));
    for (const char *p = csv; k->n < n; k->n++) {
        size_t len = strcspn(p, ",");
        sp_sha256(p, len, k->digest[k->n]);
        p += len + (p[len] == ',');
    }
}

void
api_keys_free(struct api_keys *k)
{
    free(k->digest);
    k->digest = NULL;
    k->n = 0;
}

int
api_keys_check(const struct api_keys *k, const char *given)
{
    return api_keys_find(k, given) >= 0;
}

int
api_keys_find(const struct api_keys *k, const char *given)
{
    unsigned char d[SP_SHA256_LEN];
    int found = -1;

    if (given == NULL || given[0] == '\0')
        return -1;
    sp_sha256(given, strlen(given), d);
    for (int i = 0; i < k->n; i++) /* no early exit: every key is compared */
        if (sp_equal_ct(d, k->digest[i], SP_SHA256_LEN) && found < 0)
            found = i;
    return found;
}
