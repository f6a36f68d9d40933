/* lead_repo.h: persistence port for leads, their messages and their timeline.
 *
 * One repo value is bound to one database session (connection) and used by one thread at a
 * time. begin/commit/rollback delimit the unit of work; the job queue bound to the same session
 * takes part in it (SQL queue) so that data and jobs commit together. Strings in structs read
 * back are allocated in the caller's arena. Errors: SP_ENOTFOUND for a missing row (the _get
 * calls), SP_EUNAVAIL when the database is unreachable or busy, SP_EINTERNAL otherwise. */
#pragma once

#include "core/err.h"
#include "features/leads/domain/lead.h"

#include <stddef.h>
#include <stdint.h>

struct arena;
struct lead_repo;

/* One page of a lead's list (messages of one channel, or events), read newest first and
 * returned oldest first, so that a long history is read a bounded slice at a time.
 *
 * Positions are the store's insertion order (the order the lists have always been shown in),
 * an integer > 0 that only the repo interprets: `before` = 0 starts at the newest item,
 * otherwise only items strictly older than that position are read. At most `max` items are
 * read, and fewer when their contents reach `budget` bytes: an item is taken only while the
 * contents taken so far plus its own stay within the budget, except the first, which is always
 * taken (so every page makes progress). The rows beyond are never loaded. */
struct lead_page_spec {
    int64_t before; /* 0, or a position from a previous page's next */
    int max;        /* 1..LEAD_PAGE_MAX */
    size_t budget;  /* bytes of contents (message channel_message; event payload and ids) */
};
#define LEAD_PAGE_MAX 200

/* A page read: items[0..n) oldest first; next > 0 is the position to pass as `before` for the
 * older items, 0 when there are none. */
struct lead_page_info {
    int n;
    int64_t next;
};

/* A position in the list of all leads, newest first: by created_at descending, then by the
 * store's insertion order descending (seq, an integer > 0 that only the repo interprets). Both
 * are fixed when the lead is stored, so a position stays valid, and a walk through the list
 * page after page meets every lead stored before it began exactly once, however many leads are
 * added meanwhile (keyset pagination). */
struct lead_list_pos {
    int64_t created_at; /* ms */
    int64_t seq;        /* 0: before the first lead (the list's start) */
};

/* One page of the lead list (lead_list): the leads after `after` that pass every filter, at
 * most `max` of them, in the list's order. */
struct lead_list_spec {
    int has_status;
    enum lead_status status; /* has_status: only leads in this status */
    /* A search (the list's q): a lead matches when its name folded (lead_name_fold) starts
     * with name_prefix, or its normalised email (lead_email_norm) with email_prefix, or its
     * phone's digits (lead_phone_norm) with phone_prefix; a NULL prefix compares nothing, and
     * all three NULL means no search. Prefixes compare byte by byte. */
    const char *name_prefix;
    const char *email_prefix;
    const char *phone_prefix;
    int64_t created_min; /* created_at >= this (ms), LEAD_TIME_MIN.. */
    int64_t created_max; /* created_at <= this, ..LEAD_TIME_MAX */
    struct lead_list_pos after;
    int max; /* 1..LEAD_LIST_MAX */
};
#define LEAD_LIST_MAX 100
/* The times a list filter or position may name: 0001-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z, the range every store can compare with. */
#define LEAD_TIME_MIN (-62135596800000LL)
#define LEAD_TIME_MAX 253402300799999LL

struct lead_list_page {
    int n;                     /* leads read */
    int has_next;              /* 1: more leads pass the filters beyond this page */
    struct lead_list_pos next; /* has_next: the position of the page's last lead */
};

/* The event feed (GET /events) reads every lead's events in one total order, their position:
 * the store's insertion order (seq, an integer > 0, only the repo interprets it), the order a
 * lead's own timeline is shown in. A position is *settled* when no unit of work still running
 * can commit an event at or below it: the feed hands events out only up to a settled position,
 * so a reader that resumes after position p never misses an event committed later below p.
 * On SQLite, writers commit one at a time in position order, so the last committed position is
 * settled. On PostgreSQL positions are taken at insert time and transactions commit in any
 * order: the repo notes the last position handed out, then the transactions writing events at
 * that moment (migration 0012), and settles that position once they have all ended. The state
 * between two calls is the caller's: */
#define LEAD_FEED_WRITERS_MAX 8192 /* bytes of the writers list a fence can hold */
struct lead_feed_fence {
    int64_t settled; /* the newest settled position known (only grows); 0 at first */
    int64_t mark;    /* 0, or a position that settles once `writers` have ended */
    char writers[LEAD_FEED_WRITERS_MAX]; /* the repo's own notation */
};

struct lead_repo_ops {
    const char *name;
    int (*begin)(struct lead_repo *r, struct sp_error *err);
    int (*commit)(struct lead_repo *r, struct sp_error *err);
    void (*rollback)(struct lead_repo *r);
    /* A consistent read of several rows: everything read until read_end sees one snapshot. */
    int (*read_begin)(struct lead_repo *r, struct sp_error *err);
    void (*read_end)(struct lead_repo *r);
    int (*ping)(struct lead_repo *r, struct sp_error *err);

    /* Stores a new lead. One lead per person: SP_ECONFLICT when another lead has the same
     * normalised email or phone (lead_email_norm, lead_phone_norm; unique in the store, so of
     * concurrent inserts of one address exactly one succeeds) or the same id. On PostgreSQL
     * the conflict may surface at a later call of the unit of work or at its commit (a
     * statement that needs no answer is not waited for); either way the unit of work is lost:
     * roll it back. */
    int (*lead_insert)(struct lead_repo *r, const struct lead *l, struct sp_error *err);
    int (*lead_get)(struct lead_repo *r, const char *id, struct arena *a, struct lead *out,
                    struct sp_error *err);
    int (*lead_update_status)(struct lead_repo *r, const char *id, enum lead_status s, int64_t now,
                              struct sp_error *err);

    /* Inside a unit of work: holds the lead until commit, so concurrent units of work touching
     * one lead (two workers, a reply) run one after the other and its timeline stays in order.
     * SP_ENOTFOUND when there is no such lead. */
    int (*lead_lock)(struct lead_repo *r, const char *id, struct sp_error *err);
    /* Compare-and-set: moves the lead from `from` to `to` only if it is in `from`; *changed says
     * whether it did. Concurrent units of work (PostgreSQL, READ COMMITTED) thus never both
     * record the same transition. */
    int (*lead_transition)(struct lead_repo *r, const char *id, enum lead_status from,
                           enum lead_status to, int64_t now, int *changed, struct sp_error *err);
    /* Compare-and-set: gives the lead `address` on channel c (email or whatsapp: its email or
     * phone) only if it has none there yet; *changed says whether it did. Other channels:
     * SP_EINVAL. Callers validate the address first (lead_address_valid). SP_ECONFLICT when
     * another lead has the address (normalised), as for lead_insert: the unit of work is then
     * lost on PostgreSQL. */
    int (*lead_set_address)(struct lead_repo *r, const char *id, enum channel c,
                            const char *address, int64_t now, int *changed, struct sp_error *err);
    /* The oldest lead whose address on channel c (email or whatsapp), normalised
     * (lead_email_norm, lead_phone_norm), equals `norm`. SP_ENOTFOUND when there is none. */
    int (*lead_find_by_address)(struct lead_repo *r, enum channel c, const char *norm,
                                struct arena *a, struct lead *out, struct sp_error *err);
    /* A page of the lead list (struct lead_list_spec): *out is an arena array of page->n
     * leads, in the list's order. Reads one statement at a time, each consistent on its own
     * (no snapshot is needed: positions never change). */
    int (*lead_list)(struct lead_repo *r, const struct lead_list_spec *spec, struct arena *a,
                     struct lead **out, struct lead_list_page *page, struct sp_error *err);
    int (*message_insert)(struct lead_repo *r, const struct message *m, struct sp_error *err);
    /* The newest message on channel c in direction d whose provider id is `provider_id`.
     * SP_ENOTFOUND when there is none. */
    int (*message_find_by_provider)(struct lead_repo *r, enum channel c, enum message_direction d,
                                    const char *provider_id, struct arena *a, struct message *out,
                                    struct sp_error *err);
    int (*message_get)(struct lead_repo *r, const char *id, struct arena *a, struct message *out,
                       struct sp_error *err);
    /* Writes status, attempts, last_error, provider_id, sent_at and updated_at of m. */
    int (*message_update_delivery)(struct lead_repo *r, const struct message *m,
                                   struct sp_error *err);
    /* Every message of a lead, oldest first; *out is an arena array of *n entries. */
    int (*message_list)(struct lead_repo *r, const char *lead_id, struct arena *a,
                        struct message **out, int *n, struct sp_error *err);

    /* When the lead last wrote on channel c: the created time (ms) of its newest inbound
     * message there, 0 when it never did. */
    int (*message_last_inbound)(struct lead_repo *r, const char *lead_id, enum channel c,
                                int64_t *at, struct sp_error *err);

    /* The channels the lead has messages on, in order of each channel's first message:
     * out[0..*n), *n <= CHANNEL_COUNT. */
    int (*message_channels)(struct lead_repo *r, const char *lead_id,
                            enum channel out[CHANNEL_COUNT], int *n, struct sp_error *err);
    /* A page of the lead's messages on channel c (see struct lead_page_spec); *out is an arena
     * array of page->n entries. */
    int (*message_page)(struct lead_repo *r, const char *lead_id, enum channel c,
                        const struct lead_page_spec *spec, struct arena *a, struct message **out,
                        struct lead_page_info *page, struct sp_error *err);

    int (*event_append)(struct lead_repo *r, const struct lead_event *e, struct sp_error *err);
    int (*event_list)(struct lead_repo *r, const char *lead_id, struct arena *a,
                      struct lead_event **out, int *n, struct sp_error *err);
    /* A page of the lead's events (see struct lead_page_spec). */
    int (*event_page)(struct lead_repo *r, const char *lead_id, const struct lead_page_spec *spec,
                      struct arena *a, struct lead_event **out, struct lead_page_info *page,
                      struct sp_error *err);

    /* The feed (see struct lead_feed_fence): moves f->settled forward as far as it can now
     * (it may stay where it was: call again later). Never inside a unit of work. */
    int (*event_feed_settle)(struct lead_repo *r, struct lead_feed_fence *f, struct sp_error *err);
    /* Reads up to `max` rows at positions in (after, upto], of lead `lead_id` only unless NULL,
     * oldest first: *scanned rows, the last at position *last (0 when none). *out is an arena
     * array of the *n events among them, with their positions (seq): a row that is not a valid
     * event (a type this build does not know) is left out, never an error, so that one such
     * row cannot stop the feed. */
    int (*event_feed_page)(struct lead_repo *r, int64_t after, int64_t upto, const char *lead_id,
                           int max, struct arena *a, struct lead_event **out, int *n, int *scanned,
                           int64_t *last, struct sp_error *err);
    /* The position of event `id` (a UUID). SP_ENOTFOUND when there is no such event. */
    int (*event_position)(struct lead_repo *r, const char *id, int64_t *pos, struct sp_error *err);

    /* Inside a unit of work: records that event `key` from `source` (a wamid, an email's
     * Message-Id, a webhook's one-time token) was taken in. *fresh = 1 when it is new; 0 when
     * it was recorded before, by a committed unit of work or by one that commits while this
     * one waits for it: the caller then rolls back. Of concurrent claims of one key exactly
     * one gets *fresh = 1. */
    int (*receipt_claim)(struct lead_repo *r, const char *source, const char *key, int64_t now,
                         int *fresh, struct sp_error *err);
    /* Forgets the receipts of `source` recorded before `before` (ms since the epoch). */
    int (*receipt_prune)(struct lead_repo *r, const char *source, int64_t before,
                         struct sp_error *err);

    /* Do not contact (lead.h, struct lead_opt_out). The lead's opt-outs, in channel order; an
     * unknown lead has none. */
    int (*opt_out_list)(struct lead_repo *r, const char *lead_id, struct arena *a,
                        struct lead_opt_outs *out, struct sp_error *err);
    /* Records the lead's opt-out of o->channel unless one is recorded already (the first one
     * stands: its reason, source and time are kept); *inserted says whether it was recorded now.
     * Callers hold the lead's lock (lead_lock). */
    int (*opt_out_insert)(struct lead_repo *r, const char *lead_id, const struct lead_opt_out *o,
                          int *inserted, struct sp_error *err);
    /* Forgets the lead's opt-out of channel c; *deleted says whether there was one. */
    int (*opt_out_delete)(struct lead_repo *r, const char *lead_id, enum channel c, int *deleted,
                          struct sp_error *err);
};

/* Implementations embed this first. */
struct lead_repo {
    const struct lead_repo_ops *ops;
};

static inline int SP_MUST_CHECK
lead_repo_begin(struct lead_repo *r, struct sp_error *err)
{
    return r->ops->begin(r, err);
}
static inline int SP_MUST_CHECK
lead_repo_commit(struct lead_repo *r, struct sp_error *err)
{
    return r->ops->commit(r, err);
}
static inline void
lead_repo_rollback(struct lead_repo *r)
{
    r->ops->rollback(r);
}
static inline int SP_MUST_CHECK
lead_repo_read_begin(struct lead_repo *r, struct sp_error *err)
{
    return r->ops->read_begin(r, err);
}
static inline void
lead_repo_read_end(struct lead_repo *r)
{
    r->ops->read_end(r);
}
static inline int SP_MUST_CHECK
lead_repo_ping(struct lead_repo *r, struct sp_error *err)
{
    return r->ops->ping(r, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_insert(struct lead_repo *r, const struct lead *l, struct sp_error *err)
{
    return r->ops->lead_insert(r, l, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_get(struct lead_repo *r, const char *id, struct arena *a, struct lead *out,
                   struct sp_error *err)
{
    return r->ops->lead_get(r, id, a, out, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_update_status(struct lead_repo *r, const char *id, enum lead_status s, int64_t now,
                             struct sp_error *err)
{
    return r->ops->lead_update_status(r, id, s, now, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_lock(struct lead_repo *r, const char *id, struct sp_error *err)
{
    return r->ops->lead_lock(r, id, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_transition(struct lead_repo *r, const char *id, enum lead_status from,
                          enum lead_status to, int64_t now, int *changed, struct sp_error *err)
{
    return r->ops->lead_transition(r, id, from, to, now, changed, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_set_address(struct lead_repo *r, const char *id, enum channel c, const char *address,
                           int64_t now, int *changed, struct sp_error *err)
{
    return r->ops->lead_set_address(r, id, c, address, now, changed, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_insert(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    return r->ops->message_insert(r, m, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_get(struct lead_repo *r, const char *id, struct arena *a, struct message *out,
                      struct sp_error *err)
{
    return r->ops->message_get(r, id, a, out, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_update_delivery(struct lead_repo *r, const struct message *m,
                                  struct sp_error *err)
{
    return r->ops->message_update_delivery(r, m, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_list(struct lead_repo *r, const char *lead_id, struct arena *a,
                       struct message **out, int *n, struct sp_error *err)
{
    return r->ops->message_list(r, lead_id, a, out, n, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_last_inbound(struct lead_repo *r, const char *lead_id, enum channel c,
                               int64_t *at, struct sp_error *err)
{
    return r->ops->message_last_inbound(r, lead_id, c, at, err);
}
static inline int SP_MUST_CHECK
lead_repo_event_append(struct lead_repo *r, const struct lead_event *e, struct sp_error *err)
{
    return r->ops->event_append(r, e, err);
}
static inline int SP_MUST_CHECK
lead_repo_event_list(struct lead_repo *r, const char *lead_id, struct arena *a,
                     struct lead_event **out, int *n, struct sp_error *err)
{
    return r->ops->event_list(r, lead_id, a, out, n, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_channels(struct lead_repo *r, const char *lead_id,
                           enum channel out[CHANNEL_COUNT], int *n, struct sp_error *err)
{
    return r->ops->message_channels(r, lead_id, out, n, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_page(struct lead_repo *r, const char *lead_id, enum channel c,
                       const struct lead_page_spec *spec, struct arena *a, struct message **out,
                       struct lead_page_info *page, struct sp_error *err)
{
    return r->ops->message_page(r, lead_id, c, spec, a, out, page, err);
}
static inline int SP_MUST_CHECK
lead_repo_event_page(struct lead_repo *r, const char *lead_id, const struct lead_page_spec *spec,
                     struct arena *a, struct lead_event **out, struct lead_page_info *page,
                     struct sp_error *err)
{
    return r->ops->event_page(r, lead_id, spec, a, out, page, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_find_by_address(struct lead_repo *r, enum channel c, const char *norm,
                               struct arena *a, struct lead *out, struct sp_error *err)
{
    return r->ops->lead_find_by_address(r, c, norm, a, out, err);
}
static inline int SP_MUST_CHECK
lead_repo_lead_list(struct lead_repo *r, const struct lead_list_spec *spec, struct arena *a,
                    struct lead **out, struct lead_list_page *page, struct sp_error *err)
{
    return r->ops->lead_list(r, spec, a, out, page, err);
}
static inline int SP_MUST_CHECK
lead_repo_message_find_by_provider(struct lead_repo *r, enum channel c, enum message_direction d,
                                   const char *provider_id, struct arena *a, struct message *out,
                                   struct sp_error *err)
{
    return r->ops->message_find_by_provider(r, c, d, provider_id, a, out, err);
}
static inline int SP_MUST_CHECK
lead_repo_receipt_claim(struct lead_repo *r, const char *source, const char *key, int64_t now,
                        int *fresh, struct sp_error *err)
{
    return r->ops->receipt_claim(r, source, key, now, fresh, err);
}
static inline int SP_MUST_CHECK
lead_repo_receipt_prune(struct lead_repo *r, const char *source, int64_t before,
                        struct sp_error *err)
{
    return r->ops->receipt_prune(r, source, before, err);
}
static inline int SP_MUST_CHECK
lead_repo_opt_out_list(struct lead_repo *r, const char *lead_id, struct arena *a,
                       struct lead_opt_outs *out, struct sp_error *err)
{
    return r->ops->opt_out_list(r, lead_id, a, out, err);
}
static inline int SP_MUST_CHECK
lead_repo_opt_out_insert(struct lead_repo *r, const char *lead_id, const struct lead_opt_out *o,
                         int *inserted, struct sp_error *err)
{
    return r->ops->opt_out_insert(r, lead_id, o, inserted, err);
}
static inline int SP_MUST_CHECK
lead_repo_opt_out_delete(struct lead_repo *r, const char *lead_id, enum channel c, int *deleted,
                         struct sp_error *err)
{
    return r->ops->opt_out_delete(r, lead_id, c, deleted, err);
}
static inline int SP_MUST_CHECK
lead_repo_event_feed_settle(struct lead_repo *r, struct lead_feed_fence *f, struct sp_error *err)
{
    return r->ops->event_feed_settle(r, f, err);
}
static inline int SP_MUST_CHECK
lead_repo_event_feed_page(struct lead_repo *r, int64_t after, int64_t upto, const char *lead_id,
                          int max, struct arena *a, struct lead_event **out, int *n, int *scanned,
                          int64_t *last, struct sp_error *err)
{
    return r->ops->event_feed_page(r, after, upto, lead_id, max, a, out, n, scanned, last, err);
}
static inline int SP_MUST_CHECK
lead_repo_event_position(struct lead_repo *r, const char *id, int64_t *pos, struct sp_error *err)
{
    return r->ops->event_position(r, id, pos, err);
}
