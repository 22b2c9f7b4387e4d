"""Messaging: chat list, history, read marks, sending, cards, typing (PROTOCOL §3-§5)."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import GUEST_INFO_KEYS, MESSAGE_INFO_KEYS

PRODUCT = {"id": "sku-1", "title": "Blue mug", "price": 12.5,
           "image": "https://shop.example/mug.png", "url": "https://shop.example/p/1"}
ORDER = {"order_no": "A-1001", "title": "Two mugs", "amount": 25, "status": "paid",
         "url": "https://shop.example/o/A-1001"}


async def setup_pair(h, uid="u1", name="Ann"):
    """A group, one online agent and one guest assigned to it (its 32401 taken), and the gid."""
    group_id, aid, agent, guest = await h.pair(uid, name)
    await agent.push(32401)
    return group_id, aid, agent, guest, guest.login_data["gid"]


async def two_pairs(h):
    """Alice logs in and gets guest g1, then Bob logs in and gets g2 (both 32401 taken)."""
    group_id = await h.group()
    a1 = await h.agent(group_id, "Alice")
    a2 = await h.agent(group_id, "Bob")
    alice = await h.agent_client(a1)
    g1 = await h.guest_client("g1", group_id)
    await alice.push(32401)
    bob = await h.agent_client(a2)
    g2 = await h.guest_client("g2", group_id)
    await bob.push(32401)
    return group_id, a1, a2, alice, bob, g1, g2


def check_message(m, *, gid, group_id, sender, admin_id, file_type, msg, client_msg_id=None):
    assert MESSAGE_INFO_KEYS <= set(m), m
    assert type(m["id"]) is int
    assert m["gid"] == gid
    assert m["group_id"] == group_id
    assert m["sender"] == sender
    assert m["admin_id"] == admin_id
    assert m["file_type"] == file_type
    assert m["msg"] == msg
    assert m["client_msg_id"] == client_msg_id
    assert type(m["created_at"]) is int
    assert abs(m["created_at"] - time.time() * 1000) < 10_000
    assert type(m["read"]) is bool


def message_count(h) -> int:
    return h.db("select count(*) from messages")[0][0]


async def guest_says(guest, texts):
    return [(await guest.ok(22300, msg=text))["message_info"] for text in texts]


# ---------------------------------------------------------------- 32000 chat list


@pytest.mark.gen_test
async def test_chat_list_fields(cschat_server):
    # PROTOCOL 32000, §3 guest_info
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h, name="Ann")
    await guest_says(guest, ["one", "two"])
    last = (await guest.ok(22300, msg="three"))["message_info"]
    data = await agent.ok(32000)
    assert len(data["guest_list"]) == 1
    info = data["guest_list"][0]
    assert GUEST_INFO_KEYS <= set(info), info
    assert info["gid"] == gid
    assert info["group_id"] == group_id
    assert info["name"] == "Ann"
    assert isinstance(info["avatar"], str)
    assert info["online"] is True
    assert info["unread"] == 3
    assert info["aix"] == aid
    assert info["last_message"] == last
    assert type(info["updated_at"]) is int
    assert abs(info["updated_at"] - time.time() * 1000) < 10_000


@pytest.mark.gen_test
async def test_chat_list_last_message_null_and_offline(cschat_server):
    # PROTOCOL 32000, §3 guest_info: last_message null without messages; online false
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    info = (await agent.ok(32000))["guest_list"][0]
    assert info["last_message"] is None
    assert info["unread"] == 0
    await guest.ok(22300, msg="hello")  # a visitor who never wrote leaves no conversation
    guest.close()
    await agent.push(32098)
    info = (await agent.ok(32000))["guest_list"][0]
    assert info["gid"] == gid
    assert info["online"] is False


@pytest.mark.gen_test
async def test_chat_list_most_recent_activity_first(cschat_server):
    # PROTOCOL 32000: most recent activity first
    h = cschat_server
    group_id, aid, agent = await h.logged_in_agent()
    guests = []
    for uid in ("g1", "g2", "g3"):
        guests.append(await h.guest_client(uid, group_id, uid))
        await agent.push(32401)
        await asyncio.sleep(0.01)
    gids = [g.login_data["gid"] for g in guests]
    await guests[1].ok(22300, msg="from g2")
    await asyncio.sleep(0.01)
    await guests[0].ok(22300, msg="from g1")
    listed = (await agent.ok(32000))["guest_list"]
    assert [i["gid"] for i in listed] == [gids[0], gids[1], gids[2]]
    stamps = [i["updated_at"] for i in listed]
    assert stamps == sorted(stamps, reverse=True)
    # an agent message is activity too
    await asyncio.sleep(0.01)
    await agent.ok(32300, gid=gids[2], msg="to g3")
    listed = (await agent.ok(32000))["guest_list"]
    assert [i["gid"] for i in listed] == [gids[2], gids[0], gids[1]]
    assert listed[0]["last_message"]["msg"] == "to g3"


@pytest.mark.gen_test
async def test_chat_list_only_my_conversations(cschat_server):
    # PROTOCOL 32000: my assigned conversations only
    h = cschat_server
    group_id, a1, a2, alice, bob, g1, g2 = await two_pairs(h)
    assert g2.login_data["agent"]["admin_id"] == a2
    assert [i["gid"] for i in (await alice.ok(32000))["guest_list"]] == [g1.login_data["gid"]]
    assert [i["gid"] for i in (await bob.ok(32000))["guest_list"]] == [g2.login_data["gid"]]


# ---------------------------------------------------------------- 32100 chat content


@pytest.mark.gen_test
async def test_chat_content_paging(cschat_server):
    # PROTOCOL 32100: page 1 newest, list oldest first, page fields echoed, total
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    sent = await guest_says(guest, [f"m{i}" for i in range(1, 26)])
    ids = [m["id"] for m in sent]
    assert ids == sorted(ids)

    page1 = await agent.ok(32100, gid=gid, group_id=group_id, page_index=1, page_size=10)
    assert [m["id"] for m in page1["list"]] == ids[15:25]
    assert [m["msg"] for m in page1["list"]] == [f"m{i}" for i in range(16, 26)]
    assert (page1["page_index"], page1["page_size"], page1["total"]) == (1, 10, 25)
    page2 = await agent.ok(32100, gid=gid, group_id=group_id, page_index=2, page_size=10)
    assert [m["id"] for m in page2["list"]] == ids[5:15]
    assert (page2["page_index"], page2["page_size"], page2["total"]) == (2, 10, 25)
    page3 = await agent.ok(32100, gid=gid, group_id=group_id, page_index=3, page_size=10)
    assert [m["id"] for m in page3["list"]] == ids[0:5]
    page4 = await agent.ok(32100, gid=gid, group_id=group_id, page_index=4, page_size=10)
    assert page4["list"] == []
    assert page4["total"] == 25
    # the listed objects are the message_info the guest got back
    assert page3["list"][0] == {**sent[0], "read": page3["list"][0]["read"]}


@pytest.mark.gen_test
async def test_chat_content_defaults(cschat_server):
    # PROTOCOL 32100: page_index default 1, page_size default 10
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    sent = await guest_says(guest, [f"m{i}" for i in range(12)])
    data = await agent.ok(32100, gid=gid, group_id=group_id)
    assert (data["page_index"], data["page_size"], data["total"]) == (1, 10, 12)
    assert [m["id"] for m in data["list"]] == [m["id"] for m in sent[2:]]


@pytest.mark.gen_test
async def test_chat_content_before_id(cschat_server):
    # PROTOCOL 32100 before_id: older messages only, newest of them, oldest first
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    ids = [m["id"] for m in await guest_says(guest, [f"m{i}" for i in range(15)])]
    data = await agent.ok(32100, gid=gid, group_id=group_id, before_id=ids[7])
    assert [m["id"] for m in data["list"]] == ids[:7]
    data = await agent.ok(32100, gid=gid, group_id=group_id, before_id=ids[7], page_size=3)
    assert [m["id"] for m in data["list"]] == ids[4:7]
    data = await agent.ok(32100, gid=gid, group_id=group_id, before_id=ids[0])
    assert data["list"] == []


@pytest.mark.gen_test
async def test_chat_content_after_id(cschat_server):
    # PROTOCOL 32100 after_id: every message with a larger id, oldest first, up to page_size
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    ids = [m["id"] for m in await guest_says(guest, [f"m{i}" for i in range(15)])]
    data = await agent.ok(32100, gid=gid, group_id=group_id, after_id=ids[2], page_size=5)
    assert [m["id"] for m in data["list"]] == ids[3:8]
    data = await agent.ok(32100, gid=gid, group_id=group_id, after_id=ids[9], page_size=10)
    assert [m["id"] for m in data["list"]] == ids[10:]
    data = await agent.ok(32100, gid=gid, group_id=group_id, after_id=ids[-1])
    assert data["list"] == []
    data = await agent.ok(32100, gid=gid, group_id=group_id, after_id=0, page_size=4)
    assert [m["id"] for m in data["list"]] == ids[:4]


@pytest.mark.gen_test
async def test_chat_content_page_bounds(cschat_server):
    # PROTOCOL 32100 page_size 1..100, page_index >= 1; R8 out of range -> -10004
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    await guest_says(guest, ["a", "b"])
    for bad in ({"page_size": 0}, {"page_size": 101}, {"page_size": -1},
                {"page_index": 0}, {"page_size": "ten"}):
        frame = await agent.call(32100, gid=gid, group_id=group_id, **bad)
        assert frame["code"] == -10004, (bad, frame)
        assert frame["status"] == "Error"
    data = await agent.ok(32100, gid=gid, group_id=group_id, page_size=100)
    assert len(data["list"]) == 2 and data["page_size"] == 100
    data = await agent.ok(32100, gid=gid, group_id=group_id, page_size=1)
    assert [m["msg"] for m in data["list"]] == ["b"]


@pytest.mark.gen_test
async def test_chat_content_errors(cschat_server):
    # PROTOCOL 32100 -32101 -32102 -32103
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    other_group = await h.group("Other")
    other_agent = await h.agent(other_group, "Olga")
    other_agent_client = await h.agent_client(other_agent)
    stranger = await h.guest_client("s1", other_group)
    await other_agent_client.push(32401)
    await stranger.ok(22300, msg="secret")
    stranger_gid = stranger.login_data["gid"]

    assert (await agent.call(32100, group_id=group_id))["code"] == -32101
    assert (await agent.call(32100, gid=gid))["code"] == -32102
    # a gid of another group, given with my group or with its own group
    assert (await agent.call(32100, gid=stranger_gid, group_id=group_id))["code"] == -32103
    assert (await agent.call(32100, gid=stranger_gid, group_id=other_group))["code"] == -32103
    # my guest but a group_id that is not mine
    assert (await agent.call(32100, gid=gid, group_id=other_group))["code"] == -32103
    # an unknown gid
    assert (await agent.call(32100, gid=999999, group_id=group_id))["code"] == -32103
    frame = await agent.call(32100, gid=999999, group_id=group_id)
    assert frame["status"] == "Error" and frame["data"] == {}


@pytest.mark.gen_test
async def test_chat_content_of_unassigned_conversation_in_my_group(cschat_server):
    # PROTOCOL 32100: an agent may read any conversation of its own group
    h = cschat_server
    group_id = await h.group()
    a1 = await h.agent(group_id, "Alice")
    a2 = await h.agent(group_id, "Bob")
    alice = await h.agent_client(a1)
    bob = await h.agent_client(a2)
    guest = await h.guest_client("g1", group_id)
    assigned = guest.login_data["agent"]["admin_id"]
    reader = bob if assigned == a1 else alice
    sent = await guest_says(guest, ["hello", "anyone?"])
    data = await reader.ok(32100, gid=guest.login_data["gid"], group_id=group_id)
    assert [m["id"] for m in data["list"]] == [m["id"] for m in sent]
    assert data["total"] == 2


# ---------------------------------------------------------------- 22100 guest history


@pytest.mark.gen_test
async def test_guest_history_paging_and_cursors(cschat_server):
    # PROTOCOL 22100: as 32100, for my own conversation
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    sent = []
    for i in range(8):
        sent.append((await guest.ok(22300, msg=f"g{i}"))["message_info"])
        sent.append((await agent.ok(32300, gid=gid, msg=f"a{i}"))["message_info"])
    ids = [m["id"] for m in sent]
    data = await guest.ok(22100)
    assert (data["page_index"], data["page_size"], data["total"]) == (1, 10, 16)
    assert [m["id"] for m in data["list"]] == ids[6:]
    data = await guest.ok(22100, page_index=2, page_size=10)
    assert [m["id"] for m in data["list"]] == ids[:6]
    assert (data["page_index"], data["page_size"], data["total"]) == (2, 10, 16)
    data = await guest.ok(22100, before_id=ids[5], page_size=3)
    assert [m["id"] for m in data["list"]] == ids[2:5]
    data = await guest.ok(22100, after_id=ids[5], page_size=4)
    assert [m["id"] for m in data["list"]] == ids[6:10]
    first_agent = data["list"][1]
    check_message(first_agent, gid=gid, group_id=group_id, sender="agent", admin_id=aid,
                  file_type=0, msg="a3")
    for bad in ({"page_size": 0}, {"page_size": 101}, {"page_index": 0}):
        assert (await guest.call(22100, **bad))["code"] == -10004, bad


@pytest.mark.gen_test
async def test_guest_history_own_conversation_only(cschat_server):
    # PROTOCOL 22100: my own conversation only
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    other = await h.guest_client("u2", group_id)
    await agent.push(32401)
    await guest.ok(22300, msg="mine")
    await other.ok(22300, msg="theirs")
    await agent.ok(32300, gid=other.login_data["gid"], msg="to them")
    # a gid parameter does not open another conversation
    data = await guest.ok(22100, gid=other.login_data["gid"])
    assert [m["msg"] for m in data["list"]] == ["mine"]
    assert data["total"] == 1
    assert {m["gid"] for m in (await other.ok(22100))["list"]} == {other.login_data["gid"]}


# ---------------------------------------------------------------- 32200 / 22200 read


@pytest.mark.gen_test
async def test_agent_mark_read(cschat_server):
    # PROTOCOL 32200, push 22299
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    sent = await guest_says(guest, ["a", "b", "c"])
    assert (await agent.ok(32000))["guest_list"][0]["unread"] == 3
    before = await agent.ok(32100, gid=gid, group_id=group_id)
    assert [m["read"] for m in before["list"]] == [False, False, False]

    data = await agent.ok(32200, gid=gid, group_id=group_id)
    assert data == {"group_id": group_id, "gid": gid}
    push = await guest.push(22299)
    assert push["data"]["last_read_id"] == sent[-1]["id"]
    assert push["status"] == "Success" and "seq" not in push

    assert (await agent.ok(32000))["guest_list"][0]["unread"] == 0
    after = await agent.ok(32100, gid=gid, group_id=group_id)
    assert [m["read"] for m in after["list"]] == [True, True, True]
    assert [m["read"] for m in (await guest.ok(22100))["list"]] == [True, True, True]
    # kept across a new login
    again = await h.agent_client(aid)
    assert again.login_data["guest_list"][0]["unread"] == 0
    # a new message is unread again
    await guest.ok(22300, msg="d")
    assert (await agent.ok(32000))["guest_list"][0]["unread"] == 1


@pytest.mark.gen_test
async def test_agent_mark_read_errors(cschat_server):
    # PROTOCOL 32200 -32201 -32202 -32103
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    other_group = await h.group("Other")
    await h.agent(other_group, "Olga")
    stranger = await h.guest_client("s1", other_group)
    await guest.ok(22300, msg="hi")
    assert (await agent.call(32200, group_id=group_id))["code"] == -32201
    assert (await agent.call(32200, gid=gid))["code"] == -32202
    assert (await agent.call(32200, gid=999999, group_id=group_id))["code"] == -32103
    assert (await agent.call(32200, gid=gid, group_id=other_group))["code"] == -32103
    stranger_gid = stranger.login_data["gid"]
    assert (await agent.call(32200, gid=stranger_gid, group_id=group_id))["code"] == -32103
    assert (await agent.call(32200, gid=stranger_gid, group_id=other_group))["code"] == -32103
    # nothing was marked
    assert (await agent.ok(32000))["guest_list"][0]["unread"] == 1
    await guest.no_push(22299, within=0.2)


@pytest.mark.gen_test
async def test_guest_mark_read(cschat_server):
    # PROTOCOL 22200, push 32299, 21000 unread
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h, uid="u1")
    await agent.ok(32300, gid=gid, msg="one")
    last = (await agent.ok(32300, gid=gid, msg="two"))["message_info"]
    await guest.push(22399)
    await guest.push(22399)
    second = await h.guest_client("u1", group_id)
    assert second.login_data["unread"] == 2
    second.close()

    frame = await guest.call(22200)
    assert frame["code"] == 200
    push = await agent.push(32299)
    assert push["data"] == {"gid": gid, "group_id": group_id, "last_read_id": last["id"]}
    assert "seq" not in push
    assert [m["read"] for m in (await agent.ok(32100, gid=gid, group_id=group_id))["list"]] \
        == [True, True]
    third = await h.guest_client("u1", group_id)
    assert third.login_data["unread"] == 0


# ---------------------------------------------------------------- 32300 agent send


@pytest.mark.gen_test
async def test_agent_send(cschat_server):
    # PROTOCOL 32300, pushes 22399 and 32398, §3 message_info
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    other_tab = await h.agent_client(aid)
    frame = await agent.call(32300, gid=gid, msg="hello there", client_msg_id="c-1")
    assert frame["code"] == 200 and frame["status"] == "Success"
    data = frame["data"]
    assert data["gid"] == gid
    info = data["message_info"]
    check_message(info, gid=gid, group_id=group_id, sender="agent", admin_id=aid,
                  file_type=0, msg="hello there", client_msg_id="c-1")
    assert info["read"] is False
    pushed = await guest.push(22399)
    assert pushed["data"] == {"message_info": info}
    mirrored = await other_tab.push(32398)
    assert mirrored["data"] == {"gid": gid, "message_info": info}
    await agent.no_push(32398, within=0.3)
    # no client_msg_id -> null; file_type defaults to 0
    info = (await agent.ok(32300, gid=gid, msg="plain"))["message_info"]
    check_message(info, gid=gid, group_id=group_id, sender="agent", admin_id=aid,
                  file_type=0, msg="plain")


@pytest.mark.gen_test
async def test_agent_send_errors(cschat_server):
    # PROTOCOL 32300 -32301 -32302 -32303 -32306
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    cases = [
        ({"msg": "hi"}, -32301),
        ({"gid": gid}, -32302),
        ({"gid": gid, "msg": ""}, -32302),
        ({"gid": gid, "msg": "hi", "file_type": 9}, -32303),
        ({"gid": gid, "msg": "hi", "file_type": -1}, -32303),
        ({"gid": gid, "msg": "hi", "file_type": "text"}, -32303),
        ({"gid": gid, "msg": ["a"]}, -32303),
        ({"gid": gid, "msg": {"id": "1", "title": "t"}, "file_type": 3}, -32303),
        ({"gid": gid, "msg": "abcdef0123456789", "file_type": 1}, -32306),
        ({"gid": gid, "msg": "abcdef0123456789", "file_type": 2}, -32306),
        ({"gid": gid, "msg": "abcdef0123456789", "file_type": 5}, -32306),
        ({"gid": gid, "msg": "abcdef0123456789", "file_type": 6}, -32306),
    ]
    for params, code in cases:
        frame = await agent.call(32300, **params)
        assert frame["code"] == code, (params, frame)
        assert frame["status"] == "Error" and frame["data"] == {}
    assert message_count(h) == 0
    await guest.no_push(22399, within=0.2)


@pytest.mark.gen_test
async def test_agent_send_not_assigned(cschat_server):
    # PROTOCOL 32300 -32304
    h = cschat_server
    group_id, a1, a2, alice, bob, g1, g2 = await two_pairs(h)
    other_group = await h.group("Other")
    await h.agent(other_group, "Olga")
    stranger = await h.guest_client("s1", other_group)
    for target in (g2, stranger):
        frame = await alice.call(32300, gid=target.login_data["gid"], msg="hi")
        assert frame["code"] == -32304, frame
    assert message_count(h) == 0
    await g2.no_push(22399, within=0.2)
    # my own guest works
    await alice.ok(32300, gid=g1.login_data["gid"], msg="hi")


@pytest.mark.gen_test
async def test_text_length_limit(make_server):
    # PROTOCOL 32300 / 22300 -32305 / -22305: max_message_length in characters
    h = await make_server(chat={"max_message_length": 10})
    group_id, aid, agent, guest, gid = await setup_pair(h)
    assert (await agent.call(32300, gid=gid, msg="x" * 11))["code"] == -32305
    assert (await guest.call(22300, msg="x" * 11))["code"] == -22305
    assert message_count(h) == 0
    await agent.ok(32300, gid=gid, msg="x" * 10)
    await guest.ok(22300, msg="y" * 10)
    # characters, not bytes
    info = (await guest.ok(22300, msg="é" * 10))["message_info"]
    assert info["msg"] == "é" * 10
    assert (await guest.call(22300, msg="é" * 11))["code"] == -22305
    assert message_count(h) == 3


# ---------------------------------------------------------------- 22300 guest send


@pytest.mark.gen_test
async def test_guest_send(cschat_server):
    # PROTOCOL 22300, push 32399, §3 message_info
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    frame = await guest.call(22300, msg="I need help", client_msg_id="k1")
    assert frame["code"] == 200 and frame["status"] == "Success"
    assert set(frame["data"]) == {"message_info"}
    info = frame["data"]["message_info"]
    check_message(info, gid=gid, group_id=group_id, sender="guest", admin_id=None,
                  file_type=0, msg="I need help", client_msg_id="k1")
    assert info["read"] is False
    push = await agent.push(32399)
    assert push["data"] == {"gid": gid, "group_id": group_id, "message_info": info}
    assert push["status"] == "Success" and "seq" not in push


@pytest.mark.gen_test
async def test_guest_send_errors(cschat_server):
    # PROTOCOL 22300 -22302 -22303 -22306
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    cases = [
        ({}, -22302),
        ({"msg": ""}, -22302),
        ({"msg": "hi", "file_type": 9}, -22303),
        ({"msg": [42]}, -22303),
        ({"msg": {"order_no": "A1"}, "file_type": 4}, -22303),
        ({"msg": "abcdef0123456789", "file_type": 1}, -22306),
        ({"msg": "abcdef0123456789", "file_type": 6}, -22306),
    ]
    for params, code in cases:
        frame = await guest.call(22300, **params)
        assert frame["code"] == code, (params, frame)
        assert frame["status"] == "Error" and frame["data"] == {}
    assert message_count(h) == 0
    await agent.no_push(32399, within=0.2)


# ---------------------------------------------------------------- R20 durability


@pytest.mark.gen_test
async def test_send_committed_before_response(cschat_server):
    # PROTOCOL R20
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    info = (await guest.ok(22300, msg="stored?"))["message_info"]
    rows = h.db("select gid, sender, admin_id, file_type, body from messages where id = ?",
                (info["id"],))
    assert rows == [(gid, "guest", None, 0, "stored?")]
    info = (await agent.ok(32300, gid=gid, msg="yes"))["message_info"]
    rows = h.db("select gid, sender, admin_id, file_type, body from messages where id = ?",
                (info["id"],))
    assert rows == [(gid, "agent", aid, 0, "yes")]


# ---------------------------------------------------------------- R21 idempotency


@pytest.mark.gen_test
async def test_guest_send_idempotent(cschat_server):
    # PROTOCOL R21
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    first = (await guest.ok(22300, msg="once", client_msg_id="same"))["message_info"]
    await agent.push(32399)
    again = (await guest.ok(22300, msg="once", client_msg_id="same"))["message_info"]
    assert again == first
    changed = (await guest.ok(22300, msg="different text", client_msg_id="same"))["message_info"]
    assert changed["id"] == first["id"] and changed["msg"] == "once"
    assert message_count(h) == 1
    await agent.no_push(32399, within=0.3)
    # the same client_msg_id from another connection of the same guest
    tab = await h.guest_client("u1", group_id)
    assert (await tab.ok(22300, msg="once", client_msg_id="same"))["message_info"]["id"] \
        == first["id"]
    assert message_count(h) == 1


@pytest.mark.gen_test
async def test_agent_send_idempotent(cschat_server):
    # PROTOCOL R21
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    other_tab = await h.agent_client(aid)
    first = (await agent.ok(32300, gid=gid, msg="once", client_msg_id="x1"))["message_info"]
    await guest.push(22399)
    await other_tab.push(32398)
    again = (await agent.ok(32300, gid=gid, msg="once", client_msg_id="x1"))["message_info"]
    assert again == first
    from_tab = await other_tab.ok(32300, gid=gid, msg="once", client_msg_id="x1")
    assert from_tab["message_info"]["id"] == first["id"]
    assert message_count(h) == 1
    await guest.no_push(22399, within=0.3)
    await other_tab.no_push(32398, within=0.01)
    await agent.no_push(32398, within=0.01)


@pytest.mark.gen_test
async def test_same_client_msg_id_other_sender_is_new(cschat_server):
    # PROTOCOL R21: idempotency is per sender
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    mine = (await guest.ok(22300, msg="from guest", client_msg_id="shared"))["message_info"]
    theirs = (await agent.ok(32300, gid=gid, msg="from agent",
                             client_msg_id="shared"))["message_info"]
    assert theirs["id"] != mine["id"]
    assert theirs["sender"] == "agent" and theirs["msg"] == "from agent"
    other = await h.guest_client("u2", group_id)
    await agent.push(32401)
    other_msg = (await other.ok(22300, msg="other guest",
                                client_msg_id="shared"))["message_info"]
    assert other_msg["id"] not in (mine["id"], theirs["id"])
    assert message_count(h) == 3
    await guest.push(22399)
    assert (await agent.push(32399))["data"]["message_info"]["id"] == mine["id"]
    assert (await agent.push(32399))["data"]["message_info"]["id"] == other_msg["id"]


# ---------------------------------------------------------------- R22 ordering


@pytest.mark.gen_test
async def test_quick_guest_messages_arrive_in_order(cschat_server):
    # PROTOCOL R22
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    seqs = [guest.send(22300, msg=f"q{i}", client_msg_id=f"q{i}") for i in range(30)]
    responses = [await guest.response(seq) for seq in seqs]
    assert all(r["code"] == 200 for r in responses)
    sent_ids = [r["data"]["message_info"]["id"] for r in responses]
    assert sent_ids == sorted(set(sent_ids))
    pushed = [(await agent.push(32399))["data"]["message_info"] for _ in range(30)]
    assert [m["id"] for m in pushed] == sent_ids
    assert [m["msg"] for m in pushed] == [f"q{i}" for i in range(30)]


@pytest.mark.gen_test
async def test_mixed_traffic_reaches_each_connection_in_id_order(cschat_server):
    # PROTOCOL R22, R14
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    watcher = await h.agent_client(aid)
    guest_seqs, agent_seqs = [], []
    for i in range(15):
        guest_seqs.append(guest.send(22300, msg=f"g{i}"))
        agent_seqs.append(agent.send(32300, gid=gid, msg=f"a{i}"))
    guest_ids = [(await guest.response(s))["data"]["message_info"]["id"] for s in guest_seqs]
    agent_ids = [(await agent.response(s))["data"]["message_info"]["id"] for s in agent_seqs]
    assert len(set(guest_ids + agent_ids)) == 30

    to_guest = [(await guest.push(22399))["data"]["message_info"]["id"] for _ in range(15)]
    assert to_guest == sorted(agent_ids)
    to_agent = [(await agent.push(32399))["data"]["message_info"]["id"] for _ in range(15)]
    assert to_agent == sorted(guest_ids)
    # the watcher sees both kinds, interleaved, in one id order
    seen = []
    while len(seen) < 30:
        frame = await watcher.read()
        assert frame is not None
        if frame.get("code") in (32399, 32398):
            seen.append(frame["data"]["message_info"]["id"])
    assert seen == sorted(guest_ids + agent_ids)


# ---------------------------------------------------------------- R23 offline parties


@pytest.mark.gen_test
async def test_messages_to_offline_guest_are_kept(cschat_server):
    # PROTOCOL R23, 21000 unread
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h, uid="u1")
    await guest.ok(22300, msg="I will be back")
    guest.close()
    await agent.push(32098)
    sent = [(await agent.ok(32300, gid=gid, msg=f"while away {i}"))["message_info"]
            for i in range(3)]
    back = await h.guest_client("u1", group_id)
    assert back.login_data["gid"] == gid
    assert back.login_data["unread"] == 3
    history = await back.ok(22100)
    assert [m["id"] for m in history["list"]][1:] == [m["id"] for m in sent]
    assert all(m["read"] is False for m in history["list"])


@pytest.mark.gen_test
async def test_messages_while_agent_disconnected_are_kept(cschat_server):
    # PROTOCOL R23, R27 (within agent_grace)
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    agent.close()
    await asyncio.sleep(0.2)
    sent = await guest_says(guest, ["are you there?", "hello?"])
    back = await h.agent_client(aid)
    listed = [i for i in back.login_data["guest_list"] if i["gid"] == gid]
    assert len(listed) == 1
    assert listed[0]["unread"] == 2
    assert listed[0]["last_message"]["id"] == sent[-1]["id"]
    content = await back.ok(32100, gid=gid, group_id=group_id)
    assert [m["id"] for m in content["list"]] == [m["id"] for m in sent]


# ---------------------------------------------------------------- R26 cards and text


@pytest.mark.gen_test
async def test_cards_round_trip(cschat_server):
    # PROTOCOL R26: product and order cards are objects on the wire
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    product = (await agent.ok(32300, gid=gid, msg=PRODUCT, file_type=3))["message_info"]
    assert product["file_type"] == 3 and product["msg"] == PRODUCT
    assert (await guest.push(22399))["data"]["message_info"]["msg"] == PRODUCT
    order = (await guest.ok(22300, msg=ORDER, file_type=4))["message_info"]
    assert order["file_type"] == 4 and order["msg"] == ORDER
    assert (await agent.push(32399))["data"]["message_info"]["msg"] == ORDER
    minimal_product = {"id": 7, "title": "Mug", "price": "9.90"}
    minimal_order = {"order_no": "B-2", "amount": 3}
    await guest.ok(22300, msg=minimal_product, file_type=3)
    await agent.ok(32300, gid=gid, msg=minimal_order, file_type=4)
    content = await agent.ok(32100, gid=gid, group_id=group_id)
    assert [(m["file_type"], m["msg"]) for m in content["list"]] == [
        (3, PRODUCT), (4, ORDER), (3, minimal_product), (4, minimal_order)]
    assert [m["msg"] for m in (await guest.ok(22100))["list"]][0] == PRODUCT


BAD_PRODUCTS = [
    {"id": "1", "title": "t"},                                     # missing price
    {"title": "t", "price": 1},                                    # missing id
    {"id": "1", "title": {"en": "t"}, "price": 1},                 # nested object
    {"id": "1", "title": "t", "price": [1, 2]},                    # array
    {"id": "1", "title": "t", "price": True},                      # bool
    {"id": "1", "title": "t", "price": None},                      # null
    {"id": "1", "title": "t", "price": 1, "url": "javascript:alert(1)"},
    {"id": "1", "title": "t", "price": 1, "image": "javascript:alert(1)"},
    {"id": "1", "title": "t", "price": 1, "url": "JavaScript:alert(1)"},
    ["id", "title", "price"],                                      # not an object
    "not a card",
    17,
]
BAD_ORDERS = [
    {"order_no": "A1"},                                            # missing amount
    {"amount": 3},                                                 # missing order_no
    {"order_no": "A1", "amount": {"value": 3}},
    {"order_no": "A1", "amount": 3, "status": False},
    {"order_no": "A1", "amount": 3, "url": "javascript:alert(1)"},
    [{"order_no": "A1", "amount": 3}],
]


@pytest.mark.gen_test
async def test_bad_cards_rejected(cschat_server):
    # PROTOCOL R26 -32303 / -22303
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    for file_type, cards in ((3, BAD_PRODUCTS), (4, BAD_ORDERS)):
        for card in cards:
            frame = await agent.call(32300, gid=gid, msg=card, file_type=file_type)
            assert frame["code"] == -32303, (card, frame)
            frame = await guest.call(22300, msg=card, file_type=file_type)
            assert frame["code"] == -22303, (card, frame)
    assert message_count(h) == 0


@pytest.mark.gen_test
async def test_card_size_limit(cschat_server):
    # PROTOCOL R26 card <= 4 KB, else -32305 / -22305
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    big = {"id": "1", "title": "x" * 5000, "price": 1}
    assert (await agent.call(32300, gid=gid, msg=big, file_type=3))["code"] == -32305
    assert (await guest.call(22300, msg=big, file_type=3))["code"] == -22305
    big_order = {"order_no": "A1", "amount": 1, "title": "y" * 4100}
    assert (await guest.call(22300, msg=big_order, file_type=4))["code"] == -22305
    assert message_count(h) == 0
    fits = {"id": "1", "title": "x" * 3000, "price": 1}
    info = (await agent.ok(32300, gid=gid, msg=fits, file_type=3))["message_info"]
    assert info["msg"] == fits


@pytest.mark.gen_test
async def test_html_text_kept_byte_for_byte(cschat_server):
    # PROTOCOL R26: text is stored as sent
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    text = '<img src=x onerror=alert(1)> &amp; "quoted" \'single\' <script>x</script> 你好'
    info = (await guest.ok(22300, msg=text))["message_info"]
    assert info["msg"] == text
    assert (await agent.push(32399))["data"]["message_info"]["msg"] == text
    assert h.db("select body from messages where id = ?", (info["id"],)) == [(text,)]
    reply = (await agent.ok(32300, gid=gid, msg=text))["message_info"]
    assert (await guest.push(22399))["data"]["message_info"]["msg"] == text
    assert [m["msg"] for m in (await guest.ok(22100))["list"]] == [text, text]
    assert h.db("select body from messages where id = ?", (reply["id"],)) == [(text,)]


# ---------------------------------------------------------------- typing


@pytest.mark.gen_test
async def test_agent_typing(cschat_server):
    # PROTOCOL 32600, push 22699
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    frame = await agent.call(32600, gid=gid)
    assert frame["code"] == 200
    push = await guest.push(22699)
    assert push["data"] == {}
    assert "seq" not in push


@pytest.mark.gen_test
async def test_guest_typing_reaches_every_agent_connection(cschat_server):
    # PROTOCOL 22600, push 32699, R14
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    second = await h.agent_client(aid)
    frame = await guest.call(22600)
    assert frame["code"] == 200
    assert (await agent.push(32699))["data"] == {"gid": gid}
    assert (await second.push(32699))["data"] == {"gid": gid}


# ---------------------------------------------------------------- R14 several connections


@pytest.mark.gen_test
async def test_every_agent_connection_gets_pushes(cschat_server):
    # PROTOCOL R14
    h = cschat_server
    group_id, aid, agent, guest, gid = await setup_pair(h)
    second = await h.agent_client(aid)
    info = (await guest.ok(22300, msg="to both"))["message_info"]
    for connection in (agent, second):
        push = await connection.push(32399)
        assert push["data"]["message_info"] == info
    await agent.ok(32300, gid=gid, msg="reply")
    await guest.ok(22200)
    for connection in (agent, second):
        assert (await connection.push(32299))["data"]["gid"] == gid


@pytest.mark.parametrize("file_type, card", [
    (3, {"id": "p1", "title": "Shoe", "price": 1, "evil": {"nested": 1}}),
    (4, {"order_no": "A1", "amount": 3, "k" * 33: 9}),
    (4, {"order_no": "A1", "amount": 3, "lines": [1, 2]}),
    (3, {"id": "p1", "title": "Shoe", "price": True}),
    (3, '{"id": "p1", "title": "Shoe"}'),
    (3, '{"id": "p1", "title": "Shoe", "price": 1'),
])
@pytest.mark.gen_test
async def test_cards_take_flat_fields_only(cschat_server, file_type, card):
    # PROTOCOL R26 (the sheet's cards): required fields as before; a shop's own fields
    # must be flat (keys of at most 32 characters, string/number/bool values), else
    # -32303 / -22303
    _, _, agent, guest = await cschat_server.pair()
    gid = guest.login_data["gid"]
    assert (await agent.call(32300, gid=gid, msg=card, file_type=file_type))["code"] == -32303
    assert (await guest.call(22300, msg=card, file_type=file_type))["code"] == -22303
    assert cschat_server.db("SELECT COUNT(*) FROM messages") == [(0,)]


@pytest.mark.gen_test
async def test_file_type_may_be_a_string_of_digits(cschat_server):
    # PROTOCOL R3 (numeric parameters as digit strings) for 22300's file_type
    _, _, _, guest = await cschat_server.pair()
    sent = await guest.ok(22300, msg="hello", file_type="0")
    assert sent["message_info"]["file_type"] == 0
