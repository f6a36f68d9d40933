/* mock_sender.h: a mock provider for email and WhatsApp, for development and tests.
 *
 * Like a real provider it honours idempotency keys: with a sink file, a send whose key was
 * already accepted (by this process, an earlier run or another process sharing the file) is
 * acknowledged without a second delivery, and its sink line carries "duplicate":true. Sink lines:
 * {"channel","to","messageId","idempotencyKey","attempt","at"[,"duplicate":true]}.
 * Failure injection: the first `fail_first` attempts of each message fail (retryable), each
 * attempt fails with probability `fail_rate`, and an address whose local part is "bounce"
 * fails permanently. Thread-safe; across processes the sink is guarded by flock(2). */
#pragma once

#include "core/err.h"

struct mock_sender;
struct sender;

struct mock_sender_config {
    const char *sink_path; /* NULL: no sink, no cross-restart idempotency */
    int fail_first;
    double fail_rate;
    int send_delay_ms; /* each send waits this long before answering */
};

int mock_sender_new(const struct mock_sender_config *cfg, struct mock_sender **out,
                    struct sp_error *err) SP_MUST_CHECK;
/* The sender interface of m (serves every channel). */
struct sender *mock_sender_base(struct mock_sender *m);
void mock_sender_free(struct mock_sender *m);
