/* lead.h: the leads domain: leads, messages, timeline events, channels, statuses and the rules
 * that move between them. No I/O here; strings in these structs are borrowed (usually from a
 * request or job arena). This header is the slice's public face for the messaging slice. */
#pragma once

#include "core/err.h"
#include "core/uuid.h"

#include <stddef.h>
#include <stdint.h>

struct arena;

#define LEAD_NAME_MAX 255
#define LEAD_EMAIL_MAX 255
#define LEAD_PHONE_MAX 50
#define MESSAGE_CONTENT_MAX (64 * 1024) /* serialized channel message */

enum lead_status {
    LEAD_STATUS_NEW = 0,
    LEAD_STATUS_CONTACTED,
    LEAD_STATUS_REPLIED,
    LEAD_STATUS_CONVERTED,
    LEAD_STATUS_DEAD,
};

enum channel {
    CHANNEL_EMAIL = 0,
    CHANNEL_WHATSAPP,
    CHANNEL_LINKEDIN,
    CHANNEL_VOICE,
    CHANNEL_ADS,
};
#define CHANNEL_COUNT 5

enum message_direction { MESSAGE_OUTBOUND = 0, MESSAGE_INBOUND };
enum message_kind {
    MESSAGE_KIND_WELCOME = 0,
    MESSAGE_KIND_AI_REPLY,
    MESSAGE_KIND_REPLY,
    MESSAGE_KIND_MANUAL, /* an operator's message */
};
#define MESSAGE_KIND_LAST MESSAGE_KIND_MANUAL
enum message_status {
    MESSAGE_QUEUED = 0,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    MESSAGE_FAILED,
    MESSAGE_RECEIVED,   /* inbound messages */
    MESSAGE_DELIVERED,  /* the provider reported it on the recipient's device */
    MESSAGE_READ,       /* ... and read */
    MESSAGE_SUPPRESSED, /* not sent: the lead asked not to be contacted on the channel */
};
#define MESSAGE_STATUS_LAST MESSAGE_SUPPRESSED

/* Where an inbound message came in (the reply_received event's "source"). */
enum reply_source { REPLY_SOURCE_API = 0, REPLY_SOURCE_WHATSAPP, REPLY_SOURCE_EMAIL };

enum lead_event_type {
    EVENT_LEAD_ADDED = 0,
    EVENT_MESSAGE_QUEUED,
    EVENT_MESSAGE_SENT,
    EVENT_MESSAGE_FAILED,
    EVENT_REPLY_RECEIVED,
    EVENT_AI_REPLY_SENT,
    EVENT_STATUS_CHANGED,
    EVENT_ADDRESS_ADDED,      /* a reply's sender became the lead's address on its channel */
    EVENT_AI_REPLY_FAILED,    /* the model failed for good: template answer or none */
    EVENT_AI_REPLY_SKIPPED,   /* no answer generated (the prospect asked us to stop) */
    EVENT_MESSAGE_DELIVERED,  /* a provider's receipt: on the recipient's device */
    EVENT_MESSAGE_READ,       /* a provider's receipt: read */
    EVENT_OPTED_OUT,          /* the lead asked not to be contacted on a channel */
    EVENT_OPTED_IN,           /* ... and may be contacted there again */
    EVENT_MESSAGE_SUPPRESSED, /* a queued message was not sent: its channel is opted out */
    EVENT_MESSAGE_RETRIED,    /* its failed send-message job was put back in line */
};
#define EVENT_TYPE_LAST EVENT_MESSAGE_RETRIED

struct lead {
    char id[SP_UUID_LEN + 1];
    const char *name;
    const char *email; /* NULL when absent */
    const char *phone; /* NULL when absent */
    enum lead_status status;
    int64_t created_at; /* ms since epoch */
    int64_t updated_at;
};

struct message {
    char id[SP_UUID_LEN + 1];
    char lead_id[SP_UUID_LEN + 1];
    enum channel channel;
    enum message_direction direction;
    enum message_kind kind;
    enum message_status status;
    int attempts;
    const char *last_error;      /* NULL when none */
    const char *provider_id;     /* NULL until sent */
    const char *recipient;       /* address it goes to (outbound), NULL for inbound */
    const char *channel_message; /* JSON object text */
    int64_t sent_at;             /* 0 when not sent */
    int64_t created_at;
    int64_t updated_at;
};

struct lead_event {
    char id[SP_UUID_LEN + 1];
    char lead_id[SP_UUID_LEN + 1];
    enum lead_event_type type;
    const char *correlation_ids; /* JSON object text */
    const char *payload;         /* JSON object text */
    int64_t created_at;
    int64_t seq; /* its position in the feed (lead_repo.h); set only by the feed's reads */
};

const char *lead_status_name(enum lead_status s);
int lead_status_parse(const char *s, enum lead_status *out);
const char *channel_name(enum channel c);
int channel_parse(const char *s, enum channel *out);
const char *message_direction_name(enum message_direction d);
int message_direction_parse(const char *s, enum message_direction *out);
const char *message_kind_name(enum message_kind k);
int message_kind_parse(const char *s, enum message_kind *out);
const char *message_status_name(enum message_status s);
int message_status_parse(const char *s, enum message_status *out);
const char *lead_event_type_name(enum lead_event_type t);
int lead_event_type_parse(const char *s, enum lead_event_type *out);

const char *reply_source_name(enum reply_source s);

/* Do not contact: a lead may opt out of each channel that reaches it (email, whatsapp). While
 * it is opted out of a channel nothing is sent to it there: the worker suppresses every message
 * on the channel at send time, whatever its kind. */
enum opt_out_source {
    OPT_OUT_SOURCE_API = 0,     /* an operator: POST /leads/:id/opt-out */
    OPT_OUT_SOURCE_REPLY,       /* the lead's own reply asked us to stop (reply_stop_requested) */
    OPT_OUT_SOURCE_UNSUBSCRIBE, /* the one-click unsubscribe link of an email (RFC 8058) */
};
#define LEAD_OPT_OUT_REASON_MAX 500 /* characters (UTF-16 code units, as text fields count) */

struct lead_opt_out {
    enum channel channel;
    const char *reason; /* NULL when none was given */
    enum opt_out_source source;
    int64_t at; /* ms since epoch */
};

/* Every opt-out of one lead: at most one per channel, in channel order. */
struct lead_opt_outs {
    int n;
    struct lead_opt_out v[CHANNEL_COUNT];
};

const char *opt_out_source_name(enum opt_out_source s);
int opt_out_source_parse(const char *s, enum opt_out_source *out);
/* The channels a lead can opt out of (those with addresses: email, whatsapp), as a mask of
 * (1u << channel) bits. */
#define LEAD_OPT_OUT_CHANNELS ((1u << CHANNEL_EMAIL) | (1u << CHANNEL_WHATSAPP))
/* 1 when c is one of LEAD_OPT_OUT_CHANNELS. */
int lead_opt_out_channel_valid(enum channel c);
/* The opt-out of channel c in `list`, or NULL when the lead may be contacted there. */
const struct lead_opt_out *lead_opt_out_find(const struct lead_opt_outs *list, enum channel c);

/* A provider's delivery receipt for an outbound message: the status it moves the message to,
 * never backwards. sent < delivered < read; failed applies to a message not yet delivered or
 * read (a late "failed" for a message already read is history, not news). Returns 1 and sets
 * *to when the receipt changes the message, 0 when it changes nothing (the same status again,
 * an older one, or a message that is not outbound-and-sent-or-further: queued, sending,
 * suppressed, an inbound message). */
int message_receipt_applies(enum message_status current, enum message_status receipt,
                            enum message_status *to);

/* The forms of an address used to match an inbound sender to a lead (stored with the lead).
 * Email: trimmed of blanks and lower-cased (ASCII); phone: its ASCII digits only (E.164
 * without the '+'). Written into buf[cap]; returns buf, or NULL when s is NULL, when nothing
 * is left (a phone without digits) or when it does not fit. LEAD_NORM_MAX always fits a
 * valid address. */
#define LEAD_NORM_MAX (4 * LEAD_EMAIL_MAX + 1)
const char *lead_email_norm(const char *s, char *buf, size_t cap);
const char *lead_phone_norm(const char *s, char *buf, size_t cap);
/* The one of the two for channel c (email, whatsapp); NULL on other channels. */
const char *lead_address_norm(enum channel c, const char *s, char *buf, size_t cap);

/* The form of a name the lead list's `q` compares with (stored as leads.name_lower): s with
 * its letters lower-cased: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals (the
 * simple one-to-one mappings; each keeps its UTF-8 length, so the result is as long as s: a
 * name of LEAD_NAME_MAX characters fits in LEAD_NORM_MAX). Bytes that are not such a letter,
 * valid UTF-8 or not, are copied. Written into buf[cap]; returns buf, or NULL when s is NULL or
 * does not fit. */
const char *lead_name_fold(const char *s, char *buf, size_t cap);
/* The digits of a search text that reads as (the start of) a phone number: ASCII digits with
 * optional '+', spaces, '-', '.', '(', ')' and '/' around them, at least one digit; the list's
 * `q` then also matches phones by their digits (lead_phone_norm). NULL when s is anything else
 * (a name, an email) or does not fit in buf[cap]. */
const char *lead_phone_query(const char *s, char *buf, size_t cap);

/* Status after the lead's outbound message was sent: new becomes contacted, others stay. */
enum lead_status lead_status_after_sent(enum lead_status s);
/* Status after the prospect replied: always replied (a reply revives a dead lead too). */
enum lead_status lead_status_after_reply(enum lead_status s);

/* Welcome channels for a lead, email first: fills out[] and returns how many (0..2). */
int lead_welcome_channels(const struct lead *l, enum channel out[2]);
/* The lead's address on `c` (email for email, phone for whatsapp), or NULL if it has none. */
const char *lead_address_for(const struct lead *l, enum channel c);

/* Text fields (name, email, phone) are limited in characters the way the NestJS build counted
 * them: UTF-16 code units (JavaScript's String.length), so "é" is one and "😀" two. */

/* What is wrong with a text field, if anything (the first problem found, in this order). */
enum lead_text_problem {
    LEAD_TEXT_OK = 0,
    LEAD_TEXT_BAD_UTF8, /* not UTF-8: bad or truncated sequence, overlong, surrogate, > U+10FFFF */
    LEAD_TEXT_CONTROL,  /* C0/C1 control, DEL, bidi embedding/override/isolate (U+202A-U+202E,
                           U+2066-U+2069), line or paragraph separator (U+2028, U+2029) */
    LEAD_TEXT_TOO_LONG, /* more than `max` UTF-16 code units */
};

/* s[0..len) in UTF-16 code units; SIZE_MAX when s is not valid UTF-8. */
size_t lead_text_utf16_len(const char *s, size_t len);
/* Checks s[0..len) for the problems above; max is in UTF-16 code units (SIZE_MAX: no limit).
 * A text that passes holds no CR, LF or NUL, so it can go into a header line as it is. */
enum lead_text_problem lead_text_check(const char *s, size_t len, size_t max);
/* The check of a name or phone `field`: SP_OK, or SP_EINVAL with err naming the field and a
 * NestJS-style message ("name must be shorter than or equal to 255 characters", ...). */
int lead_text_field_check(const char *field, const char *s, size_t len, size_t max,
                          struct sp_error *err) SP_MUST_CHECK;
/* A copy of s in the arena fit for one header line (a subject): every code point
 * lead_text_check refuses, and every byte that is not UTF-8, becomes a space. */
const char *lead_text_one_line(struct arena *a, const char *s);

/* 1 if `s` looks like an email address (local@domain.tld, printable, no spaces, at most
 * LEAD_EMAIL_MAX characters, lead_text_check clean), else 0. */
int lead_email_valid(const char *s, size_t len);
/* 1 if some address lead_email_valid accepts could start with `prefix`: 0 when it holds a byte
 * no address holds (a space, say) or two '@'. A search's email prefix (GET /leads?q=). */
int lead_email_prefix_possible(const char *prefix);
/* 1 if `s` is a phone number as a reply's sender on WhatsApp must be: clean for
 * lead_text_check, at most LEAD_PHONE_MAX characters, an optional leading '+', then ASCII digits
 * (3 to 15 of them) with optional spaces, '-', '.', '(' and ')' between them. Captured phones
 * are only held to lead_text_field_check (the NestJS contract took any non-blank string). */
int lead_phone_number_valid(const char *s, size_t len);
/* 1 if `s` is a valid address on channel c (email: lead_email_valid, whatsapp:
 * lead_phone_number_valid); 0 otherwise and on channels without addresses. */
int lead_address_valid(enum channel c, const char *s, size_t len);

/* An operator's manual message (POST /leads/:id/messages), bounded per channel: an email's
 * subject (one line) and body, a WhatsApp text (Meta's limit). Characters are UTF-16 code units,
 * as for the lead's fields. */
#define MANUAL_SUBJECT_MAX 255
#define MANUAL_BODY_MAX 20000
#define MANUAL_TEXT_MAX 4096

/* Checks a manual message's parts on channel c: email needs subject and body (text is NULL),
 * whatsapp needs text (subject and body are NULL); each non-empty (not only blanks), within its
 * bound, and valid UTF-8 without control characters (a body or text may hold line breaks and
 * tabs; a subject may not). SP_EINVAL naming the field ("channelMessage.subject", ...) with a
 * NestJS-style message; channels other than email and whatsapp are SP_EINVAL too. */
int lead_manual_message_check(enum channel c, const char *subject, const char *body,
                              const char *text, struct sp_error *err) SP_MUST_CHECK;

/* The intent the mock AI reads in a prospect's reply. */
enum reply_intent {
    INTENT_OTHER = 0,
    INTENT_PRICING,
    INTENT_DEMO,
    INTENT_NOT_INTERESTED,
    INTENT_STOP,
};
/* Case-insensitive keyword match; STOP wins over everything, then not-interested, demo, pricing. */
enum reply_intent reply_intent_detect(const char *text);
const char *reply_intent_name(enum reply_intent i);

/* 1 if the prospect's message asks us to stop contacting them, so that no answer is generated:
 * the message opens (after blanks, punctuation and an optional "please") with one of "stop",
 * "unsubscribe", "remove me", "opt out" / "opt-out" / "optout", "do not contact" / "don't
 * contact", "leave me alone", case-insensitive, as whole words ("STOP", "Stop please",
 * "unsubscribe me", "Please remove me from your list"), or is nothing but "end", "cancel",
 * "quit" or "stopall" (the carriers' opt-out words). A stop word later in the message ("can we
 * stop by on Friday?") does not count. NULL: 0. */
int reply_stop_requested(const char *text);
