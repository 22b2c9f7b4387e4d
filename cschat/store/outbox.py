"""The outbox: side effects written in the commit of what caused them, delivered later.

:func:`emit` runs inside a writer unit and adds one row per webhook that
wants the event; the worker (:mod:`cschat.outbox`) takes due rows with
:meth:`OutboxQueries.due_deliveries` and records each attempt. Rows of one
webhook and one ordering key (a conversation) go out in id order: a row
waits while an older one of its key is pending.
"""

from __future__ import annotations

import itertools
import json
import secrets
import sqlite3
from typing import Any

from cschat.protocol import encode
from cschat.store.directory import Actor, write_audit
from cschat.store.errors import NotFound
from cschat.store.util import now_ms, one, rows

WEBHOOK = "webhook"

# Event ids: a random prefix per process and a counter, as unique as random ids without
# a system call per event (the writer makes one for every message while a webhook wants
# message.created).
_EVENT_ID_PREFIX = secrets.token_hex(8)
_event_numbers = itertools.count()


def emit(conn: sqlite3.Connection, event: str, ordering_key: Any, data: dict) -> None:
    """Queue ``event`` with ``data`` for every webhook that wants it, in this transaction."""
    targets = _subscribers(conn).get(event)
    if not targets:
        return
    now = now_ms()
    # The frames' encoder: with orjson it takes a tenth of json.dumps's time, and this
    # runs in the writer for every message while a webhook wants message.created.
    event_id = f"{_EVENT_ID_PREFIX}{next(_event_numbers):08x}"
    payload = encode({"id": event_id, "event": event, "created_at": now, "data": data})
    conn.executemany(
        "INSERT INTO outbox (kind, target_id, ordering_key, event, payload, created_at, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(WEBHOOK, target, str(ordering_key), event, payload, now, now) for target in targets])
    conn.wrote_outbox = True  # the store wakes the worker once this commits


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


_DELIVERY_COLUMNS = ("id, event, created_at, state, attempts, last_attempt_at, "
                     "next_attempt_at, last_status, last_error")


class OutboxQueries:
    """The webhooks and outbox part of :class:`~cschat.store.Store`."""

    async def add_webhook(self, url: str, secret: str, events: list[str], actor: Actor) -> dict:
        def unit(conn):
            webhook_id = conn.execute(
                "INSERT INTO webhooks (url, secret, created_at) VALUES (?, ?, ?)",
                (url, secret, now_ms())).lastrowid
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

    async def webhook_targets(self) -> dict[int, dict]:
        """What the worker needs to deliver: webhook id → ``{"url", "secret"}``."""
        return await self.read(lambda conn: {row["id"]: row for row in rows(conn.execute(
            "SELECT id, url, secret FROM webhooks"))})

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

    async def due_deliveries(self, kind: str, limit: int) -> tuple[list[dict], int | None]:
        """``(rows, next_due)``: up to ``limit`` pending rows of ``kind`` due now, each the
        oldest pending row of its webhook and ordering key; and when the earliest
        pending row that is not due yet will be (ms), or None."""
        def query(conn):
            now = now_ms()
            due, held = [], set()
            # Pending rows oldest first: a row's key is held by the first of them, so a row
            # is next in its order exactly when its key was not met before it. The reading
            # stops at `limit`, however long the backlog.
            for row_id, target_id, ordering_key, next_attempt_at in conn.execute(
                    "SELECT id, target_id, ordering_key, next_attempt_at FROM outbox "
                    "INDEXED BY outbox_pending_by_id WHERE state = 'pending' AND kind = ? "
                    "ORDER BY id", (kind,)):
                if (target_id, ordering_key) in held:
                    continue
                held.add((target_id, ordering_key))
                if next_attempt_at <= now:
                    due.append(row_id)
                    if len(due) == limit:
                        break
            found = rows(conn.execute(
                "SELECT id, target_id, ordering_key, event, payload, created_at, attempts "
                f"FROM outbox WHERE id IN ({','.join('?' * len(due))}) ORDER BY id", due)) \
                if due else []
            # Only a row tried before or queued for later is not due when written.
            later = conn.execute(
                "SELECT MIN(next_attempt_at) FROM outbox INDEXED BY outbox_due WHERE "
                "state = 'pending' AND next_attempt_at > created_at AND kind = ? "
                "AND next_attempt_at > ?", (kind, now)).fetchone()[0]
            return found, later
        return await self.read(query)

    async def record_attempts(self, outcomes: list[tuple[int, str, int, int | None,
                                                         str | None]]) -> None:
        """Record attempts ``(row id, new state, next_attempt_at, status, error)``; a
        success keeps the error of the attempt before it, for the admin screens."""
        def unit(conn):
            conn.executemany(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt_at = ?, "
                "last_attempt_at = ?, last_status = ?, last_error = COALESCE(?, last_error) "
                "WHERE id = ? AND state = 'pending'",
                [(state, next_at, now_ms(), status, error, row_id)
                 for row_id, state, next_at, status, error in outcomes])
        await self.write(unit)

    async def prune_outbox(self, older_than_ms: int) -> int:
        """Delete delivered and failed rows created before ``older_than_ms``."""
        return await self.write(lambda conn: conn.execute(
            "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?",
            (older_than_ms,)).rowcount)


def _webhooks(conn: sqlite3.Connection, webhook_id: int | None = None) -> list[dict]:
    where, params = ("WHERE w.id = ?", (webhook_id,)) if webhook_id is not None else ("", ())
    found = rows(conn.execute(
        "SELECT w.id, w.url, w.secret, w.created_at, "
        "(SELECT json_group_array(event) FROM webhook_events e WHERE e.webhook_id = w.id) "
        "AS events, "
        "(SELECT COUNT(*) FROM outbox o INDEXED BY outbox_pending_by_id "
        "WHERE o.kind = 'webhook' AND o.target_id = w.id AND o.state = 'pending') AS pending, "
        "(SELECT COUNT(*) FROM outbox o WHERE o.kind = 'webhook' AND o.target_id = w.id "
        "AND o.state = 'failed') AS failed "
        f"FROM webhooks w {where} ORDER BY w.id", params))
    for webhook in found:
        webhook["events"] = sorted(json.loads(webhook["events"]))
        webhook["last_delivery"] = one(conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM outbox WHERE kind = 'webhook' AND target_id = ? "
            "AND attempts > 0 ORDER BY last_attempt_at DESC, id DESC LIMIT 1", (webhook["id"],)))
    return found
