/* ui.c: answers the dashboard's routes from the compiled-in table (ui.h): the files of ui/
 * with their validators and caching policy, and the page's small config document.
 *
 * Caching: every answer says Cache-Control: no-cache, so a browser keeps the file but asks
 * again each time with If-None-Match, and gets an empty 304 while the binary is the same. The
 * files' URLs carry no version, so a longer max-age could mix the modules of two builds after
 * an upgrade; a 304 costs one small round trip on loopback or a LAN. */
#include "app/ui.h"

#include "core/arena.h"

#include <string.h>

/* Only this origin, no inline script or style (the page has none), no plugins, no framing. */
#define UI_CSP                                                                                     \
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "               \
    "form-action 'self'; frame-ancestors 'none'"

const struct ui_asset *
ui_asset_find(const char *name)
{
    for (int i = 0; i < sp_ui_assets_count; i++)
        if (strcmp(sp_ui_assets[i].name, name) == 0)
            return &sp_ui_assets[i];
    return NULL;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int
ui_etag_matches(const char *if_none_match, const char *etag)
{
    const char *p = if_none_match;
    size_t etag_len = strlen(etag);

    if (p == NULL)
        return 0;
    while (*p) {
        const char *start, *end;

        while (is_ows(*p) || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2; /* weak comparison: W/"x" matches "x" */
        start = p;
        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        p = end;
        while (end > start && is_ows(end[-1]))
            end--;
        if ((size_t)(end - start) == etag_len && memcmp(start, etag, etag_len) == 0)
            return 1;
    }
    return 0;
}

/* Headers of every answer of the dashboard (5 of HTTP_HEADERS_MAX; CORS may add 2). The
 * response header functions fail only past HTTP_HEADERS_MAX, which these stay under. */
static void
common_headers(struct http_response *resp, const char *cache_control)
{
    int rc = 0;

    rc |= http_response_header(resp, "Cache-Control", cache_control);
    rc |= http_response_header(resp, "X-Content-Type-Options", "nosniff");
    rc |= http_response_header(resp, "Content-Security-Policy", UI_CSP);
    rc |= http_response_header(resp, "Referrer-Policy", "no-referrer");
    (void)rc; /* cannot fail: see above */
}

static void
serve(struct http_request *req, struct http_response *resp, const struct ui_asset *a)
{
    int rc;

    common_headers(resp, "no-cache");
    rc = http_response_header(resp, "ETag", a->etag);
    (void)rc; /* cannot fail: the fifth header */
    /* A 304 keeps the body: the server sends no body on a 304 (as on a HEAD) but announces
     * its length, which RFC 9110 8.6 allows only when it is the 200's (never 0). */
    resp->status = ui_etag_matches(req->if_none_match, a->etag) ? 304 : 200;
    resp->body = (const char *)a->data;
    resp->body_len = a->len;
    resp->content_type = a->content_type;
}

static void
not_found(struct http_request *req, struct http_response *resp)
{
    const char *msg = arena_printf(req->arena, "Cannot %s %s", req->method, req->path);

    http_error(resp, req->arena, 404, &msg, 1, 0);
}

void
ui_http_index(struct http_request *req, struct http_response *resp)
{
    const struct ui_asset *a = ui_asset_find("index.html");

    if (a == NULL) {
        not_found(req, resp); /* a build without a page: cannot happen with ui/ in the tree */
        return;
    }
    serve(req, resp, a);
}

void
ui_http_asset(struct http_request *req, struct http_response *resp, int needs_key)
{
    static const char key_on[] = "{\"apiKey\":\"required\"}";
    static const char key_off[] = "{\"apiKey\":\"none\"}";
    const char *name = req->nparams > 0 ? req->params[0] : "";
    const struct ui_asset *a;

    if (strcmp(name, "config.json") == 0) {
        /* Changes with the settings, not the build: never stored. */
        common_headers(resp, "no-store");
        if (needs_key)
            http_json(resp, 200, key_on, sizeof(key_on) - 1);
        else
            http_json(resp, 200, key_off, sizeof(key_off) - 1);
        return;
    }
    a = ui_asset_find(name);
    if (a == NULL) {
        not_found(req, resp);
        return;
    }
    serve(req, resp, a);
}
