"""Shared code for the integration suite: the real salespad binary on a temp database.

Python 3 standard library only. Each test file does:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import run, ...
    def test_something(env): ...   # env is a fresh Env (temp dir, process tracking)
    if __name__ == "__main__":
        run(globals())

and runs as `SALESPAD_BIN=/path/to/salespad python3 tests/integration/test_x.py [test_name...]`.
Env.serve()/Env.worker() start the real binary with DATABASE_URL=sqlite:<tmp>/sp.db,
MOCK_SINK=<tmp>/sink.jsonl, LOG_LEVEL=info, JOB_BACKOFF_MS=20 and a free loopback PORT; keyword
arguments override or add settings (JOB_LEASE_MS=1500, MOCK_FAIL_FIRST=2, ...).

run() executes every test_* function (or the names given on the command line) with a fresh Env,
always stops every process it started and removes its temp dir, prints the tail of each server's
stderr log when a test fails, and ends with exactly one line "N passed, M failed"; the exit status
is 0 only when nothing failed.

Rules the suite follows: never sleep-and-hope. Every wait polls a condition against a deadline
(wait_until), and a timeout says what it was waiting for.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN = os.environ.get("SALESPAD_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "salespad")
HOST = "127.0.0.1"
POLL_S = 0.02
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


class TimeoutFailure(AssertionError):
    pass


def wait_until(predicate, timeout=10.0, what="condition", interval=POLL_S):
    """Polls predicate() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except (ConnectionError, OSError, http.client.HTTPException) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % (last_exc,) if last_exc else ""
            raise TimeoutFailure("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Client:
    """A keep-alive HTTP/1.1 connection (one per thread). Reconnects once on a dropped socket."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, retry=True):
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                resp = Response(r.status, r.getheaders(), data)
                if r.will_close:
                    self.close()
                return resp
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError):
                # A kept-alive socket closed by the server between requests: one fresh try
                # for idempotent reads only (a POST may have been processed).
                self.close()
                if attempt == 1 or not retry or method != "GET":
                    raise
            except Exception:
                self.close()
                raise

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)


def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection."""
    c = Client(port, timeout=timeout)
    try:
        return c.request(method, path, body=body, headers=headers, retry=False)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Processes


class Proc:
    """One salespad process (serve, worker or migrate) with its stderr/stdout in log files."""

    def __init__(self, env, name, mode, args, extra_env, port):
        self.envobj = env
        self.name = name
        self.mode = mode
        self.args = list(args)
        self.port = port
        self.log_path = os.path.join(env.dir, "%s.stderr.log" % name)
        self.out_path = os.path.join(env.dir, "%s.stdout.log" % name)
        self.vars = extra_env
        self.popen = None
        self._client = None

    def start(self):
        # Append: a restarted process under the same name keeps one log.
        self._err = open(self.log_path, "ab")
        self._out = open(self.out_path, "ab")
        self.popen = subprocess.Popen([BIN, self.mode] + self.args, env=self.vars,
                                      stdin=subprocess.DEVNULL, stdout=self._out,
                                      stderr=self._err, cwd=self.envobj.dir)
        return self

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    @property
    def client(self):
        if self._client is None:
            self._client = Client(self.port)
        return self._client

    def request(self, method, path, body=None, **kw):
        return self.client.request(method, path, body=body, **kw)

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post(self, path, body=None, **kw):
        return self.client.post(path, body=body, **kw)

    def signal(self, sig):
        if self.alive():
            os.kill(self.popen.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT_S):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutFailure("%s (pid %d) did not exit within %.1fs"
                                 % (self.name, self.popen.pid, timeout))
        finally:
            if not self.alive():
                self._close_files()

    def stop(self, timeout=STOP_TIMEOUT_S, expect_rc=0):
        """SIGTERM and wait; asserts the exit code."""
        if self._client:
            self._client.close()
        self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError("%s exited with %r after SIGTERM, expected %r"
                                 % (self.name, rc, expect_rc))
        return rc

    def kill9(self):
        if self._client:
            self._client.close()
        self.signal(signal.SIGKILL)
        self.wait_exit(10)

    def _close_files(self):
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f and not f.closed:
                f.close()

    def cleanup(self):
        if self.alive():
            self.popen.kill()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._client:
            self._client.close()
        self._close_files()


class Env:
    """A fresh temp dir with the database and sink; tracks every process started in it."""

    def __init__(self, test_name):
        self.dir = tempfile.mkdtemp(prefix="salespad-it-%s-" % test_name)
        self.db_path = os.path.join(self.dir, "sp.db")
        self.sink_path = os.path.join(self.dir, "sink.jsonl")
        self.procs = []
        self._names = {}

    def base_vars(self, **overrides):
        v = dict(os.environ)
        for k in list(v):
            if k in ("PORT", "HOST", "DATABASE_URL", "REDIS_URL", "API_KEYS", "MOCK_SINK",
                     "MOCK_FAIL_FIRST", "MOCK_FAIL_RATE", "JOB_ATTEMPTS", "JOB_BACKOFF_MS",
                     "JOB_LEASE_MS", "LOG_LEVEL", "LOG_FORMAT", "WORKER_CONCURRENCY",
                     "HTTP_THREADS", "QUEUE_NAME", "QUEUE_PREFIX"):
                del v[k]
        v.update({
            "DATABASE_URL": "sqlite:" + self.db_path,
            "MOCK_SINK": self.sink_path,
            "LOG_LEVEL": "info",
            "JOB_BACKOFF_MS": "20",
        })
        for k, val in overrides.items():
            if val is None:
                v.pop(k, None)
            else:
                v[k] = str(val)
        return v

    def _name(self, mode):
        n = self._names.get(mode, 0) + 1
        self._names[mode] = n
        return mode if n == 1 else "%s%d" % (mode, n)

    def serve(self, *args, name=None, ready_timeout=READY_TIMEOUT_S, **overrides):
        """Starts `salespad serve` on a free port and waits for GET /ready == 200."""
        name = name or self._name("serve")
        for _ in range(5):
            port = free_port()
            p = Proc(self, name, "serve", args, self.base_vars(PORT=port, **overrides), port)
            self.procs.append(p)
            p.start()
            outcome = self._wait_ready(p, ready_timeout)
            if outcome == "ready":
                return p
            if outcome == "collision":
                continue  # someone took the port between our probe and the bind: new port
            raise AssertionError("%s exited with %s before it was ready:\n%s"
                                 % (name, p.popen.returncode, p.log_tail()))
        raise AssertionError("could not find a free port for %s" % name)

    def _wait_ready(self, p, timeout):
        banner = "listening on http://%s:%d " % (HOST, p.port)
        keys = p.vars.get("API_KEYS")
        auth = {"X-API-Key": keys.split(",")[0]} if keys else {}

        def check():
            if not p.alive():
                return "collision" if "cannot listen" in p.log() else "died"
            if banner not in p.log():
                return None  # not listening yet (and whatever answers there is not ours)
            try:
                r = http_request(p.port, "GET", "/ready", timeout=2, headers=auth)
                return "ready" if r.status == 200 else None
            except (ConnectionError, OSError, http.client.HTTPException):
                return None
        return wait_until(check, timeout, "%s to answer GET /ready 200" % p.name)

    def worker(self, *args, name=None, ready_timeout=READY_TIMEOUT_S, **overrides):
        """Starts `salespad worker` and waits for its 'worker started' log line."""
        name = name or self._name("worker")
        p = Proc(self, name, "worker", args, self.base_vars(**overrides), None)
        self.procs.append(p)
        p.start()

        def started():
            if not p.alive():
                raise AssertionError("%s exited with %s:\n%s"
                                     % (name, p.popen.returncode, p.log_tail()))
            return "worker started" in p.log()
        wait_until(started, ready_timeout, "%s to log 'worker started'" % name)
        return p

    def run_cli(self, *args, timeout=20, **overrides):
        """Runs the binary to completion; returns CompletedProcess (text)."""
        return subprocess.run([BIN] + list(args), env=self.base_vars(**overrides),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)

    # -- sink -----------------------------------------------------------------------------

    def sink(self):
        """Every complete line of the mock sink, parsed (a trailing partial line is skipped)."""
        try:
            with open(self.sink_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        out = []
        for raw in lines[:-1]:  # the last element is "" or a line still being written
            if raw.strip():
                out.append(json.loads(raw.decode("utf-8")))
        return out

    def sink_raw_lines(self):
        try:
            with open(self.sink_path, "rb") as f:
                return [l for l in f.read().decode("utf-8", "replace").split("\n") if l]
        except FileNotFoundError:
            return []

    # -- database (read-only peek, for checks the API cannot answer) -----------------------

    def db(self, sql, args=()):
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def cleanup(self):
        for p in self.procs:
            p.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self, out=sys.stdout):
        for p in self.procs:
            out.write("---- %s (pid %s) stderr tail ----\n%s\n"
                      % (p.name, p.popen.pid if p.popen else "-", p.log_tail()))


# ---------------------------------------------------------------------------------------------
# Domain helpers


def create_lead(proc_or_client, name="Jane Doe", email=None, phone=None):
    body = {"name": name}
    if email is not None:
        body["email"] = email
    if phone is not None:
        body["phone"] = phone
    r = proc_or_client.post("/leads", body)
    assert r.status == 201, "POST /leads: %r" % (r,)
    return r.json()


def details(proc_or_client, lead_id):
    r = proc_or_client.get("/leads/" + lead_id)
    assert r.status == 200, "GET /leads/%s: %r" % (lead_id, r)
    return r.json()


def all_messages(det):
    out = []
    for msgs in det["messagesByChannel"].values():
        out.extend(msgs)
    return out


def outbound(det):
    return [m for m in all_messages(det) if m["direction"] == "outbound"]


def event_types(det):
    return [e["type"] for e in det["events"]]


def assert_eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: expected %r, got %r" % (what or "value", b, a))


def parallel(fn, items, threads=16):
    """Runs fn(item) for every item on `threads` threads; returns the results in order.
    An exception in fn is returned in place of the result (never raised here)."""
    results = [None] * len(items)
    lock = threading.Lock()
    pos = [0]

    def loop():
        while True:
            with lock:
                i = pos[0]
                pos[0] += 1
            if i >= len(items):
                return
            try:
                results[i] = fn(items[i])
            except Exception as e:  # noqa: BLE001 (recorded for the caller)
                results[i] = e

    ts = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


# ---------------------------------------------------------------------------------------------
# Capture bursts


BURST_THREADS = 24


def lead_body(i, tag):
    return {"name": "%s lead %d" % (tag, i), "email": "%s-%d@example.com" % (tag, i),
            "phone": "+1555%07d" % i}


class Burst:
    """Fires n captures from `threads` client threads. With kill_pid, the thread that receives
    the kill_at-th 201 sends kill_sig (default SIGKILL) to that process at once, so the remaining
    requests are still in flight."""

    def __init__(self, port, n, tag, kill_pid=None, kill_at=None, threads=BURST_THREADS,
                 kill_sig=signal.SIGKILL):
        self.port, self.n, self.tag = port, n, tag
        self.kill_pid, self.kill_at, self.kill_sig = kill_pid, kill_at, kill_sig
        self.threads = threads
        self.ok = {}          # request index -> lead id (got 201)
        self.unknown = {}     # request index -> exception (outcome unknown: crash)
        self.other = {}       # request index -> non-201 response
        self.killed_after = None
        self.lock = threading.Lock()
        self.local = threading.local()
        self.clients = []

    def _client(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = Client(self.port, timeout=10)
            with self.lock:
                self.clients.append(c)
        return c

    def _one(self, i):
        try:
            r = self._client().post("/leads", lead_body(i, self.tag))
        except Exception as e:  # noqa: BLE001 (connection reset/refused after the kill)
            with self.lock:
                self.unknown[i] = e
            return
        with self.lock:
            if r.status != 201:
                self.other[i] = r
                return
            self.ok[i] = r.json()["id"]
            if self.kill_at is not None and len(self.ok) == self.kill_at:
                os.kill(self.kill_pid, self.kill_sig)
                self.killed_after = len(self.ok)

    def run(self):
        try:
            parallel(self._one, list(range(self.n)), self.threads)
        finally:
            for c in self.clients:
                c.close()
        return self


def lead_settled(srv, lid, nout=2):
    """The lead's details if its nout outbound messages are sent and its jobs completed."""
    d = details(srv, lid)
    outs = [m for m in all_messages(d) if m["direction"] == "outbound"]
    if len(outs) == nout and all(m["status"] == "sent" for m in outs) and \
            all(j["state"] == "completed" for j in d["jobs"]):
        return d
    return None


def wait_all_settled(srv, lead_ids, timeout, nout=2):
    """Polls until every lead is settled (see lead_settled); returns {lead id: details}."""
    pending = set(lead_ids)
    settled = {}

    def check():
        for lid in list(pending):
            d = lead_settled(srv, lid, nout)
            if d is not None:
                settled[lid] = d
                pending.discard(lid)
        return not pending
    wait_until(check, timeout, "every lead's messages sent (%d pending)" % len(pending))
    return settled


# ---------------------------------------------------------------------------------------------
# Runner


def run(namespace):
    if not os.path.exists(BIN):
        print("salespad binary not found at %s (set SALESPAD_BIN)" % BIN)
        print("0 passed, 1 failed")
        sys.exit(1)
    # Tests run in definition order; names on the command line select a subset.
    names = sys.argv[1:] or [n for n in namespace
                             if n.startswith("test_") and callable(namespace[n])]
    passed = failed = 0
    for name in names:
        fn = namespace.get(name)
        if fn is None:
            print("FAIL %s: no such test" % name)
            failed += 1
            continue
        env = Env(name)
        t0 = time.monotonic()
        ok = False
        try:
            fn(env)
            ok = True
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                env.cleanup()
                raise
            print("FAIL %s (%.2fs)" % (name, time.monotonic() - t0))
            traceback.print_exc(file=sys.stdout)
            env.dump_logs()
        finally:
            env.cleanup()
        if ok:
            passed += 1
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
        else:
            failed += 1
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    sys.exit(0 if failed == 0 and passed > 0 else 1)
