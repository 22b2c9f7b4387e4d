"""Mail in the outbox (kind "mail"): what causes a mail writes its row in the same commit.

A row's payload says what to send — ``{"kind", "gid", "conversation_id", "to"}``
with kind "left_message" or "queue_alert" (to the shop: ``to`` is null),
"replies" or "transcript" (to the visitor) — and the mail is written from the
database when it goes out (:meth:`MailQueries.mail_content`), so a batch of
replies holds every reply still unread then. Rows of one visitor go in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

from cschat.store.errors import Conflict
from cschat.store.messages import insert_message
from cschat.store.outbox import emit
from cschat.store.util import MESSAGE_FIELDS, now_ms, one, rows

log = logging.getLogger("cschat.store")

MAIL = "mail"
TRANSCRIPT_MESSAGES = 1000
TRANSCRIPT_EVERY_MS = 10 * 60 * 1000  # one transcript per visitor in this time


def queue_mail(conn: sqlite3.Connection, kind: str, gid: int, conversation_id: int | None,
               to: str | None, per_hour: int, at: int | None = None) -> bool:
    """Queue a mail of ``kind`` about guest ``gid``, to go out at ``at`` (ms; now).

    Not when ``per_hour`` mails were queued in the last hour: visitors cause most mail,
    and a flood of them must not make cschat a mailer. Returns whether it was queued.
    """
    now = now_ms()
    # 'mail' written out: the index of mail rows by time covers only those.
    if conn.execute("SELECT COUNT(*) FROM outbox INDEXED BY outbox_mail_by_time "
                    "WHERE kind = 'mail' AND created_at > ?",
                    (now - 3_600_000,)).fetchone()[0] >= per_hour:
        log.warning("mail not sent: [email] max_per_hour (%d) reached", per_hour)
        return False
    conn.execute(
        "INSERT INTO outbox (kind, target_id, ordering_key, event, payload, created_at, "
        "next_attempt_at) VALUES (?, NULL, ?, ?, ?, ?, ?)",
        (MAIL, f"mail:{gid}", kind, json.dumps({"kind": kind, "gid": gid,
                                                 "conversation_id": conversation_id, "to": to}),
         now, at or now))
    conn.wrote_outbox = True
    return True


def _address(conn: sqlite3.Connection, gid: int) -> str | None:
    row = conn.execute("SELECT json_extract(context, '$.email') FROM guests WHERE gid = ?",
                       (gid,)).fetchone()
    return row[0] if row else None


def queue_replies_mail(conn: sqlite3.Connection, gid: int, batch_ms: int, per_hour: int
                       ) -> None:
    """An agent wrote to a guest who is offline: if it left an address, mail it its unread
    replies within ``batch_ms``, in one mail with those that follow meanwhile."""
    address = _address(conn, gid)
    if address is None or conn.execute(
            "SELECT 1 FROM outbox WHERE kind = ? AND ordering_key = ? AND event = 'replies' "
            "AND state = 'pending'", (MAIL, f"mail:{gid}")).fetchone():
        return
    conversation = conn.execute("SELECT conversation_id FROM guests WHERE gid = ?",
                                (gid,)).fetchone()[0]
    queue_mail(conn, "replies", gid, conversation, address, per_hour, now_ms() + batch_ms)


class MailQueries:
    """The mail part of :class:`~cschat.store.Store`."""

    def leave_message(self, gid: int, name: str, email: str, body: str,
                      client_msg_id: str | None, mail: bool) -> asyncio.Future:
        """The away form (22900): keep the visitor's name and address, store its message
        as a normal one (its conversation is marked "left a message"), queue the shop's
        mail when ``mail``, and the ``visitor.left_message`` webhook event; one commit.
        Returns a future of what :meth:`add_message`'s resolves to."""
        def unit(conn):
            conn.execute(
                "UPDATE guests SET name = CASE WHEN ? != '' THEN ? ELSE name END, "
                "context = json_set(context, '$.email', ?) WHERE gid = ?",
                (name, name, email, gid))
            message, created = insert_message(conn, gid, "guest", None, 0, body, client_msg_id)
            if not created:
                return message, created
            guest = one(conn.execute("SELECT group_id, conversation_id, name FROM guests "
                                     "WHERE gid = ?", (gid,)))
            conn.execute("UPDATE conversations SET left_message = 1 WHERE id = ?",
                         (guest["conversation_id"],))
            if mail:
                queue_mail(conn, "left_message", gid, guest["conversation_id"], None,
                           self.mail_per_hour)
            emit(conn, "visitor.left_message", gid, {
                "conversation_id": guest["conversation_id"], "gid": gid,
                "group_id": guest["group_id"], "name": guest["name"], "email": email,
                "msg": body, "created_at": message["created_at"]})
            return message, created
        return self.write(unit)

    async def alert_long_wait(self, gid: int) -> bool:
        """Queue the shop's mail about guest ``gid``'s open conversation waiting too long,
        once per conversation; True if this call queued it."""
        def unit(conn):
            row = conn.execute(
                "UPDATE conversations SET queue_alerted = 1 WHERE id = "
                "(SELECT conversation_id FROM guests WHERE gid = ?) AND queue_alerted = 0 "
                "RETURNING id", (gid,)).fetchone()
            if row is not None:
                queue_mail(conn, "queue_alert", gid, row[0], None, self.mail_per_hour)
            return row is not None
        return await self.write(unit)

    async def request_transcript(self, gid: int, email: str | None) -> str | None:
        """Queue a transcript of the guest's open (else last) conversation to ``email``
        (kept as its address), or to the address it left; returns the address used, or
        None when there is none or no conversation. Raises :class:`Conflict` when one was
        queued for the guest less than :data:`TRANSCRIPT_EVERY_MS` ago: a visitor types
        the address, so cschat must not become its mailer."""
        def unit(conn):
            if conn.execute("SELECT 1 FROM outbox INDEXED BY outbox_mail_by_time "
                            "WHERE kind = 'mail' AND ordering_key = ? "
                            "AND event = 'transcript' AND created_at > ?",
                            (f"mail:{gid}", now_ms() - TRANSCRIPT_EVERY_MS)).fetchone():
                raise Conflict("a transcript was sent a moment ago")
            address = email or _address(conn, gid)
            conversation = conn.execute(
                "SELECT COALESCE(conversation_id, (SELECT MAX(id) FROM conversations c "
                "WHERE c.gid = g.gid)) FROM guests g WHERE gid = ?", (gid,)).fetchone()
            if address is None or conversation is None or conversation[0] is None:
                return None
            if not queue_mail(conn, "transcript", gid, conversation[0], address,
                              self.mail_per_hour):
                raise Conflict("too much mail in the last hour")
            if email:
                conn.execute("UPDATE guests SET context = json_set(context, '$.email', ?) "
                             "WHERE gid = ?", (email, gid))
            return address
        return await self.write(unit)

    async def mail_content(self, payload: dict) -> dict | None:
        """What a mail needs, read when it goes out: the guest (``name``, ``email``,
        ``group_id``, ``page`` it was last on), the conversation's ``messages`` (oldest
        first: the unread agent replies for "replies", the guest's messages for
        "left_message", all for "transcript", the last ones for "queue_alert"), or None
        when the guest is gone."""
        def query(conn):
            guest = one(conn.execute(
                "SELECT gid, group_id, name, json_extract(context, '$.email') AS email, "
                "json_extract(context, '$.url') AS page, "
                "json_extract(context, '$.language') AS language, guest_read_id "
                "FROM guests WHERE gid = ?",
                (payload["gid"],)))
            if guest is None:
                return None
            first = one(conn.execute("SELECT first_message_id, last_message_id FROM "
                                     "conversations WHERE id = ?",
                                     (payload["conversation_id"],))) or \
                {"first_message_id": 0, "last_message_id": 2**62}
            where = {"replies": "AND sender = 'agent' AND id > ?",
                     "left_message": "AND sender = 'guest' AND id >= ?",
                     "queue_alert": "AND sender = 'guest' AND id >= ?",
                     "transcript": "AND id >= ?"}[payload["kind"]]
            since = guest["guest_read_id"] if payload["kind"] == "replies" \
                else first["first_message_id"]
            guest["messages"] = rows(conn.execute(
                f"SELECT {', '.join(MESSAGE_FIELDS)} FROM messages WHERE gid = ? {where} "
                "ORDER BY id LIMIT ?", (payload["gid"], since, TRANSCRIPT_MESSAGES)))
            return guest
        return await self.read(query)
