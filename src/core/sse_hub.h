/* sse_hub.h: one process's fan-out of server-sent events, and the SSE wire format.
 *
 * The hub holds the most recent events of a feed as encoded frames ("id: ...\nevent: ...\ndata:
 * ...\n\n") in one total order: each frame has a position, an integer that only grows. One
 * publisher (the feed's thread) appends frames and moves the hub's high-water mark; any number
 * of readers (one per open stream, each on its own connection thread) copy the frames after
 * their own cursor, optionally only those of one key (a lead id), and sleep on the hub until the
 * next publication. A frame is encoded once, whatever the number of readers.
 *
 * Positions and the high-water mark: after sse_hub_publish(..., high), every event at a position
 * <= high is final: it is either in the ring or older than the ring's oldest frame. The ring is
 * bounded (frames and bytes); the oldest frames are dropped first. A reader whose cursor is older
 * than the ring is told so (SSE_READ_BEHIND) and must read the missing events from the store,
 * up to sse_hub_high(), before reading the hub again: a slow reader never holds the publisher
 * back and never makes the ring grow.
 *
 * Thread-safety: every function may be called from any thread, except sse_hub_free(), called
 * once nobody else uses the hub. Knows nothing of HTTP or of the database. */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct arena;
struct sse_hub;

#define SSE_KEY_MAX 48 /* a frame's key, with its NUL (a UUID takes 37) */

/* One frame to publish; copied by sse_hub_publish(). */
struct sse_frame_in {
    int64_t pos;      /* > every position published before */
    const char *key;  /* NUL-terminated, shorter than SSE_KEY_MAX; NULL or "" for none */
    const char *text; /* the encoded frame (sse_frame_encode) */
    size_t len;
};

/* A hub whose high-water mark starts at `start` (nothing older is ever read from it), holding at
 * most max_frames frames and max_bytes of frame text (at least one frame, however big). Caller
 * frees with sse_hub_free(). */
struct sse_hub *sse_hub_new(size_t max_frames, size_t max_bytes, int64_t start);
void sse_hub_free(struct sse_hub *h); /* NULL-safe */

/* Appends frames[0..n) (positions increasing and above the current mark; others are dropped
 * as a programming error) and moves the high-water mark to `high` (at least the last frame's
 * position), then wakes every waiting reader. */
void sse_hub_publish(struct sse_hub *h, const struct sse_frame_in *frames, int n, int64_t high);
/* Moves the high-water mark to `high` without frames, forgetting those held: for a feed with
 * no reader, which need not render anything (a reader arriving later starts at the mark). */
void sse_hub_skip(struct sse_hub *h, int64_t high);
/* Drops the frames published more than max_age_ms ago (sp_mono_ms), so that a quiet feed does
 * not keep its ring full for ever; readers older than what is left read the store. */
void sse_hub_expire(struct sse_hub *h, int64_t max_age_ms);
int64_t sse_hub_high(struct sse_hub *h);

enum sse_read {
    SSE_READ_OK = 0,     /* *len bytes copied (maybe 0: nothing new) */
    SSE_READ_BEHIND = 1, /* *cursor is older than the ring: read the store up to the mark */
    SSE_READ_CLOSED = 2, /* the hub is closed: end the stream */
};
/* Copies into buf[0..cap) the whole frames after *cursor whose key is `key` (NULL: every frame),
 * oldest first, and moves *cursor past every frame it looked at, copied or skipped; past the
 * high-water mark when it reached the end. When the first frame to copy is bigger than cap,
 * nothing is copied and *need receives its size (call again with that much room); otherwise
 * *need is 0. */
enum sse_read sse_hub_read(struct sse_hub *h, int64_t *cursor, const char *key, char *buf,
                           size_t cap, size_t *len, size_t *need);

/* A number that changes at each publication and at close. Read it before sse_hub_read(); then
 * sse_hub_wait(h, seen, ms) sleeps only if nothing happened in between. */
uint64_t sse_hub_version(struct sse_hub *h);
/* Waits until the version differs from `seen` or the hub closes (1), or timeout_ms pass (0). */
int sse_hub_wait(struct sse_hub *h, uint64_t seen, int64_t timeout_ms);

/* Readers say they are there, so that the publisher knows whether rendering is worth it. */
void sse_hub_join(struct sse_hub *h);
void sse_hub_leave(struct sse_hub *h);
int sse_hub_readers(struct sse_hub *h);

/* Ends every reader: reads answer SSE_READ_CLOSED and waits return at once, from now on. */
void sse_hub_close(struct sse_hub *h);
/* 1 once sse_hub_close() has run. */
int sse_hub_closed(struct sse_hub *h);

/* Encodes one event as an SSE frame into arena `a` ("id: <id>\nevent: <event>\n" and one "data: "
 * line per line of data, then an empty line): *out, *outlen. A data line break (CR, LF or CRLF)
 * starts a new data line, which EventSource joins back with "\n". `id` and `event` (NULL: the
 * field is left out) must be single-line: SP_EINVAL otherwise. */
int sse_frame_encode(struct arena *a, const char *id, const char *event, const char *data,
                     size_t len, const char **out, size_t *outlen) SP_MUST_CHECK;
