/* fuzz_leads_http.c: libFuzzer target: arbitrary requests to the leads controller, dispatched
 * through the router exactly as the server does (no sockets), on the in-memory fake store.
 *
 * Input: up to FZ_REQ_MAX requests separated by FZ_SEP ("\n--\n"). Each request is
 *   header byte h, then [line "\n"] [line "\n"] body
 *   route = h % 5:  0 POST /leads
 *                   1 POST /leads/<existing id>/reply     3 GET /leads/<existing id>
 *                   2 POST /leads/<fuzzed id>/reply       4 GET /leads/<fuzzed id>
 *   ct = (h / 5) % 8: application/json, application/json; charset=utf-8, APPLICATION/JSON,
 *        form, form; charset=UTF-8, (no header), text/plain, or a fuzzed header value
 *   (h / 40) & 1: send the existing id in upper case
 *   (h / 80) & 1: "existing" means the lead created last by this input (if any), else the one
 *                 created up front
 * The fuzzed id (routes 2 and 4) is the first line, then the fuzzed content type (ct 7) the next
 * line; both stop at a NUL as header and path values do. The rest is the body.
 *
 * Every input starts from a fresh store holding one lead (email and phone), so a crash input
 * replays alone. Invariants (abort on violation) after every request: see fz_check_response,
 * plus: POST never answers 200 and GET never 201; 4xx leave the store unchanged; no unit of
 * work left open; a 201 on POST /leads adds exactly one lead with 1-2 welcome messages, as
 * many jobs and 1 + messages events, and echoes the request's fields; a 201 reply adds 1
 * message and its generate-reply job (none for a stop request) and moves the lead to replied; GET
 * of an existing lead is always 200 and lists what the store holds; a reply to an existing lead is
 * never 404. */
#include "fuzz/fuzz_common.h"

#include "core/arena.h"
#include "core/uuid.h"
#include "features/leads/presentation/leads_http.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FZ_REQ_MAX 4
#define FZ_SEP "\n--\n"
#define FZ_SEP_LEN 4

enum route {
    R_CREATE = 0,
    R_REPLY_EXISTING,
    R_REPLY_FUZZED,
    R_GET_EXISTING,
    R_GET_FUZZED,
};

static const char *const content_types[] = {
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    NULL,
    "text/plain",
    NULL, /* 7: fuzzed */
};

struct fz {
    struct t_env *env;
    struct http_router router;
    char first_id[SP_UUID_LEN + 1];
    char last_id[SP_UUID_LEN + 1]; /* last lead created by this input, "" if none */
};

static void
h_create(void *ctx, struct http_request *req, struct http_response *resp)
{
    leads_http_create(&((struct t_env *)ctx)->deps, req, resp);
}

static void
h_reply(void *ctx, struct http_request *req, struct http_response *resp)
{
    leads_http_reply(&((struct t_env *)ctx)->deps, req, resp);
}

static void
h_details(void *ctx, struct http_request *req, struct http_response *resp)
{
    leads_http_details(&((struct t_env *)ctx)->deps, req, resp);
}

/* Takes the bytes up to the next '\n' (or all of them) off *p / *n, as a C string that stops
 * at the first NUL (header values and path segments cannot hold one). */
static char *
take_line(struct arena *a, const uint8_t **p, size_t *n)
{
    const uint8_t *nl = memchr(*p, '\n', *n);
    size_t len = nl ? (size_t)(nl - *p) : *n;
    char *s = arena_strndup(a, (const char *)*p, len);

    *p += nl ? len + 1 : len;
    *n -= nl ? len + 1 : len;
    return s;
}

static int
count_messages_of(const struct mem_store *st, const char *lead_id)
{
    int n = 0;
    for (int i = 0; i < st->cur.nmsgs; i++)
        n += strcmp(st->cur.msgs[i].lead_id, lead_id) == 0;
    return n;
}

static int
count_events_of(const struct mem_store *st, const char *lead_id)
{
    int n = 0;
    for (int i = 0; i < st->cur.nevents; i++)
        n += strcmp(st->cur.events[i].lead_id, lead_id) == 0;
    return n;
}

static int
count_jobs_of(const struct mem_store *st, const char *lead_id)
{
    int n = 0;
    for (int i = 0; i < st->cur.njobs; i++)
        n += st->cur.jobs[i].j.group && strcmp(st->cur.jobs[i].j.group, lead_id) == 0;
    return n;
}

/* The request's string field as the controller should store it: NULL when absent or null. */
static const char *
req_field(json_t *req_body, const char *key)
{
    return json_string_value(json_object_get(req_body, key));
}

static int
same_opt(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void
check_created(struct fz *f, json_t *root, const struct t_counts *b, const struct t_counts *a,
              const char *ct, const char *body, size_t body_len)
{
    const char *id = fz_str(root, "id");
    const struct lead *l;
    int dm = a->messages - b->messages;

    FZ_CHECK(a->leads == b->leads + 1, "201 on POST /leads but leads %d -> %d", b->leads, a->leads);
    FZ_CHECK(dm >= 1 && dm <= 2 && a->jobs - b->jobs == dm && a->events - b->events == 1 + dm,
             "201 on POST /leads: messages +%d jobs +%d events +%d", dm, a->jobs - b->jobs,
             a->events - b->events);
    FZ_CHECK(id && sp_uuid_valid(id, strlen(id)), "201 without a valid id");
    l = mem_store_lead(f->env->store, id);
    FZ_CHECK(l != NULL, "201 id %s not in the store", id);
    FZ_CHECK(same_opt(l->name, fz_str(root, "name")) && same_opt(l->email, fz_str(root, "email")) &&
                 same_opt(l->phone, fz_str(root, "phone")),
             "201 body differs from the stored lead");
    FZ_CHECK(l->name && l->name[0] && (l->email || l->phone), "stored lead without name/contact");
    /* JSON requests: what was sent is what is stored (form requests: see fuzz_leads_form). */
    if (ct && strncasecmp(ct, "application/json", 16) == 0 && body_len > 0) {
        json_t *in = json_loadb(body, body_len, 0, NULL);
        FZ_CHECK(in != NULL, "201 for a body jansson cannot parse");
        FZ_CHECK(same_opt(req_field(in, "name"), l->name) &&
                     same_opt(req_field(in, "email"), l->email) &&
                     same_opt(req_field(in, "phone"), l->phone),
                 "stored lead differs from the request");
        json_decref(in);
    }
    memcpy(f->last_id, l->id, sizeof(f->last_id));
}

static void
check_replied(struct fz *f, json_t *root, const struct t_counts *b, const struct t_counts *a,
              const char *lead_id)
{
    const char *mid = fz_str(root, "messageId");
    const struct message *m;
    const struct lead *l;
    int de = a->events - b->events;

    /* the reply and its generate-reply job (none for a request to stop contact, an opted-out
     * channel or an address another lead has); events: reply_received, maybe status_changed,
     * address_added, opted_out (a stop request) and ai_reply_skipped */
    FZ_CHECK(a->leads == b->leads && a->messages == b->messages + 1 &&
                 (a->jobs == b->jobs + 1 || a->jobs == b->jobs) && de >= 1 && de <= 5,
             "201 reply: leads %d->%d messages %d->%d jobs %d->%d events +%d", b->leads, a->leads,
             b->messages, a->messages, b->jobs, a->jobs, de);
    FZ_CHECK(mid != NULL, "201 reply without messageId");
    m = mem_store_message(f->env->store, mid);
    FZ_CHECK(m && m->direction == MESSAGE_INBOUND, "messageId %s is not a stored inbound message",
             mid);
    if (lead_id)
        FZ_CHECK(strcmp(m->lead_id, lead_id) == 0, "reply stored on lead %s, not %s", m->lead_id,
                 lead_id);
    l = mem_store_lead(f->env->store, m->lead_id);
    FZ_CHECK(l && l->status == LEAD_STATUS_REPLIED, "lead not replied after a 201 reply");
}

static void
check_details(struct fz *f, json_t *root, const char *lead_id)
{
    const struct mem_store *st = f->env->store;
    json_t *lead = json_object_get(root, "lead");
    json_t *by = json_object_get(root, "messagesByChannel");
    const char *id = fz_str(lead, "id");
    const char *key;
    json_t *arr;
    size_t nmsgs = 0;

    FZ_CHECK(id != NULL, "200 without lead.id");
    if (lead_id)
        FZ_CHECK(strcmp(id, lead_id) == 0, "GET answered lead %s for %s", id, lead_id);
    FZ_CHECK(json_is_object(by), "messagesByChannel is not an object");
    json_object_foreach(by, key, arr)
    {
        FZ_CHECK(json_is_array(arr) && json_array_size(arr) > 0, "empty channel %s", key);
        nmsgs += json_array_size(arr);
    }
    FZ_CHECK((int)nmsgs == count_messages_of(st, id), "GET lists %zu messages, store has %d", nmsgs,
             count_messages_of(st, id));
    FZ_CHECK((int)json_array_size(json_object_get(root, "events")) == count_events_of(st, id),
             "GET events differ from the store");
    FZ_CHECK((int)json_array_size(json_object_get(root, "jobs")) == count_jobs_of(st, id),
             "GET jobs differ from the store");
}

/* Runs one request chunk and checks every invariant. */
/* The id the router hands the handler: a path segment is percent-decoded (core/http.h). An id
 * with a '/' is several segments and matches some other route or none: kept raw. NULL when the
 * router refuses the escape (400). */
static const char *
decoded_id(struct arena *a, const char *id)
{
    const char *out = id;

    if (strchr(id, '/') == NULL &&
        http_pct_decode(a, id, strlen(id), HTTP_DECODE_PATH, &out) != HTTP_DECODE_OK)
        return NULL;
    return out;
}

static void
run_one(struct fz *f, const uint8_t *p, size_t n)
{
    struct http_request req;
    struct http_response resp;
    struct t_counts before, after;
    struct arena *a = arena_new();
    const char *existing = f->first_id;
    const char *lead_id = NULL; /* the lead the request targets, when it exists */
    const char *id = NULL;
    const char *decoded = NULL; /* id as the router hands it to the handler; NULL: 400 */
    const char *ct;
    enum route route;
    uint8_t h;
    json_t *root;

    if (n == 0) {
        arena_free(a);
        return;
    }
    h = p[0];
    p++;
    n--;
    route = (enum route)(h % 5);
    if (((h / 80) & 1) && f->last_id[0])
        existing = f->last_id;

    memset(&req, 0, sizeof(req));
    req.arena = a;
    if (route == R_REPLY_FUZZED || route == R_GET_FUZZED) {
        id = take_line(a, &p, &n);
        decoded = decoded_id(a, id);
        if (decoded && mem_store_lead(f->env->store, decoded))
            lead_id = decoded;
    } else if (route != R_CREATE) {
        char *up = arena_strdup(a, existing);
        if ((h / 40) & 1)
            for (char *q = up; *q; q++)
                *q = (char)toupper((unsigned char)*q);
        id = up;
        decoded = up; /* a UUID: no '%' to decode */
        lead_id = existing;
    }
    ct = content_types[(h / 5) % 8];
    if ((h / 5) % 8 == 7)
        ct = take_line(a, &p, &n);

    req.method = route == R_GET_EXISTING || route == R_GET_FUZZED ? "GET" : "POST";
    if (route == R_CREATE)
        req.path = "/leads";
    else if (route == R_GET_EXISTING || route == R_GET_FUZZED)
        req.path = arena_printf(a, "/leads/%s", id);
    else
        req.path = arena_printf(a, "/leads/%s/reply", id);
    req.content_type = ct;
    if (n > 0) {
        /* as the server does: a NUL-terminated copy that may contain NULs */
        char *body = arena_alloc(a, n + 1);
        memcpy(body, p, n);
        req.body = body;
        req.body_len = n;
    }

    t_env_counts(f->env, &before);
    http_router_dispatch(&f->router, &req, &resp);
    t_env_counts(f->env, &after);

    if (getenv("FZ_VERBOSE"))
        fprintf(stderr, "%s %s [%s] %zu bytes -> %d %.300s\n", req.method, req.path,
                ct ? ct : "(none)", req.body_len, resp.status, resp.body ? resp.body : "");
    root = fz_check_response(&resp, id && strchr(id, '/') ? 405 : 0);
    fz_check_no_open_tx(f->env);
    if (strcmp(req.method, "POST") == 0)
        FZ_CHECK(resp.status != 200, "200 on POST %s", req.path);
    else
        FZ_CHECK(resp.status != 201, "201 on GET %s", req.path);
    if (resp.status >= 400 || resp.status == 200)
        fz_check_counts_equal(&before, &after, req.path);

    /* The router refuses a fuzzed Content-Type with a charset other than UTF-8 (415) before
     * any handler, GET included. */
    if (resp.status == 415 && strcmp(req.method, "GET") == 0)
        FZ_CHECK((h / 5) % 8 == 7, "415 on GET with content type %s", ct ? ct : "(none)");
    if (route == R_GET_EXISTING || (route == R_GET_FUZZED && lead_id))
        FZ_CHECK(resp.status == 200 || resp.status == 415,
                 "GET of an existing lead answered %d: %s", resp.status, resp.body);
    if (route == R_REPLY_EXISTING || (route == R_REPLY_FUZZED && lead_id))
        FZ_CHECK(resp.status != 404, "reply to an existing lead answered 404: %s", resp.body);
    if (id && (decoded == NULL || !sp_uuid_valid(decoded, strlen(decoded))))
        FZ_CHECK(resp.status == 400 || resp.status == 404 || resp.status == 405 ||
                     resp.status == 415,
                 "id \"%s\" accepted with %d", id, resp.status);

    if (resp.status == 201 && route == R_CREATE)
        check_created(f, root, &before, &after, ct, req.body, req.body_len);
    else if (resp.status == 201)
        check_replied(f, root, &before, &after, lead_id);
    else if (resp.status == 200)
        check_details(f, root, lead_id);

    json_decref(root);
    arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f;
    struct lead lead;
    int nreq = 0;

    fz_init();
    memset(&f, 0, sizeof(f));
    f.env = t_env_new(T_MEM);
    http_router_init(&f.router);
    http_router_add(&f.router, "POST", "/leads", h_create, f.env);
    http_router_add(&f.router, "POST", "/leads/:id/reply", h_reply, f.env);
    http_router_add(&f.router, "GET", "/leads/:id", h_details, f.env);
    t_env_create(f.env, "Seed Lead", "seed@example.com", "+15550100", &lead);
    memcpy(f.first_id, lead.id, sizeof(f.first_id));

    while (nreq < FZ_REQ_MAX) {
        const uint8_t *sep = nreq + 1 < FZ_REQ_MAX ? memmem(data, size, FZ_SEP, FZ_SEP_LEN) : NULL;
        size_t len = sep ? (size_t)(sep - data) : size;

        run_one(&f, data, len);
        nreq++;
        if (sep == NULL)
            break;
        data += len + FZ_SEP_LEN;
        size -= len + FZ_SEP_LEN;
    }
    t_env_free(f.env);
    return 0;
}
