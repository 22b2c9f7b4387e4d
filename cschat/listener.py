"""The HTTP server's front door: connection caps, timeouts, and an accept loop that
survives running out of file descriptors.

Tornado's own accept handler lets ``EMFILE`` escape into the event loop,
which then logs it and retries at once, for as long as the table is full:
one core spinning and a log growing by megabytes a second. This one logs
it once a second and pauses accepting briefly instead.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
from typing import Any

import tornado.httpserver
import tornado.iostream
from tornado.ioloop import IOLoop

from cschat.limits import ConnectionCounter
from cschat.logs import ThrottledLog

log = logging.getLogger("cschat.listener")

ACCEPTS_PER_WAKEUP = 128
PAUSE_WHEN_EXHAUSTED = 0.1  # seconds without accepting after EMFILE and the like
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open files limit above %d: %s", soft, error)
    return soft


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that counts its connections in a :class:`ConnectionCounter`.

    ``per_address`` False counts connections toward the total only: behind a
    reverse proxy every peer is the proxy, and the WebSocket handler counts
    by the forwarded address instead.
    """

    def initialize(self, *args: Any, connections: ConnectionCounter, per_address: bool,
                   **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.connections = connections
        self.per_address = per_address
        self._listeners: list[tuple[socket.socket, _AcceptLoop]] = []
        self._refusals = ThrottledLog(log)

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            sock.setblocking(False)
            self._listeners.append((sock, _AcceptLoop(sock, self._accepted)))

    def stop(self) -> None:
        for sock, accept_loop in self._listeners:
            accept_loop.remove()
            sock.close()
        self._listeners.clear()
        super().stop()

    def _accepted(self, connection: socket.socket, address: Any) -> None:
        peer = self._peer(address)
        if not self.connections.admit(peer):
            self._refusals.error("connection from %s refused: too many connections",
                                 address[0] if address else "?")
            connection.close()
            return
        stream = tornado.iostream.IOStream(connection, max_buffer_size=self.max_buffer_size,
                                           read_chunk_size=self.read_chunk_size)
        self.handle_stream(stream, address)

    def on_close(self, server_conn: Any) -> None:
        # Called when a connection's HTTP life ends: closed, or handed to a WebSocket
        # (which counts itself from then on).
        self.connections.leave(self._peer(server_conn.context.address))
        super().on_close(server_conn)

    def _peer(self, address: Any) -> str | None:
        return address[0] if self.per_address and isinstance(address, tuple) else None


class _AcceptLoop:
    """Accept connections on a listening socket, pausing when descriptors run out."""

    def __init__(self, sock: socket.socket, callback: Any):
        self.sock = sock
        self.callback = callback
        self.loop = IOLoop.current()
        self.removed = False
        self._log = ThrottledLog(log)
        self.loop.add_handler(sock, self._ready, IOLoop.READ)

    def _ready(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if self.removed:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in _EXHAUSTED:
                    raise
                self._log.error("cannot accept connections: %s", error.strerror)
                self.loop.remove_handler(self.sock)
                self.loop.call_later(PAUSE_WHEN_EXHAUSTED, self._resume)
                return
            self.callback(connection, address)

    def _resume(self) -> None:
        if not self.removed:
            self.loop.add_handler(self.sock, self._ready, IOLoop.READ)

    def remove(self) -> None:
        if not self.removed:
            self.removed = True
            try:
                self.loop.remove_handler(self.sock)
            except (KeyError, ValueError):
                pass  # paused: not registered right now
