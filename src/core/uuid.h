/* uuid.h: UUIDs as 36-character lowercase strings: random (version 4) and time-ordered
 * (version 7, RFC 9562), the latter for primary keys so inserts land at the end of B-tree
 * indexes instead of dirtying random pages. */
#pragma once

#include <stddef.h>

#define SP_UUID_LEN 36

/* Writes a new random UUID into out[SP_UUID_LEN + 1]. Uses getrandom(2). */
void sp_uuid_v4(char *out);
/* Writes a new time-ordered UUID (48-bit Unix ms, then 74 random bits) into out[SP_UUID_LEN + 1].
 */
void sp_uuid_v7(char *out);
/* 1 if s[0..len) is a UUID in 8-4-4-4-12 hex form (either case), else 0. */
int sp_uuid_valid(const char *s, size_t len);
