/* openai_content.c: answers from an OpenAI-compatible chat-completions API (see
 * openai_content.h). */
#include "features/leads/infrastructure/openai_content.h"

#include "core/arena.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "features/leads/infrastructure/mock_content.h"
#include "infra/curl_client.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_MAX_MS 10000L
#define REPLY_MAX (1024 * 1024) /* a model's answer, with its envelope; /models lists are long */
#define PROVIDER_MSG_MAX 120    /* the part of the provider's error message kept */

struct openai_content {
    struct content_gen base; /* first */
    char *completions_url;   /* {base_url}/chat/completions */
    char *models_url;        /* {base_url}/models */
    char *auth;              /* "Authorization: Bearer <key>" */
    char *key;
    char *model;
    char *system_prompt;
    long timeout_ms;
    atomic_int key_logged; /* a refused key is logged once, not at every answer */
};

/* ---- the request ---------------------------------------------------------------------------- */

/* s cut to at most max bytes, never inside a UTF-8 sequence (arena, or s itself when short). */
static const char *
cut_utf8(struct arena *a, const char *s, size_t max)
{
    size_t n = strlen(s);
    char *out;

    if (n <= max)
        return s;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    out = arena_alloc(a, n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

/* The text of a channel message (an email's body, a WhatsApp text), arena; NULL if none. */
static const char *
message_text(struct arena *a, enum channel c, const char *channel_message)
{
    json_t *root = channel_message ? json_loads(channel_message, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(root, c == CHANNEL_EMAIL ? "body" : "text"));
    const char *out = t && t[0] ? arena_strdup(a, t) : NULL;

    json_decref(root);
    return out;
}

static void
add_turn(struct jsonw *w, struct arena *a, const char *role, const char *text)
{
    if (text == NULL)
        return;
    jsonw_obj_begin(w);
    jsonw_kstr(w, "role", role);
    jsonw_kstr(w, "content", cut_utf8(a, text, OPENAI_TURN_MAX));
    jsonw_obj_end(w);
}

int
openai_request_build(const char *model, const char *system_prompt, const struct lead *l,
                     enum channel c, const char *inbound, const struct conversation *conv,
                     struct arena *a, const char **out, size_t *len, struct sp_error *err)
{
    struct jsonw w;

    jsonw_init(&w, a, OPENAI_REQUEST_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "model", model);
    jsonw_key(&w, "messages");
    jsonw_arr_begin(&w);
    add_turn(&w, a, "system",
             arena_printf(a, "%s\n\nThe lead's name is %s. This conversation is on %s.",
                          system_prompt, l->name, c == CHANNEL_EMAIL ? "email" : "WhatsApp"));
    if (conv == NULL || conv->n == 0) {
        add_turn(&w, a, "user", message_text(a, c, inbound));
    } else {
        for (int i = 0; i < conv->n; i++) {
            const struct message *m = &conv->messages[i];
            add_turn(&w, a, m->direction == MESSAGE_INBOUND ? "user" : "assistant",
                     message_text(a, c, m->channel_message));
        }
    }
    jsonw_arr_end(&w);
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, out, len) != SP_OK)
        return sp_error_set(err, SP_EINVAL, "messages", "ai: the request passes %d bytes",
                            OPENAI_REQUEST_MAX);
    return SP_OK;
}

/* ---- the answer ----------------------------------------------------------------------------- */

const char *
openai_answer_text(const char *body, size_t body_len, struct arena *a)
{
    json_t *root = body ? json_loadb(body, body_len, 0, NULL) : NULL;
    json_t *msg = json_object_get(json_array_get(json_object_get(root, "choices"), 0), "message");
    const char *t = json_string_value(json_object_get(msg, "content"));
    const char *out = NULL;

    if (t != NULL) {
        size_t b = 0, e = strlen(t);
        while (b < e && (t[b] == ' ' || t[b] == '\n' || t[b] == '\r' || t[b] == '\t'))
            b++;
        while (e > b &&
               (t[e - 1] == ' ' || t[e - 1] == '\n' || t[e - 1] == '\r' || t[e - 1] == '\t'))
            e--;
        if (e > b) {
            char *s = arena_alloc(a, e - b + 1);
            memcpy(s, t + b, e - b);
            s[e - b] = '\0';
            out = cut_utf8(a, s, OPENAI_ANSWER_MAX);
        }
    }
    json_decref(root);
    return out;
}

/* The provider's error.message (or a top-level "message"), controls replaced, capped. */
static void
provider_message(const char *body, size_t body_len, char *out, size_t cap)
{
    json_t *root = body ? json_loadb(body, body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    size_t n = 0;

    if (m == NULL)
        m = json_string_value(e); /* some servers answer {"error":"text"} */
    if (m == NULL)
        m = json_string_value(json_object_get(root, "message"));
    for (const char *p = m ? m : ""; *p && n + 1 < cap && n < PROVIDER_MSG_MAX; p++)
        out[n++] = (unsigned char)*p < ' ' || *p == 0x7f ? ' ' : *p;
    out[n] = '\0';
    json_decref(root);
}

int
openai_error_classify(long status, const char *body, size_t body_len, long retry_after_s,
                      struct sp_error *err)
{
    char msg[PROVIDER_MSG_MAX + 1];
    int rc;

    provider_message(body, body_len, msg, sizeof(msg));
    if (status == 429 || status == 408 || status == 409 || status >= 500)
        rc = SP_EPROVIDER; /* throttled, overloaded, or down for a moment */
    else if (status >= 400)
        rc = SP_EPERMANENT; /* bad request, refused key, unknown model: the same fails again */
    else
        rc = SP_EPROVIDER; /* a status we do not expect (a redirect): the provider misbehaved */
    sp_error_set(err, rc, "provider", "ai: HTTP %ld%s%s", status, msg[0] ? " " : "", msg);
    if (rc == SP_EPROVIDER && err && retry_after_s > 0)
        err->retry_after_ms = (long long)retry_after_s * 1000;
    return rc;
}

/* ---- the generator -------------------------------------------------------------------------- */

/* Strips any number of leading "RE:" prefixes so a thread keeps one. */
static const char *
strip_re(const char *s)
{
    while (s && strncasecmp(s, "re:", 3) == 0) {
        s += 3;
        while (*s == ' ')
            s++;
    }
    return s;
}

/* The answer as a channel message to `to`. */
static int
answer_message(struct arena *a, const struct lead *l, enum channel c, const char *inbound,
               const char *to, const char *text, struct generated *out, struct sp_error *err)
{
    struct jsonw w;
    const char *s;

    jsonw_init(&w, a, MESSAGE_CONTENT_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "to", to);
    if (c == CHANNEL_EMAIL) {
        json_t *in = inbound ? json_loads(inbound, 0, NULL) : NULL;
        const char *subject = json_string_value(json_object_get(in, "subject"));
        const char *thread = subject && strip_re(subject)[0]
                                 ? strip_re(subject)
                                 : arena_printf(a, "Welcome, %s!", l->name);
        /* a header: nothing from the prospect's text breaks the line */
        jsonw_kstr(&w, "subject", lead_text_one_line(a, arena_printf(a, "RE: %s", thread)));
        json_decref(in);
        jsonw_kstr(&w, "body", text);
    } else {
        jsonw_kstr(&w, "text", text);
    }
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, &s, NULL) != SP_OK)
        return sp_error_set(err, SP_EPERMANENT, "messageContent", "ai: the answer is too large");
    out->to = to;
    out->channel_message = s;
    return SP_OK;
}

/* Calls the provider: SP_OK with *reply filled for any HTTP answer; never the key in err. */
static int
call(struct openai_content *g, int is_get, const char *body, size_t len, struct arena *a,
     struct curl_reply *reply, struct sp_error *err)
{
    const char *headers[] = {g->auth, "Accept: application/json", NULL};
    struct curl_http_request hr;
    struct sp_error terr = {0};
    int rc;

    memset(&hr, 0, sizeof(hr));
    hr.url = is_get ? g->models_url : g->completions_url;
    hr.headers = headers;
    hr.content_type = is_get ? NULL : "application/json";
    hr.body = body;
    hr.body_len = len;
    hr.timeout_ms = g->timeout_ms;
    hr.connect_timeout_ms =
        g->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? g->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
    hr.max_body = REPLY_MAX;
    rc = is_get ? curl_client_http_get(&hr, a, reply, &terr)
                : curl_client_http_post(&hr, a, reply, &terr);
    if (rc != SP_OK)
        return sp_error_set(err, rc == SP_ETOOLARGE ? SP_EPROVIDER : rc, "provider", "ai: %s",
                            terr.msg);
    return SP_OK;
}

/* The error of a non-2xx answer, with the key withheld and a refused key logged once. */
static int
http_error(struct openai_content *g, const struct curl_reply *reply, struct sp_error *err)
{
    int rc =
        openai_error_classify(reply->code, reply->body, reply->body_len, reply->retry_after_s, err);

    if (err && strstr(err->msg, g->key) != NULL) /* never, unless the provider echoes it */
        snprintf(err->msg, sizeof(err->msg), "ai: HTTP %ld (error text withheld)", reply->code);
    if ((reply->code == 401 || reply->code == 403) && atomic_exchange(&g->key_logged, 1) == 0)
        log_error("config: AI_API_KEY: the AI provider refused the key (HTTP %ld); answers fall "
                  "back until it is replaced",
                  reply->code);
    return rc;
}

static int
oa_welcome(struct content_gen *base, const struct lead *l, enum channel c, struct arena *a,
           struct generated *out, struct sp_error *err)
{
    (void)base;
    return content_gen_welcome(mock_content_gen(), l, c, a, out, err);
}

static int
oa_answer(struct content_gen *base, const struct lead *l, enum channel c, const char *inbound,
          const struct conversation *conv, struct arena *a, struct generated *out,
          struct sp_error *err)
{
    struct openai_content *g = (struct openai_content *)base;
    const char *to = lead_address_for(l, c);
    struct curl_reply reply;
    const char *body = NULL, *text;
    size_t len = 0;
    int rc;

    if (to == NULL)
        return sp_error_set(err, SP_EINVAL, "messageContent", "lead has no %s address",
                            channel_name(c));
    rc = openai_request_build(g->model, g->system_prompt, l, c, inbound, conv, a, &body, &len, err);
    if (rc == SP_OK)
        rc = call(g, 0, body, len, a, &reply, err);
    if (rc != SP_OK)
        return rc;
    if (reply.code < 200 || reply.code > 299)
        return http_error(g, &reply, err);
    text = openai_answer_text(reply.body, reply.body_len, a);
    if (text == NULL)
        return sp_error_set(err, SP_EPROVIDER, "provider",
                            "ai: HTTP %ld without choices[0].message.content", reply.code);
    return answer_message(a, l, c, inbound, to, text, out, err);
}

static const struct content_gen_ops oa_ops = {"openai", oa_welcome, oa_answer};

int
openai_content_check(struct openai_content *g, struct arena *a, const char **detail,
                     struct sp_error *err)
{
    struct curl_reply reply;
    json_t *root, *data;
    int listed = 0, rc;

    *detail = "";
    rc = call(g, 1, NULL, 0, a, &reply, err);
    if (rc != SP_OK)
        return rc;
    if (reply.code < 200 || reply.code > 299)
        return http_error(g, &reply, err);
    root = json_loadb(reply.body, reply.body_len, 0, NULL);
    data = json_object_get(root, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(data, i), "id"));
        if (id && strcmp(id, g->model) == 0)
            listed = 1;
    }
    json_decref(root);
    *detail = arena_printf(a, "key accepted, model %s %s", g->model,
                           listed ? "listed" : "not in the list (it may still answer)");
    return SP_OK;
}

/* ---- set-up --------------------------------------------------------------------------------- */

static int
printable(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return 0;
    return 1;
}

static char *
joined(const char *base, size_t base_len, const char *tail)
{
    size_t n = base_len + strlen(tail) + 1;
    char *s = xmalloc(n);

    snprintf(s, n, "%.*s%s", (int)base_len, base, tail);
    return s;
}

int
openai_content_new(const struct openai_content_config *cfg, struct openai_content **out,
                   struct sp_error *err)
{
    struct openai_content *g;
    const char *base = cfg->base_url;
    size_t base_len;

    if (base == NULL || !curl_client_url_ok(base))
        return sp_error_set(err, SP_EINVAL, "AI_BASE_URL",
                            "config: AI_BASE_URL: must be https://... (http:// only to "
                            "127.0.0.1, localhost or [::1])");
    if (!printable(cfg->api_key, 1024))
        return sp_error_set(err, SP_EINVAL, "AI_API_KEY",
                            "config: AI_API_KEY: needed with AI_PROVIDER=openai, without spaces "
                            "or control characters");
    if (!printable(cfg->model, 200))
        return sp_error_set(err, SP_EINVAL, "AI_MODEL",
                            "config: AI_MODEL: needed with AI_PROVIDER=openai (a model name)");
    if (cfg->system_prompt == NULL || cfg->system_prompt[0] == '\0' ||
        strlen(cfg->system_prompt) > 16 * 1024)
        return sp_error_set(err, SP_EINVAL, "AI_SYSTEM_PROMPT",
                            "config: AI_SYSTEM_PROMPT: must be a text of 1 to 16384 bytes");
    base_len = strlen(base);
    while (base_len > 0 && base[base_len - 1] == '/')
        base_len--;
    g = xcalloc(1, sizeof(*g));
    g->base.ops = &oa_ops;
    g->completions_url = joined(base, base_len, "/chat/completions");
    g->models_url = joined(base, base_len, "/models");
    g->key = xstrdup(cfg->api_key);
    g->auth = curl_client_bearer(cfg->api_key);
    g->model = xstrdup(cfg->model);
    g->system_prompt = xstrdup(cfg->system_prompt);
    g->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    atomic_init(&g->key_logged, 0);
    *out = g;
    return SP_OK;
}

struct content_gen *
openai_content_base(struct openai_content *g)
{
    return &g->base;
}

void
openai_content_free(struct openai_content *g)
{
    if (g == NULL)
        return;
    free(g->completions_url);
    free(g->models_url);
    xfree_secret(g->auth);
    xfree_secret(g->key);
    free(g->model);
    free(g->system_prompt);
    free(g);
}
