/* test_mailgun_inbound.c: Mailgun's inbound-route POST (the forward() action's fields, as
 * Mailgun's "Receiving Messages via HTTP" documents them): a full post, the text chosen,
 * the From forms, the thread ids of message-headers, attachments, every refusal (missing,
 * duplicate, NUL, not UTF-8, bad message-headers), the signature and the timestamp window.
 * Signatures were computed apart from the code under test (Python's hmac module). */
#include "t.h"

#include "core/arena.h"
#include "core/err.h"
#include "core/http.h"
#include "features/messaging/infrastructure/mailgun_inbound.h"

#include <string.h>

#define FORM_MAX 32

#define KEY "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
#define TS "1700000000"
#define TS_MS 1700000000000LL
#define TOKEN "a5b2e1c9d4f7a8b3c6e9f2d5a8b1c4e7f0a3d6b9c2e5f8a1d4"
/* hmac.new(KEY, TS + TOKEN, sha256).hexdigest() */
#define SIG "341b4656d42d00390f3943161ac8beb4bd2c9649111921cfbd98152322af8274"
#define SIG_UPPER "341B4656D42D00390F3943161AC8BEB4BD2C9649111921CFBD98152322AF8274"

#define HEADERS                                                                                    \
    "[[\"Received\", \"from mail-wr1-f41.google.com (mail-wr1-f41.google.com [209.85.221.41]) "    \
    "by mxa.mailgun.org with ESMTP\"], "                                                           \
    "[\"Mime-Version\", \"1.0\"], "                                                                \
    "[\"From\", \"Bob Lee <bob@example.com>\"], "                                                  \
    "[\"Date\", \"Tue, 14 Nov 2023 22:13:20 +0000\"], "                                            \
    "[\"Message-Id\", \"<CAH+reply-1@mail.gmail.com>\"], "                                         \
    "[\"In-Reply-To\", \"<welcome-2@salespad.example>\"], "                                        \
    "[\"References\", \"<welcome-1@salespad.example>\\r\\n\\t<CAH+q-1@mail.gmail.com> "            \
    "<welcome-2@salespad.example>\"], "                                                            \
    "[\"Subject\", \"Re: Your pricing\"], "                                                        \
    "[\"To\", \"SalesPad <reply+abc@replies.salespad.example>\"], "                                \
    "[\"Content-Type\", \"multipart/mixed; boundary=\\\"000000000000a1b2\\\"\"]]"

struct form {
    struct http_form_field f[FORM_MAX];
    int n;
};

static void
add_n(struct form *fm, const char *name, const char *value, size_t len, const char *filename)
{
    ASSERT(fm->n < FORM_MAX);
    fm->f[fm->n].name = name;
    fm->f[fm->n].value = value;
    fm->f[fm->n].value_len = len;
    fm->f[fm->n].filename = filename;
    fm->n++;
}

static void
add(struct form *fm, const char *name, const char *value)
{
    add_n(fm, name, value, strlen(value), NULL);
}

static void
del(struct form *fm, const char *name)
{
    for (int i = 0; i < fm->n; i++) {
        if (fm->f[i].filename == NULL && strcmp(fm->f[i].name, name) == 0) {
            memmove(&fm->f[i], &fm->f[i + 1], (size_t)(fm->n - i - 1) * sizeof(fm->f[0]));
            fm->n--;
            return;
        }
    }
    t_fail(__FILE__, __LINE__, "no field %s", name);
}

/* Replaces (or adds) a field; value_len given, so it may hold NULs. */
static void
set_n(struct form *fm, const char *name, const char *value, size_t len)
{
    for (int i = 0; i < fm->n; i++) {
        if (fm->f[i].filename == NULL && strcmp(fm->f[i].name, name) == 0) {
            fm->f[i].value = value;
            fm->f[i].value_len = len;
            return;
        }
    }
    add_n(fm, name, value, len, NULL);
}

static void
set(struct form *fm, const char *name, const char *value)
{
    set_n(fm, name, value, strlen(value));
}

/* A reply as Mailgun forwards it, with one attachment (multipart/form-data). */
static void
full_post(struct form *fm)
{
    memset(fm, 0, sizeof(*fm));
    add(fm, "recipient", "reply+abc@replies.salespad.example");
    add(fm, "sender", "bob@example.com");
    add(fm, "from", "Bob Lee <bob@example.com>");
    add(fm, "subject", "Re: Your pricing");
    add(fm, "body-plain",
        "How much for 10 seats?\r\n\r\nBob\r\n\r\nOn Tue, Nov 14, 2023 SalesPad wrote:\r\n"
        "> Hi Bob, thanks for your interest.\r\n");
    add(fm, "stripped-text", "How much for 10 seats?");
    add(fm, "stripped-signature", "Bob");
    add(fm, "body-html", "<html><body><p>How much for 10 seats?</p></body></html>");
    add(fm, "stripped-html", "<p>How much for 10 seats?</p>");
    add(fm, "attachment-count", "1");
    add(fm, "content-id-map", "{}");
    add(fm, "timestamp", TS);
    add(fm, "token", TOKEN);
    add(fm, "signature", SIG);
    add(fm, "message-headers", HEADERS);
    add_n(fm, "attachment-1", "%PDF-1.4\n\xff\0\x01", 12, "quote.pdf");
}

static int
read_form(const struct form *fm, struct arena *a, struct mg_inbound *in, struct sp_error *err)
{
    memset(err, 0, sizeof(*err));
    return mg_inbound_read(fm->f, fm->n, a, in, err);
}

/* The read succeeds; returns in. */
static struct mg_inbound *
read_ok(const struct form *fm, struct arena *a, struct mg_inbound *in)
{
    struct sp_error err;
    int rc = read_form(fm, a, in, &err);
    if (rc != SP_OK)
        t_fail(__FILE__, __LINE__, "mg_inbound_read: %s (%s: %s)", sp_err_name(rc), err.field,
               err.msg);
    return in;
}

/* The read fails with SP_EINVAL naming `field`, and leaves *out zeroed. */
static void
read_refused(const struct form *fm, const char *field, int line)
{
    struct arena *a = arena_new();
    struct mg_inbound in;
    struct sp_error err;
    int rc = read_form(fm, a, &in, &err);

    if (rc != SP_EINVAL || strcmp(err.field, field) != 0)
        t_fail(__FILE__, line, "want EINVAL on %s, got %s on \"%s\" (%s)", field, sp_err_name(rc),
               err.field, err.msg);
    if (in.recipient != NULL || in.text != NULL || in.nreferences != 0 || in.message_id != NULL)
        t_fail(__FILE__, line, "out not zeroed after an error");
    arena_free(a);
}

TEST(unit_mg_read_full_post)
{
    struct arena *a = arena_new();
    struct form fm;
    struct mg_inbound in;

    full_post(&fm);
    read_ok(&fm, a, &in);
    ASSERT_STREQ("reply+abc@replies.salespad.example", in.recipient);
    ASSERT_STREQ("bob@example.com", in.sender);
    ASSERT_STREQ("Bob Lee <bob@example.com>", in.from);
    ASSERT_STREQ("Bob Lee", in.from_name);
    ASSERT_STREQ("bob@example.com", in.from_address);
    ASSERT_STREQ("Re: Your pricing", in.subject);
    ASSERT_STREQ("How much for 10 seats?", in.text);
    ASSERT_STREQ("CAH+reply-1@mail.gmail.com", in.message_id);
    ASSERT_STREQ("welcome-2@salespad.example", in.in_reply_to);
    ASSERT_EQ(3, in.nreferences);
    ASSERT_STREQ("welcome-1@salespad.example", in.references[0]);
    ASSERT_STREQ("CAH+q-1@mail.gmail.com", in.references[1]);
    ASSERT_STREQ("welcome-2@salespad.example", in.references[2]);
    ASSERT(in.references[3] == NULL);
    ASSERT_STREQ(TS, in.timestamp);
    ASSERT_STREQ(TOKEN, in.token);
    ASSERT_STREQ(SIG, in.signature);
    ASSERT_EQ(1, in.attachments);
    /* the strings are copies in the arena, not the caller's buffers */
    ASSERT(in.recipient != fm.f[0].value);
    ASSERT(mg_signature_ok(KEY, strlen(KEY), in.timestamp, in.token, in.signature));
    ASSERT(mg_timestamp_fresh(in.timestamp, TS_MS + 1234));
    arena_free(a);
}

TEST(unit_mg_read_minimal_urlencoded_post)
{
    struct arena *a = arena_new();
    struct form fm = {0};
    struct mg_inbound in;

    /* no attachment, no message-headers, no from, no subject: still a message */
    add(&fm, "recipient", "reply+abc@replies.salespad.example");
    add(&fm, "sender", "bob@example.com");
    add(&fm, "body-plain", "");
    add(&fm, "timestamp", TS);
    add(&fm, "token", TOKEN);
    add(&fm, "signature", SIG);
    read_ok(&fm, a, &in);
    ASSERT_STREQ("", in.text);
    ASSERT(in.from == NULL && in.from_name == NULL && in.subject == NULL);
    ASSERT_STREQ("bob@example.com", in.from_address); /* the envelope sender stands in */
    ASSERT(in.message_id == NULL && in.in_reply_to == NULL);
    ASSERT_EQ(0, in.nreferences);
    ASSERT_EQ(0, in.attachments);
    arena_free(a);
}

TEST(unit_mg_text_stripped_or_body_plain)
{
    struct arena *a = arena_new();
    struct form fm;
    struct mg_inbound in;

    full_post(&fm);
    set(&fm, "stripped-text", " \r\n\t ");
    ASSERT_CONTAINS(read_ok(&fm, a, &in)->text, "> Hi Bob"); /* body-plain, quote and all */

    full_post(&fm);
    del(&fm, "stripped-text");
    ASSERT_CONTAINS(read_ok(&fm, a, &in)->text, "On Tue, Nov 14, 2023 SalesPad wrote:");

    full_post(&fm);
    del(&fm, "body-plain");
    ASSERT_STREQ("How much for 10 seats?", read_ok(&fm, a, &in)->text);

    /* only a blank stripped-text: it is the text */
    full_post(&fm);
    del(&fm, "body-plain");
    set(&fm, "stripped-text", "  ");
    ASSERT_STREQ("  ", read_ok(&fm, a, &in)->text);

    full_post(&fm);
    del(&fm, "body-plain");
    del(&fm, "stripped-text");
    read_refused(&fm, "body-plain", __LINE__);
    arena_free(a);
}

TEST(unit_mg_from_forms)
{
    static const struct {
        const char *from, *name, *addr;
    } cases[] = {
        {"\"Jane Doe\" <j@x.com>", "Jane Doe", "j@x.com"},
        {"Jane <j@x.com>", "Jane", "j@x.com"},
        {"j@x.com", NULL, "j@x.com"},
        {"<j@x.com>", NULL, "j@x.com"},
        {"  Jane   Doe  <  j@x.com  >  ", "Jane   Doe", "j@x.com"},
        {"\"Doe, Jane \\\"JD\\\"\" <j@x.com>", "Doe, Jane \"JD\"", "j@x.com"},
        {"\"a <b@c.com>\" <j@x.com>", "a <b@c.com>", "j@x.com"},
        {"\"\" <j@x.com>", NULL, "j@x.com"},
        {"j@x.com (Jane Doe)", "Jane Doe", "j@x.com"},
        {"\"Jos\xc3\xa9 M\xc3\xbcller\" <jose@x.com>", "Jos\xc3\xa9 M\xc3\xbcller", "jose@x.com"},
        {"=?UTF-8?B?Sm9zw6k=?= <jose@x.com>", "=?UTF-8?B?Sm9zw6k=?=", "jose@x.com"}, /* as sent */
        {"Jane\r\n Doe <j@x.com>", "Jane   Doe", "j@x.com"}, /* a fold: no CR/LF in the name */
        {"J@X.COM", NULL, "J@X.COM"},                        /* case kept */
        {"Jane <j@x.com>, Bob <b@y.com>", "Jane", "j@x.com"},
        /* no plausible address: the envelope sender (bob@example.com) */
        {"Jane Doe", NULL, "bob@example.com"},
        {"Jane <not an address>", "Jane", "bob@example.com"},
        {"\"Jane <j@x.com>", NULL, "bob@example.com"}, /* unterminated quote */
        {"j@x.com, k@y.com", NULL, "bob@example.com"},
        {"", NULL, "bob@example.com"},
        {"<@x.com>", NULL, "bob@example.com"},
        {"<j@>", NULL, "bob@example.com"},
        {"<j@x@y.com>", NULL, "bob@example.com"},
    };
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct form fm;
        struct mg_inbound in;
        full_post(&fm);
        set(&fm, "from", cases[i].from);
        read_ok(&fm, a, &in);
        ASSERT_STREQ(cases[i].from, in.from);
        if (cases[i].name == NULL && in.from_name != NULL)
            t_fail(__FILE__, __LINE__, "case %zu: want no name, got \"%s\"", i, in.from_name);
        if (cases[i].name != NULL &&
            (in.from_name == NULL || strcmp(cases[i].name, in.from_name) != 0))
            t_fail(__FILE__, __LINE__, "case %zu: want name \"%s\", got \"%s\"", i, cases[i].name,
                   in.from_name ? in.from_name : "(null)");
        if (strcmp(cases[i].addr, in.from_address) != 0)
            t_fail(__FILE__, __LINE__, "case %zu: want address \"%s\", got \"%s\"", i,
                   cases[i].addr, in.from_address);
    }
    arena_free(a);
}

TEST(unit_mg_header_names_case_insensitive)
{
    struct arena *a = arena_new();
    struct form fm;
    struct mg_inbound in;

    full_post(&fm);
    set(&fm, "message-headers",
        "[[\"message-id\", \" <m1@x.com> \"], [\"IN-REPLY-TO\", \"<p1@y.com>\"], "
        "[\"rEfErEnCeS\", \"<r1@y.com> <p1@y.com>\"]]");
    read_ok(&fm, a, &in);
    ASSERT_STREQ("m1@x.com", in.message_id);
    ASSERT_STREQ("p1@y.com", in.in_reply_to);
    ASSERT_EQ(2, in.nreferences);
    ASSERT_STREQ("r1@y.com", in.references[0]);
    ASSERT_STREQ("p1@y.com", in.references[1]);
    arena_free(a);
}

TEST(unit_mg_ids_odd_forms)
{
    struct arena *a = arena_new();
    struct form fm;
    struct mg_inbound in;

    full_post(&fm);
    set(&fm, "message-headers",
        /* the first header of a name counts */
        "[[\"Message-ID\", \"bare-id@x.com\"], [\"Message-ID\", \"<second@x.com>\"], "
        /* an old mailer's phrase before the id */
        "[\"In-Reply-To\", \"Your message of Tue, 14 Nov 2023 <p1@y.com> (Bob)\"], "
        /* commas, a comment, an empty <>, an id with a blank inside, brackets with blanks */
        "[\"References\", \"<r1@y.com>,<r2@y.com>(a (nested) comment)<>< r3@y.com >"
        "<bad id@y.com>\\n <r4@y.com>\"]]");
    read_ok(&fm, a, &in);
    ASSERT_STREQ("bare-id@x.com", in.message_id);
    ASSERT_STREQ("p1@y.com", in.in_reply_to);
    ASSERT_EQ(4, in.nreferences);
    ASSERT_STREQ("r1@y.com", in.references[0]);
    ASSERT_STREQ("r2@y.com", in.references[1]);
    ASSERT_STREQ("r3@y.com", in.references[2]);
    ASSERT_STREQ("r4@y.com", in.references[3]);

    /* values with no usable id: NULL, not "" */
    full_post(&fm);
    set(&fm, "message-headers",
        "[[\"Message-Id\", \"<>\"], [\"In-Reply-To\", \"  \"], [\"References\", \"(only)\"]]");
    read_ok(&fm, a, &in);
    ASSERT(in.message_id == NULL);
    ASSERT(in.in_reply_to == NULL);
    ASSERT_EQ(0, in.nreferences);

    /* an empty list is fine */
    full_post(&fm);
    set(&fm, "message-headers", "[]");
    read_ok(&fm, a, &in);
    ASSERT(in.message_id == NULL);
    arena_free(a);
}

TEST(unit_mg_references_capped_keeping_the_last)
{
    struct arena *a = arena_new();
    char refs[4096], headers[4200];
    size_t k = 0;
    struct form fm;
    struct mg_inbound in;

    for (int i = 1; i <= MG_REFERENCES_MAX + 8; i++)
        k += (size_t)snprintf(refs + k, sizeof(refs) - k, "%s<id-%d@x.com>", i > 1 ? " " : "", i);
    snprintf(headers, sizeof(headers), "[[\"References\", \"%s\"]]", refs);
    full_post(&fm);
    set(&fm, "message-headers", headers);
    read_ok(&fm, a, &in);
    ASSERT_EQ(MG_REFERENCES_MAX, in.nreferences);
    ASSERT_STREQ("id-9@x.com", in.references[0]);
    ASSERT_STREQ("id-40@x.com", in.references[MG_REFERENCES_MAX - 1]);
    for (int i = 0; i < MG_REFERENCES_MAX; i++) {
        char want[32];
        snprintf(want, sizeof(want), "id-%d@x.com", i + 9);
        ASSERT_STREQ(want, in.references[i]);
    }
    arena_free(a);
}

TEST(unit_mg_attachments_counted_and_dropped)
{
    struct arena *a = arena_new();
    struct form fm;
    struct mg_inbound in;

    full_post(&fm);
    add_n(&fm, "attachment-2", "\x89PNG\r\n\x1a\n\0\0", 10, "");
    /* a file part is never a text field, whatever its name (and its bytes are not checked) */
    add_n(&fm, "subject", "\xff\xfe", 2, "subject.txt");
    read_ok(&fm, a, &in);
    ASSERT_EQ(3, in.attachments);
    ASSERT_STREQ("Re: Your pricing", in.subject);
    arena_free(a);
}

TEST(unit_mg_missing_required_fields_each_named)
{
    static const char *const required[] = {"recipient", "sender", "timestamp", "token",
                                           "signature"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        struct form fm;
        full_post(&fm);
        del(&fm, required[i]);
        read_refused(&fm, required[i], __LINE__);
        full_post(&fm);
        set(&fm, required[i], "");
        read_refused(&fm, required[i], __LINE__);
        full_post(&fm);
        set(&fm, required[i], " \t");
        read_refused(&fm, required[i], __LINE__);
    }
}

TEST(unit_mg_bad_message_headers_refused)
{
    static const char *const bad[] = {
        "",
        "not json",
        "{\"Message-Id\": \"<a@b>\"}",
        "\"<a@b>\"",
        "[[\"Message-Id\"]]",
        "[[\"Message-Id\", 1]]",
        "[[1, \"<a@b>\"]]",
        "[[\"Message-Id\", \"<a@b>\", \"extra\"]]",
        "[\"Message-Id\", \"<a@b>\"]",
        "[[\"Message-Id\", null]]",
        "[[\"Message-Id\", \"<a@b>\"]] trailing",
        "[[\"Message-Id\", \"<a@b>\"]",
        "[[\"Subject\", \"a\\u0000b\"]]", /* a NUL by escape */
        "[[\"Subject\", \"\\ud800\"]]",   /* a lone surrogate */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct form fm;
        full_post(&fm);
        set(&fm, "message-headers", bad[i]);
        read_refused(&fm, "message-headers", __LINE__);
    }
}

TEST(unit_mg_nul_in_a_value_refused)
{
    static const char *const fields[] = {"recipient",  "sender",         "from",      "subject",
                                         "body-plain", "stripped-text",  "timestamp", "token",
                                         "signature",  "message-headers"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        struct form fm;
        full_post(&fm);
        set_n(&fm, fields[i], "ab\0cd", 5);
        read_refused(&fm, fields[i], __LINE__);
    }
    /* an ignored field may hold anything */
    {
        struct arena *a = arena_new();
        struct form fm;
        struct mg_inbound in;
        full_post(&fm);
        set_n(&fm, "body-html", "<p>\0</p>", 8);
        read_ok(&fm, a, &in);
        arena_free(a);
    }
}

TEST(unit_mg_non_utf8_refused)
{
    static const struct {
        const char *field, *value;
    } cases[] = {
        {"subject", "Re: \xff"},
        {"from", "Jos\xc3( <j@x.com>"},
        {"body-plain", "\xc0\xaf"},        /* overlong '/' */
        {"stripped-text", "\xed\xa0\x80"}, /* a surrogate */
        {"sender", "bob@ex\xe2\x82.com"},  /* truncated sequence */
        {"recipient", "\xf4\x90\x80\x80"}, /* past U+10FFFF */
        {"message-headers", "[[\"Subject\", \"\xff\"]]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct form fm;
        full_post(&fm);
        set(&fm, cases[i].field, cases[i].value);
        read_refused(&fm, cases[i].field, __LINE__);
    }
    /* not read, not checked */
    {
        struct arena *a = arena_new();
        struct form fm;
        struct mg_inbound in;
        full_post(&fm);
        set(&fm, "stripped-html", "\xff");
        read_ok(&fm, a, &in);
        arena_free(a);
    }
}

TEST(unit_mg_duplicate_field_refused)
{
    struct form fm;

    full_post(&fm);
    add(&fm, "signature", SIG_UPPER);
    read_refused(&fm, "signature", __LINE__);
    full_post(&fm);
    add(&fm, "stripped-text", "another");
    read_refused(&fm, "stripped-text", __LINE__);
}

TEST(unit_mg_read_no_fields)
{
    struct arena *a = arena_new();
    struct mg_inbound in;
    struct sp_error err = {0};

    ASSERT_EQ(SP_EINVAL, mg_inbound_read(NULL, 0, a, &in, &err));
    ASSERT_STREQ("recipient", err.field);
    arena_free(a);
}

TEST(unit_mg_signature)
{
    size_t klen = strlen(KEY);
    char sig[sizeof(SIG)];

    ASSERT_EQ(1, mg_signature_ok(KEY, klen, TS, TOKEN, SIG));
    ASSERT_EQ(1, mg_signature_ok(KEY, klen, TS, TOKEN, SIG_UPPER));
    /* one digit off, first and last */
    memcpy(sig, SIG, sizeof(sig));
    sig[0] = '4';
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, sig));
    memcpy(sig, SIG, sizeof(sig));
    sig[63] = '5';
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, sig));
    /* another key, an empty key, a key cut short */
    ASSERT_EQ(0, mg_signature_ok("key-other", 9, TS, TOKEN, SIG));
    ASSERT_EQ(0, mg_signature_ok("", 0, TS, TOKEN, SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, 0, TS, TOKEN, SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen - 1, TS, TOKEN, SIG));
    /* the token or the timestamp changed, or swapped */
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS,
                                 "b5b2e1c9d4f7a8b3c6e9f2d5a8b1c4e7f0a3d6b9c2e5f8a1d4", SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, "1700000001", TOKEN, SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TOKEN, TS, SIG));
    /* malformed signatures */
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, ""));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, SIG "0"));
    memcpy(sig, SIG, sizeof(sig));
    sig[63] = '\0';
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, sig));
    memcpy(sig, SIG, sizeof(sig));
    sig[10] = 'g';
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, sig));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, " " SIG));
    /* NULLs */
    ASSERT_EQ(0, mg_signature_ok(NULL, 0, TS, TOKEN, SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, NULL, TOKEN, SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, NULL, SIG));
    ASSERT_EQ(0, mg_signature_ok(KEY, klen, TS, TOKEN, NULL));
}

TEST(unit_mg_signature_long_token_refused)
{
    char token[600];

    memset(token, 'a', sizeof(token) - 1);
    token[sizeof(token) - 1] = '\0';
    ASSERT_EQ(0, mg_signature_ok(KEY, strlen(KEY), TS, token, SIG));
}

TEST(unit_mg_timestamp_window)
{
    const int64_t min = 60 * 1000;

    ASSERT_EQ(1, mg_timestamp_fresh(TS, TS_MS));
    ASSERT_EQ(1, mg_timestamp_fresh(TS, TS_MS + 5 * min)); /* bounds included */
    ASSERT_EQ(1, mg_timestamp_fresh(TS, TS_MS - 5 * min));
    ASSERT_EQ(0, mg_timestamp_fresh(TS, TS_MS + 5 * min + 1));
    ASSERT_EQ(0, mg_timestamp_fresh(TS, TS_MS - 5 * min - 1));
    ASSERT_EQ(0, mg_timestamp_fresh(TS, TS_MS + 6 * min));    /* 6 minutes old */
    ASSERT_EQ(0, mg_timestamp_fresh(TS, TS_MS - 6 * min));    /* 6 minutes ahead */
    ASSERT_EQ(1, mg_timestamp_fresh("0001700000000", TS_MS)); /* leading zeros are digits */
    ASSERT_EQ(1, mg_timestamp_fresh("0", 0));
}

TEST(unit_mg_timestamp_not_decimal_or_huge)
{
    static const char *const bad[] = {
        "",
        "abc",
        "17e8",
        "-1700000000",
        "+1700000000",
        " 1700000000",
        "1700000000 ",
        "1700000000.5",
        "0x6553f100",
        "１７",                    /* fullwidth digits */
        "9223372036854775807",     /* INT64_MAX seconds: overflows as ms */
        "9223372036854776",        /* just over INT64_MAX / 1000 */
        "9223372036854775808",     /* past INT64_MAX */
        "99999999999999999999999", /* far past */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (mg_timestamp_fresh(bad[i], TS_MS) != 0 || mg_timestamp_fresh(bad[i], INT64_MAX) != 0 ||
            mg_timestamp_fresh(bad[i], INT64_MIN) != 0)
            t_fail(__FILE__, __LINE__, "\"%s\" taken as fresh", bad[i]);
    }
    ASSERT_EQ(0, mg_timestamp_fresh(NULL, TS_MS));
    /* the largest that converts, against extreme clocks: no overflow in the difference */
    ASSERT_EQ(1, mg_timestamp_fresh("9223372036854775", 9223372036854775000LL));
    ASSERT_EQ(0, mg_timestamp_fresh("9223372036854775", INT64_MIN));
    ASSERT_EQ(0, mg_timestamp_fresh("0", INT64_MIN));
    ASSERT_EQ(0, mg_timestamp_fresh("0", INT64_MAX));
}
