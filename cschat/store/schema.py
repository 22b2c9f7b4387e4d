"""The database schema: the migrations that build it, step by step.

A database records its schema version in ``PRAGMA user_version``; opening
it runs the migrations it lacks, each in the transaction of the writer's
first unit, so a migration is applied whole or not at all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable

from cschat.store.errors import StoreError
from cschat.store.search import index_text

log = logging.getLogger("cschat.store")


# Messages are counted per quarter hour for the reports (message_stats).
STATS_BUCKET_MS = 15 * 60 * 1000

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
    [
        # The role is only ever read from here, never taken from a token.
        """ALTER TABLE agents ADD COLUMN role TEXT NOT NULL DEFAULT 'agent'
            CHECK (role IN ('agent', 'admin'))""",
        # Who changed what in the directory and the webhooks: actor_id is the admin
        # (NULL for the command line and the demo, which ``via`` tells apart).
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            actor_id INTEGER,
            via TEXT NOT NULL CHECK (via IN ('admin', 'cli', 'demo')),
            action TEXT NOT NULL,
            target_type TEXT NOT NULL,
            target_id INTEGER,
            detail TEXT NOT NULL)""",
        """CREATE TABLE webhooks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            url TEXT NOT NULL,
            secret TEXT NOT NULL,
            created_at INTEGER NOT NULL)""",
        """CREATE TABLE webhook_events (
            event TEXT NOT NULL,
            webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
            PRIMARY KEY (event, webhook_id)) WITHOUT ROWID""",
        # Side effects written in the commit of what caused them, delivered later by a
        # worker: one row per delivery (kind 'webhook': target_id is the webhook). Rows
        # of one (kind, target_id, ordering_key) are delivered in id order.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            target_id INTEGER,
            ordering_key TEXT NOT NULL,
            event TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            last_attempt_at INTEGER,
            last_status INTEGER,
            last_error TEXT)""",
        """CREATE INDEX outbox_pending ON outbox (kind, target_id, ordering_key, id)
            WHERE state = 'pending'""",
        """CREATE INDEX outbox_by_target ON outbox (kind, target_id, id)""",
        """CREATE INDEX outbox_due ON outbox (kind, next_attempt_at) WHERE state = 'pending'""",
        """CREATE INDEX outbox_by_time ON outbox (kind, created_at)""",
        """CREATE INDEX outbox_done ON outbox (created_at) WHERE state != 'pending'""",
        # A guest's chat cut into conversations (docs/protocol.md §11): one starts with
        # the first message while none is open and ends when the guest is released.
        # Its counters are kept as messages come, so reports need not scan messages.
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            gid INTEGER NOT NULL REFERENCES guests(gid),
            group_id INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            ended_at INTEGER,
            end_reason TEXT,
            admin_id INTEGER,
            first_message_id INTEGER NOT NULL,
            last_message_id INTEGER NOT NULL,
            guest_messages INTEGER NOT NULL DEFAULT 0,
            agent_messages INTEGER NOT NULL DEFAULT 0,
            first_guest_at INTEGER,
            first_response_at INTEGER,
            responder_id INTEGER,
            queued INTEGER NOT NULL DEFAULT 0,
            wait_started_at INTEGER,
            queue_wait_ms INTEGER NOT NULL DEFAULT 0)""",
        """CREATE INDEX conversations_by_start ON conversations (started_at)""",
        """CREATE INDEX conversations_by_guest ON conversations (gid, id)""",
        """ALTER TABLE guests ADD COLUMN conversation_id INTEGER""",
        # Messages counted per quarter hour (every time zone's offset is a whole
        # number of quarter hours), group, agent (0: the guest) and sender.
        """CREATE TABLE message_stats (
            bucket INTEGER NOT NULL,
            group_id INTEGER NOT NULL,
            admin_id INTEGER NOT NULL,
            sender TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (bucket, group_id, admin_id, sender)) WITHOUT ROWID""",
        f"""INSERT INTO message_stats (bucket, group_id, admin_id, sender, count)
            SELECT m.created_at / {STATS_BUCKET_MS}, g.group_id, COALESCE(m.admin_id, 0),
                   m.sender, COUNT(*)
            FROM messages m JOIN guests g ON g.gid = m.gid WHERE m.sender != 'system'
            GROUP BY 1, 2, 3, 4""",
    ],
    [
        # What the agent may know of the visitor (docs/protocol.md §3 "context"), as
        # JSON; visits counts logins on distinct days (last_visit_day, the UTC date).
        """ALTER TABLE guests ADD COLUMN context TEXT NOT NULL DEFAULT '{}'""",
        """ALTER TABLE guests ADD COLUMN visits INTEGER NOT NULL DEFAULT 0""",
        """ALTER TABLE guests ADD COLUMN last_visit_day TEXT""",
        # 禁言: a blocked guest's messages are refused until the block is lifted.
        """ALTER TABLE guests ADD COLUMN blocked_at INTEGER""",
        """ALTER TABLE guests ADD COLUMN blocked_by INTEGER""",
        """CREATE INDEX guests_blocked ON guests (blocked_at) WHERE blocked_at IS NOT NULL""",
        """CREATE INDEX conversations_by_group ON conversations (group_id, id)""",
        """CREATE TABLE conversation_pages (
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            at INTEGER NOT NULL,
            url TEXT NOT NULL,
            title TEXT NOT NULL)""",
        """CREATE INDEX conversation_pages_by_conversation
            ON conversation_pages (conversation_id, at)""",
        """CREATE TABLE conversation_tags (
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            tag TEXT NOT NULL,
            PRIMARY KEY (conversation_id, tag)) WITHOUT ROWID""",
        """CREATE INDEX conversation_tags_by_tag ON conversation_tags (tag, conversation_id)""",
        # Private notes of the agents: never in the guest's history.
        """CREATE TABLE notes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            gid INTEGER NOT NULL REFERENCES guests(gid),
            conversation_id INTEGER,
            admin_id INTEGER NOT NULL,
            body TEXT NOT NULL,
            after_message_id INTEGER NOT NULL,
            created_at INTEGER NOT NULL)""",
        """CREATE INDEX notes_by_guest ON notes (gid, id)""",
        """CREATE TABLE canned_replies (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id INTEGER NOT NULL REFERENCES groups(id),
            shortcut TEXT NOT NULL,
            text TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (group_id, shortcut))""",
        # Full-text search over text messages; rowid is the message id. Contentless:
        # the text is in messages, and what is indexed is that text with CJK runs cut
        # into overlapping pairs of characters (cschat.store.search).
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            body, content='', tokenize='unicode61 remove_diacritics 2')""",
        lambda conn: _index_old_messages(conn),
    ],
    [
        # A group's business hours, greeting and automatic replies, and the address
        # its mail goes to, as JSON checked by cschat.availability.
        """CREATE TABLE group_settings (
            group_id INTEGER PRIMARY KEY REFERENCES groups(id),
            settings TEXT NOT NULL,
            updated_at INTEGER NOT NULL)""",
        """ALTER TABLE conversations ADD COLUMN rating INTEGER""",
        """ALTER TABLE conversations ADD COLUMN rating_comment TEXT""",
        """ALTER TABLE conversations ADD COLUMN rated_at INTEGER""",
    ],
    [
        # The visitor left a message while nobody could answer (the away form).
        """ALTER TABLE conversations ADD COLUMN left_message INTEGER NOT NULL DEFAULT 0""",
        # The shop was mailed that this conversation waited too long.
        """ALTER TABLE conversations ADD COLUMN queue_alerted INTEGER NOT NULL DEFAULT 0""",
    ],
    [
        # The outbox's pending rows, oldest first: what is due is read in this order and
        # the reading stops at a round's worth, however long the backlog.
        """CREATE INDEX outbox_pending_by_id ON outbox (kind, id) WHERE state = 'pending'""",
    ],
    [
        # Fewer index entries per outbox row (each message writes one while a webhook
        # wants message.created): the order per key is found by reading the pending rows
        # oldest first; only mail counts its rows by time; and a row written to go at once
        # and never tried has no retry time worth an entry.
        """DROP INDEX outbox_pending""",
        """DROP INDEX outbox_by_time""",
        """CREATE INDEX outbox_mail_by_time ON outbox (created_at) WHERE kind = 'mail'""",
        """DROP INDEX outbox_due""",
        """CREATE INDEX outbox_due ON outbox (kind, next_attempt_at)
            WHERE state = 'pending' AND next_attempt_at > created_at""",
    ],
    [
        # message.created events are taken from the messages by the outbox worker, which
        # writes their rows as it goes: a webhook's cursor is the last message it took.
        # Each row has a position among its conversation's events: 2 × the message's id
        # for a message, 2 × the guest's last message id + 1 for an event after it (one
        # before a message: 2 × its id - 1); -1 for every row written before this and
        # for mail, which go in id order. Pending rows are read in this order.
        """ALTER TABLE webhooks ADD COLUMN message_cursor INTEGER""",
        """UPDATE webhooks SET message_cursor = (SELECT COALESCE(MAX(id), 0) FROM messages)
            WHERE id IN (SELECT webhook_id FROM webhook_events
                         WHERE event = 'message.created')""",
        """ALTER TABLE outbox ADD COLUMN position INTEGER NOT NULL DEFAULT -1""",
        # The start of the ids of message.created events, which are made from the message
        # id: the same for every webhook, and unlike those of another database.
        """INSERT INTO meta (key, value) VALUES ('message_event_ids', lower(hex(randomblob(8))))""",
        """DROP INDEX outbox_pending_by_id""",
        """CREATE INDEX outbox_pending_in_order ON outbox (kind, position, id)
            WHERE state = 'pending'""",
    ],
    [
        # The webhooks screen counts a webhook's failed deliveries and shows its last
        # attempt: without these it read every row the webhook ever had.
        """CREATE INDEX outbox_failed ON outbox (kind, target_id) WHERE state = 'failed'""",
        """CREATE INDEX outbox_attempted ON outbox (kind, target_id, last_attempt_at)
            WHERE attempts > 0""",
    ],
]
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
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


def _index_old_messages(conn: sqlite3.Connection) -> None:
    """Add the text messages stored before search existed to its index."""
    cursor = conn.execute("SELECT id, body FROM messages WHERE file_type = 0 "
                          "AND sender != 'system'")
    while rows := cursor.fetchmany(5000):
        conn.executemany("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)",
                         [(row[0], index_text(row[1])) for row in rows])
