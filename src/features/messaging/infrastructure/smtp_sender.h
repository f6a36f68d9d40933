/* smtp_sender.h: the email channel over SMTP (EMAIL_PROVIDER=smtp).
 *
 * Each send builds the message itself (email_mime.h) and hands it to a relay through libcurl
 * (infra/curl_client.h): smtp:// upgrades with STARTTLS when the relay offers it (and insists on
 * it when credentials are configured, so a password never crosses in clear text), smtps:// is
 * TLS from the first byte; certificates are always verified. The Message-ID is
 * <message id@domain of EMAIL_FROM>, the same on every attempt, so a receiver can drop a
 * duplicate left by a retry after a lost answer.
 *
 * Outcomes: the relay's 2xx is a send (its "queued as" id, if it gives one, is the provider id,
 * else the Message-ID); a 4xx reply, a connection failure or a TLS failure is SP_EPROVIDER and
 * a timeout SP_ETIMEDOUT (retried with the job's backoff); a 5xx reply is SP_EPERMANENT (the
 * message fails, with the reply line as its error). Thread-safe: the configuration is
 * read-only and each worker thread has its own curl handle. */
#pragma once

#include "core/err.h"

struct arena;
struct smtp_sender;
struct sender;

struct smtp_sender_config {
    const char *url;      /* smtp://host:port or smtps://host:port */
    const char *username; /* NULL or "": no AUTH */
    const char *password;
    const char *ca_file;      /* extra CA bundle (PEM), or NULL */
    const char *from;         /* EMAIL_FROM: "Name <address>" or "address" */
    const char *reply_domain; /* NULL: no Reply-To */
    const char *reply_secret; /* the Reply-To token's HMAC key; required with reply_domain */
    long timeout_ms;          /* the whole SMTP exchange of one message */
    /* PUBLIC_URL (NULL: no List-Unsubscribe) and the unsubscribe token's key (required with
     * it): every email then carries List-Unsubscribe: <{public_url}/unsubscribe/{token}> and
     * List-Unsubscribe-Post (RFC 8058). */
    const char *public_url;
    const char *unsubscribe_secret;
};

/* Copies what it needs of cfg. SP_EINVAL (field = the setting) for a bad EMAIL_FROM, URL, a
 * reply domain without its secret or a public URL without the unsubscribe secret. Caller frees with
 * smtp_sender_free(). */
int smtp_sender_new(const struct smtp_sender_config *cfg, struct smtp_sender **out,
                    struct sp_error *err) SP_MUST_CHECK;
/* The sender interface of s (serves the email channel). */
struct sender *smtp_sender_base(struct smtp_sender *s);
/* NULL-safe. */
void smtp_sender_free(struct smtp_sender *s);
/* For `salespad check-providers`: logs in to the relay (EHLO, STARTTLS, AUTH) and sends
 * nothing (NOOP). *detail (static) says what was checked. Errors as for sends, the relay's
 * last reply line in the message. */
int smtp_sender_check(struct smtp_sender *s, struct arena *a, const char **detail,
                      struct sp_error *err) SP_MUST_CHECK;
