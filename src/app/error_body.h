/* error_body.h: the error body of SalesPad's HTTP API, the one the NestJS build answered with
 * (its clients parse it): {"message":["..."],"error":"<reason>","statusCode":N}, the message a
 * plain string where NestJS gives one (malformed JSON, unknown routes, 404s). Installed into
 * the HTTP layer (http_error_render_set) by the process at start-up. */
#pragma once

#include <stddef.h>

struct arena;

/* The renderer (an http_error_render_fn): any bytes in the messages give valid JSON (a byte
 * that is not UTF-8 becomes U+FFFD). */
const char *error_body_nest(struct arena *a, int status, const char *const *messages, int n,
                            int as_array, size_t *len);
/* http_error_render_set(error_body_nest). */
void error_body_install(void);
