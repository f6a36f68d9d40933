/* hex.h: hexadecimal digits, the one implementation (percent-escapes, digests, signatures). */
#pragma once

#include <stddef.h>

/* The value of one hex digit, either case; -1 for anything else (the terminating NUL too). */
int sp_hex_digit(int c);
/* Lowercase hex of d[0..n) into out (2n characters and a NUL). */
void sp_hex_encode(const unsigned char *d, size_t n, char *out);
/* Exactly 2n hex digits, either case, and then the end of the string, into out[0..n): 0, or -1
 * when s is shorter, longer or holds another character (nothing is read past the first
 * character that is not a digit). */
int sp_hex_decode(const char *s, unsigned char *out, size_t n);
