"""PROTOCOL §1 (R1–R9): frames, seq, responses and pushes, heartbeat, login gate,
call_type checks, rate limit and WebSocket origins; the generic error codes of §8."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import tornado.httpclient
from conftest import Client, assert_error

RESPONSE_KEYS = {"api_key", "code", "status", "message", "data"}


async def raw_request(client: Client, frame: dict | str | bytes, timeout: float = 5.0) -> dict:
    """Send one raw frame and return the next frame that is not a push.

    A response is told apart from a push by its code: pushes carry a positive
    code other than 200 (R5), or -9999 with no ``seq``.
    """
    if isinstance(frame, dict):
        client.send_raw(json.dumps(frame))
    else:
        client.send_raw(frame)
    while True:
        reply = await client.read(timeout)
        assert reply is not None, "connection closed while waiting for a response"
        if "seq" in reply or reply.get("code") == 200 or (
                reply.get("code", 0) < 0 and reply.get("code") != -9999):
            return reply
        client.frames.append(reply)


async def heartbeat(client: Client) -> dict:
    """A heartbeat round trip; proves the connection is still open and usable."""
    reply = await client.call(0, call_type=0)
    assert reply["code"] == 200, reply
    assert isinstance(reply["data"]["time"], int)
    return reply


def assert_error_shape(reply: dict, code: int) -> None:
    """The error shape of R4 with the given code: every key, a message."""
    assert_error(reply, code)
    assert RESPONSE_KEYS <= set(reply), reply
    assert isinstance(reply["message"], str) and reply["message"], reply


# -- R1: frames that are not one JSON object -------------------------------------------------


@pytest.mark.gen_test
async def test_binary_frame_is_not_json_object(cschat_server):
    # PROTOCOL R1 -10001
    client = await Client.connect(cschat_server.port, 1)
    client.send_raw(b'{"call_type": 0}')
    reply = await client.read()
    assert_error_shape(reply, -10001)
    await heartbeat(client)


@pytest.mark.gen_test
@pytest.mark.parametrize("text", ['{"call_type": 0', "not json at all", "[1, 2, 3]",
                                  '[{"call_type": 0}]', "42", '"a string"', "null", "true",
                                  ""])
async def test_non_object_frames_get_10001_and_connection_stays(cschat_server, text):
    # PROTOCOL R1 -10001
    client = await Client.connect(cschat_server.port, 1)
    client.send_raw(text)
    reply = await client.read()
    assert_error_shape(reply, -10001)
    await heartbeat(client)


@pytest.mark.gen_test
async def test_bad_frames_after_login_keep_session(cschat_server):
    # PROTOCOL R1 -10001: a logged-in connection also survives, and stays logged in
    h = cschat_server
    _, _, agent, guest = await h.pair()
    for client in (agent, guest):
        client.send_raw("{oops")
        assert_error_shape(await _next_error(client), -10001)
        client.send_raw(b"\x00\x01binary")
        assert_error_shape(await _next_error(client), -10001)
    await guest.ok(22300, msg="still here")
    await agent.ok(32000)


async def _next_error(client: Client) -> dict:
    while True:
        reply = await client.read()
        assert reply is not None
        if reply.get("code", 0) < 0 and reply.get("code") != -9999:
            return reply
        client.frames.append(reply)


# -- R2: oversized frames --------------------------------------------------------------------


@pytest.mark.gen_test
async def test_oversized_frame_closes_1009_and_stores_nothing(make_server):
    # PROTOCOL R2
    h = await make_server(chat={"max_frame_bytes": 2048})
    group = await h.group()
    guest = await h.guest_client("big", group)
    await guest.ok(22300, msg="small one", client_msg_id="m1")
    before = h.db("SELECT COUNT(*) FROM messages")[0][0]
    guest.send(22300, msg="x" * 3000, client_msg_id="m2")
    assert await guest.closed() == 1009
    await asyncio.sleep(0.2)
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == before
    assert h.db("SELECT COUNT(*) FROM messages WHERE client_msg_id = 'm2'")[0][0] == 0


@pytest.mark.gen_test
async def test_frame_under_limit_is_accepted(make_server):
    # PROTOCOL R2: the limit is on the frame, a frame below it is handled normally
    h = await make_server(chat={"max_frame_bytes": 2048})
    group = await h.group()
    guest = await h.guest_client("near", group)
    data = await guest.ok(22300, msg="y" * 1800)
    assert data["message_info"]["msg"] == "y" * 1800


@pytest.mark.gen_test
async def test_oversized_frame_before_login_closes_1009(make_server):
    # PROTOCOL R2
    h = await make_server(chat={"max_frame_bytes": 1024})
    client = await Client.connect(h.port, 1)
    client.send_raw(json.dumps({"call_type": 0, "pad": "z" * 2000}))
    assert await client.closed() == 1009


# -- R3 / R4: seq and response shape ---------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("seq", [17, 0, -5, 2**40, "abc-17", "", "x" * 64, "ü中文"])
async def test_seq_echoed_unchanged(cschat_server, seq):
    # PROTOCOL R3 R4: seq echoed with the same type and value
    client = await Client.connect(cschat_server.port, 1)
    reply = await raw_request(client, {"call_type": 0, "seq": seq})
    assert reply["code"] == 200
    assert reply["seq"] == seq
    assert type(reply["seq"]) is type(seq)


@pytest.mark.gen_test
async def test_seq_echoed_on_errors_and_api_responses(cschat_server):
    # PROTOCOL R3 R4: errors and api responses echo seq too
    h = cschat_server
    _, _, agent, guest = await h.pair()
    reply = await raw_request(agent, {"api_key": 32000, "call_type": 3, "seq": "s-1"})
    assert reply["seq"] == "s-1" and reply["code"] == 200
    reply = await raw_request(agent, {"api_key": 32300, "call_type": 3, "seq": 99,
                                      "gid": guest.login_data["gid"], "msg": ""})
    assert reply["seq"] == 99
    assert_error_shape(reply, -32302)
    reply = await raw_request(guest, {"api_key": 22300, "call_type": 1, "seq": "g7",
                                      "msg": "hello"})
    assert reply["seq"] == "g7" and reply["code"] == 200


@pytest.mark.gen_test
async def test_success_response_shape(cschat_server):
    # PROTOCOL R4
    h = cschat_server
    _, _, agent, guest = await h.pair()
    reply = await guest.call(22300, msg="shape")
    assert RESPONSE_KEYS | {"seq"} == set(reply)
    assert reply["api_key"] == 22300
    assert reply["code"] == 200
    assert reply["status"] == "Success"
    assert reply["message"] == ""
    assert isinstance(reply["data"], dict) and reply["data"]["message_info"]["msg"] == "shape"
    reply = await agent.call(33000)
    assert reply["api_key"] == 33000 and reply["status"] == "Success"
    assert isinstance(reply["data"]["admin_list"], list)


@pytest.mark.gen_test
async def test_error_response_shape(cschat_server):
    # PROTOCOL R4: negative code, status Error, short message, data {}
    h = cschat_server
    _, _, agent, _ = await h.pair()
    reply = await agent.call(32100, gid="abc", group_id=1)
    assert reply["api_key"] == 32100
    assert_error_shape(reply, -32101)
    assert RESPONSE_KEYS | {"seq"} == set(reply)


@pytest.mark.gen_test
@pytest.mark.parametrize("seq", [{"a": 1}, [1], "x" * 65, True, 1.5])
async def test_invalid_seq_gets_10004(cschat_server, seq):
    # PROTOCOL R3 R8 -10004: seq is an integer or a string of at most 64 chars
    client = await Client.connect(cschat_server.port, 1)
    client.send_raw(json.dumps({"call_type": 0, "seq": seq}))
    assert_error_shape(await client.read(), -10004)
    await heartbeat(client)


@pytest.mark.gen_test
async def test_invalid_seq_on_api_call_is_not_executed(cschat_server):
    # PROTOCOL R3 R8 -10004: the request with a bad seq is rejected, not carried out
    h = cschat_server
    group = await h.group()
    guest = await h.guest_client("s", group)
    guest.send_raw(json.dumps({"api_key": 22300, "call_type": 1, "seq": {"x": 1},
                               "msg": "never", "client_msg_id": "bad-seq"}))
    assert_error_shape(await _next_error(guest), -10004)
    await heartbeat(guest)
    assert h.db("SELECT COUNT(*) FROM messages WHERE client_msg_id = 'bad-seq'")[0][0] == 0


# -- R5: pushes ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_pushes_have_no_seq_and_positive_code(cschat_server):
    # PROTOCOL R5
    h = cschat_server
    _, _, agent, guest = await h.pair()
    assigned = await agent.push(32401)
    await guest.ok(22300, msg="hi")
    message = await agent.push(32399)
    await agent.ok(32300, gid=guest.login_data["gid"], msg="hello")
    reply = await guest.push(22399)
    for push in (assigned, message, reply):
        assert "seq" not in push
        assert RESPONSE_KEYS <= set(push)
        assert push["code"] > 0 and push["code"] != 200
        assert push["status"] == "Success"
        assert isinstance(push["data"], dict) and push["data"]
        assert isinstance(push["api_key"], int)


# -- R6: heartbeat ---------------------------------------------------------------------------


def assert_heartbeat(reply: dict) -> None:
    assert reply["api_key"] == 0, reply
    assert reply["code"] == 200, reply
    server_ms = reply["data"]["time"]
    assert isinstance(server_ms, int)
    assert abs(server_ms - time.time() * 1000) < 5000


@pytest.mark.gen_test
async def test_heartbeat_before_login(cschat_server):
    # PROTOCOL R6
    client = await Client.connect(cschat_server.port, 1)
    assert_heartbeat(await raw_request(client, {"call_type": 0}))
    assert_heartbeat(await raw_request(client, {"call_type": 0, "api_key": 0}))
    reply = await raw_request(client, {"call_type": 0, "api_key": 0, "seq": 5})
    assert_heartbeat(reply)
    assert reply["seq"] == 5


@pytest.mark.gen_test
async def test_heartbeat_after_login_agent_and_guest(cschat_server):
    # PROTOCOL R6
    h = cschat_server
    _, _, agent, guest = await h.pair()
    for client in (agent, guest):
        assert_heartbeat(await raw_request(client, {"call_type": 0}))
        assert_heartbeat(await raw_request(client, {"call_type": 0, "api_key": 0}))


@pytest.mark.gen_test(timeout=15)
async def test_silent_connection_closed_after_heartbeat_timeout(make_server):
    # PROTOCOL R6: no frame for heartbeat_timeout seconds closes the connection
    h = await make_server(chat={"heartbeat_timeout": 1})
    group = await h.group()
    aid = await h.agent(group)
    silent = await Client.connect(h.port, 1)
    silent_agent = await h.agent_client(aid)
    started = time.monotonic()
    await silent.closed(timeout=5)
    await silent_agent.closed(timeout=5)
    assert time.monotonic() - started >= 0.9


@pytest.mark.gen_test(timeout=15)
async def test_connection_sending_heartbeats_stays_open(make_server):
    # PROTOCOL R6: heartbeats keep a connection alive past heartbeat_timeout
    h = await make_server(chat={"heartbeat_timeout": 1})
    client = await Client.connect(h.port, 1)
    silent = await Client.connect(h.port, 1)
    deadline = time.monotonic() + 2.6
    while time.monotonic() < deadline:
        assert_heartbeat(await client.call(0, call_type=0))
        await asyncio.sleep(0.3)
    await silent.closed(timeout=3)
    assert_heartbeat(await client.call(0, call_type=0))


@pytest.mark.gen_test(timeout=15)
async def test_any_frame_counts_as_activity(make_server):
    # PROTOCOL R6: "sends no frame" — api calls keep the connection alive as well
    h = await make_server(chat={"heartbeat_timeout": 1})
    group = await h.group()
    guest = await h.guest_client("busy", group)
    deadline = time.monotonic() + 2.4
    while time.monotonic() < deadline:
        await guest.ok(22100)
        await asyncio.sleep(0.3)
    await guest.ok(22100)


# -- R7: login required ----------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("api_key,call_type", [
    (32000, 3), (32300, 3), (33000, 3), (32500, 3), (22300, 1), (22100, 1), (22600, 1),
    (12345, 1), (99999, 3), (32000, 1)])
async def test_api_before_login_gets_9999(cschat_server, api_key, call_type):
    # PROTOCOL R7: anything but login and heartbeat before login → -9999
    client = await Client.connect(cschat_server.port, call_type)
    reply = await client.call(api_key, call_type=call_type, gid=1, msg="x", status=1)
    assert reply["api_key"] == api_key
    assert_error_shape(reply, -9999)
    await heartbeat(client)


@pytest.mark.gen_test
async def test_failed_login_leaves_connection_unauthenticated(cschat_server):
    # PROTOCOL R7: after a failed login the connection is still not logged in
    h = cschat_server
    group = await h.group()
    await h.agent(group)
    client = await Client.connect(h.port, 3)
    assert (await client.call(31000, token="garbage"))["code"] == -31001
    assert_error_shape(await client.call(32000), -9999)
    await heartbeat(client)


@pytest.mark.gen_test(timeout=15)
async def test_disabled_agent_gets_9999_push_then_close(cschat_server):
    # PROTOCOL R7: disabling an agent ends its sessions with a -9999 push and a close
    h = cschat_server
    group = await h.group()
    aid = await h.agent(group, "Alice")
    other = await h.agent(group, "Bob")
    tab1 = await h.agent_client(aid)
    tab2 = await h.agent_client(aid)
    bob = await h.agent_client(other)
    await h.server.store.set_agent_enabled(aid, False)
    for tab in (tab1, tab2):
        push = await tab.push(-9999)
        assert "seq" not in push
        assert push["status"] == "Error"
        await tab.closed()
    await heartbeat(bob)
    assert not [f for f in bob.frames if f.get("code") == -9999]
    client = await Client.connect(h.port, 3)
    assert (await client.call(31000, token=h.server.tokens.mint_agent(aid)))["code"] == -31003


@pytest.mark.gen_test(timeout=15)
async def test_disabled_group_ends_agents_and_guests(cschat_server):
    # PROTOCOL R7: disabling a group ends the sessions of its agents and its guests
    h = cschat_server
    group = await h.group("A")
    other_group = await h.group("B")
    aid = await h.agent(group, "Alice")
    other_aid = await h.agent(other_group, "Olga")
    agent = await h.agent_client(aid)
    guest = await h.guest_client("g1", group)
    queued_guest_agentless = await h.guest_client("g2", group)
    other_agent = await h.agent_client(other_aid)
    other_guest = await h.guest_client("g1", other_group)
    await h.server.store.set_group_enabled(group, False)
    for client in (agent, guest, queued_guest_agentless):
        push = await client.push(-9999)
        assert "seq" not in push
        await client.closed()
    for client in (other_agent, other_guest):
        await heartbeat(client)
        assert not [f for f in client.frames if f.get("code") == -9999]
    relogin = await Client.connect(h.port, 1)
    reply = await relogin.call(21000, token=h.server.tokens.mint_guest("g1", group))
    assert reply["code"] == -21004


# -- R8: call_type mismatch, unknown api_key, bad parameters ---------------------------------


@pytest.mark.gen_test
async def test_call_type_mismatch_on_login(cschat_server):
    # PROTOCOL R8 -10003: a login whose call_type does not match its api
    h = cschat_server
    group = await h.group()
    aid = await h.agent(group)
    client = await Client.connect(h.port, 1)
    reply = await client.call(31000, call_type=1, token=h.server.tokens.mint_agent(aid))
    assert_error_shape(reply, -10003)
    reply = await client.call(21000, call_type=3, token=h.server.tokens.mint_guest("u", group))
    assert_error_shape(reply, -10003)
    assert_error_shape(await client.call(32000, call_type=3), -9999)  # still not logged in
    await heartbeat(client)


@pytest.mark.gen_test
async def test_call_type_mismatch_after_login(cschat_server):
    # PROTOCOL R8 -10003
    h = cschat_server
    _, _, agent, guest = await h.pair()
    gid = guest.login_data["gid"]
    # guest connection sending agent apis, with either call_type
    assert_error_shape(await guest.call(32000, call_type=3), -10003)
    assert_error_shape(await guest.call(32000, call_type=1), -10003)
    assert_error_shape(await guest.call(32300, call_type=3, gid=gid, msg="hijack"), -10003)
    # guest api with the agent call_type
    assert_error_shape(await guest.call(22300, call_type=3, msg="x"), -10003)
    # agent sending with call_type 1
    assert_error_shape(await agent.call(32000, call_type=1), -10003)
    assert_error_shape(await agent.call(22300, call_type=1, msg="x"), -10003)
    assert_error_shape(await agent.call(22300, call_type=3, msg="x"), -10003)
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == 0
    # PROTOCOL R3 (the sheet): a missing call_type is the connection's role's
    agent.send_raw(json.dumps({"api_key": 32000, "seq": "nc"}))
    assert (await agent.response("nc"))["code"] == 200
    guest.send_raw(json.dumps({"api_key": 32000, "seq": "nc"}))
    assert_error_shape(await guest.response("nc"), -10003)
    await agent.ok(32000)
    await guest.ok(22100)


@pytest.mark.gen_test
async def test_second_login_on_same_connection_refused(cschat_server):
    # PROTOCOL R8: a connection holds one role; logging in again is a bad request
    h = cschat_server
    _, aid, agent, guest = await h.pair()
    group = agent.login_data["admin_list"][0]["group_id"]
    reply = await guest.call(21000, token=h.server.tokens.mint_guest("other", group))
    assert reply["code"] < 0
    assert (await guest.ok(22100)) is not None
    reply = await agent.call(31000, token=h.server.tokens.mint_agent(aid))
    assert reply["code"] < 0
    await agent.ok(32000)


@pytest.mark.gen_test
@pytest.mark.parametrize("api_key", [99999, 31001, 1, -5, "abc", 22301])
async def test_unknown_api_key_after_login(cschat_server, api_key):
    # PROTOCOL R8 -10002
    h = cschat_server
    _, _, agent, guest = await h.pair()
    for client in (agent, guest):
        seq = f"u{client.call_type}"
        client.send_raw(json.dumps({"api_key": api_key, "call_type": client.call_type,
                                    "seq": seq}))
        assert_error_shape(await client.response(seq), -10002)
        await heartbeat(client)


@pytest.mark.gen_test
async def test_bad_parameters_get_api_code_or_10004(cschat_server):
    # PROTOCOL R8: wrong-typed or out-of-range parameters
    h = cschat_server
    group, _, agent, guest = await h.pair()
    gid = guest.login_data["gid"]
    assert_error_shape(await agent.call(32100, gid=gid, group_id=group, page_size=0), -10004)
    assert_error_shape(await agent.call(32100, gid=gid, group_id=group, page_size=101), -10004)
    assert_error_shape(await agent.call(32100, gid=gid, group_id=group, page_index=0), -10004)
    assert_error_shape(await agent.call(32100, gid=gid, group_id=group, page_size="ten"), -10004)
    assert_error_shape(await agent.call(32100, gid="abc", group_id=group), -32101)
    assert_error_shape(await agent.call(32100, gid=gid, group_id="abc"), -32102)
    assert_error_shape(await agent.call(32500, status=7), -32501)
    assert_error_shape(await agent.call(32500, status="busy"), -32501)
    assert_error_shape(await agent.call(32500), -32501)
    assert_error_shape(await agent.call(32300, gid=gid, msg="x", file_type=9), -32303)
    assert_error_shape(await agent.call(32300, gid=gid, msg="x", file_type="text"), -32303)
    assert_error_shape(await agent.call(32300, gid={"x": 1}, msg="x"), -32301)
    assert_error_shape(await agent.call(32400, gid=gid, aix=[1]), -32404)
    assert_error_shape(await agent.call(32700, gid=None), -32701)
    assert_error_shape(await agent.call(32700, gid="abc"), -32701)
    assert_error_shape(await agent.call(32200, gid="abc", group_id=group), -32201)
    assert_error_shape(await agent.call(32200, gid=gid, group_id=[group]), -32202)
    assert_error_shape(await agent.call(32400, gid="abc", aix=1), -32403)
    assert_error_shape(await agent.call(32600, gid="abc"), -10004)
    assert_error_shape(await guest.call(22300, msg="x", file_type=9), -22303)
    assert_error_shape(await guest.call(22300, msg="x", file_type=-1), -22303)
    assert_error_shape(await guest.call(22300, msg=[12345]), -22303)
    assert_error_shape(await guest.call(22100, page_size=0), -10004)
    assert_error_shape(await guest.call(22100, before_id="abc"), -10004)
    assert_error_shape(await guest.call(22300, msg="x", client_msg_id={"a": 1}), -10004)
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == 0
    # both connections survived, and the server still works
    await guest.ok(22300, msg="fine")
    await agent.ok(32100, gid=gid, group_id=group, page_size=100)


@pytest.mark.gen_test
async def test_junk_values_never_crash(cschat_server):
    # PROTOCOL R8: no request ever crashes the connection or the server
    h = cschat_server
    group, _, agent, guest = await h.pair()
    junk = [None, True, -1, 0, 2**63, 1e308, "", "x" * 1000, [], {}, {"a": [1]}]
    keys = ["gid", "group_id", "msg", "file_type", "page_index", "page_size", "before_id",
            "after_id", "aix", "status", "client_msg_id"]
    for api_key, client in [(32000, agent), (32100, agent), (32200, agent), (32300, agent),
                            (32400, agent), (32500, agent), (32600, agent), (32700, agent),
                            (33000, agent), (22100, guest), (22200, guest), (22300, guest),
                            (22600, guest)]:
        for value in junk:
            reply = await client.call(api_key, **{key: value for key in keys})
            assert reply["api_key"] == api_key
            assert reply["code"] == 200 or reply["code"] < 0
            assert reply["code"] != -10000, reply  # not an internal error
            assert reply["status"] == ("Success" if reply["code"] == 200 else "Error")
    await heartbeat(agent)
    await heartbeat(guest)
    fresh = await h.guest_client("after-junk", group)
    await fresh.ok(22300, msg="server alive")
    for client in (agent, guest, fresh):
        client.close()


# -- R9: rate limit --------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=15)
async def test_rate_limit_burst_then_recovers(make_server):
    # PROTOCOL R9 -10029: burst of 2× rate_limit, excess rejected, heartbeats count
    h = await make_server(chat={"rate_limit": 5})
    client = await Client.connect(h.port, 1)
    seqs = [client.send(0, call_type=0) for _ in range(20)]
    replies = [await client.response(seq) for seq in seqs]
    ok = [r for r in replies if r["code"] == 200]
    limited = [r for r in replies if r["code"] == -10029]
    assert len(ok) + len(limited) == 20
    assert 10 <= len(ok) <= 12, [r["code"] for r in replies]
    assert replies[:10] == ok[:10]
    for reply in limited:
        assert_error_shape(reply, -10029)
    await asyncio.sleep(1.1)
    assert_heartbeat(await client.call(0, call_type=0))


@pytest.mark.gen_test(timeout=15)
async def test_rate_limited_frame_is_ignored(make_server):
    # PROTOCOL R9: a rate-limited frame is ignored (not stored), the connection is kept
    h = await make_server(chat={"rate_limit": 5})
    group = await h.group()
    guest = await h.guest_client("fast", group)
    for _ in range(12):
        guest.send(0, call_type=0)
    seq = guest.send(22300, msg="dropped", client_msg_id="rl-1")
    reply = await guest.response(seq)
    assert_error_shape(reply, -10029)
    await asyncio.sleep(1.2)
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == 0
    data = await guest.ok(22300, msg="accepted", client_msg_id="rl-2")
    assert data["message_info"]["msg"] == "accepted"
    assert h.db("SELECT body FROM messages")[0][0] == "accepted"


@pytest.mark.gen_test(timeout=15)
async def test_steady_rate_within_limit_passes(make_server):
    # PROTOCOL R9: after the burst is spent, sending below rate_limit is never limited
    h = await make_server(chat={"rate_limit": 5})
    client = await Client.connect(h.port, 1)
    seqs = [client.send(0, call_type=0) for _ in range(10)]
    for seq in seqs:
        assert_heartbeat(await client.response(seq))
    for _ in range(6):
        await asyncio.sleep(0.26)
        assert_heartbeat(await client.call(0, call_type=0))


# -- Origins (allowed_origins) ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_allowed_origins_refuses_other_origin(make_server):
    # PROTOCOL R1 /ws with [server] allowed_origins
    h = await make_server(server={"allowed_origins": "https://shop.example"})
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await Client.connect(h.port, 1, headers={"Origin": "https://evil.example"})
    assert refused.value.code == 403
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await Client.connect(h.port, 1, headers={"Origin": "http://shop.example"})
    assert refused.value.code == 403
    client = await Client.connect(h.port, 1, headers={"Origin": "https://shop.example"})
    await heartbeat(client)


@pytest.mark.gen_test
async def test_default_origin_must_match_host(cschat_server):
    # PROTOCOL R1 /ws with the default (empty) allowed_origins
    h = cschat_server
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await Client.connect(h.port, 1, headers={"Origin": "https://evil.example"})
    assert refused.value.code == 403
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await Client.connect(h.port, 1, headers={"Origin": "http://localhost:1"})
    assert refused.value.code == 403
    client = await Client.connect(h.port, 1,
                                  headers={"Origin": f"http://127.0.0.1:{h.port}"})
    await heartbeat(client)


# -- edges a contract-only client found ---------------------------------------------------


@pytest.mark.parametrize("params, code", [
    ({"gid": 10**30, "group_id": 1}, -32101),
    ({"gid": 1, "group_id": 10**30}, -32102),
    ({"gid": 1, "group_id": 1, "page_index": 2**62}, -10004),
    ({"gid": 1, "group_id": 1, "before_id": 10**30}, -10004),
    ({"gid": 1, "group_id": 1, "after_id": -(10**30)}, -10004),
])
@pytest.mark.gen_test
async def test_numbers_beyond_64_bits_get_the_api_code(cschat_server, params, code):
    # PROTOCOL R8: out of range → the API's own code, else -10004; never a crash (-10000)
    _, _, agent, _ = await cschat_server.pair()
    assert_error(await agent.call(32100, **params), code)
    assert_error(await agent.call(32200, gid=10**30, group_id=1), -32201)
    assert (await agent.call(0, call_type=0))["code"] == 200


@pytest.mark.parametrize("text", [
    '{"api_key": 22300, "call_type": 1, "msg": NaN}',
    '{"api_key": 22300, "call_type": 1, "file_type": 3, '
    '"msg": {"id": "p", "title": "t", "price": Infinity}}',
    '{"api_key": 0, "call_type": 0, "seq": -Infinity}',
])
@pytest.mark.gen_test
async def test_nan_and_infinity_are_not_json(cschat_server, text):
    # PROTOCOL R1: NaN/Infinity are not JSON (browsers could not parse them back) → -10001
    _, _, _, guest = await cschat_server.pair()
    guest.send_raw(text)
    reply = await guest.read()
    while reply["code"] > 0 and reply["code"] != 200:  # pushes (22401) may come first
        reply = await guest.read()
    assert reply["code"] == -10001 and "seq" not in reply
    assert cschat_server.db("SELECT COUNT(*) FROM messages") == [(0,)]


@pytest.mark.gen_test
async def test_null_seq_is_echoed(cschat_server):
    # PROTOCOL R3: seq comes back unchanged, null included; absent stays absent
    client = await Client.connect(cschat_server.port, 1)
    client.send_raw(json.dumps({"call_type": 0, "seq": None}))
    reply = await client.read()
    assert "seq" in reply and reply["seq"] is None
    client.send_raw(json.dumps({"call_type": 0}))
    assert "seq" not in await client.read()


@pytest.mark.parametrize("gid", ["--1", "\u00b2", "1" * 5000, "1_000", " 12 3"])
@pytest.mark.gen_test
async def test_odd_digit_strings_get_the_api_code_and_keep_the_connection(cschat_server, gid):
    # PROTOCOL R8: a malformed number is the API's own code; no request crashes the connection
    _, _, agent, guest = await cschat_server.pair()
    assert_error(await agent.call(32300, gid=gid, msg="hi"), -32301)
    assert_error(await agent.call(32100, gid=gid, group_id=1), -32101)
    assert_error(await guest.call(22100, page_index=gid), -10004)
    assert (await agent.call(0, call_type=0))["code"] == 200


@pytest.mark.gen_test
async def test_invalid_frames_count_against_the_rate_limit(make_server):
    # PROTOCOL R9: every frame counts, even one that is not JSON
    h = await make_server(chat={"rate_limit": 5})
    client = await Client.connect(h.port, 1)
    for _ in range(20):
        client.send_raw("not json")
    codes = [(await client.read())["code"] for _ in range(20)]
    assert codes.count(-10029) >= 8 and set(codes) == {-10001, -10029}


# -- values that could not be encoded back (docs/security.md) ---------------------------------


@pytest.mark.gen_test
async def test_a_number_beyond_a_double_is_refused_and_nothing_is_stored(cschat_server):
    # PROTOCOL R3 (SECURITY poisoned card): 1e400 parsed as inf and, once stored, broke every
    # frame carrying it. It is -10004 with the frame's api_key and seq; nothing is stored,
    # and the agent's login and history still answer.
    h = cschat_server
    group, admin_id, agent, guest = await h.pair()
    guest.send_raw('{"api_key":22300,"call_type":1,"seq":"c1","file_type":3,'
                   '"msg":{"id":"p1","title":"Shoes","price":1e400}}')
    reply = await guest.response("c1")
    assert_error(reply, -10004)
    assert reply["api_key"] == 22300 and "double" in reply["message"]
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == 0
    card = await guest.ok(22300, file_type=3, msg={"id": "p1", "title": "Shoes", "price": 1e300})
    assert card["message_info"]["msg"]["price"] == 1e300
    again = await h.agent_client(admin_id)
    assert again.login_data["guest_list"][0]["last_message"]["file_type"] == 3


@pytest.mark.gen_test
async def test_an_answer_that_cannot_be_encoded_is_answered_10000(cschat_server):
    # PROTOCOL R4, R8: every request gets its answer; a row another program stored with
    # Infinity makes history unencodable, which is -10000, not silence.
    h = cschat_server
    group, admin_id, agent, guest = await h.pair()
    await guest.ok(22300, file_type=3, msg={"id": "p1", "title": "Shoes", "price": 1})
    h.db_write("UPDATE messages SET body = ?", ('{"id":"p1","title":"Shoes","price":Infinity}',))
    reply = await agent.call(32100, gid=guest.login_data["gid"], group_id=group)
    assert_error(reply, -10000)
    await heartbeat(agent)


@pytest.mark.gen_test
@pytest.mark.parametrize("frame", [
    "[" * 30_000 + "]" * 30_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
])
async def test_deeply_nested_json_gets_10001_and_the_connection_stays(cschat_server, frame):
    # PROTOCOL R1 (SECURITY): nesting too deep to parse is not a dropped connection.
    client = await Client.connect(cschat_server.port, 1)
    client.send_raw(frame)
    assert_error_shape(await client.read(), -10001)
    await heartbeat(client)


@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["seq", "msg", "client_msg_id", "key"])
async def test_lone_surrogates_get_10001_and_nothing_is_stored(cschat_server, field):
    # PROTOCOL R1 (SECURITY): "\ud800" is not Unicode text; it can be neither stored nor
    # sent back, so the frame is refused where it is decoded.
    h = cschat_server
    group, admin_id, agent, guest = await h.pair()
    frame = {"api_key": 22300, "call_type": 1, "seq": 5, "msg": "hi", "client_msg_id": "m1"}
    if field == "key":
        text = json.dumps(frame)[:-1] + ', "\\udc00x": 1}'
    else:
        frame[field] = "a\ud800b"
        text = json.dumps(frame)
    assert_error_shape(await raw_request(guest, text), -10001)
    assert h.db("SELECT COUNT(*) FROM messages")[0][0] == 0
    paired = await guest.ok(22300, msg="\U0001F600 \\ud800 as text", client_msg_id="m2")
    assert paired["message_info"]["msg"] == "\U0001F600 \\ud800 as text"


@pytest.mark.gen_test
@pytest.mark.parametrize("body", ['{"username": "a\\ud800", "password": "x"}',
                                  "[" * 10_000, '{"username": 1e400, "password": "x"}'])
async def test_http_bodies_that_cannot_be_decoded_get_400(cschat_server, body):
    # PROTOCOL §7 (SECURITY): /api/login answered 500 to these; now 400 -10004.
    status, reply = await cschat_server.http("POST", "/api/login", body)
    assert status == 400 and reply["code"] == -10004, reply


@pytest.mark.gen_test
async def test_allowed_origins_keep_cschats_own_pages_working(make_server):
    # PROTOCOL §1 origins: with allowed_origins set, the console and widget served by cschat
    # itself (same host) still connect, whatever the Tornado version; others are refused.
    h = await make_server(server={"allowed_origins": "https://shop.example"})
    for origin in (f"http://127.0.0.1:{h.port}", "https://shop.example"):
        client = await Client.connect(h.port, 1, headers={"Origin": origin})
        await heartbeat(client)
    with pytest.raises(tornado.httpclient.HTTPClientError):
        await Client.connect(h.port, 1, headers={"Origin": "https://evil.example"})


@pytest.mark.gen_test
async def test_login_answers_say_how_often_to_beat(make_server):
    # PROTOCOL R6: 21000 / 31000 carry heartbeat_interval (s), a third of heartbeat_timeout,
    # so a short timeout never leaves browser clients beating too slowly.
    h = await make_server(chat={"heartbeat_timeout": 12})
    group, admin_id, agent, guest = await h.pair()
    assert agent.login_data["heartbeat_interval"] == 4
    assert guest.login_data["heartbeat_interval"] == 4
