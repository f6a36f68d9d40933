/* mailgun_inbound.c: Mailgun's inbound-route POST read into struct mg_inbound, and the checks
 * of its signature and timestamp (see mailgun_inbound.h). Pure: no I/O, no clock, no storage.
 * The form fields arrive decoded; this file decides which ones it trusts and how they read.
 * It does not decide which lead a message belongs to (the caller matches recipient or the
 * thread ids) nor decode RFC 2047 encoded-words (a display name keeps them as sent). */
#include "features/messaging/infrastructure/mailgun_inbound.h"

#include "core/arena.h"
#include "core/crypto.h"
#include "core/http.h"
#include "features/leads/domain/lead.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define ID_MAX 998          /* a msg-id longer than a whole header line is not one */
#define SIGNED_MAX 512      /* timestamp + token; Mailgun's are 10 + 50 characters */
#define ADDR_MAX 254        /* RFC 5321's path limit, less the brackets */
#define COMMENT_DEPTH_MAX 8 /* nested (comments) in a msg-id list */

/* The fields read; every other field is ignored. */
enum field {
    F_RECIPIENT,
    F_SENDER,
    F_FROM,
    F_SUBJECT,
    F_BODY_PLAIN,
    F_STRIPPED_TEXT,
    F_TIMESTAMP,
    F_TOKEN,
    F_SIGNATURE,
    F_MESSAGE_HEADERS,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "recipient",     "sender",    "from",  "subject",   "body-plain",
    "stripped-text", "timestamp", "token", "signature", "message-headers",
};

/* Fields that must be present and not blank, in the order they are reported. */
static const enum field required[] = {F_RECIPIENT, F_SENDER, F_TIMESTAMP, F_TOKEN, F_SIGNATURE};

static int
field_index(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(name, field_names[i]) == 0)
            return i;
    return -1;
}

static int
is_blank_char(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int
blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_blank_char(s[i]))
            return 0;
    return 1;
}

/* Narrows s[*start, *end) past blanks at both ends. */
static void
trim(const char *s, size_t *start, size_t *end)
{
    while (*start < *end && is_blank_char(s[*start]))
        (*start)++;
    while (*end > *start && is_blank_char(s[*end - 1]))
        (*end)--;
}

/* A value this file reads: no NUL inside, valid UTF-8. */
static int
value_check(const struct http_form_field *f, struct sp_error *err)
{
    const char *v = f->value ? f->value : "";

    if (f->value_len > 0 && f->value == NULL)
        return sp_error_set(err, SP_EINVAL, f->name, "%s has no value", f->name);
    if (memchr(v, '\0', f->value_len) != NULL)
        return sp_error_set(err, SP_EINVAL, f->name, "%s must not contain NUL bytes", f->name);
    if (lead_text_utf16_len(v, f->value_len) == SIZE_MAX)
        return sp_error_set(err, SP_EINVAL, f->name, "%s must be valid UTF-8", f->name);
    return SP_OK;
}

/* Sorts the fields into seen[] (checked, each at most once) and counts the file parts. */
static int
fields_collect(const struct http_form_field *fields, int n,
               const struct http_form_field *seen[F_COUNT], int *attachments, struct sp_error *err)
{
    for (int i = 0; i < n; i++) {
        const struct http_form_field *f = &fields[i];
        int k;

        if (f->filename != NULL) {
            (*attachments)++;
            continue;
        }
        k = field_index(f->name);
        if (k < 0)
            continue;
        /* Mailgun sends each once; two would leave the reader to guess which one was signed */
        if (seen[k] != NULL)
            return sp_error_set(err, SP_EINVAL, f->name, "%s is given more than once", f->name);
        if (value_check(f, err) != SP_OK)
            return SP_EINVAL;
        seen[k] = f;
    }
    return SP_OK;
}

static int
fields_require(const struct http_form_field *seen[F_COUNT], struct sp_error *err)
{
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        const struct http_form_field *f = seen[required[i]];
        if (f == NULL || blank(f->value ? f->value : "", f->value_len))
            return sp_error_set(err, SP_EINVAL, field_names[required[i]], "%s is required",
                                field_names[required[i]]);
    }
    if (seen[F_BODY_PLAIN] == NULL && seen[F_STRIPPED_TEXT] == NULL)
        return sp_error_set(err, SP_EINVAL, "body-plain",
                            "body-plain or stripped-text is required");
    return SP_OK;
}

/* The field's value in the arena, or NULL when it is absent. */
static const char *
field_copy(struct arena *a, const struct http_form_field *f)
{
    if (f == NULL)
        return NULL;
    return arena_strndup(a, f->value ? f->value : "", f->value_len);
}

/* ---- msg-ids (Message-Id, In-Reply-To, References) ---------------------------------------- */

/* Skips the (comment) at s[*pos] == '(' (nesting and backslash escapes honoured). */
static void
skip_comment(const char *s, size_t len, size_t *pos)
{
    int depth = 0;

    while (*pos < len) {
        char c = s[(*pos)++];
        if (c == '\\' && *pos < len)
            (*pos)++;
        else if (c == '(')
            depth++;
        else if (c == ')')
            depth--;
        if (depth == 0)
            return;
        if (depth > COMMENT_DEPTH_MAX) { /* not a comment anyone meant: give up on the rest */
            *pos = len;
            return;
        }
    }
}

/* The next token of a msg-id list from s[*pos]: "<id>" (*bracketed = 1) or a bare word,
 * separated by blanks, commas or (comments). *start and *end bound it without the brackets and
 * the blanks inside them. 0 at the end of s. */
static int
id_next(const char *s, size_t len, size_t *pos, size_t *start, size_t *end, int *bracketed)
{
    while (*pos < len) {
        char c = s[*pos];
        if (is_blank_char(c) || c == ',') {
            (*pos)++;
        } else if (c == '(') {
            skip_comment(s, len, pos);
        } else if (c == '<') {
            const char *gt = memchr(s + *pos + 1, '>', len - *pos - 1);
            *start = *pos + 1;
            *end = gt ? (size_t)(gt - s) : len;
            *pos = gt ? *end + 1 : len;
            *bracketed = 1;
            trim(s, start, end);
            return 1;
        } else {
            *start = *pos;
            while (*pos < len && !is_blank_char(s[*pos]) && s[*pos] != ',' && s[*pos] != '<' &&
                   s[*pos] != '(')
                (*pos)++;
            *end = *pos;
            *bracketed = 0;
            return 1;
        }
    }
    return 0;
}

/* An id worth keeping: 1..ID_MAX bytes, no blank, control character or bracket. */
static int
id_ok(const char *s, size_t len)
{
    if (len == 0 || len > ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || c == '<' || c == '>')
            return 0;
    }
    return 1;
}

/* The id of a Message-Id or In-Reply-To value: its first well-formed "<id>", else its first
 * well-formed bare word (some mailers drop the brackets); NULL when it holds none. Old
 * mailers' "In-Reply-To: Your message of ... <id>" gives the id, not "Your". */
static const char *
id_pick(struct arena *a, const char *s, size_t len)
{
    size_t pos = 0, start, end, bare_start = 0, bare_end = 0;
    int bracketed;

    while (id_next(s, len, &pos, &start, &end, &bracketed)) {
        if (!id_ok(s + start, end - start))
            continue;
        if (bracketed)
            return arena_strndup(a, s + start, end - start);
        if (bare_end == 0) {
            bare_start = start;
            bare_end = end;
        }
    }
    return bare_end ? arena_strndup(a, s + bare_start, bare_end - bare_start) : NULL;
}

/* The References ids, in order. Over MG_REFERENCES_MAX, the LAST ones are kept: each reply
 * appends its parent's id, so the last ids are the messages nearest this one (ours among them
 * when it answers us); the first ones are the oldest of a long thread. */
static void
references_read(struct arena *a, const char *s, size_t len, struct mg_inbound *out)
{
    size_t pos = 0, start, end, total = 0, k = 0, skip;
    int bracketed;

    while (id_next(s, len, &pos, &start, &end, &bracketed))
        if (id_ok(s + start, end - start))
            total++;
    skip = total > MG_REFERENCES_MAX ? total - MG_REFERENCES_MAX : 0;
    pos = 0;
    while (id_next(s, len, &pos, &start, &end, &bracketed)) {
        if (!id_ok(s + start, end - start))
            continue;
        k++;
        if (k <= skip)
            continue;
        out->references[out->nreferences++] = arena_strndup(a, s + start, end - start);
    }
}

/* ---- message-headers ---------------------------------------------------------------------- */

struct headers_seen {
    int message_id, in_reply_to, references;
};

/* Takes one [name, value] pair; the first header of each name counts. */
static void
header_take(struct arena *a, const char *name, const char *value, size_t len,
            struct headers_seen *seen, struct mg_inbound *out)
{
    if (strcasecmp(name, "Message-Id") == 0 && !seen->message_id) {
        seen->message_id = 1;
        out->message_id = id_pick(a, value, len);
    } else if (strcasecmp(name, "In-Reply-To") == 0 && !seen->in_reply_to) {
        seen->in_reply_to = 1;
        out->in_reply_to = id_pick(a, value, len);
    } else if (strcasecmp(name, "References") == 0 && !seen->references) {
        seen->references = 1;
        references_read(a, value, len, out);
    }
}

static int
pair_ok(json_t *pair)
{
    return json_is_array(pair) && json_array_size(pair) == 2 &&
           json_is_string(json_array_get(pair, 0)) && json_is_string(json_array_get(pair, 1));
}

/* message-headers: a JSON array of [name, value] string pairs. The jansson tree stays here. */
static int
headers_read(const struct http_form_field *f, struct arena *a, struct mg_inbound *out,
             struct sp_error *err)
{
    struct headers_seen seen = {0, 0, 0};
    json_error_t jerr;
    json_t *root = json_loadb(f->value ? f->value : "", f->value_len, 0, &jerr);
    json_t *pair;
    size_t i;
    int rc = SP_OK;

    if (root == NULL || !json_is_array(root)) {
        rc = sp_error_set(err, SP_EINVAL, "message-headers",
                          "message-headers must be a JSON array of [name, value] pairs");
        goto out;
    }
    json_array_foreach(root, i, pair)
    {
        json_t *name, *value;
        if (!pair_ok(pair)) {
            rc = sp_error_set(err, SP_EINVAL, "message-headers",
                              "message-headers item %zu is not a [name, value] pair of strings", i);
            goto out;
        }
        name = json_array_get(pair, 0);
        value = json_array_get(pair, 1);
        header_take(a, json_string_value(name), json_string_value(value), json_string_length(value),
                    &seen, out);
    }
out:
    json_decref(root);
    return rc;
}

/* ---- From --------------------------------------------------------------------------------- */

/* A plausible addr-spec: one '@' with something on both sides, no blank, control character,
 * quote or bracket. UTF-8 is allowed (RFC 6531). */
static int
addr_ok(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);

    if (len < 3 || len > ADDR_MAX || at == NULL || at == s || at == s + len - 1 ||
        memchr(at + 1, '@', len - (size_t)(at - s) - 1) != NULL)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || strchr("<>()[],;:\\\"", c) != NULL)
            return 0;
    }
    return 1;
}

/* The display name of s[start, end): quoted-strings lose their quotes and backslash escapes,
 * control characters (a folded header's CR LF) become spaces, outer blanks go. NULL when
 * nothing is left. Encoded-words (=?UTF-8?B?...?=) are kept as sent. */
static const char *
phrase_decode(struct arena *a, const char *s, size_t start, size_t end)
{
    char *out;
    size_t o = 0, b = 0;
    int quoted = 0;

    trim(s, &start, &end);
    out = arena_alloc(a, end - start + 1);
    for (size_t i = start; i < end; i++) {
        char c = s[i];
        if (c == '"') {
            quoted = !quoted;
            continue;
        }
        if (quoted && c == '\\' && i + 1 < end)
            c = s[++i];
        out[o++] = ((unsigned char)c < ' ' || c == 0x7f) ? ' ' : c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    while (b < o && out[b] == ' ')
        b++;
    out[o] = '\0';
    return o > b ? out + b : NULL;
}

/* The first '<' of s outside a quoted-string, or len. */
static size_t
angle_find(const char *s, size_t len)
{
    int quoted = 0;

    for (size_t i = 0; i < len; i++) {
        if (quoted && s[i] == '\\')
            i++;
        else if (s[i] == '"')
            quoted = !quoted;
        else if (!quoted && s[i] == '<')
            return i;
    }
    return len;
}

/* "Name <addr>", "\"Quoted, Name\" <addr>", "<addr>", "addr" and "addr (Name)". *addr is NULL
 * when no plausible addr-spec is found; *name NULL when there is no display name. */
static void
from_parse(struct arena *a, const char *s, size_t len, const char **name, const char **addr)
{
    size_t lt = angle_find(s, len), start, end;

    *name = NULL;
    *addr = NULL;
    if (lt < len) {
        const char *gt = memchr(s + lt, '>', len - lt);
        *name = phrase_decode(a, s, 0, lt);
        start = lt + 1;
        end = gt ? (size_t)(gt - s) : len;
    } else {
        start = 0;
        end = len;
        trim(s, &start, &end);
        for (size_t i = start; i < end; i++) {
            if (s[i] == '(' && s[end - 1] == ')') { /* the old "addr (Name)" form */
                *name = phrase_decode(a, s, i + 1, end - 1);
                end = i;
                break;
            }
        }
    }
    trim(s, &start, &end);
    if (addr_ok(s + start, end - start))
        *addr = arena_strndup(a, s + start, end - start);
}

/* ---- the whole post ----------------------------------------------------------------------- */

/* stripped-text when present and not blank, else body-plain, else the blank stripped-text. */
static const char *
text_pick(struct arena *a, const struct http_form_field *seen[F_COUNT])
{
    const struct http_form_field *st = seen[F_STRIPPED_TEXT];

    if (st != NULL && !blank(st->value ? st->value : "", st->value_len))
        return field_copy(a, st);
    if (seen[F_BODY_PLAIN] != NULL)
        return field_copy(a, seen[F_BODY_PLAIN]);
    return field_copy(a, st);
}

int
mg_inbound_read(const struct http_form_field *fields, int n, struct arena *a,
                struct mg_inbound *out, struct sp_error *err)
{
    const struct http_form_field *seen[F_COUNT] = {0};
    int attachments = 0, rc;

    memset(out, 0, sizeof(*out));
    if (n < 0 || (n > 0 && fields == NULL)) /* the caller's bug, not the sender's */
        return sp_error_set(err, SP_EINVAL, NULL, "no form fields");
    rc = fields_collect(fields, n, seen, &attachments, err);
    if (rc == SP_OK)
        rc = fields_require(seen, err);
    if (rc != SP_OK)
        return rc;

    out->recipient = field_copy(a, seen[F_RECIPIENT]);
    out->sender = field_copy(a, seen[F_SENDER]);
    out->from = field_copy(a, seen[F_FROM]);
    out->subject = field_copy(a, seen[F_SUBJECT]);
    out->text = text_pick(a, seen);
    out->timestamp = field_copy(a, seen[F_TIMESTAMP]);
    out->token = field_copy(a, seen[F_TOKEN]);
    out->signature = field_copy(a, seen[F_SIGNATURE]);
    out->attachments = attachments;
    if (out->from != NULL)
        from_parse(a, out->from, seen[F_FROM]->value_len, &out->from_name, &out->from_address);
    if (out->from_address == NULL)
        out->from_address = out->sender;
    if (seen[F_MESSAGE_HEADERS] != NULL) {
        rc = headers_read(seen[F_MESSAGE_HEADERS], a, out, err);
        if (rc != SP_OK) {
            memset(out, 0, sizeof(*out));
            return rc;
        }
    }
    return SP_OK;
}

/* ---- signature and timestamp -------------------------------------------------------------- */

int
mg_signature_ok(const char *key, size_t key_len, const char *timestamp, const char *token,
                const char *signature)
{
    char data[SIGNED_MAX];
    size_t ts_len, tok_len;

    if (key == NULL || key_len == 0 || timestamp == NULL || token == NULL || signature == NULL)
        return 0;
    ts_len = strlen(timestamp);
    tok_len = strlen(token);
    if (ts_len > SIGNED_MAX || tok_len > SIGNED_MAX - ts_len)
        return 0;
    memcpy(data, timestamp, ts_len);
    memcpy(data + ts_len, token, tok_len);
    return sp_hmac_sha256_hex_ok(key, key_len, data, ts_len + tok_len, signature);
}

int
mg_timestamp_fresh(const char *timestamp, int64_t now_ms)
{
    int64_t s = 0, ms;
    uint64_t diff;

    if (timestamp == NULL || timestamp[0] == '\0')
        return 0;
    for (const char *p = timestamp; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        if (s > (INT64_MAX - (*p - '0')) / 10)
            return 0;
        s = s * 10 + (*p - '0');
    }
    if (s > INT64_MAX / 1000)
        return 0;
    ms = s * 1000;
    /* the difference of two int64 fits in a uint64 when taken larger minus smaller */
    diff = ms >= now_ms ? (uint64_t)ms - (uint64_t)now_ms : (uint64_t)now_ms - (uint64_t)ms;
    return diff <= (uint64_t)MG_TIMESTAMP_WINDOW_MS;
}
