/* auth.h: the API-key check (API_KEYS). The keys are kept as SHA-256 digests; a request's key
 * is hashed and compared with every digest in constant time, so the time taken tells neither
 * which bytes of a key matched nor how long the keys are. */
#pragma once

#include "core/crypto.h"

struct api_keys {
    int n; /* 0: authentication off */
    unsigned char (*digest)[SP_SHA256_LEN];
};

/* `csv`: the normalised API_KEYS setting ("a,b", no empty entry), or NULL for none. */
void api_keys_init(struct api_keys *k, const char *csv);
void api_keys_free(struct api_keys *k);
/* 1 when `given` (the X-API-Key header, NULL when absent) is one of the keys. */
int api_keys_check(const struct api_keys *k, const char *given);
/* The index (0..n-1) of the key `given` is, or -1: which client a request is (rate limits).
 * Compares with every key, like api_keys_check. */
int api_keys_find(const struct api_keys *k, const char *given);
