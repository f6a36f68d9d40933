#!/usr/bin/env python3
"""helper.py: the small measuring jobs of scripts/bench.sh that want more precision than curl.

Every subcommand talks only to 127.0.0.1, and every loop is bounded in count and in time.

  freeport                          print a free loopback TCP port
  wait-ready PORT MARKER TIMEOUT_S  touch MARKER, poll GET /ready (~0.5 ms apart) until 200;
                                    print the wall-clock time of that 200 (epoch seconds)
  latency PORT N                    N sequential captures at rest; print p50/p99 of
                                    (message sentAt - lead createdAt) and of the observed wall time
  seed PORT N OUT                   create N leads (name, email, phone), write their ids to OUT
  wait-lines FILE EXPECTED TIMEOUT_S [QUIET_S]
                                    poll FILE until it has EXPECTED lines and then no new one for
                                    QUIET_S s; print "LINES EPOCH_REACHED" (or fail on timeout)
  sink-stats FILE                   lines, distinct messageIds, duplicates, first/last "at" (ms)
  capture-email PORT N CONNS RATE OUT
                                    N email-only captures over CONNS keep-alive connections
                                    (a thread each); RATE 0: as fast as possible, else an
                                    open-loop schedule of RATE captures/s; writes "TO EPOCH_S
                                    LEAD_ID CREATED_MS" per 201 to OUT (EPOCH_S: when the client
                                    read the 201; CREATED_MS: the lead's createdAt)
  smtp-stats CAPTURES RECEIVED      joins OUT of capture-email with smtp_sink.py's lines by
                                    recipient: accepted, missing, duplicates, connections,
                                    sends/s (first 201 -> last acceptance), capture (201 read)
                                    -> accepted p50/p99/max (ms), and createdAt -> accepted
                                    (srv_p50/srv_p99)
  idem-prime PORT KEY BODY          POST /leads BODY once with Idempotency-Key KEY (must be 201),
                                    then once more (must be 201 with Idempotent-Replayed: true):
                                    the stored answer a replay run then reads
  --- inbound replies (webhook section of bench.sh) ---
  seed-leads PORT N OUT             create N leads with a phone (+1666NNNNNNN) and an email over 4
                                    keep-alive connections; write "ID PHONE" per lead to OUT
  wa-bodies SECRET LEADS N TAG OUT  N signed WhatsApp Cloud API deliveries, one text message each
                                    (unique wamid "wamid.TAG.I"), from the leads of LEADS ("ID
                                    PHONE" lines) in turn; writes "SIGNATURE LEAD_ID BODY" per
                                    line (SIGNATURE = "sha256=" + hex HMAC-SHA256(BODY, SECRET))
  wa-deliver PORT FILE              POSTs each delivery of FILE once, in order, on one connection;
                                    each must answer 200 {"received":1,"duplicates":0,...}; then
                                    the first line's lead must show that wamid as an inbound
                                    WhatsApp message (a known lead, not a new one)
"""
import hashlib
import hmac
import http.client
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone

HOST = "127.0.0.1"


def die(msg):
    print(f"helper.py: {msg}", file=sys.stderr)
    sys.exit(1)


def iso_ms(s):
    """'2026-11-27T15:24:48.906Z' -> epoch milliseconds (int)."""
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return round(dt.timestamp() * 1000)


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def conn(port, timeout=5.0):
    return http.client.HTTPConnection(HOST, port, timeout=timeout)


def request(c, method, path, body=None):
    headers = {}
    if body is not None:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def cmd_freeport():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    print(s.getsockname()[1])
    s.close()


def cmd_wait_ready(port, marker, timeout_s):
    port, timeout_s = int(port), float(timeout_s)
    with open(marker, "w"):
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            c = conn(port, timeout=1.0)
            status, _ = request(c, "GET", "/ready")
            c.close()
            if status == 200:
                print(f"{time.time():.6f}")
                return
        except OSError:
            pass
        time.sleep(0.0005)
    die(f"GET /ready did not answer 200 within {timeout_s}s")


def cmd_latency(port, n):
    port, n = int(port), int(n)
    c = conn(port)
    stamp, wall, failures = [], [], 0
    run = f"{os.getpid()}-{int(time.time())}"
    for i in range(n):
        t0 = time.monotonic()
        status, data = request(c, "POST", "/leads",
                               {"name": "Latency", "email": f"lat-{run}-{i}@bench.test"})
        if status != 201:
            die(f"POST /leads answered {status}: {data[:200]!r}")
        lead = json.loads(data)
        created = iso_ms(lead["createdAt"])
        sent_at = None
        # Poll quickly, bounded: at most 2 s or 4000 polls per lead.
        for _ in range(4000):
            status, data = request(c, "GET", f"/leads/{lead['id']}")
            if status != 200:
                die(f"GET /leads/:id answered {status}: {data[:200]!r}")
            d = json.loads(data)
            emails = d.get("messagesByChannel", {}).get("email", [])
            if emails and emails[0].get("status") == "sent" and emails[0].get("sentAt"):
                sent_at = iso_ms(emails[0]["sentAt"])
                break
            if time.monotonic() - t0 > 2.0:
                break
            time.sleep(0.0002)
        if sent_at is None:
            failures += 1
            continue
        wall.append((time.monotonic() - t0) * 1000.0)
        stamp.append(sent_at - created)
        time.sleep(0.005)  # at rest: let the service go idle between captures
    c.close()
    if not stamp:
        die("no capture reached 'sent' within 2 s")
    print(f"n={len(stamp)} failures={failures} p50_ms={pct(stamp, 50)} p99_ms={pct(stamp, 99)} "
          f"max_ms={max(stamp)} wall_p50_ms={pct(wall, 50):.1f} wall_p99_ms={pct(wall, 99):.1f}")


def cmd_seed(port, n, out):
    port, n = int(port), int(n)
    c = conn(port)
    ids = []
    run = f"{os.getpid()}-{int(time.time())}"
    for i in range(n):
        status, data = request(c, "POST", "/leads",
                               {"name": f"Seed {i}", "email": f"seed-{run}-{i}@bench.test",
                                "phone": f"+1555{i:07d}"})
        if status != 201:
            die(f"POST /leads answered {status}: {data[:200]!r}")
        ids.append(json.loads(data)["id"])
    c.close()
    with open(out, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(len(ids))


def cmd_wait_lines(path, expected, timeout_s, quiet_s="0"):
    """Counts newlines incrementally (only the bytes added since the last look), every 20 ms,
    until there are EXPECTED lines and then no new line for QUIET_S seconds. Prints the line
    count and the epoch time the count was last reached."""
    expected, timeout_s, quiet_s = int(expected), float(timeout_s), float(quiet_s)
    deadline = time.monotonic() + timeout_s
    off, lines, reached, last_growth = 0, 0, None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read()
            off += len(data)
            if data.count(b"\n"):
                lines += data.count(b"\n")
                last_growth, reached = time.monotonic(), None
        except FileNotFoundError:
            pass
        if lines >= expected:
            if reached is None:
                reached = time.time()
            if time.monotonic() - last_growth >= quiet_s:
                print(f"{lines} {reached:.6f}")
                return
        time.sleep(0.02)
    die(f"{path}: {lines} lines (want {expected}, then {quiet_s}s quiet) after {timeout_s}s")


def cmd_sink_stats(path):
    lines, ids, dups, first, last = 0, set(), 0, None, None
    with open(path) as f:
        for line in f:
            lines += 1
            d = json.loads(line)
            ids.add(d["messageId"])
            dups += 1 if d.get("duplicate") else 0
            at = iso_ms(d["at"])
            first = at if first is None else min(first, at)
            last = at if last is None else max(last, at)
    print(f"lines={lines} distinct={len(ids)} duplicates={dups} first_ms={first} last_ms={last}")


def cmd_capture_email(port, n, conns, rate, out):
    port, n, conns, rate = int(port), int(n), int(conns), float(rate)
    run = f"{os.getpid()}-{int(time.time())}"
    lock = threading.Lock()
    state = {"next": 0, "errors": [], "t0": None}
    results = [None] * n

    def worker():
        c = conn(port)
        try:
            while True:
                with lock:
                    i = state["next"]
                    if i >= n or state["errors"]:
                        return
                    state["next"] = i + 1
                if rate > 0:
                    delay = state["t0"] + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                to = f"smtp-{run}-{i}@bench.test"
                status, data = request(c, "POST", "/leads", {"name": f"Smtp {i}", "email": to})
                t = time.time()
                if status != 201:
                    with lock:
                        state["errors"].append(f"POST /leads answered {status}: {data[:200]!r}")
                    return
                lead = json.loads(data)
                results[i] = (to, t, lead["id"], iso_ms(lead["createdAt"]))
        except (OSError, http.client.HTTPException, ValueError) as e:
            with lock:
                state["errors"].append(f"capture failed: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(max(1, conns))]
    t_start = time.time()
    state["t0"] = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["errors"]:
        die(state["errors"][0])
    with open(out, "w") as f:
        for to, t, lid, created_ms in results:
            f.write(f"{to} {t:.6f} {lid} {created_ms}\n")
    last = max(r[1] for r in results)
    print(f"n={n} start={t_start:.6f} last={last:.6f} rps={n / (last - t_start):.1f}")


def cmd_smtp_stats(captures, received):
    """Only the received messages whose recipient is in CAPTURES count (others: "other")."""
    cap = {}
    with open(captures) as f:
        for line in f:
            to, t, _lid, created_ms = line.split()
            cap[to] = (float(t), int(created_ms))
    seen, dups, other, conns, lat, lat_srv, last = set(), 0, 0, set(), [], [], None
    with open(received) as f:
        for line in f:
            d = json.loads(line)
            if d["to"] not in cap:
                other += 1
                continue
            conns.add(d["conn"])
            if d["to"] in seen:
                dups += 1
                continue
            seen.add(d["to"])
            t201, created_ms = cap[d["to"]]
            lat.append((d["at"] - t201) * 1000.0)
            lat_srv.append(d["at"] * 1000.0 - created_ms)
            last = d["at"] if last is None else max(last, d["at"])
    if not lat:
        die(f"{received}: no accepted message matches a capture of {captures}")
    first = min(t for t, _ in cap.values())
    print(f"accepted={len(lat)} captured={len(cap)} missing={len(cap) - len(lat)} "
          f"duplicates={dups} other={other} connections={len(conns)} "
          f"first_capture={first:.6f} last_accept={last:.6f} "
          f"sends_per_s={len(lat) / max(last - first, 1e-6):.1f} p50_ms={pct(lat, 50):.1f} "
          f"p99_ms={pct(lat, 99):.1f} max_ms={max(lat):.1f} min_ms={min(lat):.1f} "
          f"srv_p50_ms={pct(lat_srv, 50):.0f} srv_p99_ms={pct(lat_srv, 99):.0f}")


# ---- inbound replies (webhook section of bench.sh) ------------------------------------------

def cmd_seed_leads(port, n, out):
    port, n = int(port), int(n)
    run = f"{os.getpid()}-{int(time.time())}"
    lock = threading.Lock()
    state = {"next": 0, "errors": []}
    leads = [None] * n

    def worker():
        c = conn(port)
        try:
            while True:
                with lock:
                    i = state["next"]
                    if i >= n or state["errors"]:
                        return
                    state["next"] = i + 1
                phone = f"+1666{i:07d}"
                status, data = request(c, "POST", "/leads",
                                       {"name": f"Inbound {i}", "phone": phone,
                                        "email": f"in-{run}-{i}@bench.test"})
                if status != 201:
                    with lock:
                        state["errors"].append(f"POST /leads answered {status}: {data[:200]!r}")
                    return
                leads[i] = (json.loads(data)["id"], phone)
        except (OSError, http.client.HTTPException, ValueError) as e:
            with lock:
                state["errors"].append(f"seeding failed: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["errors"]:
        die(state["errors"][0])
    with open(out, "w") as f:
        for lid, phone in leads:
            f.write(f"{lid} {phone}\n")
    print(n)


def cmd_wa_bodies(secret, leads_file, n, tag, out):
    """Meta's envelope as tests/integration/test_webhooks.py builds it: one entry, one change,
    one text message with its contact. Compact JSON: one body per line."""
    n, key = int(n), secret.encode()
    with open(leads_file) as f:
        leads = [line.split() for line in f if line.strip()]
    if not leads:
        die(f"{leads_file}: no leads")
    ts = str(int(time.time()))
    with open(out, "w") as f:
        for i in range(n):
            lid, phone = leads[i % len(leads)]
            frm = "".join(ch for ch in phone if ch.isdigit())
            value = {"messaging_product": "whatsapp",
                     "metadata": {"display_phone_number": "15550001111",
                                  "phone_number_id": "106540352242922"},
                     "contacts": [{"profile": {"name": f"Bench Prospect {i % len(leads)}"},
                                   "wa_id": frm}],
                     "messages": [{"from": frm, "timestamp": ts, "type": "text",
                                   "id": f"wamid.HBgLMTY2NjAwMDAwMDAVAgASGBQ{tag}{i:010d}",
                                   "text": {"body": f"How much does it cost? ({tag} {i})"}}]}
            body = json.dumps({"object": "whatsapp_business_account",
                               "entry": [{"id": "102290129340398",
                                          "changes": [{"value": value, "field": "messages"}]}]},
                              separators=(",", ":"))
            sig = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
            f.write(f"sha256={sig} {lid} {body}\n")
    print(n)


def cmd_wa_deliver(port, path):
    port = int(port)
    c = conn(port)
    first = None
    n = 0
    with open(path) as f:
        for line in f:
            sig, lid, body = line.rstrip("\n").split(" ", 2)
            c.request("POST", "/webhooks/whatsapp", body=body.encode(),
                      headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig})
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                die(f"POST /webhooks/whatsapp answered {r.status}: {data[:200]!r}")
            d = json.loads(data)
            if d.get("received") != 1 or d.get("duplicates") != 0:
                die(f"POST /webhooks/whatsapp: want received 1, duplicates 0; got {data[:200]!r}")
            if first is None:
                msg = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]
                first = (lid, msg["id"])
            n += 1
    if first is None:
        die(f"{path}: no delivery")
    status, data = request(c, "GET", f"/leads/{first[0]}/messages?channel=whatsapp&limit=100")
    c.close()
    if status != 200:
        die(f"GET /leads/:id/messages answered {status}: {data[:200]!r}")
    if not any(m.get("direction") == "inbound" and m.get("providerId") == first[1]
               for m in json.loads(data).get("items", [])):
        die(f"lead {first[0]}: no inbound WhatsApp message {first[1]} (stored on another lead?)")
    print(n)


def cmd_idem_prime(port, key, body):
    c = conn(port)
    for i in range(2):
        c.request("POST", "/leads", body=body,
                  headers={"Content-Type": "application/json", "Idempotency-Key": key})
        r = c.getresponse()
        r.read()
        replayed = r.getheader("Idempotent-Replayed")
        if r.status != 201 or (i == 1) != (replayed == "true"):
            die("idem-prime: request %d answered %d, Idempotent-Replayed %r" % (i + 1, r.status,
                                                                                 replayed))
    c.close()


def main(argv):
    cmds = {"freeport": (cmd_freeport, 0), "wait-ready": (cmd_wait_ready, 3),
            "latency": (cmd_latency, 2), "seed": (cmd_seed, 3),
            "wait-lines": (cmd_wait_lines, (3, 4)), "sink-stats": (cmd_sink_stats, 1),
            "capture-email": (cmd_capture_email, 5), "smtp-stats": (cmd_smtp_stats, 2),
            "seed-leads": (cmd_seed_leads, 3), "wa-bodies": (cmd_wa_bodies, 5),
            "wa-deliver": (cmd_wa_deliver, 2), "idem-prime": (cmd_idem_prime, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 not in (
            cmds[argv[1]][1] if isinstance(cmds[argv[1]][1], tuple) else (cmds[argv[1]][1],)):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
