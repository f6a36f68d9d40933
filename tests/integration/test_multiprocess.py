"""Scale-out: `salespad worker` processes share the database queue and the sink with `serve`;
every message is delivered exactly once (nothing crashes, so not even a duplicate ack)."""
import re
from collections import Counter

from harness import Burst, assert_eq, wait_all_settled

# With LOG_LEVEL=debug each process logs one line per job it processed, e.g.
#   job 17 message <uuid> attempt 1 of 3: sent
# (older builds: "job <id> send-message (message <uuid>, attempt 1 of 3): sent").
SENT_RE = re.compile(r"message ([0-9a-f-]{36}),? attempt \d+ of \d+\)?: sent\b")


def sends_logged(proc):
    return Counter(SENT_RE.findall(proc.log()))


def assert_exactly_once(env, nleads):
    raw = env.sink_raw_lines()
    assert_eq([l for l in raw if "duplicate" in l], [], "duplicate lines")
    counts = Counter(l["messageId"] for l in env.sink())
    assert_eq(len(counts), 2 * nleads, "distinct messages in the sink")
    assert_eq(set(counts.values()), {1}, "lines per message")
    return set(counts)


def test_serve_and_worker_share_the_queue(env):
    srv = env.serve(LOG_LEVEL="debug")
    wrk = env.worker(LOG_LEVEL="debug")
    burst = Burst(srv.port, 300, "shared").run()
    assert_eq((len(burst.ok), burst.unknown, burst.other), (300, {}, {}), "burst outcome")
    wait_all_settled(srv, burst.ok.values(), 30)
    wrk.stop()
    srv.stop()
    sent = assert_exactly_once(env, 300)
    by_serve, by_worker = sends_logged(srv), sends_logged(wrk)
    # Each message was sent by exactly one process, once.
    assert_eq(set(by_serve) & set(by_worker), set(), "messages sent by both processes")
    assert_eq(set(by_serve) | set(by_worker), sent, "messages the processes logged as sent")
    # Who did how much depends on scheduling (serve's workers are woken in-process, the other
    # process polls), so it is reported, not asserted.
    print("  sends: serve %d, worker %d" % (sum(by_serve.values()), sum(by_worker.values())))


def test_api_only_serve_and_two_workers(env):
    srv = env.serve("--no-worker", LOG_LEVEL="debug")
    burst = Burst(srv.port, 150, "api").run()
    assert_eq((len(burst.ok), burst.unknown, burst.other), (150, {}, {}), "burst outcome")
    # Nothing is sent until a worker process runs.
    assert_eq(env.sink(), [], "sink before any worker started")
    w1 = env.worker(LOG_LEVEL="debug")
    w2 = env.worker(LOG_LEVEL="debug")
    wait_all_settled(srv, burst.ok.values(), 30)
    w1.stop()
    w2.stop()
    srv.stop()
    sent = assert_exactly_once(env, 150)
    a, b = sends_logged(w1), sends_logged(w2)
    assert_eq(sends_logged(srv), Counter(), "sends logged by the --no-worker server")
    assert_eq(set(a) & set(b), set(), "messages sent by both workers")
    assert_eq(set(a) | set(b), sent, "messages the workers logged as sent")
    print("  sends: worker1 %d, worker2 %d" % (sum(a.values()), sum(b.values())))

