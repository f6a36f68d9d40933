#!/usr/bin/env python3
"""smtp_sink.py: a loopback SMTP server for scripts/bench.sh (EMAIL_PROVIDER=smtp).

  smtp_sink.py OUT PORT_FILE

Listens on 127.0.0.1 on a port the kernel picks (no free-port race), writes that port to
PORT_FILE once it accepts connections, and accepts every message (250). For each accepted
message it appends one JSON line to OUT (line-buffered):

  {"at": EPOCH_S, "to": "...", "messageId": "<...>", "peer": "127.0.0.1:PORT", "conn": N}

"at" is time.time() when DATA is accepted, just before the 250 goes out; "conn" numbers the
client's SMTP connections in the order they were opened, so the distinct values count the
connections the sender used. Runs until SIGTERM or SIGINT, then prints one summary line to
stdout ("smtp_sink: connections=N ehlo=N messages=N cpu_s=S": TCP connections accepted, EHLO
or HELO commands, messages accepted, its own CPU time) and exits 0.

Needs aiosmtpd (Debian's python3-aiosmtpd, for /usr/bin/python3: scripts/deps.sh bench).
Nothing here parses the message with the email package: it reads the Message-ID header from
the header block with a regular expression, to keep the server cheap per message.
"""
import asyncio
import json
import os
import re
import signal
import socket
import sys
import time

from aiosmtpd.smtp import SMTP

MSGID = re.compile(rb"^message-id:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class Sink:
    def __init__(self, out):
        self.out = out
        self.conns = {}  # peer -> connection number
        self.opened = 0  # TCP connections accepted
        self.ehlo = 0    # EHLO/HELO commands, all connections
        self.messages = 0

    def conn_of(self, session):
        peer = "%s:%s" % tuple(session.peer[:2])
        n = self.conns.get(peer)
        if n is None:
            n = self.conns[peer] = len(self.conns) + 1
        return peer, n

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.ehlo += 1
        self.conn_of(session)  # numbered at greeting, even if it never sends a message
        return responses

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content or b""
        head = data.split(b"\r\n\r\n", 1)[0]
        m = MSGID.search(head)
        peer, n = self.conn_of(session)
        rec = {"at": time.time(), "to": ",".join(envelope.rcpt_tos),
               "messageId": m.group(1).decode("ascii", "replace") if m else None,
               "peer": peer, "conn": n}
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.messages += 1
        return "250 2.0.0 Ok: queued as B%d" % self.messages


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = open(argv[1], "a", buffering=1, encoding="utf-8")
    sink = Sink(out)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the proto
    # says TCP; without it a multi-line reply (EHLO) waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # hostname given: aiosmtpd would otherwise call socket.getfqdn() (DNS) per connection
    def protocol():
        sink.opened += 1
        return SMTP(sink, hostname="bench-smtp.local")

    server = loop.run_until_complete(loop.create_server(protocol, sock=sock))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(argv[2] + ".tmp", "w") as f:
        f.write("%d\n" % sock.getsockname()[1])
    os.replace(argv[2] + ".tmp", argv[2])
    loop.run_until_complete(stop.wait())
    server.close()
    loop.run_until_complete(server.wait_closed())
    out.close()
    cpu = time.process_time()
    print("smtp_sink: connections=%d ehlo=%d messages=%d cpu_s=%.3f" % (
        sink.opened, sink.ehlo, sink.messages, cpu), flush=True)


if __name__ == "__main__":
    main(sys.argv)
