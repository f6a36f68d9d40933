"""WhatsApp over the Cloud API (WHATSAPP_PROVIDER=cloud) against a stub Graph API on loopback.

Each test starts a stub (stubs.GraphStub: Python's http.server, in threads of the test process,
on a free loopback port) that plays Meta's POST /v21.0/{phone-number-id}/messages. It checks every
request strictly against the Cloud API's documented shape (path, bearer token, content type,
exactly the documented members of a template or a text message) and records each violation;
the tests assert there were none. What it answers is scripted per recipient: the documented
success body with a wamid, a Graph API error ({"error":{"message","type","code",
"error_subcode","fbtrace_id"}}) with any HTTP status and Retry-After, a body that is not JSON,
or an answer held past the service's WHATSAPP_TIMEOUT_MS. The real salespad binary calls it
over plain http (allowed for loopback hosts only).
"""
import json
import sqlite3

from harness import assert_eq, create_lead, details, outbound, wait_until
from stubs import WA_PHONE_ID as PHONE_ID, WA_TOKEN as TOKEN, cloud
from stubs import GraphStub as Stub, start_graph as start_stub


def wa_messages(det, kind=None):
    return [m for m in outbound(det)
            if m["channel"] == "whatsapp" and (kind is None or m["kind"] == kind)]


def settled(srv, lid, kind="welcome"):
    """The lead's details once its WhatsApp message of `kind` is sent or failed for good."""
    d = details(srv, lid)
    out = wa_messages(d, kind)
    return d if out and out[0]["status"] in ("sent", "failed") else None


def failures(det):
    return [e["payload"] for e in det["events"] if e["type"] == "message_failed"]


def test_welcome_template_then_answer_as_text(env, request):
    stub = Stub()
    url = start_stub(request, stub)
    srv = env.serve(**cloud(url))
    name = "Ana Ñandú"
    lid = create_lead(srv, name, phone="+351 912-345 678")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "welcome settled")
    m = wa_messages(det, "welcome")[0]
    assert_eq((m["status"], m["attempts"], m["lastError"]), ("sent", 1, None), "welcome")
    assert_eq(stub.violations, [], "requests as the Cloud API documents them")
    tpl = stub.of_kind("template")
    assert_eq(len(tpl), 1, "template requests")
    body = tpl[0][3]
    assert_eq(body["to"], "351912345678", "to: the phone's digits")
    assert_eq(body["template"]["components"][0]["parameters"][0]["text"], name, "{{1}}")
    assert m["providerId"].startswith("wamid.STUB"), m
    assert_eq(det["lead"]["status"], "contacted", "status after the welcome")
    sent = [e["payload"] for e in det["events"] if e["type"] == "message_sent"]
    assert_eq([p["providerId"] for p in sent], [m["providerId"]], "message_sent providerId")

    # The prospect writes on WhatsApp: the 24-hour window opens, the answer is a text.
    r = srv.post("/leads/%s/reply" % lid, {"channel": "whatsapp", "messageContent": {
        "from": "+351 912-345 678", "text": "How much does it cost?"}})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    det = wait_until(lambda: settled(srv, lid, "ai_reply"), 15, "answer settled")
    a = wa_messages(det, "ai_reply")[0]
    assert_eq((a["status"], a["attempts"], a["lastError"]), ("sent", 1, None), "answer")
    assert_eq(stub.violations, [], "requests as the Cloud API documents them")
    txt = stub.of_kind("text")
    assert_eq(len(txt), 1, "text requests")
    assert_eq(txt[0][3]["text"]["body"], a["channelMessage"]["text"], "the answer's text")
    assert_eq(txt[0][3]["to"], "351912345678", "to")
    assert a["providerId"].startswith("wamid.STUB") and a["providerId"] != m["providerId"], a
    assert_eq(det["lead"]["status"], "replied", "status after the reply")

    # The token stays out of the configuration dump, the details and the log.
    out = env.run_cli("--print-config", **cloud(url))
    assert_eq(out.returncode, 0, "--print-config: %s" % out.stderr)
    assert TOKEN not in out.stdout + out.stderr, out.stdout
    assert "WHATSAPP_TOKEN=(set, redacted)" in out.stdout, out.stdout
    assert TOKEN not in json.dumps(det)
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)
    assert TOKEN not in srv.log(), "token in the log"


def test_throttling_honours_retry_after(env, request):
    stub = Stub({"351911111111": [("error", 429, 130429, "Rate limit hit", [("Retry-After", "2")])],
                 "351922222222": [("error", 400, 131056, "(#131056) Pair rate limit hit", [])]})
    url = start_stub(request, stub)
    srv = env.serve(**cloud(url))
    lid = create_lead(srv, "Slow Down", phone="+351911111111")["id"]
    lid2 = create_lead(srv, "Pair Limit", phone="+351922222222")["id"]
    det = wait_until(lambda: settled(srv, lid), 20, "welcome settled")
    det2 = wait_until(lambda: settled(srv, lid2), 20, "second welcome settled")
    m = wa_messages(det)[0]
    assert_eq((m["status"], m["attempts"]), ("sent", 2), "after a 429")
    f = failures(det)
    assert_eq([(p["code"], p["willRetry"]) for p in f], [("EPROVIDER", True)], "throttled once")
    assert "130429 Rate limit hit (HTTP 429)" in f[0]["error"], f
    times = [r[0] for r in stub.requests if r[3] and r[3]["to"] == "351911111111"]
    assert_eq(len(times), 2, "attempts at the stub")
    assert times[1] - times[0] >= 1.9, "Retry-After: 2 honoured (gap %.3f s)" % (
        times[1] - times[0])
    # Without Retry-After the job's own backoff (20 ms here) decides.
    m2 = wa_messages(det2)[0]
    assert_eq((m2["status"], m2["attempts"]), ("sent", 2), "after a 131056")
    assert "131056" in failures(det2)[0]["error"], failures(det2)
    assert_eq(stub.violations, [], "request shape")
    srv.stop()


def test_5xx_and_malformed_answers_are_retried(env, request):
    stub = Stub({"351933333333": [("raw", 503, "<html>upstream down</html>"),
                                  ("raw", 200, "{\"messages\": [")]})
    url = start_stub(request, stub)
    srv = env.serve(**cloud(url, JOB_ATTEMPTS=4))
    lid = create_lead(srv, "Flaky Meta", phone="+351933333333")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "welcome settled")
    m = wa_messages(det)[0]
    assert_eq((m["status"], m["attempts"]), ("sent", 3), "after a 503 and a malformed 200")
    errs = [(p["code"], p["willRetry"], p["error"]) for p in failures(det)]
    assert_eq(errs, [("EPROVIDER", True, "whatsapp: HTTP 503 without a Cloud API error"),
                     ("EPROVIDER", True, "whatsapp: HTTP 200 without messages[0].id")],
              "the two failures")
    srv.stop()


def test_permanent_codes_fail_at_once(env, request):
    stub = Stub({
        "351944444444": [("error", 400, 131047, "Re-engagement message", [])],
        "351955555555": [("error", 400, 131026, "Message undeliverable", [])],
    })
    url = start_stub(request, stub)
    srv = env.serve(**cloud(url))
    lids = [create_lead(srv, "Gone %d" % i, phone=p)["id"]
            for i, p in enumerate(["+351944444444", "+351955555555"])]
    for lid, code, text in zip(lids, (131047, 131026),
                               ("Re-engagement message", "Message undeliverable")):
        det = wait_until(lambda: settled(srv, lid), 15, "welcome settled")
        m = wa_messages(det)[0]
        assert_eq((m["status"], m["attempts"]), ("failed", 1), "code %d" % code)
        assert_eq(m["lastError"], "whatsapp: %d %s (HTTP 400)" % (code, text), "lastError")
        assert_eq([(p["code"], p["willRetry"]) for p in failures(det)],
                  [("EPERMANENT", False)], "one permanent failure")
        assert_eq((det["jobs"][0]["state"], det["jobs"][0]["attemptsMade"]), ("failed", 1), "job")
    srv.stop()


def test_refused_token_is_permanent_and_logged_once(env, request):
    refuse = ("error", 401, 190, "Error validating access token: Session has expired", [])
    stub = Stub({"351966666666": [refuse], "351977777777": [refuse]})
    url = start_stub(request, stub)
    srv = env.serve(**cloud(url))
    lids = [create_lead(srv, "Tok %d" % i, phone=p)["id"]
            for i, p in enumerate(["+351966666666", "+351977777777"])]
    for lid in lids:
        det = wait_until(lambda: settled(srv, lid), 15, "welcome settled")
        m = wa_messages(det)[0]
        assert_eq((m["status"], m["attempts"]), ("failed", 1), "refused token")
        assert m["lastError"].startswith("whatsapp: 190 Error validating access token"), m
        assert TOKEN not in m["lastError"]
    log = srv.log()
    assert_eq(log.count("config: WHATSAPP_TOKEN"), 1, "configuration error logged once")
    srv.stop()
    assert TOKEN not in srv.log(), "token in the log"


def test_slow_answer_times_out_then_retry_sends(env, request):
    stub = Stub({"351988888888": [("slow", 3)]})
    url = start_stub(request, stub)
    srv = env.serve(**cloud(url, WHATSAPP_TIMEOUT_MS=700))
    lid = create_lead(srv, "Slow Meta", phone="+351988888888")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "welcome settled")
    m = wa_messages(det)[0]
    assert_eq((m["status"], m["attempts"]), ("sent", 2), "after a timeout: %r" % (failures(det),))
    assert_eq([(p["code"], p["willRetry"]) for p in failures(det)], [("ETIMEDOUT", True)],
              "the timed-out attempt")
    srv.stop()


def age_inbound(env, lead_id, hours):
    """Moves the lead's inbound messages `hours` into the past; returns how many."""
    if env.backend == "postgres":
        con = env.pg.connect(env.pg_db)
        try:
            with con.cursor() as cur:
                cur.execute("UPDATE messages SET created_at = created_at - %s * interval '1 hour'"
                            " WHERE lead_id = %s AND direction = 'inbound'", (hours, lead_id))
                return cur.rowcount
        finally:
            con.close()
    con = sqlite3.connect(env.db_path, timeout=10)
    try:
        with con:
            return con.execute("UPDATE messages SET created_at = created_at - ? WHERE lead_id = ?"
                               " AND direction = 'inbound'",
                               (hours * 3600 * 1000, lead_id)).rowcount
    finally:
        con.close()


def test_answer_outside_the_window_needs_a_template(env, request):
    """The answer's inbound message is made 25 hours old (in the database) before any worker
    runs: the answer fails at once, Meta is not called for it."""
    stub = Stub()
    url = start_stub(request, stub)
    api = env.serve("--no-worker", **cloud(url))
    lid = create_lead(api, "Late Reply", phone="+351999999999")["id"]
    r = api.post("/leads/%s/reply" % lid, {"channel": "whatsapp", "messageContent": {
        "text": "Still there?"}})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    n = age_inbound(env, lid, 25)
    assert_eq(n, 1, "inbound messages aged")
    env.worker(**cloud(url))
    det = wait_until(lambda: settled(api, lid, "ai_reply"), 15, "answer settled")
    a = wa_messages(det, "ai_reply")[0]
    assert_eq((a["status"], a["attempts"]), ("failed", 1), "answer outside the window")
    assert_eq(a["lastError"], "whatsapp: outside the 24-hour window: a template is required",
              "lastError")
    det = wait_until(lambda: settled(api, lid), 15, "welcome settled")
    assert_eq(wa_messages(det, "welcome")[0]["status"], "sent", "the welcome is a template")
    assert_eq([r[3]["type"] for r in stub.requests], ["template"], "Meta saw the welcome only")
    api.stop()


def test_cloud_settings_are_checked_at_start(env):
    base = cloud("https://graph.facebook.com/v21.0")
    for missing in ("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_TOKEN", "WHATSAPP_WELCOME_TEMPLATE"):
        out = env.run_cli("serve", timeout=10, **dict(base, **{missing: None}))
        assert out.returncode != 0, "%s missing: started" % missing
        assert "config: %s: needed with WHATSAPP_PROVIDER=cloud" % missing in out.stderr, \
            out.stderr
    out = env.run_cli("serve", timeout=10, **dict(base, WHATSAPP_PROVIDER="twilio"))
    assert out.returncode != 0 and "WHATSAPP_PROVIDER" in out.stderr, out.stderr
    # plain http to a host that is not loopback would carry the token in clear text
    out = env.run_cli("serve", timeout=10,
                      **dict(base, WHATSAPP_API_URL="http://graph.example.com/v21.0"))
    assert out.returncode != 0 and "config: WHATSAPP_API_URL" in out.stderr, out.stderr
    out = env.run_cli("serve", timeout=10, **dict(base, WHATSAPP_TOKEN="bad token\nX: y"))
    assert out.returncode != 0 and "config: WHATSAPP_TOKEN" in out.stderr, out.stderr
    assert "bad token" not in out.stderr, out.stderr


def test_check_providers_reads_the_number_and_sends_nothing(env, request):
    stub = Stub()
    url = start_stub(request, stub)
    out = env.run_cli("check-providers", **cloud(url))
    assert_eq(out.returncode, 0, "check-providers: %s %s" % (out.stdout, out.stderr))
    line = [l for l in out.stdout.splitlines() if l.startswith("whatsapp:")][0]
    assert "ok (token accepted, phone number id found (+1 555-010-0000))" in line, line
    assert_eq((stub.gets, stub.requests), (["/v21.0/%s" % PHONE_ID], []), "one GET, no send")

    out = env.run_cli("check-providers", **cloud(url, WHATSAPP_TOKEN="EAAG-wrong"))
    assert_eq(out.returncode, 1, "a refused token: %s" % out.stdout)
    assert "FAILED: EPERMANENT: whatsapp: 190 Invalid OAuth access token (HTTP 401)" in \
        out.stdout, out.stdout
    assert "EAAG-wrong" not in out.stdout + out.stderr
