/* mailgun_inbound.h: an inbound email as Mailgun's inbound routes post it (the "forward()"
 * action): form fields recipient, sender, from, subject, body-plain, stripped-text, timestamp,
 * token, signature, message-headers (a JSON array of [name, value] pairs) and attachment-N
 * files. The check of its signature and the reading of the fields into one struct. Pure
 * functions: the form itself is decoded by the HTTP server (http_request_form). */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct arena;
struct http_form_field;

/* A timestamp further than this from now (either way) is refused. */
#define MG_TIMESTAMP_WINDOW_MS (5 * 60 * 1000)
#define MG_REFERENCES_MAX 32

struct mg_inbound {
    const char *recipient;    /* the address it was sent to (reply+{token}@... threads it) */
    const char *sender;       /* envelope sender */
    const char *from;         /* the From header as sent */
    const char *from_name;    /* From's display name (unquoted), or NULL when it has none */
    const char *from_address; /* From's addr-spec, else sender's; lower-cased domain not
                                 assumed: compare case-insensitively */
    const char *subject;      /* or NULL */
    const char *text;         /* stripped-text when present and not blank, else body-plain */
    /* From message-headers (header names case-insensitive), each without its angle brackets
     * and surrounding blanks; NULL when absent. */
    const char *message_id;
    const char *in_reply_to;
    const char *references[MG_REFERENCES_MAX]; /* the References ids, in order */
    int nreferences;
    const char *timestamp; /* as sent (unix seconds) */
    const char *token;
    const char *signature;
    int attachments; /* file fields counted (and dropped) */
};

/* Reads the fields (strings in the arena; field values may hold NULs: such a value is
 * refused). SP_EINVAL naming the field when one of recipient, sender, timestamp, token,
 * signature is missing or empty, when both body-plain and stripped-text are missing, or
 * when message-headers is present but not a JSON array of [string, string] pairs, or when a
 * text field is not UTF-8. Unknown fields are ignored. */
int mg_inbound_read(const struct http_form_field *fields, int n, struct arena *a,
                    struct mg_inbound *out, struct sp_error *err) SP_MUST_CHECK;

/* 1 when signature is the lowercase or uppercase hex HMAC-SHA-256 of timestamp + token
 * (concatenated) under key[key_len], compared in constant time; 0 otherwise (also for an
 * empty key). */
int mg_signature_ok(const char *key, size_t key_len, const char *timestamp, const char *token,
                    const char *signature);

/* 1 when timestamp (decimal unix seconds, nothing else) is within MG_TIMESTAMP_WINDOW_MS of
 * now_ms. */
int mg_timestamp_fresh(const char *timestamp, int64_t now_ms);
