/* email_mime.c: the outbound email as bytes (see email_mime.h). */
#include "features/messaging/infrastructure/email_mime.h"

#include "core/arena.h"
#include "core/crypto.h"
#include "core/hex.h"
#include "core/uuid.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HEADER_LINE_MAX 78 /* RFC 5322's recommended limit, CRLF excluded */
#define WORD_PREFIX "=?UTF-8?B?"
#define WORD_BYTES 45 /* raw bytes of an encoded-word: 60 base64 characters, 72 in all */
#define TOKEN_MAC_HEX 20
#define UNSUB_MAC_HEX 32
/* The HMAC input's prefix of the unsubscribe token: a reply token never checks as one, even
 * under the same secret. */
#define UNSUB_LABEL "salespad-unsubscribe:"

/* A growable buffer in an arena, bounded by `max`; `over` latches once it would pass it. */
struct buf {
    struct arena *a;
    char *p;
    size_t len, cap, max;
    int over;
};

static void
buf_init(struct buf *b, struct arena *a, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->a = a;
    b->max = max;
}

static void
buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->over || b->len + n > b->max) {
        b->over = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = arena_alloc(b->a, cap);
        if (b->len)
            memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_puts(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void
buf_putc(struct buf *b, char c)
{
    buf_put(b, &c, 1);
}

static const char *
buf_str(struct buf *b)
{
    return b->p ? b->p : "";
}

static const char hexdig[] = "0123456789ABCDEF";

static void
base64(struct buf *b, const unsigned char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        char out[4];
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        out[0] = tab[(v >> 18) & 63];
        out[1] = tab[(v >> 12) & 63];
        out[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[3] = i + 2 < n ? tab[v & 63] : '=';
        buf_put(b, out, 4);
    }
}

/* Encoded-words for s[n], folded with CRLF SP between words; each is at most 75 characters
 * (WORD_BYTES raw bytes). Chunks end on UTF-8 character boundaries. */
static void
encoded_words(struct buf *b, const char *s, size_t n)
{
    size_t off = 0;

    if (n == 0) {
        buf_puts(b, WORD_PREFIX "?=");
        return;
    }
    while (off < n) {
        size_t take = n - off < WORD_BYTES ? n - off : WORD_BYTES;
        /* do not cut a multi-byte character: back off over continuation bytes */
        while (take > 1 && off + take < n && ((unsigned char)s[off + take] & 0xC0) == 0x80)
            take--;
        if (off > 0)
            buf_puts(b, "\r\n ");
        buf_puts(b, WORD_PREFIX);
        base64(b, (const unsigned char *)s + off, take);
        buf_puts(b, "?=");
        off += take;
    }
}

static int
printable_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

const char *
email_mime_header_text(struct arena *a, const char *text, size_t name_len)
{
    struct buf b;
    const char *s = text ? text : "";
    size_t n = strlen(s);

    buf_init(&b, a, EMAIL_MIME_MAX);
    /* "Name: " then the value; an encoded-word also stands for text that starts with "=?" */
    if (printable_ascii(s) && name_len + 2 + n <= HEADER_LINE_MAX && strstr(s, "=?") == NULL)
        buf_put(&b, s, n);
    else
        encoded_words(&b, s, n);
    return buf_str(&b);
}

static int
is_atext(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

const char *
email_mime_phrase(struct arena *a, const char *name)
{
    struct buf b;
    int atoms = 1;

    if (name == NULL || name[0] == '\0')
        return "";
    buf_init(&b, a, EMAIL_MIME_MAX);
    for (const char *p = name; *p; p++)
        if (!is_atext((unsigned char)*p) && *p != ' ')
            atoms = 0;
    if (atoms && name[0] != ' ' && name[strlen(name) - 1] != ' ' && strstr(name, "  ") == NULL &&
        strstr(name, "=?") == NULL && strlen(name) <= 60) {
        buf_puts(&b, name);
    } else if (printable_ascii(name) && strstr(name, "=?") == NULL && strlen(name) <= 60) {
        buf_putc(&b, '"');
        for (const char *p = name; *p; p++) {
            if (*p == '"' || *p == '\\')
                buf_putc(&b, '\\');
            buf_putc(&b, *p);
        }
        buf_putc(&b, '"');
    } else {
        encoded_words(&b, name, strlen(name));
    }
    return buf_str(&b);
}

/* Appends one encoded unit (a literal byte or "=XX") of `w` characters, breaking the line
 * softly first when it would not fit with room left for the '=' of a later soft break. */
static void
qp_unit(struct buf *b, size_t *col, const char *unit, size_t w, int last_on_line)
{
    size_t limit = last_on_line ? EMAIL_QP_LINE_MAX : EMAIL_QP_LINE_MAX - 1;

    if (*col + w > limit) {
        buf_puts(b, "=\r\n");
        *col = 0;
    }
    buf_put(b, unit, w);
    *col += w;
}

const char *
email_mime_qp(struct arena *a, const char *text)
{
    struct buf b;
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    size_t n = strlen((const char *)s), col = 0;

    buf_init(&b, a, EMAIL_MIME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        int eol =
            i + 1 == n || s[i + 1] == '\n' || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        char unit[3];

        if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
            continue; /* the CR of a CRLF: the LF ends the line */
        if (c == '\n') {
            buf_puts(&b, "\r\n");
            col = 0;
            continue;
        }
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !eol)) {
            unit[0] = (char)c;
            qp_unit(&b, &col, unit, 1, eol);
        } else {
            unit[0] = '=';
            unit[1] = hexdig[c >> 4];
            unit[2] = hexdig[c & 15];
            qp_unit(&b, &col, unit, 3, eol);
        }
    }
    return buf_str(&b);
}

void
email_mime_date(int64_t ms, char out[32])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char tmp[96]; /* the compiler cannot know the year has 4 digits */
    size_t n;

    memset(&tm, 0, sizeof(tm));
    gmtime_r(&t, &tm);
    snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    n = strlen(tmp) < 31 ? strlen(tmp) : 31;
    memcpy(out, tmp, n);
    out[n] = '\0';
}

int
email_addr_valid(const char *s)
{
    const char *at;
    size_t n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    at = strchr(s, '@');
    if (n < 3 || n > 254 || at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
        return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
            return 0;
    }
    return 1;
}

/* A List-Unsubscribe URL safe between angle brackets: http(s), printable ASCII without spaces,
 * brackets, quotes or commas (the header's list separator), one header line at most. */
static int
unsubscribe_url_ok(const char *s)
{
    if (s == NULL || (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) ||
        strlen(s) > 900)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("<>\",\\", *p))
            return 0;
    return 1;
}

/* A msg-id list ("<a@b> <c@d>") safe to copy into a header: printable ASCII, no CR/LF. */
static int
msg_ids_ok(const char *s)
{
    return s && s[0] == '<' && printable_ascii(s) && strlen(s) <= 900;
}

int
email_addr_parse(struct arena *a, const char *s, struct email_addr *out, struct sp_error *err)
{
    const char *lt, *gt;

    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return sp_error_set(err, SP_EINVAL, "EMAIL_FROM", "email address is missing");
    lt = strrchr(s, '<');
    if (lt == NULL) {
        out->addr = arena_strdup(a, s);
    } else {
        const char *end = lt;
        gt = strchr(lt, '>');
        if (gt == NULL || gt[1] != '\0')
            return sp_error_set(err, SP_EINVAL, "EMAIL_FROM",
                                "must be \"Name <address>\" or \"address\"");
        while (end > s && end[-1] == ' ')
            end--;
        out->name = arena_strndup(a, s, (size_t)(end - s));
        out->addr = arena_strndup(a, lt + 1, (size_t)(gt - lt - 1));
        /* a quoted name loses its quotes: the builder quotes again when needed */
        if (strlen(out->name) >= 2 && out->name[0] == '"' &&
            out->name[strlen(out->name) - 1] == '"')
            out->name = arena_strndup(a, out->name + 1, strlen(out->name) - 2);
    }
    if (!email_addr_valid(out->addr))
        return sp_error_set(err, SP_EINVAL, "EMAIL_FROM",
                            "the address must be a plain ASCII local@domain");
    return SP_OK;
}

static void
header(struct buf *b, const char *name, const char *value)
{
    buf_puts(b, name);
    buf_puts(b, ": ");
    buf_puts(b, value);
    buf_puts(b, "\r\n");
}

static void
address_header(struct buf *b, struct arena *a, const char *name, const struct email_addr *ad)
{
    const char *phrase = email_mime_phrase(a, ad->name);

    buf_puts(b, name);
    buf_puts(b, ": ");
    if (phrase[0]) {
        buf_puts(b, phrase);
        buf_puts(b, " ");
    }
    buf_puts(b, "<");
    buf_puts(b, ad->addr);
    buf_puts(b, ">\r\n");
}

int
email_mime_build(const struct email_message *m, struct arena *a, const char **out, size_t *len,
                 struct sp_error *err)
{
    struct buf b;
    char date[32];

    if (!email_addr_valid(m->from.addr))
        return sp_error_set(err, SP_EPERMANENT, "from", "sender address is not plain ASCII");
    if (!email_addr_valid(m->to.addr))
        return sp_error_set(err, SP_EPERMANENT, "to",
                            "recipient address is not a plain ASCII local@domain");
    if (m->reply_to && !email_addr_valid(m->reply_to))
        return sp_error_set(err, SP_EPERMANENT, "replyTo", "reply address is not plain ASCII");
    if (m->message_id == NULL || !printable_ascii(m->message_id) ||
        strpbrk(m->message_id, "<> ") != NULL || strchr(m->message_id, '@') == NULL)
        return sp_error_set(err, SP_EPERMANENT, "messageId", "bad Message-ID");
    if ((m->in_reply_to && !msg_ids_ok(m->in_reply_to)) ||
        (m->references && !msg_ids_ok(m->references)))
        return sp_error_set(err, SP_EPERMANENT, "inReplyTo", "bad In-Reply-To or References");
    if (m->list_unsubscribe && !unsubscribe_url_ok(m->list_unsubscribe))
        return sp_error_set(err, SP_EPERMANENT, "listUnsubscribe", "bad List-Unsubscribe URL");

    buf_init(&b, a, EMAIL_MIME_MAX);
    email_mime_date(m->date_ms, date);
    header(&b, "Date", date);
    address_header(&b, a, "From", &m->from);
    address_header(&b, a, "To", &m->to);
    if (m->reply_to) {
        struct email_addr r = {NULL, m->reply_to};
        address_header(&b, a, "Reply-To", &r);
    }
    header(&b, "Subject", email_mime_header_text(a, m->subject, strlen("Subject")));
    buf_puts(&b, "Message-ID: <");
    buf_puts(&b, m->message_id);
    buf_puts(&b, ">\r\n");
    if (m->in_reply_to) {
        header(&b, "In-Reply-To", m->in_reply_to);
        header(&b, "References", m->references ? m->references : m->in_reply_to);
    }
    if (m->list_unsubscribe) {
        /* RFC 2369 and RFC 8058 (one-click): folded after the colon when the line would pass
         * the recommended 78 characters. */
        size_t line = strlen("List-Unsubscribe: <>") + strlen(m->list_unsubscribe);
        buf_puts(&b, line > HEADER_LINE_MAX ? "List-Unsubscribe:\r\n <" : "List-Unsubscribe: <");
        buf_puts(&b, m->list_unsubscribe);
        buf_puts(&b, ">\r\n");
        header(&b, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
    }
    header(&b, "MIME-Version", "1.0");
    header(&b, "Content-Type", "text/plain; charset=UTF-8");
    header(&b, "Content-Transfer-Encoding", "quoted-printable");
    buf_puts(&b, "\r\n");
    buf_puts(&b, email_mime_qp(a, m->body));
    if (b.len < 2 || b.p[b.len - 1] != '\n')
        buf_puts(&b, "\r\n");
    if (b.over)
        return sp_error_set(err, SP_ETOOLARGE, "body", "email larger than %d bytes",
                            EMAIL_MIME_MAX);
    *out = buf_str(&b);
    *len = b.len;
    return SP_OK;
}

/* The 32 hex digits of a UUID, lowercase, into out[33]. */
static int
uuid_hex(const char *id, char out[33])
{
    size_t k = 0;

    if (id == NULL || !sp_uuid_valid(id, strlen(id)))
        return SP_EINVAL;
    for (const char *p = id; *p; p++)
        if (*p != '-')
            out[k++] = (char)tolower((unsigned char)*p);
    out[k] = '\0';
    return k == 32 ? SP_OK : SP_EINVAL;
}

/* The canonical id (lowercase, dashed) of 32 hex digits, into out[37]. */
static void
uuid_dashed(const char *hex, char out[37])
{
    size_t k = 0;
    for (size_t i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[k++] = '-';
        out[k++] = hex[i];
    }
    out[k] = '\0';
}

/* The first nhex hex digits of HMAC-SHA-256(secret, label + canonical id) into out[nhex + 1]. */
static void
token_mac(const char *secret, size_t secret_len, const char *label, const char *hex, size_t nhex,
          char *out)
{
    unsigned char mac[SP_SHA256_LEN];
    char input[64];
    size_t n = strlen(label);

    memcpy(input, label, n);
    uuid_dashed(hex, input + n);
    sp_hmac_sha256(secret, secret_len, input, n + 36, mac);
    sp_hex_encode(mac, nhex / 2, out);
}

int
email_reply_token(const char *secret, size_t secret_len, const char *lead_id,
                  char out[EMAIL_REPLY_TOKEN_LEN + 1])
{
    char hex[33], mac[TOKEN_MAC_HEX + 1];

    if (uuid_hex(lead_id, hex) != SP_OK)
        return SP_EINVAL;
    token_mac(secret, secret_len, "", hex, TOKEN_MAC_HEX, mac);
    snprintf(out, EMAIL_REPLY_TOKEN_LEN + 1, "%s-%s", hex, mac);
    return SP_OK;
}

/* The check of a token "{32 hex of the id}-{nhex hex of the MAC}" made with `label`. */
static int
token_check(const char *secret, size_t secret_len, const char *label, size_t nhex,
            const char *token, char lead_id[37])
{
    char hex[33], want[UNSUB_MAC_HEX + 1], got[UNSUB_MAC_HEX + 1];
    size_t len = 33 + nhex;

    if (token == NULL || strlen(token) != len || token[32] != '-')
        return SP_EINVAL;
    for (size_t i = 0; i < len; i++)
        if (i != 32 && !isxdigit((unsigned char)token[i]))
            return SP_EINVAL;
    for (size_t i = 0; i < 32; i++)
        hex[i] = (char)tolower((unsigned char)token[i]);
    hex[32] = '\0';
    for (size_t i = 0; i < nhex; i++)
        got[i] = (char)tolower((unsigned char)token[33 + i]);
    got[nhex] = '\0';
    token_mac(secret, secret_len, label, hex, nhex, want);
    if (!sp_equal_ct(want, got, nhex))
        return SP_EINVAL;
    uuid_dashed(hex, lead_id);
    return SP_OK;
}

int
email_reply_token_check(const char *secret, size_t secret_len, const char *token, char lead_id[37])
{
    return token_check(secret, secret_len, "", TOKEN_MAC_HEX, token, lead_id);
}

int
email_unsubscribe_token(const char *secret, size_t secret_len, const char *lead_id,
                        char out[EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1])
{
    char hex[33], mac[UNSUB_MAC_HEX + 1];

    if (secret == NULL || secret_len == 0 || uuid_hex(lead_id, hex) != SP_OK)
        return SP_EINVAL;
    token_mac(secret, secret_len, UNSUB_LABEL, hex, UNSUB_MAC_HEX, mac);
    snprintf(out, EMAIL_UNSUBSCRIBE_TOKEN_LEN + 1, "%s-%s", hex, mac);
    return SP_OK;
}

int
email_unsubscribe_token_check(const char *secret, size_t secret_len, const char *token,
                              char lead_id[37])
{
    if (secret == NULL || secret_len == 0)
        return SP_EINVAL;
    return token_check(secret, secret_len, UNSUB_LABEL, UNSUB_MAC_HEX, token, lead_id);
}
