"""Hostile HTTP (hardening issue, point 7): requests that used to be misrouted or misread.

- An encoded '/' or NUL in a path parameter: libmicrohttpd used to decode the path before
  routing, so POST /leads/<id>%2Freply stored a reply and GET /leads/<id>%00x found the lead.
  The router now matches the raw path and answers 400 for %2F, %00 or a malformed escape.
- A compressed body (Content-Encoding) or a charset other than UTF-8: 415, not a baffling 400.
- HEAD answers like GET without a body; OPTIONS answers 204 with Allow; CORS, off by default,
  is configured with CORS_ORIGINS, and a preflight needs no API key.

Every test here failed on the code before the fix. They are transport-only, so they run on the
SQLite backend alone (the PostgreSQL and Redis variants of the suite skip them).
"""
import gzip
import json
import socket

from harness import HOST, assert_eq, create_lead, wait_until

LEAD = {"name": "Hostile Tester", "email": "hostile@example.com"}
REPLY = {"channel": "email", "messageContent": {"from": "a@example.com", "subject": "s",
                                                "body": "b"}}
ORIGIN = "https://app.example.com"


def serve(env, **settings):
    env.require_backend("sqlite", "transport-only test")
    return env.serve(**settings)


def assert_error(r, status, message=None):
    assert_eq(r.status, status, "status of %r" % (r,))
    body = r.json()
    assert_eq(body.get("statusCode"), status, "statusCode in %r" % (body,))
    if message is not None:
        assert_eq(body.get("message"), message, "message of %r" % (r,))
    return body


def raw_request(port, data, timeout=5.0):
    """Sends one raw request with Connection: close and returns (status, head, body)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode("latin-1"), body


def inbound_count(env):
    """Inbound messages (replies) stored: only an accepted reply writes one, synchronously."""
    return env.db("SELECT COUNT(*) FROM messages WHERE direction = 'inbound'")[0][0]


def test_encoded_slash_in_id_is_400_and_stores_nothing(env):
    srv = serve(env)
    lid = create_lead(srv, **LEAD)["id"]
    for sep in ("%2F", "%2f"):
        r = srv.post("/leads/%s%sreply" % (lid, sep), REPLY)
        assert_error(r, 400, ["id must not contain an encoded slash (%2F)"])
    assert_eq(inbound_count(env), 0, "replies stored through an encoded slash")
    # The real path still works.
    assert_eq(srv.post("/leads/%s/reply" % lid, REPLY).status, 201, "plain reply")
    assert_eq(inbound_count(env), 1, "the plain reply stored")
    srv.stop()


def test_encoded_nul_in_id_is_400(env):
    srv = serve(env)
    lid = create_lead(srv, **LEAD)["id"]
    assert_error(srv.get("/leads/%s%%00x" % lid), 400, ["id must not contain an encoded NUL (%00)"])
    assert_error(srv.post("/leads/%s%%00/reply" % lid, REPLY), 400)
    # Escapes that decode to ordinary characters still work; the query string is not the path.
    assert_eq(srv.get("/leads/%s%%2d%s" % (lid[:8], lid[9:])).status, 200, "%2d is '-'")
    assert_eq(srv.get("/leads/%s?x=%%2F" % lid).status, 200, "an encoded slash in the query")
    # an encoded NUL is refused wherever it is, the query string included
    assert_error(srv.get("/leads/%s?x=%%00" % lid), 400)
    srv.stop()


def test_malformed_escape_in_id_is_400(env):
    srv = serve(env)
    lid = create_lead(srv, **LEAD)["id"]
    for path in ("/leads/%s%%zz" % lid, "/leads/%s%%4" % lid, "/leads/%s%%" % lid):
        status, _, body = raw_request(srv.port, ("GET %s HTTP/1.1\r\nHost: t\r\n"
                                                 "Connection: close\r\n\r\n" % path).encode())
        assert_eq(status, 400, "status of GET %s" % path)
        assert_eq(json.loads(body)["message"], ["id has a malformed percent-encoding"],
                  "message of GET %s" % path)
    srv.stop()


def test_content_encoding_is_415(env):
    srv = serve(env)
    body = gzip.compress(json.dumps(LEAD).encode())
    for coding in ("gzip", "GZIP", "br, identity"):
        r = srv.post("/leads", body, headers={"Content-Type": "application/json",
                                              "Content-Encoding": coding})
        assert_error(r, 415)
    # Two headers: a harmless first one must not hide the second.
    status, _, _ = raw_request(srv.port, b"POST /leads HTTP/1.1\r\nHost: t\r\n"
                               b"Content-Type: application/json\r\n"
                               b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n"
                               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                               + body)
    assert_eq(status, 415, "identity then gzip")
    r = srv.post("/leads", json.dumps(LEAD).encode(),
                 headers={"Content-Type": "application/json", "Content-Encoding": "identity"})
    assert_eq(r.status, 201, "identity is no coding (%r)" % (r,))
    assert_eq(env.db("SELECT COUNT(*) FROM leads")[0][0], 1, "leads stored")
    srv.stop()


def test_charset_other_than_utf8_is_415(env):
    srv = serve(env)
    for ctype in ("application/json; charset=utf-16", "application/json;charset=UTF-16LE",
                  'application/json; charset="utf-16"', "application/json; charset=iso-8859-1",
                  "application/x-www-form-urlencoded; charset=latin1"):
        r = srv.post("/leads", json.dumps(LEAD).encode("utf-16"),
                     headers={"Content-Type": ctype})
        assert_error(r, 415)
    for i, ctype in enumerate(("application/json; charset=utf-8",
                               'application/json; charset="UTF-8"')):
        lead = dict(LEAD, email="charset%d@example.com" % i)  # one lead per person
        r = srv.post("/leads", json.dumps(lead).encode(), headers={"Content-Type": ctype})
        assert_eq(r.status, 201, "%s (%r)" % (ctype, r))
    srv.stop()


def test_head_answers_like_get_without_body(env):
    srv = serve(env)
    lid = create_lead(srv, **LEAD)["id"]
    # The lead's details must hold still between the GET and the HEAD: its jobs done first.
    wait_until(lambda: all(j["state"] == "completed" for j in srv.get("/leads/" + lid).json()
                           ["jobs"]), 15, "welcome jobs done")
    for path in ("/health", "/ready", "/leads/" + lid, "/leads/not-a-uuid",
                 "/leads/0190f0f0-0000-7000-8000-000000000000"):
        g = srv.get(path)
        h = srv.request("HEAD", path)
        assert_eq(h.status, g.status, "HEAD %s status" % path)
        assert_eq(h.body, b"", "HEAD %s body" % path)
        assert_eq(h.header("Content-Length"), str(len(g.body)), "HEAD %s Content-Length" % path)
        assert_eq(h.header("Content-Type"), g.header("Content-Type"), "HEAD %s type" % path)
    # HEAD where there is no GET: 405 with the full Allow list.
    h = srv.request("HEAD", "/leads/%s/reply" % lid)
    assert_eq((h.status, h.header("Allow")), (405, "POST, OPTIONS"), "HEAD /leads/:id/reply")
    srv.stop()


def test_options_lists_allowed_methods(env):
    srv = serve(env)
    lid = create_lead(srv, **LEAD)["id"]
    for path, allow in (("/leads", "GET, HEAD, POST, OPTIONS"),
                        ("/leads/" + lid, "GET, HEAD, OPTIONS"),
                        ("/leads/%s/reply" % lid, "POST, OPTIONS"),
                        ("/health", "GET, HEAD, OPTIONS")):
        r = srv.request("OPTIONS", path)
        assert_eq((r.status, r.header("Allow"), r.body), (204, allow, b""), "OPTIONS " + path)
        assert r.header("Access-Control-Allow-Origin") is None, "CORS is off by default"
    assert_error(srv.request("OPTIONS", "/nope"), 404)
    r = srv.request("DELETE", "/leads/" + lid)
    assert_eq((r.status, r.header("Allow")), (405, "GET, HEAD, OPTIONS"), "405 Allow")
    srv.stop()


def preflight(srv, path, origin, method="POST"):
    return srv.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "x-api-key, content-type"})


def test_cors_off_by_default(env):
    srv = serve(env)
    r = preflight(srv, "/leads", ORIGIN)
    assert_eq(r.status, 204, "preflight status (%r)" % (r,))
    for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Vary"):
        assert r.header(name) is None, "%s without CORS_ORIGINS" % name
    r = srv.get("/health", headers={"Origin": ORIGIN})
    assert r.header("Access-Control-Allow-Origin") is None, "ACAO without CORS_ORIGINS"
    srv.stop()


def test_cors_preflight_needs_no_key_and_allowed_origins_get_headers(env):
    srv = serve(env, API_KEYS="k-one", CORS_ORIGINS="https://other.example, " + ORIGIN)
    r = preflight(srv, "/leads", ORIGIN)
    assert_eq(r.status, 204, "preflight without a key (%r)" % (r,))
    assert_eq(r.header("Access-Control-Allow-Origin"), ORIGIN, "ACAO")
    assert_eq(r.header("Access-Control-Allow-Methods"), "GET, HEAD, POST, OPTIONS", "ACAM")
    assert_eq(r.header("Access-Control-Allow-Headers"),
              "X-API-Key, Content-Type, Idempotency-Key", "ACAH")
    assert int(r.header("Access-Control-Max-Age") or 0) > 0, "Max-Age in %r" % (r.headers,)
    assert_eq(r.header("Vary"), "Origin", "Vary")
    # The actual request: the key is still required, and both answers carry ACAO.
    r = srv.post("/leads", LEAD, headers={"Origin": ORIGIN})
    assert_eq((r.status, r.header("Access-Control-Allow-Origin")), (401, ORIGIN), "no key")
    r = srv.post("/leads", LEAD, headers={"Origin": ORIGIN, "X-API-Key": "k-one"})
    assert_eq((r.status, r.header("Access-Control-Allow-Origin")), (201, ORIGIN), "with key")
    # A plain OPTIONS (no preflight) keeps the key check.
    assert_error(srv.request("OPTIONS", "/leads"), 401)
    # A disallowed origin gets no CORS header at all.
    for origin in ("https://evil.example", ORIGIN + ".evil.example", "null"):
        r = preflight(srv, "/leads", origin)
        assert_eq(r.status, 204, "preflight from %s" % origin)
        got = [k for k, _ in r.headers if k.lower().startswith("access-control-")]
        assert_eq(got, [], "CORS headers for %s" % origin)
        r = srv.get("/health", headers={"Origin": origin})
        assert r.header("Access-Control-Allow-Origin") is None, "ACAO for %s" % origin
    srv.stop()


def test_cors_any_origin(env):
    srv = serve(env, CORS_ORIGINS="*")
    r = srv.get("/health", headers={"Origin": "https://whoever.example"})
    assert_eq(r.header("Access-Control-Allow-Origin"), "*", "ACAO with *")
    r = preflight(srv, "/leads/x", "https://whoever.example", "GET")
    assert_eq((r.status, r.header("Access-Control-Allow-Methods")), (204, "GET, HEAD, OPTIONS"),
              "preflight with *")
    srv.stop()


def test_bad_cors_origins_fails_startup(env):
    env.require_backend("sqlite", "transport-only test")
    r = env.run_cli("--print-config", CORS_ORIGINS="app.example.com")
    assert r.returncode != 0, "CORS_ORIGINS=app.example.com accepted: %r" % (r.stdout,)
    assert "CORS_ORIGINS" in r.stderr, "error names the setting: %r" % (r.stderr,)
