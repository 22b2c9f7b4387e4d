"""The database file across versions: migrations keep stored conversations whole."""

from __future__ import annotations

import sqlite3

import pytest

from cschat.store import SCHEMA_VERSION, Store
from cschat.store import schema as store_module


def schema_2_database(path) -> None:
    """A database as cschat's schema 2 left it, with two interleaved conversations."""
    with sqlite3.connect(path) as conn:
        for statements in store_module._MIGRATIONS[:2]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO groups (id, name, created_at) VALUES (1, 'Shop', 0)")
        for gid in (1, 2):
            conn.execute("INSERT INTO guests (gid, group_id, uid, created_at, updated_at) "
                         "VALUES (?, 1, ?, 0, 0)", (gid, f"u{gid}"))
        for n in range(25):
            for gid in (1, 2):
                conn.execute("INSERT INTO messages (gid, sender, file_type, body, created_at) "
                             "VALUES (?, 'guest', 0, ?, 0)", (gid, f"{gid}:{n}"))
        conn.execute("UPDATE guests SET message_count = 25")


@pytest.mark.gen_test
async def test_upgrade_numbers_old_messages_so_pages_stay_the_same(tmp_path):
    # Schema migrations (PRAGMA user_version): history pages (PROTOCOL 32100) of messages
    # stored before positions existed are the same after the upgrade
    path = str(tmp_path / "old.db")
    schema_2_database(path)
    store = await Store(path).open()
    try:
        page_1, total = await store.history(1, 1, 10, None, None)
        page_3, _ = await store.history(1, 3, 10, None, None)
        assert total == 25
        assert [m["body"] for m in page_1] == [f"1:{n}" for n in range(15, 25)]
        assert [m["body"] for m in page_3] == [f"1:{n}" for n in range(0, 5)]
        assert (await store.history(1, 4, 10, None, None))[0] == []
        message, created = await store.add_message(2, "guest", None, 0, "2:new", None)
        assert created
        newest, total = await store.history(2, 1, 2, None, None)
        assert [m["body"] for m in newest] == ["2:24", "2:new"] and total == 26
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        positions = conn.execute("SELECT position FROM messages WHERE gid = 2 ORDER BY id")
        assert [p for (p,) in positions] == list(range(1, 27))


@pytest.mark.gen_test
async def test_a_newer_database_is_refused(tmp_path):
    # Migrations never run backwards: a database from a newer cschat stops this one
    path = str(tmp_path / "new.db")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(store_module.StoreError, match="newer"):
        await Store(path).open()


@pytest.mark.gen_test
async def test_upgrade_heals_cards_stored_with_infinity_or_nan(tmp_path):
    # SECURITY poisoned card: schema 4 rewrites the non-finite numbers older versions stored
    # in cards (which no client can parse) as null; other messages are untouched.
    path = str(tmp_path / "old.db")
    schema_2_database(path)
    with sqlite3.connect(path) as conn:
        for statement in store_module._MIGRATIONS[2]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.execute("INSERT INTO messages (gid, sender, file_type, body, created_at, position) "
                     "VALUES (1, 'guest', 3, ?, 0, 26)",
                     ('{"id":"p1","title":"NaN shoes","price":Infinity,"x":-Infinity,"y":NaN}',))
    store = await Store(path).open()
    try:
        rows = await store.read(lambda conn: conn.execute(
            "SELECT body FROM messages WHERE file_type = 3 OR id = 1").fetchall())
    finally:
        await store.close()
    bodies = sorted(row["body"] for row in rows)
    assert bodies == ['1:0', '{"id":"p1","title":"NaN shoes","price":null,"x":null,"y":null}']


@pytest.mark.gen_test
async def test_upgrade_counts_old_messages_for_the_reports(tmp_path):
    # Schema 6 (docs/protocol.md §12): messages stored before the reports existed are
    # counted per quarter hour; conversations start with the first message after it
    path = str(tmp_path / "old.db")
    schema_2_database(path)
    store = await Store(path).open()
    try:
        await store.add_message(1, "guest", None, 0, "after the upgrade", None)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        # The 50 old messages were all stored at time 0: the first quarter hour.
        assert conn.execute("SELECT group_id, admin_id, sender, count FROM message_stats "
                            "WHERE bucket = 0").fetchall() == [(1, 0, "guest", 50)]
        assert conn.execute("SELECT SUM(count) FROM message_stats").fetchone()[0] == 51
        assert conn.execute("SELECT gid, guest_messages FROM conversations").fetchall() == [
            (1, 1)]


@pytest.mark.gen_test
async def test_upgrade_delivers_old_webhook_rows_first_then_takes_new_messages(tmp_path):
    # Schema 12 (docs/protocol.md §11): a webhook that wanted message.created goes on from
    # the last message stored before the upgrade; rows already in the outbox keep going
    # first, and later messages become rows when the worker takes them
    path = str(tmp_path / "old.db")
    schema_2_database(path)
    with sqlite3.connect(path) as conn:  # schema 11: before the cursors
        for steps in store_module._MIGRATIONS[2:11]:
            for step in steps:
                step(conn) if callable(step) else conn.execute(step)
        conn.execute("PRAGMA user_version = 11")
        conn.execute("INSERT INTO webhooks (id, url, secret, created_at) "
                     "VALUES (1, 'http://127.0.0.1:9/hook', 's', 0)")
        conn.execute("INSERT INTO webhook_events VALUES ('message.created', 1)")
        conn.execute("INSERT INTO outbox (kind, target_id, ordering_key, event, payload, "
                     "created_at, next_attempt_at) VALUES ('webhook', 1, '1', "
                     "'message.created', '{\"old\":true}', 0, 0)")
    store = await Store(path).open()
    try:
        message, _ = await store.add_message(1, "guest", None, 0, "after the upgrade", None)
        # A round of one: the old row alone is due, and the new message is not taken
        # (the round is full without it).
        found = await store.outbox_round("webhook", [], 1)
        assert [row["payload"] for row in found.due] == ['{"old":true}'] and found.behind
        assert found.targets[1]["url"] == "http://127.0.0.1:9/hook"
        # A round of eight would be short: the message is taken, and waits for the old row
        # of its conversation.
        found = await store.outbox_round("webhook", [], 8)
        assert [row["payload"] for row in found.due] == ['{"old":true}'] and not found.behind
        found = await store.outbox_round(
            "webhook", [(found.due[0]["id"], "delivered", 0, 200, None)], 8)
        assert [row["event"] for row in found.due] == ["message.created"]
        assert '"msg":"after the upgrade"' in found.due[0]["payload"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT message_cursor FROM webhooks").fetchall() == [
            (message["id"],)]
