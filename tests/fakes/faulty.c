/* faulty.c: fault-injecting repo and queue wrappers (see faulty.h). */
#include "fakes/faulty.h"

#include <stdio.h>
#include <string.h>

void
fault_plan_arm(struct fault_plan *p, int fail_at, int code)
{
    memset(p, 0, sizeof(*p));
    p->fail_at = fail_at;
    p->fail_code = code ? code : SP_EUNAVAIL;
}

/* Counts one call; returns the injected error, or SP_OK to go on to the wrapped call. */
static int
hit(struct fault_plan *p, const char *op, struct sp_error *err)
{
    p->calls++;
    if (p->count_op && strcmp(p->count_op, op) == 0)
        p->counted++;
    if (p->fail_at <= 0 || p->calls < p->fail_at || (!p->sticky && p->calls != p->fail_at))
        return SP_OK;
    p->injected++;
    snprintf(p->last_op, sizeof(p->last_op), "%s", op);
    return sp_error_set(err, p->fail_code ? p->fail_code : SP_EUNAVAIL, "database",
                        "injected failure of %s (call %d)", op, p->calls);
}

#define REPO(r) (((struct faulty_repo *)(r))->inner)
#define PLAN(r) (((struct faulty_repo *)(r))->plan)
#define QUEUE(q) (((struct faulty_queue *)(q))->inner)
#define QPLAN(q) (((struct faulty_queue *)(q))->plan)

static int
r_begin(struct lead_repo *r, struct sp_error *err)
{
    int rc = hit(PLAN(r), "begin", err);
    if (rc == SP_OK)
        rc = lead_repo_begin(REPO(r), err);
    if (rc == SP_OK)
        PLAN(r)->open_tx = 1;
    return rc;
}

static int
r_commit(struct lead_repo *r, struct sp_error *err)
{
    int rc = hit(PLAN(r), "commit", err);
    if (rc != SP_OK)
        lead_repo_rollback(REPO(r)); /* a failed COMMIT leaves no transaction behind */
    else
        rc = lead_repo_commit(REPO(r), err);
    PLAN(r)->open_tx = 0;
    return rc;
}

static void
r_rollback(struct lead_repo *r)
{
    lead_repo_rollback(REPO(r));
    PLAN(r)->open_tx = 0;
}

static int
r_ping(struct lead_repo *r, struct sp_error *err)
{
    int rc = hit(PLAN(r), "ping", err);
    return rc != SP_OK ? rc : lead_repo_ping(REPO(r), err);
}

static int
r_read_begin(struct lead_repo *r, struct sp_error *err)
{
    int rc = hit(PLAN(r), "read_begin", err);
    return rc != SP_OK ? rc : lead_repo_read_begin(REPO(r), err);
}

static void
r_read_end(struct lead_repo *r)
{
    lead_repo_read_end(REPO(r));
}

static int
r_lead_insert(struct lead_repo *r, const struct lead *l, struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_insert", err);
    return rc != SP_OK ? rc : lead_repo_lead_insert(REPO(r), l, err);
}

static int
r_lead_get(struct lead_repo *r, const char *id, struct arena *a, struct lead *out,
           struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_get", err);
    return rc != SP_OK ? rc : lead_repo_lead_get(REPO(r), id, a, out, err);
}

static int
r_lead_lock(struct lead_repo *r, const char *id, struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_lock", err);
    return rc != SP_OK ? rc : lead_repo_lead_lock(REPO(r), id, err);
}

static int
r_lead_transition(struct lead_repo *r, const char *id, enum lead_status from, enum lead_status to,
                  int64_t now, int *changed, struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_transition", err);
    *changed = 0;
    return rc != SP_OK ? rc : lead_repo_lead_transition(REPO(r), id, from, to, now, changed, err);
}

static int
r_lead_set_address(struct lead_repo *r, const char *id, enum channel c, const char *address,
                   int64_t now, int *changed, struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_set_address", err);
    *changed = 0;
    return rc != SP_OK ? rc
                       : lead_repo_lead_set_address(REPO(r), id, c, address, now, changed, err);
}

static int
r_lead_update_status(struct lead_repo *r, const char *id, enum lead_status s, int64_t now,
                     struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_update_status", err);
    return rc != SP_OK ? rc : lead_repo_lead_update_status(REPO(r), id, s, now, err);
}

static int
r_message_insert(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_insert", err);
    return rc != SP_OK ? rc : lead_repo_message_insert(REPO(r), m, err);
}

static int
r_message_get(struct lead_repo *r, const char *id, struct arena *a, struct message *out,
              struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_get", err);
    return rc != SP_OK ? rc : lead_repo_message_get(REPO(r), id, a, out, err);
}

static int
r_message_update_delivery(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_update_delivery", err);
    return rc != SP_OK ? rc : lead_repo_message_update_delivery(REPO(r), m, err);
}

static int
r_message_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct message **out,
               int *n, struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_list", err);
    return rc != SP_OK ? rc : lead_repo_message_list(REPO(r), lead_id, a, out, n, err);
}

static int
r_event_append(struct lead_repo *r, const struct lead_event *e, struct sp_error *err)
{
    int rc = hit(PLAN(r), "event_append", err);
    return rc != SP_OK ? rc : lead_repo_event_append(REPO(r), e, err);
}

static int
r_event_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct lead_event **out,
             int *n, struct sp_error *err)
{
    int rc = hit(PLAN(r), "event_list", err);
    return rc != SP_OK ? rc : lead_repo_event_list(REPO(r), lead_id, a, out, n, err);
}

static int
r_message_last_inbound(struct lead_repo *r, const char *lead_id, enum channel c, int64_t *at,
                       struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_last_inbound", err);
    return rc != SP_OK ? rc : lead_repo_message_last_inbound(REPO(r), lead_id, c, at, err);
}

static int
r_lead_find_by_address(struct lead_repo *r, enum channel c, const char *norm, struct arena *a,
                       struct lead *out, struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_find_by_address", err);

    if (rc == SP_OK && PLAN(r)->hide_addresses > 0) {
        PLAN(r)->hide_addresses--; /* the lead is stored a moment after this lookup */
        return sp_error_set(err, SP_ENOTFOUND, "from", "no lead with that address (hidden)");
    }
    return rc != SP_OK ? rc : lead_repo_lead_find_by_address(REPO(r), c, norm, a, out, err);
}

static int
r_lead_list(struct lead_repo *r, const struct lead_list_spec *spec, struct arena *a,
            struct lead **out, struct lead_list_page *page, struct sp_error *err)
{
    int rc = hit(PLAN(r), "lead_list", err);

    if (rc != SP_OK) {
        *out = NULL;
        memset(page, 0, sizeof(*page));
        return rc;
    }
    return lead_repo_lead_list(REPO(r), spec, a, out, page, err);
}

static int
r_message_find_by_provider(struct lead_repo *r, enum channel c, enum message_direction d,
                           const char *provider_id, struct arena *a, struct message *out,
                           struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_find_by_provider", err);
    return rc != SP_OK
               ? rc
               : lead_repo_message_find_by_provider(REPO(r), c, d, provider_id, a, out, err);
}

static int
r_receipt_claim(struct lead_repo *r, const char *source, const char *key, int64_t now, int *fresh,
                struct sp_error *err)
{
    int rc = hit(PLAN(r), "receipt_claim", err);
    return rc != SP_OK ? rc : lead_repo_receipt_claim(REPO(r), source, key, now, fresh, err);
}

static int
r_receipt_prune(struct lead_repo *r, const char *source, int64_t before, struct sp_error *err)
{
    int rc = hit(PLAN(r), "receipt_prune", err);
    return rc != SP_OK ? rc : lead_repo_receipt_prune(REPO(r), source, before, err);
}

static int
r_message_channels(struct lead_repo *r, const char *lead_id, enum channel out[CHANNEL_COUNT],
                   int *n, struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_channels", err);
    return rc != SP_OK ? rc : lead_repo_message_channels(REPO(r), lead_id, out, n, err);
}

static int
r_message_page(struct lead_repo *r, const char *lead_id, enum channel c,
               const struct lead_page_spec *spec, struct arena *a, struct message **out,
               struct lead_page_info *page, struct sp_error *err)
{
    int rc = hit(PLAN(r), "message_page", err);
    return rc != SP_OK ? rc : lead_repo_message_page(REPO(r), lead_id, c, spec, a, out, page, err);
}

static int
r_event_page(struct lead_repo *r, const char *lead_id, const struct lead_page_spec *spec,
             struct arena *a, struct lead_event **out, struct lead_page_info *page,
             struct sp_error *err)
{
    int rc = hit(PLAN(r), "event_page", err);
    return rc != SP_OK ? rc : lead_repo_event_page(REPO(r), lead_id, spec, a, out, page, err);
}

static int
r_opt_out_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct lead_opt_outs *out,
               struct sp_error *err)
{
    int rc = hit(PLAN(r), "opt_out_list", err);
    if (rc != SP_OK)
        memset(out, 0, sizeof(*out));
    return rc != SP_OK ? rc : lead_repo_opt_out_list(REPO(r), lead_id, a, out, err);
}

static int
r_opt_out_insert(struct lead_repo *r, const char *lead_id, const struct lead_opt_out *o,
                 int *inserted, struct sp_error *err)
{
    int rc = hit(PLAN(r), "opt_out_insert", err);
    *inserted = 0;
    return rc != SP_OK ? rc : lead_repo_opt_out_insert(REPO(r), lead_id, o, inserted, err);
}

static int
r_opt_out_delete(struct lead_repo *r, const char *lead_id, enum channel c, int *deleted,
                 struct sp_error *err)
{
    int rc = hit(PLAN(r), "opt_out_delete", err);
    *deleted = 0;
    return rc != SP_OK ? rc : lead_repo_opt_out_delete(REPO(r), lead_id, c, deleted, err);
}

static int
r_event_feed_settle(struct lead_repo *r, struct lead_feed_fence *f, struct sp_error *err)
{
    int rc = hit(PLAN(r), "event_feed_settle", err);
    return rc != SP_OK ? rc : lead_repo_event_feed_settle(REPO(r), f, err);
}

static int
r_event_feed_page(struct lead_repo *r, int64_t after, int64_t upto, const char *lead_id, int max,
                  struct arena *a, struct lead_event **out, int *n, int *scanned, int64_t *last,
                  struct sp_error *err)
{
    int rc = hit(PLAN(r), "event_feed_page", err);
    return rc != SP_OK ? rc
                       : lead_repo_event_feed_page(REPO(r), after, upto, lead_id, max, a, out, n,
                                                   scanned, last, err);
}

static int
r_event_position(struct lead_repo *r, const char *id, int64_t *pos, struct sp_error *err)
{
    int rc = hit(PLAN(r), "event_position", err);
    return rc != SP_OK ? rc : lead_repo_event_position(REPO(r), id, pos, err);
}

static const struct lead_repo_ops faulty_repo_ops = {
    .name = "faulty",
    .begin = r_begin,
    .commit = r_commit,
    .rollback = r_rollback,
    .read_begin = r_read_begin,
    .read_end = r_read_end,
    .ping = r_ping,
    .lead_insert = r_lead_insert,
    .lead_get = r_lead_get,
    .lead_update_status = r_lead_update_status,
    .lead_lock = r_lead_lock,
    .lead_transition = r_lead_transition,
    .lead_set_address = r_lead_set_address,
    .message_insert = r_message_insert,
    .message_get = r_message_get,
    .message_update_delivery = r_message_update_delivery,
    .message_list = r_message_list,
    .message_last_inbound = r_message_last_inbound,
    .lead_find_by_address = r_lead_find_by_address,
    .lead_list = r_lead_list,
    .message_find_by_provider = r_message_find_by_provider,
    .receipt_claim = r_receipt_claim,
    .receipt_prune = r_receipt_prune,
    .message_channels = r_message_channels,
    .message_page = r_message_page,
    .event_append = r_event_append,
    .event_list = r_event_list,
    .event_page = r_event_page,
    .event_feed_settle = r_event_feed_settle,
    .event_feed_page = r_event_feed_page,
    .event_position = r_event_position,
    .opt_out_list = r_opt_out_list,
    .opt_out_insert = r_opt_out_insert,
    .opt_out_delete = r_opt_out_delete,
};

void
faulty_repo_init(struct faulty_repo *r, struct lead_repo *inner, struct fault_plan *plan)
{
    r->base.ops = &faulty_repo_ops;
    r->inner = inner;
    r->plan = plan;
}

/* Every queue operation, generated from the port's list: a fallible one counts as a call and
 * fails when the plan says so, else goes to the wrapped queue. */
#define FAULTY_QUEUE_OP(name, params, args)                                                        \
    static int fq_##name JOB_QUEUE_PARAMS_ params                                                  \
    {                                                                                              \
        int rc = hit(QPLAN(q), #name, err);                                                        \
        if (rc != SP_OK)                                                                           \
            return rc;                                                                             \
        q = QUEUE(q);                                                                              \
        return q->ops->name JOB_QUEUE_ARGS_ args;                                                  \
    }
JOB_QUEUE_OPS(FAULTY_QUEUE_OP)

/* The operations that cannot fail are only forwarded. */
#define FAULTY_QUEUE_VOID_OP(name, params, args)                                                   \
    static void fq_##name(struct job_queue *q)                                                     \
    {                                                                                              \
        q = QUEUE(q);                                                                              \
        q->ops->name(q);                                                                           \
    }
JOB_QUEUE_VOID_OPS(FAULTY_QUEUE_VOID_OP)

#define JOB_QUEUE_IMPL_(name) fq_##name
static const struct job_queue_ops faulty_queue_ops = JOB_QUEUE_OPS_TABLE("faulty");

void
faulty_queue_init(struct faulty_queue *q, struct job_queue *inner, struct fault_plan *plan)
{
    q->base.ops = &faulty_queue_ops;
    q->inner = inner;
    q->plan = plan;
}
