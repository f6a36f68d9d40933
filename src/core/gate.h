/* gate.h: at most `slots` threads at a time inside a stretch of background work, let in by
 * order of arrival.
 *
 * Why: the server-sent event streams run a thread each, in SCHED_IDLE, to take only the CPU the
 * requests leave. But SCHED_IDLE is a small weight, not zero: after a burst, hundreds of streams
 * behind the hub are runnable at once and together outweigh the few threads answering requests.
 * Through the gate a stream copies and sends only while it holds a slot: `slots` of them run,
 * the others sleep on a condition variable of their own, not runnable at all.
 * - Order: a slot freed by gate_leave() goes straight to the oldest waiter (no barging: a thread
 *   that leaves and enters again queues behind everyone waiting), so none starves.
 * - Leases: a holder that keeps a slot over `lease_ms` (its client stopped reading and its send
 *   blocks, or it gets no CPU) loses it to the oldest waiter; its pass goes stale and its next
 *   gate_leave() is a no-op. For a moment more threads may work than there are slots; none
 *   waits for ever.
 * A pass is plain data owned by one thread at a time, initialised with GATE_PASS_INIT.
 * Thread-safe. Knows nothing of streams. */
#pragma once

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct gate;

struct gate_pass {
    int slot;         /* -1: holds nothing */
    uint64_t gen;     /* the slot's generation when granted: a lease lost moves it on */
    int64_t since_ms; /* sp_mono_ms() when granted */
    size_t bytes;     /* the holder's count of work done under this grant (its own use) */
};
#define GATE_PASS_INIT                                                                             \
    {                                                                                              \
        -1, 0, 0, 0                                                                                \
    }

/* A gate of `slots` (>= 1) slots whose holders lose them after `lease_ms` (>= 1) when others
 * wait. SP_EINTERNAL when its locks cannot be made. */
int gate_new(int slots, int lease_ms, struct gate **out, struct sp_error *err) SP_MUST_CHECK;
/* Frees the gate (NULL ok); no thread may be waiting in it. */
void gate_free(struct gate *g);

/* Holds a slot on return: at once when `p` holds a live one or a slot is free and nobody waits,
 * else after every earlier waiter. Sets p->since_ms and zeroes p->bytes when newly granted. */
void gate_enter(struct gate *g, struct gate_pass *p);
/* Gives the slot back (to the oldest waiter, if any). A no-op when `p` holds nothing or its
 * lease was lost. */
void gate_leave(struct gate *g, struct gate_pass *p);
/* Whether `p` holds a slot, as far as its owner knows (a lost lease is seen at gate_leave). */
int gate_holds(const struct gate_pass *p);
/* The threads waiting for a slot now. */
int gate_waiters(struct gate *g);
/* The slots nobody holds now (a slot whose lease was lost is held by its new holder). */
int gate_slots_free(struct gate *g);
