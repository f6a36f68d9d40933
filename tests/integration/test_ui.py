"""The dashboard's files over the real socket (the C tests cover the routes in detail, the
browser test the page itself): no key needed for the page even with API_KEYS, while the API
still wants one; a 304 on the wire carries no body and announces the 200's length, so the
next request on the kept-alive connection is read correctly."""
import socket

from harness import HOST, assert_eq, http_request

KEY = "ui-test-key"


def test_page_without_key_api_with_key(env):
    srv = env.serve(API_KEYS=KEY)
    page = http_request(srv.port, "GET", "/")
    assert_eq(page.status, 200, "GET / without a key")
    assert_eq(page.header("Content-Type"), "text/html; charset=utf-8", "type")
    assert b"/ui/app.js" in page.body, page.body[:200]
    js = http_request(srv.port, "GET", "/ui/app.js")
    assert_eq((js.status, js.header("Content-Type")), (200, "text/javascript; charset=utf-8"),
              "app.js")
    cfg = http_request(srv.port, "GET", "/ui/config.json")
    assert_eq(cfg.json(), {"apiKey": "required"}, "config.json")
    assert_eq(http_request(srv.port, "GET", "/ui/nope.js").status, 404, "unknown file")
    head = http_request(srv.port, "HEAD", "/ui/style.css")
    assert_eq((head.status, head.body), (200, b""), "HEAD")
    assert_eq(head.header("Content-Length"), str(len(http_request(srv.port, "GET",
                                                                   "/ui/style.css").body)),
              "HEAD Content-Length")
    assert_eq(http_request(srv.port, "GET", "/jobs").status, 401, "the API wants the key")
    assert_eq(http_request(srv.port, "GET", "/jobs", headers={"X-API-Key": KEY}).status, 200,
              "the API with the key")


def test_304_then_next_request_on_the_connection(env):
    srv = env.serve()
    first = http_request(srv.port, "GET", "/ui/app.js")
    etag = first.header("ETag")
    assert etag and etag.startswith('"'), first.headers
    assert_eq(first.header("Cache-Control"), "no-cache", "Cache-Control")
    s = socket.create_connection((HOST, srv.port), timeout=5)
    try:
        s.sendall(("GET /ui/app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n"
                   "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % etag).encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 304 "), head
    assert ("content-length: %d" % len(first.body)).encode() in head.lower(), head
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:200]  # no body bytes after the 304
    assert rest.endswith(b'{"status":"ok"}'), rest
