/* smtp_sender.c: the email channel over SMTP (see smtp_sender.h). */
#include "features/messaging/infrastructure/smtp_sender.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/xmalloc.h"
#include "features/messaging/domain/sender.h"
#include "features/messaging/infrastructure/email_mime.h"
#include "infra/curl_client.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_MAX_MS 10000L
#define QUEUE_ID_MAX 64

struct smtp_sender {
    struct sender base; /* first */
    char *url, *username, *password, *ca_file;
    char *from_name, *from_addr, *domain;
    char *reply_domain, *reply_secret;
    char *public_url, *unsubscribe_secret; /* both or neither: List-Unsubscribe */
    long timeout_ms;
};

static char *
dup_or_null(const char *s)
{
    return s && s[0] ? xstrdup(s) : NULL;
}

/* The relay's id for the message, from a reply like "250 2.0.0 Ok: queued as 4Xyz12", or NULL. */
static const char *
queue_id(struct arena *a, const char *line)
{
    static const char marker[] = "queued as ";
    size_t n = 0;

    for (const char *p = line; *p; p++) {
        if (strncasecmp(p, marker, sizeof(marker) - 1) != 0)
            continue;
        p += sizeof(marker) - 1;
        while (p[n] && n < QUEUE_ID_MAX && (isalnum((unsigned char)p[n]) || strchr(".-_@", p[n])))
            n++;
        return n > 0 ? arena_strndup(a, p, n) : NULL;
    }
    return NULL;
}

/* Subject and body of an email channel message ({"to","subject","body",...}). */
static int
read_content(const char *json, struct arena *a, const char **subject, const char **body,
             struct sp_error *err)
{
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(root, "subject"));
    const char *b = json_string_value(json_object_get(root, "body"));
    int rc = SP_OK;

    if (b == NULL)
        rc = sp_error_set(err, SP_EPERMANENT, "channelMessage",
                          "smtp: the email message has no body");
    else {
        *subject = arena_strdup(a, s ? s : "");
        *body = arena_strdup(a, b);
    }
    json_decref(root);
    return rc;
}

static const char *
reply_to(const struct smtp_sender *s, const struct send_request *req, struct arena *a)
{
    char token[EMAIL_REPLY_TOKEN_LEN + 1];

    if (s->reply_domain == NULL || req->lead_id == NULL ||
        email_reply_token(s->reply_secret, strlen(s->reply_secret), req->lead_id, token) != SP_OK)
        return NULL;
    return arena_printf(a, "reply+%s@%s", token, s->reply_domain);
}

/* {PUBLIC_URL}/unsubscribe/{token}, or NULL without PUBLIC_URL. */
static const char *
list_unsubscribe(const struct smtp_sender *s, const struct send_request *req, struct arena *a)
{
    char token[EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1];

    if (s->public_url == NULL || req->lead_id == NULL ||
        email_unsubscribe_token(s->unsubscribe_secret, strlen(s->unsubscribe_secret), req->lead_id,
                                token) != SP_OK)
        return NULL;
    return arena_printf(a, "%s/unsubscribe/%s", s->public_url, token);
}

/* Maps a failed exchange to our error: the reply code decides when there is one. */
static int
classify(const struct curl_reply *r, int rc, const struct sp_error *transport, struct sp_error *err)
{
    const char *line = r->line[0] ? r->line : NULL;

    if (r->code >= 500 && r->code <= 599)
        return sp_error_set(err, SP_EPERMANENT, "provider", "smtp: %s",
                            line ? line : transport->msg);
    if (r->code >= 400 && r->code <= 499)
        return sp_error_set(err, SP_EPROVIDER, "provider", "smtp: %s",
                            line ? line : transport->msg);
    /* no error reply: a connection, TLS or timeout failure; curl's own words */
    return sp_error_set(err, rc, "provider", "%s", transport->msg);
}

static int
smtp_send(struct sender *base, const struct send_request *req, struct arena *a,
          const char **provider_id, struct sp_error *err)
{
    struct smtp_sender *s = (struct smtp_sender *)base;
    struct email_message m;
    struct curl_smtp_request cr;
    struct curl_reply reply;
    struct sp_error terr = {0};
    const char *data = NULL, *id;
    size_t len = 0;
    int rc;

    if (req->channel != CHANNEL_EMAIL)
        return sp_error_set(err, SP_EPERMANENT, "channel", "smtp: sends email only");
    memset(&m, 0, sizeof(m));
    rc = read_content(req->channel_message, a, &m.subject, &m.body, err);
    if (rc != SP_OK)
        return rc;
    m.from.name = s->from_name;
    m.from.addr = s->from_addr;
    m.to.name = req->to_name;
    m.to.addr = req->to;
    m.reply_to = reply_to(s, req, a);
    m.list_unsubscribe = list_unsubscribe(s, req, a);
    m.message_id = arena_printf(a, "%s@%s", req->message_id, s->domain);
    m.in_reply_to = req->in_reply_to;
    m.references = req->references;
    m.date_ms = sp_clock_now_ms(&sp_clock_real);
    rc = email_mime_build(&m, a, &data, &len, err);
    if (rc != SP_OK)
        return rc;

    memset(&cr, 0, sizeof(cr));
    cr.url = s->url;
    cr.username = s->username;
    cr.password = s->password;
    cr.ca_file = s->ca_file;
    cr.require_tls = s->username != NULL;
    cr.mail_from = s->from_addr;
    cr.rcpt_to = req->to;
    cr.data = data;
    cr.data_len = len;
    cr.timeout_ms = s->timeout_ms;
    cr.connect_timeout_ms =
        s->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? s->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
    rc = curl_client_smtp_send(&cr, a, &reply, &terr);
    if (rc != SP_OK)
        return classify(&reply, rc, &terr, err);
    id = queue_id(a, reply.line);
    *provider_id = id ? id : arena_printf(a, "<%s>", m.message_id);
    return SP_OK;
}

/* A domain for reply addresses: letters, digits, '-' and '.', not starting with '.'. */
static int
domain_ok(const char *d)
{
    if (d[0] == '.' || d[0] == '-' || strlen(d) > 200)
        return 0;
    for (const char *p = d; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
    return 1;
}

static const struct sender_ops smtp_ops = {"smtp", smtp_send};

int
smtp_sender_check(struct smtp_sender *s, struct arena *a, const char **detail, struct sp_error *err)
{
    struct curl_smtp_request cr;
    struct curl_reply reply;
    struct sp_error terr = {0};
    int rc;

    memset(&cr, 0, sizeof(cr));
    cr.url = s->url;
    cr.username = s->username;
    cr.password = s->password;
    cr.ca_file = s->ca_file;
    cr.require_tls = s->username != NULL;
    cr.timeout_ms = s->timeout_ms;
    cr.connect_timeout_ms =
        s->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? s->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
    rc = curl_client_smtp_check(&cr, a, &reply, &terr);
    if (rc != SP_OK)
        return sp_error_set(err, rc, "provider", "%s%s%s", terr.msg, reply.line[0] ? ": " : "",
                            reply.line);
    *detail = s->username ? "connected, EHLO, TLS, AUTH accepted, NOOP answered"
                          : "connected, EHLO, NOOP answered (no AUTH configured)";
    return SP_OK;
}

int
smtp_sender_new(const struct smtp_sender_config *cfg, struct smtp_sender **out,
                struct sp_error *err)
{
    struct smtp_sender *s;
    struct arena *a;
    struct email_addr from;
    struct sp_error perr = {0};

    if (cfg->url == NULL ||
        (strncmp(cfg->url, "smtp://", 7) != 0 && strncmp(cfg->url, "smtps://", 8) != 0))
        return sp_error_set(err, SP_EINVAL, "SMTP_URL",
                            "config: SMTP_URL: must be smtp://host:port or smtps://host:port");
    if (cfg->reply_domain && cfg->reply_domain[0] &&
        (cfg->reply_secret == NULL || strlen(cfg->reply_secret) < 16))
        return sp_error_set(err, SP_EINVAL, "EMAIL_REPLY_SECRET",
                            "config: EMAIL_REPLY_SECRET: at least 16 characters are needed "
                            "with EMAIL_REPLY_DOMAIN");
    if (cfg->reply_domain && cfg->reply_domain[0] && !domain_ok(cfg->reply_domain))
        return sp_error_set(err, SP_EINVAL, "EMAIL_REPLY_DOMAIN",
                            "config: EMAIL_REPLY_DOMAIN: must be a plain ASCII domain");
    if (cfg->public_url && cfg->public_url[0] &&
        (cfg->unsubscribe_secret == NULL || strlen(cfg->unsubscribe_secret) < 16))
        return sp_error_set(err, SP_EINVAL, "UNSUBSCRIBE_SECRET",
                            "config: UNSUBSCRIBE_SECRET: at least 16 characters are needed "
                            "with PUBLIC_URL");
    a = arena_new();
    if (email_addr_parse(a, cfg->from, &from, &perr) != SP_OK) {
        arena_free(a);
        return sp_error_set(err, SP_EINVAL, "EMAIL_FROM", "config: EMAIL_FROM: %s", perr.msg);
    }
    s = xcalloc(1, sizeof(*s));
    s->base.ops = &smtp_ops;
    s->url = xstrdup(cfg->url);
    s->username = dup_or_null(cfg->username);
    s->password = dup_or_null(cfg->password);
    s->ca_file = dup_or_null(cfg->ca_file);
    s->from_name = dup_or_null(from.name);
    s->from_addr = xstrdup(from.addr);
    s->domain = xstrdup(strchr(from.addr, '@') + 1);
    s->reply_domain = dup_or_null(cfg->reply_domain);
    s->reply_secret = s->reply_domain ? xstrdup(cfg->reply_secret) : NULL;
    s->public_url = dup_or_null(cfg->public_url);
    if (s->public_url) {
        size_t n = strlen(s->public_url);
        while (n > 0 && s->public_url[n - 1] == '/')
            s->public_url[--n] = '\0'; /* "https://x/" and "https://x" make the same links */
        s->unsubscribe_secret = xstrdup(cfg->unsubscribe_secret);
    }
    s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    arena_free(a);
    *out = s;
    return SP_OK;
}

struct sender *
smtp_sender_base(struct smtp_sender *s)
{
    return &s->base;
}

void
smtp_sender_free(struct smtp_sender *s)
{
    if (s == NULL)
        return;
    free(s->url);
    free(s->username);
    if (s->password)
        memset(s->password, 0, strlen(s->password));
    free(s->password);
    free(s->ca_file);
    free(s->from_name);
    free(s->from_addr);
    free(s->domain);
    free(s->reply_domain);
    if (s->reply_secret)
        memset(s->reply_secret, 0, strlen(s->reply_secret));
    free(s->reply_secret);
    free(s->public_url);
    if (s->unsubscribe_secret)
        memset(s->unsubscribe_secret, 0, strlen(s->unsubscribe_secret));
    free(s->unsubscribe_secret);
    free(s);
}
