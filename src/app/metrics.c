/* metrics.c: the process's metrics and their rendering (see metrics.h). */
#include "app/metrics.h"

#include "app/wiring.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "features/leads/application/delivery.h"
#include "infra/db.h"

#include <stdlib.h>
#include <string.h>

#define METRICS_BODY_MAX (1024 * 1024)
#define UNMATCHED "unmatched"
#define JOB_NAMES_MAX 16

static const char *const method_names[METRICS_METHODS] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
};

struct http_metrics *
metrics_new(const struct http_router *router)
{
    struct http_metrics *m = xcalloc(1, sizeof(*m));

    m->patterns[0] = UNMATCHED;
    m->nroutes = 1;
    m->routes = router->routes;
    /* One slot per distinct pattern: GET and POST /webhooks/whatsapp are one route label. */
    for (int i = 0; i < router->n; i++) {
        int slot = 1;

        while (slot < m->nroutes && strcmp(m->patterns[slot], router->routes[i].pattern) != 0)
            slot++;
        if (slot == m->nroutes)
            m->patterns[m->nroutes++] = router->routes[i].pattern;
        m->slot_of_route[i] = slot;
    }
    m->started_at_ms = sp_clock_now_ms(&sp_clock_real);
    return m;
}

void
metrics_free(struct http_metrics *m)
{
    free(m);
}

static int
method_index(const char *method)
{
    for (int i = 0; method && i < METRICS_METHODS - 1; i++)
        if (strcmp(method, method_names[i]) == 0)
            return i;
    return METRICS_METHODS - 1;
}

/* Counts `status` in its slot, claiming a free one the first time the status is seen. */
static void
statuses_add(struct metrics_statuses *s, int status)
{
    for (int i = 0; i < METRICS_STATUSES; i++) {
        int cur = atomic_load_explicit(&s->status[i], memory_order_acquire);

        if (cur == 0) {
            /* A free slot: ours, unless another thread just took it (for this status or
             * another one: then keep looking). */
            if (!atomic_compare_exchange_strong(&s->status[i], &cur, status) && cur != status)
                continue;
            cur = status;
        }
        if (cur == status) {
            atomic_fetch_add_explicit(&s->n[i], 1, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&s->other, 1, memory_order_relaxed);
}

void
metrics_http_observe(struct http_metrics *m, const struct http_route *route, const char *method,
                     int status, int64_t us)
{
    int slot = 0, mi = method_index(method);

    if (route != NULL && route >= m->routes && route < m->routes + HTTP_ROUTES_MAX)
        slot = m->slot_of_route[route - m->routes];
    statuses_add(&m->requests[slot][mi], status);
    prom_histogram_observe(&m->latency[slot][mi], us);
}

/* ---- rendering ----------------------------------------------------------------------------- */

static void
render_process(struct prom_writer *w, const struct http_metrics *m)
{
    struct prom_label version = {"version", SP_VERSION};

    prom_family(w, "salespad_build_info", "gauge", "SalesPad's version (always 1).");
    prom_sample_int(w, "salespad_build_info", &version, 1, 1);
    prom_family(w, "process_start_time_seconds", "gauge",
                "When this process started, in seconds since the Unix epoch.");
    prom_sample(w, "process_start_time_seconds", NULL, 0, (double)m->started_at_ms / 1000.0);
}

static void
render_http(struct prom_writer *w, const struct http_metrics *m)
{
    char status[8];

    prom_family(w, "salespad_http_requests_total", "counter",
                "HTTP requests answered by this process, by route pattern, method and status.");
    for (int r = 0; r < m->nroutes; r++) {
        for (int mi = 0; mi < METRICS_METHODS; mi++) {
            const struct metrics_statuses *s = &m->requests[r][mi];
            struct prom_label l[3] = {
                {"route", m->patterns[r]}, {"method", method_names[mi]}, {"status", status}};
            uint64_t other = atomic_load_explicit(&s->other, memory_order_relaxed);

            for (int i = 0; i < METRICS_STATUSES; i++) {
                int code = atomic_load_explicit(&s->status[i], memory_order_acquire);

                if (code == 0)
                    break;
                snprintf(status, sizeof(status), "%d", code);
                prom_sample_int(w, "salespad_http_requests_total", l, 3,
                                (int64_t)atomic_load_explicit(&s->n[i], memory_order_relaxed));
            }
            if (other > 0) {
                snprintf(status, sizeof(status), "other");
                prom_sample_int(w, "salespad_http_requests_total", l, 3, (int64_t)other);
            }
        }
    }
    prom_family(w, "salespad_http_request_duration_seconds", "histogram",
                "Time from a routed request's arrival (its body read) to its answer, by route "
                "pattern and method.");
    for (int r = 0; r < m->nroutes; r++) {
        for (int mi = 0; mi < METRICS_METHODS; mi++) {
            struct prom_label l[2] = {{"route", m->patterns[r]}, {"method", method_names[mi]}};

            if (prom_histogram_count(&m->latency[r][mi]) > 0)
                prom_histogram_write(w, "salespad_http_request_duration_seconds", l, 2,
                                     &m->latency[r][mi]);
        }
    }
}

/* Every channel with a sender gets its series from the start (at 0), so rates work from the
 * first send; fallback is an outcome of answers only. */
static void
render_sends(struct prom_writer *w, const struct app *app)
{
    prom_family(w, "salespad_sends_total", "counter",
                "send-message jobs whose outcome this process recorded, by channel and outcome.");
    for (int c = 0; c < CHANNEL_COUNT; c++) {
        int is_sendable = (app->policy.sendable >> c) & 1;

        for (int o = 0; o < DELIVERY_OUTCOME_COUNT; o++) {
            uint64_t n = atomic_load_explicit(&app->sends.sends[c][o], memory_order_relaxed);
            struct prom_label l[2] = {{"channel", channel_name((enum channel)c)},
                                      {"outcome", delivery_outcome_label(o)}};

            if (n > 0 || (is_sendable && o != DELIVERY_FALLBACK))
                prom_sample_int(w, "salespad_sends_total", l, 2, (int64_t)n);
        }
    }
}

static int64_t
count_of(const struct job_counts *jc, const char *name, enum job_state state)
{
    for (int i = 0; i < jc->n; i++)
        if (jc->by_state[i].state == state && strcmp(jc->by_state[i].name, name) == 0)
            return jc->by_state[i].n;
    return 0;
}

/* Our two job names always, in every state (0 included), then any other name the queue has. */
static void
render_jobs(struct prom_writer *w, const struct job_counts *jc)
{
    const char *names[JOB_NAMES_MAX] = {SEND_MESSAGE_JOB, GENERATE_REPLY_JOB};
    int n = 2;

    for (int i = 0; i < jc->n && n < JOB_NAMES_MAX; i++) {
        int k = 0;

        while (k < n && strcmp(names[k], jc->by_state[i].name) != 0)
            k++;
        if (k == n)
            names[n++] = jc->by_state[i].name;
    }
    prom_family(w, "salespad_jobs", "gauge",
                "Jobs in the queue's record by name and state (the database: every process).");
    for (int k = 0; k < n; k++) {
        for (int s = JOB_WAITING; s <= JOB_FAILED; s++) {
            struct prom_label l[2] = {{"name", names[k]}, {"state", job_state_name(s)}};

            prom_sample_int(w, "salespad_jobs", l, 2, count_of(jc, names[k], s));
        }
    }
}

static void
render_outbox(struct prom_writer *w, const struct job_counts *jc)
{
    int64_t now = sp_clock_now_ms(&sp_clock_real);
    double age = jc->backlog > 0 && jc->backlog_oldest_at > 0
                     ? (double)(now - jc->backlog_oldest_at) / 1000.0
                     : 0;

    prom_family(w, "salespad_outbox_backlog", "gauge",
                "Jobs committed to the outbox and not yet published to Redis (0 without "
                "REDIS_URL).");
    prom_sample_int(w, "salespad_outbox_backlog", NULL, 0, jc->backlog);
    prom_family(w, "salespad_outbox_oldest_age_seconds", "gauge",
                "Age of the oldest job waiting in the outbox (0 when none, or without REDIS_URL).");
    prom_sample(w, "salespad_outbox_oldest_age_seconds", NULL, 0, age < 0 ? 0 : age);
}

static void
render_pool(struct prom_writer *w, const struct db_pool_stats *p, int is_db_up)
{
    prom_family(w, "salespad_db_pool_size", "gauge",
                "Database connections this process's pool may hold.");
    prom_sample_int(w, "salespad_db_pool_size", NULL, 0, p->size);
    prom_family(w, "salespad_db_pool_in_use", "gauge",
                "Connections of this process's pool taken (each worker thread holds one).");
    prom_sample_int(w, "salespad_db_pool_in_use", NULL, 0, p->in_use);
    prom_family(w, "salespad_db_pool_waiting", "gauge",
                "Threads of this process waiting for a pooled connection.");
    prom_sample_int(w, "salespad_db_pool_waiting", NULL, 0, p->waiting);
    prom_family(w, "salespad_database_up", "gauge",
                "Whether this scrape could read the database's gauges (jobs, outbox).");
    prom_sample_int(w, "salespad_database_up", NULL, 0, is_db_up);
}

/* The database's gauges, on a session of their own; 0 when the database did not answer. */
static int
read_counts(struct app *app, struct arena *a, struct job_counts *out)
{
    struct sp_error err = {0};
    struct session s;
    int rc = session_open(app, &s, NULL, &err);

    memset(out, 0, sizeof(*out));
    if (rc == SP_OK) {
        db_conn_deadline_set(s.conn, app->cfg->db_busy_timeout_ms);
        rc = job_queue_count(s.queue, a, out, &err);
        session_close(app, &s);
    }
    if (rc != SP_OK) {
        log_warn("metrics: the database's gauges are missing: %s", err.msg);
        memset(out, 0, sizeof(*out));
        return 0;
    }
    return 1;
}

void
metrics_route(void *ctx, struct http_request *req, struct http_response *resp)
{
    struct app *app = ctx;
    struct db_pool_stats pool;
    struct job_counts jc;
    struct prom_writer w;
    const char *body;
    size_t len;
    int is_db_up;

    db_pool_stats(app->pool, &pool); /* before this scrape takes a connection of its own */
    is_db_up = read_counts(app, req->arena, &jc);
    prom_init(&w, req->arena, METRICS_BODY_MAX);
    render_process(&w, app->metrics);
    render_http(&w, app->metrics);
    render_sends(&w, app);
    render_jobs(&w, &jc);
    render_outbox(&w, &jc);
    render_pool(&w, &pool, is_db_up);
    if (prom_finish(&w, &body, &len) != SP_OK)
        log_warn("metrics: over %d bytes; the last families are cut", METRICS_BODY_MAX);
    resp->status = 200;
    resp->body = body;
    resp->body_len = len;
    resp->content_type = PROM_CONTENT_TYPE;
}
