/* jsonr.h: reading one top-level field of a JSON object text, for callers that only need a
 * value or two (a job's data) and should not depend on a JSON library themselves. The text is
 * parsed in full (so malformed JSON is refused), nothing is kept. */
#pragma once

#include "core/err.h"

#include <stddef.h>

/* The string value of `key` in the object `json`, copied into out[cap]. SP_EINVAL when json is
 * NULL, not an object, not valid, or has no such string field (or the same key twice);
 * SP_ETOOLARGE when the value does not fit. */
int jsonr_str(const char *json, const char *key, char *out, size_t cap) SP_MUST_CHECK;
