/* test_server.c: the libmicrohttpd wrapper over a real loopback socket.
 *
 * Each test starts the server on 127.0.0.1 port 0 with a tiny echo handler and talks to it with
 * the minimal blocking HTTP/1.1 client below. The server is ready when start returns, so there
 * are no sleeps; a receive timeout only turns a hang into a failure. */
#include "t.h"

#include "core/arena.h"
#include "core/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define RESP_MAX 65536

struct client_resp {
    int status;
    char head[RESP_MAX]; /* status line and headers, NUL-terminated */
    char body[RESP_MAX]; /* NUL-terminated */
    size_t body_len;
};

static atomic_int handler_calls;

/* Echoes the request line, the body length and the content type back as JSON. */
static void
echo(void *ctx, struct http_request *req, struct http_response *resp)
{
    const char *body, *query = "";

    (void)ctx;
    atomic_fetch_add(&handler_calls, 1);
    for (int i = 0; i < req->nquery; i++)
        query = arena_printf(req->arena, "%s%s%s=%s", query, i ? "&" : "", req->query_keys[i],
                             req->query_values[i]);
    body = arena_printf(
        req->arena, "{\"method\":\"%s\",\"path\":\"%s\",\"len\":%zu,\"type\":\"%s\"%s%s%s}",
        req->method, req->path, req->body_len, req->content_type ? req->content_type : "",
        req->nquery ? ",\"q\":\"" : "", query, req->nquery ? "\"" : "");
    http_json(resp, 200, body, strlen(body));
}

/* Echoes what the router relies on: the raw path and the new request headers; answers 204
 * with an extra header for OPTIONS. */
static void
echo_raw(void *ctx, struct http_request *req, struct http_response *resp)
{
    const char *body;

    (void)ctx;
    atomic_fetch_add(&handler_calls, 1);
    if (strcmp(req->method, "OPTIONS") == 0) {
        resp->status = 204;
        ASSERT_OK(http_response_header(resp, "X-Extra", "yes"));
        return;
    }
    body = arena_printf(req->arena,
                        "{\"path\":\"%s\",\"coding\":\"%s\",\"origin\":\"%s\",\"acrm\":\"%s\"}",
                        req->path, req->content_encoding ? req->content_encoding : "",
                        req->origin ? req->origin : "", req->acr_method ? req->acr_method : "");
    http_json(resp, 200, body, strlen(body));
}

static struct http_server *
start_server_with(struct http_server_config *cfg)
{
    struct sp_error err = {0};
    struct http_server *s = NULL;

    ASSERT_OK(http_server_start(cfg, &s, &err));
    ASSERT(s != NULL);
    ASSERT(http_server_port(s) > 0);
    return s;
}

static struct http_server *
start_server_handler(http_handler_fn handler)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1", .port = 0, .handler = handler, .ctx = NULL};

    return start_server_with(&cfg);
}

static struct http_server *
start_server(void)
{
    return start_server_handler(echo);
}

static int
client_connect(int port)
{
    struct sockaddr_in addr = {0};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ASSERT(fd >= 0);
    ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_OK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)));
    return fd;
}

static void
client_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        ASSERT(n > 0);
        buf += n;
        len -= (size_t)n;
    }
}

static void
client_send_str(int fd, const char *s)
{
    client_send(fd, s, strlen(s));
}

/* Reads one byte at a time until the end of the headers, so nothing of the next response is
 * consumed; fills out->head and out->status. */
static void
client_read_head_only(int fd, struct client_resp *out)
{
    size_t len = 0;

    while (len < 4 || memcmp(out->head + len - 4, "\r\n\r\n", 4) != 0) {
        ASSERT(len + 1 < sizeof(out->head));
        ASSERT_EQ(1, recv(fd, out->head + len, 1, 0));
        len++;
    }
    out->head[len] = '\0';
    ASSERT_EQ(0, strncmp(out->head, "HTTP/1.1 ", 9));
    out->status = (int)strtol(out->head + 9, NULL, 10);
}

/* client_read_head_only, then returns the Content-Length (which must be there). */
static size_t
client_read_head(int fd, struct client_resp *out)
{
    const char *cl;

    client_read_head_only(fd, out);
    cl = strstr(out->head, "Content-Length: ");
    ASSERT(cl != NULL);
    return (size_t)strtoul(cl + 16, NULL, 10);
}

static void
client_read_resp(int fd, struct client_resp *out)
{
    size_t want = client_read_head(fd, out), got = 0;

    ASSERT(want < sizeof(out->body));
    while (got < want) {
        ssize_t n = recv(fd, out->body + got, want - got, 0);
        ASSERT(n > 0);
        got += (size_t)n;
    }
    out->body[got] = '\0';
    out->body_len = got;
}

/* Whether a new connection to the loopback port gets an answer to a request (once quiesced,
 * the server closes new connections without answering). */
static int
can_connect(int port)
{
    struct sockaddr_in addr = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc;
    char buf[16];
    ssize_t n = 0;

    ASSERT(fd >= 0);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    static const char req[] = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    if (rc == 0 && write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1))
        n = read(fd, buf, sizeof(buf)); /* 0 (closed) or -1 (reset) when refused */
    close(fd);
    return rc == 0 && n > 0;
}

TEST(http_server_get_returns_json)
{
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT_CONTAINS(r->head, "Content-Type: application/json\r\n");
    ASSERT_STREQ("{\"method\":\"GET\",\"path\":\"/hello\",\"len\":0,\"type\":\"\",\"q\":\"x=1\"}",
                 r->body);
    ASSERT_EQ(1, atomic_load(&handler_calls));
    close(fd);
    http_server_stop(s);
    free(r);
}

/* Issue 4's paging routes read query arguments: decoded, in order, "" for a bare key; more than
 * HTTP_QUERY_MAX answers 400 without reaching the handler. */
TEST(http_server_query_arguments)
{
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "GET /p?channel=e%6Dail&cursor=email.5&flag HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT_CONTAINS(r->body, "\"q\":\"channel=email&cursor=email.5&flag=\"");
    client_send_str(fd, "GET /p?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9 HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(400, r->status);
    ASSERT_CONTAINS(r->body, "too many query parameters");
    /* the server keeps libmicrohttpd from decoding, so it decodes (and judges) each argument */
    client_send_str(fd, "GET /p?cursor=a%00b HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(400, r->status);
    ASSERT_CONTAINS(r->body, "malformed query string");
    client_send_str(fd, "GET /p?cursor=%zz HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(400, r->status);
    ASSERT_EQ(1, atomic_load(&handler_calls));
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_keeps_connection_alive)
{
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "POST /leads HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        "Content-Length: 7\r\n\r\n{\"a\":1}");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT(strstr(r->head, "Connection: close") == NULL);
    ASSERT_STREQ(
        "{\"method\":\"POST\",\"path\":\"/leads\",\"len\":7,\"type\":\"application/json\"}",
        r->body);
    client_send_str(fd, "POST /leads/1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT(strstr(r->head, "Connection: close") == NULL);
    ASSERT_STREQ("{\"method\":\"POST\",\"path\":\"/leads/1\",\"len\":5,\"type\":\"\"}", r->body);
    ASSERT_EQ(2, atomic_load(&handler_calls));
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_rejects_too_large_body)
{
    static const char want[] = "{\"message\":[\"request entity too large\"],"
                               "\"error\":\"Payload Too Large\",\"statusCode\":413}";
    size_t len = 2u * 1024 * 1024;
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    char *big = malloc(len);
    char head[128];
    int fd = client_connect(http_server_port(s));

    /* A declared length over the limit is refused on the headers, before any body is sent,
     * and the connection is closed (its unread body must not become a next request). */
    snprintf(head, sizeof(head), "POST /leads HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
             len);
    client_send_str(fd, head);
    client_read_resp(fd, r);
    ASSERT_EQ(413, r->status);
    ASSERT_STREQ(want, r->body);
    ASSERT(strstr(r->head, "Connection: close") != NULL);
    close(fd);
    /* A chunked body (no declared length) is read to its end, dropped, and answered 413. */
    memset(big, 'x', len);
    fd = client_connect(http_server_port(s));
    client_send_str(fd, "POST /leads HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 2; i++) {
        snprintf(head, sizeof(head), "%zx\r\n", len / 2);
        client_send_str(fd, head);
        client_send(fd, big, len / 2);
        client_send_str(fd, "\r\n");
    }
    client_send_str(fd, "0\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(413, r->status);
    ASSERT_STREQ(want, r->body);
    ASSERT_EQ(0, atomic_load(&handler_calls));
    close(fd);
    http_server_stop(s);
    free(big);
    free(r);
}

TEST(http_server_refuses_large_body_before_100_continue)
{
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "POST /leads HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n"
                        "Expect: 100-continue\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(413, r->status);
    ASSERT_CONTAINS(r->body, "\"statusCode\":413");
    ASSERT_EQ(0, atomic_load(&handler_calls));
    close(fd);
    http_server_stop(s);
    free(r);
}

/* Whether the server closes fd (end of file or reset) before the socket's receive timeout. */
static int
client_sees_close(int fd)
{
    char buf[256];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

TEST(http_server_refuses_ambiguous_framing_and_closes)
{
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "POST /leads HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(400, r->status);
    ASSERT_CONTAINS(r->body, "Content-Length and Transfer-Encoding together");
    ASSERT(client_sees_close(fd));
    close(fd);
    ASSERT_EQ(0, atomic_load(&handler_calls));
    http_server_stop(s);
    free(r);
}

TEST(http_server_body_budget_is_503_on_the_headers)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1", .port = 0, .handler = echo, .body_budget = 8192};
    struct http_server *s = start_server_with(&cfg);
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "POST /leads HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(503, r->status);
    ASSERT_CONTAINS(r->head, "Retry-After: 1");
    close(fd);
    /* A body that fits is served on a fresh connection: the refused one gave nothing back. */
    fd = client_connect(http_server_port(s));
    client_send_str(fd, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_closes_a_request_slower_than_the_header_deadline)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1", .port = 0, .handler = echo, .header_timeout_ms = 200};
    struct http_server *s = start_server_with(&cfg);
    int fd = client_connect(http_server_port(s)); /* 10 s receive timeout: a hang fails */

    client_send_str(fd, "GET / HTTP/1.1\r\nHo");
    ASSERT(client_sees_close(fd));
    close(fd);
    ASSERT_EQ(0, atomic_load(&handler_calls));
    http_server_stop(s);
}

TEST(http_server_rejects_bad_host)
{
    struct http_server_config cfg = {.host = "example.com", .port = 0, .handler = echo};
    struct sp_error err = {0};
    struct http_server *s = NULL;

    ASSERT_EQ(SP_EINVAL, http_server_start(&cfg, &s, &err));
    ASSERT(s == NULL);
    ASSERT_STREQ("host", err.field);
    ASSERT_STREQ("not a numeric address", err.msg);
    http_server_stop(NULL);
}

TEST(http_server_quiesce_then_stop)
{
    struct http_server_config cfg = {.host = "localhost", .port = 0, .handler = echo};
    struct sp_error err = {0};
    struct http_server *s = NULL;
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd;

    ASSERT_OK(http_server_start(&cfg, &s, &err));
    fd = client_connect(http_server_port(s));
    client_send_str(fd, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    http_server_quiesce(s);
    http_server_quiesce(s);
    ASSERT(!can_connect(http_server_port(s)));
    /* The open connection is still served until stop. */
    client_send_str(fd, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_frees_aborted_request)
{
    struct http_server *s = start_server();
    char buf[64] = "";
    int fd = client_connect(http_server_port(s));
    size_t len = 0;

    /* The interim 100 Continue proves the server holds per-request state for this request. */
    client_send_str(fd, "POST /leads HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n"
                        "Expect: 100-continue\r\n\r\n");
    while (len < 4 || memcmp(buf + len - 4, "\r\n\r\n", 4) != 0) {
        ASSERT(len + 1 < sizeof(buf));
        ASSERT_EQ(1, recv(fd, buf + len, 1, 0));
        len++;
    }
    ASSERT_CONTAINS(buf, "HTTP/1.1 100 Continue");
    client_send_str(fd, "{\"partial\":");
    close(fd);
    http_server_stop(s); /* ASan / valgrind report the state if it leaks */
    ASSERT_EQ(0, atomic_load(&handler_calls));
}

TEST(http_issue_7_server_keeps_path_encoded)
{
    struct http_server *s = start_server_handler(echo_raw);
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "GET /leads/a%2Freply%00x?q=%2F+x HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT_CONTAINS(r->body, "\"path\":\"/leads/a%2Freply%00x\"");
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_passes_cors_and_coding_headers)
{
    struct http_server *s = start_server_handler(echo_raw);
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    /* A second Content-Encoding must not hide behind a first, harmless one. */
    client_send_str(fd, "GET /x HTTP/1.1\r\nHost: t\r\nContent-Encoding: identity\r\n"
                        "Content-Encoding: gzip\r\nOrigin: https://a.example\r\n"
                        "Access-Control-Request-Method: PUT\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT_STREQ("{\"path\":\"/x\",\"coding\":\"identity, gzip\",\"origin\":\"https://a.example\","
                 "\"acrm\":\"PUT\"}",
                 r->body);
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_sends_extra_headers_and_bare_204)
{
    struct http_server *s = start_server_handler(echo_raw);
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));

    client_send_str(fd, "OPTIONS /x HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_head_only(fd, r); /* a 204 has no Content-Length to read a body by */
    ASSERT_EQ(204, r->status);
    ASSERT_CONTAINS(r->head, "X-Extra: yes\r\n");
    ASSERT(strstr(r->head, "Content-Type") == NULL);
    /* Nothing followed the head: the next response on the connection parses cleanly. */
    client_send_str(fd, "GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT_CONTAINS(r->body, "\"path\":\"/y\"");
    close(fd);
    http_server_stop(s);
    free(r);
}

TEST(http_server_head_sends_get_length_without_body)
{
    struct http_server *s = start_server();
    struct client_resp *r = calloc(1, sizeof(*r));
    int fd = client_connect(http_server_port(s));
    size_t len;

    client_send_str(fd, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    len = client_read_head(fd, r);
    ASSERT_EQ(200, r->status);
    ASSERT_EQ(strlen("{\"method\":\"HEAD\",\"path\":\"/hello\",\"len\":0,\"type\":\"\"}"), len);
    client_send_str(fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_resp(fd, r); /* would read the HEAD's body as a status line if one was sent */
    ASSERT_EQ(200, r->status);
    ASSERT_STREQ("{\"method\":\"GET\",\"path\":\"/hello\",\"len\":0,\"type\":\"\"}", r->body);
    close(fd);
    http_server_stop(s);
    free(r);
}
