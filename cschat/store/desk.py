"""The agent's desk: visitors' context, past conversations, search, notes, tags, blocks
and canned replies (docs/protocol.md §3, "The desk")."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cschat.store.directory import Actor, write_audit
from cschat.store.errors import Conflict, NotFound
from cschat.store.search import index_text, match_expression
from cschat.store.util import (
    LAST_MESSAGE_COLUMNS,
    TEXT,
    message_of,
    meta_value,
    now_ms,
    one,
    rows,
    set_meta,
)

MAX_PAGES = 50  # pages kept per conversation
MAX_NOTES = 500

_CONVERSATION_COLUMNS = (
    "c.id AS conversation_id, c.gid, c.group_id, g.name, c.started_at, c.ended_at, c.admin_id, "
    "c.guest_messages, c.agent_messages, c.first_message_id, c.last_message_id, c.rating, "
    "c.left_message, "
    "c.rating_comment, "
    "g.queued_at IS NOT NULL AND c.ended_at IS NULL AS waiting, "
    "(SELECT json_group_array(tag) FROM (SELECT tag FROM conversation_tags t "
    "WHERE t.conversation_id = c.id ORDER BY tag)) AS tags, g.agent_read_id, g.guest_read_id, "
    f"{LAST_MESSAGE_COLUMNS}")
_NOTE_COLUMNS = ("n.id, n.gid, n.conversation_id, n.admin_id, a.name AS admin_name, "
                 "n.body AS msg, n.after_message_id, n.created_at")
# A search reads at most this many index matches for a page, whatever group they are in.
_SEARCH_SCAN = 2000
# Messages looked at per unit when indexing: a few ms of the writer at most.
_INDEX_CHUNK = 500
# meta key: the id of the last message the search index has looked at, or "off".
_INDEX_STATE, _OFF = "search_index", "off"


def _conversation(row: sqlite3.Row) -> dict:
    conversation = {key: row[key] for key in row.keys()
                    if not key.startswith("lm_") and not key.endswith("_read_id")}
    last = message_of(row, row["agent_read_id"], row["guest_read_id"], "lm_") \
        if row["lm_id"] is not None else None
    return {**conversation, "state": "open" if row["ended_at"] is None else "ended",
            "waiting": bool(row["waiting"]), "left_message": bool(row["left_message"]),
            "tags": json.loads(row["tags"]),
            "last_message": last}


def record_page(conn: sqlite3.Connection, conversation_id: int, url: str, title: str,
                at: int) -> None:
    """Add a page to the conversation's path, keeping the last :data:`MAX_PAGES`."""
    conn.execute("INSERT INTO conversation_pages (conversation_id, at, url, title) "
                 "VALUES (?, ?, ?, ?)", (conversation_id, at, url, title))
    conn.execute("DELETE FROM conversation_pages WHERE conversation_id = ? AND rowid NOT IN "
                 "(SELECT rowid FROM conversation_pages WHERE conversation_id = ? "
                 "ORDER BY at DESC, rowid DESC LIMIT ?)",
                 (conversation_id, conversation_id, MAX_PAGES))


class DeskQueries:
    """The desk part of :class:`~cschat.store.Store`."""

    # -- visitors ----------------------------------------------------------------------

    def record_visit(self, gid: int, context: dict, day: str) -> Any:
        """Merge ``context`` into the guest's, count a visit on a new ``day`` (UTC date),
        and add the page to its open conversation. Returns the write's future."""
        def unit(conn):
            guest = conn.execute(
                "UPDATE guests SET context = json_patch(context, ?), "
                "visits = visits + (COALESCE(last_visit_day, '') != ?), last_visit_day = ? "
                "WHERE gid = ? RETURNING conversation_id", (json.dumps(context), day, day, gid)
            ).fetchone()
            if guest is not None and guest[0] is not None and context.get("url"):
                record_page(conn, guest[0], context["url"], context.get("title") or "",
                            now_ms())
        return self.write(unit)

    async def blocked_guests(self) -> set[int]:
        return await self.read(lambda conn: {row[0] for row in conn.execute(
            "SELECT gid FROM guests WHERE blocked_at IS NOT NULL")})

    async def set_blocked(self, gid: int, blocked: bool, admin_id: int,
                          actor: Actor | None = None) -> None:
        """Block or unblock guest ``gid`` by agent ``admin_id``; a change through the
        admin API (``actor``) is also audited. Raises :class:`NotFound`."""
        def unit(conn):
            cursor = conn.execute(
                "UPDATE guests SET blocked_at = ?, blocked_by = ? WHERE gid = ?",
                (now_ms() if blocked else None, admin_id if blocked else None, gid))
            if not cursor.rowcount:
                raise NotFound(f"no guest {gid}")
            if actor is not None:
                write_audit(conn, actor, "guest.block" if blocked else "guest.unblock",
                            "guest", gid, {})
        await self.write(unit)

    async def blocks(self) -> list[dict]:
        return await self.read(lambda conn: rows(conn.execute(
            "SELECT g.gid, g.group_id, g.name, g.blocked_at, g.blocked_by, "
            "a.name AS blocked_by_name FROM guests g LEFT JOIN agents a ON a.id = g.blocked_by "
            "WHERE g.blocked_at IS NOT NULL ORDER BY g.blocked_at DESC")))

    # -- conversations -------------------------------------------------------------------

    async def conversation_list(self, group_id: int, state: str, admin_id: int | None,
                                tag: str | None, gid: int | None, before: int | None,
                                limit: int) -> list[dict]:
        """Conversations of ``group_id``, newest first, below ``before``: ``state`` is
        "mine" (open and held by ``admin_id``), "waiting" (open, guest in the queue),
        "ended" or "all"; optionally only those with ``tag``, or of guest ``gid``."""
        where = ["c.group_id = ?", "c.id < ?"]
        params: list[Any] = [group_id, before if before is not None else 2**63 - 1]
        if state == "mine":
            where.append("c.ended_at IS NULL AND c.admin_id = ?")
            params.append(admin_id)
        elif state == "waiting":
            where.append("c.ended_at IS NULL AND g.queued_at IS NOT NULL")
        elif state == "ended":
            where.append("c.ended_at IS NOT NULL")
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM conversation_tags t "
                         "WHERE t.conversation_id = c.id AND t.tag = ?)")
            params.append(tag)
        if gid is not None:
            where.append("c.gid = ?")
            params.append(gid)

        def query(conn):
            found = [_conversation(row) for row in conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c "
                "JOIN guests g ON g.gid = c.gid "
                "LEFT JOIN messages lm ON lm.id = c.last_message_id "
                f"WHERE {' AND '.join(where)} ORDER BY c.id DESC LIMIT ?", [*params, limit])]
            for conversation in found:
                conversation["pages"] = rows(conn.execute(
                    "SELECT url, title, at FROM conversation_pages WHERE conversation_id = ? "
                    "ORDER BY at, rowid", (conversation["conversation_id"],)))
            return found
        return await self.read(query)

    async def conversation_group(self, conversation_id: int) -> tuple[int, int] | None:
        """``(gid, group_id)`` of a conversation, or None."""
        return await self.read(lambda conn: (lambda row: tuple(row) if row else None)(
            conn.execute("SELECT gid, group_id FROM conversations WHERE id = ?",
                         (conversation_id,)).fetchone()))

    async def change_tags(self, conversation_id: int, add: list[str], remove: list[str],
                          most: int) -> list[str]:
        """Add and remove tags; returns the tags now. Raises :class:`Conflict` beyond
        ``most`` tags (nothing is changed then)."""
        def unit(conn):
            conn.executemany("DELETE FROM conversation_tags WHERE conversation_id = ? AND tag = ?",
                             [(conversation_id, tag) for tag in remove])
            conn.executemany("INSERT OR IGNORE INTO conversation_tags (conversation_id, tag) "
                             "VALUES (?, ?)", [(conversation_id, tag) for tag in add])
            tags = [row[0] for row in conn.execute(
                "SELECT tag FROM conversation_tags WHERE conversation_id = ? ORDER BY tag",
                (conversation_id,))]
            if len(tags) > most:
                raise Conflict(f"a conversation has at most {most} tags")
            return tags
        return await self.write(unit)

    # -- search ------------------------------------------------------------------------------

    async def search_messages(self, group_id: int, query: str, before: int | None,
                              limit: int) -> tuple[list[dict], int | None]:
        """``(hits, next_before)``: text messages of ``group_id`` matching ``query``,
        newest first, below the message id ``before``, each with its guest's name and
        its conversation; and where to continue (None at the end). A page reads at most
        :data:`_SEARCH_SCAN` matches of any group: past those it may come back short,
        with ``next_before`` to go on."""
        expression = match_expression(query)
        if expression is None:
            return [], None
        await self.index_messages()  # what was sent a moment ago is found too

        def search(conn):
            # Read the index a chunk at a time, newest first, and stop at a full page:
            # most searches need only the first few matches.
            matches = conn.execute(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? AND rowid < ? "
                "ORDER BY rowid DESC LIMIT ?",
                (expression, before if before is not None else 2**63 - 1, _SEARCH_SCAN))
            hits: list[dict] = []
            scanned, last = 0, None
            while len(hits) < limit:
                chunk = [row[0] for row in matches.fetchmany(max(2 * limit, 50))]
                if not chunk:
                    break
                scanned, last = scanned + len(chunk), chunk[-1]
                hits += rows(conn.execute(
                    "SELECT m.id AS message_id, m.gid, g.name, m.sender, m.created_at, "
                    "m.body, (SELECT c.id FROM conversations c WHERE c.gid = m.gid "
                    "AND c.first_message_id <= m.id ORDER BY c.id DESC LIMIT 1) "
                    "AS conversation_id FROM messages m JOIN guests g ON g.gid = m.gid "
                    f"WHERE m.id IN ({','.join('?' * len(chunk))}) AND g.group_id = ? "
                    "ORDER BY m.id DESC", (*chunk, group_id)))
            if len(hits) >= limit:
                return hits[:limit], hits[limit - 1]["message_id"]
            return hits, last if scanned == _SEARCH_SCAN else None
        return await self.read(search)

    async def switch_search_index(self, on: bool) -> None:
        """At start-up: keep the search index (``[privacy] search_index``) or not.

        Switching off empties it. Switching on again, it is rebuilt in the
        background by :meth:`index_messages`, from the first message on.
        """
        def unit(conn):
            state = meta_value(conn, _INDEX_STATE)
            if not on:
                if state != _OFF:
                    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('delete-all')")
                state = _OFF
            elif state == _OFF:
                state = "0"
            elif state is None:  # before the index followed the messages, each was indexed
                state = str(conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages")
                            .fetchone()[0])
            set_meta(conn, _INDEX_STATE, state)
            return None if state == _OFF else int(state)
        self._indexed_to = await self.write(unit)

    async def index_messages(self) -> None:
        """Add the text of the messages stored since the last call to the search index;
        returns once it has caught up (at once when nothing is new, or search is off).

        The index follows the messages rather than being written with each one:
        an index insert costs several times more in a commit of one message
        than in a commit of hundreds, and sends should not pay for it.
        """
        while self._indexed_to is not None and await self.read(lambda conn: conn.execute(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE id > ?)",
                (self._indexed_to,)).fetchone()[0]):
            self._indexed_to = await self.write(_index_some)

    async def search_visitors(self, group_id: int, query: str, limit: int) -> list[dict]:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return await self.read(lambda conn: rows(conn.execute(
            "SELECT g.gid, g.name, (SELECT MAX(c.id) FROM conversations c WHERE c.gid = g.gid) "
            "AS last_conversation_id FROM guests g WHERE g.group_id = ? AND g.name != '' "
            "AND g.name LIKE ? ESCAPE '\\' ORDER BY g.updated_at DESC LIMIT ?",
            (group_id, pattern, limit))))

    # -- notes -------------------------------------------------------------------------------

    async def add_note(self, gid: int, admin_id: int, body: str) -> dict:
        """A note on the guest's open conversation, after its last message; with none
        open, on its last one once that has ended, or on the next one when it has none
        yet."""
        def unit(conn):
            guest = conn.execute(
                "SELECT COALESCE(g.conversation_id, (SELECT MAX(id) FROM conversations c "
                "WHERE c.gid = g.gid)) AS conversation_id, g.last_message_id FROM guests g "
                "WHERE g.gid = ?", (gid,)).fetchone()
            note_id = conn.execute(
                "INSERT INTO notes (gid, conversation_id, admin_id, body, after_message_id, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (gid, guest["conversation_id"], admin_id, body, guest["last_message_id"] or 0,
                 now_ms())).lastrowid
            return one(conn.execute(f"SELECT {_NOTE_COLUMNS} FROM notes n "
                                    "LEFT JOIN agents a ON a.id = n.admin_id WHERE n.id = ?",
                                    (note_id,)))
        return await self.write(unit)

    async def notes(self, gid: int, conversation_id: int | None) -> list[dict]:
        """Notes of a conversation of guest ``gid``: the one given, else its open one,
        else its last; oldest first."""
        def query(conn):
            chosen = conversation_id
            if chosen is None:
                row = conn.execute(
                    "SELECT COALESCE(g.conversation_id, (SELECT MAX(id) FROM conversations c "
                    "WHERE c.gid = g.gid)) FROM guests g WHERE g.gid = ?", (gid,)).fetchone()
                chosen = row[0] if row else None
            return rows(conn.execute(
                f"SELECT {_NOTE_COLUMNS} FROM notes n LEFT JOIN agents a ON a.id = n.admin_id "
                "WHERE n.gid = ? AND n.conversation_id IS ? ORDER BY n.id LIMIT ?",
                (gid, chosen, MAX_NOTES)))
        return await self.read(query)

    # -- canned replies ----------------------------------------------------------------------

    async def canned_replies(self, group_id: int | None) -> list[dict]:
        where, params = ("WHERE group_id = ?", (group_id,)) if group_id is not None else ("", ())
        return await self.read(lambda conn: rows(conn.execute(
            f"SELECT id, group_id, shortcut, text, updated_at FROM canned_replies {where} "
            "ORDER BY group_id, shortcut", params)))

    async def save_canned(self, canned_id: int | None, group_id: int | None,
                          changes: dict[str, str], actor: Actor) -> dict:
        """Add (``canned_id`` None, in ``group_id``) or change a canned reply. Raises
        :class:`NotFound`, or :class:`Conflict` for a shortcut taken in the group."""
        def unit(conn):
            try:
                if canned_id is None:
                    if conn.execute("SELECT 1 FROM groups WHERE id = ?",
                                    (group_id,)).fetchone() is None:
                        raise NotFound(f"no group {group_id}")
                    row_id = conn.execute(
                        "INSERT INTO canned_replies (group_id, shortcut, text, updated_at) "
                        "VALUES (?, ?, ?, ?)",
                        (group_id, changes["shortcut"], changes["text"], now_ms())).lastrowid
                else:
                    row_id = canned_id
                    assignments = ", ".join(f"{key} = ?" for key in changes)
                    cursor = conn.execute(
                        f"UPDATE canned_replies SET {assignments}, updated_at = ? WHERE id = ?",
                        (*changes.values(), now_ms(), canned_id))
                    if not cursor.rowcount:
                        raise NotFound(f"no canned reply {canned_id}")
            except sqlite3.IntegrityError:
                raise Conflict(f"the shortcut {changes['shortcut']!r} is taken") from None
            write_audit(conn, actor, "canned.create" if canned_id is None else "canned.update",
                   "canned", row_id, changes)
            return one(conn.execute("SELECT id, group_id, shortcut, text, updated_at "
                                    "FROM canned_replies WHERE id = ?", (row_id,)))
        return await self.write(unit)

    async def delete_canned(self, canned_id: int, actor: Actor) -> None:
        def unit(conn):
            if not conn.execute("DELETE FROM canned_replies WHERE id = ?", (canned_id,)).rowcount:
                raise NotFound(f"no canned reply {canned_id}")
            write_audit(conn, actor, "canned.delete", "canned", canned_id, {})
        await self.write(unit)


def _index_some(conn: sqlite3.Connection) -> int:
    """Index the next text messages after the last one indexed; the new last one."""
    indexed_to = int(meta_value(conn, _INDEX_STATE))
    found = conn.execute("SELECT id, file_type, sender, body FROM messages WHERE id > ? "
                         "ORDER BY id LIMIT ?", (indexed_to, _INDEX_CHUNK)).fetchall()
    conn.executemany("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)",
                     [(row[0], index_text(row[3])) for row in found
                      if row[1] == TEXT and row[2] != "system"])
    if found:
        indexed_to = found[-1][0]
        set_meta(conn, _INDEX_STATE, str(indexed_to))
    return indexed_to
