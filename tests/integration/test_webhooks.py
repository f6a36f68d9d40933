"""The providers' webhooks: WhatsApp Cloud API (verification, messages, statuses) and inbound
email in Mailgun's inbound-route format, against the real binary with the mock senders.

The fixtures are built here the way the providers document them and signed here: WhatsApp's
X-Hub-Signature-256 is the hex HMAC-SHA256 of the raw body under the app secret; Mailgun's
signature is the hex HMAC-SHA256 of timestamp + token under the webhook signing key. Every
refusal is checked to store nothing (the database's row counts before and after).
"""
import hashlib
import hmac
import json
import socket
import time
import uuid

from harness import assert_eq, create_lead, details, http_request, parallel, wait_until

APP_SECRET = "wa-app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-me-please"
PHONE_ID = "106540352242922"
MG_KEY = "key-mailgun-signing-0123456789"
REPLY_SECRET = "reply-token-secret-0123456789"
REPLY_DOMAIN = "reply.example.com"

SETTINGS = dict(WHATSAPP_APP_SECRET=APP_SECRET, WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
                EMAIL_WEBHOOK_SIGNING_KEY=MG_KEY, EMAIL_REPLY_SECRET=REPLY_SECRET,
                EMAIL_REPLY_DOMAIN=REPLY_DOMAIN)


# ---- WhatsApp fixtures (Meta's "Webhooks: messages" payloads) ---------------------------

_seq = [0]


def wamid():
    _seq[0] += 1
    return "wamid.HBgL%s%04d" % (uuid.uuid4().hex[:16].upper(), _seq[0])


def wa_text(frm, body, name="Pat Prospect", mid=None):
    return {"from": frm, "id": mid or wamid(), "timestamp": str(int(time.time())),
            "type": "text", "text": {"body": body}}, {"profile": {"name": name}, "wa_id": frm}


def wa_envelope(messages=(), contacts=(), statuses=(), phone_id=PHONE_ID, entries=1):
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_id}}
    if contacts:
        value["contacts"] = list(contacts)
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398",
                       "changes": [{"value": value, "field": "messages"}]}] * entries}


def wa_status(mid, status, recipient="16315551181", errors=None):
    s = {"id": mid, "status": status, "timestamp": str(int(time.time())),
         "recipient_id": recipient}
    if errors:
        s["errors"] = errors
    return s


def wa_post(srv, payload, secret=APP_SECRET, raw=None, signature=None, tamper=False):
    body = raw if raw is not None else json.dumps(payload).encode()
    sig = signature
    if sig is None:
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if tamper:
        body = body.replace(b"Pat", b"Pam")
    headers = {"Content-Type": "application/json"}
    if sig is not False:
        headers["X-Hub-Signature-256"] = sig
    return srv.post("/webhooks/whatsapp", body, headers=headers)


# ---- Mailgun fixtures ----------------------------------------------------------------------

def mg_fields(sender, recipient, text, message_id, in_reply_to=None, references=None,
              subject="Re: Welcome", from_header=None, timestamp=None, token=None, key=MG_KEY,
              stripped=True):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    headers = [["Message-Id", "<%s>" % message_id], ["Subject", subject],
               ["From", from_header or sender]]
    if in_reply_to:
        headers.append(["In-Reply-To", in_reply_to])
    if references:
        headers.append(["References", references])
    f = {"recipient": recipient, "sender": sender, "from": from_header or sender,
         "subject": subject, "body-plain": text + "\n\n> quoted welcome", "timestamp": ts,
         "token": token, "message-headers": json.dumps(headers),
         "signature": hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()}
    if stripped:
        f["stripped-text"] = text
    return f


def urlencoded(fields):
    from urllib.parse import urlencode
    return urlencode(fields).encode(), "application/x-www-form-urlencoded"


def multipart(fields, files=()):
    boundary = "----salespad" + uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (boundary, k, v)).encode())
    for name, fname, data in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name, fname)
                    ).encode() + data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def mg_post(srv, fields, encode=urlencoded, files=()):
    body, ctype = encode(fields, files) if files else encode(fields)
    return srv.post("/webhooks/email", body, headers={"Content-Type": ctype})


def reply_token(lead_id):
    hexid = lead_id.replace("-", "").lower()
    mac = hmac.new(REPLY_SECRET.encode(), lead_id.lower().encode(), hashlib.sha256).hexdigest()
    return "%s-%s" % (hexid, mac[:20])


# ---- helpers ---------------------------------------------------------------------------

def counts(env):
    return tuple(env.db("SELECT COUNT(*) FROM " + t)[0][0]
                 for t in ("leads", "messages", "lead_events", env.jobs_table))


def inbound(det, channel):
    return [m for m in det["messagesByChannel"].get(channel, []) if m["direction"] == "inbound"]


def answers(det, channel):
    return [m for m in det["messagesByChannel"].get(channel, []) if m["kind"] == "ai_reply"]


def events(det, kind):
    return [e["payload"] for e in det["events"] if e["type"] == kind]


def answered(srv, lead_id, channel, n=1):
    det = details(srv, lead_id)
    sent = [m for m in answers(det, channel) if m["status"] == "sent"]
    return det if len(sent) >= n else None


def lead_by_phone(env, digits):
    rows = env.db("SELECT id FROM leads WHERE phone_norm = ?", (digits,))
    return rows[0][0] if rows else None


# ---- WhatsApp ---------------------------------------------------------------------------

def test_whatsapp_verification(env):
    srv = env.serve(**SETTINGS)
    q = "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=%s&hub.challenge=1158201444"
    r = srv.get(q % VERIFY_TOKEN)
    assert_eq((r.status, r.body), (200, b"1158201444"), "verification answer")
    assert r.header("Content-Type").startswith("text/plain"), r
    assert_eq(srv.get(q % "wrong").status, 403, "wrong verify token")
    assert_eq(srv.get("/webhooks/whatsapp?hub.mode=unsubscribe&hub.verify_token=%s"
                      "&hub.challenge=1" % VERIFY_TOKEN).status, 403, "wrong mode")
    assert_eq(srv.get("/webhooks/whatsapp").status, 403, "no parameters")


def test_whatsapp_text_from_known_and_unknown_numbers(env):
    srv = env.serve(API_KEYS="k-0123456789abcdef", **SETTINGS)
    hdr = {"X-API-Key": "k-0123456789abcdef"}
    r = srv.post("/leads", {"name": "Known Kim", "phone": "+1 (631) 555-1181"}, headers=hdr)
    assert_eq(r.status, 201, "capture")
    lid = r.json()["id"]
    msg, contact = wa_text("16315551181", "How much does it cost?", name="Kim")
    new_msg, new_contact = wa_text("447700900123", "Hi, who is this?", name="Nia Newcomer")
    # The webhook needs no API key: its signature is its credential.
    r = wa_post(srv, wa_envelope([msg, new_msg], [contact, new_contact]))
    assert_eq(r.status, 200, "delivery (%r)" % (r,))
    assert_eq(r.json()["received"], 2, "messages taken in")

    srv_get = lambda path: srv.get(path, headers=hdr)  # noqa: E731
    det = wait_until(lambda: (lambda d: d if any(m["kind"] == "ai_reply" and
                                                 m["status"] == "sent"
                                                 for m in d["messagesByChannel"].get(
                                                     "whatsapp", [])) else None)(
        srv_get("/leads/" + lid).json()), 15, "answer to the known lead")
    got = inbound(det, "whatsapp")
    assert_eq(len(got), 1, "one inbound message")
    assert_eq(got[0]["channelMessage"]["text"], "How much does it cost?", "text")
    assert_eq(got[0]["providerId"], msg["id"], "the wamid as provider id")
    assert_eq(det["lead"]["status"], "replied", "status")
    rec = events(det, "reply_received")
    assert_eq([p["source"] for p in rec], ["whatsapp"], "source on the timeline")

    nid = lead_by_phone(env, "447700900123")
    assert nid, "a lead was made for the unknown number"
    det = wait_until(lambda: (lambda d: d if any(m["kind"] == "ai_reply" and
                                                 m["status"] == "sent"
                                                 for m in d["messagesByChannel"].get(
                                                     "whatsapp", [])) else None)(
        srv_get("/leads/" + str(nid)).json()), 15, "answer to the new lead")
    assert_eq((det["lead"]["name"], det["lead"]["phone"], det["lead"]["status"]),
              ("Nia Newcomer", "+447700900123", "replied"), "new lead")
    kinds = sorted(m["kind"] for m in det["messagesByChannel"]["whatsapp"])
    assert_eq(kinds, ["ai_reply", "reply"], "no welcome for a prospect who wrote first")
    assert_eq(events(det, "lead_added")[0]["source"], "whatsapp", "lead_added source")


def test_whatsapp_two_entries_media_and_reactions(env):
    srv = env.serve(**SETTINGS)
    lid = create_lead(srv, "Media Max", phone="+49 151 2345 6789")["id"]
    m1, c1 = wa_text("4915123456789", "first")
    env_two = wa_envelope([m1], [c1], entries=1)
    m2, _ = wa_text("4915123456789", "second")
    env_two["entry"].append({"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_ID},
        "contacts": [c1], "messages": [m2]}}]})
    assert_eq(wa_post(srv, env_two).json()["received"], 2, "two entries")
    image = {"from": "4915123456789", "id": wamid(), "timestamp": str(int(time.time())),
             "type": "image", "image": {"caption": "our office", "mime_type": "image/jpeg",
                                        "sha256": "abc", "id": "1234567890"}}
    reaction = {"from": "4915123456789", "id": wamid(), "timestamp": str(int(time.time())),
                "type": "reaction", "reaction": {"message_id": m1["id"], "emoji": "\U0001F44D"}}
    r = wa_post(srv, wa_envelope([image, reaction], [c1]))
    assert_eq((r.status, r.json()["received"]), (200, 2), "image and reaction")
    det = wait_until(lambda: (lambda d: d if len(answers(d, "whatsapp")) >= 2 and all(
        a["status"] == "sent" for a in answers(d, "whatsapp")) else None)(details(srv, lid)),
        15, "answers to the two texts")
    got = inbound(det, "whatsapp")
    assert_eq([m["channelMessage"]["type"] for m in got], ["text", "text", "image", "reaction"],
              "types in order")
    assert_eq(got[2]["channelMessage"]["raw"]["image"]["caption"], "our office", "raw kept")
    assert "text" not in got[3]["channelMessage"], got[3]
    skipped = events(det, "ai_reply_skipped")
    assert_eq(sorted(p["reason"] for p in skipped), ["not_text", "not_text"], "no AI answer")
    wait_until(lambda: all(j["state"] in ("completed", "failed")
                           for j in details(srv, lid)["jobs"]), 15, "jobs settled")
    assert_eq(len(answers(details(srv, lid), "whatsapp")), 2, "answers only to the texts")


def welcome_wamid(srv, lid):
    def sent():
        det = details(srv, lid)
        out = [m for m in det["messagesByChannel"].get("whatsapp", [])
               if m["kind"] == "welcome" and m["status"] == "sent"]
        return out[0] if out else None
    return wait_until(sent, 15, "welcome sent")


def test_whatsapp_statuses_in_order_out_of_order_and_failed(env):
    srv = env.serve(**SETTINGS)
    a = create_lead(srv, "Status Sam", phone="+16315550001")["id"]
    b = create_lead(srv, "Status Sue", phone="+16315550002")["id"]
    c = create_lead(srv, "Status Sid", phone="+16315550003")["id"]
    wa, wb, wc = (welcome_wamid(srv, x)["providerId"] for x in (a, b, c))

    for st in ("sent", "delivered", "read"):
        assert_eq(wa_post(srv, wa_envelope(statuses=[wa_status(wa, st)])).status, 200, st)
    det = details(srv, a)
    m = [x for x in det["messagesByChannel"]["whatsapp"] if x["providerId"] == wa][0]
    assert_eq(m["status"], "read", "in order")
    assert_eq([e["type"] for e in det["events"] if e["type"] in
               ("message_delivered", "message_read")], ["message_delivered", "message_read"],
              "events in order")

    # read before delivered: the late delivered changes nothing
    r = wa_post(srv, wa_envelope(statuses=[wa_status(wb, "read"), wa_status(wb, "delivered")]))
    assert_eq(r.json()["statuses"], 1, "only the read applies")
    det = details(srv, b)
    m = [x for x in det["messagesByChannel"]["whatsapp"] if x["providerId"] == wb][0]
    assert_eq(m["status"], "read", "never backwards")
    assert_eq(len(events(det, "message_delivered")), 0, "no delivered event after read")

    err = [{"code": 131026, "title": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."}}]
    r = wa_post(srv, wa_envelope(statuses=[wa_status(wc, "failed", errors=err)]))
    assert_eq(r.status, 200, "failed status")
    det = details(srv, c)
    m = [x for x in det["messagesByChannel"]["whatsapp"] if x["providerId"] == wc][0]
    assert_eq(m["status"], "failed", "failed")
    assert "131026" in m["lastError"] and "Message undeliverable" in m["lastError"], m
    assert events(det, "message_failed")[-1]["providerId"] == wc, det["events"]

    before = counts(env)
    r = wa_post(srv, wa_envelope(statuses=[wa_status("wamid.UNKNOWN", "delivered")]))
    assert_eq((r.status, r.json()["unknownMessages"]), (200, 1), "unknown wamid")
    assert_eq(counts(env), before, "nothing stored for an unknown wamid")


def test_whatsapp_refusals_store_nothing(env):
    srv = env.serve(WHATSAPP_PHONE_NUMBER_ID=PHONE_ID, **SETTINGS)
    create_lead(srv, "Refused Rae", phone="+16315551199")
    wait_until(lambda: env.db("SELECT COUNT(*) FROM messages WHERE status = 'sent'")[0][0] == 1,
               15, "welcome sent")
    before = counts(env)
    msg, contact = wa_text("16315551199", "hello Pat")
    payload = wa_envelope([msg], [contact])
    assert_eq(wa_post(srv, payload, secret="not-the-secret").status, 401, "wrong signature")
    assert_eq(wa_post(srv, payload, signature=False).status, 401, "missing signature")
    assert_eq(wa_post(srv, payload, signature="sha256=zz").status, 401, "malformed signature")
    assert_eq(wa_post(srv, payload, tamper=True).status, 401, "body changed after signing")
    for bad in (b"not json", b"[]", b'{"object":"page","entry":[]}',
                b'{"object":"whatsapp_business_account","entry":{}}'):
        assert_eq(wa_post(srv, None, raw=bad).status, 400, "body %r" % bad)
    r = wa_post(srv, wa_envelope([msg], [contact], phone_id="999999999999"))
    assert_eq((r.status, r.json()["ignored"]), (200, 1), "another number's change")
    assert_eq(counts(env), before, "nothing stored by any refusal")
    out = env.serve(name="nosecret")  # no WHATSAPP_APP_SECRET: the door is closed
    r = wa_post(out, payload)
    assert_eq((r.status, r.header("Retry-After")), (503, "300"), "unconfigured webhook")


def test_whatsapp_same_delivery_twenty_times_at_once(env):
    srv = env.serve(**SETTINGS)
    lid = create_lead(srv, "Dup Dana", phone="+16315552020")["id"]
    msg, contact = wa_text("16315552020", "Can we book a demo?")
    body = json.dumps(wa_envelope([msg], [contact])).encode()
    sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    hdrs = {"Content-Type": "application/json", "X-Hub-Signature-256": sig}
    res = parallel(lambda _: http_request(srv.port, "POST", "/webhooks/whatsapp", body, hdrs),
                   list(range(20)), threads=20)
    assert all(not isinstance(r, Exception) and r.status == 200 for r in res), res
    assert_eq(sum(r.json()["received"] for r in res), 1, "taken in once")
    assert_eq(sum(r.json()["duplicates"] for r in res), 19, "duplicates")
    wait_until(lambda: answered(srv, lid, "whatsapp"), 15, "answer sent")
    wait_until(lambda: all(j["state"] in ("completed", "failed")
                           for j in details(srv, lid)["jobs"]), 15, "jobs settled")
    det = details(srv, lid)
    assert_eq(len(inbound(det, "whatsapp")), 1, "one message")
    assert_eq(len(answers(det, "whatsapp")), 1, "one AI answer")


# ---- email ------------------------------------------------------------------------------

def email_answer(srv, lid):
    det = answered(srv, lid, "email")
    return det


def test_email_threading_by_each_rule(env):
    srv = env.serve(**SETTINGS)
    by_token = create_lead(srv, "Tok Tara", email="tara@example.com")["id"]
    by_thread = create_lead(srv, "Thread Theo", email="theo@example.com")["id"]
    by_sender = create_lead(srv, "Sender Sol", email="Sol.Sender@Example.COM")["id"]
    welcome = wait_until(lambda: [m for m in details(srv, by_thread)["messagesByChannel"].get(
        "email", []) if m["kind"] == "welcome" and m["status"] == "sent"], 15, "welcome")[0]

    # 1. the Reply-To token, whatever address the prospect writes from
    f = mg_fields("other-address@elsewhere.example", "reply+%s@%s" % (reply_token(by_token),
                                                                       REPLY_DOMAIN),
                  "Yes, tell me more", "m1.%s@mail.example" % uuid.uuid4().hex)
    assert_eq(mg_post(srv, f).status, 200, "token")
    # 2. In-Reply-To naming our welcome's Message-ID (multipart, with an attachment)
    f = mg_fields("someone@else.example", "sales@example.com", "What is the price?",
                  "m2.%s@mail.example" % uuid.uuid4().hex,
                  in_reply_to="<%s@example.com>" % welcome["id"],
                  references="<unrelated@x.example> <%s@example.com>" % welcome["id"])
    r = mg_post(srv, f, encode=multipart, files=[("attachment-1", "deck.pdf", b"%PDF-1.4\x00\xff")])
    assert_eq(r.status, 200, "In-Reply-To (%r)" % (r,))
    # 3. the sender's address, compared case-insensitively
    f = mg_fields("sol.sender@example.com", "sales@example.com", "Sounds good",
                  "m3.%s@mail.example" % uuid.uuid4().hex, stripped=False,
                  from_header="Sol <SOL.SENDER@example.com>")
    assert_eq(mg_post(srv, f, encode=multipart).status, 200, "sender")
    # 4. nobody we know: a new lead named after the From display name
    f = mg_fields("newbie@fresh.example", "sales@example.com", "Hello there",
                  "m4.%s@mail.example" % uuid.uuid4().hex,
                  from_header='"Nell Newbie" <newbie@fresh.example>')
    assert_eq(mg_post(srv, f).status, 200, "new lead")

    for lid, text in ((by_token, "Yes, tell me more"), (by_thread, "What is the price?"),
                      (by_sender, "Sounds good\n\n> quoted welcome")):
        det = wait_until(lambda: email_answer(srv, lid), 15, "answer to %s" % lid)
        got = inbound(det, "email")
        assert_eq([m["channelMessage"]["body"] for m in got], [text], "reply of %s" % lid)
        assert_eq(events(det, "reply_received")[0]["source"], "email", "source")
        ans = answers(det, "email")[0]
        assert_eq(ans["channelMessage"]["inReplyTo"],
                  "<%s>" % got[0]["channelMessage"]["messageId"], "the answer threads")
        assert_eq(det["lead"]["status"], "replied", "status")
    det = details(srv, by_thread)
    assert_eq(inbound(det, "email")[0]["channelMessage"]["attachments"], 1, "attachment counted")
    nid = env.db("SELECT id FROM leads WHERE email_norm = 'newbie@fresh.example'")
    assert nid, "new lead"
    det = details(srv, str(nid[0][0]))
    assert_eq((det["lead"]["name"], det["lead"]["email"]), ("Nell Newbie", "newbie@fresh.example"),
              "new lead from the From header")


def test_email_refusals_and_dedup(env):
    srv = env.serve(**SETTINGS)
    lid = create_lead(srv, "Ref Rita", email="rita@example.com")["id"]
    wait_until(lambda: env.db("SELECT COUNT(*) FROM messages WHERE status = 'sent'")[0][0] == 1,
               15, "welcome sent")
    mid = "dedup.%s@mail.example" % uuid.uuid4().hex
    before = counts(env)
    f = mg_fields("rita@example.com", "sales@example.com", "hi", mid, key="wrong-key")
    assert_eq(mg_post(srv, f).status, 401, "wrong signature")
    f = mg_fields("rita@example.com", "sales@example.com", "hi", mid,
                  timestamp=int(time.time()) - 6 * 60)
    assert_eq(mg_post(srv, f).status, 401, "stale timestamp")
    f = mg_fields("rita@example.com", "sales@example.com", "hi", mid)
    del f["signature"]
    assert_eq(mg_post(srv, f).status, 400, "missing signature field")
    r = srv.post("/webhooks/email", json.dumps({"a": 1}), headers={"Content-Type":
                                                                 "application/json"})
    assert_eq(r.status, 415, "not a form")
    assert_eq(counts(env), before, "nothing stored by a refusal")

    f = mg_fields("rita@example.com", "sales@example.com", "hi there", mid)
    assert_eq(mg_post(srv, f).status, 200, "first delivery")
    after = counts(env)
    assert_eq(mg_post(srv, f).status, 401, "the same token again")
    g = mg_fields("rita@example.com", "sales@example.com", "hi there", mid)  # new token
    r = mg_post(srv, g)
    assert_eq((r.status, r.json()["status"]), (200, "duplicate"), "same Message-Id")
    wait_until(lambda: answered(srv, lid, "email"), 15, "answer")
    det = details(srv, lid)
    assert_eq(len(inbound(det, "email")), 1, "one message for the Message-Id")
    assert after[0] == before[0], "no new lead"
    out = env.serve(name="nokey")
    r = mg_post(out, f)
    assert_eq((r.status, r.header("Retry-After")), (503, "300"), "unconfigured email webhook")


def test_email_with_big_attachments(env):
    """An inbound email may carry attachments far over the 1 MiB of the other routes (up to
    EMAIL_WEBHOOK_MAX_MB): taken in, the attachments counted and dropped."""
    srv = env.serve(EMAIL_WEBHOOK_MAX_MB=8, **SETTINGS)
    lid = create_lead(srv, "Big Bo", email="bo@example.com")["id"]
    f = mg_fields("bo@example.com", "sales@example.com", "see the deck",
                  "big.%s@mail.example" % uuid.uuid4().hex)
    blob = bytes(range(256)) * (3 * 4096)  # 3 MiB
    r = mg_post(srv, f, encode=multipart, files=[("attachment-1", "deck.pdf", blob),
                                                  ("attachment-2", "sheet.xlsx", blob[:1000])])
    assert_eq(r.status, 200, "3 MiB email (%r)" % (r,))
    det = details(srv, lid)
    got = inbound(det, "email")
    assert_eq((got[0]["channelMessage"]["body"], got[0]["channelMessage"]["attachments"]),
              ("see the deck", 2), "stored without its attachments")
    # Past the limit, the declared length is answered at once (the body is never read).
    for path, length, what in (("/webhooks/email", 9 * 1024 * 1024, "over EMAIL_WEBHOOK_MAX_MB"),
                               ("/leads", 2 * 1024 * 1024, "other routes keep 1 MiB")):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                          "boundary=b\r\nContent-Length: %d\r\n\r\n" % (path, length)).encode())
            status = sock.recv(64).split(b" ")[1]
        assert_eq(status, b"413", what)
