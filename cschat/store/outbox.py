"""The outbox: side effects written in the commit of what caused them, delivered later.

:func:`emit` runs inside a writer unit and adds one row per webhook that
wants the event. ``message.created`` is the exception: the stored message
is its record, so sending one writes nothing more (:func:`note_message`
only wakes the worker), and the worker makes the rows when it gets to them
in the rounds of :meth:`OutboxQueries.outbox_round`, each webhook from its
cursor over the messages. Each round also records the attempts of the one
before and finds the rows due: one unit of the writer per round.

Rows of one webhook and one ordering key (a conversation) go out in the
order of their ``position``: 2 × the id of a message, 2 × the guest's last
message id + 1 for another event (so it follows the messages stored before
it), -1 for mail (then id order). A row waits while an earlier one of its
key is pending, and a webhook's rows past its cursor wait until the
messages before them have become rows.
"""

from __future__ import annotations

import itertools
import json
import secrets
import sqlite3
from typing import NamedTuple

from cschat.protocol import encode
from cschat.store.directory import Actor, write_audit
from cschat.store.errors import NotFound
from cschat.store.util import TEXT, meta_value, now_ms, one, rows

WEBHOOK = "webhook"
MESSAGE_CREATED = "message.created"

# Event ids: a random prefix per process and a counter, as unique as random ids without
# a system call per event. A message.created event's id is made from its message's.
_EVENT_ID_PREFIX = secrets.token_hex(8)
_event_numbers = itertools.count()

MESSAGES_PER_TAKE = 256  # message.created rows made at once, when a round would be short

# An attempt's outcome: (row id, new state, next_attempt_at, status, error).
Outcome = tuple[int, str, int, int | None, str | None]


class OutboxRound(NamedTuple):
    """What a worker's round delivers: the ``due`` rows, the webhooks they go to by id
    (``targets``: ``{"id", "url", "secret"}``), when the earliest pending row that is not
    due yet will be (``next_due``, ms, or None), and whether messages are still to be
    taken (``behind``)."""

    due: list[dict]
    targets: dict[int, dict]
    next_due: int | None
    behind: bool


_INSERT_ROW = ("INSERT INTO outbox (kind, target_id, ordering_key, event, payload, created_at, "
               "next_attempt_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def emit(conn: sqlite3.Connection, event: str, gid: int, data: dict,
         before_message: int | None = None) -> None:
    """Queue ``event`` about guest ``gid`` with ``data`` for every webhook that wants it,
    in this transaction: after the guest's messages stored so far or, with
    ``before_message``, before that message (a conversation it starts)."""
    targets = _subscribers(conn).get(event)
    if not targets:
        return
    if before_message is not None:
        position = 2 * before_message - 1
    else:
        last = conn.execute("SELECT COALESCE(last_message_id, 0) FROM guests WHERE gid = ?",
                            (gid,)).fetchone()
        position = 2 * (last[0] if last else 0) + 1
    now = now_ms()
    event_id = f"{_EVENT_ID_PREFIX}{next(_event_numbers):08x}"
    payload = encode({"id": event_id, "event": event, "created_at": now, "data": data})
    conn.executemany(_INSERT_ROW, [(WEBHOOK, target, str(gid), event, payload, now, now,
                                    position) for target in targets])
    conn.wrote_outbox = True  # the store wakes the worker once this commits


def note_message(conn: sqlite3.Connection) -> None:
    """A guest's or an agent's message was stored in this transaction: when a webhook
    wants message.created, wake the worker once it commits, to take it."""
    if MESSAGE_CREATED in _subscribers(conn):
        conn.wrote_outbox = True


def _subscribers(conn: sqlite3.Connection) -> dict[str, list[int]]:
    """Event → the ids of the webhooks that want it; kept in the writer connection's
    cache (every message asks), which the units that change webhooks drop."""
    subscribers = conn.cache.get("webhook_events")
    if subscribers is None:
        subscribers = {}
        for event, webhook_id in conn.execute("SELECT event, webhook_id FROM webhook_events"):
            subscribers.setdefault(event, []).append(webhook_id)
        conn.cache["webhook_events"] = subscribers
    return subscribers


def _webhooks_changed(conn: sqlite3.Connection) -> None:
    conn.cache.pop("webhook_events", None)
    conn.cache_changed = True


def _take_messages(conn: sqlite3.Connection, webhook_id: int, cursor: int, limit: int) -> None:
    """Write the message.created rows for webhook ``webhook_id`` of up to ``limit``
    messages after ``cursor`` (system messages have none), and move its cursor."""
    messages = conn.execute(
        "SELECT m.id, m.gid, m.sender, m.admin_id, m.file_type, m.body, m.client_msg_id, "
        "m.created_at, g.group_id, (SELECT c.id FROM conversations c WHERE c.gid = m.gid "
        "AND c.first_message_id <= m.id ORDER BY c.id DESC LIMIT 1) "
        "FROM messages m JOIN guests g ON g.gid = m.gid WHERE m.id > ? ORDER BY m.id LIMIT ?",
        (cursor, limit)).fetchall()
    if not messages:
        return
    ids = meta_value(conn, "message_event_ids")
    now = now_ms()  # due now; retried until give_up_after from the message's time
    conn.executemany(_INSERT_ROW, [
        (WEBHOOK, webhook_id, str(gid), MESSAGE_CREATED, encode({
            "id": f"{ids}m{message_id}", "event": MESSAGE_CREATED, "created_at": at,
            "data": {"conversation_id": conversation_id, "gid": gid, "group_id": group_id,
                     "message": {"id": message_id, "sender": sender, "admin_id": admin_id,
                                 "file_type": file_type,
                                 "msg": body if file_type == TEXT else json.loads(body),
                                 "client_msg_id": client_msg_id, "created_at": at}}}),
         at, now, 2 * message_id)
        for (message_id, gid, sender, admin_id, file_type, body, client_msg_id, at, group_id,
             conversation_id) in messages if sender != "system"])
    conn.execute("UPDATE webhooks SET message_cursor = ? WHERE id = ?",
                 (messages[-1][0], webhook_id))


_DELIVERY_COLUMNS = ("id, event, created_at, state, attempts, last_attempt_at, "
                     "next_attempt_at, last_status, last_error")


class OutboxQueries:
    """The webhooks and outbox part of :class:`~cschat.store.Store`."""

    async def add_webhook(self, url: str, secret: str, events: list[str], actor: Actor) -> dict:
        def unit(conn):
            # It gets the messages stored from now on.
            cursor = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0] \
                if MESSAGE_CREATED in events else None
            webhook_id = conn.execute(
                "INSERT INTO webhooks (url, secret, created_at, message_cursor) "
                "VALUES (?, ?, ?, ?)", (url, secret, now_ms(), cursor)).lastrowid
            conn.executemany("INSERT INTO webhook_events (event, webhook_id) VALUES (?, ?)",
                             [(event, webhook_id) for event in events])
            _webhooks_changed(conn)
            write_audit(conn, actor, "webhook.create", "webhook", webhook_id,
                   {"url": url, "events": events})
            return _webhooks(conn, webhook_id)[0]
        return await self.write(unit)

    async def delete_webhook(self, webhook_id: int, actor: Actor) -> None:
        """Delete a webhook and its undelivered events; raises :class:`NotFound`."""
        def unit(conn):
            row = one(conn.execute("SELECT url FROM webhooks WHERE id = ?", (webhook_id,)))
            if row is None:
                raise NotFound(f"no webhook {webhook_id}")
            conn.execute("DELETE FROM outbox WHERE kind = ? AND target_id = ?",
                         (WEBHOOK, webhook_id))
            conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            _webhooks_changed(conn)
            write_audit(conn, actor, "webhook.delete", "webhook", webhook_id, {"url": row["url"]})
        await self.write(unit)

    async def webhooks(self) -> list[dict]:
        """Every webhook with its events, its secret, the counts of its pending and
        failed deliveries, and its last attempted delivery (or None)."""
        return await self.read(_webhooks)

    async def deliveries(self, webhook_id: int, limit: int) -> list[dict]:
        """The webhook's newest deliveries; raises :class:`NotFound`."""
        def query(conn):
            if conn.execute("SELECT 1 FROM webhooks WHERE id = ?", (webhook_id,)).fetchone() \
                    is None:
                raise NotFound(f"no webhook {webhook_id}")
            return rows(conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM outbox WHERE kind = ? AND target_id = ? "
                "ORDER BY id DESC LIMIT ?", (WEBHOOK, webhook_id, limit)))
        return await self.read(query)

    async def outbox_round(self, kind: str, outcomes: list[Outcome], limit: int
                           ) -> OutboxRound:
        """One round of the outbox worker of ``kind``, in one unit: record the
        ``outcomes`` of the last round (as :meth:`record_attempts`), take messages
        (message.created) when they are behind and the round would be short, and find
        up to ``limit`` rows due now, each the first pending row of its webhook and
        ordering key."""
        def unit(conn):
            _record(conn, outcomes)
            found = _next_round(conn, kind, limit)
            if found.behind and len(found.due) < limit:
                for webhook_id, cursor in _cursors(conn).items():
                    _take_messages(conn, webhook_id, cursor, MESSAGES_PER_TAKE)
                found = _next_round(conn, kind, limit)
            return found
        return await self.write(unit)

    async def record_attempts(self, outcomes: list[Outcome]) -> None:
        """Record attempts ``(row id, new state, next_attempt_at, status, error)``; a
        success keeps the error of the attempt before it, for the admin screens."""
        await self.write(lambda conn: _record(conn, outcomes))

    async def prune_outbox(self, older_than_ms: int) -> int:
        """Delete delivered and failed rows created before ``older_than_ms``."""
        return await self.write(lambda conn: conn.execute(
            "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?",
            (older_than_ms,)).rowcount)


def _record(conn: sqlite3.Connection, outcomes: list[Outcome]) -> None:
    conn.executemany(
        "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt_at = ?, "
        "last_attempt_at = ?, last_status = ?, last_error = COALESCE(?, last_error) "
        "WHERE id = ? AND state = 'pending'",
        [(state, next_at, now_ms(), status, error, row_id)
         for row_id, state, next_at, status, error in outcomes])


def _cursors(conn: sqlite3.Connection) -> dict[int, int]:
    """Webhook id → the last message it took, for the webhooks that want message.created."""
    return dict(conn.execute(
        "SELECT id, message_cursor FROM webhooks WHERE message_cursor IS NOT NULL"))


def _next_round(conn: sqlite3.Connection, kind: str, limit: int) -> OutboxRound:
    now = now_ms()
    cursors = _cursors(conn) if kind == WEBHOOK else {}
    due, held = [], set()
    # Pending rows in order: a row's key is held by the first of them, so a row is next
    # exactly when its key was not met before it. The reading stops at `limit`, however
    # long the backlog.
    for row_id, target_id, ordering_key, next_attempt_at, position in conn.execute(
            "SELECT id, target_id, ordering_key, next_attempt_at, position FROM outbox "
            "INDEXED BY outbox_pending_in_order WHERE state = 'pending' AND kind = ? "
            "ORDER BY position, id", (kind,)):
        if (target_id, ordering_key) in held:
            continue
        held.add((target_id, ordering_key))
        cursor = cursors.get(target_id)
        if cursor is not None and position > 2 * cursor + 1:
            continue  # messages before it are still to be taken
        if next_attempt_at <= now:
            due.append(row_id)
            if len(due) == limit:
                break
    marks = ",".join("?" * len(due))
    found = rows(conn.execute(
        "SELECT id, target_id, ordering_key, event, payload, created_at, attempts "
        f"FROM outbox WHERE id IN ({marks}) ORDER BY id", due)) if due else []
    webhook_ids = sorted({row["target_id"] for row in found}) if kind == WEBHOOK else []
    targets = {row["id"]: row for row in rows(conn.execute(
        f"SELECT id, url, secret FROM webhooks WHERE id IN ({','.join('?' * len(webhook_ids))})",
        webhook_ids))} if webhook_ids else {}
    # Only a row tried before or queued for later is not due when written.
    later = conn.execute(
        "SELECT MIN(next_attempt_at) FROM outbox INDEXED BY outbox_due WHERE "
        "state = 'pending' AND next_attempt_at > created_at AND kind = ? "
        "AND next_attempt_at > ?", (kind, now)).fetchone()[0]
    last_message = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0] \
        if cursors else 0
    return OutboxRound(found, targets, later,
                       any(cursor < last_message for cursor in cursors.values()))


def _webhooks(conn: sqlite3.Connection, webhook_id: int | None = None) -> list[dict]:
    where, params = ("WHERE w.id = ?", (webhook_id,)) if webhook_id is not None else ("", ())
    found = rows(conn.execute(
        "SELECT w.id, w.url, w.secret, w.created_at, "
        "(SELECT json_group_array(event) FROM webhook_events e WHERE e.webhook_id = w.id) "
        "AS events, "
        "(SELECT COUNT(*) FROM outbox o INDEXED BY outbox_pending_in_order "
        "WHERE o.kind = 'webhook' AND o.target_id = w.id AND o.state = 'pending') "
        # and the messages it has still to take
        "+ (SELECT COUNT(*) FROM messages m WHERE m.id > w.message_cursor "
        "AND m.sender != 'system') AS pending, "
        "(SELECT COUNT(*) FROM outbox o INDEXED BY outbox_failed WHERE o.kind = 'webhook' "
        "AND o.target_id = w.id AND o.state = 'failed') AS failed "
        f"FROM webhooks w {where} ORDER BY w.id", params))
    for webhook in found:
        webhook["events"] = sorted(json.loads(webhook["events"]))
        webhook["last_delivery"] = one(conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM outbox INDEXED BY outbox_attempted "
            "WHERE kind = 'webhook' AND target_id = ? AND attempts > 0 "
            "ORDER BY last_attempt_at DESC, id DESC LIMIT 1", (webhook["id"],)))
    return found
