"""Leases: a send slower than the lease keeps its job (the keeper renews every lease the process
holds), and a worker process killed -9 gives its jobs back at once on the database queue (its
liveness lock is released by the kernel or the server), not a lease later."""
import os
import signal
import time
from collections import Counter

from harness import Burst, all_messages, assert_eq, lead_body, wait_all_settled


def test_slow_send_is_delivered_once(env):
    # The setting of the regression: a lease of 1 s and a provider that takes 3 s per send.
    # Before the keeper, each welcome email went out at attempts 1, 2 and 3 and the jobs ended
    # failed ("stalled more than allowable limit") with the messages stuck in "sending".
    srv = env.serve(JOB_LEASE_MS=1000, MOCK_SEND_DELAY_MS=3000, JOB_BACKOFF_MS=20)
    ids = []
    for i in range(3):
        r = srv.post("/leads", {"name": "Slow %d" % i, "email": "slow%d@example.com" % i})
        assert_eq(r.status, 201, "capture %d" % i)
        ids.append(r.json()["id"])
    settled = wait_all_settled(srv, ids, 60, nout=1)
    srv.stop()
    for lid, d in settled.items():
        msgs = all_messages(d)
        assert_eq([(m["status"], m["attempts"]) for m in msgs], [("sent", 1)],
                  "lead %s message status and attempts" % lid)
        assert_eq([(j["state"], j["attemptsMade"]) for j in d["jobs"]], [("completed", 1)],
                  "lead %s job" % lid)
    sink = env.sink()
    assert_eq([l for l in sink if l.get("duplicate")], [], "duplicate deliveries")
    assert_eq(sorted(Counter(l["messageId"] for l in sink).values()), [1, 1, 1],
              "deliveries per message")
    stalled = env.db("SELECT COUNT(*) FROM %s WHERE stalled_count > 0" % env.jobs_table)[0][0]
    assert_eq(stalled, 0, "jobs that lost their lease")


def test_kill9_then_restart_sends_within_10s(env):
    # The default lease (30 s): a restarted service must not sit on its dead predecessor's jobs
    # for a lease. The database queue proves the old worker process dead (SQLite: its flock'd
    # file is free; PostgreSQL: its advisory lock is free) and takes its jobs at once. The Redis
    # queue follows BullMQ's stalled-job semantics instead (a lock expires after its duration).
    env.require_queue("db", "Redis recovers a dead worker's jobs by BullMQ's stalled check")
    srv = env.serve(JOB_BACKOFF_MS=20, MOCK_SEND_DELAY_MS=2)
    burst = Burst(srv.port, 400, "lease", kill_pid=srv.pid, kill_at=150).run()
    assert_eq(srv.wait_exit(10), -signal.SIGKILL, "server exit status (killed)")
    assert burst.killed_after == 150, "the burst never reached 150 201s"
    in_flight = env.db("SELECT COUNT(*) FROM jobs WHERE state = 'active'")[0][0]

    # Requests in flight at the kill may have committed (all or nothing): found by email.
    known = {lead_body(i, "lease")["email"] for i in burst.unknown}
    maybe = [lid for lid, email in env.db("SELECT id, email FROM leads") if email in known]
    leads = list(burst.ok.values()) + maybe

    started = time.monotonic()
    srv = env.serve(JOB_BACKOFF_MS=20)
    settled = wait_all_settled(srv, leads, 10)
    took = time.monotonic() - started
    srv.stop()
    assert_eq(len(settled), len(leads), "leads settled")
    for d in settled.values():
        assert_eq({m["status"] for m in all_messages(d)}, {"sent"}, "message statuses")

    sink = env.sink()
    originals = Counter(l["messageId"] for l in sink if not l.get("duplicate"))
    again = [l for l in sink if l.get("duplicate")]
    assert_eq({m: c for m, c in originals.items() if c != 1}, {}, "messages sent twice as new")
    assert_eq(len(originals), 2 * len(leads), "messages delivered")
    # Only a send in flight at the kill may go out again, and with the same idempotency key:
    # the provider sees the key again and says so. At most the jobs that were active then.
    assert len(again) <= in_flight, "%d repeated sends, %d jobs active at the kill" % (
        len(again), in_flight)
    for l in again:
        assert_eq(l["idempotencyKey"], l["messageId"], "idempotency key of a repeated send")
    print("  restart: %d leads settled %.1f s after the restart; %d jobs active at the kill, "
          "%d sent again (same idempotency key)" % (len(leads), took, in_flight, len(again)))
    assert took < 10, "settled %.1f s after the restart" % took
    assert os.path.exists(env.sink_path)

