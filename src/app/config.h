/* config.h: the settings table and the immutable configuration built from it.
 *
 * One declarative table gives each setting's environment name, type, default, bounds, a
 * secret flag and a one-line doc; it drives parsing (environment, then --flags), validation,
 * --help and --print-config. Nothing else in the program reads the environment. */
#pragma once

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>

struct config {
    int port;
    char *host;
    char *database_url;
    int db_busy_timeout_ms;
    char *redis_url;
    char *queue_name;
    char *queue_prefix;
    int queue_keep_completed;
    long long queue_stalled_interval_ms;
    int queue_max_stalled;
    int http_threads;
    int http_header_timeout_ms;
    int http_body_min_rate;
    int http_max_conns_per_ip;
    int http_body_budget_mb;
    int events_heartbeat_ms;
    int worker_concurrency;
    int worker_batch;
    long long worker_batch_ms;
    int job_attempts;
    long long job_backoff_ms;
    long long job_lease_ms;
    enum log_level log_level;
    enum log_format log_format;
    char *api_keys;
    double rate_limit_rps;
    int rate_limit_burst;
    char *cors_origins;
    char *mock_sink;
    int mock_fail_first;
    double mock_fail_rate;
    int mock_send_delay_ms;
    char *email_provider;
    char *smtp_url;
    char *smtp_username;
    char *smtp_password;
    char *smtp_ca_file;
    long long smtp_timeout_ms;
    char *email_from;
    char *email_reply_domain;
    char *email_reply_secret;
    char *public_url;
    char *unsubscribe_secret;
    char *whatsapp_provider;
    char *whatsapp_api_url;
    char *whatsapp_phone_number_id;
    char *whatsapp_token;
    char *whatsapp_app_secret;
    long long idempotency_ttl_s;
    int email_webhook_max_mb;
    char *whatsapp_verify_token;
    char *email_webhook_signing_key;
    char *whatsapp_welcome_template;
    char *whatsapp_template_lang;
    long long whatsapp_timeout_ms;
    char *ai_provider;
    char *ai_base_url;
    char *ai_api_key;
    char *ai_model;
    long long ai_timeout_ms;
    char *ai_system_prompt;
    char *ai_fallback;
};

/* Fills cfg from defaults, then `envp`-style lookups via getenv, then `--name=value` flags
 * (argv[first..argc), flags it does not know are left for the caller via *unknown). On a bad
 * value returns SP_EINVAL with err naming the setting. Caller frees with config_cleanup(). */
int config_load(struct config *cfg, int argc, char **argv, int first,
                struct sp_error *err) SP_MUST_CHECK;
void config_cleanup(struct config *cfg);
/* 1 if `arg` is a settings flag (--port, --port=1); *takes_value is set when the value is the
 * next argument. Lets main reject unknown flags. */
int config_is_flag(const char *arg, int *takes_value);
/* Prints the settings table (name, default, doc) for --help. */
void config_print_help(FILE *f);
/* `url` with any password replaced by ***, into out[cap]; returns out. */
const char *config_url_redact(const char *url, char *out, size_t cap);
/* Prints the effective configuration, secrets redacted. */
void config_print(const struct config *cfg, FILE *f);
