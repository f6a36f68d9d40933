"""End to end with the real providers' protocols: capture -> the welcome email at a real SMTP
server and the WhatsApp template at the Graph API stub -> the prospect's replies through the
signed webhooks -> the stub model's answers, threaded, at the SMTP server and the Graph stub ->
the WhatsApp statuses -> GET /leads/:id shows every provider id, status, error and event.

Nothing of ours is mocked: the real salespad binary runs with EMAIL_PROVIDER=smtp (an aiosmtpd
server on loopback), WHATSAPP_PROVIDER=cloud and AI_PROVIDER=openai (the strict stubs of
stubs.py, which record every violation of the documented request shape). The replies are the
providers' deliveries as test_webhooks.py builds and signs them: Mailgun's inbound-route form on
POST /webhooks/email, Meta's envelope with X-Hub-Signature-256 on POST /webhooks/whatsapp. The
emails the server received are parsed with Python's email package. CTest runs this script on
SQLite, PostgreSQL and PostgreSQL + Redis.
"""
import email
import email.policy
import uuid
from collections import Counter

from harness import assert_eq, create_lead, details, outbound, wait_until
from stubs import AI_LEAD, WA_PHONE_ID, GraphStub, ModelStub, Relay, cloud, openai, start_graph
from stubs import start_model, start_relay
from test_webhooks import APP_SECRET, MG_KEY, mg_fields, mg_post, wa_envelope, wa_post, wa_status
from test_webhooks import wa_text

FROM = "Sales Pad <hello@salespad.test>"
REPLY_DOMAIN = "in.salespad.test"
REPLY_SECRET = "e2e-reply-secret-0123456789"
PROMPT = "You are SalesPad's e2e test assistant."
EMAIL = "ana@example.com"
PHONE = "+351 912-345 678"
DIGITS = "351912345678"


def settings(relay_url, graph_url, model_url, **kw):
    s = dict(EMAIL_PROVIDER="smtp", SMTP_URL=relay_url, EMAIL_FROM=FROM, SMTP_TIMEOUT_MS=2000,
             EMAIL_REPLY_DOMAIN=REPLY_DOMAIN, EMAIL_REPLY_SECRET=REPLY_SECRET,
             EMAIL_WEBHOOK_SIGNING_KEY=MG_KEY, WHATSAPP_APP_SECRET=APP_SECRET,
             AI_SYSTEM_PROMPT=PROMPT)
    s.update(cloud(graph_url))
    s.update(openai(model_url))
    s.update(kw)
    return s


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_of(msg):
    """The decoded body with LF line ends (quoted-printable keeps the message's CRLF)."""
    return msg.get_content().replace("\r\n", "\n")


def received(relay, n):
    """The first n emails the SMTP server accepted, parsed, once it has accepted n."""
    with relay.lock:
        got = list(relay.accepted)
    return [parse(raw) for raw in got[:n]] if len(got) >= n else None


def msgs(det, channel, kind=None, direction="outbound"):
    return [m for m in det["messagesByChannel"].get(channel, [])
            if m["direction"] == direction and (kind is None or m["kind"] == kind)]


def one(det, channel, kind, direction="outbound"):
    got = msgs(det, channel, kind, direction)
    assert_eq(len(got), 1, "%s %s %s messages" % (direction, channel, kind))
    return got[0]


def events(det, type_):
    return [e["payload"] for e in det["events"] if e["type"] == type_]


def with_status(srv, lid, channel, kind, status, direction="outbound"):
    """The lead's details once its message(s) of channel/kind all have `status`."""
    d = details(srv, lid)
    got = msgs(d, channel, kind, direction)
    return d if got and all(m["status"] == status for m in got) else None


def email_reply(srv, sender, recipient, text, in_reply_to, references=None):
    """Mailgun's inbound-route delivery of the prospect's email, signed; its Message-Id."""
    mid = "e2e.%s@mail.example" % uuid.uuid4().hex
    f = mg_fields(sender, recipient, text, mid, in_reply_to=in_reply_to,
                  references=references or in_reply_to, subject="Re: Welcome, %s!" % AI_LEAD,
                  from_header="%s <%s>" % (AI_LEAD, sender))
    r = mg_post(srv, f)
    assert_eq((r.status, r.json()), (200, {"status": "stored"}), "POST /webhooks/email (%r)" % r)
    return mid


def test_capture_replies_and_threaded_answers_over_every_provider(env, request):
    relay, graph, model = Relay(), GraphStub(), ModelStub()
    srv = env.serve(**settings(start_relay(request, relay), start_graph(request, graph),
                               start_model(request, model)))
    lid = create_lead(srv, AI_LEAD, email=EMAIL, phone=PHONE)["id"]

    # 1. The welcomes: the email at the SMTP server, the template at the Graph stub.
    (welcome,) = wait_until(lambda: received(relay, 1), 15, "the welcome email at the relay")
    det = wait_until(lambda: with_status(srv, lid, "whatsapp", "welcome", "sent"), 15,
                     "the WhatsApp welcome sent")
    det = wait_until(lambda: with_status(srv, lid, "email", "welcome", "sent"), 15,
                     "the welcome email recorded as sent")
    w_mail, w_wa = one(det, "email", "welcome"), one(det, "whatsapp", "welcome")
    assert_eq(welcome["Message-ID"], "<%s@salespad.test>" % w_mail["id"], "welcome Message-ID")
    assert_eq(welcome["To"].addresses[0].addr_spec, EMAIL, "welcome To")
    assert_eq(text_of(welcome).rstrip("\n"), w_mail["channelMessage"]["body"].rstrip("\n"),
              "the welcome's body as sent")
    reply_to = welcome["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("reply+") and reply_to.endswith("@" + REPLY_DOMAIN), reply_to
    tpl = graph.of_kind("template")
    assert_eq(len(tpl), 1, "template requests at the Graph stub")
    assert_eq(tpl[0][3]["to"], DIGITS, "template to: the phone's digits")
    assert_eq(tpl[0][3]["template"]["components"][0]["parameters"][0]["text"], AI_LEAD, "{{1}}")
    assert_eq(w_wa["providerId"], "wamid.STUB1", "the welcome's wamid")
    assert_eq(det["lead"]["status"], "contacted", "status after the welcomes")

    # 2. The prospect answers the welcome email: Mailgun posts it to the webhook, addressed to
    # the welcome's Reply-To and threaded on its Message-ID as the relay received it.
    in_mid = email_reply(srv, EMAIL, reply_to, "How much does it cost?", welcome["Message-ID"])
    (_, answer) = wait_until(lambda: received(relay, 2), 15, "the AI answer at the relay")
    assert_eq(answer["In-Reply-To"], "<%s>" % in_mid, "the answer's In-Reply-To")
    # RFC 5322: the parent's References, then the parent's Message-ID.
    assert_eq(answer["References"], "%s <%s>" % (welcome["Message-ID"], in_mid),
              "the answer's References")
    assert_eq(text_of(answer).rstrip("\n"), "Stub answer 1.", "the answer's body: the model's")
    assert_eq(answer["To"].addresses[0].addr_spec, EMAIL, "the answer's To")
    assert_eq(answer["Reply-To"].addresses[0].addr_spec, reply_to, "the answer's Reply-To")
    assert_eq(model.violations, [], "model requests as the API documents them")
    system = model.requests[0][2]["messages"][0]
    assert_eq(system["role"], "system", "first message")
    assert system["content"].startswith(PROMPT) and AI_LEAD in system["content"] and \
        "on email" in system["content"], system
    assert_eq(model.turns(0), [("assistant", w_mail["channelMessage"]["body"]),
                               ("user", "How much does it cost?")], "the email conversation")

    # 3. The prospect writes on WhatsApp (Meta's signed delivery): the window opens, the
    # model's answer goes out as a text message.
    msg, contact = wa_text(DIGITS, "Can we book a demo?", name=AI_LEAD)
    r = wa_post(srv, wa_envelope([msg], [contact], phone_id=WA_PHONE_ID))
    assert_eq((r.status, r.json()["received"]), (200, 1), "POST /webhooks/whatsapp (%r)" % r)
    wait_until(lambda: graph.of_kind("text"), 15, "the AI answer at the Graph stub")
    (txt,) = graph.of_kind("text")
    assert_eq((txt[3]["to"], txt[3]["text"]["body"]), (DIGITS, "Stub answer 2."),
              "the WhatsApp answer: the model's words, as a text")
    assert_eq(graph.violations, [], "Graph requests as the Cloud API documents them")
    assert_eq(model.violations, [], "model requests as the API documents them")
    assert "on WhatsApp" in model.requests[1][2]["messages"][0]["content"], model.requests[1]
    assert_eq(model.turns(1), [("assistant", w_wa["channelMessage"]["text"]),
                               ("user", "Can we book a demo?")], "the WhatsApp conversation")

    # 4. Meta's statuses for the welcome: delivered, then read.
    for st in ("delivered", "read"):
        r = wa_post(srv, wa_envelope(statuses=[wa_status(w_wa["providerId"], st, DIGITS)],
                                     phone_id=WA_PHONE_ID))
        assert_eq((r.status, r.json()["statuses"]), (200, 1), "status %s (%r)" % (st, r))

    # 5. GET /leads/:id: every provider id, status and error, and the timeline.
    det = wait_until(lambda: with_status(srv, lid, "whatsapp", "ai_reply", "sent"), 15,
                     "the WhatsApp answer recorded as sent")
    det = wait_until(lambda: with_status(srv, lid, "email", "ai_reply", "sent"), 15,
                     "the email answer recorded as sent")
    a_mail, a_wa = one(det, "email", "ai_reply"), one(det, "whatsapp", "ai_reply")
    w_mail, w_wa = one(det, "email", "welcome"), one(det, "whatsapp", "welcome")
    want = {w_mail["id"]: ("Q1X", "sent"), a_mail["id"]: ("Q2X", "sent"),
            w_wa["id"]: ("wamid.STUB1", "read"), a_wa["id"]: ("wamid.STUB2", "sent")}
    got = {m["id"]: (m["providerId"], m["status"]) for m in outbound(det)}
    assert_eq(got, want, "outbound provider ids and statuses")
    for m in outbound(det):
        assert_eq((m["lastError"], m["attempts"]), (None, 1), "lastError, attempts: %r" % (m,))
    assert_eq(answer["Message-ID"], "<%s@salespad.test>" % a_mail["id"], "answer Message-ID")
    assert_eq(a_mail["channelMessage"]["body"], "Stub answer 1.", "the stored email answer")
    assert_eq(a_mail["channelMessage"]["inReplyTo"], "<%s>" % in_mid, "stored inReplyTo")
    assert_eq(a_wa["channelMessage"]["text"], "Stub answer 2.", "the stored WhatsApp answer")
    i_mail = one(det, "email", None, "inbound")
    i_wa = one(det, "whatsapp", None, "inbound")
    assert_eq((i_mail["providerId"], i_mail["status"], i_mail["lastError"],
               i_mail["channelMessage"]["messageId"], i_mail["channelMessage"]["body"]),
              (in_mid, "received", None, in_mid, "How much does it cost?"), "inbound email")
    assert_eq("<%s>" % i_mail["channelMessage"]["inReplyToId"], welcome["Message-ID"],
              "the inbound email's In-Reply-To: the welcome")
    assert_eq((i_wa["providerId"], i_wa["status"], i_wa["lastError"],
               i_wa["channelMessage"]["text"]),
              (msg["id"], "received", None, "Can we book a demo?"), "inbound WhatsApp message")
    assert_eq(det["lead"]["status"], "replied", "status after the replies")

    sent = {p["messageId"]: p["providerId"] for p in events(det, "message_sent")}
    assert_eq(sent, {k: v[0] for k, v in want.items()}, "message_sent events and provider ids")
    assert_eq([(p["messageId"], p["providerId"]) for p in events(det, "ai_reply_sent")],
              [(a_mail["id"], "Q2X"), (a_wa["id"], "wamid.STUB2")], "ai_reply_sent events")
    assert_eq([(p["source"], p["messageId"], p["providerId"])
               for p in events(det, "reply_received")],
              [("email", i_mail["id"], in_mid), ("whatsapp", i_wa["id"], msg["id"])],
              "reply_received events")
    queued = {p["messageId"]: p["kind"] for p in events(det, "message_queued")}
    assert_eq(queued, {w_mail["id"]: "welcome", w_wa["id"]: "welcome",
                       a_mail["id"]: "ai_reply", a_wa["id"]: "ai_reply"}, "message_queued")
    for t in ("message_delivered", "message_read"):
        assert_eq([p.get("providerId") for p in events(det, t)], ["wamid.STUB1"], t)
    types = [e["type"] for e in det["events"]]
    assert types.index("message_delivered") < types.index("message_read"), types
    assert_eq(sorted(Counter(types).items()), sorted({
        "lead_added": 1, "message_queued": 4, "message_sent": 4, "status_changed": 2,
        "reply_received": 2, "ai_reply_sent": 2, "message_delivered": 1,
        "message_read": 1}.items()), "the timeline's events")
    assert_eq(events(det, "ai_reply_failed") + events(det, "message_failed"), [], "no failure")
    assert_eq(sorted((j["name"], j["state"], j["attemptsMade"]) for j in det["jobs"]),
              sorted([("generate-reply", "completed", 1)] * 2 +
                     [("send-message", "completed", 1)] * 4), "jobs")
    assert_eq(len(relay.accepted), 2, "emails at the relay: the welcome and the answer")
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)


def test_model_down_the_template_answers_threaded_by_email(env, request):
    """Every model call answers 500: after JOB_ATTEMPTS=2 the template answer goes out by email,
    threaded, and the timeline says ai_reply_failed. The reply reaches its lead by In-Reply-To
    alone (another sender, a recipient without the Reply-To token)."""
    relay, graph = Relay(), GraphStub()
    model = ModelStub(default=("raw", 500, '{"error":{"message":"model overloaded"}}'))
    srv = env.serve(**settings(start_relay(request, relay), start_graph(request, graph),
                               start_model(request, model), JOB_ATTEMPTS=2,
                               AI_FALLBACK="template"))
    lid = create_lead(srv, AI_LEAD, email=EMAIL)["id"]
    (welcome,) = wait_until(lambda: received(relay, 1), 15, "the welcome email at the relay")

    in_mid = email_reply(srv, "ana.personal@elsewhere.example", "sales@" + REPLY_DOMAIN,
                         "What is the price?", welcome["Message-ID"],
                         references="<older@mail.example> %s" % welcome["Message-ID"])
    (_, answer) = wait_until(lambda: received(relay, 2), 15, "the template answer at the relay")
    det = wait_until(lambda: with_status(srv, lid, "email", "ai_reply", "sent"), 15,
                     "the template answer recorded as sent")
    a = one(det, "email", "ai_reply")
    assert_eq(answer["In-Reply-To"], "<%s>" % in_mid, "the answer's In-Reply-To")
    assert_eq(answer["References"],
              "<older@mail.example> %s <%s>" % (welcome["Message-ID"], in_mid),
              "the answer's References: the thread, then the reply")
    assert_eq(answer["To"].addresses[0].addr_spec, EMAIL, "to the lead's own address")
    assert_eq(text_of(answer).rstrip("\n"), a["channelMessage"]["body"].rstrip("\n"),
              "the template answer's body")
    assert_eq(a["channelMessage"].get("intent"), "pricing", "the template answer")
    assert_eq((a["providerId"], a["status"], a["lastError"]), ("Q2X", "sent", None), "answer")
    assert_eq(len(model.requests), 2, "model calls: JOB_ATTEMPTS")
    assert_eq(model.violations, [], "model requests as the API documents them")

    i = one(det, "email", None, "inbound")
    f = events(det, "ai_reply_failed")
    assert_eq([(p["messageId"], p["attempt"], p["code"], p["fallback"], p["answerId"])
               for p in f], [(i["id"], 2, "EPROVIDER", "template", a["id"])], "ai_reply_failed")
    assert "500" in f[0]["error"], f
    assert_eq([p["source"] for p in events(det, "reply_received")], ["email"], "reply_received")
    assert_eq([p["messageId"] for p in events(det, "ai_reply_sent")], [a["id"]], "ai_reply_sent")
    gen = [j for j in det["jobs"] if j["name"] == "generate-reply"]
    assert_eq([(j["state"], j["attemptsMade"]) for j in gen], [("completed", 2)],
              "generate-reply job")
    assert_eq(graph.requests, [], "no WhatsApp for a lead without a phone")
    srv.stop()
