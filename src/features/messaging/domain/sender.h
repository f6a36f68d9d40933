/* sender.h: the channel sender port and the registry of senders by channel.
 *
 * A sender delivers one outbound message through a provider (mock, SMTP, WhatsApp Cloud...).
 * It receives the message id as idempotency key; a provider that already accepted that key
 * must acknowledge without delivering again. Errors: SP_EPROVIDER (retryable),
 * SP_EPERMANENT (will never succeed: bad address...), SP_ETIMEDOUT (retryable). A provider
 * that says when to try again sets err->retry_after_ms with a retryable error.
 * Senders are shared by worker threads and must be thread-safe. This header is the messaging
 * slice's public face. */
#pragma once

#include "core/err.h"
#include "features/leads/domain/lead.h"

#include <stdint.h>

struct arena;
struct sender;

struct send_request {
    enum channel channel;
    const char *to;      /* address on the channel */
    const char *to_name; /* the lead's name (an email's To display name), or NULL */
    const char *lead_id; /* the lead the message belongs to (an email's Reply-To token) */
    const char *message_id;
    const char *idempotency_key; /* the message id */
    int attempt;                 /* 1 for the first attempt */
    const char *channel_message; /* JSON object text */
    /* The provider's id of the inbound message this one answers ("<id@host>" for email: its
     * In-Reply-To and References), or NULL. Filled from channel_message's "inReplyTo" once
     * inbound messages record it. */
    const char *in_reply_to;
    /* The thread for an email's References ("<a> <b> <c>": the answered message's References
     * and then its Message-ID), or NULL: In-Reply-To alone is used. */
    const char *references;
    enum message_kind kind; /* welcome, ai_reply or manual */
    /* When the lead last wrote on this channel (ms; its newest inbound message's created time),
     * 0 when never. Filled for answers and manual messages (a welcome is 0): WhatsApp's 24-hour
     * window, in which free text may be sent. */
    int64_t last_inbound_at;
};

struct sender_ops {
    const char *name;
    /* On success *provider_id (arena) is the provider's id for the delivery. */
    int (*send)(struct sender *s, const struct send_request *req, struct arena *a,
                const char **provider_id, struct sp_error *err);
};

struct sender {
    const struct sender_ops *ops;
};

static inline int SP_MUST_CHECK
sender_send(struct sender *s, const struct send_request *req, struct arena *a,
            const char **provider_id, struct sp_error *err)
{
    return s->ops->send(s, req, a, provider_id, err);
}

/* Senders by channel; a NULL entry means the channel has no sender. Borrowed pointers. */
struct sender_registry {
    struct sender *by_channel[CHANNEL_COUNT];
};

static inline struct sender *
sender_registry_get(const struct sender_registry *r, enum channel c)
{
    return (int)c >= 0 && (int)c < CHANNEL_COUNT ? r->by_channel[c] : NULL;
}

/* Bit (1u << channel) for each channel that has a sender. */
static inline unsigned
sender_registry_mask(const struct sender_registry *r)
{
    unsigned m = 0;
    for (int c = 0; c < CHANNEL_COUNT; c++)
        if (r->by_channel[c])
            m |= 1u << c;
    return m;
}
