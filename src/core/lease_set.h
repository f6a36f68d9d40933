/* lease_set.h: the leases a process holds, as the queue adapters record them for the keeper.
 *
 * An entry is a job id and its lease token, tagged with the queue session (owner) that took it
 * and whether that session has ended the job in its open unit of work. When the unit of work
 * commits, the entries it ended go (the jobs are not ours any more); when it rolls back, every
 * entry it touched goes: reserved jobs were given back, and a job whose outcome could not be
 * recorded must not be renewed forever: its lease lapses and it is taken again. The keeper
 * renews what is left (lease_set_snapshot). Thread-safe; entries are copied in. */
#pragma once

#include "core/queue.h"

#include <pthread.h>

struct lease_entry {
    char id[JOB_ID_MAX];
    char token[JOB_LEASE_MAX];
    const void *owner; /* the queue session that holds it; compared, never dereferenced */
    int ended;         /* ended in the owner's open unit of work */
};

struct lease_set {
    pthread_mutex_t mu;
    struct lease_entry *list;
    int n, cap;
};

void lease_set_init(struct lease_set *s);
void lease_set_cleanup(struct lease_set *s);
/* A job reserved by `owner`. */
void lease_set_add(struct lease_set *s, const char *id, const char *token, const void *owner);
/* The job was ended (complete, retry, fail) in its owner's open unit of work. */
void lease_set_end(struct lease_set *s, const char *id, const char *token);
/* The owner's unit of work is over: drops the entries it ended (committed) or every entry it
 * touched (rolled back, all = 1). */
void lease_set_release(struct lease_set *s, const void *owner, int all);
/* Drops one entry (its lease was found lost). */
void lease_set_remove(struct lease_set *s, const char *id, const char *token);
/* A copy of the entries (caller frees with free()); *n of them. */
struct lease_entry *lease_set_snapshot(struct lease_set *s, int *n);
