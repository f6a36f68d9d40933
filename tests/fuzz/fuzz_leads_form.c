/* fuzz_leads_form.c: libFuzzer target: the application/x-www-form-urlencoded path.
 *
 * The whole input is the body of POST /leads (Content-Type application/x-www-form-urlencoded),
 * then of POST /leads/<existing id>/reply, each on a fresh in-memory store holding one lead.
 *
 * Oracle: an independent decoder of the body (RFC 1866 / WHATWG urlencoded as the controller
 * documents it: pairs split on '&', empty pairs skipped, the first '=' splits key and value, '+'
 * is a space, %XY a byte; a bad escape, %00 or a raw NUL byte is malformed; last value wins)
 * predicts the answer exactly:
 *   - malformed body, a key or value that is not UTF-8, or a key other than name/email/phone:
 *     400, nothing stored;
 *   - else 201 iff name is present, not blank and clean for lead_text_check (at most
 *     LEAD_NAME_MAX UTF-16 code units, no control or bidi formatting characters), email or phone
 *     is present, email (if present) passes lead_email_valid, phone (if present) is not blank and
 *     clean for lead_text_check with LEAD_PHONE_MAX; and the stored lead holds exactly the
 *     decoded values;
 *   - otherwise 400, nothing stored.
 * The reply can never succeed from a form (messageContent must be an object): always 400,
 * nothing stored. Plus every envelope check of fz_check_response. */
#include "fuzz/fuzz_common.h"

#include "core/arena.h"
#include "features/leads/presentation/leads_http.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#define FORM "application/x-www-form-urlencoded"

/* A decoded form, as the oracle sees it. */
struct form {
    int malformed;   /* bad escape, %00, raw NUL */
    int not_utf8;    /* some key or value is not UTF-8 */
    int unknown_key; /* some key is not name/email/phone */
    const char *name, *email, *phone;
    size_t name_len, email_len, phone_len;
};

static int
hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) into a new arena string; *out_len its length. NULL when malformed. */
static char *
decode(struct arena *a, const uint8_t *s, size_t len, size_t *out_len)
{
    char *out = arena_alloc(a, len + 1);
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0')
            return NULL;
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < len ? hex(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return NULL;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = (char)s[i];
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static int
utf8_ok(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len); /* jansson's strict check, as the controller uses */
    json_decref(v);
    return v != NULL;
}

static void
form_parse(struct arena *a, const uint8_t *body, size_t len, struct form *f)
{
    size_t i = 0;

    memset(f, 0, sizeof(*f));
    while (i < len) {
        size_t end = i, eq;
        while (end < len && body[end] != '&')
            end++;
        for (eq = i; eq < end && body[eq] != '='; eq++)
            ;
        if (end > i) {
            size_t klen = 0, vlen = 0;
            char *key = decode(a, body + i, eq - i, &klen);
            char *val = eq < end ? decode(a, body + eq + 1, end - eq - 1, &vlen) : "";
            if (key == NULL || val == NULL) {
                f->malformed = 1;
                return;
            }
            if (!utf8_ok(key, klen) || !utf8_ok(val, vlen))
                f->not_utf8 = 1;
            if (strcmp(key, "name") == 0) {
                f->name = val;
                f->name_len = vlen;
            } else if (strcmp(key, "email") == 0) {
                f->email = val;
                f->email_len = vlen;
            } else if (strcmp(key, "phone") == 0) {
                f->phone = val;
                f->phone_len = vlen;
            } else {
                f->unknown_key = 1;
            }
        }
        i = end + 1;
    }
}

static int
blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* 201 or 400, from the decoded form alone. */
static int
expected_create_status(const struct form *f)
{
    if (f->malformed || f->not_utf8 || f->unknown_key)
        return 400;
    if (f->name == NULL || blank(f->name) ||
        lead_text_check(f->name, f->name_len, LEAD_NAME_MAX) != LEAD_TEXT_OK)
        return 400;
    if (f->email == NULL && f->phone == NULL)
        return 400;
    if (f->email && !lead_email_valid(f->email, f->email_len))
        return 400;
    if (f->phone && (blank(f->phone) ||
                     lead_text_check(f->phone, f->phone_len, LEAD_PHONE_MAX) != LEAD_TEXT_OK))
        return 400;
    return 201;
}

static int
same_opt(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void
call(struct t_env *env, struct arena *a,
     void (*fn)(const struct leads_deps *, struct http_request *, struct http_response *),
     const char *id, const uint8_t *data, size_t size, struct http_response *resp)
{
    struct http_request req;

    memset(&req, 0, sizeof(req));
    memset(resp, 0, sizeof(*resp));
    req.method = "POST";
    req.path = id ? arena_printf(a, "/leads/%s/reply", id) : "/leads";
    req.content_type = FORM;
    req.arena = a;
    if (size > 0) {
        char *body = arena_alloc(a, size + 1);
        memcpy(body, data, size);
        req.body = body;
        req.body_len = size;
    }
    if (id) {
        req.nparams = 1;
        req.params[0] = id;
    }
    fn(&env->deps, &req, resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct t_env *env;
    struct arena *a;
    struct http_response resp;
    struct t_counts before, after;
    struct form f;
    struct lead seed;
    json_t *root;
    int want;

    fz_init();
    env = t_env_new(T_MEM);
    a = arena_new();
    t_env_create(env, "Seed Lead", "seed@example.com", "+15550100", &seed);
    form_parse(a, data, size, &f);
    want = expected_create_status(&f);

    /* POST /leads */
    t_env_counts(env, &before);
    call(env, a, leads_http_create, NULL, data, size, &resp);
    t_env_counts(env, &after);
    root = fz_check_response(&resp, 0);
    fz_check_no_open_tx(env);
    FZ_CHECK(resp.status == want,
             "POST /leads form: want %d, got %d (malformed %d, not_utf8 %d, unknown_key %d): %s",
             want, resp.status, f.malformed, f.not_utf8, f.unknown_key, resp.body);
    if (resp.status == 201) {
        const struct lead *l = mem_store_lead(env->store, fz_str(root, "id"));
        FZ_CHECK(after.leads == before.leads + 1, "201 but leads %d -> %d", before.leads,
                 after.leads);
        FZ_CHECK(l != NULL, "201 id not stored");
        FZ_CHECK(same_opt(l->name, f.name) && same_opt(l->email, f.email) &&
                     same_opt(l->phone, f.phone),
                 "stored lead differs from the decoded form");
        FZ_CHECK(same_opt(fz_str(root, "name"), f.name) &&
                     same_opt(fz_str(root, "email"), f.email) &&
                     same_opt(fz_str(root, "phone"), f.phone),
                 "201 body differs from the decoded form");
    } else {
        fz_check_counts_equal(&before, &after, "POST /leads form");
    }
    json_decref(root);

    /* POST /leads/:id/reply */
    t_env_counts(env, &before);
    call(env, a, leads_http_reply, seed.id, data, size, &resp);
    t_env_counts(env, &after);
    root = fz_check_response(&resp, 0);
    fz_check_no_open_tx(env);
    FZ_CHECK(resp.status == 400, "reply from a form answered %d: %s", resp.status, resp.body);
    fz_check_counts_equal(&before, &after, "POST reply form");
    json_decref(root);

    arena_free(a);
    t_env_free(env);
    return 0;
}
