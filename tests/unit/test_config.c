/* test_config.c: config_load: defaults (README.md's settings table), environment, flags and
 * validation. Each test runs in its own forked child, so setenv/unsetenv cannot leak. */
#include "t.h"

#include "app/auth.h"
#include "app/config.h"

static void
clear_env(void)
{
    static const char *const names[] = {
        "PORT",
        "HOST",
        "DATABASE_URL",
        "REDIS_URL",
        "HTTP_THREADS",
        "WORKER_CONCURRENCY",
        "JOB_ATTEMPTS",
        "JOB_BACKOFF_MS",
        "JOB_LEASE_MS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "API_KEYS",
        "MOCK_SINK",
        "MOCK_FAIL_FIRST",
        "MOCK_FAIL_RATE",
        "HTTP_HEADER_TIMEOUT_MS",
        "HTTP_BODY_MIN_RATE",
        "HTTP_MAX_CONNS_PER_IP",
        "HTTP_BODY_BUDGET_MB",
        "DB_BUSY_TIMEOUT_MS",
        "CORS_ORIGINS",
        "RATE_LIMIT_RPS",
        "RATE_LIMIT_BURST",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

TEST(unit_config_defaults)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_EQ(3000, cfg.port);
    ASSERT_STREQ("127.0.0.1", cfg.host);
    ASSERT_STREQ("sqlite:salespad.db", cfg.database_url);
    ASSERT(cfg.redis_url == NULL);
    ASSERT_EQ(2000, cfg.db_busy_timeout_ms); /* a request waits at most 2 s for a lock */
    ASSERT(cfg.http_threads >= 1);           /* tuning, not contract: only sane */
    ASSERT_EQ(4, cfg.worker_concurrency);
    ASSERT_EQ(3, cfg.job_attempts); /* the design's 3 attempts (seed defect #1) */
    ASSERT_EQ(1000, cfg.job_backoff_ms);
    ASSERT(cfg.job_lease_ms >= 100);
    ASSERT_EQ(10000, cfg.http_header_timeout_ms); /* the hardening issue's required defaults */
    ASSERT_EQ(256, cfg.http_max_conns_per_ip);
    ASSERT_EQ(64, cfg.http_body_budget_mb);
    ASSERT(cfg.http_body_min_rate >= 1);
    ASSERT_EQ(SP_LOG_INFO, cfg.log_level);
    ASSERT_EQ(LOG_TEXT, cfg.log_format);
    ASSERT(cfg.api_keys == NULL);
    ASSERT(cfg.mock_sink == NULL);
    ASSERT_EQ(0, cfg.mock_fail_first);
    ASSERT(cfg.mock_fail_rate == 0.0);
    ASSERT(cfg.rate_limit_rps == 0.0); /* rate limits are off unless asked for */
    ASSERT_EQ(0, cfg.rate_limit_burst);
    config_cleanup(&cfg);
}

TEST(unit_config_from_environment)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    setenv("PORT", "8080", 1);
    setenv("HOST", "0.0.0.0", 1);
    setenv("DATABASE_URL", "sqlite:/tmp/x.db", 1);
    setenv("JOB_ATTEMPTS", "5", 1);
    setenv("JOB_BACKOFF_MS", "250", 1);
    setenv("LOG_LEVEL", "debug", 1);
    setenv("LOG_FORMAT", "json", 1);
    setenv("MOCK_FAIL_RATE", "0.25", 1);
    setenv("API_KEYS", "k1,k2", 1);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_EQ(8080, cfg.port);
    ASSERT_STREQ("0.0.0.0", cfg.host);
    ASSERT_STREQ("sqlite:/tmp/x.db", cfg.database_url);
    ASSERT_EQ(5, cfg.job_attempts);
    ASSERT_EQ(250, cfg.job_backoff_ms);
    ASSERT_EQ(SP_LOG_DEBUG, cfg.log_level);
    ASSERT_EQ(LOG_JSON, cfg.log_format);
    ASSERT(cfg.mock_fail_rate == 0.25);
    ASSERT_STREQ("k1,k2", cfg.api_keys);
    config_cleanup(&cfg);
}

TEST(unit_config_empty_env_keeps_default)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    setenv("PORT", "", 1);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_EQ(3000, cfg.port);
    config_cleanup(&cfg);
}

/* Loads with one bad environment value and checks the error names the setting. */
static void
expect_bad_env(const char *name, const char *value)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    setenv(name, value, 1);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ(name, err.field);
    ASSERT_CONTAINS(err.msg, name);
    ASSERT(strchr(err.msg, '\n') == NULL);
    /* config_load frees what it allocated on failure; cleanup stays safe to call */
    config_cleanup(&cfg);
}

TEST(unit_config_rejects_bad_values)
{
    expect_bad_env("PORT", "abc");
    expect_bad_env("PORT", "80x");
    expect_bad_env("PORT", "65536");
    expect_bad_env("PORT", "-1");
    expect_bad_env("JOB_ATTEMPTS", "0");
    expect_bad_env("JOB_ATTEMPTS", "51");
    expect_bad_env("JOB_BACKOFF_MS", "-5");
    expect_bad_env("JOB_LEASE_MS", "99");
    expect_bad_env("HTTP_THREADS", "0");
    expect_bad_env("DB_BUSY_TIMEOUT_MS", "0");
    expect_bad_env("DB_BUSY_TIMEOUT_MS", "600001");
    expect_bad_env("HTTP_HEADER_TIMEOUT_MS", "99");
    expect_bad_env("HTTP_BODY_MIN_RATE", "0");
    expect_bad_env("HTTP_MAX_CONNS_PER_IP", "0");
    expect_bad_env("HTTP_BODY_BUDGET_MB", "0");
    expect_bad_env("LOG_LEVEL", "loud");
    expect_bad_env("LOG_FORMAT", "yaml");
    expect_bad_env("MOCK_FAIL_RATE", "1.5");
    expect_bad_env("MOCK_FAIL_RATE", "nan");
    expect_bad_env("PORT", "99999999999999999999999");
    expect_bad_env("RATE_LIMIT_RPS", "-1");
    expect_bad_env("RATE_LIMIT_RPS", "fast");
    expect_bad_env("RATE_LIMIT_BURST", "-1");
    expect_bad_env("RATE_LIMIT_BURST", "1.5");
}

TEST(unit_config_bad_value_message)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    setenv("JOB_ATTEMPTS", "0", 1);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("JOB_ATTEMPTS", err.field);
    ASSERT_STREQ("config: JOB_ATTEMPTS: must be 1..50 (got \"0\")", err.msg);
}

TEST(unit_config_flags_override_env)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", "serve",       "--port=1234", "--log-level",
                    "warn",     "--unknown=1", "positional",  NULL};

    clear_env();
    setenv("PORT", "5000", 1);
    setenv("LOG_LEVEL", "debug", 1);
    ASSERT_OK(config_load(&cfg, 7, argv, 1, &err));
    ASSERT_EQ(1234, cfg.port);
    ASSERT_EQ(SP_LOG_WARN, cfg.log_level);
    config_cleanup(&cfg);
}

TEST(unit_config_bad_flag_names_the_setting)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", "--job-attempts=0", NULL};

    clear_env();
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 2, argv, 1, &err));
    ASSERT_STREQ("JOB_ATTEMPTS", err.field);
}

TEST(unit_config_flag_without_value)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", "--port", NULL};

    clear_env();
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 2, argv, 1, &err));
    ASSERT_STREQ("PORT", err.field);
    ASSERT_CONTAINS(err.msg, "--port needs a value");
    /* No config_cleanup here on purpose: on failure config_load must not leave anything
     * allocated (the leak checkers run when this child exits). */
}

TEST(unit_config_is_flag)
{
    int takes = -1;

    ASSERT_EQ(1, config_is_flag("--port", &takes));
    ASSERT_EQ(1, takes);
    ASSERT_EQ(1, config_is_flag("--port=1", &takes));
    ASSERT_EQ(0, takes);
    ASSERT_EQ(0, config_is_flag("--nope", &takes));
    ASSERT_EQ(0, config_is_flag("port", &takes));
}

/* API_KEYS set but empty used to turn authentication off without a word. */
TEST(unit_config_api_keys_empty_is_an_error)
{
    expect_bad_env("API_KEYS", "");
    expect_bad_env("API_KEYS", " , ");
    expect_bad_env("API_KEYS", "a,,b");
}

TEST(unit_config_api_keys_empty_flag_is_an_error)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", "serve", "--api-keys=", NULL};

    clear_env();
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 3, argv, 2, &err));
    ASSERT_STREQ("API_KEYS", err.field);
}

/* Spaces around the keys used to be kept, so no key ever matched. */
TEST(unit_config_api_keys_trimmed)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    setenv("API_KEYS", " a , b\t,c ", 1);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("a,b,c", cfg.api_keys);
    config_cleanup(&cfg);
}

/* config_url_redact of `url`, in a buffer of its own (valid until the next call). */
static char redact_buf[256];

static const char *
redacted(const char *url)
{
    return config_url_redact(url, redact_buf, sizeof(redact_buf));
}

/* A password in the query string (libpq accepts ?password=) is redacted like the authority's. */
TEST(unit_config_url_redact_query_password)
{
    ASSERT_STREQ("postgres://u@db/sp?sslmode=disable&password=***&x=1",
                 redacted("postgres://u@db/sp?sslmode=disable&password=s3cret&x=1"));
    ASSERT(strstr(redact_buf, "s3cret") == NULL);
    ASSERT_STREQ("postgres://u:***@db/sp?password=***",
                 redacted("postgres://u:pw1@db/sp?password=pw2"));
    ASSERT(strstr(redact_buf, "pw1") == NULL && strstr(redact_buf, "pw2") == NULL);
    ASSERT_STREQ("postgres://db/sp?sslpassword=***&application_name=a",
                 redacted("postgres://db/sp?sslpassword=k&application_name=a"));
    ASSERT_STREQ("sqlite:/tmp/a.db", redacted("sqlite:/tmp/a.db"));
    /* '@' or ':' inside the query string do not make an authority password */
    ASSERT_STREQ("postgres://db/sp?options=a:b@c", redacted("postgres://db/sp?options=a:b@c"));
}

/* A libpq key=value string is not a URL the service takes, but it is printed (--print-config,
 * the error refusing it): its passwords are redacted too, quoted ones included. */
TEST(unit_config_url_redact_conninfo_password)
{
    ASSERT_STREQ("host=h password=*** dbname=sp", redacted("host=h password=kvpw dbname=sp"));
    ASSERT_STREQ("password = *** sslpassword=*** user=u",
                 redacted("password = 'a b\\' c' sslpassword=k user=u"));
    ASSERT(strstr(redact_buf, "a b") == NULL && strstr(redact_buf, "k ") == NULL);
    ASSERT_STREQ("dbname=sp", redacted("dbname=sp"));
}

TEST(unit_config_rate_limit)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", "--rate-limit-burst=20", NULL};

    clear_env();
    setenv("RATE_LIMIT_RPS", "2.5", 1);
    ASSERT_OK(config_load(&cfg, 2, argv, 1, &err));
    ASSERT(cfg.rate_limit_rps == 2.5);
    ASSERT_EQ(20, cfg.rate_limit_burst);
    config_cleanup(&cfg);

    /* a burst without a rate would look like a limit and be none */
    clear_env();
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 2, argv, 1, &err));
    ASSERT_STREQ("RATE_LIMIT_BURST", err.field);
    ASSERT_CONTAINS(err.msg, "config: RATE_LIMIT_BURST: needs RATE_LIMIT_RPS");
}

/* Every setting of the table has its row in README.md's settings table: the name, the flag and,
 * when it has one, the default. */
TEST(unit_config_readme_lists_every_setting)
{
    char *help = NULL, *readme = NULL;
    size_t help_len = 0, readme_len = 0;
    FILE *f = open_memstream(&help, &help_len);
    FILE *r = fopen(SP_SOURCE_DIR "/README.md", "r");
    int rows = 0;

    ASSERT(f != NULL && r != NULL);
    config_print_help(f);
    fclose(f);
    readme = malloc(1 << 20);
    readme_len = fread(readme, 1, (1 << 20) - 1, r);
    readme[readme_len] = '\0';
    fclose(r);
    for (char *line = help, *end; *line; line = end + (*end != '\0')) {
        char env[64], flag[64], def[128], want[300];

        end = line + strcspn(line, "\n");
        if (sscanf(line, " %63s %63s default %127s", env, flag, def) != 3)
            continue;
        if (strcmp(def, "(unset)") == 0)
            snprintf(want, sizeof(want), "| `%s` | `%s` | ", env, flag);
        else
            snprintf(want, sizeof(want), "| `%s` | `%s` | `%s` |", env, flag, def);
        if (strstr(readme, want) == NULL)
            t_fail(__FILE__, __LINE__, "README.md's settings table has no row %s", want);
        rows++;
    }
    ASSERT(rows > 50);
    free(readme);
    free(help);
}

TEST(unit_api_keys_check)
{
    struct api_keys k;

    api_keys_init(&k, "a,bb,key-3");
    ASSERT_EQ(3, k.n);
    ASSERT(api_keys_check(&k, "a"));
    ASSERT(api_keys_check(&k, "bb"));
    ASSERT(api_keys_check(&k, "key-3"));
    ASSERT(!api_keys_check(&k, "b"));
    ASSERT(!api_keys_check(&k, "a,bb"));
    ASSERT(!api_keys_check(&k, " a"));
    ASSERT(!api_keys_check(&k, ""));
    ASSERT(!api_keys_check(&k, NULL));
    api_keys_free(&k);
    api_keys_init(&k, NULL);
    ASSERT_EQ(0, k.n);
    ASSERT(!api_keys_check(&k, "a"));
    api_keys_free(&k);
}

TEST(unit_api_keys_find_names_the_key)
{
    struct api_keys k;

    api_keys_init(&k, "a,bb,key-3");
    ASSERT_EQ(0, api_keys_find(&k, "a"));
    ASSERT_EQ(1, api_keys_find(&k, "bb"));
    ASSERT_EQ(2, api_keys_find(&k, "key-3"));
    ASSERT_EQ(-1, api_keys_find(&k, "b"));
    ASSERT_EQ(-1, api_keys_find(&k, ""));
    ASSERT_EQ(-1, api_keys_find(&k, NULL));
    api_keys_free(&k);
}

static void
clear_email_env(void)
{
    static const char *const names[] = {
        "EMAIL_PROVIDER",  "SMTP_URL",   "SMTP_USERNAME",      "SMTP_PASSWORD",      "SMTP_CA_FILE",
        "SMTP_TIMEOUT_MS", "EMAIL_FROM", "EMAIL_REPLY_DOMAIN", "EMAIL_REPLY_SECRET",
    };
    clear_env();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

TEST(unit_config_email_provider)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_email_env();
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("mock", cfg.email_provider);
    ASSERT_EQ(30000, cfg.smtp_timeout_ms);
    config_cleanup(&cfg);

    setenv("EMAIL_PROVIDER", "sendgrid", 1);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("EMAIL_PROVIDER", err.field);

    setenv("EMAIL_PROVIDER", "smtp", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("SMTP_URL", err.field);
    setenv("SMTP_URL", "smtp://127.0.0.1:2525", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("EMAIL_FROM", err.field);
    setenv("EMAIL_FROM", "Sales <hello@salespad.test>", 1);
    setenv("SMTP_PASSWORD", "pw", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("SMTP_USERNAME", err.field);
    setenv("SMTP_USERNAME", "user", 1);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    config_cleanup(&cfg);
}

TEST(unit_config_print_hides_smtp_secrets)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};
    char text[8192];
    FILE *f;
    size_t n;

    clear_email_env();
    setenv("EMAIL_PROVIDER", "smtp", 1);
    setenv("SMTP_URL", "smtp://relayuser:urlpass@relay.example.com:587", 1);
    setenv("SMTP_USERNAME", "relayuser", 1);
    setenv("SMTP_PASSWORD", "hunter2", 1);
    setenv("EMAIL_FROM", "Sales <hello@salespad.test>", 1);
    setenv("EMAIL_REPLY_DOMAIN", "in.salespad.test", 1);
    setenv("EMAIL_REPLY_SECRET", "reply-secret-0123456789", 1);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    f = tmpfile();
    ASSERT(f != NULL);
    config_print(&cfg, f);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    ASSERT(strstr(text, "hunter2") == NULL);
    ASSERT(strstr(text, "urlpass") == NULL);
    ASSERT(strstr(text, "reply-secret") == NULL);
    ASSERT_CONTAINS(text, "SMTP_PASSWORD=(set, redacted)\n");
    ASSERT_CONTAINS(text, "EMAIL_REPLY_SECRET=(set, redacted)\n");
    ASSERT_CONTAINS(text, "SMTP_URL=smtp://relayuser:***@relay.example.com:587\n");
    config_cleanup(&cfg);
}

TEST(unit_config_cors_origins)
{
    static const char *const good[] = {"*", "https://app.example.com",
                                       "https://a.example, http://localhost:5173",
                                       "http://[::1]:8080,https://b.example"};
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};

    clear_env();
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT(cfg.cors_origins == NULL); /* off by default */
    config_cleanup(&cfg);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        setenv("CORS_ORIGINS", good[i], 1);
        ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
        ASSERT_STREQ(good[i], cfg.cors_origins);
        config_cleanup(&cfg);
    }
    expect_bad_env("CORS_ORIGINS", "app.example.com");
    expect_bad_env("CORS_ORIGINS", "https://app.example.com/");
    expect_bad_env("CORS_ORIGINS", "https://a.example,*");
    expect_bad_env("CORS_ORIGINS", "https://");
    expect_bad_env("CORS_ORIGINS", ",,");
    expect_bad_env("CORS_ORIGINS", "https://a b.example");
}

static void
clear_ai_env(void)
{
    static const char *const names[] = {"AI_PROVIDER", "AI_BASE_URL",   "AI_API_KEY",
                                        "AI_MODEL",    "AI_TIMEOUT_MS", "AI_SYSTEM_PROMPT",
                                        "AI_FALLBACK"};
    clear_email_env();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

TEST(unit_config_ai_provider)
{
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};
    char text[8192];
    FILE *f;
    size_t n;

    clear_ai_env();
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("mock", cfg.ai_provider);
    ASSERT_STREQ("https://api.openai.com/v1", cfg.ai_base_url);
    ASSERT_EQ(30000, cfg.ai_timeout_ms);
    ASSERT_STREQ("template", cfg.ai_fallback);
    ASSERT(cfg.ai_system_prompt == NULL); /* the built-in prompt */
    config_cleanup(&cfg);

    setenv("AI_PROVIDER", "claude", 1);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("AI_PROVIDER", err.field);
    setenv("AI_PROVIDER", "openai", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("AI_API_KEY", err.field);
    setenv("AI_API_KEY", "sk-very-secret", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("AI_MODEL", err.field);
    setenv("AI_MODEL", "gpt-4o-mini", 1);
    setenv("AI_FALLBACK", "silence", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("AI_FALLBACK", err.field);
    setenv("AI_FALLBACK", "none", 1);
    sp_error_clear(&err);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    f = tmpfile();
    ASSERT(f != NULL);
    config_print(&cfg, f);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    ASSERT(strstr(text, "sk-very-secret") == NULL);
    ASSERT_CONTAINS(text, "AI_API_KEY=(set, redacted)\n");
    config_cleanup(&cfg);
    clear_ai_env();
}

/* PUBLIC_URL (the unsubscribe links' base) needs UNSUBSCRIBE_SECRET, 16 characters or more,
 * which is never printed; a URL that could not sit inside <...> or an href is refused. */
TEST(unit_config_public_url_and_unsubscribe_secret)
{
    static const char *const bad_urls[] = {
        "salespad.example.com", "ftp://x.example.com", "https://",          "https:///path",
        "https://x.test/a b",   "https://x.test/?a=1", "https://x.test/#f", "https://x.test/\"",
        "https://x.test/<a>",   "https://x.test/a,b",
    };
    struct config cfg;
    struct sp_error err = {0};
    char *argv[] = {"salespad", NULL};
    char text[8192];
    FILE *f;
    size_t n;

    clear_email_env();
    unsetenv("PUBLIC_URL");
    unsetenv("UNSUBSCRIBE_SECRET");
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT(cfg.public_url == NULL && cfg.unsubscribe_secret == NULL);
    config_cleanup(&cfg);

    setenv("PUBLIC_URL", "https://salespad.example.com/", 1);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("UNSUBSCRIBE_SECRET", err.field);
    ASSERT_CONTAINS(err.msg, "needed with PUBLIC_URL");
    setenv("UNSUBSCRIBE_SECRET", "too-short", 1);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("UNSUBSCRIBE_SECRET", err.field);
    setenv("UNSUBSCRIBE_SECRET", "unsubscribe-secret-0123456789", 1);
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        setenv("PUBLIC_URL", bad_urls[i], 1);
        sp_error_clear(&err);
        ASSERT_EQ(SP_EINVAL, config_load(&cfg, 1, argv, 1, &err));
        ASSERT_STREQ("PUBLIC_URL", err.field);
    }
    setenv("PUBLIC_URL", "http://127.0.0.1:3000/salespad", 1);
    sp_error_clear(&err);
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    ASSERT_STREQ("http://127.0.0.1:3000/salespad", cfg.public_url);
    f = tmpfile();
    ASSERT(f != NULL);
    config_print(&cfg, f);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    ASSERT(strstr(text, "unsubscribe-secret-0123456789") == NULL);
    ASSERT_CONTAINS(text, "UNSUBSCRIBE_SECRET=(set, redacted)\n");
    ASSERT_CONTAINS(text, "PUBLIC_URL=http://127.0.0.1:3000/salespad\n");
    config_cleanup(&cfg);
    /* the secret alone is fine: links already sent keep working without PUBLIC_URL */
    unsetenv("PUBLIC_URL");
    ASSERT_OK(config_load(&cfg, 1, argv, 1, &err));
    config_cleanup(&cfg);
}
