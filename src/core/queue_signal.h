/* queue_signal.h: the wake-up primitive of a process's idle threads.
 *
 * A sequence number under a mutex and a condition variable (monotonic clock): a thread reads
 * the sequence, looks for work, and waits only if nobody woke it since it read the sequence, so
 * a wake-up between the look and the wait is never lost. Used by the database queue (enqueuers
 * wake the workers after a commit), by the outbox relay, and to stop background threads. */
#pragma once

#include <pthread.h>
#include <stdint.h>

struct queue_signal {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t seq; /* bumped on every wake */
};

void queue_signal_init(struct queue_signal *s);
void queue_signal_cleanup(struct queue_signal *s);
/* Wakes every waiter. Thread-safe. */
void queue_signal_wake(struct queue_signal *s);
/* The sequence to pass to queue_signal_wait. */
uint64_t queue_signal_seq(struct queue_signal *s);
/* Waits until woken after `seen` or until timeout_ms passes. */
void queue_signal_wait(struct queue_signal *s, uint64_t seen, int64_t timeout_ms);
