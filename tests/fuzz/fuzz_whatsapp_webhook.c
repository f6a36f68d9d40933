/* fuzz_whatsapp_webhook.c: libFuzzer target: the WhatsApp Cloud API webhook
 * (features/messaging/infrastructure/whatsapp_webhook).
 *
 * The whole input is the body of a delivery. Invariants:
 *   - wa_webhook_parse answers SP_OK or SP_EINVAL, nothing else; a refusal sets err (code
 *     SP_EINVAL, a field, a one-line message) and leaves the delivery empty; a body jansson
 *     cannot load (duplicate keys rejected) and one with more than WA_WEBHOOK_ITEMS_MAX
 *     messages and statuses in its "messages" changes are always refused;
 *   - on SP_OK, a walk of the same JSON with jansson finds the same items in the same order:
 *     each message's wamid, from, type and phone_number_id (never NULL or empty), its raw text
 *     valid compact JSON equal to the message object, answerable exactly when text is set (and
 *     text only for text, button and interactive), timestamps whole seconds within years
 *     0..9999; each status of a known value with its wamid and kind, error fields only on
 *     failed; nskipped = other fields + unknown status values;
 *   - wa_webhook_signature_ok accepts the body's HMAC in either case, refuses it under another
 *     secret or for a body one byte shorter, and refuses the body's own first bytes taken as a
 *     header (fuzzed, mostly malformed headers) unless they are the right signature. */
#include "fuzz/fuzz_common.h"

#include "core/arena.h"
#include "core/crypto.h"
#include "features/messaging/infrastructure/whatsapp_webhook.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECRET "fuzz-app-secret"
#define TS_MS_MAX 253402300799000LL /* 9999-12-31T23:59:59Z */
#define SIG_LEN (7 + 2 * SP_SHA256_LEN)
#define FUZZ_HEADER_MAX 128

static int
nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static int
same_str(const char *got, json_t *want)
{
    const char *w = json_string_value(want);

    return got != NULL && w != NULL && strcmp(got, w) == 0;
}

static void
check_timestamp(int64_t ms)
{
    FZ_CHECK(ms >= 0 && ms <= TS_MS_MAX && ms % 1000 == 0, "timestamp_ms %lld", (long long)ms);
}

static void
check_message(const struct wa_inbound *m, json_t *msg, const char *pnid)
{
    json_t *raw;
    char *compact;

    FZ_CHECK(nonempty(m->phone_number_id) && strcmp(m->phone_number_id, pnid) == 0,
             "phone_number_id %s, want %s", m->phone_number_id ? m->phone_number_id : "(null)",
             pnid);
    FZ_CHECK(nonempty(m->wamid) && same_str(m->wamid, json_object_get(msg, "id")), "wamid");
    FZ_CHECK(nonempty(m->from) && same_str(m->from, json_object_get(msg, "from")), "from");
    FZ_CHECK(nonempty(m->type) && same_str(m->type, json_object_get(msg, "type")), "type");
    FZ_CHECK(m->answerable == (m->text != NULL), "answerable %d with text %s", m->answerable,
             m->text ? "set" : "NULL");
    FZ_CHECK(m->text == NULL || m->text[0] != '\0', "empty text");
    FZ_CHECK(m->text == NULL || strcmp(m->type, "text") == 0 || strcmp(m->type, "button") == 0 ||
                 strcmp(m->type, "interactive") == 0,
             "text for a message of type %s", m->type);
    FZ_CHECK(m->profile_name == NULL || m->profile_name[0] != '\0', "empty profile_name");
    FZ_CHECK(m->context_id == NULL || m->context_id[0] != '\0', "empty context_id");
    check_timestamp(m->timestamp_ms);
    FZ_CHECK(m->raw != NULL, "raw is NULL");
    raw = json_loads(m->raw, JSON_REJECT_DUPLICATES, NULL);
    FZ_CHECK(raw != NULL && json_is_object(raw), "raw is not a JSON object: %.200s", m->raw);
    FZ_CHECK(json_equal(raw, msg), "raw differs from the message: %.200s", m->raw);
    compact = json_dumps(msg, JSON_COMPACT);
    FZ_CHECK(compact != NULL && strcmp(compact, m->raw) == 0, "raw is not compact: %.200s", m->raw);
    free(compact);
    json_decref(raw);
}

/* The kind of a status value, or -1 for one that is skipped. */
static int
kind_of(const char *s)
{
    static const char *const names[] = {"sent", "delivered", "read", "failed"};

    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static void
check_status(const struct wa_status *s, json_t *st, const char *pnid, int kind)
{
    FZ_CHECK(nonempty(s->phone_number_id) && strcmp(s->phone_number_id, pnid) == 0,
             "status phone_number_id");
    FZ_CHECK(nonempty(s->wamid) && same_str(s->wamid, json_object_get(st, "id")), "status wamid");
    FZ_CHECK((int)s->status == kind, "status %d, want %d", (int)s->status, kind);
    FZ_CHECK(s->recipient_id == NULL || s->recipient_id[0] != '\0', "empty recipient_id");
    FZ_CHECK(s->error_title == NULL || s->error_title[0] != '\0', "empty error_title");
    if (s->status != WA_STATUS_FAILED)
        FZ_CHECK(s->error_code == 0 && s->error_title == NULL, "error fields on a %d status",
                 (int)s->status);
    check_timestamp(s->timestamp_ms);
}

/* Walks the accepted body with jansson and compares every item with the delivery. */
static void
check_delivery(json_t *root, const struct wa_delivery *d)
{
    json_t *entry, *change, *item;
    size_t i, j, k;
    int nm = 0, ns = 0, nskipped = 0;

    FZ_CHECK(d->nmessages >= 0 && d->nstatuses >= 0 && d->nskipped >= 0, "negative counts");
    FZ_CHECK(d->nmessages + d->nstatuses <= WA_WEBHOOK_ITEMS_MAX, "%d + %d items", d->nmessages,
             d->nstatuses);
    FZ_CHECK(d->nmessages == 0 || d->messages != NULL, "messages NULL");
    FZ_CHECK(d->nstatuses == 0 || d->statuses != NULL, "statuses NULL");
    FZ_CHECK(json_is_object(root), "accepted a body that is not an object");
    FZ_CHECK(same_str("whatsapp_business_account", json_object_get(root, "object")),
             "accepted another object");
    FZ_CHECK(json_is_array(json_object_get(root, "entry")), "accepted entry not an array");
    json_array_foreach(json_object_get(root, "entry"), i, entry)
    {
        FZ_CHECK(json_is_array(json_object_get(entry, "changes")), "accepted changes");
        json_array_foreach(json_object_get(entry, "changes"), j, change)
        {
            json_t *value = json_object_get(change, "value");
            const char *field = json_string_value(json_object_get(change, "field"));
            const char *pnid;

            FZ_CHECK(field != NULL, "accepted a change without a field");
            if (strcmp(field, "messages") != 0) {
                nskipped++;
                continue;
            }
            pnid = json_string_value(
                json_object_get(json_object_get(value, "metadata"), "phone_number_id"));
            FZ_CHECK(nonempty(pnid), "accepted a change without phone_number_id");
            json_array_foreach(json_object_get(value, "messages"), k, item)
            {
                FZ_CHECK(nm < d->nmessages, "more messages than %d", d->nmessages);
                check_message(&d->messages[nm++], item, pnid);
            }
            json_array_foreach(json_object_get(value, "statuses"), k, item)
            {
                const char *v = json_string_value(json_object_get(item, "status"));
                int kind;

                FZ_CHECK(v != NULL, "accepted a status without a status");
                kind = kind_of(v);
                if (kind < 0) {
                    nskipped++;
                    continue;
                }
                FZ_CHECK(ns < d->nstatuses, "more statuses than %d", d->nstatuses);
                check_status(&d->statuses[ns++], item, pnid, kind);
            }
        }
    }
    FZ_CHECK(nm == d->nmessages && ns == d->nstatuses && nskipped == d->nskipped,
             "walk found %d/%d/%d, delivery has %d/%d/%d", nm, ns, nskipped, d->nmessages,
             d->nstatuses, d->nskipped);
}

/* Messages and statuses of the "messages" changes, whatever else is wrong. */
static size_t
count_items(json_t *root)
{
    json_t *entry, *change;
    size_t i, j, n = 0;

    json_array_foreach(json_object_get(root, "entry"), i, entry)
    {
        json_array_foreach(json_object_get(entry, "changes"), j, change)
        {
            json_t *value = json_object_get(change, "value");

            if (!same_str("messages", json_object_get(change, "field")))
                continue;
            n += json_array_size(json_object_get(value, "messages"));
            n += json_array_size(json_object_get(value, "statuses"));
        }
    }
    return n;
}

static void
check_parse(const uint8_t *data, size_t size, struct arena *a)
{
    struct sp_error err = {0};
    struct wa_delivery d;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    int rc = wa_webhook_parse((const char *)data, size, a, &d, &err);

    FZ_CHECK(rc == SP_OK || rc == SP_EINVAL, "wa_webhook_parse answered %d", rc);
    if (root == NULL || count_items(root) > WA_WEBHOOK_ITEMS_MAX)
        FZ_CHECK(rc == SP_EINVAL, "accepted a body jansson refuses or with too many items");
    if (rc == SP_OK) {
        FZ_CHECK(err.code == SP_OK, "SP_OK with an error set");
        check_delivery(root, &d);
    } else {
        FZ_CHECK(err.code == SP_EINVAL && err.field[0] != '\0' && err.msg[0] != '\0' &&
                     strchr(err.msg, '\n') == NULL,
                 "refusal without a proper error: %d [%s] %s", err.code, err.field, err.msg);
        FZ_CHECK(d.messages == NULL && d.statuses == NULL && d.nmessages == 0 && d.nstatuses == 0 &&
                     d.nskipped == 0,
                 "refusal left items in the delivery");
    }
    json_decref(root);
}

/* "sha256=" and the hex HMAC of data under SECRET. */
static void
signature(const uint8_t *data, size_t size, int upper, char out[SIG_LEN + 1])
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    unsigned char mac[SP_SHA256_LEN];

    sp_hmac_sha256(SECRET, strlen(SECRET), data, size, mac);
    memcpy(out, "sha256=", 7);
    for (int i = 0; i < SP_SHA256_LEN; i++) {
        out[7 + 2 * i] = digits[mac[i] >> 4];
        out[7 + 2 * i + 1] = digits[mac[i] & 15];
    }
    out[SIG_LEN] = '\0';
}

static void
check_signature(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char lower[SIG_LEN + 1], upper[SIG_LEN + 1], fuzzed[FUZZ_HEADER_MAX + 1];
    size_t n = size < FUZZ_HEADER_MAX ? size : FUZZ_HEADER_MAX;
    int want;

    signature(data, size, 0, lower);
    signature(data, size, 1, upper);
    FZ_CHECK(wa_webhook_signature_ok(SECRET, lower, body, size) == 1, "own signature refused");
    FZ_CHECK(wa_webhook_signature_ok(SECRET, upper, body, size) == 1, "upper case refused");
    FZ_CHECK(wa_webhook_signature_ok("another-secret", lower, body, size) == 0,
             "accepted under another secret");
    FZ_CHECK(wa_webhook_signature_ok("", lower, body, size) == 0, "accepted an empty secret");
    FZ_CHECK(wa_webhook_signature_ok(SECRET, NULL, body, size) == 0, "accepted no header");
    if (size > 0)
        FZ_CHECK(wa_webhook_signature_ok(SECRET, lower, body, size - 1) == 0,
                 "accepted a shorter body");
    /* the input's first bytes as the header (stopping at a NUL, as a C string does) */
    memcpy(fuzzed, data, n);
    fuzzed[n] = '\0';
    want = strlen(fuzzed) == SIG_LEN && strncmp(fuzzed, "sha256=", 7) == 0 &&
           strcasecmp(fuzzed + 7, lower + 7) == 0;
    FZ_CHECK(wa_webhook_signature_ok(SECRET, fuzzed, body, size) == want,
             "fuzzed header answered %d, want %d", !want, want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_new();

    fz_init();
    check_parse(data, size, a);
    check_signature(data, size);
    arena_free(a);
    return 0;
}
