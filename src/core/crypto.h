/* crypto.h: the few cryptographic primitives SalesPad needs, over OpenSSL's libcrypto: a
 * digest, and a comparison whose time does not depend on where two buffers differ. */
#pragma once

#include <stddef.h>

#define SP_SHA256_LEN 32

/* SHA-256 of data[len] into out. Aborts on an OpenSSL failure (out of memory). */
void sp_sha256(const void *data, size_t len, unsigned char out[SP_SHA256_LEN]);
/* HMAC-SHA-256 of data[len] under key[key_len] into out. Aborts on an OpenSSL failure. */
void sp_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                    unsigned char out[SP_SHA256_LEN]);
/* 1 when `hex` is exactly the hex (either case) of HMAC-SHA-256(key, data[len]), compared in
 * constant time; 0 for anything else, an empty key included. The check of a webhook's
 * signature. */
int sp_hmac_sha256_hex_ok(const void *key, size_t key_len, const void *data, size_t len,
                          const char *hex);
/* 1 when a[n] == b[n]; the time taken depends on n only. */
int sp_equal_ct(const void *a, const void *b, size_t n);
