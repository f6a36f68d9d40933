"""GET /metrics, parsed with Prometheus's own parser (prometheus_client, Debian's
python3-prometheus-client), and the rate limits (RATE_LIMIT_RPS, RATE_LIMIT_BURST).

- After captures, a reply and failed sends (MOCK_FAIL_FIRST=1 with JOB_ATTEMPTS=2: every first
  attempt fails and is retried; bounce@ fails for good), the counters and gauges have the
  expected values: requests by route pattern and status (an unknown path as "unmatched"), sends
  by channel and outcome, jobs by name and state, the outbox backlog, the pool; the histogram's
  buckets are cumulative and its _count equals the requests counter of its route and method.
- A token bucket per API key: the burst, then 429 with Retry-After and the RateLimit-* headers
  (also on allowed answers), refilled over time; another key and another client address have
  buckets of their own; /health, the webhooks and the unsubscribe links are never limited;
  /metrics needs the key (X-API-Key or Authorization: Bearer).
"""
import http.client
import time

import pytest

from harness import HOST, assert_eq, create_lead, wait_until

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # a missing package fails the script, never skips it
    pytest.fail("test_metrics.py needs prometheus_client: install python3-prometheus-client "
                "(scripts/deps.sh test)", pytrace=False)

UNKNOWN_LEAD = "/leads/0193d2c4-2c18-7a49-8e4b-1e179df6e4c0"


def scrape(srv, headers=None):
    """{(sample name, frozenset of labels): value} of one GET /metrics."""
    r = srv.get("/metrics", headers=headers)
    assert_eq(r.status, 200, "GET /metrics status (%r)" % (r,))
    ctype = r.header("Content-Type")
    assert ctype.startswith("text/plain; version=0.0.4"), "Content-Type %r" % (ctype,)
    out = {}
    for family in text_string_to_metric_families(r.body.decode("utf-8")):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, "sample %r twice" % (key,)
            out[key] = s.value
    return out


def value(m, sample, **labels):
    return m.get((sample, frozenset(labels.items())))


def series(m, sample):
    """[(labels dict, value)] of every sample called `sample`."""
    return [(dict(k[1]), v) for k, v in m.items() if k[0] == sample]


class Counting:
    """A server whose GETs of lead details are counted (they are in the metrics too)."""

    def __init__(self, srv):
        self.srv, self.gets = srv, 0

    def details(self, lead_id):
        self.gets += 1
        r = self.srv.get("/leads/" + lead_id)
        assert_eq(r.status, 200, "GET /leads/%s (%r)" % (lead_id, r))
        return r.json()


def settled(c, lead_id, nout, status):
    """Details once the lead's nout outbound messages all have `status` and no job is waiting,
    delayed or active."""
    d = c.details(lead_id)
    outs = [m for ms in d["messagesByChannel"].values() for m in ms if m["direction"] == "outbound"]
    if len(outs) == nout and all(m["status"] == status for m in outs) and \
            all(j["state"] in ("completed", "failed") for j in d["jobs"]):
        return d
    return None


def test_counters_and_gauges(env):
    srv = env.serve(MOCK_FAIL_FIRST=1, JOB_ATTEMPTS=2, JOB_BACKOFF_MS=10)
    c = Counting(srv)
    ana = create_lead(srv, "Ana", email="ana@example.com", phone="+15550001111")["id"]
    bo = create_lead(srv, "Bo", email="bounce@example.com")["id"]
    r = srv.post("/leads/%s/reply" % ana, {"channel": "email", "messageContent": {
        "from": "ana@example.com", "subject": "Welcome, Ana!", "body": "How much is it?"}})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    assert_eq(srv.get(UNKNOWN_LEAD).status, 404, "unknown lead")
    assert_eq(srv.get("/nope/%d" % time.time_ns()).status, 404, "unknown path")
    # Ana: the two welcomes and the AI's answer by email, each failed once then sent; Bo's
    # welcome refused for good.
    wait_until(lambda: settled(c, ana, 3, "sent"), 20, "Ana's three messages sent")
    wait_until(lambda: settled(c, bo, 1, "failed"), 20, "Bo's welcome failed")

    m = scrape(srv)
    req = "salespad_http_requests_total"
    assert_eq(value(m, req, route="/leads", method="POST", status="201"), 2, "captures")
    assert_eq(value(m, req, route="/leads/:id/reply", method="POST", status="201"), 1, "reply")
    assert_eq(value(m, req, route="/leads/:id", method="GET", status="200"), c.gets, "details")
    assert_eq(value(m, req, route="/leads/:id", method="GET", status="404"), 1, "unknown lead")
    assert_eq(value(m, req, route="unmatched", method="GET", status="404"), 1, "unknown path")
    for labels, _ in series(m, req):  # bounded: patterns only, never a raw path
        assert labels["route"] == "unmatched" or labels["route"].startswith("/"), labels
        assert "0193d2c4" not in labels["route"] and "nope" not in labels["route"], labels

    # The histogram: cumulative buckets ending at +Inf = _count = the requests of its route.
    hist = "salespad_http_request_duration_seconds"
    counts = series(m, hist + "_count")
    assert len(counts) >= 4, counts
    for labels, count in counts:
        buckets = sorted(((float(l["le"]), v) for l, v in series(m, hist + "_bucket")
                          if l["route"] == labels["route"] and l["method"] == labels["method"]))
        assert_eq(len(buckets), 14, "buckets of %r" % (labels,))
        assert_eq(buckets[0][0], 0.001, "first bound")
        assert_eq(buckets[-2][0], 10.0, "last finite bound")
        values = [v for _, v in buckets]
        assert values == sorted(values), "buckets not cumulative: %r" % (buckets,)
        assert_eq(buckets[-1], (float("inf"), count), "+Inf bucket of %r" % (labels,))
        total = sum(v for l, v in series(m, req)
                    if l["route"] == labels["route"] and l["method"] == labels["method"])
        assert_eq(count, total, "_count vs requests of %r" % (labels,))
        assert value(m, hist + "_sum", **labels) >= 0

    sends = "salespad_sends_total"
    assert_eq(value(m, sends, channel="email", outcome="retried"), 2, "email retried")
    assert_eq(value(m, sends, channel="email", outcome="sent"), 2, "email sent")
    assert_eq(value(m, sends, channel="email", outcome="failed"), 1, "email failed")
    assert_eq(value(m, sends, channel="whatsapp", outcome="retried"), 1, "whatsapp retried")
    assert_eq(value(m, sends, channel="whatsapp", outcome="sent"), 1, "whatsapp sent")
    assert_eq(value(m, sends, channel="whatsapp", outcome="failed"), 0, "whatsapp failed")

    jobs = {(l["name"], l["state"]): v for l, v in series(m, "salespad_jobs")}
    assert_eq(jobs[("send-message", "completed")], 3, "send-message completed")
    assert_eq(jobs[("send-message", "failed")], 1, "send-message failed")
    assert_eq(jobs[("generate-reply", "completed")], 1, "generate-reply completed")
    for state in ("waiting", "delayed", "active"):
        assert_eq(jobs[("send-message", state)], 0, "send-message " + state)
    assert_eq(value(m, "salespad_outbox_backlog"), 0, "outbox backlog")
    assert_eq(value(m, "salespad_outbox_oldest_age_seconds"), 0, "outbox oldest age")

    size, in_use = value(m, "salespad_db_pool_size"), value(m, "salespad_db_pool_in_use")
    assert_eq(size, 16 + 4 + 2, "pool size (HTTP_THREADS + WORKER_CONCURRENCY + 2)")
    assert 0 <= in_use <= size, "pool in use %r of %r" % (in_use, size)
    assert_eq(value(m, "salespad_db_pool_waiting"), 0, "pool waiting")
    assert_eq(value(m, "salespad_database_up"), 1, "database up")
    assert_eq(value(m, "salespad_build_info", version=srv_version(env)), 1, "build info")

    # The first scrape is in the second one, under its own route.
    m2 = scrape(srv)
    assert_eq(value(m2, req, route="/metrics", method="GET", status="200"), 1, "the scrape")
    srv.stop()


def srv_version(env):
    return env.run_cli("--version").stdout.split()[1]


def get_from(port, path, source, headers=None):
    """One GET from the loopback address `source` (Linux routes all of 127/8 to lo), so that
    the server sees another client address."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def limit_headers(r):
    return tuple(r.header(h) for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))


def test_rate_limits(env):
    # k1 is the harness's (its readiness poll took one of k1's tokens): the cases use k2, k3.
    srv = env.serve(API_KEYS="k1,k2,k3", RATE_LIMIT_RPS=2, RATE_LIMIT_BURST=3)
    k2, k3 = {"X-API-Key": "k2"}, {"X-API-Key": "k3"}

    for remaining in (2, 1, 0):  # the burst: answered as usual, with the headers
        r = srv.get(UNKNOWN_LEAD, headers=k2)
        assert_eq(r.status, 404, "within the burst (%r)" % (r,))
        assert_eq(limit_headers(r)[:2], ("3", str(remaining)), "RateLimit-Limit, -Remaining")
        assert int(limit_headers(r)[2]) >= 1, "RateLimit-Reset %r" % (limit_headers(r),)
    r = srv.get(UNKNOWN_LEAD, headers=k2)
    refused_at = time.monotonic()
    assert_eq(r.status, 429, "past the burst (%r)" % (r,))
    assert_eq(r.json(), {"message": ["Too many requests: retry in 1 s"],
                         "error": "Too Many Requests", "statusCode": 429}, "429 body")
    assert_eq(r.header("Retry-After"), "1", "Retry-After (a token every 0.5 s)")
    assert_eq(limit_headers(r)[:2], ("3", "0"), "RateLimit-Limit, -Remaining on the 429")
    assert 1 <= int(r.header("RateLimit-Reset")) <= 2, limit_headers(r)

    # Another key has a bucket of its own.
    r = srv.get(UNKNOWN_LEAD, headers=k3)
    assert_eq((r.status, r.header("RateLimit-Remaining")), (404, "2"), "k3's own bucket")

    # Never limited: /health, the webhooks, the unsubscribe links (no RateLimit headers either).
    for _ in range(10):
        r = srv.get("/health")
        assert_eq((r.status, r.header("RateLimit-Limit")), (200, None), "/health")
        r = srv.post("/webhooks/email", "a=b",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status != 429 and r.header("RateLimit-Limit") is None, "webhook %r" % (r,)
        r = srv.post("/unsubscribe/not-a-token", "List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status != 429 and r.header("RateLimit-Limit") is None, "unsubscribe %r" % (r,)

    # Refilled over time: k2 gets a token back about 0.5 s after the burst.
    wait_until(lambda: srv.get(UNKNOWN_LEAD, headers=k2).status == 404, 5,
               "k2's bucket to refill", interval=0.05)
    assert time.monotonic() - refused_at >= 0.2, "refilled too early"

    # Without a valid key a request is paced by its client address (and still refused 401).
    statuses = [get_from(srv.port, UNKNOWN_LEAD, "127.0.0.2")[0] for _ in range(4)]
    assert_eq(statuses, [401, 401, 401, 429], "no key, from 127.0.0.2")
    status, headers, _ = get_from(srv.port, UNKNOWN_LEAD, "127.0.0.3",
                                  headers={"X-API-Key": "wrong"})
    assert_eq((status, headers.get("RateLimit-Remaining")), (401, "2"), "127.0.0.3's own bucket")

    # /metrics needs a key: X-API-Key, or the bearer token a Prometheus scrape config sends.
    assert_eq(get_from(srv.port, "/metrics", "127.0.0.4")[0], 401, "/metrics without a key")
    assert_eq(get_from(srv.port, "/metrics", "127.0.0.4",
                       headers={"Authorization": "Bearer nope"})[0], 401, "wrong bearer")
    m = scrape(srv, headers={"Authorization": "Bearer k3"})
    assert value(m, "salespad_http_requests_total", route="/leads/:id", method="GET",
                 status="429") >= 2, "the 429s counted"
    assert_eq(value(m, "salespad_http_requests_total", route="/health", method="GET",
                    status="200"), 10, "health checks counted")
    srv.stop()


def test_rate_limit_off_by_default(env):
    srv = env.serve()
    for _ in range(30):
        r = srv.get(UNKNOWN_LEAD)
        assert_eq((r.status, r.header("RateLimit-Limit")), (404, None), "no limit by default")
    bad = env.run_cli("--print-config", RATE_LIMIT_BURST="5")
    assert bad.returncode != 0, "RATE_LIMIT_BURST without RATE_LIMIT_RPS must be refused"
    assert "RATE_LIMIT_BURST" in bad.stderr, bad.stderr
    srv.stop()


def test_outbox_backlog_while_redis_is_down(env):
    env.require_queue("redis", "the outbox exists with REDIS_URL only")
    redis = env.private_redis()
    srv = env.serve()
    redis.stop("kill")
    for i in range(3):  # email only: one job each, waiting in the outbox
        create_lead(srv, "Down %d" % i, email="down%d@example.com" % i)
    m = wait_until(lambda: (lambda m: m if value(m, "salespad_outbox_oldest_age_seconds") > 0
                            else None)(scrape(srv)), 5, "the backlog to age")
    assert_eq(value(m, "salespad_outbox_backlog"), 3, "outbox backlog")
    assert value(m, "salespad_outbox_oldest_age_seconds") < 60, m
    assert_eq(value(m, "salespad_jobs", name="send-message", state="waiting"), 3, "waiting")
    redis.start()
    wait_until(lambda: value(scrape(srv), "salespad_outbox_backlog") == 0, 15,
               "the relay to drain the outbox")
    srv.stop()
