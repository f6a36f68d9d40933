/* mem_store.c: the in-memory repo and queue (see mem_store.h). */
#include "fakes/mem_store.h"

#include "core/arena.h"
#include "core/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEM_MAX_STALLED 2

/* ---- tables ---------------------------------------------------------------------------- */

/* Makes room for one more element in an array of `elem`-sized items. */
static void *
grow(void *p, int n, int *cap, size_t elem)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 8;
    return xrealloc(p, (size_t)*cap * elem);
}

static void *
dup_array(const void *p, int n, size_t elem)
{
    void *out;
    if (n == 0)
        return NULL;
    out = xmalloc((size_t)n * elem);
    memcpy(out, p, (size_t)n * elem);
    return out;
}

/* A shallow copy: the strings live in the store's arena and are never freed before the store. */
static void
tables_copy(struct mem_tables *dst, const struct mem_tables *src)
{
    dst->leads = dup_array(src->leads, src->nleads, sizeof(*src->leads));
    dst->nleads = dst->cap_leads = src->nleads;
    dst->msgs = dup_array(src->msgs, src->nmsgs, sizeof(*src->msgs));
    dst->nmsgs = dst->cap_msgs = src->nmsgs;
    dst->events = dup_array(src->events, src->nevents, sizeof(*src->events));
    dst->nevents = dst->cap_events = src->nevents;
    dst->jobs = dup_array(src->jobs, src->njobs, sizeof(*src->jobs));
    dst->njobs = dst->cap_jobs = src->njobs;
    dst->receipts = dup_array(src->receipts, src->nreceipts, sizeof(*src->receipts));
    dst->nreceipts = dst->cap_receipts = src->nreceipts;
    dst->opt_outs = dup_array(src->opt_outs, src->nopt_outs, sizeof(*src->opt_outs));
    dst->nopt_outs = dst->cap_opt_outs = src->nopt_outs;
    dst->next_job_id = src->next_job_id;
}

static void
tables_free(struct mem_tables *t)
{
    free(t->leads);
    free(t->msgs);
    free(t->events);
    free(t->jobs);
    free(t->receipts);
    free(t->opt_outs);
    memset(t, 0, sizeof(*t));
}

struct mem_store *
mem_store_new(void)
{
    struct mem_store *st = xcalloc(1, sizeof(*st));
    st->strings = arena_new();
    st->cur.next_job_id = 1;
    st->max_stalled = MEM_MAX_STALLED;
    lease_set_init(&st->held);
    return st;
}

void
mem_store_free(struct mem_store *st)
{
    if (st == NULL)
        return;
    tables_free(&st->cur);
    tables_free(&st->snap);
    lease_set_cleanup(&st->held);
    arena_free(st->strings);
    free(st);
}

/* Copies s into the store (NULL stays NULL). */
static const char *
keep(struct mem_store *st, const char *s)
{
    return s ? arena_strdup(st->strings, s) : NULL;
}

/* Copies s into the caller's arena (NULL stays NULL). */
static const char *
give(struct arena *a, const char *s)
{
    return s ? arena_strdup(a, s) : NULL;
}

static int
find_lead(const struct mem_store *st, const char *id)
{
    for (int i = 0; id && i < st->cur.nleads; i++)
        if (strcmp(st->cur.leads[i].id, id) == 0)
            return i;
    return -1;
}

static int
find_message(const struct mem_store *st, const char *id)
{
    for (int i = 0; id && i < st->cur.nmsgs; i++)
        if (strcmp(st->cur.msgs[i].id, id) == 0)
            return i;
    return -1;
}

static int
find_event(const struct mem_store *st, const char *id)
{
    for (int i = 0; id && i < st->cur.nevents; i++)
        if (strcmp(st->cur.events[i].id, id) == 0)
            return i;
    return -1;
}

static int
find_job(const struct mem_store *st, const char *id)
{
    for (int i = 0; id && i < st->cur.njobs; i++)
        if (strcmp(st->cur.jobs[i].j.id, id) == 0)
            return i;
    return -1;
}

const struct lead *
mem_store_lead(const struct mem_store *st, const char *id)
{
    int i = find_lead(st, id);
    return i < 0 ? NULL : &st->cur.leads[i];
}

const struct message *
mem_store_message(const struct mem_store *st, const char *id)
{
    int i = find_message(st, id);
    return i < 0 ? NULL : &st->cur.msgs[i];
}

const struct mem_job *
mem_store_job(const struct mem_store *st, const char *id)
{
    int i = find_job(st, id);
    return i < 0 ? NULL : &st->cur.jobs[i];
}

/* ---- repo ------------------------------------------------------------------------------ */

static struct mem_store *
repo_store(struct lead_repo *r)
{
    return ((struct mem_repo *)r)->st;
}

static int
r_begin(struct lead_repo *r, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    if (st->in_tx)
        return sp_error_set(err, SP_EINTERNAL, "database", "mem: nested begin");
    tables_copy(&st->snap, &st->cur);
    st->in_tx = 1;
    st->begins++;
    return SP_OK;
}

static int
r_commit(struct lead_repo *r, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    if (!st->in_tx)
        return sp_error_set(err, SP_EINTERNAL, "database", "mem: commit without begin");
    tables_free(&st->snap);
    st->in_tx = 0;
    st->commits++;
    return SP_OK;
}

static void
r_rollback(struct lead_repo *r)
{
    struct mem_store *st = repo_store(r);

    if (!st->in_tx)
        return; /* like the SQL driver: always leaves the session outside a unit of work */
    tables_free(&st->cur);
    st->cur = st->snap;
    memset(&st->snap, 0, sizeof(st->snap));
    st->in_tx = 0;
    st->rollbacks++;
}

static int
r_ping(struct lead_repo *r, struct sp_error *err)
{
    (void)r;
    (void)err;
    return SP_OK;
}

/* The store is single-threaded: every read already sees one consistent state. */
static int
r_read_begin(struct lead_repo *r, struct sp_error *err)
{
    (void)r;
    (void)err;
    return SP_OK;
}

static void
r_read_end(struct lead_repo *r)
{
    (void)r;
}

/* The index of a lead other than `self` whose address on channel c is `address` once both
 * are normalised (the unique indexes of 0007), or -1. */
static int
find_address_owner(const struct mem_store *st, enum channel c, const char *address,
                   const char *self)
{
    char want[LEAD_NORM_MAX], have[LEAD_NORM_MAX];
    const char *norm = lead_address_norm(c, address, want, sizeof(want));

    for (int i = 0; norm && i < st->cur.nleads; i++) {
        const struct lead *l = &st->cur.leads[i];
        const char *n = lead_address_norm(c, lead_address_for(l, c), have, sizeof(have));
        if (n != NULL && strcmp(n, norm) == 0 && (self == NULL || strcmp(l->id, self) != 0))
            return i;
    }
    return -1;
}

static int
r_lead_insert(struct lead_repo *r, const struct lead *l, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct lead *row;

    if (find_lead(st, l->id) >= 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: duplicate lead id");
    if (find_address_owner(st, CHANNEL_EMAIL, l->email, NULL) >= 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: duplicate lead email");
    if (find_address_owner(st, CHANNEL_WHATSAPP, l->phone, NULL) >= 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: duplicate lead phone");
    st->cur.leads = grow(st->cur.leads, st->cur.nleads, &st->cur.cap_leads, sizeof(*row));
    row = &st->cur.leads[st->cur.nleads++];
    *row = *l;
    row->name = keep(st, l->name);
    row->email = keep(st, l->email);
    row->phone = keep(st, l->phone);
    return SP_OK;
}

static int
r_lead_get(struct lead_repo *r, const char *id, struct arena *a, struct lead *out,
           struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_lead(st, id);

    if (i < 0)
        return sp_error_set(err, SP_ENOTFOUND, "id", "Lead %s not found", id);
    *out = st->cur.leads[i];
    out->name = give(a, out->name);
    out->email = give(a, out->email);
    out->phone = give(a, out->phone);
    return SP_OK;
}

static int
r_lead_update_status(struct lead_repo *r, const char *id, enum lead_status s, int64_t now,
                     struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_lead(st, id);

    if (i < 0)
        return sp_error_set(err, SP_ENOTFOUND, "id", "Lead %s not found", id);
    st->cur.leads[i].status = s;
    st->cur.leads[i].updated_at = now;
    return SP_OK;
}

/* The store is single-threaded: nothing to wait for. */
static int
r_lead_lock(struct lead_repo *r, const char *id, struct sp_error *err)
{
    if (find_lead(repo_store(r), id) < 0)
        return sp_error_set(err, SP_ENOTFOUND, "id", "Lead %s not found", id);
    return SP_OK;
}

static int
r_lead_transition(struct lead_repo *r, const char *id, enum lead_status from, enum lead_status to,
                  int64_t now, int *changed, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_lead(st, id);

    (void)err;
    *changed = i >= 0 && st->cur.leads[i].status == from;
    if (*changed) {
        st->cur.leads[i].status = to;
        st->cur.leads[i].updated_at = now;
    }
    return SP_OK;
}

static int
r_lead_set_address(struct lead_repo *r, const char *id, enum channel c, const char *address,
                   int64_t now, int *changed, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_lead(st, id);
    const char **field;

    *changed = 0;
    if (c != CHANNEL_EMAIL && c != CHANNEL_WHATSAPP)
        return sp_error_set(err, SP_EINVAL, "channel", "mem: no lead address on this channel");
    if (i < 0)
        return SP_OK;
    field = c == CHANNEL_EMAIL ? &st->cur.leads[i].email : &st->cur.leads[i].phone;
    if (*field != NULL)
        return SP_OK;
    if (find_address_owner(st, c, address, id) >= 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: address of another lead");
    *field = keep(st, address);
    st->cur.leads[i].updated_at = now;
    *changed = 1;
    return SP_OK;
}

static int
r_lead_find_by_address(struct lead_repo *r, enum channel c, const char *norm, struct arena *a,
                       struct lead *out, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    if (c != CHANNEL_EMAIL && c != CHANNEL_WHATSAPP)
        return sp_error_set(err, SP_EINVAL, "channel", "mem: no lead address on this channel");
    for (int i = 0; i < st->cur.nleads; i++) {
        const struct lead *l = &st->cur.leads[i];
        char buf[LEAD_NORM_MAX];
        const char *n = lead_address_norm(c, lead_address_for(l, c), buf, sizeof(buf));

        if (n != NULL && strcmp(n, norm) == 0) {
            *out = *l;
            out->name = give(a, l->name);
            out->email = give(a, l->email);
            out->phone = give(a, l->phone);
            return SP_OK;
        }
    }
    return sp_error_set(err, SP_ENOTFOUND, "from", "mem: no lead with that address");
}

/* A lead of the list with its position: seq is the insertion index + 1. */
struct mem_listed {
    const struct lead *l;
    int64_t seq;
};

/* Newest first: created_at descending, then seq descending. */
static int
listed_cmp(const void *pa, const void *pb)
{
    const struct mem_listed *x = pa, *y = pb;

    if (x->l->created_at != y->l->created_at)
        return x->l->created_at > y->l->created_at ? -1 : 1;
    return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static int
starts_with(const char *s, const char *prefix)
{
    return s != NULL && prefix != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether l passes the filters of spec and comes after spec->after. */
static int
list_match(const struct lead *l, int64_t seq, const struct lead_list_spec *spec)
{
    char name[LEAD_NORM_MAX], email[LEAD_NORM_MAX], phone[LEAD_NORM_MAX];

    if (spec->has_status && l->status != spec->status)
        return 0;
    if (l->created_at < spec->created_min || l->created_at > spec->created_max)
        return 0;
    if (spec->after.seq > 0 &&
        (l->created_at > spec->after.created_at ||
         (l->created_at == spec->after.created_at && seq >= spec->after.seq)))
        return 0;
    if (spec->name_prefix == NULL && spec->email_prefix == NULL && spec->phone_prefix == NULL)
        return 1;
    return starts_with(lead_name_fold(l->name, name, sizeof(name)), spec->name_prefix) ||
           starts_with(lead_email_norm(l->email, email, sizeof(email)), spec->email_prefix) ||
           starts_with(lead_phone_norm(l->phone, phone, sizeof(phone)), spec->phone_prefix);
}

static int
r_lead_list(struct lead_repo *r, const struct lead_list_spec *spec, struct arena *a,
            struct lead **out, struct lead_list_page *page, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct mem_listed *hits = xmalloc(sizeof(*hits) * (size_t)(st->cur.nleads + 1));
    int n = 0;

    (void)err;
    memset(page, 0, sizeof(*page));
    for (int i = 0; i < st->cur.nleads; i++)
        if (list_match(&st->cur.leads[i], i + 1, spec))
            hits[n++] = (struct mem_listed){&st->cur.leads[i], i + 1};
    qsort(hits, (size_t)n, sizeof(*hits), listed_cmp);
    page->n = n < spec->max ? n : spec->max;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(page->n ? page->n : 1));
    for (int i = 0; i < page->n; i++) {
        struct lead *l = &(*out)[i];
        *l = *hits[i].l;
        l->name = give(a, l->name);
        l->email = give(a, l->email);
        l->phone = give(a, l->phone);
    }
    if (n > spec->max) {
        page->has_next = 1;
        page->next.created_at = hits[page->n - 1].l->created_at;
        page->next.seq = hits[page->n - 1].seq;
    }
    free(hits);
    return SP_OK;
}

static int
r_message_insert(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct message *row;

    if (find_message(st, m->id) >= 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: duplicate message id");
    if (find_lead(st, m->lead_id) < 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: message of an unknown lead");
    st->cur.msgs = grow(st->cur.msgs, st->cur.nmsgs, &st->cur.cap_msgs, sizeof(*row));
    row = &st->cur.msgs[st->cur.nmsgs++];
    *row = *m;
    row->last_error = keep(st, m->last_error);
    row->provider_id = keep(st, m->provider_id);
    row->recipient = keep(st, m->recipient);
    row->channel_message = keep(st, m->channel_message);
    return SP_OK;
}

static void
message_give(struct arena *a, struct message *m)
{
    m->last_error = give(a, m->last_error);
    m->provider_id = give(a, m->provider_id);
    m->recipient = give(a, m->recipient);
    m->channel_message = give(a, m->channel_message);
}

static int
r_message_get(struct lead_repo *r, const char *id, struct arena *a, struct message *out,
              struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_message(st, id);

    if (i < 0)
        return sp_error_set(err, SP_ENOTFOUND, "messageId", "message %s not found", id);
    *out = st->cur.msgs[i];
    message_give(a, out);
    return SP_OK;
}

static int
r_message_find_by_provider(struct lead_repo *r, enum channel c, enum message_direction d,
                           const char *provider_id, struct arena *a, struct message *out,
                           struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    for (int i = st->cur.nmsgs - 1; i >= 0; i--) {
        const struct message *m = &st->cur.msgs[i];

        if (m->channel == c && m->direction == d && m->provider_id != NULL &&
            strcmp(m->provider_id, provider_id) == 0) {
            *out = *m;
            message_give(a, out);
            return SP_OK;
        }
    }
    return sp_error_set(err, SP_ENOTFOUND, "providerId", "mem: no message with that id");
}

static int
r_receipt_claim(struct lead_repo *r, const char *source, const char *key, int64_t now, int *fresh,
                struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct mem_receipt *row;

    (void)err;
    *fresh = 0;
    for (int i = 0; i < st->cur.nreceipts; i++)
        if (strcmp(st->cur.receipts[i].source, source) == 0 &&
            strcmp(st->cur.receipts[i].key, key) == 0)
            return SP_OK;
    st->cur.receipts =
        grow(st->cur.receipts, st->cur.nreceipts, &st->cur.cap_receipts, sizeof(*row));
    row = &st->cur.receipts[st->cur.nreceipts++];
    row->source = keep(st, source);
    row->key = keep(st, key);
    row->created_at = now;
    *fresh = 1;
    return SP_OK;
}

static int
r_receipt_prune(struct lead_repo *r, const char *source, int64_t before, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int k = 0;

    (void)err;
    for (int i = 0; i < st->cur.nreceipts; i++) {
        const struct mem_receipt *x = &st->cur.receipts[i];
        if (strcmp(x->source, source) == 0 && x->created_at < before)
            continue;
        st->cur.receipts[k++] = *x;
    }
    st->cur.nreceipts = k;
    return SP_OK;
}

static int
find_opt_out(const struct mem_store *st, const char *lead_id, enum channel c)
{
    for (int i = 0; i < st->cur.nopt_outs; i++)
        if (st->cur.opt_outs[i].o.channel == c && strcmp(st->cur.opt_outs[i].lead_id, lead_id) == 0)
            return i;
    return -1;
}

/* In channel order, as the SQL repo's ORDER BY channel gives them. */
static int
r_opt_out_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct lead_opt_outs *out,
               struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    (void)err;
    memset(out, 0, sizeof(*out));
    for (int c = 0; c < CHANNEL_COUNT; c++) {
        int i = find_opt_out(st, lead_id, (enum channel)c);
        if (i < 0)
            continue;
        out->v[out->n] = st->cur.opt_outs[i].o;
        out->v[out->n].reason = give(a, out->v[out->n].reason);
        out->n++;
    }
    return SP_OK;
}

static int
r_opt_out_insert(struct lead_repo *r, const char *lead_id, const struct lead_opt_out *o,
                 int *inserted, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct mem_opt_out *row;

    *inserted = 0;
    if (find_lead(st, lead_id) < 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: opt-out of an unknown lead");
    if (!lead_opt_out_channel_valid(o->channel))
        return sp_error_set(err, SP_EINTERNAL, "database", "mem: opt-out channel check failed");
    if (find_opt_out(st, lead_id, o->channel) >= 0)
        return SP_OK;
    st->cur.opt_outs =
        grow(st->cur.opt_outs, st->cur.nopt_outs, &st->cur.cap_opt_outs, sizeof(*row));
    row = &st->cur.opt_outs[st->cur.nopt_outs++];
    memset(row, 0, sizeof(*row));
    snprintf(row->lead_id, sizeof(row->lead_id), "%s", lead_id);
    row->o = *o;
    row->o.reason = keep(st, o->reason);
    *inserted = 1;
    return SP_OK;
}

static int
r_opt_out_delete(struct lead_repo *r, const char *lead_id, enum channel c, int *deleted,
                 struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_opt_out(st, lead_id, c);

    (void)err;
    *deleted = i >= 0;
    if (i < 0)
        return SP_OK;
    memmove(&st->cur.opt_outs[i], &st->cur.opt_outs[i + 1],
            sizeof(*st->cur.opt_outs) * (size_t)(st->cur.nopt_outs - i - 1));
    st->cur.nopt_outs--;
    return SP_OK;
}

static int
r_message_update_delivery(struct lead_repo *r, const struct message *m, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_message(st, m->id);
    struct message *row;

    (void)err;
    if (i < 0)
        return SP_OK; /* like UPDATE ... WHERE id = $1 matching no row */
    row = &st->cur.msgs[i];
    row->status = m->status;
    row->attempts = m->attempts;
    row->last_error = keep(st, m->last_error);
    row->provider_id = keep(st, m->provider_id);
    row->sent_at = m->sent_at;
    row->updated_at = m->updated_at;
    return SP_OK;
}

static int
r_message_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct message **out,
               int *n, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int k = 0;

    (void)err;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(st->cur.nmsgs ? st->cur.nmsgs : 1));
    for (int i = 0; i < st->cur.nmsgs; i++) {
        if (strcmp(st->cur.msgs[i].lead_id, lead_id) != 0)
            continue;
        (*out)[k] = st->cur.msgs[i];
        message_give(a, &(*out)[k]);
        k++;
    }
    *n = k;
    return SP_OK;
}

static int
r_message_last_inbound(struct lead_repo *r, const char *lead_id, enum channel c, int64_t *at,
                       struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    (void)err;
    *at = 0;
    for (int i = 0; i < st->cur.nmsgs; i++) {
        const struct message *m = &st->cur.msgs[i];
        if (strcmp(m->lead_id, lead_id) == 0 && m->channel == c && m->direction == MESSAGE_INBOUND)
            *at = m->created_at;
    }
    return SP_OK;
}

static int
r_message_channels(struct lead_repo *r, const char *lead_id, enum channel out[CHANNEL_COUNT],
                   int *n, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int seen[CHANNEL_COUNT] = {0};

    (void)err;
    *n = 0;
    for (int i = 0; i < st->cur.nmsgs; i++) {
        enum channel c = st->cur.msgs[i].channel;
        if (strcmp(st->cur.msgs[i].lead_id, lead_id) != 0 || seen[c])
            continue;
        seen[c] = 1;
        out[(*n)++] = c;
    }
    return SP_OK;
}

/* Paging over a table in insertion order: position = index + 1. Walks back from `before`,
 * calling `take` on each matching row while the spec allows; returns how many it took and sets
 * page->next. take(i) returns the row's content size, or -1 when the row does not match. */
typedef long (*mem_size_fn)(const struct mem_store *st, int i, const void *ctx);

static int
mem_page(const struct mem_store *st, int nrows, const struct lead_page_spec *spec,
         mem_size_fn size_of, const void *ctx, int *idx, struct lead_page_info *page)
{
    int start = spec->before > 0 && spec->before <= nrows ? (int)spec->before - 1 : nrows;
    size_t used = 0;
    int k = 0;

    page->n = 0;
    page->next = 0;
    for (int i = start - 1; i >= 0; i--) {
        long len = size_of(st, i, ctx);
        if (len < 0)
            continue;
        if (k == spec->max ||
            (k > 0 && ((size_t)len > spec->budget || used > spec->budget - (size_t)len))) {
            page->next = idx[k - 1] + 1;
            break;
        }
        used += (size_t)len;
        idx[k++] = i;
    }
    return k;
}

struct mem_msg_match {
    const char *lead_id;
    enum channel channel;
};

static long
msg_size(const struct mem_store *st, int i, const void *ctx)
{
    const struct mem_msg_match *m = ctx;
    const struct message *row = &st->cur.msgs[i];

    if (strcmp(row->lead_id, m->lead_id) != 0 || row->channel != m->channel)
        return -1;
    return (long)strlen(row->channel_message);
}

static int
r_message_page(struct lead_repo *r, const char *lead_id, enum channel c,
               const struct lead_page_spec *spec, struct arena *a, struct message **out,
               struct lead_page_info *page, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct mem_msg_match m = {lead_id, c};
    int *idx = arena_alloc(a, sizeof(*idx) * (size_t)(spec->max > 0 ? spec->max : 1));
    int k = mem_page(st, st->cur.nmsgs, spec, msg_size, &m, idx, page);

    (void)err;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(k ? k : 1));
    for (int j = 0; j < k; j++) {
        (*out)[j] = st->cur.msgs[idx[k - 1 - j]];
        message_give(a, &(*out)[j]);
    }
    page->n = k;
    return SP_OK;
}

static long
event_size(const struct mem_store *st, int i, const void *ctx)
{
    const struct lead_event *row = &st->cur.events[i];

    if (strcmp(row->lead_id, (const char *)ctx) != 0)
        return -1;
    return (long)(strlen(row->payload) + strlen(row->correlation_ids));
}

static int
r_event_page(struct lead_repo *r, const char *lead_id, const struct lead_page_spec *spec,
             struct arena *a, struct lead_event **out, struct lead_page_info *page,
             struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int *idx = arena_alloc(a, sizeof(*idx) * (size_t)(spec->max > 0 ? spec->max : 1));
    int k = mem_page(st, st->cur.nevents, spec, event_size, lead_id, idx, page);

    (void)err;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(k ? k : 1));
    for (int j = 0; j < k; j++) {
        struct lead_event *e = &(*out)[j];
        *e = st->cur.events[idx[k - 1 - j]];
        e->correlation_ids = give(a, e->correlation_ids);
        e->payload = give(a, e->payload);
    }
    page->n = k;
    return SP_OK;
}

static int
r_event_append(struct lead_repo *r, const struct lead_event *e, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    struct lead_event *row;

    if (find_event(st, e->id) >= 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: duplicate event id");
    if (find_lead(st, e->lead_id) < 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: event of an unknown lead");
    st->cur.events = grow(st->cur.events, st->cur.nevents, &st->cur.cap_events, sizeof(*row));
    row = &st->cur.events[st->cur.nevents++];
    *row = *e;
    row->correlation_ids = keep(st, e->correlation_ids);
    row->payload = keep(st, e->payload);
    row->seq = st->cur.nevents; /* positions as SQLite's: 1, 2, ..., reused after a rollback */
    return SP_OK;
}

/* Single-threaded: every event written is settled. */
static int
r_event_feed_settle(struct lead_repo *r, struct lead_feed_fence *f, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);

    (void)err;
    if (st->cur.nevents > f->settled)
        f->settled = st->cur.nevents;
    return SP_OK;
}

static int
r_event_feed_page(struct lead_repo *r, int64_t after, int64_t upto, const char *lead_id, int max,
                  struct arena *a, struct lead_event **out, int *n, int *scanned, int64_t *last,
                  struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int k = 0;

    (void)err;
    *last = 0;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(max > 0 ? max : 1));
    for (int i = 0; i < st->cur.nevents && k < max; i++) {
        const struct lead_event *row = &st->cur.events[i];
        struct lead_event *e = &(*out)[k];
        if (row->seq <= after || row->seq > upto ||
            (lead_id != NULL && strcmp(row->lead_id, lead_id) != 0))
            continue;
        *e = *row;
        e->correlation_ids = give(a, e->correlation_ids);
        e->payload = give(a, e->payload);
        *last = row->seq;
        k++;
    }
    *n = k;
    *scanned = k;
    return SP_OK;
}

static int
r_event_position(struct lead_repo *r, const char *id, int64_t *pos, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int i = find_event(st, id);

    *pos = i >= 0 ? st->cur.events[i].seq : 0;
    return i >= 0 ? SP_OK : sp_error_set(err, SP_ENOTFOUND, "id", "event not found");
}

static int
r_event_list(struct lead_repo *r, const char *lead_id, struct arena *a, struct lead_event **out,
             int *n, struct sp_error *err)
{
    struct mem_store *st = repo_store(r);
    int k = 0;

    (void)err;
    *out = arena_alloc(a, sizeof(**out) * (size_t)(st->cur.nevents ? st->cur.nevents : 1));
    for (int i = 0; i < st->cur.nevents; i++) {
        struct lead_event *e = &(*out)[k];
        if (strcmp(st->cur.events[i].lead_id, lead_id) != 0)
            continue;
        *e = st->cur.events[i];
        e->correlation_ids = give(a, e->correlation_ids);
        e->payload = give(a, e->payload);
        k++;
    }
    *n = k;
    return SP_OK;
}

static const struct lead_repo_ops mem_repo_ops = {
    .name = "mem",
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
    .lead_find_by_address = r_lead_find_by_address,
    .lead_list = r_lead_list,
    .message_insert = r_message_insert,
    .message_find_by_provider = r_message_find_by_provider,
    .receipt_claim = r_receipt_claim,
    .receipt_prune = r_receipt_prune,
    .message_get = r_message_get,
    .message_update_delivery = r_message_update_delivery,
    .message_list = r_message_list,
    .message_last_inbound = r_message_last_inbound,
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
mem_repo_init(struct mem_repo *r, struct mem_store *st)
{
    r->base.ops = &mem_repo_ops;
    r->st = st;
}

/* ---- queue ----------------------------------------------------------------------------- */

static struct mem_store *
queue_store(struct job_queue *q)
{
    return ((struct mem_queue *)q)->st;
}

static int
q_enqueue(struct job_queue *q, const struct job_spec *spec, int64_t now, char *id_out,
          struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    struct mem_job *row;

    if (spec->group && find_lead(st, spec->group) < 0)
        return sp_error_set(err, SP_ECONFLICT, "database", "mem: job of an unknown lead");
    st->cur.jobs = grow(st->cur.jobs, st->cur.njobs, &st->cur.cap_jobs, sizeof(*row));
    row = &st->cur.jobs[st->cur.njobs++];
    memset(row, 0, sizeof(*row));
    snprintf(row->j.id, sizeof(row->j.id), "%lld", (long long)st->cur.next_job_id++);
    row->j.name = keep(st, spec->name);
    row->j.group = keep(st, spec->group);
    row->j.key = keep(st, spec->key);
    row->j.data = keep(st, spec->data);
    row->j.state = JOB_WAITING;
    row->j.max_attempts = spec->max_attempts;
    row->j.backoff_ms = spec->backoff_ms;
    row->j.backoff_type = JOB_BACKOFF_EXPONENTIAL;
    row->j.jitter_pct = JOB_JITTER_WORKER;
    row->j.run_at = now;
    row->j.created_at = now;
    row->j.updated_at = now;
    memcpy(id_out, row->j.id, sizeof(row->j.id));
    return SP_OK;
}

static void
job_give(struct arena *a, const struct mem_job *row, struct job *out)
{
    *out = row->j;
    out->name = give(a, out->name);
    out->group = give(a, out->group);
    out->key = give(a, out->key);
    out->data = give(a, out->data);
    out->last_error = give(a, out->last_error);
}

/* The job whose lease expired first, else the due job with the earliest run_at (then id). */
static int
pick(struct mem_store *st, int64_t now, int *expired)
{
    int best = -1;

    *expired = 0;
    for (int i = 0; i < st->cur.njobs; i++) {
        const struct mem_job *row = &st->cur.jobs[i];
        if (row->j.state == JOB_ACTIVE && row->lease_until <= now &&
            (best < 0 || row->lease_until < st->cur.jobs[best].lease_until))
            best = i;
    }
    if (best >= 0) {
        *expired = 1;
        return best;
    }
    for (int i = 0; i < st->cur.njobs; i++) {
        const struct mem_job *row = &st->cur.jobs[i];
        if ((row->j.state == JOB_WAITING || row->j.state == JOB_DELAYED) && row->j.run_at <= now &&
            (best < 0 || row->j.run_at < st->cur.jobs[best].j.run_at))
            best = i;
    }
    return best;
}

static int
reserve_one(struct job_queue *q, struct mem_store *st, int64_t now, int64_t lease_ms,
            struct arena *a, struct job *out, int *found, int64_t *next_due)
{
    int expired = 0, i;

    *found = 0;
    for (;;) {
        struct mem_job *row;
        i = pick(st, now, &expired);
        if (i < 0 || !expired || st->cur.jobs[i].j.stalled_count + 1 <= st->max_stalled)
            break;
        row = &st->cur.jobs[i];
        row->j.state = JOB_FAILED;
        row->lease_until = 0;
        row->j.stalled_count++;
        row->j.last_error = keep(st, "job stalled more than allowable limit");
        row->j.updated_at = now;
        row->j.finished_at = now;
    }
    if (i < 0) {
        for (int k = 0; k < st->cur.njobs; k++) {
            const struct job *j = &st->cur.jobs[k].j;
            if ((j->state == JOB_WAITING || j->state == JOB_DELAYED) &&
                (*next_due == 0 || j->run_at < *next_due))
                *next_due = j->run_at;
        }
        return SP_OK;
    }
    {
        struct mem_job *row = &st->cur.jobs[i];
        if (expired)
            row->j.stalled_count++;
        job_give(a, row, out); /* as the SQL queue: the row as read, then state and stall count */
        row->j.state = JOB_ACTIVE;
        row->lease_until = now + lease_ms;
        row->j.updated_at = now;
        snprintf(row->j.lease, sizeof(row->j.lease), "mem:%lld", (long long)++st->lease_seq);
        memcpy(out->lease, row->j.lease, sizeof(out->lease));
        out->state = JOB_ACTIVE;
        *found = 1;
        lease_set_add(&st->held, out->id, out->lease, q);
    }
    return SP_OK;
}

static int
q_reserve(struct job_queue *q, int64_t now, int64_t lease_ms, int max, struct arena *a,
          struct job *out, int *n, int64_t *next_due, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    int found = 1;

    (void)err;
    *n = 0;
    *next_due = 0;
    while (found && *n < max) {
        reserve_one(q, st, now, lease_ms, a, &out[*n], &found, next_due);
        if (found)
            (*n)++;
    }
    if (*n > 0)
        *next_due = 0;
    return SP_OK;
}

/* Ends an attempt of job j in `state`; SP_ECONFLICT when j's lease is no longer current (as
 * the SQL queue's fenced UPDATE). */
static int
end_attempt(struct mem_store *st, const struct job *j, enum job_state state, int64_t now,
            int64_t run_at, const char *error, int set_error, struct sp_error *err)
{
    int i = find_job(st, j->id);
    struct mem_job *row;

    if (i < 0 || st->cur.jobs[i].j.state != JOB_ACTIVE ||
        strcmp(st->cur.jobs[i].j.lease, j->lease) != 0)
        return sp_error_set(err, SP_ELEASELOST, "job", "lease on job %s was lost", j->id);
    row = &st->cur.jobs[i];
    row->j.state = state;
    row->j.attempts_made++;
    lease_set_end(&st->held, j->id, j->lease);
    row->lease_until = 0;
    row->j.lease[0] = '\0';
    row->j.updated_at = now;
    if (state == JOB_DELAYED)
        row->j.run_at = run_at;
    else if (state == JOB_FAILED || state == JOB_COMPLETED)
        row->j.finished_at = now;
    if (set_error)
        row->j.last_error = keep(st, error);
    return SP_OK;
}

static int
q_complete(struct job_queue *q, const struct job *j, int64_t now, struct sp_error *err)
{
    return end_attempt(queue_store(q), j, JOB_COMPLETED, now, 0, NULL, 0, err);
}

static int
q_retry(struct job_queue *q, const struct job *j, int64_t now, int64_t run_at, const char *error,
        struct sp_error *err)
{
    return end_attempt(queue_store(q), j, JOB_DELAYED, now, run_at, error, 1, err);
}

static int
q_fail(struct job_queue *q, const struct job *j, int64_t now, const char *error,
       struct sp_error *err)
{
    return end_attempt(queue_store(q), j, JOB_FAILED, now, 0, error, 1, err);
}

static int
q_list_group(struct job_queue *q, const char *lead_id, int max, struct arena *a, struct job **out,
             int *n, int *more, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    int first = st->cur.njobs, k = 0;

    (void)err;
    *more = 0;
    /* walk back from the newest until max are found (and one more tells of older ones) */
    for (int i = st->cur.njobs - 1; i >= 0; i--) {
        const struct mem_job *row = &st->cur.jobs[i];
        if (row->j.group == NULL || strcmp(row->j.group, lead_id) != 0)
            continue;
        if (k == max) {
            *more = 1;
            break;
        }
        k++;
        first = i;
    }
    *out = arena_alloc(a, sizeof(**out) * (size_t)(k ? k : 1));
    *n = 0;
    for (int i = first; i < st->cur.njobs && *n < k; i++) {
        const struct mem_job *row = &st->cur.jobs[i];
        if (row->j.group == NULL || strcmp(row->j.group, lead_id) != 0)
            continue;
        job_give(a, row, &(*out)[(*n)++]);
    }
    return SP_OK;
}

/* A job id or list position of the fake: "1", "2", ... as the SQL queue's (a positive decimal
 * integer). -1 otherwise. */
static int
parse_serial(const char *s, long long *out)
{
    size_t len = s ? strlen(s) : 0;
    long long v = 0;

    if (len == 0 || len > 18 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int
q_list(struct job_queue *q, const struct job_filter *f, struct arena *a, struct job **out, int *n,
       char *next, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    long long below = 0;
    int k = 0;

    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (f->after && parse_serial(f->after, &below) != 0)
        return sp_error_set(err, SP_EINVAL, "cursor", "cursor is not valid");
    *out = arena_alloc(a, sizeof(**out) * (size_t)(f->limit > 0 ? f->limit : 1));
    /* rows are in id order: walk back from the newest */
    for (int i = st->cur.njobs - 1; i >= 0; i--) {
        const struct mem_job *row = &st->cur.jobs[i];
        if ((f->after && strtoll(row->j.id, NULL, 10) >= below) ||
            (f->has_state && row->j.state != f->state) ||
            (f->name && strcmp(row->j.name, f->name) != 0))
            continue;
        if (k == f->limit) {
            snprintf(next, JOB_CURSOR_MAX, "%s", (*out)[k - 1].id);
            break;
        }
        job_give(a, row, &(*out)[k++]);
    }
    *n = k;
    return SP_OK;
}

static int
find_checked(const struct mem_store *st, const char *id, struct sp_error *err)
{
    long long serial;
    int i;

    if (parse_serial(id, &serial) != 0)
        return sp_error_set(err, SP_EINVAL, "id", "Validation failed (job id is expected)");
    i = find_job(st, id);
    if (i < 0)
        return sp_error_set(err, SP_ENOTFOUND, "id", "Job %s not found", id);
    return i;
}

static int
q_get(struct job_queue *q, const char *id, struct arena *a, struct job *out, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    int i = find_checked(st, id, err);

    if (i < 0)
        return i;
    job_give(a, &st->cur.jobs[i], out);
    return SP_OK;
}

static int
q_reprocess(struct job_queue *q, const char *id, int64_t now, struct arena *a, struct job *before,
            struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    struct mem_job *row;
    int i = find_checked(st, id, err);

    if (i < 0)
        return i;
    row = &st->cur.jobs[i];
    job_give(a, row, before);
    if (row->j.state != JOB_FAILED)
        return sp_error_set(err, SP_ECONFLICT, "state",
                            "Job %s is %s: only a failed job can be retried", row->j.id,
                            job_state_name(row->j.state));
    row->j.state = JOB_WAITING;
    row->j.attempts_made = 0;
    row->j.run_at = now;
    row->j.last_error = NULL;
    row->j.finished_at = 0;
    row->j.updated_at = now;
    row->j.lease[0] = '\0';
    row->lease_until = 0;
    return SP_OK;
}

/* Groups the jobs by name and state, as the SQL queue's GROUP BY; no backlog (jobs are rows). */
static int
q_count(struct job_queue *q, struct arena *a, struct job_counts *out, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);

    (void)err;
    memset(out, 0, sizeof(*out));
    out->by_state = arena_alloc(a, sizeof(*out->by_state) * JOB_COUNTS_MAX);
    for (int i = 0; i < st->cur.njobs; i++) {
        const struct job *j = &st->cur.jobs[i].j;
        int k = 0;

        while (k < out->n &&
               (out->by_state[k].state != j->state || strcmp(out->by_state[k].name, j->name) != 0))
            k++;
        if (k == out->n) {
            if (out->n == JOB_COUNTS_MAX)
                continue;
            out->by_state[k].name = arena_strdup(a, j->name);
            out->by_state[k].state = j->state;
            out->n++;
        }
        out->by_state[k].n++;
    }
    return SP_OK;
}

/* Whether each job still carries its lease token (as end_attempt checks). */
static int
q_fence(struct job_queue *q, const struct job *const *jobs, int n, int *lost, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);

    (void)err;
    for (int i = 0; i < n; i++) {
        int k = find_job(st, jobs[i]->id);
        lost[i] = k < 0 || st->cur.jobs[k].j.state != JOB_ACTIVE ||
                  strcmp(st->cur.jobs[k].j.lease, jobs[i]->lease) != 0;
        if (lost[i])
            lease_set_remove(&st->held, jobs[i]->id, jobs[i]->lease);
    }
    return SP_OK;
}

/* Extends the leases the store's workers hold (as the SQL queue: by token). */
static int
q_renew(struct job_queue *q, int64_t now, int64_t lease_ms, struct sp_error *err)
{
    struct mem_store *st = queue_store(q);
    int n;
    struct lease_entry *held = lease_set_snapshot(&st->held, &n);

    (void)err;
    for (int i = 0; i < n; i++) {
        int k = find_job(st, held[i].id);
        if (k >= 0 && st->cur.jobs[k].j.state == JOB_ACTIVE &&
            strcmp(st->cur.jobs[k].j.lease, held[i].token) == 0)
            st->cur.jobs[k].lease_until = now + lease_ms;
    }
    free(held);
    ((struct mem_queue *)q)->renewals++;
    return SP_OK;
}

/* One process: no other holder can die. */
static int
q_maintain(struct job_queue *q, int64_t now, struct sp_error *err)
{
    (void)q;
    (void)now;
    (void)err;
    return SP_OK;
}

/* Single-threaded tests drive the clock: nothing to wait for. */
static int
q_wait(struct job_queue *q, int64_t timeout_ms, struct sp_error *err)
{
    (void)q;
    (void)timeout_ms;
    (void)err;
    return SP_OK;
}

static int
q_before_commit(struct job_queue *q, struct sp_error *err)
{
    (void)q;
    (void)err;
    return SP_OK;
}

static int
q_after_commit(struct job_queue *q, struct sp_error *err)
{
    (void)err;
    lease_set_release(&queue_store(q)->held, q, 0);
    return SP_OK;
}

static void
q_after_rollback(struct job_queue *q)
{
    lease_set_release(&queue_store(q)->held, q, 1);
}

static void
q_wake(struct job_queue *q)
{
    ((struct mem_queue *)q)->wakes++;
}

#define JOB_QUEUE_IMPL_(name) q_##name
static const struct job_queue_ops mem_queue_ops = JOB_QUEUE_OPS_TABLE("mem");

void
mem_queue_init(struct mem_queue *q, struct mem_store *st)
{
    q->base.ops = &mem_queue_ops;
    q->st = st;
    q->wakes = 0;
}
