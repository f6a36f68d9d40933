#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpora of tests/fuzz (corpus/<target>/seed-NN).

Bodies follow the HTTP contract in docs/http-api.md (valid and invalid). Re-running rewrites the same
files; libFuzzer's own findings go to a separate, untracked directory (see README.md)."""
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\n--\n"  # request separator of fuzz_leads_http
UNKNOWN_ID = b"2728542f-1069-401c-a54f-4ab8a3a46a06"

# fuzz_leads_http header byte: route + 5 * ct + 40 * upper + 80 * latest
CREATE, REPLY, REPLY_ID, GET, GET_ID = range(5)
JSON, JSON_UTF8, JSON_UPPER, FORM, FORM_UTF8, NO_CT, TEXT, CT_FUZZ = range(8)


def h(route, ct=JSON, upper=0, latest=0):
    return bytes([route + 5 * ct + 40 * upper + 80 * latest])


def j(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


LEAD_FULL = j({"name": "John Doe", "email": "john@example.com", "phone": "+1234567890"})
REPLY_EMAIL = j({"channel": "email", "messageContent": {"from": "john@example.com",
                                                        "subject": "Pricing?",
                                                        "body": "How much does it cost?"}})
REPLY_WA = j({"channel": "whatsapp", "messageContent": {"from": "+1234567890",
                                                       "text": "Can we book a demo?"}})

HTTP = [
    h(CREATE) + LEAD_FULL,
    h(CREATE) + j({"name": "Ana", "email": "ana@example.com"}),
    h(CREATE, JSON_UTF8) + j({"name": "Bo", "phone": "+351912345678", "email": None}),
    h(CREATE, JSON_UPPER) + j({"name": "Ana Lu\u00edsa", "phone": "+351912345678"}),
    h(CREATE) + j({"name": ""}),
    h(CREATE) + j({"name": "Ana"}),
    h(CREATE) + j({"name": "Ana", "email": "not-an-email"}),
    h(CREATE) + j({"name": "Ana", "phone": 123}),
    h(CREATE) + j({"name": "Ana", "phone": "1", "foo": "bar"}),
    h(CREATE) + j({"name": 123, "phone": "1"}),
    h(CREATE) + b"{",
    h(CREATE) + b"[1,2]",
    h(CREATE) + b"",
    h(CREATE, TEXT) + LEAD_FULL,
    h(CREATE, NO_CT) + LEAD_FULL,
    h(CREATE, FORM) + b"name=John+Doe&email=john%40example.com",
    h(CREATE, FORM_UTF8) + b"phone=%2B351912345678&name=Ana%20Lu%C3%ADsa",
    h(CREATE, FORM) + b"name=Ana&phone=%2B1&%FF=x",
    h(CREATE, CT_FUZZ) + b"application/json ; charset=utf-8\n" + LEAD_FULL,
    h(CREATE, CT_FUZZ) + b"application/xml\n<lead/>",
    h(REPLY) + REPLY_EMAIL,
    h(REPLY) + REPLY_WA,
    h(REPLY) + j({"channel": "linkedin", "messageContent": {"text": "hi"}}),
    h(REPLY) + j({"channel": "fax", "messageContent": {}}),
    h(REPLY) + j({"channel": "email"}),
    h(REPLY) + j({"channel": "email", "messageContent": {"subject": 1}}),
    h(REPLY) + j({"channel": "email", "messageContent": "Pricing?"}),
    h(REPLY, upper=1) + REPLY_WA,
    h(REPLY_ID) + UNKNOWN_ID + b"\n" + REPLY_EMAIL,
    h(REPLY_ID) + b"not-a-uuid\n{}",
    h(GET),
    h(GET, upper=1),
    h(GET_ID) + UNKNOWN_ID,
    h(GET_ID) + b"123",
    h(GET_ID) + b"a/reply",
    # a session: create an email-only lead, reply on WhatsApp with a from, read it back
    h(CREATE) + j({"name": "Eve", "email": "eve@example.com"}) + SEP
    + h(REPLY, latest=1) + j({"channel": "whatsapp", "messageContent": {"from": "+15550199",
                                                                         "text": "stop"}})
    + SEP + h(GET, latest=1),
    h(REPLY) + REPLY_EMAIL + SEP + h(REPLY) + REPLY_WA + SEP + h(GET),
    # 413: jansson stores \b as 2 bytes, jsonw writes it as \u0008 (6): the AI answer's
    # "RE: <subject>" outgrows MESSAGE_CONTENT_MAX although the inbound message fits
    h(REPLY) + b'{"channel":"email","messageContent":{"subject":"' + b"\\b" * 11000 + b'"}}',
]

FORM_BODIES = [
    b"name=John+Doe&email=john%40example.com",
    b"phone=%2B351912345678&name=Ana%20Lu%C3%ADsa",
    b"name=Ana&phone=1&foo=bar",
    b"name=%zz&phone=1",
    b"name=&phone=1",
    b"name=Ana&email=bad",
    b"&&name=a&&email=a%40b.co&",
    b"name=Ana&name=Bo&phone=%2B1",
    b"",
    # regressions (400 since the fix in leads_http.c; were 201 with the field silently cut/dropped)
    b"name=Ana&phone=%2B1&%FF=x",
    b"name\0evil=Ana&phone=1",
    b"name=Ana\0<script>&phone=1",
]


# fuzz_jsonw: byte 0 (limit), then values: opcode % 8 = str, int, bool, null, obj, arr, time, raw
def w_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return bytes([0, len(b)]) + b


def w_obj(members):
    out = bytes([4, len(members)])
    for k, v in members:
        kb = k.encode()
        out += bytes([len(kb)]) + kb + v
    return out


def w_arr(items):
    return bytes([5, len(items)]) + b"".join(items)


def w_int(v):
    return bytes([1]) + struct.pack(">q", v)


def w_time(ms, null_if_zero=0):
    return bytes([6]) + struct.pack(">q", ms) + bytes([null_if_zero])


LEAD_DOC = w_obj([("id", w_str("2728542f-1069-401c-a54f-4ab8a3a46a06")),
                  ("name", w_str("John \"Doe\"\\\n\t\x01")),
                  ("email", bytes([3, 1])),
                  ("createdAt", w_time(1795790265686)),
                  ("n", w_int(-(2 ** 63)))])
JSONW = [
    b"\x00" + LEAD_DOC,
    b"\x00" + w_arr([w_str(b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), w_str(b"nul\x00in"),
                     bytes([2, 1]), w_time(0, 1), w_time(-1), bytes([7]) + LEAD_DOC]),
    b"\x80\x00\x20" + LEAD_DOC,
    b"\x00" + bytes([5, 1]) * 18 + bytes([3, 0]),
]


# fuzz_whatsapp_webhook: deliveries modelled on Meta's webhook reference, valid and refused
def wa_value(messages=None, statuses=None, contacts=None, pnid="106540352242922"):
    v = {"messaging_product": "whatsapp",
         "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid}}
    if contacts is not None:
        v["contacts"] = contacts
    if messages is not None:
        v["messages"] = messages
    if statuses is not None:
        v["statuses"] = statuses
    return v


def wa(*changes, entries=None):
    if entries is None:
        entries = [{"id": "102290129340398",
                    "changes": [{"value": v, "field": f} for f, v in changes]}]
    return j({"object": "whatsapp_business_account", "entry": entries})


def wa_msg(type_, extra, wamid="wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdBNzA", from_="16505551234"):
    m = {"from": from_, "id": wamid, "timestamp": "1504902988", "type": type_}
    m.update(extra)
    return m


KERRY = [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16505551234"}]
WA_STATUS = {"id": "wamid.HBgNNTUxNjk5MjMxODIyMhUCABEYEjgxQkVFRDVBQTVDODFDOTg3MQA=",
             "status": "sent", "timestamp": "1750857384", "recipient_id": "5516992318222",
             "conversation": {"id": "a75d17ad06104c51166f948319b03c6a",
                              "origin": {"type": "service"}},
             "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"}}
WA = [
    wa(("messages", wa_value([wa_msg("text", {"text": {"body": "Is this still available?"}})],
                             contacts=KERRY))),
    wa(entries=[
        {"id": "1", "changes": [
            {"field": "messages", "value": wa_value(
                [wa_msg("text", {"text": {"body": "first"}}, "wamid.1"),
                 wa_msg("text", {"text": {"body": "second"}}, "wamid.2", "351912345678")],
                contacts=KERRY + [{"profile": {"name": "Ana"}, "wa_id": "351912345678"}])},
            {"field": "messages", "value": wa_value(statuses=[dict(WA_STATUS, status="read")])}]},
        {"id": "2", "changes": [{"field": "messages", "value": wa_value(
            [wa_msg("text", {"text": {"body": "third"}}, "wamid.3")], pnid="222")}]}]),
    wa(("messages", wa_value([wa_msg("image", {"image": {
        "caption": "our order", "mime_type": "image/jpeg", "sha256": "b1b4c0b9e7a1",
        "id": "1003383421387256"}})], contacts=KERRY))),
    wa(("messages", wa_value([wa_msg("reaction", {"reaction": {
        "message_id": "wamid.OUT", "emoji": "\U0001F44D"}})], contacts=KERRY))),
    wa(("messages", wa_value([wa_msg("button", {
        "context": {"from": "15550783881", "id": "wamid.TEMPLATE"},
        "button": {"text": "Yes, call me", "payload": "YES_PAYLOAD"}})], contacts=KERRY))),
    wa(("messages", wa_value([wa_msg("interactive", {
        "context": {"from": "15550783881", "id": "wamid.LIST"},
        "interactive": {"type": "list_reply", "list_reply": {
            "id": "plan_pro", "title": "Pro plan", "description": "For teams"}}})],
        contacts=KERRY))),
    wa(("messages", wa_value([wa_msg("interactive", {
        "interactive": {"type": "button_reply", "button_reply": {
            "id": "demo", "title": "Book a demo"}}})], contacts=KERRY))),
    wa(("messages", wa_value(statuses=[WA_STATUS, dict(WA_STATUS, status="delivered"),
                                       dict(WA_STATUS, status="read")]))),
    wa(("messages", wa_value(statuses=[dict(WA_STATUS, status="failed", errors=[{
        "code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
        "error_data": {"details": "Message Undeliverable."}}])]))),
    wa(("message_template_status_update", {"event": "APPROVED", "message_template_id": 1,
                                           "message_template_name": "welcome_lead",
                                           "reason": "NONE"}),
       ("messages", wa_value(statuses=[dict(WA_STATUS, status="deleted"), WA_STATUS]))),
    wa(("messages", wa_value([wa_msg("unsupported", {"errors": [{
        "code": 131051, "title": "Message type unknown"}]}),
        wa_msg("location", {"location": {"latitude": 38.7, "longitude": -9.1}})]))),
    # refused
    b"not json",
    b"[]",
    j({"object": "page", "entry": []}),
    j({"object": "whatsapp_business_account", "entry": {}}),
    wa(("messages", wa_value([{"from": "16505551234", "type": "text"}]))),
    b'{"object":"whatsapp_business_account","object":"page","entry":[]}',
    wa(("messages", wa_value([wa_msg("text", {"timestamp": 1504902988})]))),
    # a header-shaped body: the signature check reads the input's first bytes as a header
    b"sha256=20e391a99a86fc5adf7e3a453236d20c906360291977896cf2f671e03bb95703",
]

# fuzz_mailgun_inbound: form fields separated by MG_SEP, "name=value", "@name=bytes" a file part.
# Signatures use fuzz_mailgun_inbound.c's FZ_KEY; its clock stands at MG_TS (FZ_NOW_MS).
MG_SEP = b"\n--\n"
MG_KEY = b"key-fuzz-3ax6xnjp29jd6fds4gc373sg"
MG_TS = b"1700000000"
MG_TOKEN = b"a5b2e1c9d4f7a8b3c6e9f2d5a8b1c4e7f0a3d6b9c2e5f8a1d4"


def mg_sig(ts=MG_TS, token=MG_TOKEN):
    return hmac.new(MG_KEY, ts + token, hashlib.sha256).hexdigest().encode()


def mg_headers(pairs):
    return j([[k, v] for k, v in pairs])


MG_HEADERS = mg_headers([
    ("Received", "from mail-wr1-f41.google.com by mxa.mailgun.org with ESMTP"),
    ("Mime-Version", "1.0"),
    ("From", "Bob Lee <bob@example.com>"),
    ("Message-Id", "<CAH+reply-1@mail.gmail.com>"),
    ("In-Reply-To", "<welcome-2@salespad.example>"),
    ("References", "<welcome-1@salespad.example>\r\n\t<CAH+q-1@mail.gmail.com> "
                   "<welcome-2@salespad.example>"),
    ("Subject", "Re: Your pricing"),
    ("To", "SalesPad <reply+abc@replies.salespad.example>"),
])


def mg_post(over=None, drop=(), extra=(), ts=MG_TS, token=MG_TOKEN):
    fields = [
        (b"recipient", b"reply+abc@replies.salespad.example"),
        (b"sender", b"bob@example.com"),
        (b"from", b"Bob Lee <bob@example.com>"),
        (b"subject", b"Re: Your pricing"),
        (b"body-plain", b"How much for 10 seats?\r\n\r\nOn Tue SalesPad wrote:\r\n> Hi Bob\r\n"),
        (b"stripped-text", b"How much for 10 seats?"),
        (b"stripped-signature", b"Bob"),
        (b"body-html", b"<p>How much for 10 seats?</p>"),
        (b"attachment-count", b"1"),
        (b"timestamp", ts),
        (b"token", token),
        (b"signature", mg_sig(ts, token)),
        (b"message-headers", MG_HEADERS),
        (b"@attachment-1", b"%PDF-1.4\n\xff\x00\x01"),
    ]
    over = over or {}
    out = [(k, over.get(k, v)) for k, v in fields if k not in drop] + list(extra)
    return MG_SEP.join(k + b"=" + v for k, v in out)


MG_REFS40 = " ".join("<id-%d@x.com>" % i for i in range(1, 41))
MAILGUN = [
    mg_post(),
    MG_SEP.join([b"recipient=r@x.com", b"sender=s@y.com", b"body-plain=hi", b"timestamp=" + MG_TS,
                 b"token=" + MG_TOKEN, b"signature=" + mg_sig()]),
    mg_post(over={b"signature": mg_sig().upper()}),
    mg_post(ts=b"1699999640"),  # 6 minutes old, signed
    mg_post(ts=b"1700000360"),  # 6 minutes ahead, signed
    mg_post(drop=(b"recipient",)),
    mg_post(over={b"message-headers": b'[["Message-Id", 1]]'}),
    mg_post(over={b"message-headers": b"{not json"}),
    mg_post(over={b"body-plain": b"a\x00b"}),
    mg_post(over={b"subject": b"Re: \xff\xfe"}),
    mg_post(over={b"from": b'"Doe, Jane \\"JD\\"" <j@x.com>'}),
    mg_post(over={b"from": b"j@x.com (Jane Doe)"}),
    mg_post(over={b"from": b"=?UTF-8?B?Sm9zw6k=?= <jose@x.com>"}),
    mg_post(over={b"message-headers": mg_headers([("References", MG_REFS40)])}),
    mg_post(over={b"message-headers": mg_headers([
        ("message-id", "bare@x.com"), ("IN-REPLY-TO", "Your message of Tue <p1@y.com> (Bob)"),
        ("references", "<r1@y.com>,<r2@y.com>(a (nested) comment)<>< r3@y.com ><bad id@y>")])}),
    mg_post(extra=[(b"signature", mg_sig())]),
    mg_post(over={b"timestamp": b"99999999999999999999999"}),
    mg_post(over={b"timestamp": b"-1700000000"}),
    mg_post(over={b"stripped-text": b" \r\n "}),
    mg_post(drop=(b"body-plain", b"stripped-text")),
    mg_post(extra=[(b"@attachment-2", b"\x89PNG\r\n"), (b"@subject", b"\xff")]),
    mg_post(token=MG_TOKEN * 11),  # timestamp + token over 512 bytes: never a valid signature
]


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(s)


write("fuzz_leads_http", HTTP)
write("fuzz_leads_form", FORM_BODIES)
write("fuzz_jsonw", JSONW)
write("fuzz_whatsapp_webhook", WA)
write("fuzz_mailgun_inbound", MAILGUN)
