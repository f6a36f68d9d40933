"""Dead letters: every attempt fails -> message and job failed; a permanent error skips retries."""

from harness import assert_eq, create_lead, details, outbound, wait_until


def jobs_finished(srv, lid, n):
    d = details(srv, lid)
    return d if len(d["jobs"]) == n and all(j["state"] in ("completed", "failed")
                                            for j in d["jobs"]) else None


def delivery_events(det, mid):
    return [e for e in det["events"] if e["payload"].get("messageId") == mid
            and e["type"] in ("message_failed", "message_sent")]


def test_every_attempt_fails(env):
    srv = env.serve(MOCK_FAIL_RATE=1, JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    lid = create_lead(srv, "Never Reached", email="never@example.com")["id"]
    det = wait_until(lambda: jobs_finished(srv, lid, 1), 15, "the job to finish")
    srv.stop()

    (m,) = outbound(det)
    assert_eq(m["status"], "failed", "message status")
    assert_eq(m["attempts"], 3, "message attempts")
    assert m["lastError"], "message lastError is empty: %r" % (m,)
    assert_eq(m["sentAt"], None, "sentAt of a failed message")

    (j,) = det["jobs"]
    assert_eq((j["state"], j["attemptsMade"]), ("failed", 3), "job state and attempts")
    assert j["lastError"], "job lastError is empty: %r" % (j,)
    assert j["finishedAt"], "failed job has no finishedAt"

    evs = delivery_events(det, m["id"])
    assert_eq([e["type"] for e in evs], ["message_failed"] * 3, "delivery events")
    assert_eq([e["payload"]["willRetry"] for e in evs], [True, True, False], "willRetry flags")
    assert_eq([e["payload"]["attempt"] for e in evs], [1, 2, 3], "attempt numbers")
    assert "nextAttemptAt" not in evs[-1]["payload"], "last failure announces a next attempt"
    assert_eq(det["lead"]["status"], "new", "lead never contacted")
    assert_eq(env.sink(), [], "sink lines")


def test_permanent_error_is_not_retried(env):
    srv = env.serve(JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    phone = "+15550003000"
    lid = create_lead(srv, "Bounce", email="bounce@example.com", phone=phone)["id"]
    det = wait_until(lambda: jobs_finished(srv, lid, 2), 15, "both jobs to finish")
    srv.stop()

    msgs = {m["channel"]: m for m in outbound(det)}
    em, wa = msgs["email"], msgs["whatsapp"]
    assert_eq((em["status"], em["attempts"]), ("failed", 1), "bounced email")
    assert em["lastError"], "bounced email has no lastError"
    assert_eq((wa["status"], wa["attempts"]), ("sent", 1), "whatsapp message")

    jobs = {j["messageId"]: j for j in det["jobs"]}
    assert_eq((jobs[em["id"]]["state"], jobs[em["id"]]["attemptsMade"]), ("failed", 1),
              "bounced email job")
    assert jobs[em["id"]]["lastError"], "bounced job has no lastError"
    assert_eq((jobs[wa["id"]]["state"], jobs[wa["id"]]["attemptsMade"]), ("completed", 1),
              "whatsapp job")

    evs = delivery_events(det, em["id"])
    assert_eq([e["type"] for e in evs], ["message_failed"], "bounced email events")
    assert_eq(evs[0]["payload"]["willRetry"], False, "willRetry of a permanent error")
    sink = env.sink()
    assert_eq([(l["messageId"], l["to"]) for l in sink], [(wa["id"], phone)], "sink lines")

