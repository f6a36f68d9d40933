/* crypto.c: see crypto.h. */
#include "core/crypto.h"

#include "core/hex.h"
#include "core/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>

void
sp_sha256(const void *data, size_t len, unsigned char out[SP_SHA256_LEN])
{
    unsigned int n = 0;

    /* EVP_Digest fails only when it cannot allocate its context */
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != SP_SHA256_LEN) {
        log_error("crypto: SHA-256 failed");
        abort();
    }
}

void
sp_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
               unsigned char out[SP_SHA256_LEN])
{
    unsigned int n = 0;

    /* HMAC() fails only when it cannot allocate (or the key length overflows an int) */
    if (key_len > 0x7fffffff || HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) == NULL ||
        n != SP_SHA256_LEN) {
        log_error("crypto: HMAC-SHA-256 failed");
        abort();
    }
}

int
sp_hmac_sha256_hex_ok(const void *key, size_t key_len, const void *data, size_t len,
                      const char *hex)
{
    unsigned char got[SP_SHA256_LEN], want[SP_SHA256_LEN];

    if (key == NULL || key_len == 0 || hex == NULL || sp_hex_decode(hex, got, sizeof(got)) != 0)
        return 0;
    sp_hmac_sha256(key, key_len, data, len, want);
    return sp_equal_ct(got, want, sizeof(got));
}

int
sp_equal_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
