"""Small helpers the store's modules share."""

from __future__ import annotations

import sqlite3
import time

TEXT = 0  # file_type of a text message; any other body is JSON


def now_ms() -> int:
    return int(time.time() * 1000)


def one(cursor: sqlite3.Cursor) -> dict | None:
    """The cursor's first row as a dict, or None."""
    row = cursor.fetchone()
    return dict(row) if row is not None else None


def rows(cursor: sqlite3.Cursor) -> list[dict]:
    return [dict(row) for row in cursor]


MESSAGE_FIELDS = ("id", "gid", "sender", "admin_id", "file_type", "body", "client_msg_id",
                  "created_at", "event")
LAST_MESSAGE_COLUMNS = ", ".join(f"lm.{c} AS lm_{c}" for c in MESSAGE_FIELDS)


def message_of(row: sqlite3.Row, agent_read_id: int, guest_read_id: int, prefix: str = "") -> dict:
    """A message row as a dict, with ``read`` worked out from the read pointers."""
    message = {key: row[prefix + key] for key in MESSAGE_FIELDS}
    pointer = agent_read_id if message["sender"] == "guest" else guest_read_id
    message["read"] = message["id"] <= pointer
    return message


def meta_value(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row and row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    """Set ``key``, or remove it when ``value`` is None."""
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    else:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
