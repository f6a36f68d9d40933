/* queue_signal.c: wake-ups of idle threads (see queue_signal.h). */
#include "core/queue_signal.h"

#include <errno.h>
#include <time.h>

void
queue_signal_init(struct queue_signal *s)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    s->seq = 0;
}

void
queue_signal_cleanup(struct queue_signal *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void
queue_signal_wake(struct queue_signal *s)
{
    pthread_mutex_lock(&s->mu);
    s->seq++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

uint64_t
queue_signal_seq(struct queue_signal *s)
{
    uint64_t v;
    pthread_mutex_lock(&s->mu);
    v = s->seq;
    pthread_mutex_unlock(&s->mu);
    return v;
}

void
queue_signal_wait(struct queue_signal *s, uint64_t seen, int64_t timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->seq == seen) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&s->mu);
}
