/* leads.h: the leads slice's use cases (capture, reply), its query (details) and the handlers
 * of its domain events, which run inside the publishing use case's unit of work.
 *
 * Inputs are validated by the caller (presentation) for shape; the use cases re-check the
 * business rules they own and return SP_EINVAL with a message for the client. Everything they
 * return is allocated in the caller's arena. */
#pragma once

#include "core/err.h"
#include "core/queue.h"
#include "features/leads/domain/lead.h"
#include "features/leads/domain/lead_repo.h"

#include <stdint.h>

struct arena;
struct content_gen;
struct event_bus;
struct generated;
struct lead_repo;
struct sp_clock;

#define SEND_MESSAGE_JOB "send-message"
/* Generates the answer to an inbound message (data.messageId), then writes it and its
 * send-message job in one unit of work (delivery.h). Its job key is the inbound message's id. */
#define GENERATE_REPLY_JOB "generate-reply"

/* Domain events published on the bus. */
enum leads_domain_event { LEADS_EV_LEAD_ADDED = 1, LEADS_EV_LEAD_REPLIED };

struct leads_policy {
    int job_attempts;       /* JOB_ATTEMPTS */
    int64_t job_backoff_ms; /* JOB_BACKOFF_MS */
    unsigned sendable;      /* bit (1u << channel) set when the channel has a sender */
};

/* Per-request dependencies; every pointer is borrowed. repo and queue share one session. */
struct leads_deps {
    struct lead_repo *repo;
    struct job_queue *queue;
    const struct event_bus *bus;
    const struct sp_clock *clock;
    struct content_gen *gen;
    const struct leads_policy *policy;
};

/* Payload of LEADS_EV_LEAD_ADDED and LEADS_EV_LEAD_REPLIED (borrowed during publish). */
struct leads_event_ctx {
    const struct leads_deps *deps;
    struct arena *arena;
    const struct lead *lead;
    const struct message *inbound; /* LEAD_REPLIED only */
    int64_t now;
    int answerable; /* LEAD_REPLIED: 0 when the message gets no answer (an image, a reaction) */
    /* LEAD_REPLIED: the sender's address (the reply's "from") is another lead's, so the lead,
     * which has none on the channel, did not adopt it, and the message gets no answer */
    int address_in_use;
};

struct lead_input {
    const char *name;
    const char *email; /* NULL when absent */
    const char *phone; /* NULL when absent */
};

/* Captures a lead: the lead, its events, its welcome messages and their jobs in one unit of
 * work. *out is the stored lead. SP_EINVAL for bad input; SP_EUNAVAIL etc. from storage.
 * One lead per person: when another lead has the email (trimmed, case-insensitive) or the
 * phone (its digits), SP_ECONFLICT ("Lead already exists"), nothing is stored or queued, and
 * *out is that lead (out->id empty in the unlikely case the store refused the lead for another
 * reason). The store's unique indexes decide, so of concurrent captures of one person exactly
 * one succeeds. */
int leads_create(const struct leads_deps *d, const struct lead_input *in, struct arena *a,
                 struct lead *out, struct sp_error *err) SP_MUST_CHECK;

/* GET /leads: the leads newest first (created_at, then the order they were stored in), a page
 * at a time. */
struct leads_list_query {
    int has_status;
    enum lead_status status;
    /* A search: leads whose name (case-insensitive: lead_name_fold), email (lead_email_norm)
     * or, when q reads as a phone number (lead_phone_query), phone digits start with q; blanks
     * around q are ignored. NULL: none. At most LEAD_NAME_MAX characters. */
    const char *q;
    int64_t created_after;      /* only leads created after this (ms); LEAD_TIME_MIN - 1: any */
    int64_t created_before;     /* ... and before this; LEAD_TIME_MAX + 1: any */
    struct lead_list_pos after; /* from a previous page's next; seq 0: from the newest */
    int limit;                  /* 1..LEAD_LIST_MAX */
};
#define LEADS_LIST_DEFAULT 20

/* Reads one page of the list: *out is an arena array of page->n leads; page->has_next and
 * page->next say where the next page starts. SP_EINVAL for a limit out of range, an empty or
 * too long q, or a position outside LEAD_TIME_MIN..LEAD_TIME_MAX. */
int leads_list(const struct leads_deps *d, const struct leads_list_query *q, struct arena *a,
               struct lead **out, struct lead_list_page *page, struct sp_error *err) SP_MUST_CHECK;

struct reply_input {
    const char *lead_id;
    enum channel channel;
    const char *content; /* messageContent as JSON object text */
};

/* Stores the prospect's reply, moves the lead to replied and queues a generate-reply job for
 * its answer, in one unit of work; the answer itself is written later by that job. A reply that
 * asks us to stop (reply_stop_requested) gets no job but an ai_reply_skipped event, and opts the
 * lead out of the channel (an opted_out event, source "reply"); a reply on a channel the lead
 * is opted out of gets no job either (ai_reply_skipped, reason "opted_out"). message_id
 * receives the inbound message's id. The answer goes only to the lead's own
 * address on the channel. A "from" in the content must be an address of the channel
 * (lead_address_valid); when the lead has none there, it becomes the lead's address (with an
 * address_added event) in the same unit of work; otherwise it is only kept in the reply.
 * SP_EINVAL when the channel has no sender, for a bad "from" (field "messageContent.from") or
 * when the lead has no address on the channel and there is no "from" (nothing is stored),
 * SP_ENOTFOUND for an unknown lead. */
int leads_reply(const struct leads_deps *d, const struct reply_input *in, struct arena *a,
                char *message_id, struct sp_error *err) SP_MUST_CHECK;

/* A prospect's message, from any door: the simulation route (leads_reply), the WhatsApp and
 * the email webhooks. All of them run leads_receive: the message stored with a reply_received
 * event naming its source, the lead moved to replied, and a generate-reply job for its answer,
 * in one unit of work. */
struct inbound_reply {
    enum reply_source source;
    enum channel channel;
    /* How the lead is found, in this order: lead_id (the route's :id, an email's reply
     * token); else the first of thread_ids (ids of our outbound messages on the channel it
     * answers: an email's In-Reply-To and References) that names one; else `from` matching a
     * lead's address (normalised: lead_address_norm); else, with create_lead, a new lead. */
    const char *lead_id;
    const char *const *thread_ids;
    int nthread_ids;
    const char *from;        /* the sender's address on the channel, or NULL; the caller checked
                                it with lead_address_valid */
    const char *from_name;   /* a new lead's name (NULL or unusable: the address is the name) */
    int create_lead;         /* 0: a lead not found is SP_ENOTFOUND */
    const char *content;     /* the message as stored (JSON object text; "text" for WhatsApp and
                                "body" for email are the words the answer reads) */
    int answerable;          /* 0: stored and shown, never answered */
    const char *provider_id; /* the provider's id of the message, or NULL: a message whose
                                id was taken in before is a duplicate (nothing stored) */
    const char *once_token;  /* a delivery's one-time token, or NULL: seen before, nothing is
                                stored (token_replayed) */
};

struct inbound_result {
    char lead_id[SP_UUID_LEN + 1];
    char message_id[SP_UUID_LEN + 1];
    int duplicate;      /* provider_id was taken in before: nothing stored, ids empty */
    int token_replayed; /* once_token was seen before: nothing stored, ids empty */
    int lead_created;
};

/* Takes in a prospect's message (above). SP_EINVAL for a channel without a sender, content
 * missing or over MESSAGE_CONTENT_MAX, or a lead that ends up without an address on the
 * channel (nothing stored); SP_ENOTFOUND when no lead matches and create_lead is 0; storage
 * errors otherwise. A duplicate or a replayed token is SP_OK with the flag set. */
int leads_receive(const struct leads_deps *d, const struct inbound_reply *in, struct arena *a,
                  struct inbound_result *out, struct sp_error *err) SP_MUST_CHECK;

/* Forgets the claims of `source` (a token kind: "email-token") made before `before` (ms). */
int leads_forget_receipts(const struct leads_deps *d, const char *source, int64_t before,
                          struct sp_error *err) SP_MUST_CHECK;

/* A provider's delivery receipt for one of our outbound messages: it moves the message along
 * sent -> delivered -> read, or to failed (message_receipt_applies), with an event
 * (message_delivered, message_read, message_failed). */
struct delivery_receipt {
    enum channel channel;
    const char *provider_id;    /* the provider's id of our message (a wamid) */
    enum message_status status; /* MESSAGE_SENT, _DELIVERED, _READ or _FAILED */
    const char *error;          /* failed: what the provider said, or NULL */
};

/* Applies a receipt in one unit of work; *applied says whether it changed the message (a
 * receipt that would move it backwards, or repeats its status, changes nothing). SP_ENOTFOUND
 * when no outbound message has that provider id. */
int leads_apply_receipt(const struct leads_deps *d, const struct delivery_receipt *in,
                        struct arena *a, int *applied, struct sp_error *err) SP_MUST_CHECK;

/* Bounds of the details view and of one page of the paging queries: a long history is shown
 * as its newest items, a bounded slice at a time (lead_repo.h, struct lead_page_spec). Per list
 * (each channel's messages, the events) at most LEADS_DETAILS_ITEMS items and, beyond the first
 * item, at most LEADS_LIST_BUDGET bytes of contents. An item's contents are bounded too
 * (MESSAGE_CONTENT_MAX, plus the event envelope), so one list never holds more than
 * max(LEADS_LIST_BUDGET, one item) bytes of contents. */
#define LEADS_DETAILS_ITEMS 50
#define LEADS_LIST_BUDGET (512 * 1024)
#define LEADS_PAGE_DEFAULT 50
#define LEADS_PAGE_MAX 100

/* The newest messages of one channel. */
struct lead_channel_page {
    enum channel channel;
    struct message *messages; /* oldest first */
    int nmessages;
    int64_t next; /* > 0: older messages exist, read them with leads_list_messages(before=next) */
};

struct lead_details {
    struct lead lead;
    struct lead_opt_outs opt_outs; /* the channels the lead must not be contacted on */
    struct lead_channel_page channels[CHANNEL_COUNT]; /* in order of each one's first message */
    int nchannels;
    struct lead_event *events; /* the newest, oldest first */
    int nevents;
    int64_t events_next; /* > 0: older events exist (leads_list_events) */
    struct job *jobs;    /* the newest, oldest first */
    int njobs;
    int jobs_more; /* 1: older jobs exist (not listed: see docs/http-api.md) */
};

/* Reads a lead with its opt-outs, its newest messages per channel, newest events and newest
 * jobs, in one snapshot; bounded as said above. SP_ENOTFOUND for an unknown lead. */
int leads_get_details(const struct leads_deps *d, const char *id, struct arena *a,
                      struct lead_details *out, struct sp_error *err) SP_MUST_CHECK;

/* A page of a lead's messages on channel c: the newest `limit` (1..LEADS_PAGE_MAX) older than
 * `before` (0: from the newest), within LEADS_LIST_BUDGET bytes of contents, oldest first in
 * *out (page->n entries); page->next as in struct lead_page_info. SP_ENOTFOUND for an unknown
 * lead, SP_EINVAL for a limit or position out of range. */
int leads_list_messages(const struct leads_deps *d, const char *id, enum channel c, int64_t before,
                        int limit, struct arena *a, struct message **out,
                        struct lead_page_info *page, struct sp_error *err) SP_MUST_CHECK;
/* The same for the lead's events. */
int leads_list_events(const struct leads_deps *d, const char *id, int64_t before, int limit,
                      struct arena *a, struct lead_event **out, struct lead_page_info *page,
                      struct sp_error *err) SP_MUST_CHECK;

/* ---- Do not contact (opt_out.c) ---------------------------------------------------------
 *
 * A lead opted out of a channel gets nothing more there: the worker suppresses every queued
 * message of the channel when it claims it (delivery.h), whatever its kind, and a reply on
 * the channel gets no answer. An opt-out comes from an operator (the API), from the lead's own
 * reply asking to stop (leads_on_lead_replied, in the reply's unit of work) or from an email's
 * one-click unsubscribe link. */

struct opt_out_input {
    const char *lead_id;
    unsigned channels;          /* (1u << channel) bits, within LEAD_OPT_OUT_CHANNELS */
    const char *reason;         /* NULL: none; else lead_text_field_check'd, at most
                                   LEAD_OPT_OUT_REASON_MAX characters */
    enum opt_out_source source; /* who asked */
};

/* Opts the lead out of in->channels in one unit of work, under the lead's lock: each channel
 * not opted out yet gets its opt-out and an opted_out event; one opted out already keeps its
 * first opt-out (reason, source, time) and gets no event. *out receives all of the lead's
 * opt-outs afterwards. SP_EINVAL for no channel, a channel that cannot be opted out of, or a bad
 * reason (field "channel" or "reason"); SP_ENOTFOUND for an unknown lead; storage errors. */
int leads_opt_out(const struct leads_deps *d, const struct opt_out_input *in, struct arena *a,
                  struct lead_opt_outs *out, struct sp_error *err) SP_MUST_CHECK;
/* The lead may be contacted on `channels` again: their opt-outs are removed, each with an
 * opted_in event (source "api"); a channel not opted out changes nothing. Messages suppressed
 * meanwhile stay suppressed. *out as above. Errors as leads_opt_out. */
int leads_opt_in(const struct leads_deps *d, const char *lead_id, unsigned channels,
                 struct arena *a, struct lead_opt_outs *out, struct sp_error *err) SP_MUST_CHECK;
/* The lead (into *lead, when not NULL) and its opt-outs, read only, in one snapshot.
 * SP_ENOTFOUND for an unknown lead. */
int leads_get_opt_outs(const struct leads_deps *d, const char *lead_id, struct arena *a,
                       struct lead *lead, struct lead_opt_outs *out,
                       struct sp_error *err) SP_MUST_CHECK;

/* Slice-private: the body of leads_opt_out inside the caller's unit of work (the caller holds
 * the lead's lock). message_id (may be NULL) is the inbound message that asked, for the
 * events' correlation ids. *added (may be NULL) receives how many channels were opted out now. */
/* The reasons recorded for the opt-outs nobody typed. */
#define LEADS_REASON_STOP_REQUESTED "stop_requested"     /* a reply asked to stop */
#define LEADS_REASON_UNSUBSCRIBE "one_click_unsubscribe" /* an email's unsubscribe link */

int leads__opt_out_in_tx(const struct leads_deps *d, struct arena *a, const char *lead_id,
                         unsigned channels, const char *reason, enum opt_out_source source,
                         const char *message_id, int64_t now, int *added,
                         struct sp_error *err) SP_MUST_CHECK;

/* ---- Manual messages (manual.c) ------------------------------------------------------- */

/* An operator's message to the lead (kind manual). */
struct manual_input {
    const char *lead_id;
    enum channel channel;
    const char *subject; /* email */
    const char *body;    /* email */
    const char *text;    /* whatsapp */
};

/* Queues an operator's message to the lead's own address on in->channel, like any outbound
 * message (the message, its send-message job and its message_queued event in one unit of work
 * under the lead's lock); *out is the stored message. The message is refused, nothing stored,
 * when the lead is opted out of the channel: SP_ECONFLICT (an opt-out that comes after it is
 * accepted still suppresses it at send time). SP_EINVAL for a channel without a sender, bad
 * parts (lead_manual_message_check) or a lead with no address on the channel; SP_ENOTFOUND
 * for an unknown lead; storage errors. */
int leads_send_manual(const struct leads_deps *d, const struct manual_input *in, struct arena *a,
                      struct message *out, struct sp_error *err) SP_MUST_CHECK;

/* Event handlers, subscribed by the composition root (ctx unused). */
int leads_on_lead_added(void *ctx, const void *payload, struct sp_error *err);
int leads_on_lead_replied(void *ctx, const void *payload, struct sp_error *err);

/* {"leadId"[,"messageId"][,"jobId"]}: the correlation ids of an event (NULL parts left out). */
const char *leads_correlation_json(struct arena *a, const char *lead_id, const char *message_id,
                                   const char *job_id);
/* {"from","to","reason"}: the payload of status_changed. */
const char *leads_status_change_payload(struct arena *a, enum lead_status from, enum lead_status to,
                                        const char *reason);

/* The id of the answer to inbound message `inbound_id`: the same UUID with version 8 in place of
 * 7, so it is fixed by the inbound message (a generate-reply job run twice finds its answer
 * written) and never equals a generated (version 7) id. out: SP_UUID_LEN + 1 bytes. */
void leads_answer_id(const char *inbound_id, char *out);

/* Slice-private (delivery.c): inserts outbound message `id` (NULL: a new one) of kind `kind`
 * on channel c to the lead's address, its send-message job and its message_queued event, in
 * the caller's unit of work. SP_EINVAL when the lead has no address on c. */
int leads__queue_outbound(const struct leads_deps *d, struct arena *a, const struct lead *l,
                          enum channel c, enum message_kind kind, const char *id,
                          const struct generated *content, int64_t now,
                          struct sp_error *err) SP_MUST_CHECK;

/* Appends an event of `type` for lead_id with payload and correlation ids (JSON object texts). */
int leads_event_append(struct lead_repo *repo, const char *lead_id, enum lead_event_type type,
                       const char *correlation, const char *payload, int64_t now,
                       struct sp_error *err) SP_MUST_CHECK;
