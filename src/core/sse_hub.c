/* sse_hub.c: the ring of encoded frames behind every open event stream (see sse_hub.h).
 *
 * The ring is an array of frame pointers used as a circle (head: the oldest), each frame one
 * allocation holding its position, key and text. Readers copy under a read lock, so the copies
 * of many streams woken by one publication run in parallel; the publisher takes the write lock
 * only to append and drop. Waiting is a futex on a version word that publication and close
 * bump: a condition variable would make every woken reader take its mutex again in turn (a
 * convoy of a thousand threads per publication); a futex wakes them all independently. */
#include "core/sse_hub.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct hub_frame {
    int64_t pos;
    int64_t at; /* sp_mono_ms() when published */
    size_t len;
    char key[SSE_KEY_MAX];
    char text[]; /* len bytes */
};

struct sse_hub {
    pthread_rwlock_t lock; /* guards everything below but the atomics */
    struct hub_frame **ring;
    size_t cap;          /* slots in ring (max_frames) */
    size_t head;         /* index of the oldest frame */
    size_t n;            /* frames held */
    size_t bytes;        /* text held */
    size_t max_bytes;    /* text held at most (one bigger frame is still kept alone) */
    int64_t base;        /* every event in (base, high] is in the ring */
    int64_t high;        /* the high-water mark */
    atomic_uint version; /* bumped by publication and close: the futex word */
    atomic_int closed;
    atomic_int readers;
};

struct sse_hub *
sse_hub_new(size_t max_frames, size_t max_bytes, int64_t start)
{
    struct sse_hub *h = xcalloc(1, sizeof(*h));
    pthread_rwlockattr_t attr;

    /* Writer first: with a thousand readers taking turns, glibc's default (readers first) could
     * hold the publisher off for as long as any reader is copying. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&h->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    h->cap = max_frames > 0 ? max_frames : 1;
    h->ring = xcalloc(h->cap, sizeof(*h->ring));
    h->max_bytes = max_bytes;
    h->base = h->high = start;
    atomic_init(&h->version, 0);
    atomic_init(&h->closed, 0);
    atomic_init(&h->readers, 0);
    return h;
}

/* Drops every frame; the caller holds the write lock. */
static void
drop_all(struct sse_hub *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->ring[(h->head + i) % h->cap]);
    h->head = 0;
    h->n = 0;
    h->bytes = 0;
}

void
sse_hub_free(struct sse_hub *h)
{
    if (h == NULL)
        return;
    drop_all(h);
    free(h->ring);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

/* Wakes every reader sleeping in sse_hub_wait. */
static void
bump(struct sse_hub *h)
{
    atomic_fetch_add(&h->version, 1);
    syscall(SYS_futex, &h->version, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Drops the oldest frame; the caller holds the write lock and n > 0. */
static void
drop_oldest(struct sse_hub *h)
{
    struct hub_frame *f = h->ring[h->head];

    h->base = f->pos;
    h->bytes -= f->len;
    h->ring[h->head] = NULL;
    h->head = (h->head + 1) % h->cap;
    h->n--;
    free(f);
}

static void
append(struct sse_hub *h, const struct sse_frame_in *in, int64_t now)
{
    struct hub_frame *f;
    size_t klen = in->key ? strlen(in->key) : 0;

    if (klen >= SSE_KEY_MAX) {
        log_error("sse hub: frame key too long (%zu bytes): frame dropped", klen);
        return;
    }
    while (h->n > 0 && (h->n == h->cap || h->bytes + in->len > h->max_bytes))
        drop_oldest(h);
    f = xmalloc(sizeof(*f) + in->len);
    f->pos = in->pos;
    f->at = now;
    f->len = in->len;
    memcpy(f->key, in->key ? in->key : "", klen + 1);
    memcpy(f->text, in->text, in->len);
    h->ring[(h->head + h->n) % h->cap] = f;
    h->n++;
    h->bytes += in->len;
}

void
sse_hub_publish(struct sse_hub *h, const struct sse_frame_in *frames, int n, int64_t high)
{
    int64_t now = sp_mono_ms();

    pthread_rwlock_wrlock(&h->lock);
    for (int i = 0; i < n; i++) {
        if (frames[i].pos <= h->high) {
            log_error("sse hub: frame at %lld is not after %lld: dropped", (long long)frames[i].pos,
                      (long long)h->high);
            continue;
        }
        append(h, &frames[i], now);
        h->high = frames[i].pos;
    }
    if (high > h->high)
        h->high = high;
    pthread_rwlock_unlock(&h->lock);
    bump(h);
}

void
sse_hub_skip(struct sse_hub *h, int64_t high)
{
    pthread_rwlock_wrlock(&h->lock);
    drop_all(h);
    if (high > h->high)
        h->high = high;
    h->base = h->high;
    pthread_rwlock_unlock(&h->lock);
    bump(h);
}

void
sse_hub_expire(struct sse_hub *h, int64_t max_age_ms)
{
    int64_t before = sp_mono_ms() - max_age_ms;

    pthread_rwlock_wrlock(&h->lock);
    while (h->n > 0 && h->ring[h->head]->at <= before)
        drop_oldest(h);
    pthread_rwlock_unlock(&h->lock);
}

int64_t
sse_hub_high(struct sse_hub *h)
{
    int64_t v;

    pthread_rwlock_rdlock(&h->lock);
    v = h->high;
    pthread_rwlock_unlock(&h->lock);
    return v;
}

/* Index (0..n) of the first frame after `cursor`; the caller holds the lock. Positions grow
 * along the ring, so a binary search. */
static size_t
first_after(const struct sse_hub *h, int64_t cursor)
{
    size_t lo = 0, hi = h->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->ring[(h->head + mid) % h->cap]->pos <= cursor)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

enum sse_read
sse_hub_read(struct sse_hub *h, int64_t *cursor, const char *key, char *buf, size_t cap,
             size_t *len, size_t *need)
{
    enum sse_read res = SSE_READ_OK;
    size_t i;

    *len = 0;
    *need = 0;
    if (atomic_load(&h->closed))
        return SSE_READ_CLOSED;
    if (key != NULL && key[0] == '\0')
        key = NULL;
    pthread_rwlock_rdlock(&h->lock);
    if (*cursor < h->base) {
        res = SSE_READ_BEHIND;
        goto out;
    }
    for (i = first_after(h, *cursor); i < h->n; i++) {
        const struct hub_frame *f = h->ring[(h->head + i) % h->cap];
        if (key != NULL && strcmp(f->key, key) != 0) {
            *cursor = f->pos;
            continue;
        }
        if (f->len > cap - *len) {
            if (*len == 0)
                *need = f->len;
            goto out; /* the cursor stays before this frame */
        }
        memcpy(buf + *len, f->text, f->len);
        *len += f->len;
        *cursor = f->pos;
    }
    if (*cursor < h->high)
        *cursor = h->high;
out:
    pthread_rwlock_unlock(&h->lock);
    return res;
}

uint64_t
sse_hub_version(struct sse_hub *h)
{
    return atomic_load(&h->version);
}

int
sse_hub_wait(struct sse_hub *h, uint64_t seen, int64_t timeout_ms)
{
    int64_t deadline = sp_mono_ms() + timeout_ms;

    /* The kernel sleeps only while the word still holds `seen`: a bump between the caller's
     * read and this call is never missed. Spurious wake-ups and signals loop. */
    while (!atomic_load(&h->closed) && atomic_load(&h->version) == (unsigned int)seen) {
        int64_t left = deadline - sp_mono_ms();
        struct timespec ts;
        if (left <= 0)
            return 0;
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        if (syscall(SYS_futex, &h->version, FUTEX_WAIT_PRIVATE, (unsigned)seen, &ts, NULL, 0) !=
                0 &&
            errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
            return 0;
    }
    return 1;
}

void
sse_hub_join(struct sse_hub *h)
{
    atomic_fetch_add(&h->readers, 1);
}

void
sse_hub_leave(struct sse_hub *h)
{
    atomic_fetch_sub(&h->readers, 1);
}

int
sse_hub_readers(struct sse_hub *h)
{
    return atomic_load(&h->readers);
}

int
sse_hub_closed(struct sse_hub *h)
{
    return atomic_load(&h->closed);
}

void
sse_hub_close(struct sse_hub *h)
{
    atomic_store(&h->closed, 1);
    bump(h);
}

/* ---- the wire format ------------------------------------------------------------------------ */

static int
is_single_line(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

int
sse_frame_encode(struct arena *a, const char *id, const char *event, const char *data, size_t len,
                 const char **out, size_t *outlen)
{
    size_t id_len = id ? strlen(id) : 0, ev_len = event ? strlen(event) : 0;
    size_t lines = 1, cap, n = 0;
    char *buf;

    *out = NULL;
    *outlen = 0;
    if (!is_single_line(id) || !is_single_line(event))
        return SP_EINVAL;
    for (size_t i = 0; i < len; i++)
        lines += data[i] == '\n' || (data[i] == '\r' && (i + 1 == len || data[i + 1] != '\n'));
    cap = (id ? 5 + id_len : 0) + (event ? 8 + ev_len : 0) + len + lines * 7 + 3;
    buf = arena_alloc(a, cap);
    if (id) {
        memcpy(buf + n, "id: ", 4);
        memcpy(buf + n + 4, id, id_len);
        n += 4 + id_len;
        buf[n++] = '\n';
    }
    if (event) {
        memcpy(buf + n, "event: ", 7);
        memcpy(buf + n + 7, event, ev_len);
        n += 7 + ev_len;
        buf[n++] = '\n';
    }
    memcpy(buf + n, "data: ", 6);
    n += 6;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' || data[i] == '\n') {
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
                i++;
            memcpy(buf + n, "\ndata: ", 7);
            n += 7;
            continue;
        }
        buf[n++] = data[i];
    }
    buf[n++] = '\n';
    buf[n++] = '\n';
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return SP_OK;
}
