"""Redis outage (issue 4, docs/guarantees.md "Outages": capture still answers 201; jobs flow when
Redis returns). PostgreSQL + a Redis server owned by the test (env.private_redis()). Captures
run from a few client threads against `serve` (API + in-process workers) while a separate
`salespad worker` also consumes the queue; Redis is killed in the middle of the load (as a crash
would: SIGKILL; its append-only file keeps every acknowledged write) and started again on the
same port once the load has stopped, so nothing but the relay's own retry can publish the jobs
captured meanwhile.

Every capture answers 201 (the outbox is written in the capture's transaction), none is lost;
once Redis is back the outbox drains (no row left with relayed_at NULL) without a restart, every
message is delivered exactly once (the provider may acknowledge a re-send as a duplicate, never
deliver it twice), every outbox row ends completed, and no process dies. A second short burst
after the recovery goes through the normal path.

Redis queue only (integration_redis_test_redis_outage): skipped with the database queue."""
import time
from collections import Counter

from harness import Burst, Load, assert_eq, http_request, wait_until

LOAD_THREADS = 3
BEFORE = 100       # captures before the outage
DURING = 120       # captures during it (at least)
OUTAGE_MIN_S = 1.5
AFTER = 50         # captures after the recovery
SETTINGS = dict(JOB_LEASE_MS=1500, JOB_BACKOFF_MS=50, JOB_ATTEMPTS=10,
                QUEUE_STALLED_INTERVAL_MS=300)


def unrelayed(env):
    return env.db("SELECT COUNT(*) FROM outbox WHERE relayed_at IS NULL")[0][0]


def test_redis_outage_loses_nothing(env):
    env.require_queue("redis", "stops the Redis server")
    redis = env.private_redis()
    srv = env.serve(**SETTINGS)     # API + in-process workers
    wrk = env.worker(**SETTINGS)    # a separate worker process
    procs = [srv, wrk]

    load = Load([srv.port], "rdown", LOAD_THREADS).start()
    try:
        wait_until(lambda: load.count("ok") >= BEFORE, 30, "%d captures before the outage" % BEFORE)
        redis.stop("kill")
        t_down = time.monotonic()
        at_stop = load.count("ok")
        wait_until(lambda: load.count("ok") >= at_stop + DURING
                   and time.monotonic() - t_down >= OUTAGE_MIN_S, 30,
                   "%d captures during the outage" % DURING)
        ready = http_request(srv.port, "GET", "/ready").status
        health = http_request(srv.port, "GET", "/health").status
    finally:
        load.stop()
    during = load.count("ok") - at_stop
    backlog = unrelayed(env)
    for p in procs:
        assert p.alive(), "%s died during the outage:\n%s" % (p.name, p.log_tail())
    assert_eq(health, 200, "GET /health during the outage")
    assert_eq((load.other, load.unavailable, load.errors), ({}, {}, {}),
              "captures without a 201")
    assert backlog > 0, "no outbox row waits for Redis during the outage"
    print("  outage %.1fs: %d captures before, %d during (all 201), %d outbox rows unrelayed, "
          "GET /ready %d" % (time.monotonic() - t_down, at_stop, during, backlog, ready))

    # Redis comes back (same port, same data); no process is restarted and no new capture
    # arrives: the relays publish the backlog on their own.
    redis.start()
    t_up = time.monotonic()
    wait_until(lambda: unrelayed(env) == 0, 60, "the outbox drained after Redis is back",
               interval=0.1)
    drained_in = time.monotonic() - t_up
    ntotal = len(load.ok)
    wait_until(lambda: env.db("SELECT COUNT(*) FROM outbox WHERE state = 'completed'")[0][0]
               == 2 * ntotal, 60, "all %d jobs completed" % (2 * ntotal), interval=0.1)
    completed_in = time.monotonic() - t_up

    # The normal path after the recovery.
    burst = Burst(srv.port, AFTER, "rback", threads=LOAD_THREADS).run()
    assert_eq((len(burst.ok), burst.unknown, burst.other), (AFTER, {}, {}), "burst after")
    ntotal += AFTER
    wait_until(lambda: env.db("SELECT COUNT(*) FROM outbox WHERE state = 'completed'")[0][0]
               == 2 * ntotal, 30, "all %d jobs completed" % (2 * ntotal), interval=0.1)

    for p in procs:
        assert p.alive(), "%s died:\n%s" % (p.name, p.log_tail())
        p.stop()

    # Every 201 stored, with two messages, both sent; every outbox row completed.
    stored = {lid for (lid,) in env.db("SELECT id FROM leads")}
    ok_ids = set(load.ok.values()) | set(burst.ok.values())
    assert_eq(stored, ok_ids, "stored leads (= the 201s)")
    assert_eq(dict(env.db("SELECT status, COUNT(*) FROM messages GROUP BY status")),
              {"sent": 2 * ntotal}, "message states")
    assert_eq(dict(env.db("SELECT state, COUNT(*) FROM outbox GROUP BY state")),
              {"completed": 2 * ntotal}, "outbox states")
    assert_eq(unrelayed(env), 0, "unrelayed outbox rows")
    # (trimmed to QUEUE_KEEP_COMPLETED, default 1000)
    assert_eq(env.redis.zcard(env.rkey("completed")), min(2 * ntotal, 1000),
              "completed zset")
    assert_eq(env.redis.llen(env.rkey("active")), 0, "active list")
    assert_eq(env.redis.llen(env.rkey("wait")), 0, "wait list")

    sink = env.sink()
    originals = Counter(l["messageId"] for l in sink if not l.get("duplicate"))
    dups = [l for l in sink if l.get("duplicate")]
    message_ids = {m for (m,) in env.db("SELECT id FROM messages")}
    assert_eq(set(originals), message_ids, "messages delivered (sink)")
    assert_eq({m: c for m, c in originals.items() if c != 1}, {}, "messages delivered twice")
    for l in dups:
        assert originals[l["messageId"]] == 1, "duplicate ack without a delivery: %r" % (l,)
    print("  after Redis came back: outbox drained in %.2fs, all jobs completed in %.2fs; "
          "%d messages, %d duplicate acks" % (drained_in, completed_in, len(message_ids),
                                              len(dups)))

