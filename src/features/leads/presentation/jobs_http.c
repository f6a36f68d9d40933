/* jobs_http.c: the job routes (see jobs_http.h). */
#include "features/leads/presentation/jobs_http.h"

#include "core/arena.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "features/leads/application/jobs.h"
#include "features/leads/application/leads.h"
#include "features/leads/presentation/leads_http.h"

#include <stdlib.h>
#include <string.h>

#define MSGS_MAX 16
#define RESPONSE_MAX (4 * 1024 * 1024) /* a page: 100 records of bounded fields */
#define NAME_MAX_CHARS 128             /* a job name in the query (BullMQ names are free text) */
#define CURSOR_PREFIX "jobs."          /* cursors are "jobs.<the queue's position>" */

struct msgs {
    int n;
    const char *v[MSGS_MAX];
};

static void
msg_add(struct msgs *m, const char *s)
{
    if (m->n < MSGS_MAX)
        m->v[m->n++] = s;
}

void
jobs_http_render(struct jsonw *w, const struct job *j, int with_lead)
{
    jsonw_obj_begin(w);
    jsonw_kstr(w, "id", j->id);
    if (with_lead)
        jsonw_kstr(w, "leadId", j->group);
    jsonw_kstr(w, "name", j->name);
    jsonw_kstr(w, "messageId", j->key);
    jsonw_kstr(w, "state", job_state_name(j->state));
    jsonw_kint(w, "attemptsMade", j->attempts_made);
    jsonw_kint(w, "maxAttempts", j->max_attempts);
    jsonw_kstr(w, "lastError", j->last_error);
    jsonw_ktime(w, "createdAt", j->created_at, 0);
    jsonw_ktime(w, "updatedAt", j->updated_at, 0);
    jsonw_ktime(w, "runAt", j->run_at, 1);
    jsonw_ktime(w, "finishedAt", j->finished_at, 1);
    jsonw_obj_end(w);
}

static void
send_json(struct http_response *resp, struct arena *a, int status, struct jsonw *w)
{
    const char *body;
    size_t len;

    if (jsonw_finish(w, &body, &len) != SP_OK) {
        log_error("response exceeds %d bytes", RESPONSE_MAX);
        http_error(resp, a, 500, (const char *const[]){"Internal server error"}, 1, 0);
        return;
    }
    http_json(resp, status, body, len);
}

/* A use case's error: 409 with its sentence as a string (NestJS's ConflictException), the rest
 * as every route answers them (400 with the sentence in an array, 404 with a string, 503). */
static void
answer_error(struct http_response *resp, struct arena *a, int code, const struct sp_error *err)
{
    const char *msg = err && err->msg[0] ? err->msg : sp_err_str(code);

    if (code == SP_ECONFLICT) {
        http_error(resp, a, 409, &msg, 1, 0);
        return;
    }
    if (code == SP_EINVAL && err && strcmp(err->field, "id") == 0) {
        http_error(resp, a, 400, &msg, 1, 0); /* as a bad :id of the leads routes */
        return;
    }
    leads_http_error(resp, a, code, err);
}

/* A name value: 1..NAME_MAX_CHARS characters, no control characters. */
static const char *
name_problem(const char *s)
{
    size_t len = strlen(s);

    if (len == 0)
        return "name should not be empty";
    switch (lead_text_check(s, len, NAME_MAX_CHARS)) {
    case LEAD_TEXT_OK:
        return NULL;
    case LEAD_TEXT_TOO_LONG:
        return "name must be shorter than or equal to 128 characters";
    default:
        return "name must be text without control characters";
    }
}

/* The list query into f: only state, name, limit and cursor, each at most once. Answers 400
 * naming every bad parameter and returns -1, or returns 0. */
static int
list_query(struct http_request *req, struct http_response *resp, struct job_filter *f)
{
    static const char *const allowed[] = {"state", "name", "limit", "cursor", NULL};
    struct msgs m = {0};
    const char *v;

    memset(f, 0, sizeof(*f));
    for (int i = 0; i < req->nquery; i++) {
        const char *key = req->query_keys[i];
        int ok = 0, seen = 0;
        for (const char *const *p = allowed; *p; p++)
            ok |= strcmp(*p, key) == 0;
        for (int k = 0; k < i; k++)
            seen |= strcmp(req->query_keys[k], key) == 0;
        if (seen)
            continue; /* one sentence per key */
        if (!ok)
            msg_add(&m, arena_printf(req->arena, "property %s should not exist", key));
        else if (http_query_count(req, key) > 1)
            msg_add(&m, arena_printf(req->arena, "%s must be given once", key));
    }
    v = http_query(req, "state");
    if (v) {
        f->has_state = 1;
        if (job_state_parse(v, &f->state) != 0)
            msg_add(&m, "state must be one of the following values: waiting, delayed, active, "
                        "completed, failed");
    }
    v = http_query(req, "name");
    if (v) {
        const char *why = name_problem(v);
        if (why)
            msg_add(&m, why);
        f->name = v;
    }
    f->limit = LEADS_JOBS_PAGE_DEFAULT;
    v = http_query(req, "limit");
    if (v) {
        char *end = NULL;
        long n = (*v >= '0' && *v <= '9' && strlen(v) <= 4) ? strtol(v, &end, 10) : 0;
        if (end == NULL || *end != '\0' || n < 1 || n > JOB_LIST_MAX)
            msg_add(&m, arena_printf(req->arena, "limit must be an integer from 1 to %d",
                                     JOB_LIST_MAX));
        else
            f->limit = (int)n;
    }
    v = http_query(req, "cursor");
    if (v) {
        size_t plen = strlen(CURSOR_PREFIX);
        if (strncmp(v, CURSOR_PREFIX, plen) != 0 || v[plen] == '\0' ||
            strlen(v + plen) >= JOB_CURSOR_MAX)
            msg_add(&m, "cursor is not valid");
        else
            f->after = v + plen;
    }
    if (m.n > 0) {
        http_error(resp, req->arena, 400, m.v, m.n, 1);
        return -1;
    }
    return 0;
}

void
jobs_http_list(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct sp_error err = {0};
    struct job_filter f;
    struct job *jobs;
    char next[JOB_CURSOR_MAX];
    struct jsonw w;
    int n, rc;

    if (list_query(req, resp, &f) != 0)
        return;
    rc = leads_list_jobs(d, &f, req->arena, &jobs, &n, next, &err);
    if (rc == SP_EINVAL && strcmp(err.field, "cursor") == 0) {
        http_error1(resp, req->arena, 400, "cursor is not valid");
        return;
    }
    if (rc != SP_OK) {
        answer_error(resp, req->arena, rc, &err);
        return;
    }
    jsonw_init(&w, req->arena, RESPONSE_MAX);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "items");
    jsonw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        jobs_http_render(&w, &jobs[i], 1);
    jsonw_arr_end(&w);
    jsonw_key(&w, "nextCursor");
    if (next[0])
        jsonw_str(&w, arena_printf(req->arena, "%s%s", CURSOR_PREFIX, next));
    else
        jsonw_null(&w);
    jsonw_obj_end(&w);
    send_json(resp, req->arena, 200, &w);
}

/* The :id parameter: a job id is short printable text; what the queue makes of it is its own
 * check (SP_EINVAL). Answers 400 and returns NULL for anything else. */
static const char *
job_id_param(struct http_request *req, struct http_response *resp)
{
    const char *id = req->nparams > 0 ? req->params[0] : "";
    size_t len = strlen(id);
    int ok = len > 0 && len < JOB_ID_MAX;

    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)id[i] > ' ' && id[i] != 0x7f;
    if (!ok) {
        const char *msg = "Validation failed (job id is expected)";
        http_error(resp, req->arena, 400, &msg, 1, 0); /* a string, as for a lead's :id */
        return NULL;
    }
    return id;
}

static void
send_job(struct http_response *resp, struct arena *a, int status, const struct job *j)
{
    struct jsonw w;

    jsonw_init(&w, a, 64 * 1024);
    jobs_http_render(&w, j, 1);
    send_json(resp, a, status, &w);
}

void
jobs_http_get(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct sp_error err = {0};
    const char *id = job_id_param(req, resp);
    struct job j;
    int rc;

    if (id == NULL)
        return;
    rc = leads_get_job(d, id, req->arena, &j, &err);
    if (rc != SP_OK) {
        answer_error(resp, req->arena, rc, &err);
        return;
    }
    send_job(resp, req->arena, 200, &j);
}

void
jobs_http_retry(const struct leads_deps *d, struct http_request *req, struct http_response *resp)
{
    struct sp_error err = {0};
    const char *id = job_id_param(req, resp);
    struct job j;
    int rc;

    if (id == NULL)
        return;
    rc = leads_retry_job(d, id, req->arena, &j, &err);
    if (rc != SP_OK) {
        answer_error(resp, req->arena, rc, &err);
        return;
    }
    send_job(resp, req->arena, 200, &j);
}
