"""Stalled-job recovery on the Redis queue (issue 4; docs/redis-layout.md): a `salespad
worker` is killed -9 in the middle of a send. Its lock on the job expires (JOB_LEASE_MS is
BullMQ's lock duration), a second worker's stalled check (every QUEUE_STALLED_INTERVAL_MS,
guarded by <P>stalled-check) finds the job still in `active` without a lock and puts it back in
`wait` (stc + 1, a `stalled` event), and the second worker completes it. As in BullMQ, the
recovery does not count as an attempt (atm 1).

The mock provider's MOCK_SEND_DELAY_MS sleeps *before* it touches the sink, so a worker killed
during that sleep never reached the provider: the message is delivered exactly once, by the
second worker, with no duplicate acknowledgement.

Redis queue only (integration_redis_test_redis_stalled): skipped with the database queue."""
import time

from harness import assert_eq, create_lead, details, outbound, wait_until

LEASE = dict(JOB_LEASE_MS=1000, QUEUE_STALLED_INTERVAL_MS=300)
SEND_DELAY_MS = 3000


def test_worker_killed_mid_job_is_recovered(env):
    env.require_queue("redis", "BullMQ stalled-job recovery")
    api = env.serve("--no-worker", **LEASE)
    lid = create_lead(api, "Stalled Lead", email="stalled@example.com")["id"]
    (m,) = outbound(details(api, lid))
    mid = m["id"]
    lock = env.rkey(mid + ":lock")

    w1 = env.worker(MOCK_SEND_DELAY_MS=SEND_DELAY_MS, **LEASE)
    wait_until(lambda: mid in env.redis.lrange(env.rkey("active"), 0, -1)
               and env.redis.exists(lock) == 1, 10,
               "the job active in %s with its lock" % env.rkey("active"), interval=0.005)
    t_active = time.monotonic()
    w1.kill9()
    killed_after = time.monotonic() - t_active
    # The kill landed inside the provider's sleep: nothing reached the sink.
    assert killed_after < SEND_DELAY_MS / 1000.0 / 2, "kill took %.2fs" % killed_after
    assert_eq(env.sink_raw_lines(), [], "sink lines when the first worker was killed")
    assert_eq(env.redis.lrange(env.rkey("active"), 0, -1), [mid], "active list after the kill")
    t_kill = time.monotonic()

    w2 = env.worker(MOCK_SEND_DELAY_MS=0, **LEASE)
    wait_until(lambda: env.redis.zscore(env.rkey("completed"), mid) is not None, 15,
               "the job in %s" % env.rkey("completed"))
    recovered_in = time.monotonic() - t_kill
    wait_until(lambda: details(api, lid)["jobs"][0]["state"] == "completed", 10,
               "the job completed in GET /leads/:id")
    det = details(api, lid)
    w2.stop()
    api.stop()

    h = env.redis.hgetall(env.rkey(mid))
    assert_eq(h.get("stc"), "1", "stc (stalled counter)")
    assert_eq(h.get("atm"), "1", "atm (a stalled recovery is not an attempt)")
    assert "defa" not in h, "deferred failure set after one stall (QUEUE_MAX_STALLED=1): %r" % h
    assert_eq(env.redis.llen(env.rkey("active")), 0, "active list")
    assert_eq(env.redis.exists(lock), 0, "lock after completion")
    evs = env.redis_events(mid)
    names = [e["event"] for e in evs]
    assert_eq(names.count("stalled"), 1, "stalled events (%r)" % names)
    assert_eq(names.count("completed"), 1, "completed events (%r)" % names)
    assert_eq(names.count("active"), 2, "active events: the killed run and the recovery (%r)"
              % names)
    assert "failed" not in names, "failed event: %r" % names
    i = names.index("stalled")
    # The recovery re-queues the job (waiting, prev active) and then it runs again.
    waits = [e for e in evs if e["event"] == "waiting" and e.get("prev") == "active"]
    assert_eq(len(waits), 1, "waiting events with prev=active (the stalled job re-queued)")
    assert names.index("completed") > i, "completed before stalled: %r" % names

    (j,) = det["jobs"]
    assert_eq((j["state"], j["attemptsMade"]), ("completed", 1), "job in GET /leads/:id")
    (m,) = outbound(det)
    assert_eq(m["status"], "sent", "message status")

    sink = env.sink()
    assert_eq([(l["messageId"], bool(l.get("duplicate"))) for l in sink], [(mid, False)],
              "sink lines (one delivery, by the second worker)")
    print("  recovered and completed %.2fs after the kill (lock %d ms, stalled check every "
          "%d ms); message attempts %d" % (recovered_in, LEASE["JOB_LEASE_MS"],
                                          LEASE["QUEUE_STALLED_INTERVAL_MS"], m["attempts"]))

