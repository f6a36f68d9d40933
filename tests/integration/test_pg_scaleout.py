"""Scale-out on PostgreSQL (issue 3): two `serve --no-worker` API processes and three
`salespad worker` processes on one database. 1,000 captures spread over both APIs: every message
is delivered exactly once (mock sink), every job completes on its first attempt, and no job is
processed twice (each message is logged as sent by exactly one worker, once; no job stalled).
Also: five processes started at the same moment on an empty database migrate it exactly once
(advisory lock) and all come up. PostgreSQL only: skipped on SQLite. Also run with the Redis
queue (integration_redis_test_pg_scaleout): the same checks against the `outbox` table."""
import json
import os
import random
import re
import threading
from collections import Counter

from harness import Client, Proc, assert_eq, details, free_port, lead_body, parallel, wait_until

NLEADS = 1000
THREADS = 16

# With LOG_LEVEL=debug each worker logs one line per job it processed, e.g.
#   job 17 message <uuid> attempt 1 of 3: sent
# (with the Redis queue the job id is the message id: job <uuid> message <uuid> ...).
SENT_RE = re.compile(r"\bjob (\S+) message ([0-9a-f-]{36}) attempt (\d+) of \d+: sent\b")


def capture_spread(ports, n, tag):
    """POSTs n leads, request i to ports[i % len(ports)], from THREADS client threads.
    Returns ({i: lead id}, {i: error or non-201 response})."""
    local = threading.local()
    clients = []
    lock = threading.Lock()

    def one(i):
        cs = getattr(local, "cs", None)
        if cs is None:
            cs = local.cs = {p: Client(p, timeout=15) for p in ports}
            with lock:
                clients.extend(cs.values())
        r = cs[ports[i % len(ports)]].post("/leads", lead_body(i, tag))
        if r.status != 201:
            raise AssertionError("POST /leads #%d: %r" % (i, r))
        return r.json()["id"]

    try:
        results = parallel(one, list(range(n)), THREADS)
    finally:
        for c in clients:
            c.close()
    ok = {i: v for i, v in enumerate(results) if isinstance(v, str)}
    bad = {i: v for i, v in enumerate(results) if not isinstance(v, str)}
    return ok, bad


def test_two_apis_three_workers_exactly_once(env):
    env.require_backend("postgres", "many processes on one database")
    debug = dict(LOG_LEVEL="debug", JOB_BACKOFF_MS=20)
    apis = [env.serve("--no-worker", **debug), env.serve("--no-worker", **debug)]
    workers = [env.worker(**debug) for _ in range(3)]

    ok, bad = capture_spread([a.port for a in apis], NLEADS, "scale")
    assert_eq(list(bad.values())[:3], [], "failed captures (%d)" % len(bad))
    assert_eq(len(set(ok.values())), NLEADS, "distinct lead ids")

    njobs = 2 * NLEADS
    jobs = env.jobs_table
    wait_until(lambda: env.db("SELECT COUNT(*) FROM %s WHERE state = 'completed'" % jobs)[0][0]
               == njobs, 60, "all %d jobs completed" % njobs, interval=0.2)

    # Each lead is visible, settled, through either API (they share the database).
    for lid in random.Random(3).sample(sorted(ok.values()), 20):
        a, b = details(apis[0], lid), details(apis[1], lid)
        assert_eq(a, b, "details of %s from the two APIs" % lid)
        assert_eq(sorted(j["state"] for j in a["jobs"]), ["completed", "completed"],
                  "jobs of %s" % lid)

    for p in workers + apis:
        p.stop()

    # The database: every job completed on its first attempt, none stalled, nothing left.
    assert_eq(env.db("SELECT COUNT(*) FROM leads")[0][0], NLEADS, "leads stored")
    assert_eq(dict(env.db("SELECT state, COUNT(*) FROM %s GROUP BY state" % jobs)),
              {"completed": njobs}, "job states")
    assert_eq(env.db("SELECT COUNT(*) FROM %s WHERE attempts_made <> 1 OR stalled_count <> 0"
                     " OR finished_at IS NULL" % jobs)[0][0], 0,
              "jobs with attempts_made != 1, a stall, or no finish time")
    assert_eq(dict(env.db("SELECT status, COUNT(*) FROM messages GROUP BY status")),
              {"sent": njobs}, "message states")
    assert_eq(env.db("SELECT COUNT(*) FROM messages WHERE attempts <> 1")[0][0], 0,
              "messages sent on more than one attempt")
    message_ids = {m for (m,) in env.db("SELECT id FROM messages")}
    job_of = dict(env.db("SELECT message_id, id FROM %s" % jobs))

    # The sink: every message exactly once, never even a duplicate acknowledgement.
    raw = env.sink_raw_lines()
    assert_eq([l for l in raw if "duplicate" in l][:3], [], "duplicate lines in the sink")
    counts = Counter(l["messageId"] for l in env.sink())
    assert_eq(len(raw), njobs, "sink lines")
    assert_eq(set(counts), message_ids, "messages in the sink")
    assert_eq({m: c for m, c in counts.items() if c != 1}, {}, "messages delivered twice")

    # The workers' own logs: each job processed by exactly one worker, once; APIs sent nothing.
    per_worker = []
    for w in workers:
        per_worker.append(Counter((str(j), m) for j, m, _ in SENT_RE.findall(w.log())))
    for a in apis:
        assert_eq(SENT_RE.findall(a.log()), [], "sends logged by the --no-worker API %s" % a.name)
    total = Counter()
    for c in per_worker:
        total.update(c)
    assert_eq({k: v for k, v in total.items() if v != 1}, {}, "jobs processed more than once")
    assert_eq({m for _, m in total}, message_ids, "messages the workers logged as sent")
    assert_eq({m: j for j, m in total}, {m: str(j) for m, j in job_of.items()},
              "job of each message (log vs database)")
    shares = [sum(c.values()) for c in per_worker]
    print("  %d captures over 2 APIs; sends per worker: %s" % (NLEADS, shares))
    assert all(shares), "a worker processed no job at all: %r" % (shares,)


def test_simultaneous_start_migrates_once(env):
    env.require_backend("postgres", "the migration advisory lock")
    assert not env.db_exists()
    procs = []
    for k in range(5):
        mode = "serve" if k < 2 else "worker"
        port = free_port() if mode == "serve" else None
        extra = {"PORT": port} if port else {}
        args = ["--no-worker"] if mode == "serve" else []
        p = Proc(env, "%s%d" % (mode, k), mode, args,
                 env.base_vars(LOG_FORMAT="json", **extra), port)
        env.procs.append(p)
        procs.append(p)
    for p in procs:  # as close together as Popen allows; none waits for another
        p.start()
    for i, p in enumerate(procs):
        if p.mode == "serve":
            outcome = env._wait_ready(p, 15)
            if outcome == "collision":  # another process took the free port: start it again
                port = free_port()
                p = Proc(env, p.name + "b", "serve", ["--no-worker"],
                         env.base_vars(LOG_FORMAT="json", PORT=port), port)
                env.procs.append(p)
                procs[i] = p
                p.start()
                outcome = env._wait_ready(p, 15)
            assert outcome == "ready", "%s: %s\n%s" % (p.name, outcome, p.log_tail())
        else:
            wait_until(lambda p=p: "worker started" in p.log() or not p.alive(), 15,
                       "%s to start" % p.name)
            assert p.alive(), "%s exited:\n%s" % (p.name, p.log_tail())
    migrations_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "migrations", "postgres")
    files = sorted(f[:-4] for f in os.listdir(migrations_dir) if f.endswith(".sql"))
    assert_eq(sorted(v for (v,) in env.db("SELECT version FROM schema_migrations")), files,
              "migrations recorded (each once)")
    applied = sum(p.log().count("migration applied") for p in procs)
    assert_eq(applied, len(files), "'migration applied' lines over all processes")
    for p in procs:
        p.stop()
    # LOG_FORMAT=json: every line of every process is one JSON object, the database driver's
    # own messages included.
    for p in procs:
        for line in p.log().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            assert isinstance(obj, dict), "%s logged a non-JSON line: %r" % (p.name, line)

