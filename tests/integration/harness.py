"""What the integration suite needs of its own: the real salespad binary on a temp database.

pytest runs the scripts (tests/integration/test_*.py, tests/interop/test_interop.py); the
fixtures are in tests/conftest.py, the settings in tests/pytest.ini. A test takes a fresh Env:

    def test_something(env): ...   # env: temp dir, database, queue, process tracking

    SALESPAD_BIN=$PWD/build/salespad /usr/bin/python3 -m pytest tests/integration/test_flow.py

The Python packages are Debian's python3-pytest, python3-psycopg2 and python3-redis
(scripts/deps.sh test), installed for /usr/bin/python3.

Env.serve()/Env.worker() start the real binary with DATABASE_URL=sqlite:<tmp>/sp.db,
MOCK_SINK=<tmp>/sink.jsonl, LOG_LEVEL=info, JOB_BACKOFF_MS=20 and a free loopback PORT; keyword
arguments override or add settings (JOB_LEASE_MS=1500, MOCK_FAIL_FIRST=2, ...). env.sink() reads
the mock provider's lines, env.db(sql, args) peeks at the database (read-only).

PostgreSQL mode: with SALESPAD_DB=postgres every test gets a fresh database (CREATE DATABASE on
the server whose URL is in the file $SALESPAD_PG_URL_FILE, as CTest's `pg` fixture writes it;
dropped at cleanup) and DATABASE_URL=postgres://.../<that database>. Without the URL file the
run starts a throwaway server of its own (tests/pg/pgserver.sh), except under CI=true, where
that is an error. env.db() then queries PostgreSQL through psycopg2. A test that only makes
sense on one backend calls env.require_backend("postgres") (or "sqlite"): on the other it is
skipped (pytest.skip). env.private_pg() starts a PostgreSQL server owned by the test (for
outage tests, which stop it).

Redis mode: with SALESPAD_QUEUE=redis (default: db, the queue in the database) Env.serve() and
Env.worker() also get REDIS_URL (the server whose URL is in $SALESPAD_REDIS_URL_FILE, as CTest's
`redis` fixture writes it; without the file the run starts a throwaway server of its own with
tests/redis/redisserver.sh, except under CI=true, where that is an error), a QUEUE_NAME unique
to the Env (t<pid>x<n>, so every test has its own keys on the one shared server; they are
removed at cleanup) and QUEUE_STALLED_INTERVAL_MS=500 (overridable like any setting).
env.queue is "db" or "redis"; env.jobs_table is the table holding SalesPad's record of each
job ("jobs", or "outbox" in Redis mode; same state/attempts_made/stalled_count columns);
env.require_queue("redis") skips a test on the other mode. env.redis is a redis-py client
(redis.Redis, replies decoded as str) on the env's Redis, env.rkey("wait") names a key of the
env's queue ("bull:<queue>:wait"), and env.private_redis() starts a Redis server owned by the
test (stop(mode) / start() on the same port, for outage tests); processes started after it use
it.

Every process and server a test starts is stopped, and its temp dir removed, whatever the
outcome; when a test fails, pytest's report shows the tail of each process's stderr log. A
script whose tests were all skipped exits 77 (CTest's SKIP_RETURN_CODE).

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
import tempfile
import threading
import time
import urllib.parse
import zlib

import psycopg2
import pytest
import redis

BIN = os.path.abspath(os.environ.get("SALESPAD_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "salespad"))
HOST = "127.0.0.1"
POLL_S = 0.02
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
# What a poll treats as "not yet": the service (HTTP) or a Redis server not answering.
TRANSIENT_ERRORS = (ConnectionError, OSError, http.client.HTTPException,
                    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class TimeoutFailure(AssertionError):
    pass


def sanitized_binary():
    """Whether the binary under test is an ASan build (its allocator keeps freed memory in a
    quarantine and adds its own shadow memory, so absolute RSS figures mean nothing there)."""
    with open(BIN, "rb") as f:
        return b"__asan_init" in f.read()


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
        except TRANSIENT_ERRORS as e:
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
# Servers: PostgreSQL (SALESPAD_DB=postgres) and Redis (SALESPAD_QUEUE=redis)


BACKEND = os.environ.get("SALESPAD_DB", "sqlite").strip().lower() or "sqlite"
if BACKEND in ("postgresql", "pg"):
    BACKEND = "postgres"
QUEUE = os.environ.get("SALESPAD_QUEUE", "db").strip().lower() or "db"
TESTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PGSERVER = os.path.join(TESTS_DIR, "pg", "pgserver.sh")
REDISSERVER = os.path.join(TESTS_DIR, "redis", "redisserver.sh")
DBNAME_RE = r"[a-z_][a-z0-9_]{0,62}"


def ci():
    return os.environ.get("CI", "") == "true"


def read_url_file(path):
    with open(path) as f:
        url = f.read().strip()
    if not url:
        raise AssertionError("%s is empty" % path)
    return url


def server_script(script, *args):
    """Runs tests/pg/pgserver.sh or tests/redis/redisserver.sh; raises with its output when it
    fails."""
    r = subprocess.run(["bash", script] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("%s %s failed (%d):\n%s%s" % (os.path.basename(script),
                                                         " ".join(args), r.returncode,
                                                         r.stdout, r.stderr))
    return r


class Server:
    """A server, either shared (its URL read from a file) or owned by this process (started
    and stopped by its script, with its state in `dir`)."""

    SCRIPT = None

    def __init__(self, url, dir=None):
        self.url = url
        self.dir = dir          # set when we own the server (the script's state dir)

    @classmethod
    def from_url_file(cls, path):
        return cls(read_url_file(path))

    @classmethod
    def launch(cls, dir):
        """Starts a throwaway server with state in `dir` (<script> start)."""
        server_script(cls.SCRIPT, "start", dir)
        return cls(read_url_file(os.path.join(dir, "url")), dir)

    def stop_server(self, *mode):
        """Stops the server process, keeping its data (an outage)."""
        assert self.dir, "not our server"
        server_script(self.SCRIPT, "stop-server", self.dir, *mode)

    def start_server(self):
        """Starts it again on the same port (same data) and waits until it answers."""
        assert self.dir, "not our server"
        server_script(self.SCRIPT, "start-server", self.dir)

    def destroy(self):
        """Stops the server we own and removes its data (never raises: cleanup goes on)."""
        if self.dir and os.path.exists(self.dir):
            try:
                server_script(self.SCRIPT, "stop", self.dir)
            except (AssertionError, subprocess.SubprocessError) as e:
                print(e)


class PgServer(Server):
    """A PostgreSQL server (tests/pg/pgserver.sh); URL postgres://salespad@127.0.0.1:<port>/..."""

    SCRIPT = PGSERVER

    def stop_server(self, mode="fast"):
        super().stop_server(mode)

    def db_url(self, dbname):
        u = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))

    def connect(self, dbname, readonly=False):
        """A psycopg2 connection in autocommit mode (each statement its own transaction)."""
        conn = psycopg2.connect(self.db_url(dbname), connect_timeout=10)
        conn.set_session(readonly=readonly, autocommit=True)
        return conn

    def _admin(self, statement):
        conn = self.connect("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def create_database(self, dbname):
        assert re.fullmatch(DBNAME_RE, dbname), dbname
        self._admin('CREATE DATABASE "%s"' % dbname)

    def drop_database(self, dbname):
        assert re.fullmatch(DBNAME_RE, dbname), dbname
        self._admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % dbname)


class RedisServer(Server):
    """A Redis server (tests/redis/redisserver.sh); URL redis://[:password@]127.0.0.1:<port>[/db].
    stop(mode) with mode shutdown, nosave or kill, and start(): an outage and the way back."""

    SCRIPT = REDISSERVER

    def __init__(self, url, dir=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "redis" or not u.hostname or not u.port:
            raise AssertionError("not a redis://host:port URL: %r" % url)
        super().__init__(url, dir)

    def client(self, timeout=10.0):
        """A redis-py client on this server, replies decoded (str)."""
        return redis.Redis.from_url(self.url, socket_timeout=timeout,
                                    socket_connect_timeout=timeout, decode_responses=True)

    def stop(self, mode="shutdown"):
        self.stop_server(mode)

    def start(self):
        self.start_server()


def drop_keys(client, pattern):
    """Removes every key matching pattern (SCAN, then UNLINK in batches)."""
    batch = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def qmark_to_pyformat(sql):
    """sqlite3's `?` placeholders as psycopg2's %s (a literal % doubled). A `?` inside an SQL
    string literal is not supported: env.db's queries have none."""
    return sql.replace("%", "%%").replace("?", "%s")


class Env:
    """A fresh temp dir with the database and sink; tracks every process started in it.
    `pg` (SALESPAD_DB=postgres) and `redis_srv` (SALESPAD_QUEUE=redis) are the run's shared
    servers, from the fixtures of tests/conftest.py."""

    _serial = 0
    _queue_serial = 0

    def __init__(self, test_name, pg=None, redis_srv=None):
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
        self._pg_conn = None  # env.db()'s connection to it
        self.queue = QUEUE    # "db" (the queue in the database) or "redis" (BullMQ layout)
        self.redis_srv = None  # RedisServer holding this test's queue (redis)
        self._private_redis = []
        self._shared_redis = None
        self._redis_client = None
        self.queue_prefix = "bull"
        self.queue_name = None
        try:
            self._init_queue(redis_srv)
            self._init_database(pg)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _init_queue(self, redis_srv):
        if self.queue == "redis":
            Env._queue_serial += 1
            self.queue_name = "t%dx%d" % (os.getpid(), Env._queue_serial)
            assert redis_srv is not None, "SALESPAD_QUEUE=redis needs the shared Redis server"
            self.redis_srv = self._shared_redis = redis_srv
        elif self.queue != "db":
            raise AssertionError("SALESPAD_QUEUE=%r: expected db or redis" % self.queue)

    def _init_database(self, pg):
        if self.backend == "postgres":
            Env._serial += 1
            tag = re.sub(r"[^a-z0-9]", "", self.test_name.lower().replace("test_", "", 1))[:30]
            assert pg is not None, "SALESPAD_DB=postgres needs the shared PostgreSQL server"
            self.pg = pg
            self.pg_db = "it_%d_%d_%s" % (os.getpid(), Env._serial, tag)
            self.pg.create_database(self.pg_db)
        elif self.backend != "sqlite":
            raise AssertionError("SALESPAD_DB=%r: expected sqlite or postgres" % self.backend)

    @property
    def database_url(self):
        if self.backend == "postgres":
            return self.pg.db_url(self.pg_db)
        return "sqlite:" + self.db_path

    def require_backend(self, backend, why=""):
        """Skips the test unless this run is on `backend` ("sqlite" or "postgres")."""
        if self.backend != backend:
            pytest.skip("%s only%s (this run: SALESPAD_DB=%s)"
                        % (backend, ": " + why if why else "", self.backend))

    def require_queue(self, queue, why=""):
        """Skips the test unless this run's queue is `queue` ("db" or "redis")."""
        if self.queue != queue:
            pytest.skip("%s queue only%s (this run: SALESPAD_QUEUE=%s)"
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

    @property
    def redis(self):
        """A redis-py client (redis.Redis, replies decoded) on this test's Redis server."""
        self.require_queue("redis")
        if self._redis_client is None:
            self._redis_client = self.redis_srv.client()
        return self._redis_client

    def redis_events(self, job_id=None):
        """The queue's events stream (<P>events), oldest first: one dict per entry with its
        fields plus "_id" (the entry id) and "_ms" (its time, ms); only the entries whose jobId
        is job_id when given."""
        out = []
        for entry_id, fields in self.redis.xrange(self.rkey("events")):
            e = dict(fields)
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
        self._close_redis_client()
        return srv

    def _close_redis_client(self):
        if self._redis_client is not None:
            self._redis_client.close()
            self._redis_client = None

    def _drop_queue_keys(self):
        """Removes this test's keys from the shared Redis server (the queue name is unique)."""
        c = self._shared_redis.client(timeout=5)
        try:
            drop_keys(c, "%s:%s:*" % (self.queue_prefix, self.queue_name))
        finally:
            c.close()

    def private_pg(self, name="pg"):
        """Starts a PostgreSQL server owned by this test (stopped and removed at cleanup), moves
        this test's database onto it, and returns it (PgServer: stop_server, start_server)."""
        self.require_backend("postgres")
        srv = PgServer.launch(os.path.join(self.dir, name))
        self._private_pg.append(srv)
        self._close_pg_conn()
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
                     "WORKER_BATCH", "WORKER_BATCH_MS", "CORS_ORIGINS", "HTTP_HEADER_TIMEOUT_MS", "HTTP_BODY_MIN_RATE",
                     "HTTP_MAX_CONNS_PER_IP", "HTTP_BODY_BUDGET_MB", "DB_BUSY_TIMEOUT_MS",
                     "AI_PROVIDER", "AI_BASE_URL", "AI_API_KEY", "AI_MODEL", "AI_TIMEOUT_MS",
                     "AI_SYSTEM_PROMPT", "AI_FALLBACK", "RATE_LIMIT_RPS", "RATE_LIMIT_BURST",
                     "EVENTS_HEARTBEAT_MS"):
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
        SQLite through sqlite3; PostgreSQL through psycopg2 (each query in a read-only
        autocommit transaction; uuid as str, timestamptz as datetime, jsonb as dict/list)."""
        if self.backend == "postgres":
            return self._pg_rows(sql, args)
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def _pg_rows(self, sql, args):
        """One query on env.db()'s connection; a connection lost since the last query (a
        server restarted by an outage test) is replaced once."""
        for attempt in (1, 2):
            if self._pg_conn is None:
                self._pg_conn = self.pg.connect(self.pg_db, readonly=True)
            try:
                with self._pg_conn.cursor() as cur:
                    if args:
                        cur.execute(qmark_to_pyformat(sql), tuple(args))
                    else:
                        cur.execute(sql)
                    return cur.fetchall()
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self._close_pg_conn()
                if attempt == 2:
                    raise

    def _close_pg_conn(self):
        if self._pg_conn is not None:
            self._pg_conn.close()
            self._pg_conn = None

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

    # -- cleanup and reporting ------------------------------------------------------------

    def cleanup(self):
        """Stops every process and private server, removes the test's keys, database and dir.
        Problems are printed, never raised: cleanup always goes to the end."""
        for p in self.procs:
            p.cleanup()
        self._close_redis_client()
        self._close_pg_conn()
        for srv in self._private_redis:
            srv.destroy()
        if self.queue == "redis" and self._shared_redis is not None:
            _report_cleanup_error("remove the keys of queue %s" % self.queue_name,
                                  self._drop_queue_keys)
        for srv in self._private_pg:
            srv.destroy()
        if self.backend == "postgres" and self.pg_db and self.pg not in self._private_pg:
            _report_cleanup_error("drop database %s" % self.pg_db,
                                  lambda: self.pg.drop_database(self.pg_db))
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tails(self):
        """The tail of each process's stderr log (pytest's report shows it when a test fails)."""
        return "".join("---- %s (pid %s) stderr tail ----\n%s\n"
                       % (p.name, p.popen.pid if p.popen else "-", p.log_tail())
                       for p in self.procs)


def _report_cleanup_error(what, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 (reported, cleanup goes on)
        print("cleanup: could not %s: %s" % (what, e))


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
    """Lead i of a load tagged `tag`: one person per (tag, i), as leads are (the phone's digits
    carry the tag too, so that two loads on one database never capture the same person)."""
    return {"name": "%s lead %d" % (tag, i), "email": "%s-%d@example.com" % (tag, i),
            "phone": "+1%05d%07d" % (zlib.crc32(tag.encode()) % 100000, i)}


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


