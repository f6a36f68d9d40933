/* mock_sender.c: the mock channel provider (see mock_sender.h). */
#include "features/messaging/infrastructure/mock_sender.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/uuid.h"
#include "core/xmalloc.h"
#include "features/messaging/domain/sender.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAX 64
#define SINK_LINE_MAX 4096

/* Open-addressing set of the accepted idempotency keys' 64-bit hashes (8 bytes a key: a
 * long bench run keeps hundreds of thousands). Two distinct keys colliding is ~1e-10 at a
 * million keys; the mock would then report a false duplicate, which no test could hit. */
struct keyset {
    size_t cap, n;
    uint64_t *slots; /* 0 = empty */
};

struct mock_sender {
    struct sender base; /* first */
    struct mock_sender_config cfg;
    char *sink_path;
    int fd;
    off_t read_off; /* sink bytes already folded into keys */
    char partial[SINK_LINE_MAX];
    size_t npartial;
    struct keyset keys;
    pthread_mutex_t mu;
};

static uint64_t
hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h ^= h >> 29; /* spread FNV-1a's high bits into the low bits used as the slot index */
    return h ? h : 1;
}

static void keyset_put(struct keyset *ks, uint64_t h);

static void
keyset_grow(struct keyset *ks)
{
    struct keyset bigger = {ks->cap ? ks->cap * 2 : 1024, 0, NULL};
    bigger.slots = xcalloc(bigger.cap, sizeof(*bigger.slots));
    for (size_t i = 0; i < ks->cap; i++)
        if (ks->slots[i])
            keyset_put(&bigger, ks->slots[i]);
    free(ks->slots);
    *ks = bigger;
}

/* Adds hash h (no-op when present). */
static void
keyset_put(struct keyset *ks, uint64_t h)
{
    size_t i;

    if ((ks->n + 1) * 2 > ks->cap)
        keyset_grow(ks);
    for (i = h & (ks->cap - 1); ks->slots[i]; i = (i + 1) & (ks->cap - 1))
        if (ks->slots[i] == h)
            return;
    ks->slots[i] = h;
    ks->n++;
}

static void
keyset_add(struct keyset *ks, const char *key)
{
    keyset_put(ks, hash_key(key));
}

static int
keyset_has(const struct keyset *ks, const char *key)
{
    uint64_t h = hash_key(key);

    if (ks->cap == 0)
        return 0;
    for (size_t i = h & (ks->cap - 1); ks->slots[i]; i = (i + 1) & (ks->cap - 1))
        if (ks->slots[i] == h)
            return 1;
    return 0;
}

static void
fold_line(struct mock_sender *m, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    const char *key = obj ? json_string_value(json_object_get(obj, "idempotencyKey")) : NULL;

    if (key && strlen(key) <= KEY_MAX)
        keyset_add(&m->keys, key);
    else if (len > 0)
        log_warn("mock sink: ignoring unreadable line");
    json_decref(obj);
}

/* Reads what other processes (or an earlier run) appended since we last looked. */
static int
catch_up(struct mock_sender *m, struct sp_error *err)
{
    char buf[16384];

    for (;;) {
        ssize_t n = pread(m->fd, buf, sizeof(buf), m->read_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sp_error_set(err, SP_EPROVIDER, "sink", "mock sink read failed: %s",
                                strerror(errno));
        if (n == 0)
            return SP_OK;
        m->read_off += n;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                fold_line(m, m->partial, m->npartial);
                m->npartial = 0;
            } else if (m->npartial < sizeof(m->partial)) {
                m->partial[m->npartial++] = buf[i];
            }
        }
    }
}

static int
append_line(struct mock_sender *m, const char *line, size_t len, struct sp_error *err)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(m->fd, line + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sp_error_set(err, SP_EPROVIDER, "sink", "mock sink write failed: %s",
                                strerror(errno));
        off += (size_t)n;
    }
    return SP_OK;
}

static const char *
sink_line(struct arena *a, const struct send_request *req, int duplicate, size_t *len)
{
    struct jsonw w;
    const char *s = "";
    jsonw_init(&w, a, SINK_LINE_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "channel", channel_name(req->channel));
    jsonw_kstr(&w, "to", req->to);
    jsonw_kstr(&w, "messageId", req->message_id);
    jsonw_kstr(&w, "kind", message_kind_name(req->kind));
    jsonw_kstr(&w, "idempotencyKey", req->idempotency_key);
    jsonw_kint(&w, "attempt", req->attempt);
    jsonw_ktime(&w, "at", sp_clock_now_ms(&sp_clock_real), 0);
    if (duplicate)
        jsonw_kbool(&w, "duplicate", 1);
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, &s, len) != SP_OK)
        *len = 0;
    return s;
}

/* Under the process mutex and the file lock: dedupe by key and record the delivery. */
static int
record(struct mock_sender *m, const struct send_request *req, struct arena *a, struct sp_error *err)
{
    size_t len = 0;
    const char *line;
    int dup, rc;

    if (flock(m->fd, LOCK_EX) != 0)
        return sp_error_set(err, SP_EPROVIDER, "sink", "mock sink lock failed: %s",
                            strerror(errno));
    rc = catch_up(m, err);
    if (rc == SP_OK) {
        dup = keyset_has(&m->keys, req->idempotency_key);
        line = sink_line(a, req, dup, &len);
        char *nl = arena_alloc(a, len + 1);
        memcpy(nl, line, len);
        nl[len] = '\n';
        rc = append_line(m, nl, len + 1, err);
        if (rc == SP_OK)
            rc = catch_up(m, err); /* folds our own line, keeping read_off at EOF */
    }
    flock(m->fd, LOCK_UN);
    return rc;
}

static int
is_bounce(const char *to)
{
    return to && strncmp(to, "bounce@", 7) == 0;
}

static int
mock_send(struct sender *s, const struct send_request *req, struct arena *a,
          const char **provider_id, struct sp_error *err)
{
    struct mock_sender *m = (struct mock_sender *)s;
    char *id;
    int rc = SP_OK;

    if (req->idempotency_key == NULL || strlen(req->idempotency_key) > KEY_MAX)
        return sp_error_set(err, SP_EPERMANENT, "idempotencyKey", "mock: bad idempotency key");
    if (m->cfg.send_delay_ms > 0) {
        /* A slow provider: the call is in flight for this long (crash tests kill it here). */
        struct timespec ts = {m->cfg.send_delay_ms / 1000,
                              (m->cfg.send_delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    if (is_bounce(req->to))
        return sp_error_set(err, SP_EPERMANENT, "to", "mock: mailbox does not exist");
    if (req->attempt <= m->cfg.fail_first)
        return sp_error_set(err, SP_EPROVIDER, NULL,
                            "mock: simulated failure of attempt %d (MOCK_FAIL_FIRST=%d)",
                            req->attempt, m->cfg.fail_first);
    if (m->cfg.fail_rate > 0 && sp_random_unit() < m->cfg.fail_rate)
        return sp_error_set(err, SP_EPROVIDER, NULL, "mock: simulated random failure");
    if (m->fd >= 0) {
        pthread_mutex_lock(&m->mu);
        rc = record(m, req, a, err);
        pthread_mutex_unlock(&m->mu);
    }
    if (rc != SP_OK)
        return rc;
    id = arena_alloc(a, SP_UUID_LEN + 1);
    sp_uuid_v4(id);
    *provider_id = id;
    return SP_OK;
}

static const struct sender_ops mock_ops = {"mock", mock_send};

int
mock_sender_new(const struct mock_sender_config *cfg, struct mock_sender **out,
                struct sp_error *err)
{
    struct mock_sender *m = xcalloc(1, sizeof(*m));
    int rc;

    m->base.ops = &mock_ops;
    m->cfg = *cfg;
    m->fd = -1;
    pthread_mutex_init(&m->mu, NULL);
    if (cfg->sink_path && cfg->sink_path[0]) {
        m->sink_path = xstrdup(cfg->sink_path);
        m->cfg.sink_path = m->sink_path;
        m->fd = open(m->sink_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (m->fd < 0) {
            rc = sp_error_set(err, SP_EINVAL, "MOCK_SINK", "cannot open %s: %s", m->sink_path,
                              strerror(errno));
            mock_sender_free(m);
            return rc;
        }
        if (flock(m->fd, LOCK_SH) == 0) {
            rc = catch_up(m, err);
            flock(m->fd, LOCK_UN);
            if (rc != SP_OK) {
                mock_sender_free(m);
                return rc;
            }
        }
    }
    *out = m;
    return SP_OK;
}

struct sender *
mock_sender_base(struct mock_sender *m)
{
    return &m->base;
}

void
mock_sender_free(struct mock_sender *m)
{
    if (m == NULL)
        return;
    if (m->fd >= 0)
        close(m->fd);
    free(m->keys.slots);
    free(m->sink_path);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
