/* lead.c: names, parsing and transition rules of the leads domain. */
#include "features/leads/domain/lead.h"

#include "core/arena.h"
#include "core/utf8.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static const char *const status_names[] = {"new", "contacted", "replied", "converted", "dead"};
static const char *const channel_names[] = {"email", "whatsapp", "linkedin", "voice", "ads"};
static const char *const direction_names[] = {"outbound", "inbound"};
static const char *const kind_names[] = {"welcome", "ai_reply", "reply", "manual"};
static const char *const mstatus_names[] = {"queued",   "sending",   "sent", "failed",
                                            "received", "delivered", "read", "suppressed"};
static const char *const event_names[] = {
    "lead_added",      "message_queued",   "message_sent",       "message_failed",
    "reply_received",  "ai_reply_sent",    "status_changed",     "address_added",
    "ai_reply_failed", "ai_reply_skipped", "message_delivered",  "message_read",
    "opted_out",       "opted_in",         "message_suppressed", "message_retried"};
static const char *const source_names[] = {"api", "whatsapp", "email"};
static const char *const opt_out_source_names[] = {"api", "reply", "unsubscribe"};
static const char *const intent_names[] = {"other", "pricing", "demo", "not_interested", "stop"};

#define NAMES_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int
lookup(const char *const *names, int n, const char *s, int *out)
{
    if (s == NULL)
        return -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static const char *
name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "unknown";
}

#define ENUM_NAMES(fn_name, fn_parse, type, table)                                                 \
    const char *fn_name(type v)                                                                    \
    {                                                                                              \
        return name_of(table, NAMES_COUNT(table), (int)v);                                         \
    }                                                                                              \
    int fn_parse(const char *s, type *out)                                                         \
    {                                                                                              \
        int v;                                                                                     \
        if (lookup(table, NAMES_COUNT(table), s, &v) != 0)                                         \
            return -1;                                                                             \
        *out = (type)v;                                                                            \
        return 0;                                                                                  \
    }

ENUM_NAMES(lead_status_name, lead_status_parse, enum lead_status, status_names)
ENUM_NAMES(channel_name, channel_parse, enum channel, channel_names)
ENUM_NAMES(message_direction_name, message_direction_parse, enum message_direction, direction_names)
ENUM_NAMES(message_kind_name, message_kind_parse, enum message_kind, kind_names)
ENUM_NAMES(message_status_name, message_status_parse, enum message_status, mstatus_names)
ENUM_NAMES(lead_event_type_name, lead_event_type_parse, enum lead_event_type, event_names)
ENUM_NAMES(opt_out_source_name, opt_out_source_parse, enum opt_out_source, opt_out_source_names)

const char *
reply_source_name(enum reply_source s)
{
    return name_of(source_names, NAMES_COUNT(source_names), (int)s);
}

int
lead_opt_out_channel_valid(enum channel c)
{
    return (int)c >= 0 && (int)c < CHANNEL_COUNT && (LEAD_OPT_OUT_CHANNELS & (1u << c)) != 0;
}

const struct lead_opt_out *
lead_opt_out_find(const struct lead_opt_outs *list, enum channel c)
{
    for (int i = 0; list != NULL && i < list->n; i++)
        if (list->v[i].channel == c)
            return &list->v[i];
    return NULL;
}

/* Progress of an outbound message that left us; 0 for statuses receipts do not move. */
static int
receipt_rank(enum message_status s)
{
    switch (s) {
    case MESSAGE_SENT:
        return 1;
    case MESSAGE_DELIVERED:
        return 2;
    case MESSAGE_READ:
        return 3;
    default:
        return 0;
    }
}

int
message_receipt_applies(enum message_status current, enum message_status receipt,
                        enum message_status *to)
{
    int have = receipt_rank(current);

    if (have == 0) /* queued, sending, failed, received, suppressed */
        return 0;
    if (receipt == MESSAGE_FAILED) {
        if (have >= 2)
            return 0;
        *to = MESSAGE_FAILED;
        return 1;
    }
    if (receipt_rank(receipt) <= have)
        return 0;
    *to = receipt;
    return 1;
}

const char *
lead_email_norm(const char *s, char *buf, size_t cap)
{
    size_t len;

    if (s == NULL)
        return NULL;
    while (*s == ' ' || *s == '\t')
        s++;
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= cap)
        return NULL;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);
    buf[len] = '\0';
    return buf;
}

const char *
lead_phone_norm(const char *s, char *buf, size_t cap)
{
    size_t n = 0;

    if (s == NULL || cap == 0) /* no room even for the NUL */
        return NULL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (n + 1 >= cap)
            return NULL;
        buf[n++] = *s;
    }
    buf[n] = '\0';
    return n > 0 ? buf : NULL;
}

const char *
lead_address_norm(enum channel c, const char *s, char *buf, size_t cap)
{
    if (c == CHANNEL_EMAIL)
        return lead_email_norm(s, buf, cap);
    if (c == CHANNEL_WHATSAPP)
        return lead_phone_norm(s, buf, cap);
    return NULL;
}

/* The lower-case counterpart of a two-byte code point (U+0080..U+07FF), or cp itself. Only
 * mappings between two-byte code points, so a fold never changes the length in UTF-8. */
static unsigned
fold2(unsigned cp)
{
    if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7) || (cp >= 0x391 && cp <= 0x3ab && cp != 0x3a2) ||
        (cp >= 0x410 && cp <= 0x42f))
        return cp + 0x20; /* Latin-1 À..Þ, Greek Α..Ϋ, Cyrillic А..Я */
    if (cp >= 0x400 && cp <= 0x40f)
        return cp + 0x50; /* Cyrillic Ѐ..Џ */
    if ((cp >= 0x100 && cp <= 0x12f) || (cp >= 0x132 && cp <= 0x137) ||
        (cp >= 0x14a && cp <= 0x177))
        return cp | 1u; /* Latin Extended-A: capital even, small odd */
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e))
        return (cp & 1u) ? cp + 1 : cp; /* ... capital odd, small even */
    switch (cp) {
    case 0x178:
        return 0xff; /* Ÿ */
    case 0x386:
        return 0x3ac; /* Ά */
    case 0x388:
    case 0x389:
    case 0x38a:
        return cp + 0x25; /* Έ Ή Ί */
    case 0x38c:
        return 0x3cc; /* Ό */
    case 0x38e:
    case 0x38f:
        return cp + 0x3f; /* Ύ Ώ */
    default:
        return cp;
    }
}

const char *
lead_name_fold(const char *s, char *buf, size_t cap)
{
    size_t len;

    if (s == NULL || (len = strlen(s)) >= cap)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xc2 && c <= 0xdf && i + 1 < len && ((unsigned char)s[i + 1] & 0xc0) == 0x80) {
            unsigned cp = fold2(((c & 0x1fu) << 6) | ((unsigned char)s[i + 1] & 0x3fu));
            buf[i] = (char)(0xc0 | (cp >> 6));
            buf[i + 1] = (char)(0x80 | (cp & 0x3f));
            i++;
        } else {
            buf[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
    }
    buf[len] = '\0';
    return buf;
}

const char *
lead_phone_query(const char *s, char *buf, size_t cap)
{
    size_t n = 0;

    if (s == NULL)
        return NULL;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            if (n + 1 >= cap)
                return NULL;
            buf[n++] = *s;
        } else if (strchr("+ -.()/", *s) == NULL) {
            return NULL;
        }
    }
    buf[n] = '\0';
    return n > 0 ? buf : NULL;
}

const char *
reply_intent_name(enum reply_intent i)
{
    return name_of(intent_names, NAMES_COUNT(intent_names), (int)i);
}

enum lead_status
lead_status_after_sent(enum lead_status s)
{
    return s == LEAD_STATUS_NEW ? LEAD_STATUS_CONTACTED : s;
}

enum lead_status
lead_status_after_reply(enum lead_status s)
{
    (void)s; /* every status moves to replied: the prospect answered */
    return LEAD_STATUS_REPLIED;
}

int
lead_welcome_channels(const struct lead *l, enum channel out[2])
{
    int n = 0;
    if (l->email)
        out[n++] = CHANNEL_EMAIL;
    if (l->phone)
        out[n++] = CHANNEL_WHATSAPP;
    return n;
}

const char *
lead_address_for(const struct lead *l, enum channel c)
{
    switch (c) {
    case CHANNEL_EMAIL:
        return l->email;
    case CHANNEL_WHATSAPP:
        return l->phone;
    default:
        return NULL;
    }
}

/* Code points no name, email or phone may hold: they break header lines and log lines, or
 * reorder what a reader sees (Trojan Source). */
static int
is_forbidden(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

/* Walks s[0..len): *units its UTF-16 length; returns the worst problem but TOO_LONG. */
static enum lead_text_problem
text_scan(const char *s, size_t len, size_t *units)
{
    const unsigned char *p = (const unsigned char *)s;
    enum lead_text_problem worst = LEAD_TEXT_OK;
    size_t i = 0;

    *units = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = sp_utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return LEAD_TEXT_BAD_UTF8;
        if (is_forbidden(cp))
            worst = LEAD_TEXT_CONTROL;
        *units += cp >= 0x10000 ? 2 : 1;
        i += n;
    }
    return worst;
}

size_t
lead_text_utf16_len(const char *s, size_t len)
{
    size_t units;
    return text_scan(s, len, &units) == LEAD_TEXT_BAD_UTF8 ? SIZE_MAX : units;
}

enum lead_text_problem
lead_text_check(const char *s, size_t len, size_t max)
{
    size_t units;
    enum lead_text_problem p = text_scan(s, len, &units);

    if (p != LEAD_TEXT_OK)
        return p;
    return units > max ? LEAD_TEXT_TOO_LONG : LEAD_TEXT_OK;
}

int
lead_text_field_check(const char *field, const char *s, size_t len, size_t max,
                      struct sp_error *err)
{
    switch (lead_text_check(s, len, max)) {
    case LEAD_TEXT_OK:
        return SP_OK;
    case LEAD_TEXT_BAD_UTF8:
        return sp_error_set(err, SP_EINVAL, field, "%s must be valid UTF-8", field);
    case LEAD_TEXT_CONTROL:
        return sp_error_set(err, SP_EINVAL, field,
                            "%s must not contain control or bidirectional formatting characters",
                            field);
    default:
        return sp_error_set(err, SP_EINVAL, field,
                            "%s must be shorter than or equal to %zu characters", field, max);
    }
}

/* A manual message's part: present, not only blanks, UTF-8 without forbidden code points (line
 * breaks and tabs allowed when multiline), at most max UTF-16 code units. */
static int
manual_part_check(const char *field, const char *s, size_t max, int multiline, struct sp_error *err)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = s ? strlen(s) : 0, i = 0, units = 0;
    int blank = 1;

    if (s == NULL)
        return sp_error_set(err, SP_EINVAL, field, "%s must be a string", field);
    while (i < len) {
        uint32_t cp;
        size_t n = sp_utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return sp_error_set(err, SP_EINVAL, field, "%s must be valid UTF-8", field);
        if (is_forbidden(cp) && !(multiline && (cp == '\n' || cp == '\r' || cp == '\t')))
            return sp_error_set(err, SP_EINVAL, field,
                                "%s must not contain control or bidirectional formatting "
                                "characters",
                                field);
        if (cp != ' ' && cp != '\n' && cp != '\r' && cp != '\t')
            blank = 0;
        units += cp >= 0x10000 ? 2 : 1;
        i += n;
    }
    if (blank)
        return sp_error_set(err, SP_EINVAL, field, "%s should not be empty", field);
    if (units > max)
        return sp_error_set(err, SP_EINVAL, field,
                            "%s must be shorter than or equal to %zu characters", field, max);
    return SP_OK;
}

int
lead_manual_message_check(enum channel c, const char *subject, const char *body, const char *text,
                          struct sp_error *err)
{
    int rc;

    switch (c) {
    case CHANNEL_EMAIL:
        rc = manual_part_check("channelMessage.subject", subject, MANUAL_SUBJECT_MAX, 0, err);
        if (rc == SP_OK)
            rc = manual_part_check("channelMessage.body", body, MANUAL_BODY_MAX, 1, err);
        return rc;
    case CHANNEL_WHATSAPP:
        return manual_part_check("channelMessage.text", text, MANUAL_TEXT_MAX, 1, err);
    default:
        return sp_error_set(err, SP_EINVAL, "channel",
                            "channel %s has no sender: messages go out on email, whatsapp",
                            channel_name(c));
    }
}

const char *
lead_text_one_line(struct arena *a, const char *s)
{
    size_t len = strlen(s), i = 0, o = 0;
    char *out = arena_alloc(a, len + 1);

    while (i < len) {
        uint32_t cp;
        size_t n = sp_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n == 0 || is_forbidden(cp)) {
            out[o++] = ' ';
            i += n ? n : 1;
            continue;
        }
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}

/* A DNS label: 1..63 of letters, digits, '-' (not first or last) or UTF-8 bytes. */
static int
label_valid(const char *l, size_t len)
{
    if (len == 0 || lead_text_utf16_len(l, len) > 63 || l[0] == '-' || l[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)l[i];
        if (!isalnum(c) && c != '-' && c < 0x80)
            return 0;
    }
    return 1;
}

/* The top-level domain: at least two letters (or UTF-8), or punycode "xn--...". */
static int
tld_valid(const char *t, size_t len)
{
    if (len < 2)
        return 0;
    if (len > 4 && strncasecmp(t, "xn--", 4) == 0)
        return 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!isalpha(c) && c < 0x80)
            return 0;
    }
    return 1;
}

static int
domain_valid(const char *d, size_t len)
{
    size_t start = 0;
    int labels = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && d[i] != '.')
            continue;
        if (!label_valid(d + start, i - start))
            return 0;
        labels++;
        if (i == len)
            return labels >= 2 && tld_valid(d + start, i - start);
        start = i + 1;
    }
    return 0;
}

/* A byte no email address holds. */
static int
email_byte_refused(unsigned char c)
{
    return c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
           c == ';' || c == ':' || c == '\\' || c == '"' || c == '[' || c == ']';
}

int
lead_email_prefix_possible(const char *prefix)
{
    int ats = 0;

    for (; *prefix; prefix++) {
        if (email_byte_refused((unsigned char)*prefix))
            return 0;
        ats += *prefix == '@';
    }
    return ats <= 1;
}

int
lead_email_valid(const char *s, size_t len)
{
    const char *at = NULL;
    size_t local;

    if (len < 3 || lead_text_check(s, len, LEAD_EMAIL_MAX) != LEAD_TEXT_OK)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (email_byte_refused(c))
            return 0;
        if (c == '@') {
            if (at)
                return 0;
            at = s + i;
        }
    }
    if (at == NULL)
        return 0;
    local = (size_t)(at - s);
    if (local == 0 || local > 64 || s[0] == '.' || s[local - 1] == '.')
        return 0;
    for (size_t i = 1; i < local; i++)
        if (s[i] == '.' && s[i - 1] == '.')
            return 0;
    return domain_valid(at + 1, len - local - 1);
}

int
lead_phone_number_valid(const char *s, size_t len)
{
    int digits = 0;

    if (lead_text_check(s, len, LEAD_PHONE_MAX) != LEAD_TEXT_OK)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (c == '+' && i == 0)
            continue;
        else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')')
            return 0;
    }
    return digits >= 3 && digits <= 15;
}

int
lead_address_valid(enum channel c, const char *s, size_t len)
{
    switch (c) {
    case CHANNEL_EMAIL:
        return lead_email_valid(s, len);
    case CHANNEL_WHATSAPP:
        return lead_phone_number_valid(s, len);
    default:
        return 0;
    }
}

/* Case-insensitive substring search. */
static int
has_word(const char *text, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = text; *p; p++)
        if (strncasecmp(p, word, wl) == 0)
            return 1;
    return 0;
}

static int
has_any(const char *text, const char *const *words)
{
    for (; *words; words++)
        if (has_word(text, *words))
            return 1;
    return 0;
}

enum reply_intent
reply_intent_detect(const char *text)
{
    static const char *const stop[] = {"stop", "unsubscribe", "remove me", "opt out", NULL};
    static const char *const no[] = {"not interested", "no thanks", "no, thanks", "not for us",
                                     NULL};
    static const char *const demo[] = {"demo", "meeting", "call", "schedule", "meet", NULL};
    static const char *const price[] = {"price", "pricing", "cost", "how much",
                                        "quote", "plan",    NULL};

    if (text == NULL)
        return INTENT_OTHER;
    if (has_any(text, stop))
        return INTENT_STOP;
    if (has_any(text, no))
        return INTENT_NOT_INTERESTED;
    if (has_any(text, demo))
        return INTENT_DEMO;
    if (has_any(text, price))
        return INTENT_PRICING;
    return INTENT_OTHER;
}

/* Phrases that, opening a message, ask us to stop writing; and the carriers' opt-out words that
 * count only as the whole message ("End of the month works" is not one). See lead.h. */
static const char *const stop_openers[] = {
    "stop",           "unsubscribe",   "remove me",    "opt out",        "opt-out", "optout",
    "do not contact", "don't contact", "dont contact", "leave me alone", NULL};
static const char *const stop_alone[] = {"end", "cancel", "quit", "stopall", NULL};

static const char *
skip_punct(const char *p)
{
    while (*p && !isalnum((unsigned char)*p))
        p++;
    return p;
}

int
reply_stop_requested(const char *text)
{
    const char *p;

    if (text == NULL)
        return 0;
    p = skip_punct(text);
    if (strncasecmp(p, "please", 6) == 0 && !isalnum((unsigned char)p[6]))
        p = skip_punct(p + 6);
    for (const char *const *w = stop_openers; *w; w++) {
        size_t wl = strlen(*w);
        if (strncasecmp(p, *w, wl) == 0 && !isalnum((unsigned char)p[wl]) && p[wl] != '\'')
            return 1;
    }
    for (const char *const *w = stop_alone; *w; w++) {
        size_t wl = strlen(*w);
        if (strncasecmp(p, *w, wl) == 0 && *skip_punct(p + wl) == '\0')
            return 1;
    }
    return 0;
}
