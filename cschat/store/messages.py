"""Storing a message: the statements of one message, in the unit that stores it.

Used by :meth:`Store.add_message <cschat.store.Store.add_message>` and by the
units that store a message along with something else (the away form).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

from cschat.store.conversations import record_message
from cschat.store.errors import FileRefused
from cschat.store.util import MESSAGE_FIELDS, message_of, now_ms

MESSAGE_COLUMNS = ", ".join(f"m.{c}" for c in MESSAGE_FIELDS)

# What a new message changes on its conversation besides the counters every message moves.
_COUNTERS_OF_SENDER = {"guest": ", unread_by_agent = unread_by_agent + 1, engaged = 1",
                       "agent": ", unread_by_guest = unread_by_guest + 1", "system": ""}



@dataclasses.dataclass(frozen=True)
class Attachment:
    """The file a media message sends, and who may send it: the uploading guest
    (``guest_gid``) or any agent of the file's group (``group_id``)."""

    file_id: str
    file_type: int
    guest_gid: int | None = None
    group_id: int | None = None


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


def insert_message(conn: sqlite3.Connection, gid: int, sender: str, admin_id: int | None,
                   file_type: int, body: str, client_msg_id: str | None,
                   attachment: Attachment | None = None, event: str | None = None
                   ) -> tuple[dict, bool]:
    """Store a message in a unit: ``(message, created)`` as :meth:`Store.add_message`
    answers; the message also carries ``started_conversation``."""
    if client_msg_id is not None:
        owner = ("gid", gid) if sender == "guest" else ("admin_id", admin_id)
        row = conn.execute(
            f"SELECT {MESSAGE_COLUMNS}, g.agent_read_id, g.guest_read_id "
            "FROM messages m JOIN guests g ON g.gid = m.gid "
            f"WHERE m.sender = ? AND m.{owner[0]} = ? AND m.client_msg_id = ?",
            (sender, owner[1], client_msg_id)).fetchone()
        if row is not None:
            return message_of(row, row["agent_read_id"], row["guest_read_id"]), False
    stored_body = body if attachment is None else _claim_file(conn, attachment)
    created_at = now_ms()
    cursor = conn.execute(
        "INSERT INTO messages (gid, sender, admin_id, file_type, body, client_msg_id, "
        "created_at, event, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
        "(SELECT message_count + 1 FROM guests WHERE gid = ?))",
        (gid, sender, admin_id, file_type, stored_body, client_msg_id, created_at, event, gid))
    guest = conn.execute(
        "UPDATE guests SET last_message_id = ?, updated_at = ?, "
        f"message_count = message_count + 1{_COUNTERS_OF_SENDER[sender]} WHERE gid = ? "
        "RETURNING gid, group_id, uid, name, assigned_aix, queued_at, conversation_id, context",
        (cursor.lastrowid, created_at, gid)).fetchone()
    message = {"id": cursor.lastrowid, "gid": gid, "sender": sender, "admin_id": admin_id,
               "file_type": file_type, "body": stored_body, "client_msg_id": client_msg_id,
               "created_at": created_at, "event": event, "read": False}
    message["started_conversation"] = record_message(conn, guest, message)
    return message, True
