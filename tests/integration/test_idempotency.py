"""Idempotency-Key on POST routes: a retried request replays the first answer, another request
under the same key is refused (422), a key still running is refused (409), and the key is
stored with the effect (exactly one effect for any number of tries, concurrent ones included).
"""
import json
import uuid

from harness import assert_eq, details, http_request, parallel, wait_until


def post(srv, path, body, key, api_key=None):
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if api_key:
        headers["X-API-Key"] = api_key
    return http_request(srv.port, "POST", path, json.dumps(body).encode(), headers)


def nleads(env):
    return env.db("SELECT COUNT(*) FROM leads")[0][0]


def test_replay_conflict_and_scope(env):
    srv = env.serve(API_KEYS="key-a-0123456789,key-b-0123456789")
    a, b = "key-a-0123456789", "key-b-0123456789"
    key = str(uuid.uuid4())
    lead = {"name": "Ida Empotent", "email": "ida@example.com"}
    first = post(srv, "/leads", lead, key, a)
    assert_eq(first.status, 201, "first (%r)" % (first,))
    assert first.header("Idempotent-Replayed") is None, first
    again = post(srv, "/leads", lead, key, a)
    assert_eq((again.status, again.body), (201, first.body), "replay: the same answer")
    assert_eq(again.header("Idempotent-Replayed"), "true", "replay header")
    assert_eq(nleads(env), 1, "one lead for two tries")
    lid = first.json()["id"]
    # The welcome goes out although its commit came after the use case's wake.
    wait_until(lambda: all(m["status"] == "sent" for m in srv.get(
        "/leads/" + lid, headers={"X-API-Key": a}).json()["messagesByChannel"]["email"]),
        15, "welcome sent")

    other = post(srv, "/leads", dict(lead, name="Someone Else"), key, a)
    assert_eq(other.status, 422, "same key, another body (%r)" % (other,))
    other = post(srv, "/leads/%s/reply" % lid, {"channel": "email", "messageContent": {
        "body": "hi"}}, key, a)
    assert_eq(other.status, 422, "same key, another path")
    # Keys are per API key: the same key under another one is another request.
    r = post(srv, "/leads", {"name": "Bea", "email": "bea@example.com"}, key, b)
    assert_eq(r.status, 201, "same key under another API key")
    assert_eq(nleads(env), 2, "leads")

    bad = post(srv, "/leads", lead, "x" * 256, a)
    assert_eq(bad.status, 400, "key too long")
    bad = post(srv, "/leads", lead, "has space", a)
    assert_eq(bad.status, 400, "key with a space")

    # An error answer is not kept: the corrected request under the same key runs.
    k2 = str(uuid.uuid4())
    r = post(srv, "/leads", {"name": ""}, k2, a)
    assert_eq(r.status, 400, "invalid lead")
    r = post(srv, "/leads", {"name": "Cy", "phone": "+15550001"}, k2, a)
    assert_eq(r.status, 201, "corrected request under the key of a 400")

    # The reply route: one stored reply, its id replayed.
    k3 = str(uuid.uuid4())
    body = {"channel": "email", "messageContent": {"body": "Tell me more"}}
    r1 = post(srv, "/leads/%s/reply" % lid, body, k3, a)
    r2 = post(srv, "/leads/%s/reply" % lid, body, k3, a)
    assert_eq((r1.status, r2.status, r2.body), (201, 201, r1.body), "reply replayed")
    det = srv.get("/leads/" + lid, headers={"X-API-Key": a}).json()
    inbound = [m for m in det["messagesByChannel"]["email"] if m["direction"] == "inbound"]
    assert_eq(len(inbound), 1, "one reply stored")


def test_concurrent_tries_make_one_effect(env):
    srv = env.serve()
    key = str(uuid.uuid4())
    lead = {"name": "Con Current", "email": "con@example.com", "phone": "+15550002"}
    res = parallel(lambda _: post(srv, "/leads", lead, key), list(range(16)), threads=16)
    statuses = sorted(r.status if not isinstance(r, Exception) else repr(r) for r in res)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in res if r.status == 201]
    assert created, statuses
    assert_eq(len({r.body for r in created}), 1, "every 201 is the same answer")
    assert_eq(nleads(env), 1, "one lead for 16 concurrent tries")
    busy = [r for r in res if r.status == 409]
    assert all(r.header("Retry-After") == "1" for r in busy), busy
    # Once done, every retry replays.
    r = post(srv, "/leads", lead, key)
    assert_eq((r.status, r.body, r.header("Idempotent-Replayed")),
              (201, created[0].body, "true"), "replay after the race")
    det = details(srv, created[0].json()["id"])
    assert_eq(len(det["jobs"]), 2, "two welcome jobs, once")


def test_concurrent_replays_of_a_done_key_all_replay(env):
    """Retries of a request that completed long ago, arriving together, are all replays: none
    of them is "still being processed" (each replay used to mark the key running while it read
    the stored answer, so that a replay beside it got 409: a quarter of them under wrk)."""
    srv = env.serve()
    key = str(uuid.uuid4())
    lead = {"name": "Re Play", "email": "replay@example.com", "phone": "+15550003"}
    first = post(srv, "/leads", lead, key)
    assert_eq(first.status, 201, "first (%r)" % (first,))
    res = parallel(lambda _: [post(srv, "/leads", lead, key) for _ in range(25)],
                   list(range(8)), threads=8)
    got = [r for batch in res for r in batch]
    bad = [(r.status, r.body) for r in got
           if (r.status, r.body, r.header("Idempotent-Replayed")) != (201, first.body, "true")]
    assert_eq(bad, [], "every concurrent retry replays the stored answer (of %d)" % len(got))
    assert_eq(nleads(env), 1, "one lead")


def test_expired_key_is_a_new_request(env):
    srv = env.serve(IDEMPOTENCY_TTL_S=1)
    key = str(uuid.uuid4())
    assert_eq(post(srv, "/leads", {"name": "Old", "email": "old@example.com"}, key).status, 201,
              "first")
    # Within the TTL another body is refused; once the key expired it is a new request.
    n = [0]

    def after_expiry():
        n[0] += 1
        r = post(srv, "/leads", {"name": "New %d" % n[0], "email": "new%d@example.com" % n[0]},
                 key)
        assert r.status in (201, 422), r
        return r if r.status == 201 else None
    r = wait_until(after_expiry, 10, "the key to expire")
    assert r.header("Idempotent-Replayed") is None, r
    assert_eq(nleads(env), 2, "the expired key's request ran")


def test_expired_keys_are_pruned(env):
    """Keys past IDEMPOTENCY_TTL_S are deleted: the first stored key of a process prunes, then
    every 256th; a key that expired is gone after the next prune, a live one stays."""
    srv = env.serve(IDEMPOTENCY_TTL_S=1)
    old = str(uuid.uuid4())
    assert_eq(post(srv, "/leads", {"name": "Old", "email": "old@example.com"}, old).status, 201,
              "the key to expire")

    def stored(k):
        return env.db("SELECT COUNT(*) FROM idempotency_keys WHERE key = ?", (k,))[0][0]
    assert_eq(stored(old), 1, "stored with its effect")
    n = [0]

    def store_one():
        n[0] += 1
        r = post(srv, "/leads", {"name": "P%d" % n[0], "email": "p%d@example.com" % n[0]},
                 "probe-%d" % n[0])
        assert_eq(r.status, 201, "probe %d" % n[0])

    def moved_on():  # a key stored 1.5 s after the old one (polled, a few stored keys)
        store_one()
        lo, hi = env.db("SELECT MIN(created_at), MAX(created_at) FROM idempotency_keys")[0]
        spread = hi - lo  # ms on SQLite, a timedelta on PostgreSQL
        spread = spread.total_seconds() * 1000 if hasattr(spread, "total_seconds") else spread
        return spread > 1500
    wait_until(moved_on, 15, "a key stored 1.5 s after the first", interval=0.1)
    assert n[0] < 200, "polled %d times" % n[0]
    # The old key was the process's stored key number 0 (it pruned nothing yet); number 256
    # prunes. Expired since the poll above, it stays until then.
    while n[0] < 255:
        store_one()
    assert_eq(stored(old), 1, "expired but not pruned before the 256th stored key after it")
    store_one()
    assert_eq(stored(old), 0, "the expired key was pruned")
    assert_eq((stored("probe-255"), stored("probe-256")), (1, 1), "live keys stay")
