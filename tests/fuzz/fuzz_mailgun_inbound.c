/* fuzz_mailgun_inbound.c: libFuzzer target: Mailgun's inbound-route POST, already decoded into
 * form fields (features/messaging/infrastructure/mailgun_inbound.h).
 *
 * Input framing: fields separated by "\n--\n" (at most FIELDS_MAX; the rest stays in the last
 * value); in each, the first '=' splits name and value (no '=': the whole is the name, the
 * value empty); a name starting with '@' is a file part named by the rest (filename "").
 * Values may hold any bytes, NUL included.
 *
 * Calls mg_inbound_read, then mg_signature_ok under FZ_KEY and mg_timestamp_fresh at FZ_NOW_MS
 * on what it read (or on the raw fields when it refused); FZ_VERBOSE=1 prints each outcome.
 * Invariants:
 *   - never a crash, a leak or UB (ASan + UBSan); rc is SP_OK or SP_EINVAL only;
 *   - SP_EINVAL names a field and leaves the struct zeroed; it is certain when a field read
 *     (non-file, known name) holds a NUL, is given twice, or a required one is missing/blank;
 *   - SP_OK: recipient, sender, timestamp, token, signature, text and from_address non-NULL;
 *     every string valid UTF-8 (jansson's check) and without NUL; nreferences in
 *     0..MG_REFERENCES_MAX with exactly that many non-NULL slots; every id 1..998 bytes without
 *     blank, control character or bracket; from_name without control characters; attachments
 *     == the number of file parts; text == stripped-text when not blank, else body-plain;
 *   - mg_signature_ok == an independent HMAC (OpenSSL's HMAC()) compared in hex, either case;
 *   - mg_timestamp_fresh == an independent decimal parse in 128 bits. */
#include "fuzz/fuzz_common.h"

#include "core/arena.h"
#include "core/err.h"
#include "core/http.h"
#include "features/messaging/infrastructure/mailgun_inbound.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS_MAX 64
#define SEP "\n--\n"
#define SEP_LEN 4
/* The seeds' signatures are made with this key (make_corpus.py, MG_KEY). */
#define FZ_KEY "key-fuzz-3ax6xnjp29jd6fds4gc373sg"
#define FZ_NOW_MS 1700000000000LL /* the seeds' "fresh" timestamp is 1700000000 */

static const char *const known[] = {"recipient",  "sender",         "from",      "subject",
                                    "body-plain", "stripped-text",  "timestamp", "token",
                                    "signature",  "message-headers"};
static const char *const required[] = {"recipient", "sender", "timestamp", "token", "signature"};

struct input {
    struct http_form_field f[FIELDS_MAX];
    int n;
    int files;
};

static const uint8_t *
find_sep(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + SEP_LEN <= len; i++)
        if (memcmp(p + i, SEP, SEP_LEN) == 0)
            return p + i;
    return NULL;
}

static void
field_make(struct arena *a, const uint8_t *p, size_t len, struct input *in)
{
    struct http_form_field *f = &in->f[in->n++];
    const uint8_t *eq = memchr(p, '=', len);
    size_t name_len = eq ? (size_t)(eq - p) : len;
    const char *name = arena_strndup(a, (const char *)p, name_len);
    size_t vlen = eq ? len - name_len - 1 : 0;
    char *value = arena_alloc(a, vlen + 1);

    if (vlen > 0)
        memcpy(value, eq + 1, vlen);
    value[vlen] = '\0';
    f->value = value;
    f->value_len = vlen;
    f->filename = NULL;
    if (name[0] == '@') {
        f->filename = "";
        name++;
        in->files++;
    }
    f->name = name; /* a NUL in the name cuts it, as a C string would */
}

static void
input_split(struct arena *a, const uint8_t *data, size_t size, struct input *in)
{
    memset(in, 0, sizeof(*in));
    while (size > 0 && in->n < FIELDS_MAX) {
        const uint8_t *sep = in->n + 1 < FIELDS_MAX ? find_sep(data, size) : NULL;
        size_t len = sep ? (size_t)(sep - data) : size;
        field_make(a, data, len, in);
        if (sep == NULL)
            break;
        data += len + SEP_LEN;
        size -= len + SEP_LEN;
    }
}

/* The one non-file field called `name`, or NULL (none, or a duplicate: *dup set). */
static const struct http_form_field *
field_get(const struct input *in, const char *name, int *dup)
{
    const struct http_form_field *got = NULL;

    for (int i = 0; i < in->n; i++) {
        if (in->f[i].filename != NULL || strcmp(in->f[i].name, name) != 0)
            continue;
        if (got != NULL)
            *dup = 1;
        got = &in->f[i];
    }
    return got;
}

static int
blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (strchr(" \t\r\n\v\f", s[i]) == NULL || s[i] == '\0')
            return 0;
    return 1;
}

/* Whether the read must be refused, from the fields alone. */
static int
must_refuse(const struct input *in)
{
    int dup = 0;

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        const struct http_form_field *f = field_get(in, known[i], &dup);
        if (f && memchr(f->value, '\0', f->value_len) != NULL)
            return 1;
    }
    if (dup)
        return 1;
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        const struct http_form_field *f = field_get(in, required[i], &dup);
        if (f == NULL || blank(f->value, f->value_len))
            return 1;
    }
    return field_get(in, "body-plain", &dup) == NULL &&
           field_get(in, "stripped-text", &dup) == NULL;
}

static int
utf8_ok(const char *s)
{
    json_t *v = json_string(s); /* jansson's strict UTF-8 check */
    json_decref(v);
    return v != NULL;
}

static void
check_str(const char *s, const char *what)
{
    FZ_CHECK(s != NULL, "%s is NULL on SP_OK", what);
    FZ_CHECK(utf8_ok(s), "%s is not valid UTF-8", what);
}

static void
check_opt(const char *s, const char *what)
{
    if (s != NULL)
        check_str(s, what);
}

static void
check_id(const char *id, const char *what)
{
    size_t len;

    check_str(id, what);
    len = strlen(id);
    FZ_CHECK(len >= 1 && len <= 998, "%s of %zu bytes", what, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        FZ_CHECK(c > ' ' && c != 0x7f && c != '<' && c != '>', "%s holds byte 0x%02x", what, c);
    }
}

static void
check_ok(const struct input *in, const struct mg_inbound *m)
{
    const struct http_form_field *st, *bp;
    int dup = 0;

    static const char *const copied[] = {"recipient", "sender", "timestamp", "token", "signature"};
    const char *const got[] = {m->recipient, m->sender, m->timestamp, m->token, m->signature};

    for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++)
        FZ_CHECK(got[i] && strcmp(got[i], field_get(in, copied[i], &dup)->value) == 0,
                 "%s differs from its field", copied[i]);
    check_str(m->recipient, "recipient");
    check_str(m->sender, "sender");
    check_str(m->timestamp, "timestamp");
    check_str(m->token, "token");
    check_str(m->signature, "signature");
    check_str(m->text, "text");
    check_str(m->from_address, "from_address");
    check_opt(m->from, "from");
    check_opt(m->from_name, "from_name");
    check_opt(m->subject, "subject");
    if (m->from_name != NULL)
        for (const char *p = m->from_name; *p; p++)
            FZ_CHECK((unsigned char)*p >= ' ' && *p != 0x7f, "control character in from_name");
    if (m->from_address != m->sender)
        FZ_CHECK(strchr(m->from_address, '@') != NULL, "from_address without '@'");
    if (m->message_id != NULL)
        check_id(m->message_id, "message_id");
    if (m->in_reply_to != NULL)
        check_id(m->in_reply_to, "in_reply_to");
    FZ_CHECK(m->nreferences >= 0 && m->nreferences <= MG_REFERENCES_MAX, "nreferences %d",
             m->nreferences);
    for (int i = 0; i < MG_REFERENCES_MAX; i++) {
        if (i < m->nreferences)
            check_id(m->references[i], "a reference");
        else
            FZ_CHECK(m->references[i] == NULL, "reference slot %d set past nreferences", i);
    }
    FZ_CHECK(m->attachments == in->files, "attachments %d, file parts %d", m->attachments,
             in->files);
    st = field_get(in, "stripped-text", &dup);
    bp = field_get(in, "body-plain", &dup);
    if (st != NULL && !blank(st->value, st->value_len))
        FZ_CHECK(strcmp(m->text, st->value) == 0, "text is not the stripped-text");
    else if (bp != NULL)
        FZ_CHECK(strcmp(m->text, bp->value) == 0, "text is not the body-plain");
    else
        FZ_CHECK(st != NULL && strcmp(m->text, st->value) == 0, "text from nowhere");
}

static int
expect_signature(const char *ts, const char *token, const char *sig)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t ts_len = strlen(ts), tok_len = strlen(token);
    unsigned char *data;
    int ok;

    if (ts_len + tok_len > 512 || strlen(sig) != 64)
        return 0;
    data = malloc(ts_len + tok_len + 1);
    FZ_CHECK(data != NULL, "out of memory");
    memcpy(data, ts, ts_len);
    memcpy(data + ts_len, token, tok_len);
    FZ_CHECK(HMAC(EVP_sha256(), FZ_KEY, (int)strlen(FZ_KEY), data, ts_len + tok_len, mac,
                  &mac_len) != NULL,
             "HMAC failed");
    free(data);
    ok = mac_len == 32;
    for (size_t i = 0; ok && i < 64; i++) {
        char c = sig[i] >= 'A' && sig[i] <= 'F' ? (char)(sig[i] - 'A' + 'a') : sig[i];
        ok = c == hex[(mac[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    }
    return ok;
}

static int
expect_fresh(const char *ts, int64_t now_ms)
{
    __int128 v = 0, diff;

    if (ts[0] == '\0')
        return 0;
    for (const char *p = ts; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (*p - '0');
        if (v > (__int128)INT64_MAX)
            return 0; /* and it stays too big */
    }
    if (v * 1000 > (__int128)INT64_MAX)
        return 0;
    diff = v * 1000 - now_ms;
    return diff >= -(__int128)MG_TIMESTAMP_WINDOW_MS && diff <= MG_TIMESTAMP_WINDOW_MS;
}

/* The NUL-terminated value of a raw field, or "" (as the checks after a refusal see it). */
static const char *
raw(const struct input *in, const char *name)
{
    int dup = 0;
    const struct http_form_field *f = field_get(in, name, &dup);
    return f ? f->value : "";
}

static void
check_sig_and_time(const char *ts, const char *token, const char *sig)
{
    int got = mg_signature_ok(FZ_KEY, strlen(FZ_KEY), ts, token, sig);

    FZ_CHECK(got == expect_signature(ts, token, sig), "mg_signature_ok %d disagrees", got);
    FZ_CHECK(mg_signature_ok("", 0, ts, token, sig) == 0, "signature ok under an empty key");
    for (int i = -1; i <= 1; i++) {
        int64_t now = FZ_NOW_MS + i * (MG_TIMESTAMP_WINDOW_MS + 1);
        FZ_CHECK(mg_timestamp_fresh(ts, now) == expect_fresh(ts, now),
                 "mg_timestamp_fresh disagrees at now %lld", (long long)now);
    }
    FZ_CHECK(mg_timestamp_fresh(ts, INT64_MAX) == expect_fresh(ts, INT64_MAX), "at INT64_MAX");
    FZ_CHECK(mg_timestamp_fresh(ts, INT64_MIN) == expect_fresh(ts, INT64_MIN), "at INT64_MIN");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct mg_inbound zero;
    struct arena *a;
    struct input in;
    struct mg_inbound m;
    struct sp_error err = {0};
    int rc;

    fz_init();
    a = arena_new();
    input_split(a, data, size, &in);
    rc = mg_inbound_read(in.f, in.n, a, &m, &err);
    FZ_CHECK(rc == SP_OK || rc == SP_EINVAL, "mg_inbound_read returned %s", sp_err_name(rc));
    if (getenv("FZ_VERBOSE"))
        fprintf(stderr, "%d fields -> %s %s %s | signature %d fresh %d refs %d from <%s> <%s>\n",
                in.n, sp_err_name(rc), err.field, err.msg,
                rc ? 0 : mg_signature_ok(FZ_KEY, strlen(FZ_KEY), m.timestamp, m.token, m.signature),
                rc ? 0 : mg_timestamp_fresh(m.timestamp, FZ_NOW_MS), m.nreferences,
                m.from_name ? m.from_name : "-", m.from_address ? m.from_address : "-");
    if (rc == SP_OK) {
        FZ_CHECK(!must_refuse(&in), "SP_OK on fields that must be refused");
        check_ok(&in, &m);
        check_sig_and_time(m.timestamp, m.token, m.signature);
    } else {
        FZ_CHECK(err.code == SP_EINVAL && err.field[0] != '\0', "SP_EINVAL without a field");
        FZ_CHECK(memcmp(&m, &zero, sizeof(m)) == 0, "struct not zeroed after SP_EINVAL");
        check_sig_and_time(raw(&in, "timestamp"), raw(&in, "token"), raw(&in, "signature"));
    }
    arena_free(a);
    return 0;
}
