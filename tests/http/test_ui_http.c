/* test_ui_http.c: the dashboard's routes (app/ui.h) with no sockets: the compiled-in files with
 * their types, validators and caching headers, 304 on If-None-Match, 404 for any other name,
 * the config document, and a page whose every file reference resolves in the table. */
#include "t.h"

#include "app/ui.h"
#include "core/arena.h"
#include "core/http.h"

#include <strings.h>

static void
route_index(void *ctx, struct http_request *req, struct http_response *resp)
{
    (void)ctx;
    ui_http_index(req, resp);
}

static void
route_asset(void *ctx, struct http_request *req, struct http_response *resp)
{
    ui_http_asset(req, resp, *(int *)ctx);
}

static const char *
header(const struct http_response *resp, const char *name)
{
    for (int i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

/* The router as routes.c sets it up for the dashboard; needs_key as API_KEYS would say. */
static void
get(struct arena *a, int needs_key, const char *method, const char *path, const char *inm,
    struct http_response *resp)
{
    static int key_flags[2] = {0, 1};
    struct http_router r;
    struct http_request req = {0};

    http_router_init(&r);
    ASSERT_OK(http_router_add(&r, "GET", "/", route_index, NULL));
    ASSERT_OK(http_router_add(&r, "GET", "/ui/:file", route_asset, &key_flags[needs_key]));
    req.method = method;
    req.path = path;
    req.if_none_match = inm;
    req.arena = a;
    http_router_dispatch(&r, &req, resp);
}

TEST(http_ui_index_is_the_page)
{
    struct arena *a = arena_new();
    const struct ui_asset *page = ui_asset_find("index.html");
    struct http_response resp;

    ASSERT(page != NULL);
    get(a, 0, "GET", "/", NULL, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("text/html; charset=utf-8", resp.content_type);
    ASSERT_EQ(page->len, resp.body_len);
    ASSERT(strncasecmp(resp.body, "<!doctype html>", 15) == 0);
    ASSERT_STREQ(page->etag, header(&resp, "ETag"));
    ASSERT_STREQ("no-cache", header(&resp, "Cache-Control"));
    ASSERT_STREQ("nosniff", header(&resp, "X-Content-Type-Options"));
    ASSERT_CONTAINS(header(&resp, "Content-Security-Policy"), "default-src 'self'");
    /* HEAD runs the same handler: the server sends the headers and Content-Length only. */
    get(a, 0, "HEAD", "/", NULL, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_EQ(page->len, resp.body_len);
    arena_free(a);
}

TEST(http_ui_assets_have_types_and_etags)
{
    struct arena *a = arena_new();
    struct http_response resp;

    ASSERT(sp_ui_assets_count >= 5);
    for (int i = 0; i < sp_ui_assets_count; i++) {
        const struct ui_asset *f = &sp_ui_assets[i];
        const char *path = arena_printf(a, "/ui/%s", f->name);

        ASSERT(f->len > 0);
        ASSERT_EQ(0, f->data[f->len]);
        ASSERT_EQ(18, strlen(f->etag)); /* a quote, 16 hex digits, a quote */
        ASSERT(f->etag[0] == '"' && f->etag[17] == '"');
        for (int k = 0; k < i; k++)
            ASSERT(strcmp(sp_ui_assets[k].etag, f->etag) != 0);
        get(a, 0, "GET", path, NULL, &resp);
        ASSERT_EQ(200, resp.status);
        ASSERT_STREQ(f->content_type, resp.content_type);
        ASSERT_STREQ(f->etag, header(&resp, "ETag"));
    }
    get(a, 0, "GET", "/ui/app.js", NULL, &resp);
    ASSERT_STREQ("text/javascript; charset=utf-8", resp.content_type);
    get(a, 0, "GET", "/ui/style.css", NULL, &resp);
    ASSERT_STREQ("text/css; charset=utf-8", resp.content_type);
    arena_free(a);
}

TEST(http_ui_revalidation_answers_304)
{
    struct arena *a = arena_new();
    const struct ui_asset *js = ui_asset_find("app.js");
    struct http_response resp;
    const char *weak, *list;

    ASSERT(js != NULL);
    get(a, 0, "GET", "/ui/app.js", js->etag, &resp);
    ASSERT_EQ(304, resp.status);
    ASSERT_STREQ(js->etag, header(&resp, "ETag"));
    ASSERT_STREQ("no-cache", header(&resp, "Cache-Control"));
    /* The body stays: the server sends none on a 304 but announces the 200's length. */
    ASSERT_EQ(js->len, resp.body_len);
    weak = arena_printf(a, "W/%s", js->etag);
    get(a, 0, "GET", "/ui/app.js", weak, &resp);
    ASSERT_EQ(304, resp.status);
    list = arena_printf(a, "\"0000000000000000\" ,\t%s", js->etag);
    get(a, 0, "GET", "/ui/app.js", list, &resp);
    ASSERT_EQ(304, resp.status);
    get(a, 0, "GET", "/ui/app.js", "\"0000000000000000\"", &resp);
    ASSERT_EQ(200, resp.status);
    get(a, 0, "GET", "/ui/style.css", js->etag, &resp); /* another file's tag */
    ASSERT_EQ(200, resp.status);
    arena_free(a);
}

TEST(http_ui_etag_matching)
{
    ASSERT(ui_etag_matches("\"abc\"", "\"abc\""));
    ASSERT(ui_etag_matches("*", "\"abc\""));
    ASSERT(ui_etag_matches("W/\"abc\"", "\"abc\""));
    ASSERT(ui_etag_matches("\"x\", W/\"abc\"", "\"abc\""));
    ASSERT(ui_etag_matches(" \"abc\" ", "\"abc\""));
    ASSERT(!ui_etag_matches(NULL, "\"abc\""));
    ASSERT(!ui_etag_matches("", "\"abc\""));
    ASSERT(!ui_etag_matches("\"abcd\"", "\"abc\""));
    ASSERT(!ui_etag_matches("\"ab\"", "\"abc\""));
    ASSERT(!ui_etag_matches("abc", "\"abc\""));
    ASSERT(!ui_etag_matches(",,", "\"abc\""));
}

TEST(http_ui_unknown_names_are_404)
{
    static const char *const paths[] = {"/ui/nope.js", "/ui/..%2Fapp.js", "/ui/app.js%00",
                                        "/ui/APP.JS",  "/ui/app.js/x",    "/ui",
                                        "/index.html"};
    struct arena *a = arena_new();
    struct http_response resp;

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        get(a, 0, "GET", paths[i], NULL, &resp);
        ASSERT(resp.status == 404 || resp.status == 400); /* %2F and %00 are refused: 400 */
    }
    get(a, 0, "GET", "/ui/nope.js", NULL, &resp);
    ASSERT_EQ(404, resp.status);
    ASSERT_CONTAINS(resp.body, "Cannot GET /ui/nope.js");
    get(a, 0, "POST", "/ui/app.js", NULL, &resp);
    ASSERT_EQ(405, resp.status);
    arena_free(a);
}

TEST(http_ui_config_says_whether_a_key_is_needed)
{
    struct arena *a = arena_new();
    struct http_response resp;

    get(a, 1, "GET", "/ui/config.json", NULL, &resp);
    ASSERT_EQ(200, resp.status);
    ASSERT_STREQ("{\"apiKey\":\"required\"}", resp.body);
    ASSERT_STREQ("no-store", header(&resp, "Cache-Control"));
    ASSERT(header(&resp, "ETag") == NULL);
    get(a, 0, "GET", "/ui/config.json", NULL, &resp);
    ASSERT_STREQ("{\"apiKey\":\"none\"}", resp.body);
    arena_free(a);
}

/* Every file the page names (/ui/x in index.html, './x.js' imports in the modules) is in the
 * table: a file renamed or left out of ui/ would break the page at run time, not the build. */
TEST(http_ui_references_resolve)
{
    int checked = 0;

    for (int i = 0; i < sp_ui_assets_count; i++) {
        const char *text = (const char *)sp_ui_assets[i].data;
        static const char *const marks[] = {"\"/ui/", "'./"};

        for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
            for (const char *p = strstr(text, marks[m]); p; p = strstr(p + 1, marks[m])) {
                char name[64];
                size_t n = strcspn(p + strlen(marks[m]), "\"'");

                if (n == 0 || n >= sizeof(name))
                    t_fail(__FILE__, __LINE__, "%s: odd reference", sp_ui_assets[i].name);
                memcpy(name, p + strlen(marks[m]), n);
                name[n] = '\0';
                if (ui_asset_find(name) == NULL)
                    t_fail(__FILE__, __LINE__, "%s names %s, not in ui/", sp_ui_assets[i].name,
                           name);
                checked++;
            }
        }
    }
    ASSERT(checked >= 10);
}
