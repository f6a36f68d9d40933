/* test_core.c: the leaf libraries: JSON writer, arena, UUIDs, errors, event bus, backoff, time
 * formatting and the log levels. */
#include "t.h"

/* <syslog.h> defines LOG_INFO, LOG_DEBUG, ... as macros; it comes before core/log.h on purpose,
 * so that a log level named like one of them breaks this file's build. */
#include <syslog.h>

#include "core/arena.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/event_bus.h"
#include "core/jsonr.h"
#include "core/jsonw.h"
#include "core/utf8.h"
#include "core/hex.h"
#include "core/http.h"
#include "app/error_body.h"
#include "core/log.h"
#include "core/queue.h"
#include "core/uuid.h"

#include <jansson.h>
#include <unistd.h>

/* ---- jsonw ----------------------------------------------------------------------------- */

static const char *
finish(struct jsonw *w)
{
    const char *s = NULL;
    size_t len = 0;
    ASSERT_OK(jsonw_finish(w, &s, &len));
    ASSERT_EQ(strlen(s), len);
    return s;
}

TEST(unit_jsonw_nesting_and_commas)
{
    struct arena *a = arena_new();
    struct jsonw w;

    jsonw_init(&w, a, 4096);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "a", "x");
    jsonw_key(&w, "list");
    jsonw_arr_begin(&w);
    jsonw_int(&w, 1);
    jsonw_int(&w, -2);
    jsonw_obj_begin(&w);
    jsonw_obj_end(&w);
    jsonw_arr_begin(&w);
    jsonw_arr_end(&w);
    jsonw_str(&w, NULL);
    jsonw_bool(&w, 1);
    jsonw_arr_end(&w);
    jsonw_kint(&w, "n", 9007199254740993LL);
    jsonw_kbool(&w, "f", 0);
    jsonw_kraw(&w, "raw", "{\"k\":[1]}");
    jsonw_kraw(&w, "rawnull", NULL);
    jsonw_key(&w, "obj");
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "nul", NULL);
    jsonw_obj_end(&w);
    jsonw_obj_end(&w);
    ASSERT_STREQ("{\"a\":\"x\",\"list\":[1,-2,{},[],null,true],\"n\":9007199254740993,"
                 "\"f\":false,\"raw\":{\"k\":[1]},\"rawnull\":null,\"obj\":{\"nul\":null}}",
                 finish(&w));
    arena_free(a);
}

TEST(unit_jsonw_escaping)
{
    struct arena *a = arena_new();
    struct jsonw w;

    jsonw_init(&w, a, 4096);
    jsonw_arr_begin(&w);
    jsonw_str(&w, "q\"b\\n\nr\rt\t\x01\x1f/caf\xc3\xa9");
    jsonw_strn(&w, "a\0b", 3);
    jsonw_arr_end(&w);
    ASSERT_STREQ("[\"q\\\"b\\\\n\\nr\\rt\\t\\u0001\\u001f/caf\xc3\xa9\",\"a\\u0000b\"]",
                 finish(&w));
    jsonw_init(&w, a, 4096);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "k\"ey", "v");
    jsonw_obj_end(&w);
    ASSERT_STREQ("{\"k\\\"ey\":\"v\"}", finish(&w));
    arena_free(a);
}

/* Bytes that are not UTF-8 become U+FFFD, one per byte that starts no valid sequence; valid
 * sequences (2, 3, 4 bytes) stay as they are, also next to bad ones. */
TEST(unit_jsonw_repairs_bad_utf8)
{
    struct arena *a = arena_new();
    struct jsonw w;

    jsonw_init(&w, a, 4096);
    jsonw_arr_begin(&w);
    jsonw_str(&w, "a\xff"
                  "b");
    jsonw_str(&w, "\xc3");                             /* cut short at the end */
    jsonw_str(&w, "\xc0\xaf");                         /* overlong '/' */
    jsonw_str(&w, "\xed\xa0\x80");                     /* a surrogate */
    jsonw_str(&w, "\xf0\x9f\x98\x80\x80\xe2\x82\xac"); /* 😀, stray continuation, € */
    jsonw_strn(&w, "\xe2\x82", 2);                     /* length-bounded: cut short */
    jsonw_arr_end(&w);
    ASSERT_STREQ("[\"a\xef\xbf\xbd"
                 "b\",\"\xef\xbf\xbd\",\"\xef\xbf\xbd\xef\xbf\xbd\","
                 "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\",\"\xf0\x9f\x98\x80\xef\xbf\xbd"
                 "\xe2\x82\xac\",\"\xef\xbf\xbd\xef\xbf\xbd\"]",
                 finish(&w));
    arena_free(a);
}

TEST(unit_hex_encode_decode)
{
    unsigned char d[3] = {0x00, 0xab, 0xff}, out[3];
    char h[7];

    sp_hex_encode(d, 3, h);
    ASSERT_STREQ("00abff", h);
    ASSERT_OK(sp_hex_decode("00ABff", out, 3));
    ASSERT_EQ(0, memcmp(d, out, 3));
    ASSERT_EQ(-1, sp_hex_decode("00abf", out, 3));   /* short */
    ASSERT_EQ(-1, sp_hex_decode("00abff0", out, 3)); /* long */
    ASSERT_EQ(-1, sp_hex_decode("00abfg", out, 3));  /* not a digit */
    ASSERT_EQ(-1, sp_hex_decode("", out, 3));
    ASSERT_EQ(0, sp_hex_decode("", out, 0));
    ASSERT_EQ(-1, sp_hex_digit('\0'));
    ASSERT_EQ(15, sp_hex_digit('F'));
    /* The signature check on it: the right hex in either case, nothing else. */
    { /* `printf data | openssl dgst -sha256 -hmac k` */
        const char *mac = "98755ce7a0d431b5d7b8ec8e343ada3bcaa4f6c44ca468cffcbaa9c273634dd7";
        ASSERT(sp_hmac_sha256_hex_ok("k", 1, "data", 4, mac));
        ASSERT(sp_hmac_sha256_hex_ok(
            "k", 1, "data", 4, "98755CE7A0D431B5D7B8EC8E343ADA3BCAA4F6C44CA468CFFCBAA9C273634DD7"));
        ASSERT(!sp_hmac_sha256_hex_ok("k", 1, "datA", 4, mac));
        ASSERT(!sp_hmac_sha256_hex_ok("K", 1, "data", 4, mac));
        ASSERT(!sp_hmac_sha256_hex_ok("", 0, "data", 4, mac));
        ASSERT(!sp_hmac_sha256_hex_ok("k", 1, "data", 4, NULL));
    }
}

TEST(unit_utf8_decode_strict)
{
    static const struct {
        const char *s;
        size_t len;
        size_t want;
        uint32_t cp;
    } cases[] = {
        {"A", 1, 1, 0x41},
        {"\xc2\x80", 2, 2, 0x80},
        {"\xdf\xbf", 2, 2, 0x7ff},
        {"\xe0\xa0\x80", 3, 3, 0x800},
        {"\xef\xbf\xbf", 3, 3, 0xffff},
        {"\xf0\x90\x80\x80", 4, 4, 0x10000},
        {"\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff},
        {"\xc1\xbf", 2, 0, 0},         /* overlong */
        {"\xe0\x9f\xbf", 3, 0, 0},     /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, 0, 0}, /* overlong */
        {"\xf4\x90\x80\x80", 4, 0, 0}, /* past U+10FFFF */
        {"\xed\xbf\xbf", 3, 0, 0},     /* surrogate */
        {"\x80", 1, 0, 0},             /* continuation */
        {"\xe2\x82", 2, 0, 0},         /* cut by len */
        {"\xe2\x00\xac", 3, 0, 0},     /* cut by a NUL */
        {"\xf5\x80\x80\x80", 4, 0, 0}, /* never a lead byte */
        {"", 0, 0, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t cp = 0;
        size_t n = sp_utf8_decode((const unsigned char *)cases[i].s, cases[i].len, &cp);
        ASSERT_EQ(cases[i].want, n);
        if (n > 0)
            ASSERT_EQ(cases[i].cp, cp);
    }
    ASSERT(sp_utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    ASSERT(!sp_utf8_valid("caf\xc3", 4));
    ASSERT(sp_utf8_valid("a\0b", 3));
}

/* The error body's shape is installed by the application: the neutral one without it, the
 * NestJS one with error_body_install (what the process and this runner use). */
TEST(unit_http_error_body_is_installed)
{
    struct arena *a = arena_new();
    struct http_response r = {0};
    const char *msgs[] = {"name should not be empty", "bad \xff byte"};

    http_error_render_set(NULL);
    http_error(&r, a, 400, msgs, 2, 1);
    ASSERT_STREQ("{\"status\":400,\"error\":\"Bad Request\",\"messages\":[\"name should not be "
                 "empty\",\"bad \xef\xbf\xbd byte\"]}",
                 r.body);
    ASSERT_EQ(strlen(r.body), r.body_len);
    error_body_install();
    http_error(&r, a, 400, msgs, 2, 1);
    ASSERT_STREQ("{\"message\":[\"name should not be empty\",\"bad \xef\xbf\xbd byte\"],"
                 "\"error\":\"Bad Request\",\"statusCode\":400}",
                 r.body);
    http_error(&r, a, 404, NULL, 0, 0);
    ASSERT_STREQ("{\"message\":\"Not Found\",\"error\":\"Not Found\",\"statusCode\":404}", r.body);
    http_error(&r, a, 400, msgs, 1, 0);
    ASSERT_STREQ("{\"message\":\"name should not be empty\",\"error\":\"Bad "
                 "Request\",\"statusCode\":400}",
                 r.body);
    arena_free(a);
}

TEST(unit_jsonw_time)
{
    struct arena *a = arena_new();
    struct jsonw w;

    jsonw_init(&w, a, 4096);
    jsonw_obj_begin(&w);
    jsonw_ktime(&w, "at", 1795790265686LL, 0);
    jsonw_ktime(&w, "none", 0, 1);
    jsonw_ktime(&w, "epoch", 0, 0);
    jsonw_obj_end(&w);
    ASSERT_STREQ("{\"at\":\"2026-11-27T14:37:45.686Z\",\"none\":null,"
                 "\"epoch\":\"1970-01-01T00:00:00.000Z\"}",
                 finish(&w));
    arena_free(a);
}

TEST(unit_jsonw_grows_past_first_buffer)
{
    struct arena *a = arena_new();
    struct jsonw w;
    char big[3000];
    const char *s;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    jsonw_init(&w, a, 1 << 20);
    jsonw_arr_begin(&w);
    for (int i = 0; i < 4; i++)
        jsonw_str(&w, big);
    jsonw_arr_end(&w);
    s = finish(&w);
    ASSERT_EQ(2 + 4 * (2 + 2999) + 3, strlen(s));
    arena_free(a);
}

TEST(unit_jsonw_limit_is_etoolarge)
{
    struct arena *a = arena_new();
    struct jsonw w;
    const char *s = NULL;

    /* "abcd" with quotes is 6 bytes; the limit counts the terminating NUL */
    jsonw_init(&w, a, 7);
    jsonw_str(&w, "abcd");
    ASSERT_STREQ("\"abcd\"", finish(&w));

    jsonw_init(&w, a, 6);
    jsonw_str(&w, "abcd");
    ASSERT_EQ(SP_ETOOLARGE, jsonw_finish(&w, &s, NULL));

    /* once over, later small writes do not produce a truncated document */
    jsonw_init(&w, a, 16);
    jsonw_arr_begin(&w);
    jsonw_str(&w, "this string is too long");
    jsonw_int(&w, 1);
    jsonw_arr_end(&w);
    ASSERT_EQ(SP_ETOOLARGE, jsonw_finish(&w, &s, NULL));
    arena_free(a);
}

TEST(unit_jsonw_depth_limit_is_etoolarge)
{
    struct arena *a = arena_new();
    struct jsonw w;
    const char *s = NULL;

    jsonw_init(&w, a, 4096);
    for (int i = 0; i < JSONW_DEPTH_MAX; i++)
        jsonw_arr_begin(&w);
    for (int i = 0; i < JSONW_DEPTH_MAX; i++)
        jsonw_arr_end(&w);
    ASSERT_OK(jsonw_finish(&w, &s, NULL));

    jsonw_init(&w, a, 4096);
    for (int i = 0; i < JSONW_DEPTH_MAX + 1; i++)
        jsonw_arr_begin(&w);
    ASSERT_EQ(SP_ETOOLARGE, jsonw_finish(&w, &s, NULL));
    arena_free(a);
}

/* ---- arena ----------------------------------------------------------------------------- */

TEST(unit_arena_alloc_zeroed_aligned)
{
    struct arena *a = arena_new();

    for (size_t len = 1; len < 100; len += 7) {
        unsigned char *p = arena_alloc(a, len);
        ASSERT_EQ(0, (uintptr_t)p % 16);
        for (size_t i = 0; i < len; i++)
            ASSERT_EQ(0, p[i]);
        memset(p, 0xff, len);
    }
    arena_free(a);
}

TEST(unit_arena_large_blocks_and_reset)
{
    struct arena *a = arena_new();
    char *big = arena_alloc(a, 100000); /* larger than a block */
    char *small;

    memset(big, 'x', 100000);
    ASSERT(arena_used(a) >= 100000);
    for (int i = 0; i < 1000; i++)
        arena_alloc(a, 100);
    arena_reset(a);
    ASSERT_EQ(0, arena_used(a));
    small = arena_alloc(a, 10);
    ASSERT(small != NULL);
    ASSERT_EQ(16, arena_used(a));
    arena_free(a);
    arena_free(NULL);
}

TEST(unit_arena_strings)
{
    struct arena *a = arena_new();
    char src[] = "hello world";
    char *d = arena_strdup(a, src);
    char *n = arena_strndup(a, "abcdef", 3);
    char *p = arena_printf(a, "%s-%d-%05.1f", "x", 42, 3.14159);

    src[0] = 'J';
    ASSERT_STREQ("hello world", d);
    ASSERT_STREQ("abc", n);
    ASSERT_STREQ("x-42-003.1", p);
    ASSERT_STREQ("", arena_strdup(a, ""));
    arena_free(a);
}

/* ---- uuid ------------------------------------------------------------------------------ */

static int
is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

TEST(unit_uuid_v4_format)
{
    char prev[SP_UUID_LEN + 1] = "";

    for (int n = 0; n < 200; n++) {
        char u[SP_UUID_LEN + 1];
        sp_uuid_v4(u);
        ASSERT_EQ(SP_UUID_LEN, strlen(u));
        for (int i = 0; i < SP_UUID_LEN; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                ASSERT_EQ('-', u[i]);
            else
                ASSERT(is_lower_hex(u[i]));
        }
        ASSERT_EQ('4', u[14]);                 /* version */
        ASSERT(strchr("89ab", u[19]) != NULL); /* RFC 4122 variant */
        ASSERT(sp_uuid_valid(u, strlen(u)));
        ASSERT(strcmp(prev, u) != 0);
        memcpy(prev, u, sizeof(prev));
    }
}

TEST(unit_uuid_valid)
{
    static const char good[] = "2728542f-1069-401c-a54f-4ab8a3a46a06";

    ASSERT(sp_uuid_valid(good, strlen(good)));
    ASSERT(sp_uuid_valid("2728542F-1069-401C-A54F-4AB8A3A46A06", 36));
    ASSERT(!sp_uuid_valid(good, 35));
    ASSERT(!sp_uuid_valid("", 0));
    ASSERT(!sp_uuid_valid("2728542f-1069-401c-a54f-4ab8a3a46a0", 35));
    ASSERT(!sp_uuid_valid("2728542f-1069-401c-a54f-4ab8a3a46a066", 37));
    ASSERT(!sp_uuid_valid("2728542f1069-401c-a54f-4ab8a3a46a06-", 36));
    ASSERT(!sp_uuid_valid("2728542g-1069-401c-a54f-4ab8a3a46a06", 36));
    ASSERT(!sp_uuid_valid("{728542f-1069-401c-a54f-4ab8a3a46a06", 36));
    ASSERT(!sp_uuid_valid("2728542f-1069-401c-a54f-4ab8a3a46a0\0", 36));
    ASSERT(!sp_uuid_valid("not-a-uuid", 10));
}

/* ---- err ------------------------------------------------------------------------------- */

TEST(unit_err_first_error_wins)
{
    struct sp_error err = {0};

    ASSERT_EQ(SP_EINVAL, sp_error_set(&err, SP_EINVAL, "email", "bad %s", "email"));
    ASSERT_EQ(SP_EUNAVAIL, sp_error_set(&err, SP_EUNAVAIL, "database", "down"));
    ASSERT_EQ(SP_EINVAL, err.code);
    ASSERT_STREQ("email", err.field);
    ASSERT_STREQ("bad email", err.msg);
    sp_error_clear(&err);
    ASSERT_EQ(SP_OK, err.code);
    ASSERT_STREQ("", err.field);
    ASSERT_EQ(SP_EUNAVAIL, sp_error_set(&err, SP_EUNAVAIL, NULL, "down"));
    ASSERT_STREQ("", err.field);
    ASSERT_STREQ("down", err.msg);
    ASSERT_EQ(SP_ENOTFOUND, sp_error_set(NULL, SP_ENOTFOUND, "id", "x")); /* NULL err is fine */
    sp_error_clear(NULL);
}

TEST(unit_err_message_one_line_and_bounded)
{
    struct sp_error err = {0};
    char long_msg[500];

    memset(long_msg, 'm', sizeof(long_msg) - 1);
    long_msg[sizeof(long_msg) - 1] = '\0';
    sp_error_set(&err, SP_EINTERNAL, "a_field_name_that_is_far_too_long_to_fit", "%s", long_msg);
    ASSERT_EQ(SP_ERROR_MSG_MAX - 1, strlen(err.msg));
    ASSERT_EQ(SP_ERROR_FIELD_MAX - 1, strlen(err.field));
    sp_error_clear(&err);
    sp_error_set(&err, SP_EINTERNAL, "f", "line1\nline2\r\nline3");
    ASSERT_STREQ("line1 line2  line3", err.msg);
}

TEST(unit_err_names_and_retryable)
{
    ASSERT_STREQ("OK", sp_err_name(SP_OK));
    ASSERT_STREQ("EINVAL", sp_err_name(SP_EINVAL));
    ASSERT_STREQ("ENOTFOUND", sp_err_name(SP_ENOTFOUND));
    ASSERT_STREQ("EUNAVAIL", sp_err_name(SP_EUNAVAIL));
    ASSERT_STREQ("EPERMANENT", sp_err_name(SP_EPERMANENT));
    ASSERT_STREQ("EINTERNAL", sp_err_name(SP_EINTERNAL));
    ASSERT_STREQ("EUNKNOWN", sp_err_name(-1));
    ASSERT_STREQ("EUNKNOWN", sp_err_name(12345));
    ASSERT_STREQ("invalid input", sp_err_str(SP_EINVAL));
    ASSERT_STREQ("unknown error", sp_err_str(-1));
    ASSERT(SP_EINVAL < 0 && SP_EINTERNAL < 0);

    ASSERT(sp_err_retryable(SP_EUNAVAIL));
    ASSERT(sp_err_retryable(SP_ETIMEDOUT));
    ASSERT(sp_err_retryable(SP_EPROVIDER));
    ASSERT(!sp_err_retryable(SP_EPERMANENT));
    ASSERT(!sp_err_retryable(SP_EINVAL));
    ASSERT(!sp_err_retryable(SP_ENOTFOUND));
    ASSERT(!sp_err_retryable(SP_ECONFLICT));
    ASSERT(!sp_err_retryable(SP_ETOOLARGE));
    ASSERT(!sp_err_retryable(SP_EINTERNAL));
    ASSERT(!sp_err_retryable(SP_OK));
    ASSERT(!sp_err_retryable(-1));
}

/* ---- event bus ------------------------------------------------------------------------- */

struct calls {
    int n;
    char order[16];
};

static int
rec_a(void *ctx, const void *payload, struct sp_error *err)
{
    struct calls *c = ctx;
    (void)err;
    ASSERT_STREQ("payload", payload);
    c->order[c->n++] = 'a';
    return SP_OK;
}

static int
rec_b(void *ctx, const void *payload, struct sp_error *err)
{
    struct calls *c = ctx;
    (void)payload;
    (void)err;
    c->order[c->n++] = 'b';
    return SP_OK;
}

static int
rec_fail(void *ctx, const void *payload, struct sp_error *err)
{
    struct calls *c = ctx;
    (void)payload;
    c->order[c->n++] = 'F';
    return sp_error_set(err, SP_EUNAVAIL, "x", "handler failed");
}

TEST(unit_event_bus_order_and_types)
{
    struct event_bus bus;
    struct calls c = {0};
    struct sp_error err = {0};

    event_bus_init(&bus);
    ASSERT_OK(event_bus_subscribe(&bus, 1, rec_a, &c));
    ASSERT_OK(event_bus_subscribe(&bus, 2, rec_b, &c));
    ASSERT_OK(event_bus_subscribe(&bus, 1, rec_b, &c));
    ASSERT_OK(event_bus_subscribe(&bus, 1, rec_a, &c));
    ASSERT_OK(event_bus_publish(&bus, 1, "payload", &err));
    ASSERT_STREQ("aba", c.order);
    ASSERT_OK(event_bus_publish(&bus, 3, "payload", &err)); /* no subscriber: fine */
    ASSERT_STREQ("aba", c.order);
    ASSERT_OK(event_bus_publish(&bus, 2, "payload", &err));
    ASSERT_STREQ("abab", c.order);
}

TEST(unit_event_bus_stops_at_first_error)
{
    struct event_bus bus;
    struct calls c = {0};
    struct sp_error err = {0};

    event_bus_init(&bus);
    ASSERT_OK(event_bus_subscribe(&bus, 1, rec_a, &c));
    ASSERT_OK(event_bus_subscribe(&bus, 1, rec_fail, &c));
    ASSERT_OK(event_bus_subscribe(&bus, 1, rec_b, &c));
    ASSERT_EQ(SP_EUNAVAIL, event_bus_publish(&bus, 1, "payload", &err));
    ASSERT_STREQ("aF", c.order);
    ASSERT_STREQ("handler failed", err.msg);
}

TEST(unit_event_bus_full_table)
{
    struct event_bus bus;
    struct calls c = {0};

    event_bus_init(&bus);
    for (int i = 0; i < EVENT_BUS_MAX; i++)
        ASSERT_OK(event_bus_subscribe(&bus, i, rec_b, &c));
    ASSERT_EQ(SP_ETOOLARGE, event_bus_subscribe(&bus, 99, rec_b, &c));
}

/* ---- jsonr ---------------------------------------------------------------------------- */

TEST(unit_jsonr_reads_one_string_field)
{
    char out[8];

    ASSERT_OK(jsonr_str("{\"a\":1,\"m\":\"xyz\"}", "m", out, sizeof(out)));
    ASSERT_STREQ("xyz", out);
    ASSERT_EQ(SP_EINVAL, jsonr_str("{\"m\":1}", "m", out, sizeof(out)));    /* not a string */
    ASSERT_EQ(SP_EINVAL, jsonr_str("[\"m\"]", "m", out, sizeof(out)));      /* not an object */
    ASSERT_EQ(SP_EINVAL, jsonr_str("{\"m\":\"x\"", "m", out, sizeof(out))); /* malformed */
    ASSERT_EQ(SP_EINVAL, jsonr_str(NULL, "m", out, sizeof(out)));
    ASSERT_EQ(SP_EINVAL, jsonr_str("{\"m\":\"a\",\"m\":\"b\"}", "m", out, sizeof(out)));
    ASSERT_EQ(SP_ETOOLARGE, jsonr_str("{\"m\":\"12345678\"}", "m", out, sizeof(out)));
    ASSERT_OK(jsonr_str("{\"m\":\"1234567\"}", "m", out, sizeof(out))); /* fits with its NUL */
}

/* ---- backoff --------------------------------------------------------------------------- */

#define EXP JOB_BACKOFF_EXPONENTIAL

TEST(unit_backoff_exponential_and_capped)
{
    ASSERT_EQ(1000, job_backoff_delay(EXP, 1000, 1, 0, 0));
    ASSERT_EQ(2000, job_backoff_delay(EXP, 1000, 2, 0, 0));
    ASSERT_EQ(4000, job_backoff_delay(EXP, 1000, 3, 0, 0));
    ASSERT_EQ(512000, job_backoff_delay(EXP, 1000, 10, 0, 0));
    ASSERT_EQ(1000, job_backoff_delay(EXP, 1000, 0, 0, 0)); /* no attempt yet: the base */
    ASSERT_EQ(1000, job_backoff_delay(EXP, 1000, -5, 0, 0));
    ASSERT_EQ(3600000, job_backoff_delay(EXP, 1000, 13, 0, 0)); /* 4096 s capped at one hour */
    ASSERT_EQ(3600000, job_backoff_delay(EXP, 1000, 1000, 0, 0));
    ASSERT_EQ(3600000, job_backoff_delay(EXP, INT64_MAX / 2, 3, 0, 0));
    ASSERT_EQ(3600000, job_backoff_delay(EXP, 7200000, 1, 0, 0));
    ASSERT_EQ(0, job_backoff_delay(EXP, 0, 5, 0, 0));
    ASSERT_EQ(0, job_backoff_delay(EXP, -1000, 5, 20, UINT32_MAX));
}

TEST(unit_backoff_jitter_bounds)
{
    /* jitter only shortens the delay, by at most jitter_pct percent */
    ASSERT_EQ(4000, job_backoff_delay(EXP, 1000, 3, 20, 0));
    ASSERT_EQ(3200, job_backoff_delay(EXP, 1000, 3, 20, UINT32_MAX));
    ASSERT_EQ(0, job_backoff_delay(EXP, 1000, 3, 100, UINT32_MAX));
    for (uint32_t r = 0; r < UINT32_MAX - 9999999u; r += 9999999u) {
        int64_t d = job_backoff_delay(EXP, 1000, 3, 20, r);
        ASSERT(d >= 3200 && d <= 4000);
    }
    {
        int64_t d = job_backoff_delay(EXP, 1000, 40, 10, UINT32_MAX / 2);
        ASSERT(d >= 3240000 && d <= 3600000);
    }
}

TEST(unit_backoff_one_policy_for_every_backend)
{
    /* The worker's policy is the only one: a BullMQ job's own backoff type and delay are
     * honoured (fixed = delay, exponential = 2^(n-1) * delay), under the same one-hour cap and
     * the worker's jitter, whatever queue the job came from. */
    ASSERT_EQ(300, job_backoff_delay(EXP, 300, 1, 20, 0));
    ASSERT_EQ(600, job_backoff_delay(EXP, 300, 2, 0, 0));
    ASSERT_EQ(1200, job_backoff_delay(EXP, 300, 3, 0, 0));
    ASSERT_EQ(3600000, job_backoff_delay(EXP, 300, 20, 0, 0)); /* capped like any job */
    ASSERT_EQ(300, job_backoff_delay(JOB_BACKOFF_FIXED, 300, 5, 0, 0));
    ASSERT_EQ(240, job_backoff_delay(JOB_BACKOFF_FIXED, 300, 5, 20, UINT32_MAX));
    ASSERT_EQ(3600000, job_backoff_delay(JOB_BACKOFF_FIXED, 7200000, 1, 0, 0));
    ASSERT_EQ(0, job_backoff_delay(JOB_BACKOFF_FIXED, 0, 3, 0, 0)); /* retried at once */
}

/* ---- time ------------------------------------------------------------------------------ */

static const char *
iso(int64_t ms, char *buf)
{
    sp_time_iso(ms, buf);
    return buf;
}

TEST(unit_time_iso_format)
{
    char buf[SP_ISO_TIME_LEN + 1];

    ASSERT_STREQ("1970-01-01T00:00:00.000Z", iso(0, buf));
    ASSERT_STREQ("2026-11-27T14:37:45.686Z", iso(1795790265686LL, buf));
    ASSERT_STREQ("2024-02-29T23:59:59.999Z", iso(1709251199999LL, buf));
    ASSERT_STREQ("2024-03-01T00:00:00.000Z", iso(1709251200000LL, buf));
    ASSERT_STREQ("1969-12-31T23:59:59.999Z", iso(-1, buf));
    ASSERT_STREQ("2000-01-01T00:00:00.007Z", iso(946684800007LL, buf));
    ASSERT_EQ(SP_ISO_TIME_LEN, strlen(buf));
}

/* ---- log levels ------------------------------------------------------------------------ */

TEST(unit_log_levels_coexist_with_syslog)
{
    enum log_level l = SP_LOG_ERROR;

    /* ours keep their order (a level logs when it is <= sp_log_level) and syslog's are intact */
    ASSERT_EQ(0, SP_LOG_ERROR);
    ASSERT_EQ(1, SP_LOG_WARN);
    ASSERT_EQ(2, SP_LOG_INFO);
    ASSERT_EQ(3, SP_LOG_DEBUG);
    ASSERT_EQ(6, LOG_INFO);
    ASSERT_EQ(7, LOG_DEBUG);
    ASSERT_OK(log_level_parse("debug", &l));
    ASSERT_EQ(SP_LOG_DEBUG, l);
    ASSERT_OK(log_level_parse("warn", &l));
    ASSERT_EQ(SP_LOG_WARN, l);
    ASSERT_EQ(-1, log_level_parse("notice", &l));
    ASSERT_EQ(SP_LOG_WARN, l);
}

/* Runs one log_write with stderr sent to a temp file; returns what was written (static). */
static const char *
capture_log(enum log_format fmt, const char *text)
{
    static char buf[4096];
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    size_t n;

    ASSERT(tmp != NULL && saved >= 0);
    ASSERT(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    log_setup(SP_LOG_INFO, fmt);
    log_info("GET %s -> 404", text);
    log_setup(SP_LOG_INFO, LOG_TEXT);
    ASSERT(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    n = fread(buf, 1, sizeof(buf) - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return buf;
}

/* A request path with raw bytes that are not UTF-8 used to make a JSON log line invalid. */
TEST(unit_log_json_lines_stay_valid_json)
{
    static const char *const paths[] = {
        "/leads/\xff\xfe",   "/x\xc3",
        "/\xed\xa0\x80",     "/\xc0\xaf",
        "/\xf4\x90\x80\x80", "/ok-\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80",
        "/ctl\x01\x7f\"\\",
    };

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const char *line = capture_log(LOG_JSON, paths[i]);
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        ASSERT(j != NULL);
        ASSERT(json_is_string(json_object_get(j, "msg")));
        json_decref(j);
        ASSERT(strchr(line, '\n') == line + strlen(line) - 1);
    }
    /* valid UTF-8 is kept as is, invalid bytes become U+FFFD */
    ASSERT_CONTAINS(capture_log(LOG_JSON, "/ok-\xc3\xa9"), "/ok-\xc3\xa9 -> 404");
    ASSERT_CONTAINS(capture_log(LOG_JSON, "/a\xff"
                                          "b"),
                    "/a\\ufffdb -> 404");
}

TEST(unit_log_limit_caps_lines_per_second)
{
    struct log_limit lim = {0};
    int dropped = -1, passed = 0;

    for (int i = 0; i < 100; i++)
        passed += log_limit_pass(&lim, 5, &dropped);
    /* the test could straddle a second boundary: then at most twice the cap passes */
    ASSERT(passed >= 5 && passed <= 10);
    ASSERT(dropped == 0);
}

/* ---- crypto ---------------------------------------------------------------------------- */

TEST(unit_crypto_sha256_known_answer)
{
    static const unsigned char abc[SP_SHA256_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
    };
    unsigned char d[SP_SHA256_LEN];

    sp_sha256("abc", 3, d);
    ASSERT(sp_equal_ct(abc, d, sizeof(d)));
    d[31] ^= 1;
    ASSERT(!sp_equal_ct(abc, d, sizeof(d)));
}
