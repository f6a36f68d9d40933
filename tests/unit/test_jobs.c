/* test_jobs.c: the operator's job use cases (application/jobs.h) on the fakes and the SQL
 * backends: a failed send-message job retried (the job reset, its message back to queued, a
 * message_retried event) and then sent, 409/404/400 cases, a storage failure at every call of
 * a retry changing nothing; the worker's side of a retry made in Redis by a BullMQ client
 * (job.requeued); and the hash test that tells such a retry from a failure that never reached
 * Redis. */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_env.h"
#include "fakes/t_json.h"
#include "features/leads/application/jobs.h"
#include "infra/bullmq.h"

static struct message
only_message(struct t_env *env, const char *lead_id)
{
    struct message *m;
    int n;
    t_env_messages(env, lead_id, &m, &n);
    ASSERT_EQ(1, n);
    return m[0];
}

static struct job
only_job(struct t_env *env, const char *lead_id)
{
    struct job *j;
    int n;
    t_env_jobs(env, lead_id, &j, &n);
    ASSERT_EQ(1, n);
    return j[0];
}

static int
count_events(struct t_env *env, const char *lead_id, enum lead_event_type type,
             struct lead_event *last)
{
    struct lead_event *e;
    int n, k = 0;
    t_env_events(env, lead_id, &e, &n);
    for (int i = 0; i < n; i++) {
        if (e[i].type == type) {
            k++;
            if (last)
                *last = e[i];
        }
    }
    return k;
}

/* A lead with one email welcome whose send failed for good (a permanent error). */
static void
failed_welcome(struct t_env *env, struct lead *l)
{
    env->sender.fail_first = 1;
    env->sender.fail_code = SP_EPERMANENT;
    t_env_create(env, "Ana", "ana@example.com", NULL, l);
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(JOB_FAILED, only_job(env, l->id).state);
    ASSERT_EQ(MESSAGE_FAILED, only_message(env, l->id).status);
}

TEST_ALL(unit_jobs_retry_puts_a_failed_send_back_and_it_is_sent)
{
    struct t_env *env = t_env_new(backend);
    struct sp_error err = {0};
    struct lead l;
    struct job j, before;
    struct message m;
    struct lead_event e;
    char job_id[JOB_ID_MAX];
    int wakes;

    failed_welcome(env, &l);
    before = only_job(env, l.id);
    snprintf(job_id, sizeof(job_id), "%s", before.id);
    ASSERT_EQ(1, before.attempts_made);

    env->clock.now = T_NOW + 5000;
    wakes = env->mem_queue.wakes;
    ASSERT_OK(leads_retry_job(&env->deps, job_id, env->arena, &j, &err));
    if (backend == T_MEM)
        ASSERT_EQ(wakes + 1, env->mem_queue.wakes); /* the workers are told */
    ASSERT_STREQ(job_id, j.id);
    ASSERT_EQ(JOB_WAITING, j.state);
    ASSERT_EQ(0, j.attempts_made);
    ASSERT(j.last_error == NULL);
    ASSERT_EQ(0, j.finished_at);
    ASSERT_EQ(T_NOW + 5000, j.run_at);
    ASSERT_EQ(before.created_at, j.created_at);
    /* the message shows what it has been through until the next outcome */
    m = only_message(env, l.id);
    ASSERT_EQ(MESSAGE_QUEUED, m.status);
    ASSERT_EQ(1, m.attempts);
    ASSERT(m.last_error != NULL);
    ASSERT_EQ(T_NOW + 5000, m.updated_at);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_RETRIED, &e));
    ASSERT_STREQ(m.id, t_json_str(e.payload, "messageId"));
    ASSERT_STREQ("email", t_json_str(e.payload, "channel"));
    ASSERT_STREQ(job_id, t_json_str(e.payload, "jobId"));
    ASSERT_EQ(1, t_json_int(e.payload, "attempts"));
    ASSERT_STREQ(m.last_error, t_json_str(e.payload, "lastError"));
    ASSERT_STREQ("api", t_json_str(e.payload, "source"));
    ASSERT_STREQ(job_id, t_json_str(e.correlation_ids, "jobId"));
    ASSERT_EQ(T_NOW + 5000, e.created_at);

    /* the worker sends it: attempt 2 of the message, attempt 1 of the reset job */
    ASSERT_EQ(1, t_env_tick(env, NULL));
    ASSERT_EQ(2, env->sender.ncalls);
    ASSERT_EQ(2, env->sender.calls[1].attempt);
    m = only_message(env, l.id);
    ASSERT_EQ(MESSAGE_SENT, m.status);
    ASSERT_EQ(2, m.attempts);
    j = only_job(env, l.id);
    ASSERT_EQ(JOB_COMPLETED, j.state);
    ASSERT_EQ(1, j.attempts_made);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_SENT, NULL));
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_FAILED, NULL)); /* history kept */

    /* a completed job is not retried */
    ASSERT_EQ(SP_ECONFLICT, leads_retry_job(&env->deps, job_id, env->arena, &j, &err));
    ASSERT_STREQ("state", err.field);
    ASSERT_CONTAINS(err.msg, "completed");
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_RETRIED, NULL));
    t_env_free(env);
}

TEST(unit_jobs_retry_unknown_malformed_and_waiting)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct lead l;
    struct job j;

    int begins;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    begins = env->store->begins;
    ASSERT_EQ(SP_ECONFLICT, leads_retry_job(&env->deps, only_job(env, l.id).id, env->arena, &j,
                                            &err)); /* waiting */
    ASSERT_CONTAINS(err.msg, "is waiting: only a failed job can be retried");
    sp_error_clear(&err);
    ASSERT_EQ(SP_ENOTFOUND, leads_retry_job(&env->deps, "42", env->arena, &j, &err));
    ASSERT_STREQ("Job 42 not found", err.msg);
    sp_error_clear(&err);
    ASSERT_EQ(SP_EINVAL, leads_retry_job(&env->deps, "abc", env->arena, &j, &err));
    ASSERT_STREQ("id", err.field);
    sp_error_clear(&err);
    ASSERT_EQ(SP_ENOTFOUND, leads_get_job(&env->deps, "42", env->arena, &j, &err));
    ASSERT_EQ(begins, env->store->begins); /* none of them opened a unit of work */
    t_env_free(env);
}

TEST_ALL(unit_jobs_retry_fault_at_every_call)
{
    /* a storage failure at any call of a retry leaves the job and its message failed and
     * nothing on the timeline, or (a failure of the last read, after the commit) the retry done */
    struct t_env *env = t_env_new(backend);
    struct lead l;
    char job_id[JOB_ID_MAX];
    int n, done = 0;

    failed_welcome(env, &l);
    snprintf(job_id, sizeof(job_id), "%s", only_job(env, l.id).id);
    for (n = 1; n < 100 && !done; n++) {
        struct sp_error err = {0};
        struct job j;
        int rc;

        fault_plan_arm(&env->faults, n, SP_EUNAVAIL);
        rc = leads_retry_job(&env->deps, job_id, env->arena, &j, &err);
        ASSERT_EQ(0, env->faults.open_tx);
        if (rc == SP_OK) {
            ASSERT_EQ(JOB_WAITING, j.state);
            ASSERT_EQ(0, j.attempts_made);
            done = 1;
            break;
        }
        if (rc != SP_EUNAVAIL)
            t_fail(__FILE__, __LINE__, "fault at call %d (%s): want EUNAVAIL, got %s", n,
                   env->faults.last_op, sp_err_name(rc));
        ASSERT_EQ(JOB_FAILED, only_job(env, l.id).state);
        ASSERT_EQ(MESSAGE_FAILED, only_message(env, l.id).status);
        ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_RETRIED, NULL));
        arena_reset(env->arena);
    }
    ASSERT(done);
    ASSERT(n > 4); /* get, begin, lead_lock, reprocess, message_get, ... each failed once */
    ASSERT_EQ(JOB_WAITING, only_job(env, l.id).state);
    ASSERT_EQ(MESSAGE_QUEUED, only_message(env, l.id).status);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_RETRIED, NULL));
    t_env_free(env);
}

TEST(unit_jobs_retry_of_a_job_without_message_only_requeues_it)
{
    /* a generate-reply job (its key is the inbound message, never failed) goes back alone */
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct job_spec spec = {GENERATE_REPLY_JOB, NULL, NULL, "{}", 1, 1000};
    char id[JOB_ID_MAX];
    struct job j;
    struct t_counts before, after;

    ASSERT_OK(job_queue_enqueue(env->queue, &spec, T_NOW, id, &err));
    ASSERT_EQ(1, t_env_tick(env, NULL)); /* no message: failed at once */
    ASSERT_OK(job_queue_get(env->queue, id, env->arena, &j, &err));
    ASSERT_EQ(JOB_FAILED, j.state);
    t_env_counts(env, &before);
    ASSERT_OK(leads_retry_job(&env->deps, id, env->arena, &j, &err));
    ASSERT_EQ(JOB_WAITING, j.state);
    t_env_counts(env, &after);
    ASSERT_EQ(before.events, after.events);
    t_env_free(env);
}

TEST(unit_jobs_list_limits)
{
    struct t_env *env = t_env_new(T_MEM);
    struct sp_error err = {0};
    struct job_filter f = {0};
    struct job *jobs;
    char next[JOB_CURSOR_MAX];
    struct lead l;
    int n = -1;

    t_env_create(env, "Ana", "ana@example.com", "+15550001111", &l);
    f.limit = 0;
    ASSERT_EQ(SP_EINVAL, leads_list_jobs(&env->deps, &f, env->arena, &jobs, &n, next, &err));
    ASSERT_STREQ("limit", err.field);
    sp_error_clear(&err);
    f.limit = JOB_LIST_MAX + 1;
    ASSERT_EQ(SP_EINVAL, leads_list_jobs(&env->deps, &f, env->arena, &jobs, &n, next, &err));
    sp_error_clear(&err);
    f.limit = 1;
    ASSERT_OK(leads_list_jobs(&env->deps, &f, env->arena, &jobs, &n, next, &err));
    ASSERT_EQ(1, n);
    ASSERT_STREQ("2", jobs[0].id); /* newest first */
    ASSERT_STREQ("2", next);
    t_env_free(env);
}

/* Reserves the lead's one job, its message marked failed meanwhile (a failure the worker
 * recorded), and runs it with `requeued` as reserve would set it. */
static enum delivery_outcome
run_after_failure(struct t_env *env, const struct lead *l, int requeued)
{
    struct sp_error err = {0};
    struct message m = only_message(env, l->id);
    enum delivery_outcome out;
    struct job j;
    int found = 0;
    int64_t due = 0;

    m.status = MESSAGE_FAILED;
    m.attempts = 1;
    m.last_error = "fake: scripted failure 1";
    ASSERT_OK(lead_repo_message_update_delivery(env->repo, &m, &err));
    ASSERT_OK(
        job_queue_reserve(env->queue, T_NOW, T_LEASE_MS, 1, env->arena, &j, &found, &due, &err));
    ASSERT_EQ(1, found);
    ASSERT_OK(job_queue_after_commit(env->queue, &err));
    j.requeued = requeued;
    ASSERT_OK(leads_deliver(&env->mdeps, &j, env->arena, &out, &err));
    return out;
}

TEST(unit_jobs_worker_sends_a_message_whose_job_came_back_from_failed)
{
    /* Redis: a BullMQ client's job.retry() put the job back; the worker takes it as a retry */
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;
    struct lead_event e;
    struct message m;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(DELIVERY_SENT, run_after_failure(env, &l, 1));
    m = only_message(env, l.id);
    ASSERT_EQ(MESSAGE_SENT, m.status);
    ASSERT_EQ(2, m.attempts);
    ASSERT_EQ(2, env->sender.calls[0].attempt);
    ASSERT_EQ(1, count_events(env, l.id, EVENT_MESSAGE_RETRIED, &e));
    ASSERT_STREQ("queue", t_json_str(e.payload, "source"));
    ASSERT_EQ(1, t_json_int(e.payload, "attempts"));
    ASSERT_EQ(JOB_COMPLETED, only_job(env, l.id).state);
    t_env_free(env);
}

TEST(unit_jobs_worker_keeps_a_failed_message_failed_when_its_job_did_not_fail_in_redis)
{
    /* the failure was recorded but never reached Redis: the job comes back through the stalled
     * check, not from `failed`, and the message is not sent a second round */
    struct t_env *env = t_env_new(T_MEM);
    struct lead l;

    t_env_create(env, "Ana", "ana@example.com", NULL, &l);
    ASSERT_EQ(DELIVERY_DEAD, run_after_failure(env, &l, 0));
    ASSERT_EQ(0, env->sender.ncalls);
    ASSERT_EQ(MESSAGE_FAILED, only_message(env, l.id).status);
    ASSERT_STREQ("salespad worker: message already failed for good",
                 only_job(env, l.id).last_error);
    ASSERT_EQ(0, count_events(env, l.id, EVENT_MESSAGE_RETRIED, NULL));
    t_env_free(env);
}

/* A hash reply (field, value, ...) built from a NULL-terminated list. */
static struct redis_value
hash_of(struct redis_value *items, const char *const *kv)
{
    struct redis_value h = {0};

    h.type = RV_ARR;
    for (; kv[h.n]; h.n++) {
        items[h.n].type = RV_STR;
        items[h.n].str = kv[h.n];
        items[h.n].len = strlen(kv[h.n]);
    }
    h.items = items;
    return h;
}

TEST(unit_jobs_bullmq_hash_tells_a_retried_job)
{
    struct redis_value items[16], h;

    /* never failed */
    h = hash_of(items, (const char *const[]){"name", "send-message", "atm", "0", NULL});
    ASSERT_EQ(0, bullmq_hash_requeued(&h));
    /* BullMQ (Node) adds "stacktrace":"[]" to some jobs */
    h = hash_of(items, (const char *const[]){"name", "x", "stacktrace", "[]", NULL});
    ASSERT_EQ(0, bullmq_hash_requeued(&h));
    /* failed an attempt and retried by the worker: failedReason and stacktrace */
    h = hash_of(items, (const char *const[]){"stacktrace", "[\"boom\"]", "failedReason", "boom",
                                             "atm", "1", NULL});
    ASSERT_EQ(0, bullmq_hash_requeued(&h));
    /* put back from `failed` (reprocess, job.retry()): failedReason gone, stacktrace kept */
    h = hash_of(items, (const char *const[]){"stacktrace", "[\"gone\"]", "stc", "0", NULL});
    ASSERT_EQ(1, bullmq_hash_requeued(&h));
}
