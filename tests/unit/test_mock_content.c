/* test_mock_content.c: the mock AI content generator: welcome messages and intent-driven
 * answers, their addresses (seed defect #6) and their email subjects. */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_json.h"
#include "features/leads/domain/content_gen.h"
#include "features/leads/infrastructure/mock_content.h"

#include <jansson.h>

static const struct lead both = {
    .id = "2728542f-1069-401c-a54f-4ab8a3a46a06",
    .name = "John Doe",
    .email = "john@example.com",
    .phone = "+1234567890",
};

/* Parses a generated channel message; caller json_decref()s. */
static json_t *
parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (v == NULL || !json_is_object(v))
        t_fail(__FILE__, __LINE__, "not a JSON object: %s (%s)", text, jerr.text);
    return v;
}

static const char *
field(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static int
starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

TEST(unit_content_welcome_email)
{
    struct arena *a = arena_new();
    struct generated g = {0};
    struct sp_error err = {0};
    json_t *m;

    ASSERT_OK(content_gen_welcome(mock_content_gen(), &both, CHANNEL_EMAIL, a, &g, &err));
    ASSERT_STREQ("john@example.com", g.to);
    m = parse(g.channel_message);
    ASSERT_STREQ("john@example.com", field(m, "to"));
    ASSERT_STREQ("Welcome, John Doe!", field(m, "subject"));
    ASSERT(starts_with(field(m, "body"), "Hi John Doe,\n\n"));
    ASSERT(json_object_get(m, "text") == NULL);
    json_decref(m);
    arena_free(a);
}

TEST(unit_content_welcome_whatsapp)
{
    struct arena *a = arena_new();
    struct generated g = {0};
    struct sp_error err = {0};
    json_t *m;

    ASSERT_OK(content_gen_welcome(mock_content_gen(), &both, CHANNEL_WHATSAPP, a, &g, &err));
    ASSERT_STREQ("+1234567890", g.to);
    m = parse(g.channel_message);
    ASSERT_STREQ("+1234567890", field(m, "to"));
    ASSERT(starts_with(field(m, "text"), "Hi John Doe! "));
    ASSERT(json_object_get(m, "subject") == NULL);
    json_decref(m);
    arena_free(a);
}

TEST(unit_content_welcome_escapes_the_name)
{
    struct arena *a = arena_new();
    struct lead l = {.name = "Ann \"Q\" O\\Neil", .email = "ann@example.com"};
    struct generated g = {0};
    struct sp_error err = {0};
    json_t *m;

    ASSERT_OK(content_gen_welcome(mock_content_gen(), &l, CHANNEL_EMAIL, a, &g, &err));
    m = parse(g.channel_message);
    ASSERT_STREQ("Welcome, Ann \"Q\" O\\Neil!", field(m, "subject"));
    json_decref(m);
    arena_free(a);
}

TEST(unit_content_welcome_without_address_is_einval)
{
    struct arena *a = arena_new();
    struct lead phone_only = {.name = "Ana", .phone = "+351912345678"};
    struct lead email_only = {.name = "Ana", .email = "ana@example.com"};
    struct generated g = {0};
    struct sp_error err = {0};

    ASSERT_EQ(SP_EINVAL,
              content_gen_welcome(mock_content_gen(), &phone_only, CHANNEL_EMAIL, a, &g, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL,
              content_gen_welcome(mock_content_gen(), &email_only, CHANNEL_WHATSAPP, a, &g, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL,
              content_gen_welcome(mock_content_gen(), &email_only, CHANNEL_LINKEDIN, a, &g, &err));
    arena_free(a);
}

TEST(unit_content_whatsapp_answer_goes_to_the_phone)
{
    /* seed defect #6: the NestJS build addressed this answer to the email */
    struct arena *a = arena_new();
    struct generated g = {0};
    struct sp_error err = {0};
    json_t *m;

    ASSERT_OK(content_gen_answer(mock_content_gen(), &both, CHANNEL_WHATSAPP,
                                 "{\"from\":\"+1999\",\"text\":\"how much is it?\"}", a, &g, &err));
    ASSERT_STREQ("+1234567890", g.to);
    m = parse(g.channel_message);
    ASSERT_STREQ("+1234567890", field(m, "to"));
    ASSERT(starts_with(field(m, "text"), "Hi John Doe! "));
    ASSERT_STREQ("pricing", field(m, "intent"));
    json_decref(m);
    arena_free(a);
}

TEST(unit_content_email_answer_subject)
{
    struct arena *a = arena_new();
    struct generated g = {0};
    struct sp_error err = {0};
    json_t *m;

    ASSERT_OK(content_gen_answer(mock_content_gen(), &both, CHANNEL_EMAIL,
                                 "{\"from\":\"john@example.com\",\"subject\":\"Question\","
                                 "\"body\":\"Can we book a demo?\"}",
                                 a, &g, &err));
    ASSERT_STREQ("john@example.com", g.to);
    m = parse(g.channel_message);
    ASSERT_STREQ("RE: Question", field(m, "subject"));
    ASSERT(starts_with(field(m, "body"), "Hi John Doe,\n\n"));
    ASSERT_STREQ("demo", field(m, "intent"));
    json_decref(m);
    arena_free(a);
}

TEST(unit_content_email_answer_keeps_one_re)
{
    static const char *const inbound[] = {
        "{\"subject\":\"RE: Welcome, John Doe!\",\"body\":\"hi\"}",
        "{\"subject\":\"Re: re:RE:  Welcome, John Doe!\",\"body\":\"hi\"}",
        "{\"body\":\"hi\"}", /* no subject: the thread is the welcome email */
        "{\"subject\":\"RE: \",\"body\":\"hi\"}",
    };
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(inbound) / sizeof(inbound[0]); i++) {
        struct generated g = {0};
        struct sp_error err = {0};
        json_t *m;
        ASSERT_OK(
            content_gen_answer(mock_content_gen(), &both, CHANNEL_EMAIL, inbound[i], a, &g, &err));
        m = parse(g.channel_message);
        ASSERT_STREQ("RE: Welcome, John Doe!", field(m, "subject"));
        json_decref(m);
    }
    arena_free(a);
}

TEST(unit_content_answer_text_depends_on_intent)
{
    static const char *const inbound[] = {
        "{\"text\":\"what does it cost\"}",
        "{\"text\":\"schedule a demo\"}",
        "{\"text\":\"not interested\"}",
        "{\"text\":\"STOP\"}",
        "{\"text\":\"hello\"}",
    };
    static const char *const intents[] = {"pricing", "demo", "not_interested", "stop", "other"};
    char texts[5][1024];
    struct arena *a = arena_new();

    for (int i = 0; i < 5; i++) {
        struct generated g = {0};
        struct sp_error err = {0};
        json_t *m;
        ASSERT_OK(content_gen_answer(mock_content_gen(), &both, CHANNEL_WHATSAPP, inbound[i], a, &g,
                                     &err));
        m = parse(g.channel_message);
        ASSERT_STREQ(intents[i], field(m, "intent"));
        snprintf(texts[i], sizeof(texts[i]), "%s", field(m, "text"));
        json_decref(m);
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (strcmp(texts[i], texts[j]) == 0)
                t_fail(__FILE__, __LINE__, "intents %s and %s got the same answer", intents[i],
                       intents[j]);
    arena_free(a);
}

/* Hardening #1: the generator never addresses anything read from the prospect's message (the
 * use case makes a valid "from" the lead's address first, when the lead has none). */
TEST(unit_hostile_h1_content_answer_never_goes_to_the_inbound_from)
{
    struct arena *a = arena_new();
    struct lead phone_only = {.name = "Ana", .phone = "+351912345678"};
    struct generated g = {0};
    struct sp_error err = {0};

    ASSERT_EQ(SP_EINVAL, content_gen_answer(mock_content_gen(), &phone_only, CHANNEL_EMAIL,
                                            "{\"from\":\"victim@example.org\",\"subject\":\"Hi\","
                                            "\"body\":\"price?\"}",
                                            a, &g, &err));
    ASSERT_OK(content_gen_answer(mock_content_gen(), &both, CHANNEL_EMAIL,
                                 "{\"from\":\"victim@example.org\",\"body\":\"price?\"}", a, &g,
                                 &err));
    ASSERT_STREQ("john@example.com", g.to);
    arena_free(a);
}

/* Hardening #1: no line break from the prospect's subject (or an old row's name) reaches the
 * answer's subject header. */
TEST(unit_hostile_h1_content_subject_is_one_line)
{
    struct arena *a = arena_new();
    struct lead l = {.name = "Ana\r\nBcc: x@evil.com", .email = "ana@example.com"};
    struct generated g = {0};
    struct sp_error err = {0};

    ASSERT_OK(content_gen_answer(mock_content_gen(), &l, CHANNEL_EMAIL,
                                 "{\"subject\":\"Hi\\r\\nBcc: x@evil.com\\u2028\\u0085\","
                                 "\"body\":\"price?\"}",
                                 a, &g, &err));
    ASSERT_STREQ("RE: Hi  Bcc: x@evil.com  ", t_json_str(g.channel_message, "subject"));
    ASSERT_OK(content_gen_welcome(mock_content_gen(), &l, CHANNEL_EMAIL, a, &g, &err));
    ASSERT_STREQ("Welcome, Ana  Bcc: x@evil.com!", t_json_str(g.channel_message, "subject"));
    arena_free(a);
}

TEST(unit_content_answer_without_any_address_is_einval)
{
    struct arena *a = arena_new();
    struct lead phone_only = {.name = "Ana", .phone = "+351912345678"};
    struct generated g = {0};
    struct sp_error err = {0};

    ASSERT_EQ(SP_EINVAL,
              content_gen_answer(mock_content_gen(), &phone_only, CHANNEL_EMAIL,
                                 "{\"subject\":\"Hi\",\"body\":\"price?\"}", a, &g, &err));
    ASSERT_STREQ("messageContent", err.field);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, content_gen_answer(mock_content_gen(), &phone_only, CHANNEL_EMAIL,
                                            "{\"from\":\"\",\"body\":\"x\"}", a, &g, &err));
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, content_gen_answer(mock_content_gen(), &phone_only, CHANNEL_EMAIL,
                                            "not json", a, &g, &err));
    arena_free(a);
}
