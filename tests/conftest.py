"""Test harness: a real cschat server on a loopback port with its SQLite file in a temp folder.

``cschat_server`` starts the server in the test's IOLoop; ``make_server``
starts one with chosen settings. :class:`Client` is a WebSocket client that
speaks the frames of PROTOCOL.md and keeps pushes apart from responses.
The module-level helpers (configuration files, the ``cschat`` console script,
SQLite and HTTP access, response shapes) serve the in-process tests and the
tests that run ``cschat`` as a process alike.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
import tornado.httpclient
import tornado.websocket

from cschat.app import Server
from cschat.settings import load_settings

TIMEOUT = 5.0
CLI_TIMEOUT = 20

# The shapes of PROTOCOL §3.
AGENT_INFO_KEYS = {"aix", "admin_id", "name", "avatar", "group_id", "status", "load"}
GUEST_INFO_KEYS = {"gid", "group_id", "name", "avatar", "online", "unread", "aix",
                   "last_message", "updated_at", "context", "conversation_id", "tags", "blocked",
                   "left_message"}
MESSAGE_INFO_KEYS = {"id", "gid", "group_id", "sender", "admin_id", "file_type", "msg",
                     "client_msg_id", "created_at", "read"}


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

    @classmethod
    async def login(cls, port: int, call_type: int, token: str) -> Client:
        """Connect and log in with ``token`` (31000 for call_type 3, else 21000), which must
        succeed; the login response's ``data`` is kept as ``login_data``."""
        client = await cls.connect(port, call_type)
        client.login_data = await client.ok(31000 if call_type == 3 else 21000, token=token)
        return client

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
        """Wait up to ``timeout`` seconds in all until the server closes the connection;
        return the close code."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.read(max(0.01, deadline - time.monotonic()))
            if frame is None:
                return self.connection.close_code
            self.frames.append(frame)

    def close(self) -> None:
        self.connection.close()


# -- configuration, the console script, the database file, HTTP ------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(folder, sections: dict[str, dict[str, object]] | None = None,
                 text: str | None = None) -> str:
    """Write ``cschat.ini`` into ``folder`` and return its path.

    By default it holds a free port and the database ``chat.db`` next to the file;
    ``sections`` add to or override those settings; ``text`` is written as it is instead.
    """
    path = folder / "cschat.ini"
    if text is None:
        merged = {"server": {"port": free_port()}, "database": {"path": "chat.db"}}
        for section, values in (sections or {}).items():
            merged[section] = {**merged.get(section, {}), **values}
        text = "".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                       for section, values in merged.items())
    path.write_text(text)
    return str(path)


def cschat_script() -> str:
    script = os.path.join(os.path.dirname(sys.executable), "cschat")
    if os.path.exists(script):
        return script
    found = shutil.which("cschat")
    assert found, "the cschat console script is not installed"
    return found


def cschat(*args: str, config: str | None = None, stdin: str | None = None, cwd=None
           ) -> subprocess.CompletedProcess:
    """Run ``cschat ARGS [--config CONFIG]`` and return the finished process."""
    command = [cschat_script(), *args] + (["--config", config] if config else [])
    return subprocess.run(command, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=cwd)


def cschat_ok(*args: str, config: str | None = None, stdin: str | None = None, cwd=None
              ) -> str:
    """Run a command that must succeed; return its stdout."""
    result = cschat(*args, config=config, stdin=stdin, cwd=cwd)
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    return result.stdout


def query(path, sql: str, params=()) -> list[tuple]:
    """Query an SQLite file directly, as another process would."""
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def read_db(folder, sql: str, params=()) -> list[tuple]:
    """Query ``chat.db`` in ``folder``, the database a ``write_config`` file names."""
    return query(folder / "chat.db", sql, params)


async def http(url: str, method: str, path: str, body=None, headers=None,
               timeout: float | None = TIMEOUT) -> tuple[int, dict]:
    """One HTTP request; returns the status and the JSON body ({} when empty).

    ``timeout`` None is Tornado's default request timeout.
    """
    request = tornado.httpclient.HTTPRequest(
        url + path, method=method, headers=headers, request_timeout=timeout,
        body=None if body is None else (body if isinstance(body, (str, bytes))
                                        else json.dumps(body)))
    response = await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
    return response.code, json.loads(response.body) if response.body else {}


def assert_error(reply: dict, code: int) -> None:
    """An error response (R4): ``code``, status ``Error`` and empty ``data``."""
    assert reply["code"] == code, reply
    assert reply["status"] == "Error", reply
    assert reply["data"] == {}, reply


# -- a small disk that fills up ----------------------------------------------------------------

def mount_tmpfs(mount_point, size: str):
    """Mount a tmpfs of ``size`` (e.g. "1m") at ``mount_point``; skip the test where
    mounting is not allowed. Unmount with :func:`unmount`."""
    mount_point.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs, and mounting one failed (root only): "
                    f"{mounted.stderr.strip()}")
    return mount_point


def unmount(mount_point) -> None:
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted at a fresh folder; skips when mounting is not allowed."""
    yield mount_tmpfs(tmp_path / "disk", "1m")
    unmount(tmp_path / "disk")


# -- a server in the test's IOLoop -----------------------------------------------------------

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
        return query(self.db_path, sql, params)

    def db_write(self, sql: str, params=()) -> None:
        """Change the database file directly and commit, as another process would."""
        conn = sqlite3.connect(self.db_path, timeout=10)
        try:
            with conn:
                conn.execute(sql, params)
        finally:
            conn.close()

    async def group(self, name: str = "Shop") -> int:
        return await self.server.store.add_group(name)

    async def agent(self, group_id: int, name: str = "Agent", username: str | None = None,
                    password_hash: str | None = None, role: str = "agent") -> int:
        admin_id = await self.server.store.add_agent(group_id, name, "", username, password_hash,
                                                     role)
        await self.server.chat.directory.reload()
        return admin_id

    async def agent_client(self, admin_id: int, token: str | None = None) -> Client:
        return await Client.login(self.port, 3, token or self.server.tokens.mint_agent(admin_id))

    async def guest_client(self, uid: str, group_id: int, name: str = "",
                           token: str | None = None) -> Client:
        return await Client.login(self.port, 1, token or self.server.tokens.mint_guest(
            uid, group_id, name))

    async def logged_in_agent(self, name: str = "Alice") -> tuple[int, int, Client]:
        """A group and one logged-in agent of it: ``(group_id, admin_id, agent)``."""
        group_id = await self.group()
        admin_id = await self.agent(group_id, name)
        return group_id, admin_id, await self.agent_client(admin_id)

    async def pair(self, uid: str = "u1", name: str = "Ann", agent_name: str = "Alice"
                   ) -> tuple[int, int, Client, Client]:
        """A group, one logged-in agent, then one logged-in guest (assigned to it):
        ``(group_id, admin_id, agent, guest)``."""
        group_id, admin_id, agent = await self.logged_in_agent(agent_name)
        return group_id, admin_id, agent, await self.guest_client(uid, group_id, name)

    async def http(self, method: str, path: str, body=None, headers=None
                   ) -> tuple[int, dict]:
        return await http(self.url, method, path, body, headers, timeout=None)


@pytest.fixture
def make_server(io_loop, tmp_path):
    """Start a server with settings overrides: ``await make_server(chat={"rate_limit": 5})``."""
    servers = []
    # Clients of earlier tests that had no server here (processes) are not this test's to close.
    Client.open_clients.clear()

    async def start(**overrides) -> Harness:
        overrides.setdefault("server", {}).setdefault("port", 0)
        # Brisk tests send faster than people do; tests of the limits set their own.
        for key, rate in (("rate_limit", 1000), ("identity_rate_limit", 1000),
                          ("address_rate_limit", 10000)):
            overrides.setdefault("chat", {}).setdefault(key, rate)
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
