"""Hardening of secrets and settings: API_KEYS that cannot silently turn authentication off,
keys trimmed, passwords redacted wherever DATABASE_URL is printed, JSON log lines that stay
valid JSON whatever bytes a client sends."""
import json
import socket

from harness import HOST, assert_eq, wait_until


def test_empty_api_keys_refuses_to_start(env):
    env.require_backend("sqlite", "a settings check, the same on every backend")
    for value in ("", " ", " , ", "a,,b"):
        r = env.run_cli("serve", API_KEYS=value)
        assert r.returncode != 0, "API_KEYS=%r started the service (stderr: %s)" % (value, r.stderr)
        assert "API_KEYS" in r.stderr, "the error names the setting: %r" % r.stderr
    r = env.run_cli("serve", "--api-keys=")
    assert r.returncode != 0 and "API_KEYS" in r.stderr, r.stderr


def test_api_keys_are_trimmed(env):
    srv = env.serve(API_KEYS="k-one, k-two ")
    for key in ("k-one", "k-two"):
        r = srv.get("/ready", headers={"X-API-Key": key})
        assert_eq(r.status, 200, "key %r (%r)" % (key, r))
    assert_eq(srv.get("/ready", headers={"X-API-Key": "k-tw"}).status, 401, "a prefix of a key")
    srv.stop()


def test_query_password_is_redacted(env):
    env.require_backend("sqlite", "a settings check, the same on every backend")
    url = "postgres://u@127.0.0.1:1/sp?sslmode=disable&password=hunter2-secret"
    r = env.run_cli("--print-config", DATABASE_URL=url)
    assert_eq(r.returncode, 0, "--print-config exit code (stderr: %s)" % r.stderr)
    assert "hunter2-secret" not in r.stdout, r.stdout
    assert "password=***" in r.stdout, r.stdout
    # the start log names the database too (the start fails: nothing listens on port 1)
    r = env.run_cli("serve", DATABASE_URL=url, timeout=60)
    assert "hunter2-secret" not in r.stderr + r.stdout, r.stderr


def test_json_log_lines_stay_json_with_raw_bytes_in_the_path(env):
    env.require_backend("sqlite", "logging, the same on every backend")
    srv = env.serve(LOG_FORMAT="json", LOG_LEVEL="debug")
    s = socket.create_connection((HOST, srv.port), timeout=5)
    s.sendall(b"GET /leads/\xff\xfe\xc3(\x80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
    wait_until(lambda: "\\ufffd" in srv.log(), 5, "the request's log line")
    for line in srv.log().splitlines():
        if line.startswith("{"):
            json.loads(line)  # raises on an invalid line
    srv.stop()
