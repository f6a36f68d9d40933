/* whatsapp_sender.c: the WhatsApp channel over the Cloud API (see whatsapp_sender.h). */
#include "features/messaging/infrastructure/whatsapp_sender.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "features/messaging/domain/sender.h"
#include "infra/curl_client.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_MAX_MS 10000L
#define REPLY_MAX (64 * 1024) /* Meta's answers are a few hundred bytes */
#define BODY_MAX (8 * 1024)   /* our request: a text is at most 4096 characters */
#define PHONE_DIGITS_MAX 15   /* E.164 */
#define META_MSG_MAX 120      /* the part of Meta's error message kept in lastError */
#define WAMID_MAX 256

struct whatsapp_sender {
    struct sender base; /* first */
    char *url;          /* {api_url}/{phone_number_id}/messages */
    char *auth;         /* "Authorization: Bearer <token>" */
    char *token;
    char *welcome_template, *template_lang;
    long timeout_ms;
    atomic_int token_logged; /* a refused token is logged once, not at every send */
};

/* ---- the request ---------------------------------------------------------------------------- */

/* A template parameter as Meta takes it: no run of spaces (it refuses more than four in a row;
 * names never hold tabs or line breaks, lead_text_check), no space at either end. */
static const char *
param_text(struct arena *a, const char *s)
{
    char *out = arena_alloc(a, strlen(s) + 1);
    size_t n = 0;

    for (; *s; s++) {
        if (*s == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = *s;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

int
whatsapp_request_build(const struct whatsapp_message *m, struct arena *a, const char **out,
                       size_t *len, struct sp_error *err)
{
    char digits[PHONE_DIGITS_MAX + 1];
    size_t n = 0;
    struct jsonw w;

    for (const char *p = m->to ? m->to : ""; *p; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (n == PHONE_DIGITS_MAX)
            return sp_error_set(err, SP_EPERMANENT, "to",
                                "whatsapp: the lead's phone has more than 15 digits");
        digits[n++] = *p;
    }
    digits[n] = '\0';
    if (n < 3)
        return sp_error_set(err, SP_EPERMANENT, "to", "whatsapp: the lead's phone is not a number");
    if (m->template_name == NULL && m->text == NULL)
        return sp_error_set(err, SP_EPERMANENT, "channelMessage",
                            "whatsapp: the message has neither a template nor a text");

    jsonw_init(&w, a, BODY_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "messaging_product", "whatsapp");
    jsonw_kstr(&w, "recipient_type", "individual");
    jsonw_kstr(&w, "to", digits);
    if (m->template_name) {
        jsonw_kstr(&w, "type", "template");
        jsonw_key(&w, "template");
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "name", m->template_name);
        jsonw_key(&w, "language");
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "code", m->template_lang);
        jsonw_obj_end(&w);
        jsonw_key(&w, "components");
        jsonw_arr_begin(&w);
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "type", "body");
        jsonw_key(&w, "parameters");
        jsonw_arr_begin(&w);
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "type", "text");
        jsonw_kstr(&w, "text", param_text(a, m->template_param ? m->template_param : ""));
        jsonw_obj_end(&w);
        jsonw_arr_end(&w);
        jsonw_obj_end(&w);
        jsonw_arr_end(&w);
        jsonw_obj_end(&w);
    } else {
        jsonw_kstr(&w, "type", "text");
        jsonw_key(&w, "text");
        jsonw_obj_begin(&w);
        jsonw_kstr(&w, "body", m->text);
        jsonw_kbool(&w, "preview_url", 0);
        jsonw_obj_end(&w);
    }
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, out, len) != SP_OK)
        return sp_error_set(err, SP_EPERMANENT, "channelMessage",
                            "whatsapp: the message is larger than %d bytes", BODY_MAX);
    return SP_OK;
}

int
whatsapp_window_open(int64_t last_inbound_ms, int64_t now_ms)
{
    return last_inbound_ms > 0 && now_ms - last_inbound_ms < WHATSAPP_WINDOW_MS;
}

/* ---- the answer ----------------------------------------------------------------------------- */

const char *
whatsapp_reply_id(const char *body, size_t body_len, struct arena *a)
{
    json_t *root = body ? json_loadb(body, body_len, 0, NULL) : NULL;
    json_t *first = json_array_get(json_object_get(root, "messages"), 0);
    const char *id = json_string_value(json_object_get(first, "id"));
    const char *out = NULL;

    if (id && id[0] && strlen(id) <= WAMID_MAX)
        out = arena_strdup(a, id);
    json_decref(root);
    return out;
}

/* Meta's codes that mean "slow down" (rate limits, pair rate limit, spam rate limit). */
static int
is_throttling(long code)
{
    return code == 4 || code == 80007 || code == 130429 || code == 131056;
}

/* Meta's codes for a passing failure on its side (service unavailable, "something went wrong",
 * server temporarily unavailable): worth another try. */
static int
is_transient(long code)
{
    return code == 2 || code == 131000 || code == 133004;
}

/* Meta's message made fit for one lastError line: controls become spaces, capped. */
static void
clean_message(const char *s, char *out, size_t cap)
{
    size_t n = 0;

    for (; s && *s && n + 1 < cap; s++)
        out[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
    out[n] = '\0';
}

int
whatsapp_error_classify(long status, const char *body, size_t body_len, long retry_after_s,
                        int *token_refused, struct sp_error *err)
{
    json_t *root = body && body_len ? json_loadb(body, body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    json_t *jcode = json_object_get(e, "code");
    long code = json_is_integer(jcode) ? (long)json_integer_value(jcode) : 0;
    char msg[META_MSG_MAX + 1];
    int rc;

    clean_message(json_string_value(json_object_get(e, "message")), msg, sizeof(msg));
    json_decref(root);
    *token_refused = code == 190 || status == 401;
    if (status == 429 || is_throttling(code))
        rc = SP_EPROVIDER;
    else if (*token_refused || code == 131047 || code == 131026)
        rc = SP_EPERMANENT;
    else if (status >= 500 || is_transient(code))
        rc = SP_EPROVIDER;
    else if (status >= 400)
        rc = SP_EPERMANENT; /* bad parameter, unknown template...: the same again fails again */
    else
        rc = SP_EPROVIDER; /* no status we know (a redirect): the provider misbehaved */
    if (code != 0)
        sp_error_set(err, rc, "provider", "whatsapp: %ld %s (HTTP %ld)", code, msg, status);
    else
        sp_error_set(err, rc, "provider", "whatsapp: HTTP %ld without a Cloud API error", status);
    if (rc == SP_EPROVIDER && err && retry_after_s > 0)
        err->retry_after_ms = (long long)retry_after_s * 1000;
    return rc;
}

/* ---- the sender ----------------------------------------------------------------------------- */

/* The text of an answer or a manual message, from a whatsapp channel message ({"to","text"}). */
static const char *
read_text(const char *json, struct arena *a)
{
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(root, "text"));
    const char *out = t && t[0] ? arena_strdup(a, t) : NULL;

    json_decref(root);
    return out;
}

static int
wa_send(struct sender *base, const struct send_request *req, struct arena *a,
        const char **provider_id, struct sp_error *err)
{
    struct whatsapp_sender *s = (struct whatsapp_sender *)base;
    struct whatsapp_message m;
    struct curl_http_request hr;
    struct curl_reply reply;
    struct sp_error terr = {0};
    const char *headers[] = {s->auth, "Accept: application/json", NULL};
    const char *body = NULL, *id;
    size_t len = 0;
    int rc, token_refused = 0;

    if (req->channel != CHANNEL_WHATSAPP)
        return sp_error_set(err, SP_EPERMANENT, "channel", "whatsapp: sends whatsapp only");
    memset(&m, 0, sizeof(m));
    m.to = req->to;
    if (req->kind == MESSAGE_KIND_WELCOME) {
        /* A welcome opens the conversation: outside any window, so the template. */
        m.template_name = s->welcome_template;
        m.template_lang = s->template_lang;
        m.template_param = req->to_name;
    } else if (whatsapp_window_open(req->last_inbound_at, sp_clock_now_ms(&sp_clock_real))) {
        /* An AI answer or an operator's manual message: free text, allowed only inside the
         * window the lead's last message opened; past it Meta wants an approved template,
         * which only the welcome has. */
        m.text = read_text(req->channel_message, a);
        if (m.text == NULL)
            return sp_error_set(err, SP_EPERMANENT, "channelMessage",
                                "whatsapp: the message has no text");
    } else {
        return sp_error_set(err, SP_EPERMANENT, "channel",
                            "whatsapp: outside the 24-hour window: a template is required");
    }
    rc = whatsapp_request_build(&m, a, &body, &len, err);
    if (rc != SP_OK)
        return rc;

    memset(&hr, 0, sizeof(hr));
    hr.url = s->url;
    hr.headers = headers;
    hr.content_type = "application/json";
    hr.body = body;
    hr.body_len = len;
    hr.timeout_ms = s->timeout_ms;
    hr.connect_timeout_ms =
        s->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? s->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
    hr.max_body = REPLY_MAX;
    rc = curl_client_http_post(&hr, a, &reply, &terr);
    if (rc != SP_OK) {
        /* No answer (connection, TLS, timeout) or an oversized one: curl's words, no header. */
        return sp_error_set(err, rc == SP_ETOOLARGE ? SP_EPROVIDER : rc, "provider", "whatsapp: %s",
                            terr.msg);
    }
    if (reply.code >= 200 && reply.code <= 299) {
        id = whatsapp_reply_id(reply.body, reply.body_len, a);
        if (id == NULL)
            /* Meta may have taken the message; without its id we cannot tell. Retried, so the
             * lead may get it twice (at-least-once, docs/guarantees.md). */
            return sp_error_set(err, SP_EPROVIDER, "provider",
                                "whatsapp: HTTP %ld without messages[0].id", reply.code);
        *provider_id = id;
        return SP_OK;
    }
    rc = whatsapp_error_classify(reply.code, reply.body, reply.body_len, reply.retry_after_s,
                                 &token_refused, err);
    if (err && strstr(err->msg, s->token) != NULL) /* never, unless Meta echoes it */
        snprintf(err->msg, sizeof(err->msg), "whatsapp: HTTP %ld (error text withheld)",
                 reply.code);
    if (token_refused && atomic_exchange(&s->token_logged, 1) == 0)
        log_error("config: WHATSAPP_TOKEN: the Cloud API refused the token (HTTP %ld); every "
                  "WhatsApp send fails until it is replaced",
                  reply.code);
    return rc;
}

static const struct sender_ops wa_ops = {"whatsapp-cloud", wa_send};

int
whatsapp_sender_check(struct whatsapp_sender *s, struct arena *a, const char **detail,
                      struct sp_error *err)
{
    const char *headers[] = {s->auth, "Accept: application/json", NULL};
    size_t n = strlen(s->url) - strlen("/messages");
    struct curl_http_request hr;
    struct curl_reply reply;
    struct sp_error terr = {0};
    json_t *root;
    const char *num;
    int rc, token_refused = 0;

    memset(&hr, 0, sizeof(hr));
    hr.url = arena_printf(a, "%.*s", (int)n, s->url); /* {api_url}/{phone_number_id} */
    hr.headers = headers;
    hr.timeout_ms = s->timeout_ms;
    hr.connect_timeout_ms =
        s->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? s->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
    hr.max_body = REPLY_MAX;
    rc = curl_client_http_get(&hr, a, &reply, &terr);
    if (rc != SP_OK)
        return sp_error_set(err, rc == SP_ETOOLARGE ? SP_EPROVIDER : rc, "provider", "whatsapp: %s",
                            terr.msg);
    if (reply.code < 200 || reply.code > 299) {
        rc = whatsapp_error_classify(reply.code, reply.body, reply.body_len, reply.retry_after_s,
                                     &token_refused, err);
        if (err && strstr(err->msg, s->token) != NULL)
            snprintf(err->msg, sizeof(err->msg), "whatsapp: HTTP %ld (error text withheld)",
                     reply.code);
        return rc;
    }
    root = json_loadb(reply.body, reply.body_len, 0, NULL);
    num = json_string_value(json_object_get(root, "display_phone_number"));
    *detail = num ? arena_printf(a, "token accepted, phone number id found (%.40s)", num)
                  : "token accepted, phone number id found";
    json_decref(root);
    return SP_OK;
}

static int
all_of(const char *s, const char *set, size_t max)
{
    size_t n = strlen(s);

    return n > 0 && n <= max && strspn(s, set) == n;
}

int
whatsapp_sender_new(const struct whatsapp_sender_config *cfg, struct whatsapp_sender **out,
                    struct sp_error *err)
{
    static const char lower[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
    static const char lang[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";
    struct whatsapp_sender *s;
    const char *api = cfg->api_url;
    size_t api_len, n;

    if (api == NULL || !curl_client_url_ok(api))
        return sp_error_set(err, SP_EINVAL, "WHATSAPP_API_URL",
                            "config: WHATSAPP_API_URL: must be https://... (http:// only to "
                            "127.0.0.1, localhost or [::1])");
    if (cfg->phone_number_id == NULL || !all_of(cfg->phone_number_id, "0123456789", 32))
        return sp_error_set(err, SP_EINVAL, "WHATSAPP_PHONE_NUMBER_ID",
                            "config: WHATSAPP_PHONE_NUMBER_ID: must be the number's id (digits)");
    if (cfg->token == NULL || cfg->token[0] == '\0' || strlen(cfg->token) > 1024)
        return sp_error_set(err, SP_EINVAL, "WHATSAPP_TOKEN",
                            "config: WHATSAPP_TOKEN: needed with WHATSAPP_PROVIDER=cloud");
    for (const char *p = cfg->token; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return sp_error_set(err, SP_EINVAL, "WHATSAPP_TOKEN",
                                "config: WHATSAPP_TOKEN: holds a space or control character");
    if (cfg->welcome_template == NULL || !all_of(cfg->welcome_template, lower, 512))
        return sp_error_set(err, SP_EINVAL, "WHATSAPP_WELCOME_TEMPLATE",
                            "config: WHATSAPP_WELCOME_TEMPLATE: must be a template name "
                            "(lowercase letters, digits, _)");
    if (cfg->template_lang == NULL || !all_of(cfg->template_lang, lang, 15))
        return sp_error_set(err, SP_EINVAL, "WHATSAPP_TEMPLATE_LANG",
                            "config: WHATSAPP_TEMPLATE_LANG: must be a language code (en_US)");
    api_len = strlen(api);
    while (api_len > 0 && api[api_len - 1] == '/')
        api_len--;
    s = xcalloc(1, sizeof(*s));
    s->base.ops = &wa_ops;
    n = api_len + strlen(cfg->phone_number_id) + sizeof("//messages");
    s->url = xmalloc(n);
    snprintf(s->url, n, "%.*s/%s/messages", (int)api_len, api, cfg->phone_number_id);
    s->token = xstrdup(cfg->token);
    s->auth = curl_client_bearer(cfg->token);
    s->welcome_template = xstrdup(cfg->welcome_template);
    s->template_lang = xstrdup(cfg->template_lang);
    s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    atomic_init(&s->token_logged, 0);
    *out = s;
    return SP_OK;
}

struct sender *
whatsapp_sender_base(struct whatsapp_sender *s)
{
    return &s->base;
}

void
whatsapp_sender_free(struct whatsapp_sender *s)
{
    if (s == NULL)
        return;
    free(s->url);
    xfree_secret(s->auth);
    xfree_secret(s->token);
    free(s->welcome_template);
    free(s->template_lang);
    free(s);
}
