/* test_whatsapp.c: the WhatsApp Cloud API sender's pure parts: the request body (template and
 * text shapes, the phone's digits, refusals), the 24-hour window, the answer's wamid and the
 * error classifier (throttling, Retry-After, transient, permanent, refused token, bodies that
 * are not Meta's JSON); plus the settings checks of whatsapp_sender_new, whose messages never
 * hold the token, and a manual message held to the window. Bodies are parsed back with jansson,
 * so key order does not matter. */
#include "t.h"

#include "core/arena.h"
#include "features/messaging/domain/sender.h"
#include "features/messaging/infrastructure/whatsapp_sender.h"

#include <jansson.h>
#include <string.h>

static json_t *
parse(const char *s, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(s, len, 0, &jerr);
    ASSERT(j != NULL);
    return j;
}

static const char *
str_at(json_t *o, const char *path)
{
    char buf[128];
    const char *p = path;
    json_t *cur = o;

    while (*p && cur) {
        size_t n = strcspn(p, ".");
        memcpy(buf, p, n);
        buf[n] = '\0';
        if (buf[0] >= '0' && buf[0] <= '9')
            cur = json_array_get(cur, (size_t)(buf[0] - '0'));
        else
            cur = json_object_get(cur, buf);
        p += n;
        if (*p == '.')
            p++;
    }
    return json_string_value(cur);
}

TEST(unit_whatsapp_template_request_shape)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    struct whatsapp_message m = {"+351 912-345 (678)", "welcome_lead", "en_US", "Ana \"Ñ\"", NULL};
    const char *body = NULL;
    size_t len = 0;
    json_t *j;

    ASSERT_OK(whatsapp_request_build(&m, a, &body, &len, &err));
    j = parse(body, len);
    ASSERT_EQ(5, json_object_size(j));
    ASSERT_STREQ("whatsapp", str_at(j, "messaging_product"));
    ASSERT_STREQ("individual", str_at(j, "recipient_type"));
    ASSERT_STREQ("351912345678", str_at(j, "to"));
    ASSERT_STREQ("template", str_at(j, "type"));
    ASSERT_EQ(3, json_object_size(json_object_get(j, "template")));
    ASSERT_STREQ("welcome_lead", str_at(j, "template.name"));
    ASSERT_STREQ("en_US", str_at(j, "template.language.code"));
    ASSERT_EQ(1, json_array_size(json_object_get(json_object_get(j, "template"), "components")));
    ASSERT_STREQ("body", str_at(j, "template.components.0.type"));
    ASSERT_STREQ("text", str_at(j, "template.components.0.parameters.0.type"));
    ASSERT_STREQ("Ana \"Ñ\"", str_at(j, "template.components.0.parameters.0.text"));
    json_decref(j);

    /* Meta refuses a parameter with more than four spaces in a row: runs become one */
    m.template_param = "  Ana      Maria  ";
    ASSERT_OK(whatsapp_request_build(&m, a, &body, &len, &err));
    j = parse(body, len);
    ASSERT_STREQ("Ana Maria", str_at(j, "template.components.0.parameters.0.text"));
    json_decref(j);
    arena_free(a);
}

TEST(unit_whatsapp_text_request_shape)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    struct whatsapp_message m = {"+44 7700 900123", NULL, NULL, NULL, "Hi Ana!\nSee https://x.y"};
    const char *body = NULL;
    size_t len = 0;
    json_t *j;

    ASSERT_OK(whatsapp_request_build(&m, a, &body, &len, &err));
    j = parse(body, len);
    ASSERT_EQ(5, json_object_size(j));
    ASSERT_STREQ("447700900123", str_at(j, "to"));
    ASSERT_STREQ("text", str_at(j, "type"));
    ASSERT_STREQ("Hi Ana!\nSee https://x.y", str_at(j, "text.body"));
    ASSERT(json_is_false(json_object_get(json_object_get(j, "text"), "preview_url")));
    ASSERT(json_object_get(j, "template") == NULL);
    json_decref(j);
    arena_free(a);
}

TEST(unit_whatsapp_request_refuses_bad_phone_or_empty_message)
{
    struct arena *a = arena_new();
    const char *body;
    size_t len;
    struct whatsapp_message none = {"call me", NULL, NULL, NULL, "hi"};
    struct whatsapp_message longp = {"+1234567890123456", NULL, NULL, NULL, "hi"};
    struct whatsapp_message empty = {"+351912345678", NULL, NULL, NULL, NULL};
    struct sp_error e1 = {0}, e2 = {0}, e3 = {0};

    ASSERT_EQ(SP_EPERMANENT, whatsapp_request_build(&none, a, &body, &len, &e1));
    ASSERT_CONTAINS(e1.msg, "not a number");
    ASSERT_EQ(SP_EPERMANENT, whatsapp_request_build(&longp, a, &body, &len, &e2));
    ASSERT_CONTAINS(e2.msg, "15 digits");
    ASSERT_EQ(SP_EPERMANENT, whatsapp_request_build(&empty, a, &body, &len, &e3));
    arena_free(a);
}

TEST(unit_whatsapp_window)
{
    int64_t now = 1795790265686LL;

    ASSERT_EQ(0, whatsapp_window_open(0, now)); /* never wrote */
    ASSERT_EQ(1, whatsapp_window_open(now - 1000, now));
    ASSERT_EQ(1, whatsapp_window_open(now - WHATSAPP_WINDOW_MS + 1, now));
    ASSERT_EQ(0, whatsapp_window_open(now - WHATSAPP_WINDOW_MS, now));
    ASSERT_EQ(0, whatsapp_window_open(now - 3 * WHATSAPP_WINDOW_MS, now));
}

TEST(unit_whatsapp_reply_id)
{
    struct arena *a = arena_new();
    const char *ok =
        "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"351912345678\","
        "\"wa_id\":\"351912345678\"}],\"messages\":[{\"id\":\"wamid.HBgM=\"}]}";

    ASSERT_STREQ("wamid.HBgM=", whatsapp_reply_id(ok, strlen(ok), a));
    ASSERT(whatsapp_reply_id("{\"messages\":[]}", 15, a) == NULL);
    ASSERT(whatsapp_reply_id("{\"messages\":[{\"id\":7}]}", 23, a) == NULL);
    ASSERT(whatsapp_reply_id("not json", 8, a) == NULL);
    ASSERT(whatsapp_reply_id(NULL, 0, a) == NULL);
    arena_free(a);
}

static const char *
meta_error(struct arena *a, long code, const char *msg)
{
    return arena_printf(a,
                        "{\"error\":{\"message\":\"%s\",\"type\":\"OAuthException\",\"code\":%ld,"
                        "\"error_subcode\":2494010,\"fbtrace_id\":\"AbCdEf\"}}",
                        msg, code);
}

TEST(unit_whatsapp_classify_throttling_retries_with_retry_after)
{
    static const long codes[] = {4, 80007, 130429, 131056};
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        struct sp_error err = {0};
        const char *b = meta_error(a, codes[i], "Rate limit hit");
        int tok = -1;
        ASSERT_EQ(SP_EPROVIDER, whatsapp_error_classify(400, b, strlen(b), 7, &tok, &err));
        ASSERT_EQ(0, tok);
        ASSERT_EQ(7000, err.retry_after_ms);
        ASSERT_CONTAINS(err.msg, arena_printf(a, "whatsapp: %ld Rate limit hit", codes[i]));
    }
    {
        /* a bare 429 without a Cloud API body, and no Retry-After: the job's backoff */
        struct sp_error err = {0};
        int tok;
        ASSERT_EQ(SP_EPROVIDER, whatsapp_error_classify(429, "slow down", 9, 0, &tok, &err));
        ASSERT_EQ(0, err.retry_after_ms);
        ASSERT_CONTAINS(err.msg, "HTTP 429");
    }
    arena_free(a);
}

TEST(unit_whatsapp_classify_server_errors_retry)
{
    struct arena *a = arena_new();
    struct sp_error e1 = {0}, e2 = {0}, e3 = {0};
    const char *b = meta_error(a, 131000, "Something went wrong");
    int tok;

    ASSERT_EQ(SP_EPROVIDER, whatsapp_error_classify(503, "<html>", 6, 0, &tok, &e1));
    ASSERT_STREQ("whatsapp: HTTP 503 without a Cloud API error", e1.msg);
    ASSERT_EQ(SP_EPROVIDER, whatsapp_error_classify(500, b, strlen(b), 0, &tok, &e2));
    ASSERT_STREQ("whatsapp: 131000 Something went wrong (HTTP 500)", e2.msg);
    /* a Retry-After on a non-throttling error is not taken (only throttling carries it) */
    ASSERT_EQ(SP_EPROVIDER, whatsapp_error_classify(502, NULL, 0, 9, &tok, &e3));
    ASSERT_EQ(0, tok);
    arena_free(a);
}

TEST(unit_whatsapp_classify_permanent_errors)
{
    static const struct {
        long status, code;
    } cases[] = {{400, 131047}, {400, 131026}, {400, 100}, {404, 132001}};
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sp_error err = {0};
        const char *b = meta_error(a, cases[i].code, "Re-engagement\\nmessage");
        int tok = -1;
        ASSERT_EQ(SP_EPERMANENT,
                  whatsapp_error_classify(cases[i].status, b, strlen(b), 30, &tok, &err));
        ASSERT_EQ(0, tok);
        ASSERT_EQ(0, err.retry_after_ms);
        /* Meta's message on one line */
        ASSERT_STREQ(arena_printf(a, "whatsapp: %ld Re-engagement message (HTTP %ld)",
                                  cases[i].code, cases[i].status),
                     err.msg);
    }
    arena_free(a);
}

TEST(unit_whatsapp_classify_token_refused)
{
    struct arena *a = arena_new();
    struct sp_error e1 = {0}, e2 = {0};
    const char *b = meta_error(a, 190, "Error validating access token");
    int tok = 0;

    ASSERT_EQ(SP_EPERMANENT, whatsapp_error_classify(401, b, strlen(b), 0, &tok, &e1));
    ASSERT_EQ(1, tok);
    ASSERT_STREQ("whatsapp: 190 Error validating access token (HTTP 401)", e1.msg);
    tok = 0;
    ASSERT_EQ(SP_EPERMANENT, whatsapp_error_classify(401, "", 0, 0, &tok, &e2));
    ASSERT_EQ(1, tok);
    arena_free(a);
}

TEST(unit_whatsapp_classify_long_message_is_capped)
{
    struct arena *a = arena_new();
    char big[600];
    struct sp_error err = {0};
    const char *b;
    int tok;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    b = meta_error(a, 100, big);
    ASSERT_EQ(SP_EPERMANENT, whatsapp_error_classify(400, b, strlen(b), 0, &tok, &err));
    ASSERT(strlen(err.msg) < 160);
    ASSERT_CONTAINS(err.msg, "(HTTP 400)");
    arena_free(a);
}

static struct whatsapp_sender_config
good_config(void)
{
    struct whatsapp_sender_config c = {"https://graph.facebook.com/v21.0",
                                       "106540352242922",
                                       "EAAG-secret-token",
                                       "welcome_lead",
                                       "en_US",
                                       30000};
    return c;
}

TEST(unit_whatsapp_sender_new_checks_settings)
{
    struct whatsapp_sender *s = NULL;
    struct whatsapp_sender_config c = good_config();
    struct {
        const char **slot;
        const char *value, *field;
    } bad[] = {
        {&c.api_url, "http://graph.facebook.com/v21.0", "WHATSAPP_API_URL"},
        {&c.api_url, "ftp://x", "WHATSAPP_API_URL"},
        {&c.phone_number_id, "12/../34", "WHATSAPP_PHONE_NUMBER_ID"},
        {&c.token, "EAAG secret\r\nX-Evil: 1", "WHATSAPP_TOKEN"},
        {&c.token, "", "WHATSAPP_TOKEN"},
        {&c.welcome_template, "Welcome Lead", "WHATSAPP_WELCOME_TEMPLATE"},
        {&c.template_lang, "en-US;", "WHATSAPP_TEMPLATE_LANG"},
    };

    ASSERT_OK(whatsapp_sender_new(&c, &s, NULL));
    whatsapp_sender_free(s);
    c.api_url = "http://127.0.0.1:8080/v21.0/"; /* loopback http: tests */
    ASSERT_OK(whatsapp_sender_new(&c, &s, NULL));
    whatsapp_sender_free(s);
    whatsapp_sender_free(NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sp_error err = {0};
        c = good_config();
        *bad[i].slot = bad[i].value;
        s = NULL;
        ASSERT_EQ(SP_EINVAL, whatsapp_sender_new(&c, &s, &err));
        ASSERT(s == NULL);
        ASSERT_STREQ(bad[i].field, err.field);
        ASSERT(strstr(err.msg, "secret") == NULL); /* the token is never in the message */
    }
}

/* An operator's manual message is free text: only inside the 24-hour window; past it (or when
 * the lead never wrote) it fails at once, permanently and clearly, without calling Meta (the
 * API URL here is unreachable: a call would fail with EPROVIDER instead). */
TEST(unit_whatsapp_manual_message_needs_the_window)
{
    struct whatsapp_sender *s = NULL;
    struct whatsapp_sender_config c = good_config();
    struct arena *a = arena_new();
    struct send_request req;
    const char *id = NULL;

    c.api_url = "http://127.0.0.1:1/v21.0";
    ASSERT_OK(whatsapp_sender_new(&c, &s, NULL));
    memset(&req, 0, sizeof(req));
    req.channel = CHANNEL_WHATSAPP;
    req.to = "+351912345678";
    req.lead_id = "2728542f-1069-401c-a54f-4ab8a3a46a06";
    req.message_id = req.idempotency_key = "0193a9c4-0000-7000-8000-000000000001";
    req.attempt = 1;
    req.kind = MESSAGE_KIND_MANUAL;
    req.channel_message = "{\"to\":\"+351912345678\",\"text\":\"See you Friday\"}";
    {
        struct sp_error err = {0};
        req.last_inbound_at = 0; /* never wrote */
        ASSERT_EQ(SP_EPERMANENT, sender_send(whatsapp_sender_base(s), &req, a, &id, &err));
        ASSERT_STREQ("whatsapp: outside the 24-hour window: a template is required", err.msg);
    }
    {
        struct sp_error err = {0};
        req.last_inbound_at = 1000; /* 1970: long past */
        ASSERT_EQ(SP_EPERMANENT, sender_send(whatsapp_sender_base(s), &req, a, &id, &err));
        ASSERT_CONTAINS(err.msg, "24-hour window");
    }
    {
        struct sp_error err = {0};
        req.last_inbound_at = INT64_MAX / 2; /* after now, so inside it: the text is read */
        req.channel_message = "{\"to\":\"+351912345678\"}";
        ASSERT_EQ(SP_EPERMANENT, sender_send(whatsapp_sender_base(s), &req, a, &id, &err));
        ASSERT_STREQ("whatsapp: the message has no text", err.msg);
    }
    whatsapp_sender_free(s);
    arena_free(a);
}
