"""Interop with the real `bullmq` npm package: SalesPad (C, PostgreSQL + Redis) and Node BullMQ on
the same queue. See tests/interop/README.md.

    SALESPAD_BULLMQ=5|6 SALESPAD_BIN=$PWD/build/salespad SALESPAD_DB=postgres \
        /usr/bin/python3 -m pytest tests/interop/test_interop.py [-k test_name]

SALESPAD_BULLMQ picks tests/interop/bullmq5 or bullmq6 (installed by npm_install.sh, which this
script also runs: a no-op when up to date). Redis: the `shared_redis` fixture of
tests/conftest.py (the server whose URL is in the file $SALESPAD_REDIS_URL_FILE, CTest's `redis`
fixture, else, outside CI, a throwaway one started with tests/redis/redisserver.sh for this run).
PostgreSQL: harness.py's SALESPAD_DB=postgres mode. Each test uses queues of its own
(QUEUE_NAME), deleted at the end.

The Node side is interop.mjs: a `session` process answers commands (getJobCounts, getJobs,
getJob, add), an `events` process (QueueEvents) and a `work` process (Worker) print one JSON line
per event. Every wait polls what they printed, or what Node reads from Redis, against a deadline.
"""

import json
import os
import shutil
import subprocess
import threading
import uuid

import pytest

from harness import (TimeoutFailure, assert_eq, ci, create_lead, details, drop_keys, outbound,
                     wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
MAJOR = os.environ.get("SALESPAD_BULLMQ", "5").strip()
VERSION_DIR = os.path.join(HERE, "bullmq" + MAJOR)
SCRIPT = os.path.join(HERE, "interop.mjs")
NPM_INSTALL = os.path.join(HERE, "npm_install.sh")
NODE_READY_TIMEOUT_S = 20.0


# ---------------------------------------------------------------------------------------------
# Redis: the run's shared server (fixture shared_redis), read with redis-py for the checks Node's
# API does not answer (stream entry times, list contents) and for deleting a test's keys.


def stream_ms(stream_id):
    """The Redis server time (ms) at which a stream entry was added: its auto id's first part."""
    return int(str(stream_id).split("-")[0])


# ---------------------------------------------------------------------------------------------
# Node processes (interop.mjs)


_npm_checked = False


def ensure_node_modules():
    global _npm_checked
    if _npm_checked:
        return
    if not shutil.which("node"):
        raise AssertionError("node not found: the interop tests need Node.js and npm "
                             "(scripts/deps.sh test)")
    r = subprocess.run(["bash", NPM_INSTALL, VERSION_DIR], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("npm_install.sh %s failed (%d):\n%s%s"
                             % (VERSION_DIR, r.returncode, r.stdout, r.stderr))
    _npm_checked = True


class NodeProc:
    """One `node interop.mjs <dir> <mode>` process. A thread collects its stdout lines (JSON)."""

    def __init__(self, ix, name, mode, queue, config=None):
        self.ix = ix
        self.name = name
        self.mode = mode
        self.queue = queue
        self.lines = []
        self.raw = []  # stdout lines that were not JSON
        self.lock = threading.Lock()
        self.next_id = 0
        self.err_path = os.path.join(ix.env.dir, "node-%s.stderr.log" % name)
        self._err = open(self.err_path, "ab")
        envv = dict(os.environ)
        envv.update({"REDIS_URL": ix.redis_url, "QUEUE_NAME": queue, "QUEUE_PREFIX": ix.prefix})
        cmd = ["node", SCRIPT, VERSION_DIR, mode]
        if config is not None:
            cmd.append(json.dumps(config))
        self.popen = subprocess.Popen(cmd, env=envv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._err, cwd=ix.env.dir)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.ready = self.wait_for(lambda l: l.get("type") == "ready", NODE_READY_TIMEOUT_S,
                                   "node %s to print ready" % name)

    def _read(self):
        for raw in self.popen.stdout:
            try:
                obj = json.loads(raw.decode("utf-8"))
            except ValueError:
                with self.lock:
                    self.raw.append(raw.decode("utf-8", "replace").rstrip("\n"))
                continue
            with self.lock:
                self.lines.append(obj)

    def alive(self):
        return self.popen.poll() is None

    def snapshot(self, type_=None):
        with self.lock:
            return [l for l in self.lines if type_ is None or l.get("type") == type_]

    def wait_for(self, pred, timeout, what):
        """Polls the lines printed so far until one satisfies pred; returns it."""
        def check():
            for l in self.snapshot():
                if pred(l):
                    return l
            if not self.alive():
                raise AssertionError("node %s exited (%s) while waiting for %s:\n%s"
                                     % (self.name, self.popen.returncode, what, self.tail()))
            return None
        return wait_until(check, timeout, what)

    def errors(self):
        return [l for l in self.snapshot("error")] + ["non-JSON stdout: " + r for r in self.raw]

    def call(self, cmd, timeout=15.0, **kw):
        """One session command; returns its result or raises with Node's error."""
        assert self.mode == "session"
        self.next_id += 1
        rid = self.next_id
        req = dict(kw, id=rid, cmd=cmd)
        self.popen.stdin.write((json.dumps(req) + "\n").encode("utf-8"))
        self.popen.stdin.flush()
        ans = self.wait_for(lambda l: l.get("id") == rid and "ok" in l, timeout,
                            "node %s to answer %s" % (self.name, cmd))
        if not ans["ok"]:
            raise AssertionError("node %s: %s %s failed: %s" % (self.name, cmd, kw, ans["error"]))
        return ans["result"]

    def stop(self, timeout=15.0):
        """Closes stdin (the script closes its Queue/Worker/QueueEvents and exits 0)."""
        if self.alive():
            try:
                self.popen.stdin.close()
            except OSError:
                pass
            try:
                rc = self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutFailure("node %s did not exit within %.1fs" % (self.name, timeout))
            if rc != 0:
                raise AssertionError("node %s exited with %d:\n%s" % (self.name, rc, self.tail()))
        self.reader.join(5)

    def cleanup(self):
        if self.alive():
            self.popen.kill()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for f in (self.popen.stdin, self.popen.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        self._err.close()

    def tail(self, n=30):
        try:
            with open(self.err_path, "rb") as f:
                err = f.read().decode("utf-8", "replace").splitlines()[-n:]
        except OSError:
            err = []
        out = [json.dumps(l) for l in self.snapshot()[-n:]] + self.raw[-n:]
        return "stdout:\n  %s\nstderr:\n  %s" % ("\n  ".join(out), "\n  ".join(err))


# ---------------------------------------------------------------------------------------------
# Per-test context


class Interop:
    """Redis, queue names, Node processes and SalesPad processes of one test."""

    def __init__(self, env, redis_srv):
        self.env = env
        self.redis_url = redis_srv.url
        self.prefix = "bull"
        self.queues = []
        self.nodes = []
        self.redis = redis_srv.client()

    def queue(self, tag):
        name = "it%s-%s-%d-%s" % (MAJOR, tag, os.getpid(), uuid.uuid4().hex[:6])
        self.queues.append(name)
        return name

    def node(self, mode, queue, config=None, name=None):
        ensure_node_modules()
        name = name or "%s-%s" % (mode, len(self.nodes) + 1)
        p = NodeProc(self, name, mode, queue, config)
        self.nodes.append(p)
        return p

    def session(self, queue):
        s = self.node("session", queue, name="session-%d" % (len(self.nodes) + 1))
        assert_eq(s.ready["bullmq"].split(".")[0], MAJOR, "bullmq major loaded by node")
        return s

    def events(self, queue):
        """A QueueEvents reading the queue's whole event stream (lastEventId 0)."""
        return self.node("events", queue, {"lastEventId": "0"},
                         name="events-%d" % (len(self.nodes) + 1))

    def salespad_vars(self, queue, kw):
        v = {"REDIS_URL": self.redis_url, "QUEUE_NAME": queue, "QUEUE_PREFIX": self.prefix}
        v.update(kw)
        return v

    def serve(self, queue, *args, **kw):
        return self.env.serve(*args, **self.salespad_vars(queue, kw))

    def worker(self, queue, *args, **kw):
        return self.env.worker(*args, **self.salespad_vars(queue, kw))

    def require_redis_support(self):
        r = self.env.run_cli("--print-config", **self.salespad_vars(self.queue("probe"), {}))
        text = r.stdout + r.stderr
        if r.returncode != 0 or "QUEUE_NAME" not in text or "not supported" in text:
            why = ("this salespad binary has no Redis queue yet (--print-config exit %d, "
                   "no QUEUE_NAME):\n%s" % (r.returncode, text.strip()[-800:]))
            if ci():
                raise AssertionError(why)
            pytest.skip(why)

    def cleanup(self):
        # Every process first (the Env's cleanup of the SalesPad ones is idempotent), so that
        # nothing writes the queue's keys again after they are deleted.
        for n in self.nodes:
            n.cleanup()
        for p in self.env.procs:
            p.cleanup()
        try:
            for q in self.queues:
                drop_keys(self.redis, "%s:%s:*" % (self.prefix, q))
        finally:
            self.redis.close()

    def log_tails(self):
        """What each Node process printed (pytest's report shows it when a test fails)."""
        return "".join("---- node %s (%s, queue %s) ----\n%s\n" % (n.name, n.mode, n.queue,
                                                                   n.tail())
                       for n in self.nodes)


@pytest.fixture
def ix(env, shared_redis):
    """The test's Interop context (skips the test when the binary has no Redis queue)."""
    context = Interop(env, shared_redis)
    try:
        context.require_redis_support()
        yield context
    finally:
        context.cleanup()


# ---------------------------------------------------------------------------------------------
# Checks


def job_events(ev, job_id):
    """The QueueEvents lines of one job, in stream order."""
    return [l for l in ev.snapshot("event") if l.get("jobId") == job_id]


def event_names(ev, job_id):
    return [l["event"] for l in job_events(ev, job_id)]


def wait_events(ev, job_id, last_event, timeout, what):
    """Polls until job_id's events end with last_event; returns its events."""
    def check():
        evs = job_events(ev, job_id)
        return evs if evs and evs[-1]["event"] == last_event else None
    try:
        return wait_until(check, timeout, what)
    except TimeoutFailure as e:
        raise TimeoutFailure("%s; events of %s so far: %s" % (e, job_id, event_names(ev, job_id)))


def wait_counts(sess, want, timeout, what):
    """Polls getJobCounts() until every state named in `want` has that count; returns them."""
    last = [None]

    def check():
        c = sess.call("counts")
        last[0] = c
        return c if all(c.get(k, 0) == v for k, v in want.items()) else None
    try:
        return wait_until(check, timeout, what, interval=0.05)
    except TimeoutFailure as e:
        raise TimeoutFailure("%s; last getJobCounts(): %s" % (e, last[0]))


def assert_no_node_errors(*procs):
    for p in procs:
        errs = p.errors()
        if errs:
            raise AssertionError("node %s reported errors: %s" % (p.name, errs))


def check_backoff(evs, idx_delayed, backoff_ms, jitter, what):
    """The `delayed` event evs[idx_delayed] of a retry: its due time (field `delay`) must be
    now + backoff_ms, or with jitter j now + a value in [backoff*(1-j), backoff], where `now` is
    the worker's clock when it decided the retry. That moment lies between the `active` entry of
    the attempt and the `delayed` entry (stream ids are Redis server time in ms; worker, Redis and
    test share one clock), so without jitter:
        due - t_active >= backoff   and   due - t_delayed <= backoff
    exactly, whatever the load (2 ms allowed for ms rounding). Jitter fails the first bound
    unless it happens to be smaller than the time the attempt took. Then the job must not run
    again before it is due. Returns (due - t_active, due - t_delayed, next start - due)."""
    d = evs[idx_delayed]
    assert_eq(d["event"], "delayed", what + ": event")
    due = int(d["delay"])
    t_delayed = stream_ms(d["streamId"])
    active_before = [e for e in evs[:idx_delayed] if e["event"] == "active"][-1]
    t_active = stream_ms(active_before["streamId"])
    lo = backoff_ms * (1 - jitter)
    if not (due - t_active >= lo - 2 and due - t_delayed <= backoff_ms + 2):
        raise AssertionError(
            "%s: delayed until %d = attempt start + %d ms = failure recorded + %d ms (the "
            "attempt took %d ms); expected a backoff of %s ms from the failure"
            % (what, due, due - t_active, due - t_delayed, t_delayed - t_active,
               "%g..%d" % (lo, backoff_ms) if jitter else "exactly %d" % backoff_ms))
    nxt = [e for e in evs[idx_delayed + 1:] if e["event"] == "active"]
    lag = None
    if nxt:
        lag = stream_ms(nxt[0]["streamId"]) - due
        if lag < -1:
            raise AssertionError("%s: the job ran again %d ms before it was due (%d)"
                                 % (what, -lag, due))
    return due - t_active, due - t_delayed, lag


def message_channel_map(dets):
    out = {}
    for lid, d in dets.items():
        for m in outbound(d):
            out[m["id"]] = (lid, m)
    return out


# ---------------------------------------------------------------------------------------------
# Tests


BACKOFF_A = 250


def test_salespad_jobs_in_node_queue_view(env, ix):
    """SalesPad's jobs as Node's Queue and QueueEvents see them: waiting before a worker runs,
    then completed (after one retry) or failed (a permanent error), with BullMQ's fields."""
    q = ix.queue("view")
    ev = ix.events(q)  # before the capture
    sess = ix.session(q)
    api = ix.serve(q, "--no-worker", JOB_BACKOFF_MS=BACKOFF_A, MOCK_FAIL_FIRST=1)
    good = create_lead(api, name="Interop View", email="view@example.com", phone="+15550100")
    bounce = create_lead(api, name="Interop Bounce", email="bounce@example.com")
    dets = {good["id"]: details(api, good["id"]), bounce["id"]: details(api, bounce["id"])}
    msgs = message_channel_map(dets)
    assert_eq(len(msgs), 3, "outbound messages")
    bounce_mid = [mid for mid, (lid, _) in msgs.items() if lid == bounce["id"]][0]

    # Before any worker: three waiting jobs, ids = message ids.
    counts = wait_counts(sess, {"waiting": 3}, 10, "3 waiting jobs in Node's getJobCounts()")
    for k, v in counts.items():
        if k != "waiting":
            assert_eq(v, 0, "getJobCounts().%s before any worker" % k)
    jobs = sess.call("jobs", types=["waiting"])
    assert_eq(sorted(j["id"] for j in jobs), sorted(msgs), "waiting job ids (= message ids)")
    for j in jobs:
        lid, m = msgs[j["id"]]
        what = "job %s" % j["id"]
        assert_eq(j["name"], "send-message", what + " name")
        assert_eq(j["state"], "waiting", what + " getState()")
        assert_eq(j["attemptsMade"], 0, what + " attemptsMade")
        assert_eq(j["finishedOn"], None, what + " finishedOn")
        assert_eq(j["processedOn"], None, what + " processedOn")
        data = j["data"]
        assert_eq(data.get("messageId"), j["id"], what + " data.messageId")
        assert_eq(data.get("leadId"), lid, what + " data.leadId")
        assert_eq(data.get("channel"), m["channel"], what + " data.channel")
        assert_eq(data.get("kind"), "welcome", what + " data.kind")
        for k in ("channelMessage", "correlationIds"):
            if k not in data:
                raise AssertionError("%s data lacks %s: %r" % (what, k, data))
        opts = j["opts"]
        assert_eq(opts.get("attempts"), 3, what + " opts.attempts")
        assert_eq(opts.get("jobId"), j["id"], what + " opts.jobId")
        assert_eq(opts.get("backoff"), {"type": "exponential", "delay": BACKOFF_A, "jitter": 0.2},
                  what + " opts.backoff")
        one = sess.call("job", jobId=j["id"])
        assert_eq(one["state"], "waiting", what + " getJob().getState()")
        assert_eq(one["data"], data, what + " getJob().data")
    for lid, d in dets.items():
        for dj in d["jobs"]:
            if dj["id"] not in msgs or dj["messageId"] != dj["id"]:
                raise AssertionError("GET /leads/%s job %r: expected id = messageId = a BullMQ "
                                     "job id %s" % (lid, dj, sorted(msgs)))

    for mid in msgs:
        evs = wait_events(ev, mid, "waiting", 10, "added+waiting events of %s" % mid)
        assert_eq([e["event"] for e in evs], ["added", "waiting"], "events of %s" % mid)
        assert_eq(evs[0].get("name"), "send-message", "added event name of %s" % mid)

    # A SalesPad worker: the two good messages fail once (MOCK_FAIL_FIRST=1) then complete; the
    # bounce fails permanently at once.
    ix.worker(q, JOB_BACKOFF_MS=BACKOFF_A, MOCK_FAIL_FIRST=1)
    wait_counts(sess, {"completed": 2, "failed": 1, "waiting": 0, "active": 0, "delayed": 0},
                20, "2 completed and 1 failed jobs in Node's getJobCounts()")
    done = {j["id"]: j for j in sess.call("jobs", types=["completed", "failed"])}
    assert_eq(sorted(done), sorted(msgs), "finished job ids")
    for mid, j in done.items():
        what = "job %s" % mid
        if mid == bounce_mid:
            assert_eq(j["state"], "failed", what + " state")
            assert_eq(j["attemptsMade"], 1, what + " attemptsMade (permanent error)")
            if "mailbox does not exist" not in (j["failedReason"] or ""):
                raise AssertionError("%s failedReason: %r" % (what, j["failedReason"]))
        else:
            assert_eq(j["state"], "completed", what + " state")
            assert_eq(j["attemptsMade"], 2, what + " attemptsMade (one retry)")
            if "simulated failure" not in (j["failedReason"] or ""):
                raise AssertionError("%s failedReason (kept from attempt 1): %r"
                                     % (what, j["failedReason"]))
            assert_eq(len(j["stacktrace"] or []), 1, what + " stacktrace entries")
        if not isinstance(j["finishedOn"], int) or j["finishedOn"] < j["processedOn"]:
            raise AssertionError("%s finishedOn %r, processedOn %r"
                                 % (what, j["finishedOn"], j["processedOn"]))
        if j["attemptsStarted"] is not None:
            assert_eq(j["attemptsStarted"], j["attemptsMade"], what + " attemptsStarted")

    # QueueEvents saw every step.
    for mid in msgs:
        what = "QueueEvents of %s" % mid
        if mid == bounce_mid:
            evs = wait_events(ev, mid, "failed", 10, what)
            assert_eq([e["event"] for e in evs], ["added", "waiting", "active", "failed"], what)
            assert_eq(evs[-1].get("failedReason"), done[mid]["failedReason"],
                      what + ": failedReason")
        else:
            evs = wait_events(ev, mid, "completed", 10, what)
            assert_eq([e["event"] for e in evs],
                      ["added", "waiting", "active", "delayed", "waiting", "active", "completed"],
                      what)
            assert_eq(evs[4].get("prev"), "delayed", what + ": waiting after delayed, prev")
            check_backoff(evs, 3, BACKOFF_A, 0.2, what + " retry 1")
    assert_no_node_errors(ev, sess)

    # SalesPad's own view agrees.
    for lid in dets:
        d = details(api, lid)
        for dj in d["jobs"]:
            nj = done[dj["id"]]
            assert_eq(dj["state"], nj["state"], "GET /leads job %s state" % dj["id"])
            assert_eq(dj["attemptsMade"], nj["attemptsMade"],
                      "GET /leads job %s attemptsMade" % dj["id"])


def test_node_worker_processes_salespad_jobs(env, ix):
    """A Node BullMQ Worker takes the jobs SalesPad's API queued: its processor receives the
    message data and the jobs end completed."""
    q = ix.queue("nodework")
    sess = ix.session(q)
    api = ix.serve(q, "--no-worker")
    leads = [create_lead(api, name="Node Worker %d" % i, email="nw%d@example.com" % i,
                         phone="+1555020%d" % i) for i in range(2)]
    dets = {l["id"]: details(api, l["id"]) for l in leads}
    msgs = message_channel_map(dets)
    assert_eq(len(msgs), 4, "outbound messages")
    wait_counts(sess, {"waiting": 4}, 10, "4 waiting jobs")

    w = ix.node("work", q, {"concurrency": 2}, name="node-worker")
    wait_until(lambda: len(w.snapshot("completed")) + len(w.snapshot("failed")) >= 4, 20,
               "the Node worker to finish 4 jobs")
    if w.snapshot("failed"):
        raise AssertionError("Node worker failures: %s" % w.snapshot("failed"))
    seen = {}
    for p in w.snapshot("process"):
        if p["id"] in seen:
            raise AssertionError("job %s processed twice by the Node worker" % p["id"])
        seen[p["id"]] = p
    assert_eq(sorted(seen), sorted(msgs), "jobs the Node worker processed")
    for mid, p in seen.items():
        lid, m = msgs[mid]
        what = "Node processor's job %s" % mid
        assert_eq(p["name"], "send-message", what + " name")
        assert_eq(p["attemptsMade"], 0, what + " attemptsMade")
        data = p["data"]
        assert_eq(data.get("messageId"), mid, what + " data.messageId")
        assert_eq(data.get("leadId"), lid, what + " data.leadId")
        assert_eq(data.get("channel"), m["channel"], what + " data.channel")
        assert_eq(data.get("kind"), "welcome", what + " data.kind")
        cm = data.get("channelMessage")
        if not isinstance(cm, dict) or not cm:
            raise AssertionError("%s data.channelMessage: %r" % (what, cm))
        if "correlationIds" not in data:
            raise AssertionError("%s data lacks correlationIds: %r" % (what, data))

    wait_counts(sess, {"completed": 4, "waiting": 0, "active": 0, "failed": 0, "delayed": 0},
                10, "4 completed jobs")
    for j in sess.call("jobs", types=["completed"]):
        what = "job %s" % j["id"]
        assert_eq(j["state"], "completed", what + " state")
        assert_eq(j["attemptsMade"], 1, what + " attemptsMade")
        assert_eq((j["returnvalue"] or {}).get("processedBy"), "node", what + " returnvalue")
        if not isinstance(j["finishedOn"], int):
            raise AssertionError("%s finishedOn %r" % (what, j["finishedOn"]))
    assert_eq(env.sink(), [], "SalesPad deliveries (the Node worker took every job)")
    assert_no_node_errors(w, sess)
    w.stop()


def test_node_added_job_runs_on_salespad_worker(env, ix):
    """Queue.add() from Node, processed by `salespad worker` with the job's own attempts and
    backoff (not SalesPad's settings), on BullMQ's schedule: 300 ms, then 600 ms, no jitter."""
    qa = ix.queue("src")
    qb = ix.queue("node")
    api = ix.serve(qa, "--no-worker")  # its own jobs stay on queue A, unprocessed
    lead1 = create_lead(api, name="Timing One", email="timing1@example.com")
    lead2 = create_lead(api, name="Timing Two", email="timing2@example.com")
    m1 = outbound(details(api, lead1["id"]))[0]
    m2 = outbound(details(api, lead2["id"]))[0]

    ev = ix.events(qb)
    sess = ix.session(qb)
    backoff = {"type": "exponential", "delay": 300}
    j1 = sess.call("add", name="send-message",
                   data={"messageId": m1["id"], "leadId": lead1["id"], "channel": "email"},
                   opts={"attempts": 3, "backoff": backoff})["id"]
    j2 = sess.call("add", name="send-message",
                   data={"messageId": m2["id"], "leadId": lead2["id"], "channel": "email"},
                   opts={"attempts": 2, "backoff": backoff})["id"]
    assert j1 != j2

    # SalesPad's own settings differ from the jobs' options: the jobs' must win.
    ix.worker(qb, MOCK_FAIL_FIRST=2, JOB_BACKOFF_MS=5000, JOB_ATTEMPTS=5)
    evs1 = wait_events(ev, j1, "completed", 15, "job %s (attempts 3) completed" % j1)
    evs2 = wait_events(ev, j2, "retries-exhausted", 15,
                       "job %s (attempts 2) failed, retries exhausted" % j2)
    assert_eq([e["event"] for e in evs1],
              ["added", "waiting", "active", "delayed", "waiting", "active", "delayed", "waiting",
               "active", "completed"], "QueueEvents of job %s" % j1)
    assert_eq([e["event"] for e in evs2],
              ["added", "waiting", "active", "delayed", "waiting", "active", "failed",
               "retries-exhausted"], "QueueEvents of job %s" % j2)
    for evs, i, backoff, job in ((evs1, 3, 300, j1), (evs1, 6, 600, j1), (evs2, 3, 300, j2)):
        after_start, after_fail, lag = check_backoff(evs, i, backoff, 0,
                                                     "job %s, delay %d" % (job, backoff))
        print("job %s: due %d ms after the attempt started, %d ms after the failure was "
              "recorded (backoff %d); next attempt %s ms after due"
              % (job, after_start, after_fail, backoff, lag))
    assert_eq(evs2[-1].get("attemptsMade"), "2", "retries-exhausted attemptsMade of %s" % j2)

    job1 = sess.call("job", jobId=j1)
    assert_eq(job1["state"], "completed", "job %s state" % j1)
    assert_eq(job1["attemptsMade"], 3, "job %s attemptsMade" % j1)
    assert_eq(len(job1["stacktrace"] or []), 2, "job %s stacktrace entries" % j1)
    if "attempt 2" not in (job1["failedReason"] or ""):
        raise AssertionError("job %s failedReason (from attempt 2): %r" % (j1, job1["failedReason"]))
    if not isinstance(job1["finishedOn"], int):
        raise AssertionError("job %s finishedOn %r" % (j1, job1["finishedOn"]))
    job2 = sess.call("job", jobId=j2)
    assert_eq(job2["state"], "failed", "job %s state" % j2)
    assert_eq(job2["attemptsMade"], 2, "job %s attemptsMade" % j2)
    assert_eq(evs2[-2].get("failedReason"), job2["failedReason"], "failed event reason of %s" % j2)
    counts = sess.call("counts")
    assert_eq((counts["completed"], counts["failed"]), (1, 1), "Node counts (completed, failed)")

    sent = [s for s in env.sink() if not s.get("duplicate")]
    assert_eq([(s["messageId"], s["attempt"]) for s in sent], [(m1["id"], 3)],
              "deliveries (message, attempt)")
    d1 = details(api, lead1["id"])
    assert_eq(outbound(d1)[0]["status"], "sent", "message %s status" % m1["id"])
    assert_no_node_errors(ev, sess)


def test_node_and_salespad_workers_share_a_queue(env, ix):
    """A Node Worker and a SalesPad worker on one queue (each with a fast stalled checker): every
    job is completed exactly once, by one of them."""
    q = ix.queue("shared")
    ev = ix.events(q)
    sess = ix.session(q)
    api = ix.serve(q, "--no-worker")
    nw = ix.node("work", q, {"concurrency": 2, "processMs": 5, "lockDuration": 3000,
                             "stalledInterval": 500}, name="node-worker")
    ix.worker(q, WORKER_CONCURRENCY=2, JOB_LEASE_MS=3000, QUEUE_STALLED_INTERVAL_MS=500)
    n = 15
    leads = [create_lead(api, name="Shared %d" % i, email="shared%d@example.com" % i,
                         phone="+1555030%02d" % i) for i in range(n)]
    mids = set()
    for l in leads:
        for m in outbound(details(api, l["id"])):
            mids.add(m["id"])
    assert_eq(len(mids), 2 * n, "outbound messages")
    wait_counts(sess, {"completed": 2 * n, "waiting": 0, "active": 0, "delayed": 0, "failed": 0},
                30, "%d completed jobs" % (2 * n))
    by_node = [p["id"] for p in nw.snapshot("process")]
    by_salespad = [s["messageId"] for s in env.sink()]
    dup = [s for s in env.sink() if s.get("duplicate")]
    both = set(by_node) & set(by_salespad)
    print("shared queue: %d jobs by the Node worker, %d by salespad worker"
          % (len(by_node), len(by_salespad)))
    if len(set(by_node)) != len(by_node) or len(set(by_salespad)) != len(by_salespad) or both \
            or dup:
        raise AssertionError("a job ran twice: node %s, salespad %s, both %s, duplicates %s"
                             % (sorted(by_node), sorted(by_salespad), sorted(both), dup))
    assert_eq(set(by_node) | set(by_salespad), mids, "jobs processed by either worker")
    for j in sess.call("jobs", types=["completed"]):
        assert_eq(j["attemptsMade"], 1, "job %s attemptsMade" % j["id"])
    for mid in mids:
        evs = wait_events(ev, mid, "completed", 10, "completed event of %s" % mid)
        names = [e["event"] for e in evs]
        assert_eq(names, ["added", "waiting", "active", "completed"], "QueueEvents of %s" % mid)
    stalled = [l for l in ev.snapshot("event") if l["event"] == "stalled"]
    assert_eq(stalled, [], "stalled events")
    assert_no_node_errors(ev, sess, nw)
    nw.stop()


def test_pause_and_resume_from_node(env, ix):
    """Queue.pause() and resume() from Node: a job SalesPad queues while the queue is paused
    lands where Node's own add puts it (bullmq 5: the `paused` list; 6: `wait`), no worker takes
    a job before the resume, and after it both jobs complete."""
    qa = ix.queue("src")
    q = ix.queue("pause")
    src = ix.serve(qa, "--no-worker")  # a message for the Node-added job (its own job stays on A)
    other = create_lead(src, name="Paused Node", email="paused-node@example.com")
    other_mid = outbound(details(src, other["id"]))[0]["id"]
    ev = ix.events(q)
    sess = ix.session(q)
    sess.call("pause")
    assert_eq(sess.call("isPaused"), True, "isPaused() after pause()")
    api = ix.serve(q, "--no-worker")
    lead = create_lead(api, name="Paused", email="paused@example.com")
    mid = outbound(details(api, lead["id"]))[0]["id"]
    wait_until(lambda: sess.call("job", jobId=mid), 10, "SalesPad's job %s in Redis" % mid)
    nid = sess.call("add", name="send-message",
                    data={"messageId": other_mid, "leadId": other["id"], "channel": "email"},
                    opts={"attempts": 1})["id"]
    counts = sess.call("counts")
    where = {k: v for k, v in counts.items() if v}
    keys = {k: ix.redis.lrange("%s:%s:%s" % (ix.prefix, q, k), 0, -1)
            for k in ("wait", "paused")}
    if len(where) != 1 or list(where.values()) != [2]:
        raise AssertionError("while paused, Node's job %s and SalesPad's job %s should be in the "
                             "same list; getJobCounts() %s, lists %s" % (nid, mid, where, keys))
    ix.worker(q)
    sess.call("resume")
    for j in (mid, nid):
        wait_events(ev, j, "completed", 10, "job %s completed after resume()" % j)
    stream = ev.snapshot("event")
    resumed = [i for i, e in enumerate(stream) if e["event"] == "resumed"]
    early = [e for e in stream[:resumed[0]] if e["event"] == "active"] if resumed else stream
    assert_eq(early, [], "jobs taken before resume()")
    assert_no_node_errors(ev, sess)


def test_node_added_jobs_salespad_cannot_run_fail(env, ix):
    """Jobs from Node that SalesPad cannot process (another job name; a messageId that is not a
    UUID; an unknown message) end failed, as a processor error does in BullMQ, and do not hold up
    a good job queued after them."""
    qa = ix.queue("src")
    q = ix.queue("poison")
    src = ix.serve(qa, "--no-worker")
    lead = create_lead(src, name="Good One", email="good@example.com")
    mid = outbound(details(src, lead["id"]))[0]["id"]
    ev = ix.events(q)
    sess = ix.session(q)
    bad = [
        sess.call("add", name="other-job", data={"foo": 1}, opts={})["id"],
        sess.call("add", name="send-message",
                  data={"messageId": "not-a-uuid", "leadId": lead["id"], "channel": "email"},
                  opts={})["id"],
        sess.call("add", name="send-message",
                  data={"messageId": str(uuid.uuid4()), "leadId": lead["id"], "channel": "email"},
                  opts={})["id"],
    ]
    good = sess.call("add", name="send-message",
                     data={"messageId": mid, "leadId": lead["id"], "channel": "email"},
                     opts={"attempts": 1})["id"]
    ix.worker(q, WORKER_BATCH=16)

    def states():
        return {b: (j["name"], j["state"], j["attemptsMade"], j["failedReason"])
                for b in bad + [good] for j in [sess.call("job", jobId=b)]}
    try:
        wait_until(lambda: all(st[1] == ("completed" if b == good else "failed")
                               for b, st in states().items()), 12,
                   "the good job %s to complete and the others to fail" % good)
    except TimeoutFailure as e:
        raise AssertionError("%s\njobs (name, state, attemptsMade, failedReason): %s"
                             % (e, json.dumps(states(), indent=1)))
    assert_eq([e["event"] for e in job_events(ev, good)][-1], "completed",
              "last event of the good job")
    assert_no_node_errors(ev, sess)


def test_node_stalled_checker_respects_salespad_locks(env, ix):
    """A send that outlasts the lock (2.5 s, lock 1 s): SalesPad's worker must renew its lock
    (BullMQ: every lockDuration/2), so neither a Node Worker's stalled checker nor SalesPad's own
    (both every 300 ms; they share the `stalled-check` rate limiter) takes the job away."""
    q = ix.queue("lock")
    ev = ix.events(q)
    sess = ix.session(q)
    api = ix.serve(q, "--no-worker")
    lead = create_lead(api, name="Slow Send", email="slow@example.com")
    mid = outbound(details(api, lead["id"]))[0]["id"]
    sw = ix.worker(q, JOB_LEASE_MS=1000, MOCK_SEND_DELAY_MS=2500, QUEUE_STALLED_INTERVAL_MS=300)
    wait_counts(sess, {"active": 1}, 10, "the job active on the SalesPad worker")
    nw = ix.node("work", q, {"lockDuration": 1000, "stalledInterval": 300}, name="node-worker")
    wait_until(lambda: [e for e in job_events(ev, mid) if e["event"] in ("completed", "failed")],
               15, "job %s completed or failed" % mid)
    # SalesPad's (slow) send ends in any case: its delivery is part of the picture.
    wait_until(lambda: env.sink(), 10, "the SalesPad worker's delivery")
    job = sess.call("job", jobId=mid)
    facts = {
        "events": event_names(ev, mid),
        "job (state, attemptsMade, attemptsStarted, stalledCounter, failedReason)":
            (job["state"], job["attemptsMade"], job["attemptsStarted"], job["stalledCounter"],
             job["failedReason"]),
        "taken by the Node worker": [p["id"] for p in nw.snapshot("process")],
        "Node worker 'stalled' notices": [l["id"] for l in nw.snapshot("stalled")],
        "SalesPad deliveries (attempt, duplicate)":
            [(s["attempt"], s.get("duplicate", False)) for s in env.sink()],
        "SalesPad worker warnings": [l.split("msg=", 1)[-1] for l in sw.log().splitlines()
                                     if " warn " in l or " error " in l],
    }
    want = {
        "events": ["added", "waiting", "active", "completed"],
        "job (state, attemptsMade, attemptsStarted, stalledCounter, failedReason)":
            ("completed", 1, 1, 0, None),
        "taken by the Node worker": [],
        "Node worker 'stalled' notices": [],
        "SalesPad deliveries (attempt, duplicate)": [(1, False)],
        "SalesPad worker warnings": [],
    }
    bad = {k: v for k, v in facts.items() if v != want[k]}
    if bad:
        raise AssertionError("the job was taken from the SalesPad worker while it was sending "
                             "(its lock was not renewed?):\n%s\nexpected:\n%s"
                             % (json.dumps(facts, indent=1), json.dumps(want, indent=1)))
    assert_no_node_errors(ev, sess, nw)
    nw.stop()


def test_salespad_recovers_job_of_dead_node_worker(env, ix):
    """A Node Worker killed (SIGKILL) in the middle of a job: once its lock expires, SalesPad's
    stalled checker puts the job back (`stalled` event, stalledCounter 1) and SalesPad sends it."""
    q = ix.queue("stalled")
    ev = ix.events(q)
    sess = ix.session(q)
    api = ix.serve(q, "--no-worker")
    lead = create_lead(api, name="Dead Node", email="dead@example.com")
    mid = outbound(details(api, lead["id"]))[0]["id"]
    nw = ix.node("work", q, {"lockDuration": 1000, "stalledInterval": 300,
                             "processMs": 600000}, name="node-worker")
    nw.wait_for(lambda l: l.get("type") == "process" and l.get("id") == mid, 15,
                "the Node worker to take job %s" % mid)
    nw.popen.kill()
    nw.popen.wait(10)
    ix.worker(q, QUEUE_STALLED_INTERVAL_MS=300, QUEUE_MAX_STALLED=1)
    evs = wait_events(ev, mid, "completed", 15, "job %s completed by SalesPad" % mid)
    assert_eq([e["event"] for e in evs],
              ["added", "waiting", "active", "waiting", "stalled", "active", "completed"],
              "QueueEvents of %s" % mid)
    assert_eq(evs[3].get("prev"), "active", "waiting after the stall, prev")
    job = sess.call("job", jobId=mid)
    assert_eq((job["state"], job["attemptsMade"], job["stalledCounter"]), ("completed", 1, 1),
              "job %s (state, attemptsMade, stalledCounter)" % mid)
    if job["attemptsStarted"] is not None:
        assert_eq(job["attemptsStarted"], 2, "job %s attemptsStarted" % mid)
    assert_eq([(s["messageId"], s["attempt"]) for s in env.sink()], [(mid, 1)], "deliveries")
    assert_no_node_errors(ev, sess)



def test_retry_from_node_and_from_salespad_end_the_same(env, ix):
    """Two sends failed for good; one retried from Node (job.retry('failed', {resetAttemptsMade,
    resetAttemptsStarted})), the other through POST /jobs/:id/retry: the two jobs' hashes, lists
    and events are then the same, field by field; a SalesPad worker sends both, and they end
    the same again."""
    q = ix.queue("retry")
    ev = ix.events(q)
    sess = ix.session(q)
    api = ix.serve(q, "--no-worker", JOB_ATTEMPTS=1)
    lead = create_lead(api, name="Retry Twice", email="retry2@example.com", phone="+15550700")
    by_channel = {m["channel"]: m["id"] for m in outbound(details(api, lead["id"]))}
    node_id, api_id = by_channel["email"], by_channel["whatsapp"]
    w = ix.worker(q, MOCK_FAIL_FIRST=1)  # each message's first attempt fails: both fail for good
    wait_counts(sess, {"failed": 2, "waiting": 0, "active": 0}, 15, "2 failed jobs")
    w.stop()  # nothing runs the retried jobs until the comparison is made

    def key(suffix):
        return "%s:%s:%s" % (ix.prefix, q, suffix)

    def where(job_id):
        """Every list and set of the queue that holds the job."""
        out = [name for name in ("wait", "paused", "active") if job_id in ix.redis.lrange(
            key(name), 0, -1)]
        out += [name for name in ("failed", "completed", "delayed", "prioritized")
                if ix.redis.zscore(key(name), job_id) is not None]
        return out

    def normalized_hash(job_id, other_id):
        """HGETALL of the job with what names the job (its id, its message, its channel and
        address) replaced, so that the two jobs compare field by field."""
        h = ix.redis.hgetall(key(job_id))
        data = json.loads(h.pop("data"))
        opts = json.loads(h.pop("opts"))
        assert_eq((data["messageId"], opts["jobId"]), (job_id, job_id), "job %s ids" % job_id)
        h["opts"] = json.dumps(dict(opts, jobId="<id>"), sort_keys=True)
        h["data.keys"] = sorted(data)
        if "returnvalue" in h:
            rv = json.loads(h.pop("returnvalue"))
            h["returnvalue"] = json.dumps(dict(rv, messageId="<id>", channel="<channel>",
                                               providerId="<provider>"), sort_keys=True)
        for t in ("finishedOn", "processedOn"):
            if t in h:
                h[t] = "<time>"
        return h

    def same_jobs(what):
        a, b = normalized_hash(node_id, api_id), normalized_hash(api_id, node_id)
        if a != b:
            diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
            raise AssertionError("%s: the jobs differ (field: retried from Node, through "
                                 "SalesPad):\n%s" % (what, json.dumps(diff, indent=1)))
        assert_eq(where(node_id), where(api_id), what + ": lists holding the jobs")
        return a

    before = same_jobs("failed, before the retries")
    assert_eq(where(api_id), ["failed"], "where the jobs are before the retries")
    for f in ("atm", "ats", "failedReason", "finishedOn", "processedOn", "stacktrace"):
        assert f in before, "failed job without %s: %r" % (f, before)

    sess.call("retry", jobId=node_id, opts={"resetAttemptsMade": True,
                                            "resetAttemptsStarted": True})
    r = api.post("/jobs/%s/retry" % api_id)
    assert_eq(r.status, 200, "POST /jobs/%s/retry: %r" % (api_id, r))
    assert_eq((r.json()["state"], r.json()["attemptsMade"]), ("waiting", 0), "SalesPad's record")
    wait_until(lambda: where(api_id) == ["wait"], 10,
               "the relay to move job %s back to wait" % api_id)
    after = same_jobs("retried")
    assert_eq(where(api_id), ["wait"], "where the jobs are after the retries")
    for f in ("atm", "ats", "failedReason", "finishedOn", "processedOn"):
        assert f not in after, "retried job still has %s: %r" % (f, after)
    assert_eq(after["stacktrace"], before["stacktrace"], "stacktrace (history) kept")
    assert_eq(ix.redis.zscore(key("marker"), "0"), 0.0, "the marker wakes the workers")
    views = {j: sess.call("job", jobId=j) for j in (node_id, api_id)}
    for j, v in views.items():
        assert_eq((v["state"], v["attemptsMade"], v["failedReason"], v["finishedOn"]),
                  ("waiting", 0, None, None), "Node's view of job %s" % j)
    for j in (node_id, api_id):
        evs = wait_events(ev, j, "waiting", 10, "the waiting event of the retry of %s" % j)
        assert_eq([(e["event"], e.get("prev")) for e in evs][-3:],
                  [("failed", "active"), ("retries-exhausted", None), ("waiting", "failed")],
                  "last events of %s" % j)
    # SalesPad's record of the job retried from Node shows the failure until a worker takes it
    assert_eq(api.get("/jobs/" + node_id).json()["state"], "failed",
              "record of the job retried from Node (updated when a SalesPad worker takes it)")

    ix.worker(q, MOCK_FAIL_FIRST=1)
    wait_counts(sess, {"completed": 2, "waiting": 0, "active": 0, "failed": 0}, 15,
                "both retried jobs completed")
    done = same_jobs("completed after the retries")
    assert_eq((done["atm"], done["ats"]), ("1", "1"), "attempts of the retried run")
    for j in (node_id, api_id):
        evs = wait_events(ev, j, "completed", 10, "job %s completed" % j)
        assert_eq([e["event"] for e in evs],
                  ["added", "waiting", "active", "failed", "retries-exhausted", "waiting",
                   "active", "completed"],
                  "QueueEvents of %s" % j)
    assert_eq(sorted((s["messageId"], s["attempt"]) for s in env.sink()),
              sorted([(node_id, 2), (api_id, 2)]), "deliveries (attempt 2 of each message)")
    det = details(api, lead["id"])
    for m in outbound(det):
        assert_eq((m["status"], m["attempts"]), ("sent", 2), "message %s" % m["channel"])
    for dj in det["jobs"]:
        assert_eq((dj["state"], dj["attemptsMade"]), ("completed", 1), "record of %s" % dj["id"])
    sources = {e["payload"]["messageId"]: e["payload"]["source"] for e in det["events"]
               if e["type"] == "message_retried"}
    assert_eq(sources, {node_id: "queue", api_id: "api"}, "message_retried events")
    assert_no_node_errors(ev, sess)
