/* t_json.h: small JSON assertions for tests (jansson), e.g. comparing a stored JSON text with an
 * expected one regardless of formatting while keeping key order significant. */
#pragma once

/* Fails the test unless `got` parses and re-serialises compactly (key order kept) to exactly
 * `want`. */
void t_json_eq(const char *file, int line, const char *want, const char *got);
#define ASSERT_JSON_EQ(want, got) t_json_eq(__FILE__, __LINE__, (want), (got))

/* Fails the test unless `got` is the same JSON value as `want`: object key order and formatting
 * do not count (a PostgreSQL jsonb column keeps neither). */
void t_json_same(const char *file, int line, const char *want, const char *got);
#define ASSERT_JSON_SAME(want, got) t_json_same(__FILE__, __LINE__, (want), (got))

/* The string value at a dotted path ("a.b") of the JSON text, copied into a static buffer
 * (overwritten by the next call); NULL when absent or not a string. */
const char *t_json_str(const char *json, const char *path);
/* The integer / boolean value at a dotted path; fails the test when absent. */
long long t_json_int(const char *json, const char *path);
