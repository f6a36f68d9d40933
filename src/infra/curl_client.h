/* curl_client.h: every call SalesPad makes to an outside server (SMTP relays, HTTP APIs) goes
 * through libcurl here, so libcurl's types stay in this module.
 *
 * TLS is always verified (peer and host name), against the system's CA store plus an optional
 * extra bundle. Each thread gets its own easy handle, created on first use and reused by every
 * later call of that thread (libcurl keeps the connection alive between calls); handles are
 * freed when their thread exits. A handle is never shared, so the calls are thread-safe.
 * The server's last answer (reply line or status and body) is kept for the caller's error text.
 * SMTP_CA_FILE-style extra CA bundles need libcurl built on OpenSSL (libcurl4-openssl-dev).
 * What this module never does: log, or keep a credential past the call (nothing it returns or
 * puts in an error contains the username or password it was given). */
#pragma once

#include "core/err.h"

#include <stddef.h>

struct arena;

#define CURL_REPLY_LINE_MAX 160 /* the kept server reply line, in bytes */

/* Once per process, before any thread calls this module. SP_EINTERNAL if libcurl cannot start. */
int curl_client_global_init(struct sp_error *err) SP_MUST_CHECK;

/* Whether `url` may carry a credential: https://, or http:// to a loopback host only (tests:
 * a token never crosses a network in clear text); no whitespace, query or fragment. */
int curl_client_url_ok(const char *url);
/* "Authorization: Bearer <token>", allocated; free it with xfree_secret(). */
char *curl_client_bearer(const char *token);
/* After every thread that used this module has exited; frees the calling thread's handle. */
void curl_client_global_cleanup(void);

/* What the server last said. Strings in the caller's arena, never NULL. */
struct curl_reply {
    long code;        /* SMTP reply code or HTTP status of the last answer, 0 when none */
    const char *line; /* SMTP: the last reply line (controls replaced, capped); HTTP: "" */
    const char *body; /* HTTP: the response body (capped at max_body); SMTP: "" */
    size_t body_len;
    long retry_after_s; /* HTTP: the answer's Retry-After in seconds (either form), 0 when none */
};

struct curl_smtp_request {
    const char *url;      /* smtp://host:port (STARTTLS when offered) or smtps://host:port */
    const char *username; /* NULL or "": no AUTH */
    const char *password;
    const char *ca_file;   /* extra CA bundle (PEM) or NULL */
    int require_tls;       /* 1: refuse to go on in clear text (smtp:// without STARTTLS) */
    const char *mail_from; /* envelope sender (addr-spec) */
    const char *rcpt_to;   /* the one envelope recipient (addr-spec) */
    const char *data;      /* the message: CRLF line ends, not dot-stuffed */
    size_t data_len;
    long connect_timeout_ms;
    long timeout_ms; /* the whole call */
};

/* Sends one message. SP_OK when the server accepted it (reply 250 to the end of DATA). On
 * failure: SP_ETIMEDOUT (a timeout), else SP_EPROVIDER with err's message naming the failure;
 * out->code / out->line tell what the server answered (the caller decides what a 5xx means).
 * Borrows req; fills *out (arena). */
int curl_client_smtp_send(const struct curl_smtp_request *req, struct arena *a,
                          struct curl_reply *out, struct sp_error *err) SP_MUST_CHECK;

/* Logs in and sends nothing: connect, EHLO, STARTTLS (when offered or required), AUTH (with a
 * username), then NOOP, then QUIT. mail_from, rcpt_to and data are unused. As
 * curl_client_smtp_send otherwise. */
int curl_client_smtp_check(const struct curl_smtp_request *req, struct arena *a,
                           struct curl_reply *out, struct sp_error *err) SP_MUST_CHECK;

struct curl_http_request {
    const char *url;            /* https://... (http:// allowed for tests on loopback) */
    const char *const *headers; /* "Name: value" lines, NULL-terminated array, or NULL */
    const char *content_type;   /* e.g. "application/json" */
    const char *body;
    size_t body_len;
    const char *ca_file; /* extra CA bundle (PEM) or NULL */
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_body; /* response bytes kept; more is an error (SP_ETOOLARGE) */
};

/* POSTs body and reads the response. SP_OK whenever an HTTP response arrived, whatever its
 * status (out->code); SP_ETIMEDOUT or SP_EPROVIDER when none did; SP_ETOOLARGE when the
 * response passed max_body. Header values (tokens) never appear in err. */
int curl_client_http_post(const struct curl_http_request *req, struct arena *a,
                          struct curl_reply *out, struct sp_error *err) SP_MUST_CHECK;
/* GETs req->url (body and content_type unused), otherwise as curl_client_http_post. */
int curl_client_http_get(const struct curl_http_request *req, struct arena *a,
                         struct curl_reply *out, struct sp_error *err) SP_MUST_CHECK;
