/* queue_sql.h: the job queue stored in the database (the default when no Redis is configured).
 *
 * Jobs are rows of the `jobs` table; enqueue joins the caller's transaction on the same
 * connection, and so do reserve, complete, retry and fail (the caller holds the transaction).
 * reserve picks the oldest due job (or one whose lease expired: its worker died), marks it active
 * and sets the lease; on PostgreSQL with FOR UPDATE SKIP LOCKED, so any number of worker
 * processes share the queue without taking a job twice. In-process workers wait on a struct
 * queue_signal that enqueuers poke after commit; other processes poll. */
#pragma once

#include "core/queue.h"

#include <pthread.h>

struct db_conn;

/* Wakes this process's idle workers; shared by every queue_sql of the process. */
struct queue_signal {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t seq; /* bumped on every wake */
};

void queue_signal_init(struct queue_signal *s);
void queue_signal_cleanup(struct queue_signal *s);
void queue_signal_wake(struct queue_signal *s);
/* Waits until woken after `seen` (the seq read before looking for work) or until timeout_ms. */
void queue_signal_wait(struct queue_signal *s, uint64_t seen, int64_t timeout_ms);
uint64_t queue_signal_seq(struct queue_signal *s);

struct queue_sql {
    struct job_queue base;       /* first */
    struct db_conn *conn;        /* borrowed */
    struct queue_signal *signal; /* borrowed, may be NULL */
    int max_stalled;             /* leases that may expire before the job fails */
};

void queue_sql_init(struct queue_sql *q, struct db_conn *conn, struct queue_signal *signal);
