/* fake_io.c: fixed clock and scripted sender (see fake_io.h). */
#include "fakes/fake_io.h"

#include "core/arena.h"

#include <stdio.h>
#include <string.h>

static int64_t
fixed_now(const struct sp_clock *c)
{
    return ((const struct fake_clock *)c)->now;
}

void
fake_clock_init(struct fake_clock *c, int64_t now)
{
    c->base.now_ms = fixed_now;
    c->now = now;
}

static int
fake_send(struct sender *base, const struct send_request *req, struct arena *a,
          const char **provider_id, struct sp_error *err)
{
    struct fake_sender *s = (struct fake_sender *)base;
    int n = s->ncalls++;

    if (s->clock)
        s->clock->now += s->latency_ms;

    if (n < FAKE_SENDER_CALLS_MAX) {
        struct fake_send_call *c = &s->calls[n];
        c->channel = req->channel;
        snprintf(c->to, sizeof(c->to), "%s", req->to ? req->to : "(null)");
        snprintf(c->to_name, sizeof(c->to_name), "%s", req->to_name ? req->to_name : "(null)");
        snprintf(c->lead_id, sizeof(c->lead_id), "%s", req->lead_id ? req->lead_id : "(null)");
        snprintf(c->in_reply_to, sizeof(c->in_reply_to), "%s",
                 req->in_reply_to ? req->in_reply_to : "(null)");
        snprintf(c->message_id, sizeof(c->message_id), "%s",
                 req->message_id ? req->message_id : "(null)");
        snprintf(c->idempotency_key, sizeof(c->idempotency_key), "%s",
                 req->idempotency_key ? req->idempotency_key : "(null)");
        snprintf(c->channel_message, sizeof(c->channel_message), "%s",
                 req->channel_message ? req->channel_message : "(null)");
        c->attempt = req->attempt;
        c->kind = req->kind;
        c->last_inbound_at = req->last_inbound_at;
    }
    if (n < s->fail_first) {
        int rc = sp_error_set(err, s->fail_code ? s->fail_code : SP_EPROVIDER, "provider",
                              "fake: scripted failure %d", n + 1);
        if (err)
            err->retry_after_ms = s->retry_after_ms;
        return rc;
    }
    *provider_id = arena_printf(a, "fake-%d", n + 1);
    return SP_OK;
}

static const struct sender_ops fake_sender_ops = {"fake", fake_send};

void
fake_sender_init(struct fake_sender *s)
{
    memset(s, 0, sizeof(*s));
    s->base.ops = &fake_sender_ops;
}
