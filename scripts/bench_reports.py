"""Benchmark the admin reports on a year of a busy shop: 1M messages by default.

    python scripts/bench_reports.py                  # 1M messages, 100k conversations
    python scripts/bench_reports.py --messages 200000

Builds a fresh database with cschat's own schema, fills a year of chats in
bulk (messages, the conversations and the per-quarter-hour counts the chat
keeps as it goes), starts ``cschat run`` on it and times
``GET /api/admin/reports`` over the whole year, per group and for all groups,
in JSON and in CSV, through real HTTP. Prints the median and the slowest of
the rounds; the target is under a second (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

YEAR_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
QUARTER_HOUR_MS = 900_000
GROUPS, AGENTS_PER_GROUP = 3, 5


def numbered(rng: random.Random, gid: int, position: int) -> str:
    return f"message {position} of conversation {gid}"


def build(path: str, messages: int, per_conversation: int, text=numbered) -> list[int]:
    """Create the database with cschat's migrations and fill it; returns the agent ids.

    ``text(rng, gid, position)`` makes each message's text; text messages are also
    added to the search index, as the chat does.
    """
    from cschat.store import Store
    from cschat.store.search import index_text

    async def create() -> None:
        store = await Store(path).open()
        for g in range(GROUPS):
            group = await store.add_group(f"Group {g + 1}")
            for a in range(AGENTS_PER_GROUP):
                await store.add_agent(group, f"Agent {g + 1}.{a + 1}", "", None, None,
                                      "admin" if g == a == 0 else "agent")
        await store.close()
    asyncio.run(create())
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    conversations = messages // per_conversation
    stats: dict[tuple, int] = {}
    with conn:
        for n in range(conversations):
            group = n % GROUPS + 1
            agent = (group - 1) * AGENTS_PER_GROUP + rng.randrange(AGENTS_PER_GROUP) + 1
            gid = n + 1
            started = YEAR_START_MS + rng.randrange(364 * DAY_MS)
            conn.execute("INSERT INTO guests (gid, group_id, uid, created_at, updated_at, "
                         "message_count) VALUES (?, ?, ?, ?, ?, ?)",
                         (gid, group, f"u{gid}", started, started, per_conversation))
            rows = []
            at = started
            for position in range(1, per_conversation + 1):
                sender = "guest" if position % 2 else "agent"
                at += rng.randrange(5_000, 120_000)
                rows.append((gid, sender, agent if sender == "agent" else None, 0,
                             text(rng, gid, position), at, position))
                key = (at // QUARTER_HOUR_MS, group, agent if sender == "agent" else 0, sender)
                stats[key] = stats.get(key, 0) + 1
            first_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()[0]
            conn.executemany("INSERT INTO messages (gid, sender, admin_id, file_type, body, "
                             "created_at, position) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)",
                             [(first_id + n, index_text(row[4])) for n, row in enumerate(rows)])
            queued = rng.random() < 0.2
            conn.execute(
                "INSERT INTO conversations (gid, group_id, started_at, ended_at, admin_id, "
                "first_message_id, last_message_id, guest_messages, agent_messages, "
                "first_guest_at, first_response_at, responder_id, queued, queue_wait_ms) "
                "VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, ?, ?)",
                (gid, group, started, at, agent, per_conversation // 2, per_conversation // 2,
                 rows[0][5], rows[1][5], agent, int(queued),
                 rng.randrange(1000, 600_000) if queued else 0))
        conn.executemany("INSERT INTO message_stats (bucket, group_id, admin_id, sender, count) "
                         "VALUES (?, ?, ?, ?, ?)", [(*key, count) for key, count in stats.items()])
    conn.close()
    return list(range(1, GROUPS * AGENTS_PER_GROUP + 1))


def built_server(name: str, messages: int, per_conversation: int, text=numbered,
                 settings: str = "") -> tuple[str, int, str, subprocess.Popen]:
    """Build the database (:func:`build`) in a new folder and start ``cschat run`` on it,
    answering ``/healthz``: ``(folder, port, an admin's token, the process)``."""
    folder = tempfile.mkdtemp(prefix=f"cschat-bench-{name}-")
    path = os.path.join(folder, "chat.db")
    started = time.monotonic()
    build(path, messages, per_conversation, text)
    print(f"built {messages} messages in {time.monotonic() - started:.0f} s "
          f"({os.path.getsize(path) / 2**20:.0f} MiB)")
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = os.path.join(folder, "cschat.ini")
    with open(config, "w") as handle:
        handle.write(f"[server]\nport = {port}\n[database]\npath = chat.db\n"
                     f"[uploads]\ndir = uploads\n{settings}")
    token = subprocess.run([sys.executable, "-m", "cschat", "--config", config, "token",
                            "agent", "1"], capture_output=True, text=True, check=True
                           ).stdout.strip()
    server = subprocess.Popen([sys.executable, "-m", "cschat", "run", "--config", config],
                              stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
            break
        except OSError:
            time.sleep(0.1)
    return folder, port, token, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--per-conversation", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    folder, port, token, server = built_server("reports", args.messages,
                                               args.per_conversation)
    try:
        base = f"http://127.0.0.1:{port}"
        for label, query in (("one group, JSON", "&group_id=1"), ("all groups, JSON", ""),
                             ("all groups, CSV by day", "&format=csv&rows=days")):
            url = f"{base}/api/admin/reports?from=2026-01-01&to=2026-12-31&tz=Asia/Shanghai" \
                  + query
            times = []
            for _ in range(args.rounds):
                request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
                begin = time.perf_counter()
                with urllib.request.urlopen(request) as response:
                    response.read()
                times.append(time.perf_counter() - begin)
            print(f"report over a year, {label:24s} median {statistics.median(times) * 1000:7.1f}"
                  f" ms   slowest {max(times) * 1000:7.1f} ms")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
