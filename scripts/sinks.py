"""Receivers for the ``features`` phase of ``bench.py``: a webhook endpoint and an SMTP server.

    python scripts/sinks.py webhook [--port 0] [--hold]
    python scripts/sinks.py smtp [--port 0]

Each accepts everything at once and only counts it: ``webhook`` answers
every HTTP request 200 with an empty body (with ``--hold``: never answers
it) and counts the POSTs by their ``X-Cschat-Event`` header; ``smtp``
(aiosmtpd, which must be importable) accepts every mail and counts them.
Both listen on 127.0.0.1, print ``<kind> sink listening on
<scheme>://127.0.0.1:PORT`` on stderr once bound and, on SIGTERM or
SIGINT, print ``received <JSON object of counts>`` on stderr and exit.
Being quick and cheap matters: they run on the load generator's CPUs, and
a slow receiver would make cschat's deliveries wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

HOST = "127.0.0.1"


class WebhookReceiver(asyncio.Protocol):
    """One HTTP/1.1 connection: every request is answered 200 as soon as its body is in."""

    def __init__(self, counts: dict[str, int], hold: bool = False):
        self.counts = counts
        self.hold = hold
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return   # the body is not all in yet
            del self.buffer[:end + 4 + length]
            if lines[0].startswith("POST "):
                event = headers.get("x-cschat-event", "?")
                self.counts[event] = self.counts.get(event, 0) + 1
            if self.hold:
                continue
            close = headers.get("connection", "").lower() == "close"
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                 + (b"Connection: close\r\n\r\n" if close else b"\r\n"))
            if close:
                self.transport.close()
                return


class MailCounter:
    """aiosmtpd handler that accepts every mail and counts it."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    async def handle_DATA(self, server, session, envelope) -> str:   # the name aiosmtpd calls
        self.counts["mail"] = self.counts.get("mail", 0) + 1
        return "250 OK"


async def serve(kind: str, port: int, hold: bool) -> None:
    loop = asyncio.get_running_loop()
    counts: dict[str, int] = {}
    if kind == "webhook":
        factory, scheme = (lambda: WebhookReceiver(counts, hold)), "http"
    else:
        from aiosmtpd.smtp import SMTP

        handler = MailCounter(counts)
        # A fixed host name: the default looks up this machine's FQDN, which can be slow.
        factory, scheme = (lambda: SMTP(handler, hostname="bench.localhost")), "smtp"
    server = await loop.create_server(factory, HOST, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"{kind} sink listening on {scheme}://{HOST}:{bound}", file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    server.close()
    print("received " + json.dumps(counts, sort_keys=True), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("webhook", "smtp"))
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one)")
    parser.add_argument("--hold", action="store_true",
                        help="webhook: never answer (the sender waits until its timeout)")
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.port, args.hold))


if __name__ == "__main__":
    main()
