"""Hardening issue, point 4: a lead with a long history stays readable.

70 replies of about 60 KB each used to make GET /leads/:id answer 500 ("response exceeds 8388608
bytes") for ever, and repeated GETs of that lead pushed the server's RSS up by hundreds of MB.
Now the details show the newest items of each list within a byte budget, "more" holds the
cursors of the lists cut short, GET /leads/:id/messages and /events page through the rest, and
memory per request is bounded (docs/http-api.md, "Long histories")."""
import json
import os
import urllib.parse

from harness import Client, assert_eq, create_lead, parallel, sanitized_binary, wait_until

REPLIES = 70
CONTENT = 60 * 1024
# Two lists hold contents here (email, events), each within 512 KiB, plus their envelopes.
DETAILS_MAX = 2 * 512 * 1024 + 256 * 1024
MIB = 1024 * 1024


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def big_lead(srv):
    lead = create_lead(srv, name="Ana", email="ana@example.com")
    body = {"channel": "email",
            "messageContent": {"subject": "re", "body": "x" * CONTENT}}
    for _ in range(REPLIES):
        r = srv.post("/leads/%s/reply" % lead["id"], body)
        assert_eq(r.status, 201, "reply: %r" % (r,))
    return lead["id"]


def wait_idle(env, lead_id):
    """Until the serve process's workers have sent every message (each send appends an event,
    which would land after the details' snapshot)."""
    sql = ("SELECT count(*) FROM %s WHERE lead_id = ? AND state NOT IN ('completed', 'failed')"
           % env.jobs_table)
    wait_until(lambda: env.db(sql, (lead_id,))[0][0] == 0, timeout=60,
               what="the lead's jobs to finish")


def page_all(srv, path, query, cursor, seen):
    """Follows nextCursor from `cursor`, adding each item's id to `seen` (never twice)."""
    pages = 0
    while cursor is not None:
        q = dict(query, cursor=cursor, limit="20")
        r = srv.get("%s?%s" % (path, urllib.parse.urlencode(q)))
        assert_eq(r.status, 200, "GET %s: %r" % (path, r))
        page = r.json()
        assert_eq(sorted(page), ["items", "nextCursor"], "page keys")
        assert 1 <= len(page["items"]) <= 20, "page of %d items" % len(page["items"])
        for it in page["items"]:
            assert it["id"] not in seen, "item %s listed twice" % it["id"]
            seen.add(it["id"])
        cursor = page["nextCursor"]
        pages += 1
        assert pages < 1000, "paging does not end"


def test_big_lead_details_bounded_and_paged(env):
    srv = env.serve()
    lead_id = big_lead(srv)
    wait_idle(env, lead_id)

    r = srv.get("/leads/" + lead_id)
    assert_eq(r.status, 200, "GET /leads/:id of a big lead: %r" % (r,))
    assert len(r.body) < DETAILS_MAX, "details of %d bytes" % len(r.body)
    det = r.json()
    assert_eq(list(det), ["lead", "messagesByChannel", "events", "jobs", "more"], "keys")
    email = det["messagesByChannel"]["email"]
    assert 2 <= len(email) <= 50, "%d email messages shown" % len(email)
    assert_eq(email[-1]["kind"], "ai_reply", "newest last")
    assert_eq(sorted(det["more"]), ["email", "events", "jobs"], "lists cut short")
    assert_eq(det["more"]["jobs"], True, "older jobs exist")
    assert_eq(len(det["jobs"]), 50, "newest jobs")

    seen = set(m["id"] for m in email)
    page_all(srv, "/leads/%s/messages" % lead_id, {"channel": "email"}, det["more"]["email"],
             seen)
    stored = set(row[0] for row in env.db("SELECT id FROM messages WHERE lead_id = ?",
                                          (lead_id,)))
    stored = set(str(x) for x in stored)
    assert_eq((len(seen - stored), len(stored - seen)), (0, 0), "messages not in both")
    assert_eq(len(seen), 1 + 2 * REPLIES, "message count")

    seen = set(e["id"] for e in det["events"])
    page_all(srv, "/leads/%s/events" % lead_id, {}, det["more"]["events"], seen)
    stored = set(str(row[0]) for row in env.db("SELECT id FROM lead_events WHERE lead_id = ?",
                                               (lead_id,)))
    assert_eq((len(seen - stored), len(stored - seen)), (0, 0), "events not in both")

    r = srv.get("/leads/%s/messages?channel=email&cursor=bogus" % lead_id)
    assert_eq(r.status, 400, "bad cursor: %r" % (r,))
    assert_eq(r.json()["statusCode"], 400, "bad cursor body")


def test_big_lead_rss_stays_flat(env):
    # Under ASan freed memory waits in a quarantine (256 MiB by default) that keeps filling for
    # several rounds after the warm-up: RSS grew 59 MiB over four rounds in one CI run. A small
    # quarantine fills during the warm-up, so the growth measured is the program's again.
    extra = {}
    if sanitized_binary():
        extra["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"
    srv = env.serve(**extra)
    lead_id = big_lead(srv)
    path = "/leads/" + lead_id

    def get(_):
        c = Client(srv.port)
        try:
            r = c.get(path)
            assert_eq(r.status, 200, "GET %s: %r" % (path, r))
            return len(r.body)
        finally:
            c.close()

    def round_of(n):
        for res in parallel(get, list(range(n)), threads=8):
            if isinstance(res, Exception):
                raise res

    round_of(48)  # warm-up: per-thread arenas, malloc arenas, SQLite page cache
    base = rss_kib(srv.pid)
    samples = []
    for _ in range(4):
        round_of(48)
        samples.append(rss_kib(srv.pid))
    print("RSS KiB after warm-up %d, after each further 48 GETs: %s" % (base, samples))
    # Memory per request is bounded, so more GETs must not mean more memory: allow slack for
    # allocator noise, far below one round's worth of unbounded growth (48 x ~8 MiB).
    assert max(samples) - base < 48 * 1024, \
        "RSS grew from %d KiB to %s KiB over repeated GETs" % (base, samples)
    # Measured at this change: about 40-52 MiB with 16 server threads (the old code: 180-240 MiB
    # for the same GETs, all answering 500).
    if not sanitized_binary():  # ASan's shadow memory and quarantine: no absolute figure
        assert max(samples) < 128 * 1024, "RSS %s KiB" % samples
