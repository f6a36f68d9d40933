/* whatsapp_webhook.c: the WhatsApp Cloud API's webhook deliveries (see whatsapp_webhook.h).
 *
 * The body is parsed with jansson (duplicate keys refused, no NUL in strings) in two passes: the
 * first counts the items so that the arrays are sized once and the WA_WEBHOOK_ITEMS_MAX limit
 * holds before anything is copied; the second checks the envelope and copies every string the
 * caller gets into the arena. No jansson object leaves this file. Error messages name the place
 * in the envelope (entry[0].changes[1].messages[2].id), never a value: they carry no PII. */
#include "features/messaging/infrastructure/whatsapp_webhook.h"

#include "core/arena.h"
#include "core/crypto.h"
#include "core/xmalloc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_PREFIX "sha256="
#define SIG_PREFIX_LEN (sizeof(SIG_PREFIX) - 1)
#define WABA_OBJECT "whatsapp_business_account"
#define MESSAGES_FIELD "messages"
#define TS_DIGITS_MAX 12              /* unix seconds up to year 9999 */
#define TS_SECONDS_MAX 253402300799LL /* 9999-12-31T23:59:59Z */

/* ---- the signature ------------------------------------------------------------------------- */

int
wa_webhook_signature_ok(const char *secret, const char *header, const char *body, size_t len)
{
    if (secret == NULL || header == NULL || (body == NULL && len > 0))
        return 0;
    if (strncmp(header, SIG_PREFIX, SIG_PREFIX_LEN) != 0)
        return 0;
    return sp_hmac_sha256_hex_ok(secret, strlen(secret), body ? body : "", len,
                                 header + SIG_PREFIX_LEN);
}

/* ---- small readers --------------------------------------------------------------------------- */

/* Where an item is, for error messages: entry, change and item indexes. */
struct where {
    size_t entry, change, item;
};

struct parse {
    struct arena *a;
    struct sp_error *err;
    struct wa_delivery d; /* copied to the caller's only on success */
    int messages_cap, statuses_cap;
};

/* The string member `key` of obj copied into the arena, or NULL when obj is not an object, the
 * member is absent, not a string, or empty. */
static const char *
str_copy(struct arena *a, json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s && s[0] ? arena_strdup(a, s) : NULL;
}

/* An optional array member: *out is the array, or NULL when the member is absent or null;
 * -1 for any other type. */
static int
opt_array(json_t *obj, const char *key, json_t **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return -1;
    *out = v;
    return 0;
}

/* A timestamp as Meta sends it: a string of 1..12 decimal digits (unix seconds, at most the end
 * of year 9999), into ms. Absent or null gives 0; anything else (a number, a sign, blanks, a
 * fraction) is -1. */
static int
timestamp_ms(json_t *v, int64_t *out)
{
    const char *s;
    int64_t secs = 0;
    size_t n;

    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    s = json_string_value(v);
    if (s == NULL)
        return -1;
    for (n = 0; s[n]; n++) {
        if (n == TS_DIGITS_MAX || s[n] < '0' || s[n] > '9')
            return -1;
        secs = secs * 10 + (s[n] - '0');
    }
    if (n == 0 || secs > TS_SECONDS_MAX)
        return -1;
    *out = secs * 1000;
    return 0;
}

static int
is_messages_change(json_t *change)
{
    const char *field = json_string_value(json_object_get(change, "field"));

    return field && strcmp(field, MESSAGES_FIELD) == 0;
}

/* ---- messages -------------------------------------------------------------------------------- */

/* The words the prospect wrote, by type (see struct wa_inbound), or NULL. Borrowed from msg. */
static const char *
message_words(json_t *msg, const char *type)
{
    json_t *v = NULL;

    if (strcmp(type, "text") == 0) {
        v = json_object_get(json_object_get(msg, "text"), "body");
    } else if (strcmp(type, "button") == 0) {
        v = json_object_get(json_object_get(msg, "button"), "text");
    } else if (strcmp(type, "interactive") == 0) {
        json_t *in = json_object_get(msg, "interactive");

        v = json_object_get(json_object_get(in, "button_reply"), "title");
        if (!json_is_string(v))
            v = json_object_get(json_object_get(in, "list_reply"), "title");
    }
    return json_string_value(v);
}

/* contacts[].profile.name of the contact whose wa_id is `from`, else of the only contact. */
static const char *
profile_name(struct arena *a, json_t *contacts, const char *from)
{
    json_t *contact, *match = NULL;
    size_t i;

    json_array_foreach(contacts, i, contact)
    {
        const char *wa_id = json_string_value(json_object_get(contact, "wa_id"));

        if (wa_id && strcmp(wa_id, from) == 0) {
            match = contact;
            break;
        }
    }
    if (match == NULL && json_array_size(contacts) == 1)
        match = json_array_get(contacts, 0);
    return str_copy(a, json_object_get(match, "profile"), "name");
}

/* The message object as compact JSON text, in the arena. jansson's dump of a tree it parsed
 * fails only when it cannot allocate: the OOM policy (xmalloc.h) applies. */
static const char *
raw_json(struct arena *a, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    const char *out;

    if (text == NULL)
        SP_OOM(0);
    out = arena_strdup(a, text);
    free(text);
    return out;
}

/* SP_EINVAL for `member` (NULL: the item itself) of item w->item of `array` ("messages" or
 * "statuses"); the error's field is "array.member". */
static int
bad_item(struct parse *p, const struct where *w, const char *array, const char *member,
         const char *what)
{
    char field[SP_ERROR_FIELD_MAX];

    snprintf(field, sizeof(field), "%s%s%s", array, member ? "." : "", member ? member : "");
    return sp_error_set(p->err, SP_EINVAL, field,
                        "whatsapp webhook: entry[%zu].changes[%zu].%s[%zu]%s%s %s", w->entry,
                        w->change, array, w->item, member ? "." : "", member ? member : "", what);
}

static int
parse_message(struct parse *p, json_t *msg, json_t *contacts, const char *phone_number_id,
              const struct where *w)
{
    struct wa_inbound *m;
    const char *words;

    if (!json_is_object(msg))
        return bad_item(p, w, "messages", NULL, "is not an object");
    if (p->d.nmessages >= p->messages_cap) /* the count of the first pass: cannot happen */
        return sp_error_set(p->err, SP_EINTERNAL, "messages", "whatsapp webhook: miscounted");
    m = &p->d.messages[p->d.nmessages];
    memset(m, 0, sizeof(*m));
    m->phone_number_id = phone_number_id;
    m->wamid = str_copy(p->a, msg, "id");
    if (m->wamid == NULL)
        return bad_item(p, w, "messages", "id", "is missing or not a non-empty string");
    m->from = str_copy(p->a, msg, "from");
    if (m->from == NULL)
        return bad_item(p, w, "messages", "from", "is missing or not a non-empty string");
    m->type = str_copy(p->a, msg, "type");
    if (m->type == NULL)
        return bad_item(p, w, "messages", "type", "is missing or not a non-empty string");
    if (timestamp_ms(json_object_get(msg, "timestamp"), &m->timestamp_ms) != 0)
        return bad_item(p, w, "messages", "timestamp", "is not a string of unix seconds");
    words = message_words(msg, m->type);
    m->text = words && words[0] ? arena_strdup(p->a, words) : NULL;
    m->answerable = m->text != NULL;
    m->profile_name = profile_name(p->a, contacts, m->from);
    m->context_id = str_copy(p->a, json_object_get(msg, "context"), "id");
    m->raw = raw_json(p->a, msg);
    p->d.nmessages++;
    return SP_OK;
}

/* ---- statuses -------------------------------------------------------------------------------- */

/* 0 and the kind for the four statuses we follow, -1 for any other value. */
static int
status_kind(const char *s, enum wa_status_kind *out)
{
    static const struct {
        const char *name;
        enum wa_status_kind kind;
    } kinds[] = {{"sent", WA_STATUS_SENT},
                 {"delivered", WA_STATUS_DELIVERED},
                 {"read", WA_STATUS_READ},
                 {"failed", WA_STATUS_FAILED}};

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(s, kinds[i].name) == 0) {
            *out = kinds[i].kind;
            return 0;
        }
    }
    return -1;
}

/* A failed status's first error: its integer code and its title (else its message). Anything
 * else about `errors` is tolerated: the failure is what matters, the detail is best effort. */
static void
status_error(struct parse *p, json_t *st, struct wa_status *s)
{
    json_t *e = json_array_get(json_object_get(st, "errors"), 0);
    json_t *code = json_object_get(e, "code");

    if (json_is_integer(code))
        s->error_code = (long long)json_integer_value(code);
    s->error_title = str_copy(p->a, e, "title");
    if (s->error_title == NULL)
        s->error_title = str_copy(p->a, e, "message");
}

static int
parse_status(struct parse *p, json_t *st, const char *phone_number_id, const struct where *w)
{
    struct wa_status *s;
    const char *id, *value;
    enum wa_status_kind kind;

    if (!json_is_object(st))
        return bad_item(p, w, "statuses", NULL, "is not an object");
    id = json_string_value(json_object_get(st, "id"));
    if (id == NULL || id[0] == '\0')
        return bad_item(p, w, "statuses", "id", "is missing or not a non-empty string");
    value = json_string_value(json_object_get(st, "status"));
    if (value == NULL)
        return bad_item(p, w, "statuses", "status", "is missing or not a string");
    if (status_kind(value, &kind) != 0) {
        p->d.nskipped++; /* "deleted", "warning", ...: not ours to follow */
        return SP_OK;
    }
    if (p->d.nstatuses >= p->statuses_cap) /* the count of the first pass: cannot happen */
        return sp_error_set(p->err, SP_EINTERNAL, "statuses", "whatsapp webhook: miscounted");
    s = &p->d.statuses[p->d.nstatuses];
    memset(s, 0, sizeof(*s));
    s->phone_number_id = phone_number_id;
    s->wamid = arena_strdup(p->a, id);
    s->status = kind;
    s->recipient_id = str_copy(p->a, st, "recipient_id");
    if (timestamp_ms(json_object_get(st, "timestamp"), &s->timestamp_ms) != 0)
        return bad_item(p, w, "statuses", "timestamp", "is not a string of unix seconds");
    if (kind == WA_STATUS_FAILED)
        status_error(p, st, s);
    p->d.nstatuses++;
    return SP_OK;
}

/* ---- the envelope ---------------------------------------------------------------------------- */

static int
bad_change(struct parse *p, const struct where *w, const char *field, const char *what)
{
    return sp_error_set(p->err, SP_EINVAL, field, "whatsapp webhook: entry[%zu].changes[%zu].%s %s",
                        w->entry, w->change, field, what);
}

/* One change of field "messages": its metadata, contacts, messages and statuses. */
static int
parse_messages_change(struct parse *p, json_t *change, struct where *w)
{
    json_t *value = json_object_get(change, "value");
    json_t *contacts, *messages, *statuses, *item;
    const char *phone_number_id;
    int rc;

    if (!json_is_object(value))
        return bad_change(p, w, "value", "is missing or not an object");
    phone_number_id = str_copy(p->a, json_object_get(value, "metadata"), "phone_number_id");
    if (phone_number_id == NULL)
        return bad_change(p, w, "value.metadata.phone_number_id",
                          "is missing or not a non-empty string");
    if (opt_array(value, "contacts", &contacts) != 0)
        return bad_change(p, w, "value.contacts", "is not an array");
    /* bounds the search of each message's contact (messages x contacts) */
    if (json_array_size(contacts) > WA_WEBHOOK_ITEMS_MAX)
        return sp_error_set(p->err, SP_EINVAL, "value.contacts",
                            "whatsapp webhook: entry[%zu].changes[%zu].value.contacts has more "
                            "than %d items",
                            w->entry, w->change, WA_WEBHOOK_ITEMS_MAX);
    if (opt_array(value, "messages", &messages) != 0)
        return bad_change(p, w, "value.messages", "is not an array");
    if (opt_array(value, "statuses", &statuses) != 0)
        return bad_change(p, w, "value.statuses", "is not an array");
    json_array_foreach(messages, w->item, item)
    {
        rc = parse_message(p, item, contacts, phone_number_id, w);
        if (rc != SP_OK)
            return rc;
    }
    json_array_foreach(statuses, w->item, item)
    {
        rc = parse_status(p, item, phone_number_id, w);
        if (rc != SP_OK)
            return rc;
    }
    return SP_OK;
}

static int
parse_entry(struct parse *p, json_t *entry, struct where *w)
{
    json_t *changes = json_object_get(entry, "changes"), *change;
    int rc;

    if (!json_is_object(entry))
        return sp_error_set(p->err, SP_EINVAL, "entry",
                            "whatsapp webhook: entry[%zu] is not an object", w->entry);
    if (!json_is_array(changes))
        return sp_error_set(p->err, SP_EINVAL, "changes",
                            "whatsapp webhook: entry[%zu].changes is missing or not an array",
                            w->entry);
    json_array_foreach(changes, w->change, change)
    {
        if (!json_is_object(change))
            return sp_error_set(p->err, SP_EINVAL, "changes",
                                "whatsapp webhook: entry[%zu].changes[%zu] is not an object",
                                w->entry, w->change);
        if (!json_is_string(json_object_get(change, "field")))
            return bad_change(p, w, "field", "is missing or not a string");
        if (!is_messages_change(change)) {
            p->d.nskipped++; /* template status, account update...: not ours */
            continue;
        }
        rc = parse_messages_change(p, change, w);
        if (rc != SP_OK)
            return rc;
    }
    return SP_OK;
}

/* The first pass: how many messages and statuses the "messages" changes hold, whatever the
 * shape of the rest (the second pass refuses what is wrong). Counts skipped statuses too. */
static void
count_items(json_t *entries, size_t *nmessages, size_t *nstatuses)
{
    json_t *entry, *change;
    size_t i, j;

    *nmessages = *nstatuses = 0;
    json_array_foreach(entries, i, entry)
    {
        json_array_foreach(json_object_get(entry, "changes"), j, change)
        {
            json_t *value = json_object_get(change, "value");

            if (!is_messages_change(change))
                continue;
            *nmessages += json_array_size(json_object_get(value, "messages"));
            *nstatuses += json_array_size(json_object_get(value, "statuses"));
        }
    }
}

/* Checks the top of the envelope, sizes the arrays and reads every entry. */
static int
parse_root(struct parse *p, json_t *root)
{
    const char *object = json_string_value(json_object_get(root, "object"));
    json_t *entries = json_object_get(root, "entry"), *entry;
    size_t nmessages, nstatuses;
    struct where w = {0, 0, 0};
    int rc;

    if (!json_is_object(root))
        return sp_error_set(p->err, SP_EINVAL, "body", "whatsapp webhook: not a JSON object");
    if (object == NULL || strcmp(object, WABA_OBJECT) != 0)
        return sp_error_set(p->err, SP_EINVAL, "object",
                            "whatsapp webhook: object is not \"" WABA_OBJECT "\"");
    if (!json_is_array(entries))
        return sp_error_set(p->err, SP_EINVAL, "entry",
                            "whatsapp webhook: entry is missing or not an array");
    count_items(entries, &nmessages, &nstatuses);
    if (nmessages + nstatuses > WA_WEBHOOK_ITEMS_MAX)
        return sp_error_set(p->err, SP_EINVAL, "entry",
                            "whatsapp webhook: more than %d messages and statuses",
                            WA_WEBHOOK_ITEMS_MAX);
    p->messages_cap = (int)nmessages;
    p->statuses_cap = (int)nstatuses;
    if (nmessages > 0)
        p->d.messages = arena_alloc(p->a, nmessages * sizeof(*p->d.messages));
    if (nstatuses > 0)
        p->d.statuses = arena_alloc(p->a, nstatuses * sizeof(*p->d.statuses));
    json_array_foreach(entries, w.entry, entry)
    {
        rc = parse_entry(p, entry, &w);
        if (rc != SP_OK)
            return rc;
    }
    return SP_OK;
}

int
wa_webhook_parse(const char *body, size_t len, struct arena *a, struct wa_delivery *out,
                 struct sp_error *err)
{
    struct parse p;
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&p, 0, sizeof(p));
    p.a = a;
    p.err = err;
    if (body == NULL)
        return sp_error_set(err, SP_EINVAL, "body", "whatsapp webhook: no body");
    /* the position only: jansson's text quotes the input, which may hold a message */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return sp_error_set(err, SP_EINVAL, "body", "whatsapp webhook: not JSON (at byte %d)",
                            jerr.position);
    rc = parse_root(&p, root);
    json_decref(root);
    if (rc == SP_OK)
        *out = p.d;
    return rc;
}
