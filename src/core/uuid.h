/* uuid.h: random (version 4) UUIDs as 36-character lowercase strings. */
#pragma once

#include <stddef.h>

#define SP_UUID_LEN 36

/* Writes a new random UUID into out[SP_UUID_LEN + 1]. Uses getrandom(2). */
void sp_uuid_v4(char *out);
/* 1 if s[0..len) is a UUID in 8-4-4-4-12 hex form (either case), else 0. */
int sp_uuid_valid(const char *s, size_t len);
