/* test_email_mime.c: the outbound email builder: quoted-printable lines and round trips,
 * RFC 2047 encoded-words (UTF-8 never split, CR/LF never copied), display names, the full
 * message's headers, refused addresses and msg-ids, dates, EMAIL_FROM parsing and the
 * Reply-To and one-click unsubscribe tokens and headers. Decoders here are the test's own,
 * written from the RFCs. */
#include "t.h"

#include "core/arena.h"
#include "features/messaging/infrastructure/email_mime.h"

#include <ctype.h>
#include <string.h>

static int
hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : toupper((unsigned char)c) - 'A' + 10;
}

/* Decodes quoted-printable into out[cap] (soft breaks removed, CRLF kept); returns out. */
static char *
qp_decode(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    while (*s && k + 1 < cap) {
        if (s[0] == '=' && s[1] == '\r' && s[2] == '\n') {
            s += 3;
        } else if (s[0] == '=' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            out[k++] = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 3;
        } else {
            out[k++] = *s++;
        }
    }
    out[k] = '\0';
    return out;
}

static int
b64val(char c)
{
    const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(tab, c);
    return c && p ? (int)(p - tab) : -1;
}

/* Appends the base64 text s[n] decoded to out at *k. */
static void
b64_decode(const char *s, size_t n, char *out, size_t *k)
{
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int d = b64val(s[i]);
        if (d < 0)
            continue;
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[(*k)++] = (char)((v >> bits) & 0xff);
        }
    }
}

/* 1 when s[n] is complete, valid UTF-8 (no sequence cut at either end). */
static int
utf8_whole(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : (s[i] >> 5) == 6 ? 2 : (s[i] >> 4) == 14 ? 3 : 4;
        if ((s[i] & 0xC0) == 0x80 || i + len > n)
            return 0;
        for (size_t j = 1; j < len; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* Decodes a header value of encoded-words separated by folding (CRLF SP), checking each word:
 * at most 75 characters, whole UTF-8 on its own. Returns the text. */
static char *
words_decode(const char *v, char *out, size_t cap)
{
    size_t k = 0;
    const char *p = v;

    while (*p) {
        const char *end;
        size_t start = k;
        if (strncmp(p, "\r\n ", 3) == 0) {
            p += 3;
            continue;
        }
        ASSERT(strncmp(p, "=?UTF-8?B?", 10) == 0);
        end = strstr(p + 10, "?=");
        ASSERT(end != NULL);
        ASSERT(end + 2 - p <= 75);
        ASSERT(k + (size_t)(end - p) < cap);
        b64_decode(p + 10, (size_t)(end - p - 10), out, &k);
        ASSERT(utf8_whole((const unsigned char *)out + start, k - start));
        p = end + 2;
    }
    out[k] = '\0';
    return out;
}

static void
assert_lines_within(const char *s, size_t max)
{
    size_t col = 0;
    for (; *s; s++) {
        if (s[0] == '\r') {
            ASSERT(s[1] == '\n'); /* no bare CR */
            continue;
        }
        if (s[0] == '\n') {
            ASSERT(col <= max);
            col = 0;
            continue;
        }
        col++;
    }
    ASSERT(col <= max);
}

TEST(unit_email_qp_long_line_round_trips)
{
    struct arena *a = arena_new();
    char line[201], back[1024];
    const char *qp;

    for (int i = 0; i < 200; i++)
        line[i] = (char)('a' + i % 26);
    line[200] = '\0';
    qp = email_mime_qp(a, line);
    assert_lines_within(qp, EMAIL_QP_LINE_MAX);
    ASSERT(strstr(qp, "=\r\n") != NULL);
    ASSERT_STREQ(line, qp_decode(qp, back, sizeof(back)));
    arena_free(a);
}

TEST(unit_email_qp_escapes_and_line_ends)
{
    struct arena *a = arena_new();
    char back[512];
    const char *text = "a=b \nend tab\t\r\ncaf\xc3\xa9 \xf0\x9f\x98\x80\nlone\rcr\n.dot";
    const char *qp = email_mime_qp(a, text);

    ASSERT_STREQ("a=3Db=20\r\nend tab=09\r\ncaf=C3=A9 =F0=9F=98=80\r\nlone=0Dcr\r\n.dot", qp);
    ASSERT_STREQ("a=b \r\nend tab\t\r\ncaf\xc3\xa9 \xf0\x9f\x98\x80\r\nlone\rcr\r\n.dot",
                 qp_decode(qp, back, sizeof(back)));
    arena_free(a);
}

TEST(unit_email_qp_never_splits_an_escape)
{
    struct arena *a = arena_new();
    char text[400], back[2048];
    const char *qp;

    /* Escapes at every offset across the soft break boundary. */
    for (int shift = 0; shift < 4; shift++) {
        size_t k = 0;
        for (int i = 0; i < shift; i++)
            text[k++] = 'x';
        for (int i = 0; i < 60; i++) {
            text[k++] = '\xc3';
            text[k++] = '\xb1';
        }
        text[k] = '\0';
        qp = email_mime_qp(a, text);
        assert_lines_within(qp, EMAIL_QP_LINE_MAX);
        ASSERT_STREQ(text, qp_decode(qp, back, sizeof(back)));
    }
    arena_free(a);
}

TEST(unit_email_subject_ascii_copied_utf8_encoded)
{
    struct arena *a = arena_new();
    char back[512];
    const char *v;

    ASSERT_STREQ("Welcome, Ana!", email_mime_header_text(a, "Welcome, Ana!", 7));
    v = email_mime_header_text(a,
                               "\xc3\x91"
                               "and\xc3\xba \xf0\x9f\x98\x80 <test>",
                               7);
    ASSERT(strchr(v, '<') == NULL);
    ASSERT_STREQ("\xc3\x91"
                 "and\xc3\xba \xf0\x9f\x98\x80 <test>",
                 words_decode(v, back, 512));
    /* "=?" in plain text would read as an encoded-word: it is encoded itself */
    v = email_mime_header_text(a, "=?UTF-8?B?QQ==?=", 7);
    ASSERT_STREQ("=?UTF-8?B?QQ==?=", words_decode(v, back, 512));
    arena_free(a);
}

TEST(unit_email_subject_crlf_is_encoded_not_copied)
{
    struct arena *a = arena_new();
    char back[512];
    const char *v = email_mime_header_text(a, "Hi\r\nBcc: victim@example.com", 7);

    /* The only CRLFs are folds (CRLF SP) between words. */
    for (const char *p = strchr(v, '\n'); p; p = strchr(p + 1, '\n'))
        ASSERT(p > v && p[-1] == '\r' && p[1] == ' ');
    ASSERT(strstr(v, "Bcc:") == NULL);
    ASSERT_STREQ("Hi\r\nBcc: victim@example.com", words_decode(v, back, sizeof(back)));
    arena_free(a);
}

TEST(unit_email_long_utf8_subject_folds_on_characters)
{
    struct arena *a = arena_new();
    char text[600], back[1024];
    size_t k = 0;
    const char *v;

    for (int i = 0; i < 100; i++) { /* 3- and 4-byte characters mixed */
        const char *c = i % 3 ? "\xe2\x82\xac" : "\xf0\x9f\x98\x80";
        memcpy(text + k, c, strlen(c));
        k += strlen(c);
    }
    text[k] = '\0';
    v = email_mime_header_text(a, text, 7);
    ASSERT(strstr(v, "\r\n ") != NULL);
    ASSERT_STREQ(text, words_decode(v, back, sizeof(back)));
    arena_free(a);
}

TEST(unit_email_phrase_atoms_quoted_or_encoded)
{
    struct arena *a = arena_new();
    char back[256];
    const char *v;

    ASSERT_STREQ("John Doe", email_mime_phrase(a, "John Doe"));
    ASSERT_STREQ("\"Doe, John \\\"JD\\\"\"", email_mime_phrase(a, "Doe, John \"JD\""));
    ASSERT_STREQ("", email_mime_phrase(a, NULL));
    v = email_mime_phrase(a, "Eve\r\nBcc: x@y.z");
    ASSERT(strstr(v, "Bcc") == NULL);
    ASSERT_STREQ("Eve\r\nBcc: x@y.z", words_decode(v, back, sizeof(back)));
    arena_free(a);
}

static struct email_message
sample(void)
{
    struct email_message m;
    memset(&m, 0, sizeof(m));
    m.from.name = "Sales Pad";
    m.from.addr = "hello@salespad.test";
    m.to.name = "Ana Lima";
    m.to.addr = "ana@example.com";
    m.subject = "Welcome, Ana!";
    m.message_id = "01a2-b3@salespad.test";
    m.date_ms = 0;
    m.body = "Hi Ana,\n\nWelcome.";
    return m;
}

TEST(unit_email_build_headers)
{
    struct arena *a = arena_new();
    struct email_message m = sample();
    struct sp_error err = {0};
    const char *out = NULL;
    size_t len = 0;

    m.reply_to = "reply+abc@in.salespad.test";
    ASSERT_OK(email_mime_build(&m, a, &out, &len, &err));
    ASSERT_EQ(strlen(out), len);
    ASSERT_STREQ("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"
                 "From: Sales Pad <hello@salespad.test>\r\n"
                 "To: Ana Lima <ana@example.com>\r\n"
                 "Reply-To: <reply+abc@in.salespad.test>\r\n"
                 "Subject: Welcome, Ana!\r\n"
                 "Message-ID: <01a2-b3@salespad.test>\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=UTF-8\r\n"
                 "Content-Transfer-Encoding: quoted-printable\r\n"
                 "\r\n"
                 "Hi Ana,\r\n\r\nWelcome.\r\n",
                 out);
    arena_free(a);
}

TEST(unit_email_build_in_reply_to_sets_references)
{
    struct arena *a = arena_new();
    struct email_message m = sample();
    struct sp_error err = {0};
    const char *out = NULL;
    size_t len = 0;

    m.in_reply_to = "<in-1@mail.example.com>";
    ASSERT_OK(email_mime_build(&m, a, &out, &len, &err));
    ASSERT_CONTAINS(out, "\r\nIn-Reply-To: <in-1@mail.example.com>\r\n");
    ASSERT_CONTAINS(out, "\r\nReferences: <in-1@mail.example.com>\r\n");
    ASSERT(strstr(out, "\r\nReply-To:") == NULL); /* no Reply-To without a reply domain */
    arena_free(a);
}

TEST(unit_email_build_refuses_injection_in_addresses_and_ids)
{
    struct arena *a = arena_new();
    struct email_message m;
    struct sp_error err = {0};
    const char *out = NULL;
    size_t len = 0;

    m = sample();
    m.to.addr = "ana@example.com\r\nBcc: x@y.z";
    ASSERT_EQ(SP_EPERMANENT, email_mime_build(&m, a, &out, &len, &err));
    ASSERT_STREQ("to", err.field);
    m = sample();
    m.to.addr = "an\xc3\xa1@example.com"; /* SMTPUTF8 is not spoken */
    sp_error_clear(&err);
    ASSERT_EQ(SP_EPERMANENT, email_mime_build(&m, a, &out, &len, &err));
    m = sample();
    m.in_reply_to = "<a@b>\r\nBcc: x@y.z";
    sp_error_clear(&err);
    ASSERT_EQ(SP_EPERMANENT, email_mime_build(&m, a, &out, &len, &err));
    m = sample();
    m.message_id = "x>y@z";
    sp_error_clear(&err);
    ASSERT_EQ(SP_EPERMANENT, email_mime_build(&m, a, &out, &len, &err));
    /* A hostile display name is encoded: one To header, no Bcc. */
    m = sample();
    m.to.name = "Eve\r\nBcc: x@y.z";
    sp_error_clear(&err);
    ASSERT_OK(email_mime_build(&m, a, &out, &len, &err));
    ASSERT(strstr(out, "Bcc") == NULL);
    arena_free(a);
}

TEST(unit_email_build_too_large)
{
    struct arena *a = arena_new();
    struct email_message m = sample();
    struct sp_error err = {0};
    const char *out = NULL;
    size_t len = 0, n = EMAIL_MIME_MAX / 3 + 10;
    char *body = arena_alloc(a, n + 1);

    memset(body, '=', n); /* each becomes "=3D" */
    body[n] = '\0';
    m.body = body;
    ASSERT_EQ(SP_ETOOLARGE, email_mime_build(&m, a, &out, &len, &err));
    arena_free(a);
}

TEST(unit_email_date)
{
    char d[32];

    email_mime_date(0, d);
    ASSERT_STREQ("Thu, 01 Jan 1970 00:00:00 +0000", d);
    email_mime_date(1796231922000LL, d); /* 2026-12-02T17:18:42Z */
    ASSERT_STREQ("Wed, 02 Dec 2026 17:18:42 +0000", d);
}

TEST(unit_email_addr_parse)
{
    struct arena *a = arena_new();
    struct email_addr ad;
    struct sp_error err = {0};

    ASSERT_OK(email_addr_parse(a, "Sales Pad <hello@salespad.test>", &ad, &err));
    ASSERT_STREQ("Sales Pad", ad.name);
    ASSERT_STREQ("hello@salespad.test", ad.addr);
    ASSERT_OK(email_addr_parse(a, "\"Pad, Sales\" <hello@salespad.test>", &ad, &err));
    ASSERT_STREQ("Pad, Sales", ad.name);
    ASSERT_OK(email_addr_parse(a, "hello@salespad.test", &ad, &err));
    ASSERT(ad.name == NULL);
    ASSERT_EQ(SP_EINVAL, email_addr_parse(a, "Sales Pad <hello>", &ad, &err));
    ASSERT_EQ(SP_EINVAL, email_addr_parse(a, "Sales Pad <a@b.c> x", &ad, &err));
    ASSERT_EQ(SP_EINVAL, email_addr_parse(a, "a b@c.d", &ad, &err));
    arena_free(a);
}

TEST(unit_email_reply_token)
{
    const char *lead = "2728542f-1069-401c-a54f-4ab8a3a46a06";
    const char *secret = "0123456789abcdef";
    char t1[EMAIL_REPLY_TOKEN_LEN + 1], t2[EMAIL_REPLY_TOKEN_LEN + 1], id[37];

    ASSERT_OK(email_reply_token(secret, strlen(secret), lead, t1));
    ASSERT_EQ(EMAIL_REPLY_TOKEN_LEN, strlen(t1));
    ASSERT(strncmp(t1, "2728542f1069401ca54f4ab8a3a46a06-", 33) == 0);
    ASSERT_OK(email_reply_token(secret, strlen(secret), lead, t2));
    ASSERT_STREQ(t1, t2); /* stable: every message of the lead carries the same address */
    ASSERT_OK(email_reply_token_check(secret, strlen(secret), t1, id));
    ASSERT_STREQ(lead, id);
    /* "reply+" and the token fit the 64-byte local part */
    ASSERT(strlen("reply+") + EMAIL_REPLY_TOKEN_LEN <= 64);
    /* another secret, a tampered MAC or lead id: refused */
    ASSERT_EQ(SP_EINVAL, email_reply_token_check("another-secret-16", 17, t1, id));
    t2[EMAIL_REPLY_TOKEN_LEN - 1] = t2[EMAIL_REPLY_TOKEN_LEN - 1] == '0' ? '1' : '0';
    ASSERT_EQ(SP_EINVAL, email_reply_token_check(secret, strlen(secret), t2, id));
    memcpy(t2, t1, sizeof(t2));
    t2[0] = t2[0] == '3' ? '4' : '3';
    ASSERT_EQ(SP_EINVAL, email_reply_token_check(secret, strlen(secret), t2, id));
    ASSERT_EQ(SP_EINVAL, email_reply_token_check(secret, strlen(secret), "short", id));
    ASSERT_EQ(SP_EINVAL, email_reply_token(secret, strlen(secret), "not-a-uuid", t1));
}

/* The one-click unsubscribe headers (RFC 2369, RFC 8058): after the threading headers, the
 * URL between angle brackets, folded once after the colon when the line would be long. */
TEST(unit_email_build_list_unsubscribe)
{
    struct arena *a = arena_new();
    struct email_message m = sample();
    struct sp_error err = {0};
    const char *out = NULL;
    size_t len = 0;

    m.list_unsubscribe = "https://x.test/u/1";
    ASSERT_OK(email_mime_build(&m, a, &out, &len, &err));
    ASSERT_CONTAINS(out, "\r\nMessage-ID: <01a2-b3@salespad.test>\r\n"
                         "List-Unsubscribe: <https://x.test/u/1>\r\n"
                         "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                         "MIME-Version: 1.0\r\n");
    m.list_unsubscribe = "https://salespad.example.com/unsubscribe/"
                         "2728542f1069401ca54f4ab8a3a46a06-0123456789abcdef0123456789abcdef";
    ASSERT_OK(email_mime_build(&m, a, &out, &len, &err));
    ASSERT_CONTAINS(out, "\r\nList-Unsubscribe:\r\n <https://salespad.example.com/unsubscribe/"
                         "2728542f1069401ca54f4ab8a3a46a06-0123456789abcdef0123456789abcdef>\r\n"
                         "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    /* none without a URL */
    m.list_unsubscribe = NULL;
    ASSERT_OK(email_mime_build(&m, a, &out, &len, &err));
    ASSERT(strstr(out, "List-Unsubscribe") == NULL);
    /* a URL that could break out of the brackets or the line never goes out */
    {
        static const char *const bad[] = {"https://x.test/a>b",
                                          "https://x.test/a b",
                                          "https://x.test/\r\nBcc: e@evil.test",
                                          "https://x.test/a,<mailto:e@evil.test>",
                                          "mailto:unsubscribe@x.test",
                                          "https://x.test/\"q\""};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            sp_error_clear(&err);
            m.list_unsubscribe = bad[i];
            ASSERT_EQ(SP_EPERMANENT, email_mime_build(&m, a, &out, &len, &err));
            ASSERT_STREQ("listUnsubscribe", err.field);
        }
    }
    arena_free(a);
}

TEST(unit_email_unsubscribe_token)
{
    const char *lead = "2728542f-1069-401c-a54f-4ab8a3a46a06";
    const char *secret = "0123456789abcdef";
    char t1[EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1], t2[EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1], id[37];
    char reply[EMAIL_REPLY_TOKEN_LEN + 1];

    ASSERT_OK(email_unsubscribe_token(secret, strlen(secret), lead, t1));
    ASSERT_EQ(EMAIL_UNSUBSCRIBE_TOKEN_LEN, strlen(t1));
    ASSERT(strncmp(t1, "2728542f1069401ca54f4ab8a3a46a06-", 33) == 0);
    ASSERT_OK(email_unsubscribe_token(secret, strlen(secret), lead, t2));
    ASSERT_STREQ(t1, t2); /* stable: every email of the lead carries the same link */
    ASSERT_OK(email_unsubscribe_token_check(secret, strlen(secret), t1, id));
    ASSERT_STREQ(lead, id);
    for (size_t i = 0; t2[i]; i++) /* hex digits in either case */
        t2[i] = (char)toupper((unsigned char)t2[i]);
    ASSERT_OK(email_unsubscribe_token_check(secret, strlen(secret), t2, id));
    /* another secret, a tampered MAC or lead id, a truncated token, no secret: refused */
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token_check("another-secret-16", 17, t1, id));
    memcpy(t2, t1, sizeof(t2));
    t2[EMAIL_UNSUBSCRIBE_TOKEN_LEN - 1] = t2[EMAIL_UNSUBSCRIBE_TOKEN_LEN - 1] == '0' ? '1' : '0';
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token_check(secret, strlen(secret), t2, id));
    memcpy(t2, t1, sizeof(t2));
    t2[0] = t2[0] == '3' ? '4' : '3';
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token_check(secret, strlen(secret), t2, id));
    t1[EMAIL_UNSUBSCRIBE_TOKEN_LEN - 1] = '\0';
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token_check(secret, strlen(secret), t1, id));
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token_check(NULL, 0, t2, id));
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token(NULL, 0, lead, t1));
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token(secret, strlen(secret), "not-a-uuid", t1));
    /* under one secret, a reply token is no unsubscribe token (and its MAC no prefix of one) */
    ASSERT_OK(email_reply_token(secret, strlen(secret), lead, reply));
    ASSERT_OK(email_unsubscribe_token(secret, strlen(secret), lead, t1));
    ASSERT(strncmp(reply + 33, t1 + 33, EMAIL_REPLY_TOKEN_LEN - 33) != 0);
    ASSERT_EQ(SP_EINVAL, email_unsubscribe_token_check(secret, strlen(secret), reply, id));
    ASSERT_EQ(SP_EINVAL, email_reply_token_check(secret, strlen(secret), t1, id));
}
