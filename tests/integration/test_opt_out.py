"""Do not contact, end to end with the real binary: opting a lead out of a channel and back in
over the API, a "STOP" reply, the worker suppressing queued messages at send time, an operator's
manual messages (and the 409 of an opted-out channel), and the one-click unsubscribe link of a
real email (its List-Unsubscribe headers read at an aiosmtpd relay, its GET page and POST).

Messages are queued before the opt-out by running `serve --no-worker` first and a `worker`
process afterwards, as test_whatsapp.py does: no sleeps, no timing.
"""
import email
import email.policy
import hashlib
import hmac
import re

from harness import assert_eq, create_lead, details, outbound, wait_until
from stubs import GraphStub, Relay, cloud, start_graph, start_relay

UNSUB_SECRET = "unsubscribe-secret-0123456789"
KEY = "opt-out-test-key"
UNKNOWN = "2728542f-1069-401c-a54f-4ab8a3a46a06"


def events(det, type_):
    return [e["payload"] for e in det["events"] if e["type"] == type_]


def messages(det, channel, kind=None):
    return [m for m in outbound(det)
            if m["channel"] == channel and (kind is None or m["kind"] == kind)]


def settled(srv, lid, n, headers=None):
    """The lead's details once it has n outbound messages and none is queued or sending."""
    r = srv.get("/leads/" + lid, headers=headers)
    assert_eq(r.status, 200, "GET /leads/%s" % lid)
    d = r.json()
    out = outbound(d)
    done = len(out) >= n and all(m["status"] not in ("queued", "sending") for m in out)
    return d if done else None


def manual(srv, lid, channel, content, headers=None):
    return srv.post("/leads/%s/messages" % lid, {"channel": channel, "channelMessage": content},
                    headers=headers)


def test_opt_out_suppresses_stop_reply_and_manual_messages(env):
    api = env.serve("--no-worker")
    ana = create_lead(api, "Ana", email="ana@example.com", phone="+351912345678")["id"]
    bob = create_lead(api, "Bob", phone="+351911111111")["id"]

    # Ana opts out of email while her welcomes are still queued.
    r = api.post("/leads/%s/opt-out" % ana, {"channel": "email", "reason": "asked by phone"})
    assert_eq(r.status, 200, "opt-out (%r)" % (r,))
    body = r.json()
    assert_eq(sorted(body), ["leadId", "optOut"], "answer")
    assert_eq(body["leadId"], ana, "leadId")
    oo = body["optOut"]["email"]
    assert_eq((oo["reason"], oo["source"]), ("asked by phone", "api"), "email opt-out")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", oo["at"]), oo
    det = details(api, ana)
    assert_eq(det["optOut"], body["optOut"], "optOut in the details")
    assert_eq(events(det, "opted_out"),
              [{"channel": "email", "reason": "asked by phone", "source": "api"}], "opted_out")

    # Refusals, in the NestJS error shape.
    r = api.post("/leads/%s/opt-out" % ana, {"channel": "sms"})
    assert_eq((r.status, r.json()), (400, {"message": [
        "channel must be one of the following values: email, whatsapp"],
        "error": "Bad Request", "statusCode": 400}), "bad channel")
    assert_eq(api.post("/leads/not-a-uuid/opt-out", {}).status, 400, "bad id")
    r = api.post("/leads/%s/opt-out" % UNKNOWN, {})
    assert_eq((r.status, r.json()["error"]), (404, "Not Found"), "unknown lead")
    assert_eq(api.request("DELETE", "/leads/%s/opt-out?chanel=email" % ana).status, 400,
              "DELETE with an unknown query argument")

    # Bob says STOP on WhatsApp: opted out of it in the reply's unit of work, no answer.
    r = api.post("/leads/%s/reply" % bob, {"channel": "whatsapp",
                                           "messageContent": {"text": "STOP"}})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    stop_id = r.json()["messageId"]
    det = details(api, bob)
    assert_eq((det["optOut"]["whatsapp"]["source"], det["optOut"]["whatsapp"]["reason"]),
              ("reply", "stop_requested"), "opted out by the reply")
    assert_eq(events(det, "opted_out"), [{"channel": "whatsapp", "reason": "stop_requested",
                                          "source": "reply", "messageId": stop_id}], "event")
    assert_eq([p["reason"] for p in events(det, "ai_reply_skipped")], ["stop_requested"],
              "no answer")

    # Manual messages: queued on a channel Ana may be contacted on, refused on the other.
    r = manual(api, ana, "whatsapp", {"text": "See you on Friday"})
    assert_eq(r.status, 201, "manual WhatsApp (%r)" % (r,))
    m = r.json()
    assert_eq((m["kind"], m["status"], m["direction"], m["channel"]),
              ("manual", "queued", "outbound", "whatsapp"), "the message")
    assert_eq(m["channelMessage"], {"to": "+351912345678", "text": "See you on Friday"}, "content")
    r = manual(api, ana, "email", {"subject": "Hi", "body": "Hello"})
    assert_eq((r.status, r.json()), (409, {
        "message": "Lead %s opted out of email: the message was not queued" % ana,
        "error": "Conflict", "statusCode": 409}), "manual email to an opted-out channel")
    r = manual(api, ana, "linkedin", {"text": "hi"})
    assert_eq(r.status, 400, "manual on a channel without a sender")
    r = manual(api, ana, "email", {"subject": "", "body": "x", "cc": "eve@example.com"})
    assert_eq(r.json()["message"], ["property channelMessage.cc should not exist"], "400 body")

    # The worker comes: the queued email welcome and Bob's welcome are suppressed, not sent.
    worker = env.worker()
    det = wait_until(lambda: settled(api, ana, 3), 15, "Ana's messages settled")
    assert_eq([(m["channel"], m["kind"], m["status"]) for m in outbound(det)],
              [("email", "welcome", "suppressed"), ("whatsapp", "welcome", "sent"),
               ("whatsapp", "manual", "sent")], "Ana's messages")
    sup = events(det, "message_suppressed")
    assert_eq([(p["channel"], p["kind"], p["reason"], p["optOutSource"]) for p in sup],
              [("email", "welcome", "opted_out", "api")], "message_suppressed")
    jobs = {j["messageId"]: j["state"] for j in det["jobs"]}
    assert_eq(jobs[messages(det, "email")[0]["id"]], "completed", "the suppressed job completed")
    det_b = wait_until(lambda: settled(api, bob, 1), 15, "Bob's welcome settled")
    assert_eq(messages(det_b, "whatsapp")[0]["status"], "suppressed", "Bob's welcome")
    sink = env.sink()
    assert_eq(sorted((s["channel"], s["to"], s["kind"]) for s in sink),
              [("whatsapp", "+351912345678", "manual"), ("whatsapp", "+351912345678", "welcome")],
              "what the provider received")

    # Back in on email: the opt-out goes (opted_in), new messages go out; none reappears.
    r = api.request("DELETE", "/leads/%s/opt-out?channel=email" % ana)
    assert_eq((r.status, r.json()), (200, {"leadId": ana, "optOut": {}}), "opt back in")
    det = details(api, ana)
    assert "optOut" not in det, "an ordinary lead's details keep the NestJS shape"
    assert_eq(events(det, "opted_in"), [{"channel": "email", "source": "api"}], "opted_in")
    r = manual(api, ana, "email", {"subject": "Our offer", "body": "Dear Ana,\n\nhere it is."})
    assert_eq(r.status, 201, "manual email (%r)" % (r,))
    det = wait_until(lambda: settled(api, ana, 4), 15, "the manual email settled")
    assert_eq([m["status"] for m in messages(det, "email")], ["suppressed", "sent"], "emails")
    assert_eq(sorted(s["kind"] for s in env.sink() if s["channel"] == "email"), ["manual"],
              "one email sent: the manual one")
    worker.stop()  # exit status 0: a clean shutdown (and no leak under ASan)
    api.stop()


def unsubscribe_token(lead_id, secret=UNSUB_SECRET):
    """The documented token: the lead id's 32 hex digits, '-', the first 32 hex digits of
    HMAC-SHA-256(secret, "salespad-unsubscribe:" + lead id)."""
    mac = hmac.new(secret.encode(), ("salespad-unsubscribe:" + lead_id).encode(),
                   hashlib.sha256).hexdigest()[:32]
    return lead_id.replace("-", "") + "-" + mac


def test_one_click_unsubscribe_link_over_smtp(env, request):
    relay = Relay()
    url = start_relay(request, relay)
    auth = {"X-API-Key": KEY}
    srv = env.serve(EMAIL_PROVIDER="smtp", SMTP_URL=url, EMAIL_FROM="Sales <hello@salespad.test>",
                    PUBLIC_URL="https://salespad.example.com/sp/", UNSUBSCRIBE_SECRET=UNSUB_SECRET,
                    API_KEYS=KEY)
    r = srv.post("/leads", {"name": "Ana", "email": "ana@example.com"}, headers=auth)
    assert_eq(r.status, 201, "capture (%r)" % (r,))
    lid = r.json()["id"]
    wait_until(lambda: settled(srv, lid, 1, auth), 15, "welcome sent")
    assert_eq(len(relay.accepted), 1, "emails at the relay")
    msg = email.message_from_bytes(relay.accepted[0], policy=email.policy.default)
    link = "https://salespad.example.com/sp/unsubscribe/" + unsubscribe_token(lid)
    assert_eq(msg["List-Unsubscribe"].strip(), "<%s>" % link, "List-Unsubscribe")
    assert_eq(msg["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click",
              "List-Unsubscribe-Post")
    path = "/unsubscribe/" + unsubscribe_token(lid)

    # GET (no API key needed): a page with a confirm button, and no effect.
    r = srv.get(path)
    assert_eq(r.status, 200, "GET the link (%r)" % (r,))
    assert_eq(r.header("Content-Type"), "text/html; charset=utf-8", "content type")
    page = r.body.decode("utf-8")
    assert '<form method="post">' in page and "<button" in page, page
    assert "a***@example.com" in page and "ana@example.com" not in page, page
    assert re.search(r"(src|href)=", page) is None, "no external resource: %s" % page
    assert "default-src 'none'" in r.header("Content-Security-Policy"), r.headers
    assert "optOut" not in settled(srv, lid, 1, auth), "GET changed nothing"

    # POST, as a mail provider's one-click button sends it: opted out of email; again: 200.
    for _ in range(2):
        r = srv.post(path, "List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_eq(r.status, 200, "POST the link (%r)" % (r,))
        assert "You are unsubscribed" in r.body.decode("utf-8"), r
    det = settled(srv, lid, 1, auth)
    oo = det["optOut"]["email"]
    assert_eq((oo["source"], oo["reason"]), ("unsubscribe", "one_click_unsubscribe"), "opt-out")
    assert_eq(len(events(det, "opted_out")), 1, "one opted_out event")
    assert "You are unsubscribed" in srv.get(path).body.decode("utf-8"), "the page says so"
    r = manual(srv, lid, "email", {"subject": "Hi", "body": "Hello"}, headers=auth)
    assert_eq(r.status, 409, "no more email (%r)" % (r,))

    # Bad tokens: 404, an HTML page for GET, the JSON error for POST.
    forged = unsubscribe_token(lid, "another-secret-0123456789")
    for bad in (forged, unsubscribe_token(UNKNOWN), "nope"):
        r = srv.get("/unsubscribe/" + bad)
        assert_eq((r.status, r.header("Content-Type")), (404, "text/html; charset=utf-8"),
                  "GET a bad link")
        r = srv.post("/unsubscribe/" + bad, "")
        assert_eq((r.status, r.json()), (404, {"message": "Unsubscribe link not valid",
                                               "error": "Not Found", "statusCode": 404}),
                  "POST a bad link")
    assert_eq(srv.get("/leads/" + lid).status, 401, "the API still needs its key")
    srv.stop()


def test_manual_whatsapp_needs_the_24_hour_window(env, request):
    stub = GraphStub()
    url = start_graph(request, stub)
    srv = env.serve(**cloud(url))
    lid = create_lead(srv, "Ana", phone="+351912345678")["id"]
    wait_until(lambda: settled(srv, lid, 1), 15, "welcome sent")

    # The lead never wrote: free text is not allowed, the message fails at once, Meta not called.
    r = manual(srv, lid, "whatsapp", {"text": "Are you there?"})
    assert_eq(r.status, 201, "manual (%r)" % (r,))
    det = wait_until(lambda: settled(srv, lid, 2), 15, "manual settled")
    m = messages(det, "whatsapp", "manual")[0]
    assert_eq((m["status"], m["lastError"]),
              ("failed", "whatsapp: outside the 24-hour window: a template is required"),
              "outside the window")
    assert_eq([q[3]["type"] for q in stub.requests], ["template"], "Meta saw the welcome only")

    # The lead writes: the window opens, a manual message is a text.
    r = srv.post("/leads/%s/reply" % lid, {"channel": "whatsapp",
                                           "messageContent": {"text": "Hi!"}})
    assert_eq(r.status, 201, "reply")
    r = manual(srv, lid, "whatsapp", {"text": "Thanks for writing, Ana"})
    assert_eq(r.status, 201, "manual (%r)" % (r,))
    det = wait_until(lambda: settled(srv, lid, 4), 15, "manual and answer settled")
    assert_eq([m["status"] for m in messages(det, "whatsapp", "manual")], ["failed", "sent"],
              "manual messages")
    texts = [q[3]["text"]["body"] for q in stub.of_kind("text")]
    assert "Thanks for writing, Ana" in texts, texts
    assert_eq(stub.violations, [], "requests as the Cloud API documents them")
    srv.stop()
