/* whatsapp_sender.h: the WhatsApp channel over Meta's WhatsApp Cloud API
 * (WHATSAPP_PROVIDER=cloud).
 *
 * Each send is one POST {api_url}/{phone_number_id}/messages with a bearer token, through
 * libcurl (infra/curl_client.h; TLS verified, plain http only to a loopback host, for tests).
 * What is sent depends on WhatsApp's 24-hour customer-service window: a welcome, and anything
 * sent when the lead wrote no WhatsApp message in the last 24 hours, may only be a template
 * (the configured one, the lead's name as its one body parameter); an answer inside the window
 * is a text message. An answer outside the window fails permanently without calling Meta.
 *
 * Outcomes: a 2xx with messages[0].id is a send (that "wamid" is the provider id). Throttling
 * (HTTP 429, codes 4, 80007, 130429, 131056), 5xx and Meta's transient codes are SP_EPROVIDER
 * (retried; a Retry-After is handed to the queue through err->retry_after_ms); a timeout is
 * SP_ETIMEDOUT; a refused token (190, HTTP 401) and the other 4xx (131047 re-engagement,
 * 131026 undeliverable, bad parameters...) are SP_EPERMANENT. The error text is
 * "whatsapp: <code> <Meta's message> (HTTP <status>)" and never holds the token. Thread-safe:
 * the configuration is read-only and each worker thread has its own curl handle. */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct arena;
struct sender;
struct whatsapp_sender;

#define WHATSAPP_WINDOW_MS (24LL * 60 * 60 * 1000) /* the customer-service window */

struct whatsapp_sender_config {
    const char *api_url;          /* https://graph.facebook.com/v21.0 */
    const char *phone_number_id;  /* digits */
    const char *token;            /* the bearer token (secret) */
    const char *welcome_template; /* an approved template's name */
    const char *template_lang;    /* en_US */
    long timeout_ms;              /* the whole HTTP exchange of one message */
};

/* Copies what it needs of cfg. SP_EINVAL (field = the setting, message never holding the
 * token) for a missing or malformed setting. Caller frees with whatsapp_sender_free(). */
int whatsapp_sender_new(const struct whatsapp_sender_config *cfg, struct whatsapp_sender **out,
                        struct sp_error *err) SP_MUST_CHECK;
/* The sender interface of s (serves the whatsapp channel). */
struct sender *whatsapp_sender_base(struct whatsapp_sender *s);
/* NULL-safe; wipes the token. */
void whatsapp_sender_free(struct whatsapp_sender *s);
/* For `salespad check-providers`: GET {api_url}/{phone_number_id} with the token, nothing
 * sent. *detail (arena) says what was found. Errors as for sends. */
int whatsapp_sender_check(struct whatsapp_sender *s, struct arena *a, const char **detail,
                          struct sp_error *err) SP_MUST_CHECK;

/* ---- the pure parts, exposed for the unit tests ------------------------------------------- */

/* One Cloud API message. Either a template (template_name set: its language and the one body
 * parameter) or a text (text set). Strings borrowed. */
struct whatsapp_message {
    const char *to; /* the lead's phone as captured: only its digits are sent */
    const char *template_name;
    const char *template_lang;
    const char *template_param; /* the body's {{1}}: the lead's name */
    const char *text;
};

/* The request body (JSON, in the arena) for m. SP_EPERMANENT when the phone does not hold 3 to
 * 15 digits or the message has neither a template nor a text. */
int whatsapp_request_build(const struct whatsapp_message *m, struct arena *a, const char **out,
                           size_t *len, struct sp_error *err) SP_MUST_CHECK;

/* Whether a message sent at now_ms may be a free-form text: the lead's newest inbound WhatsApp
 * message (last_inbound_ms, 0 when none) is less than 24 hours old. */
int whatsapp_window_open(int64_t last_inbound_ms, int64_t now_ms);

/* What a non-2xx answer means. Sets err (message "whatsapp: ..."; err->retry_after_ms from
 * retry_after_s when the error is throttling) and returns SP_EPROVIDER or SP_EPERMANENT;
 * *token_refused is 1 when Meta refused the token (code 190 or HTTP 401). body may be NULL or
 * not JSON. */
int whatsapp_error_classify(long status, const char *body, size_t body_len, long retry_after_s,
                            int *token_refused, struct sp_error *err);

/* The wamid of a 2xx answer's messages[0].id, in the arena; NULL when the body does not hold
 * one. */
const char *whatsapp_reply_id(const char *body, size_t body_len, struct arena *a);
