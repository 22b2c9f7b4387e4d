"""The admin API (docs/protocol.md §10): who may use it, what it changes, and the audit log."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Client, assert_error

from cschat.auth import hash_password

WEAK_N = 2**10  # quick hashes for agents set up by the tests themselves


async def admin_server(make_server, **settings):
    """A server with a group and an admin: ``(h, group_id, admin_id, headers)``."""
    h = await make_server(**settings)
    group = await h.group("Shop")
    admin = await h.agent(group, "Olivia", role="admin")
    return h, group, admin, bearer(h, admin)


def bearer(h, admin_id: int) -> dict:
    return {"Authorization": "Bearer " + h.server.tokens.mint_agent(admin_id)}


async def call(h, headers, method, path, body=None) -> tuple[int, dict]:
    return await h.http(method, "/api/admin" + path, body, headers)


async def ok(h, headers, method, path, body=None, status=200) -> dict:
    code, answer = await call(h, headers, method, path, body)
    assert (code, answer["code"]) == (status, 200), answer
    return answer["data"]


async def audit(h, headers) -> list[dict]:
    return (await ok(h, headers, "GET", "/audit"))["entries"]


@pytest.mark.gen_test
async def test_only_an_admin_token_gets_in(make_server):
    # PROTOCOL §10: 401 -40001 without a valid token, 403 -40003 for an agent that is not
    # an admin; the role is read from the database at each request, never from the token
    h, group, admin, headers = await admin_server(make_server)
    agent = await h.agent(group, "Bob")
    for bad in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eA=="},
                {"Authorization": "Bearer " + h.server.tokens.mint_guest("u1", group)}):
        code, answer = await call(h, bad, "GET", "/agents")
        assert code == 401, bad
        assert_error(answer, -40001)
    code, answer = await call(h, bearer(h, agent), "GET", "/agents")
    assert code == 403
    assert_error(answer, -40003)
    h.db_write("UPDATE agents SET role = 'admin' WHERE id = ?", (agent,))
    token = bearer(h, agent)
    assert (await call(h, token, "GET", "/agents"))[0] == 200
    h.db_write("UPDATE agents SET role = 'agent' WHERE id = ?", (agent,))
    assert (await call(h, token, "GET", "/agents"))[0] == 403
    # A disabled admin, or an admin whose tokens were revoked, is out at once.
    await ok(h, headers, "PATCH", f"/agents/{agent}", {"role": "admin"})
    await ok(h, headers, "PATCH", f"/agents/{agent}", {"enabled": False})
    assert (await call(h, token, "GET", "/agents"))[0] == 401


@pytest.mark.gen_test(timeout=20)
async def test_groups_and_agents_are_created_listed_and_can_sign_in(make_server):
    # PROTOCOL §10: POST answers 201 with the object; a created agent signs in with its
    # password at once; the 31000 answer carries its role
    h, _, _, headers = await admin_server(make_server)
    group = (await ok(h, headers, "POST", "/groups", {"name": " Returns "}, 201))["group"]
    assert group["name"] == "Returns" and group["enabled"] is True and group["agents"] == 0
    created = (await ok(h, headers, "POST", "/agents", {
        "group_id": group["id"], "name": "Carol", "username": "carol",
        "password": "a long password", "role": "admin"}, 201))["agent"]
    assert created["role"] == "admin" and created["has_password"] is True
    assert created["status"] == "offline" and created["username"] == "carol"
    groups = (await ok(h, headers, "GET", "/groups"))["groups"]
    assert [g["agents"] for g in groups] == [1, 1]
    code, signed_in = await h.http("POST", "/api/login", {"username": "carol",
                                                          "password": "a long password"})
    assert code == 200 and signed_in["data"]["admin_id"] == created["admin_id"]
    console = await h.agent_client(created["admin_id"], signed_in["data"]["token"])
    agents = {a["admin_id"]: a for a in (await ok(h, headers, "GET", "/agents"))["agents"]}
    live = agents[created["admin_id"]]
    assert (live["status"], live["connections"], live["capacity"]) == ("online", 1, 8)
    console.close()


@pytest.mark.gen_test
async def test_bad_input_is_refused_with_the_field_named(make_server):
    # PROTOCOL §10: 400 -40000 names the field; 404 -40004 for a missing group or agent;
    # 409 -40009 for a taken username; nothing is stored by a refused request
    h, group, admin, headers = await admin_server(make_server)
    await h.agent(group, "Dan", username="dan")
    before = h.db("SELECT COUNT(*) FROM agents")
    for body, field in (({"name": "", "group_id": group}, "name"),
                        ({"name": "x" * 65, "group_id": group}, "name"),
                        ({"name": "A", "group_id": "1"}, "group_id"),
                        ({"name": "A", "group_id": group, "username": "a"}, "username and"),
                        ({"name": "A", "group_id": group, "username": "a b", "password": "x" * 12},
                         "username"),
                        ({"name": "A", "group_id": group, "username": "ab", "password": "short"},
                         "password"),
                        ({"name": "A", "group_id": group, "role": "owner"}, "role"),
                        ({"name": "A", "group_id": group, "avatar": "javascript:x"}, "avatar"),
                        ({"name": "A", "group_id": group, "colour": "red"}, "colour")):
        code, answer = await call(h, headers, "POST", "/agents", body)
        assert code == 400, body
        assert_error(answer, -40000)
        assert answer["message"].startswith(field) or field in answer["message"], answer
    code, answer = await call(h, headers, "POST", "/agents", {"name": "A", "group_id": 999})
    assert code == 404
    assert_error(answer, -40004)
    code, answer = await call(h, headers, "POST", "/agents", {
        "name": "A", "group_id": group, "username": "dan", "password": "long enough pw"})
    assert code == 409
    assert_error(answer, -40009)
    assert h.db("SELECT COUNT(*) FROM agents") == before
    for path in ("/agents/999", "/agents/x", "/groups/999"):
        code, answer = await call(h, headers, "PATCH", path, {"name": "B"})
        assert code == 404, path
    code, answer = await call(h, headers, "POST", "/groups", "not json")
    assert code == 400


@pytest.mark.gen_test(timeout=20)
async def test_a_password_change_ends_the_agents_sessions_at_once(make_server):
    # PROTOCOL §10: a new password signs the agent out everywhere: its open connections
    # end with -9999 right away (not at the next poll) and its old token is refused
    h, group, _, headers = await admin_server(make_server)
    agent = await h.agent(group, "Erin", username="erin",
                          password_hash=hash_password("the old password", n=WEAK_N))
    old_token = h.server.tokens.mint_agent(agent)
    console = await h.agent_client(agent, old_token)
    await ok(h, headers, "PATCH", f"/agents/{agent}", {"password": "the new password"})
    assert (await console.push(-9999, timeout=0.5))["code"] == -9999
    await console.closed()
    fresh = await Client.connect(h.port, 3)
    assert_error(await fresh.call(31000, token=old_token), -31001)
    fresh.close()
    code, _ = await h.http("POST", "/api/login", {"username": "erin",
                                                  "password": "the old password"})
    assert code == 401
    code, _ = await h.http("POST", "/api/login", {"username": "erin",
                                                  "password": "the new password"})
    assert code == 200
    entry = (await audit(h, headers))[0]
    assert entry["action"] == "agent.update" and entry["detail"] == {"password": "changed"}
    assert "hash" not in str(h.db("SELECT detail FROM audit"))


@pytest.mark.gen_test
async def test_disabling_an_agent_or_a_group_takes_effect_at_once(make_server):
    # PROTOCOL §10 and R7: a disabled agent's, or a disabled group's, connections end
    # right away; enabling the group lets its guests in again
    h, group, _, headers = await admin_server(make_server)
    other = (await ok(h, headers, "POST", "/groups", {"name": "Other"}, 201))["group"]["id"]
    agent = await h.agent(group, "Finn")
    console = await h.agent_client(agent)
    await ok(h, headers, "PATCH", f"/agents/{agent}", {"enabled": False})
    assert (await console.push(-9999, timeout=0.5))["code"] == -9999
    guest = await h.guest_client("u1", other)
    await ok(h, headers, "PATCH", f"/groups/{other}", {"enabled": False})
    assert (await guest.push(-9999, timeout=0.5))["code"] == -9999
    assert h.db("SELECT enabled FROM groups WHERE id = ?", (other,)) == [(0,)]
    await ok(h, headers, "PATCH", f"/groups/{other}", {"enabled": True, "name": "Others"})
    (await h.guest_client("u1", other)).close()


@pytest.mark.gen_test
async def test_the_last_enabled_admin_cannot_be_taken_away(make_server):
    # PROTOCOL §10: 409 -40009 for a change that leaves no enabled admin (its role, its
    # enabled flag, or its group's); with a second admin the change is allowed
    h, group, admin, headers = await admin_server(make_server)
    for path, body in ((f"/agents/{admin}", {"role": "agent"}),
                       (f"/agents/{admin}", {"enabled": False}),
                       (f"/groups/{group}", {"enabled": False})):
        code, answer = await call(h, headers, "PATCH", path, body)
        assert code == 409, (path, body)
        assert_error(answer, -40009)
    assert h.db("SELECT role, enabled FROM agents WHERE id = ?", (admin,)) == [("admin", 1)]
    second = (await ok(h, headers, "POST", "/agents", {"group_id": group, "name": "Gus",
                                                       "role": "admin"}, 201))["agent"]
    await ok(h, headers, "PATCH", f"/agents/{admin}", {"role": "agent"})
    assert (await call(h, headers, "GET", "/agents"))[0] == 403
    assert (await call(h, bearer(h, second["admin_id"]), "GET", "/agents"))[0] == 200


@pytest.mark.gen_test
async def test_every_change_is_in_the_audit_log_with_who_what_and_when(make_server):
    # PROTOCOL §10 audit: newest first, actor and via, the fields changed; pages by
    # `before` and `next_before`; changes made on the command line are there too
    h, group, admin, headers = await admin_server(make_server)
    created = await ok(h, headers, "POST", "/groups", {"name": "Sales"}, 201)
    await ok(h, headers, "PATCH", f"/groups/{created['group']['id']}", {"name": "Sales desk"})
    entries = await audit(h, headers)
    assert [(e["action"], e["via"], e["actor_id"]) for e in entries[:2]] == [
        ("group.update", "admin", admin), ("group.create", "admin", admin)]
    assert entries[0]["detail"] == {"name": "Sales desk"}
    assert entries[0]["actor_name"] == "Olivia" and entries[0]["at"] > 0
    # The setup of this test (add_group, add_agent) counts as the command line's.
    assert [(e["action"], e["via"]) for e in entries[2:]] == [
        ("agent.create", "cli"), ("group.create", "cli")]
    first = await ok(h, headers, "GET", "/audit?limit=3")
    assert len(first["entries"]) == 3 and first["next_before"] == first["entries"][-1]["id"]
    rest = await ok(h, headers, "GET", f"/audit?limit=3&before={first['next_before']}")
    assert [e["action"] for e in rest["entries"]] == ["group.create"]
    assert rest["next_before"] is None
    code, answer = await call(h, headers, "GET", "/audit?limit=201")
    assert code == 400


@pytest.mark.gen_test
async def test_the_agent_login_answer_carries_the_role(make_server):
    # PROTOCOL §10: 31000 data carries `role`
    h, group, admin, _ = await admin_server(make_server)
    agent = await h.agent(group, "Hana")
    for admin_id, role in ((admin, "admin"), (agent, "agent")):
        client = await h.agent_client(admin_id)
        assert client.login_data["role"] == role
        client.close()


@pytest.mark.gen_test
async def test_webhooks_are_added_listed_and_deleted(make_server):
    # PROTOCOL §10 webhooks: the secret is shown once (a hint afterwards); events are
    # checked; DELETE drops the webhook and its undelivered events
    h, _, _, headers = await admin_server(make_server)
    for body in ({"url": "ftp://x", "events": ["message.created"]},
                 {"url": "https://x.example/hook", "events": []},
                 {"url": "https://x.example/hook", "events": ["message.deleted"]},
                 {"url": "https://x.example/hook", "events": ["message.created"],
                  "secret": "short"},
                 {"url": "https://x.example/hook", "events": ["message.created"],
                  "secret": " a secret with a space before it"}):
        assert (await call(h, headers, "POST", "/webhooks", body))[0] == 400, body
    made = (await ok(h, headers, "POST", "/webhooks", {
        "url": "https://x.example/hook", "events": ["message.created", "conversation.ended"]},
        201))["webhook"]
    assert len(made["secret"]) >= 32 and made["secret_hint"] == made["secret"][-4:]
    listed = (await ok(h, headers, "GET", "/webhooks"))["webhooks"]
    assert listed == [{**{k: v for k, v in made.items() if k != "secret"}}]
    assert listed[0]["events"] == ["conversation.ended", "message.created"]
    assert (listed[0]["pending"], listed[0]["last_delivery"]) == (0, None)
    assert (await ok(h, headers, "GET", f"/webhooks/{made['id']}/deliveries")) == {
        "deliveries": []}
    assert (await ok(h, headers, "DELETE", f"/webhooks/{made['id']}")) == {"id": made["id"]}
    assert (await call(h, headers, "DELETE", f"/webhooks/{made['id']}"))[0] == 404
    assert (await ok(h, headers, "GET", "/webhooks"))["webhooks"] == []
    assert [e["action"] for e in (await audit(h, headers))[:2]] == [
        "webhook.delete", "webhook.create"]


@pytest.mark.gen_test
async def test_a_changed_name_reaches_the_agents_colleagues(make_server):
    # PROTOCOL §10: changes take effect at once: 33000 shows the new name without a poll
    h, group, admin, headers = await admin_server(make_server)
    agent = await h.agent(group, "Ivy")
    console = await h.agent_client(admin)
    await ok(h, headers, "PATCH", f"/agents/{agent}", {"name": "Ivy Chen"})
    names = {a["admin_id"]: a["name"] for a in (await console.ok(32000))["admin_list"]}
    assert names[agent] == "Ivy Chen"
    await asyncio.sleep(0)
    console.close()


@pytest.mark.gen_test
async def test_an_agent_moved_to_another_group_hands_its_conversations_back(make_server):
    # PROTOCOL §10: a new group signs the agent out; its conversations stay in the old
    # group and go to a colleague there at once
    h, group, admin, headers = await admin_server(make_server)
    other = (await ok(h, headers, "POST", "/groups", {"name": "Other"}, 201))["group"]["id"]
    mover = await h.agent(group, "Mia")
    console = await h.agent_client(mover)
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="hello")
    assert (await console.push(32401))["data"]["gid"] == guest.login_data["gid"]
    colleague = await h.agent_client(admin)
    await ok(h, headers, "PATCH", f"/agents/{mover}", {"group_id": other})
    assert (await console.push(-9999, timeout=0.5))["code"] == -9999
    assert (await colleague.push(32401, timeout=2))["data"]["gid"] == guest.login_data["gid"]
    assert h.db("SELECT assigned_aix FROM guests") == [(admin,)]


@pytest.mark.gen_test
async def test_an_empty_change_of_a_canned_reply_is_bad_input(make_server):
    # PROTOCOL §10 canned: PATCH with nothing to change is 400, not a server error
    h, group, _, headers = await admin_server(make_server)
    made = await ok(h, headers, "POST", "/canned", {"group_id": group, "shortcut": "hi",
                                                    "text": "Hello!"}, 201)
    code, answer = await call(h, headers, "PATCH", f"/canned/{made['canned']['id']}", {})
    assert (code, answer["code"]) == (400, -40000)
