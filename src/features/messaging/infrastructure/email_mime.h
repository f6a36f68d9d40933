/* email_mime.h: the outbound email as bytes: an RFC 5322 message with one MIME text/plain
 * UTF-8 part in quoted-printable, CRLF line ends, built by pure functions (no I/O, no clock:
 * the date is a parameter). Header values never copy a CR or LF: display names and subjects
 * that are not plain printable ASCII become RFC 2047 encoded-words, addresses are checked.
 * Dot-stuffing is the SMTP transport's business (libcurl does it), not this module's.
 *
 * Also the lead's tokens, HMACs of the lead id, so an address or link names its lead and cannot
 * be forged for another lead without the secret: the Reply-To token and the one-click
 * unsubscribe token (RFC 8058; List-Unsubscribe). */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct arena;

#define EMAIL_MIME_MAX (256 * 1024)    /* a built message; the body is bounded well below this */
#define EMAIL_QP_LINE_MAX 76           /* quoted-printable encoded line, soft break '=' included */
#define EMAIL_REPLY_TOKEN_LEN 53       /* 32 hex of the lead id, '-', 20 hex of the HMAC */
#define EMAIL_UNSUBSCRIBE_TOKEN_LEN 65 /* 32 hex of the lead id, '-', 32 hex of the HMAC */

/* An address as configured or stored: display name (may be NULL or "") and addr-spec. */
struct email_addr {
    const char *name;
    const char *addr;
};

struct email_message {
    struct email_addr from;
    struct email_addr to;
    const char *reply_to;    /* addr-spec, or NULL for no Reply-To */
    const char *subject;     /* UTF-8, any characters; NULL is "" */
    const char *message_id;  /* id-left@id-right, without the angle brackets */
    const char *in_reply_to; /* "<...>" msg-id of the message answered, or NULL */
    const char *references;  /* "<a> <b>" thread, or NULL (then In-Reply-To alone is used) */
    /* The one-click unsubscribe URL (http(s), printable ASCII, no spaces, brackets, quotes or
     * commas), or NULL: set, the message carries List-Unsubscribe: <url> and
     * List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 2369, RFC 8058). */
    const char *list_unsubscribe;
    int64_t date_ms;  /* ms since the epoch, rendered in UTC */
    const char *body; /* UTF-8 text, LF or CRLF line ends */
};

/* Builds the message into *out (arena, NUL-terminated) and *len. SP_EPERMANENT when an address
 * is not a plain ASCII addr-spec, a msg-id or the unsubscribe URL carries forbidden characters
 * (the message can never be sent as is); SP_ETOOLARGE past EMAIL_MIME_MAX. */
int email_mime_build(const struct email_message *m, struct arena *a, const char **out, size_t *len,
                     struct sp_error *err) SP_MUST_CHECK;

/* The header value for unstructured text (a subject): the text itself when it is printable
 * ASCII and fits on one line after a header name of name_len bytes, else RFC 2047 B
 * encoded-words of UTF-8 (at most 75 characters each, split on character boundaries), folded
 * with CRLF SP. Never contains a bare CR or LF. Arena string. */
const char *email_mime_header_text(struct arena *a, const char *text, size_t name_len);

/* The display-name phrase: atoms as is, other printable ASCII as a quoted-string, anything else
 * (non-ASCII, CR, LF, controls) as encoded-words. Arena string; "" for NULL or "". */
const char *email_mime_phrase(struct arena *a, const char *name);

/* `text` in quoted-printable (RFC 2045 6.7): CRLF line ends, '=', controls and 8-bit bytes as
 * =XX, trailing space or tab of a line encoded, soft line breaks keeping every line within
 * EMAIL_QP_LINE_MAX. Arena string. */
const char *email_mime_qp(struct arena *a, const char *text);

/* The RFC 5322 date of ms since the epoch, in UTC: "Wed, 02 Dec 2026 17:18:42 +0000".
 * out must hold 32 bytes. */
void email_mime_date(int64_t ms, char out[32]);

/* Parses "Name <addr>" or a bare "addr" (as EMAIL_FROM is written). Strings in the arena.
 * SP_EINVAL when the address part is missing or not a plain ASCII addr-spec. */
int email_addr_parse(struct arena *a, const char *s, struct email_addr *out,
                     struct sp_error *err) SP_MUST_CHECK;

/* 1 when s is a plain ASCII addr-spec (local@domain, no spaces, controls, quotes or brackets). */
int email_addr_valid(const char *s);

/* The Reply-To token of a lead: lowercase hex of the lead id's 32 digits, '-', and the first
 * 20 hex digits of HMAC-SHA-256(secret, canonical lead id). out receives
 * EMAIL_REPLY_TOKEN_LEN + 1 bytes. SP_EINVAL when lead_id is not a UUID. */
int email_reply_token(const char *secret, size_t secret_len, const char *lead_id,
                      char out[EMAIL_REPLY_TOKEN_LEN + 1]) SP_MUST_CHECK;

/* The lead id a token names, when its HMAC checks out (constant-time comparison): fills
 * lead_id (36 characters + NUL) and returns SP_OK; SP_EINVAL for a malformed or forged token.
 * For the inbound side (replies to reply+{token}@EMAIL_REPLY_DOMAIN). */
int email_reply_token_check(const char *secret, size_t secret_len, const char *token,
                            char lead_id[37]) SP_MUST_CHECK;

/* The one-click unsubscribe token of a lead: lowercase hex of the lead id's 32 digits, '-', and
 * the first 32 hex digits (128 bits) of HMAC-SHA-256(secret, "salespad-unsubscribe:" + canonical
 * lead id). The label keeps it apart from the Reply-To token even under one secret. out receives
 * EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1 bytes. SP_EINVAL when lead_id is not a UUID or there is no
 * secret. */
int email_unsubscribe_token(const char *secret, size_t secret_len, const char *lead_id,
                            char out[EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1]) SP_MUST_CHECK;

/* The lead id an unsubscribe token names, when its HMAC checks out (constant-time): fills
 * lead_id (36 characters + NUL), SP_OK; SP_EINVAL for a malformed or forged token or no secret. */
int email_unsubscribe_token_check(const char *secret, size_t secret_len, const char *token,
                                  char lead_id[37]) SP_MUST_CHECK;
