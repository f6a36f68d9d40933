/* routes.c: the HTTP routes of the process: the leads controller's routes, the operator's job
 * routes, the providers' webhooks and the email unsubscribe links, each on a session of its
 * own, the timeline's event stream (/events), the liveness (/health) and readiness (/ready)
 * probes, the metrics (/metrics, app/metrics.c), the API description (/openapi.json), and
 * before any of them the rate limit (app/throttle.c) and the API-key check that guards every
 * route but /health, /openapi.json, the webhooks (signed by their providers), the unsubscribe
 * links (their token is the credential) and CORS preflights when API_KEYS is set. Every
 * answered request is counted in the HTTP metrics, under its route pattern.
 *
 * Every session of a request gets one budget for all its database waits, DB_BUSY_TIMEOUT_MS
 * (request_session_open): a database locked elsewhere is answered 503 within it. /health never
 * touches the database. */
#include "app/wiring.h"

#include "app/error_body.h"
#include "app/ui.h"
#include "core/clock.h"
#include "core/log.h"
#include "features/leads/infrastructure/mock_content.h"
#include "features/leads/presentation/events_http.h"
#include "features/leads/presentation/jobs_http.h"
#include "features/leads/presentation/leads_http.h"
#include "infra/db.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* The webhooks' handlers take their settings besides the session's deps. */
typedef void (*webhook_fn)(struct webhooks_config *c, const struct leads_deps *d,
                           struct http_request *req, struct http_response *resp);

/* A route's handler: a leads one or a webhook one. */
struct handler {
    leads_route_fn leads;
    webhook_fn webhook;
};

/* Runs a handler on a session of its own; a POST with an Idempotency-Key runs inside a
 * transaction that also stores its answer (app/idempotency.c). */
static void
in_session(struct app *app, struct handler h, struct http_request *req, struct http_response *resp)
{
    struct session s;
    struct leads_deps d;
    struct sp_error err = {0};
    struct idempotency_call call;
    enum idempotency_start st;
    int rc = request_session_open(app, &s, &err);

    if (rc != SP_OK) {
        leads_http_error(resp, req->arena, rc, &err);
        return;
    }
    d = leads_deps_for(app, &s);
    st = idempotency_start(&app->idem, s.conn, req, resp, &call);
    if (st != IDEMPOTENCY_DONE && h.leads)
        h.leads(&d, req, resp);
    else if (st != IDEMPOTENCY_DONE)
        h.webhook(&app->webhooks, &d, req, resp);
    if (st == IDEMPOTENCY_RUN && idempotency_finish(&app->idem, s.conn, req, resp, &call))
        job_queue_wake(s.queue); /* the use case's wake came before this commit */
    session_close(app, &s);
}

static void
with_session(struct app *app, leads_route_fn fn, struct http_request *req,
             struct http_response *resp)
{
    in_session(app, (struct handler){fn, NULL}, req, resp);
}

static void
with_webhook_session(struct app *app, webhook_fn fn, struct http_request *req,
                     struct http_response *resp)
{
    in_session(app, (struct handler){NULL, fn}, req, resp);
}

static void
route_create(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_create, req, resp);
}

static void
route_list(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_list, req, resp);
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
route_messages(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_messages, req, resp);
}

static void
route_events(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_events, req, resp);
}

/* GET /events: a stream that outlives the handler; it takes no session of its own (it lends
 * one for each read of the store: events_feed.c). */
static void
route_event_stream(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;
    const struct events_http *eh = events_feed_http(app->feed);

    if (eh == NULL) { /* cannot happen: a process serving HTTP has a feed */
        http_error1(resp, req->arena, 503, "event feed unavailable");
        return;
    }
    events_http_stream(eh, req, resp);
}

static void
route_opt_out(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_opt_out, req, resp);
}

static void
route_opt_in(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_opt_in, req, resp);
}

static void
route_send_message(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, leads_http_send_message, req, resp);
}

/* The unsubscribe links' handlers take their key besides the session's deps. */
typedef void (*unsubscribe_fn)(const struct unsubscribe_config *c, const struct leads_deps *d,
                               struct http_request *req, struct http_response *resp);

static void
with_unsubscribe_session(struct app *app, unsubscribe_fn fn, struct http_request *req,
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
    fn(&app->unsubscribe, &d, req, resp);
    session_close(app, &s);
}

static void
route_unsubscribe_page(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_unsubscribe_session(ctx, unsubscribe_http_page, req, resp);
}

static void
route_unsubscribe_post(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_unsubscribe_session(ctx, unsubscribe_http_confirm, req, resp);
}

static void
route_jobs(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, jobs_http_list, req, resp);
}

static void
route_job(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, jobs_http_get, req, resp);
}

static void
route_job_retry(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_session(ctx, jobs_http_retry, req, resp);
}

static void
route_wa_verify(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;
    webhooks_http_whatsapp_verify(&app->webhooks, req, resp);
}

static void
route_wa_post(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_webhook_session(ctx, webhooks_http_whatsapp, req, resp);
}

static void
route_email_post(void *ctx, struct http_request *req, struct http_response *resp)
{
    with_webhook_session(ctx, webhooks_http_email, req, resp);
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

/* docs/openapi.json, compiled in by cmake/embed_file.cmake. */
extern const char sp_openapi_json[];
extern const size_t sp_openapi_json_len;

/* The API description: the same bytes for every deployment (nothing in it depends on the
 * settings), so that what a client generator reads is what the tests validated. */
static void
route_openapi(void *ctx, struct http_request *req, struct http_response *resp)
{
    (void)ctx;
    (void)req;
    http_json(resp, 200, sp_openapi_json, sp_openapi_json_len);
}

/* The dashboard (app/ui.h): its files are compiled in, need no database and no key. */
static void
route_ui_index(void *ctx, struct http_request *req, struct http_response *resp)
{
    (void)ctx;
    ui_http_index(req, resp);
}

static void
route_ui_asset(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;
    ui_http_asset(req, resp, app->keys.n > 0);
}

/* Routes open without an API key: the liveness probe, the API description (the shape of the
 * API, which holds no data and no secret, for client generators and documentation viewers),
 * the providers' webhooks, which cannot send our key and prove themselves with their own
 * signatures instead, the unsubscribe links of our emails, followed by their recipients (and
 * their mail providers) with the token of the link as the only credential, and the dashboard's
 * files, which hold no data (the page asks for the key and sends it on every API call). */
static int
route_is_open(const char *path)
{
    return strcmp(path, "/health") == 0 || strcmp(path, "/openapi.json") == 0 ||
           strncmp(path, "/webhooks/", 10) == 0 || strncmp(path, "/unsubscribe/", 13) == 0 ||
           strcmp(path, "/") == 0 || strncmp(path, "/ui/", 4) == 0;
}

/* Whether the request is for GET /events (the event stream). */
static int
route_is_stream(const struct http_route *route)
{
    return route != NULL && strcmp(route->pattern, "/events") == 0;
}

/* The key a request presents: X-API-Key; on GET /metrics also `Authorization: Bearer <key>`,
 * what a Prometheus scrape config sends without custom headers; on GET /events also its `key`
 * query parameter, because a browser's EventSource cannot send headers. Only there: a key in a
 * URL can end up in proxies' logs and the browser's history. (Our own log lines name the path
 * without its query.) */
static const char *
presented_key(const struct http_request *req, const struct http_route *route)
{
    static const char bearer[] = "Bearer ";

    if (req->api_key == NULL && route_is_stream(route))
        return http_query(req, "key");
    if (req->api_key != NULL || route == NULL || strcmp(route->pattern, "/metrics") != 0 ||
        req->authorization == NULL ||
        strncasecmp(req->authorization, bearer, sizeof(bearer) - 1) != 0)
        return req->api_key;
    return req->authorization + sizeof(bearer) - 1;
}

void
routes_handle(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;
    int64_t started_us = sp_mono_us();
    const struct http_route *route = http_router_find(&app->router, req->path);
    /* A browser's preflight never carries the key (it asks whether it may send it), and it
     * runs no handler: the router answers it from the route table alone. */
    int needs_key = app->keys.n > 0 && !route_is_open(req->path) && !http_is_preflight(req);
    int key_index = needs_key ? api_keys_find(&app->keys, presented_key(req, route)) : -1;
    struct throttle_verdict tv;

    throttle_check(&app->throttle, req, key_index, &tv);
    if (tv.applies && !tv.v.allowed) {
        throttle_refuse(&tv, req, resp);
        http_router_cors(&app->router, req, resp); /* so a browser app can read the 429 */
    } else if (needs_key && key_index < 0) {
        http_error(resp, req->arena, 401,
                   (const char *const[]){
                       route_is_stream(route)
                           ? "Missing or invalid API key (X-API-Key header or key parameter)"
                           : "Missing or invalid API key (X-API-Key header)"},
                   1, 0);
        http_router_cors(&app->router, req, resp); /* so a browser app can read the 401 */
    } else {
        http_router_dispatch(&app->router, req, resp);
    }
    throttle_headers(&tv, req, resp);
    metrics_http_observe(app->metrics, route, req->method, resp->status, sp_mono_us() - started_us);
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

    error_body_install(); /* the NestJS build's error body: its clients parse it */
    api_keys_init(&app->keys, app->cfg->api_keys);
    app->webhooks.whatsapp_app_secret = app->cfg->whatsapp_app_secret;
    app->webhooks.whatsapp_verify_token = app->cfg->whatsapp_verify_token;
    app->webhooks.whatsapp_phone_number_id = app->cfg->whatsapp_phone_number_id;
    app->webhooks.email_signing_key = app->cfg->email_webhook_signing_key;
    app->webhooks.email_reply_secret = app->cfg->email_reply_secret;
    atomic_init(&app->webhooks.calls, 0);
    idempotency_init(&app->idem, app->cfg->idempotency_ttl_s, app->keys.n > 0);
    app->unsubscribe.secret = app->cfg->unsubscribe_secret;
    http_router_init(r);
    http_router_set_cors(r, app->cfg->cors_origins);
    rc |= http_router_add(r, "GET", "/health", route_health, app);
    rc |= http_router_add(r, "GET", "/ready", route_ready, app);
    rc |= http_router_add(r, "GET", "/openapi.json", route_openapi, app);
    rc |= http_router_add(r, "GET", "/leads", route_list, app);
    rc |= http_router_add(r, "POST", "/leads", route_create, app);
    rc |= http_router_add(r, "POST", "/leads/:id/reply", route_reply, app);
    rc |= http_router_add(r, "GET", "/leads/:id", route_details, app);
    rc |= http_router_add(r, "GET", "/leads/:id/messages", route_messages, app);
    rc |= http_router_add(r, "GET", "/leads/:id/events", route_events, app);
    rc |= http_router_add(r, "POST", "/leads/:id/messages", route_send_message, app);
    rc |= http_router_add(r, "POST", "/leads/:id/opt-out", route_opt_out, app);
    rc |= http_router_add(r, "DELETE", "/leads/:id/opt-out", route_opt_in, app);
    rc |= http_router_add(r, "GET", "/unsubscribe/:token", route_unsubscribe_page, app);
    rc |= http_router_add(r, "POST", "/unsubscribe/:token", route_unsubscribe_post, app);
    rc |= http_router_add(r, "GET", "/jobs", route_jobs, app);
    rc |= http_router_add(r, "GET", "/jobs/:id", route_job, app);
    rc |= http_router_add(r, "POST", "/jobs/:id/retry", route_job_retry, app);
    rc |= http_router_add(r, "GET", "/webhooks/whatsapp", route_wa_verify, app);
    rc |= http_router_add(r, "POST", "/webhooks/whatsapp", route_wa_post, app);
    rc |= http_router_add(r, "POST", "/webhooks/email", route_email_post, app);
    rc |= http_router_add(r, "GET", "/events", route_event_stream, app);
    rc |= http_router_add(r, "GET", "/metrics", metrics_route, app);
    rc |= http_router_add(r, "GET", "/", route_ui_index, app);
    rc |= http_router_add(r, "GET", "/ui/:file", route_ui_asset, app);
    if (rc != 0) {
        log_error("route table full");
        abort();
    }
    /* After the last route: the metrics label requests by the table's patterns. */
    app->metrics = metrics_new(r);
    /* The settings were validated at start: only a programming error fails here. */
    if (throttle_init(&app->throttle, app->cfg->rate_limit_rps, app->cfg->rate_limit_burst) !=
        SP_OK) {
        log_error("rate limit: bad settings");
        abort();
    }
}
