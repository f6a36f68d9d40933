/* conn_reaper.h: closes connections too slow to send their request (slowloris).
 *
 * libmicrohttpd caps connections and has an idle timeout, but that timeout restarts on every
 * byte, so a client sending one byte every few seconds holds a connection for ever. The HTTP
 * server registers each connection here when it opens (with its socket) and says where its
 * current request is (its phase); a thread shuts down, every REAPER_TICK_MS, each connection
 * whose headers are not complete `header_timeout_ms` after its request began, or whose body
 * averages under `body_min_rate` bytes a second once that same time has passed as a grace
 * period. Its owner then sees end of file and closes it the usual way.
 *
 * The owner must call conn_reaper_remove() before it closes the socket: while an entry is
 * registered (under the reaper's lock) its descriptor is still that connection's, so the reaper
 * can never shut down a reused descriptor. Knows nothing of HTTP libraries. */
#pragma once

#include "core/err.h"

#include <stddef.h>

/* Where a connection is in its current request; the reaper judges it by this. */
enum conn_phase {
    CONN_HEADERS, /* waiting for a complete header block (also idle keep-alive) */
    CONN_BODY,    /* reading the body */
    CONN_HANDLER, /* the request is complete: handler and response, never reaped */
};

struct conn_reaper;
struct conn_track;

/* Starts the reaper thread. SP_EINTERNAL when the thread or its locks cannot be created. */
int conn_reaper_start(int header_timeout_ms, int body_min_rate, struct conn_reaper **out,
                      struct sp_error *err) SP_MUST_CHECK;
/* Stops the thread and frees the reaper; every connection must have been removed. NULL ok. */
void conn_reaper_stop(struct conn_reaper *r);

/* Registers a connection whose socket is `fd`, in phase CONN_HEADERS. Never fails. */
struct conn_track *conn_reaper_add(struct conn_reaper *r, int fd);
/* Unregisters and frees `t` (NULL ok); call before the socket is closed. */
void conn_reaper_remove(struct conn_reaper *r, struct conn_track *t);

/* Called by the connection's own thread, without a lock (no contention per request). */
void conn_track_phase(struct conn_track *t, enum conn_phase phase); /* restarts its clock */
void conn_track_body(struct conn_track *t, size_t len);             /* body bytes received */
