/* fake_io.h: a fixed clock and a scripted channel sender (test fakes).
 *
 * The clock answers `now` until a test moves it; nothing reads wall time. The sender records
 * every call (channel, address, message id, idempotency key, attempt) and fails the first
 * fail_first calls with fail_code (SP_EPROVIDER, retryable, unless set): fail_first = 1 fails
 * once, fail_first = INT_MAX with SP_EPERMANENT fails permanently. Single-threaded. */
#pragma once

#include "core/clock.h"
#include "features/messaging/domain/sender.h"

#include <stdint.h>

struct fake_clock {
    struct sp_clock base; /* first */
    int64_t now;          /* ms since the epoch; tests set and advance it */
};

void fake_clock_init(struct fake_clock *c, int64_t now);

#define FAKE_SENDER_CALLS_MAX 16

struct fake_send_call {
    enum channel channel;
    char to[256];
    char to_name[256];
    char lead_id[40];
    char in_reply_to[256]; /* "(null)" when none */
    char message_id[40];
    char idempotency_key[40];
    char channel_message[512]; /* truncated copy, enough for assertions */
    int attempt;
    enum message_kind kind;
    int64_t last_inbound_at;
};

struct fake_sender {
    struct sender base;       /* first */
    int fail_first;           /* calls that fail before the sender starts succeeding */
    int fail_code;            /* SP_EPROVIDER unless set */
    long long retry_after_ms; /* put in err with each scripted failure (a Retry-After) */
    int ncalls;               /* every call, failed or not */
    struct fake_clock *clock; /* when set, each call moves it latency_ms on (a slow provider) */
    int64_t latency_ms;
    struct fake_send_call calls[FAKE_SENDER_CALLS_MAX]; /* the first FAKE_SENDER_CALLS_MAX */
};

void fake_sender_init(struct fake_sender *s);
