"""Reports (docs/protocol.md §12): checked on a seeded database whose answers are known,
and on conversations the chat itself recorded."""

from __future__ import annotations

import csv
import datetime
import io
import zoneinfo

import pytest
import tornado.httpclient

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
UTC = datetime.UTC
QUARTER_HOUR_MS = 15 * 60 * 1000


def ms(day: int, hour: int, minute: int = 0, zone=PARIS) -> int:
    """Milliseconds of a local time in March 2026 (summer time starts on the 29th)."""
    return int(datetime.datetime(2026, 3, day, hour, minute, tzinfo=zone).timestamp() * 1000)


async def admin_of(h) -> tuple[int, dict]:
    group = await h.group("Shop")
    admin = await h.agent(group, "Olivia", role="admin")
    return group, {"Authorization": "Bearer " + h.server.tokens.mint_agent(admin)}


async def report(h, headers, query: str) -> dict:
    code, answer = await h.http("GET", "/api/admin/reports?" + query, headers=headers)
    assert code == 200, answer
    return answer["data"]


def seed(h, group: int, other_group: int, agents: tuple[int, int]) -> None:
    """Conversations and message counts with known answers, around the change to summer
    time in Paris (2026-03-29, a day of 23 hours)."""
    ann, bob = agents
    for gid, group_id in ((1, group), (2, other_group)):
        h.db_write("INSERT INTO guests (gid, group_id, uid, created_at, updated_at) "
                   "VALUES (?, ?, ?, 0, 0)", (gid, group_id, f"seed{gid}"))
    conversations = [
        # started_at, group, admin, responder, first guest, response after s, queued s, ended, g
        (ms(28, 10), group, ann, ann, ms(28, 10), 10, None, True, 2),
        (ms(28, 23, 30, UTC), group, ann, ann, ms(28, 23, 30, UTC), 30, 60, True, 1),  # 00:30
        (ms(29, 12), group, bob, bob, ms(29, 12), 20, 120, True, 3),
        (ms(29, 23, 59), group, bob, None, ms(29, 23, 59), None, None, True, 1),  # missed
        (ms(30, 9), group, None, None, ms(30, 9), None, 300, False, 1),  # waiting still open
        (ms(29, 12), other_group, None, None, ms(29, 12), None, None, True, 5),  # other group
        (ms(31, 0, 0), group, ann, ann, ms(31, 0), 40, None, True, 1),  # after the span
    ]
    for started, group_id, admin, responder, first_guest, response, waited, ended, count in \
            conversations:
        gid = 1 if group_id == group else 2
        h.db_write(
            "INSERT INTO conversations (gid, group_id, started_at, ended_at, admin_id, "
            "first_message_id, last_message_id, guest_messages, first_guest_at, "
            "first_response_at, responder_id, queued, queue_wait_ms, wait_started_at) "
            "VALUES (?, ?, ?, ?, ?, 1, 1, ?, ?, ?, ?, ?, ?, NULL)",
            (gid, group_id, started, started + 3_600_000 if ended else None, admin, count,
             first_guest, first_guest + response * 1000 if response is not None else None,
             responder, int(waited is not None), (waited or 0) * 1000))
    counts = [(ms(28, 10), group, 0, "guest", 4), (ms(28, 10), group, ann, "agent", 3),
              (ms(28, 23, 45, UTC), group, ann, "agent", 2),  # 29th, 00:45 local
              (ms(29, 12), group, bob, "agent", 5), (ms(29, 12), group, 0, "guest", 6),
              (ms(29, 12), other_group, 0, "guest", 9)]
    for at, group_id, admin_id, sender, count in counts:
        h.db_write("INSERT INTO message_stats (bucket, group_id, admin_id, sender, count) "
                   "VALUES (?, ?, ?, ?, ?)", (at // QUARTER_HOUR_MS, group_id, admin_id,
                                              sender, count))


@pytest.mark.gen_test
async def test_a_seeded_report_has_the_known_figures(make_server):
    # PROTOCOL §12: per local day (a 23-hour day included) and per agent: conversations,
    # messages, first response median and p90, queue, missed; days with nothing are zeros
    h = await make_server()
    group, headers = await admin_of(h)
    other = await h.group("Other")
    ann, bob = await h.agent(group, "Ann"), await h.agent(group, "Bob")
    idle = await h.agent(group, "Idle")
    elsewhere = await h.agent(other, "Elsewhere")
    seed(h, group, other, (ann, bob))
    data = await report(h, headers, f"from=2026-03-28&to=2026-03-30&tz=Europe/Paris"
                                    f"&group_id={group}")
    days = {day["date"]: day for day in data["days"]}
    assert list(days) == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert days["2026-03-28"] == {
        "date": "2026-03-28", "conversations": 1, "guest_messages": 4, "agent_messages": 3,
        "first_response_median": 10.0, "first_response_p90": 10.0, "queued": 0,
        "queue_wait_median": None, "queue_wait_max": None, "missed": 0, "rating_average": None}
    assert days["2026-03-29"] == {
        "date": "2026-03-29", "conversations": 3, "guest_messages": 6, "agent_messages": 7,
        "first_response_median": 25.0, "first_response_p90": 30.0, "queued": 2,
        "queue_wait_median": 90.0, "queue_wait_max": 120.0, "missed": 1, "rating_average": None}
    assert (days["2026-03-30"]["conversations"], days["2026-03-30"]["queued"],
            days["2026-03-30"]["missed"]) == (1, 1, 0)
    assert data["totals"]["conversations"] == 5 and data["totals"]["missed"] == 1
    assert data["totals"]["first_response_median"] == 20.0
    agents = {row["admin_id"]: row for row in data["agents"]}
    assert set(agents) == {h_id for h_id in (ann, bob, idle)} | {
        row["admin_id"] for row in data["agents"] if row["name"] == "Olivia"}
    assert elsewhere not in agents
    assert (agents[ann]["conversations"], agents[ann]["agent_messages"],
            agents[ann]["first_response_median"], agents[ann]["guest_messages"]) == (
        2, 5, 20.0, None)
    assert (agents[bob]["conversations"], agents[bob]["missed"], agents[bob]["queued"]) == (
        2, 1, 1)
    assert agents[idle]["conversations"] == 0 and agents[idle]["name"] == "Idle"
    # In UTC the conversation at 00:30 Paris time belongs to the 28th.
    utc = await report(h, headers, f"from=2026-03-28&to=2026-03-28&group_id={group}")
    assert utc["tz"] == "UTC" and utc["days"][0]["conversations"] == 2
    # Without a group, the other group's conversation counts too.
    everything = await report(h, headers, "from=2026-03-29&to=2026-03-29&tz=Europe/Paris")
    assert everything["days"][0]["conversations"] == 4
    assert everything["days"][0]["guest_messages"] == 15


@pytest.mark.gen_test
async def test_the_csv_has_the_same_rows(make_server):
    # PROTOCOL §12: format=csv gives the rows as a download; a name that starts like a
    # spreadsheet formula is quoted so that it shows as text
    h = await make_server()
    group, headers = await admin_of(h)
    ann = await h.agent(group, "=HYPERLINK(\"x\")")
    seed(h, group, await h.group("Other"), (ann, ann))
    base = f"/api/admin/reports?from=2026-03-28&to=2026-03-30&tz=Europe/Paris&group_id={group}"
    code, json_answer = await h.http("GET", base, headers=headers)
    for rows in ("days", "agents"):
        response = await raw(h, base + f"&format=csv&rows={rows}", headers)
        assert response.code == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert f"cschat-report-{rows}-2026-03-28-2026-03-30.csv" in \
            response.headers["Content-Disposition"]
        table = list(csv.DictReader(io.StringIO(response.body.decode())))
        assert len(table) == len(json_answer["data"][rows])
    days = list(csv.DictReader(io.StringIO((await raw(h, base + "&format=csv", headers)
                                            ).body.decode())))
    assert days[1]["conversations"] == "3" and days[1]["first_response_p90"] == "30.0"
    assert days[1]["rating_average"] == ""
    agents = (await raw(h, base + "&format=csv&rows=agents", headers)).body.decode()
    assert "'=HYPERLINK" in agents


async def raw(h, path: str, headers: dict) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        h.url + path, headers=headers, raise_error=False)


@pytest.mark.gen_test
async def test_bad_report_queries_are_refused(make_server):
    # PROTOCOL §12: from/to are dates, to not before from, at most 366 days, a known zone
    h = await make_server()
    _, headers = await admin_of(h)
    for query in ("", "from=2026-03-01", "from=2026-3-1&to=2026-03-02",
                  "from=2026-03-02&to=2026-03-01", "from=2025-01-01&to=2026-01-02",
                  "from=2026-03-01&to=2026-03-02&tz=Mars/Olympus",
                  "from=2026-03-01&to=2026-03-02&group_id=x",
                  "from=2026-03-01&to=2026-03-02&format=xml"):
        code, answer = await h.http("GET", "/api/admin/reports?" + query, headers=headers)
        assert (code, answer["code"]) == (400, -40000), query


@pytest.mark.gen_test(timeout=20)
async def test_the_chat_records_what_reports_count(make_server):
    # PROTOCOL §11/§12: a conversation starts with its first message and counts the
    # messages, the first response and the wait in the queue as they happen; one that
    # ended unanswered is missed
    h = await make_server()
    group, headers = await admin_of(h)
    agent = await h.agent(group, "Ann")
    console = await h.agent_client(agent)
    await console.ok(32500, status=1)  # suspended: new guests wait in the queue
    guest = await h.guest_client("u1", group, "Zoe")
    gid = guest.login_data["gid"]
    await guest.ok(22300, msg="anyone?")
    await guest.ok(22300, msg="hello?")
    await console.ok(32500, status=0)  # takes the waiting guest
    await console.push(32401)
    await console.ok(32300, gid=gid, msg="Hi Zoe")
    await console.ok(32700, gid=gid)
    second = await h.guest_client("u2", group)
    await second.ok(22300, msg="is this on?")
    await console.push(32401)
    await console.ok(32700, gid=second.login_data["gid"])
    rows = h.db("SELECT gid, admin_id, guest_messages, agent_messages, queued, "
                "queue_wait_ms > 0, first_response_at >= first_guest_at, responder_id, "
                "end_reason FROM conversations ORDER BY id")
    assert rows == [(gid, agent, 2, 1, 1, 1, 1, agent, "agent"),
                    (second.login_data["gid"], agent, 1, 0, 0, 0, None, None, "agent")]
    assert h.db("SELECT conversation_id FROM guests WHERE gid = ?", (gid,)) == [(None,)]
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    data = await report(h, headers, f"from={today}&to={today}")
    totals = data["totals"]
    assert (totals["conversations"], totals["guest_messages"], totals["agent_messages"],
            totals["queued"], totals["missed"]) == (2, 3, 1, 1, 1)
    assert totals["first_response_median"] is not None
    # A new message after the end starts a second conversation of the same guest.
    await guest.ok(22300, msg="one more thing")
    assert h.db("SELECT COUNT(*) FROM conversations WHERE gid = ?", (gid,)) == [(2,)]
