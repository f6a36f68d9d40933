"""Retries with backoff: the mock provider fails the first attempts; the job retries and the
message goes out on attempt 3."""
from collections import Counter

from harness import assert_eq, create_lead, details, outbound, wait_until


def test_fail_first_two_attempts_then_sent(env):
    srv = env.serve(MOCK_FAIL_FIRST=2, JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    email, phone = "retry.me@example.com", "+15550002000"
    lid = create_lead(srv, "Retry Me", email=email, phone=phone)["id"]

    det = wait_until(lambda: (lambda d: d if all(m["status"] == "sent" for m in outbound(d))
                              and len(outbound(d)) == 2 else None)(details(srv, lid)),
                     15, "both messages sent after retries")
    srv.stop()

    msgs = {m["id"]: m for m in outbound(det)}
    for m in msgs.values():
        assert_eq(m["attempts"], 3, "message %s (%s) attempts" % (m["id"], m["channel"]))
        assert_eq(m["lastError"], None, "lastError of a message that was finally sent")

    # The sink: one line per message, on attempt 3; failed attempts never reach the sink.
    sink = env.sink()
    assert_eq(Counter(l["messageId"] for l in sink), Counter({mid: 1 for mid in msgs}),
              "sink lines per message")
    for l in sink:
        assert_eq(l["attempt"], 3, "sink attempt for %s" % l["messageId"])
        assert "duplicate" not in l, "unexpected duplicate %r" % (l,)

    # Events: per message, two message_failed with willRetry true (attempts 1, 2), then sent.
    for mid, m in msgs.items():
        evs = [e for e in det["events"] if e["payload"].get("messageId") == mid
               and e["type"] in ("message_failed", "message_sent")]
        assert_eq([e["type"] for e in evs], ["message_failed", "message_failed", "message_sent"],
                  "delivery events of %s" % m["channel"])
        for n, e in enumerate(evs[:2], start=1):
            p = e["payload"]
            assert_eq(p["willRetry"], True, "willRetry of failure %d" % n)
            assert_eq(p["attempt"], n, "attempt number of failure %d" % n)
            assert p.get("error"), "failure %d has no error text: %r" % (n, p)
            assert p.get("nextAttemptAt"), "failure %d has no nextAttemptAt: %r" % (n, p)
            assert p["nextAttemptAt"] >= e["createdAt"], "next attempt before the failure"
        assert_eq(evs[2]["payload"]["attempt"], 3, "message_sent attempt")

    # Jobs: completed, three attempts each.
    assert_eq(len(det["jobs"]), 2, "job count")
    for j in det["jobs"]:
        assert_eq((j["state"], j["attemptsMade"], j["maxAttempts"]), ("completed", 3, 3),
                  "job %s" % j["id"])
    assert_eq(det["lead"]["status"], "contacted", "lead status once a message went out")

