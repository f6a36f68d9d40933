"""Hostile clients on the raw socket (hardening issue, points 2, 3, 5 and 6): slow and partial
requests, too many connections from one address, bodies that would take all the memory,
ambiguous framing, and /health while every database write is stuck.

Transport only: each test runs on SQLite alone (env.require_backend) and with the limits
lowered through settings so the whole file stays well under a minute. Every wait polls a
condition against a deadline; pacing a slow client is done by waiting for the server to close
the socket (a recv with a short timeout), never by sleeping and hoping.
"""
import json
import select
import socket
import sqlite3
import threading
import time

import pytest

from harness import HOST, assert_eq, http_request, sanitized_binary, wait_until

OTHER_HOST = "127.0.0.2"  # another loopback client address; the server listens on 127.0.0.1


def connect(port, source=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((HOST, port))
    return s


def still_open(s):
    """Whether the server has not closed s, without waiting and without reading: a socket with
    a timeout waits for data before any recv, MSG_DONTWAIT or not, so select() asks first."""
    if not select.select([s], [], [], 0)[0]:
        return True  # nothing to read: neither data nor an end
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def read_until_close(s, timeout=5.0):
    """Everything the server sends until it closes the connection (or the deadline)."""
    deadline = time.monotonic() + timeout
    chunks = []
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except OSError:  # reset: the server closed with our data unread; closed all the same
            return b"".join(chunks), True
        if not b:
            return b"".join(chunks), True
        chunks.append(b)
    return b"".join(chunks), False


def parse_response(raw):
    """(status, headers dict lower-cased, body bytes, number of status lines) of one response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines and lines[0].startswith(b"HTTP/1.1 ") else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body, raw.count(b"HTTP/1.1 ")


def closed_within(s, timeout, drip=None, interval=0.1):
    """Waits until the server closes `s`, sending one byte of `drip` every `interval` s
    meanwhile (a slow client). Returns the seconds it took, or None when still open."""
    t0 = time.monotonic()
    pos = 0
    while time.monotonic() - t0 < timeout:
        s.settimeout(interval)
        try:
            b = s.recv(65536)
            if not b:
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0
        if drip is not None and pos < len(drip):
            try:
                s.send(drip[pos:pos + 1])
            except OSError:
                return time.monotonic() - t0
            pos += 1
    return None


def assert_refused(env_port, raw, status, what):
    s = connect(env_port)
    try:
        s.sendall(raw)
        out, closed = read_until_close(s, 5.0)
    finally:
        s.close()
    got, headers, body, nstatus = parse_response(out)
    assert_eq(got, status, "%s: status of %r" % (what, out[:200]))
    assert_eq(nstatus, 1, "%s: one status line in %r" % (what, out[:300]))
    assert headers.get("content-type", "").startswith("application/json"), (what, out[:300])
    assert_eq(json.loads(body)["statusCode"], status, "%s: statusCode" % what)
    assert closed, "%s: the connection must be closed after %d" % (what, status)


def test_issue_6_ambiguous_framing_is_400_and_closes(env):
    env.require_backend("sqlite", "transport only")
    srv = env.serve()
    lead = b'{"name":"Ana","email":"ana@example.com"}'
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = {
        "Content-Length with Transfer-Encoding": (
            b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400),
        "two Content-Length": (
            b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nContent-Length: %d\r\n\r\n" % len(lead) + lead, 400),
        "space before the colon": (
            b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding : chunked\r\n\r\n%x\r\n" % len(smuggled) + smuggled
            + b"\r\n0\r\n\r\n", 400),
        "HTTP/1.1 without Host": (b"GET /health HTTP/1.1\r\n\r\n", 400),
        "two Host": (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        "NUL in the method": (b"GE\x00T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        "gzip, chunked": (
            b"POST /leads HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"0\r\n\r\n", 501),
        "identity": (b"POST /leads HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
                     501),
    }
    for what, (raw, status) in cases.items():
        assert_refused(srv.port, raw, status, what)
    assert_eq(srv.get("/health").status, 200, "still serving")


def test_issue_3_declared_body_over_the_limit_is_413_before_the_body(env):
    env.require_backend("sqlite", "transport only")
    srv = env.serve()
    for expect in (b"", b"Expect: 100-continue\r\n"):
        # Only the headers are sent: the answer must come without the body.
        raw = (b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2000000\r\n" + expect + b"\r\n")
        assert_refused(srv.port, raw, 413, "declared 2 MB %r" % expect)


def test_issue_3_body_budget_answers_503_at_once(env):
    env.require_backend("sqlite", "transport only")
    srv = env.serve(HTTP_BODY_BUDGET_MB="1")
    hog = connect(srv.port)
    try:
        # Holds almost the whole 1 MiB budget with a body it never finishes. The server sends
        # "100 Continue" once the headers are accepted, so the budget is held from then on.
        hog.sendall(b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            b = hog.recv(4096)
            assert b, "the hog's connection was closed: %r" % got
            got += b
        assert got.startswith(b"HTTP/1.1 100"), "expected 100 Continue, got %r" % got
        hog.sendall(b" " * 1000)
        raw = (b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 200000\r\n\r\n")

        def refused():
            s = connect(srv.port)
            try:
                s.sendall(raw)
                out, closed = read_until_close(s, 2.0)
            finally:
                s.close()
            status, headers, body, _ = parse_response(out)
            return (status, headers, body, closed) if status == 503 else None

        status, headers, body, closed = wait_until(refused, 5.0, "503 while the budget is held")
        assert_eq(json.loads(body)["statusCode"], 503, "JSON error body")
        assert headers.get("retry-after"), "Retry-After on the 503: %r" % (headers,)
        assert closed, "connection closed after the early 503"
    finally:
        hog.close()
    # The hog's budget comes back when its connection ends.
    lead = {"name": "Ana", "email": "budget@example.com"}
    wait_until(lambda: http_request(srv.port, "POST", "/leads", body=lead).status == 201, 5.0,
               "a capture once the budget is free")


def test_issue_2_headers_must_complete_within_the_deadline(env):
    env.require_backend("sqlite", "transport only")
    srv = env.serve(HTTP_HEADER_TIMEOUT_MS="600")
    s = connect(srv.port)
    try:
        # One byte every 100 ms: the idle timeout alone would never fire.
        drip = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        took = closed_within(s, 5.0, drip=drip)
    finally:
        s.close()
    assert took is not None, "a slow header block was still open after 5 s"
    assert took < 3.0, "closed only after %.1f s (deadline 0.6 s)" % took
    assert_eq(srv.get("/health").status, 200, "still serving")


def test_issue_2_body_below_the_minimum_rate_is_cut(env):
    env.require_backend("sqlite", "transport only")
    srv = env.serve(HTTP_HEADER_TIMEOUT_MS="500", HTTP_BODY_MIN_RATE="1000")
    s = connect(srv.port)
    try:
        s.sendall(b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000\r\n\r\n")
        took = closed_within(s, 6.0, drip=b" " * 5000)  # ~10 bytes/s
    finally:
        s.close()
    assert took is not None, "a 10 bytes/s body was still open after 6 s"


def test_issue_2_per_address_cap_and_other_addresses_served(env):
    env.require_backend("sqlite", "transport only")
    # The holders send one byte of a request and no more: the header timeout must not close
    # them while the probes run (on a loaded machine this test once outlived the default 10 s).
    srv = env.serve(HTTP_MAX_CONNS_PER_IP="8", HTTP_HEADER_TIMEOUT_MS="120000")
    held = []
    try:
        for _ in range(8):
            held.append(connect(srv.port))
        for s in held:
            s.sendall(b"G")

        def over_cap_closed():
            # A probe the server accepted before one of the holders takes that holder's place
            # under the cap, and the holder is the one refused: connect it again, so that
            # eight holders are open before each probe.
            for i, h in enumerate(held):
                if not still_open(h):
                    h.close()
                    held[i] = connect(srv.port)
                    held[i].sendall(b"G")
            s = connect(srv.port)
            try:
                # Connection: close, so a probe served before every holder was accepted (a
                # loaded machine) comes back at once and the next probe is tried.
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                out, closed = read_until_close(s, 2.0)
            except OSError:
                return True
            finally:
                s.close()
            return closed and not out

        wait_until(over_cap_closed, 20.0, "a 9th connection from 127.0.0.1 to be refused")
        c = connect(srv.port, source=OTHER_HOST)
        try:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out, _ = read_until_close(c, 5.0)
        finally:
            c.close()
        assert_eq(parse_response(out)[0], 200, "/health from %s during the attack" % OTHER_HOST)
    finally:
        for s in held:
            s.close()


def test_issue_5_health_does_not_wait_behind_blocked_handlers(env):
    env.require_backend("sqlite", "needs a SQLite write lock held from the test")
    srv = env.serve(HTTP_THREADS="2", WORKER_CONCURRENCY="1")
    db = sqlite3.connect(env.db_path, timeout=10, isolation_level=None)
    posts = []
    try:
        db.execute("BEGIN IMMEDIATE")  # every capture now waits for the lock (busy timeout)
        for i in range(6):
            s = connect(srv.port)
            body = json.dumps({"name": "Blocked", "email": "b%d@example.com" % i}).encode()
            s.sendall(b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            posts.append(s)
        t0 = time.monotonic()
        r = http_request(srv.port, "GET", "/health", timeout=10)
        took = time.monotonic() - t0
        assert_eq(r.status, 200, "/health")
        # Behind the captures it waits for the database's busy timeout (5 s today, 2 s once
        # database waits are bounded); 1.5 s leaves margin for a loaded or sanitized run.
        assert took < 1.5, "/health took %.2f s behind blocked captures" % took
    finally:
        db.execute("ROLLBACK")
        db.close()
    for s in posts:
        s.settimeout(10.0)
        out = s.recv(4096)  # the first response, once the lock is gone
        assert parse_response(out)[0] in (201, 503), "capture after the lock: %r" % out[:200]
        s.close()


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_issue_3_memory_returns_after_partial_bodies(env):
    env.require_backend("sqlite", "transport only")
    if sanitized_binary():
        pytest.skip("ASan's allocator keeps freed memory in quarantine: RSS says nothing there")
    srv = env.serve()
    n = 48
    base = rss_mb(srv.pid)
    # The first round frees 1 MiB buffers, which made glibc raise its mmap threshold to that
    # size; the later rounds' smaller buffers then came from the heap and stayed resident.
    for rnd, size in enumerate((1048576, 600000, 600000)):
        conns = []
        try:
            for _ in range(n):
                s = connect(srv.port)
                s.sendall(b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % size + b" " * (size - 500))
                conns.append(s)
            wait_until(lambda: rss_mb(srv.pid) >= base + n * size // 2 ** 20 * 6 // 10, 10.0,
                       "round %d: the partial bodies to be buffered" % rnd)
        finally:
            for s in conns:
                s.close()
        wait_until(lambda: rss_mb(srv.pid) <= base + 10, 5.0,
                   "round %d: RSS back within 10 MB of %d MB" % (rnd, base))
