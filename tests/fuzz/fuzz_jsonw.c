/* fuzz_jsonw.c: libFuzzer target: the streaming JSON writer (core/jsonw) round trip.
 *
 * The input drives a generator that writes a well-formed document with jsonw (strings with any
 * bytes, including NUL and escapes, as values and keys; integers over the whole int64 range;
 * booleans; null; ISO times; raw JSON from a nested writer; objects and arrays nested past
 * JSONW_DEPTH_MAX) while it builds the same document as a jansson tree. Invariants:
 *   - with a generous limit and nesting <= JSONW_DEPTH_MAX, jsonw_finish succeeds and
 *     json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL) of the text gives back exactly the tree
 *     (every string byte for byte, every integer);
 *   - nesting > JSONW_DEPTH_MAX makes jsonw_finish answer SP_ETOOLARGE;
 *   - with the input's own limit (byte 0 bit 7: 1..4096 bytes), jsonw_finish succeeds iff the
 *     full text plus its NUL fits, and then gives the same text; never a write past the limit
 *     (ASan);
 *   - every time renders as 24 characters, equal to gmtime_r's rendering for years 0..9999.
 * Strings hold any bytes: jsonw must write valid UTF-8 whatever it is given, each byte that
 * starts no valid sequence becoming U+FFFD. The expected tree gets the same repair, decided
 * by jansson's own strict check (an oracle independent of core/utf8.c).
 *
 * Input: byte 0 picks the limit (bit 7 set: a 2-byte limit follows), the rest feeds the
 * generator (each value starts with an opcode byte; see gen()). */
#include "fuzz/fuzz_common.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define GEN_DEPTH_MAX (JSONW_DEPTH_MAX + 2)
#define FULL_LIMIT (8u * 1024 * 1024)

struct rd {
    const uint8_t *p;
    size_t n;
};

static uint8_t
rd_u8(struct rd *r)
{
    uint8_t v;
    if (r->n == 0)
        return 0;
    v = r->p[0];
    r->p++;
    r->n--;
    return v;
}

static uint64_t
rd_u64(struct rd *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | rd_u8(r);
    return v;
}

/* Up to `len` bytes from the input, as they are, copied into the arena; *fixed receives them
 * repaired as jsonw must write them (each byte that starts no valid UTF-8 sequence, by
 * jansson's check, becomes U+FFFD), *fixed_len its length. */
static char *
rd_text(struct rd *r, struct arena *a, size_t len, size_t *out_len, char **fixed, size_t *fixed_len)
{
    char *s, *f;
    size_t i = 0, o = 0;

    if (len > r->n)
        len = r->n;
    s = arena_alloc(a, len + 1);
    f = arena_alloc(a, 3 * len + 1);
    memcpy(s, r->p, len);
    r->p += len;
    r->n -= len;
    while (i < len) {
        size_t k = 1;
        json_t *one = NULL;
        /* the longest valid sequence starting at i, via jansson's own strict check */
        if ((unsigned char)s[i] >= 0x80)
            for (k = 4; k >= 2; k--)
                if (i + k <= len && (one = json_stringn(s + i, k)))
                    break;
        if (one != NULL) {
            json_decref(one);
            memcpy(f + o, s + i, k);
            o += k;
            i += k;
        } else if ((unsigned char)s[i] >= 0x80) {
            memcpy(f + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            f[o++] = s[i++];
        }
    }
    f[o] = '\0';
    *out_len = len;
    *fixed = f;
    *fixed_len = o;
    return s;
}

/* A string's length: one byte, or two more when it is 255. */
static size_t
rd_len(struct rd *r)
{
    size_t len = rd_u8(r);
    if (len == 255)
        len = (size_t)rd_u8(r) << 8 | rd_u8(r);
    return len;
}

/* gmtime_r's rendering of ms in sp_time_iso's format; 0 when the year is outside 0..9999. */
static int
ref_time(int64_t ms, char out[64])
{
    int64_t secs = ms / 1000, millis = ms % 1000;
    struct tm tm;
    time_t t;

    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    t = (time_t)secs;
    if (gmtime_r(&t, &tm) == NULL)
        return 0;
    if (tm.tm_year + 1900L < 0 || tm.tm_year + 1900L > 9999)
        return 0;
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)millis);
    return 1;
}

static void
check_time_shape(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

    FZ_CHECK(strlen(s) == SP_ISO_TIME_LEN, "time \"%s\" is not %d characters", s, SP_ISO_TIME_LEN);
    for (int i = 0; i < SP_ISO_TIME_LEN; i++)
        FZ_CHECK(shape[i] == 'd' ? (s[i] >= '0' && s[i] <= '9') : s[i] == shape[i],
                 "time \"%s\" is not ISO-8601", s);
}

struct gen {
    struct arena *a;
    int max_depth; /* deepest container nesting written */
};

static json_t *gen(struct gen *g, struct rd *r, struct jsonw *w, int depth);

/* One value: opcode % 8 = string, integer, boolean, null, object, array, time, raw. */
static json_t *
gen(struct gen *g, struct rd *r, struct jsonw *w, int depth)
{
    uint8_t op = rd_u8(r) % 8;
    size_t len;
    char *s;

    if ((op == 4 || op == 5 || op == 7) && depth >= GEN_DEPTH_MAX)
        op = 3;
    switch (op) {
    case 0: {
        char *fixed;
        size_t fixed_len;
        s = rd_text(r, g->a, rd_len(r), &len, &fixed, &fixed_len);
        jsonw_strn(w, s, len);
        return json_stringn(fixed, fixed_len);
    }
    case 1: {
        int64_t v = (int64_t)rd_u64(r);
        jsonw_int(w, v);
        return json_integer(v);
    }
    case 2: {
        int v = rd_u8(r) & 1;
        jsonw_bool(w, v);
        return json_boolean(v);
    }
    case 3:
        if (rd_u8(r) & 1) {
            jsonw_null(w);
        } else {
            jsonw_str(w, NULL);
        }
        return json_null();
    case 4:
    case 5: {
        int n = rd_u8(r) % 6;
        json_t *c = op == 4 ? json_object() : json_array();

        if (depth + 1 > g->max_depth)
            g->max_depth = depth + 1;
        if (op == 4)
            jsonw_obj_begin(w);
        else
            jsonw_arr_begin(w);
        for (int i = 0; i < n; i++) {
            if (op == 4) {
                char *fixed;
                size_t fixed_len;
                /* a C string: stops at NUL */
                char *key = rd_text(r, g->a, rd_len(r), &len, &fixed, &fixed_len);
                jsonw_key(w, key);
                json_object_set_new(c, fixed, gen(g, r, w, depth + 1));
            } else {
                json_array_append_new(c, gen(g, r, w, depth + 1));
            }
        }
        if (op == 4)
            jsonw_obj_end(w);
        else
            jsonw_arr_end(w);
        return c;
    }
    case 6: {
        int64_t ms = (int64_t)rd_u64(r);
        int null_if_zero = rd_u8(r) & 1;
        char got[SP_ISO_TIME_LEN + 1], want[64];

        jsonw_time(w, ms, null_if_zero);
        if (ms == 0 && null_if_zero)
            return json_null();
        sp_time_iso(ms, got);
        check_time_shape(got);
        if (ref_time(ms, want))
            FZ_CHECK(strcmp(got, want) == 0, "sp_time_iso(%lld) = %s, gmtime_r says %s",
                     (long long)ms, got, want);
        return json_string(got);
    }
    default: {
        /* raw: a value written by a nested writer, embedded as text */
        struct jsonw inner;
        struct gen ig = {g->a, 0};
        const char *text;
        json_t *v;

        jsonw_init(&inner, g->a, FULL_LIMIT);
        v = gen(&ig, r, &inner, 0);
        if (jsonw_finish(&inner, &text, NULL) != SP_OK) {
            json_decref(v);
            jsonw_null(w);
            return json_null();
        }
        jsonw_raw(w, text);
        return v;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd r = {data, size}, r2;
    struct arena *a = arena_new();
    struct jsonw full, lim;
    struct gen g = {a, 0}, g2 = {a, 0};
    const char *text, *ltext;
    size_t len, llen;
    size_t limit = FULL_LIMIT;
    uint8_t b0 = rd_u8(&r);
    json_t *want, *want2, *got;
    json_error_t jerr;
    int rc, lrc;

    fz_init();
    if (b0 & 0x80)
        limit = ((size_t)rd_u8(&r) << 8 | rd_u8(&r)) % 4096 + 1;
    r2 = r;

    jsonw_init(&full, a, FULL_LIMIT);
    want = gen(&g, &r, &full, 0);
    rc = jsonw_finish(&full, &text, &len);

    jsonw_init(&lim, a, limit);
    want2 = gen(&g2, &r2, &lim, 0);
    lrc = jsonw_finish(&lim, &ltext, &llen);
    json_decref(want2);

    if (g.max_depth > JSONW_DEPTH_MAX) {
        FZ_CHECK(rc == SP_ETOOLARGE, "nesting %d > %d but jsonw_finish succeeded", g.max_depth,
                 JSONW_DEPTH_MAX);
        FZ_CHECK(lrc == SP_ETOOLARGE, "nesting %d > %d but the limited writer succeeded",
                 g.max_depth, JSONW_DEPTH_MAX);
    } else if (rc == SP_OK) {
        FZ_CHECK(strlen(text) <= len, "length %zu but text is %zu", len, strlen(text));
        got = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        FZ_CHECK(got != NULL, "jsonw wrote invalid JSON (%s at %d): %.*s", jerr.text, jerr.position,
                 (int)(len > 2000 ? 2000 : len), text);
        FZ_CHECK(json_equal(want, got), "round trip differs: %.*s", (int)(len > 2000 ? 2000 : len),
                 text);
        json_decref(got);
        if (len + 1 <= limit) {
            FZ_CHECK(lrc == SP_OK && llen == len && memcmp(text, ltext, len) == 0,
                     "limit %zu >= %zu + 1 but the limited writer answered %d", limit, len, lrc);
        } else {
            FZ_CHECK(lrc == SP_ETOOLARGE, "text of %zu bytes fit a limit of %zu", len, limit);
        }
    } else {
        /* inputs are far smaller than FULL_LIMIT: nothing else may fail */
        FZ_CHECK(0, "jsonw_finish failed (%d) at nesting %d", rc, g.max_depth);
    }
    if (lrc == SP_OK)
        FZ_CHECK(llen + 1 <= limit, "wrote %zu bytes with a limit of %zu", llen, limit);

    json_decref(want);
    arena_free(a);
    return 0;
}
