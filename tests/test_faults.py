"""State stays true under faults: a full disk under the database, a write lock held by
another program, a directory changed in the middle of a login, a minute of saturation.

Everything is real: the disk is a small tmpfs that really fills, the lock is SQLite's own
taken by the test. (Kills and restarts of the process are in test_faults_process.py.)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

import pytest
from conftest import Client, assert_error, mount_tmpfs, unmount


def fill(path) -> None:
    """Write zeros to ``path`` until its disk is full."""
    # Unbuffered: a buffered file would still hold what did not fit when it closes,
    # and fail again there.
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass


async def load_of(client: Client, admin_id: int) -> int:
    listed = {a["aix"]: a for a in (await client.ok(33000))["admin_list"]}
    return listed[admin_id]["load"]


@pytest.mark.gen_test(timeout=60)
async def test_a_full_database_disk_gives_no_false_ack_and_state_stays_true(make_server,
                                                                          tmp_path):
    # SECURITY faults (full disks): every send is answered -10005 (retryable), none is
    # acknowledged without its commit; /healthz is 503 until a commit succeeds again; a
    # transfer that cannot be saved leaves memory as the database has it (PROTOCOL R20).
    disk = mount_tmpfs(tmp_path / "dbdisk", "4m")
    try:
        h = await make_server(database={"path": str(disk / "chat.db")})
        group = await h.group()
        a, b = await h.agent(group, "A"), await h.agent(group, "B")
        ca = await h.agent_client(a)
        cb = await h.agent_client(b)
        guest = await h.guest_client("u1", group)
        gid = guest.login_data["gid"]
        await guest.ok(22300, msg="before the disk filled")
        consoles = {a: ca, b: cb}
        owner, target = (a, b) if guest.login_data["agent"]["aix"] == a else (b, a)

        fill(disk / "filler")
        acked, failed_at = [], None
        for n in range(300):  # the WAL may have room left to reuse: write until it fails
            reply = await guest.call(22300, msg=f"{n:03d}" + "x" * 4000, client_msg_id=f"m{n}")
            if reply["code"] != 200:
                assert_error(reply, -10005)
                failed_at = n
                break
            acked.append(reply["data"]["message_info"]["id"])
        assert failed_at is not None, "the disk never filled"
        status, body = await h.http("GET", "/healthz")
        assert status == 503, body

        # The failed send's frames left room in the WAL that a smaller write can use: the
        # guest goes back and forth until a transfer finds none.
        for _ in range(100):
            reply = await consoles[owner].call(32400, gid=gid, aix=target)
            if reply["code"] != 200:
                break
            owner, target = target, owner
        assert_error(reply, -10005)
        await asyncio.sleep(0.3)  # the failed routing is put back from the database
        assert gid in [g["gid"] for g in (await consoles[owner].ok(32000))["guest_list"]]
        assert gid not in [g["gid"] for g in (await consoles[target].ok(32000))["guest_list"]]
        assert await load_of(ca, owner) == 1 and await load_of(ca, target) == 0

        os.unlink(disk / "filler")
        status, body = await h.http("GET", "/healthz")
        assert status == 200, body
        again = await guest.ok(22300, msg="resent", client_msg_id=f"m{failed_at}")
        assert again["message_info"]["msg"] == "resent"
        stored = dict(h.db("SELECT id, client_msg_id FROM messages WHERE gid = ?", (gid,)))
        assert set(acked) <= set(stored)
        assert list(stored.values()).count(f"m{failed_at}") == 1
        assert h.db("SELECT assigned_aix FROM guests WHERE gid = ?", (gid,)) == [(owner,)]
    finally:
        unmount(disk)


@pytest.mark.gen_test(timeout=30)
async def test_a_group_disabled_during_a_guest_login_leaves_no_working_guest(make_server):
    # Faults (a login checks, awaits, then registers): the test holds SQLite's write lock so
    # the login waits in its write, disables the group meanwhile, then lets go. The guest is
    # refused (-21004) or ends with -9999 and a close (PROTOCOL R7); it never stays working.
    h = await make_server()
    group, _, _ = await h.logged_in_agent()
    lock = sqlite3.connect(h.db_path, isolation_level=None, timeout=10)
    try:
        lock.execute("BEGIN IMMEDIATE")
        guest = await Client.connect(h.port, 1)
        seq = guest.send(21000, token=h.server.tokens.mint_guest("late", group))
        await asyncio.sleep(0.5)  # the login now waits for the lock in its write
        lock.execute("UPDATE groups SET enabled = 0 WHERE id = ?", (group,))
        lock.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                     "WHERE key = 'directory_version'")
        lock.execute("COMMIT")
    finally:
        lock.close()
    reply = await guest.response(seq)
    if reply["code"] == 200:
        assert (await guest.push(-9999, timeout=3))["code"] == -9999
        assert await guest.closed(timeout=3) is not None
    else:
        assert_error(reply, -21004)
        assert_error(await guest.call(22300, msg="hello?"), -9999)


@pytest.mark.gen_test(timeout=20)
async def test_a_suspension_is_kept_in_the_database(make_server):
    # Faults (a suspension was lost across a restart): 32500 answers only once it is stored.
    h = await make_server()
    group, admin_id, agent = await h.logged_in_agent()
    await agent.ok(32500, status=1)
    assert h.db("SELECT suspended FROM agents WHERE id = ?", (admin_id,)) == [(1,)]
    await agent.ok(32500, status=0)
    assert h.db("SELECT suspended FROM agents WHERE id = ?", (admin_id,)) == [(0,)]


SATURATION_SECONDS = 60
MAX_WAL_BYTES = 1 << 20


@pytest.mark.slow
@pytest.mark.gen_test(timeout=SATURATION_SECONDS + 60)
async def test_the_wal_stays_small_through_a_minute_of_saturation(make_server):
    # Faults (the WAL grew to 1.5 GB in 40 s): through a minute of sends as fast as the
    # server takes them, the WAL stays near [database] max_wal_bytes.
    h = await make_server(database={"max_wal_bytes": MAX_WAL_BYTES})
    group, _, _ = await h.logged_in_agent()
    guests = [await h.guest_client(f"u{n}", group) for n in range(8)]
    wal = h.db_path + "-wal"
    sizes, sent = [], 0
    deadline = time.monotonic() + SATURATION_SECONDS
    while time.monotonic() < deadline:
        seqs = [(g, g.send(22300, msg="y" * 300)) for g in guests for _ in range(25)]
        for g, seq in seqs:
            assert (await g.response(seq))["code"] == 200
        sent += len(seqs)
        sizes.append(os.path.getsize(wal))
        for g in guests:
            g.frames.clear()
    assert sent > 20_000  # without a bound, that many commits make a WAL of hundreds of MB
    # It is emptied after the commit that passes the limit: a sample may catch it just
    # before, one batch of commits larger than the limit.
    assert sorted(sizes)[len(sizes) // 2] <= 2 * MAX_WAL_BYTES, sizes
    assert max(sizes) <= 12 * MAX_WAL_BYTES, sizes
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == sent


UNKNOWN_FILE = "A" * 22  # shaped as a file_id; no such file was uploaded


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_message_in_a_group_commit_leaves_the_others_stored(make_server):
    # PROTOCOL R20, R25: the test holds SQLite's write lock so that three sends wait for the
    # same commit; the one naming an unknown file is refused (-22306) alone, the two others
    # are acknowledged, stored and counted as if they had been committed apart.
    h = await make_server()
    group, _, _ = await h.logged_in_agent()
    guests = [await h.guest_client(f"u{n}", group) for n in range(3)]
    lock = sqlite3.connect(h.db_path, isolation_level=None, timeout=10)
    try:
        lock.execute("BEGIN IMMEDIATE")
        seqs = [guests[0].send(22300, msg="first refund"),
                guests[1].send(22300, msg=UNKNOWN_FILE, file_type=1),
                guests[2].send(22300, msg="second refund")]
        await asyncio.sleep(0.3)  # all three now wait for the lock in one batch
    finally:
        lock.execute("COMMIT")
        lock.close()
    replies = [await guest.response(seq) for guest, seq in zip(guests, seqs, strict=True)]
    assert [reply["code"] for reply in replies] == [200, -22306, 200]
    assert h.db("SELECT body FROM messages ORDER BY id") == [("first refund",),
                                                             ("second refund",)]
    assert h.db("SELECT uid, message_count FROM guests ORDER BY uid") == [
        ("u0", 1), ("u1", 0), ("u2", 1)]
    assert h.db("SELECT COUNT(*) FROM conversations") == [(2,)]
