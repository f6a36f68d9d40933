/* test_ai.c: the OpenAI-compatible generator's pure parts: the chat-completions request (model,
 * system message with the lead's name, the conversation's roles and order, texts cut at a
 * character boundary, size limit), the answer parser (choices[0].message.content, trimmed,
 * capped; bodies without one), the error classifier (429/5xx/408 retried with Retry-After,
 * 400/401/403/404 permanent, the provider's message kept, controls removed); the settings checks
 * of openai_content_new (messages never hold the key); and the stop-request check. */
#include "t.h"

#include "core/arena.h"
#include "features/leads/infrastructure/openai_content.h"

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
turn(json_t *req, size_t i, const char *field)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(req, "messages"), i), field));
}

static struct message
msg(enum message_direction d, const char *channel_message)
{
    struct message m;
    memset(&m, 0, sizeof(m));
    m.direction = d;
    m.channel_message = channel_message;
    return m;
}

TEST(unit_ai_request_roles_and_order)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    struct lead l = {.name = "Ana Silva", .phone = "+351912345678"};
    struct message ms[4];
    struct conversation conv = {ms, 4};
    const char *body = NULL;
    size_t len = 0;
    json_t *j;

    ms[0] = msg(MESSAGE_OUTBOUND, "{\"to\":\"+351912345678\",\"text\":\"Welcome!\"}");
    ms[1] = msg(MESSAGE_INBOUND, "{\"text\":\"How much?\"}");
    ms[2] = msg(MESSAGE_OUTBOUND, "{\"to\":\"+351912345678\"}"); /* no text: left out */
    ms[3] = msg(MESSAGE_INBOUND, "{\"text\":\"And a demo?\"}");
    ASSERT_OK(openai_request_build("gpt-test", "Be nice.", &l, CHANNEL_WHATSAPP,
                                   ms[3].channel_message, &conv, a, &body, &len, &err));
    j = parse(body, len);
    ASSERT_EQ(2, json_object_size(j));
    ASSERT_STREQ("gpt-test", json_string_value(json_object_get(j, "model")));
    ASSERT_EQ(4, json_array_size(json_object_get(j, "messages")));
    ASSERT_STREQ("system", turn(j, 0, "role"));
    ASSERT(strncmp(turn(j, 0, "content"), "Be nice.\n\n", 10) == 0);
    ASSERT_CONTAINS(turn(j, 0, "content"), "Ana Silva");
    ASSERT_CONTAINS(turn(j, 0, "content"), "WhatsApp");
    ASSERT_STREQ("assistant", turn(j, 1, "role"));
    ASSERT_STREQ("Welcome!", turn(j, 1, "content"));
    ASSERT_STREQ("user", turn(j, 2, "role"));
    ASSERT_STREQ("How much?", turn(j, 2, "content"));
    ASSERT_STREQ("user", turn(j, 3, "role"));
    ASSERT_STREQ("And a demo?", turn(j, 3, "content"));
    json_decref(j);
    arena_free(a);
}

TEST(unit_ai_request_email_bodies_and_no_history)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    struct lead l = {.name = "Bob", .email = "bob@example.com"};
    const char *body = NULL;
    size_t len = 0;
    json_t *j;

    /* without a conversation: the inbound message alone, an email's body */
    ASSERT_OK(openai_request_build("m", "p", &l, CHANNEL_EMAIL,
                                   "{\"subject\":\"Q\",\"body\":\"Line 1\\nLine \\\"2\\\"\"}", NULL,
                                   a, &body, &len, &err));
    j = parse(body, len);
    ASSERT_EQ(2, json_array_size(json_object_get(j, "messages")));
    ASSERT_CONTAINS(turn(j, 0, "content"), "email");
    ASSERT_STREQ("user", turn(j, 1, "role"));
    ASSERT_STREQ("Line 1\nLine \"2\"", turn(j, 1, "content"));
    json_decref(j);
    arena_free(a);
}

TEST(unit_ai_request_cuts_long_texts_at_a_character)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    struct lead l = {.name = "Bob", .phone = "+15550001"};
    size_t n = OPENAI_TURN_MAX + 100, len = 0;
    char *text = arena_alloc(a, n + 64);
    const char *body = NULL, *got;
    json_t *j;

    /* "é" is two bytes: an odd cut point falls inside one */
    strcpy(text, "{\"text\":\"x");
    for (size_t i = strlen(text); i < n; i += 2)
        memcpy(text + i, "\xc3\xa9", 2);
    strcpy(text + strlen(text), "\"}");
    ASSERT_OK(
        openai_request_build("m", "p", &l, CHANNEL_WHATSAPP, text, NULL, a, &body, &len, &err));
    j = parse(body, len); /* valid JSON: valid UTF-8 */
    got = turn(j, 1, "content");
    ASSERT(strlen(got) <= OPENAI_TURN_MAX);
    ASSERT(strlen(got) >= OPENAI_TURN_MAX - 1);
    json_decref(j);
    arena_free(a);
}

TEST(unit_ai_answer_text)
{
    struct arena *a = arena_new();
    char *big;
    const char *t;

    ASSERT_STREQ("Hello Ana!",
                 openai_answer_text("{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                    "\"assistant\",\"content\":\"\\n  Hello Ana!\\n\"}}]}",
                                    strlen("{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{"
                                           "\"role\":\"assistant\",\"content\":\"\\n  Hello "
                                           "Ana!\\n\"}}]}"),
                                    a));
    ASSERT(openai_answer_text("not json", 8, a) == NULL);
    ASSERT(openai_answer_text("{\"choices\":[]}", 14, a) == NULL);
    ASSERT(openai_answer_text("{\"choices\":[{\"message\":{\"content\":null}}]}", 42, a) == NULL);
    ASSERT(openai_answer_text("{\"choices\":[{\"message\":{\"content\":\"  \"}}]}", 42, a) == NULL);
    ASSERT(openai_answer_text(NULL, 0, a) == NULL);
    /* capped at OPENAI_ANSWER_MAX bytes */
    big = arena_alloc(a, OPENAI_ANSWER_MAX * 2 + 100);
    strcpy(big, "{\"choices\":[{\"message\":{\"content\":\"");
    memset(big + strlen(big), 'y', OPENAI_ANSWER_MAX * 2);
    strcat(big, "\"}}]}");
    t = openai_answer_text(big, strlen(big), a);
    ASSERT(t != NULL);
    ASSERT_EQ(OPENAI_ANSWER_MAX, (int)strlen(t));
    arena_free(a);
}

static int
classify(long status, const char *body, long retry_after_s, struct sp_error *err)
{
    memset(err, 0, sizeof(*err));
    return openai_error_classify(status, body, body ? strlen(body) : 0, retry_after_s, err);
}

TEST(unit_ai_classify_retryable)
{
    struct sp_error err;

    ASSERT_EQ(SP_EPROVIDER,
              classify(429,
                       "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}", 7,
                       &err));
    ASSERT_STREQ("ai: HTTP 429 Rate limit reached", err.msg);
    ASSERT_EQ(7000, err.retry_after_ms);
    ASSERT_EQ(SP_EPROVIDER, classify(500, "<html>oops</html>", 0, &err));
    ASSERT_STREQ("ai: HTTP 500", err.msg);
    ASSERT_EQ(0, err.retry_after_ms);
    ASSERT_EQ(SP_EPROVIDER, classify(503, NULL, 30, &err));
    ASSERT_EQ(30000, err.retry_after_ms);
    ASSERT_EQ(SP_EPROVIDER, classify(408, NULL, 0, &err));
    ASSERT_EQ(SP_EPROVIDER, classify(302, NULL, 0, &err));
    ASSERT(sp_err_retryable(SP_EPROVIDER));
}

TEST(unit_ai_classify_permanent)
{
    static const long statuses[] = {400, 401, 403, 404, 422};
    struct sp_error err;

    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        ASSERT_EQ(SP_EPERMANENT,
                  classify(statuses[i], "{\"error\":{\"message\":\"no\"}}", 9, &err));
        ASSERT_EQ(0, err.retry_after_ms); /* a Retry-After on a permanent error means nothing */
    }
    ASSERT(!sp_err_retryable(SP_EPERMANENT));
    /* the provider's message: controls replaced, capped */
    ASSERT_EQ(
        SP_EPERMANENT,
        classify(404, "{\"error\":{\"message\":\"The model `x`\\ndoes not exist\"}}", 0, &err));
    ASSERT_STREQ("ai: HTTP 404 The model `x` does not exist", err.msg);
    ASSERT_EQ(SP_EPERMANENT, classify(400, "{\"error\":\"bad\"}", 0, &err));
    ASSERT_STREQ("ai: HTTP 400 bad", err.msg);
}

TEST(unit_ai_content_new_checks_settings)
{
    struct openai_content_config cfg = {"https://api.example.com/v1/", "sk-SECRET", "m", "p", 1000};
    struct openai_content *g = NULL;
    struct sp_error err = {0};

    ASSERT_OK(openai_content_new(&cfg, &g, &err));
    ASSERT(openai_content_base(g) != NULL);
    ASSERT_STREQ("openai", openai_content_base(g)->ops->name);
    openai_content_free(g);
    openai_content_free(NULL);

    cfg.base_url = "http://api.example.com/v1"; /* clear text off loopback */
    ASSERT_EQ(SP_EINVAL, openai_content_new(&cfg, &g, &err));
    ASSERT_STREQ("AI_BASE_URL", err.field);
    cfg.base_url = "http://127.0.0.1:8080/v1";
    sp_error_clear(&err);
    ASSERT_OK(openai_content_new(&cfg, &g, &err));
    openai_content_free(g);

    cfg.api_key = "sk bad";
    ASSERT_EQ(SP_EINVAL, openai_content_new(&cfg, &g, &err));
    ASSERT_STREQ("AI_API_KEY", err.field);
    ASSERT(strstr(err.msg, "sk bad") == NULL);
    sp_error_clear(&err);
    cfg.api_key = "sk-SECRET";
    cfg.model = "";
    ASSERT_EQ(SP_EINVAL, openai_content_new(&cfg, &g, &err));
    ASSERT_STREQ("AI_MODEL", err.field);
    sp_error_clear(&err);
    cfg.model = "m";
    cfg.system_prompt = "";
    ASSERT_EQ(SP_EINVAL, openai_content_new(&cfg, &g, &err));
    ASSERT_STREQ("AI_SYSTEM_PROMPT", err.field);
}

TEST(unit_ai_stop_requested)
{
    static const char *const yes[] = {"STOP",
                                      "stop",
                                      "Stop.",
                                      "  stop please",
                                      "Unsubscribe",
                                      "unsubscribe me from this list",
                                      "Please remove me",
                                      "please, STOP!",
                                      "Opt-out",
                                      "opt out",
                                      "Do not contact me again",
                                      "don't contact me",
                                      "leave me alone",
                                      "END",
                                      "cancel",
                                      "Quit!",
                                      NULL};
    static const char *const no[] = {"Can we stop by your office on Friday?",
                                     "stopwatch pricing?",
                                     "End of the month works for a demo",
                                     "Cancel the call, let's meet Tuesday instead",
                                     "I never said stop",
                                     "unstoppable!",
                                     "How much is it?",
                                     "",
                                     NULL};

    for (int i = 0; yes[i]; i++)
        if (!reply_stop_requested(yes[i]))
            t_fail(__FILE__, __LINE__, "not a stop request: \"%s\"", yes[i]);
    for (int i = 0; no[i]; i++)
        if (reply_stop_requested(no[i]))
            t_fail(__FILE__, __LINE__, "taken for a stop request: \"%s\"", no[i]);
    ASSERT(!reply_stop_requested(NULL));
}
