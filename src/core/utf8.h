/* utf8.h: the one strict UTF-8 decoder: every place that checks or repairs text (the JSON
 * writer, the log lines, the leads domain's field checks) reads UTF-8 through it, so they
 * agree on what is valid. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s[0..len) (len >= 1): *cp receives the code point (may be NULL) and
 * the sequence's length (1..4) is returned, or 0 when s does not start a valid sequence: a
 * stray continuation byte, 0xC0, 0xC1 or 0xF5..0xFF, a sequence cut short by len or by a byte
 * that is not a continuation (a NUL included), an overlong form, a surrogate (U+D800..U+DFFF)
 * or a code point past U+10FFFF. */
size_t sp_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

/* 1 when s[0..len) is valid UTF-8 throughout (NUL bytes count as valid U+0000). */
int sp_utf8_valid(const char *s, size_t len);

/* U+FFFD, what a byte that does not start a valid sequence becomes where text is repaired. */
#define SP_UTF8_REPLACEMENT "\xEF\xBF\xBD"
