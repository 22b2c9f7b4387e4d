"""Routing, queueing, presence of agents, transfer, suspend, online list and end of chat.

PROTOCOL R14, R24, R27 and the agent APIs 32400, 32500, 33000, 32700 with their pushes.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import AGENT_INFO_KEYS, MESSAGE_INFO_KEYS, assert_error

# -- helpers ------------------------------------------------------------------------------


def now() -> float:
    return asyncio.get_running_loop().time()


def gid_of(guest) -> int:
    return guest.login_data["gid"]


async def matching(client, code, pred=lambda data: True, timeout: float = 5.0) -> dict:
    """The first not yet taken push with ``code`` whose data satisfies ``pred``."""
    for index, frame in enumerate(client.frames):
        if frame.get("code") == code and "seq" not in frame and pred(frame["data"]):
            return client.frames.pop(index)
    deadline = now() + timeout
    while True:
        remaining = deadline - now()
        assert remaining > 0, f"no push {code} matching the condition"
        try:
            frame = await client.read(remaining)
        except TimeoutError:
            raise AssertionError(f"no push {code} matching the condition") from None
        assert frame is not None, f"connection closed while waiting for push {code}"
        if frame.get("code") == code and "seq" not in frame and pred(frame["data"]):
            return frame
        client.frames.append(frame)


async def settle(client, seconds: float) -> list[dict]:
    """Read every frame arriving within ``seconds``; return all pushes kept so far."""
    end = now() + seconds
    while True:
        remaining = end - now()
        if remaining <= 0:
            break
        try:
            frame = await client.read(remaining)
        except TimeoutError:
            break
        if frame is None:
            break
        client.frames.append(frame)
    return [f for f in client.frames if "seq" not in f]


def pushes(client, code) -> list[dict]:
    return [f for f in client.frames if f.get("code") == code and "seq" not in f]


async def online_list(client) -> dict[int, dict]:
    data = await client.ok(33000)
    return {a["aix"]: a for a in data["admin_list"]}


async def guest_list_gids(client) -> list[int]:
    data = await client.ok(32000)
    return [g["gid"] for g in data["guest_list"]]


def assigned_aix(h, gid):
    return h.db("SELECT assigned_aix FROM guests WHERE gid = ?", (gid,))[0][0]


async def agents_a_and_b(h):
    """A group with agents A and B, of which A is logged in: ``(group, a, b, ca)``."""
    group = await h.group()
    a, b = await h.agent(group, "A"), await h.agent(group, "B")
    return group, a, b, await h.agent_client(a)


async def writing_guest(h, uid: str, group: int):
    """A guest that logs in and writes, so that its conversation takes a seat (R24)."""
    guest = await h.guest_client(uid, group)
    await guest.ok(22300, msg=f"hello from {uid}")
    return guest


async def a_with_two_guests(h):
    """As ``agents_a_and_b``, then guests u1 and u2 log in and write:
    ``(group, a, b, ca, g1, g2)``."""
    group, a, b, ca = await agents_a_and_b(h)
    return (group, a, b, ca, await writing_guest(h, "u1", group),
            await writing_guest(h, "u2", group))


# -- R24 assignment ------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_guest_login_assigns_agent_with_pushes(cschat_server):
    # PROTOCOL R24: assignment on login pushes 32401 (from_aix null) and 22401
    h = cschat_server
    group, aid, agent, guest = await h.pair()
    gid = gid_of(guest)

    login_agent = guest.login_data["agent"]
    assert set(login_agent) >= AGENT_INFO_KEYS
    assert login_agent["aix"] == aid and login_agent["admin_id"] == aid
    assert login_agent["group_id"] == group and login_agent["name"] == "Alice"
    # SECURITY ghost visitors, PROTOCOL R24: a seat counts from the guest's first message.
    assert login_agent["status"] == "online" and login_agent["load"] == 0

    pushed = (await agent.push(32401))["data"]
    assert pushed["from_aix"] is None
    assert pushed["recs"] == []
    info = pushed["guest_info"]
    assert info["gid"] == gid and info["group_id"] == group and info["name"] == "Ann"
    assert info["online"] is True and info["aix"] == aid

    to_guest = (await guest.push(22401))["data"]
    assert to_guest["agent"]["aix"] == aid and to_guest["agent"]["status"] == "online"

    assert assigned_aix(h, gid) == aid
    assert await guest_list_gids(agent) == [gid]
    await guest.ok(22300, msg="hello")
    assert (await online_list(agent))[aid]["load"] == 1


@pytest.mark.gen_test
async def test_new_guests_go_to_least_loaded_agent(cschat_server):
    # PROTOCOL R24: least loaded online agent; successive guests alternate
    h = cschat_server
    group, a, b, ca = await agents_a_and_b(h)
    cb = await h.agent_client(b)
    chosen = []
    for n in range(4):
        guest = await writing_guest(h, f"u{n}", group)
        chosen.append(guest.login_data["agent"]["aix"])
    assert chosen[0] != chosen[1] and chosen[2] != chosen[3]
    assert sorted(chosen) == [a, a, b, b]
    listed = await online_list(ca)
    assert listed[a]["load"] == 2 and listed[b]["load"] == 2
    assert len(await guest_list_gids(ca)) == 2 and len(await guest_list_gids(cb)) == 2


@pytest.mark.gen_test
async def test_later_agent_with_fewer_chats_gets_next_guest(cschat_server):
    # PROTOCOL R24: fewest open conversations wins, whoever logged in first
    h = cschat_server
    group, a, b, _ = await agents_a_and_b(h)
    for n in range(2):
        guest = await h.guest_client(f"u{n}", group)
        assert guest.login_data["agent"]["aix"] == a
    cb = await h.agent_client(b)
    guest = await h.guest_client("u9", group)
    assert guest.login_data["agent"]["aix"] == b
    assert (await cb.push(32401))["data"]["guest_info"]["gid"] == gid_of(guest)


@pytest.mark.gen_test
async def test_tie_goes_to_longest_idle_agent(cschat_server):
    # PROTOCOL R24: equal load, ties broken by longest idle
    h = cschat_server
    group, a, b, ca = await agents_a_and_b(h)
    clients = {a: ca, b: await h.agent_client(b)}
    first = await h.guest_client("u1", group)
    busy = first.login_data["agent"]["aix"]
    await clients[busy].ok(32700, gid=gid_of(first))
    listed = await online_list(clients[a])
    assert listed[a]["load"] == 0 and listed[b]["load"] == 0
    # The other agent has had nothing since it logged in: it has been idle longest.
    second = await h.guest_client("u2", group)
    idle = b if busy == a else a
    assert second.login_data["agent"]["aix"] == idle


# -- R24 capacity and queue ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_full_agent_queues_guests_until_capacity_frees(make_server):
    # PROTOCOL R24 agent_capacity, queue oldest first; 22300 22098 once per queued period
    h = await make_server(chat={"agent_capacity": 1})
    group, aid, agent = await h.logged_in_agent("A")
    g1 = await writing_guest(h, "u1", group)
    assert g1.login_data["agent"]["aix"] == aid
    await agent.push(32401)
    await agent.push(32399)

    g2 = await h.guest_client("u2", group)
    assert g2.login_data["agent"] is None
    sent = await g2.call(22300, msg="anyone there?")
    assert sent["code"] == 200
    m1 = sent["data"]["message_info"]
    assert m1["msg"] == "anyone there?" and m1["sender"] == "guest"
    assert (await g2.push(22098))["data"] == {"queue_position": 1}
    m2 = (await g2.ok(22300, msg="hello?"))["message_info"]
    await g2.no_push(22098)
    stored = h.db("SELECT id, sender FROM messages WHERE gid = ? ORDER BY id", (gid_of(g2),))
    # Between them, the busy reply cschat gave at once (PROTOCOL §4 availability).
    assert [row[0] for row in stored if row[1] == "guest"] == [m1["id"], m2["id"]]
    assert [row[1] for row in stored] == ["guest", "system", "guest"]
    history = (await g2.ok(22100))["list"]
    assert [m["msg"] for m in history if m["sender"] == "guest"] == ["anyone there?", "hello?"]
    assert assigned_aix(h, gid_of(g2)) is None
    await agent.no_push(32399, within=0.1)
    await agent.no_push(32401, within=0.1)

    g3 = await h.guest_client("u3", group)
    assert g3.login_data["agent"] is None
    await g3.ok(22300, msg="me too")
    assert (await g3.push(22098))["data"] == {"queue_position": 2}

    await agent.ok(32700, gid=gid_of(g1))
    assigned = (await agent.push(32401))["data"]
    assert assigned["from_aix"] is None
    assert assigned["guest_info"]["gid"] == gid_of(g2)
    assert [m["id"] for m in assigned["recs"] if m["sender"] == "guest"] == [m1["id"], m2["id"]]
    assert (await g2.push(22401))["data"]["agent"]["aix"] == aid
    await g3.no_push(22401)
    assert assigned_aix(h, gid_of(g2)) == aid
    assert assigned_aix(h, gid_of(g3)) is None
    # Now assigned: the agent gets g2's messages.
    await g2.ok(22300, msg="thanks")
    assert (await agent.push(32399))["data"]["gid"] == gid_of(g2)


@pytest.mark.gen_test
async def test_queue_drains_when_agent_logs_in(cschat_server):
    # PROTOCOL R24 queue, R14 logging in assigns queued guests of the group
    h = cschat_server
    group = await h.group()
    aid = await h.agent(group, "A")
    g1 = await h.guest_client("u1", group)
    g2 = await h.guest_client("u2", group)
    assert g1.login_data["agent"] is None and g2.login_data["agent"] is None
    m1 = (await g1.ok(22300, msg="first"))["message_info"]
    assert (await g1.push(22098))["data"] == {"queue_position": 1}
    await g2.ok(22300, msg="second")
    assert (await g2.push(22098))["data"] == {"queue_position": 2}

    agent = await h.agent_client(aid)
    first = (await agent.push(32401))["data"]
    second = (await agent.push(32401))["data"]
    assert first["guest_info"]["gid"] == gid_of(g1)
    assert second["guest_info"]["gid"] == gid_of(g2)
    assert first["from_aix"] is None
    assert m1["id"] in [m["id"] for m in first["recs"]]
    assert (await g1.push(22401))["data"]["agent"]["aix"] == aid
    assert (await g2.push(22401))["data"]["agent"]["aix"] == aid
    assert sorted(await guest_list_gids(agent)) == sorted([gid_of(g1), gid_of(g2)])
    assert assigned_aix(h, gid_of(g1)) == aid


@pytest.mark.gen_test
async def test_queue_drains_when_agent_resumes(cschat_server):
    # PROTOCOL R24: suspended agents get no new guests; the queue drains on resume (32500 0)
    h = cschat_server
    group, aid, agent = await h.logged_in_agent("A")
    assert await agent.ok(32500, status=1) == {"status": 1}
    guest = await h.guest_client("u1", group)
    assert guest.login_data["agent"] is None
    await guest.ok(22300, msg="hi")
    assert (await guest.push(22098))["data"] == {"queue_position": 1}
    await agent.no_push(32401)

    await agent.ok(32500, status=0)
    assigned = (await agent.push(32401))["data"]
    assert assigned["guest_info"]["gid"] == gid_of(guest) and assigned["from_aix"] is None
    assert (await guest.push(22401))["data"]["agent"]["aix"] == aid
    assert assigned_aix(h, gid_of(guest)) == aid


# -- R24 sticky ---------------------------------------------------------------------------


async def _sticky_setup(h):
    """A holds two guests, B none; A ends the first: A load 1, B load 0."""
    group, a, b, ca, g1, g2 = await a_with_two_guests(h)
    assert g1.login_data["agent"]["aix"] == a and g2.login_data["agent"]["aix"] == a
    cb = await h.agent_client(b)
    await ca.ok(32700, gid=gid_of(g1))
    assert (await g1.push(22701))["data"] == {"aix": a}
    listed = await online_list(ca)
    assert listed[a]["load"] == 1 and listed[b]["load"] == 0
    return a, b, ca, cb, g1


@pytest.mark.gen_test
async def test_ended_guest_returns_to_its_last_agent(cschat_server):
    # PROTOCOL R24 (1) sticky, 32700 "sticky to me if I am available"
    h = cschat_server
    a, b, ca, cb, g1 = await _sticky_setup(h)
    g1.frames.clear()
    ca.frames.clear()
    await g1.ok(22300, msg="one more question")
    assigned = (await ca.push(32401))["data"]
    assert assigned["guest_info"]["gid"] == gid_of(g1)
    assert (await ca.push(32399))["data"]["message_info"]["msg"] == "one more question"
    assert (await g1.push(22401))["data"]["agent"]["aix"] == a
    await cb.no_push(32401)
    assert assigned_aix(h, gid_of(g1)) == a


@pytest.mark.gen_test
async def test_sticky_skips_suspended_last_agent(cschat_server):
    # PROTOCOL R24: sticky only if the last agent is online and not suspended
    h = cschat_server
    a, b, ca, cb, g1 = await _sticky_setup(h)
    await ca.ok(32500, status=1)
    g1.frames.clear()
    await g1.ok(22300, msg="one more question")
    assigned = (await cb.push(32401))["data"]
    assert assigned["guest_info"]["gid"] == gid_of(g1) and assigned["from_aix"] is None
    assert (await g1.push(22401))["data"]["agent"]["aix"] == b
    assert (await cb.push(32399))["data"]["gid"] == gid_of(g1)
    assert assigned_aix(h, gid_of(g1)) == b


@pytest.mark.gen_test
async def test_suspended_agent_gets_no_new_guests_and_load_counts(cschat_server):
    # PROTOCOL R24 suspended agents, load; 33000 / 31000 admin_list agent_info load
    h = cschat_server
    group, a, b, ca = await agents_a_and_b(h)
    cb = await h.agent_client(b)
    await cb.ok(32500, status=1)
    gids = []
    for n in range(3):
        guest = await writing_guest(h, f"u{n}", group)
        assert guest.login_data["agent"]["aix"] == a
        gids.append(gid_of(guest))
    listed = await online_list(cb)
    assert listed[a]["load"] == 3 and listed[a]["status"] == "online"
    assert listed[b]["load"] == 0 and listed[b]["status"] == "suspended"
    again = await h.agent_client(a)
    by_aix = {x["aix"]: x for x in again.login_data["admin_list"]}
    assert by_aix[a]["load"] == 3 and by_aix[b]["load"] == 0
    assert sorted(g["gid"] for g in again.login_data["guest_list"]) == sorted(gids)
    await ca.ok(32700, gid=gids[0])
    assert (await online_list(cb))[a]["load"] == 2
    assert sorted(row[0] for row in h.db(
        "SELECT gid FROM guests WHERE assigned_aix = ?", (a,))) == sorted(gids[1:])


# -- R24 release_after and 32098 ----------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_offline_guest_released_after_release_after(make_server):
    # PROTOCOL R24 release_after; 32098 presence push to the assigned agent
    h = await make_server(chat={"release_after": 1})
    group, aid, agent, guest = await h.pair(name="", agent_name="A")
    gid = gid_of(guest)
    await agent.push(32401)
    await guest.ok(22300, msg="hello")

    guest.close()
    presence = (await agent.push(32098))["data"]
    assert presence == {"gid": gid, "group_id": group, "online": False}
    await asyncio.sleep(0.3)
    guest = await h.guest_client("u1", group)
    assert guest.login_data["agent"]["aix"] == aid
    presence = (await agent.push(32098))["data"]
    assert presence == {"gid": gid, "group_id": group, "online": True}
    await agent.no_push(32401)

    guest.close()
    assert (await agent.push(32098))["data"]["online"] is False
    await asyncio.sleep(1.6)
    assert gid not in await guest_list_gids(agent)
    assert (await online_list(agent))[aid]["load"] == 0
    assert assigned_aix(h, gid) is None

    guest = await h.guest_client("u1", group)
    assert guest.login_data["agent"]["aix"] == aid
    assigned = (await agent.push(32401))["data"]
    assert assigned["guest_info"]["gid"] == gid and assigned["from_aix"] is None
    assert (await guest.push(22401))["data"]["agent"]["aix"] == aid


# -- R27 agent grace ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_agent_back_within_grace_loses_nothing(make_server):
    # PROTOCOL R27: a page reload within agent_grace loses nothing
    h = await make_server(chat={"agent_grace": 1})
    group, a, b, ca, g1, g2 = await a_with_two_guests(h)
    cb = await h.agent_client(b)
    await g1.push(22401)
    before = await guest_list_gids(ca)
    assert sorted(before) == sorted([gid_of(g1), gid_of(g2)])

    ca.close()
    await asyncio.sleep(0.4)
    ca = await h.agent_client(a)
    assert [g["gid"] for g in ca.login_data["guest_list"]] == before
    frames = await settle(cb, 1.5)
    assert not [f for f in frames if f.get("code") == 33099 and f["data"]["aix"] == a
                and f["data"]["status"] == "offline"]
    assert not [f for f in frames if f.get("code") == 32401]
    assert await guest_list_gids(ca) == before
    assert assigned_aix(h, gid_of(g1)) == a and assigned_aix(h, gid_of(g2)) == a
    assert (await online_list(cb))[a]["status"] == "online"
    await g1.no_push(22401, within=0.1)


@pytest.mark.gen_test(timeout=20)
async def test_agent_gone_after_grace_reroutes_and_releases(make_server):
    # PROTOCOL R27: offline after agent_grace; online guests routed again, others released
    h = await make_server(chat={"agent_grace": 1})
    group, a, b, ca, online_guest, offline_guest = await a_with_two_guests(h)
    assert online_guest.login_data["agent"]["aix"] == a
    assert offline_guest.login_data["agent"]["aix"] == a
    offline_guest.close()
    await ca.push(32098)
    cb = await h.agent_client(b)
    assert (await online_guest.push(22401))["data"]["agent"]["aix"] == a

    ca.close()
    status = (await matching(cb, 33099, lambda d: d["aix"] == a, timeout=4))["data"]
    assert status["status"] == "offline"
    assigned = (await cb.push(32401))["data"]
    assert assigned["guest_info"]["gid"] == gid_of(online_guest)
    assert assigned["from_aix"] is None
    assert (await online_guest.push(22401))["data"]["agent"]["aix"] == b
    assert assigned_aix(h, gid_of(online_guest)) == b
    assert assigned_aix(h, gid_of(offline_guest)) is None
    assert await guest_list_gids(cb) == [gid_of(online_guest)]
    await cb.no_push(32401)
    listed = await online_list(cb)
    assert a not in listed and listed[b]["load"] == 1


@pytest.mark.gen_test(timeout=15)
async def test_agent_gone_releases_offline_guest_who_is_routed_on_return(make_server):
    # PROTOCOL R27: an offline guest is released (even with an unread question), the
    # offline 33099 shows the load after the change; back online, the guest is routed
    # again (R24) and the new agent sees the question in recs (R23)
    h = await make_server(chat={"agent_grace": 1})
    group, a, b, ca = await agents_a_and_b(h)
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="is anyone there?")
    guest.close()
    await ca.push(32098)
    cb = await h.agent_client(b)
    ca.close()
    status = (await matching(cb, 33099, lambda d: d["aix"] == a, timeout=4))["data"]
    assert status["status"] == "offline" and status["load"] == 0
    await cb.no_push(32401)
    assert assigned_aix(h, gid_of(guest)) is None
    back = await h.guest_client("u1", group)
    assert back.login_data["agent"]["aix"] == b
    assigned = (await cb.push(32401))["data"]
    assert assigned["guest_info"]["unread"] == 1
    assert [m["msg"] for m in assigned["recs"]] == ["is anyone there?"]


@pytest.mark.gen_test(timeout=15)
async def test_queued_offline_guest_handed_out_is_released_later(make_server):
    # PROTOCOL R24: a waiting conversation with an unread question stays queued while its
    # guest is away; once handed to an agent it is released after release_after like others
    h = await make_server(chat={"release_after": 1})
    group = await h.group()
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="hello?")
    await guest.push(22098)
    guest.close()
    await asyncio.sleep(1.5)
    queued = h.db("SELECT queued_at FROM guests WHERE gid = ?", (gid_of(guest),))[0][0]
    assert queued is not None
    agent = await h.agent_client(await h.agent(group, "A"))
    assert (await agent.push(32401))["data"]["guest_info"]["gid"] == gid_of(guest)
    assert assigned_aix(h, gid_of(guest)) is not None
    await asyncio.sleep(1.5)
    assert assigned_aix(h, gid_of(guest)) is None
    assert await guest_list_gids(agent) == []


# -- 32400 transfer -----------------------------------------------------------------------


async def _transfer_setup(h):
    """A (two connections) holds one guest; B is online in the same group."""
    group, a, b, ca = await agents_a_and_b(h)
    guest = await h.guest_client("u1", group, "Ann")
    assert guest.login_data["agent"]["aix"] == a
    ca2 = await h.agent_client(a)
    cb = await h.agent_client(b)
    return group, a, b, ca, ca2, cb, guest


@pytest.mark.gen_test
async def test_transfer_moves_guest_to_other_agent(cschat_server):
    # PROTOCOL 32400 transfer, pushes 32401 (from_aix), 32402, 22401, system message
    h = cschat_server
    group, a, b, ca, ca2, cb, guest = await _transfer_setup(h)
    gid = gid_of(guest)
    asked = (await guest.ok(22300, msg="question"))["message_info"]
    answered = (await ca.ok(32300, gid=gid, msg="answer"))["message_info"]
    guest.frames.clear()

    data = await ca.ok(32400, gid=gid, aix=b)
    assert data["gid"] == gid and data["aix"] == b
    assert data["guest_info"]["gid"] == gid and data["guest_info"]["aix"] == b
    assert len(data["recs"]) <= 20
    rec_ids = [m["id"] for m in data["recs"]]
    assert asked["id"] in rec_ids and answered["id"] in rec_ids
    assert all(set(m) >= MESSAGE_INFO_KEYS for m in data["recs"])

    to_target = (await cb.push(32401))["data"]
    assert to_target["from_aix"] == a
    assert to_target["guest_info"]["gid"] == gid and to_target["guest_info"]["aix"] == b
    assert asked["id"] in [m["id"] for m in to_target["recs"]]
    for connection in (ca, ca2):
        assert (await connection.push(32402))["data"] == {"gid": gid, "aix": b}
    assert (await guest.push(22401))["data"]["agent"]["aix"] == b
    await cb.no_push(32402, within=0.1)

    history = (await guest.ok(22100, page_size=100))["list"]
    system = [m for m in history if m["sender"] == "system"]
    assert len(system) == 1 and system[0]["id"] > answered["id"]
    assert assigned_aix(h, gid) == b

    sent = await cb.ok(32300, gid=gid, msg="B here")
    assert sent["gid"] == gid
    assert_error(await ca.call(32300, gid=gid, msg="still me?"), -32304)
    assert await guest_list_gids(cb) == [gid]
    assert gid not in await guest_list_gids(ca)
    listed = await online_list(cb)
    assert listed[a]["load"] == 0 and listed[b]["load"] == 1


@pytest.mark.gen_test
async def test_transfer_recs_hold_at_most_twenty(cschat_server):
    # PROTOCOL 32400 recs: last 20 message_info
    h = cschat_server
    group, a, b, ca, ca2, cb, guest = await _transfer_setup(h)
    ids = [(await guest.ok(22300, msg=f"m{n}"))["message_info"]["id"] for n in range(25)]
    data = await ca.ok(32400, gid=gid_of(guest), aix=b)
    rec_ids = {m["id"] for m in data["recs"]}
    assert len(data["recs"]) == 20
    assert ids[-1] in rec_ids
    assert not rec_ids & set(ids[:5])
    pushed = (await cb.push(32401))["data"]["recs"]
    assert len(pushed) == 20 and ids[-1] in {m["id"] for m in pushed}


@pytest.mark.gen_test
async def test_transfer_errors(cschat_server):
    # PROTOCOL 32400 -32403 -32404 -32405 -32406 -32407
    h = cschat_server
    group, a, b, ca, ca2, cb, guest = await _transfer_setup(h)
    gid = gid_of(guest)
    await guest.push(22401)
    offline = await h.agent(group, "Off")
    other_group = await h.group("Other")
    stranger = await h.agent(other_group, "Stranger")
    await h.agent_client(stranger)
    other_guest = await h.guest_client("u2", group)
    assert other_guest.login_data["agent"]["aix"] == b

    assert_error(await ca.call(32400, aix=b), -32403)
    assert_error(await ca.call(32400, gid="abc", aix=b), -32403)
    assert_error(await ca.call(32400, gid=gid), -32404)
    for target in (offline, stranger, 999999):
        reply = await ca.call(32400, gid=gid, aix=target)
        assert reply["code"] == -32405, (target, reply)
        assert_error(reply, -32405)
    assert_error(await ca.call(32400, gid=gid, aix=a), -32406)
    assert_error(await ca.call(32400, gid=gid_of(other_guest), aix=b), -32407)
    assert_error(await ca.call(32400, gid=987654, aix=b), -32407)
    # Nothing moved.
    assert assigned_aix(h, gid) == a
    assert assigned_aix(h, gid_of(other_guest)) == b
    await ca.no_push(32402, within=0.1)
    await guest.no_push(22401, within=0.1)


# -- 32500 suspend / resume ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_suspend_and_resume_push_status_to_group(cschat_server):
    # PROTOCOL 32500 status 1 / 0; 33099 to agents of the group, all connections
    h = cschat_server
    group, a, b, ca = await agents_a_and_b(h)
    guest = await writing_guest(h, "u1", group)
    ca2 = await h.agent_client(a)
    cb = await h.agent_client(b)

    assert await ca.ok(32500, status=1) == {"status": 1}
    for connection in (ca, ca2, cb):
        info = (await matching(connection, 33099,
                               lambda d: d["aix"] == a and d["status"] != "online"))["data"]
        assert set(info) >= AGENT_INFO_KEYS
        assert info["status"] == "suspended" and info["load"] == 1
    assert (await online_list(cb))[a]["status"] == "suspended"
    # Suspended agents keep their chats.
    await ca.ok(32300, gid=gid_of(guest), msg="still here")
    assert assigned_aix(h, gid_of(guest)) == a

    assert await ca2.ok(32500, status=0) == {"status": 0}
    for connection in (ca, ca2, cb):
        info = (await matching(connection, 33099,
                               lambda d: d["aix"] == a and d["status"] == "online"))["data"]
        assert info["admin_id"] == a
    assert (await online_list(cb))[a]["status"] == "online"


@pytest.mark.gen_test
async def test_suspend_bad_status(cschat_server):
    # PROTOCOL 32500 -32501
    h = cschat_server
    group, a, ca = await h.logged_in_agent("A")
    assert_error(await ca.call(32500, status=7), -32501)
    assert_error(await ca.call(32500, status="x"), -32501)
    assert_error(await ca.call(32500), -32501)
    assert (await online_list(ca))[a]["status"] == "online"


# -- 33000 online agents ------------------------------------------------------------------


@pytest.mark.gen_test
async def test_online_agents_lists_online_and_suspended_of_my_group(cschat_server):
    # PROTOCOL 33000; 31000 admin_list holds every agent of the group
    h = cschat_server
    group = await h.group()
    a, b, c = (await h.agent(group, "A"), await h.agent(group, "B"),
               await h.agent(group, "C"))
    other = await h.group("Other")
    d = await h.agent(other, "D")
    ca = await h.agent_client(a)
    cb = await h.agent_client(b)
    await h.agent_client(d)
    await cb.ok(32500, status=1)

    listed = await online_list(ca)
    assert set(listed) == {a, b}
    assert listed[a]["status"] == "online" and listed[b]["status"] == "suspended"
    assert all(set(x) >= AGENT_INFO_KEYS and x["group_id"] == group for x in listed.values())
    assert all(x["aix"] == x["admin_id"] for x in listed.values())

    again = await h.agent_client(a)
    every = {x["aix"]: x for x in again.login_data["admin_list"]}
    assert set(every) == {a, b, c}
    assert every[c]["status"] == "offline"


# -- 32700 end conversation ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_end_conversation(cschat_server):
    # PROTOCOL 32700: 22701 to the guest, system message, load drops
    h = cschat_server
    group, a, ca, guest = await h.pair(name="", agent_name="A")
    gid = gid_of(guest)
    await guest.ok(22300, msg="thanks, that is all")
    answered = (await ca.ok(32300, gid=gid, msg="bye"))["message_info"]
    assert (await online_list(ca))[a]["load"] == 1

    await ca.ok(32700, gid=gid)
    assert (await guest.push(22701))["data"] == {"aix": a}
    history = (await guest.ok(22100, page_size=100))["list"]
    assert history[-1]["sender"] == "system" and history[-1]["id"] > answered["id"]
    assert (await online_list(ca))[a]["load"] == 0
    assert await guest_list_gids(ca) == []
    assert assigned_aix(h, gid) is None
    assert_error(await ca.call(32300, gid=gid, msg="hello?"), -32304)


@pytest.mark.gen_test
async def test_end_conversation_errors(cschat_server):
    # PROTOCOL 32700 -32701 -32702
    h = cschat_server
    group, a, b, ca = await agents_a_and_b(h)
    mine = await h.guest_client("u1", group)
    cb = await h.agent_client(b)
    theirs = await h.guest_client("u2", group)
    assert theirs.login_data["agent"]["aix"] == b

    assert_error(await ca.call(32700), -32701)
    assert_error(await ca.call(32700, gid=gid_of(theirs)), -32702)
    assert_error(await ca.call(32700, gid=987654), -32702)
    await ca.ok(32700, gid=gid_of(mine))
    assert_error(await ca.call(32700, gid=gid_of(mine)), -32702)
    assert assigned_aix(h, gid_of(theirs)) == b
    await theirs.no_push(22701, within=0.1)
    assert await guest_list_gids(cb) == [gid_of(theirs)]


@pytest.mark.gen_test
async def test_queue_drain_reaches_guests_behind_one_nobody_can_take(make_server):
    # PROTOCOL R24: a queued guest whose last agent is available goes back to it, even when
    # an older queued guest has to keep waiting for capacity
    h = await make_server(chat={"agent_capacity": 1})
    group, a, agent = await h.logged_in_agent("A")
    returning = await h.guest_client("returning", group)
    await agent.push(32401)
    await agent.ok(32700, gid=gid_of(returning))
    busy = await writing_guest(h, "busy", group)
    assert busy.login_data["agent"]["aix"] == a
    await agent.ok(32500, status=1)
    waiting = await h.guest_client("waiting", group)
    await waiting.ok(22300, msg="first in line")
    await returning.ok(22300, msg="me again")
    assert assigned_aix(h, gid_of(returning)) is None
    await agent.ok(32500, status=0)
    assigned = await matching(agent, 32401,
                              lambda d: d["guest_info"]["gid"] == gid_of(returning))
    assert assigned["data"]["from_aix"] is None
    assert assigned_aix(h, gid_of(returning)) == a
    assert assigned_aix(h, gid_of(waiting)) is None


# -- silent visitors take no seat (SECURITY ghost visitors) ----------------------------------


@pytest.mark.gen_test
async def test_silent_visitors_do_not_keep_a_customer_waiting(make_server):
    # PROTOCOL R24 (SECURITY ghost visitors): routing at login stays (32401 tells the agent
    # a visitor came), but a conversation takes a seat only from the guest's first message,
    # so three silent visitors at capacity 3 do not queue a real customer.
    h = await make_server(chat={"agent_capacity": 3})
    group, a, agent = await h.logged_in_agent("A")
    ghosts = [await h.guest_client(f"ghost{n}", group) for n in range(3)]
    assert all(g.login_data["agent"]["aix"] == a for g in ghosts)
    assert (await online_list(agent))[a]["load"] == 0
    customer = await writing_guest(h, "customer", group)
    assert customer.login_data["agent"]["aix"] == a
    assert (await online_list(agent))[a]["load"] == 1
    assert assigned_aix(h, gid_of(customer)) == a


@pytest.mark.gen_test
async def test_a_silent_visitor_who_leaves_is_released_at_once(make_server):
    # PROTOCOL R24 (SECURITY ghost visitors): a conversation without a guest message is
    # released as soon as its guest disconnects, not after release_after; one in which the
    # guest wrote keeps its agent for release_after.
    h = await make_server(chat={"release_after": 600})
    group, a, agent = await h.logged_in_agent("A")
    silent = await h.guest_client("silent", group)
    talker = await writing_guest(h, "talker", group)
    silent.close()
    talker.close()
    await matching(agent, 32098, lambda d: d["gid"] == gid_of(silent) and not d["online"])
    await matching(agent, 32098, lambda d: d["gid"] == gid_of(talker) and not d["online"])
    await asyncio.sleep(0.2)
    assert assigned_aix(h, gid_of(silent)) is None
    assert assigned_aix(h, gid_of(talker)) == a
    assert await guest_list_gids(agent) == [gid_of(talker)]
    back = await h.guest_client("silent", group)
    assert back.login_data["agent"]["aix"] == a  # sticky to its last agent, seat or not


@pytest.mark.gen_test(timeout=15)
async def test_guests_put_back_in_the_queue_are_told_their_position(make_server):
    # PROTOCOL R27, §6 22098: when an agent goes offline and nobody can take its online
    # guests, they wait in the queue and are told where they stand.
    h = await make_server(chat={"agent_grace": 1})
    group, a, agent = await h.logged_in_agent("A")
    first = await writing_guest(h, "first", group)
    second = await writing_guest(h, "second", group)
    agent.close()
    positions = {(await g.push(22098, timeout=5))["data"]["queue_position"]
                 for g in (first, second)}
    assert positions == {1, 2}
    assert h.db("SELECT COUNT(*) FROM guests WHERE queued_at IS NOT NULL")[0][0] == 2
    await first.ok(22300, msg="still there?")
    await first.no_push(22098)  # once per waiting period
