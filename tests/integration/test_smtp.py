"""Email over SMTP (EMAIL_PROVIDER=smtp) against a real SMTP server on loopback.

Each test starts an aiosmtpd server (Debian's python3-aiosmtpd) on a free port, in a thread of
the test process, with a handler that can answer 451 once, 550, or stall past the service's
SMTP_TIMEOUT_MS (stubs.Relay); the TLS tests give it a self-signed certificate made with the
openssl CLI.
What the server received is parsed with Python's email package. Nothing of ours is mocked:
the real salespad binary talks SMTP to the real server.
"""
import email
import email.header
import email.policy
import os
import ssl
import subprocess

from aiosmtpd.smtp import AuthResult, LoginPassword

from harness import assert_eq, create_lead, details, outbound, wait_until
from stubs import Relay, start_relay

FROM = "Sales Pad <hello@salespad.test>"
SECRET = "0123456789abcdef-test-secret"


def self_signed(env):
    """A self-signed certificate for 127.0.0.1 (openssl CLI): (cert path, server SSLContext)."""
    cert, key = os.path.join(env.dir, "relay.pem"), os.path.join(env.dir, "relay.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return cert, ctx


def serve(env, url, **kw):
    settings = dict(EMAIL_PROVIDER="smtp", SMTP_URL=url, EMAIL_FROM=FROM,
                    SMTP_TIMEOUT_MS=2000, JOB_BACKOFF_MS=20, JOB_ATTEMPTS=3)
    settings.update(kw)
    return env.serve(**settings)


def settled(srv, lid):
    """The lead's details once its email is sent or failed for good, else None."""
    d = details(srv, lid)
    out = [m for m in outbound(d) if m["channel"] == "email"]
    return d if out and out[0]["status"] in ("sent", "failed") else None


def email_of(det):
    return [m for m in outbound(det) if m["channel"] == "email"][0]


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def text_of(msg):
    """The decoded body with LF line ends (quoted-printable keeps the message's CRLF)."""
    return msg.get_content().replace("\r\n", "\n")


def test_headers_encoding_and_reply_token(env, request):
    relay = Relay()
    url = start_relay(request, relay)
    srv = serve(env, url, EMAIL_REPLY_DOMAIN="in.salespad.test", EMAIL_REPLY_SECRET=SECRET)
    name = "Ñandú 😀 <test>"
    long_name = "Bartholomew-" + "x" * 188  # "Hi <name>," is a 203-character body line
    lid = create_lead(srv, name, email="nandu@example.com")["id"]
    lid2 = create_lead(srv, long_name, email="long@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "the first email settled")
    det2 = wait_until(lambda: settled(srv, lid2), 15, "the second email settled")
    m, m2 = email_of(det), email_of(det2)
    assert_eq(m["status"], "sent", "status: %r" % (m,))
    assert_eq(m2["status"], "sent", "status: %r" % (m2,))
    assert_eq(len(relay.accepted), 2, "messages the relay accepted")

    by_to = {}
    for raw in relay.accepted:
        msg = parse(raw)
        by_to[msg["To"].addresses[0].addr_spec] = (msg, raw)
    msg, raw = by_to["nandu@example.com"]

    # Every line ends in CRLF and none is longer than 998 (the relay saw the message unstuffed).
    for line in raw.split(b"\r\n"):
        assert b"\n" not in line and b"\r" not in line, "bare CR or LF in %r" % (line,)
        assert len(line) <= 998, "line too long"
    assert_eq(msg["Subject"], "Welcome, %s!" % name, "subject round trip")
    assert_eq(msg["To"].addresses[0].display_name, name, "To display name")
    assert_eq(msg["From"].addresses[0].display_name, "Sales Pad", "From name")
    assert_eq(msg["From"].addresses[0].addr_spec, "hello@salespad.test", "From address")
    assert_eq(msg["Message-ID"], "<%s@salespad.test>" % m["id"], "Message-ID")
    assert msg["Date"].datetime is not None, "Date: %r" % (msg["Date"],)
    assert_eq(msg["MIME-Version"], "1.0", "MIME-Version")
    assert_eq(msg.get_content_type(), "text/plain", "content type")
    assert_eq(msg.get_content_charset(), "utf-8", "charset")
    assert_eq(msg["Content-Transfer-Encoding"], "quoted-printable", "transfer encoding")
    assert msg["In-Reply-To"] is None, "a welcome answers nothing"
    # No raw non-ASCII byte and no injected header: the name was encoded, not copied.
    assert all(b < 0x80 for b in raw), "8-bit byte in the message"
    assert_eq(len(msg.get_all("To")), 1, "To headers")
    assert text_of(msg).startswith("Hi %s,\n\nThank you" % name), text_of(msg)

    reply_to = msg["Reply-To"].addresses[0].addr_spec
    local, domain = reply_to.split("@")
    assert_eq(domain, "in.salespad.test", "Reply-To domain")
    assert local.startswith("reply+"), reply_to
    token = local[len("reply+"):]
    assert_eq(token[:32], lid.replace("-", ""), "token names the lead")
    assert len(token) == 53 and token[32] == "-", token
    sent = [e["payload"] for e in det["events"] if e["type"] == "message_sent"]
    assert_eq([p["providerId"] for p in sent], ["Q%dX" % (relay.accepted.index(raw) + 1)],
              "provider id: the relay's queue id")

    msg2, _ = by_to["long@example.com"]
    body2 = text_of(msg2)
    line = "Hi %s," % long_name
    assert len(line) > 200
    assert_eq(body2.split("\n")[0], line, "a 200+ character line survives")
    tok2 = msg2["Reply-To"].addresses[0].addr_spec.split("@")[0][len("reply+"):]
    assert tok2 != token and tok2[:32] == lid2.replace("-", ""), "each lead its own token"
    assert_eq(relay.envelopes[0][0], "hello@salespad.test", "envelope sender")

    # Secrets stay out of the configuration dump and the logs.
    out = env.run_cli("--print-config", EMAIL_PROVIDER="smtp", SMTP_URL=url, EMAIL_FROM=FROM,
                      SMTP_USERNAME="u", SMTP_PASSWORD="hunter2-pw",
                      EMAIL_REPLY_DOMAIN="in.salespad.test", EMAIL_REPLY_SECRET=SECRET)
    assert_eq(out.returncode, 0, "--print-config: %s" % out.stderr)
    text = out.stdout + out.stderr
    assert "hunter2-pw" not in text and SECRET not in text, text
    assert "SMTP_PASSWORD=(set, redacted)" in text, text
    srv.stop()
    assert SECRET not in srv.log(), "secret in the log"


def test_451_then_250_retries_and_keeps_message_id(env, request):
    relay = Relay("451-once")
    srv = serve(env, start_relay(request, relay))
    lid = create_lead(srv, "Retry Me", email="retry@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    m = email_of(det)
    assert_eq((m["status"], m["attempts"], m["lastError"]), ("sent", 2, None), "after a 451")
    assert_eq(len(relay.attempts), 2, "DATA attempts")
    ids = [parse(raw)["Message-ID"] for raw in relay.attempts]
    assert_eq(ids[0], ids[1], "Message-ID of the retry")
    assert_eq(ids[0], "<%s@salespad.test>" % m["id"], "Message-ID")
    failed = [e for e in det["events"] if e["type"] == "message_failed"]
    assert_eq(len(failed), 1, "failures")
    assert_eq(failed[0]["payload"]["willRetry"], True, "451 is retried")
    assert "451 4.3.0" in failed[0]["payload"]["error"], failed[0]["payload"]
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)


def test_550_fails_for_good_with_the_reply(env, request):
    relay = Relay("550")
    srv = serve(env, start_relay(request, relay))
    lid = create_lead(srv, "Nobody", email="nobody@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    m = email_of(det)
    assert_eq((m["status"], m["attempts"]), ("failed", 1), "after a 550")
    assert "550 5.1.1" in m["lastError"] and "mailbox unavailable" in m["lastError"], m
    assert_eq(relay.attempts, [], "no DATA after a refused recipient")
    job = det["jobs"][0]
    assert_eq((job["state"], job["attemptsMade"]), ("failed", 1), "the job: no retry")
    failed = [e for e in det["events"] if e["type"] == "message_failed"]
    assert_eq([(e["payload"]["willRetry"], e["payload"]["code"]) for e in failed],
              [(False, "EPERMANENT")], "one permanent failure")
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)


def test_stalled_server_times_out_then_retry_sends(env, request):
    relay = Relay("stall-once")
    srv = serve(env, start_relay(request, relay), SMTP_TIMEOUT_MS=800)
    lid = create_lead(srv, "Slow Relay", email="slow@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    m = email_of(det)
    assert_eq((m["status"], m["attempts"]), ("sent", 2), "after a timeout: %r" % (
        [e["payload"] for e in det["events"] if e["type"] == "message_failed"],))
    failed = [e for e in det["events"] if e["type"] == "message_failed"]
    assert_eq([(e["payload"]["code"], e["payload"]["willRetry"]) for e in failed],
              [("ETIMEDOUT", True)], "the timed-out attempt")
    ids = {parse(raw)["Message-ID"] for raw in relay.attempts}
    assert_eq(len(ids), 1, "one Message-ID across attempts: %r" % (ids,))
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)


def test_starttls_with_ca_file(env, request):
    cert, ctx = self_signed(env)
    relay = Relay()
    srv = serve(env, start_relay(request, relay, ctx), SMTP_CA_FILE=cert)
    lid = create_lead(srv, "Tls Ok", email="tls@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    m = email_of(det)
    # The relay refuses MAIL before STARTTLS (require_starttls): sent means it went over TLS.
    assert_eq((m["status"], m["attempts"]), ("sent", 1), "over STARTTLS: %r" % (m,))
    assert_eq(len(relay.accepted), 1, "accepted")
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)


def test_starttls_self_signed_without_ca_is_refused(env, request):
    _, ctx = self_signed(env)
    relay = Relay()
    srv = serve(env, start_relay(request, relay, ctx), JOB_ATTEMPTS=2)
    lid = create_lead(srv, "Tls Refused", email="tls@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    m = email_of(det)
    assert_eq((m["status"], m["attempts"]), ("failed", 2), "certificate not trusted: %r" % (m,))
    assert "certificate" in m["lastError"].lower(), m["lastError"]
    assert_eq(relay.attempts, [], "nothing reached DATA")
    srv.stop()  # exit status 0: a clean shutdown (and no leak under ASan)


def test_bad_email_settings_stop_the_start(env):
    base = dict(EMAIL_PROVIDER="smtp", SMTP_URL="smtp://127.0.0.1:1", EMAIL_FROM=FROM)
    cases = [
        (dict(EMAIL_PROVIDER="sendgrid"), "EMAIL_PROVIDER"),
        (dict(SMTP_URL=None), "SMTP_URL"),
        (dict(SMTP_URL="http://relay.example.com"), "SMTP_URL"),
        (dict(EMAIL_FROM=None), "EMAIL_FROM"),
        (dict(EMAIL_FROM="Sales Pad <not-an-address>"), "EMAIL_FROM"),
        (dict(EMAIL_REPLY_DOMAIN="in.salespad.test"), "EMAIL_REPLY_SECRET"),
        (dict(EMAIL_REPLY_DOMAIN="in.salespad.test", EMAIL_REPLY_SECRET="short"),
         "EMAIL_REPLY_SECRET"),
        (dict(SMTP_PASSWORD="hunter2-pw"), "SMTP_USERNAME"),
        (dict(SMTP_TIMEOUT_MS="5"), "SMTP_TIMEOUT_MS"),
    ]
    for over, setting in cases:
        v = dict(base)
        v.update(over)
        r = env.run_cli("serve", timeout=10, PORT=0, **v)
        what = "%r" % (over,)
        assert_eq(r.returncode, 2, "%s: exit code (stderr %r)" % (what, r.stderr))
        last = r.stderr.strip().splitlines()[-1]
        assert setting in last, "%s: %r does not name %s" % (what, last, setting)
        assert "hunter2-pw" not in r.stderr, "%s: password in stderr" % what


def test_hostile_name_cannot_inject_headers(env, request):
    relay = Relay()
    srv = serve(env, start_relay(request, relay))
    name = "Eve\r\nBcc: victim@example.com\r\nSubject: pwned"
    r = srv.post("/leads", {"name": name, "email": "eve@example.com"})
    if r.status == 400:
        # The API refuses control characters in a name: nothing reaches the email builder
        # (whose own refusal is tested in tests/unit/test_email_mime.c).
        assert_eq(relay.attempts, [], "nothing sent")
        srv.stop()
        return
    assert_eq(r.status, 201, "POST /leads: %r" % (r,))
    lid = r.json()["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    assert_eq(email_of(det)["status"], "sent", "status")
    raw = email.message_from_bytes(relay.accepted[0], policy=email.policy.compat32)
    assert_eq(relay.envelopes[0][1], ["eve@example.com"], "envelope recipients")
    assert raw["Bcc"] is None, "an injected Bcc header"
    assert_eq(len(raw.get_all("Subject")), 1, "Subject headers")
    assert_eq(len(raw.get_all("To")), 1, "To headers")
    # The name travels as encoded-words; decoded, it is the name, CR/LF included.
    to = email.header.make_header(email.header.decode_header(raw["To"]))
    assert_eq(str(to), "%s <eve@example.com>" % name, "the name round-trips, encoded")
    srv.stop()


def test_auth_over_starttls_keeps_the_password_secret(env, request):
    cert, ctx = self_signed(env)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"relay-user"
              and auth_data.password == b"hunter2-pw")
        logins.append((mechanism, ok))
        return AuthResult(success=ok)

    relay = Relay()
    url = start_relay(request, relay, ctx, authenticator)
    srv = serve(env, url, SMTP_CA_FILE=cert, SMTP_USERNAME="relay-user",
                SMTP_PASSWORD="hunter2-pw", LOG_LEVEL="debug")
    lid = create_lead(srv, "With Auth", email="auth@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    assert_eq(email_of(det)["status"], "sent", "sent with AUTH: %r" % (email_of(det),))
    assert logins and all(ok for _, ok in logins), logins
    srv.stop()
    assert "hunter2-pw" not in srv.log(), "password in the log"


def test_credentials_never_go_in_clear_text(env, request):
    relay = Relay()  # no TLS: the relay does not offer STARTTLS
    srv = serve(env, start_relay(request, relay), SMTP_USERNAME="relay-user",
                SMTP_PASSWORD="hunter2-pw", JOB_ATTEMPTS=1)
    lid = create_lead(srv, "No Tls", email="notls@example.com")["id"]
    det = wait_until(lambda: settled(srv, lid), 15, "email settled")
    m = email_of(det)
    assert_eq(m["status"], "failed", "refused without TLS: %r" % (m,))
    assert "STARTTLS" in m["lastError"] or "SSL" in m["lastError"], m["lastError"]
    assert "hunter2-pw" not in str(det), "password in GET /leads/:id"
    assert_eq(relay.attempts, [], "nothing sent")
    srv.stop()
    assert "hunter2-pw" not in srv.log(), "password in the log"


def test_check_providers_logs_in_and_sends_nothing(env, request):
    """salespad check-providers: EHLO, STARTTLS, AUTH, NOOP; nothing delivered; a refused
    password fails with exit status 1 and without the password in the output."""
    cert, ctx = self_signed(env)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"relay-user"
              and auth_data.password == b"hunter2-pw")
        logins.append(ok)
        return AuthResult(success=ok)

    relay = Relay()
    url = start_relay(request, relay, ctx, authenticator)
    settings = dict(EMAIL_PROVIDER="smtp", SMTP_URL=url, EMAIL_FROM=FROM, SMTP_CA_FILE=cert,
                    SMTP_USERNAME="relay-user", SMTP_PASSWORD="hunter2-pw", SMTP_TIMEOUT_MS=2000)
    out = env.run_cli("check-providers", **settings)
    assert_eq(out.returncode, 0, "check-providers: %s %s" % (out.stdout, out.stderr))
    line = out.stdout.splitlines()[0]
    assert line.startswith("email:") and "ok (connected, EHLO, TLS, AUTH accepted" in line, line
    assert_eq(logins, [True], "one log-in")
    assert_eq((relay.attempts, relay.envelopes), ([], []), "nothing sent")
    assert "mock (nothing to check)" in out.stdout.splitlines()[1], out.stdout

    settings["SMTP_PASSWORD"] = "wrong-pw"
    out = env.run_cli("check-providers", **settings)
    assert_eq(out.returncode, 1, "a refused password: %s" % out.stdout)
    assert "email:" in out.stdout and "FAILED" in out.stdout, out.stdout
    assert "wrong-pw" not in out.stdout + out.stderr
    assert_eq(relay.attempts, [], "nothing sent")
