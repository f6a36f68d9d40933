"""The stub providers of the integration tests, shared by test_smtp.py, test_whatsapp.py,
test_ai.py and test_e2e_providers.py. Each runs in threads of the test process on a free
loopback port and is stopped by a pytest finalizer; the real salespad binary talks to it.

- Relay (start_relay): a real SMTP server (Debian's python3-aiosmtpd) whose handler can answer
  451 once, 550, or stall past the service's SMTP_TIMEOUT_MS; it keeps every DATA it saw.
- GraphStub (start_graph, settings cloud()): Meta's WhatsApp Cloud API, POST
  /v21.0/{phone-number-id}/messages checked strictly against the documented shape (path, bearer
  token, content type, exactly the documented members of a template or a text message), each
  violation recorded; answers scripted per recipient.
- ModelStub (start_model, settings openai()): an OpenAI-compatible chat-completions API, POST
  /v1/chat/completions and GET /v1/models, checked strictly (path, bearer key, content type,
  exactly "model" and "messages", the configured model, a system message first naming the lead,
  then "user"/"assistant" turns ending with the prospect's); answers scripted in order.
"""
import asyncio
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from harness import HOST, free_port

# ---- SMTP ------------------------------------------------------------------------------------


class Relay:
    """aiosmtpd handler. mode: ok | 451-once | 550 | stall-once. Keeps every DATA it saw."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.lock = threading.Lock()
        self.attempts = []   # the bytes of every DATA, accepted or not
        self.accepted = []   # the bytes of the accepted ones
        self.envelopes = []  # (mail_from, rcpt_tos) of the accepted ones

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "550":
            return "550 5.1.1 <%s>: Recipient address rejected: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.attempts.append(envelope.original_content)
            n = len(self.attempts)
        if self.mode == "451-once" and n == 1:
            return "451 4.3.0 Temporary local problem, try again"
        if self.mode == "stall-once" and n == 1:
            await asyncio.sleep(4)  # the service gave up after SMTP_TIMEOUT_MS
            return "250 too late"
        with self.lock:
            self.accepted.append(envelope.original_content)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: queued as Q%dX" % n


def start_relay(request, relay, tls_context=None, authenticator=None):
    port = free_port()
    kw = {}
    if tls_context is not None:
        kw = {"tls_context": tls_context, "require_starttls": True}
    if authenticator is not None:
        kw.update(authenticator=authenticator, auth_required=True)
    ctl = Controller(relay, hostname=HOST, port=port, **kw)
    ctl.start()
    request.addfinalizer(ctl.stop)
    return "smtp://%s:%d" % (HOST, port)


# ---- WhatsApp Cloud API (Graph API) ---------------------------------------------------------

WA_PHONE_ID = "106540352242922"
WA_TOKEN = "EAAGtest-secret-token-0123456789"
WA_TEMPLATE = "salespad_welcome"


class GraphStub:
    """The Graph API stub. script: {digits: [answer, ...]} consumed in order per recipient,
    then "ok". An answer: "ok" | ("error", status, code, message, headers) |
    ("raw", status, body) | ("slow", seconds)."""

    def __init__(self, script=None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.lock = threading.Lock()
        self.requests = []    # (time, path, headers dict, parsed json or None)
        self.violations = []  # what was wrong with a request
        self.gets = []        # paths of GET requests (check-providers)
        self.n = 0

    def next_answer(self, to):
        with self.lock:
            self.n += 1
            queue = self.script.get(to)
            return self.n, (queue.pop(0) if queue else "ok")

    def check(self, path, headers, raw):
        bad = []
        if path != "/v21.0/%s/messages" % WA_PHONE_ID:
            bad.append("path %r" % path)
        if headers.get("authorization") != "Bearer " + WA_TOKEN:
            bad.append("authorization header")
        if not (headers.get("content-type") or "").startswith("application/json"):
            bad.append("content-type %r" % headers.get("content-type"))
        try:
            body = json.loads(raw)
        except ValueError:
            return None, bad + ["body is not JSON"]
        kind = body.get("type")
        want = {"messaging_product", "recipient_type", "to", "type", kind}
        if set(body) != want:
            bad.append("members %r" % sorted(body))
        if body.get("messaging_product") != "whatsapp":
            bad.append("messaging_product")
        if body.get("recipient_type") != "individual":
            bad.append("recipient_type")
        if not re.fullmatch(r"[0-9]{3,15}", str(body.get("to"))):
            bad.append("to %r is not digits" % body.get("to"))
        if kind == "template":
            t = body.get("template") or {}
            comps = t.get("components")
            if set(t) != {"name", "language", "components"} or t.get("name") != WA_TEMPLATE:
                bad.append("template %r" % t)
            if t.get("language") != {"code": "en_US"}:
                bad.append("language %r" % t.get("language"))
            ok = (isinstance(comps, list) and len(comps) == 1 and
                  set(comps[0]) == {"type", "parameters"} and comps[0]["type"] == "body" and
                  isinstance(comps[0]["parameters"], list) and
                  len(comps[0]["parameters"]) == 1 and
                  set(comps[0]["parameters"][0]) == {"type", "text"} and
                  comps[0]["parameters"][0]["type"] == "text" and
                  isinstance(comps[0]["parameters"][0]["text"], str))
            if not ok:
                bad.append("components %r" % comps)
        elif kind == "text":
            t = body.get("text") or {}
            if set(t) != {"body", "preview_url"} or t.get("preview_url") is not False or \
                    not isinstance(t.get("body"), str) or not t["body"]:
                bad.append("text %r" % t)
        else:
            bad.append("type %r" % kind)
        return body, bad

    def of_kind(self, kind):
        return [r for r in self.requests if r[3] and r[3].get("type") == kind]


def _graph_handler(stub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, headers=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            # check-providers: the phone number's node, read with the token
            with stub.lock:
                stub.gets.append(self.path)
            if self.path != "/v21.0/%s" % WA_PHONE_ID:
                return self.answer(400, json.dumps({"error": {
                    "message": "Unsupported get request", "type": "GraphMethodException",
                    "code": 100, "fbtrace_id": "stub"}}))
            if self.headers.get("Authorization") != "Bearer " + WA_TOKEN:
                return self.answer(401, json.dumps({"error": {
                    "message": "Invalid OAuth access token", "type": "OAuthException",
                    "code": 190, "fbtrace_id": "stub"}}))
            return self.answer(200, json.dumps({"verified_name": "SalesPad",
                                                "display_phone_number": "+1 555-010-0000",
                                                "id": WA_PHONE_ID}))

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            body, bad = stub.check(self.path, headers, raw)
            with stub.lock:
                stub.requests.append((time.monotonic(), self.path, headers, body))
                stub.violations.extend(bad)
            if bad:
                return self.answer(400, json.dumps({"error": {
                    "message": "(#100) Invalid parameter", "type": "OAuthException",
                    "code": 100, "fbtrace_id": "stub"}}))
            n, ans = stub.next_answer(body["to"])
            if ans == "ok":
                return self.answer(200, json.dumps({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                    "messages": [{"id": "wamid.STUB%d" % n}]}))
            if ans[0] == "error":
                _, status, code, message, hdrs = ans
                return self.answer(status, json.dumps({"error": {
                    "message": message, "type": "OAuthException", "code": code,
                    "error_subcode": 2494010, "fbtrace_id": "AbCdEfStub"}}), hdrs)
            if ans[0] == "raw":
                return self.answer(ans[1], ans[2])
            if ans[0] == "slow":
                time.sleep(ans[1])  # the service gave up after WHATSAPP_TIMEOUT_MS
                try:
                    self.answer(200, json.dumps({"messages": [{"id": "wamid.TOOLATE"}]}))
                except OSError:
                    pass
    return Handler


def start_graph(request, stub):
    port = free_port()
    srv = ThreadingHTTPServer((HOST, port), _graph_handler(stub))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()

    def stop():
        srv.shutdown()
        srv.server_close()
    request.addfinalizer(stop)
    return "http://%s:%d/v21.0" % (HOST, port)


def cloud(url, **kw):
    settings = dict(WHATSAPP_PROVIDER="cloud", WHATSAPP_API_URL=url,
                    WHATSAPP_PHONE_NUMBER_ID=WA_PHONE_ID, WHATSAPP_TOKEN=WA_TOKEN,
                    WHATSAPP_WELCOME_TEMPLATE=WA_TEMPLATE, WHATSAPP_TIMEOUT_MS=2000,
                    JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    settings.update(kw)
    return settings


# ---- OpenAI-compatible chat completions -------------------------------------------------------

AI_KEY = "sk-test-secret-key-0123456789"
AI_MODEL = "gpt-stub-1"
AI_LEAD = "Ana Ñandú"  # the lead's name the stub expects in the system message


class ModelStub:
    """script: answers consumed in order, then `default` ("ok" unless given). An answer: "ok" |
    ("error", status, body, headers) | ("raw", status, body) | ("slow", seconds)."""

    def __init__(self, script=None, default="ok"):
        self.script = list(script or [])
        self.default = default
        self.lock = threading.Lock()
        self.requests = []    # (time, path, parsed json or None)
        self.models = 0       # GET /v1/models calls
        self.violations = []

    def next_answer(self):
        with self.lock:
            return len(self.requests), (self.script.pop(0) if self.script else self.default)

    def check(self, path, headers, raw):
        bad = []
        if path != "/v1/chat/completions":
            bad.append("path %r" % path)
        if headers.get("authorization") != "Bearer " + AI_KEY:
            bad.append("authorization header")
        if not (headers.get("content-type") or "").startswith("application/json"):
            bad.append("content-type %r" % headers.get("content-type"))
        try:
            body = json.loads(raw)
        except ValueError:
            return None, bad + ["body is not JSON"]
        if set(body) != {"model", "messages"}:
            bad.append("members %r" % sorted(body))
        if body.get("model") != AI_MODEL:
            bad.append("model %r" % body.get("model"))
        msgs = body.get("messages")
        if not isinstance(msgs, list) or len(msgs) < 2:
            return body, bad + ["messages %r" % (msgs,)]
        for m in msgs:
            if not isinstance(m, dict) or set(m) != {"role", "content"} or \
                    not isinstance(m.get("content"), str) or not m["content"]:
                bad.append("message %r" % (m,))
        if msgs[0].get("role") != "system" or AI_LEAD not in msgs[0].get("content", ""):
            bad.append("first message %r" % (msgs[0],))
        if any(m.get("role") not in ("user", "assistant") for m in msgs[1:]):
            bad.append("roles %r" % [m.get("role") for m in msgs])
        if msgs[-1].get("role") != "user":
            bad.append("last message is not the prospect's")
        return body, bad

    def turns(self, i):
        """(role, content) of request i's conversation, system message left out."""
        return [(m["role"], m["content"]) for m in self.requests[i][2]["messages"][1:]]


def _model_handler(stub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, headers=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != "/v1/models":
                return self.answer(404, json.dumps({"error": {"message": "no such path"}}))
            if self.headers.get("Authorization") != "Bearer " + AI_KEY:
                return self.answer(401, json.dumps({"error": {
                    "message": "Incorrect API key provided", "type": "invalid_request_error",
                    "code": "invalid_api_key"}}))
            with stub.lock:
                stub.models += 1
            return self.answer(200, json.dumps({"object": "list", "data": [
                {"id": "other-model", "object": "model", "owned_by": "stub"},
                {"id": AI_MODEL, "object": "model", "owned_by": "stub"}]}))

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            body, bad = stub.check(self.path, headers, raw)
            with stub.lock:
                stub.requests.append((time.monotonic(), self.path, body))
                stub.violations.extend(bad)
            if bad:
                return self.answer(400, json.dumps({"error": {
                    "message": "stub: bad request", "type": "invalid_request_error"}}))
            n, ans = stub.next_answer()
            if ans == "ok":
                return self.answer(200, json.dumps({
                    "id": "chatcmpl-stub%d" % n, "object": "chat.completion", "model": AI_MODEL,
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": "Stub answer %d." % n}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}))
            if ans[0] == "error":
                return self.answer(ans[1], ans[2], ans[3])
            if ans[0] == "raw":
                return self.answer(ans[1], ans[2])
            if ans[0] == "slow":
                time.sleep(ans[1])  # the service gave up after AI_TIMEOUT_MS
                try:
                    self.answer(200, json.dumps({"choices": [{"message": {"content": "late"}}]}))
                except OSError:
                    pass
    return Handler


def start_model(request, stub):
    port = free_port()
    srv = ThreadingHTTPServer((HOST, port), _model_handler(stub))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def stop():
        srv.shutdown()
        srv.server_close()
    request.addfinalizer(stop)
    return "http://%s:%d/v1" % (HOST, port)


def openai(url, **kw):
    settings = dict(AI_PROVIDER="openai", AI_BASE_URL=url, AI_API_KEY=AI_KEY, AI_MODEL=AI_MODEL,
                    AI_TIMEOUT_MS=2000, JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    settings.update(kw)
    return settings
