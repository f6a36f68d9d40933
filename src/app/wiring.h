/* wiring.h: the process's parts as app.c assembles them, shared by the files of app/ only.
 *
 * app.c builds a struct app from the configuration (database, queue backend, senders, event
 * bus, policy) and tears it down; routes.c answers HTTP with sessions from it; runtime.c runs
 * its background threads (workers, the lease keeper, the outbox relay). A session is one pooled
 * database connection with the lead repository and the queue bound to it. */
#pragma once

#include "app/auth.h"
#include "app/config.h"
#include "app/metrics.h"
#include "app/throttle.h"
#include "core/event_bus.h"
#include "core/http.h"
#include "core/queue_signal.h"
#include "features/messaging/presentation/unsubscribe_http.h"
#include "features/messaging/presentation/webhooks_http.h"
#include "app/idempotency.h"
#include "features/leads/application/delivery.h"
#include "features/leads/application/leads.h"
#include "features/leads/infrastructure/sql_lead_repo.h"
#include "features/messaging/domain/sender.h"
#include "infra/outbox_relay.h"
#include "infra/queue_redis.h"
#include "infra/queue_sql.h"

#include <pthread.h>
#include <stdatomic.h>

struct db_pool;
struct events_feed;
struct events_http;
struct db_sqlite;
struct db_pg;
struct http_server;
struct mock_sender;
struct content_gen;
struct openai_content;
struct smtp_sender;
struct whatsapp_sender;
struct redis;
struct app;

/* A background thread of the process (runtime.c), stopped by a flag and a wake-up. */
struct bg_thread {
    pthread_t tid;
    int running;
    atomic_int stopping;
    struct queue_signal *wake; /* poked to stop it */
    struct app *app;
    void (*run)(struct bg_thread *t);
};

/* One database session: a connection with the repository and queue bound to it. */
struct session {
    struct db_conn *conn;
    struct sql_lead_repo repo;
    struct queue_sql sql_queue;
    struct queue_redis redis_queue;
    struct job_queue *queue;
};

/* The queue backend, chosen once at start from REDIS_URL. */
struct queue_backend {
    const char *label;    /* for logs: "in the database" or the redacted Redis URL and prefix */
    int redis;            /* threads need a Redis connection; jobs go through the outbox relay */
    int64_t idle_wait_ms; /* an idle worker's longest wait: other processes' jobs are found by
                             polling the database, or announced by the Redis marker */
    /* Binds s->queue to s->conn (and `redis`, the thread's connection or NULL). */
    void (*bind)(struct app *app, struct session *s, struct redis *redis);
    void (*unbind)(struct session *s);
};

struct app {
    const struct config *cfg;
    struct db_sqlite *sqlite;
    const char *sqlite_path; /* the file of DATABASE_URL=sqlite:..., borrowed from the config */
    struct db_pg *pg;
    char db_label[128]; /* DATABASE_URL without its password, for logs */
    struct db_pool *pool;
    struct queue_signal signal; /* wakes this process's idle workers and stops threads */
    struct mock_sender *mock;
    struct smtp_sender *smtp;         /* EMAIL_PROVIDER=smtp, else NULL */
    struct whatsapp_sender *whatsapp; /* WHATSAPP_PROVIDER=cloud, else NULL */
    int curl_ready;                   /* curl_client_global_init done */
    struct sender_registry senders;
    struct event_bus bus;
    struct leads_policy policy;
    struct content_gen *gen;               /* answers: AI_PROVIDER's generator */
    struct content_gen *fallback_gen;      /* AI_FALLBACK=template: the mock's; else NULL */
    struct openai_content *openai;         /* AI_PROVIDER=openai, else NULL */
    struct api_keys keys;                  /* API_KEYS as digests */
    struct webhooks_config webhooks;       /* the providers' webhook settings */
    struct idempotency idem;               /* Idempotency-Key of POST requests */
    struct unsubscribe_config unsubscribe; /* the one-click unsubscribe links' key */
    struct throttle throttle;              /* RATE_LIMIT_RPS / RATE_LIMIT_BURST */
    struct http_metrics *metrics;          /* HTTP counters (with the HTTP server), else NULL */
    struct delivery_counters sends;        /* the workers' send outcomes (GET /metrics) */
    struct http_router router;
    struct http_server *server;
    struct events_feed *feed; /* GET /events and the feed's notifications (events_feed.c) */
    const struct queue_backend *queue;
    char queue_label[420];
    struct queue_sql_node node; /* the database queue: this process as a lease holder */
    struct queue_redis_shared rq;
    struct queue_signal relay_signal;
    struct outbox_relay relay;
    atomic_int workers_failing; /* worker threads whose last round failed */
    /* background threads */
    int nworkers;
    struct bg_thread *workers;
    struct bg_thread keeper; /* renews the leases of the jobs this process holds */
    struct bg_thread relayer;
};

/* Fails (SP_EUNAVAIL) only when a pooled connection had to be opened and could not be. */
int session_open(struct app *app, struct session *s, struct redis *redis,
                 struct sp_error *err) SP_MUST_CHECK;
void session_close(struct app *app, struct session *s);
/* The calling thread's Redis connection (NULL without REDIS_URL). Caller frees (redis_free). */
struct redis *app_thread_redis(struct app *app);

/* routes.c: the route table (leads, health, ready, metrics), the API-key check and the rate
 * limit; the HTTP metrics are counted there. */
void routes_init(struct app *app);
void routes_handle(void *app, struct http_request *req, struct http_response *resp);

/* runtime.c: starts the process's background threads (workers when nworkers > 0, the lease
 * keeper with them, the outbox relay with Redis) and stops them in the right order. */
int runtime_start(struct app *app, int nworkers) SP_MUST_CHECK;
void runtime_stop(struct app *app);

/* events_feed.c: the process's event feed. Started before the pool is shared (it sets the
 * pool's commit hook): with_streams in a process serving HTTP (a hub and its publisher), else
 * only what other processes need to hear of this one's events (PostgreSQL: NOTIFY; SQLite:
 * nothing, *out stays NULL). Stopping: events_feed_close() ends every stream at once (before
 * the HTTP server stops), events_feed_free() once nothing commits any more (after the workers).
 * Both NULL-safe. */
int events_feed_start(struct app *app, int with_streams, struct events_feed **out,
                      struct sp_error *err) SP_MUST_CHECK;
/* NULL when the process has no streams. */
const struct events_http *events_feed_http(const struct events_feed *f);
/* The pool's commit hook: this process committed events. Any thread. */
void events_feed_poke(void *feed);
void events_feed_close(struct events_feed *f);
void events_feed_free(struct events_feed *f);
