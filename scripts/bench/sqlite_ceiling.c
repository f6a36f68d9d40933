/* sqlite_ceiling.c: the raw SQLite ceiling of the capture transaction, for bench.sh.
 *
 *   sqlite_ceiling <database file, migrated by `salespad migrate`> <seconds>
 *
 * One connection with the service's settings (WAL, synchronous=NORMAL, foreign keys on), its
 * statements prepared once, runs capture transactions back to back for <seconds>: BEGIN
 * IMMEDIATE, one lead, its lead_added event, two messages (email and WhatsApp), two jobs and
 * two message_queued events, COMMIT. The same rows and the same statements as the service's
 * POST /leads on the embedded default, with nothing else around them: no HTTP, no JSON, no
 * workers. Prints "tx_per_s=<n> tx=<n> seconds=<s>". Exit 1 on any SQLite error. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { S_LEAD, S_EVENT, S_MESSAGE, S_JOB, S_BEGIN, S_COMMIT, S_N };

static const char *const SQL[S_N] = {
    "INSERT INTO leads (id, name, email, phone, status, created_at, updated_at, email_norm,"
    " phone_norm, name_lower) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    "INSERT INTO lead_events (id, lead_id, type, correlation_ids, payload, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6)",
    "INSERT INTO messages (id, lead_id, channel, direction, kind, status, attempts, last_error,"
    " provider_id, recipient, channel_message, sent_at, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    "INSERT INTO jobs (name, lead_id, message_id, data, state, attempts_made, max_attempts,"
    " backoff_ms, run_at, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, 'waiting', 0, $5, $6, $7, $7, $7) RETURNING id",
    "BEGIN IMMEDIATE",
    "COMMIT",
};

static sqlite3 *db;
static sqlite3_stmt *st[S_N];

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "sqlite_ceiling: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static void
text(sqlite3_stmt *s, int i, const char *v)
{
    if (sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) != SQLITE_OK)
        die("bind");
}

static void
run(sqlite3_stmt *s)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE)
        die(sqlite3_sql(s));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* A UUID-shaped id unique in this run: the run's start and a counter. */
static void
make_id(char *out, uint64_t run, uint64_t n)
{
    snprintf(out, 37, "%08llx-%04llx-7%03llx-8%03llx-%012llx", (unsigned long long)(run >> 16),
             (unsigned long long)(run & 0xffff), (unsigned long long)((n >> 48) & 0xfff),
             (unsigned long long)((n >> 36) & 0xfff), (unsigned long long)(n & 0xffffffffffffULL));
}

static void
event(const char *id, const char *lead, const char *type, const char *corr, const char *payload,
      int64_t at)
{
    text(st[S_EVENT], 1, id);
    text(st[S_EVENT], 2, lead);
    text(st[S_EVENT], 3, type);
    text(st[S_EVENT], 4, corr);
    text(st[S_EVENT], 5, payload);
    sqlite3_bind_int64(st[S_EVENT], 6, at);
    run(st[S_EVENT]);
}

static void
message_and_job(uint64_t run_id, uint64_t *n, const char *lead, const char *channel,
                const char *to, int64_t at)
{
    char id[40], ev[40], body[512], data[1024], corr[256];

    make_id(id, run_id, (*n)++);
    make_id(ev, run_id, (*n)++);
    snprintf(body, sizeof(body),
             "{\"to\": \"%s\", \"body\": \"Hi Bench,\\n\\nThank you for reaching out to us! We"
             " help sales teams follow up with every lead in minutes.\"}",
             to);
    text(st[S_MESSAGE], 1, id);
    text(st[S_MESSAGE], 2, lead);
    text(st[S_MESSAGE], 3, channel);
    text(st[S_MESSAGE], 4, "outbound");
    text(st[S_MESSAGE], 5, "welcome");
    text(st[S_MESSAGE], 6, "queued");
    sqlite3_bind_int64(st[S_MESSAGE], 7, 0);
    text(st[S_MESSAGE], 10, to);
    text(st[S_MESSAGE], 11, body);
    sqlite3_bind_int64(st[S_MESSAGE], 13, at);
    sqlite3_bind_int64(st[S_MESSAGE], 14, at);
    run(st[S_MESSAGE]);
    snprintf(data, sizeof(data),
             "{\"messageId\":\"%s\",\"leadId\":\"%s\",\"channel\":\"%s\",\"kind\":\"welcome\","
             "\"channelMessage\":%s,\"correlationIds\":{\"leadId\":\"%s\"}}",
             id, lead, channel, body, lead);
    text(st[S_JOB], 1, "send-message");
    text(st[S_JOB], 2, lead);
    text(st[S_JOB], 3, id);
    text(st[S_JOB], 4, data);
    sqlite3_bind_int64(st[S_JOB], 5, 5);
    sqlite3_bind_int64(st[S_JOB], 6, 1000);
    sqlite3_bind_int64(st[S_JOB], 7, at);
    run(st[S_JOB]);
    snprintf(corr, sizeof(corr), "{\"jobId\": \"%s\", \"leadId\": \"%s\", \"messageId\": \"%s\"}",
             id, lead, id);
    event(ev, lead, "message_queued", corr, "{\"kind\": \"welcome\"}", at);
}

int
main(int argc, char **argv)
{
    uint64_t run_id = (uint64_t)now_ms(), n = 0, tx = 0;
    double seconds, t0, t1;

    if (argc != 3 || (seconds = atof(argv[2])) <= 0) {
        fprintf(stderr, "usage: sqlite_ceiling <migrated database file> <seconds>\n");
        return 2;
    }
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die("open");
    if (sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     " PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-4096;",
                     NULL, NULL, NULL) != SQLITE_OK)
        die("pragmas");
    for (int i = 0; i < S_N; i++)
        if (sqlite3_prepare_v3(db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) !=
            SQLITE_OK)
            die(SQL[i]);
    t0 = mono_s();
    do {
        char lead[40], ev[40], email[64], phone[32], norm[32], payload[256], corr[64];
        int64_t at = now_ms();

        make_id(lead, run_id, n++);
        make_id(ev, run_id, n++);
        snprintf(email, sizeof(email), "bench-%llx-%llu@example.com", (unsigned long long)run_id,
                 (unsigned long long)tx);
        snprintf(norm, sizeof(norm), "9%llu%06llu", (unsigned long long)(run_id % 100000),
                 (unsigned long long)tx);
        snprintf(phone, sizeof(phone), "+%s", norm);
        run(st[S_BEGIN]);
        text(st[S_LEAD], 1, lead);
        text(st[S_LEAD], 2, "Bench");
        text(st[S_LEAD], 3, email);
        text(st[S_LEAD], 4, phone);
        text(st[S_LEAD], 5, "new");
        sqlite3_bind_int64(st[S_LEAD], 6, at);
        sqlite3_bind_int64(st[S_LEAD], 7, at);
        text(st[S_LEAD], 8, email);
        text(st[S_LEAD], 9, norm);
        text(st[S_LEAD], 10, "bench");
        run(st[S_LEAD]);
        snprintf(corr, sizeof(corr), "{\"leadId\": \"%s\"}", lead);
        snprintf(payload, sizeof(payload),
                 "{\"id\": \"%s\", \"name\": \"Bench\", \"email\": \"%s\", \"phone\": \"%s\","
                 " \"status\": \"new\"}",
                 lead, email, phone);
        event(ev, lead, "lead_added", corr, payload, at);
        message_and_job(run_id, &n, lead, "email", email, at);
        message_and_job(run_id, &n, lead, "whatsapp", phone, at);
        run(st[S_COMMIT]);
        tx++;
        t1 = mono_s();
    } while (t1 - t0 < seconds);
    printf("tx_per_s=%.0f tx=%llu seconds=%.2f\n", (double)tx / (t1 - t0), (unsigned long long)tx,
           t1 - t0);
    for (int i = 0; i < S_N; i++)
        sqlite3_finalize(st[i]);
    sqlite3_close(db);
    return 0;
}
