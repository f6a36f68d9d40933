/* leads_http.c: the leads controller (see leads_http.h). */
#include "features/leads/presentation/leads_http.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/hex.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/uuid.h"
#include "features/leads/application/leads.h"
#include "features/leads/presentation/jobs_http.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#define MSGS_MAX 16
#define RESPONSE_MAX (8 * 1024 * 1024)

/* Validation messages collected for one request. */
struct msgs {
    int n;
    const char *v[MSGS_MAX];
};

static void
msg_add(struct msgs *m, const char *s)
{
    if (m->n < MSGS_MAX)
        m->v[m->n++] = s;
}

static int
status_for(int code)
{
    switch (code) {
    case SP_EINVAL:
        return 400;
    case SP_ENOTFOUND:
        return 404;
    case SP_ECONFLICT:
        return 409;
    case SP_ETOOLARGE:
        return 413;
    case SP_EUNAVAIL:
    case SP_ETIMEDOUT:
        return 503;
    default:
        return 500;
    }
}

void
leads_http_error(struct http_response *resp, struct arena *a, int code, const struct sp_error *err)
{
    int status = status_for(code);
    const char *msg = err && err->msg[0] ? err->msg : sp_err_str(code);

    switch (status) {
    case 503:
        log_warn("request failed, answering 503: %s", msg);
        http_error1(resp, a, 503, "Service temporarily unavailable, retry later");
        resp->retry_after = 1;
        return;
    case 500:
        log_error("request failed: %s: %s", sp_err_name(code), msg);
        http_error(resp, a, 500, (const char *const[]){"Internal server error"}, 1, 0);
        return;
    case 404:
        http_error(resp, a, 404, &msg, 1, 0);
        return;
    default:
        http_error1(resp, a, status, msg);
        return;
    }
}

/* "application/json" or "application/json; charset=utf-8", case-insensitive. */
static int
media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    if (ct == NULL || strncasecmp(ct, type, n) != 0)
        return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/* Percent-decodes s[0..len) ('+' is a space); NULL on a bad escape or an embedded NUL. */
static char *
form_decode(struct arena *a, const char *s, size_t len)
{
    char *out = arena_alloc(a, len + 1);
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0')
            return NULL; /* a raw NUL would silently cut the C string short */
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return NULL;
            hi = sp_hex_digit((unsigned char)s[i + 1]);
            lo = sp_hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Turns a urlencoded form into a JSON object of strings. */
static json_t *
form_to_json(struct arena *a, const char *body, size_t len, const char **error)
{
    json_t *obj = json_object();
    size_t i = 0;

    while (i < len) {
        size_t end = i, eq;
        char *key, *val;
        while (end < len && body[end] != '&')
            end++;
        for (eq = i; eq < end && body[eq] != '='; eq++)
            ;
        if (end > i) {
            key = form_decode(a, body + i, eq - i);
            val = eq < end ? form_decode(a, body + eq + 1, end - eq - 1) : arena_strdup(a, "");
            if (key == NULL || val == NULL) {
                *error = "Malformed form body: bad percent-encoding";
                json_decref(obj);
                return NULL;
            }
            json_t *js = json_string(val);
            if (js == NULL) {
                *error = "Malformed form body: values must be UTF-8 text";
                json_decref(obj);
                return NULL;
            }
            if (json_object_set_new(obj, key, js) != 0) { /* jansson refuses non-UTF-8 keys */
                *error = "Malformed form body: keys must be UTF-8 text";
                json_decref(obj);
                return NULL;
            }
        }
        i = end + 1;
    }
    return obj;
}

/* Parses the body as a JSON object (or a form). On failure fills resp and returns NULL. */
static json_t *
parse_body(struct http_request *req, struct http_response *resp)
{
    json_error_t jerr;
    json_t *root;

    if (req->body_len == 0)
        return json_object();
    if (media_is(req->content_type, "application/x-www-form-urlencoded")) {
        const char *error = NULL;
        root = form_to_json(req->arena, req->body, req->body_len, &error);
        if (root == NULL)
            http_error(resp, req->arena, 400, &error, 1, 0);
        return root;
    }
    if (!media_is(req->content_type, "application/json")) {
        const char *m = arena_printf(req->arena,
                                     "Unsupported Content-Type %s: send application/json or "
                                     "application/x-www-form-urlencoded",
                                     req->content_type ? req->content_type : "(none)");
        http_error(resp, req->arena, 415, &m, 1, 0);
        return NULL;
    }
    root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        const char *m =
            arena_printf(req->arena, "%s in JSON at position %d", jerr.text, jerr.position);
        http_error(resp, req->arena, 400, &m, 1, 0);
        return NULL;
    }
    if (!json_is_object(root)) {
        const char *m = "Request body must be a JSON object";
        json_decref(root);
        http_error(resp, req->arena, 400, &m, 1, 0);
        return NULL;
    }
    return root;
}

static void
check_unknown(json_t *obj, const char *const *allowed, struct arena *a, struct msgs *m)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (const char *const *p = allowed; *p; p++)
            if (strcmp(*p, key) == 0)
                ok = 1;
        if (!ok)
            msg_add(m, arena_printf(a, "property %s should not exist", key));
    }
}

static int
blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* An optional string field: absent or null is NULL. Adds messages for bad values. */
static const char *
opt_string(json_t *obj, const char *key, size_t max, struct arena *a, struct msgs *m)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        msg_add(m, arena_printf(a, "%s must be a string", key));
        return NULL;
    }
    /* characters as NestJS counts them: UTF-16 code units (jansson's strings are UTF-8) */
    if (lead_text_utf16_len(json_string_value(v), json_string_length(v)) > max) {
        msg_add(m, arena_printf(a, "%s must be shorter than or equal to %zu characters", key, max));
        return NULL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        msg_add(m, arena_printf(a, "%s must not contain NUL characters", key));
        return NULL;
    }
    return arena_strndup(a, json_string_value(v), json_string_length(v));
}

/* A name or phone that passed opt_string: adds the message of lead_text_field_check (control
 * or bidirectional formatting characters) and returns NULL, or returns s. */
static const char *
clean_text(const char *field, const char *s, size_t max, struct arena *a, struct msgs *m)
{
    struct sp_error err = {0};

    if (s == NULL || lead_text_field_check(field, s, strlen(s), max, &err) == SP_OK)
        return s;
    msg_add(m, arena_strdup(a, err.msg));
    return NULL;
}

static int
validate_create(json_t *body, struct arena *a, struct lead_input *in, struct msgs *m)
{
    static const char *const allowed[] = {"name", "email", "phone", NULL};
    json_t *name = json_object_get(body, "name");
    json_t *email = json_object_get(body, "email");
    json_t *phone = json_object_get(body, "phone");

    check_unknown(body, allowed, a, m);
    if ((email == NULL || json_is_null(email)) && (phone == NULL || json_is_null(phone)))
        msg_add(m, "Either email or phone must be provided");
    if (name == NULL || json_is_null(name)) {
        msg_add(m, "name should not be empty");
        msg_add(m, "name must be a string");
    } else if (!json_is_string(name)) {
        msg_add(m, "name must be a string");
    } else if (blank(json_string_value(name))) {
        msg_add(m, "name should not be empty");
    } else {
        in->name =
            clean_text("name", opt_string(body, "name", LEAD_NAME_MAX, a, m), LEAD_NAME_MAX, a, m);
    }
    in->email = opt_string(body, "email", LEAD_EMAIL_MAX, a, m);
    if (in->email && !lead_email_valid(in->email, strlen(in->email))) {
        msg_add(m, "email must be an email");
        in->email = NULL;
    }
    in->phone = opt_string(body, "phone", LEAD_PHONE_MAX, a, m);
    if (in->phone && blank(in->phone)) {
        msg_add(m, "phone should not be empty");
        in->phone = NULL;
    }
    in->phone = clean_text("phone", in->phone, LEAD_PHONE_MAX, a, m);
    return m->n == 0;
}

static void
render_lead(struct jsonw *w, const struct lead *l)
{
    jsonw_obj_begin(w);
    jsonw_kstr(w, "id", l->id);
    jsonw_kstr(w, "name", l->name);
    jsonw_kstr(w, "email", l->email);
    jsonw_kstr(w, "phone", l->phone);
    jsonw_kstr(w, "status", lead_status_name(l->status));
    jsonw_ktime(w, "createdAt", l->created_at, 0);
    jsonw_ktime(w, "updatedAt", l->updated_at, 0);
    jsonw_obj_end(w);
}

static void
send_json(struct http_response *resp, struct arena *a, int status, struct jsonw *w)
{
    const char *body;
    size_t len;

    if (jsonw_finish(w, &body, &len) != SP_OK) {
        log_error("response exceeds %d bytes", RESPONSE_MAX);
        http_error(resp, a, 500, (const char *const[]){"Internal server error"}, 1, 0);
        return;
    }
    http_json(resp, status, body, len);
}

/* 409 for a capture of a person already stored: the NestJS error body plus the lead's id, so a
 * client (a landing page submitted twice) can carry on with the existing lead. */
static void
send_conflict(struct http_response *resp, struct arena *a, const struct sp_error *err,
              const char *lead_id)
{
    struct jsonw w;

    jsonw_init(&w, a, 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "message", err->msg[0] ? err->msg : "Lead already exists");
    jsonw_kstr(&w, "error", http_reason(409));
    jsonw_kint(&w, "statusCode", 409);
    jsonw_kstr(&w, "leadId", lead_id);
    jsonw_obj_end(&w);
    send_json(resp, a, 409, &w);
}

void
leads_http_create(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct lead_input in = {0};
    struct msgs m = {0};
    struct sp_error err = {0};
    struct lead lead;
    struct jsonw w;
    json_t *body = parse_body(req, resp);
    int rc;

    if (body == NULL)
        return;
    if (!validate_create(body, req->arena, &in, &m)) {
        json_decref(body);
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return;
    }
    json_decref(body);
    rc = leads_create(d, &in, req->arena, &lead, &err);
    if (rc == SP_ECONFLICT && lead.id[0] != '\0') {
        send_conflict(resp, req->arena, &err, lead.id);
        return;
    }
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    render_lead(&w, &lead);
    send_json(resp, req->arena, 201, &w);
}

/* The :id parameter must be a UUID; answers 400 otherwise. */
static const char *
lead_id_param(struct http_request *req, struct http_response *resp)
{
    const char *id = req->nparams > 0 ? req->params[0] : "";
    if (!sp_uuid_valid(id, strlen(id))) {
        const char *msg = "Validation failed (uuid is expected)";
        http_error(resp, req->arena, 400, &msg, 1, 0);
        return NULL;
    }
    /* ids are stored lowercase */
    char *lower = arena_strdup(req->arena, id);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return lower;
}

static void
validate_content_fields(json_t *content, enum channel c, struct arena *a, struct msgs *m)
{
    static const char *const email_keys[] = {"from", "subject", "body", NULL};
    static const char *const wa_keys[] = {"from", "text", NULL};
    const char *const *keys = c == CHANNEL_EMAIL ? email_keys : wa_keys;

    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(content, *k);
        if (v && !json_is_string(v) && !json_is_null(v))
            msg_add(m, arena_printf(a, "messageContent.%s must be a string", *k));
    }
    /* The sender must be an address of the channel (the use case checks it too; here a NUL
     * inside it, which a C string would hide, is caught as well). Channels without addresses
     * (and senders) are refused by the use case with their own message. */
    if (c == CHANNEL_EMAIL || c == CHANNEL_WHATSAPP) {
        json_t *from = json_object_get(content, "from");
        if (json_is_string(from) &&
            !lead_address_valid(c, json_string_value(from), json_string_length(from)))
            msg_add(m, c == CHANNEL_EMAIL ? "messageContent.from must be an email"
                                          : "messageContent.from must be a phone number");
    }
}

static int
validate_reply(json_t *body, struct arena *a, struct reply_input *in, struct msgs *m)
{
    static const char *const allowed[] = {"channel", "messageContent", NULL};
    json_t *channel = json_object_get(body, "channel");
    json_t *content = json_object_get(body, "messageContent");
    int channel_ok = 0;

    check_unknown(body, allowed, a, m);
    if (!json_is_string(channel) || channel_parse(json_string_value(channel), &in->channel) != 0)
        msg_add(m, "channel must be one of the following values: email, whatsapp, linkedin, "
                   "voice, ads");
    else
        channel_ok = 1;
    if (content == NULL || json_is_null(content)) {
        msg_add(m, "messageContent should not be empty");
        msg_add(m, "messageContent must be an object");
    } else if (!json_is_object(content)) {
        msg_add(m, "messageContent must be an object");
    } else if (json_object_size(content) == 0) {
        msg_add(m, "messageContent should not be empty");
    } else {
        char *text = json_dumps(content, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (channel_ok)
            validate_content_fields(content, in->channel, a, m);
        if (text == NULL || strlen(text) > MESSAGE_CONTENT_MAX)
            msg_add(
                m, arena_printf(a, "messageContent must be at most %d bytes", MESSAGE_CONTENT_MAX));
        else
            in->content = arena_strdup(a, text);
        free(text);
    }
    return m->n == 0;
}

void
leads_http_reply(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct reply_input in = {0};
    struct msgs m = {0};
    struct sp_error err = {0};
    char message_id[SP_UUID_LEN + 1];
    struct jsonw w;
    json_t *body;
    int rc;

    in.lead_id = lead_id_param(req, resp);
    if (in.lead_id == NULL)
        return;
    body = parse_body(req, resp);
    if (body == NULL)
        return;
    if (!validate_reply(body, req->arena, &in, &m)) {
        json_decref(body);
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return;
    }
    json_decref(body);
    rc = leads_reply(d, &in, req->arena, message_id, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, 256);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messageId", message_id);
    jsonw_obj_end(&w);
    send_json(resp, req->arena, 201, &w);
}

static void
render_message(struct jsonw *w, const struct message *msg)
{
    jsonw_obj_begin(w);
    jsonw_kstr(w, "id", msg->id);
    jsonw_kstr(w, "channel", channel_name(msg->channel));
    jsonw_kraw(w, "channelMessage", msg->channel_message);
    jsonw_ktime(w, "createdAt", msg->created_at, 0);
    jsonw_kstr(w, "direction", message_direction_name(msg->direction));
    jsonw_kstr(w, "kind", message_kind_name(msg->kind));
    jsonw_kstr(w, "status", message_status_name(msg->status));
    jsonw_kint(w, "attempts", msg->attempts);
    jsonw_ktime(w, "sentAt", msg->sent_at, 1);
    jsonw_kstr(w, "lastError", msg->last_error);
    /* the provider's id of a sent message (a WhatsApp wamid, an SMTP queue id), else null */
    jsonw_kstr(w, "providerId", msg->provider_id && msg->provider_id[0] ? msg->provider_id : NULL);
    jsonw_obj_end(w);
}

static void
render_message_array(struct jsonw *w, const struct message *msgs, int n)
{
    jsonw_arr_begin(w);
    for (int i = 0; i < n; i++)
        render_message(w, &msgs[i]);
    jsonw_arr_end(w);
}

static void
render_messages(struct jsonw *w, const struct lead_details *det)
{
    jsonw_obj_begin(w);
    /* Channels in order of their first message, like the NestJS grouping. */
    for (int i = 0; i < det->nchannels; i++) {
        const struct lead_channel_page *cp = &det->channels[i];
        jsonw_key(w, channel_name(cp->channel));
        render_message_array(w, cp->messages, cp->nmessages);
    }
    jsonw_obj_end(w);
}

/* Cursors are opaque to clients: "<list>.<position>", the list being a channel name or
 * "events" and the position the repo's (lead_repo.h). */
#define CURSOR_EVENTS "events"

static const char *
cursor_render(struct arena *a, const char *list, int64_t pos)
{
    return arena_printf(a, "%s.%lld", list, (long long)pos);
}

/* Parses a cursor of `list`; -1 when it is not one (wrong list, not a positive position). */
static int
cursor_parse(const char *s, const char *list, int64_t *pos)
{
    size_t n = strlen(list);
    int64_t v = 0;
    const char *p;

    if (strncmp(s, list, n) != 0 || s[n] != '.')
        return -1;
    p = s + n + 1;
    if (*p == '\0' || *p == '0' || strlen(p) > 18)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *pos = v;
    return 0;
}

void
leads_http_event_json(struct jsonw *w, const struct lead_event *e)
{
    jsonw_obj_begin(w);
    jsonw_kstr(w, "id", e->id);
    jsonw_kstr(w, "type", lead_event_type_name(e->type));
    jsonw_kstr(w, "leadId", e->lead_id);
    jsonw_kraw(w, "correlationIds", e->correlation_ids);
    jsonw_kraw(w, "payload", e->payload);
    jsonw_ktime(w, "createdAt", e->created_at, 0);
    jsonw_obj_end(w);
}

static void
render_event_array(struct jsonw *w, const struct lead_event *events, int n)
{
    jsonw_arr_begin(w);
    for (int i = 0; i < n; i++)
        leads_http_event_json(w, &events[i]);
    jsonw_arr_end(w);
}

/* "more": the cursors of the lists cut short; left out when nothing was (an ordinary lead keeps
 * the NestJS shape exactly). */
static void
render_more(struct jsonw *w, struct arena *a, const struct lead_details *det)
{
    int cut = det->events_next > 0 || det->jobs_more;

    for (int i = 0; i < det->nchannels; i++)
        cut |= det->channels[i].next > 0;
    if (!cut)
        return;
    jsonw_key(w, "more");
    jsonw_obj_begin(w);
    for (int i = 0; i < det->nchannels; i++) {
        const struct lead_channel_page *cp = &det->channels[i];
        const char *name = channel_name(cp->channel);
        if (cp->next > 0)
            jsonw_kstr(w, name, cursor_render(a, name, cp->next));
    }
    if (det->events_next > 0)
        jsonw_kstr(w, "events", cursor_render(a, CURSOR_EVENTS, det->events_next));
    if (det->jobs_more)
        jsonw_kbool(w, "jobs", 1); /* no paging route for jobs: only "older ones exist" */
    jsonw_obj_end(w);
}

static void
render_jobs(struct jsonw *w, const struct lead_details *det)
{
    jsonw_arr_begin(w);
    for (int i = 0; i < det->njobs; i++)
        jobs_http_render(w, &det->jobs[i], 0); /* the record GET /jobs/:id shows, less leadId */
    jsonw_arr_end(w);
}

void
leads_http_details(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct lead_details det;
    struct sp_error err = {0};
    struct jsonw w;
    const char *id = lead_id_param(req, resp);
    int rc;

    if (id == NULL)
        return;
    rc = leads_get_details(d, id, req->arena, &det, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "lead");
    render_lead(&w, &det.lead);
    jsonw_key(&w, "messagesByChannel");
    render_messages(&w, &det);
    jsonw_key(&w, "events");
    render_event_array(&w, det.events, det.nevents);
    jsonw_key(&w, "jobs");
    render_jobs(&w, &det);
    /* Like "more": only when there is something to say, so an ordinary lead keeps the NestJS
     * shape exactly. */
    if (det.opt_outs.n > 0) {
        jsonw_key(&w, "optOut");
        leads_http_render_opt_outs(&w, &det.opt_outs);
    }
    render_more(&w, req->arena, &det);
    jsonw_obj_end(&w);
    send_json(resp, req->arena, 200, &w);
}

/* Messages for query keys that are not `allowed` or are given more than once (one message
 * per key). */
static void
query_keys_check(struct http_request *req, const char *const *allowed, struct msgs *m)
{
    for (int i = 0; i < req->nquery; i++) {
        int ok = 0, seen = 0;
        for (int j = 0; j < i; j++)
            seen |= strcmp(req->query_keys[j], req->query_keys[i]) == 0;
        if (seen)
            continue;
        for (const char *const *p = allowed; *p; p++)
            ok |= strcmp(*p, req->query_keys[i]) == 0;
        if (!ok)
            msg_add(m,
                    arena_printf(req->arena, "property %s should not exist", req->query_keys[i]));
        else if (http_query_count(req, req->query_keys[i]) > 1)
            msg_add(m, arena_printf(req->arena, "%s must be given once", req->query_keys[i]));
    }
}

/* The limit query argument, 1..max; `def` when absent; a message otherwise. */
static int
query_limit(struct http_request *req, int def, int max, struct msgs *m)
{
    const char *v = http_query(req, "limit");
    char *end = NULL;
    long n;

    if (v == NULL)
        return def;
    n = (*v >= '0' && *v <= '9') ? strtol(v, &end, 10) : 0;
    if (end == NULL || *end != '\0' || n < 1 || n > max) {
        msg_add(m, arena_printf(req->arena, "limit must be an integer from 1 to %d", max));
        return def;
    }
    return (int)n;
}

/* The paging query: only `allowed` keys, each at most once; limit 1..LEADS_PAGE_MAX (default
 * LEADS_PAGE_DEFAULT); a cursor of `list` (list NULL: the cursor is checked later). Answers 400
 * and returns -1 otherwise. */
static int
page_query(struct http_request *req, struct http_response *resp, const char *const *allowed,
           const char *list, int64_t *before, int *limit)
{
    struct msgs m = {0};
    const char *v;

    query_keys_check(req, allowed, &m);
    *limit = query_limit(req, LEADS_PAGE_DEFAULT, LEADS_PAGE_MAX, &m);
    *before = 0;
    v = http_query(req, "cursor");
    if (v && list && cursor_parse(v, list, before) != 0)
        msg_add(&m, "cursor is not valid");
    if (m.n > 0) {
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return -1;
    }
    return 0;
}

static void
send_page_end(struct http_response *resp, struct arena *a, struct jsonw *w, const char *list,
              const struct lead_page_info *page)
{
    jsonw_key(w, "nextCursor");
    if (page->next > 0)
        jsonw_str(w, cursor_render(a, list, page->next));
    else
        jsonw_null(w);
    jsonw_obj_end(w);
    send_json(resp, a, 200, w);
}

void
leads_http_messages(const struct leads_deps *d, struct http_request *req,
                    struct http_response *resp)
{
    static const char *const allowed[] = {"channel", "cursor", "limit", NULL};
    struct sp_error err = {0};
    struct lead_page_info page;
    struct message *msgs;
    struct jsonw w;
    enum channel c;
    const char *id = lead_id_param(req, resp);
    const char *chan;
    int64_t before;
    int limit, rc;

    if (id == NULL)
        return;
    chan = http_query(req, "channel");
    if (chan == NULL || channel_parse(chan, &c) != 0) {
        http_error1(resp, req->arena, 400,
                    "channel must be one of the following values: email, whatsapp, linkedin, "
                    "voice, ads");
        return;
    }
    if (page_query(req, resp, allowed, channel_name(c), &before, &limit) != 0)
        return;
    rc = leads_list_messages(d, id, c, before, limit, req->arena, &msgs, &page, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "items");
    render_message_array(&w, msgs, page.n);
    send_page_end(resp, req->arena, &w, channel_name(c), &page);
}

void
leads_http_events(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    static const char *const allowed[] = {"cursor", "limit", NULL};
    struct sp_error err = {0};
    struct lead_page_info page;
    struct lead_event *events;
    struct jsonw w;
    const char *id = lead_id_param(req, resp);
    int64_t before;
    int limit, rc;

    if (id == NULL)
        return;
    if (page_query(req, resp, allowed, CURSOR_EVENTS, &before, &limit) != 0)
        return;
    rc = leads_list_events(d, id, before, limit, req->arena, &events, &page, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "items");
    render_event_array(&w, events, page.n);
    send_page_end(resp, req->arena, &w, CURSOR_EVENTS, &page);
}

/* ---- do not contact ----------------------------------------------------------------------- */

void
leads_http_render_opt_outs(struct jsonw *w, const struct lead_opt_outs *o)
{
    jsonw_obj_begin(w);
    for (int i = 0; i < o->n; i++) {
        jsonw_key(w, channel_name(o->v[i].channel));
        jsonw_obj_begin(w);
        jsonw_kstr(w, "reason", o->v[i].reason);
        jsonw_ktime(w, "at", o->v[i].at, 0);
        jsonw_kstr(w, "source", opt_out_source_name(o->v[i].source));
        jsonw_obj_end(w);
    }
    jsonw_obj_end(w);
}

#define OPT_OUT_CHANNEL_MSG "channel must be one of the following values: email, whatsapp"

/* A channel that can be opted out of, as its mask bit; 0 when it is not one. */
static unsigned
opt_out_channel_bit(const char *s)
{
    enum channel c;

    if (s == NULL || channel_parse(s, &c) != 0 || !lead_opt_out_channel_valid(c))
        return 0;
    return 1u << c;
}

static void
send_opt_outs(struct http_response *resp, struct arena *a, const char *lead_id,
              const struct lead_opt_outs *o)
{
    struct jsonw w;

    jsonw_init(&w, a, 16 * 1024);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "leadId", lead_id);
    jsonw_key(&w, "optOut");
    leads_http_render_opt_outs(&w, o);
    jsonw_obj_end(&w);
    send_json(resp, a, 200, &w);
}

static int
validate_opt_out(json_t *body, struct arena *a, struct opt_out_input *in, struct msgs *m)
{
    static const char *const allowed[] = {"channel", "reason", NULL};
    json_t *channel = json_object_get(body, "channel");
    json_t *reason = json_object_get(body, "reason");

    check_unknown(body, allowed, a, m);
    in->channels = LEAD_OPT_OUT_CHANNELS;
    if (channel != NULL && !json_is_null(channel)) {
        in->channels =
            json_is_string(channel) ? opt_out_channel_bit(json_string_value(channel)) : 0;
        if (in->channels == 0)
            msg_add(m, OPT_OUT_CHANNEL_MSG);
    }
    in->reason = opt_string(body, "reason", LEAD_OPT_OUT_REASON_MAX, a, m);
    if (in->reason && blank(in->reason)) {
        msg_add(m, "reason should not be empty");
        in->reason = NULL;
    } else if (json_is_string(reason)) {
        in->reason = clean_text("reason", in->reason, LEAD_OPT_OUT_REASON_MAX, a, m);
    }
    return m->n == 0;
}

void
leads_http_opt_out(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct opt_out_input in = {0};
    struct lead_opt_outs out;
    struct sp_error err = {0};
    struct msgs m = {0};
    json_t *body;
    int rc;

    in.lead_id = lead_id_param(req, resp);
    if (in.lead_id == NULL)
        return;
    body = parse_body(req, resp);
    if (body == NULL)
        return;
    if (!validate_opt_out(body, req->arena, &in, &m)) {
        json_decref(body);
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return;
    }
    json_decref(body);
    in.source = OPT_OUT_SOURCE_API;
    rc = leads_opt_out(d, &in, req->arena, &out, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    send_opt_outs(resp, req->arena, in.lead_id, &out);
}

void
leads_http_opt_in(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct lead_opt_outs out;
    struct sp_error err = {0};
    struct msgs m = {0};
    const char *id = lead_id_param(req, resp);
    const char *channel;
    unsigned channels = LEAD_OPT_OUT_CHANNELS;
    int rc;

    if (id == NULL)
        return;
    for (int i = 0; i < req->nquery; i++)
        if (strcmp(req->query_keys[i], "channel") != 0)
            msg_add(&m,
                    arena_printf(req->arena, "property %s should not exist", req->query_keys[i]));
    channel = http_query(req, "channel");
    if (http_query_count(req, "channel") > 1) {
        msg_add(&m, "channel must be given once");
    } else if (channel != NULL) {
        channels = opt_out_channel_bit(channel);
        if (channels == 0)
            msg_add(&m, OPT_OUT_CHANNEL_MSG);
    }
    if (m.n > 0) {
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return;
    }
    rc = leads_opt_in(d, id, channels, req->arena, &out, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    send_opt_outs(resp, req->arena, id, &out);
}

/* ---- manual messages ---------------------------------------------------------------------- */

/* A string member of channelMessage, or NULL (with a message) when it is not one. Presence and
 * content are the use case's checks (lead_manual_message_check). */
static const char *
manual_part(json_t *content, const char *key, struct arena *a, struct msgs *m)
{
    json_t *v = json_object_get(content, key);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        msg_add(m, arena_printf(a, "channelMessage.%s must be a string", key));
        return NULL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        msg_add(m, arena_printf(a, "channelMessage.%s must not contain NUL characters", key));
        return NULL;
    }
    return arena_strndup(a, json_string_value(v), json_string_length(v));
}

static int
validate_manual(json_t *body, struct arena *a, struct manual_input *in, struct msgs *m)
{
    static const char *const allowed[] = {"channel", "channelMessage", NULL};
    static const char *const email_keys[] = {"subject", "body", NULL};
    static const char *const wa_keys[] = {"text", NULL};
    json_t *channel = json_object_get(body, "channel");
    json_t *content = json_object_get(body, "channelMessage");
    int channel_ok = 0;

    check_unknown(body, allowed, a, m);
    if (!json_is_string(channel) || channel_parse(json_string_value(channel), &in->channel) != 0)
        msg_add(m, "channel must be one of the following values: email, whatsapp, linkedin, "
                   "voice, ads");
    else
        channel_ok = 1;
    if (content == NULL || json_is_null(content)) {
        msg_add(m, "channelMessage should not be empty");
        msg_add(m, "channelMessage must be an object");
    } else if (!json_is_object(content)) {
        msg_add(m, "channelMessage must be an object");
    } else if (channel_ok && (in->channel == CHANNEL_EMAIL || in->channel == CHANNEL_WHATSAPP)) {
        const char *const *keys = in->channel == CHANNEL_EMAIL ? email_keys : wa_keys;
        const char *key;
        json_t *v;

        json_object_foreach(content, key, v)
        {
            int ok = 0;
            for (const char *const *k = keys; *k; k++)
                ok |= strcmp(*k, key) == 0;
            if (!ok)
                msg_add(m, arena_printf(a, "property channelMessage.%s should not exist", key));
        }
        if (in->channel == CHANNEL_EMAIL) {
            in->subject = manual_part(content, "subject", a, m);
            in->body = manual_part(content, "body", a, m);
            if (in->subject == NULL && json_object_get(content, "subject") == NULL)
                msg_add(m, "channelMessage.subject should not be empty");
            if (in->body == NULL && json_object_get(content, "body") == NULL)
                msg_add(m, "channelMessage.body should not be empty");
        } else {
            in->text = manual_part(content, "text", a, m);
            if (in->text == NULL && json_object_get(content, "text") == NULL)
                msg_add(m, "channelMessage.text should not be empty");
        }
    }
    return m->n == 0;
}

void
leads_http_send_message(const struct leads_deps *d, struct http_request *req,
                        struct http_response *resp)
{
    struct manual_input in = {0};
    struct sp_error err = {0};
    struct msgs m = {0};
    struct message msg;
    struct jsonw w;
    json_t *body;
    int rc;

    in.lead_id = lead_id_param(req, resp);
    if (in.lead_id == NULL)
        return;
    body = parse_body(req, resp);
    if (body == NULL)
        return;
    if (!validate_manual(body, req->arena, &in, &m)) {
        json_decref(body);
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return;
    }
    json_decref(body);
    rc = leads_send_manual(d, &in, req->arena, &msg, &err);
    if (rc == SP_ECONFLICT) {
        /* A NestJS ConflictException: the message as one sentence. */
        const char *text = err.msg[0] ? err.msg : "Lead opted out of the channel";
        http_error(resp, req->arena, 409, &text, 1, 0);
        return;
    }
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    render_message(&w, &msg);
    send_json(resp, req->arena, 201, &w);
}

/* ---- GET /leads ------------------------------------------------------------------------ */

/* The list's cursor: the position of a page's last lead (struct lead_list_pos), created_at
 * then seq as two big-endian 64-bit integers, in unpadded base64url: 22 characters, opaque to
 * clients. */
#define LIST_CURSOR_LEN 22
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char *
list_cursor_render(struct arena *a, const struct lead_list_pos *pos)
{
    unsigned char raw[16];
    char *out = arena_alloc(a, LIST_CURSOR_LEN + 1);
    int o = 0;

    for (int i = 0; i < 8; i++) {
        raw[i] = (unsigned char)((uint64_t)pos->created_at >> (56 - 8 * i));
        raw[8 + i] = (unsigned char)((uint64_t)pos->seq >> (56 - 8 * i));
    }
    for (int i = 0; i < 15; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    out[o++] = B64URL[raw[15] >> 2];
    out[o++] = B64URL[(raw[15] & 3) << 4];
    out[o] = '\0';
    return out;
}

/* Parses a cursor of list_cursor_render; -1 when it is not one (or names a position no lead
 * can have). */
static int
list_cursor_parse(const char *s, struct lead_list_pos *pos)
{
    unsigned char raw[16];
    unsigned d[LIST_CURSOR_LEN];
    uint64_t at = 0, seq = 0;

    if (strlen(s) != LIST_CURSOR_LEN)
        return -1;
    for (int i = 0; i < LIST_CURSOR_LEN; i++) {
        const char *p = strchr(B64URL, s[i]);
        if (p == NULL)
            return -1;
        d[i] = (unsigned)(p - B64URL);
    }
    if (d[21] & 15)
        return -1; /* bits past the last byte: not a cursor we made */
    for (int i = 0, o = 0; i < 20; i += 4) {
        unsigned v = d[i] << 18 | d[i + 1] << 12 | d[i + 2] << 6 | d[i + 3];
        raw[o++] = (unsigned char)(v >> 16);
        raw[o++] = (unsigned char)(v >> 8);
        raw[o++] = (unsigned char)v;
    }
    raw[15] = (unsigned char)(d[20] << 2 | d[21] >> 4);
    for (int i = 0; i < 8; i++) {
        at = at << 8 | raw[i];
        seq = seq << 8 | raw[8 + i];
    }
    pos->created_at = (int64_t)at;
    pos->seq = (int64_t)seq;
    if (pos->seq <= 0 || pos->created_at < LEAD_TIME_MIN || pos->created_at > LEAD_TIME_MAX)
        return -1;
    return 0;
}

/* An ISO 8601 time in UTC (sp_time_parse), or a date alone (its midnight, UTC). */
static int
query_time(const char *v, int64_t *ms)
{
    char buf[32];

    if (strlen(v) == 10) {
        snprintf(buf, sizeof(buf), "%sT00:00:00Z", v);
        v = buf;
    }
    return sp_time_parse(v, ms);
}

static void
list_time(struct http_request *req, const char *key, int64_t *ms, struct msgs *m)
{
    const char *v = http_query(req, key);

    if (v != NULL && query_time(v, ms) != 0)
        msg_add(m, arena_printf(req->arena, "%s must be a valid ISO 8601 date string", key));
}

/* The query of GET /leads into *q; messages for what is wrong. */
static void
list_query(struct http_request *req, struct leads_list_query *q, struct msgs *m)
{
    static const char *const allowed[] = {"status", "q", "createdAfter", "createdBefore", "limit",
                                          "cursor", NULL};
    const char *v;

    memset(q, 0, sizeof(*q));
    query_keys_check(req, allowed, m);
    v = http_query(req, "status");
    if (v != NULL && lead_status_parse(v, &q->status) != 0)
        msg_add(m, "status must be one of the following values: new, contacted, replied, "
                   "converted, dead");
    q->has_status = v != NULL;
    v = http_query(req, "q");
    if (v != NULL) {
        struct sp_error err = {0};
        if (blank(v))
            msg_add(m, "q should not be empty");
        else if (lead_text_field_check("q", v, strlen(v), LEAD_NAME_MAX, &err) != SP_OK)
            msg_add(m, arena_strdup(req->arena, err.msg));
        q->q = v;
    }
    q->created_after = LEAD_TIME_MIN - 1;
    q->created_before = LEAD_TIME_MAX + 1;
    list_time(req, "createdAfter", &q->created_after, m);
    list_time(req, "createdBefore", &q->created_before, m);
    q->limit = query_limit(req, LEADS_LIST_DEFAULT, LEAD_LIST_MAX, m);
    v = http_query(req, "cursor");
    if (v != NULL && list_cursor_parse(v, &q->after) != 0)
        msg_add(m, "cursor is not valid");
}

void
leads_http_list(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct leads_list_query q;
    struct lead_list_page page;
    struct sp_error err = {0};
    struct msgs m = {0};
    struct lead *leads;
    struct jsonw w;
    int rc;

    list_query(req, &q, &m);
    if (m.n > 0) {
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return;
    }
    rc = leads_list(d, &q, req->arena, &leads, &page, &err);
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "items");
    jsonw_arr_begin(&w);
    for (int i = 0; i < page.n; i++)
        render_lead(&w, &leads[i]);
    jsonw_arr_end(&w);
    jsonw_key(&w, "nextCursor");
    if (page.has_next)
        jsonw_str(&w, list_cursor_render(req->arena, &page.next));
    else
        jsonw_null(&w);
    jsonw_obj_end(&w);
    send_json(resp, req->arena, 200, &w);
}
