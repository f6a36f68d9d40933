/* webhooks_http.c: the providers' webhooks (see webhooks_http.h).
 *
 * Every check that can refuse a delivery runs before anything is stored: the signature, then
 * the whole body's shape. Then each item is its own unit of work, so a storage failure half-way
 * answers 503 and the provider's redelivery finds the first items already taken in (their
 * provider ids are claimed with them: see application/inbound.c) and stores only the rest.
 * Nothing here calls a provider: the answers to the messages are written by the
 * generate-reply jobs the use case queues, so the provider gets its 200 fast. */
#include "features/messaging/presentation/webhooks_http.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/uuid.h"
#include "features/leads/application/leads.h"
#include "features/leads/presentation/leads_http.h"
#include "features/messaging/infrastructure/email_mime.h"
#include "features/messaging/infrastructure/mailgun_inbound.h"
#include "features/messaging/infrastructure/whatsapp_webhook.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* An inbound email's text is kept up to this many bytes (cut at a character boundary): the
 * stored message must stay within MESSAGE_CONTENT_MAX with its other fields. */
#define EMAIL_TEXT_KEEP (48 * 1024)
/* Used tokens are remembered for twice the timestamp window: an older token is refused for
 * its timestamp already. Pruned once every PRUNE_EVERY deliveries. */
#define TOKEN_KEEP_MS (2 * (int64_t)MG_TIMESTAMP_WINDOW_MS)
#define PRUNE_EVERY 64
/* A webhook without its secret answers 503 with this Retry-After: the providers redeliver
 * (Meta for days), so the messages arrive once an operator sets the secret. */
#define UNCONFIGURED_RETRY_S 300

static void
text_response(struct http_response *resp, int status, const char *body)
{
    resp->status = status;
    resp->body = body;
    resp->body_len = strlen(body);
    resp->content_type = "text/plain; charset=utf-8";
}

static int
secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char da[SP_SHA256_LEN], db[SP_SHA256_LEN];

    /* Digests first, so the comparison's time says nothing about the secret's length. */
    sp_sha256(a, la, da);
    sp_sha256(b, lb, db);
    return sp_equal_ct(da, db, sizeof(da)) && la == lb;
}

void
webhooks_http_whatsapp_verify(struct webhooks_config *c, struct http_request *req,
                              struct http_response *resp)
{
    const char *mode = http_query(req, "hub.mode");
    const char *token = http_query(req, "hub.verify_token");
    const char *challenge = http_query(req, "hub.challenge");

    if (c->whatsapp_verify_token == NULL || c->whatsapp_verify_token[0] == '\0') {
        log_warn("webhooks: WhatsApp verification refused: WHATSAPP_VERIFY_TOKEN is not set");
        http_error1(resp, req->arena, 403, "webhook verification is not configured");
        return;
    }
    if (mode == NULL || strcmp(mode, "subscribe") != 0 || token == NULL ||
        !secret_equal(token, c->whatsapp_verify_token)) {
        http_error1(resp, req->arena, 403, "hub.mode or hub.verify_token does not match");
        return;
    }
    text_response(resp, 200, challenge ? challenge : "");
}

/* ---- WhatsApp ------------------------------------------------------------------------ */

struct wa_tally {
    int received, duplicates, statuses, unknown, ignored;
};

static int
number_ours(const struct webhooks_config *c, const char *phone_number_id)
{
    return c->whatsapp_phone_number_id == NULL || c->whatsapp_phone_number_id[0] == '\0' ||
           strcmp(c->whatsapp_phone_number_id, phone_number_id) == 0;
}

/* The message as stored: the words as "text" (what the answer reads), the sender, the type;
 * the whole provider object as "raw" for the types without words. */
static const char *
wa_content(struct arena *a, const struct wa_inbound *m, const char *from)
{
    struct jsonw w;

    jsonw_init(&w, a, MESSAGE_CONTENT_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "from", from);
    jsonw_kstr(&w, "type", m->type);
    if (m->text != NULL)
        jsonw_kstr(&w, "text", m->text);
    jsonw_kstr(&w, "wamid", m->wamid);
    if (m->context_id != NULL)
        jsonw_kstr(&w, "contextId", m->context_id);
    if (!m->answerable && m->raw != NULL)
        jsonw_kraw(&w, "raw", m->raw);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, NULL);
}

static int
wa_take_message(const struct webhooks_config *c, const struct leads_deps *d, struct arena *a,
                const struct wa_inbound *m, struct wa_tally *t, struct sp_error *err)
{
    struct inbound_reply in;
    struct inbound_result out;
    const char *from = arena_printf(a, "+%s", m->from);
    int rc;

    if (!number_ours(c, m->phone_number_id)) {
        log_info("webhooks: WhatsApp message %s for phone number id %s ignored (not ours)",
                 m->wamid, m->phone_number_id);
        t->ignored++;
        return SP_OK;
    }
    memset(&in, 0, sizeof(in));
    in.source = REPLY_SOURCE_WHATSAPP;
    in.channel = CHANNEL_WHATSAPP;
    in.from = from;
    in.from_name = m->profile_name;
    in.create_lead = 1;
    in.content = wa_content(a, m, from);
    in.answerable = m->answerable;
    in.provider_id = m->wamid;
    if (in.content == NULL)
        return sp_error_set(err, SP_EINVAL, "messages", "message %s is too large", m->wamid);
    rc = leads_receive(d, &in, a, &out, err);
    if (rc != SP_OK)
        return rc;
    if (out.duplicate) {
        t->duplicates++;
        log_debug("webhooks: WhatsApp message %s already taken in", m->wamid);
        return SP_OK;
    }
    t->received++;
    log_info("webhooks: WhatsApp %s message %s from lead %s%s stored as %s", m->type, m->wamid,
             out.lead_id, out.lead_created ? " (new lead)" : "", out.message_id);
    return SP_OK;
}

static enum message_status
wa_status_of(enum wa_status_kind k)
{
    switch (k) {
    case WA_STATUS_DELIVERED:
        return MESSAGE_DELIVERED;
    case WA_STATUS_READ:
        return MESSAGE_READ;
    case WA_STATUS_FAILED:
        return MESSAGE_FAILED;
    default:
        return MESSAGE_SENT;
    }
}

static int
wa_take_status(const struct webhooks_config *c, const struct leads_deps *d, struct arena *a,
               const struct wa_status *s, struct wa_tally *t, struct sp_error *err)
{
    struct delivery_receipt r;
    int applied = 0;
    int rc;

    if (!number_ours(c, s->phone_number_id)) {
        t->ignored++;
        return SP_OK;
    }
    memset(&r, 0, sizeof(r));
    r.channel = CHANNEL_WHATSAPP;
    r.provider_id = s->wamid;
    r.status = wa_status_of(s->status);
    if (s->status == WA_STATUS_FAILED)
        r.error = arena_printf(a, "WhatsApp error %lld: %s", s->error_code,
                               s->error_title ? s->error_title : "message failed");
    rc = leads_apply_receipt(d, &r, a, &applied, err);
    if (rc == SP_ENOTFOUND) {
        log_info("webhooks: WhatsApp status %s for unknown message %s ignored",
                 message_status_name(r.status), s->wamid);
        memset(err, 0, sizeof(*err));
        t->unknown++;
        return SP_OK;
    }
    if (rc == SP_OK)
        t->statuses += applied;
    return rc;
}

/* Every message's sender must be a phone number (digits, as Meta sends wa_ids). */
static int
wa_senders_ok(const struct wa_delivery *dl, struct sp_error *err)
{
    for (int i = 0; i < dl->nmessages; i++) {
        const char *f = dl->messages[i].from;
        if (!lead_phone_number_valid(f, strlen(f)) || strspn(f, "0123456789") != strlen(f))
            return sp_error_set(err, SP_EINVAL, "from", "message %d: from must be a wa_id (digits)",
                                i);
    }
    return SP_OK;
}

static void
wa_answer(struct http_response *resp, struct arena *a, const struct wa_tally *t)
{
    struct jsonw w;
    const char *body;
    size_t len;

    jsonw_init(&w, a, 512);
    jsonw_obj_begin(&w);
    jsonw_kint(&w, "received", t->received);
    jsonw_kint(&w, "duplicates", t->duplicates);
    jsonw_kint(&w, "statuses", t->statuses);
    jsonw_kint(&w, "unknownMessages", t->unknown);
    jsonw_kint(&w, "ignored", t->ignored);
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, &body, &len) != SP_OK) {
        body = "{}";
        len = 2;
    }
    http_json(resp, 200, body, len);
}

void
webhooks_http_whatsapp(struct webhooks_config *c, const struct leads_deps *d,
                       struct http_request *req, struct http_response *resp)
{
    struct wa_delivery dl;
    struct wa_tally t = {0, 0, 0, 0, 0};
    struct sp_error err = {0};
    int rc = SP_OK;

    if (c->whatsapp_app_secret == NULL || c->whatsapp_app_secret[0] == '\0') {
        log_warn("webhooks: WhatsApp delivery refused: WHATSAPP_APP_SECRET is not set");
        http_error1(resp, req->arena, 503, "WhatsApp webhook is not configured");
        resp->retry_after = UNCONFIGURED_RETRY_S;
        return;
    }
    if (!wa_webhook_signature_ok(c->whatsapp_app_secret, req->hub_signature, req->body,
                                 req->body_len)) {
        log_info("webhooks: WhatsApp delivery with a %s signature refused",
                 req->hub_signature ? "wrong" : "missing");
        http_error1(resp, req->arena, 401, "X-Hub-Signature-256 is missing or does not match");
        return;
    }
    rc = wa_webhook_parse(req->body ? req->body : "", req->body_len, req->arena, &dl, &err);
    if (rc == SP_OK)
        rc = wa_senders_ok(&dl, &err);
    if (rc != SP_OK) {
        http_error1(resp, req->arena, 400, err.msg[0] ? err.msg : "not a WhatsApp webhook body");
        return;
    }
    for (int i = 0; rc == SP_OK && i < dl.nmessages; i++)
        rc = wa_take_message(c, d, req->arena, &dl.messages[i], &t, &err);
    for (int i = 0; rc == SP_OK && i < dl.nstatuses; i++)
        rc = wa_take_status(c, d, req->arena, &dl.statuses[i], &t, &err);
    if (rc == SP_EINVAL) {
        http_error1(resp, req->arena, 400, err.msg);
        return;
    }
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc == SP_ENOTFOUND ? SP_EUNAVAIL : rc, &err);
        return;
    }
    wa_answer(resp, req->arena, &t);
}

/* ---- email --------------------------------------------------------------------------- */

/* The lead a reply+{token}@... recipient names, when the token checks out. */
static int
email_token_lead(const struct webhooks_config *c, const char *recipient, char lead_id[37])
{
    const char *at, *plus;
    char token[EMAIL_REPLY_TOKEN_LEN + 1];
    size_t len;

    if (c->email_reply_secret == NULL || recipient == NULL)
        return 0;
    at = strchr(recipient, '@');
    if (at == NULL || strncasecmp(recipient, "reply+", 6) != 0)
        return 0;
    plus = recipient + 6;
    len = (size_t)(at - plus);
    if (len != EMAIL_REPLY_TOKEN_LEN)
        return 0;
    memcpy(token, plus, len);
    token[len] = '\0';
    return email_reply_token_check(c->email_reply_secret, strlen(c->email_reply_secret), token,
                                   lead_id) == SP_OK;
}

/* Our message id in a Message-ID of ours ("<uuid>@<domain>" without the brackets), or NULL. */
static const char *
our_message_id(struct arena *a, const char *msgid)
{
    const char *at = msgid ? strchr(msgid, '@') : NULL;

    if (at == NULL || at - msgid != SP_UUID_LEN || !sp_uuid_valid(msgid, SP_UUID_LEN))
        return NULL;
    return arena_strndup(a, msgid, SP_UUID_LEN);
}

/* Ids of our messages the email answers: In-Reply-To first, then References nearest first. */
static int
email_thread_ids(struct arena *a, const struct mg_inbound *m, const char **out, int cap)
{
    int n = 0;
    const char *id = our_message_id(a, m->in_reply_to);

    if (id != NULL && n < cap)
        out[n++] = id;
    for (int i = m->nreferences - 1; i >= 0 && n < cap; i--) {
        id = our_message_id(a, m->references[i]);
        if (id != NULL)
            out[n++] = id;
    }
    return n;
}

/* text cut to at most `max` bytes at a UTF-8 character boundary. */
static const char *
text_cut(struct arena *a, const char *text, size_t max, int *cut)
{
    size_t len = text ? strlen(text) : 0;

    *cut = len > max;
    if (!*cut)
        return text;
    len = max;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
        len--;
    return arena_strndup(a, text, len);
}

/* "<a> <b> ...": the email's References, as its answer continues them; the newest ids that fit
 * one header line (REFERENCES_KEEP bytes). */
#define REFERENCES_KEEP 900
static const char *
references_line(struct arena *a, const struct mg_inbound *m)
{
    const char *line = "";
    size_t len = 0;

    for (int i = m->nreferences - 1; i >= 0; i--) {
        size_t add = strlen(m->references[i]) + 2 + (len > 0);
        if (len + add > REFERENCES_KEEP)
            break;
        line = arena_printf(a, "<%s>%s%s", m->references[i], len > 0 ? " " : "", line);
        len += add;
    }
    return line;
}

static const char *
email_content(struct arena *a, const struct mg_inbound *m, const char *from)
{
    struct jsonw w;
    int cut = 0;
    const char *text = text_cut(a, m->text, EMAIL_TEXT_KEEP, &cut);

    jsonw_init(&w, a, MESSAGE_CONTENT_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "from", from);
    if (m->subject != NULL)
        jsonw_kstr(&w, "subject", text_cut(a, m->subject, 998, &cut));
    jsonw_kstr(&w, "body", text ? text : "");
    if (cut)
        jsonw_kbool(&w, "truncated", 1);
    if (m->message_id != NULL)
        jsonw_kstr(&w, "messageId", m->message_id);
    if (m->in_reply_to != NULL)
        jsonw_kstr(&w, "inReplyToId", m->in_reply_to);
    if (m->nreferences > 0 && references_line(a, m)[0] != '\0')
        jsonw_kstr(&w, "references", references_line(a, m));
    if (m->attachments > 0)
        jsonw_kint(&w, "attachments", m->attachments);
    jsonw_obj_end(&w);
    return jsonw_finish_or(&w, NULL);
}

/* Refusals that come before anything is stored: 415, 400, 401. 0 when m may be taken in. */
static int
email_refused(struct webhooks_config *c, struct http_request *req, struct http_response *resp,
              int64_t now, struct mg_inbound *m)
{
    struct http_form_field *fields;
    struct sp_error err = {0};
    const char *why = NULL;
    int n = 0, is_type = 0;

    if (http_request_form(req, &fields, &n, &is_type, &why) != 0) {
        http_error1(resp, req->arena, is_type ? 415 : 400, why);
        return 1;
    }
    if (mg_inbound_read(fields, n, req->arena, m, &err) != SP_OK) {
        http_error1(resp, req->arena, 400, err.msg);
        return 1;
    }
    if (!mg_signature_ok(c->email_signing_key, strlen(c->email_signing_key), m->timestamp, m->token,
                         m->signature)) {
        log_info("webhooks: inbound email with a wrong signature refused");
        http_error1(resp, req->arena, 401, "signature does not match");
        return 1;
    }
    if (!mg_timestamp_fresh(m->timestamp, now)) {
        log_info("webhooks: inbound email with a stale timestamp refused");
        http_error1(resp, req->arena, 401, "timestamp is more than 5 minutes from now");
        return 1;
    }
    return 0;
}

static void
email_prune_tokens(struct webhooks_config *c, const struct leads_deps *d, int64_t now)
{
    struct sp_error err = {0};

    if (atomic_fetch_add(&c->calls, 1) % PRUNE_EVERY != 0)
        return;
    if (leads_forget_receipts(d, "email-token", now - TOKEN_KEEP_MS, &err) != SP_OK)
        log_warn("webhooks: pruning used email tokens failed: %s", err.msg);
}

void
webhooks_http_email(struct webhooks_config *c, const struct leads_deps *d, struct http_request *req,
                    struct http_response *resp)
{
    static const char dup_body[] = "{\"status\":\"duplicate\"}";
    static const char stored_body[] = "{\"status\":\"stored\"}";
    int64_t now = sp_clock_now_ms(d->clock);
    const char *thread[MG_REFERENCES_MAX + 1];
    char token_lead[37];
    struct inbound_reply in;
    struct inbound_result out;
    struct sp_error err = {0};
    struct mg_inbound m;
    int rc;

    if (c->email_signing_key == NULL || c->email_signing_key[0] == '\0') {
        log_warn("webhooks: inbound email refused: EMAIL_WEBHOOK_SIGNING_KEY is not set");
        http_error1(resp, req->arena, 503, "email webhook is not configured");
        resp->retry_after = UNCONFIGURED_RETRY_S;
        return;
    }
    if (email_refused(c, req, resp, now, &m))
        return;
    memset(&in, 0, sizeof(in));
    in.source = REPLY_SOURCE_EMAIL;
    in.channel = CHANNEL_EMAIL;
    if (email_token_lead(c, m.recipient, token_lead))
        in.lead_id = token_lead;
    in.nthread_ids = email_thread_ids(req->arena, &m, thread, MG_REFERENCES_MAX + 1);
    in.thread_ids = thread;
    if (m.from_address != NULL && lead_email_valid(m.from_address, strlen(m.from_address)))
        in.from = m.from_address;
    in.from_name = m.from_name;
    in.create_lead = 1;
    in.content = email_content(req->arena, &m, in.from);
    in.answerable = 1;
    in.provider_id = m.message_id;
    in.once_token = m.token;
    if (in.content == NULL) {
        http_error1(resp, req->arena, 400, "the email is too large");
        return;
    }
    rc = leads_receive(d, &in, req->arena, &out, &err);
    if (rc == SP_ENOTFOUND) {
        http_error1(resp, req->arena, 400,
                    "the sender is not a valid address and the email names no lead");
        return;
    }
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    email_prune_tokens(c, d, now);
    if (out.token_replayed) {
        log_info("webhooks: inbound email with a used token refused");
        http_error1(resp, req->arena, 401, "token was used before");
        return;
    }
    if (out.duplicate)
        log_debug("webhooks: email %s already taken in", m.message_id);
    else
        log_info("webhooks: email from lead %s%s stored as %s (%d attachment(s) dropped)",
                 out.lead_id, out.lead_created ? " (new lead)" : "", out.message_id, m.attachments);
    if (out.duplicate)
        http_json(resp, 200, dup_body, sizeof(dup_body) - 1);
    else
        http_json(resp, 200, stored_body, sizeof(stored_body) - 1);
}
