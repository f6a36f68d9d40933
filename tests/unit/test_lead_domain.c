/* test_lead_domain.c: the leads domain rules: statuses, channels, addresses, email syntax,
 * reply intents and the name tables. Pure functions, no fakes. */
#include "t.h"

#include "core/arena.h"
#include "core/queue.h"
#include "features/leads/domain/lead.h"

TEST(unit_domain_status_after_sent)
{
    ASSERT_EQ(LEAD_STATUS_CONTACTED, lead_status_after_sent(LEAD_STATUS_NEW));
    ASSERT_EQ(LEAD_STATUS_CONTACTED, lead_status_after_sent(LEAD_STATUS_CONTACTED));
    /* a sent message never moves a lead backwards */
    ASSERT_EQ(LEAD_STATUS_REPLIED, lead_status_after_sent(LEAD_STATUS_REPLIED));
    ASSERT_EQ(LEAD_STATUS_CONVERTED, lead_status_after_sent(LEAD_STATUS_CONVERTED));
    ASSERT_EQ(LEAD_STATUS_DEAD, lead_status_after_sent(LEAD_STATUS_DEAD));
}

TEST(unit_domain_status_after_reply)
{
    ASSERT_EQ(LEAD_STATUS_REPLIED, lead_status_after_reply(LEAD_STATUS_NEW));
    ASSERT_EQ(LEAD_STATUS_REPLIED, lead_status_after_reply(LEAD_STATUS_CONTACTED));
    ASSERT_EQ(LEAD_STATUS_REPLIED, lead_status_after_reply(LEAD_STATUS_REPLIED));
    ASSERT_EQ(LEAD_STATUS_REPLIED, lead_status_after_reply(LEAD_STATUS_CONVERTED));
    ASSERT_EQ(LEAD_STATUS_REPLIED, lead_status_after_reply(LEAD_STATUS_DEAD)); /* revives */
}

TEST(unit_domain_welcome_channels)
{
    struct lead l = {.name = "Ana"};
    enum channel ch[2] = {CHANNEL_ADS, CHANNEL_ADS};

    l.email = "ana@example.com";
    ASSERT_EQ(1, lead_welcome_channels(&l, ch));
    ASSERT_EQ(CHANNEL_EMAIL, ch[0]);

    l.email = NULL;
    l.phone = "+351912345678";
    ASSERT_EQ(1, lead_welcome_channels(&l, ch));
    ASSERT_EQ(CHANNEL_WHATSAPP, ch[0]);

    l.email = "ana@example.com";
    ASSERT_EQ(2, lead_welcome_channels(&l, ch));
    ASSERT_EQ(CHANNEL_EMAIL, ch[0]); /* email first */
    ASSERT_EQ(CHANNEL_WHATSAPP, ch[1]);

    l.email = NULL;
    l.phone = NULL;
    ASSERT_EQ(0, lead_welcome_channels(&l, ch));
}

TEST(unit_domain_address_for_channel)
{
    struct lead l = {.name = "Ana", .email = "ana@example.com", .phone = "+351912345678"};

    ASSERT_STREQ("ana@example.com", lead_address_for(&l, CHANNEL_EMAIL));
    ASSERT_STREQ("+351912345678", lead_address_for(&l, CHANNEL_WHATSAPP));
    ASSERT(lead_address_for(&l, CHANNEL_LINKEDIN) == NULL);
    ASSERT(lead_address_for(&l, CHANNEL_VOICE) == NULL);
    ASSERT(lead_address_for(&l, CHANNEL_ADS) == NULL);
    l.phone = NULL;
    ASSERT(lead_address_for(&l, CHANNEL_WHATSAPP) == NULL);
    l.email = NULL;
    ASSERT(lead_address_for(&l, CHANNEL_EMAIL) == NULL);
}

static int
email_ok(const char *s)
{
    return lead_email_valid(s, strlen(s));
}

TEST(unit_domain_email_valid_accepts_addresses)
{
    ASSERT(email_ok("john@example.com"));
    ASSERT(email_ok("a@b.co"));
    ASSERT(email_ok("first.last+tag@mail.example.co.uk"));
    ASSERT(email_ok("o'brien_x-y@sub-domain.example.org"));
    ASSERT(email_ok("JOHN@EXAMPLE.COM"));
}

TEST(unit_domain_email_valid_rejects_non_addresses)
{
    ASSERT(!email_ok(""));
    ASSERT(!email_ok("a@"));
    ASSERT(!email_ok("john"));
    ASSERT(!email_ok("john@example")); /* no dot in the domain */
    ASSERT(!email_ok("@example.com")); /* empty local part */
    ASSERT(!email_ok("john@"));
    ASSERT(!email_ok("john@@example.com"));
    ASSERT(!email_ok("jo@hn@example.com"));
    ASSERT(!email_ok("jo hn@example.com"));
    ASSERT(!email_ok("john@exa mple.com"));
    ASSERT(!email_ok(" john@example.com"));
    ASSERT(!email_ok("john@example.com "));
    ASSERT(!email_ok("john@example..com"));
    ASSERT(!email_ok("john@.example.com"));
    ASSERT(!email_ok("john@example.com."));
    ASSERT(!email_ok("john@example.com-"));
    ASSERT(!email_ok(".john@example.com"));
    ASSERT(!email_ok("john.@example.com"));
    ASSERT(!email_ok("jo..hn@example.com"));
    ASSERT(!email_ok("<john@example.com>"));
    ASSERT(!email_ok("john,doe@example.com"));
    ASSERT(!email_ok("john\"@example.com"));
    ASSERT(!email_ok("john@exam_ple.com"));
    ASSERT(!email_ok("john\t@example.com"));
    ASSERT(!lead_email_valid("john@example.com\0x", 18)); /* embedded NUL */
}

/* A search's email prefix (GET /leads?q=) is compared only when some valid address could start
 * with it: every prefix of a valid address passes, anything with a byte no address holds does
 * not. */
TEST(unit_domain_email_prefix_possible)
{
    static const char *const valid[] = {"john.doe+tag@sub.example.co.uk", "a_b-c@x-y.io"};

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        char prefix[64];
        ASSERT(lead_email_valid(valid[i], strlen(valid[i])));
        for (size_t n = 1; n <= strlen(valid[i]); n++) {
            snprintf(prefix, sizeof(prefix), "%.*s", (int)n, valid[i]);
            ASSERT(lead_email_prefix_possible(prefix));
        }
    }
    ASSERT(!lead_email_prefix_possible("ana s"));
    ASSERT(!lead_email_prefix_possible("ana\ts"));
    ASSERT(!lead_email_prefix_possible("a@b@"));
    ASSERT(!lead_email_prefix_possible("(351)"));
    ASSERT(!lead_email_prefix_possible("x:y"));
    ASSERT(lead_email_prefix_possible("+35"));
}

TEST(unit_domain_email_valid_length_limits)
{
    char buf[400];
    char local[80];

    /* local part: 64 is the limit */
    memset(local, 'a', 64);
    local[64] = '\0';
    snprintf(buf, sizeof(buf), "%s@example.com", local);
    ASSERT(email_ok(buf));
    local[64] = 'a';
    local[65] = '\0';
    snprintf(buf, sizeof(buf), "%s@example.com", local);
    ASSERT(!email_ok(buf));

    /* a domain label: 63 is the limit */
    memset(local, 'd', 63);
    local[63] = '\0';
    snprintf(buf, sizeof(buf), "x@%s.com", local);
    ASSERT(email_ok(buf));
    local[63] = 'd';
    local[64] = '\0';
    snprintf(buf, sizeof(buf), "x@%s.com", local);
    ASSERT(!email_ok(buf));

    /* the whole address: LEAD_EMAIL_MAX (255) is the limit */
    {
        char l64[65], d63[64], d62[63];
        memset(l64, 'a', 64);
        l64[64] = '\0';
        memset(d63, 'b', 63);
        d63[63] = '\0';
        memset(d62, 'c', 62);
        d62[62] = '\0';
        snprintf(buf, sizeof(buf), "%s@%s.%s.%s", l64, d63, d63, d62);
        ASSERT_EQ(LEAD_EMAIL_MAX, strlen(buf));
        ASSERT(email_ok(buf));
        snprintf(buf, sizeof(buf), "%s@%s.%s.%sc", l64, d63, d63, d62);
        ASSERT_EQ(LEAD_EMAIL_MAX + 1, strlen(buf));
        ASSERT(!email_ok(buf));
    }
}

TEST(unit_domain_reply_intent_keywords)
{
    ASSERT_EQ(INTENT_PRICING, reply_intent_detect("How much does it cost?"));
    ASSERT_EQ(INTENT_PRICING, reply_intent_detect("Can you send a QUOTE"));
    ASSERT_EQ(INTENT_PRICING, reply_intent_detect("What is the price"));
    ASSERT_EQ(INTENT_DEMO, reply_intent_detect("Can we schedule a demo?"));
    ASSERT_EQ(INTENT_DEMO, reply_intent_detect("Let's set up a Meeting"));
    ASSERT_EQ(INTENT_NOT_INTERESTED, reply_intent_detect("Not interested, sorry"));
    ASSERT_EQ(INTENT_NOT_INTERESTED, reply_intent_detect("No thanks"));
    ASSERT_EQ(INTENT_STOP, reply_intent_detect("STOP"));
    ASSERT_EQ(INTENT_STOP, reply_intent_detect("please unsubscribe me"));
    ASSERT_EQ(INTENT_OTHER, reply_intent_detect("Hello there"));
    ASSERT_EQ(INTENT_OTHER, reply_intent_detect(""));
    ASSERT_EQ(INTENT_OTHER, reply_intent_detect(NULL));
}

TEST(unit_domain_reply_intent_precedence)
{
    /* stop wins over everything */
    ASSERT_EQ(INTENT_STOP, reply_intent_detect("What is the price? Otherwise stop writing."));
    ASSERT_EQ(INTENT_STOP, reply_intent_detect("Not interested, unsubscribe"));
    ASSERT_EQ(INTENT_STOP, reply_intent_detect("no demo, just remove me"));
    /* then not-interested, then demo, then pricing */
    ASSERT_EQ(INTENT_NOT_INTERESTED, reply_intent_detect("Not interested in a demo or pricing"));
    ASSERT_EQ(INTENT_DEMO, reply_intent_detect("A demo first, then the pricing"));
}

TEST(unit_domain_enum_names_round_trip)
{
    for (int i = 0; i <= LEAD_STATUS_DEAD; i++) {
        enum lead_status s;
        ASSERT_OK(lead_status_parse(lead_status_name((enum lead_status)i), &s));
        ASSERT_EQ(i, s);
    }
    for (int i = 0; i < CHANNEL_COUNT; i++) {
        enum channel c;
        ASSERT_OK(channel_parse(channel_name((enum channel)i), &c));
        ASSERT_EQ(i, c);
    }
    for (int i = 0; i <= MESSAGE_INBOUND; i++) {
        enum message_direction d;
        ASSERT_OK(message_direction_parse(message_direction_name((enum message_direction)i), &d));
        ASSERT_EQ(i, d);
    }
    for (int i = 0; i <= MESSAGE_KIND_LAST; i++) {
        enum message_kind k;
        ASSERT_OK(message_kind_parse(message_kind_name((enum message_kind)i), &k));
        ASSERT_EQ(i, k);
    }
    for (int i = 0; i <= MESSAGE_STATUS_LAST; i++) {
        enum message_status s;
        ASSERT_OK(message_status_parse(message_status_name((enum message_status)i), &s));
        ASSERT_EQ(i, s);
    }
    for (int i = 0; i <= EVENT_TYPE_LAST; i++) {
        enum lead_event_type t;
        ASSERT_OK(lead_event_type_parse(lead_event_type_name((enum lead_event_type)i), &t));
        ASSERT_EQ(i, t);
    }
    for (int i = 0; i <= JOB_FAILED; i++) {
        enum job_state s;
        ASSERT_OK(job_state_parse(job_state_name((enum job_state)i), &s));
        ASSERT_EQ(i, s);
    }
}

TEST(unit_domain_enum_names_match_the_reference)
{
    /* the NestJS build's vocabulary (docs/http-api.md) */
    static const char *const statuses[] = {"new", "contacted", "replied", "converted", "dead"};
    static const char *const channels[] = {"email", "whatsapp", "linkedin", "voice", "ads"};

    for (int i = 0; i < 5; i++)
        ASSERT_STREQ(statuses[i], lead_status_name((enum lead_status)i));
    for (int i = 0; i < 5; i++)
        ASSERT_STREQ(channels[i], channel_name((enum channel)i));
    ASSERT_STREQ("lead_added", lead_event_type_name(EVENT_LEAD_ADDED));
    ASSERT_STREQ("message_sent", lead_event_type_name(EVENT_MESSAGE_SENT));
    ASSERT_STREQ("reply_received", lead_event_type_name(EVENT_REPLY_RECEIVED));
    ASSERT_STREQ("ai_reply_sent", lead_event_type_name(EVENT_AI_REPLY_SENT));
    ASSERT_STREQ("status_changed", lead_event_type_name(EVENT_STATUS_CHANGED));
    ASSERT_STREQ("address_added", lead_event_type_name(EVENT_ADDRESS_ADDED));
    ASSERT_STREQ("pricing", reply_intent_name(INTENT_PRICING));
    ASSERT_STREQ("stop", reply_intent_name(INTENT_STOP));
}

TEST(unit_domain_enum_parse_rejects_unknown)
{
    enum lead_status s = LEAD_STATUS_DEAD;
    enum channel c = CHANNEL_ADS;
    enum job_state j = JOB_FAILED;

    ASSERT_EQ(-1, lead_status_parse("NEW", &s)); /* case-sensitive */
    ASSERT_EQ(-1, lead_status_parse("", &s));
    ASSERT_EQ(-1, lead_status_parse(NULL, &s));
    ASSERT_EQ(LEAD_STATUS_DEAD, s); /* untouched on failure */
    ASSERT_EQ(-1, channel_parse("sms", &c));
    ASSERT_EQ(CHANNEL_ADS, c);
    ASSERT_EQ(-1, job_state_parse("stalled", &j));
    ASSERT_EQ(-1, job_state_parse(NULL, &j));
    ASSERT_STREQ("unknown", lead_status_name((enum lead_status)99));
    ASSERT_STREQ("unknown", channel_name((enum channel) - 1));
    ASSERT_STREQ("unknown", job_state_name((enum job_state)7));
    ASSERT_STREQ("unknown", reply_intent_name((enum reply_intent)42));
}

TEST(unit_lead_email_domain_rules_match_class_validator)
{
    /* class-validator's isEmail (the NestJS build) refuses these; so do we */
    static const char *const bad[] = {"x@-y.com", "x@y-.com", "x@y.c", "x@y.123", "x@y", NULL};
    static const char *const good[] = {"a@b.co", "x@xn--bcher-kva.ch", "a-b@c-d.example.org", NULL};
    for (int i = 0; bad[i]; i++)
        ASSERT_EQ(0, lead_email_valid(bad[i], strlen(bad[i])));
    for (int i = 0; good[i]; i++)
        ASSERT_EQ(1, lead_email_valid(good[i], strlen(good[i])));
}

/* ---- hardening #7: characters counted as NestJS counts them, controls refused ------------ */

static size_t
u16(const char *s)
{
    return lead_text_utf16_len(s, strlen(s));
}

TEST(unit_hostile_h7_domain_utf16_length)
{
    ASSERT_EQ(0, u16(""));
    ASSERT_EQ(3, u16("Ana"));
    ASSERT_EQ(1, u16("\xc3\xa9"));         /* é: 2 bytes, 1 unit */
    ASSERT_EQ(1, u16("\xe2\x82\xac"));     /* €: 3 bytes, 1 unit */
    ASSERT_EQ(2, u16("\xf0\x9f\x98\x80")); /* 😀: 4 bytes, a surrogate pair */
    ASSERT_EQ(4, u16("a\xc3\xa9\xf0\x9f\x98\x80"));
    ASSERT_EQ(SIZE_MAX, u16("\xff"));
    ASSERT_EQ(SIZE_MAX, u16("\xc3"));             /* truncated */
    ASSERT_EQ(SIZE_MAX, u16("\xc0\x80"));         /* overlong NUL */
    ASSERT_EQ(SIZE_MAX, u16("\xe0\x80\xaf"));     /* overlong */
    ASSERT_EQ(SIZE_MAX, u16("\xed\xa0\x80"));     /* surrogate */
    ASSERT_EQ(SIZE_MAX, u16("\xf4\x90\x80\x80")); /* above U+10FFFF */
    ASSERT_EQ(SIZE_MAX, u16("\x80"));             /* lone continuation byte */
    ASSERT_EQ(2, u16("\xf4\x8f\xbf\xbf"));        /* U+10FFFF is fine */
}

static enum lead_text_problem
check(const char *s, size_t max)
{
    return lead_text_check(s, strlen(s), max);
}

TEST(unit_hostile_h7_domain_text_check)
{
    static const char *const forbidden[] = {
        "a\r",           "a\n",           "a\t",           "a\x01",         "a\x1f",
        "a\x7f",         "a\xc2\x80",     "a\xc2\x85",     "a\xc2\x9f",     "a\xe2\x80\xaa",
        "a\xe2\x80\xae", "a\xe2\x81\xa6", "a\xe2\x81\xa9", "a\xe2\x80\xa8", "a\xe2\x80\xa9",
    };
    static const char *const allowed[] = {
        "Ana",
        "Zo\xc3\xab",
        "\xd8\xb9\xd9\x84\xd9\x8a",
        "a\xc2\xa0"
        "b",
        "a\xe2\x80\x8f",
        "\xf0\x9f\x98\x80",
    };
    struct sp_error err = {0};

    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
        if (check(forbidden[i], 255) != LEAD_TEXT_CONTROL)
            t_fail(__FILE__, __LINE__, "forbidden[%zu] passed", i);
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (check(allowed[i], 255) != LEAD_TEXT_OK)
            t_fail(__FILE__, __LINE__, "allowed[%zu] refused", i);
    ASSERT_EQ(LEAD_TEXT_BAD_UTF8, check("a\r\xff", 255)); /* not UTF-8 comes first */
    ASSERT_EQ(LEAD_TEXT_CONTROL, check("aaaa\r", 2));     /* then controls, then the length */
    ASSERT_EQ(LEAD_TEXT_TOO_LONG, check("\xc3\xa9\xc3\xa9\xc3\xa9", 2));
    ASSERT_EQ(LEAD_TEXT_OK, check("\xc3\xa9\xc3\xa9", 2));
    ASSERT_EQ(LEAD_TEXT_CONTROL, lead_text_check("a\0b", 3, 255)); /* an embedded NUL */

    ASSERT_OK(lead_text_field_check("name", "Ana", 3, 255, &err));
    ASSERT_EQ(SP_EINVAL, lead_text_field_check("name", "A\r\n", 3, 255, &err));
    ASSERT_STREQ("name", err.field);
    ASSERT_STREQ("name must not contain control or bidirectional formatting characters", err.msg);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, lead_text_field_check("phone", "123", 3, 2, &err));
    ASSERT_STREQ("phone must be shorter than or equal to 2 characters", err.msg);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, lead_text_field_check("phone", "\xff", 1, 2, &err));
    ASSERT_STREQ("phone must be valid UTF-8", err.msg);
}

TEST(unit_hostile_h7_domain_email_refuses_controls_bidi_and_bad_utf8)
{
    ASSERT(!email_ok("a@\xc2\x80\xc2\x80.\xc2\x80\xc2\x80"));
    ASSERT(!email_ok("ana@ex\xe2\x80\xae"
                     "ample.com"));
    ASSERT(!email_ok("ana@example.c\xe2\x81\xa6om"));
    ASSERT(!email_ok("ana@exa\xffmple.com"));
    ASSERT(!email_ok("ana@ex\xed\xa0\x80"
                     "ample.com"));
    ASSERT(email_ok("ana@\xc3\xa9xample.com")); /* IDN domains stay valid */
    ASSERT(email_ok("j\xc3\xb6rg@example.de"));
}

TEST(unit_hostile_h7_domain_email_length_in_characters)
{
    char buf[1024], label[200];
    size_t o = 0;

    for (int i = 0; i < 60; i++, o += 2)
        memcpy(label + o, "\xc3\xa9", 2);
    label[o] = '\0';
    /* 255 characters, 495 bytes */
    snprintf(buf, sizeof(buf), "a@%s.%s.%s.%s.abcdefghi", label, label, label, label);
    ASSERT_EQ(255, u16(buf));
    ASSERT(email_ok(buf));
    snprintf(buf, sizeof(buf), "a@%s.%s.%s.%s.abcdefghij", label, label, label, label);
    ASSERT(!email_ok(buf));
    /* a label is 63 characters at most, not 63 bytes */
    snprintf(buf, sizeof(buf), "a@%s.com", label);
    ASSERT(email_ok(buf));
}

/* ---- hardening #1: what a reply's "from" must be ---------------------------------------- */

static int
addr_ok(enum channel c, const char *s)
{
    return lead_address_valid(c, s, strlen(s));
}

TEST(unit_hostile_h1_domain_reply_from_addresses)
{
    ASSERT(addr_ok(CHANNEL_EMAIL, "ana@work.example"));
    ASSERT(!addr_ok(CHANNEL_EMAIL, "\r\nBcc: x@evil.com"));
    ASSERT(!addr_ok(CHANNEL_EMAIL, "Ana <ana@work.example>"));
    ASSERT(!addr_ok(CHANNEL_EMAIL, "+351912345678"));

    ASSERT(addr_ok(CHANNEL_WHATSAPP, "+351912345678"));
    ASSERT(addr_ok(CHANNEL_WHATSAPP, "+1 (555) 000-1234"));
    ASSERT(addr_ok(CHANNEL_WHATSAPP, "555.000.1234"));
    ASSERT(addr_ok(CHANNEL_WHATSAPP, "123"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "12"));                /* too few digits */
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "+1234567890123456")); /* 16 digits: over E.164 */
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "not a phone <script>"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "++351912345678"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "351+912345678"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "+351\n912345678"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "+351\xe2\x80\xae"
                                      "912345678"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, "ana@work.example"));
    ASSERT(!addr_ok(CHANNEL_WHATSAPP, ""));
    ASSERT(!lead_address_valid(CHANNEL_WHATSAPP,
                               "+351\0"
                               "912345678",
                               13));

    ASSERT(!addr_ok(CHANNEL_LINKEDIN, "ana@work.example"));
    ASSERT(!addr_ok(CHANNEL_VOICE, "+351912345678"));
}

TEST(unit_hostile_h1_domain_one_line)
{
    struct arena *a = arena_new();

    ASSERT_STREQ("RE: Hi  Bcc: x", lead_text_one_line(a, "RE: Hi\r\nBcc: x"));
    ASSERT_STREQ("a b c d", lead_text_one_line(a, "a\xe2\x80\xae"
                                                  "b\xc2\x85"
                                                  "c\xff"
                                                  "d"));
    ASSERT_STREQ("Zo\xc3\xab \xf0\x9f\x98\x80",
                 lead_text_one_line(a, "Zo\xc3\xab \xf0\x9f\x98\x80"));
    arena_free(a);
}

/* ---- delivery receipts and address matching (inbound) ----------------------------------- */

#define NSTATUS (MESSAGE_STATUS_LAST + 1)

/* Every (current, receipt) pair: what the receipt moves the message to, or -1 for nothing. */
TEST(unit_domain_receipt_applies_table)
{
    static const struct {
        enum message_status current, receipt;
        int to; /* -1: not applied */
    } moves[] = {
        /* forward only: sent < delivered < read */
        {MESSAGE_SENT, MESSAGE_DELIVERED, MESSAGE_DELIVERED},
        {MESSAGE_SENT, MESSAGE_READ, MESSAGE_READ}, /* a lost "delivered" is skipped over */
        {MESSAGE_DELIVERED, MESSAGE_READ, MESSAGE_READ},
        /* failed only before the recipient had it */
        {MESSAGE_SENT, MESSAGE_FAILED, MESSAGE_FAILED},
    };
    int checked = 0;

    for (int c = 0; c < NSTATUS; c++) {
        for (int r = 0; r < NSTATUS; r++) {
            enum message_status to = (enum message_status)99;
            int want = -1, got;

            for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++)
                if ((int)moves[i].current == c && (int)moves[i].receipt == r)
                    want = moves[i].to;
            got = message_receipt_applies((enum message_status)c, (enum message_status)r, &to);
            if (got != (want >= 0) || (want >= 0 && (int)to != want) || (want < 0 && (int)to != 99))
                t_fail(__FILE__, __LINE__, "current %s, receipt %s: want %s, got %d (to %d)",
                       message_status_name((enum message_status)c),
                       message_status_name((enum message_status)r),
                       want >= 0 ? message_status_name((enum message_status)want) : "nothing", got,
                       (int)to);
            checked++;
        }
    }
    ASSERT_EQ(NSTATUS * NSTATUS, checked);
}

/* The rows of the table above that say "nothing", spelled out for the cases a webhook meets. */
TEST(unit_domain_receipt_applies_never_backwards)
{
    enum message_status to = MESSAGE_QUEUED;

    ASSERT_EQ(0, message_receipt_applies(MESSAGE_READ, MESSAGE_DELIVERED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_READ, MESSAGE_SENT, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_DELIVERED, MESSAGE_SENT, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_DELIVERED, MESSAGE_DELIVERED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_SENT, MESSAGE_SENT, &to));
    /* a late failure is history, not news */
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_DELIVERED, MESSAGE_FAILED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_READ, MESSAGE_FAILED, &to));
    /* a failed message stays failed; messages not out yet, or not ours, never move */
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_FAILED, MESSAGE_DELIVERED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_FAILED, MESSAGE_READ, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_QUEUED, MESSAGE_DELIVERED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_SENDING, MESSAGE_DELIVERED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_SENDING, MESSAGE_FAILED, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_SUPPRESSED, MESSAGE_READ, &to));
    ASSERT_EQ(0, message_receipt_applies(MESSAGE_RECEIVED, MESSAGE_READ, &to));
    ASSERT_EQ(MESSAGE_QUEUED, to);
}

struct norm_case {
    const char *in;
    size_t cap;
    const char *want; /* NULL: the function returns NULL */
};

typedef const char *(*norm_fn)(const char *, char *, size_t);

/* Runs each case with a buffer of exactly `cap` bytes inside a larger one, checking that nothing
 * is written past cap and that the result, when there is one, is buf itself. */
static void
norm_cases(const char *what, norm_fn fn, const struct norm_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char area[LEAD_NORM_MAX + 8];
        const char *got;

        memset(area, '#', sizeof(area));
        got = fn(cases[i].in, area, cases[i].cap);
        if ((cases[i].want == NULL) != (got == NULL) ||
            (got != NULL && (got != area || strcmp(cases[i].want, got) != 0)))
            t_fail(__FILE__, __LINE__, "%s(\"%s\", cap %zu): want \"%s\", got \"%s\"", what,
                   cases[i].in ? cases[i].in : "(null)", cases[i].cap,
                   cases[i].want ? cases[i].want : "(null)", got ? got : "(null)");
        for (size_t k = cases[i].cap; k < sizeof(area); k++)
            if (area[k] != '#')
                t_fail(__FILE__, __LINE__, "%s(\"%s\", cap %zu) wrote byte %zu", what,
                       cases[i].in ? cases[i].in : "(null)", cases[i].cap, k);
    }
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

TEST(unit_domain_email_norm_table)
{
    static const struct norm_case cases[] = {
        {"ana@example.com", LEAD_NORM_MAX, "ana@example.com"},
        {"Ana.Silva@Example.COM", LEAD_NORM_MAX, "ana.silva@example.com"},
        {"  ana@example.com", LEAD_NORM_MAX, "ana@example.com"},
        {"ana@example.com \t ", LEAD_NORM_MAX, "ana@example.com"},
        {"\t ANA@EXAMPLE.COM\t", LEAD_NORM_MAX, "ana@example.com"},
        {"a b@x.io", LEAD_NORM_MAX, "a b@x.io"},                   /* only the ends trimmed */
        {"\xc3\x89lise@X.fr", LEAD_NORM_MAX, "\xc3\x89lise@x.fr"}, /* ASCII only lowered */
        {"", LEAD_NORM_MAX, NULL},
        {"   ", LEAD_NORM_MAX, NULL},
        {" \t", LEAD_NORM_MAX, NULL},
        {NULL, LEAD_NORM_MAX, NULL},
        /* the buffer: the text and its NUL must fit (blanks trimmed do not count) */
        {"A@b.co", 7, "a@b.co"},
        {"A@b.co", 6, NULL},
        {"A@b.co", 1, NULL},
        {"A@b.co", 0, NULL},
        {"   A@b.co   ", 7, "a@b.co"},
        {"", 0, NULL},
    };
    norm_cases("lead_email_norm", lead_email_norm, cases, NCASES(cases));
}

TEST(unit_domain_phone_norm_table)
{
    static const struct norm_case cases[] = {
        {"+16315551181", LEAD_NORM_MAX, "16315551181"},
        {"16315551181", LEAD_NORM_MAX, "16315551181"},
        {"+1 (631) 555-1181", LEAD_NORM_MAX, "16315551181"},
        {"+44 20.7946-0000", LEAD_NORM_MAX, "442079460000"},
        {"00351 912 345 678", LEAD_NORM_MAX, "00351912345678"},
        {"tel:+1-631", LEAD_NORM_MAX, "1631"},
        {"+", LEAD_NORM_MAX, NULL},
        {"() -", LEAD_NORM_MAX, NULL},
        {"", LEAD_NORM_MAX, NULL},
        {NULL, LEAD_NORM_MAX, NULL},
        {"\xd9\xa1\xd9\xa2\xd9\xa3", LEAD_NORM_MAX, NULL}, /* Arabic-Indic digits are not ASCII */
        /* the buffer: the digits and their NUL must fit (separators do not count) */
        {"+1 (631)", 5, "1631"},
        {"+1 (631)", 4, NULL},
        {"123", 1, NULL},
        {"123", 0, NULL},
        {"+", 0, NULL}, /* nothing to write, and no room to write it */
        {"", 0, NULL},
    };
    norm_cases("lead_phone_norm", lead_phone_norm, cases, NCASES(cases));
}

TEST(unit_domain_address_norm_by_channel)
{
    char buf[LEAD_NORM_MAX], longest[LEAD_EMAIL_MAX + 1];

    ASSERT_STREQ("ana@example.com",
                 lead_address_norm(CHANNEL_EMAIL, " Ana@Example.com ", buf, sizeof(buf)));
    ASSERT_STREQ("16315551181",
                 lead_address_norm(CHANNEL_WHATSAPP, "+1 (631) 555-1181", buf, sizeof(buf)));
    /* a phone on the email channel is an email to normalise, not digits */
    ASSERT_STREQ("+1 (631) 555-1181",
                 lead_address_norm(CHANNEL_EMAIL, "+1 (631) 555-1181", buf, sizeof(buf)));
    ASSERT(lead_address_norm(CHANNEL_WHATSAPP, "ana@example.com", buf, sizeof(buf)) == NULL);
    ASSERT(lead_address_norm(CHANNEL_LINKEDIN, "ana@example.com", buf, sizeof(buf)) == NULL);
    ASSERT(lead_address_norm(CHANNEL_VOICE, "+16315551181", buf, sizeof(buf)) == NULL);
    ASSERT(lead_address_norm(CHANNEL_ADS, "+16315551181", buf, sizeof(buf)) == NULL);
    ASSERT(lead_address_norm(CHANNEL_EMAIL, NULL, buf, sizeof(buf)) == NULL);

    /* LEAD_NORM_MAX holds the longest valid email: 64 + 1 + 190 = 255 characters */
    memset(longest, 'A', sizeof(longest));
    longest[64] = '@';
    longest[64 + 1 + 63] = '.';
    longest[64 + 1 + 63 + 1 + 63] = '.';
    longest[64 + 1 + 63 + 1 + 63 + 1 + 58] = '.';
    memcpy(longest + LEAD_EMAIL_MAX - 3, "COM", 3);
    longest[LEAD_EMAIL_MAX] = '\0';
    ASSERT(lead_email_valid(longest, strlen(longest)));
    ASSERT(lead_address_norm(CHANNEL_EMAIL, longest, buf, sizeof(buf)) == buf);
    ASSERT_EQ(LEAD_EMAIL_MAX, strlen(buf));
    ASSERT_EQ('a', buf[0]);
    ASSERT_STREQ("com", buf + LEAD_EMAIL_MAX - 3);
}

/* ---- one lead per person, the list's search (#11) ------------------------------------- */

TEST(unit_domain_address_norms)
{
    char buf[LEAD_NORM_MAX];

    ASSERT_STREQ("ana@example.com", lead_email_norm("  Ana@EXAMPLE.com\t", buf, sizeof(buf)));
    ASSERT_STREQ("15550100001", lead_phone_norm("+1 (555) 010-0001", buf, sizeof(buf)));
    ASSERT_STREQ("15550100001", lead_phone_norm("1.555.010.0001", buf, sizeof(buf)));
    ASSERT(lead_phone_norm("n/a", buf, sizeof(buf)) == NULL); /* no digits: nothing to match */
    ASSERT(lead_email_norm("   ", buf, sizeof(buf)) == NULL);
}

TEST(unit_domain_name_fold)
{
    char buf[LEAD_NORM_MAX], small[4];

    ASSERT_STREQ("john o'neil-smith 2", lead_name_fold("John O'Neil-SMITH 2", buf, sizeof(buf)));
    /* Latin-1, Latin Extended-A (both pairings), Ÿ, Greek with tonos, Cyrillic */
    ASSERT_STREQ("\xc3\xa9mile \xc3\xa0 \xc3\xbe\xc3\xb6", /* émile à þö */
                 lead_name_fold("\xc3\x89MILE \xc3\x80 \xc3\x9e\xc3\x96", buf, sizeof(buf)));
    ASSERT_STREQ("\xc5\x82\xc3\xb3"
                 "d\xc5\xba \xc4\x8d \xc5\x88 \xc5\x93 \xc3\xbf",
                 lead_name_fold("\xc5\x81\xc3\x93" /* ŁÓ */ "D\xc5\xb9 \xc4\x8c \xc5\x87 "
                                "\xc5\x92 \xc5\xb8" /* Ź Č Ň Œ Ÿ */,
                                buf, sizeof(buf)));
    ASSERT_STREQ("\xce\xac\xce\xbb\xcf\x86\xce\xb1 \xcf\x8e", /* άλφα ώ */
                 lead_name_fold("\xce\x86\xce\x9b\xce\xa6\xce\x91 \xce\x8f", buf, sizeof(buf)));
    ASSERT_STREQ(
        "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd \xd1\x91\xd0\xb6", /* иван ёж */
        lead_name_fold("\xd0\x98\xd0\xb2\xd0\x90\xd0\x9d \xd0\x81\xd0\x96", buf, sizeof(buf)));
    /* already lower, signs, other scripts, İ (whose lower case is longer) and bytes that are
     * not UTF-8 stay as they are; × (U+00D7) is no letter */
    ASSERT_STREQ(
        "\xc3\x97 \xc4\xb0 \xe6\x9d\x8e \xc3\xa9 \xff\xc3",
        lead_name_fold("\xc3\x97 \xc4\xb0 \xe6\x9d\x8e \xc3\xa9 \xff\xc3", buf, sizeof(buf)));
    ASSERT(lead_name_fold(NULL, buf, sizeof(buf)) == NULL);
    ASSERT(lead_name_fold("Anna", small, sizeof(small)) == NULL);
    ASSERT_STREQ("ana", lead_name_fold("ANA", small, sizeof(small)));
}

TEST(unit_domain_phone_query)
{
    char buf[LEAD_NORM_MAX], small[3];

    ASSERT_STREQ("1555", lead_phone_query("+1 (555)", buf, sizeof(buf)));
    ASSERT_STREQ("3519", lead_phone_query("351-9", buf, sizeof(buf)));
    ASSERT_STREQ("12", lead_phone_query("1/2.", buf, sizeof(buf)));
    ASSERT(lead_phone_query("ana", buf, sizeof(buf)) == NULL);
    ASSERT(lead_phone_query("john5", buf, sizeof(buf)) == NULL); /* a name with a digit */
    ASSERT(lead_phone_query("+ ()", buf, sizeof(buf)) == NULL);  /* no digit */
    ASSERT(lead_phone_query("a1@x.io", buf, sizeof(buf)) == NULL);
    ASSERT(lead_phone_query("123", small, sizeof(small)) == NULL);
    ASSERT(lead_phone_query(NULL, buf, sizeof(buf)) == NULL);
}
