/* queue_sql.h: the job queue stored in the database (the default when no Redis is configured).
 *
 * Jobs are rows of the `jobs` table; enqueue, reserve, complete, retry and fail join the
 * caller's transaction on the same connection. reserve picks the oldest due job (or one whose
 * lease expired) and marks it active under a lease token "<holder>:<n>"; on PostgreSQL with FOR
 * UPDATE SKIP LOCKED, so any number of worker processes share the queue without taking a job
 * twice. complete, retry and fail match the token, so a holder that lost its lease changes
 * nothing (SP_ELEASELOST). The process is one holder (struct queue_sql_node, below): its keeper
 * renews in one statement the leases its workers hold (a job whose outcome could not be recorded
 * is dropped from them, so that it lapses), and other processes can tell when it is dead.
 * In-process workers wait on a struct queue_signal that enqueuers poke after commit; other
 * processes poll. */
#pragma once

#include "core/lease_set.h"
#include "core/queue.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

struct db_conn;
struct queue_signal;

#define QUEUE_SQL_HOLDER_MAX 24
#define QUEUE_SQL_DEAD_GRACE_MS 2000 /* a holder without its lock for this long is dead */
#define QUEUE_SQL_SUSPECTS 32        /* holders without their lock tracked at once */

struct queue_sql_suspect {
    char holder[QUEUE_SQL_HOLDER_MAX];
    int64_t since; /* monotonic ms when it was first seen without its lock */
};

/* This process as a holder of leases; shared by every queue_sql of the process.
 *
 * Liveness: on PostgreSQL a session advisory lock keyed by the holder id, held by a connection
 * of its own for the process's life (the server releases it when that connection drops); on
 * SQLite an flock'd file "<database>-workers/<holder>.lock" (the kernel releases it when the
 * process dies). maintain, at most once per second per process, finds the holders of active
 * jobs whose lock has been free for QUEUE_SQL_DEAD_GRACE_MS and expires their leases, so their
 * jobs are taken again within seconds instead of a lease later. The grace covers a PostgreSQL
 * restart: every session and advisory lock is gone for a moment, until each keeper has
 * reconnected and locked again, which it does within a second. */
struct queue_sql_node {
    struct queue_signal *signal;       /* borrowed, may be NULL: wakes this process's workers */
    int max_stalled;                   /* lease losses a job survives (QUEUE_MAX_STALLED) */
    char holder[QUEUE_SQL_HOLDER_MAX]; /* decimal id, random per process */
    atomic_uint_fast64_t seq;          /* lease tokens are "<holder>:<seq>" */
    atomic_int_fast64_t next_check;    /* monotonic ms of the next dead-holder check */
    char dir[PATH_MAX];                /* SQLite: the liveness files' directory, else "" */
    int fd;                            /* SQLite: our flock'd file, or -1 */
    struct db_conn *live;              /* PostgreSQL: holds our advisory lock; owned */
    int (*connect)(void *ctx, struct db_conn **out, struct sp_error *err); /* for `live` */
    void *connect_ctx;
    atomic_int is_live;    /* this process announces its liveness (a worker process) */
    struct lease_set held; /* the leases this process's workers hold: what the keeper renews */
    pthread_mutex_t mu;    /* guards suspects */
    struct queue_sql_suspect suspects[QUEUE_SQL_SUSPECTS];
    int nsuspects;
};

/* Fills the node with a fresh holder id; no liveness yet (queue_sql_node_live_*). */
void queue_sql_node_init(struct queue_sql_node *n, struct queue_signal *signal, int max_stalled);
/* SQLite: creates "<db_path>-workers/" if needed and holds our file's lock. SP_EINTERNAL when
 * the directory or file cannot be made. */
int queue_sql_node_live_sqlite(struct queue_sql_node *n, const char *db_path,
                               struct sp_error *err) SP_MUST_CHECK;
/* PostgreSQL: takes ownership of `conn` (a connection of its own, not pooled) and takes our
 * advisory lock on it. */
int queue_sql_node_live_pg(struct queue_sql_node *n, struct db_conn *conn,
                           int (*connect)(void *ctx, struct db_conn **out, struct sp_error *err),
                           void *ctx, struct sp_error *err) SP_MUST_CHECK;
/* PostgreSQL: takes the advisory lock again if the connection was replaced (it reconnects
 * after a drop); a no-op elsewhere. Called by the keeper before each renewal. */
int queue_sql_node_keepalive(struct queue_sql_node *n, struct sp_error *err) SP_MUST_CHECK;
/* Releases the liveness (removes our file, closes our connection) and frees the node. */
void queue_sql_node_cleanup(struct queue_sql_node *n);

struct queue_sql {
    struct job_queue base;       /* first */
    struct db_conn *conn;        /* borrowed */
    struct queue_sql_node *node; /* borrowed */
    uint64_t seen;               /* the signal's sequence read by the last reserve */
};

void queue_sql_init(struct queue_sql *q, struct db_conn *conn, struct queue_sql_node *node);
