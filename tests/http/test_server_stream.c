/* test_server_stream.c: streamed responses (http_stream_ops) through the libmicrohttpd wrapper
 * over a real loopback socket: chunked encoding, the connection closed after the stream, close()
 * called exactly once whether the stream ends, fails, is never read (HEAD) or loses its client.
 *
 * A test stream hands out the pieces it is given through a pipe, one piece per read() (a line
 * "end" ends it, "fail" fails it), so a test decides when the server has something to send and
 * nothing sleeps; a receive timeout only turns a hang into a failure. */
#include "t.h"

#include "core/arena.h"
#include "core/clock.h"
#include "core/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int pieces[2]; /* the pipe a test writes the stream's pieces into */
static atomic_int reads, closes;

static int
piece_read(void *ctx, char *buf, size_t cap, size_t *len)
{
    char line[64];
    size_t n = 0;

    (void)ctx;
    atomic_fetch_add(&reads, 1);
    while (n < sizeof(line) - 1 && read(pieces[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    if (strcmp(line, "fail") == 0)
        return SP_EINTERNAL;
    if (strcmp(line, "end") == 0 || n == 0) {
        *len = 0;
        return SP_OK;
    }
    ASSERT(n <= cap);
    memcpy(buf, line, n);
    *len = n;
    return SP_OK;
}

static void
piece_close(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&closes, 1);
}

static const struct http_stream_ops piece_ops = {piece_read, piece_close};

static void
streaming(void *ctx, struct http_request *req, struct http_response *resp)
{
    (void)ctx;
    (void)req;
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp->stream = &piece_ops;
    resp->stream_ctx = NULL;
}

static struct http_server *
start(void)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1", .port = 0, .handler = streaming, .ctx = NULL};
    struct sp_error err = {0};
    struct http_server *s = NULL;

    ASSERT_OK(pipe(pieces));
    atomic_store(&reads, 0);
    atomic_store(&closes, 0);
    ASSERT_OK(http_server_start(&cfg, &s, &err));
    return s;
}

static void
feed(const char *line)
{
    ASSERT_EQ((long)strlen(line), (long)write(pieces[1], line, strlen(line)));
}

static int
connect_to(struct http_server *s, const char *request)
{
    struct sockaddr_in addr = {0};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ASSERT(fd >= 0);
    ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)http_server_port(s));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_OK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)));
    ASSERT_EQ((long)strlen(request), (long)send(fd, request, strlen(request), MSG_NOSIGNAL));
    return fd;
}

/* Everything the server sends until it closes the connection. */
static size_t
read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;

    for (;;) {
        ssize_t n;
        ASSERT(len < cap - 1);
        n = recv(fd, buf + len, cap - 1 - len, 0);
        ASSERT(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

/* Polls until `n` closes were counted (each within the server's own threads). */
static void
wait_closes(int n)
{
    int64_t deadline = sp_mono_ms() + 10000;

    while (atomic_load(&closes) < n && sp_mono_ms() < deadline)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    ASSERT_EQ(n, atomic_load(&closes));
}

TEST(http_server_stream_chunks_then_closes_the_connection)
{
    struct http_server *s = start();
    char buf[4096];
    int fd;

    feed("id: 1\n"); /* one piece per line, so one chunk each */
    feed("data: a\n");
    feed("bb\n");
    feed("end\n");
    fd = connect_to(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    read_all(fd, buf, sizeof(buf));
    ASSERT_CONTAINS(buf, "HTTP/1.1 200 OK\r\n");
    ASSERT_CONTAINS(buf, "Content-Type: text/event-stream\r\n");
    ASSERT_CONTAINS(buf, "Transfer-Encoding: chunked\r\n");
    ASSERT_CONTAINS(buf, "Connection: close\r\n"); /* the stream's thread serves nothing else */
    ASSERT(strstr(buf, "Content-Length") == NULL);
    /* One chunk per read, then the last chunk. */
    ASSERT_CONTAINS(buf, "\r\n\r\n5\r\nid: 1\r\n7\r\ndata: a\r\n2\r\nbb\r\n0\r\n\r\n");
    close(fd);
    wait_closes(1);
    http_server_stop(s);
    ASSERT_EQ(1, atomic_load(&closes));
}

TEST(http_server_stream_failure_cuts_the_connection)
{
    struct http_server *s = start();
    char buf[4096];
    int fd;

    feed("x\n");
    feed("fail\n");
    fd = connect_to(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    read_all(fd, buf, sizeof(buf));
    ASSERT_CONTAINS(buf, "\r\n\r\n1\r\nx\r\n");
    ASSERT(strstr(buf, "0\r\n\r\n") == NULL); /* no last chunk: the client sees a cut */
    close(fd);
    wait_closes(1);
    http_server_stop(s);
}

TEST(http_server_stream_head_is_closed_unread)
{
    struct http_server *s = start();
    char buf[4096];
    int fd = connect_to(s, "HEAD /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");

    read_all(fd, buf, sizeof(buf));
    ASSERT_CONTAINS(buf, "HTTP/1.1 200 OK\r\n");
    close(fd);
    wait_closes(1);
    ASSERT_EQ(0, atomic_load(&reads));
    http_server_stop(s);
}

TEST(http_server_stream_client_gone)
{
    struct http_server *s = start();
    char buf[256] = "";
    int fd;

    feed("first\n");
    fd = connect_to(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    /* The headers and the first piece, then the client leaves while the stream waits. */
    while (strstr(buf, "first") == NULL) {
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_PEEK);
        ASSERT(n > 0);
        buf[n] = '\0';
    }
    close(fd);
    /* The next pieces cannot be delivered: the connection ends, close() runs once. */
    for (int i = 0; i < 200 && atomic_load(&closes) == 0; i++) {
        feed("more more more more more more more more more more more more more\n");
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    feed("end\n");
    wait_closes(1);
    http_server_stop(s);
}
