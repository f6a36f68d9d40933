"""The operator's job routes against the real binary: GET /jobs (filters, keyset pages, bad
parameters), GET /jobs/:id (the record GET /leads/:id shows) and POST /jobs/:id/retry (a failed
send goes back in line and is sent; any other state is 409). On SQLite, PostgreSQL and
PostgreSQL + Redis (where the record is the outbox row and the relay moves the job in Redis)."""

import uuid

from harness import assert_eq, create_lead, details, outbound, wait_until


def job_ids_of(srv, lead_ids):
    out = []
    for lid in lead_ids:
        out.extend(j["id"] for j in details(srv, lid)["jobs"])
    return out


def ids_unknown_and_malformed(env):
    """An id no job has, and one the queue cannot have made (its ids: integers in the database,
    message ids, UUIDs, on Redis)."""
    return (str(uuid.uuid4()) if env.queue == "redis" else "987654321"), "not-a-job"


def test_retry_a_failed_send(env):
    srv = env.serve(MOCK_FAIL_FIRST=1, JOB_ATTEMPTS=1, JOB_BACKOFF_MS=20)
    lid = create_lead(srv, "Retry Later", email="later@example.com", phone="+15550004000")["id"]

    def failed_page():
        r = srv.get("/jobs?state=failed")
        assert r.status == 200, r
        page = r.json()
        return page if len(page["items"]) == 2 else None
    page = wait_until(failed_page, 15, "both welcome jobs failed (one attempt each)")
    assert_eq(page["nextCursor"], None, "nextCursor of a short page")
    det = details(srv, lid)
    by_msg = {m["id"]: m for m in outbound(det)}
    for m in by_msg.values():
        assert_eq((m["status"], m["attempts"]), ("failed", 1), "message %s" % m["channel"])
    # GET /jobs and GET /jobs/:id show the record of the lead's details, plus its lead
    for dj in det["jobs"]:
        r = srv.get("/jobs/" + dj["id"])
        assert_eq(r.status, 200, "GET /jobs/%s" % dj["id"])
        assert_eq(r.json(), dict(dj, leadId=lid), "GET /jobs/%s" % dj["id"])
        assert_eq([j for j in page["items"] if j["id"] == dj["id"]], [r.json()],
                  "job %s in GET /jobs?state=failed" % dj["id"])
        assert_eq((dj["state"], dj["attemptsMade"], dj["maxAttempts"]), ("failed", 1, 1),
                  "job %s" % dj["id"])
    email_job = [j for j in det["jobs"] if by_msg[j["messageId"]]["channel"] == "email"][0]
    jid, mid = email_job["id"], email_job["messageId"]

    r = srv.post("/jobs/%s/retry" % jid)
    assert_eq(r.status, 200, "POST /jobs/%s/retry: %r" % (jid, r))
    j = r.json()
    assert_eq((j["id"], j["leadId"], j["messageId"]), (jid, lid, mid), "retried job ids")
    if j["state"] == "waiting":  # the workers may already have it
        assert_eq((j["attemptsMade"], j["lastError"], j["finishedAt"]), (0, None, None),
                  "retried job before it runs")

    def sent():
        d = details(srv, lid)
        m = [m for m in outbound(d) if m["id"] == mid][0]
        return d if m["status"] == "sent" else None
    det = wait_until(sent, 15, "the retried message sent")
    m = [m for m in outbound(det) if m["id"] == mid][0]
    assert_eq((m["attempts"], m["lastError"]), (2, None), "message after the retry")
    assert_eq([(l["messageId"], l["attempt"]) for l in env.sink()], [(mid, 2)],
              "deliveries (the mock fails each message's first attempt only)")
    j = srv.get("/jobs/" + jid).json()
    assert_eq((j["state"], j["attemptsMade"], j["lastError"]), ("completed", 1, None),
              "retried job once done")
    evs = [(e["type"], e["payload"].get("source")) for e in det["events"]
           if e["payload"].get("messageId") == mid]
    assert_eq(evs, [("message_queued", None), ("message_failed", None),
                    ("message_retried", "api"), ("message_sent", None)],
              "the message's timeline (history kept)")
    retried = [e for e in det["events"] if e["type"] == "message_retried"][0]
    assert_eq((retried["payload"]["jobId"], retried["payload"]["attempts"]), (jid, 1),
              "message_retried payload")
    assert_eq(det["lead"]["status"], "contacted", "lead status")

    # only a failed job: 409 with the NestJS body; 404 and 400 for ids
    r = srv.post("/jobs/%s/retry" % jid)
    assert_eq((r.status, r.json()), (409, {
        "message": "Job %s is completed: only a failed job can be retried" % jid,
        "error": "Conflict", "statusCode": 409}), "retry of a completed job")
    unknown, malformed = ids_unknown_and_malformed(env)
    r = srv.post("/jobs/%s/retry" % unknown)
    assert_eq((r.status, r.json()["message"]), (404, "Job %s not found" % unknown), "unknown id")
    for path in ("/jobs/" + malformed, "/jobs/%s/retry" % malformed):
        r = srv.request("POST" if path.endswith("retry") else "GET", path)
        assert_eq((r.status, r.json()), (400, {"message": "Validation failed (job id is expected)",
                                               "error": "Bad Request", "statusCode": 400}), path)
    r = srv.get("/jobs?state=failed")
    assert_eq([j["messageId"] for j in r.json()["items"]],
              [m["id"] for m in outbound(det) if m["channel"] == "whatsapp"],
              "failed jobs left (the WhatsApp welcome)")
    srv.stop()


def test_list_filters_pages_and_bad_parameters(env):
    srv = env.serve("--no-worker")  # the jobs stay waiting
    leads = [create_lead(srv, "Page %d" % i, email="page%d@example.com" % i,
                         phone="+1555000500%d" % i)["id"] for i in range(3)]
    every = set(job_ids_of(srv, leads))
    assert_eq(len(every), 6, "jobs queued")

    def page(query):
        r = srv.get("/jobs" + query)
        assert r.status == 200, "GET /jobs%s: %r" % (query, r)
        return r.json()
    full = page("?limit=100")
    assert_eq(full["nextCursor"], None, "nextCursor of the whole list")
    assert_eq(set(j["id"] for j in full["items"]), every, "GET /jobs lists every job")
    stamps = [j["createdAt"] for j in full["items"]]
    assert_eq(stamps, sorted(stamps, reverse=True), "newest first")
    assert_eq(page("")["items"], full["items"], "default page (20) holds the six")

    first = page("?limit=4")
    assert_eq(first["items"], full["items"][:4], "first page")
    assert first["nextCursor"], "a first page of 4 out of 6 has a next cursor"
    # a lead added between two pages is newer than every page still to come
    late = create_lead(srv, "Late", email="late@example.com")["id"]
    second = page("?limit=4&cursor=" + first["nextCursor"])
    assert_eq(second, {"items": full["items"][4:], "nextCursor": None}, "second (last) page")
    assert_eq(page("?limit=1")["items"][0]["leadId"], late, "the newest job, after the pages")

    assert_eq(len(page("?name=send-message&state=waiting&limit=100")["items"]), 7,
              "waiting send-message jobs")
    for q in ("?state=failed", "?state=completed", "?name=generate-reply"):
        assert_eq(page(q), {"items": [], "nextCursor": None}, "GET /jobs" + q)
    by_two = page("?state=waiting&limit=2")
    rest = page("?state=waiting&limit=100&cursor=" + by_two["nextCursor"])
    assert_eq([j["id"] for j in by_two["items"] + rest["items"]],
              [j["id"] for j in page("?limit=100")["items"]], "pages of one state")

    r = srv.get("/jobs?state=dead&limit=0&cursor=nope&sort=asc&name=")
    assert_eq((r.status, r.json()), (400, {"message": [
        "property sort should not exist",
        "state must be one of the following values: waiting, delayed, active, completed, failed",
        "name should not be empty",
        "limit must be an integer from 1 to 100",
        "cursor is not valid"], "error": "Bad Request", "statusCode": 400}), "bad parameters")
    for q in ("?cursor=jobs.nope", "?limit=101", "?limit=5&limit=6"):
        r = srv.get("/jobs" + q)
        assert_eq(r.status, 400, "GET /jobs%s: %r" % (q, r))
    srv.stop()
