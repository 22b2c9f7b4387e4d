"""A console written from the original API sheet works unchanged (docs/protocol.md,
"Coming from the sheet").

:class:`SheetClient` does what such a console does: it sends the sheet's literal frames
(no ``call_type`` after login, no ``seq``) and takes the first frame with a request's
``api_key`` as its answer.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import TIMEOUT


class SheetClient:
    """One WebSocket, frames as the sheet writes them, answers paired by api_key."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection):
        self.connection = connection
        self.pushes: list[dict] = []

    @classmethod
    async def connect(cls, port: int, path: str = "/") -> SheetClient:
        return cls(await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}{path}"))

    async def request(self, api_key: int, **params) -> dict:
        """Send ``{"api_key", **params}`` and return the first frame with that api_key."""
        self.connection.write_message(json.dumps({"api_key": api_key, **params}))
        while True:
            text = await asyncio.wait_for(self.connection.read_message(), TIMEOUT)
            assert text is not None, "closed"
            frame = json.loads(text)
            if frame["api_key"] == api_key:
                return frame
            self.pushes.append(frame)

    async def ok(self, api_key: int, **params) -> dict:
        frame = await self.request(api_key, **params)
        assert frame["code"] == 200, frame
        return frame["data"]

    async def push(self, code: int) -> dict:
        for index, frame in enumerate(self.pushes):
            if frame["code"] == code:
                return self.pushes.pop(index)["data"]
        while True:
            frame = json.loads(await asyncio.wait_for(self.connection.read_message(), TIMEOUT))
            if frame["code"] == code:
                return frame["data"]
            self.pushes.append(frame)


async def sheet_agent(h, admin_id: int, path: str = "/") -> SheetClient:
    client = await SheetClient.connect(h.port, path)
    await client.ok(31000, call_type=3, token=h.server.tokens.mint_agent(admin_id))
    return client


@pytest.mark.gen_test(timeout=30)
async def test_a_sheet_console_does_its_whole_job(make_server):
    # PROTOCOL R3 (call_type may be left out), R4 (answers before the pushes they cause),
    # 32000 block, 32100 gid/group_id, 32400 by ix and by admin_id with data and 32401 gid,
    # R26 cards with the shop's fields, text numbers, 32500, 33000 ix: all code 200.
    h = await make_server()
    group = await h.group()
    a, b = await h.agent(group, "A"), await h.agent(group, "B")
    ca = await sheet_agent(h, a)
    cb = await sheet_agent(h, b, "/ws")
    guest = await h.guest_client("shopper", group)
    gid = guest.login_data["gid"]
    await guest.ok(22300, msg="hello")
    mine, theirs, me, other = (ca, cb, a, b) if guest.login_data["agent"]["aix"] == a \
        else (cb, ca, b, a)

    listing = await mine.ok(32000)
    assert set(listing) >= {"ix", "admin_list", "guest_list", "is_refresh", "refresh_token"}
    assert listing["is_refresh"] == 0 and listing["refresh_token"] == ""
    assert len(listing["ix"]) == 20 and [g["gid"] for g in listing["guest_list"]] == [gid]
    history = await mine.ok(32100, gid=gid, group_id=group)
    assert history["gid"] == gid and history["group_id"] == group
    assert [m["msg"] for m in history["list"]] == ["hello"]
    assert await mine.ok(32200, gid=gid, group_id=group) == {"group_id": group, "gid": gid}

    text = await mine.ok(32300, gid=gid, msg=2024)
    assert text["message_info"]["msg"] == "2024"
    card = {"id": "p1", "title": "Shoe", "price": 59.9, "sku": "S-1", "in_stock": True}
    sent = await mine.ok(32300, gid=gid, file_type=3, msg=card)
    assert sent["message_info"]["msg"] == card
    order = await mine.ok(32300, gid=gid, file_type=4,
                          msg=json.dumps({"order_no": "A-1", "amount": 3, "paid": False}))
    assert order["message_info"]["msg"] == {"order_no": "A-1", "amount": 3, "paid": False}

    online = {x["aix"]: x for x in (await mine.ok(33000))["admin_list"]}
    assert len(online[other]["ix"]) == 20

    # By the colleague's connection id: the answer comes before 32402, which shares its api_key.
    moved = await mine.ok(32400, gid=gid, aix=online[other]["ix"])
    assert moved["aix"] == other and moved["data"]["sender"] == "system"
    assert moved["data"]["event"] == {"event": "transfer", "from": me, "from_name": "A" if me == a
                                      else "B", "to": other, "to_name": "B" if me == a else "A"}
    assert (await mine.push(32402)) == {"gid": gid, "aix": other}
    assigned = await theirs.push(32401)
    assert assigned["gid"] == gid and assigned["from_aix"] == me

    # Suspended agents still receive a colleague's transfer (挂起: no new guests only).
    assert await mine.ok(32500, status=1) == {"status": 1}
    back = await theirs.ok(32400, gid=gid, aix=me)
    assert back["aix"] == me and back["data"]["event"]["event"] == "transfer"
    assert (await mine.push(32401))["gid"] == gid
    assert await mine.ok(32500, status=0) == {"status": 0}
    ended = await mine.ok(32700, gid=gid)
    assert ended == {"gid": gid}
    last = (await guest.ok(22100))["list"][-1]
    assert last["sender"] == "system" and last["event"]["event"] == "end"


@pytest.mark.gen_test
async def test_root_path_takes_websockets_and_redirects_browsers(cschat_server):
    # PROTOCOL §1, §7: a WebSocket upgrade on / is served like /ws; a plain GET of /
    # still redirects to the console.
    h = cschat_server
    group = await h.group()
    agent = await sheet_agent(h, await h.agent(group))
    assert (await agent.request(0, call_type=0))["code"] == 200
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        h.url + "/", follow_redirects=False, raise_error=False)
    assert response.code in (301, 302) and response.headers["Location"] == "/console/"


@pytest.mark.gen_test
async def test_an_explicit_wrong_call_type_is_still_refused(cschat_server):
    # PROTOCOL R3, R8: leaving call_type out is fine; a wrong one is -10003; logins still
    # need theirs.
    h = cschat_server
    group = await h.group()
    admin_id = await h.agent(group)
    client = await SheetClient.connect(h.port)
    token = h.server.tokens.mint_agent(admin_id)
    assert (await client.request(31000, token=token))["code"] == -10003
    await client.ok(31000, call_type=3, token=token)
    assert (await client.request(32000, call_type=1))["code"] == -10003
    await client.ok(32000)
