"""When nobody can answer, and after the chat (docs/protocol.md §4 "Availability" and
"Ratings", §10 group settings): availability, business hours, automatic replies, ratings."""

from __future__ import annotations

import datetime

import pytest
from conftest import Client, assert_error


async def admin_headers(h, group: int) -> tuple[int, dict]:
    admin = await h.agent(group, "Olivia", role="admin")
    return admin, {"Authorization": "Bearer " + h.server.tokens.mint_agent(admin)}


async def save_settings(h, headers, group: int, settings: dict) -> tuple[int, dict]:
    return await h.http("PUT", f"/api/admin/groups/{group}/settings", settings, headers)


def closed_today() -> dict:
    """Group settings under which the group is closed right now (today is a closed day)."""
    return {"timezone": "UTC",
            "closed_days": [datetime.datetime.now(datetime.UTC).date().isoformat()],
            "away_reply": {"en": "We are closed; we answer by e-mail.",
                           "zh": "我们已下班，会通过邮件回复您。"},
            "greeting": {"en": "Hello! How can we help?", "zh": "您好！有什么可以帮您？"}}


@pytest.mark.gen_test(timeout=15)
async def test_the_guest_is_told_the_groups_availability_and_its_changes(make_server):
    # PROTOCOL §4 availability: 21000 carries online / busy / away; 22095 tells connected
    # guests when it changes (agents come, fill up, leave)
    h = await make_server(chat={"agent_capacity": 1, "agent_grace": 1})
    group = await h.group()
    first = await h.guest_client("u1", group)
    assert (first.login_data["availability"], first.login_data["expected_wait"]) == (
        "away", None)
    agent_id = await h.agent(group, "Ann")
    agent = await h.agent_client(agent_id)
    assert (await first.push(22095))["data"] == {"availability": "online",
                                                 "expected_wait": None}
    await first.ok(22300, msg="hello")  # takes the one seat
    assert (await first.push(22095))["data"]["availability"] == "busy"
    second = await h.guest_client("u2", group)
    assert second.login_data["availability"] == "busy"
    agent.close()
    assert (await second.push(22095, timeout=5))["data"]["availability"] == "away"


@pytest.mark.gen_test(timeout=15)
async def test_outside_business_hours_the_group_is_away_and_answers_itself(make_server):
    # PROTOCOL §4, §10 settings: outside business hours (a closed day) the group is away
    # even with an agent signed in, new conversations wait in the queue, and the first
    # message gets the away reply as a system message with its code and both languages;
    # the greeting comes in the visitor's language
    h = await make_server()
    group = await h.group()
    _, headers = await admin_headers(h, group)
    agent = await h.agent_client(await h.agent(group, "Ann"))
    code, answer = await save_settings(h, headers, group, closed_today())
    assert code == 200 and answer["data"]["availability"] == "away", answer
    guest = await h.guest_client("u1", group)
    assert guest.login_data["availability"] == "away"
    assert guest.login_data["greeting"] == "Hello! How can we help?"
    await guest.ok(22300, msg="Are you open?")
    reply = (await guest.push(22399))["data"]["message_info"]
    while reply["sender"] != "system":
        reply = (await guest.push(22399))["data"]["message_info"]
    assert reply["msg"] == "We are closed; we answer by e-mail."
    assert reply["event"]["event"] == "away"
    assert reply["event"]["text"]["zh"] == "我们已下班，会通过邮件回复您。"
    assert h.db("SELECT assigned_aix, queued_at IS NOT NULL FROM guests") == [(None, 1)]
    await agent.no_push(32401)
    # Open again: the waiting guest goes to the agent.
    code, _ = await save_settings(h, headers, group, {"timezone": "UTC"})
    assert code == 200
    assert (await agent.push(32401, timeout=5))["data"]["gid"] == guest.login_data["gid"]


@pytest.mark.gen_test(timeout=15)
async def test_a_chinese_visitor_gets_the_greeting_in_chinese(make_server):
    # PROTOCOL §4: the greeting in the language the widget reports
    h = await make_server()
    group = await h.group()
    _, headers = await admin_headers(h, group)
    await save_settings(h, headers, group, {"greeting": closed_today()["greeting"]})
    client = await h.guest_client("u1", group)
    assert client.login_data["greeting"] == "Hello! How can we help?"
    chinese = await Client.connect(h.port, 1)
    data = await chinese.ok(21000, token=h.server.tokens.mint_guest("u2", group),
                            context={"language": "zh-CN", "url": "https://shop.example/"})
    assert data["greeting"] == "您好！有什么可以帮您？"


@pytest.mark.gen_test(timeout=15)
async def test_a_busy_group_answers_with_the_queue_position(make_server):
    # PROTOCOL §4: a conversation that starts in the queue while agents are busy gets the
    # busy reply with its position
    h = await make_server(chat={"agent_capacity": 1})
    group = await h.group()
    await h.agent_client(await h.agent(group, "Ann"))
    first = await h.guest_client("u1", group)
    await first.ok(22300, msg="first")
    second = await h.guest_client("u2", group)
    await second.ok(22300, msg="second")
    reply = (await second.push(22399))["data"]["message_info"]
    while reply["sender"] != "system":
        reply = (await second.push(22399))["data"]["message_info"]
    assert (reply["event"]["event"], reply["event"]["queue_position"]) == ("busy", 1)
    assert "number 1 in line" in reply["msg"]


@pytest.mark.gen_test(timeout=15)
async def test_group_settings_are_checked_and_audited(make_server):
    # PROTOCOL §10 settings: bad input names the field; nothing is stored; audited
    h = await make_server()
    group = await h.group()
    _, headers = await admin_headers(h, group)
    for settings, field in (({"timezone": "Mars/Olympus"}, "timezone"),
                            ({"hours": {"mon": [["18:00", "09:00"]]}}, "hours.mon"),
                            ({"hours": {"funday": []}}, "hours"),
                            ({"closed_days": ["25/12"]}, "closed_days"),
                            ({"greeting": {"fr": "Bonjour"}}, "greeting"),
                            ({"notify_email": "not an address"}, "notify_email"),
                            ({"colour": "red"}, "unknown field colour")):
        code, answer = await save_settings(h, headers, group, settings)
        assert (code, answer["code"]) == (400, -40000), settings
        assert answer["message"].startswith(field), answer
    code, answer = await h.http("GET", f"/api/admin/groups/{group}/settings", headers=headers)
    assert answer["data"]["settings"]["hours"] is None
    weekdays = {day: [["09:00", "12:00"], ["13:00", "18:00"]]
                for day in ("mon", "tue", "wed", "thu", "fri")}
    code, answer = await save_settings(h, headers, group, {"timezone": "Asia/Shanghai",
                                                           "hours": weekdays})
    assert answer["data"]["settings"]["hours"]["mon"] == [["09:00", "12:00"],
                                                          ["13:00", "18:00"]]
    assert h.db("SELECT action FROM audit ORDER BY id DESC LIMIT 1") == [("group.settings",)]
    assert (await save_settings(h, headers, 999, {}))[0] == 404


@pytest.mark.gen_test(timeout=15)
async def test_the_guest_rates_the_conversation_and_the_agent_and_reports_see_it(make_server):
    # PROTOCOL §4 22950: a rating of the last conversation, 1 to 5 with a comment; the agent
    # gets 32951; reports average it
    h = await make_server()
    group = await h.group()
    _, headers = await admin_headers(h, group)
    agent_id = await h.agent(group, "Ann")
    agent = await h.agent_client(agent_id)
    guest = await h.guest_client("u1", group)
    assert_error(await guest.call(22950, rating=5), -22953)
    await guest.ok(22300, msg="help")
    await agent.ok(32300, gid=guest.login_data["gid"], msg="done")
    await agent.ok(32700, gid=guest.login_data["gid"])
    assert_error(await guest.call(22950, rating=6), -22951)
    assert_error(await guest.call(22950, rating=4, comment=7), -22952)
    rated = await guest.ok(22950, rating=4, comment="  quick, thanks  ")
    pushed = (await agent.push(32951))["data"]
    assert (pushed["rating"], pushed["comment"], pushed["conversation_id"]) == (
        4, "quick, thanks", rated["conversation_id"])
    assert h.db("SELECT rating, rating_comment FROM conversations") == [(4, "quick, thanks")]
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    code, answer = await h.http("GET", f"/api/admin/reports?from={today}&to={today}",
                                headers=headers)
    assert answer["data"]["totals"]["rating_average"] == 4.0
    assert {a["admin_id"]: a["rating_average"] for a in answer["data"]["agents"]}[
        agent_id] == 4.0
    listed = (await agent.ok(32800))["list"][0]
    assert (listed["rating"], listed["rating_comment"]) == (4, "quick, thanks")
