"""Full flow over the real binary: capture -> welcome messages -> replies -> AI answers,
checked through GET /leads/:id and the mock sink."""
import threading
import time
from collections import Counter

from harness import Client, all_messages, assert_eq, create_lead, details, event_types, wait_until


def sent_messages(det, kind=None, channel=None):
    return [m for m in all_messages(det)
            if m["direction"] == "outbound" and m["status"] == "sent"
            and (kind is None or m["kind"] == kind)
            and (channel is None or m["channel"] == channel)]


def test_full_flow(env):
    srv = env.serve()
    email, phone = "ada.lovelace@example.com", "+15550001234"
    lead = create_lead(srv, "Ada Lovelace", email=email, phone=phone)
    lid = lead["id"]
    assert_eq(lead["status"], "new", "status on capture")
    assert_eq((lead["email"], lead["phone"]), (email, phone), "echoed addresses")

    # Both welcome messages are sent; the sink has exactly one line for each.
    wait_until(lambda: len(sent_messages(details(srv, lid), "welcome")) == 2, 10,
               "both welcome messages sent")
    det = details(srv, lid)  # a fresh read: everything the two sends wrote is committed
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
    wait_until(lambda: sent_messages(details(srv, lid), "ai_reply", "email"), 10,
               "AI answer on email sent")
    det = details(srv, lid)
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
    wait_until(lambda: sent_messages(details(srv, lid), "ai_reply", "whatsapp"), 10,
               "AI answer on WhatsApp sent")
    det = details(srv, lid)
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

    # Jobs: a send-message per outbound message and a generate-reply per reply (naming the
    # reply), all completed on the first attempt.
    jobs = det["jobs"]
    assert_eq(len(jobs), 6, "job count")
    sends = [j for j in jobs if j["name"] == "send-message"]
    gens = [j for j in jobs if j["name"] == "generate-reply"]
    assert_eq(sorted(j["messageId"] for j in sends),
              sorted(m["id"] for m in msgs if m["direction"] == "outbound"), "job messages")
    assert_eq(sorted(j["messageId"] for j in gens), sorted([inbound_email_id, inbound_wa_id]),
              "generate-reply jobs name the replies")
    for j in jobs:
        assert_eq((j["state"], j["attemptsMade"]), ("completed", 1), "job %s" % j["id"])

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
        wait_until(lambda: details(srv, lead["id"])["lead"]["status"] == "contacted", 10,
                   "lead %s contacted" % lead["name"])
        det = details(srv, lead["id"])
        assert_eq(list(det["messagesByChannel"]), [ch], "channels of %s" % lead["name"])
        assert_eq(len(det["jobs"]), 1, "jobs of %s" % lead["name"])
    wait_until(lambda: len(env.sink()) == 2, 5, "two sink lines")
    srv.stop()


def test_reply_before_welcome_sent(env):
    # API-only server: nothing is sent until the worker process starts, so the prospect's reply
    # lands while the lead is still `new`. Sending afterwards must not move it back.
    srv = env.serve("--no-worker")
    lid = create_lead(srv, "Quick Replier", email="quick@example.com")["id"]
    r = srv.post("/leads/%s/reply" % lid, {"channel": "email", "messageContent": {
        "from": "quick@example.com", "subject": "Re: hello", "body": "Already interested"}})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    assert_eq(details(srv, lid)["lead"]["status"], "replied", "status right after the reply")
    wrk = env.worker()
    wait_until(lambda: len(sent_messages(details(srv, lid))) == 2, 10,
               "welcome and answer sent by the worker")
    det = details(srv, lid)
    wrk.stop()
    srv.stop()
    assert_eq(det["lead"]["status"], "replied", "status after the sends")
    changes = [(e["payload"]["from"], e["payload"]["to"]) for e in det["events"]
               if e["type"] == "status_changed"]
    assert_eq(changes, [("new", "replied")], "status changes")
    ai = sent_messages(det, "ai_reply", "email")
    assert_eq(len(ai), 1, "AI answers")
    assert_eq(ai[0]["channelMessage"]["subject"], "RE: hello", "one RE: prefix in the thread")
    assert_eq(sorted(l["messageId"] for l in env.sink()),
              sorted(m["id"] for m in sent_messages(det)), "sink lines")


def snapshot_violations(det):
    """What a single consistent read can never show. A delivery attempt commits, in one
    transaction, the message's status, its message_failed or message_sent event, the job's
    attemptsMade and state (and new -> contacted for the first send); the claim before it
    commits status `sending` with attempts + 1."""
    out = []
    jobs = {j["messageId"]: j for j in det["jobs"]}
    outs = [m for m in all_messages(det) if m["direction"] == "outbound"]
    for m in outs:
        mid = m["id"]
        failed = sum(1 for e in det["events"]
                     if e["type"] == "message_failed" and e["payload"].get("messageId") == mid)
        sent = sum(1 for e in det["events"]
                   if e["type"] == "message_sent" and e["payload"].get("messageId") == mid)
        j = jobs.get(mid)
        if (m["status"] == "sent") != (sent == 1):
            out.append("message %s is %s with %d message_sent events" % (mid, m["status"], sent))
        if m["attempts"] != failed + sent + (1 if m["status"] == "sending" else 0):
            out.append("message %s (%s) has %d attempts but %d failed + %d sent events"
                       % (mid, m["status"], m["attempts"], failed, sent))
        if j is None:
            out.append("message %s has no job" % mid)
            continue
        if j["attemptsMade"] != failed + sent:
            out.append("job of %s has attemptsMade %d but %d failed + %d sent events"
                       % (mid, j["attemptsMade"], failed, sent))
        if (m["status"] == "sent") != (j["state"] == "completed"):
            out.append("message %s is %s but its job is %s" % (mid, m["status"], j["state"]))
    if any(m["status"] == "sent" for m in outs) and det["lead"]["status"] == "new":
        out.append("a message is sent but the lead is still new")
    if len(jobs) != len(outs):
        out.append("%d jobs for %d outbound messages" % (len(jobs), len(outs)))
    return out


def test_details_is_one_consistent_read(env):
    # GET /leads/:id while the worker is sending: every answer must be one snapshot (see
    # docs/http-api.md), never half of a delivery's transaction. Two failed attempts with a
    # short backoff spread each message's six commits over ~10 ms after its capture, while
    # readers hammer the newest leads.
    srv = env.serve(MOCK_FAIL_FIRST=2, JOB_BACKOFF_MS=5)
    ids, problems, lock = [], [], threading.Lock()
    stop = threading.Event()
    reads = [0]

    def reader():
        c = Client(srv.port)
        try:
            while not stop.is_set():
                with lock:
                    recent = ids[-4:]
                for lid in recent:
                    r = c.get("/leads/" + lid)
                    v = ["status %d" % r.status] if r.status != 200 else \
                        snapshot_violations(r.json())
                    with lock:
                        reads[0] += 1
                        if v:
                            problems.append((lid, v))
        except Exception as e:  # noqa: BLE001 (a dead reader must fail the test)
            with lock:
                problems.append(("reader", [repr(e)]))
        finally:
            c.close()

    readers = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
    for t in readers:
        t.start()
    writer = Client(srv.port)
    deadline = time.monotonic() + 3.0
    n = 0
    while time.monotonic() < deadline and not problems:
        lead = create_lead(writer, "Snap %d" % n, email="snap%d@example.com" % n,
                           phone="+1555%07d" % n)
        n += 1
        with lock:
            ids.append(lead["id"])
    stop.set()
    for t in readers:
        t.join(10)
    writer.close()
    srv.stop()
    assert not problems, "inconsistent GET /leads/:id after %d captures, %d reads (%d bad), " \
        "first: %s" % (n, reads[0], len(problems), problems[0])
    print("  %d captures, %d consistent reads" % (n, reads[0]))

