"""PostgreSQL outage (issue 3; docs/guarantees.md): PostgreSQL stops in the middle of a load of
captures. Meanwhile the API answers 503 in the JSON error format with Retry-After, GET /ready
answers 503, GET /health still 200, and no process dies. PostgreSQL starts again: the service
recovers by itself (no restart): /ready is 200 and captures get 201 again; every capture that got
a 201 is stored and its messages are sent, each delivered once (the provider may see a
duplicate acknowledgement for a send whose outcome the outage cut off, never a second delivery).

The test runs its own PostgreSQL server (env.private_pg()) so that stopping it leaves the shared
one alone. PostgreSQL only: skipped on SQLite."""
import os
import time
from collections import Counter

from harness import Load, all_messages, assert_eq, details, http_request, wait_until

LOAD_THREADS = 6
OUTAGE_S = 2.0  # longer than JOB_LEASE_MS: leases taken before the stop expire during it
SETTINGS = dict(JOB_LEASE_MS=1500, JOB_BACKOFF_MS=50, JOB_ATTEMPTS=10)


def assert_503_format(r, what):
    assert_eq(r.status, 503, "%s status" % what)
    body = r.json()
    assert_eq(body.get("statusCode"), 503, "%s statusCode (%r)" % (what, body))
    assert_eq(body.get("error"), "Service Unavailable", "%s error (%r)" % (what, body))
    msg = body.get("message")
    assert msg and isinstance(msg, (str, list)), "%s message: %r" % (what, body)
    ra = r.header("Retry-After")
    assert ra is not None and ra.strip().isdigit() and int(ra) >= 1, \
        "%s Retry-After header: %r" % (what, ra)


def test_postgres_outage_and_recovery(env):
    env.require_backend("postgres", "stops the database server")
    pg = env.private_pg()
    srv = env.serve(**SETTINGS)                 # API + in-process workers
    api2 = env.serve("--no-worker", **SETTINGS)  # API only
    wrk = env.worker(**SETTINGS)                # a separate worker process
    procs = [srv, api2, wrk]

    load = Load([srv.port, api2.port], "outage", LOAD_THREADS).start()
    try:
        wait_until(lambda: load.count("ok") >= 150, 20, "150 captures before the outage")
        pg.stop_server("immediate")  # as a crash or a failover would: no goodbye to clients
        ok_at_stop = load.count("ok")
        t_down = time.monotonic()

        # During the outage: 503s with the JSON error body and Retry-After, /ready 503.
        wait_until(lambda: load.count("unavailable") >= 30 and time.monotonic() - t_down
                   >= OUTAGE_S, 20, "503 answers during an outage of %.1fs" % OUTAGE_S)
        for p in (srv, api2):
            r = http_request(p.port, "GET", "/ready")
            assert_503_format(r, "%s GET /ready during the outage" % p.name)
            assert_eq(http_request(p.port, "GET", "/health").status, 200,
                      "%s GET /health during the outage" % p.name)
        with load.lock:
            samples = list(load.unavailable.values())[:50]
        for r in samples:
            assert_503_format(r, "POST /leads during the outage")
        # A read of a known lead fails the same way, not with a 500.
        some_lead = load.ok[load.ok_order[0]]
        r = http_request(srv.port, "GET", "/leads/" + some_lead)
        assert_503_format(r, "GET /leads/:id during the outage")
        for p in procs:
            assert p.alive(), "%s died during the outage:\n%s" % (p.name, p.log_tail())

        # Recovery, without restarting anything.
        pg.start_server()
        t_up = time.monotonic()
        for p in (srv, api2):
            wait_until(lambda p=p: http_request(p.port, "GET", "/ready").status == 200, 30,
                       "%s GET /ready 200 after PostgreSQL is back" % p.name)
        ok_before = load.count("ok")
        wait_until(lambda: load.count("ok") >= ok_before + 150, 30,
                   "150 more captures after the recovery")
        t_recovered = time.monotonic()
    finally:
        load.stop()

    for p in procs:
        assert p.alive(), "%s died:\n%s" % (p.name, p.log_tail())
    assert_eq({i: r for i, r in load.other.items()}, {}, "answers other than 201 and 503")
    print("  outage: %d x 201 (%d before the stop), %d x 503, %d unknown (connection errors); "
          "down %.1fs, recovered %.1fs after the restart"
          % (len(load.ok), ok_at_stop, len(load.unavailable), len(load.errors), t_up - t_down,
             t_recovered - t_up))

    # Every 201 is stored and its two messages get sent, once each.
    ok_ids = set(load.ok.values())
    wait_until(lambda: env.db("SELECT COUNT(*) FROM messages m JOIN leads l ON l.id = m.lead_id"
                              " WHERE m.status = 'sent'")[0][0]
               >= 2 * len(ok_ids), 60, "the messages of every 201 lead sent", interval=0.2)
    stored = {i for (i,) in env.db("SELECT id FROM leads")}
    assert_eq(ok_ids - stored, set(), "leads that got a 201 but are not stored")
    # Requests without a 201 either stored all of their lead or nothing (none half-stored).
    extra = stored - ok_ids
    wait_until(lambda: env.db("SELECT COUNT(*) FROM %s WHERE state <> 'completed'"
                              % env.jobs_table)[0][0] == 0,
               60, "every job completed", interval=0.2)
    for lid in list(ok_ids)[:25] + list(extra)[:25]:
        d = details(srv, lid)
        outs = [m for m in all_messages(d) if m["direction"] == "outbound"]
        assert_eq(sorted(m["status"] for m in outs), ["sent", "sent"], "messages of %s" % lid)
    n_msgs = env.db("SELECT COUNT(*) FROM messages")[0][0]
    assert_eq(n_msgs, 2 * len(stored), "messages stored (two per lead)")
    assert_eq(env.db("SELECT COUNT(*) FROM messages WHERE status <> 'sent'")[0][0], 0,
              "messages not sent")

    sink = env.sink()
    originals = Counter(l["messageId"] for l in sink if not l.get("duplicate"))
    dups = [l for l in sink if l.get("duplicate")]
    message_ids = {m for (m,) in env.db("SELECT id FROM messages")}
    assert_eq(set(originals), message_ids, "messages delivered (sink)")
    assert_eq({m: c for m, c in originals.items() if c != 1}, {}, "messages delivered twice")
    for l in dups:
        assert originals[l["messageId"]] == 1, "duplicate ack without a delivery: %r" % (l,)
    print("  after recovery: %d leads stored (%d without a 201 answer), %d messages sent, "
          "%d duplicate acks" % (len(stored), len(extra), len(message_ids), len(dups)))

    if os.environ.get("SALESPAD_OUTAGE_LOGS"):
        env.dump_logs()
    for p in procs:
        p.stop()

