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
    const char *recipient; /* the address it was sent to (reply+{token}@... threads it) */
    const char *sender;    /* envelope sender */
    const char *from;      /* the From header as sent */
    /* From's display name: quotes and backslash escapes of quoted-strings removed, control
     * characters as spaces, outer blanks trimmed; RFC 2047 encoded-words (=?UTF-8?B?...?=) are
     * kept as sent, not decoded. NULL when it has none. Forms read: "Name" <addr>,
     * Name <addr>, <addr>, addr, addr (Name). */
    const char *from_name;
    const char *from_address; /* From's addr-spec, else (no From, or none plausible in it)
                                 sender's; lower-cased domain not assumed: compare
                                 case-insensitively */
    const char *subject;      /* or NULL */
    const char *text;         /* stripped-text when present and not blank, else body-plain
                                 (else the blank stripped-text) */
    /* From message-headers (header names case-insensitive; the first header of a name
     * counts), each without its angle brackets and surrounding blanks; NULL when absent.
     * Message-Id and In-Reply-To: the first "<id>" of the value, else its first bare word. An
     * id with a blank, control character or bracket inside, or longer than 998 bytes, is
     * skipped. */
    const char *message_id;
    const char *in_reply_to;
    /* The References ids (separated by blanks, commas or comments), in order. Over
     * MG_REFERENCES_MAX the last ones are kept: they are the messages nearest this reply. */
    const char *references[MG_REFERENCES_MAX];
    int nreferences;
    const char *timestamp; /* as sent (unix seconds) */
    const char *token;
    const char *signature;
    int attachments; /* file fields counted (and dropped) */
};

/* Reads the fields (strings in the arena, valid until it is reset; fields borrowed for the
 * call). SP_EINVAL naming the field when one of recipient, sender, timestamp, token,
 * signature is missing, empty or blank, when both body-plain and stripped-text are missing
 * ("body-plain"), when message-headers is present but not a JSON array of [string, string]
 * pairs, or when a field read here (those, from, subject, body-plain, stripped-text and
 * message-headers) is given twice, holds a NUL byte or is not UTF-8. Other fields are
 * ignored; file parts (any name) are counted in `attachments` and dropped. On an error *out
 * is zeroed. Thread-safe (arena aside). */
int mg_inbound_read(const struct http_form_field *fields, int n, struct arena *a,
                    struct mg_inbound *out, struct sp_error *err) SP_MUST_CHECK;

/* 1 when signature is the lowercase or uppercase hex HMAC-SHA-256 of timestamp + token
 * (concatenated) under key[key_len], compared in constant time; 0 otherwise (also for an
 * empty key, a NULL argument, or timestamp + token over 512 bytes: Mailgun's are about 60). */
int mg_signature_ok(const char *key, size_t key_len, const char *timestamp, const char *token,
                    const char *signature);

/* 1 when timestamp (decimal unix seconds: ASCII digits only, no sign or blank, no overflow of
 * int64 milliseconds) is within MG_TIMESTAMP_WINDOW_MS of now_ms, either way (bounds included). */
int mg_timestamp_fresh(const char *timestamp, int64_t now_ms);
