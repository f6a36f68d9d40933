/* test_whatsapp_webhook.c: the WhatsApp Cloud API webhook: the X-Hub-Signature-256 check
 * (correct, wrong, missing, malformed, either case, body changed after signing; one HMAC
 * computed with `openssl dgst -sha256 -hmac`, the others with sp_hmac_sha256) and the parse of
 * deliveries modelled on Meta's webhook reference: text with contacts, several messages,
 * entries and changes, image, reaction, button and interactive replies, the other types, each
 * status, a failed status's error, unknown statuses and other fields skipped, timestamps, and
 * the refusals (not JSON, wrong shapes, missing fields, too many items). Fixtures are written
 * with ' for " (q()) to stay readable. */
#include "t.h"

#include "core/arena.h"
#include "core/crypto.h"
#include "features/messaging/infrastructure/whatsapp_webhook.h"

#include <jansson.h>
#include <stdarg.h>
#include <string.h>

#define SECRET "app-secret-123"
#define PNID "106540352242922"

/* s with every ' turned into ", in the arena. */
static const char *
q(struct arena *a, const char *s)
{
    char *out = arena_strdup(a, s);

    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

/* A delivery of one entry with one "messages" change whose value is `value` (q-quoted). */
static const char *
one_change(struct arena *a, const char *value)
{
    return q(a,
             arena_printf(a,
                          "{'object':'whatsapp_business_account','entry':[{'id':'102290129340398',"
                          "'changes':[{'value':%s,'field':'messages'}]}]}",
                          value));
}

/* The value of a change with Meta's metadata and the given members (q-quoted, may be ""). */
static const char *
value_of(struct arena *a, const char *members)
{
    return arena_printf(a,
                        "{'messaging_product':'whatsapp','metadata':{'display_phone_number':"
                        "'15550783881','phone_number_id':'" PNID "'}%s%s}",
                        members[0] ? "," : "", members);
}

/* One message (q-quoted object) from 16505551234, with that contact. */
static const char *
one_message(struct arena *a, const char *msg)
{
    return one_change(
        a, value_of(a, arena_printf(a,
                                    "'contacts':[{'profile':{'name':'Kerry Fisher'},'wa_id':"
                                    "'16505551234'}],'messages':[%s]",
                                    msg)));
}

static void
parse_ok_at(int line, struct arena *a, const char *doc, struct wa_delivery *d)
{
    struct sp_error err = {0};
    int rc = wa_webhook_parse(doc, strlen(doc), a, d, &err);

    if (rc != SP_OK)
        t_fail(__FILE__, line, "wa_webhook_parse: %d (%s) %s", rc, err.field, err.msg);
}
#define PARSE_OK(a, doc, d) parse_ok_at(__LINE__, (a), (doc), (d))

/* Refused with SP_EINVAL and this error field; the delivery is left empty. */
static void
refused_at(int line, struct arena *a, const char *doc, const char *field)
{
    struct sp_error err = {0};
    struct wa_delivery d;
    int rc;

    memset(&d, 0xa5, sizeof(d));
    rc = wa_webhook_parse(doc, strlen(doc), a, &d, &err);
    if (rc != SP_EINVAL)
        t_fail(__FILE__, line, "want SP_EINVAL, got %d for %s", rc, doc);
    if (strcmp(err.field, field) != 0)
        t_fail(__FILE__, line, "want field \"%s\", got \"%s\" (%s)", field, err.field, err.msg);
    if (err.msg[0] == '\0' || strchr(err.msg, '\n'))
        t_fail(__FILE__, line, "error message \"%s\" is empty or not one line", err.msg);
    if (d.messages || d.nmessages || d.statuses || d.nstatuses || d.nskipped)
        t_fail(__FILE__, line, "the delivery is not empty after a refusal");
}
#define REFUSED(a, doc, field) refused_at(__LINE__, (a), (doc), (field))

/* raw is the fixture's message object as compact JSON, members in the delivery's order. */
static void
raw_equals_at(int line, const char *raw, const char *msg_json)
{
    json_t *got = json_loads(raw, JSON_REJECT_DUPLICATES, NULL);
    json_t *want = json_loads(msg_json, 0, NULL);
    char *compact = want ? json_dumps(want, JSON_COMPACT) : NULL;

    if (got == NULL || want == NULL || !json_equal(got, want))
        t_fail(__FILE__, line, "raw %s differs from %s", raw, msg_json);
    if (compact == NULL || strcmp(raw, compact) != 0)
        t_fail(__FILE__, line, "raw %s is not the compact %s", raw, compact ? compact : "?");
    free(compact);
    json_decref(got);
    json_decref(want);
}
#define RAW_EQUALS(raw, msg_json) raw_equals_at(__LINE__, (raw), (msg_json))

/* ---- signature ------------------------------------------------------------------------------- */

/* "sha256=" and the hex HMAC of body under secret, in the arena; upper-case digits if asked. */
static const char *
sign(struct arena *a, const char *secret, const char *body, size_t len, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    unsigned char mac[SP_SHA256_LEN];
    char *out = arena_alloc(a, 7 + 2 * SP_SHA256_LEN + 1);

    sp_hmac_sha256(secret, strlen(secret), body, len, mac);
    memcpy(out, "sha256=", 7);
    for (int i = 0; i < SP_SHA256_LEN; i++) {
        out[7 + 2 * i] = digits[mac[i] >> 4];
        out[7 + 2 * i + 1] = digits[mac[i] & 15];
    }
    return out;
}

TEST(unit_wa_webhook_signature_correct)
{
    /* printf '%s' "$BODY" | openssl dgst -sha256 -hmac app-secret-123 */
    static const char body[] = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    static const char openssl[] =
        "sha256=20e391a99a86fc5adf7e3a453236d20c906360291977896cf2f671e03bb95703";
    struct arena *a = arena_new();
    const char *doc = one_message(a, "{'from':'16505551234','id':'wamid.A','timestamp':"
                                     "'1504902988','type':'text','text':{'body':'hi'}}");

    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, openssl, body, strlen(body)));
    ASSERT_STREQ(openssl, sign(a, SECRET, body, strlen(body), 0));
    ASSERT_EQ(
        1, wa_webhook_signature_ok(SECRET, sign(a, SECRET, doc, strlen(doc), 0), doc, strlen(doc)));
    /* an empty body is signed too; NULL with length 0 is the empty body */
    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, sign(a, SECRET, "", 0, 0), "", 0));
    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, sign(a, SECRET, "", 0, 0), NULL, 0));
    /* the length counts, not a NUL: bytes after an embedded NUL are signed */
    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, sign(a, SECRET, "a\0b", 3, 0), "a\0b", 3));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sign(a, SECRET, "a\0b", 3, 0), "a\0c", 3));
    arena_free(a);
}

TEST(unit_wa_webhook_signature_uppercase_hex_accepted)
{
    struct arena *a = arena_new();
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    const char *upper = sign(a, SECRET, body, strlen(body), 1);
    char mixed[7 + 2 * SP_SHA256_LEN + 1];

    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, upper, body, strlen(body)));
    memcpy(mixed, sign(a, SECRET, body, strlen(body), 0), sizeof(mixed));
    for (size_t i = 7; i < sizeof(mixed) - 1; i += 2)
        mixed[i] = upper[i];
    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, mixed, body, strlen(body)));
    /* the prefix is Meta's, in lower case */
    mixed[0] = 'S';
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, mixed, body, strlen(body)));
    arena_free(a);
}

TEST(unit_wa_webhook_signature_wrong)
{
    struct arena *a = arena_new();
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    char *sig = arena_strdup(a, sign(a, SECRET, body, strlen(body), 0));
    size_t n = strlen(sig);

    ASSERT_EQ(0, wa_webhook_signature_ok("another-secret", sig, body, strlen(body)));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET "4", sig, body, strlen(body)));
    /* one digit off, first and last */
    sig[7] = sig[7] == '0' ? '1' : '0';
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sig, body, strlen(body)));
    sig[7] = sign(a, SECRET, body, strlen(body), 0)[7];
    sig[n - 1] = sig[n - 1] == '0' ? '1' : '0';
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sig, body, strlen(body)));
    /* a signature of the right shape but all zeros */
    ASSERT_EQ(0,
              wa_webhook_signature_ok(
                  SECRET, "sha256=0000000000000000000000000000000000000000000000000000000000000000",
                  body, strlen(body)));
    arena_free(a);
}

TEST(unit_wa_webhook_signature_missing)
{
    struct arena *a = arena_new();
    const char *body = "{}";
    const char *sig = sign(a, SECRET, body, 2, 0);

    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, NULL, body, 2));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, "", body, 2));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, "sha256=", body, 2));
    /* no secret configured: nothing is ever accepted, not even the HMAC under "" */
    ASSERT_EQ(0, wa_webhook_signature_ok(NULL, sig, body, 2));
    ASSERT_EQ(0, wa_webhook_signature_ok("", sign(a, "", body, 2, 0), body, 2));
    /* a length without a body */
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sig, NULL, 2));
    arena_free(a);
}

TEST(unit_wa_webhook_signature_malformed)
{
    struct arena *a = arena_new();
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    size_t len = strlen(body);
    const char *sig = sign(a, SECRET, body, len, 0);
    const char *hex = sig + 7;

    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, sig, body, len));
    /* short, long */
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, "sha256=20e391a9", body, len));
    ASSERT_EQ(0,
              wa_webhook_signature_ok(SECRET, arena_strndup(a, sig, strlen(sig) - 1), body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, "%s0", sig), body, len));
    /* no prefix, another algorithm, spaces */
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, hex, body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, "sha1=%s", hex), body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, "sha256 =%s", hex), body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, "sha256= %s", hex), body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, " %s", sig), body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, "%s ", sig), body, len));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, arena_printf(a, "%s\n", sig), body, len));
    /* a non-hex character in place of a digit */
    {
        char *bad = arena_strdup(a, sig);
        bad[20] = 'g';
        ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, bad, body, len));
    }
    arena_free(a);
}

TEST(unit_wa_webhook_signature_body_changed)
{
    struct arena *a = arena_new();
    const char *body = one_message(a, "{'from':'16505551234','id':'wamid.A','timestamp':"
                                      "'1504902988','type':'text','text':{'body':'hi'}}");
    size_t len = strlen(body);
    const char *sig = sign(a, SECRET, body, len, 0);
    char *changed = arena_strdup(a, body);

    ASSERT_EQ(1, wa_webhook_signature_ok(SECRET, sig, body, len));
    changed[strlen(changed) - 10] ^= 1;
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sig, changed, len));
    /* fewer bytes, more bytes */
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sig, body, len - 1));
    ASSERT_EQ(0, wa_webhook_signature_ok(SECRET, sig, arena_printf(a, "%s ", body), len + 1));
    arena_free(a);
}

/* ---- messages -------------------------------------------------------------------------------- */

TEST(unit_wa_webhook_text_message_with_contact)
{
    struct arena *a = arena_new();
    const char *msg = q(a, "{'from':'16505551234','id':'wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdBNzA',"
                           "'timestamp':'1504902988','text':{'body':'Hello, is this still "
                           "available?'},'type':'text'}");
    const char *doc = one_message(a, msg);
    struct wa_delivery d;
    struct wa_inbound *m;

    PARSE_OK(a, doc, &d);
    ASSERT_EQ(1, d.nmessages);
    ASSERT_EQ(0, d.nstatuses);
    ASSERT_EQ(0, d.nskipped);
    m = &d.messages[0];
    ASSERT_STREQ(PNID, m->phone_number_id);
    ASSERT_STREQ("wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdBNzA", m->wamid);
    ASSERT_STREQ("16505551234", m->from);
    ASSERT_STREQ("Kerry Fisher", m->profile_name);
    ASSERT_STREQ("text", m->type);
    ASSERT_STREQ("Hello, is this still available?", m->text);
    ASSERT_EQ(1, m->answerable);
    ASSERT_EQ(1504902988000LL, m->timestamp_ms);
    ASSERT(m->context_id == NULL);
    RAW_EQUALS(m->raw, msg);
    /* the strings are copies: the body may go */
    ASSERT(m->text < doc || m->text >= doc + strlen(doc));
    arena_free(a);
}

TEST(unit_wa_webhook_two_messages_two_entries)
{
    struct arena *a = arena_new();
    const char *doc =
        q(a, "{'object':'whatsapp_business_account','entry':["
             "{'id':'102290129340398','changes':["
             "{'value':{'messaging_product':'whatsapp','metadata':{'display_phone_number':"
             "'15550783881','phone_number_id':'111'},'contacts':[{'profile':{'name':'Ana'},"
             "'wa_id':'351912345678'},{'profile':{'name':'Bo'},'wa_id':'16505551234'}],"
             "'messages':[{'from':'16505551234','id':'wamid.1','timestamp':'1700000001','type':"
             "'text','text':{'body':'first'}},{'from':'351912345678','id':'wamid.2','timestamp':"
             "'1700000002','type':'text','text':{'body':'second'}}]},'field':'messages'},"
             "{'value':{'messaging_product':'whatsapp','metadata':{'display_phone_number':"
             "'15550783881','phone_number_id':'111'},'statuses':[{'id':'wamid.out1','status':"
             "'read','timestamp':'1700000003','recipient_id':'351912345678'}]},'field':"
             "'messages'}]},"
             "{'id':'102290129340399','changes':[{'value':{'messaging_product':'whatsapp',"
             "'metadata':{'display_phone_number':'15550783882','phone_number_id':'222'},"
             "'messages':[{'from':'447700900123','id':'wamid.3','timestamp':'1700000004','type':"
             "'text','text':{'body':'third'}}]},'field':'messages'}]}]}");
    struct wa_delivery d;

    PARSE_OK(a, doc, &d);
    ASSERT_EQ(3, d.nmessages);
    ASSERT_EQ(1, d.nstatuses);
    ASSERT_EQ(0, d.nskipped);
    ASSERT_STREQ("wamid.1", d.messages[0].wamid);
    ASSERT_STREQ("first", d.messages[0].text);
    ASSERT_STREQ("Bo", d.messages[0].profile_name); /* by wa_id, not by position */
    ASSERT_STREQ("111", d.messages[0].phone_number_id);
    ASSERT_STREQ("wamid.2", d.messages[1].wamid);
    ASSERT_STREQ("second", d.messages[1].text);
    ASSERT_STREQ("Ana", d.messages[1].profile_name);
    ASSERT_EQ(1700000002000LL, d.messages[1].timestamp_ms);
    ASSERT_STREQ("wamid.3", d.messages[2].wamid);
    ASSERT_STREQ("222", d.messages[2].phone_number_id);
    ASSERT(d.messages[2].profile_name == NULL); /* that change has no contacts */
    ASSERT_STREQ("wamid.out1", d.statuses[0].wamid);
    ASSERT_STREQ("111", d.statuses[0].phone_number_id);
    ASSERT_EQ(WA_STATUS_READ, d.statuses[0].status);
    arena_free(a);
}

TEST(unit_wa_webhook_profile_name_fallbacks)
{
    struct arena *a = arena_new();
    const char *msg = "{'from':'5511987654321','id':'wamid.A','timestamp':'1504902988','type':"
                      "'text','text':{'body':'oi'}}";
    struct wa_delivery d;

    /* the only contact, although its wa_id is written differently (Brazil's ninth digit) */
    PARSE_OK(a,
             one_change(a, value_of(a, arena_printf(a,
                                                    "'contacts':[{'profile':{'name':'Joao'},"
                                                    "'wa_id':'551187654321'}],'messages':[%s]",
                                                    msg))),
             &d);
    ASSERT_STREQ("Joao", d.messages[0].profile_name);
    /* two contacts, none of them the sender: none */
    PARSE_OK(a,
             one_change(a, value_of(a, arena_printf(a,
                                                    "'contacts':[{'profile':{'name':'X'},'wa_id':"
                                                    "'1'},{'profile':{'name':'Y'},'wa_id':'2'}],"
                                                    "'messages':[%s]",
                                                    msg))),
             &d);
    ASSERT(d.messages[0].profile_name == NULL);
    /* the matching contact has no profile: none, not another contact's name */
    PARSE_OK(a,
             one_change(a, value_of(a, arena_printf(a,
                                                    "'contacts':[{'wa_id':'5511987654321'},{'"
                                                    "profile':{'name':'Y'},'wa_id':'2'}],"
                                                    "'messages':[%s]",
                                                    msg))),
             &d);
    ASSERT(d.messages[0].profile_name == NULL);
    /* contacts absent, null, empty; a name that is not a string */
    PARSE_OK(a, one_change(a, value_of(a, arena_printf(a, "'messages':[%s]", msg))), &d);
    ASSERT(d.messages[0].profile_name == NULL);
    PARSE_OK(a, one_change(a, value_of(a, arena_printf(a, "'contacts':null,'messages':[%s]", msg))),
             &d);
    ASSERT(d.messages[0].profile_name == NULL);
    PARSE_OK(a, one_change(a, value_of(a, arena_printf(a, "'contacts':[],'messages':[%s]", msg))),
             &d);
    ASSERT(d.messages[0].profile_name == NULL);
    PARSE_OK(a,
             one_change(a, value_of(a, arena_printf(a,
                                                    "'contacts':[{'profile':{'name':7},'wa_id':"
                                                    "'5511987654321'}],'messages':[%s]",
                                                    msg))),
             &d);
    ASSERT(d.messages[0].profile_name == NULL);
    arena_free(a);
}

TEST(unit_wa_webhook_image_message)
{
    struct arena *a = arena_new();
    const char *msg = q(a, "{'from':'16505551234','id':'wamid.IMG','timestamp':'1504902988',"
                           "'type':'image','image':{'caption':'our order','mime_type':"
                           "'image/jpeg','sha256':'b1b4c0b9e7a1','id':'1003383421387256'}}");
    struct wa_delivery d;

    PARSE_OK(a, one_message(a, msg), &d);
    ASSERT_EQ(1, d.nmessages);
    ASSERT_STREQ("image", d.messages[0].type);
    ASSERT(d.messages[0].text == NULL); /* a caption is not something to answer */
    ASSERT_EQ(0, d.messages[0].answerable);
    ASSERT_STREQ("Kerry Fisher", d.messages[0].profile_name);
    RAW_EQUALS(d.messages[0].raw, msg);
    ASSERT_CONTAINS(d.messages[0].raw, "\"1003383421387256\"");
    arena_free(a);
}

TEST(unit_wa_webhook_reaction)
{
    struct arena *a = arena_new();
    const char *msg = q(a, "{'from':'16505551234','id':'wamid.R','timestamp':'1504902988',"
                           "'type':'reaction','reaction':{'message_id':'wamid.OUT','emoji':"
                           "'\xf0\x9f\x91\x8d'}}");
    struct wa_delivery d;

    PARSE_OK(a, one_message(a, msg), &d);
    ASSERT_STREQ("reaction", d.messages[0].type);
    ASSERT(d.messages[0].text == NULL);
    ASSERT_EQ(0, d.messages[0].answerable);
    ASSERT(d.messages[0].context_id == NULL);
    RAW_EQUALS(d.messages[0].raw, msg);
    ASSERT_CONTAINS(d.messages[0].raw, "\xf0\x9f\x91\x8d"); /* UTF-8 kept as is */
    arena_free(a);
}

TEST(unit_wa_webhook_button_reply)
{
    struct arena *a = arena_new();
    const char *msg = q(a, "{'context':{'from':'15550783881','id':'wamid.TEMPLATE'},'from':"
                           "'16505551234','id':'wamid.B','timestamp':'1504902988','type':"
                           "'button','button':{'text':'Yes, call me','payload':'YES_PAYLOAD'}}");
    struct wa_delivery d;

    PARSE_OK(a, one_message(a, msg), &d);
    ASSERT_STREQ("button", d.messages[0].type);
    ASSERT_STREQ("Yes, call me", d.messages[0].text);
    ASSERT_EQ(1, d.messages[0].answerable);
    ASSERT_STREQ("wamid.TEMPLATE", d.messages[0].context_id);
    RAW_EQUALS(d.messages[0].raw, msg);
    arena_free(a);
}

TEST(unit_wa_webhook_interactive_replies)
{
    struct arena *a = arena_new();
    const char *list = q(a, "{'context':{'from':'15550783881','id':'wamid.LIST'},'from':"
                            "'16505551234','id':'wamid.L','timestamp':'1504902988','type':"
                            "'interactive','interactive':{'type':'list_reply','list_reply':{"
                            "'id':'plan_pro','title':'Pro plan','description':'For teams'}}}");
    const char *button = q(a, "{'context':{'from':'15550783881','id':'wamid.BTN'},'from':"
                              "'16505551234','id':'wamid.I','timestamp':'1504902988','type':"
                              "'interactive','interactive':{'type':'button_reply',"
                              "'button_reply':{'id':'demo','title':'Book a demo'}}}");
    struct wa_delivery d;

    PARSE_OK(a, one_message(a, list), &d);
    ASSERT_STREQ("interactive", d.messages[0].type);
    ASSERT_STREQ("Pro plan", d.messages[0].text);
    ASSERT_EQ(1, d.messages[0].answerable);
    ASSERT_STREQ("wamid.LIST", d.messages[0].context_id);
    RAW_EQUALS(d.messages[0].raw, list);
    PARSE_OK(a, one_message(a, button), &d);
    ASSERT_STREQ("Book a demo", d.messages[0].text);
    ASSERT_EQ(1, d.messages[0].answerable);
    ASSERT_STREQ("wamid.BTN", d.messages[0].context_id);
    arena_free(a);
}

TEST(unit_wa_webhook_other_types_not_answerable)
{
    static const char *const msgs[] = {
        "'type':'audio','audio':{'mime_type':'audio/ogg; codecs=opus','id':'1'}",
        "'type':'video','video':{'mime_type':'video/mp4','id':'2'}",
        "'type':'document','document':{'filename':'a.pdf','mime_type':'application/pdf','id':'3'}",
        "'type':'sticker','sticker':{'mime_type':'image/webp','id':'4','animated':false}",
        "'type':'location','location':{'latitude':38.7,'longitude':-9.1,'name':'Lisbon'}",
        "'type':'contacts','contacts':[{'name':{'formatted_name':'Ana'},'phones':[{'phone':"
        "'+351912345678','type':'CELL'}]}]",
        "'type':'unsupported','errors':[{'code':131051,'title':'Message type unknown'}]",
        "'type':'interactive','interactive':{'type':'nfm_reply','nfm_reply':{'name':'flow',"
        "'response_json':'{}'}}",
        "'type':'order','order':{'catalog_id':'9','product_items':[]}",
        "'type':'system','system':{'body':'number changed','type':'user_changed_number'}",
        /* the answerable types without their words: kept, not answered */
        "'type':'text','text':{'body':''}",
        "'type':'text','text':{'body':7}",
        "'type':'text'",
        "'type':'button','button':{'payload':'P'}",
        "'type':'interactive','interactive':{'type':'list_reply','list_reply':{'id':'x'}}",
    };
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        const char *msg = q(a, arena_printf(a,
                                            "{'from':'16505551234','id':'wamid.X','timestamp':"
                                            "'1504902988',%s}",
                                            msgs[i]));
        struct wa_delivery d;

        PARSE_OK(a, one_message(a, msg), &d);
        ASSERT_EQ(1, d.nmessages);
        if (d.messages[0].text != NULL || d.messages[0].answerable != 0)
            t_fail(__FILE__, __LINE__, "answerable: %s", msg);
        RAW_EQUALS(d.messages[0].raw, msg);
    }
    arena_free(a);
}

TEST(unit_wa_webhook_timestamps)
{
    static const char *const good[] = {"", "'timestamp':null,", "'timestamp':'0',",
                                       "'timestamp':'1',", "'timestamp':'253402300799',"};
    static const long long good_ms[] = {0, 0, 0, 1000, 253402300799000LL};
    static const char *const bad[] = {"'timestamp':1504902988,",     "'timestamp':'',",
                                      "'timestamp':'-1',",           "'timestamp':'+1',",
                                      "'timestamp':' 1504902988',",  "'timestamp':'1504902988 ',",
                                      "'timestamp':'1.5',",          "'timestamp':'1e9',",
                                      "'timestamp':'253402300800',", "'timestamp':'0000000000001',",
                                      "'timestamp':true,",           "'timestamp':{},"};
    struct arena *a = arena_new();
    struct wa_delivery d;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *m =
            arena_printf(a, "{'from':'1','id':'w',%s'type':'text','text':{'body':'x'}}", good[i]);
        const char *s = arena_printf(a, "{'id':'w',%s'status':'sent'}", good[i]);

        PARSE_OK(a, one_message(a, m), &d);
        ASSERT_EQ(good_ms[i], d.messages[0].timestamp_ms);
        PARSE_OK(a, one_change(a, value_of(a, arena_printf(a, "'statuses':[%s]", s))), &d);
        ASSERT_EQ(good_ms[i], d.statuses[0].timestamp_ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *m =
            arena_printf(a, "{'from':'1','id':'w',%s'type':'text','text':{'body':'x'}}", bad[i]);
        const char *s = arena_printf(a, "{'id':'w',%s'status':'sent'}", bad[i]);

        REFUSED(a, one_message(a, m), "messages.timestamp");
        REFUSED(a, one_change(a, value_of(a, arena_printf(a, "'statuses':[%s]", s))),
                "statuses.timestamp");
    }
    arena_free(a);
}

/* ---- statuses -------------------------------------------------------------------------------- */

TEST(unit_wa_webhook_statuses_sent_delivered_read)
{
    struct arena *a = arena_new();
    const char *doc = one_change(
        a, value_of(a, "'statuses':["
                       "{'id':'wamid.OUT','status':'sent','timestamp':'1750857384','recipient_id':"
                       "'5516992318222','conversation':{'id':'a75d17ad','expiration_timestamp':"
                       "'1750943820','origin':{'type':'service'}},'pricing':{'billable':true,"
                       "'pricing_model':'CBP','category':'service'}},"
                       "{'id':'wamid.OUT','status':'delivered','timestamp':'1750857385',"
                       "'recipient_id':'5516992318222','conversation':{'id':'a75d17ad','origin':"
                       "{'type':'service'}}},"
                       "{'id':'wamid.OUT','status':'read','timestamp':'1750857390'}]"));
    struct wa_delivery d;

    PARSE_OK(a, doc, &d);
    ASSERT_EQ(0, d.nmessages);
    ASSERT_EQ(3, d.nstatuses);
    ASSERT_EQ(0, d.nskipped);
    ASSERT_EQ(WA_STATUS_SENT, d.statuses[0].status);
    ASSERT_EQ(WA_STATUS_DELIVERED, d.statuses[1].status);
    ASSERT_EQ(WA_STATUS_READ, d.statuses[2].status);
    for (int i = 0; i < 3; i++) {
        ASSERT_STREQ(PNID, d.statuses[i].phone_number_id);
        ASSERT_STREQ("wamid.OUT", d.statuses[i].wamid);
        ASSERT_EQ(0, d.statuses[i].error_code);
        ASSERT(d.statuses[i].error_title == NULL);
    }
    ASSERT_STREQ("5516992318222", d.statuses[0].recipient_id);
    ASSERT(d.statuses[2].recipient_id == NULL);
    ASSERT_EQ(1750857384000LL, d.statuses[0].timestamp_ms);
    ASSERT_EQ(1750857390000LL, d.statuses[2].timestamp_ms);
    arena_free(a);
}

TEST(unit_wa_webhook_failed_status)
{
    struct arena *a = arena_new();
    const char *doc = one_change(
        a, value_of(a, "'statuses':["
                       "{'id':'wamid.F1','status':'failed','timestamp':'1750857384',"
                       "'recipient_id':'16505551234','errors':[{'code':131026,'title':"
                       "'Message undeliverable','message':'Message undeliverable','error_data':"
                       "{'details':'Message Undeliverable.'}},{'code':1,'title':'second'}]},"
                       "{'id':'wamid.F2','status':'failed','errors':[{'code':131047,'message':"
                       "'Re-engagement message'}]},"
                       "{'id':'wamid.F3','status':'failed'},"
                       "{'id':'wamid.F4','status':'failed','errors':[{'code':'131026','title':"
                       "''}]},"
                       "{'id':'wamid.F5','status':'failed','errors':{'code':131026}},"
                       "{'id':'wamid.D','status':'delivered','errors':[{'code':9,'title':'x'}]}]"));
    struct wa_delivery d;

    PARSE_OK(a, doc, &d);
    ASSERT_EQ(6, d.nstatuses);
    ASSERT_EQ(WA_STATUS_FAILED, d.statuses[0].status);
    ASSERT_EQ(131026, d.statuses[0].error_code);
    ASSERT_STREQ("Message undeliverable", d.statuses[0].error_title);
    ASSERT_STREQ("16505551234", d.statuses[0].recipient_id);
    /* no title: the message */
    ASSERT_EQ(131047, d.statuses[1].error_code);
    ASSERT_STREQ("Re-engagement message", d.statuses[1].error_title);
    /* no errors, a code that is not an integer, errors not an array: failed all the same */
    for (int i = 2; i < 5; i++) {
        ASSERT_EQ(WA_STATUS_FAILED, d.statuses[i].status);
        ASSERT_EQ(0, d.statuses[i].error_code);
        ASSERT(d.statuses[i].error_title == NULL);
    }
    /* errors are read for a failure only */
    ASSERT_EQ(WA_STATUS_DELIVERED, d.statuses[5].status);
    ASSERT_EQ(0, d.statuses[5].error_code);
    ASSERT(d.statuses[5].error_title == NULL);
    arena_free(a);
}

TEST(unit_wa_webhook_unknown_status_skipped)
{
    struct arena *a = arena_new();
    const char *doc = one_change(
        a, value_of(a, "'statuses':[{'id':'wamid.1','status':'deleted','timestamp':'1'},"
                       "{'id':'wamid.2','status':'sent','timestamp':'2'},"
                       "{'id':'wamid.3','status':'warning','timestamp':'x'},"
                       "{'id':'wamid.4','status':'READ'},{'id':'wamid.5','status':''}]"));
    struct wa_delivery d;

    PARSE_OK(a, doc, &d);
    ASSERT_EQ(1, d.nstatuses);
    ASSERT_STREQ("wamid.2", d.statuses[0].wamid);
    ASSERT_EQ(4, d.nskipped);
    arena_free(a);
}

TEST(unit_wa_webhook_other_field_skipped)
{
    struct arena *a = arena_new();
    const char *doc =
        q(a, "{'object':'whatsapp_business_account','entry':[{'id':'102290129340398','time':"
             "1700000000,'changes':["
             "{'value':{'event':'APPROVED','message_template_id':12345678,"
             "'message_template_name':'welcome_lead','message_template_language':'en_US',"
             "'reason':'NONE'},'field':'message_template_status_update'},"
             "{'value':{'messaging_product':'whatsapp','metadata':{'display_phone_number':'1',"
             "'phone_number_id':'" PNID "'},'messages':[{'from':'1','id':'wamid.M','timestamp':"
             "'1','type':'text','text':{'body':'hi'}}]},'field':'messages'},"
             "{'value':{'messages':'not even the messages shape'},'field':'account_update'},"
             "{'field':'phone_number_quality_update'}]}]}");
    struct wa_delivery d;

    PARSE_OK(a, doc, &d);
    ASSERT_EQ(1, d.nmessages);
    ASSERT_STREQ("wamid.M", d.messages[0].wamid);
    ASSERT_EQ(3, d.nskipped);
    arena_free(a);
}

TEST(unit_wa_webhook_empty_deliveries)
{
    struct arena *a = arena_new();
    struct wa_delivery d;

    PARSE_OK(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[]}", &d);
    ASSERT_EQ(0, d.nmessages + d.nstatuses + d.nskipped);
    ASSERT(d.messages == NULL && d.statuses == NULL);
    PARSE_OK(a,
             "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[]}]}",
             &d);
    ASSERT_EQ(0, d.nmessages + d.nstatuses + d.nskipped);
    /* a messages change with neither messages nor statuses (Meta's system-level errors) */
    PARSE_OK(a,
             one_change(a, value_of(a, "'errors':[{'code':131000,'title':'Something went wrong'}],"
                                       "'messages':[],'statuses':null")),
             &d);
    ASSERT_EQ(0, d.nmessages + d.nstatuses + d.nskipped);
    arena_free(a);
}

/* ---- refusals -------------------------------------------------------------------------------- */

TEST(unit_wa_webhook_refuses_not_json)
{
    struct arena *a = arena_new();
    struct sp_error err = {0};
    struct wa_delivery d;

    REFUSED(a, "", "body");
    REFUSED(a, "not json", "body");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[]", "body");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[]} x", "body");
    REFUSED(a, "\"whatsapp_business_account\"", "body");
    /* a key twice: which one would count is anybody's guess */
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"object\":\"page\",\"entry\":[]}",
            "body");
    REFUSED(a, one_message(a, "{'from':'1','id':'w','id':'v','type':'text'}"), "body");
    /* a NUL inside a string, invalid UTF-8 */
    REFUSED(a, one_message(a, "{'from':'1\\u0000','id':'w','type':'text'}"), "body");
    REFUSED(a, one_message(a, "{'from':'1','id':'w\xff','type':'text'}"), "body");
    ASSERT_EQ(SP_EINVAL, wa_webhook_parse(NULL, 0, a, &d, &err));
    /* the body's length counts: what follows it is not read */
    {
        const char *doc = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}garbage";
        PARSE_OK(a, arena_strndup(a, doc, strlen(doc) - 7), &d);
        sp_error_clear(&err);
        ASSERT_OK(wa_webhook_parse(doc, strlen(doc) - 7, a, &d, &err));
    }
    /* the message says where, and quotes nothing of the body */
    sp_error_clear(&err);
    {
        const char *bad = "{\"x\": \"+351912345678\" oops}";
        ASSERT_EQ(SP_EINVAL, wa_webhook_parse(bad, strlen(bad), a, &d, &err));
    }
    ASSERT(strstr(err.msg, "351912345678") == NULL && strstr(err.msg, "oops") == NULL);
    arena_free(a);
}

TEST(unit_wa_webhook_refuses_wrong_shapes)
{
    struct arena *a = arena_new();

    REFUSED(a, "[]", "body");
    REFUSED(a, q(a, "[{'object':'whatsapp_business_account','entry':[]}]"), "body");
    REFUSED(a, "{\"entry\":[]}", "object");
    REFUSED(a, "{\"object\":\"page\",\"entry\":[]}", "object");
    REFUSED(a, "{\"object\":\"instagram\",\"entry\":[]}", "object");
    REFUSED(a, "{\"object\":7,\"entry\":[]}", "object");
    REFUSED(a, "{\"object\":\"WHATSAPP_BUSINESS_ACCOUNT\",\"entry\":[]}", "object");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\"}", "entry");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":{}}", "entry");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":null}", "entry");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[7]}", "entry");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\"}]}", "changes");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":{}}]}",
            "changes");
    REFUSED(a, "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[[]]}]}",
            "changes");
    REFUSED(a, q(a, "{'object':'whatsapp_business_account','entry':[{'changes':[{'value':{}}]}]}"),
            "field");
    REFUSED(a, q(a, "{'object':'whatsapp_business_account','entry':[{'changes':[{'field':1}]}]}"),
            "field");
    REFUSED(a,
            q(a, "{'object':'whatsapp_business_account','entry':[{'changes':[{'field':'messages'}"
                 "]}]}"),
            "value");
    REFUSED(a, one_change(a, "[]"), "value");
    REFUSED(a, one_change(a, "{'messaging_product':'whatsapp'}"), "value.metadata.phone_number_id");
    REFUSED(a, one_change(a, "{'metadata':{'phone_number_id':106540352242922}}"),
            "value.metadata.phone_number_id");
    REFUSED(a, one_change(a, "{'metadata':{'phone_number_id':''}}"),
            "value.metadata.phone_number_id");
    REFUSED(a, one_change(a, value_of(a, "'messages':{}")), "value.messages");
    REFUSED(a, one_change(a, value_of(a, "'statuses':'sent'")), "value.statuses");
    REFUSED(a, one_change(a, value_of(a, "'contacts':{'wa_id':'1'}")), "value.contacts");
    REFUSED(a, one_change(a, value_of(a, "'messages':[7]")), "messages");
    REFUSED(a, one_change(a, value_of(a, "'statuses':[null]")), "statuses");
    arena_free(a);
}

TEST(unit_wa_webhook_refuses_missing_fields)
{
    static const struct {
        const char *msg, *field;
    } msgs[] = {
        {"{'from':'1','timestamp':'1','type':'text','text':{'body':'x'}}", "messages.id"},
        {"{'from':'1','id':7,'type':'text'}", "messages.id"},
        {"{'from':'1','id':'','type':'text'}", "messages.id"},
        {"{'id':'w','timestamp':'1','type':'text','text':{'body':'x'}}", "messages.from"},
        {"{'from':16505551234,'id':'w','type':'text'}", "messages.from"},
        {"{'from':null,'id':'w','type':'text'}", "messages.from"},
        {"{'from':'1','id':'w','timestamp':'1','text':{'body':'x'}}", "messages.type"},
        {"{'from':'1','id':'w','type':['text']}", "messages.type"},
    };
    static const struct {
        const char *st, *field;
    } sts[] = {
        {"{'status':'sent','timestamp':'1'}", "statuses.id"},
        {"{'id':1,'status':'sent'}", "statuses.id"},
        {"{'id':'','status':'sent'}", "statuses.id"},
        {"{'id':'w','timestamp':'1'}", "statuses.status"},
        {"{'id':'w','status':1}", "statuses.status"},
        {"{'id':'w','status':null}", "statuses.status"},
    };
    struct arena *a = arena_new();

    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
        REFUSED(a, one_message(a, msgs[i].msg), msgs[i].field);
    for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
        REFUSED(a, one_change(a, value_of(a, arena_printf(a, "'statuses':[%s]", sts[i].st))),
                sts[i].field);
    /* a bad item after good ones refuses the whole delivery */
    REFUSED(a,
            one_change(a, value_of(a, "'messages':[{'from':'1','id':'a','type':'text'},{'from':"
                                      "'1','type':'text'}]")),
            "messages.id");
    arena_free(a);
}

/* A text of at most cap bytes built by appending; the test fails when it would not fit. */
struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    ASSERT(n >= 0 && (size_t)n < t->cap - t->len);
    t->len += (size_t)n;
}

/* A delivery of nentries entries of one "messages" change, each with ncontacts contacts, nmsg
 * messages and nst statuses (every other one "deleted", so skipped). */
static const char *
many(struct arena *a, int nentries, int nmsg, int nst, int ncontacts)
{
    struct text t = {arena_alloc(a, 1024 * 1024), 0, 1024 * 1024};

    text_add(&t, "{'object':'whatsapp_business_account','entry':[");
    for (int e = 0; e < nentries; e++) {
        text_add(&t,
                 "%s{'changes':[{'field':'messages','value':{'metadata':{"
                 "'phone_number_id':'" PNID "'},'contacts':[",
                 e ? "," : "");
        for (int i = 0; i < ncontacts; i++)
            text_add(&t, "%s{'wa_id':'%d'}", i ? "," : "", i);
        text_add(&t, "],'messages':[");
        for (int i = 0; i < nmsg; i++)
            text_add(&t, "%s{'from':'1','id':'m%d.%d','type':'text'}", i ? "," : "", e, i);
        text_add(&t, "],'statuses':[");
        for (int i = 0; i < nst; i++)
            text_add(&t, "%s{'id':'s%d.%d','status':'%s'}", i ? "," : "", e, i,
                     i % 2 ? "sent" : "deleted");
        text_add(&t, "]}}]}");
    }
    text_add(&t, "]}");
    return q(a, t.p);
}

TEST(unit_wa_webhook_too_many_items)
{
    struct arena *a = arena_new();
    struct wa_delivery d;

    /* exactly the limit, over two entries; skipped statuses count as items */
    PARSE_OK(a, many(a, 2, 300, 200, 0), &d);
    ASSERT_EQ(600, d.nmessages);
    ASSERT_EQ(200, d.nstatuses);
    ASSERT_EQ(200, d.nskipped);
    ASSERT_STREQ("m1.299", d.messages[599].wamid);
    REFUSED(a, many(a, 2, 300, 201, 0), "entry");
    REFUSED(a, many(a, 1, WA_WEBHOOK_ITEMS_MAX + 1, 0, 0), "entry");
    REFUSED(a, many(a, 1, 0, WA_WEBHOOK_ITEMS_MAX + 1, 0), "entry");
    /* contacts are bounded too: each message searches them */
    PARSE_OK(a, many(a, 1, 1, 0, WA_WEBHOOK_ITEMS_MAX), &d);
    REFUSED(a, many(a, 1, 1, 0, WA_WEBHOOK_ITEMS_MAX + 1), "value.contacts");
    arena_free(a);
}

/* A message nested as deep as jansson parses: its raw text is still whole. */
TEST(unit_wa_webhook_deep_message_raw)
{
    struct arena *a = arena_new();
    char *nest = arena_alloc(a, 2 * 2000 + 1);
    struct wa_delivery d;

    for (int i = 0; i < 2000; i++) {
        nest[i] = '[';
        nest[2000 + i] = ']';
    }
    PARSE_OK(
        a,
        one_message(a, arena_printf(a, "{'from':'1','id':'w','type':'unsupported','x':%s}", nest)),
        &d);
    ASSERT_EQ(0, d.messages[0].answerable);
    ASSERT_CONTAINS(d.messages[0].raw, nest);
    arena_free(a);
}
