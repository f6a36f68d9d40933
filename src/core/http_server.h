/* http_server.h: the libmicrohttpd wrapper (one thread per connection, see http_server.c).
 *
 * Reads each request fully (enforcing HTTP_BODY_MAX with 413 and a process-wide budget for
 * buffered bodies with 503), rejects ambiguous framing (400/501), closes connections that are
 * too slow to send their request, builds a struct http_request with a per-request arena, calls
 * `handler` once per request on the connection's own thread, and sends the response. Requests
 * carrying a body with no Content-Length or chunked bodies are supported up to the limit.
 * Stopping drains in-flight requests before returning.
 *
 * A response may be a stream (http_stream_ops in http.h: server-sent events): it is sent with
 * chunked encoding, its connection closes after it, and its read() runs on the connection's
 * thread, which takes the SCHED_IDLE scheduling class (streams get the CPU requests leave). A
 * stream counts as a request in flight until it ends: its owner must end it when the process
 * stops (before http_server_stop, which waits for it). */
#pragma once

#include "core/err.h"
#include "core/http.h"

#include <stddef.h>

/* Defaults of the transport limits (the settings table in app/config.c names the same values). */
#define HTTP_HEADER_TIMEOUT_MS_DEFAULT 10000
#define HTTP_BODY_MIN_RATE_DEFAULT 4096 /* bytes per second */
#define HTTP_MAX_CONNS_PER_IP_DEFAULT 256
#define HTTP_BODY_BUDGET_DEFAULT ((size_t)64 * 1024 * 1024)

struct http_server;

struct http_server_config {
    const char *host; /* numeric IPv4/IPv6 address or "localhost" */
    int port;         /* 0 picks a free port; see http_server_port() */
    http_handler_fn handler;
    void *ctx;
    /* Transport limits; 0 means the default above. */
    int header_timeout_ms; /* a request's headers must be complete this long after its start */
    int body_min_rate;     /* bytes/s a body must average once header_timeout_ms has passed */
    int max_conns_per_ip;  /* open connections per client address */
    size_t body_budget;    /* bytes all buffered request bodies may hold together */
    /* Requests whose path starts with large_body_prefix may carry up to large_body_max bytes
     * instead of HTTP_BODY_MAX (inbound email with attachments); NULL: none. Still charged to
     * the body budget. */
    const char *large_body_prefix;
    size_t large_body_max;
};

/* Binds and starts serving. On failure returns SP_EINVAL (bad host) or SP_EUNAVAIL (bind/listen
 * failed) with a message in err. The caller frees with http_server_stop(). */
int http_server_start(const struct http_server_config *cfg, struct http_server **out,
                      struct sp_error *err) SP_MUST_CHECK;
/* The bound port (useful with port 0). */
int http_server_port(const struct http_server *s);
/* Stops accepting new connections; returns immediately. Safe to call from a signal-driven loop. */
void http_server_quiesce(struct http_server *s);
/* Waits for in-flight requests to finish, stops the threads and frees. NULL-safe. */
void http_server_stop(struct http_server *s);
