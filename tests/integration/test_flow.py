"""Full flow over the real binary: capture -> welcome messages -> replies -> AI answers -> details."""
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (all_messages, assert_eq, create_lead, details, event_types,  # noqa: E402
                     run, wait_until)


def sent_messages(det, kind=None, channel=None):
    return [m for m in all_messages(det)
            if m["direction"] == "outbound" and m["status"] == "sent"
            and (kind is None or m["kind"] == kind) and (channel is None or m["channel"] == channel)]


def test_full_flow(env):
    srv = env.serve()
    email, phone = "ada.lovelace@example.com", "+15550001234"
    lead = create_lead(srv, "Ada Lovelace", email=email, phone=phone)
    lid = lead["id"]
    assert_eq(lead["status"], "new", "status on capture")
    assert_eq((lead["email"], lead["phone"]), (email, phone), "echoed addresses")

    # Both welcome messages are sent; the sink has exactly one line for each.
    det = wait_until(lambda: (lambda d: d if len(sent_messages(d, "welcome")) == 2 else None)(
        details(srv, lid)), 10, "both welcome messages sent")
    welcome = {m["channel"]: m for m in sent_messages(det, "welcome")}
    assert_eq(sorted(welcome), ["email", "whatsapp"], "welcome channels")
    assert_eq(welcome["email"]["channelMessage"]["to"], email, "welcome email to")
    assert_eq(welcome["whatsapp"]["channelMessage"]["to"], phone, "welcome whatsapp to")
    assert_eq(det["lead"]["status"], "contacted", "status after the welcome messages")
    wait_until(lambda: {l["messageId"] for l in env.sink()} >= {m["id"] for m in welcome.values()},
               5, "welcome messages in the sink")

    # An email reply: answered on email, to the lead's email address, subject "RE: <thread>".
    r = srv.post("/leads/%s/reply" % lid, {"channel": "email", "messageContent": {
        "from": email, "subject": "Pricing", "body": "How much does it cost?"}})
    assert_eq(r.status, 201, "email reply status (%r)" % (r,))
    inbound_email_id = r.json()["messageId"]
    det = wait_until(lambda: (lambda d: d if sent_messages(d, "ai_reply", "email") else None)(
        details(srv, lid)), 10, "AI answer on email sent")
    ai_email = sent_messages(det, "ai_reply", "email")
    assert_eq(len(ai_email), 1, "AI email answers")
    ai_email = ai_email[0]
    assert_eq(ai_email["channelMessage"]["to"], email, "AI email answer addressed to")
    assert_eq(ai_email["channelMessage"]["subject"], "RE: Pricing", "AI email subject")
    assert_eq(det["lead"]["status"], "replied", "status after the reply")

    # A WhatsApp reply: answered on WhatsApp, to the phone (the seed build used the email).
    r = srv.post("/leads/%s/reply" % lid, {"channel": "whatsapp", "messageContent": {
        "from": phone, "text": "Can we talk tomorrow?"}})
    assert_eq(r.status, 201, "whatsapp reply status (%r)" % (r,))
    inbound_wa_id = r.json()["messageId"]
    det = wait_until(lambda: (lambda d: d if sent_messages(d, "ai_reply", "whatsapp") else None)(
        details(srv, lid)), 10, "AI answer on WhatsApp sent")
    ai_wa = sent_messages(det, "ai_reply", "whatsapp")
    assert_eq(len(ai_wa), 1, "AI WhatsApp answers")
    ai_wa = ai_wa[0]
    assert_eq(ai_wa["channelMessage"]["to"], phone, "AI WhatsApp answer addressed to")

    # Stop cleanly, then check the final state (nothing can change any more).
    srv.stop()
    srv = env.serve()
    det = details(srv, lid)
    assert_eq(det["lead"]["status"], "replied", "final lead status")

    msgs = all_messages(det)
    assert_eq(len(msgs), 6, "message count (2 welcome, 2 inbound, 2 AI answers)")
    by_id = {m["id"]: m for m in msgs}
    for m in msgs:
        if m["direction"] == "outbound":
            assert_eq(m["status"], "sent", "outbound message %s status" % m["id"])
            assert_eq(m["attempts"], 1, "outbound message %s attempts" % m["id"])
            assert m["sentAt"], "outbound message %s has no sentAt" % m["id"]
            assert_eq(m["lastError"], None, "outbound message %s lastError" % m["id"])
        else:
            assert_eq(m["status"], "received", "inbound message %s status" % m["id"])
            assert_eq(m["kind"], "reply", "inbound message %s kind" % m["id"])
    assert_eq(by_id[inbound_email_id]["direction"], "inbound", "email reply direction")
    assert_eq(by_id[inbound_wa_id]["direction"], "inbound", "whatsapp reply direction")
    # Grouped by channel, oldest first: welcome, inbound, AI answer.
    for ch in ("email", "whatsapp"):
        kinds = [m["kind"] for m in det["messagesByChannel"][ch]]
        assert_eq(kinds, ["welcome", "reply", "ai_reply"], "%s messages in order" % ch)

    # Events, oldest first. Every step waited for the previous one, so the order is fixed except
    # which welcome message is sent first.
    types = event_types(det)
    assert_eq(types, [
        "lead_added", "message_queued", "message_queued",
        "message_sent", "status_changed", "message_sent",
        "reply_received", "status_changed", "message_queued", "message_sent", "ai_reply_sent",
        "reply_received", "message_queued", "message_sent", "ai_reply_sent",
    ], "event types in order")
    ev = det["events"]
    assert_eq([e["payload"]["channel"] for e in ev[1:3]], ["email", "whatsapp"],
              "welcome messages queued email first")
    assert_eq({ev[3]["payload"]["messageId"], ev[5]["payload"]["messageId"]},
              {welcome["email"]["id"], welcome["whatsapp"]["id"]}, "welcome message_sent ids")
    assert_eq((ev[4]["payload"]["from"], ev[4]["payload"]["to"]), ("new", "contacted"),
              "first status change")
    assert_eq((ev[7]["payload"]["from"], ev[7]["payload"]["to"]), ("contacted", "replied"),
              "second status change")
    assert_eq(ev[6]["payload"]["messageId"], inbound_email_id, "first reply_received")
    assert_eq(ev[11]["payload"]["messageId"], inbound_wa_id, "second reply_received")
    for i, mid in ((8, ai_email["id"]), (9, ai_email["id"]), (10, ai_email["id"]),
                   (12, ai_wa["id"]), (13, ai_wa["id"]), (14, ai_wa["id"])):
        assert_eq(ev[i]["payload"]["messageId"], mid, "event %d (%s) message" % (i, types[i]))
    for e in ev:
        assert_eq(e["leadId"], lid, "event leadId")
    created = [e["createdAt"] for e in ev]
    assert_eq(created, sorted(created), "event timestamps non-decreasing")

    # Jobs: one per outbound message, all completed on the first attempt.
    jobs = det["jobs"]
    assert_eq(len(jobs), 4, "job count")
    assert_eq(sorted(j["messageId"] for j in jobs),
              sorted(m["id"] for m in msgs if m["direction"] == "outbound"), "job messages")
    for j in jobs:
        assert_eq((j["name"], j["state"], j["attemptsMade"]), ("send-message", "completed", 1),
                  "job %s" % j["id"])

    # The sink: each outbound message exactly once, to the right address, nothing else.
    sink = env.sink()
    counts = Counter(l["messageId"] for l in sink)
    outs = {m["id"]: m for m in msgs if m["direction"] == "outbound"}
    assert_eq(dict(counts), {mid: 1 for mid in outs}, "sink lines per message")
    for l in sink:
        m = outs[l["messageId"]]
        assert_eq((l["channel"], l["to"], l["attempt"]),
                  (m["channel"], m["channelMessage"]["to"], 1), "sink line for %s" % m["id"])
        assert_eq(l["idempotencyKey"], l["messageId"], "idempotency key")
        assert "duplicate" not in l, "duplicate sink line %r" % (l,)
    srv.stop()


def test_email_only_and_phone_only(env):
    srv = env.serve()
    a = create_lead(srv, "Email Only", email="only.email@example.com")
    b = create_lead(srv, "Phone Only", phone="+15559990000")
    assert_eq(b["email"], None, "absent email is null")
    for lead, ch in ((a, "email"), (b, "whatsapp")):
        det = wait_until(lambda: (lambda d: d if d["lead"]["status"] == "contacted" else None)(
            details(srv, lead["id"])), 10, "lead %s contacted" % lead["name"])
        assert_eq(list(det["messagesByChannel"]), [ch], "channels of %s" % lead["name"])
        assert_eq(len(det["jobs"]), 1, "jobs of %s" % lead["name"])
    wait_until(lambda: len(env.sink()) == 2, 5, "two sink lines")
    srv.stop()


if __name__ == "__main__":
    run(globals())
