"""Test harness: a real cschat server on a loopback port with its SQLite file in a temp folder.

``cschat_server`` starts the server in the test's IOLoop; ``make_server``
starts one with chosen settings. :class:`Client` is a WebSocket client that
speaks the frames of PROTOCOL.md and keeps pushes apart from responses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3

import pytest
import tornado.httpclient
import tornado.websocket

from cschat.app import Server
from cschat.settings import load_settings

TIMEOUT = 5.0


class Client:
    """One WebSocket connection to ``/ws``.

    ``call`` sends a request and returns its response; frames without the
    request's ``seq`` (pushes) are kept for ``push``/``pushes``.
    """

    open_clients: list[Client] = []

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection, call_type: int):
        self.connection = connection
        Client.open_clients.append(self)
        self.call_type = call_type
        self.frames: list[dict] = []
        self._seq = itertools.count(1)
        self.login_data: dict | None = None

    @classmethod
    async def connect(cls, port: int, call_type: int, headers: dict | None = None) -> Client:
        request = tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{port}/ws",
                                                 headers=headers or {})
        return cls(await tornado.websocket.websocket_connect(request), call_type)

    def send(self, api_key: int, call_type: int | None = None, **params) -> int:
        seq = next(self._seq)
        frame = {"api_key": api_key, "call_type": self.call_type if call_type is None
                 else call_type, "seq": seq, **params}
        self.connection.write_message(json.dumps(frame))
        return seq

    def send_raw(self, text: str | bytes) -> None:
        self.connection.write_message(text, binary=isinstance(text, bytes))

    async def read(self, timeout: float = TIMEOUT) -> dict | None:
        """The next frame from the socket; None when the server closed it."""
        text = await asyncio.wait_for(self.connection.read_message(), timeout)
        return None if text is None else json.loads(text)

    async def response(self, seq, timeout: float = TIMEOUT) -> dict:
        for index, frame in enumerate(self.frames):
            if frame.get("seq") == seq:
                return self.frames.pop(index)
        while True:
            frame = await self.read(timeout)
            assert frame is not None, f"connection closed while waiting for seq {seq}"
            if frame.get("seq") == seq:
                return frame
            self.frames.append(frame)

    async def call(self, api_key: int, call_type: int | None = None, **params) -> dict:
        return await self.response(self.send(api_key, call_type, **params))

    async def ok(self, api_key: int, **params) -> dict:
        """Call and assert success; return ``data``."""
        frame = await self.call(api_key, **params)
        assert frame["code"] == 200, frame
        return frame["data"]

    async def push(self, code: int, timeout: float = TIMEOUT) -> dict:
        """The first not yet taken push with ``code``; returns the whole frame."""
        for index, frame in enumerate(self.frames):
            if frame.get("code") == code and "seq" not in frame:
                return self.frames.pop(index)
        while True:
            frame = await self.read(timeout)
            assert frame is not None, f"connection closed while waiting for push {code}"
            if frame.get("code") == code and "seq" not in frame:
                return frame
            self.frames.append(frame)

    async def no_push(self, code: int, within: float = 0.3) -> None:
        """Assert that no push with ``code`` arrives within ``within`` seconds."""
        try:
            while True:
                frame = await self.read(within)
                if frame is None:
                    return
                self.frames.append(frame)
        except TimeoutError:
            pass
        assert not [f for f in self.frames if f.get("code") == code and "seq" not in f]

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait until the server closes the connection; return the close code."""
        while True:
            frame = await self.read(timeout)
            if frame is None:
                return self.connection.close_code
            self.frames.append(frame)

    def close(self) -> None:
        self.connection.close()


class Harness:
    """A running server plus shortcuts to set up groups, agents and logged-in clients."""

    def __init__(self, server: Server):
        self.server = server
        self.port = server.port
        self.url = f"http://127.0.0.1:{server.port}"

    @property
    def db_path(self) -> str:
        return self.server.settings.database["path"]

    def db(self, sql: str, params=()) -> list[tuple]:
        """Query the database file directly, as another process would."""
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql, params).fetchall()

    async def group(self, name: str = "Shop") -> int:
        return await self.server.store.add_group(name)

    async def agent(self, group_id: int, name: str = "Agent", username: str | None = None,
                    password_hash: str | None = None) -> int:
        admin_id = await self.server.store.add_agent(group_id, name, "", username, password_hash)
        await self.server.chat._reload_directory()
        return admin_id

    async def agent_client(self, admin_id: int, token: str | None = None) -> Client:
        client = await Client.connect(self.port, 3)
        data = await client.ok(31000, token=token or self.server.tokens.mint_agent(admin_id))
        client.login_data = data
        return client

    async def guest_client(self, uid: str, group_id: int, name: str = "",
                           token: str | None = None) -> Client:
        client = await Client.connect(self.port, 1)
        data = await client.ok(21000, token=token or self.server.tokens.mint_guest(
            uid, group_id, name))
        client.login_data = data
        return client

    async def http(self, method: str, path: str, body=None, headers=None
                   ) -> tuple[int, dict]:
        request = tornado.httpclient.HTTPRequest(
            self.url + path, method=method, headers=headers,
            body=None if body is None else (body if isinstance(body, (str, bytes))
                                            else json.dumps(body)))
        response = await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        return response.code, json.loads(response.body) if response.body else {}


def write_config(folder, overrides: dict[str, dict[str, object]]) -> str:
    """Write an INI file into ``folder`` with a free port and the given settings."""
    sections = {"server": {"port": 0}, **{k: {} for k in overrides}}
    for section, values in overrides.items():
        sections[section] = {**sections.get(section, {}), **values}
    path = folder / "cschat.ini"
    path.write_text("".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
        for section, values in sections.items()))
    return str(path)


@pytest.fixture
def make_server(io_loop, tmp_path):
    """Start a server with settings overrides: ``await make_server(chat={"rate_limit": 5})``."""
    servers = []

    async def start(**overrides) -> Harness:
        overrides.setdefault("chat", {}).setdefault("rate_limit", 1000)
        folder = tmp_path / f"server{len(servers)}"
        folder.mkdir(exist_ok=True)
        server = Server(load_settings(write_config(folder, overrides)))
        await server.start()
        servers.append(server)
        return Harness(server)

    yield start
    # A client that stopped reading would never answer the server's close frame.
    for client in Client.open_clients:
        client.close()
    Client.open_clients.clear()
    for server in servers:
        io_loop.run_sync(server.stop, timeout=10)


@pytest.fixture
def cschat_server(io_loop, make_server):
    """A server on the default settings (rate limit raised for brisk tests)."""
    return io_loop.run_sync(make_server)
