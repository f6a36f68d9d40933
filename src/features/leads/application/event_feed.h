/* event_feed.h: the reads behind GET /events: every lead's events in one total order, their
 * feed position (lead_repo.h, struct lead_feed_fence), read only up to a settled position, so
 * that a client resuming after the last event it saw gets every later one exactly once.
 *
 * A reader keeps a cursor: the position of the last event it has handed out (or skipped, when it
 * follows one lead). Every function borrows `r` for the call only; results live in the caller's
 * arena. Errors come from storage (SP_EUNAVAIL etc.). */
#pragma once

#include "core/err.h"
#include "features/leads/domain/lead_repo.h"

#include <stdint.h>

struct arena;

/* Moves the fence's settled position forward as far as storage allows now (f->settled). Never
 * inside a unit of work. */
int event_feed_settle(struct lead_repo *r, struct lead_feed_fence *f,
                      struct sp_error *err) SP_MUST_CHECK;

/* Reads the next events after *cursor up to `upto` (a settled position), oldest first, at most
 * `max`, of lead `lead_id` only unless NULL, and moves *cursor past them: to the last one's
 * position, or to `upto` when fewer than `max` came back (everything up to `upto` was read).
 * *out is an arena array of *n events carrying their positions. */
int event_feed_read(struct lead_repo *r, int64_t *cursor, int64_t upto, const char *lead_id,
                    int max, struct arena *a, struct lead_event **out, int *n,
                    struct sp_error *err) SP_MUST_CHECK;

/* Where a client that last saw event `last_event_id` resumes: *cursor is that event's position.
 * SP_EINVAL when the id is not a UUID, SP_ENOTFOUND when there is no such event. */
int event_feed_resume(struct lead_repo *r, const char *last_event_id, int64_t *cursor,
                      struct sp_error *err) SP_MUST_CHECK;
