/* whatsapp_webhook.h: deliveries of the WhatsApp Cloud API's webhook: the X-Hub-Signature-256
 * check and the parse of the documented envelope into inbound messages and delivery statuses.
 * Pure functions: no I/O, no storage; what to do with each item is the caller's business.
 *
 * The envelope (Meta's "Webhooks" reference for WhatsApp Business Accounts):
 *   {"object":"whatsapp_business_account","entry":[{"id":"<WABA id>","changes":[{"field":
 *    "messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":
 *    "...","phone_number_id":"..."},"contacts":[{"profile":{"name":"..."},"wa_id":"..."}],
 *    "messages":[{"from":"<wa_id>","id":"wamid...","timestamp":"<unix s>","type":"text",
 *    "text":{"body":"..."}}],"statuses":[{"id":"wamid...","status":"delivered","timestamp":
 *    "...","recipient_id":"...","errors":[{"code":131026,"title":"..."}]}]}}]}]}
 * One delivery may hold several entries, each several changes, each several messages and
 * statuses. Changes of another field than "messages" (template status updates...) are skipped. */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct arena;

/* At most this many items (messages + statuses) in one delivery; more is SP_EINVAL. */
#define WA_WEBHOOK_ITEMS_MAX 1000

struct wa_inbound {
    const char *phone_number_id; /* metadata.phone_number_id of its change */
    const char *wamid;           /* messages[].id */
    const char *from;            /* messages[].from: the sender's wa_id (digits) */
    const char *profile_name;    /* contacts[].profile.name of the contact whose wa_id == from
                                    (or of the only contact), NULL when none */
    const char *type;            /* messages[].type as sent: "text", "image", "reaction", ... */
    /* The words the prospect wrote: text.body; button.text (a quick-reply button);
     * interactive.button_reply.title or interactive.list_reply.title. NULL for other types
     * (a caption is not read) and when that member is absent, not a string or empty. */
    const char *text;
    int answerable;       /* 1 for text, button and interactive replies (they get an AI answer): in
                             effect, 1 exactly when text is not NULL */
    int64_t timestamp_ms; /* messages[].timestamp (unix seconds, as a string) * 1000; 0 absent */
    const char *context_id; /* context.id: the wamid of the message it answers, or NULL */
    const char *raw;        /* the message object, compact JSON text */
};

enum wa_status_kind { WA_STATUS_SENT = 0, WA_STATUS_DELIVERED, WA_STATUS_READ, WA_STATUS_FAILED };

struct wa_status {
    const char *phone_number_id;
    const char *wamid; /* statuses[].id: the outbound message's provider id */
    enum wa_status_kind status;
    const char *recipient_id; /* or NULL */
    int64_t timestamp_ms;     /* 0 when absent */
    long long error_code;     /* failed: errors[0].code, 0 when none */
    const char *error_title;  /* failed: errors[0].title (else errors[0].message), or NULL */
};

struct wa_delivery {
    struct wa_inbound *messages; /* arena array, in the delivery's order */
    int nmessages;
    struct wa_status *statuses; /* arena array, in the delivery's order */
    int nstatuses;
    int nskipped; /* changes or statuses skipped: another field, an unknown status value */
};

/* 1 when `header` (the X-Hub-Signature-256 value, "sha256=" then 64 hex digits, either case)
 * is the HMAC-SHA-256 of body[0..len) under secret; compared in constant time. 0 for a
 * missing (NULL), malformed or wrong signature, or an empty secret. */
int wa_webhook_signature_ok(const char *secret, const char *header, const char *body, size_t len);

/* Parses a delivery (strings in the arena). SP_EINVAL with a message for a body that is not
 * the documented JSON: not an object, "object" not "whatsapp_business_account", "entry" or
 * "changes" not arrays, a messages change whose value, metadata.phone_number_id, or a
 * message's id / from / type, or a status's id / status is missing or of the wrong type, or
 * more than WA_WEBHOOK_ITEMS_MAX items. Unknown status values ("deleted", "warning", ...) and
 * other fields are skipped (counted in nskipped), not refused.
 *
 * In detail: the body is parsed strictly (a key twice, a "\u0000" or invalid UTF-8 in a
 * string is SP_EINVAL); an entry or change that is not an object, a change without a string
 * "field", and a messages change whose "contacts", "messages" or "statuses" is present (not
 * null) but not an array are refused too, as are more than WA_WEBHOOK_ITEMS_MAX contacts in one
 * change. Skipped statuses count as items too. Ids, from, type and phone_number_id are never
 * NULL or empty; other strings are NULL rather than empty. A timestamp, when present and not
 * null, must be a string of 1..12 digits up to the end of year 9999, else SP_EINVAL. Failed
 * statuses only carry error_code / error_title; a malformed "errors" is read as none. On
 * SP_EINVAL *out is left empty (zero counts, NULL arrays); err's message names the place in
 * the envelope (entry[0].changes[1].messages[2].id), never a value from the body. */
int wa_webhook_parse(const char *body, size_t len, struct arena *a, struct wa_delivery *out,
                     struct sp_error *err) SP_MUST_CHECK;
