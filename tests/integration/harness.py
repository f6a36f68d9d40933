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

PostgreSQL mode: with SALESPAD_DB=postgres every test gets a fresh database (CREATE DATABASE on
the server whose URL is in the file $SALESPAD_PG_URL_FILE, as CTest's `pg` fixture writes it;
dropped at cleanup) and DATABASE_URL=postgres://.../<that database>. Without the URL file the
run starts a throwaway server of its own (tests/pg/pgserver.sh), except under CI=true, where
that is an error. env.db() then queries PostgreSQL through psql. A test that only makes sense on
one backend calls env.require_backend("postgres") (or "sqlite"): on the other it is skipped.
env.private_pg() starts a PostgreSQL server owned by the test (for outage tests, which stop it).

Redis mode: with SALESPAD_QUEUE=redis (default: db, the queue in the database) Env.serve() and
Env.worker() also get REDIS_URL (the server whose URL is in $SALESPAD_REDIS_URL_FILE, as CTest's
`redis` fixture writes it; without the file the run starts a throwaway server of its own with
tests/redis/redisserver.sh, except under CI=true, where that is an error), a QUEUE_NAME unique
to the Env (t<pid>x<n>, so every test has its own keys on the one shared server; they are
removed at cleanup) and QUEUE_STALLED_INTERVAL_MS=500 (overridable like any setting).
env.queue is "db" or "redis"; env.jobs_table is the table holding SalesPad's record of each
job ("jobs", or "outbox" in Redis mode; same state/attempts_made/stalled_count columns);
env.require_queue("redis") skips a test on the other mode. env.redis("HGETALL", key) runs one
command on the env's Redis (RedisClient: a stdlib RESP2 client; replies decoded, bytes as str),
env.rkey("wait") names a key of the env's queue ("bull:<queue>:wait"), and env.private_redis()
starts a Redis server owned by the test (stop(mode) / start() on the same port, for outage
tests); processes started after it use it.

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
import re
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
import urllib.parse

BIN = os.path.abspath(os.environ.get("SALESPAD_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "salespad"))
HOST = "127.0.0.1"
POLL_S = 0.02
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


class TimeoutFailure(AssertionError):
    pass


class Skip(Exception):
    """Raised by a test (env.require_backend, env.skip) that does not apply to this run."""


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

# ---------------------------------------------------------------------------------------------
# PostgreSQL (SALESPAD_DB=postgres)


BACKEND = os.environ.get("SALESPAD_DB", "sqlite").strip().lower() or "sqlite"
if BACKEND in ("postgresql", "pg"):
    BACKEND = "postgres"
PGSERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg", "pgserver.sh")


def ci():
    return os.environ.get("CI", "") == "true"


def find_pg_bindir(hint_dir=None):
    """The directory of psql: <hint_dir>/bindir as pgserver.sh wrote it, Debian's
    /usr/lib/postgresql/<newest>/bin, or PATH."""
    if hint_dir:
        try:
            with open(os.path.join(hint_dir, "bindir")) as f:
                d = f.read().strip()
            if os.path.exists(os.path.join(d, "psql")):
                return d
        except OSError:
            pass
    root = "/usr/lib/postgresql"
    try:
        versions = sorted((v for v in os.listdir(root) if v.split(".")[0].isdigit()),
                          key=lambda v: [int(x) for x in re.findall(r"\d+", v)], reverse=True)
    except OSError:
        versions = []
    for v in versions:
        d = os.path.join(root, v, "bin")
        if os.path.exists(os.path.join(d, "psql")):
            return d
    psql = shutil.which("psql")
    if psql:
        return os.path.dirname(psql)
    raise AssertionError("psql not found: install the Debian packages postgresql and "
                         "postgresql-client (scripts/deps.sh test)")


def _pg_env():
    """The environment for psql: none of the caller's PG* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class PgServer:
    """A PostgreSQL server, either shared (its URL read from a file) or private to this process
    (started and stopped with tests/pg/pgserver.sh in `dir`)."""

    def __init__(self, url, bindir, dir=None):
        self.url = url          # postgres://salespad@127.0.0.1:<port>/salespad
        self.bindir = bindir
        self.dir = dir          # set when we own the server (pgserver.sh state dir)

    @classmethod
    def from_url_file(cls, path):
        with open(path) as f:
            url = f.read().strip()
        if not url:
            raise AssertionError("%s is empty" % path)
        return cls(url, find_pg_bindir(os.path.dirname(os.path.abspath(path))))

    @classmethod
    def start(cls, dir):
        """Starts a throwaway server with state in `dir` (pgserver.sh start)."""
        r = subprocess.run(["bash", PGSERVER, "start", dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("pgserver.sh start %s failed (%d):\n%s%s"
                                 % (dir, r.returncode, r.stdout, r.stderr))
        with open(os.path.join(dir, "url")) as f:
            url = f.read().strip()
        return cls(url, find_pg_bindir(dir), dir)

    def _ctl(self, *args, timeout=120):
        assert self.dir, "not our server"
        r = subprocess.run(["bash", PGSERVER] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("pgserver.sh %s failed (%d):\n%s%s"
                                 % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def stop_server(self, mode="fast"):
        """Stops the server process, keeping its data (an outage)."""
        self._ctl("stop-server", self.dir, mode)

    def start_server(self):
        """Starts it again on the same port and waits until it accepts connections."""
        self._ctl("start-server", self.dir)

    def destroy(self):
        if self.dir and os.path.exists(self.dir):
            r = subprocess.run(["bash", PGSERVER, "stop", self.dir], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                sys.stdout.write("pgserver.sh stop %s failed:\n%s%s" % (self.dir, r.stdout,
                                                                        r.stderr))

    def db_url(self, dbname):
        u = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))

    def psql(self, dbname, script, variables=(), timeout=60):
        """Runs `script` (psql input on stdin) against `dbname`; returns stdout (text)."""
        cmd = [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-d", self.db_url(dbname)]
        for k, v in variables:
            cmd += ["-v", "%s=%s" % (k, v)]
        r = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=timeout,
                           env=_pg_env())
        if r.returncode != 0:
            raise AssertionError("psql on %s failed (%d): %s\n--- input ---\n%s"
                                 % (dbname, r.returncode, r.stderr.strip(), script))
        return r.stdout

    def create_database(self, dbname):
        assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", dbname), dbname
        self.psql("postgres", 'CREATE DATABASE "%s";\n' % dbname)

    def drop_database(self, dbname):
        assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", dbname), dbname
        self.psql("postgres", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\n' % dbname)


_shared_servers = {}   # kind ("pg", "redis") -> the run's server of that kind


def _shared_server(kind, url_env, what, mode, from_url_file, launch):
    """The run's server of a kind: the one named by the file $url_env, or a throwaway one
    started for this run (not under CI=true, where the URL file is required)."""
    srv = _shared_servers.get(kind)
    if srv is None:
        path = os.environ.get(url_env, "")
        if path and os.path.exists(path):
            srv = from_url_file(path)
        elif ci():
            raise AssertionError("%s under CI=true needs %s (%r) to name a running server"
                                 % (mode, url_env, path))
        else:
            d = tempfile.mkdtemp(prefix="salespad-it-%s-" % kind)
            print("%s not set (or missing): starting a throwaway %s in %s for this run"
                  % (url_env, what, d))
            srv = launch(os.path.join(d, kind))
            srv.tmp_parent = d
        _shared_servers[kind] = srv
    return srv


def _release_shared_servers():
    for srv in _shared_servers.values():
        if srv.dir:
            srv.destroy()
            shutil.rmtree(getattr(srv, "tmp_parent", ""), ignore_errors=True)
    _shared_servers.clear()


def shared_pg():
    """The run's PostgreSQL server (SALESPAD_DB=postgres), see _shared_server."""
    return _shared_server("pg", "SALESPAD_PG_URL_FILE", "PostgreSQL", "SALESPAD_DB=postgres",
                          PgServer.from_url_file, PgServer.start)


class _JsonObject(list):
    """Key/value pairs of a JSON object, in order (row_to_json keeps duplicate column names)."""


def _json_value(v):
    if isinstance(v, _JsonObject):
        return {k: _json_value(x) for k, x in v}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


def _placeholders_to_psql(sql):
    """Rewrites sqlite3-style `?` placeholders (outside quotes) as psql's :'p1', :'p2', ...
    (each a variable psql quotes as a literal). Returns (sql, count)."""
    out = []
    n = 0
    i = 0
    while i < len(sql):
        c = sql[i]
        if c in ("'", '"'):
            # A quoted literal or identifier, copied as is ('' and "" are escaped quotes).
            j = i + 1
            while True:
                k = sql.find(c, j)
                if k < 0:
                    k = len(sql) - 1
                    break
                if k + 1 < len(sql) and sql[k + 1] == c:
                    j = k + 2
                    continue
                break
            out.append(sql[i:k + 1])
            i = k + 1
            continue
        if c == "?":
            n += 1
            out.append(":'p%d'" % n)
        else:
            out.append(c)
        i += 1
    return "".join(out), n


# ---------------------------------------------------------------------------------------------
# Redis (SALESPAD_QUEUE=redis)


QUEUE = os.environ.get("SALESPAD_QUEUE", "db").strip().lower() or "db"
REDISSERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "redis",
                           "redisserver.sh")


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


class RedisClient:
    """A minimal RESP2 client over one TCP connection (stdlib only). call(*args) sends one
    command and returns its reply decoded: bulk and simple strings as str (UTF-8), integers as
    int, nil as None, arrays as lists; an error reply raises RedisError. After a connection
    error the next call reconnects (the error itself propagates). Thread-safe (one lock)."""

    def __init__(self, host, port, password=None, db=0, timeout=10.0):
        self.host, self.port, self.password, self.db = host, port, password, db
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.lock = threading.Lock()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        if self.password:
            self._roundtrip(("AUTH", self.password))
        if self.db:
            self._roundtrip(("SELECT", str(self.db)))

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, (bytes, bytearray)):
                b = bytes(a)
            elif isinstance(a, float):
                b = repr(a).encode()
            else:
                b = str(a).encode("utf-8")
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis %s:%d closed the connection" % (self.host, self.port))
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            items = [self._reply() for _ in range(n)]
            return items
        raise ConnectionError("redis: unexpected reply %r" % (line[:80],))

    def _roundtrip(self, args):
        self.sock.sendall(self._encode(args))
        r = self._reply()
        if isinstance(r, RedisError):
            raise r
        return r

    def call(self, *args):
        with self.lock:
            try:
                if self.sock is None:
                    self._connect()
                return self._roundtrip(args)
            except (OSError, ConnectionError, ValueError):
                self.close()
                raise


class RedisServer:
    """A Redis server, either shared (its URL read from a file) or owned by this process
    (started and stopped with tests/redis/redisserver.sh in `dir`)."""

    def __init__(self, url, dir=None):
        self.url = url          # redis://[:password@]127.0.0.1:<port>[/db]
        self.dir = dir          # set when we own the server (redisserver.sh state dir)
        u = urllib.parse.urlsplit(url)
        if u.scheme != "redis" or not u.hostname or not u.port:
            raise AssertionError("not a redis://host:port URL: %r" % url)
        self.host, self.port = u.hostname, u.port
        self.password = urllib.parse.unquote(u.password) if u.password else None
        path = u.path.strip("/")
        self.db = int(path) if path else 0

    @classmethod
    def from_url_file(cls, path):
        with open(path) as f:
            url = f.read().strip()
        if not url:
            raise AssertionError("%s is empty" % path)
        return cls(url)

    @classmethod
    def launch(cls, dir):
        """Starts a throwaway server with state in `dir` (redisserver.sh start)."""
        r = subprocess.run(["bash", REDISSERVER, "start", dir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("redisserver.sh start %s failed (%d):\n%s%s"
                                 % (dir, r.returncode, r.stdout, r.stderr))
        with open(os.path.join(dir, "url")) as f:
            url = f.read().strip()
        return cls(url, dir)

    def client(self, timeout=10.0):
        return RedisClient(self.host, self.port, self.password, self.db, timeout)

    def _ctl(self, *args, timeout=120):
        assert self.dir, "not our server"
        r = subprocess.run(["bash", REDISSERVER] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("redisserver.sh %s failed (%d):\n%s%s"
                                 % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def stop(self, mode="shutdown"):
        """Stops the server process, keeping its data (an outage). mode: shutdown, nosave, kill."""
        self._ctl("stop-server", self.dir, mode)

    def start(self):
        """Starts it again on the same port (same data) and waits until it answers PING."""
        self._ctl("start-server", self.dir)

    start_server = start
    stop_server = stop

    def destroy(self):
        if self.dir and os.path.exists(self.dir):
            r = subprocess.run(["bash", REDISSERVER, "stop", self.dir], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                sys.stdout.write("redisserver.sh stop %s failed:\n%s%s" % (self.dir, r.stdout,
                                                                           r.stderr))


def shared_redis():
    """The run's Redis server (SALESPAD_QUEUE=redis), see _shared_server."""
    return _shared_server("redis", "SALESPAD_REDIS_URL_FILE", "Redis", "SALESPAD_QUEUE=redis",
                          RedisServer.from_url_file, RedisServer.launch)


class Env:
    """A fresh temp dir with the database and sink; tracks every process started in it."""

    _serial = 0
    _queue_serial = 0

    def __init__(self, test_name):
        self.test_name = test_name
        self.dir = tempfile.mkdtemp(prefix="salespad-it-%s-" % test_name)
        self.backend = BACKEND
        self.db_path = os.path.join(self.dir, "sp.db")
        self.sink_path = os.path.join(self.dir, "sink.jsonl")
        self.procs = []
        self._names = {}
        self._private_pg = []
        self.pg = None        # PgServer holding this test's database (postgres)
        self.pg_db = None     # that database's name
        self.queue = QUEUE    # "db" (the queue in the database) or "redis" (BullMQ layout)
        self.redis_srv = None  # RedisServer holding this test's queue (redis)
        self._private_redis = []
        self._shared_redis = None
        self._redis_client = None
        self.queue_prefix = "bull"
        self.queue_name = None
        try:
            if self.queue == "redis":
                Env._queue_serial += 1
                self.queue_name = "t%dx%d" % (os.getpid(), Env._queue_serial)
                self.redis_srv = self._shared_redis = shared_redis()
            elif self.queue != "db":
                raise AssertionError("SALESPAD_QUEUE=%r: expected db or redis" % self.queue)
            if self.backend == "postgres":
                Env._serial += 1
                tag = re.sub(r"[^a-z0-9]", "", test_name.lower().replace("test_", "", 1))[:30]
                self.pg = shared_pg()
                self.pg_db = "it_%d_%d_%s" % (os.getpid(), Env._serial, tag)
                self.pg.create_database(self.pg_db)
            elif self.backend != "sqlite":
                raise AssertionError("SALESPAD_DB=%r: expected sqlite or postgres" % self.backend)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def database_url(self):
        if self.backend == "postgres":
            return self.pg.db_url(self.pg_db)
        return "sqlite:" + self.db_path

    def require_backend(self, backend, why=""):
        """Skips the test unless this run is on `backend` ("sqlite" or "postgres")."""
        if self.backend != backend:
            raise Skip("%s only%s (this run: SALESPAD_DB=%s)"
                       % (backend, ": " + why if why else "", self.backend))

    def skip(self, why):
        raise Skip(why)

    def require_queue(self, queue, why=""):
        """Skips the test unless this run's queue is `queue` ("db" or "redis")."""
        if self.queue != queue:
            raise Skip("%s queue only%s (this run: SALESPAD_QUEUE=%s)"
                       % (queue, ": " + why if why else "", self.queue))

    @property
    def jobs_table(self):
        """The table holding SalesPad's record of each job: `jobs` (database queue) or `outbox`
        (Redis queue); same columns for state, attempts_made, stalled_count, ..."""
        return "outbox" if self.queue == "redis" else "jobs"

    @property
    def redis_url(self):
        return self.redis_srv.url if self.redis_srv is not None else None

    def rkey(self, suffix=""):
        """A key of this test's queue: <prefix>:<queue>:<suffix> (BullMQ's layout)."""
        self.require_queue("redis")
        return "%s:%s:%s" % (self.queue_prefix, self.queue_name, suffix)

    def redis(self, *args):
        """One command against this test's Redis server; the reply decoded (RedisClient)."""
        self.require_queue("redis")
        if self._redis_client is None:
            self._redis_client = self.redis_srv.client()
        return self._redis_client.call(*args)

    def redis_hash(self, key):
        """HGETALL as a dict (empty when the key does not exist)."""
        flat = self.redis("HGETALL", key)
        return dict(zip(flat[0::2], flat[1::2]))

    def redis_events(self, job_id=None):
        """The queue's events stream (<P>events), oldest first: one dict per entry with its
        fields plus "_id" (the entry id) and "_ms" (its time, ms); only the entries whose jobId
        is job_id when given."""
        out = []
        for entry_id, fields in self.redis("XRANGE", self.rkey("events"), "-", "+"):
            e = dict(zip(fields[0::2], fields[1::2]))
            if job_id is not None and e.get("jobId") != job_id:
                continue
            e["_id"] = entry_id
            e["_ms"] = int(entry_id.split("-")[0])
            out.append(e)
        return out

    def private_redis(self, name="redis"):
        """Starts a Redis server owned by this test (removed at cleanup); the processes started
        afterwards use it. Returns it (RedisServer: stop(mode), start())."""
        self.require_queue("redis")
        srv = RedisServer.launch(os.path.join(self.dir, name))
        self._private_redis.append(srv)
        self.redis_srv = srv
        if self._redis_client is not None:
            self._redis_client.close()
            self._redis_client = None
        return srv

    def _drop_queue_keys(self):
        """Removes this test's keys from the shared Redis server (the queue name is unique)."""
        c = self._shared_redis.client(timeout=5)
        try:
            cursor = "0"
            pattern = "%s:%s:*" % (self.queue_prefix, self.queue_name)
            while True:
                cursor, keys = c.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                if keys:
                    c.call("UNLINK", *keys)
                if cursor == "0":
                    break
        finally:
            c.close()

    def private_pg(self, name="pg"):
        """Starts a PostgreSQL server owned by this test (stopped and removed at cleanup), moves
        this test's database onto it, and returns it (PgServer: stop_server, start_server)."""
        self.require_backend("postgres")
        srv = PgServer.start(os.path.join(self.dir, name))
        self._private_pg.append(srv)
        if self.pg_db and self.pg is not None:
            self.pg.drop_database(self.pg_db)
        self.pg = srv
        self.pg.create_database(self.pg_db)
        return srv

    def base_vars(self, **overrides):
        v = dict(os.environ)
        for k in list(v):
            if k in ("PORT", "HOST", "DATABASE_URL", "REDIS_URL", "API_KEYS", "MOCK_SINK",
                     "MOCK_FAIL_FIRST", "MOCK_FAIL_RATE", "JOB_ATTEMPTS", "JOB_BACKOFF_MS",
                     "JOB_LEASE_MS", "LOG_LEVEL", "LOG_FORMAT", "WORKER_CONCURRENCY",
                     "HTTP_THREADS", "QUEUE_NAME", "QUEUE_PREFIX", "QUEUE_KEEP_COMPLETED",
                     "QUEUE_STALLED_INTERVAL_MS", "QUEUE_MAX_STALLED", "MOCK_SEND_DELAY_MS",
                     "WORKER_BATCH"):
                del v[k]
        v.update({
            "DATABASE_URL": self.database_url,
            "MOCK_SINK": self.sink_path,
            "LOG_LEVEL": "info",
            "JOB_BACKOFF_MS": "20",
        })
        if self.queue == "redis":
            v.update({
                "REDIS_URL": self.redis_srv.url,
                "QUEUE_NAME": self.queue_name,
                # Stalled jobs (a worker killed with a short JOB_LEASE_MS) come back within
                # about a second, as the database queue's expired leases do.
                "QUEUE_STALLED_INTERVAL_MS": "500",
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
        """Rows of one read-only query, as a list of tuples. `?` placeholders take `args`.
        On PostgreSQL through psql: each value is passed as a psql variable and quoted by psql
        (never spliced into the SQL); cells come back typed through JSON (numbers as int/float,
        text, uuid and timestamptz as str, jsonb as dict/list, NULL as None)."""
        if self.backend == "postgres":
            return self._pg_db(sql, args)
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def _pg_db(self, sql, args):
        body, n = _placeholders_to_psql(sql.strip().rstrip(";"))
        if n != len(args):
            raise AssertionError("env.db: %d placeholders, %d arguments: %s" % (n, len(args), sql))
        variables = []
        for i, a in enumerate(args, 1):
            if a is None or isinstance(a, (bytes, bytearray)):
                raise AssertionError("env.db on postgres: unsupported argument %r" % (a,))
            if isinstance(a, bool):
                a = "true" if a else "false"
            variables.append(("p%d" % i, str(a)))
        script = ("BEGIN TRANSACTION READ ONLY;\n"
                  "SELECT row_to_json(q) FROM (%s) AS q;\nCOMMIT;\n" % body)
        out = self.pg.psql(self.pg_db, script, variables)
        rows = []
        for line in out.splitlines():
            if not line.strip():
                continue
            obj = json.loads(line, object_pairs_hook=_JsonObject)
            rows.append(tuple(_json_value(v) for _, v in obj))
        return rows

    def db_exists(self):
        """Whether the service has created its schema (a usage error must not)."""
        if self.backend == "postgres":
            return self.db("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
        return os.path.exists(self.db_path)

    def tables(self):
        """Names of the tables in the service's database."""
        if self.backend == "postgres":
            return {t for (t,) in self.db("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = current_schema()")}
        return {t for (t,) in self.db("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def cleanup(self):
        for p in self.procs:
            p.cleanup()
        if self._redis_client is not None:
            self._redis_client.close()
        for srv in self._private_redis:
            srv.destroy()
        if self.queue == "redis" and self._shared_redis is not None:
            try:
                self._drop_queue_keys()
            except Exception as e:  # noqa: BLE001 (reported, cleanup goes on)
                sys.stdout.write("cleanup: could not remove the keys of queue %s: %s\n"
                                 % (self.queue_name, e))
        for srv in self._private_pg:
            srv.destroy()
        if self.backend == "postgres" and self.pg_db and self.pg not in self._private_pg:
            try:
                self.pg.drop_database(self.pg_db)
            except Exception as e:  # noqa: BLE001 (reported, cleanup goes on)
                sys.stdout.write("cleanup: could not drop database %s: %s\n" % (self.pg_db, e))
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


class Load:
    """Captures from `threads` client threads, spread over `ports`, until stop(). Records every
    outcome by request number: 201 (lead id), 503 (response), other statuses, and exceptions
    (outcome unknown)."""

    def __init__(self, ports, tag, threads):
        self.ports, self.tag = ports, tag
        self.lock = threading.Lock()
        self.next = 0
        self.ok = {}          # i -> lead id
        self.unavailable = {}  # i -> Response (503)
        self.other = {}       # i -> Response (anything else)
        self.errors = {}      # i -> exception
        self.ok_order = []    # i, in the order the 201s arrived
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(k,), daemon=True)
                        for k in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "a load thread is stuck"

    def count(self, what):
        with self.lock:
            return len(getattr(self, what))

    def _loop(self, k):
        client = Client(self.ports[k % len(self.ports)], timeout=15)
        try:
            while not self._stop.is_set():
                with self.lock:
                    i = self.next
                    self.next += 1
                try:
                    r = client.post("/leads", lead_body(i, self.tag))
                except Exception as e:  # noqa: BLE001 (recorded: outcome unknown)
                    with self.lock:
                        self.errors[i] = e
                    continue
                with self.lock:
                    if r.status == 201:
                        self.ok[i] = r.json()["id"]
                        self.ok_order.append(i)
                    elif r.status == 503:
                        self.unavailable[i] = r
                    else:
                        self.other[i] = r
        finally:
            client.close()


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


SKIP_STATUS = 77  # every test skipped: CTest's SKIP_RETURN_CODE


def run(namespace):
    if not os.path.exists(BIN):
        print("salespad binary not found at %s (set SALESPAD_BIN)" % BIN)
        print("0 passed, 1 failed")
        sys.exit(1)
    # Tests run in definition order; names on the command line select a subset.
    names = sys.argv[1:] or [n for n in namespace
                             if n.startswith("test_") and callable(namespace[n])]
    passed = failed = skipped = 0
    try:
        for name in names:
            fn = namespace.get(name)
            if fn is None:
                print("FAIL %s: no such test" % name)
                failed += 1
                continue
            t0 = time.monotonic()
            outcome = "fail"
            env = None
            try:
                env = Env(name)
                fn(env)
                outcome = "ok"
            except Skip as e:
                outcome = "skip"
                print("skip %s: %s" % (name, e))
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    if env is not None:
                        env.cleanup()
                    raise
                print("FAIL %s (%.2fs)" % (name, time.monotonic() - t0))
                traceback.print_exc(file=sys.stdout)
                if env is not None:
                    env.dump_logs()
            finally:
                if env is not None:
                    env.cleanup()
            if outcome == "ok":
                passed += 1
                print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
            elif outcome == "skip":
                skipped += 1
            else:
                failed += 1
            sys.stdout.flush()
    finally:
        _release_shared_servers()
    if skipped:
        print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    else:
        print("%d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    if failed or (passed == 0 and skipped == 0):
        sys.exit(1)
    sys.exit(SKIP_STATUS if passed == 0 else 0)
