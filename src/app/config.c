/* config.c: the settings table (see config.h). */
#include "app/config.h"

#include "core/xmalloc.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* K_KEYS: a comma-separated list of secrets, stored trimmed (" a , b" -> "a,b"); set but
 * empty, or with an empty entry, is an error (an empty API_KEYS once turned authentication off). */
enum key_type { K_INT, K_LONG, K_DOUBLE, K_STR, K_KEYS, K_LEVEL, K_FORMAT };

struct config_key {
    const char *env;  /* PORT */
    const char *flag; /* port -> --port */
    enum key_type type;
    size_t offset;
    const char *def; /* NULL: unset */
    double min, max;
    int secret; /* 1: never printed; 2: a URL printed without its password */
    const char *doc;
};

#define OFF(f) offsetof(struct config, f)

static const struct config_key keys[] = {
    {"PORT", "port", K_INT, OFF(port), "3000", 0, 65535, 0,
     "HTTP listen port (0 picks a free one)"},
    {"HOST", "host", K_STR, OFF(host), "127.0.0.1", 0, 0, 0,
     "HTTP listen address (containers set 0.0.0.0)"},
    {"DATABASE_URL", "database-url", K_STR, OFF(database_url), "sqlite:salespad.db", 0, 0, 2,
     "sqlite:<path> (embedded) or postgres://user:pass@host:port/db"},
    {"DB_BUSY_TIMEOUT_MS", "db-busy-timeout-ms", K_INT, OFF(db_busy_timeout_ms), "2000", 1, 600000,
     0,
     "longest a request waits in total for database locks held elsewhere before 503 (ms; "
     "PostgreSQL: its transactions' lock_timeout)"},
    {"REDIS_URL", "redis-url", K_STR, OFF(redis_url), NULL, 0, 0, 2,
     "unset: the queue lives in the database; redis://[:pass@]host:port[/db]: BullMQ-layout queue"},
    {"QUEUE_NAME", "queue-name", K_STR, OFF(queue_name), "commands", 0, 0, 0,
     "BullMQ queue name (with REDIS_URL)"},
    {"QUEUE_PREFIX", "queue-prefix", K_STR, OFF(queue_prefix), "bull", 0, 0, 0,
     "BullMQ key prefix: keys are <prefix>:<name>:... (with REDIS_URL)"},
    {"QUEUE_KEEP_COMPLETED", "queue-keep-completed", K_INT, OFF(queue_keep_completed), "1000", -1,
     100000000, 0, "completed jobs kept in Redis, older ones removed (-1: all, 0: none)"},
    {"QUEUE_STALLED_INTERVAL_MS", "queue-stalled-interval-ms", K_LONG,
     OFF(queue_stalled_interval_ms), "30000", 50, 3600000, 0,
     "how often workers run BullMQ's stalled-job check (ms, with REDIS_URL)"},
    {"QUEUE_MAX_STALLED", "queue-max-stalled", K_INT, OFF(queue_max_stalled), "1", 0, 1000, 0,
     "times a job's lease may be lost (its worker died or hung) before it fails"},
    {"HTTP_THREADS", "http-threads", K_INT, OFF(http_threads), "16", 1, 128, 0,
     "database connections for HTTP handlers (every HTTP connection has its own thread)"},
    {"HTTP_HEADER_TIMEOUT_MS", "http-header-timeout-ms", K_INT, OFF(http_header_timeout_ms),
     "10000", 100, 600000, 0,
     "a request's headers must be complete within this (ms), or the connection is closed; "
     "also the idle keep-alive limit"},
    {"HTTP_BODY_MIN_RATE", "http-body-min-rate", K_INT, OFF(http_body_min_rate), "4096", 1,
     100000000, 0,
     "bytes/s a request body must average after HTTP_HEADER_TIMEOUT_MS, or the connection "
     "is closed"},
    {"HTTP_MAX_CONNS_PER_IP", "http-max-conns-per-ip", K_INT, OFF(http_max_conns_per_ip), "256", 1,
     4096, 0, "open HTTP connections per client address; more are refused at accept"},
    {"EVENTS_HEARTBEAT_MS", "events-heartbeat-ms", K_INT, OFF(events_heartbeat_ms), "15000", 50,
     25000, 0,
     "GET /events: the longest silence on a stream before a comment line keeps proxies from "
     "closing it (ms; under the 30 s idle timeout)"},
    {"HTTP_BODY_BUDGET_MB", "http-body-budget-mb", K_INT, OFF(http_body_budget_mb), "64", 1, 4096,
     0, "MiB all buffered request bodies may hold together; past it 503 + Retry-After"},
    {"WORKER_CONCURRENCY", "worker-concurrency", K_INT, OFF(worker_concurrency), "4", 1, 64, 0,
     "worker threads per process"},
    {"WORKER_BATCH", "worker-batch", K_INT, OFF(worker_batch), "128", 1, 256, 0,
     "most jobs a worker reserves per transaction (the batch adapts below it: WORKER_BATCH_MS)"},
    {"WORKER_BATCH_MS", "worker-batch-ms", K_LONG, OFF(worker_batch_ms), "100", 1, 60000, 0,
     "send time one batch may take (ms): batches grow while sends are fast, shrink when slow"},
    {"JOB_ATTEMPTS", "job-attempts", K_INT, OFF(job_attempts), "3", 1, 50, 0,
     "attempts per send-message job"},
    {"JOB_BACKOFF_MS", "job-backoff-ms", K_LONG, OFF(job_backoff_ms), "1000", 0, 3600000, 0,
     "exponential backoff base (ms), capped at one hour, with jitter"},
    {"JOB_LEASE_MS", "job-lease-ms", K_LONG, OFF(job_lease_ms), "30000", 100, 3600000, 0,
     "a job's lease (ms), renewed while the job runs"},
    {"LOG_LEVEL", "log-level", K_LEVEL, OFF(log_level), "info", 0, 0, 0,
     "error, warn, info or debug"},
    {"LOG_FORMAT", "log-format", K_FORMAT, OFF(log_format), "text", 0, 0, 0,
     "text (logfmt) or json"},
    {"API_KEYS", "api-keys", K_KEYS, OFF(api_keys), NULL, 0, 0, 1,
     "comma-separated keys (spaces trimmed); when set every route but /health needs X-API-Key"},
    {"RATE_LIMIT_RPS", "rate-limit-rps", K_DOUBLE, OFF(rate_limit_rps), "0", 0, 1000000, 0,
     "requests per second each API key (each client address without keys) may make on average; "
     "0: no limit"},
    {"RATE_LIMIT_BURST", "rate-limit-burst", K_INT, OFF(rate_limit_burst), "0", 0, 1000000, 0,
     "requests a client may make at once before RATE_LIMIT_RPS paces it (0: one second's worth)"},
    {"IDEMPOTENCY_TTL_S", "idempotency-ttl-s", K_LONG, OFF(idempotency_ttl_s), "86400", 1,
     30 * 86400, 0, "how long an Idempotency-Key of a POST is remembered (seconds)"},
    {"CORS_ORIGINS", "cors-origins", K_STR, OFF(cors_origins), NULL, 0, 0, 0,
     "unset: no CORS; * or comma-separated exact origins (https://app.example.com) allowed"},
    {"MOCK_SINK", "mock-sink", K_STR, OFF(mock_sink), NULL, 0, 0, 0,
     "mock provider: append one JSON line per delivery to this file"},
    {"MOCK_FAIL_FIRST", "mock-fail-first", K_INT, OFF(mock_fail_first), "0", 0, 1000, 0,
     "mock provider: fail the first n attempts of each message"},
    {"MOCK_FAIL_RATE", "mock-fail-rate", K_DOUBLE, OFF(mock_fail_rate), "0", 0, 1, 0,
     "mock provider: fail each attempt with this probability"},
    {"MOCK_SEND_DELAY_MS", "mock-send-delay-ms", K_INT, OFF(mock_send_delay_ms), "0", 0, 600000, 0,
     "mock provider: each send takes this long (ms)"},
    {"EMAIL_PROVIDER", "email-provider", K_STR, OFF(email_provider), "mock", 0, 0, 0,
     "mock or smtp: who sends the email channel"},
    {"SMTP_URL", "smtp-url", K_STR, OFF(smtp_url), NULL, 0, 0, 2,
     "smtp://host:port (STARTTLS when offered) or smtps://host:port (TLS); EMAIL_PROVIDER=smtp"},
    {"SMTP_USERNAME", "smtp-username", K_STR, OFF(smtp_username), NULL, 0, 0, 0,
     "SMTP AUTH user; when set, TLS is required (no password in clear text)"},
    {"SMTP_PASSWORD", "smtp-password", K_STR, OFF(smtp_password), NULL, 0, 0, 1,
     "SMTP AUTH password"},
    {"SMTP_CA_FILE", "smtp-ca-file", K_STR, OFF(smtp_ca_file), NULL, 0, 0, 0,
     "extra CA bundle (PEM) trusted for the relay, besides the system's"},
    {"SMTP_TIMEOUT_MS", "smtp-timeout-ms", K_LONG, OFF(smtp_timeout_ms), "30000", 100, 600000, 0,
     "the whole SMTP exchange of one message (ms); connecting takes at most 10 s of it"},
    {"EMAIL_FROM", "email-from", K_STR, OFF(email_from), NULL, 0, 0, 0,
     "sender, \"Name <address>\"; its domain ends every Message-ID (EMAIL_PROVIDER=smtp)"},
    {"EMAIL_REPLY_DOMAIN", "email-reply-domain", K_STR, OFF(email_reply_domain), NULL, 0, 0, 0,
     "set: Reply-To is reply+<token>@<this domain>, the token naming the lead"},
    {"EMAIL_REPLY_SECRET", "email-reply-secret", K_STR, OFF(email_reply_secret), NULL, 0, 0, 1,
     "HMAC key of the Reply-To token (16+ characters; needed with EMAIL_REPLY_DOMAIN)"},
    {"PUBLIC_URL", "public-url", K_STR, OFF(public_url), NULL, 0, 0, 0,
     "the service's base URL as recipients reach it (http(s)://host[:port][/path]); set: emails "
     "carry one-click List-Unsubscribe links to {PUBLIC_URL}/unsubscribe/{token}"},
    {"UNSUBSCRIBE_SECRET", "unsubscribe-secret", K_STR, OFF(unsubscribe_secret), NULL, 0, 0, 1,
     "HMAC key of the unsubscribe links' tokens (16+ characters; needed with PUBLIC_URL)"},
    {"WHATSAPP_PROVIDER", "whatsapp-provider", K_STR, OFF(whatsapp_provider), "mock", 0, 0, 0,
     "mock or cloud: who sends the whatsapp channel (cloud: Meta's WhatsApp Cloud API)"},
    {"WHATSAPP_API_URL", "whatsapp-api-url", K_STR, OFF(whatsapp_api_url),
     "https://graph.facebook.com/v21.0", 0, 0, 0,
     "Cloud API base URL (https; http only to a loopback host, for tests)"},
    {"WHATSAPP_PHONE_NUMBER_ID", "whatsapp-phone-number-id", K_STR, OFF(whatsapp_phone_number_id),
     NULL, 0, 0, 0, "the sending number's id (WHATSAPP_PROVIDER=cloud)"},
    {"WHATSAPP_TOKEN", "whatsapp-token", K_STR, OFF(whatsapp_token), NULL, 0, 0, 1,
     "the Cloud API access token (WHATSAPP_PROVIDER=cloud)"},
    {"WHATSAPP_WELCOME_TEMPLATE", "whatsapp-welcome-template", K_STR,
     OFF(whatsapp_welcome_template), NULL, 0, 0, 0,
     "approved template sent as the welcome, the lead's name as its body's {{1}} (cloud)"},
    {"WHATSAPP_TEMPLATE_LANG", "whatsapp-template-lang", K_STR, OFF(whatsapp_template_lang),
     "en_US", 0, 0, 0, "the welcome template's language code"},
    {"WHATSAPP_APP_SECRET", "whatsapp-app-secret", K_STR, OFF(whatsapp_app_secret), NULL, 0, 0, 1,
     "the Meta app's secret: POST /webhooks/whatsapp needs its X-Hub-Signature-256 (unset: 503)"},
    {"WHATSAPP_VERIFY_TOKEN", "whatsapp-verify-token", K_STR, OFF(whatsapp_verify_token), NULL, 0,
     0, 1, "the token Meta's webhook verification (GET /webhooks/whatsapp) must present"},
    {"EMAIL_WEBHOOK_SIGNING_KEY", "email-webhook-signing-key", K_STR,
     OFF(email_webhook_signing_key), NULL, 0, 0, 1,
     "the inbound email provider's (Mailgun's) webhook signing key: POST /webhooks/email (unset: "
     "503)"},
    {"EMAIL_WEBHOOK_MAX_MB", "email-webhook-max-mb", K_INT, OFF(email_webhook_max_mb), "25", 1,
     1024, 0,
     "largest POST /webhooks/email body (MiB): an email with its attachments (other routes: 1 "
     "MiB)"},
    {"WHATSAPP_TIMEOUT_MS", "whatsapp-timeout-ms", K_LONG, OFF(whatsapp_timeout_ms), "30000", 100,
     600000, 0, "the whole Cloud API call of one message (ms); connecting takes at most 10 s"},
    {"AI_PROVIDER", "ai-provider", K_STR, OFF(ai_provider), "mock", 0, 0, 0,
     "mock or openai: who writes the answers to replies (openai: any OpenAI-compatible API)"},
    {"AI_BASE_URL", "ai-base-url", K_STR, OFF(ai_base_url), "https://api.openai.com/v1", 0, 0, 0,
     "chat-completions API base URL (https; http only to a loopback host, for tests)"},
    {"AI_API_KEY", "ai-api-key", K_STR, OFF(ai_api_key), NULL, 0, 0, 1,
     "the API key, sent as a bearer token (AI_PROVIDER=openai)"},
    {"AI_MODEL", "ai-model", K_STR, OFF(ai_model), NULL, 0, 0, 0,
     "the model that answers (AI_PROVIDER=openai), e.g. gpt-4o-mini"},
    {"AI_TIMEOUT_MS", "ai-timeout-ms", K_LONG, OFF(ai_timeout_ms), "30000", 100, 600000, 0,
     "the whole API call of one answer (ms); connecting takes at most 10 s"},
    {"AI_SYSTEM_PROMPT", "ai-system-prompt", K_STR, OFF(ai_system_prompt), NULL, 0, 0, 0,
     "the model's instructions (unset: a built-in polite sales assistant); name and channel added"},
    {"AI_FALLBACK", "ai-fallback", K_STR, OFF(ai_fallback), "template", 0, 0, 0,
     "template or none: the answer when the model failed for good (none: no answer)"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static int
bad(struct sp_error *err, const struct config_key *k, const char *why, const char *got)
{
    return sp_error_set(err, SP_EINVAL, k->env, "config: %s: %s (got \"%.60s\")", k->env, why, got);
}

static int
parse_number(const struct config_key *k, const char *s, double *out, struct sp_error *err)
{
    char *end = NULL;
    double v;

    errno = 0;
    if (k->type == K_DOUBLE) {
        v = strtod(s, &end);
    } else {
        long long ll = strtoll(s, &end, 10);
        v = (double)ll;
    }
    if (s[0] == '\0' || end == NULL || *end != '\0' || errno != 0 || isnan(v))
        return bad(err, k, k->type == K_DOUBLE ? "must be a number" : "must be an integer", s);
    if (v < k->min || v > k->max) {
        char why[80];
        snprintf(why, sizeof(why), k->type == K_DOUBLE ? "must be %g..%g" : "must be %.0f..%.0f",
                 k->min, k->max);
        return bad(err, k, why, s);
    }
    *out = v;
    return SP_OK;
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Stores the list `s` trimmed into *slot (see K_KEYS). */
static int
apply_keys(const struct config_key *k, char **slot, const char *s, struct sp_error *err)
{
    size_t n = s ? strlen(s) : 0, pos = 0;
    char *out = xmalloc(n + 1);

    for (const char *p = s ? s : ""; n > 0;) {
        const char *end = strchr(p, ',');
        const char *b = p, *e = end ? end : p + strlen(p);
        while (b < e && is_blank(*b))
            b++;
        while (e > b && is_blank(e[-1]))
            e--;
        if (b == e) {
            free(out);
            return bad(err, k, "must be a list of non-empty keys (unset it to turn keys off)", s);
        }
        if (pos > 0)
            out[pos++] = ',';
        memcpy(out + pos, b, (size_t)(e - b));
        pos += (size_t)(e - b);
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (pos == 0) {
        free(out);
        return bad(err, k, "must be a list of non-empty keys (unset it to turn keys off)", "");
    }
    out[pos] = '\0';
    free(*slot);
    *slot = out;
    return SP_OK;
}

static int
apply(struct config *cfg, const struct config_key *k, const char *s, struct sp_error *err)
{
    char *base = (char *)cfg + k->offset;
    double v = 0;
    int rc;

    switch (k->type) {
    case K_STR: {
        char **slot = (char **)(void *)base;
        free(*slot);
        *slot = s ? xstrdup(s) : NULL;
        return SP_OK;
    }
    case K_KEYS:
        return apply_keys(k, (char **)(void *)base, s, err);
    case K_LEVEL:
        if (log_level_parse(s, (enum log_level *)(void *)base) != 0)
            return bad(err, k, "must be error, warn, info or debug", s);
        return SP_OK;
    case K_FORMAT:
        if (log_format_parse(s, (enum log_format *)(void *)base) != 0)
            return bad(err, k, "must be text or json", s);
        return SP_OK;
    default:
        rc = parse_number(k, s, &v, err);
        if (rc != SP_OK)
            return rc;
        if (k->type == K_INT)
            *(int *)(void *)base = (int)v;
        else if (k->type == K_LONG)
            *(long long *)(void *)base = (long long)v;
        else
            *(double *)(void *)base = v;
        return SP_OK;
    }
}

static const struct config_key *
find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].flag) == len && strncmp(keys[i].flag, name, len) == 0)
            return &keys[i];
    return NULL;
}

/* A BullMQ queue name or prefix: it becomes part of every Redis key. */
static int
name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':' || (unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return 0;
    return 1;
}

/* EMAIL_PROVIDER and what smtp needs; the SMTP sender checks the values' shape at start-up. */
static int
validate_email(const struct config *cfg, struct sp_error *err)
{
    const char *p = cfg->email_provider;

    if (p == NULL || (strcmp(p, "mock") != 0 && strcmp(p, "smtp") != 0))
        return sp_error_set(err, SP_EINVAL, "EMAIL_PROVIDER",
                            "config: EMAIL_PROVIDER: must be mock or smtp (got \"%.20s\")",
                            p ? p : "");
    if (strcmp(p, "smtp") != 0)
        return SP_OK;
    if (cfg->smtp_url == NULL)
        return sp_error_set(err, SP_EINVAL, "SMTP_URL",
                            "config: SMTP_URL: needed with EMAIL_PROVIDER=smtp");
    if (cfg->email_from == NULL)
        return sp_error_set(err, SP_EINVAL, "EMAIL_FROM",
                            "config: EMAIL_FROM: needed with EMAIL_PROVIDER=smtp");
    if (cfg->smtp_password && cfg->smtp_username == NULL)
        return sp_error_set(err, SP_EINVAL, "SMTP_USERNAME",
                            "config: SMTP_USERNAME: needed with SMTP_PASSWORD");
    return SP_OK;
}

/* AI_PROVIDER, AI_FALLBACK and what openai needs; the generator checks the values' shape at
 * start-up. */
static int
validate_ai(const struct config *cfg, struct sp_error *err)
{
    const char *p = cfg->ai_provider, *f = cfg->ai_fallback;

    if (p == NULL || (strcmp(p, "mock") != 0 && strcmp(p, "openai") != 0))
        return sp_error_set(err, SP_EINVAL, "AI_PROVIDER",
                            "config: AI_PROVIDER: must be mock or openai (got \"%.20s\")",
                            p ? p : "");
    if (f == NULL || (strcmp(f, "template") != 0 && strcmp(f, "none") != 0))
        return sp_error_set(err, SP_EINVAL, "AI_FALLBACK",
                            "config: AI_FALLBACK: must be template or none (got \"%.20s\")",
                            f ? f : "");
    if (strcmp(p, "openai") != 0)
        return SP_OK;
    if (cfg->ai_api_key == NULL || cfg->ai_api_key[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "AI_API_KEY",
                            "config: AI_API_KEY: needed with AI_PROVIDER=openai");
    if (cfg->ai_model == NULL || cfg->ai_model[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "AI_MODEL",
                            "config: AI_MODEL: needed with AI_PROVIDER=openai");
    return SP_OK;
}

/* WHATSAPP_PROVIDER and what cloud needs; the WhatsApp sender checks the values' shape at
 * start-up. */
static int
validate_whatsapp(const struct config *cfg, struct sp_error *err)
{
    const char *p = cfg->whatsapp_provider;
    static const struct {
        const char *env;
        size_t offset;
    } needed[] = {
        {"WHATSAPP_PHONE_NUMBER_ID", OFF(whatsapp_phone_number_id)},
        {"WHATSAPP_TOKEN", OFF(whatsapp_token)},
        {"WHATSAPP_WELCOME_TEMPLATE", OFF(whatsapp_welcome_template)},
        {"WHATSAPP_API_URL", OFF(whatsapp_api_url)},
        {"WHATSAPP_TEMPLATE_LANG", OFF(whatsapp_template_lang)},
    };

    if (p == NULL || (strcmp(p, "mock") != 0 && strcmp(p, "cloud") != 0))
        return sp_error_set(err, SP_EINVAL, "WHATSAPP_PROVIDER",
                            "config: WHATSAPP_PROVIDER: must be mock or cloud (got \"%.20s\")",
                            p ? p : "");
    if (strcmp(p, "cloud") != 0)
        return SP_OK;
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        const char *v = *(char *const *)((const char *)cfg + needed[i].offset);
        if (v == NULL || v[0] == '\0')
            return sp_error_set(err, SP_EINVAL, needed[i].env,
                                "config: %s: needed with WHATSAPP_PROVIDER=cloud", needed[i].env);
    }
    return SP_OK;
}

/* One CORS_ORIGINS entry: "*" alone, or scheme://host[:port] as a browser sends it in Origin
 * (no path, no trailing slash, nothing a header value cannot hold). */
static int
origin_ok(const char *s, size_t len)
{
    const char *host;

    if (len >= 8 && strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (len >= 7 && strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return 0;
    if (host == s + len)
        return 0;
    for (const char *p = host; p < s + len; p++)
        if (*p == '/' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return 1;
}

/* CORS_ORIGINS: "*" or a comma-separated list of origins (spaces around commas allowed). */
static int
cors_origins_ok(const char *s)
{
    size_t n = 0;

    if (strcmp(s, "*") == 0)
        return 1;
    for (const char *p = s; *p;) {
        size_t len;

        while (*p == ' ' || *p == ',')
            p++;
        len = strcspn(p, ",");
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len > 0 && !origin_ok(p, len))
            return 0;
        n += len > 0;
        p += strcspn(p, ",");
    }
    return n > 0;
}

/* PUBLIC_URL: http(s)://host[:port][/path], printable ASCII with nothing that would need
 * escaping inside <...> of a header or in an href (no spaces, quotes, brackets, commas), no
 * query or fragment (the links append a path). */
static int
public_url_ok(const char *s)
{
    const char *host;

    if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return 0;
    if (strlen(s) > 200 || *host == '\0' || *host == '/')
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("<>\"',\\?#`{}|^", *p))
            return 0;
    return 1;
}

/* PUBLIC_URL and UNSUBSCRIBE_SECRET: the one-click unsubscribe links. */
static int
validate_unsubscribe(const struct config *cfg, struct sp_error *err)
{
    if (cfg->public_url && !public_url_ok(cfg->public_url))
        return sp_error_set(err, SP_EINVAL, "PUBLIC_URL",
                            "config: PUBLIC_URL: must be http(s)://host[:port][/path] without "
                            "query, fragment, spaces or quotes (got \"%.60s\")",
                            cfg->public_url);
    if (cfg->unsubscribe_secret && strlen(cfg->unsubscribe_secret) < 16)
        return sp_error_set(err, SP_EINVAL, "UNSUBSCRIBE_SECRET",
                            "config: UNSUBSCRIBE_SECRET: must be 16 characters or more");
    if (cfg->public_url && cfg->unsubscribe_secret == NULL)
        return sp_error_set(err, SP_EINVAL, "UNSUBSCRIBE_SECRET",
                            "config: UNSUBSCRIBE_SECRET: needed with PUBLIC_URL (16 characters or "
                            "more)");
    return SP_OK;
}

static int
validate(const struct config *cfg, struct sp_error *err)
{
    int rc;

    if (cfg->host == NULL || cfg->host[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "HOST", "config: HOST: must not be empty");
    if (cfg->database_url == NULL || cfg->database_url[0] == '\0')
        return sp_error_set(err, SP_EINVAL, "DATABASE_URL",
                            "config: DATABASE_URL: must not be empty");
    if (cfg->redis_url && strncmp(cfg->redis_url, "redis://", 8) != 0)
        return sp_error_set(err, SP_EINVAL, "REDIS_URL",
                            "config: REDIS_URL: must be redis://[:password@]host[:port][/db]");
    if (!name_ok(cfg->queue_name))
        return sp_error_set(err, SP_EINVAL, "QUEUE_NAME",
                            "config: QUEUE_NAME: 1-64 characters, none of ':', space or control");
    if (cfg->cors_origins && !cors_origins_ok(cfg->cors_origins))
        return sp_error_set(err, SP_EINVAL, "CORS_ORIGINS",
                            "config: CORS_ORIGINS: * or comma-separated http(s)://host[:port] "
                            "origins (got \"%.60s\")",
                            cfg->cors_origins);
    if (!name_ok(cfg->queue_prefix))
        return sp_error_set(err, SP_EINVAL, "QUEUE_PREFIX",
                            "config: QUEUE_PREFIX: 1-64 characters, none of ':', space or control");
    if (cfg->rate_limit_burst > 0 && cfg->rate_limit_rps == 0)
        return sp_error_set(err, SP_EINVAL, "RATE_LIMIT_BURST",
                            "config: RATE_LIMIT_BURST: needs RATE_LIMIT_RPS (got %d with no rate)",
                            cfg->rate_limit_burst);
    rc = validate_email(cfg, err);
    if (rc == SP_OK)
        rc = validate_unsubscribe(cfg, err);
    if (rc == SP_OK)
        rc = validate_ai(cfg, err);
    if (rc != SP_OK)
        return rc;
    return validate_whatsapp(cfg, err);
}

int
config_load(struct config *cfg, int argc, char **argv, int first, struct sp_error *err)
{
    int rc = SP_OK;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; rc == SP_OK && i < NKEYS; i++)
        if (keys[i].def)
            rc = apply(cfg, &keys[i], keys[i].def, err);
    for (size_t i = 0; rc == SP_OK && i < NKEYS; i++) {
        const char *v = getenv(keys[i].env);
        if (v == NULL || (v[0] == '\0' && keys[i].type != K_STR && keys[i].type != K_KEYS))
            continue;
        /* an empty string setting means unset, but an empty key list is refused */
        rc = apply(cfg, &keys[i], (v[0] || keys[i].type == K_KEYS) ? v : NULL, err);
    }
    for (int a = first; rc == SP_OK && a < argc; a++) {
        const char *arg = argv[a], *eq;
        const struct config_key *k;
        if (strncmp(arg, "--", 2) != 0)
            continue;
        eq = strchr(arg, '=');
        k = find_flag(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
        if (k == NULL)
            continue;
        if (eq == NULL) {
            if (a + 1 >= argc) {
                /* not a return: the strings applied so far are freed below */
                rc = sp_error_set(err, SP_EINVAL, k->env, "config: --%s needs a value", k->flag);
                break;
            }
            rc = apply(cfg, k, argv[++a], err);
        } else {
            rc = apply(cfg, k, eq + 1, err);
        }
    }
    if (rc == SP_OK)
        rc = validate(cfg, err);
    if (rc != SP_OK)
        config_cleanup(cfg);
    return rc;
}

int
config_is_flag(const char *arg, int *takes_value)
{
    const char *eq;
    if (strncmp(arg, "--", 2) != 0)
        return 0;
    eq = strchr(arg, '=');
    *takes_value = eq == NULL;
    return find_flag(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2)) != NULL;
}

void
config_cleanup(struct config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == K_STR || keys[i].type == K_KEYS) {
            char **slot = (char **)(void *)((char *)cfg + keys[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
}

void
config_print_help(FILE *f)
{
    int wenv = 0, wflag = 0, wdef = 0;

    for (size_t i = 0; i < NKEYS; i++) {
        int e = (int)strlen(keys[i].env), fl = (int)strlen(keys[i].flag) + 2;
        int d = (int)strlen(keys[i].def ? keys[i].def : "(unset)");
        wenv = e > wenv ? e : wenv;
        wflag = fl > wflag ? fl : wflag;
        wdef = d > wdef ? d : wdef;
    }
    fprintf(f, "Settings (environment variable, or --flag=value; flags win):\n");
    for (size_t i = 0; i < NKEYS; i++) {
        char flag[48];
        snprintf(flag, sizeof(flag), "--%s", keys[i].flag);
        fprintf(f, "  %-*s %-*s default %-*s %s\n", wenv, keys[i].env, wflag, flag, wdef,
                keys[i].def ? keys[i].def : "(unset)", keys[i].doc);
    }
}

static void
print_value(const struct config *cfg, const struct config_key *k, FILE *f)
{
    const char *base = (const char *)cfg + k->offset;
    switch (k->type) {
    case K_STR:
    case K_KEYS: {
        const char *s = *(char *const *)(const void *)base;
        char url[256];
        if (s == NULL)
            fprintf(f, "(unset)");
        else if (k->secret == 1)
            fprintf(f, "(set, redacted)");
        else if (k->secret == 2)
            fprintf(f, "%s", config_url_redact(s, url, sizeof(url)));
        else
            fprintf(f, "%s", s);
        break;
    }
    case K_INT:
        fprintf(f, "%d", *(const int *)(const void *)base);
        break;
    case K_LONG:
        fprintf(f, "%lld", *(const long long *)(const void *)base);
        break;
    case K_DOUBLE:
        fprintf(f, "%g", *(const double *)(const void *)base);
        break;
    case K_LEVEL: {
        static const char *const n[] = {"error", "warn", "info", "debug"};
        fprintf(f, "%s", n[*(const enum log_level *)(const void *)base]);
        break;
    }
    case K_FORMAT:
        fprintf(f, "%s",
                *(const enum log_format *)(const void *)base == LOG_JSON ? "json" : "text");
        break;
    }
}

/* Bounded appender for config_url_redact: copies what fits, always NUL-terminated. */
struct outbuf {
    char *p;
    size_t cap, len;
};

static void
out_put(struct outbuf *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->len + 1 < o->cap; i++)
        o->p[o->len++] = s[i];
    o->p[o->len] = '\0';
}

/* Whether a query parameter's name is a password (libpq takes password= and sslpassword=). */
static int
is_password_param(const char *name, size_t len)
{
    static const char suffix[] = "password";
    size_t n = sizeof(suffix) - 1;

    return len >= n && strncasecmp(name + len - n, suffix, n) == 0;
}

/* Copies the query string `q` (after '?'), each password parameter's value replaced by ***. */
static void
redact_query(struct outbuf *o, const char *q)
{
    while (*q) {
        size_t len = strcspn(q, "&#");
        const char *eq = memchr(q, '=', len);
        if (eq && is_password_param(q, (size_t)(eq - q))) {
            out_put(o, q, (size_t)(eq - q) + 1);
            out_put(o, "***", 3);
        } else {
            out_put(o, q, len);
        }
        q += len;
        if (*q == '#') {
            out_put(o, q, strlen(q));
            return;
        }
        if (*q == '&')
            out_put(o, q++, 1);
    }
}

/* Copies a libpq key=value string, each password's value (unquoted, or quoted with '...' and
 * backslash escapes) replaced by ***. Spaces may surround the '='. */
static void
redact_conninfo(struct outbuf *o, const char *s)
{
    while (*s) {
        size_t ws = strspn(s, " \t\n\r"), key, sp;

        out_put(o, s, ws);
        s += ws;
        key = strcspn(s, "= \t\n\r");
        sp = strspn(s + key, " \t\n\r");
        if (s[key + sp] != '=') { /* not key=value: copy the word */
            out_put(o, s, key + sp);
            s += key + sp;
            continue;
        }
        out_put(o, s, key + sp + 1);
        if (!is_password_param(s, key)) {
            s += key + sp + 1;
            continue;
        }
        s += key + sp + 1;
        ws = strspn(s, " \t\n\r");
        out_put(o, s, ws);
        s += ws;
        out_put(o, "***", 3);
        if (*s == '\'') {
            for (s++; *s && *s != '\''; s++)
                if (*s == '\\' && s[1] != '\0')
                    s++;
            if (*s == '\'')
                s++;
        } else {
            s += strcspn(s, " \t\n\r");
        }
    }
}

const char *
config_url_redact(const char *url, char *out, size_t cap)
{
    struct outbuf o = {out, cap, 0};
    const char *scheme = strstr(url, "://");
    const char *auth = scheme ? scheme + 3 : url;
    size_t auth_len = scheme ? strcspn(auth, "/?#") : 0;
    const char *q;

    if (cap == 0)
        return out;
    out[0] = '\0';
    if (scheme == NULL && strncmp(url, "sqlite:", 7) != 0) {
        redact_conninfo(&o, url);
        return out;
    }
    out_put(&o, url, (size_t)(auth - url));
    /* userinfo is what comes before the last '@' of the authority; its password after ':' */
    for (size_t i = auth_len; i > 0; i--) {
        if (auth[i - 1] != '@')
            continue;
        const char *colon = memchr(auth, ':', i - 1);
        if (colon) {
            out_put(&o, auth, (size_t)(colon - auth) + 1);
            out_put(&o, "***", 3);
            auth += i - 1;
        }
        break;
    }
    q = strchr(auth, '?');
    if (q == NULL || (scheme == NULL && strncmp(url, "sqlite:", 7) == 0)) {
        out_put(&o, auth, strlen(auth));
        return out;
    }
    out_put(&o, auth, (size_t)(q - auth) + 1);
    redact_query(&o, q + 1);
    return out;
}

void
config_print(const struct config *cfg, FILE *f)
{
    for (size_t i = 0; i < NKEYS; i++) {
        fprintf(f, "%s=", keys[i].env);
        print_value(cfg, &keys[i], f);
        fputc('\n', f);
    }
}
