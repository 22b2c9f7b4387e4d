import pytest


@pytest.mark.gen_test
async def test_round_trip(cschat_server):
    h = cschat_server
    gid_group = await h.group()
    aid = await h.agent(gid_group, "Alice")
    agent = await h.agent_client(aid)
    guest = await h.guest_client("u1", gid_group, "Ann")
    assert guest.login_data["agent"]["admin_id"] == aid
    push = await agent.push(32401)
    assert push["data"]["guest_info"]["gid"] == guest.login_data["gid"]
    data = await guest.ok(22300, msg="hello", client_msg_id="c1")
    assert data["message_info"]["msg"] == "hello"
    push = await agent.push(32399)
    assert push["data"]["message_info"]["id"] == data["message_info"]["id"]
    reply = await agent.ok(32300, gid=guest.login_data["gid"], msg="hi there")
    push = await guest.push(22399)
    assert push["data"]["message_info"]["msg"] == "hi there"
    hist = await guest.ok(22100)
    assert [m["msg"] for m in hist["list"]] == ["hello", "hi there"]
