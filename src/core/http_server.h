/* http_server.h: the libmicrohttpd wrapper (epoll internal thread + thread pool).
 *
 * Reads each request fully (enforcing HTTP_BODY_MAX with 413), builds a struct http_request
 * with a per-request arena, calls `handler` once per request on a pool thread, and sends the
 * response. Requests carrying a body with no Content-Length or chunked bodies are supported up
 * to the limit. Stopping drains in-flight requests before returning. */
#pragma once

#include "core/err.h"
#include "core/http.h"

struct http_server;

struct http_server_config {
    const char *host; /* numeric IPv4/IPv6 address or "localhost" */
    int port;         /* 0 picks a free port; see http_server_port() */
    int threads;      /* pool size, >= 1 */
    http_handler_fn handler;
    void *ctx;
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
