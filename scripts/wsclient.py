"""A minimal WebSocket client on a raw asyncio Protocol, for the load generator.

No coroutine and no JSON per frame on the hot path: received frames are
handed to ``on_frame(payload)`` straight from ``data_received`` (several per
call when they arrive together, followed by one call of ``after_frames()`` so
replies can go out in one write), and a send is one header, one XOR mask
(Tornado's C speedup) and one ``transport.write``.
Only what a load generator needs: text frames, no fragmentation, no
compression; pings are answered, a close frame closes the socket.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

from tornado.util import _websocket_mask as websocket_mask

_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    """The server did not upgrade the connection."""


class WSClient(asyncio.Protocol):
    """One WebSocket connection. Set ``on_frame`` before or after opening.

    ``headers`` are sent with the upgrade request besides the handshake's own
    (e.g. a browser's User-Agent).
    """

    __slots__ = ("transport", "opened", "closed", "closing", "on_frame", "after_frames",
                 "on_lost", "_buffer", "_mask", "_upgraded", "_request", "tag")

    def __init__(self, host: str, port: int, path: str = "/ws",
                 headers: tuple[tuple[str, str], ...] = ()):
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self._request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = False
        self.closing = False
        self.on_frame = _ignore
        self.after_frames = None
        self.on_lost = None
        self._buffer = bytearray()
        self._mask = os.urandom(4)
        self._upgraded = False
        self.tag = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if self.on_lost is not None:
            self.on_lost()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:end]).split(b"\r\n", 1)[0]
            del buffer[:end + 4]
            if b" 101 " not in status + b" ":
                self.opened.set_exception(HandshakeError(status.decode(errors="replace")))
                self.transport.close()
                return
            self._upgraded = True
            self.opened.set_result(self)
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            if length < 126:
                head = 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                head = 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2:pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            opcode = buffer[pos] & 0x0F
            payload = bytes(buffer[pos + head:end])
            pos = end
            if opcode == _OP_TEXT:
                self.on_frame(payload)
            elif opcode == _OP_PING:
                self._send(_OP_PONG, payload)
            elif opcode == _OP_CLOSE:
                if not self.closing:
                    self._send(_OP_CLOSE, payload[:2])
                self.closed = True
                self.transport.close()
                break
        if pos:
            del buffer[:pos]
            if self.after_frames is not None:
                self.after_frames()

    # -- sending ---------------------------------------------------------------------

    def frame(self, payload: bytes) -> bytes:
        """One masked text frame holding ``payload``, ready for the transport."""
        return _header(0x80 | _OP_TEXT, len(payload)) + self._mask + websocket_mask(
            self._mask, payload)

    def send(self, payload: bytes) -> None:
        if not (self.closing or self.closed):
            self.transport.write(self.frame(payload))

    def send_many(self, payloads: list[bytes]) -> None:
        """Several frames in one write (one system call)."""
        if not (self.closing or self.closed):
            self.transport.write(b"".join(map(self.frame, payloads)))

    def _send(self, opcode: int, payload: bytes) -> None:
        if not self.closed and not self.transport.is_closing():
            self.transport.write(_header(0x80 | opcode, len(payload)) + self._mask
                                 + websocket_mask(self._mask, payload))

    def start_close(self) -> None:
        """Send a close frame; the socket closes when the server's close frame comes back."""
        if self.transport is not None and not self.closing and not self.closed:
            self._send(_OP_CLOSE, struct.pack("!H", 1000))
            self.closing = True

    def abort(self) -> None:
        """Drop the connection now."""
        self.closing = self.closed = True
        if self.transport is not None:
            self.transport.close()


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, 0x80 | length))
    if length < 65536:
        return struct.pack("!BBH", first, 0x80 | 126, length)
    return struct.pack("!BBQ", first, 0x80 | 127, length)


def _ignore(payload: bytes) -> None:
    pass


async def connect(host: str, port: int, path: str = "/ws", timeout: float = 30.0,
                  headers: tuple[tuple[str, str], ...] = (),
                  source: str | None = None) -> WSClient:
    """Open a TCP connection and upgrade it; raises on failure or after ``timeout``.

    ``headers`` go with the upgrade request; ``source`` is the local address
    to connect from (None: the kernel's choice), so that more connections to
    one server than the ephemeral port range holds can be spread over
    several loopback addresses.
    """
    loop = asyncio.get_running_loop()
    client = WSClient(host, port, path, headers)
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: client, host, port,
                               local_addr=(source, 0) if source else None), timeout)
    try:
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    except BaseException:
        transport.close()
        raise
    return client
