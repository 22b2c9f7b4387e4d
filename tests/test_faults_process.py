"""Faults of the real process: SIGKILL and restart with routing state pending, a suspension
across a restart, running out of file descriptors, and the smaller file-level safeguards
(modes of the database, file ids kept out of the access log).

Every test starts the installed ``cschat run`` as a child process (no mocks) and kills
it on the way out. Settings are short (grace and release periods of a few seconds) so
each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import io
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import tornado.httpclient
from conftest import Client, cschat_script, free_port, http, read_db, write_config
from PIL import Image
from test_process import ServerProcess, cli, config_and_port, setup_directory, tokens

FAST = {"rate_limit": 1000, "identity_rate_limit": 1000, "address_rate_limit": 1000}


# -- helpers ---------------------------------------------------------------------------------

class LimitedServer(ServerProcess):
    """``cschat run`` started with ``RLIMIT_NOFILE`` set to ``nofile`` (soft, hard)."""

    def __init__(self, folder, config: str, port: int, nofile: tuple[int, int]):
        super().__init__(folder, config, port)
        self.nofile = nofile

    async def start(self) -> LimitedServer:
        nofile = self.nofile
        with open(self.log_path, "ab") as log, open(self.out_path, "wb") as out:
            self.process = subprocess.Popen(
                [cschat_script(), "run", "--config", self.config], cwd=self.cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cschat run exited: {self.log()}"
            if await healthy(self.url, 1):
                return self
            await asyncio.sleep(0.05)
        raise AssertionError(f"cschat run did not answer /healthz: {self.log()}")


async def healthy(url: str, timeout: float) -> bool:
    try:
        code, body = await http(url, "GET", "/healthz", timeout=timeout)
    except Exception:  # noqa: BLE001 - not listening, or no answer in time
        return False
    return code == 200 and body.get("status") == "ok"


def config_with(folder, sections: dict[str, dict[str, object]]) -> tuple[str, int]:
    """Like ``config_and_port``, for settings that include more of ``[server]``."""
    port = free_port()
    server = {**sections.get("server", {}), "port": port}
    return write_config(folder, {**sections, "server": server}), port


async def push_where(client: Client, code: int, match: Callable[[dict], bool],
                     timeout: float = 5.0) -> dict:
    """The first not yet taken push with ``code`` whose ``data`` ``match`` accepts."""
    deadline = time.monotonic() + timeout
    while True:
        for index, frame in enumerate(client.frames):
            if frame.get("code") == code and "seq" not in frame and match(frame["data"]):
                return client.frames.pop(index)
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching push {code} within {timeout} s: {client.frames}"
        try:
            frame = await client.read(remaining)
        except TimeoutError:
            continue
        assert frame is not None, f"connection closed while waiting for push {code}"
        client.frames.append(frame)


def routing_row(folder, gid: int) -> tuple[int | None, int | None]:
    """``(assigned_aix, queued_at)`` of ``gid`` as the database file holds them."""
    [row] = read_db(folder, "SELECT assigned_aix, queued_at FROM guests WHERE gid = ?", (gid,))
    return row


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def statuses(admin_list: list[dict]) -> dict[int, str]:
    return {a["admin_id"]: a["status"] for a in admin_list}


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/<pid>/stat, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(field: str, filename: str, data: bytes, boundary: str = "FaUlTs0123"
              ) -> tuple[str, bytes]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


# -- kills and restarts ------------------------------------------------------------------------

# Seconds an agent stays online after a restart: long enough for a restart and a login on
# a busy machine, which the test's timing assertions depend on.
GRACE = 5


@pytest.mark.gen_test(timeout=45)
async def test_sigkill_and_restart_with_routing_state_pending(tmp_path):
    # PROTOCOL R24, R27; faults: a SIGKILL with an assignment, a queued guest and a release
    # timer pending loses none of them. After the restart the queue is rebuilt and handed
    # out, the agent holding conversations is online for agent_grace and then offline (33099)
    # with its offline guest released; no acknowledged message is lost (R20).
    config, port = config_and_port(tmp_path, {"chat": {
        **FAST, "agent_capacity": 1, "agent_grace": GRACE, "release_after": GRACE + 1}})
    group_id, alice_id = await setup_directory(config)
    bob_id = int(await cli(config, "agent", "add", "--group", str(group_id), "--name", "Bob"))
    alice_token, guest1_token = await tokens(config, alice_id, group_id, "guest-one")
    bob_token, guest2_token = await tokens(config, bob_id, group_id, "guest-two")

    server = ServerProcess(tmp_path, config, port)
    try:
        await server.start()
        alice = await Client.login(port, 3, alice_token)
        guest1 = await Client.login(port, 1, guest1_token)
        gid1 = guest1.login_data["gid"]
        assert guest1.login_data["agent"]["admin_id"] == alice_id
        await push_where(alice, 32401, lambda d: d["guest_info"]["gid"] == gid1)
        sent1 = await guest1.ok(22300, msg="guest one writes", client_msg_id="one")
        id1 = sent1["message_info"]["id"]

        # Alice is at capacity (guest one wrote): guest two waits in the queue.
        guest2 = await Client.login(port, 1, guest2_token)
        gid2 = guest2.login_data["gid"]
        assert guest2.login_data["agent"] is None
        id2 = (await guest2.ok(22300, msg="guest two writes", client_msg_id="two")
               )["message_info"]["id"]
        assert (await guest2.push(22098))["data"]["queue_position"] == 1
        assigned, queued_at = routing_row(tmp_path, gid2)
        assert assigned is None and queued_at is not None

        # Guest one leaves: its release timer (release_after) is pending when we kill.
        guest1.close()
        await push_where(alice, 32098, lambda d: d["gid"] == gid1 and d["online"] is False)
        server.kill()

        before_restart = time.monotonic()
        server = ServerProcess(tmp_path, config, port)
        await server.start()
        assert routing_row(tmp_path, gid1) == (alice_id, None)
        assigned, queued_again = routing_row(tmp_path, gid2)
        assert assigned is None and queued_again == queued_at

        # Bob logs in within Alice's grace: the rebuilt queue is handed to him, and Alice,
        # who holds a conversation, is online for agent_grace after the restart (R27).
        bob = await Client.login(port, 3, bob_token)
        assert time.monotonic() - before_restart < GRACE, "Bob's login came after the grace"
        assert statuses(bob.login_data["admin_list"]) == {alice_id: "online",
                                                          bob_id: "online"}
        handed = await push_where(bob, 32401, lambda d: d["guest_info"]["gid"] == gid2)
        assert handed["data"]["from_aix"] is None
        # The guest's message, then the busy reply cschat gave it while it waited.
        assert [(m["id"], m["sender"]) for m in handed["data"]["recs"]][0] == (id2, "guest")
        assert [m["event"]["event"] for m in handed["data"]["recs"][1:]] == ["busy"]
        assert routing_row(tmp_path, gid2) == (bob_id, None)

        # The grace ends: Alice is offline, her offline guest is released.
        gone = await push_where(bob, 33099, lambda d: d["admin_id"] == alice_id,
                                timeout=GRACE + 3)
        assert time.monotonic() - before_restart >= GRACE
        assert gone["data"]["status"] == "offline" and gone["data"]["load"] == 0
        await eventually(lambda: routing_row(tmp_path, gid1) == (None, None), timeout=2)

        # No acknowledged message was lost.
        assert read_db(tmp_path, "SELECT id, gid, sender, body FROM messages WHERE id IN (?, ?) "
                       "ORDER BY id", (id1, id2)) == [
            (id1, gid1, "guest", "guest one writes"), (id2, gid2, "guest", "guest two writes")]
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_a_suspension_survives_a_restart(tmp_path):
    # Faults (suspensions were lost on restart): an agent suspended (32500) before a SIGKILL
    # is still suspended after the restart (R14: a login within the grace keeps the status):
    # it gets no new guest
    # until it resumes, which hands it the queued one (R24).
    # agent_grace is long enough that the login after the restart falls within it.
    config, port = config_and_port(tmp_path, {"chat": {
        **FAST, "agent_grace": 10, "release_after": 30}})
    group_id, alice_id = await setup_directory(config)
    bob_id = int(await cli(config, "agent", "add", "--group", str(group_id), "--name", "Bob"))
    alice_token, held_token = await tokens(config, alice_id, group_id, "held-guest")
    new_token = await cli(config, "token", "guest", "new-guest", "--group", str(group_id))

    server = ServerProcess(tmp_path, config, port)
    try:
        await server.start()
        alice = await Client.login(port, 3, alice_token)
        held = await Client.login(port, 1, held_token)
        held_gid = held.login_data["gid"]
        assert held.login_data["agent"]["admin_id"] == alice_id
        await held.ok(22300, msg="hello", client_msg_id="h1")
        reply = await alice.call(32500, status=1)
        assert reply["code"] == 200 and reply["data"] == {"status": 1}, reply
        assert read_db(tmp_path, "SELECT suspended FROM agents WHERE id = ?",
                       (alice_id,)) == [(1,)]
        server.kill()

        server = ServerProcess(tmp_path, config, port)
        await server.start()
        alice = await Client.login(port, 3, alice_token)
        assert statuses(alice.login_data["admin_list"]) == {alice_id: "suspended",
                                                            bob_id: "offline"}
        assert [g["gid"] for g in alice.login_data["guest_list"]] == [held_gid]
        assert statuses((await alice.ok(33000))["admin_list"]) == {alice_id: "suspended"}
        assert read_db(tmp_path, "SELECT suspended FROM agents WHERE id = ?",
                       (alice_id,)) == [(1,)]

        newcomer = await Client.login(port, 1, new_token)
        new_gid = newcomer.login_data["gid"]
        assert newcomer.login_data["agent"] is None
        await newcomer.ok(22300, msg="anyone there?", client_msg_id="n1")
        assert (await newcomer.push(22098))["data"]["queue_position"] == 1
        await alice.no_push(32401, 0.3)
        assigned, queued_at = routing_row(tmp_path, new_gid)
        assert assigned is None and queued_at is not None

        # Resuming hands the queued guest to Alice.
        reply = await alice.call(32500, status=0)
        assert reply["code"] == 200 and reply["data"] == {"status": 0}, reply
        handed = await push_where(alice, 32401, lambda d: d["guest_info"]["gid"] == new_gid)
        assert handed["data"]["from_aix"] is None
        assert (await newcomer.push(22401))["data"]["agent"]["admin_id"] == alice_id
        resumed = await push_where(alice, 33099, lambda d: d["admin_id"] == alice_id)
        assert resumed["data"]["status"] == "online"
        assert routing_row(tmp_path, new_gid) == (alice_id, None)
        assert read_db(tmp_path, "SELECT suspended FROM agents WHERE id = ?",
                       (alice_id,)) == [(0,)]
    finally:
        server.stop()


# -- file descriptors ------------------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_running_out_of_file_descriptors(tmp_path):
    # SECURITY slowloris/fd exhaustion: with its descriptor table full the server neither
    # spins a core nor floods its log (one "cannot accept connections" line a second), a
    # session opened before keeps working (its send is acknowledged, R20), and the server
    # accepts again once the connections close.
    config, port = config_with(tmp_path, {"server": {"max_connections": 10000},
                                          "chat": FAST})
    group_id = int(await cli(config, "group", "add", "Shop"))
    guest_token = await cli(config, "token", "guest", "early-guest", "--group", str(group_id))
    server = LimitedServer(tmp_path, config, port, (80, 80))
    held: list[socket.socket] = []
    try:
        await server.start()
        guest = await Client.login(port, 1, guest_token)
        pid = server.process.pid
        log_offset = len(server.log())
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        for _ in range(150):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=3))
        await asyncio.sleep(1.5)
        sent = await guest.ok(22300, msg="while the table is full", client_msg_id="full")
        await asyncio.sleep(1)
        cpu = cpu_seconds(pid) - cpu_before
        window = time.monotonic() - started
        assert server.process.poll() is None, server.log()
        assert cpu / window < 0.4, f"{cpu:.2f} s of CPU in {window:.2f} s"
        refusals = [line for line in server.log()[log_offset:].splitlines()
                    if "cannot accept connections" in line]
        assert 1 <= len(refusals) <= 4, refusals  # at least one: the table really was full
        assert read_db(tmp_path, "SELECT body FROM messages WHERE id = ?",
                       (sent["message_info"]["id"],)) == [("while the table is full",)]

        for sock in held:
            sock.close()
        held.clear()
        deadline = time.monotonic() + 5
        while not await healthy(server.url, 1):
            assert time.monotonic() < deadline, "no 200 from /healthz after the connections closed"
            await asyncio.sleep(0.1)
    finally:
        for sock in held:
            sock.close()
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_soft_open_files_limit_is_raised_to_the_hard_one(tmp_path):
    # SECURITY fd exhaustion: at start cschat raises its soft RLIMIT_NOFILE to the hard one.
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4096:
        pytest.skip("the hard open files limit here is below 4096")
    config, port = config_and_port(tmp_path)
    server = LimitedServer(tmp_path, config, port, (256, 4096))
    try:
        await server.start()
        with open(f"/proc/{server.process.pid}/limits") as limits:
            [line] = [line for line in limits if line.startswith("Max open files")]
        soft, hard = line.split()[3:5]
        assert (soft, hard) == ("4096", "4096"), line
    finally:
        server.stop()


# -- files on disk and in the log ------------------------------------------------------------

@pytest.mark.gen_test(timeout=30)
async def test_database_and_wal_are_readable_by_the_owner_only(tmp_path):
    # SECURITY smaller ones: chat.db (token secret, every chat), its WAL and the uploads
    # folder are 0600 / 0600 / 0700, also when chat.db existed with 0644 before the start,
    # and even with a 0644 WAL left behind by a writer that died (an older cschat, the
    # sqlite3 shell).
    config, port = config_and_port(tmp_path, {"chat": FAST})
    await cli(config, "init")
    group_id = int(await cli(config, "group", "add", "Shop"))
    guest_token = await cli(config, "token", "guest", "mode-guest", "--group", str(group_id))
    database = tmp_path / "chat.db"
    os.chmod(database, 0o644)
    subprocess.run([sys.executable, "-c", (
        "import os, sqlite3; c = sqlite3.connect(os.environ['DB']); "
        "c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE stale (a)'); "
        "c.commit(); os._exit(0)")], env={**os.environ, "DB": str(database)}, check=True,
        timeout=10, umask=0o022)
    assert {name: os.stat(tmp_path / name).st_mode & 0o777
            for name in ("chat.db", "chat.db-wal")} == {"chat.db": 0o644, "chat.db-wal": 0o644}

    server = ServerProcess(tmp_path, config, port)
    try:
        await server.start()
        guest = await Client.login(port, 1, guest_token)
        await guest.ok(22300, msg="a message, so the WAL has content", client_msg_id="m1")
        modes = {name: os.stat(tmp_path / name).st_mode & 0o777
                 for name in ("chat.db", "chat.db-wal", "chat.db-shm", "uploads")}
        assert modes == {"chat.db": 0o600, "chat.db-wal": 0o600, "chat.db-shm": 0o600,
                         "uploads": 0o700}, {k: oct(v) for k, v in modes.items()}
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_file_ids_never_reach_the_access_log(tmp_path):
    # SECURITY smaller ones: a file id is a bearer link; the access log shows /files/…
    # requests (served and unknown alike) without the id.
    config, port = config_and_port(tmp_path, {"chat": FAST})
    group_id = int(await cli(config, "group", "add", "Shop"))
    guest_token = await cli(config, "token", "guest", "uploader", "--group", str(group_id))
    unknown_id = "Zq0uNkNoWnF1LeIdAbCdEf"  # 22 characters, as file ids are

    server = ServerProcess(tmp_path, config, port)
    try:
        await server.start()
        content_type, body = multipart("file", "photo.png", png_bytes())
        code, reply = await http(server.url, "POST", "/api/upload", body, {
            "Content-Type": content_type, "Authorization": f"Bearer {guest_token}"})
        assert code == 200 and reply["code"] == 200, reply
        file = reply["data"]
        file_id = file["file_id"]
        assert file["url"] == f"/files/{file_id}"
        assert file["thumb_url"] == f"/files/{file_id}/thumb"

        fetch = tornado.httpclient.AsyncHTTPClient().fetch
        for path in (file["url"], file["thumb_url"]):
            response = await fetch(server.url + path, raise_error=False)
            assert response.code == 200 and response.body, path
            assert response.headers["Content-Type"].startswith("image/"), path
        response = await fetch(f"{server.url}/files/{unknown_id}", raise_error=False)
        assert response.code == 404

        def access_lines() -> list[str]:
            return [line for line in server.log().splitlines() if "/files/" in line]
        await eventually(lambda: len(access_lines()) >= 3)
        lines = access_lines()
        for served in ("200 GET /files/… (", "200 GET /files/…/thumb (", "404 GET /files/… ("):
            assert any(served in line for line in lines), (served, lines)
        log = server.log()
        assert "POST /api/upload" in log
        assert file_id not in log and unknown_id not in log, lines
    finally:
        server.stop()
