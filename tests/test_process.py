"""The server as a real process: ``cschat run``, killed, stopped and managed by the CLI.

These tests start the installed console script, talk to it over real
WebSockets and HTTP, and end it with signals. The process is always killed
on the way out (``running``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import time

import pytest
from conftest import Client, cschat_ok, cschat_script, free_port, http, read_db, write_config

# -- processes -------------------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def config_and_port(folder, sections: dict[str, dict[str, object]] | None = None
                    ) -> tuple[str, int]:
    """Write ``cschat.ini`` (free port, database next to it); return its path and port."""
    port = free_port()
    return write_config(folder, {"server": {"port": port}, **(sections or {})}), port


async def cli(config: str, *args: str, stdin: str = "") -> str:
    """Run a CLI command that must succeed, without blocking the test's event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: cschat_ok(*args, config=config, stdin=stdin).strip())


class ServerProcess:
    """``cschat run`` in a child process, its stderr kept in a file."""

    def __init__(self, folder, config: str | None, port: int, cwd=None, extra=()):
        self.folder, self.config, self.port = folder, config, port
        self.cwd = str(cwd or folder)
        self.extra = list(extra)
        self.process: subprocess.Popen | None = None
        self.log_path = folder / "server.log"
        self.out_path = folder / "server.out"
        self.url = f"http://127.0.0.1:{port}"

    async def start(self) -> ServerProcess:
        args = [cschat_script(), "run", *self.extra] + (
            ["--config", self.config] if self.config else [])
        with open(self.log_path, "ab") as log, open(self.out_path, "wb") as out:
            self.process = subprocess.Popen(args, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cschat run exited: {self.log()}"
            try:
                code, body = await http(self.url, "GET", "/healthz")
                if code == 200 and body.get("status") == "ok":
                    return self
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"cschat run did not answer /healthz: {self.log()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)

    async def exited(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the process to end; return its status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, "cschat run did not exit in time"
            await asyncio.sleep(0.02)
        return self.process.returncode

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.asynccontextmanager
async def running(folder, config: str | None, port: int, extra=()):
    """A started :class:`ServerProcess`, always killed on the way out."""
    server = ServerProcess(folder, config, port, extra=extra)
    try:
        await server.start()
        yield server
    finally:
        server.stop()


async def setup_directory(config: str, username: str | None = None,
                          password: str | None = None) -> tuple[int, int]:
    """A group and one agent made with the CLI; returns ``(group_id, admin_id)``."""
    group_id = int(await cli(config, "group", "add", "Shop"))
    extra = ["--username", username, "--password-stdin"] if username else []
    admin_id = int(await cli(config, "agent", "add", "--group", str(group_id),
                             "--name", "Alice", *extra, stdin=f"{password}\n" if username else ""))
    return group_id, admin_id


async def tokens(config: str, admin_id: int, group_id: int, uid: str = "u1") -> tuple[str, str]:
    """Tokens minted with the CLI: ``(agent_token, guest_token)`` for guest ``uid``."""
    return (await cli(config, "token", "agent", str(admin_id)),
            await cli(config, "token", "guest", uid, "--group", str(group_id)))


# -- tests -----------------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_run_on_embedded_defaults(tmp_path):
    # PROTOCOL §7 /healthz; `cschat run` with no --config listens on 8700 with cschat.db in cwd.
    if not port_is_free(8700):
        pytest.skip("port 8700 is in use")
    async with running(tmp_path, None, 8700) as server:
        assert (tmp_path / "cschat.db").exists()
        server.signal(signal.SIGTERM)
        assert await server.exited(5) == 0


@pytest.mark.gen_test(timeout=30)
async def test_acknowledged_messages_survive_sigkill(tmp_path):
    # PROTOCOL R20: a 200 to 22300 / 32300 means committed; SIGKILL loses none of them.
    # PROTOCOL R10: with no secret configured, tokens survive the restart.
    config, port = config_and_port(tmp_path, {"chat": {
        "rate_limit": 1000, "identity_rate_limit": 1000, "address_rate_limit": 1000}})
    group_id, admin_id = await setup_directory(config)
    agent_token, guest_token = await tokens(config, admin_id, group_id, "shopper-1")

    async with running(tmp_path, config, port) as server:
        agent = await Client.login(port, 3, agent_token)
        guest = await Client.login(port, 1, guest_token)
        gid = guest.login_data["gid"]
        assert guest.login_data["agent"]["admin_id"] == admin_id
        await agent.push(32401)

        # Fire everything without waiting; kill once enough acks are in.
        guest_sent = {guest.send(22300, msg=f"guest text {i}", client_msg_id=f"g{i}"):
                      f"guest text {i}" for i in range(300)}
        agent_sent = {agent.send(32300, gid=gid, msg=f"agent text {i}", client_msg_id=f"a{i}"):
                      f"agent text {i}" for i in range(100)}
        acked: dict[int, tuple[str, str]] = {}  # message id → (sender, text)

        def take(frame: dict, sent: dict, sender: str) -> None:
            if frame.get("seq") in sent:
                assert frame["code"] == 200, frame
                info = frame["data"]["message_info"]
                assert info["msg"] == sent[frame["seq"]]
                assert info["id"] not in acked
                acked[info["id"]] = (sender, info["msg"])

        guest_acks = 0
        while guest_acks < 200:
            frame = await guest.read()
            assert frame is not None
            take(frame, guest_sent, "guest")
            guest_acks += frame.get("seq") in guest_sent
        server.kill()
        # Every response already on the wire before the kill is an acknowledgement too.
        for ws, sent, sender in ((guest, guest_sent, "guest"), (agent, agent_sent, "agent")):
            while (frame := await ws.read()) is not None:
                take(frame, sent, sender)
        assert len(acked) >= 200

        await server.start()
        guest = await Client.login(port, 1, guest_token)
        assert guest.login_data["gid"] == gid
        history: list[dict] = []
        after_id = 0
        while True:
            frame = await guest.call(22100, after_id=after_id, page_size=100)
            assert frame["code"] == 200, frame
            page = frame["data"]["list"]
            if not page:
                break
            history += page
            after_id = page[-1]["id"]
        ids = [m["id"] for m in history]
        assert ids == sorted(set(ids)), "history ids are unique and increasing"
        stored = {m["id"]: (m["sender"], m["msg"]) for m in history}
        for message_id, (sender, text) in acked.items():
            assert stored.get(message_id) == (sender, text), message_id
        texts = [m["msg"] for m in history if m["sender"] != "system"]
        assert len(texts) == len(set(texts)), "no message is stored twice"
        # The file itself, as another process reads it.
        rows = read_db(tmp_path, "SELECT id, body FROM messages WHERE gid = ?", (gid,))
        by_id = dict(rows)
        assert len(rows) == len(by_id)
        for message_id, (_, text) in acked.items():
            assert by_id[message_id] == text


@pytest.mark.gen_test(timeout=30)
async def test_sigterm_closes_clients_with_1001_and_exits_0(tmp_path):
    # Graceful shutdown: every WebSocket closes with 1001, the process exits 0 within 5 s.
    config, port = config_and_port(tmp_path)
    group_id, admin_id = await setup_directory(config)
    agent_token, guest_token = await tokens(config, admin_id, group_id)
    async with running(tmp_path, config, port) as server:
        agent = await Client.login(port, 3, agent_token)
        guest = await Client.login(port, 1, guest_token)
        anonymous = await Client.connect(port, 1)  # connected, not logged in
        answer = await guest.call(22300, msg="before shutdown")
        assert answer["code"] == 200
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        codes = await asyncio.gather(agent.closed(), guest.closed(), anonymous.closed())
        assert codes == [1001, 1001, 1001]
        assert await server.exited(5 - (time.monotonic() - started)) == 0
        message_id = answer["data"]["message_info"]["id"]
        assert read_db(tmp_path, "SELECT body FROM messages WHERE id = ?", (message_id,)) \
            == [("before shutdown",)]


@pytest.mark.gen_test(timeout=30)
async def test_burst_of_many_guests(make_server):
    # PROTOCOL R21 (client_msg_id), R22 (id order of pushes), R20 (ack after commit).
    h = await make_server(chat={"agent_capacity": 50, "rate_limit": 1000})
    group_id = await h.group()
    admin_id = await h.agent(group_id, "Alice")
    agent = await h.agent_client(admin_id)
    guests = await asyncio.gather(*(h.guest_client(f"burst-{n}", group_id, f"Guest {n}")
                                    for n in range(20)))
    gids = [g.login_data["gid"] for g in guests]
    assert len(set(gids)) == 20
    assert all(g.login_data["agent"]["admin_id"] == admin_id for g in guests)

    per_guest = 50
    sends: list[list[tuple[int, str, str]]] = [[] for _ in guests]  # (seq, text, client_msg_id)
    for i in range(per_guest):
        for n, g in enumerate(guests):
            text = f"g{gids[n]} m{i}"
            sends[n].append((g.send(22300, msg=text, client_msg_id=f"c{i}"), text, f"c{i}"))
            if i < 5:  # a retried send: same client_msg_id, must not store twice
                sends[n].append((g.send(22300, msg=text, client_msg_id=f"c{i}"), text,
                                 f"c{i}"))

    async def acks(n: int) -> dict[str, int]:
        ids: dict[str, int] = {}
        for seq, text, cmid in sends[n]:
            frame = await guests[n].response(seq)
            assert frame["code"] == 200, frame
            info = frame["data"]["message_info"]
            assert info["msg"] == text and info["client_msg_id"] == cmid
            assert ids.setdefault(cmid, info["id"]) == info["id"], "a retry returns the first"
        return ids

    async def agent_pushes() -> list[dict]:
        return [(await agent.push(32399))["data"] for _ in range(20 * per_guest)]

    *acked, pushes = await asyncio.gather(*(acks(n) for n in range(20)), agent_pushes())
    await agent.no_push(32399, 0.3)  # nothing twice

    for n, gid in enumerate(gids):
        mine = [p["message_info"] for p in pushes if p["gid"] == gid]
        ids = [m["id"] for m in mine]
        assert ids == sorted(ids) and len(set(ids)) == per_guest, gid
        assert [m["msg"] for m in mine] == [f"g{gid} m{i}" for i in range(per_guest)]
        assert ids == [acked[n][f"c{i}"] for i in range(per_guest)]
    rows = h.db("SELECT gid, body, client_msg_id, id FROM messages WHERE sender = 'guest'")
    assert len(rows) == 20 * per_guest
    assert len({(gid, cmid) for gid, _, cmid, _ in rows}) == 20 * per_guest
    assert len({(gid, body) for gid, body, _, _ in rows}) == 20 * per_guest


@pytest.mark.gen_test(timeout=30)
async def test_cli_disables_agent_of_running_server(tmp_path):
    # PROTOCOL R7: the CLI disables an agent → -9999 push, then its connections close.
    config, port = config_and_port(tmp_path)
    group_id, admin_id = await setup_directory(config)
    token = await cli(config, "token", "agent", str(admin_id))
    async with running(tmp_path, config, port) as server:
        tabs = [await Client.login(port, 3, token) for _ in range(2)]  # R14: two tabs
        await cli(config, "agent", "disable", str(admin_id))
        started = time.monotonic()
        for tab in tabs:
            push = await tab.push(-9999, timeout=3)
            assert push["code"] == -9999 and "seq" not in push
            await tab.closed(timeout=3.5 - (time.monotonic() - started))
        again = await Client.connect(port, 3)
        assert (await again.call(31000, token=token))["code"] == -31003

        # A new agent added while the server runs can log in at once.
        new_id = int(await cli(config, "agent", "add", "--group", str(group_id), "--name", "Bob",
                               "--username", "bob", "--password-stdin", stdin="first-pass\n"))
        code, body = await http(server.url, "POST", "/api/login",
                                {"username": "bob", "password": "first-pass"})
        assert code == 200 and body["code"] == 200, body
        assert body["data"]["admin_id"] == new_id
        bob = await Client.login(port, 3, body["data"]["token"])
        assert bob.login_data["ix"]
        listed = [a["admin_id"] for a in bob.login_data["admin_list"]]
        assert new_id in listed

        # `cschat agent password` reads stdin; the running server takes the new one at once.
        await cli(config, "agent", "password", str(new_id), stdin="second-pass\n")
        code, body = await http(server.url, "POST", "/api/login",
                                {"username": "bob", "password": "first-pass"})
        assert code == 401 and body["code"] == -31002
        code, body = await http(server.url, "POST", "/api/login",
                                {"username": "bob", "password": "second-pass"})
        assert code == 200 and body["code"] == 200


@pytest.mark.gen_test(timeout=30)
async def test_cli_disables_group_of_running_server(tmp_path):
    # PROTOCOL R7: disabling a group ends its agents' and guests' sessions with -9999;
    # -31004 / -21004 while disabled; enabling it lets them back in.
    config, port = config_and_port(tmp_path)
    group_id, admin_id = await setup_directory(config)
    agent_token, guest_token = await tokens(config, admin_id, group_id)
    async with running(tmp_path, config, port):
        agent = await Client.login(port, 3, agent_token)
        guest = await Client.login(port, 1, guest_token)
        await cli(config, "group", "disable", str(group_id))
        for ws in (agent, guest):
            assert (await ws.push(-9999, timeout=3))["code"] == -9999
            await ws.closed(timeout=3)
        assert (await (await Client.connect(port, 3)).call(31000, token=agent_token))["code"] \
            == -31004
        assert (await (await Client.connect(port, 1)).call(21000, token=guest_token))["code"] \
            == -21004

        await cli(config, "group", "enable", str(group_id))
        await Client.login(port, 3, agent_token)
        await Client.login(port, 1, guest_token)


def _lines(log: str, *needles: str) -> list[str]:
    return [line for line in log.splitlines() if all(n in line for n in needles)]


def _has_id(line: str, role: str, ident: int) -> bool:
    return (re.search(rf"\b{role}\b", line) is not None
            and re.search(rf"\b(?:id|gid|admin_id|aix)={ident}\b", line) is not None)


@pytest.mark.gen_test(timeout=30)
async def test_log_lines_without_secrets(tmp_path):
    # Operations: a log line per connect / login / close naming ix, role and id;
    # tokens, passwords and message texts never reach the log.
    config, port = config_and_port(tmp_path)
    group_id, admin_id = await setup_directory(config, "alice", "hunter2-password")
    guest_token = await cli(config, "token", "guest", "u1", "--group", str(group_id))
    async with running(tmp_path, config, port) as server:
        code, body = await http(server.url, "POST", "/api/login",
                                {"username": "alice", "password": "hunter2-password"})
        assert code == 200, body
        agent_token = body["data"]["token"]
        agent = await Client.login(port, 3, agent_token)
        guest = await Client.login(port, 1, guest_token)
        gid = guest.login_data["gid"]
        assert (await guest.call(22300, msg="guest-private-text-8317"))["code"] == 200
        await agent.push(32399)
        assert (await agent.call(32300, gid=gid, msg="agent-private-text-5529"))["code"] == 200
        guest.close()
        agent.close()
        who = ((guest.login_data["ix"], "guest", gid), (agent.login_data["ix"], "agent", admin_id))
        deadline = time.monotonic() + 3
        while not all(_lines(server.log(), "close", f"ix={ix}") for ix, _, _ in who):
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.05)
        server.signal(signal.SIGTERM)
        assert await server.exited(5) == 0
        log = server.log()
        for ix, role, ident in who:
            assert _lines(log, "connect", f"ix={ix}"), log
            for event in ("login", "close"):
                lines = _lines(log, event, f"ix={ix}")
                assert lines and any(_has_id(line, role, ident) for line in lines), (event, log)
        for secret in (agent_token, guest_token, "hunter2-password", "guest-private-text-8317",
                       "agent-private-text-5529"):
            assert secret not in log
        for token in (agent_token, guest_token):
            assert token.split(".")[2] not in log  # not even the signature


@pytest.mark.gen_test(timeout=30)
async def test_demo_mode_prints_working_credentials(tmp_path):
    # Issue 5: `cschat run --demo` creates a demo group and two agents once, prints the
    # console URL, fresh credentials and the demo page URL
    config, port = config_and_port(tmp_path)
    printed = []
    for _ in range(2):
        async with running(tmp_path, config, port, extra=["--demo"]) as server:
            for _ in range(100):
                if "demo shop page" in server.out_path.read_text():
                    break
                await asyncio.sleep(0.05)
            out = server.out_path.read_text()
            assert f"http://127.0.0.1:{port}/console/" in out
            assert f"http://127.0.0.1:{port}/demo/" in out
            credentials = re.findall(r"sign in as\s+(\S+) / (\S+)", out)
            assert [u for u, _ in credentials] == ["alice", "bob"]
            for username, password in credentials:
                code, body = await http(server.url, "POST", "/api/login",
                                        {"username": username, "password": password})
                assert code == 200, body
            printed.append(credentials)
    assert printed[0] != printed[1]  # fresh passwords each run
    assert read_db(tmp_path, "SELECT COUNT(*) FROM groups") == [(1,)]
    assert read_db(tmp_path, "SELECT COUNT(*) FROM agents") == [(2,)]
