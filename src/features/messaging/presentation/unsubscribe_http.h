/* unsubscribe_http.h: the one-click unsubscribe links of our emails (RFC 8058).
 *
 * Every email carries List-Unsubscribe: <{PUBLIC_URL}/unsubscribe/{token}> (smtp_sender.c),
 * the token naming the lead under an HMAC (email_unsubscribe_token). A mail provider's
 * one-click button POSTs to that URL; a person who follows the link gets a page with a confirm
 * button that POSTs to it too. Only the POST opts the lead out of email (leads_opt_out, source
 * "unsubscribe"): mail scanners and link previews follow GET links, and must not unsubscribe
 * anybody. Neither route needs an API key: the token is the credential. */
#pragma once

#include "core/http.h"

struct leads_deps;

struct unsubscribe_config {
    const char *secret; /* UNSUBSCRIBE_SECRET, borrowed; NULL: every token is refused (404) */
};

/* GET /unsubscribe/:token: 200 text/html, a page asking to confirm (a form POSTing to the same
 * URL), or saying the address is unsubscribed already; nothing changes. 404 (HTML) for a token
 * that is malformed, forged or names no lead; 503 (HTML, Retry-After) when storage fails. */
void unsubscribe_http_page(const struct unsubscribe_config *c, const struct leads_deps *d,
                           struct http_request *req, struct http_response *resp);
/* POST /unsubscribe/:token (any body: RFC 8058 sends List-Unsubscribe=One-Click): opts the lead
 * out of email and answers 200 text/html, also when it was opted out already. 404 (JSON error
 * body) for a bad token; 503 when storage fails. */
void unsubscribe_http_confirm(const struct unsubscribe_config *c, const struct leads_deps *d,
                              struct http_request *req, struct http_response *resp);
