/* faulty.h: fault-injecting wrappers around any lead repo and job queue (test fake).
 *
 * A struct fault_plan counts the calls made through the wrappers (repo and queue together,
 * rollback and wake excepted: they cannot fail) and fails call number fail_at (1-based) with
 * fail_code, without calling the wrapped implementation (beanstalkd falloc, SQLite
 * DO_OS_MALLOC_TEST, curl torture). The queue wrapper is generated from the port's list of
 * operations (JOB_QUEUE_OPS), so a new operation cannot be left out. With sticky set, every
 * call from fail_at on fails. An injected commit failure rolls the wrapped unit of work back
 * first, as a real driver whose COMMIT fails does. The wrappers also track whether a unit of work
 * is open, so a test can check that every path closed the one it opened. fail_at = 0 injects
 * nothing. Single-threaded. */
#pragma once

#include "core/queue.h"
#include "features/leads/domain/lead_repo.h"

struct fault_plan {
    int calls;     /* calls counted so far */
    int fail_at;   /* 0: never fail */
    int fail_code; /* SP_EUNAVAIL unless set */
    int sticky;    /* fail every call from fail_at on */
    int injected;  /* failures injected so far */
    int open_tx;   /* 1 while a unit of work begun through the wrapper is open */
    /* lead_find_by_address answers SP_ENOTFOUND this many times before it looks: the lead
     * with that address is stored by a concurrent unit of work right after the lookup (set
     * after fault_plan_arm, which clears it) */
    int hide_addresses;
    char last_op[32]; /* the operation of the last injected failure */
    /* Calls of one operation (its name, e.g. "lead_get"; set after fault_plan_arm, which
     * clears them), counted whether they fail or not. */
    const char *count_op;
    int counted;
};

struct faulty_repo {
    struct lead_repo base;   /* first */
    struct lead_repo *inner; /* borrowed */
    struct fault_plan *plan; /* borrowed, shared with the queue wrapper */
};

struct faulty_queue {
    struct job_queue base;   /* first */
    struct job_queue *inner; /* borrowed */
    struct fault_plan *plan; /* borrowed */
};

/* Clears the counters and arms the plan to fail call `fail_at` with `code` (0: SP_EUNAVAIL). */
void fault_plan_arm(struct fault_plan *p, int fail_at, int code);
void faulty_repo_init(struct faulty_repo *r, struct lead_repo *inner, struct fault_plan *plan);
void faulty_queue_init(struct faulty_queue *q, struct job_queue *inner, struct fault_plan *plan);
