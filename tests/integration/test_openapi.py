"""GET /openapi.json against the real binary: the document served is docs/openapi.json as built,
its paths are exactly the router's routes (`salespad routes`), and every route answers as the
document says: each operation is called for a success and for a typical error, and each answer's
status must be one the operation lists (or its `default`), its Content-Type one of the listed
media types, its JSON body valid under the listed schema and its documented headers valid under
theirs. The requests are checked too: one the API took must be valid under the document (path
and query parameters, headers, JSON or form body), one it refused as invalid input (400) must
not be. Any other method on each path answers 405 with an `Allow` of the documented methods.

Bodies are checked with python3-jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1): the
document's components/schemas become the `$defs` of each checked schema, so the `$ref`s resolve
without a resolver (the same code on jsonschema 4.10, Debian's, and later). Formats are checked
where jsonschema has a checker (uuid, email; date-time with rfc3339-validator); the document's
patterns hold the timestamps and ids to their exact shape anyway.

tests/openapi/validate.mjs checks the document itself with the OpenAPI 3.1 schema (CTest's
openapi_document).
"""
import hashlib
import hmac
import http.client
import json
import os
import re
import time
import urllib.parse
import uuid

import jsonschema

from harness import HOST, Response, assert_eq, wait_until

DOC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                        "openapi.json")
KEY = "oas-key-0123456789"
APP_SECRET = "wa-app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-me-please"
MG_KEY = "key-mailgun-signing-0123456789"
UNSUB_SECRET = "unsubscribe-secret-0123456789"
SETTINGS = dict(API_KEYS=KEY, WHATSAPP_APP_SECRET=APP_SECRET, WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
                EMAIL_WEBHOOK_SIGNING_KEY=MG_KEY, UNSUBSCRIBE_SECRET=UNSUB_SECRET,
                # Every first send fails for good: failed jobs to retry, then sent.
                MOCK_FAIL_FIRST=1, JOB_ATTEMPTS=1)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SCHEMA_REF = "#/components/schemas/"


def load_doc():
    with open(DOC_PATH, "rb") as f:
        return f.read()


def route_to_path(pattern):
    """The router's "/leads/:id" is the document's "/leads/{id}"."""
    return "/".join("{%s}" % s[1:] if s.startswith(":") else s for s in pattern.split("/"))


def to_defs(node):
    """node with each "#/components/schemas/X" $ref turned into "#/$defs/X"."""
    if isinstance(node, dict):
        return {k: ("#/$defs/" + v[len(SCHEMA_REF):]
                    if k == "$ref" and isinstance(v, str) and v.startswith(SCHEMA_REF)
                    else to_defs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [to_defs(v) for v in node]
    return node


class Spec:
    """The document, and what each call covered."""

    def __init__(self, doc):
        self.doc = doc
        self.defs = to_defs(doc["components"]["schemas"])
        self.covered = set()  # (METHOD, path, status)

    def deref(self, obj, section):
        ref = obj.get("$ref")
        if ref is None:
            return obj
        prefix = "#/components/%s/" % section
        assert ref.startswith(prefix), "unexpected $ref %s" % ref
        return self.doc["components"][section][ref[len(prefix):]]

    def validate(self, schema, instance, what):
        full = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": self.defs,
                "allOf": [to_defs(schema)]}
        v = jsonschema.Draft202012Validator(full, format_checker=jsonschema.FormatChecker())
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not errors, "%s: %s" % (what, "; ".join(
            "%s at %s" % (e.message[:300], "/".join(map(str, e.absolute_path)) or "(root)")
            for e in errors[:5]))

    def request_problems(self, op, params, query, body, headers):
        """What of a request the document refuses: a path or query parameter outside its
        schema, a query key it does not declare, a required one missing, a JSON or form body
        outside the schema of its media type."""
        problems = []
        declared = {}
        for scheme in self.doc["components"]["securitySchemes"].values():
            if scheme.get("in") == "query":  # a key in the query: `security` declares it
                declared[("query", scheme["name"])] = {"in": "query", "name": scheme["name"],
                                                       "schema": {"type": "string"}}
        for p in op.get("parameters", []):
            p = self.deref(p, "parameters")
            declared[(p["in"], p["name"].lower() if p["in"] == "header" else p["name"])] = p
        given = [("path", k, v) for k, v in (params or {}).items()]
        given += [("query", k, v) for k, v in (query or {}).items()]
        given += [("header", k.lower(), v) for k, v in (headers or {}).items()]
        for where, name, value in given:
            p = declared.get((where, name))
            if p is None:
                if where == "query":
                    problems.append("query %s is not a parameter" % name)
                continue
            if p["schema"].get("type") == "integer" and value.isdigit():
                value = int(value)
            try:
                self.validate(p["schema"], value, "%s %s" % (where, name))
            except AssertionError as e:
                problems.append(str(e))
        for (where, name), p in declared.items():
            if p.get("required") and where != "header" and not any(
                    (w, n) == (where, name) for w, n, _ in given):
                problems.append("%s %s is required" % (where, name))
        ctype = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"),
                     "application/json" if isinstance(body, (dict, list)) else None)
        rb = op.get("requestBody")
        if rb and ctype and body is not None:
            media = rb["content"].get(ctype.split(";")[0].strip().lower())
            if media is None:
                problems.append("body type %s is not documented" % ctype)
            else:
                if isinstance(body, (bytes, str)) and ctype.startswith("application/x-www-form"):
                    text = body.decode() if isinstance(body, bytes) else body
                    body = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
                elif isinstance(body, (bytes, str)):
                    try:
                        body = json.loads(body)
                    except ValueError:
                        return problems + ["body is not JSON"]
                try:
                    self.validate(media["schema"], body, "body")
                except AssertionError as e:
                    problems.append(str(e))
        return problems

    def check(self, method, template, r, status):
        """Checks response r of `method template` against the document; returns r."""
        what = "%s %s -> %d" % (method, template, r.status)
        assert_eq(r.status, status, "%s (%r)" % (what, r))
        item = self.doc["paths"].get(template)
        assert item is not None, "%s: no such path in the document" % what
        op = item.get(method.lower())
        assert op is not None, "%s: no such operation in the document" % what
        responses = op["responses"]
        resp = responses.get(str(r.status)) or responses.get("default")
        assert resp is not None, "%s: status not documented (%s)" % (what, sorted(responses))
        resp = self.deref(resp, "responses")
        ctype = (r.header("Content-Type") or "").split(";")[0].strip().lower()
        content = resp.get("content", {})
        if not content:
            assert not r.body, "%s: a body where the document says none" % what
        else:
            assert ctype in content, "%s: Content-Type %r, documented %s" % (
                what, r.header("Content-Type"), sorted(content))
            if ctype == "application/json":
                self.validate(content[ctype]["schema"], r.json(), what)
            else:
                self.validate(content[ctype]["schema"], r.body.decode("utf-8"), what)
        for name, hdr in resp.get("headers", {}).items():
            hdr = self.deref(hdr, "headers")
            value = r.header(name)
            if value is None:
                continue  # documented headers may be absent (Retry-After of a 503 about config)
            if hdr["schema"].get("type") == "integer":
                assert value.isdigit(), "%s: header %s %r is not an integer" % (what, name, value)
                value = int(value)
            self.validate(hdr["schema"], value, "%s header %s" % (what, name))
        self.covered.add((method, template, r.status))
        return r


class Api:
    """Calls with the API key (unless auth=False), each checked against the document."""

    def __init__(self, srv, spec):
        self.srv = srv
        self.spec = spec

    def call(self, method, template, status, params=None, query=None, body=None, headers=None,
             auth=True, validation_error=True, stream=False):
        path = template
        for k, v in (params or {}).items():
            path = path.replace("{%s}" % k, urllib.parse.quote(v, safe=""))
        if query:
            path += "?" + urllib.parse.urlencode(query)
        hdrs = dict(headers or {})
        if auth:
            hdrs["X-API-Key"] = KEY
        if stream:
            r = self.stream_head(path, hdrs)
        else:
            r = self.srv.request(method, path, body=body, headers=hdrs)
        self.spec.check(method, template, r, status)
        # The request against the document: what the API took is valid under it (the document
        # is not stricter than the API); what it refused as invalid input is not (the document
        # is not laxer, for the cases tried here).
        op = self.spec.doc["paths"][template][method.lower()]
        problems = self.spec.request_problems(op, params, query, body, headers)
        if 200 <= status < 300:
            assert not problems, "%s %s answered %d but the document refuses the request: %s" % (
                method, template, status, problems)
        elif status == 400 and validation_error:
            assert problems, "%s %s answered 400 but the document takes the request" % (
                method, template)
        return r


    def stream_head(self, path, headers):
        """GET of a stream that does not end: its status, headers and first bytes (its first
        chunk), then the connection closed."""
        conn = http.client.HTTPConnection(HOST, self.srv.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read1(65536))
        finally:
            conn.close()


def unsubscribe_token(lead_id, secret=UNSUB_SECRET):
    mac = hmac.new(secret.encode(), ("salespad-unsubscribe:" + lead_id).encode(),
                   hashlib.sha256).hexdigest()[:32]
    return lead_id.replace("-", "") + "-" + mac


def wa_delivery(frm, text):
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1065"},
            "contacts": [{"profile": {"name": "Pat"}, "wa_id": frm}],
            "messages": [{"from": frm, "id": "wamid.%s" % uuid.uuid4().hex,
                          "timestamp": str(int(time.time())), "type": "text",
                          "text": {"body": text}}]}}]}]}


def wa_signed(payload, secret=APP_SECRET):
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sig}


def mg_form(sender, text, key=MG_KEY):
    ts, token = str(int(time.time())), uuid.uuid4().hex
    fields = {"recipient": "sales@example.com", "sender": sender, "from": "Pat <%s>" % sender,
              "subject": "Re: Welcome", "body-plain": text, "timestamp": ts, "token": token,
              "message-headers": json.dumps([["Message-Id", "<%s@mail.example>" % token]]),
              "signature": hmac.new(key.encode(), (ts + token).encode(),
                                    hashlib.sha256).hexdigest()}
    return (urllib.parse.urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"})


# ---------------------------------------------------------------------------------------------


def test_document_is_served_as_built(env):
    srv = env.serve(API_KEYS=KEY)
    r = srv.get("/openapi.json")  # no API key: the document is open
    assert_eq(r.status, 200, "GET /openapi.json without a key (%r)" % (r,))
    assert_eq(r.header("Content-Type"), "application/json", "Content-Type")
    assert r.body == load_doc(), "the served document is not docs/openapi.json as built"
    doc = r.json()
    assert_eq(doc["openapi"][:4], "3.1.", "OpenAPI version")
    version = env.run_cli("--version").stdout.split()[-1]
    assert_eq(doc["info"]["version"], version, "info.version is the binary's version")
    srv.stop()


def test_router_routes_are_the_document_operations(env):
    out = env.run_cli("routes")
    assert_eq(out.returncode, 0, "salespad routes (%s)" % out.stderr)
    routes = set()
    for line in out.stdout.splitlines():
        method, pattern = line.split(" ")
        routes.add((method, route_to_path(pattern)))
    assert len(routes) == len(out.stdout.splitlines()), "a route twice:\n" + out.stdout
    doc = json.loads(load_doc())
    documented = {(m.upper(), path) for path, item in doc["paths"].items()
                  for m in item if m in METHODS}
    assert_eq(sorted(routes - documented), [], "routes the document does not describe")
    assert_eq(sorted(documented - routes), [], "documented operations the router does not have")


def test_rate_limited_answers_as_documented(env):
    """RATE_LIMIT_RPS: the RateLimit-* headers of a limited route's answers, its 429, and the
    exempt routes (the probe, the webhooks, the unsubscribe links, the dashboard's files: no 429
    documented there) never refused."""
    spec = Spec(json.loads(load_doc()))
    srv = env.serve(RATE_LIMIT_RPS="0.01", RATE_LIMIT_BURST=3)  # its readiness probe takes one
    api = Api(srv, spec)
    r = api.call("GET", "/openapi.json", 200, auth=False)
    assert_eq(r.header("RateLimit-Limit"), "3", "RateLimit-Limit")
    api.call("GET", "/ready", 200)
    r = api.call("GET", "/jobs", 429)
    assert r.header("Retry-After") is not None, "429 without Retry-After"
    for _ in range(3):
        api.call("GET", "/health", 200)
        api.call("GET", "/", 200)
    for path, item in spec.doc["paths"].items():
        for m, o in item.items():
            exempt = path in ("/health", "/") or path.startswith(
                ("/webhooks/", "/unsubscribe/", "/ui/"))
            assert_eq("429" in o["responses"], not exempt, "429 documented on %s %s" % (
                m.upper(), path))
    srv.stop()


def test_every_route_answers_as_documented(env):
    spec = Spec(json.loads(load_doc()))
    srv = env.serve(**SETTINGS)
    api = Api(srv, spec)
    unknown = str(uuid.uuid4())

    # ---- operations
    api.call("GET", "/health", 200, auth=False)
    api.call("GET", "/ready", 200)
    api.call("GET", "/ready", 401, auth=False)
    api.call("GET", "/metrics", 200)
    api.call("GET", "/metrics", 200, headers={"Authorization": "Bearer " + KEY}, auth=False)
    api.call("GET", "/metrics", 401, auth=False)
    api.call("GET", "/openapi.json", 200, auth=False)
    api.call("GET", "/openapi.json", 415, headers={"Content-Type": "text/plain; charset=latin1"},
             auth=False)
    api.call("GET", "/health", 415, headers={"Content-Encoding": "gzip"}, auth=False)

    # ---- the dashboard (no key, never rate-limited)
    r = api.call("GET", "/", 200, auth=False)
    api.call("GET", "/", 304, headers={"If-None-Match": r.header("ETag")}, auth=False)
    api.call("GET", "/", 415, headers={"Content-Encoding": "br"}, auth=False)
    files = re.findall(r'(?:src|href)="/ui/([^"]+)"', r.body.decode())
    assert files, "index.html names no /ui/ file"
    for name in files:
        r = api.call("GET", "/ui/{file}", 200, {"file": name}, auth=False)
        api.call("GET", "/ui/{file}", 304, {"file": name},
                 headers={"If-None-Match": r.header("ETag")}, auth=False)
    r = api.call("GET", "/ui/{file}", 200, {"file": "config.json"}, auth=False)
    assert_eq(r.json(), {"apiKey": "required"}, "config.json with API_KEYS")
    api.call("GET", "/ui/{file}", 404, {"file": "nope.js"}, auth=False)

    # ---- leads
    lead = api.call("POST", "/leads", 201,
                    body={"name": "Ana Ops", "email": "ana@example.com", "phone": "+351912000111"}
                    ).json()
    lid = lead["id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    r = api.call("POST", "/leads", 201, body="name=Bo&phone=%2B351912000222",
                 headers=dict(key, **{"Content-Type": "application/x-www-form-urlencoded"}))
    r = api.call("POST", "/leads", 201, body="name=Bo&phone=%2B351912000222",
                 headers=dict(key, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert_eq(r.header("Idempotent-Replayed"), "true", "a replay")
    api.call("POST", "/leads", 422, body={"name": "Other", "phone": "+1 555"}, headers=key)
    api.call("POST", "/leads", 400, body={"name": "", "foo": 1})
    api.call("POST", "/leads", 400, body="{", headers={"Content-Type": "application/json"})
    api.call("POST", "/leads", 415, body="name=x", headers={"Content-Type": "text/plain"})
    api.call("POST", "/leads", 401, body={"name": "x", "phone": "+1"}, auth=False)

    r = api.call("POST", "/leads", 409, body={"name": "Ana Again", "email": "ANA@Example.com"})
    assert_eq(r.json()["leadId"], lid, "the 409 names the lead")
    api.call("GET", "/leads", 200)
    api.call("GET", "/leads", 200, query={"q": "AN", "status": "new"})
    r = api.call("GET", "/leads", 200, query={"status": "new", "limit": "1",
                                              "createdAfter": "2020-01-01",
                                              "createdBefore": "2999-01-01T00:00:00.000Z"})
    assert r.json()["nextCursor"] is not None, "a second page (%r)" % (r,)
    api.call("GET", "/leads", 200, query={"cursor": r.json()["nextCursor"]})
    api.call("GET", "/leads", 400, query={"status": "gone", "limit": "0"})
    api.call("GET", "/leads", 400, query={"createdAfter": "yesterday"})
    api.call("GET", "/leads", 400, query={"q": " "})

    api.call("GET", "/leads/{id}", 200, {"id": lid})
    api.call("GET", "/leads/{id}", 400, {"id": "nope"})
    api.call("GET", "/leads/{id}", 404, {"id": unknown})

    api.call("POST", "/leads/{id}/reply", 201, {"id": lid},
             body={"channel": "email", "messageContent": {"from": "ana@example.com",
                                                          "subject": "Hi", "body": "Price?"}})
    api.call("POST", "/leads/{id}/reply", 400, {"id": lid}, body={"channel": "fax"})
    api.call("POST", "/leads/{id}/reply", 404, {"id": unknown},
             body={"channel": "whatsapp", "messageContent": {"text": "hi"}})

    api.call("POST", "/leads/{id}/messages", 201, {"id": lid},
             body={"channel": "whatsapp", "channelMessage": {"text": "Our offer"}})
    api.call("POST", "/leads/{id}/messages", 400, {"id": lid},
             body={"channel": "email", "channelMessage": {"subject": " "}})

    api.call("GET", "/leads/{id}/messages", 200, {"id": lid}, {"channel": "email"})
    api.call("GET", "/leads/{id}/messages", 400, {"id": lid}, {"channel": "fax"})
    api.call("GET", "/leads/{id}/events", 200, {"id": lid}, {"limit": "2"})
    api.call("GET", "/leads/{id}/events", 400, {"id": lid}, {"limit": "0", "sort": "asc"})
    api.call("GET", "/leads/{id}/events", 404, {"id": unknown})

    # ---- more bodies and queries, each taken or refused by the API as by the document
    for body, status in [
            ({"name": "Cy", "email": None, "phone": "+1 555 0100"}, 201),
            ({"name": "Di", "email": "di@example.com", "phone": None}, 201),
            ({"name": "Ed", "email": "not-an-email"}, 400),
            ({"name": "Ed"}, 400),
            ({"name": "x" * 256, "phone": "+1 555 0101"}, 400),
            ({"name": "Ed", "phone": 15550102}, 400),
            ({"name": "Ed", "phone": "  "}, 400),
            ({"name": None, "phone": "+1 555 0103"}, 400),
            ([{"name": "Ed", "phone": "+1 555 0104"}], 400)]:
        api.call("POST", "/leads", status, body=body)
    for body, status in [
            ({"channel": "whatsapp", "messageContent": {"from": "+351 912-000-111",
                                                        "text": "and WhatsApp?"}}, 201),
            ({"channel": "email", "messageContent": {"subject": None, "body": "no from"}}, 201),
            ({"channel": "whatsapp", "messageContent": {}}, 400),
            ({"channel": "linkedin", "messageContent": {"text": "hi"}}, 400),
            ({"channel": "email", "messageContent": {"from": "not an email"}}, 400),
            ({"channel": "whatsapp", "messageContent": {"from": "12"}}, 400),
            ({"channel": "email", "messageContent": {"body": 42}}, 400),
            ({"channel": "email", "messageContent": "text"}, 400),
            ({"channel": "email", "messageContent": {"body": "x"}, "extra": 1}, 400)]:
        api.call("POST", "/leads/{id}/reply", status, {"id": lid}, body=body)
    for body, status in [
            ({"channel": "email", "channelMessage": {"subject": "Offer", "body": "Dear Ana"}}, 201),
            ({"channel": "email", "channelMessage": {"subject": "Offer", "body": "x",
                                                     "cc": "eve@example.com"}}, 400),
            ({"channel": "whatsapp", "channelMessage": {"text": "x" * 4097}}, 400),
            ({"channel": "ads", "channelMessage": {"text": "hi"}}, 400),
            ({"channel": "whatsapp", "channelMessage": {"text": None}}, 400)]:
        api.call("POST", "/leads/{id}/messages", status, {"id": lid}, body=body)
    for query, status in [
            ({"channel": "whatsapp", "limit": "100"}, 200),
            ({"channel": "email", "limit": "101"}, 400),
            ({"limit": "5"}, 400)]:
        api.call("GET", "/leads/{id}/messages", status, {"id": lid}, query)
    # Cursors are opaque: the document cannot tell a good one from a bad one.
    api.call("GET", "/leads/{id}/messages", 400, {"id": lid},
             {"channel": "email", "cursor": "events.1"}, validation_error=False)
    api.call("GET", "/jobs", 400, query={"cursor": "nope"}, validation_error=False)
    for query, status in [
            ({"state": "completed", "name": "generate-reply", "limit": "100"}, 200),
            ({"name": ""}, 400),
            ({"name": "n" * 129}, 400)]:
        api.call("GET", "/jobs", status, query=query)

    # ---- the live timeline: each stream's head (status, headers, first bytes), then closed
    first_event = api.call("GET", "/leads/{id}/events", 200, {"id": lid}).json()["items"][0]
    r = api.call("GET", "/events", 200, query={"leadId": lid}, stream=True)
    assert r.body.startswith(b"retry: "), "the stream's first bytes: %r" % (r.body,)
    api.call("GET", "/events", 200, query={"key": KEY}, auth=False, stream=True)
    api.call("GET", "/events", 200, headers={"Last-Event-ID": first_event["id"]}, stream=True)
    api.call("GET", "/events", 400, query={"leadId": "nope"})
    api.call("GET", "/events", 400, query={"since": "now"})
    api.call("GET", "/events", 404, query={"leadId": unknown})
    api.call("GET", "/events", 404, headers={"Last-Event-ID": unknown}, validation_error=False)
    api.call("GET", "/events", 401, auth=False)

    # ---- do not contact
    api.call("POST", "/leads/{id}/opt-out", 200, {"id": lid},
             body={"channel": "whatsapp", "reason": "asked by phone"})
    api.call("POST", "/leads/{id}/opt-out", 400, {"id": lid}, body={"channel": "fax"})
    for body, status in [
            ({"reason": " "}, 400),
            ({"reason": "r" * 501}, 400),
            ({"channel": "whatsapp", "by": "me"}, 400),
            ("channel=whatsapp&reason=by+form", 200),
            ("channel=", 400)]:
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if isinstance(body, str) \
            else None
        api.call("POST", "/leads/{id}/opt-out", status, {"id": lid}, body=body, headers=hdrs)
    api.call("POST", "/leads/{id}/messages", 409, {"id": lid},
             body={"channel": "whatsapp", "channelMessage": {"text": "Still there?"}})
    api.call("DELETE", "/leads/{id}/opt-out", 200, {"id": lid}, {"channel": "whatsapp"})
    api.call("DELETE", "/leads/{id}/opt-out", 400, {"id": lid}, {"channel": "fax"})
    api.call("DELETE", "/leads/{id}/opt-out", 404, {"id": unknown})

    token = unsubscribe_token(lid)
    api.call("GET", "/unsubscribe/{token}", 200, {"token": token}, auth=False)
    api.call("GET", "/unsubscribe/{token}", 404, {"token": "nope"}, auth=False)
    api.call("POST", "/unsubscribe/{token}", 200, {"token": token},
             body="List-Unsubscribe=One-Click",
             headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=False)
    api.call("POST", "/unsubscribe/{token}", 404, {"token": unsubscribe_token(unknown)},
             auth=False)
    api.call("GET", "/leads/{id}", 200, {"id": lid})  # with its optOut member

    # ---- jobs: the welcome sends fail once (JOB_ATTEMPTS=1): dead letters to retry
    def failed_jobs():
        r = api.call("GET", "/jobs", 200, query={"state": "failed", "name": "send-message"})
        return r.json()["items"] or None
    failed = wait_until(failed_jobs, 15, "a failed send-message job")
    jid = failed[0]["id"]
    api.call("GET", "/jobs", 200, query={"limit": "1"})
    api.call("GET", "/jobs", 400, query={"state": "dead", "limit": "0"})
    api.call("GET", "/jobs/{id}", 200, {"id": jid})
    other = unknown if env.queue == "redis" else "987654321"
    api.call("GET", "/jobs/{id}", 404, {"id": other})
    api.call("GET", "/jobs/{id}", 400, {"id": "x" * 80})
    api.call("POST", "/jobs/{id}/retry", 200, {"id": jid})
    api.call("POST", "/jobs/{id}/retry", 404, {"id": other})

    def completed():
        r = api.call("GET", "/jobs/{id}", 200, {"id": jid})
        return r.json()["state"] == "completed"
    wait_until(completed, 15, "the retried job completed")
    api.call("POST", "/jobs/{id}/retry", 409, {"id": jid})

    # ---- webhooks
    api.call("GET", "/webhooks/whatsapp", 200,
             query={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                    "hub.challenge": "1158201444"}, auth=False)
    api.call("GET", "/webhooks/whatsapp", 403,
             query={"hub.mode": "subscribe", "hub.verify_token": "wrong"}, auth=False)
    body, hdrs = wa_signed(wa_delivery("351912000333", "Hello there"))
    api.call("POST", "/webhooks/whatsapp", 200, body=body, headers=hdrs, auth=False)
    api.call("POST", "/webhooks/whatsapp", 401, body=body,
             headers={"Content-Type": "application/json"}, auth=False)
    body, hdrs = wa_signed({"object": "page", "entry": []})
    api.call("POST", "/webhooks/whatsapp", 400, body=body, headers=hdrs, auth=False)
    body, hdrs = mg_form("pat@example.org", "Tell me more")
    api.call("POST", "/webhooks/email", 200, body=body, headers=hdrs, auth=False)
    api.call("POST", "/webhooks/email", 401, body=body, headers=hdrs, auth=False)  # token reused
    body, hdrs = mg_form("pat@example.org", "Tell me more", key="another-key-0123456789")
    api.call("POST", "/webhooks/email", 401, body=body, headers=hdrs, auth=False)
    api.call("POST", "/webhooks/email", 415, body="{}",
             headers={"Content-Type": "application/json"}, auth=False)

    # Any other method on a documented path: 405 with the error body, and an Allow header that
    # lists the path's documented methods (GET implying HEAD) and OPTIONS.
    for path, item in spec.doc["paths"].items():
        methods = {m.upper() for m in item if m in METHODS}
        methods |= {"HEAD"} if "GET" in methods else set()
        concrete = path.replace("{id}", lid).replace("{token}", token)
        r = srv.request("PATCH", concrete, headers={"X-API-Key": KEY})
        assert_eq(r.status, 405, "PATCH %s (%r)" % (path, r))
        spec.validate({"$ref": SCHEMA_REF + "Error"}, r.json(), "PATCH %s -> 405" % path)
        assert_eq(sorted(r.header("Allow").split(", ")), sorted(methods | {"OPTIONS"}),
                  "Allow of %s" % path)

    # Every documented operation was called, for a 2xx and for a 4xx.
    for path, item in spec.doc["paths"].items():
        for m in (m for m in item if m in METHODS):
            statuses = {s for (cm, cp, s) in spec.covered if (cm, cp) == (m.upper(), path)}
            assert any(200 <= s < 300 for s in statuses), "%s %s: no success checked" % (
                m.upper(), path)
            assert any(400 <= s < 500 for s in statuses), "%s %s: no error checked" % (
                m.upper(), path)
    srv.stop()
