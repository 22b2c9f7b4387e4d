"""The storage seam: every SQL statement of cschat lives in this module.

SQLite in WAL mode, through two aiosqlite connections, each with its own
thread:

* the **writer** takes whole units of work (plain functions of a
  ``sqlite3.Connection``), groups all that are waiting into one transaction
  with a savepoint per unit, commits once, and only then answers each caller.
  Many concurrent sends therefore cost one commit (and one fsync), and a
  caller that got its answer knows its unit is durable (PROTOCOL R20).
* the **reader** runs queries on its own connection, so reads never wait
  behind a commit (WAL lets them see the last committed state).

A unit runs on the connection's thread in one aiosqlite call: it may run any
number of statements for the cost of one hop between threads (~100 µs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite

from cschat.logs import ThrottledLog

log = logging.getLogger("cschat.store")

_MAX_UNITS_PER_COMMIT = 2000
_BUSY_TIMEOUT_MS = 5000
_CHECKPOINT_WAIT_MS = 200
_PROBE_BYTES = 256 * 1024
CHECKPOINT_SECONDS = 1.0

# A step is an SQL statement or a function of the connection.
_MIGRATIONS: list[list[str | Callable[[sqlite3.Connection], None]]] = [
    [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at INTEGER NOT NULL)""",
        """CREATE TABLE agents (
            id INTEGER PRIMARY KEY,
            group_id INTEGER NOT NULL REFERENCES groups(id),
            name TEXT NOT NULL,
            avatar TEXT NOT NULL DEFAULT '',
            username TEXT UNIQUE,
            password_hash TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at INTEGER NOT NULL)""",
        # A guest has exactly one conversation (with its group), so the
        # conversation's state lives on the guest's row.
        """CREATE TABLE guests (
            gid INTEGER PRIMARY KEY,
            group_id INTEGER NOT NULL REFERENCES groups(id),
            uid TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            avatar TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            assigned_aix INTEGER,
            last_aix INTEGER,
            queued_at INTEGER,
            last_message_id INTEGER,
            message_count INTEGER NOT NULL DEFAULT 0,
            agent_read_id INTEGER NOT NULL DEFAULT 0,
            guest_read_id INTEGER NOT NULL DEFAULT 0,
            unread_by_agent INTEGER NOT NULL DEFAULT 0,
            unread_by_guest INTEGER NOT NULL DEFAULT 0,
            UNIQUE (group_id, uid))""",
        """CREATE INDEX guests_by_agent ON guests (assigned_aix, updated_at)
            WHERE assigned_aix IS NOT NULL""",
        """CREATE INDEX guests_queued ON guests (group_id, queued_at)
            WHERE queued_at IS NOT NULL""",
        # AUTOINCREMENT: ids are never reused, so after_id cursors stay valid.
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            gid INTEGER NOT NULL REFERENCES guests(gid),
            sender TEXT NOT NULL CHECK (sender IN ('guest', 'agent', 'system')),
            admin_id INTEGER,
            file_type INTEGER NOT NULL,
            body TEXT NOT NULL,
            client_msg_id TEXT,
            created_at INTEGER NOT NULL)""",
        """CREATE INDEX messages_by_conversation ON messages (gid, id)""",
        """CREATE UNIQUE INDEX messages_guest_client_id ON messages (gid, client_msg_id)
            WHERE sender = 'guest' AND client_msg_id IS NOT NULL""",
        """CREATE UNIQUE INDEX messages_agent_client_id ON messages (admin_id, client_msg_id)
            WHERE sender = 'agent' AND client_msg_id IS NOT NULL""",
    ],
    [
        """CREATE TABLE files (
            id TEXT PRIMARY KEY,
            file_type INTEGER NOT NULL,
            group_id INTEGER NOT NULL,
            uploader TEXT NOT NULL CHECK (uploader IN ('guest', 'agent')),
            uploader_id INTEGER NOT NULL,
            mime TEXT NOT NULL,
            size INTEGER NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            path TEXT NOT NULL,
            thumb_path TEXT,
            thumb_mime TEXT,
            used INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL)""",
        """CREATE INDEX files_unused ON files (created_at) WHERE used = 0""",
    ],
    [
        # A message's position in its conversation (1 = first): page N of a history is
        # then a range lookup, not an OFFSET scan over every newer message. Positions
        # are dense because messages are never deleted.
        """ALTER TABLE messages ADD COLUMN position INTEGER""",
        """UPDATE messages SET position = numbered.n FROM (
            SELECT id, ROW_NUMBER() OVER (PARTITION BY gid ORDER BY id) AS n FROM messages
           ) AS numbered WHERE messages.id = numbered.id""",
        """CREATE UNIQUE INDEX messages_by_position ON messages (gid, position)""",
    ],
    [
        # Bumped by a password change, a disable and "sign out everywhere": tokens
        # cschat minted with an older version stop working (docs/security.md).
        """ALTER TABLE agents ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0""",
        # A suspension (32500) outlives a restart of the server.
        """ALTER TABLE agents ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0""",
        # 1 once the guest wrote in the current assignment or wait: only such a
        # conversation counts toward an agent's load and capacity.
        """ALTER TABLE guests ADD COLUMN engaged INTEGER NOT NULL DEFAULT 0""",
        """UPDATE guests SET engaged = 1 WHERE unread_by_agent > 0
            OR (assigned_aix IS NOT NULL AND EXISTS (SELECT 1 FROM messages m
                WHERE m.gid = guests.gid AND m.sender = 'guest'))""",
        """CREATE INDEX files_by_uploader ON files (uploader, uploader_id, created_at)""",
        lambda conn: _heal_non_finite_cards(conn),
    ],
    [
        # What a system message records, as JSON with a machine code ({"event":
        # "transfer", ...}), so clients can show it in the reader's language.
        """ALTER TABLE messages ADD COLUMN event TEXT""",
    ],
]
SCHEMA_VERSION = len(_MIGRATIONS)

_MESSAGE_FIELDS = ("id", "gid", "sender", "admin_id", "file_type", "body", "client_msg_id",
                   "created_at", "event")
_MESSAGE_COLUMNS = ", ".join(f"m.{c}" for c in _MESSAGE_FIELDS)
_GUEST_COLUMNS = "g.gid, g.group_id, g.uid, g.name, g.avatar, g.updated_at, g.assigned_aix, " \
                 "g.last_aix, g.queued_at, g.last_message_id, g.message_count, g.agent_read_id, " \
                 "g.guest_read_id, g.unread_by_agent, g.unread_by_guest"
_LAST_MESSAGE_COLUMNS = ", ".join(f"lm.{c} AS lm_{c}" for c in _MESSAGE_FIELDS)


# What a new message changes on its conversation besides the counters every message moves.
_COUNTERS_OF_SENDER = {"guest": ", unread_by_agent = unread_by_agent + 1, engaged = 1",
                       "agent": ", unread_by_guest = unread_by_guest + 1", "system": ""}


class StoreError(Exception):
    """A write that the data does not allow (duplicate username, unknown id, ...)."""


class StorageUnavailable(StoreError):
    """The database could not commit (full disk, I/O error, locked too long): nothing of
    the write was kept, and the same write may succeed later."""


class FileRefused(StoreError):
    """A message names a file that its sender may not send: unknown, foreign, or of
    another file_type (``wrong_type``)."""

    def __init__(self, message: str, wrong_type: bool = False):
        super().__init__(message)
        self.wrong_type = wrong_type


@dataclasses.dataclass(frozen=True)
class Attachment:
    """The file a media message sends, and who may send it: the uploading guest
    (``guest_gid``) or any agent of the file's group (``group_id``)."""

    file_id: str
    file_type: int
    guest_gid: int | None = None
    group_id: int | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def _message(row: sqlite3.Row, agent_read_id: int, guest_read_id: int, prefix: str = "") -> dict:
    """A message row as a dict, with ``read`` worked out from the read pointers."""
    message = {key: row[prefix + key] for key in
               _MESSAGE_FIELDS}
    pointer = agent_read_id if message["sender"] == "guest" else guest_read_id
    message["read"] = message["id"] <= pointer
    return message


def _guest(row: sqlite3.Row) -> dict:
    guest = {key: row[key] for key in row.keys() if not key.startswith("lm_")}
    guest["last_message"] = (_message(row, row["agent_read_id"], row["guest_read_id"], "lm_")
                             if "lm_id" in row.keys() and row["lm_id"] is not None else None)
    return guest


def _run_units(conn: sqlite3.Connection, units: list[Callable]) -> list[tuple[bool, Any]]:
    """Run ``units`` in one transaction, each in a savepoint; commit once.

    A unit that raises is rolled back alone and its exception is returned in
    its place; if the commit itself fails, every unit fails with that error.
    """
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for unit in units:
            conn.execute("SAVEPOINT unit")
            try:
                outcomes.append((True, unit(conn)))
            except Exception as error:  # noqa: BLE001 - handed back to its caller
                conn.execute("ROLLBACK TO unit")
                outcomes.append((False, _as_unavailable(error)))
            conn.execute("RELEASE unit")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


# SQLite's primary result codes that say "not now" rather than "never".
_TRANSIENT = {5: "busy", 6: "locked", 8: "read-only", 10: "I/O error", 13: "disk full",
              14: "cannot open", 15: "lock protocol"}


def _as_unavailable(error: Exception) -> Exception:
    """``error`` as :class:`StorageUnavailable` when it is one SQLite may get over."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, sqlite3.OperationalError) and code is not None and \
            code & 0xFF in _TRANSIENT:
        return StorageUnavailable(f"{_TRANSIENT[code & 0xFF]}: {error}")
    return error


def _probe_write(conn: sqlite3.Connection) -> None:
    """Write (and take back) as much as a busy batch of messages: after a failed commit, a
    write this size must succeed before the database counts as healthy again."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('health_probe', ?)",
                 ("x" * _PROBE_BYTES,))
    conn.execute("DELETE FROM meta WHERE key = 'health_probe'")


def _checkpoint_truncate(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """``(busy, frames, checkpointed)``; waits at most a moment for readers."""
    conn.execute(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
    try:
        return conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def _run_query(conn: sqlite3.Connection, query: Callable) -> Any:
    return query(conn)


class Store:
    """The database of one cschat instance. Open with :meth:`open`, end with :meth:`close`."""

    def __init__(self, path: str, synchronous: str = "full", max_wal_bytes: int = 32 << 20):
        self.path = path
        self._synchronous = synchronous
        self._max_wal_bytes = max_wal_bytes
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: list[tuple[Callable, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task | None = None
        self._closing = False
        self.healthy = True  # False from a failed commit until one succeeds
        self._failures = ThrottledLog(log)
        self._wal_retry_at = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> Store:
        """Connect, switch to WAL, migrate the schema to :data:`SCHEMA_VERSION`."""
        self._writer = await self._connect()
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await self._writer.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        # SQLite would checkpoint inside whichever commit fills the WAL, stalling that
        # commit, and every send waiting on it, for as long as copying the pages takes.
        # A connection of its own checkpoints instead, beside the commits.
        await self._writer.execute("PRAGMA wal_autocheckpoint=0")
        # After the WAL has been emptied, its file shrinks back to this size.
        await self._writer.execute(f"PRAGMA journal_size_limit={self._max_wal_bytes // 4}")
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop())
        try:
            await self.write(_migrate)
        except BaseException:
            await self.close()
            raise
        self._reader = await self._connect()
        await self._reader.execute("PRAGMA query_only=1")
        self._checkpointer = await self._connect()
        self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint_loop())
        return self

    async def _checkpoint_loop(self) -> None:
        """Copy committed pages from the WAL into the database file, off the commit path."""
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            try:
                await self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as error:  # busy or failing disk: try again next round
                log.warning("checkpoint failed: %s", error)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def close(self) -> None:
        """Commit what is pending, then close the connections."""
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
        self._closing = True
        self._wakeup.set()
        if self._writer_task is not None:
            await self._writer_task
        for conn in (self._checkpointer, self._reader, self._writer):
            if conn is not None:
                await conn.close()

    # -- the two paths ---------------------------------------------------------------

    def write(self, unit: Callable[[sqlite3.Connection], Any]) -> asyncio.Future:
        """Queue ``unit`` for the next group commit.

        Returns a future that resolves to the unit's result once the
        transaction holding it has committed, or raises what the unit raised.
        Units are run and committed in the order they were queued.
        """
        future = asyncio.get_running_loop().create_future()
        if self._closing and self._writer_task is not None and self._writer_task.done():
            future.set_exception(StoreError("the store is closed"))
            return future
        self._pending.append((unit, future))
        self._wakeup.set()
        return future

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:_MAX_UNITS_PER_COMMIT]
                del self._pending[:_MAX_UNITS_PER_COMMIT]
                await self._commit(batch)
                await self._bound_wal()
            if self._closing:
                return

    async def _bound_wal(self) -> None:
        """Empty the WAL when it has grown past ``max_wal_bytes``.

        The checkpoint loop copies pages out of the WAL beside the commits,
        but under sustained writes it never finds the WAL fully copied, so
        SQLite never starts it over and it grows without end. Between two
        commits (so no write of ours is in flight) the writer checks its size
        and, past the limit, checkpoints and truncates it: a short pause,
        since most pages were copied already. A reader that holds the WAL
        (a long backup) makes it wait a second before trying again.
        """
        if time.monotonic() < self._wal_retry_at:
            return
        try:
            if os.path.getsize(self.path + "-wal") < self._max_wal_bytes:
                return
            busy, _, _ = await self._writer._execute(_checkpoint_truncate, self._writer._conn)
        except (OSError, sqlite3.Error) as error:
            log.warning("emptying the WAL failed: %s", error)
            busy = True
        if busy:
            self._wal_retry_at = time.monotonic() + CHECKPOINT_SECONDS

    async def _commit(self, batch: list[tuple[Callable, asyncio.Future]]) -> None:
        try:
            # aiosqlite has no public call that runs a function on its thread;
            # _execute is that call, and it is what makes a batch one hop.
            outcomes = await self._writer._execute(
                _run_units, self._writer._conn, [unit for unit, _ in batch])
        except Exception as error:
            # A full disk fails every commit until room is made: one line a second.
            self._failures.error("group commit of %d units failed: %s", len(batch), error)
            self.healthy = False
            outcomes = [(False, _as_unavailable(error))] * len(batch)
        else:
            # A unit may fail alone on a full disk while the (empty) commit succeeds.
            self.healthy = not any(not ok and isinstance(value, StorageUnavailable)
                                   for ok, value in outcomes)
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def read(self, query: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``query`` on the reader connection and return its result."""
        return await self._reader._execute(_run_query, self._reader._conn, query)

    # -- directory: groups and agents --------------------------------------------------

    async def add_group(self, name: str) -> int:
        def unit(conn):
            cursor = conn.execute("INSERT INTO groups (name, created_at) VALUES (?, ?)",
                                  (name, now_ms()))
            _bump_directory(conn)
            return cursor.lastrowid
        return await self.write(unit)

    async def set_group_enabled(self, group_id: int, enabled: bool) -> None:
        """Raises :class:`StoreError` if the group does not exist."""
        await self.write(_set_enabled("groups", group_id, enabled))

    async def add_agent(self, group_id: int, name: str, avatar: str, username: str | None,
                        password_hash: str | None) -> int:
        """Raises :class:`StoreError` for an unknown group or a taken username."""
        def unit(conn):
            if conn.execute("SELECT 1 FROM groups WHERE id = ?", (group_id,)).fetchone() is None:
                raise StoreError(f"no group {group_id}")
            try:
                cursor = conn.execute(
                    "INSERT INTO agents (group_id, name, avatar, username, password_hash, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (group_id, name, avatar, username, password_hash, now_ms()))
            except sqlite3.IntegrityError:
                raise StoreError(f"username {username!r} is taken") from None
            _bump_directory(conn)
            return cursor.lastrowid
        return await self.write(unit)

    async def set_agent_enabled(self, admin_id: int, enabled: bool) -> None:
        """Raises :class:`StoreError` if the agent does not exist."""
        await self.write(_set_enabled("agents", admin_id, enabled))

    async def set_agent_password(self, admin_id: int, password_hash: str,
                                 revoke: bool = True) -> None:
        """Set a new password and (unless ``revoke`` is False) revoke the agent's tokens
        in the same write.

        Raises :class:`StoreError` for an unknown agent or one without a username.
        """
        def unit(conn):
            row = conn.execute("SELECT username FROM agents WHERE id = ?", (admin_id,)).fetchone()
            if row is None:
                raise StoreError(f"no agent {admin_id}")
            if row["username"] is None:
                raise StoreError(f"agent {admin_id} has no username to sign in with")
            revoking = f", {_REVOKE_TOKENS}" if revoke else ""
            conn.execute(f"UPDATE agents SET password_hash = ?{revoking} WHERE id = ?",
                         (password_hash, admin_id))
            _bump_directory(conn)
        await self.write(unit)

    async def upgrade_password_hash(self, admin_id: int, old_hash: str, new_hash: str) -> None:
        """Replace ``old_hash`` by a stronger hash of the same password; tokens stay valid.

        Does nothing if the password changed meanwhile.
        """
        await self.write(lambda conn: conn.execute(
            "UPDATE agents SET password_hash = ? WHERE id = ? AND password_hash = ?",
            (new_hash, admin_id, old_hash)))

    async def sign_out_agent(self, admin_id: int) -> None:
        """Revoke every token cschat minted for the agent ("sign out everywhere").

        Raises :class:`StoreError` if the agent does not exist.
        """
        def unit(conn):
            cursor = conn.execute(f"UPDATE agents SET {_REVOKE_TOKENS} WHERE id = ?", (admin_id,))
            if cursor.rowcount == 0:
                raise StoreError(f"no agent {admin_id}")
            _bump_directory(conn)
        await self.write(unit)

    async def forget_passwords(self, admin_ids: list[int]) -> None:
        """Remove the passwords of these agents and revoke their tokens (if they had one)."""
        def unit(conn):
            cursor = conn.executemany(
                f"UPDATE agents SET password_hash = NULL, {_REVOKE_TOKENS} "
                "WHERE id = ? AND password_hash IS NOT NULL", [(i,) for i in admin_ids])
            if cursor.rowcount:
                _bump_directory(conn)
        await self.write(unit)

    async def list_groups(self) -> list[dict]:
        return await self.read(lambda conn: [dict(row) for row in conn.execute(
            "SELECT id, name, enabled FROM groups ORDER BY id")])

    async def list_agents(self) -> list[dict]:
        return await self.read(lambda conn: [dict(row) for row in conn.execute(
            "SELECT id, group_id, name, avatar, username, enabled FROM agents ORDER BY id")])

    async def group(self, group_id: int) -> dict | None:
        return await self.read(lambda conn: _one(conn.execute(
            "SELECT id, name, enabled FROM groups WHERE id = ?", (group_id,))))

    async def agent(self, admin_id: int) -> dict | None:
        """The agent with its ``token_version`` and its group's ``group_enabled`` flag
        (None if the group is gone)."""
        return await self.read(lambda conn: _one(conn.execute(
            "SELECT a.id, a.group_id, a.name, a.avatar, a.enabled, a.token_version, "
            "g.enabled AS group_enabled "
            "FROM agents a LEFT JOIN groups g ON g.id = a.group_id WHERE a.id = ?",
            (admin_id,))))

    async def agent_login(self, username: str) -> dict | None:
        """What signing in by password needs of the agent with this username, or None."""
        return await self.read(lambda conn: _one(conn.execute(
            "SELECT a.id, a.password_hash, a.enabled, a.token_version, "
            "g.enabled AS group_enabled "
            "FROM agents a LEFT JOIN groups g ON g.id = a.group_id WHERE a.username = ?",
            (username,))))

    async def directory_version(self) -> int:
        """A number that changes whenever a group or an agent is added, enabled or disabled,
        or an agent's tokens are revoked."""
        return await self.read(_directory_version)

    async def secret(self) -> str:
        """The token secret kept in the database, created on first use."""
        def unit(conn):
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)",
                         (secrets.token_hex(32),))
            return conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0]
        return await self.write(unit)

    async def meta(self, key: str) -> str | None:
        return await self.read(lambda conn: (_one(conn.execute(
            "SELECT value FROM meta WHERE key = ?", (key,))) or {}).get("value"))

    async def set_meta(self, key: str, value: str) -> None:
        await self.write(lambda conn: conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)))

    # -- guests and conversations --------------------------------------------------------

    async def guest_by_uid(self, group_id: int, uid: str) -> dict | None:
        return await self.read(lambda conn: _one(conn.execute(
            f"SELECT {_GUEST_COLUMNS} FROM guests g WHERE g.group_id = ? AND g.uid = ?",
            (group_id, uid))))

    async def upsert_guest(self, group_id: int, uid: str, name: str, avatar: str) -> dict:
        """Create the guest ``(group_id, uid)`` or update its non-empty name and avatar."""
        def unit(conn):
            now = now_ms()
            conn.execute(
                "INSERT INTO guests (group_id, uid, name, avatar, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (group_id, uid) DO UPDATE SET "
                "name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END, "
                "avatar = CASE WHEN excluded.avatar != '' THEN excluded.avatar ELSE avatar END",
                (group_id, uid, name, avatar, now, now))
            return dict(conn.execute(
                f"SELECT {_GUEST_COLUMNS} FROM guests g WHERE g.group_id = ? AND g.uid = ?",
                (group_id, uid)).fetchone())
        return await self.write(unit)

    async def conversations(self, gids: Iterable[int] = (), assigned_to: int | None = None
                            ) -> list[dict]:
        """Guest rows with ``last_message``: the given gids, or those assigned to an agent.

        Ordered by most recent activity first.
        """
        if assigned_to is not None:
            where, params = "g.assigned_aix = ?", [assigned_to]
        else:
            params = list(gids)
            where = f"g.gid IN ({','.join('?' * len(params))})"
        return await self.read(lambda conn: _conversations(conn, where, params))

    async def guest(self, gid: int) -> dict | None:
        rows = await self.conversations([gid])
        return rows[0] if rows else None

    async def routing_state(self, gids: Iterable[int] | None = None) -> list[dict]:
        """Every conversation that is assigned or queued, for rebuilding routing at start;
        or, with ``gids``, the routing columns of those conversations whatever they hold."""
        if gids is None:
            where, params = "assigned_aix IS NOT NULL OR queued_at IS NOT NULL", []
        else:
            params = list(gids)
            where = f"gid IN ({','.join('?' * len(params))})"
        return await self.read(lambda conn: [dict(row) for row in conn.execute(
            "SELECT gid, group_id, assigned_aix, last_aix, queued_at, engaged "
            f"FROM guests WHERE {where} ORDER BY queued_at, gid", params)])

    async def directory(self) -> tuple[int, list[dict], list[dict]]:
        """``(directory_version, groups, agents)`` as of one moment: what the server keeps in
        memory of every group and agent."""
        def query(conn):
            return (_directory_version(conn),
                    [dict(row) for row in conn.execute("SELECT id, enabled FROM groups")],
                    [dict(row) for row in conn.execute(
                        "SELECT id, group_id, name, avatar, enabled, token_version, suspended "
                        "FROM agents ORDER BY id")])
        return await self.read(query)

    async def set_agent_suspended(self, admin_id: int, suspended: bool) -> None:
        """Keep an agent's suspension (32500) across restarts."""
        await self.write(lambda conn: conn.execute(
            "UPDATE agents SET suspended = ? WHERE id = ?", (int(suspended), admin_id)))

    def save_routing(self, changes: list[tuple[int, int | None, int | None, int | None, bool]],
                     recent: int = 20) -> asyncio.Future:
        """Queue ``(gid, assigned_aix, last_aix, queued_at, engaged)`` rows for the next commit.

        An assignment also counts as activity, so the conversation moves to
        the top of its agent's list. The future resolves to a dict mapping
        each assigned gid to ``(guest row with last_message, its last
        `recent` messages oldest first)`` as committed, which is what the
        assignment push carries; reading it in the same unit keeps that push
        free of a later read that newer pushes could overtake.
        """
        def unit(conn):
            now = now_ms()
            snapshots = {}
            for gid, assigned, last, queued_at, engaged in changes:
                conn.execute(
                    "UPDATE guests SET assigned_aix = ?, last_aix = ?, queued_at = ?, "
                    "engaged = ?, "
                    "updated_at = CASE WHEN ? IS NOT NULL THEN ? ELSE updated_at END "
                    "WHERE gid = ?", (assigned, last, queued_at, int(engaged), assigned, now, gid))
                if assigned is not None:
                    snapshots[gid] = (_conversations(conn, "g.gid = ?", [gid])[0],
                                      _history(conn, gid, 1, recent, None, None)[0])
            return snapshots
        return self.write(unit)

    # -- messages ----------------------------------------------------------------------

    def add_message(self, gid: int, sender: str, admin_id: int | None, file_type: int,
                    body: str, client_msg_id: str | None,
                    attachment: Attachment | None = None,
                    event: str | None = None) -> asyncio.Future:
        """Queue a message for the next commit (PROTOCOL R20, R21).

        The future resolves to ``(message, created)``: the stored message as a
        dict, and False when a message of the same sender with the same
        ``client_msg_id`` already existed (that first message is returned).
        With an ``attachment``, the body becomes its file object (R25) and the
        file is marked used, or the future raises :class:`FileRefused`.
        """
        def unit(conn):
            if client_msg_id is not None:
                owner = ("gid", gid) if sender == "guest" else ("admin_id", admin_id)
                row = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS}, g.agent_read_id, g.guest_read_id "
                    "FROM messages m JOIN guests g ON g.gid = m.gid "
                    f"WHERE m.sender = ? AND m.{owner[0]} = ? AND m.client_msg_id = ?",
                    (sender, owner[1], client_msg_id)).fetchone()
                if row is not None:
                    return _message(row, row["agent_read_id"], row["guest_read_id"]), False
            stored_body = body if attachment is None else _claim_file(conn, attachment)
            created_at = now_ms()
            cursor = conn.execute(
                "INSERT INTO messages (gid, sender, admin_id, file_type, body, client_msg_id, "
                "created_at, event, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "(SELECT message_count + 1 FROM guests WHERE gid = ?))",
                (gid, sender, admin_id, file_type, stored_body, client_msg_id, created_at, event,
                 gid))
            conn.execute(
                "UPDATE guests SET last_message_id = ?, updated_at = ?, "
                f"message_count = message_count + 1{_COUNTERS_OF_SENDER[sender]} WHERE gid = ?",
                (cursor.lastrowid, created_at, gid))
            return {"id": cursor.lastrowid, "gid": gid, "sender": sender, "admin_id": admin_id,
                    "file_type": file_type, "body": stored_body, "client_msg_id": client_msg_id,
                    "created_at": created_at, "event": event, "read": False}, True
        return self.write(unit)

    async def mark_read(self, gid: int, reader: str) -> int:
        """Mark the other side's messages read by ``reader`` ('agent' or 'guest').

        Returns the new read pointer: the id of the conversation's last message.
        """
        pointer, counter = (("agent_read_id", "unread_by_agent") if reader == "agent"
                            else ("guest_read_id", "unread_by_guest"))

        def unit(conn):
            conn.execute(
                f"UPDATE guests SET {pointer} = last_message_id, {counter} = 0 "
                f"WHERE gid = ? AND last_message_id > {pointer}", (gid,))
            return conn.execute(f"SELECT {pointer} FROM guests WHERE gid = ?",
                                (gid,)).fetchone()[0]
        return await self.write(unit)

    async def history(self, gid: int, page_index: int, page_size: int,
                      before_id: int | None, after_id: int | None) -> tuple[list[dict], int]:
        """One page of a conversation, oldest first, and its total message count.

        With ``after_id``: the first ``page_size`` messages after it. Otherwise
        the newest messages (below ``before_id`` when given), page 1 newest.
        """
        return await self.read(
            lambda conn: _history(conn, gid, page_index, page_size, before_id, after_id))

    # -- files -----------------------------------------------------------------------------

    async def add_file(self, record: dict, since_ms: int,
                       admit: Callable[[UploadUsage], None]) -> None:
        """Record an uploaded file; ``record`` has the columns of the files table.

        ``admit`` is called with its uploader's :class:`UploadUsage` since
        ``since_ms`` in the same transaction as the insert, so concurrent
        uploads cannot pass a quota together; what it raises is raised here
        and nothing is recorded.
        """
        def unit(conn):
            admit(_upload_usage(conn, record["uploader"], record["uploader_id"], since_ms))
            columns = ", ".join(record)
            conn.execute(f"INSERT INTO files ({columns}, created_at) VALUES "
                         f"({', '.join('?' * len(record))}, ?)", (*record.values(), now_ms()))
        await self.write(unit)

    async def upload_usage(self, uploader: str, uploader_id: int, since_ms: int
                           ) -> UploadUsage:
        """What ``uploader`` (guest or agent) ``uploader_id`` stored since ``since_ms``."""
        return await self.read(lambda conn: _upload_usage(conn, uploader, uploader_id, since_ms))

    async def file(self, file_id: str) -> dict | None:
        return await self.read(lambda conn: _one(conn.execute(
            "SELECT * FROM files WHERE id = ?", (file_id,))))

    async def remove_unused_files(self, older_than_ms: int, guests_older_than_ms: int
                                  ) -> list[str]:
        """Delete the records of files no message used, uploaded before ``older_than_ms``,
        or by a guest before ``guests_older_than_ms``.

        Returns their stored paths (thumbnails included) for the caller to unlink.
        """
        def unit(conn):
            rows = conn.execute(
                "DELETE FROM files WHERE used = 0 AND (created_at < ? "
                "OR (uploader = 'guest' AND created_at < ?)) "
                "RETURNING path, thumb_path", (older_than_ms, guests_older_than_ms)).fetchall()
            return [path for row in rows for path in row if path]
        return await self.write(unit)

    async def ping(self) -> bool:
        """True when the database answers; after a failed commit, only once a commit
        succeeds again (a harmless one is tried)."""
        if not self.healthy:
            try:
                await self.write(_probe_write)
            except StorageUnavailable:
                return False
        return await self.read(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1)


def _conversations(conn: sqlite3.Connection, where: str, params: list) -> list[dict]:
    return [_guest(row) for row in conn.execute(
        f"SELECT {_GUEST_COLUMNS}, {_LAST_MESSAGE_COLUMNS} FROM guests g "
        f"LEFT JOIN messages lm ON lm.id = g.last_message_id WHERE {where} "
        "ORDER BY g.updated_at DESC, g.gid DESC", params)]


def _history(conn: sqlite3.Connection, gid: int, page_index: int, page_size: int,
             before_id: int | None, after_id: int | None) -> tuple[list[dict], int]:
    guest = conn.execute(
        "SELECT message_count, agent_read_id, guest_read_id FROM guests WHERE gid = ?",
        (gid,)).fetchone()
    sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.gid = ?"
    params: list[Any] = [gid]
    if after_id is not None:
        sql += " AND m.id > ?"
        params.append(after_id)
    if before_id is not None:
        sql += " AND m.id < ?"
        params.append(before_id)
    if after_id is not None:
        sql += " ORDER BY m.id LIMIT ?"
        params.append(page_size)
    elif before_id is not None:
        sql += " ORDER BY m.id DESC LIMIT ?"
        params.append(page_size)
    else:
        newest = guest["message_count"] - (page_index - 1) * page_size
        sql += " AND m.position > ? AND m.position <= ? ORDER BY m.id DESC"
        params += [newest - page_size, newest]
    rows = conn.execute(sql, params).fetchall()
    if after_id is None:
        rows.reverse()
    return ([_message(row, guest["agent_read_id"], guest["guest_read_id"]) for row in rows],
            guest["message_count"])


@dataclasses.dataclass(frozen=True)
class UploadUsage:
    """One uploader's files: ``bytes`` stored since a time and the ``oldest_ms`` of
    those (None: none), and ``unsent``, how many of all its files no message uses."""

    bytes: int
    oldest_ms: int | None
    unsent: int


def _upload_usage(conn: sqlite3.Connection, uploader: str, uploader_id: int,
                  since_ms: int) -> UploadUsage:
    size, oldest = conn.execute(
        "SELECT COALESCE(SUM(size), 0), MIN(created_at) FROM files "
        "WHERE uploader = ? AND uploader_id = ? AND created_at >= ?",
        (uploader, uploader_id, since_ms)).fetchone()
    unsent = conn.execute(
        "SELECT COUNT(*) FROM files WHERE uploader = ? AND uploader_id = ? AND used = 0",
        (uploader, uploader_id)).fetchone()[0]
    return UploadUsage(size, oldest, unsent)


def file_object(row: sqlite3.Row | dict) -> dict:
    """The file object of PROTOCOL R25 for a files row."""
    obj = {"file_id": row["id"], "url": f"/files/{row['id']}", "name": row["name"],
           "size": row["size"], "mime": row["mime"]}
    if row["width"] is not None:
        obj.update(width=row["width"], height=row["height"])
    if row["thumb_path"]:
        obj["thumb_url"] = f"/files/{row['id']}/thumb"
    return obj


def _claim_file(conn: sqlite3.Connection, attachment: Attachment) -> str:
    row = conn.execute("SELECT * FROM files WHERE id = ?", (attachment.file_id,)).fetchone()
    allowed = row is not None and (
        (row["uploader"] == "guest" and row["uploader_id"] == attachment.guest_gid)
        if attachment.guest_gid is not None else row["group_id"] == attachment.group_id)
    if not allowed:
        raise FileRefused("unknown file id")
    if row["file_type"] != attachment.file_type:
        raise FileRefused(f"the file is file_type {row['file_type']}", wrong_type=True)
    conn.execute("UPDATE files SET used = 1 WHERE id = ? AND used = 0", (attachment.file_id,))
    return json.dumps(file_object(row), ensure_ascii=False, separators=(",", ":"))


def _one(cursor: sqlite3.Cursor) -> dict | None:
    row = cursor.fetchone()
    return dict(row) if row is not None else None


def _directory_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'directory_version'").fetchone()
    return int(row["value"]) if row else 0


def _bump_directory(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('directory_version', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")


# Tokens cschat minted for an agent carry its token_version: bumping it revokes them.
_REVOKE_TOKENS = "token_version = token_version + 1"


def _set_enabled(table: str, row_id: int, enabled: bool) -> Callable:
    # Disabling an agent also revokes its tokens: enabling it again does not revive them.
    revoke = f", {_REVOKE_TOKENS}" if table == "agents" and not enabled else ""

    def unit(conn):
        cursor = conn.execute(f"UPDATE {table} SET enabled = ?{revoke} WHERE id = ?",
                              (int(enabled), row_id))
        if cursor.rowcount == 0:
            raise StoreError(f"no {table[:-1]} {row_id}")
        _bump_directory(conn)
    return unit


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"the database has schema {version}, newer than this cschat "
                         f"({SCHEMA_VERSION}); upgrade cschat")
    for number in range(version, SCHEMA_VERSION):
        for step in _MIGRATIONS[number]:
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
        conn.execute(f"PRAGMA user_version = {number + 1}")
        log.info("database migrated to schema %d", number + 1)


def _heal_non_finite_cards(conn: sqlite3.Connection) -> None:
    """Rewrite cards stored with NaN or Infinity (which no client can parse) with null."""
    rows = conn.execute(
        "SELECT id, body FROM messages WHERE file_type IN (3, 4) "
        "AND (body LIKE '%Infinity%' OR body LIKE '%NaN%')").fetchall()
    for row in rows:
        try:
            card = json.loads(row["body"], parse_constant=lambda _constant: None)
        except ValueError:
            continue
        healed = json.dumps(card, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if healed != row["body"]:
            conn.execute("UPDATE messages SET body = ? WHERE id = ?", (healed, row["id"]))
            log.warning("message %d: a card number that was not finite is now null", row["id"])
