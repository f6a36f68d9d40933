"""GET /events on the real binary: server-sent events of every lead's timeline.

Events arrive in feed order (lead_events.seq) as leads are captured; a reconnection with
Last-Event-ID gets exactly the events it missed (none lost, none repeated), also from another
serve process; ?leadId= keeps one lead's; events committed by a separate `worker` process reach
a stream on the `serve` process; 200 streams stay open while the API answers and every one gets
every event; the API key is taken from X-API-Key or ?key= and never logged; idle streams get
heartbeat comments; SIGTERM ends the streams and the process exits in its usual time.

The client below speaks HTTP/1.1 on a raw socket (chunked decoding, SSE parsing) so that
hundreds of streams can be drained from one thread with selectors."""
import json
import selectors
import signal
import socket
import time
import urllib.parse

from harness import (HOST, assert_eq, create_lead, details, http_request, parallel,
                     wait_all_settled)


class Stream:
    """One GET /events connection: the status and headers, then the events as they come
    (self.events: dicts with id, event, data parsed from JSON), comments, and EOF."""

    def __init__(self, port, lead_id=None, last_event_id=None, key=None, header_key=None,
                 timeout=10.0):
        query = {}
        if lead_id:
            query["leadId"] = lead_id
        if key:
            query["key"] = key
        path = "/events" + ("?" + urllib.parse.urlencode(query) if query else "")
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (HOST, port),
                 "Accept: text/event-stream"]
        if last_event_id:
            lines.append("Last-Event-ID: %s" % last_event_id)
        if header_key:
            lines.append("X-API-Key: %s" % header_key)
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.raw = b""
        self.body = b""
        self.events = []
        self.comments = []
        self.retry = None
        self.eof = False
        self.chunked = False
        self.length = None
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("connection closed before the headers: %r" % head)
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for h in header_lines:
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if "content-length" in self.headers:
            self.length = int(self.headers["content-length"])
        self._feed(rest)
        if self.status != 200:
            while not self.eof:
                self.pump(timeout)

    def json(self):
        return json.loads(self.body.decode())

    def fileno(self):
        return self.sock.fileno()

    def _feed(self, data):
        if not self.chunked:
            self.body += data
            if self.length is not None and len(self.body) >= self.length:
                self.eof = True
            return
        self.raw += data
        while True:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                break
            size = int(line.split(b";")[0], 16)
            if size == 0:
                self.eof = True
                self.raw = b""
                break
            if len(rest) < size + 2:
                break
            self.body += rest[:size]
            self.raw = rest[size + 2:]
        self._parse()

    def _parse(self):
        while b"\n\n" in self.body:
            frame, _, self.body = self.body.partition(b"\n\n")
            ev = {}
            data = []
            for line in frame.decode("utf-8").split("\n"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "":
                    self.comments.append(value)
                elif field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry = int(value)
                else:
                    ev[field] = value
            if data:
                ev["data"] = json.loads("\n".join(data))
                self.events.append(ev)

    def pump(self, timeout=0.5):
        """One read (up to `timeout`); False at EOF or on a timeout."""
        if self.eof:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        if not data:
            self.eof = True
            self._parse()
            return False
        self._feed(data)
        return True

    def wait(self, predicate, timeout=10.0, what="stream condition"):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.eof:
                raise AssertionError("stream ended while waiting for %s" % what)
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s (%d events so far)"
                                     % (what, len(self.events)))
            self.pump(0.2)

    def ids(self):
        return [e["id"] for e in self.events]

    def close(self):
        self.sock.close()


def capture_many(port, tag, n, first_phone):
    """n captures in parallel (8 client threads, a connection each), each with an email and a
    distinct phone; returns their lead ids."""
    def one(i):
        r = http_request(port, "POST", "/leads", {
            "name": "%s %d" % (tag, i), "email": "%s%d@example.com" % (tag, i),
            "phone": "+1555%07d" % (first_phone + i)})
        assert r.status == 201, r
        return r.json()["id"]
    out = parallel(one, list(range(n)), threads=8)
    for r in out:
        if isinstance(r, Exception):
            raise r
    return out


def feed_ids(env):
    """Every event id in feed order, from the database."""
    return [str(r[0]) for r in env.db("SELECT id FROM lead_events ORDER BY seq")]


def wait_stream_has(stream, ids, timeout=15.0):
    want = set(ids)
    stream.wait(lambda s: want <= set(s.ids()), timeout, "%d events" % len(want))


def check_event(ev):
    """An event frame as documented: id, event (its type) and data as GET /leads/:id shows."""
    d = ev["data"]
    assert_eq(set(d), {"id", "type", "leadId", "correlationIds", "payload", "createdAt"},
              "data members")
    assert_eq(ev["id"], d["id"], "id line")
    assert_eq(ev["event"], d["type"], "event line")


def test_events_in_order_as_leads_are_captured(env):
    srv = env.serve(EVENTS_HEARTBEAT_MS="200")
    s = Stream(srv.port)
    assert_eq(s.status, 200, "status")
    assert_eq(s.headers.get("content-type"), "text/event-stream", "content type")
    assert_eq(s.headers.get("cache-control"), "no-cache", "cache control")
    leads = [create_lead(srv, "Ana %d" % i, "ana%d@example.com" % i, "+1555000%04d" % i)["id"]
             for i in range(5)]
    wait_all_settled(srv, leads, 15)
    want = feed_ids(env)
    wait_stream_has(s, want)
    # Exactly the feed, in its order: each lead's timeline in order, and the leads interleaved
    # as they were committed.
    assert_eq(s.ids(), want, "stream against the table's order")
    for ev in s.events:
        check_event(ev)
    for lid in leads:
        assert_eq([e["id"] for e in s.events if e["data"]["leadId"] == lid],
                  [e["id"] for e in details(srv, lid)["events"]], "lead %s's timeline" % lid)
    assert_eq(s.retry, 2000, "retry field")
    # Idle: heartbeat comments.
    s.wait(lambda st: "ping" in st.comments, 5, "a heartbeat")
    s.close()
    srv.stop()


def test_reconnect_gets_exactly_the_missed_events(env):
    """A client drops, events go on, it reconnects with Last-Event-ID: to the same process, and
    to another serve process on the same database (its hub is a different one)."""
    srv = env.serve()
    other = env.serve("--no-worker")
    s1 = Stream(srv.port)
    first = capture_many(srv.port, "a", 10, 0)
    s1.wait(lambda s: len(s.events) >= 7, 15, "some events")
    seen = s1.ids()[:7]
    s1.close()  # the client goes away after its 7th event (it may have read more: dropped)
    second = capture_many(srv.port, "b", 10, 100)
    wait_all_settled(srv, first + second, 20)
    want = feed_ids(env)
    assert want[:7] == seen, "the first stream's events are the feed's first 7"
    s2 = Stream(srv.port, last_event_id=seen[-1])
    wait_stream_has(s2, want[7:])
    assert_eq(seen + s2.ids(), want, "first stream + resumed stream")
    s2.close()
    # The other process, resumed from the middle: the same answer.
    s3 = Stream(other.port, last_event_id=want[20])
    wait_stream_has(s3, want[21:])
    assert_eq(s3.ids(), want[21:], "resumed on the other process")
    s3.close()
    other.stop()
    srv.stop()


def test_lead_filter(env):
    srv = env.serve()
    a = create_lead(srv, "A", "a@example.com", "+15550000001")["id"]
    s = Stream(srv.port, lead_id=a)
    assert_eq(s.status, 200, "status")
    b = create_lead(srv, "B", "b@example.com", "+15550000002")["id"]
    r = srv.post("/leads/%s/reply" % a, {"channel": "email", "messageContent": {
        "from": "a@example.com", "subject": "Hi", "body": "How much?"}})
    assert_eq(r.status, 201, "reply")
    # A: two welcomes and the AI's answer to the reply, all sent.
    wait_all_settled(srv, [a], 15, nout=3)
    wait_all_settled(srv, [b], 15)
    want = [e["id"] for e in details(srv, a)["events"]]
    s.wait(lambda st: want[-1] in st.ids(), 15, "A's last event")
    # Only A's events, in its timeline's order; every one from the stream's start (A's welcome
    # sends may have come before or after it opened).
    assert all(e["data"]["leadId"] == a for e in s.events), s.events
    got = s.ids()
    assert_eq(got, want[want.index(got[0]):], "A's timeline, in order")
    assert "reply_received" in [e["event"] for e in s.events]
    # Resumed on the lead from its first event: the rest of its timeline.
    s2 = Stream(srv.port, lead_id=a, last_event_id=want[0])
    wait_stream_has(s2, want[1:])
    assert_eq(s2.ids(), want[1:], "resumed on the lead")
    # Refusals: JSON errors, no stream.
    bad = Stream(srv.port, lead_id="not-a-uuid")
    assert_eq((bad.status, bad.json()["message"]), (400, ["leadId must be a UUID"]), "bad leadId")
    unknown = Stream(srv.port, lead_id="2728542f-1069-401c-a54f-4ab8a3a46a06")
    assert_eq(unknown.status, 404, "unknown lead")
    gone = Stream(srv.port, last_event_id="2728542f-1069-401c-a54f-4ab8a3a46a06")
    assert_eq(gone.status, 404, "unknown Last-Event-ID")
    for st in (s, s2, bad, unknown, gone):
        st.close()
    srv.stop()


def test_events_committed_by_a_worker_process_reach_serve(env):
    """serve --no-worker takes the captures; a separate worker process sends the messages and
    commits message_sent / status_changed: those reach the stream on serve (PostgreSQL:
    NOTIFY from the worker; SQLite: serve's poll of the table)."""
    srv = env.serve("--no-worker")
    s = Stream(srv.port)
    leads = [create_lead(srv, "W %d" % i, "w%d@example.com" % i, "+1555100%04d" % i)["id"]
             for i in range(3)]
    wrk = env.worker()
    wait_all_settled(srv, leads, 20)
    want = feed_ids(env)
    wait_stream_has(s, want)
    assert_eq(s.ids(), want, "stream against the table's order")
    sent = [e for e in s.events if e["event"] == "message_sent"]
    assert_eq(len(sent), 6, "message_sent events (committed by the worker process)")
    s.close()
    wrk.stop()
    srv.stop()


def test_200_streams_while_the_api_answers(env):
    n_streams, n_leads = 200, 20
    srv = env.serve(HTTP_MAX_CONNS_PER_IP="400")
    streams = [Stream(srv.port) for _ in range(n_streams)]
    assert all(s.status == 200 for s in streams)
    sel = selectors.DefaultSelector()
    for s in streams:
        s.sock.setblocking(False)
        sel.register(s.sock, selectors.EVENT_READ, s)

    def drain(t):
        for key, _ in sel.select(t):
            st = key.data
            try:
                data = st.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                st.eof = True
                sel.unregister(st.sock)
                continue
            st._feed(data)

    # The API answers while the streams are open (and being written to).
    latencies = []
    leads = []
    for i in range(n_leads):
        t0 = time.monotonic()
        leads.append(create_lead(srv, "S %d" % i, "s%d@example.com" % i, "+1555200%04d" % i)["id"])
        latencies.append(time.monotonic() - t0)
        r = srv.get("/health")
        assert_eq(r.status, 200, "health")
        drain(0)
    wait_all_settled(srv, leads, 20)
    want = feed_ids(env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(s.ids() == want for s in streams):
        drain(0.2)
    counts = sorted(len(s.events) for s in streams)
    assert_eq((counts[0], counts[-1]), (len(want), len(want)), "events per stream (min, max)")
    assert all(s.ids() == want for s in streams), "every stream: every event, in order"
    latencies.sort()
    print("  %d streams x %d events; POST /leads latency max %.1f ms"
          % (n_streams, len(want), latencies[-1] * 1e3))
    assert latencies[-1] < 2.0, latencies
    t0 = time.monotonic()
    srv.stop()  # SIGTERM with 200 streams open: they end, the process exits in its usual time
    took = time.monotonic() - t0
    for _ in range(50):
        drain(0.1)
        if all(s.eof for s in streams):
            break
    assert all(s.eof for s in streams), "every stream ended at SIGTERM"
    print("  SIGTERM to exit with %d open streams: %.0f ms" % (n_streams, took * 1e3))
    assert took < 5.0, took
    for s in streams:
        s.close()


def test_api_key_header_or_query_never_logged(env):
    key = "sse-test-key-0123456789abcdef"
    srv = env.serve(API_KEYS=key, LOG_LEVEL="debug")
    none = Stream(srv.port)
    assert_eq(none.status, 401, "no key")
    assert "key parameter" in none.json()["message"], none.json()
    wrong = Stream(srv.port, key="nope")
    assert_eq(wrong.status, 401, "wrong key")
    by_query = Stream(srv.port, key=key)
    assert_eq(by_query.status, 200, "?key=")
    by_header = Stream(srv.port, header_key=key)
    assert_eq(by_header.status, 200, "X-API-Key")
    # ?key= is for the stream only: other routes keep the header.
    r = srv.get("/leads/2728542f-1069-401c-a54f-4ab8a3a46a06?key=" + key)
    assert_eq(r.status, 401, "?key= on another route")
    lead = srv.post("/leads", {"name": "K", "email": "k@example.com"},
                    headers={"X-API-Key": key})
    assert_eq(lead.status, 201, "capture with the key")
    for st in (by_query, by_header):
        st.wait(lambda s: any(e["event"] == "lead_added" for e in s.events), 10, "lead_added")
    for st in (none, wrong, by_query, by_header):
        st.close()
    srv.stop()
    assert key not in srv.log(), "the API key appears in the log"


def test_sigterm_with_a_stream_resumable_elsewhere(env):
    """The process stops: its streams end cleanly (the terminating chunk), and a client
    resumes on a new process from its last id without loss."""
    srv = env.serve()
    s = Stream(srv.port)
    lid = create_lead(srv, "T", "t@example.com", "+15550009999")["id"]
    wait_all_settled(srv, [lid], 15)
    wait_stream_has(s, feed_ids(env))
    last = s.ids()[-1]
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    s.wait(lambda st: st.eof, 5, "the end of the stream")
    assert_eq(srv.wait_exit(10), 0, "exit status")
    print("  SIGTERM to exit with a stream open: %.0f ms" % ((time.monotonic() - t0) * 1e3))
    srv2 = env.serve()
    lid2 = create_lead(srv2, "U", "u@example.com", None)["id"]
    s2 = Stream(srv2.port, last_event_id=last)
    wait_all_settled(srv2, [lid2], 15, nout=1)
    want = feed_ids(env)
    wait_stream_has(s2, want[want.index(last) + 1:])
    assert_eq(s.ids() + s2.ids(), want, "across the restart")
    s2.close()
    srv2.stop()
