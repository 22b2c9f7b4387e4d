"""The agent's desk (docs/protocol.md §3 "The desk", §4 22800, §10 canned and blocks):
the visitor's context, past conversations, search, notes, tags, blocks, canned replies."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from conftest import Client, assert_error

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
PAGE = {"url": "https://shop.example/shoes/42", "title": "Red shoes", "language": "zh-CN",
        "referrer": "https://search.example/?q=shoes", "timezone": "Asia/Shanghai"}
SECRET = "a-secret-for-the-desk-tests-0123456789abcdef"


async def visitor(h, uid: str, group: int, context=None, user_agent: str = IPHONE,
                  token: str | None = None) -> Client:
    client = await Client.connect(h.port, 1, {"User-Agent": user_agent})
    client.login_data = await client.ok(21000, token=token or h.server.tokens.mint_guest(
        uid, group, uid.title()), **({"context": context} if context else {}))
    return client


async def desk(make_server, **settings):
    """A server, a group, an agent of it logged in: ``(h, group, admin_id, agent)``."""
    h = await make_server(**settings)
    group = await h.group()
    admin_id = await h.agent(group, "Alice", role="admin")
    return h, group, admin_id, await h.agent_client(admin_id)


@pytest.mark.gen_test
async def test_the_agent_sees_who_the_visitor_is_and_where(make_server):
    # PROTOCOL §3 context: the widget's page, language and time zone, the browser, OS and
    # device of the connection, first seen and visits, in guest_info; 22800 moves the
    # visitor and the agent gets 32097; no IP address is kept by default
    h, group, _, agent = await desk(make_server)
    guest = await visitor(h, "ann", group, PAGE)
    info = (await agent.push(32401))["data"]["guest_info"]
    context = info["context"]
    assert {key: context[key] for key in PAGE} == PAGE
    assert (context["browser"], context["os"], context["device"]) == (
        "Mobile Safari 17", "iOS 17", "mobile")
    assert context["visits"] == 1 and context["first_seen"] > 0 and context["ip"] is None
    assert (info["blocked"], info["tags"], info["conversation_id"]) == (False, [], None)
    await guest.ok(22300, msg="Do these come in 43?")
    await guest.ok(22800, context={"url": "https://shop.example/cart", "title": "Cart"})
    moved = (await agent.push(32097))["data"]
    assert moved["context"]["url"] == "https://shop.example/cart"
    assert moved["context"]["language"] == "zh-CN"  # what the page change did not say stays
    conversations = (await agent.ok(32800))["list"]
    assert [page["url"] for page in conversations[0]["pages"]] == [
        PAGE["url"], "https://shop.example/cart"]
    assert h.db("SELECT context LIKE '%\"ip\"%' FROM guests") == [(0,)]
    assert_error(await guest.call(22800, context={"url": "javascript:alert(1)"}), -10004)


@pytest.mark.gen_test
async def test_a_shops_token_adds_email_phone_and_attrs_and_the_ip_is_kept_on_request(
        make_server):
    # PROTOCOL §3 context: email, phone and a flat attrs from the shop's token; the IP only
    # with [privacy] store_ip
    h, group, _, agent = await desk(make_server, auth={"secret": SECRET},
                                    privacy={"store_ip": "true"})
    token = jwt.encode({"typ": "guest", "uid": "vip", "group_id": group, "name": "Vic",
                        "email": "vic@example.com", "phone": "+86 138 0000 0000",
                        "attrs": {"orders": 12, "tier": "gold", "nested": {"no": 1}},
                        "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    await visitor(h, "vip", group, token=token)
    context = (await agent.push(32401))["data"]["guest_info"]["context"]
    assert (context["email"], context["phone"]) == ("vic@example.com", "+86 138 0000 0000")
    assert context["attrs"] == {"orders": 12, "tier": "gold"}
    assert context["ip"] == "127.0.0.1"


@pytest.mark.gen_test
async def test_conversations_are_listed_by_state_tag_and_visitor(make_server):
    # PROTOCOL §3 32800: mine / waiting / ended / all, a tag, one visitor's; paged
    h, group, admin_id, agent = await desk(make_server)
    guests = [await visitor(h, f"g{n}", group) for n in range(3)]
    gids = [g.login_data["gid"] for g in guests]
    for guest in guests:
        await guest.ok(22300, msg="hello")
    await agent.ok(32700, gid=gids[0])
    await guests[0].ok(22300, msg="back again")  # a second conversation of g0
    listed = (await agent.ok(32800))["list"]
    assert [c["gid"] for c in listed] == [gids[0], gids[2], gids[1], gids[0]]
    assert [c["state"] for c in listed] == ["open", "open", "open", "ended"]
    assert listed[0]["last_message"]["msg"] == "back again"
    assert [c["gid"] for c in (await agent.ok(32800, filter="ended"))["list"]] == [gids[0]]
    mine = (await agent.ok(32800, filter="mine"))["list"]
    assert {c["gid"] for c in mine} == set(gids) and all(c["admin_id"] == admin_id
                                                          for c in mine)
    assert (await agent.ok(32800, filter="waiting"))["list"] == []
    assert [c["state"] for c in (await agent.ok(32800, gid=gids[0]))["list"]] == [
        "open", "ended"]
    await agent.ok(32840, conversation_id=listed[1]["conversation_id"], add=["refund"])
    assert [c["gid"] for c in (await agent.ok(32800, tag="refund"))["list"]] == [gids[2]]
    first = await agent.ok(32800, limit=2)
    rest = await agent.ok(32800, limit=2, before=first["next_before"])
    assert [c["conversation_id"] for c in first["list"] + rest["list"]] == [
        c["conversation_id"] for c in listed]
    assert rest["next_before"] is not None or len(rest["list"]) < 2
    assert_error(await agent.call(32800, filter="everything"), -10004)


@pytest.mark.gen_test
async def test_search_finds_chinese_by_two_characters_and_only_in_my_group(make_server):
    # PROTOCOL §3 32810: 退货 finds 我想退货; words by prefix; snippets as parts; the
    # visitors' names; never another group's messages
    h, group, _, agent = await desk(make_server)
    other = await h.group("Other")
    await h.agent(other, "Olga")
    guest = await visitor(h, "zhang", group)
    await guest.ok(22300, msg="你好，我想退货，因为太大了")
    await guest.ok(22300, msg="Where is my parcel? Tracking says delivered")
    outsider = await visitor(h, "li", other)
    await outsider.ok(22300, msg="我也想退货")
    found = await agent.ok(32810, q="退货")
    assert [m["snippet"] for m in found["messages"]] == [[
        {"text": "你好，我想", "match": False}, {"text": "退货", "match": True},
        {"text": "，因为太大了", "match": False}]]
    hit = found["messages"][0]
    assert (hit["gid"], hit["sender"], hit["name"]) == (guest.login_data["gid"], "guest",
                                                        "Zhang")
    assert hit["conversation_id"] is not None
    assert [m["message_id"] for m in (await agent.ok(32810, q="parc deliv"))["messages"]] == [
        found["messages"][0]["message_id"] + 1]
    assert (await agent.ok(32810, q="想退货"))["messages"][0]["message_id"] == hit["message_id"]
    assert (await agent.ok(32810, q="zha"))["visitors"] == [
        {"gid": guest.login_data["gid"], "name": "Zhang",
         "last_conversation_id": hit["conversation_id"]}]
    assert (await agent.ok(32810, q="nothing like this"))["messages"] == []
    assert_error(await agent.call(32810, q=""), -10004)


@pytest.mark.gen_test
async def test_notes_reach_the_agents_never_the_visitor(make_server):
    # PROTOCOL §3 32820/32830: a private note goes to the group's other agents (32821), is
    # listed with its place in the conversation, and never reaches the guest
    h, group, admin_id, agent = await desk(make_server)
    colleague = await h.agent_client(await h.agent(group, "Bob"))
    guest = await visitor(h, "ann", group)
    sent = (await guest.ok(22300, msg="I was charged twice"))["message_info"]
    note = (await agent.ok(32820, gid=guest.login_data["gid"], msg="Check the PSP"))["note"]
    assert (note["msg"], note["admin_id"], note["admin_name"], note["after_message_id"]) == (
        "Check the PSP", admin_id, "Alice", sent["id"])
    assert (await colleague.push(32821))["data"]["note"] == note
    await guest.no_push(32821)
    history = await guest.ok(22100)
    assert [m["msg"] for m in history["list"]] == ["I was charged twice"]
    assert (await agent.ok(32830, gid=guest.login_data["gid"]))["notes"] == [note]
    other_group_guest = await visitor(h, "x", await h.group("Other"))
    assert_error(await agent.call(32820, gid=other_group_guest.login_data["gid"], msg="x"),
                 -32821)
    assert_error(await agent.call(32820, gid=guest.login_data["gid"], msg=" "), -32822)


@pytest.mark.gen_test
async def test_tags_are_added_removed_and_bounded(make_server):
    # PROTOCOL §3 32840: add and remove; 32841 to the group's agents; at most 20 tags
    h, group, _, agent = await desk(make_server)
    colleague = await h.agent_client(await h.agent(group, "Bob"))
    guest = await visitor(h, "ann", group)
    await guest.ok(22300, msg="hi")
    conversation_id = (await agent.ok(32800))["list"][0]["conversation_id"]
    assert (await agent.ok(32840, conversation_id=conversation_id, add=["vip", "refund"]))[
        "tags"] == ["refund", "vip"]
    assert (await colleague.push(32841))["data"]["tags"] == ["refund", "vip"]
    assert (await agent.ok(32840, conversation_id=conversation_id, remove=["vip"]))[
        "tags"] == ["refund"]
    assert_error(await agent.call(32840, conversation_id=conversation_id,
                                  add=[f"t{n}" for n in range(20)]), -32842)
    assert h.db("SELECT tag FROM conversation_tags") == [("refund",)]
    assert_error(await agent.call(32840, conversation_id=conversation_id, add=["a,b"]), -32842)
    assert_error(await agent.call(32840, conversation_id=999, add=["x"]), -32841)


@pytest.mark.gen_test
async def test_a_blocked_visitor_cannot_send_until_an_admin_lifts_the_block(make_server):
    # PROTOCOL §3 32850 and §10 blocks: the guest gets 22097, its sends -22307 and nothing is
    # stored; the block shows in 21000 and to admins, who lift it
    h, group, admin_id, agent = await desk(make_server)
    guest = await visitor(h, "troll", group)
    gid = guest.login_data["gid"]
    assert (await agent.ok(32850, gid=gid, blocked=1)) == {"gid": gid, "blocked": True}
    assert (await guest.push(22097))["data"] == {"blocked": True}
    assert_error(await guest.call(22300, msg="spam"), -22307)
    assert h.db("SELECT COUNT(*) FROM messages WHERE gid = ?", (gid,)) == [(0,)]
    again = await visitor(h, "troll", group)
    assert again.login_data["blocked"] is True
    headers = {"Authorization": "Bearer " + h.server.tokens.mint_agent(admin_id)}
    code, answer = await h.http("GET", "/api/admin/blocks", headers=headers)
    assert [(b["gid"], b["blocked_by_name"]) for b in answer["data"]["blocks"]] == [
        (gid, "Alice")]
    code, answer = await h.http("DELETE", f"/api/admin/blocks/{gid}", headers=headers)
    assert code == 200
    assert (await guest.push(22097))["data"] == {"blocked": False}
    await guest.ok(22300, msg="sorry")
    code, _ = await h.http("DELETE", f"/api/admin/blocks/{gid}", headers=headers)
    assert code == 404


@pytest.mark.gen_test
async def test_canned_replies_are_managed_by_admins_and_listed_to_agents(make_server):
    # PROTOCOL §10 canned and §3 32860: per group, unique shortcuts, audited
    h, group, admin_id, agent = await desk(make_server)
    headers = {"Authorization": "Bearer " + h.server.tokens.mint_agent(admin_id)}
    code, answer = await h.http("POST", "/api/admin/canned", {
        "group_id": group, "shortcut": "hi", "text": "Hello {visitor_name}, I am {agent_name}."},
        headers)
    assert code == 201, answer
    canned = answer["data"]["canned"]
    code, answer = await h.http("POST", "/api/admin/canned", {
        "group_id": group, "shortcut": "hi", "text": "again"}, headers)
    assert (code, answer["code"]) == (409, -40009)
    code, answer = await h.http("POST", "/api/admin/canned", {
        "group_id": group, "shortcut": "two words", "text": "x"}, headers)
    assert code == 400
    await h.http("PATCH", f"/api/admin/canned/{canned['id']}", {"text": "Hi {visitor_name}!"},
                 headers)
    assert (await agent.ok(32860))["list"] == [
        {"id": canned["id"], "shortcut": "hi", "text": "Hi {visitor_name}!"}]
    code, _ = await h.http("DELETE", f"/api/admin/canned/{canned['id']}", headers=headers)
    assert code == 200 and (await agent.ok(32860))["list"] == []
    actions = [row[0] for row in h.db("SELECT action FROM audit ORDER BY id DESC LIMIT 3")]
    assert actions == ["canned.delete", "canned.update", "canned.create"]


@pytest.mark.gen_test
async def test_a_note_before_the_first_message_stays_with_the_conversation(make_server):
    # PROTOCOL §3 32820: a note written before the visitor wrote belongs to the
    # conversation that its first message starts
    h, group, _, agent = await desk(make_server)
    guest = await visitor(h, "ann", group)
    note = (await agent.ok(32820, gid=guest.login_data["gid"], msg="VIP customer"))["note"]
    assert note["conversation_id"] is None
    await guest.ok(22300, msg="hello")
    notes = (await agent.ok(32830, gid=guest.login_data["gid"]))["notes"]
    assert [n["msg"] for n in notes] == ["VIP customer"]
    assert notes[0]["conversation_id"] is not None


@pytest.mark.gen_test
async def test_search_goes_on_past_other_groups_matches(make_server, monkeypatch):
    # PROTOCOL §3 32810: a page reads a bounded number of matches of any group; when
    # those were all another group's, next_before lets the search go on
    monkeypatch.setattr("cschat.store.desk._SEARCH_SCAN", 3)
    h, group, _, agent = await desk(make_server)
    mine = await visitor(h, "ann", group)
    await mine.ok(22300, msg="refund for order 7")
    other = await visitor(h, "bob", await h.group("Other"))
    for n in range(4):
        await other.ok(22300, msg=f"refund number {n}")
    first = await agent.ok(32810, q="refund")
    assert first["messages"] == [] and first["next_before"] is not None
    second = await agent.ok(32810, q="refund", before=first["next_before"])
    assert [[part["text"] for part in m["snippet"] if part["match"]]
            for m in second["messages"]] == [["refund"]]
    assert second["messages"][0]["gid"] == mine.login_data["gid"]



@pytest.mark.gen_test(timeout=30)
async def test_search_index_follows_the_messages_and_can_be_switched_off(
        make_server, tmp_path, monkeypatch):
    # PROTOCOL §3 32810, [privacy] search_index: the index follows the messages in the
    # background, and a search finds what was sent a moment before; off, the index is
    # emptied and a search finds visitors by name only (message_search false); on again,
    # every message is indexed again in the background, a chunk at a time
    monkeypatch.setattr("cschat.store.desk._INDEX_CHUNK", 2)
    database = {"path": str(tmp_path / "shop.db")}
    h, group, admin_id, agent = await desk(make_server, database=database)
    guest = await visitor(h, "zhang", group)
    await guest.ok(22300, msg="refund one")
    found = await agent.ok(32810, q="refund")
    assert len(found["messages"]) == 1 and found["message_search"] is True
    await guest.ok(22300, msg="refund two")
    await guest.ok(22300, msg={"id": "1", "title": "refund shoe", "price": "9.90"}, file_type=3)
    await until_indexed(h, 2)
    await h.server.stop()

    h = await make_server(database=database, privacy={"search_index": False})
    assert h.db(INDEXED) == [(0,)]
    guest = await visitor(h, "zhang", group)
    for n in range(3):
        await guest.ok(22300, msg=f"refund {n}")
    off = await (await h.agent_client(admin_id)).ok(32810, q="zhang")
    assert (off["messages"], off["message_search"]) == ([], False)
    assert [v["name"] for v in off["visitors"]] == ["Zhang"]
    await asyncio.sleep(0.5)
    assert h.db(INDEXED) == [(0,)]
    await h.server.stop()

    h = await make_server(database=database)
    await until_indexed(h, 5)
    found = await (await h.agent_client(admin_id)).ok(32810, q="refund")
    assert len(found["messages"]) == 5


INDEXED = "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'refund'"


async def until_indexed(h, count: int) -> None:
    """Wait (at most 5 s) until ``count`` messages with "refund" are in the search index."""
    for _ in range(100):
        if h.db(INDEXED) == [(count,)]:
            return
        await asyncio.sleep(0.05)
    assert h.db(INDEXED) == [(count,)]
