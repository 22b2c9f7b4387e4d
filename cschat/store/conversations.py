"""Conversations: a guest's chat cut into the stretches that reports and webhooks count.

A conversation starts with the first message of the guest or an agent while
the guest has none open, and ends when routing releases the guest (32700, or
R24/R27). These functions run inside the writer's units that store messages
and routing, so a conversation's counters, its webhook events and the
change that caused them are one commit.
"""

from __future__ import annotations

import json
import sqlite3

from cschat.store.desk import record_page
from cschat.store.outbox import emit, note_message
from cschat.store.schema import STATS_BUCKET_MS

# What a routing change did, as its caller tells it.
ROUTED, TRANSFERRED, ENDED_BY_AGENT = "route", "transfer", "end"


def record_message(conn: sqlite3.Connection, guest: sqlite3.Row, message: dict) -> bool:
    """Count ``message`` (just inserted) in its conversation and the statistics; True
    when it started a conversation.

    ``guest`` is the guest's row after the message: ``gid``, ``group_id``,
    ``uid``, ``name``, ``assigned_aix``, ``queued_at``, ``conversation_id``,
    ``context``. (The search index follows the messages on its own:
    :meth:`~cschat.store.desk.DeskQueries.index_messages`.)
    System messages are not counted and start nothing.
    """
    sender, at = message["sender"], message["created_at"]
    if sender == "system":
        return False
    conn.execute(
        "INSERT INTO message_stats (bucket, group_id, admin_id, sender, count) "
        "VALUES (?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET count = count + 1",
        (at // STATS_BUCKET_MS, guest["group_id"], message["admin_id"] or 0, sender))
    started = guest["conversation_id"] is None
    conversation_id = guest["conversation_id"] or _start(conn, guest, message)
    if sender == "guest":
        conn.execute(
            "UPDATE conversations SET guest_messages = guest_messages + 1, "
            "last_message_id = ?, first_guest_at = COALESCE(first_guest_at, ?) WHERE id = ?",
            (message["id"], at, conversation_id))
    else:
        # The first agent message after the guest's first one is the first response.
        conn.execute(
            "UPDATE conversations SET agent_messages = agent_messages + 1, last_message_id = ?, "
            "responder_id = CASE WHEN first_guest_at IS NOT NULL AND first_response_at IS NULL "
            "THEN ? ELSE responder_id END, "
            "first_response_at = CASE WHEN first_guest_at IS NOT NULL "
            "THEN COALESCE(first_response_at, ?) END WHERE id = ?",
            (message["id"], message["admin_id"], at, conversation_id))
    note_message(conn)  # its webhook event is made from the stored message
    return started


def _start(conn: sqlite3.Connection, guest: sqlite3.Row, message: dict) -> int:
    at, gid = message["created_at"], guest["gid"]
    waiting = guest["queued_at"] is not None
    conversation_id = conn.execute(
        "INSERT INTO conversations (gid, group_id, started_at, admin_id, first_message_id, "
        "last_message_id, queued, wait_started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (gid, guest["group_id"], at, guest["assigned_aix"], message["id"], message["id"],
         int(waiting), at if waiting else None)).lastrowid
    conn.execute("UPDATE guests SET conversation_id = ? WHERE gid = ?", (conversation_id, gid))
    # Notes the agents wrote while none was open belong to the conversation that follows.
    conn.execute("UPDATE notes SET conversation_id = ? WHERE gid = ? AND conversation_id IS NULL",
                 (conversation_id, gid))
    page = json.loads(guest["context"])
    if page.get("url"):  # where the visitor was when it started
        record_page(conn, conversation_id, page["url"], page.get("title") or "", at)
    base = {"conversation_id": conversation_id, "gid": gid, "group_id": guest["group_id"]}
    # Before the message that starts it.
    emit(conn, "conversation.created", gid, {**base, "uid": guest["uid"], "name": guest["name"],
                                             "admin_id": guest["assigned_aix"],
                                             "started_at": at}, before_message=message["id"])
    if guest["assigned_aix"] is not None:
        emit(conn, "conversation.assigned", gid, {**base, "admin_id": guest["assigned_aix"]},
             before_message=message["id"])
    return conversation_id


def record_routing(conn: sqlite3.Connection, gid: int, assigned: int | None,
                   queued_at: int | None, cause: str, now: int) -> None:
    """Follow a routing change of guest ``gid`` in its open conversation, if any: an
    assignment (an event when the agent changes), a wait in the queue, or the end."""
    guest = conn.execute("SELECT group_id, conversation_id FROM guests WHERE gid = ?",
                         (gid,)).fetchone()
    if guest is None or guest["conversation_id"] is None:
        return
    conversation_id = guest["conversation_id"]
    row = conn.execute(
        "SELECT admin_id, wait_started_at, started_at, guest_messages, first_response_at "
        "FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    waited = now - row["wait_started_at"] if row["wait_started_at"] is not None else 0
    base = {"conversation_id": conversation_id, "gid": gid, "group_id": guest["group_id"]}
    if assigned is not None:
        conn.execute("UPDATE conversations SET admin_id = ?, wait_started_at = NULL, "
                     "queue_wait_ms = queue_wait_ms + ? WHERE id = ?",
                     (assigned, waited, conversation_id))
        if row["admin_id"] == assigned:
            return
        if cause == TRANSFERRED:
            emit(conn, "conversation.transferred", gid,
                 {**base, "from_admin_id": row["admin_id"], "to_admin_id": assigned})
        else:
            emit(conn, "conversation.assigned", gid, {**base, "admin_id": assigned})
    elif queued_at is not None:
        if row["wait_started_at"] is None:
            conn.execute("UPDATE conversations SET queued = 1, wait_started_at = ? WHERE id = ?",
                         (max(queued_at, row["started_at"]), conversation_id))
    else:
        reason = "agent" if cause == ENDED_BY_AGENT else "released"
        conn.execute("UPDATE conversations SET ended_at = ?, end_reason = ?, "
                     "wait_started_at = NULL, queue_wait_ms = queue_wait_ms + ? WHERE id = ?",
                     (now, reason, waited, conversation_id))
        conn.execute("UPDATE guests SET conversation_id = NULL WHERE gid = ?", (gid,))
        emit(conn, "conversation.ended", gid, {
            **base, "admin_id": row["admin_id"], "reason": reason, "ended_at": now,
            "missed": bool(row["guest_messages"]) and row["first_response_at"] is None})
