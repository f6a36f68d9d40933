/* unsubscribe_http.c: the one-click unsubscribe routes (see unsubscribe_http.h).
 *
 * The pages are small, self-contained HTML: no script, no external resource (a Content-Security
 * -Policy forbids them), nothing from the request copied into them, and the one piece of stored
 * data they show, the lead's address (masked), HTML-escaped. */
#include "features/messaging/presentation/unsubscribe_http.h"

#include "core/arena.h"
#include "core/log.h"
#include "core/utf8.h"
#include "features/leads/application/leads.h"
#include "features/leads/presentation/leads_http.h"
#include "features/messaging/infrastructure/email_mime.h"

#include <string.h>

#define HTML_TYPE "text/html; charset=utf-8"
#define PAGE_HEAD                                                                                  \
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"                      \
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"                   \
    "<meta name=\"robots\" content=\"noindex, nofollow\">\n<title>Unsubscribe</title>\n"           \
    "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;"               \
    "padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.5rem 1.25rem}</style>\n"        \
    "</head>\n<body>\n<main>\n"
#define PAGE_TAIL "</main>\n</body>\n</html>\n"

/* s with &, <, >, " and ' as character references (arena). */
static const char *
html_escape(struct arena *a, const char *s)
{
    size_t len = strlen(s), o = 0;
    char *out = arena_alloc(a, len * 6 + 1);

    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            out[o++] = *s;
            continue;
        }
        memcpy(out + o, rep, strlen(rep));
        o += strlen(rep);
    }
    out[o] = '\0';
    return out;
}

/* "a***@example.com": enough for a person with several addresses to know which one, not the
 * address itself (the page is reachable by whoever holds the link). NULL when there is none. */
static const char *
masked_address(struct arena *a, const char *email)
{
    const char *at = email ? strrchr(email, '@') : NULL;
    uint32_t cp;
    size_t first;

    if (at == NULL || at == email)
        return NULL;
    first = sp_utf8_decode((const unsigned char *)email, (size_t)(at - email), &cp);
    if (first == 0)
        first = 1;
    return arena_printf(a, "%.*s***%s", (int)first, email, at);
}

/* The security headers of every page: nothing loads from elsewhere, the page cannot be framed,
 * its URL (the token) is not sent onwards as a referrer, and nobody caches it. */
static void
html_page(struct http_response *resp, struct arena *a, int status, const char *main_html)
{
    const char *body = arena_printf(a, "%s%s%s", PAGE_HEAD, main_html, PAGE_TAIL);

    resp->status = status;
    resp->body = body;
    resp->body_len = strlen(body);
    resp->content_type = HTML_TYPE;
    if (http_response_header(resp, "Content-Security-Policy",
                             "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                             "frame-ancestors 'none'; base-uri 'none'") != 0 ||
        http_response_header(resp, "Referrer-Policy", "no-referrer") != 0 ||
        http_response_header(resp, "Cache-Control", "no-store") != 0)
        log_warn("unsubscribe: response headers full"); /* cannot happen: the first ones */
}

static void
page_not_found(struct http_response *resp, struct arena *a)
{
    html_page(resp, a, 404,
              "<h1>Link not valid</h1>\n<p>This unsubscribe link is not valid (it may be "
              "incomplete). Please use the link from the email you received.</p>\n");
}

static void
page_unavailable(struct http_response *resp, struct arena *a)
{
    html_page(resp, a, 503,
              "<h1>Please try again</h1>\n<p>We cannot answer right now. Please try again in a "
              "moment.</p>\n");
    resp->retry_after = 1;
}

static const char *
done_html(struct arena *a, const char *masked)
{
    return arena_printf(a,
                        "<h1>You are unsubscribed</h1>\n<p>We will not email %s%s%s again.</p>\n",
                        masked ? "<strong>" : "you", masked ? html_escape(a, masked) : "",
                        masked ? "</strong>" : "");
}

/* The lead the route's token names, when it checks out. */
static int
token_lead(const struct unsubscribe_config *c, const struct http_request *req, char lead_id[37])
{
    const char *token = req->nparams > 0 ? req->params[0] : NULL;

    if (c->secret == NULL || c->secret[0] == '\0' || token == NULL)
        return 0;
    return email_unsubscribe_token_check(c->secret, strlen(c->secret), token, lead_id) == SP_OK;
}

void
unsubscribe_http_page(const struct unsubscribe_config *c, const struct leads_deps *d,
                      struct http_request *req, struct http_response *resp)
{
    struct lead_opt_outs opt_outs;
    struct sp_error err = {0};
    char lead_id[37];
    const char *masked;
    struct lead l;
    int rc;

    if (!token_lead(c, req, lead_id)) {
        page_not_found(resp, req->arena);
        return;
    }
    rc = leads_get_opt_outs(d, lead_id, req->arena, &l, &opt_outs, &err);
    if (rc == SP_ENOTFOUND) {
        page_not_found(resp, req->arena);
        return;
    }
    if (rc != SP_OK) {
        log_warn("unsubscribe page failed, answering 503: %s", err.msg);
        page_unavailable(resp, req->arena);
        return;
    }
    masked = masked_address(req->arena, l.email);
    if (lead_opt_out_find(&opt_outs, CHANNEL_EMAIL) != NULL) {
        html_page(resp, req->arena, 200, done_html(req->arena, masked));
        return;
    }
    /* No action: the form posts to this very URL, whatever prefix a proxy put in front. */
    html_page(resp, req->arena, 200,
              arena_printf(req->arena,
                           "<h1>Unsubscribe</h1>\n<p>Stop receiving our emails%s%s%s?</p>\n"
                           "<form method=\"post\">\n<button type=\"submit\">Unsubscribe</button>\n"
                           "</form>\n",
                           masked ? " at <strong>" : "",
                           masked ? html_escape(req->arena, masked) : "",
                           masked ? "</strong>" : ""));
}

void
unsubscribe_http_confirm(const struct unsubscribe_config *c, const struct leads_deps *d,
                         struct http_request *req, struct http_response *resp)
{
    struct opt_out_input in;
    struct lead_opt_outs opt_outs;
    struct sp_error err = {0};
    char lead_id[37];
    int rc;

    if (!token_lead(c, req, lead_id)) {
        http_error(resp, req->arena, 404, (const char *const[]){"Unsubscribe link not valid"}, 1,
                   0);
        return;
    }
    memset(&in, 0, sizeof(in));
    in.lead_id = lead_id;
    in.channels = 1u << CHANNEL_EMAIL;
    in.reason = LEADS_REASON_UNSUBSCRIBE;
    in.source = OPT_OUT_SOURCE_UNSUBSCRIBE;
    rc = leads_opt_out(d, &in, req->arena, &opt_outs, &err);
    if (rc == SP_ENOTFOUND) {
        http_error(resp, req->arena, 404, (const char *const[]){"Unsubscribe link not valid"}, 1,
                   0);
        return;
    }
    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    log_info("unsubscribe: lead %s opted out of email (one-click link)", lead_id);
    html_page(resp, req->arena, 200, done_html(req->arena, NULL));
}
