/* lead.h: the leads domain: leads, messages, timeline events, channels, statuses and the rules
 * that move between them. No I/O here; strings in these structs are borrowed (usually from a
 * request or job arena). This header is the slice's public face for the messaging slice. */
#pragma once

#include "core/uuid.h"

#include <stddef.h>
#include <stdint.h>

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
enum message_kind { MESSAGE_KIND_WELCOME = 0, MESSAGE_KIND_AI_REPLY, MESSAGE_KIND_REPLY };
enum message_status {
    MESSAGE_QUEUED = 0,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    MESSAGE_FAILED,
    MESSAGE_RECEIVED, /* inbound messages */
};

enum lead_event_type {
    EVENT_LEAD_ADDED = 0,
    EVENT_MESSAGE_QUEUED,
    EVENT_MESSAGE_SENT,
    EVENT_MESSAGE_FAILED,
    EVENT_REPLY_RECEIVED,
    EVENT_AI_REPLY_SENT,
    EVENT_STATUS_CHANGED,
};

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

/* Status after the lead's outbound message was sent: new becomes contacted, others stay. */
enum lead_status lead_status_after_sent(enum lead_status s);
/* Status after the prospect replied: always replied (a reply revives a dead lead too). */
enum lead_status lead_status_after_reply(enum lead_status s);

/* Welcome channels for a lead, email first: fills out[] and returns how many (0..2). */
int lead_welcome_channels(const struct lead *l, enum channel out[2]);
/* The lead's address on `c` (email for email, phone for whatsapp), or NULL if it has none. */
const char *lead_address_for(const struct lead *l, enum channel c);

/* 1 if `s` looks like an email address (local@domain.tld, printable, no spaces), else 0. */
int lead_email_valid(const char *s, size_t len);

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
