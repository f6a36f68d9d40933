/* mem_store.h: an in-memory lead repository and job queue sharing one store (test fake).
 *
 * The repo (struct lead_repo) and the queue (struct job_queue) read and write the same struct
 * mem_store, so a unit of work opened on the repo covers the queue too, as the SQL queue joins
 * the repo's transaction on one connection. begin snapshots every table; rollback restores the
 * snapshot; commit drops it. Outside a unit of work each write applies at once (autocommit).
 *
 * The fake mirrors the SQLite adapter where tests can observe it: a duplicate id is
 * SP_ECONFLICT, so is a lead (inserted, or given an address) whose normalised email or phone
 * is another lead's (one lead per person), a message, event or job for an unknown lead is
 * SP_ECONFLICT (foreign key), a missing row on a _get is SP_ENOTFOUND, nested begin is
 * SP_EINTERNAL, every queue operation (reserve included) joins the open unit of work if there is
 * one, job ids are "1", "2", ... in insertion order and roll back with the data, and a lease that
 * expires max_stalled times fails the job. Every string it keeps is copied into the store's own
 * arena; strings it returns are copied into the caller's arena. Single-threaded. */
#pragma once

#include "core/lease_set.h"
#include "core/queue.h"
#include "features/leads/domain/lead_repo.h"

struct arena;

/* A job row: the public fields plus the lease deadline (0 when not leased). */
struct mem_job {
    struct job j;
    int64_t lease_until;
};

/* An inbound_receipts row. */
struct mem_receipt {
    const char *source, *key;
    int64_t created_at;
};

/* A lead_opt_outs row. */
struct mem_opt_out {
    char lead_id[SP_UUID_LEN + 1];
    struct lead_opt_out o; /* reason kept in the store's arena */
};

struct mem_tables {
    struct lead *leads;
    int nleads, cap_leads;
    struct message *msgs;
    int nmsgs, cap_msgs;
    struct lead_event *events;
    int nevents, cap_events;
    struct mem_job *jobs;
    int njobs, cap_jobs;
    struct mem_receipt *receipts;
    int nreceipts, cap_receipts;
    struct mem_opt_out *opt_outs;
    int nopt_outs, cap_opt_outs;
    int64_t next_job_id;
};

struct mem_store {
    struct arena *strings;  /* owns every string held in the tables (and in the snapshot) */
    struct mem_tables cur;  /* what reads see */
    struct mem_tables snap; /* state at begin; valid while in_tx */
    int in_tx;
    int begins, commits, rollbacks; /* for assertions */
    int max_stalled;                /* lease losses a job survives (QUEUE_MAX_STALLED): 2 */
    long long lease_seq;            /* lease tokens "mem:<n>" */
    struct lease_set held;          /* the leases renew extends, as the SQL queue keeps them */
};

struct mem_repo {
    struct lead_repo base; /* first */
    struct mem_store *st;  /* borrowed */
};

struct mem_queue {
    struct job_queue base; /* first */
    struct mem_store *st;  /* borrowed */
    int wakes;             /* job_queue_wake calls */
    int renewals;          /* job_queue_renew calls */
};

/* A new empty store; caller frees with mem_store_free() (NULL-safe). */
struct mem_store *mem_store_new(void);
void mem_store_free(struct mem_store *st);
/* Binds a repo / queue to `st` (borrowed; must outlive them). Nothing to free. */
void mem_repo_init(struct mem_repo *r, struct mem_store *st);
void mem_queue_init(struct mem_queue *q, struct mem_store *st);

/* The stored row with that id, or NULL; pointers into the store, valid until the next write. */
const struct lead *mem_store_lead(const struct mem_store *st, const char *id);
const struct message *mem_store_message(const struct mem_store *st, const char *id);
const struct mem_job *mem_store_job(const struct mem_store *st, const char *id);
