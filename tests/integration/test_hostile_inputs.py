"""Hostile inputs end to end (hardening issue, points 1 and 7): the reply route is not an open
relay, and names, emails and phones are checked the way the NestJS build counts characters,
without control or bidirectional formatting characters. Checked through the HTTP answers,
GET /leads/:id and the mock provider's sink."""

from harness import all_messages, assert_eq, create_lead, details, event_types, wait_until


def sent(det, kind=None, channel=None):
    return [m for m in all_messages(det)
            if m["direction"] == "outbound" and m["status"] == "sent"
            and (kind is None or m["kind"] == kind)
            and (channel is None or m["channel"] == channel)]


def bad_request(r, message):
    assert_eq(r.status, 400, "status (%r)" % (r,))
    assert_eq(r.json(), {"message": [message], "error": "Bad Request", "statusCode": 400},
              "400 body")


def reply(srv, lid, channel, content):
    return srv.post("/leads/%s/reply" % lid, {"channel": channel, "messageContent": content})


def sink_addresses(env):
    return [l["to"] for l in env.sink()]


def test_reply_from_with_header_injection_is_refused(env):
    srv = env.serve()
    lid = create_lead(srv, "Ana", phone="+351912345678")["id"]
    wait_until(lambda: len(sent(details(srv, lid), "welcome")) == 1, 10, "welcome sent")

    for frm in ("\r\nBcc: x@evil.com", "victim@example.org\r\nBcc: x@evil.com",
                "Victim <victim@example.org>", "a@\u0080\u0080.\u0080\u0080"):
        r = reply(srv, lid, "email", {"from": frm, "subject": "Buy now", "body": "hi"})
        bad_request(r, "messageContent.from must be an email")
    det = details(srv, lid)
    assert_eq(len(all_messages(det)), 1, "nothing stored for the refused replies")
    assert_eq(det["lead"]["email"], None, "lead email")
    assert_eq(det["lead"]["status"], "contacted", "status unchanged by refused replies")
    assert_eq(sink_addresses(env), ["+351912345678"], "sink: only the welcome message")
    srv.stop()


def test_whatsapp_from_must_be_a_phone_number(env):
    srv = env.serve()
    lid = create_lead(srv, "Bob", email="bob@example.com")["id"]
    for frm in ("not a phone <script>", "bob@example.com", "+351\n912345678",
                "+351\u202e912345678"):
        r = reply(srv, lid, "whatsapp", {"from": frm, "text": "hi"})
        bad_request(r, "messageContent.from must be a phone number")
    det = details(srv, lid)
    assert_eq(det["lead"]["phone"], None, "lead phone")
    assert_eq([m["kind"] for m in all_messages(det)], ["welcome"], "messages stored")
    srv.stop()


def test_valid_from_becomes_the_leads_address_once(env):
    """A phone-only lead answering by email: the from becomes its email (an address_added event
    says so) and the answer goes there; a later reply from another address does not redirect
    the answers: they keep going to the lead's address."""
    srv = env.serve()
    lid = create_lead(srv, "Ana", phone="+351912345678")["id"]
    r = reply(srv, lid, "email", {"from": "ana@work.example", "subject": "Hi", "body": "price?"})
    assert_eq(r.status, 201, "first reply (%r)" % (r,))
    det = details(srv, lid)
    assert_eq(det["lead"]["email"], "ana@work.example", "adopted email")
    assert "address_added" in event_types(det), event_types(det)
    ev = [e for e in det["events"] if e["type"] == "address_added"][0]
    assert_eq((ev["payload"]["channel"], ev["payload"]["address"]),
              ("email", "ana@work.example"), "address_added payload")

    r = reply(srv, lid, "email", {"from": "victim@example.org", "subject": "Buy now",
                                  "body": "hi"})
    assert_eq(r.status, 201, "second reply (%r)" % (r,))
    wait_until(lambda: len(sent(details(srv, lid), "ai_reply", "email")) == 2, 10,
               "both AI answers sent")
    det = details(srv, lid)
    assert_eq(det["lead"]["email"], "ana@work.example", "email after the second reply")
    assert_eq(event_types(det).count("address_added"), 1, "address_added events")
    assert_eq([m["channelMessage"]["to"] for m in sent(det, "ai_reply")],
              ["ana@work.example"] * 2, "AI answers addressed to")
    emails = [l["to"] for l in env.sink() if l["channel"] == "email"]
    assert_eq(emails, ["ana@work.example"] * 2, "email sink lines")
    assert "victim@example.org" not in sink_addresses(env)
    srv.stop()


def test_lead_with_an_email_keeps_it(env):
    srv = env.serve()
    lid = create_lead(srv, "Cy", email="cy@example.com")["id"]
    r = reply(srv, lid, "email", {"from": "victim@example.org", "subject": "Buy now",
                                  "body": "hi"})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    wait_until(lambda: sent(details(srv, lid), "ai_reply"), 10, "AI answer sent")
    det = details(srv, lid)
    assert_eq(det["lead"]["email"], "cy@example.com", "lead email")
    inbound = [m for m in all_messages(det) if m["direction"] == "inbound"]
    assert_eq(inbound[0]["channelMessage"]["from"], "victim@example.org", "from kept on the reply")
    wait_until(lambda: len(env.sink()) == 2, 5, "two sink lines")
    assert_eq(sink_addresses(env), ["cy@example.com"] * 2, "sink addresses")
    srv.stop()


def test_names_count_characters_not_bytes(env):
    srv = env.serve()
    lead = create_lead(srv, "\u00e9" * 130, phone="+351912345678")
    assert_eq(lead["name"], "\u00e9" * 130, "name echoed")
    create_lead(srv, "\u00e9" * 255, phone="+351912345679")  # one lead per person
    bad_request(srv.post("/leads", {"name": "\u00e9" * 256, "phone": "+1"}),
                "name must be shorter than or equal to 255 characters")
    # an astral character is two UTF-16 code units, as JavaScript counts it
    bad_request(srv.post("/leads", {"name": "\U0001F600" * 128, "phone": "+1"}),
                "name must be shorter than or equal to 255 characters")
    create_lead(srv, "Ana", phone="\u0663" * 50)
    bad_request(srv.post("/leads", {"name": "Ana", "phone": "\u0663" * 51}),
                "phone must be shorter than or equal to 50 characters")
    srv.stop()


def test_control_and_bidi_characters_are_refused(env):
    srv = env.serve()
    control = "must not contain control or bidirectional formatting characters"
    for name in ("Ana\r\nBcc: x@evil.com", "Ana\u0085", "Ana\u202e", "Ana\u2067"):
        bad_request(srv.post("/leads", {"name": name, "phone": "+1"}), "name " + control)
    for email in ("a@\u0080\u0080.\u0080\u0080", "ana@exa\u202emple.com", "ana\x7f@example.com"):
        bad_request(srv.post("/leads", {"name": "Ana", "email": email}), "email must be an email")
    for phone in ("+351\u0085", "+351\u2066912", "+351\r\n912"):
        bad_request(srv.post("/leads", {"name": "Ana", "phone": phone}), "phone " + control)
    # the form variant goes through the same checks
    r = srv.request("POST", "/leads", body=b"name=Ana%0D%0AX&phone=%2B1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    bad_request(r, "name " + control)
    assert_eq(env.db("SELECT count(*) FROM leads")[0][0], 0, "leads stored")
    srv.stop()
