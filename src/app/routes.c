/* routes.c: the HTTP routes of the process: the leads controller's routes, each on a session
 * of its own, the liveness (/health) and readiness (/ready) probes, and the API-key check that
 * guards every route but /health when API_KEYS is set.
 *
 * Every session of a request gets one budget for all its database waits, DB_BUSY_TIMEOUT_MS
 * (request_session_open): a database locked elsewhere is answered 503 within it. /health never
 * touches the database. */
#include "app/wiring.h"

#include "core/clock.h"
#include "core/log.h"
#include "features/leads/infrastructure/mock_content.h"
#include "features/leads/presentation/leads_http.h"
#include "infra/db.h"

#include <stdlib.h>
#include <string.h>

static struct leads_deps
leads_deps_for(struct app *app, struct session *s)
{
    struct leads_deps d = {&s->repo.base,  s->queue,           &app->bus,
                           &sp_clock_real, mock_content_gen(), &app->policy};
    return d;
}

typedef void (*leads_route_fn)(const struct leads_deps *d, struct http_request *req,
                               struct http_response *resp);

/* A session for one request: its database waits share one budget. */
static int
request_session_open(struct app *app, struct session *s, struct sp_error *err)
{
    int rc = session_open(app, s, NULL, err);

    if (rc == SP_OK)
        db_conn_deadline_set(s->conn, app->cfg->db_busy_timeout_ms);
    return rc;
}

static void
with_session(struct app *app, leads_route_fn fn, struct http_request *req,
             struct http_response *resp)
{
    struct session s;
    struct leads_deps d;
    struct sp_error err = {0};
    int rc = request_session_open(app, &s, &err);

    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    d = leads_deps_for(app, &s);
    fn(&d, req, resp);
    session_close(app, &s);
}

static void
route_create(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_create, req, resp);
}

static void
route_reply(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_reply, req, resp);
}

static void
route_details(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_details, req, resp);
}

static void
route_health(void *ctx, struct http_request *req, struct http_response *resp)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)ctx;
    (void)req;
    http_json(resp, 200, body, sizeof(body) - 1);
}

static void
route_ready(void *ctx, struct http_request *req, struct http_response *resp)
{
    static const char body[] = "{\"status\":\"ready\",\"database\":\"ok\"}";
    /* Redis down does not stop captures (the outbox keeps their jobs): still ready. */
    static const char body_redis_ok[] =
        "{\"status\":\"ready\",\"database\":\"ok\",\"queue\":\"ok\"}";
    static const char body_redis_down[] =
        "{\"status\":\"ready\",\"database\":\"ok\",\"queue\":\"redis unreachable: jobs wait "
        "in the outbox\"}";
    struct app *app = ctx;
    struct sp_error err = {0};
    struct session s;
    int rc;

    rc = request_session_open(app, &s, &err);
    if (rc == SP_OK) {
        rc = lead_repo_ping(&s.repo.base, &err);
        session_close(app, &s);
    }
    if (rc != SP_OK) {
        log_warn("readiness check failed: %s", err.msg);
        http_error1(resp, req->arena, 503, "database unavailable");
        resp->retry_after = 1;
        return;
    }
    if (!app->queue->redis)
        http_json(resp, 200, body, sizeof(body) - 1);
    else if (atomic_load(&app->relay.ok))
        http_json(resp, 200, body_redis_ok, sizeof(body_redis_ok) - 1);
    else
        http_json(resp, 200, body_redis_down, sizeof(body_redis_down) - 1);
}

/* Constant-time comparison of one candidate key against the comma-separated list. */
static int
api_key_ok(const char *keys, const char *given)
{
    size_t glen = given ? strlen(given) : 0;
    int ok = 0;

    if (glen == 0)
        return 0;
    for (const char *p = keys; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == glen) {
            unsigned diff = 0;
            for (size_t i = 0; i < len; i++)
                diff |= (unsigned)(p[i] ^ given[i]);
            ok |= diff == 0;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return ok;
}

void
routes_handle(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;

    if (app->cfg->api_keys && strcmp(req->path, "/health") != 0 &&
        !api_key_ok(app->cfg->api_keys, req->api_key)) {
        http_error(resp, req->arena, 401,
                   (const char *const[]){"Missing or invalid API key (X-API-Key header)"}, 1, 0);
        return;
    }
    http_router_dispatch(&app->router, req, resp);
    if (resp->status >= 500)
        log_warn("%s %s -> %d", req->method, req->path, resp->status);
    else
        log_debug("%s %s -> %d", req->method, req->path, resp->status);
}

void
routes_init(struct app *app)
{
    struct http_router *r = &app->router;
    int rc = 0;

    http_router_init(r);
    rc |= http_router_add(r, "GET", "/health", route_health, app);
    rc |= http_router_add(r, "GET", "/ready", route_ready, app);
    rc |= http_router_add(r, "POST", "/leads", route_create, app);
    rc |= http_router_add(r, "POST", "/leads/:id/reply", route_reply, app);
    rc |= http_router_add(r, "GET", "/leads/:id", route_details, app);
    if (rc != 0) {
        log_error("route table full");
        abort();
    }
}
