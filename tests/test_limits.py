"""What one client may spend: frames and connections per socket, identity and address,
slow readers, silent and half-sent connections (docs/security.md, PROTOCOL R9).

Each test starts a real server with small limits and attacks it the way an
anonymous visitor could, over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import Client, assert_error


async def flood(clients: list[Client], frames: int) -> list[dict]:
    """Send ``frames`` guest messages spread over ``clients`` without waiting; the replies."""
    seqs = [(client, client.send(22300, msg=f"spam {n}"))
            for n in range(frames) for client in [clients[n % len(clients)]]]
    return [await client.response(seq) for client, seq in seqs]


# -- frames: per identity and per address -----------------------------------------------------


@pytest.mark.gen_test
async def test_one_guest_is_limited_over_all_its_connections(make_server):
    # SECURITY limits (seen: one guest stored 798 messages in 0.7 s over 20 connections):
    # PROTOCOL R9 per connection, and the guest's identity_rate_limit over all of them.
    h = await make_server(chat={"rate_limit": 100, "identity_rate_limit": 5})
    group, _, _ = await h.logged_in_agent()
    token = h.server.tokens.mint_guest("spammer", group)
    tabs = [await h.guest_client("spammer", group, token=token) for _ in range(4)]
    replies = await flood(tabs, 60)
    accepted = [r for r in replies if r["code"] == 200]
    for reply in replies:
        assert reply["code"] in (200, -10029), reply
    # A burst of twice the rate, plus what refills while the frames travel.
    assert 10 <= len(accepted) <= 14
    gid = tabs[0].login_data["gid"]
    stored = h.db("SELECT COUNT(*) FROM messages WHERE gid = ?", (gid,))[0][0]
    assert stored == len(accepted)


@pytest.mark.gen_test
async def test_other_guests_are_not_slowed_by_one_who_floods(make_server):
    # SECURITY limits: the identity bucket is the guest's own; another guest is unaffected.
    h = await make_server(chat={"rate_limit": 100, "identity_rate_limit": 5})
    group, _, _ = await h.logged_in_agent()
    spammer = await h.guest_client("spammer", group)
    await flood([spammer], 30)
    other = await h.guest_client("other", group)
    assert all(r["code"] == 200 for r in await flood([other], 8))


@pytest.mark.gen_test
async def test_one_address_is_limited_over_all_its_connections(make_server):
    # SECURITY limits (seen: 30 connections from one address sent ~12 000 frames/s):
    # address_rate_limit is shared by every connection from the address, logged in or not.
    h = await make_server(chat={"rate_limit": 100, "identity_rate_limit": 100,
                                "address_rate_limit": 5})
    sockets = [await Client.connect(h.port, 0) for _ in range(5)]
    seqs = [(c, c.send(0, call_type=0)) for _ in range(6) for c in sockets]
    codes = [(await c.response(seq))["code"] for c, seq in seqs]
    assert 10 <= codes.count(200) <= 14 and codes.count(-10029) == len(codes) - codes.count(200)


# -- connections ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_connections_per_guest_are_capped(make_server):
    # SECURITY limits: max_connections_per_guest; the extra login is refused with -10029,
    # and a tab that closes makes room again.
    h = await make_server(chat={"max_connections_per_guest": 2})
    group, _, _ = await h.logged_in_agent()
    token = h.server.tokens.mint_guest("tabby", group)
    first = await h.guest_client("tabby", group, token=token)
    await h.guest_client("tabby", group, token=token)
    third = await Client.connect(h.port, 1)
    assert_error(await third.call(21000, token=token), -10029)
    first.close()
    await asyncio.sleep(0.2)
    assert (await third.call(21000, token=token))["code"] == 200


@pytest.mark.gen_test
async def test_connections_per_agent_are_capped(make_server):
    # SECURITY limits: max_connections_per_agent.
    h = await make_server(chat={"max_connections_per_agent": 2})
    group, admin_id, _ = await h.logged_in_agent()
    await h.agent_client(admin_id)
    extra = await Client.connect(h.port, 3)
    assert_error(await extra.call(31000, token=h.server.tokens.mint_agent(admin_id)), -10029)


async def try_connect(port: int) -> Client | None:
    try:
        return await Client.connect(port, 1)
    except (tornado.websocket.WebSocketClosedError, tornado.httpclient.HTTPClientError,
            OSError):
        return None


async def refused(port: int) -> bool:
    """True when a new WebSocket cannot be opened, or is closed straight away."""
    client = await try_connect(port)
    return client is None or await client.closed(timeout=1) is not None


@pytest.mark.gen_test
async def test_connections_per_address_are_capped(make_server):
    # SECURITY limits: max_connections_per_address counts HTTP and WebSocket connections.
    h = await make_server(server={"max_connections_per_address": 3})
    held = [await Client.connect(h.port, 1) for _ in range(3)]
    assert await refused(h.port)
    held[0].close()
    await asyncio.sleep(0.2)
    assert await try_connect(h.port) is not None


@pytest.mark.gen_test
async def test_connections_in_all_are_capped(make_server):
    # SECURITY limits: max_connections caps every connection whatever its address.
    h = await make_server(server={"max_connections": 16})
    held = [await Client.connect(h.port, 1) for _ in range(16)]
    assert await refused(h.port)
    for client in held:
        client.close()
    await asyncio.sleep(0.2)
    assert await try_connect(h.port) is not None


@pytest.mark.gen_test(timeout=10)
async def test_sockets_that_do_not_log_in_are_closed(make_server):
    # SECURITY limits: a WebSocket that does not log in within login_timeout is closed
    # (1008); heartbeats do not keep it open, a logged-in one stays.
    h = await make_server(server={"login_timeout": 1})
    group, admin_id, agent = await h.logged_in_agent()
    idle = await Client.connect(h.port, 1)
    for _ in range(3):
        await idle.ok(0, call_type=0)
        await asyncio.sleep(0.4)
    assert await idle.closed(timeout=3) == 1008
    assert (await agent.call(0, call_type=0))["code"] == 200


@pytest.mark.gen_test(timeout=10)
async def test_half_sent_requests_are_closed(make_server):
    # SECURITY limits (slowloris): a request whose headers never end is closed after
    # header_timeout, not after Tornado's default hour.
    h = await make_server(server={"header_timeout": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=4) == b""
    writer.close()


# -- slow readers and the size of history pages ----------------------------------------------


class RawWebSocket:
    """A WebSocket client on a plain socket that reads only when told to (a slow reader).

    asyncio's stream stops reading from the socket once 128 KiB wait in its
    buffer, and the socket's receive window is tiny: the server's frames pile
    up on the server's side.
    """

    @classmethod
    async def connect(cls, port: int) -> RawWebSocket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        self = cls()
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=65536)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return self

    def send(self, frame: dict) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        header = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126 else
                                  bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
        self.writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def read_all(self) -> tuple[list[dict], int | None]:
        """Read until the server closes: ``(text frames, close code)``."""
        data = await asyncio.wait_for(self.reader.read(), timeout=10)
        frames, close_code, at = [], None, 0
        while at + 2 <= len(data):
            opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
            at += 2
            if length == 126:
                length, at = struct.unpack("!H", data[at:at + 2])[0], at + 2
            elif length == 127:
                length, at = struct.unpack("!Q", data[at:at + 8])[0], at + 8
            payload, at = data[at:at + length], at + length
            if opcode == 1:
                frames.append(json.loads(payload))
            elif opcode == 8:
                close_code = struct.unpack("!H", payload[:2])[0]
        return frames, close_code


async def long_conversation(h, messages: int, length: int) -> tuple[int, int, int]:
    """A group, an agent and a guest with ``messages`` texts of ``length`` characters:
    ``(group, admin_id, gid)``."""
    group, admin_id, _agent, guest = await h.pair()
    gid = guest.login_data["gid"]
    for n in range(messages):
        await guest.ok(22300, msg=f"{n:04d}" + "x" * (length - 4))
    return group, admin_id, gid


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_that_does_not_read_is_closed(make_server):
    # SECURITY limits (seen: a reader that never reads grew RSS by 20-30 MB/s): once
    # max_queued_bytes wait unsent, the server closes it with 1008 and stops writing.
    h = await make_server(chat={"max_queued_bytes": 65536})
    group, admin_id, gid = await long_conversation(h, 40, 4000)
    slow = await RawWebSocket.connect(h.port)
    slow.send({"api_key": 31000, "call_type": 3, "token": h.server.tokens.mint_agent(admin_id)})
    for seq in range(60):  # 60 pages of ~160 KB: far more than any buffer on the way
        slow.send({"api_key": 32100, "call_type": 3, "seq": seq, "gid": gid,
                   "group_id": group, "page_size": 40})
        await asyncio.sleep(0.01)
    await asyncio.sleep(1)
    frames, close_code = await slow.read_all()
    assert close_code == 1008
    assert len([f for f in frames if f.get("api_key") == 32100]) < 60


@pytest.mark.gen_test
async def test_history_pages_are_cut_to_max_history_bytes(make_server):
    # SECURITY limits: a history answer holds about max_history_bytes at most; `truncated`
    # says so, the newest of the page are kept (keep scrolling with before_id), and with
    # after_id the oldest (keep catching up after the last id).
    h = await make_server(chat={"max_history_bytes": 16384})
    group, admin_id, gid = await long_conversation(h, 12, 2000)
    agent = await h.agent_client(admin_id)
    page = await agent.ok(32100, gid=gid, group_id=group, page_size=12)
    texts = [m["msg"][:4] for m in page["list"]]
    assert page["truncated"] is True and page["total"] == 12
    assert 1 <= len(texts) < 12 and texts[-1] == "0011"
    assert texts == [f"{n:04d}" for n in range(12 - len(texts), 12)]
    caught_up = await agent.ok(32100, gid=gid, group_id=group, page_size=12, after_id=0)
    assert caught_up["truncated"] is True and caught_up["list"][0]["msg"][:4] == "0000"
    small = await agent.ok(32100, gid=gid, group_id=group, page_size=2)
    assert small["truncated"] is False and len(small["list"]) == 2
