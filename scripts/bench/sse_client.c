/* sse_client.c: the bench's GET /events load (scripts/bench.sh, "server-sent events" section).
 *
 *   sse_client PORT STREAMS STATUS_FILE [HOST]
 *
 * Opens STREAMS connections to http://HOST:PORT/events (HOST defaults to 127.0.0.1) from one
 * thread (epoll), checks each answer is 200 text/event-stream with chunked encoding, then reads
 * every stream to its end, undoing the chunked encoding and counting the events (frames with an
 * "id:" line), the comments (": ping") and the bytes of each stream, and remembering each
 * stream's last event id. It prints "ready" on stdout once every stream has its headers, and
 * rewrites STATUS_FILE every 100 ms (and at exit) with one line:
 *   streams=N open=O ended=E failed=F min=A max=B events=SUM pings=P bytes=BYTES last_ids=D
 * (min/max: events per stream; last_ids: how many distinct last event ids the streams that got
 * events hold: 1 when they all stopped at the same event). It exits when every stream has ended
 * (the server closed them: SIGTERM) or on SIGTERM/SIGINT. Bench tool: plain C, no project code. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 4096
#define LINE_MAX_ 256 /* the start of a line kept across reads: enough for "id: <uuid>" */

enum phase { HEADERS, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, DONE, FAILED };

struct stream {
    int fd;
    enum phase phase;
    char head[HEAD_MAX];
    size_t head_len;
    unsigned long long chunk_left;
    char size_line[32];
    size_t size_len;
    int crlf_seen;
    /* SSE parsing over the de-chunked body: the current line's first bytes. */
    char line[LINE_MAX_];
    size_t line_len;
    int line_long;
    long long events, pings, bytes;
    char last_id[64];
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void
end_line(struct stream *s)
{
    if (s->line_len == 0 && !s->line_long)
        return; /* an empty line ends a frame: nothing to count */
    s->line[s->line_len < LINE_MAX_ ? s->line_len : LINE_MAX_ - 1] = '\0';
    if (strncmp(s->line, "id: ", 4) == 0) {
        s->events++;
        snprintf(s->last_id, sizeof(s->last_id), "%s", s->line + 4);
    } else if (strncmp(s->line, ": ping", 6) == 0) {
        s->pings++;
    }
    s->line_len = 0;
    s->line_long = 0;
}

/* De-chunked body bytes. Lines are found with memchr and only their first bytes copied: at a
 * thousand streams under load this client reads hundreds of MB/s on the server's own machine,
 * and a loop over every byte took most of a core from the server it measures. */
static void
body(struct stream *s, const char *p, size_t n)
{
    s->bytes += (long long)n;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl != NULL ? (size_t)(nl - p) : n;
        size_t room = LINE_MAX_ - 1 - s->line_len;
        size_t take = seg < room ? seg : room;

        memcpy(s->line + s->line_len, p, take);
        s->line_len += take;
        if (seg > take)
            s->line_long = 1;
        if (nl == NULL)
            return;
        end_line(s);
        p = nl + 1;
        n -= seg + 1;
    }
}

static void
fail(struct stream *s, const char *why)
{
    if (s->phase != FAILED)
        fprintf(stderr, "sse_client: stream fd %d: %s\n", s->fd, why);
    s->phase = FAILED;
}

/* Bytes from the socket. */
static void
feed(struct stream *s, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && s->phase != DONE && s->phase != FAILED) {
        switch (s->phase) {
        case HEADERS: {
            char *end;
            size_t take = n - i;
            if (take > HEAD_MAX - 1 - s->head_len)
                take = HEAD_MAX - 1 - s->head_len;
            memcpy(s->head + s->head_len, p + i, take);
            s->head_len += take;
            s->head[s->head_len] = '\0';
            end = strstr(s->head, "\r\n\r\n");
            if (end == NULL) {
                if (s->head_len >= HEAD_MAX - 1)
                    fail(s, "headers too long");
                i += take;
                break;
            }
            if (strncmp(s->head, "HTTP/1.1 200", 12) != 0 ||
                strcasestr(s->head, "\r\ncontent-type: text/event-stream") == NULL ||
                strcasestr(s->head, "\r\ntransfer-encoding: chunked") == NULL) {
                fail(s, "not a 200 chunked event stream");
                break;
            }
            i += take - (s->head_len - (size_t)(end + 4 - s->head));
            s->phase = CHUNK_SIZE;
            break;
        }
        case CHUNK_SIZE:
            if (p[i] == '\n') {
                s->size_line[s->size_len] = '\0';
                s->chunk_left = strtoull(s->size_line, NULL, 16);
                s->size_len = 0;
                s->phase = s->chunk_left == 0 ? DONE : CHUNK_DATA;
            } else if (p[i] != '\r' && s->size_len < sizeof(s->size_line) - 1) {
                s->size_line[s->size_len++] = p[i];
            }
            i++;
            break;
        case CHUNK_DATA: {
            size_t take = n - i;
            if (take > s->chunk_left)
                take = (size_t)s->chunk_left;
            body(s, p + i, take);
            s->chunk_left -= take;
            i += take;
            if (s->chunk_left == 0)
                s->phase = CHUNK_CRLF;
            break;
        }
        case CHUNK_CRLF:
            if (p[i] == '\n')
                s->phase = CHUNK_SIZE;
            i++;
            break;
        default:
            i = n;
        }
    }
}

static int
connect_one(const char *host, int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
write_status(const char *path, struct stream *ss, int n)
{
    long long min = -1, max = 0, sum = 0, pings = 0, bytes = 0;
    int open = 0, ended = 0, failed = 0, distinct = 0, k = 0;
    const char **ids = calloc((size_t)n, sizeof(*ids));
    char tmp[4096];
    FILE *f;

    for (int i = 0; i < n; i++) {
        struct stream *s = &ss[i];
        open += s->phase != DONE && s->phase != FAILED && s->phase != HEADERS;
        ended += s->phase == DONE;
        failed += s->phase == FAILED;
        if (min < 0 || s->events < min)
            min = s->events;
        if (s->events > max)
            max = s->events;
        sum += s->events;
        pings += s->pings;
        bytes += s->bytes;
        if (s->last_id[0])
            ids[k++] = s->last_id;
    }
    qsort(ids, (size_t)k, sizeof(*ids), cmp_str);
    for (int i = 0; i < k; i++)
        distinct += i == 0 || strcmp(ids[i], ids[i - 1]) != 0;
    free(ids);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f,
            "streams=%d open=%d ended=%d failed=%d min=%lld max=%lld events=%lld pings=%lld "
            "bytes=%lld last_ids=%d\n",
            n, open, ended, failed, min < 0 ? 0 : min, max, sum, pings, bytes, distinct);
    fclose(f);
    rename(tmp, path);
}

static long long
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
main(int argc, char **argv)
{
    static char buf[1 << 18];
    const char *host = argc > 4 ? argv[4] : "127.0.0.1";
    int port, n, ep, ready = 0, live;
    struct stream *ss;
    long long last_status = 0;
    char req[256];

    if (argc < 4) {
        fprintf(stderr, "usage: sse_client PORT STREAMS STATUS_FILE [HOST]\n");
        return 2;
    }
    port = atoi(argv[1]);
    n = atoi(argv[2]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    ss = calloc((size_t)n, sizeof(*ss));
    ep = epoll_create1(EPOLL_CLOEXEC);
    snprintf(req, sizeof(req),
             "GET /events HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n", host,
             port);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ss[i]};
        ss[i].fd = connect_one(host, port);
        if (ss[i].fd < 0 || write(ss[i].fd, req, strlen(req)) != (ssize_t)strlen(req)) {
            fprintf(stderr, "sse_client: connection %d: %s\n", i, strerror(errno));
            return 1;
        }
        epoll_ctl(ep, EPOLL_CTL_ADD, ss[i].fd, &ev);
    }
    live = n;
    while (!stop && live > 0) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; j++) {
            struct stream *s = evs[j].data.ptr;
            ssize_t r = read(s->fd, buf, sizeof(buf));
            enum phase before = s->phase;
            if (r > 0)
                feed(s, buf, (size_t)r);
            if (r == 0 && s->phase != DONE)
                fail(s, "closed without the last chunk");
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                fail(s, strerror(errno));
            if (before == HEADERS && s->phase != HEADERS && s->phase != FAILED && ++ready == n) {
                printf("ready\n");
                fflush(stdout);
            }
            if (s->phase == DONE || s->phase == FAILED) {
                epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                close(s->fd);
                live--;
            }
        }
        if (mono_ms() - last_status >= 100) {
            write_status(argv[3], ss, n);
            last_status = mono_ms();
        }
    }
    write_status(argv[3], ss, n);
    return 0;
}
