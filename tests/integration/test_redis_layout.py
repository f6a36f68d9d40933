"""The Redis queue in BullMQ's data layout (issue 4; docs/redis-layout.md).

A capture writes its jobs to the `outbox` table in the capture's transaction; the relay publishes
them to Redis as BullMQ jobs (job id = message id): the job hash, the wait list, the marker,
the events stream and the meta hash, exactly as a Node BullMQ producer would. SalesPad's worker
then moves them through active to completed (or delayed for a retry, or failed), with the hash
fields, events and zsets BullMQ's own scripts write, and keeps the outbox row (SalesPad's record
of the job, shown in GET /leads/:id) in step. Completed jobs are trimmed to
QUEUE_KEEP_COMPLETED, removeOnComplete-style.

Redis queue only (integration_redis_test_redis_layout): skipped with the database queue."""
import json
import time
from collections import Counter

from harness import assert_eq, create_lead, details, outbound, wait_until

# What SalesPad writes into opts.backoff.jitter (JOB_BACKOFF_MS "minus up to 20 % jitter").
MAX_JITTER = 0.2
# Slack for the time between the worker's `now` (the failure) and Redis' own clock stamping
# the `delayed` event (entry id), both on this machine.
SLACK_MS = 100
LIFECYCLE = ("added", "waiting", "active", "delayed", "completed", "failed")


def now_ms():
    return int(time.time() * 1000)


def keep_count(opts):
    """removeOnComplete as a count (BullMQ accepts a number or {count, age})."""
    v = opts.get("removeOnComplete")
    if isinstance(v, dict):
        return v.get("count")
    return v


def lifecycle(env, job_id):
    return [e["event"] for e in env.redis_events(job_id) if e["event"] in LIFECYCLE]


def outbox_rows(env, lead_id):
    cols = ("id", "name", "message_id", "data", "opts", "state", "attempts_made",
            "max_attempts", "stalled_count", "last_error", "finished_at", "relayed_at")
    rows = env.db("SELECT %s FROM outbox WHERE lead_id = ? ORDER BY created_at, id"
                  % ", ".join(cols), (lead_id,))
    return {r[0]: dict(zip(cols, r)) for r in rows}


def in_zset(env, zset, job_id):
    return env.redis.zscore(env.rkey(zset), job_id) is not None


def test_added_then_completed(env):
    env.require_queue("redis", "checks Redis keys")
    t0 = now_ms()
    api = env.serve("--no-worker")
    email, phone = "layout@example.com", "+15550004000"
    lid = create_lead(api, "Layout Lead", email=email, phone=phone)["id"]
    det = details(api, lid)
    msgs = {m["id"]: m for m in outbound(det)}
    assert_eq(sorted(m["channel"] for m in msgs.values()), ["email", "whatsapp"], "channels")

    # (a) The outbox rows are relayed (after the commit, no worker needed) ...
    wait_until(lambda: all(r["relayed_at"] for r in outbox_rows(env, lid).values())
               and len(outbox_rows(env, lid)) == 2, 10, "both outbox rows relayed")
    rows = outbox_rows(env, lid)
    assert_eq(set(rows), set(msgs), "outbox ids (= message ids)")
    for mid, r in rows.items():
        assert_eq((r["name"], r["message_id"], r["state"], r["attempts_made"], r["max_attempts"]),
                  ("send-message", mid, "waiting", 0, 3), "outbox row %s" % mid)
    t1 = now_ms()

    # ... and Redis holds them in BullMQ's layout.
    for suffix, kind in (("id", "string"), ("wait", "list"), ("marker", "zset"),
                         ("events", "stream"), ("meta", "hash")):
        assert_eq(env.redis.type(env.rkey(suffix)), kind, "type of %s" % env.rkey(suffix))
    counter = int(env.redis.get(env.rkey("id")))
    assert counter >= 2, "%s = %d: not incremented once per add" % (env.rkey("id"), counter)
    assert_eq(sorted(env.redis.lrange(env.rkey("wait"), 0, -1)), sorted(msgs), "wait list")
    assert_eq(env.redis.llen(env.rkey("active")), 0, "active list")
    assert_eq(env.redis.zscore(env.rkey("marker"), "0"), 0.0, "marker member \"0\" (score 0)")
    max_len = env.redis.hget(env.rkey("meta"), "opts.maxLenEvents")
    assert max_len is not None and int(max_len) > 0, "meta opts.maxLenEvents: %r" % (max_len,)

    for mid, m in msgs.items():
        h = env.redis.hgetall(env.rkey(mid))
        assert h, "no job hash %s" % env.rkey(mid)
        assert_eq(h.get("name"), "send-message", "job %s name" % mid)
        data = json.loads(h["data"])
        assert_eq((data.get("messageId"), data.get("leadId"), data.get("channel")),
                  (mid, lid, m["channel"]), "job %s data ids" % mid)
        assert_eq(data.get("kind"), "welcome", "job %s data kind" % mid)
        assert isinstance(data.get("channelMessage"), dict), "job %s data: %r" % (mid, data)
        assert_eq(data["channelMessage"].get("to"), email if m["channel"] == "email" else phone,
                  "job %s data channelMessage.to" % mid)
        assert "correlationIds" in data, "job %s data has no correlationIds: %r" % (mid, data)
        opts = json.loads(h["opts"])
        assert_eq(opts.get("attempts"), 3, "job %s opts.attempts" % mid)
        assert_eq(opts.get("jobId"), mid, "job %s opts.jobId" % mid)
        b = opts.get("backoff")
        assert isinstance(b, dict), "job %s opts.backoff: %r" % (mid, opts)
        assert_eq((b.get("type"), b.get("delay")), ("exponential", 20),
                  "job %s backoff (JOB_BACKOFF_MS=20)" % mid)
        assert 0 <= b.get("jitter", 0) <= MAX_JITTER, "job %s jitter: %r" % (mid, b)
        assert_eq(keep_count(opts), 1000, "job %s removeOnComplete (default keep)" % mid)
        ts = int(h["timestamp"])
        assert t0 - 1000 <= ts <= t1 + 1000, "job %s timestamp %d not in [%d, %d]" % (
            mid, ts, t0, t1)
        assert_eq((h.get("delay"), h.get("priority")), ("0", "0"), "job %s delay, priority" % mid)
        for f in ("processedOn", "finishedOn", "atm", "returnvalue"):
            assert f not in h, "job %s has %s before any worker ran: %r" % (mid, f, h)
        # The outbox row carries the same data and opts as the job.
        assert_eq(json.loads(rows[mid]["data"]), data, "outbox data of %s" % mid)
        assert_eq(json.loads(rows[mid]["opts"]), opts, "outbox opts of %s" % mid)
        evs = env.redis_events(mid)
        added = [e for e in evs if e["event"] == "added"]
        assert_eq([(e.get("name")) for e in added], ["send-message"], "added events of %s" % mid)
        assert_eq(lifecycle(env, mid), ["added", "waiting"], "events of %s" % mid)
    assert_eq(sorted((j["id"], j["state"], j["attemptsMade"]) for j in det["jobs"]),
              sorted((mid, "waiting", 0) for mid in msgs), "jobs in GET /leads/:id")

    # (b) A worker process runs them to completed.
    wrk = env.worker()
    wait_until(lambda: all(in_zset(env, "completed", mid) for mid in msgs), 10,
               "both jobs in %s" % env.rkey("completed"))
    wait_until(lambda: all(m["status"] == "sent" for m in outbound(details(api, lid)))
               and all(j["state"] == "completed" for j in details(api, lid)["jobs"]), 10,
               "messages sent and jobs completed in GET /leads/:id")
    wrk.stop()
    det = details(api, lid)
    api.stop()

    assert_eq(env.redis.llen(env.rkey("active")), 0, "active list after the run")
    assert_eq(env.redis.llen(env.rkey("wait")), 0, "wait list after the run")
    for mid in msgs:
        h = env.redis.hgetall(env.rkey(mid))
        assert_eq((h.get("atm"), h.get("ats")), ("1", "1"), "job %s atm, ats" % mid)
        processed, finished = int(h["processedOn"]), int(h["finishedOn"])
        assert int(h["timestamp"]) <= processed <= finished, "job %s times: %r" % (mid, h)
        rv = json.loads(h["returnvalue"])
        assert_eq(float(env.redis.zscore(env.rkey("completed"), mid)), float(finished),
                  "completed score of %s (= finishedOn)" % mid)
        assert_eq(env.redis.exists(env.rkey(mid + ":lock")), 0, "lock of %s" % mid)
        assert "failedReason" not in h, "job %s has a failedReason: %r" % (mid, h)
        assert_eq(lifecycle(env, mid), ["added", "waiting", "active", "completed"],
                  "events of %s" % mid)
        evs = {e["event"]: e for e in env.redis_events(mid)}
        assert_eq(evs["active"].get("prev"), "waiting", "active event prev")
        assert_eq(evs["completed"].get("prev"), "active", "completed event prev")
        assert_eq(json.loads(evs["completed"]["returnvalue"]), rv, "completed event returnvalue")
    for m in outbound(det):
        assert_eq((m["status"], m["attempts"]), ("sent", 1), "message %s" % m["id"])
    for j in det["jobs"]:
        assert_eq((j["name"], j["state"], j["attemptsMade"], j["maxAttempts"]),
                  ("send-message", "completed", 1, 3), "job %s in GET /leads/:id" % j["id"])
        assert j["finishedAt"], "job %s has no finishedAt" % j["id"]
    for mid, r in outbox_rows(env, lid).items():
        assert_eq((r["state"], r["attempts_made"], r["stalled_count"]), ("completed", 1, 0),
                  "outbox row %s" % mid)
        assert r["finished_at"], "outbox row %s has no finished_at" % mid
    sink = Counter(l["messageId"] for l in env.sink())
    assert_eq(dict(sink), {mid: 1 for mid in msgs}, "sink lines per message")


def test_retries_go_through_delayed(env):
    env.require_queue("redis", "checks Redis keys")
    backoff = 200
    srv = env.serve(MOCK_FAIL_FIRST=2, JOB_BACKOFF_MS=backoff, JOB_ATTEMPTS=3)
    lid = create_lead(srv, "Retry Layout", email="retry.layout@example.com")["id"]
    (m,) = outbound(details(srv, lid))
    mid = m["id"]
    wait_until(lambda: in_zset(env, "completed", mid), 15, "the job in %s" % env.rkey("completed"))
    wait_until(lambda: details(srv, lid)["jobs"][0]["state"] == "completed", 10,
               "the job completed in GET /leads/:id")
    det = details(srv, lid)
    srv.stop()

    assert_eq(lifecycle(env, mid), ["added", "waiting", "active", "delayed", "waiting", "active",
                                    "delayed", "waiting", "active", "completed"],
              "events of the job (no `failed` for a retried attempt)")
    evs = [e for e in env.redis_events(mid) if e["event"] in LIFECYCLE]
    delayed = [(i, e) for i, e in enumerate(evs) if e["event"] == "delayed"]
    for n, (i, e) in enumerate(delayed, start=1):
        d = backoff * 2 ** (n - 1)  # exponential: 200, then 400
        due = int(e["delay"])        # the due timestamp (ms), not the duration
        lag = due - e["_ms"]
        assert (1 - MAX_JITTER) * d - SLACK_MS <= lag <= d + 5, \
            "retry %d: due %d is %d ms after the delayed event; expected %d..%d (backoff %d)" % (
                n, due, lag, int((1 - MAX_JITTER) * d), d, d)
        assert_eq(evs[i + 1].get("prev"), "delayed", "waiting event after retry %d: prev" % n)
        # The job was not taken again before it was due.
        assert evs[i + 2]["_ms"] >= due - 5, "retry %d ran at %d, due %d" % (n, evs[i + 2]["_ms"],
                                                                           due)
    h = env.redis.hgetall(env.rkey(mid))
    assert_eq((h.get("atm"), h.get("ats")), ("3", "3"), "atm, ats after two retries")
    assert_eq(h.get("delay"), "0", "delay field once promoted")
    st = json.loads(h["stacktrace"])
    assert isinstance(st, list) and len(st) == 2 and all(isinstance(s, str) for s in st), \
        "stacktrace: %r" % (h.get("stacktrace"),)
    assert h.get("failedReason"), "failedReason of the last failure is kept: %r" % (h,)
    json.loads(h["returnvalue"])
    assert h.get("finishedOn"), "no finishedOn"
    assert not in_zset(env, "delayed", mid), "job still in delayed"
    (j,) = det["jobs"]
    assert_eq((j["state"], j["attemptsMade"]), ("completed", 3), "job in GET /leads/:id")
    (m,) = outbound(det)
    assert_eq((m["status"], m["attempts"]), ("sent", 3), "message")


def test_permanent_error_goes_to_failed(env):
    env.require_queue("redis", "checks Redis keys")
    srv = env.serve(JOB_ATTEMPTS=3)
    lid = create_lead(srv, "Bounce Layout", email="bounce@example.com")["id"]
    (m,) = outbound(details(srv, lid))
    mid = m["id"]
    wait_until(lambda: in_zset(env, "failed", mid), 10, "the job in %s" % env.rkey("failed"))
    wait_until(lambda: details(srv, lid)["jobs"][0]["state"] == "failed", 10,
               "the job failed in GET /leads/:id")
    det = details(srv, lid)
    srv.stop()

    h = env.redis.hgetall(env.rkey(mid))
    assert h.get("failedReason"), "no failedReason: %r" % (h,)
    assert_eq(h.get("atm"), "1", "atm (a permanent error is not retried)")
    finished = int(h["finishedOn"])
    assert_eq(float(env.redis.zscore(env.rkey("failed"), mid)), float(finished),
              "failed score (= finishedOn)")
    assert not in_zset(env, "completed", mid), "a failed job in completed"
    assert_eq(env.redis.llen(env.rkey("active")), 0, "active list")
    assert_eq(lifecycle(env, mid), ["added", "waiting", "active", "failed"], "events of the job")
    (fe,) = [e for e in env.redis_events(mid) if e["event"] == "failed"]
    assert_eq((fe.get("failedReason"), fe.get("prev")), (h["failedReason"], "active"),
              "failed event")
    assert_eq([e for e in env.redis_events(mid) if e["event"] == "retries-exhausted"], [],
              "retries-exhausted after 1 of 3 attempts")
    (j,) = det["jobs"]
    assert_eq((j["state"], j["attemptsMade"]), ("failed", 1), "job in GET /leads/:id")
    assert j["lastError"] and j["finishedAt"], "job in GET /leads/:id: %r" % (j,)
    assert_eq(env.sink(), [], "sink lines")


def test_attempts_exhausted(env):
    env.require_queue("redis", "checks Redis keys")
    srv = env.serve(MOCK_FAIL_RATE=1, JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    lid = create_lead(srv, "Never Layout", email="never.layout@example.com")["id"]
    (m,) = outbound(details(srv, lid))
    mid = m["id"]
    wait_until(lambda: in_zset(env, "failed", mid), 10, "the job in %s" % env.rkey("failed"))
    wait_until(lambda: details(srv, lid)["jobs"][0]["state"] == "failed", 10,
               "the job failed in GET /leads/:id")
    srv.stop()
    h = env.redis.hgetall(env.rkey(mid))
    assert_eq(h.get("atm"), "3", "atm")
    assert_eq(len(json.loads(h["stacktrace"])), 3, "stacktrace entries")
    assert_eq(lifecycle(env, mid), ["added", "waiting", "active", "delayed", "waiting", "active",
                                    "delayed", "waiting", "active", "failed"], "events of the job")
    ex = [e for e in env.redis_events(mid) if e["event"] == "retries-exhausted"]
    assert_eq([e.get("attemptsMade") for e in ex], ["3"], "retries-exhausted events")


def test_keep_completed_trims_old_jobs(env):
    env.require_queue("redis", "checks Redis keys")
    srv = env.serve(QUEUE_KEEP_COMPLETED=3)
    lids = []
    for i in range(5):
        lids.append(create_lead(srv, "Keep %d" % i, email="keep%d@example.com" % i,
                                phone="+1555000%04d" % i)["id"])
    mids = [m["id"] for lid in lids for m in outbound(details(srv, lid))]
    assert_eq(len(mids), 10, "jobs")
    wait_until(lambda: env.db("SELECT COUNT(*) FROM outbox WHERE state = 'completed'")[0][0]
               == 10, 15, "all 10 jobs completed (outbox)")
    # SalesPad's own record (the outbox, shown in GET /leads/:id) keeps every job.
    for lid in lids:
        assert_eq([j["state"] for j in details(srv, lid)["jobs"]], ["completed"] * 2,
                  "jobs of %s in GET /leads/:id" % lid)
    srv.stop()
    kept = env.redis.zrange(env.rkey("completed"), 0, -1)
    assert_eq(len(kept), 3, "members of %s with QUEUE_KEEP_COMPLETED=3" % env.rkey("completed"))
    assert set(kept) <= set(mids), "unknown members in completed: %r" % (kept,)
    for mid in mids:
        exists = env.redis.exists(env.rkey(mid))
        assert_eq(exists, 1 if mid in kept else 0, "job hash %s (kept: %s)" % (mid, mid in kept))
        if mid in kept:
            assert_eq(keep_count(json.loads(env.redis.hget(env.rkey(mid), "opts"))), 3,
                      "removeOnComplete of %s" % mid)
    assert_eq(dict(env.db("SELECT state, COUNT(*) FROM outbox GROUP BY state")),
              {"completed": 10}, "outbox states")



def test_generate_reply_job_layout(env):
    """A reply's generate-reply job: relayed like a send (job id = the reply's id), named
    generate-reply, data {messageId, leadId, channel, correlationIds}; a worker completes it with
    {"messageId": <the answer>} as its returnvalue and adds the answer's send-message job."""
    env.require_queue("redis", "checks Redis keys")
    api = env.serve("--no-worker")
    lid = create_lead(api, "Reply Layout", phone="+15550004001")["id"]
    r = api.post("/leads/%s/reply" % lid, {"channel": "whatsapp",
                                            "messageContent": {"text": "price?"}})
    assert_eq(r.status, 201, "reply")
    rid = r.json()["messageId"]
    wait_until(lambda: rid in outbox_rows(env, lid) and outbox_rows(env, lid)[rid]["relayed_at"],
               10, "generate-reply row relayed")
    row = outbox_rows(env, lid)[rid]
    assert_eq((row["name"], row["message_id"], row["state"]), ("generate-reply", rid, "waiting"),
              "outbox row")
    h = env.redis.hgetall(env.rkey(rid))
    assert_eq(h.get("name"), "generate-reply", "job name")
    data = json.loads(h["data"])
    assert_eq(sorted(data), ["channel", "correlationIds", "leadId", "messageId"], "data members")
    assert_eq((data["messageId"], data["leadId"], data["channel"]), (rid, lid, "whatsapp"), "data")
    opts = json.loads(h["opts"])
    assert_eq((opts.get("jobId"), opts.get("attempts")), (rid, 3), "opts")
    assert_eq([e.get("name") for e in env.redis_events(rid) if e["event"] == "added"],
              ["generate-reply"], "added event")

    wrk = env.worker()
    wait_until(lambda: in_zset(env, "completed", rid), 10, "generate-reply completed")
    h = env.redis.hgetall(env.rkey(rid))
    answer = json.loads(h["returnvalue"])["messageId"]
    assert_eq(answer[:14] + "7" + answer[15:], rid, "the answer's id is the reply's, version 8")
    wait_until(lambda: in_zset(env, "completed", answer), 10, "the answer's send completed")
    assert_eq(env.redis.hget(env.rkey(answer), "name"), "send-message", "the answer's job")
    assert_eq(outbox_rows(env, lid)[rid]["state"], "completed", "outbox row completed")
    wrk.stop()
    api.stop()
