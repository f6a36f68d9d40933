/* ui.h: the dashboard's static files and their HTTP answers.
 *
 * The files of ui/ are compiled into the binary at build time (cmake/embed_ui.cmake writes the
 * table below, with each file's content type and ETag), so the page needs nothing at run time
 * but this process: no CDN, no Node, no files beside the binary. The page talks to the same API
 * as any client (X-API-Key included). What this is not: a general file server. Names are looked
 * up in the table and nothing else is ever read. */
#pragma once

#include "core/http.h"

#include <stddef.h>

struct ui_asset {
    const char *name;          /* "app.js": the file's name in ui/ */
    const char *content_type;  /* "text/javascript; charset=utf-8" */
    const char *etag;          /* a strong validator, quoted: the first 16 hex digits of SHA-256 */
    const unsigned char *data; /* len bytes, then a 0 (not counted) */
    size_t len;
};

/* The generated table (read-only, static storage), sorted by name. */
extern const struct ui_asset sp_ui_assets[];
extern const int sp_ui_assets_count;

/* The asset called `name`, or NULL. */
const struct ui_asset *ui_asset_find(const char *name);

/* 1 when an If-None-Match value (a list of entity tags, or "*") names `etag` (weak comparison,
 * as RFC 9110 wants for If-None-Match); 0 for NULL or no match. */
int ui_etag_matches(const char *if_none_match, const char *etag);

/* GET / : index.html, and GET /ui/:file : the file of that name (404 for any other name),
 * each with its ETag and Cache-Control: no-cache (the browser revalidates: 304 when
 * If-None-Match names the current ETag), nosniff and a Content-Security-Policy that allows
 * only this origin. GET /ui/config.json is not a file: it tells the page whether API_KEYS is
 * set (`needs_key`), so that it asks for a key before its first call rather than after a 401.
 * None of them needs an API key. Thread-safe: the table is read-only. */
void ui_http_index(struct http_request *req, struct http_response *resp);
void ui_http_asset(struct http_request *req, struct http_response *resp, int needs_key);
