"""Crash safety: kill -9 in the middle of a capture burst, restart, and every lead that got a 201
has its messages delivered exactly once (ignoring the provider's own "duplicate" acks), no job is
stuck; and without a crash the provider never even sees a duplicate."""
import os
import signal
from collections import Counter

from harness import Burst, all_messages, assert_eq, lead_body, wait_all_settled, wait_until


def test_kill9_mid_burst_then_restart(env):
    srv = env.serve(JOB_LEASE_MS=1500, JOB_BACKOFF_MS=20)
    burst = Burst(srv.port, 500, "crash", kill_pid=srv.pid, kill_at=150).run()
    rc = srv.wait_exit(10)
    assert_eq(rc, -signal.SIGKILL, "server exit status (killed)")
    assert burst.killed_after == 150, "the burst never reached 150 201s: %d ok, %d other: %r" % (
        len(burst.ok), len(burst.other), list(burst.other.values())[:3])
    assert_eq(burst.other, {}, "non-201 answers before the crash")
    # The kill happened with requests in flight: some got 201, the rest an error.
    assert_eq(len(burst.ok) + len(burst.unknown), 500, "every request accounted for")
    assert burst.unknown, "the server finished all 500 before the kill; nothing was in flight"
    print("  crash: %d x 201, %d failed/in flight at kill" % (len(burst.ok), len(burst.unknown)))

    # Restart on the same database and sink; the expired leases are picked up again.
    srv = env.serve(JOB_LEASE_MS=1500, JOB_BACKOFF_MS=20)
    settled = wait_all_settled(srv, burst.ok.values(), 30)

    # Leads whose request outcome is unknown may exist (all or nothing): find them by email.
    known_leads = dict(settled)
    maybe = {}
    for i in burst.unknown:
        rows = env.db("SELECT id FROM leads WHERE email = ?", (lead_body(i, "crash")["email"],))
        assert len(rows) <= 1, "request %d stored %d leads" % (i, len(rows))
        if rows:
            maybe[i] = rows[0][0]
    known_leads.update(wait_all_settled(srv, maybe.values(), 30))
    total_leads = env.db("SELECT COUNT(*) FROM leads")[0][0]
    assert_eq(total_leads, len(burst.ok) + len(maybe), "leads in the database")

    # No job is stuck anywhere (the API view above, and the whole table).
    states = dict(env.db("SELECT state, COUNT(*) FROM %s GROUP BY state" % env.jobs_table))
    assert_eq(states, {"completed": 2 * total_leads}, "job states")

    # Every message of every lead: exactly one non-duplicate sink line, on the right address.
    messages = {}
    for i, lid in list(burst.ok.items()) + list(maybe.items()):
        d = known_leads[lid]
        body = lead_body(i, "crash")
        assert_eq((d["lead"]["email"], d["lead"]["phone"]), (body["email"], body["phone"]),
                  "lead %s addresses" % lid)
        for m in all_messages(d):
            messages[m["id"]] = m
    assert_eq(len(messages), 2 * total_leads, "message count")
    sink = env.sink()
    originals = Counter(l["messageId"] for l in sink if not l.get("duplicate"))
    dups = [l for l in sink if l.get("duplicate")]
    unknown_ids = {l["messageId"] for l in sink} - set(messages)
    assert_eq(unknown_ids, set(), "sink lines for messages nobody knows")
    assert_eq({mid: c for mid, c in originals.items() if c != 1}, {}, "messages sent twice")
    assert_eq(set(messages) - set(originals), set(), "sent messages missing from the sink")
    for l in sink:
        m = messages[l["messageId"]]
        assert_eq(l["to"], m["channelMessage"]["to"], "sink address of %s" % m["id"])
    for l in dups:
        assert originals[l["messageId"]] == 1, "duplicate ack without an original: %r" % (l,)
    print("  crash: %d leads, %d messages, %d duplicate acks after restart"
          % (total_leads, len(messages), len(dups)))
    srv.stop()


def test_worker_kill9_lease_expires(env):
    # API-only server + a worker process that is killed -9 while it sends; a second worker
    # takes over the jobs the dead one held once their leases expire.
    lease = dict(JOB_LEASE_MS=1500, JOB_BACKOFF_MS=20)
    srv = env.serve("--no-worker", **lease)
    burst = Burst(srv.port, 300, "wk").run()
    assert_eq((len(burst.ok), burst.unknown, burst.other), (300, {}, {}), "burst outcome")
    w1 = env.worker(**lease)
    # Kill as soon as some sends happened: a tight poll of the sink size, not a sleep.
    wait_until(lambda: os.path.exists(env.sink_path) and os.path.getsize(env.sink_path) > 40 * 150,
               10, "the first worker to start sending", interval=0.001)
    w1.kill9()
    states = dict(env.db("SELECT state, COUNT(*) FROM %s GROUP BY state" % env.jobs_table))
    print("  worker killed with jobs: %r" % (states,))
    # Redis queue: the jobs the dead worker held are the ones left in the active list.
    held = set(env.redis.lrange(env.rkey("active"), 0, -1)) if env.queue == "redis" else set()
    w2 = env.worker(**lease)
    wait_all_settled(srv, burst.ok.values(), 30)
    w2.stop()
    srv.stop()
    assert_eq(dict(env.db("SELECT state, COUNT(*) FROM %s GROUP BY state" % env.jobs_table)),
              {"completed": 600}, "job states")
    sink = env.sink()
    originals = Counter(l["messageId"] for l in sink if not l.get("duplicate"))
    assert_eq(len(originals), 600, "messages delivered")
    assert_eq(set(originals.values()), {1}, "deliveries per message")
    if env.queue == "redis":
        # Each of them was recovered by the stalled check (stc, BullMQ's stalledCounter).
        not_recovered = {j for j in held if int(env.redis.hget(env.rkey(j), "stc") or 0) < 1}
        assert_eq(not_recovered, set(), "jobs the dead worker held, not recovered as stalled")
        print("  %d jobs held by the killed worker, recovered as stalled" % len(held))
    elif states.get("active"):
        stalled = env.db("SELECT COUNT(*) FROM jobs WHERE stalled_count > 0")[0][0]
        assert stalled >= 1, "jobs the dead worker held were not recovered as stalled"


def test_no_crash_no_duplicates(env):
    srv = env.serve(JOB_BACKOFF_MS=20)
    burst = Burst(srv.port, 200, "calm").run()
    assert_eq((len(burst.ok), burst.unknown, burst.other), (200, {}, {}), "burst outcome")
    wait_all_settled(srv, burst.ok.values(), 30)
    srv.stop()
    raw = env.sink_raw_lines()
    assert_eq([l for l in raw if "duplicate" in l], [], "duplicate lines")
    counts = Counter(l["messageId"] for l in env.sink())
    assert_eq(len(counts), 400, "distinct messages in the sink")
    assert_eq(set(counts.values()), {1}, "lines per message")

