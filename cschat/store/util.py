"""Small helpers the store's modules share."""

from __future__ import annotations

import sqlite3
import time


def now_ms() -> int:
    return int(time.time() * 1000)


def one(cursor: sqlite3.Cursor) -> dict | None:
    """The cursor's first row as a dict, or None."""
    row = cursor.fetchone()
    return dict(row) if row is not None else None


def rows(cursor: sqlite3.Cursor) -> list[dict]:
    return [dict(row) for row in cursor]
