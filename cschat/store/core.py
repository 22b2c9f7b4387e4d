"""The store's connections, its one write path, and the chat's own queries.

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
import contextlib
import dataclasses
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import aiosqlite

from cschat.logs import ThrottledLog
from cschat.store.conversations import ROUTED, record_routing
from cschat.store.desk import DeskQueries
from cschat.store.directory import DirectoryQueries
from cschat.store.errors import StorageUnavailable, StoreError
from cschat.store.mail import MailQueries, queue_replies_mail
from cschat.store.messages import MESSAGE_COLUMNS, Attachment, insert_message
from cschat.store.outbox import OutboxQueries
from cschat.store.reception import ReceptionQueries
from cschat.store.reports import ReportQueries
from cschat.store.schema import migrate
from cschat.store.util import LAST_MESSAGE_COLUMNS, message_of, meta_value, now_ms, one, set_meta

log = logging.getLogger("cschat.store")

_MAX_UNITS_PER_COMMIT = 2000
_BUSY_TIMEOUT_MS = 5000
_CHECKPOINT_WAIT_MS = 200
_PROBE_BYTES = 256 * 1024
CHECKPOINT_SECONDS = 0.25
COMMIT_DELAY = 0.001  # seconds a commit of fewer than COALESCE_BELOW units waits for more
COALESCE_BELOW = 16


_GUEST_COLUMNS = "g.gid, g.group_id, g.uid, g.name, g.avatar, g.updated_at, g.assigned_aix, " \
                 "g.last_aix, g.queued_at, g.last_message_id, g.message_count, g.agent_read_id, " \
                 "g.guest_read_id, g.unread_by_agent, g.unread_by_guest, g.context, g.visits, " \
                 "g.created_at, g.conversation_id, g.blocked_at, " \
                 "(SELECT c.left_message FROM conversations c " \
                 "WHERE c.id = g.conversation_id) AS left_message, " \
                 "(SELECT json_group_array(tag) FROM (SELECT tag FROM conversation_tags t " \
                 "WHERE t.conversation_id = g.conversation_id ORDER BY tag)) AS tags"


def _guest(row: sqlite3.Row) -> dict:
    guest = {key: row[key] for key in row.keys() if not key.startswith("lm_")}
    guest["last_message"] = (message_of(row, row["agent_read_id"], row["guest_read_id"], "lm_")
                             if "lm_id" in row.keys() and row["lm_id"] is not None else None)
    return guest


def _run_units(conn: sqlite3.Connection, units: list[Callable]) -> list[tuple[bool, Any]]:
    """Run ``units`` in one transaction; commit once.

    A unit that raises is rolled back alone and its exception is returned in
    its place; if the commit itself fails, every unit fails with that error.
    Units almost never raise, so they first run back to back; only when one
    does is the transaction rolled back and run again with a savepoint per
    unit (a unit is a function of the database alone, so it does the same
    again). That saves two statements per unit on the busiest path.
    """
    try:
        with _transaction(conn):
            try:
                return [(True, unit(conn)) for unit in units]
            except Exception as error:  # noqa: BLE001 - they run again one by one below
                raise _RunApart from error
    except _RunApart:
        return _run_units_apart(conn, units)


class _RunApart(Exception):
    """A unit raised in a batch run back to back."""


def _run_units_apart(conn: sqlite3.Connection, units: list[Callable]
                     ) -> list[tuple[bool, Any]]:
    """:func:`_run_units` with a savepoint per unit, so that one that raises is rolled
    back alone."""
    outcomes: list[tuple[bool, Any]] = []
    with _transaction(conn):
        for unit in units:
            conn.execute("SAVEPOINT unit")
            try:
                outcomes.append((True, unit(conn)))
            except Exception as error:  # noqa: BLE001 - handed back to its caller
                conn.execute("ROLLBACK TO unit")
                outcomes.append((False, _as_unavailable(error)))
            conn.execute("RELEASE unit")
    return outcomes


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back when anything raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        if conn.cache_changed:
            conn.cache.clear()
            conn.cache_changed = False


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


def _checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """``(busy, frames, checkpointed)``; waits at most a moment for readers."""
    conn.execute(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
    try:
        return conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def _run_query(conn: sqlite3.Connection, query: Callable) -> Any:
    return query(conn)


class _Connection(sqlite3.Connection):
    # Set by a unit (on the writer's thread) that queued outbox rows; read and reset by
    # the loop once the batch has committed, to wake the outbox worker.
    wrote_outbox = False
    # Set by a unit that changed a table units keep in ``cache``: the cache is dropped
    # when the transaction ends, committed or rolled back, so that it never holds what a
    # rolled-back unit wrote.
    cache_changed = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # What units read often from tables that rarely change (the webhooks each event
        # goes to): on the writer, where every change to them is made.
        self.cache: dict = {}


class Store(DirectoryQueries, DeskQueries, ReceptionQueries, MailQueries, OutboxQueries,
            ReportQueries):
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
        self._closing = False
        self.healthy = True  # False from a failed commit until one succeeds
        # Each outbox worker's event, set when a commit queued outbox rows.
        self.outbox_listeners: list[asyncio.Event] = []
        self.reply_batch_ms = 120_000  # [email] reply_batch_seconds, in ms
        self.mail_per_hour = 300  # [email] max_per_hour
        self._failures = ThrottledLog(log)
        self._next_checkpoint = 0.0
        self._indexed_to: int | None = None  # see DeskQueries.index_messages

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> Store:
        """Connect, switch to WAL, migrate the schema to :data:`SCHEMA_VERSION`."""
        self._writer = await self._connect()
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await self._writer.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        # SQLite would checkpoint inside whichever commit fills the WAL, with every send
        # of that commit waiting; the writer checkpoints between commits instead.
        await self._writer.execute("PRAGMA wal_autocheckpoint=0")
        # After the WAL has been emptied, its file shrinks back to this size.
        await self._writer.execute(f"PRAGMA journal_size_limit={self._max_wal_bytes // 4}")
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop())
        try:
            await self.write(migrate)
        except BaseException:
            await self.close()
            raise
        self._reader = await self._connect()
        await self._reader.execute("PRAGMA query_only=1")
        return self

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None, factory=_Connection)
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def close(self) -> None:
        """Commit what is pending, then close the connections."""
        self._closing = True
        self._wakeup.set()
        if self._writer_task is not None:
            await self._writer_task
        for conn in (self._reader, self._writer):
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
            if len(self._pending) < COALESCE_BELOW and not self._closing:
                # A few units at a time means a quiet moment: a commit (an fsync, a
                # WAL write, two thread hops) for each one or two messages costs more
                # CPU than the messages. Waiting a moment lets a few more join it.
                await asyncio.sleep(COMMIT_DELAY)
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:_MAX_UNITS_PER_COMMIT]
                del self._pending[:_MAX_UNITS_PER_COMMIT]
                await self._commit(batch)
                await self._checkpoint()
            if self._closing:
                return

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database, between two commits, at most every
        :data:`CHECKPOINT_SECONDS`.

        Between commits no write is in flight, so the copy is complete and the
        next commit starts the WAL over from its beginning. (Checkpoints beside
        the commits never found it fully copied under steady writes: at 1000
        msg/s it grew by ~28 MiB/s and had to be truncated, a ~25 ms pause,
        every second or so.) A reader that holds old pages (a long backup)
        keeps the copy from completing; once the WAL has grown past
        ``max_wal_bytes`` it is truncated as soon as the reader lets go.
        """
        now = time.monotonic()
        if now < self._next_checkpoint:
            return
        self._next_checkpoint = now + CHECKPOINT_SECONDS
        try:
            mode = "TRUNCATE" if os.path.getsize(self.path + "-wal") >= self._max_wal_bytes \
                else "PASSIVE"
            await self._writer._execute(_checkpoint, self._writer._conn, mode)
        except (OSError, sqlite3.Error) as error:
            log.warning("checkpoint failed: %s", error)

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
            self._writer._conn.wrote_outbox = False
        else:
            if self._writer._conn.wrote_outbox:
                self._writer._conn.wrote_outbox = False
                for listener in self.outbox_listeners:
                    listener.set()
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

    # -- meta ----------------------------------------------------------------------------

    async def secret(self) -> str:
        """The token secret kept in the database, created on first use."""
        def unit(conn):
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)",
                         (secrets.token_hex(32),))
            return conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0]
        return await self.write(unit)

    async def meta(self, key: str) -> str | None:
        return await self.read(lambda conn: meta_value(conn, key))

    async def set_meta(self, key: str, value: str) -> None:
        await self.write(lambda conn: set_meta(conn, key, value))

    # -- guests and conversations --------------------------------------------------------

    async def guest_by_uid(self, group_id: int, uid: str) -> dict | None:
        return await self.read(lambda conn: one(conn.execute(
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

    def save_routing(self, changes: list[tuple[int, int | None, int | None, int | None, bool]],
                     recent: int = 20, cause: str = ROUTED) -> asyncio.Future:
        """Queue ``(gid, assigned_aix, last_aix, queued_at, engaged)`` rows for the next commit.

        ``cause`` tells the guests' open conversations what happened
        (:mod:`cschat.store.conversations`): routing, a transfer, or an end by
        the agent; a row neither assigned nor queued ends the conversation.

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
                record_routing(conn, gid, assigned, queued_at, cause, now)
                if assigned is not None:
                    snapshots[gid] = (_conversations(conn, "g.gid = ?", [gid])[0],
                                      _history(conn, gid, 1, recent, None, None)[0])
            return snapshots
        return self.write(unit)

    # -- messages ----------------------------------------------------------------------

    def add_message(self, gid: int, sender: str, admin_id: int | None, file_type: int,
                    body: str, client_msg_id: str | None,
                    attachment: Attachment | None = None,
                    event: str | None = None, mail_if_unread: bool = False
                    ) -> asyncio.Future:
        """Queue a message for the next commit (PROTOCOL R20, R21).

        The future resolves to ``(message, created)``: the stored message as a
        dict, and False when a message of the same sender with the same
        ``client_msg_id`` already existed (that first message is returned).
        With an ``attachment``, the body becomes its file object (R25) and the
        file is marked used, or the future raises :class:`FileRefused`. With
        ``mail_if_unread`` (an agent's message to a guest who is offline), the
        guest is mailed its unread replies, batched, if it left an address.
        """
        def unit(conn):
            message, created = insert_message(conn, gid, sender, admin_id, file_type, body,
                                              client_msg_id, attachment, event)
            if created and mail_if_unread:
                queue_replies_mail(conn, gid, self.reply_batch_ms, self.mail_per_hour)
            return message, created
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
        return await self.read(lambda conn: one(conn.execute(
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
        f"SELECT {_GUEST_COLUMNS}, {LAST_MESSAGE_COLUMNS} FROM guests g "
        f"LEFT JOIN messages lm ON lm.id = g.last_message_id WHERE {where} "
        "ORDER BY g.updated_at DESC, g.gid DESC", params)]


def _history(conn: sqlite3.Connection, gid: int, page_index: int, page_size: int,
             before_id: int | None, after_id: int | None) -> tuple[list[dict], int]:
    guest = conn.execute(
        "SELECT message_count, agent_read_id, guest_read_id FROM guests WHERE gid = ?",
        (gid,)).fetchone()
    sql = f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.gid = ?"
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
    return ([message_of(row, guest["agent_read_id"], guest["guest_read_id"]) for row in rows],
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
