"""Webhooks (docs/protocol.md §11): signed deliveries from the outbox to a real local
receiver, retries, order per conversation, and no loss across a SIGKILL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import Client, http, read_db
from test_process import ServerProcess, cli, config_and_port

ALL_EVENTS = ["conversation.created", "message.created", "conversation.assigned",
              "conversation.transferred", "conversation.ended"]
SECRET = "a-webhook-secret-of-some-length"
QUICK_RETRIES = {"first_retry": 1, "max_retry_interval": 1}


class Receiver:
    """A shop's endpoint: records every request (with the client's port, which tells its
    connections apart); answers with the statuses queued in ``answers`` (then 200) and
    the body ``answer_body``, or holds a request unanswered while ``hold`` is set. It
    closes a connection idle for ``idle_timeout`` seconds."""

    def __init__(self, idle_timeout: float | None = None) -> None:
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.answer_body = b""
        self.chunked = False
        self.hold = False
        self.arrived = asyncio.Event()
        receiver = self

        class Hook(tornado.web.RequestHandler):
            async def post(self) -> None:
                receiver.requests.append({"headers": dict(self.request.headers),
                                          "port": self.request.connection.stream.socket
                                          .getpeername()[1],
                                          "raw": self.request.body,
                                          "body": json.loads(self.request.body)})
                receiver.arrived.set()
                while receiver.hold:
                    await asyncio.sleep(0.05)
                self.set_status(receiver.answers.pop(0) if receiver.answers else 200)
                self.write(receiver.answer_body)
                if receiver.chunked:  # sent before it ends: no Content-Length
                    await self.flush()

        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/hook", Hook)]),
                                                    idle_connection_timeout=idle_timeout)
        self.server.add_sockets(sockets)
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hook"

    def delivered(self) -> list[dict]:
        """Bodies of the requests, in arrival order."""
        return [request["body"] for request in self.requests]

    async def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} arrived: " \
                f"{[b['event'] for b in self.delivered()]}"
            await asyncio.sleep(0.02)
        return self.delivered()

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def receiver(io_loop):
    made = Receiver()
    yield made
    made.hold = False
    made.close()


async def add_webhook(h_or_url, token: str, url: str, events=None) -> dict:
    base = h_or_url if isinstance(h_or_url, str) else h_or_url.url
    code, answer = await http(base, "POST", "/api/admin/webhooks",
                              {"url": url, "events": events or ALL_EVENTS, "secret": SECRET},
                              {"Authorization": f"Bearer {token}"})
    assert code == 201, answer
    return answer["data"]["webhook"]


async def webhook_server(make_server, receiver, events=None, **settings):
    """A server with a webhook to ``receiver`` and a logged-in agent (an admin):
    ``(h, group_id, admin_id, agent)``."""
    h = await make_server(webhooks=settings)
    group = await h.group()
    admin = await h.agent(group, "Alice", role="admin")
    await add_webhook(h, h.server.tokens.mint_agent(admin), receiver.url, events)
    return h, group, admin, await h.agent_client(admin)


def events_of(bodies: list[dict]) -> list[str]:
    return [body["event"] for body in bodies]


@pytest.mark.gen_test(timeout=20)
async def test_deliveries_are_signed_and_carry_the_event(make_server, receiver):
    # PROTOCOL §11: a POST of {id, event, created_at, data} with X-Cschat-Event,
    # X-Cschat-Delivery and X-Cschat-Signature (HMAC-SHA256 of the raw body); a
    # conversation starts with its first message and ends at 32700
    h, group, admin, agent = await webhook_server(make_server, receiver)
    guest = await h.guest_client("u1", group, "Ann")
    gid = guest.login_data["gid"]
    await guest.ok(22300, msg="Where is my parcel?")
    await agent.ok(32300, gid=gid, msg="On its way")
    await agent.ok(32700, gid=gid)
    bodies = await receiver.wait_for(5)
    assert events_of(bodies) == ["conversation.created", "conversation.assigned",
                                 "message.created", "message.created", "conversation.ended"]
    for request in receiver.requests:
        headers, raw = request["headers"], request["raw"]
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-Cschat-Signature"] == expected
        assert headers["X-Cschat-Event"] == request["body"]["event"]
        assert headers["Content-Type"] == "application/json"
        assert set(request["body"]) == {"id", "event", "created_at", "data"}
    conversation_id = bodies[0]["data"]["conversation_id"]
    assert bodies[0]["data"] == {"conversation_id": conversation_id, "gid": gid,
                                 "group_id": group, "uid": "u1", "name": "Ann",
                                 "admin_id": admin,
                                 "started_at": bodies[2]["data"]["message"]["created_at"]}
    assert bodies[1]["data"]["admin_id"] == admin
    assert [b["data"]["message"]["msg"] for b in bodies[2:4]] == ["Where is my parcel?",
                                                                  "On its way"]
    assert bodies[3]["data"]["message"]["sender"] == "agent"
    assert bodies[4]["data"] == {"conversation_id": conversation_id, "gid": gid,
                                 "group_id": group, "admin_id": admin, "reason": "agent",
                                 "ended_at": bodies[4]["data"]["ended_at"], "missed": False}
    # The event ids differ; every delivery is recorded as delivered.
    assert len({b["id"] for b in bodies}) == 5
    await asyncio.sleep(0.1)
    assert h.db("SELECT state, attempts, last_status FROM outbox") == [("delivered", 1, 200)] * 5


@pytest.mark.gen_test(timeout=20)
async def test_message_events_are_made_from_the_messages_and_keep_their_place(make_server,
                                                                            receiver):
    # PROTOCOL §11: a message's commit writes no outbox row; the worker makes the
    # message.created rows from the stored messages as it needs them, and an event that
    # followed the messages (32700) is still delivered after them. A message's event has
    # the same id for every webhook.
    h, group, admin, agent = await webhook_server(make_server, receiver)
    second = Receiver()
    try:
        await add_webhook(h, h.server.tokens.mint_agent(admin), second.url, ["message.created"])
        receiver.hold = True
        guest = await h.guest_client("u1", group)
        gid = guest.login_data["gid"]
        await guest.ok(22300, msg="one")
        await receiver.wait_for(1)  # conversation.created, held
        await second.wait_for(1)
        await guest.ok(22300, msg="two")
        await agent.ok(32300, gid=gid, msg="three")
        await agent.ok(32700, gid=gid)
        # While the worker waits, the later messages are rows of the messages table only.
        assert h.db("SELECT COUNT(*) FROM outbox WHERE event = 'message.created'") == [(2,)]
        assert h.db("SELECT COUNT(*) FROM outbox WHERE event = 'conversation.ended'") == [(1,)]
        # and the admin API counts them as pending (PROTOCOL §10), beside "one", whose
        # delivery is recorded with the round it went out in, still held
        code, answer = await http(h.url, "GET", "/api/admin/webhooks", None,
                                  {"Authorization": f"Bearer {h.server.tokens.mint_agent(admin)}"})
        assert code == 200
        assert answer["data"]["webhooks"][1]["pending"] == 3
        receiver.hold = False
        bodies = await receiver.wait_for(6)
        assert events_of(bodies) == ["conversation.created", "conversation.assigned"] + \
            ["message.created"] * 3 + ["conversation.ended"]
        assert [b["data"]["message"]["msg"] for b in bodies[2:5]] == ["one", "two", "three"]
        assert all(b["data"]["conversation_id"] == bodies[0]["data"]["conversation_id"]
                   and b["data"]["group_id"] == group for b in bodies)
        copies = await second.wait_for(3)
        assert [b["id"] for b in copies] == [b["id"] for b in bodies[2:5]]
        assert [b["data"] for b in copies] == [b["data"] for b in bodies[2:5]]
    finally:
        second.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_failed_delivery_is_retried_and_its_conversation_waits(make_server, receiver):
    # PROTOCOL §11: a non-2xx answer is retried after first_retry; the conversation's later
    # events wait for it, so the receiver sees them in order, each delivery with the same
    # X-Cschat-Delivery on every attempt; the admin API shows the attempts
    receiver.answers = [500]
    h, group, admin, agent = await webhook_server(make_server, receiver, ["message.created"],
                                                  **QUICK_RETRIES)
    guest = await h.guest_client("u1", group)
    for n in range(4):
        await guest.ok(22300, msg=f"m{n}")
    first = await receiver.wait_for(1)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1, "later events must wait for the failed one"
    bodies = await receiver.wait_for(5)
    assert [b["data"]["message"]["msg"] for b in bodies] == ["m0", "m0", "m1", "m2", "m3"]
    deliveries = [r["headers"]["X-Cschat-Delivery"] for r in receiver.requests]
    assert deliveries[0] == deliveries[1] and len(set(deliveries)) == 4
    assert first[0]["id"] == bodies[1]["id"]
    code, answer = await h.http("GET", "/api/admin/webhooks/1/deliveries", headers={
        "Authorization": "Bearer " + h.server.tokens.mint_agent(admin)})
    retried = answer["data"]["deliveries"][-1]
    assert (retried["state"], retried["attempts"], retried["last_status"]) == (
        "delivered", 2, 200)
    assert retried["last_error"] == "HTTP 500 Internal Server Error"


@pytest.mark.gen_test(timeout=20)
async def test_the_webhooks_list_counts_failures_and_shows_the_last_attempt(make_server,
                                                                             receiver):
    # PROTOCOL §10: a webhook's `pending` counts the events still to go, `failed` those
    # given up on, and `last_delivery` is its latest attempt
    h, group, admin, agent = await webhook_server(make_server, receiver, ["message.created"],
                                                  **QUICK_RETRIES)
    receiver.answers = [500]
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="first")
    await guest.ok(22300, msg="second")
    await receiver.wait_for(3)  # first, first again, second
    await asyncio.sleep(0.2)

    async def listed() -> dict:
        code, answer = await http(h.url, "GET", "/api/admin/webhooks", None, {
            "Authorization": f"Bearer {h.server.tokens.mint_agent(admin)}"})
        assert code == 200
        webhook, = answer["data"]["webhooks"]
        return webhook

    webhook = await listed()
    (first, _), (second, _) = h.db("SELECT id, payload FROM outbox ORDER BY id")
    assert (webhook["failed"], webhook["pending"]) == (0, 0)
    assert (webhook["last_delivery"]["id"], webhook["last_delivery"]["last_status"]) == \
        (second, 200)
    # What give_up_after (at least a day) does to an event that keeps failing:
    h.db_write("UPDATE outbox SET state = 'failed' WHERE id = ?", (first,))
    assert (await listed())["failed"] == 1


@pytest.mark.gen_test(timeout=20)
async def test_one_conversation_failing_does_not_hold_up_another(make_server, receiver):
    # PROTOCOL §11: order is kept per conversation, not across them
    receiver.answers = [503, 503, 503]
    h, group, _, _ = await webhook_server(make_server, receiver, ["message.created"],
                                          first_retry=5, max_retry_interval=5)
    first = await h.guest_client("u1", group)
    await first.ok(22300, msg="stuck")
    await receiver.wait_for(1)
    second = await h.guest_client("u2", group)
    await second.ok(22300, msg="flows")
    bodies = await receiver.wait_for(2)
    assert bodies[1]["data"]["message"]["msg"] == "flows"


@pytest.mark.gen_test(timeout=20)
async def test_deliveries_keep_their_connection_until_the_receiver_closes_it(make_server):
    # PROTOCOL §11: deliveries to a receiver reuse a kept-alive connection; one the
    # receiver closed while idle is not used again, so the next event still goes out at
    # its first attempt
    receiver = Receiver(idle_timeout=0.5)
    try:
        h, group, _, _ = await webhook_server(make_server, receiver, ["message.created"])
        guest = await h.guest_client("u1", group)
        for n in range(3):
            await guest.ok(22300, msg=f"m{n}")
        await receiver.wait_for(3)
        assert len({request["port"] for request in receiver.requests}) == 1
        await asyncio.sleep(1.0)  # the receiver closes the idle connection
        await guest.ok(22300, msg="m3")
        await receiver.wait_for(4)
        assert receiver.requests[3]["port"] != receiver.requests[0]["port"]
        await asyncio.sleep(0.1)
        assert h.db("SELECT state, attempts FROM outbox") == [("delivered", 1)] * 4
    finally:
        receiver.close()


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_long_or_unsized_answer_is_not_read_and_its_connection_not_reused(
        make_server, receiver, chunked):
    # PROTOCOL §11: only the status of the answer counts; a body longer than 64 KiB, or of
    # no stated length, is left unread and its connection closed
    receiver.answer_body, receiver.chunked = b"x" * (200 * 1024), chunked
    h, group, _, _ = await webhook_server(make_server, receiver, ["message.created"])
    guest = await h.guest_client("u1", group)
    for n in range(2):
        await guest.ok(22300, msg=f"m{n}")
    await receiver.wait_for(2)
    assert receiver.requests[0]["port"] != receiver.requests[1]["port"]
    await asyncio.sleep(0.1)
    assert h.db("SELECT state, attempts FROM outbox") == [("delivered", 1)] * 2


@pytest.mark.gen_test(timeout=20)
async def test_transfer_and_release_events(make_server, receiver):
    # PROTOCOL §11: conversation.transferred names both agents; a conversation released
    # because its guest left ends with reason "released", and is missed when nobody answered
    h, group, admin, agent = await webhook_server(
        make_server, receiver, ["conversation.transferred", "conversation.ended"])
    h.server.settings.chat["release_after"] = 1
    bob = await h.agent(group, "Bob")
    bob_console = await h.agent_client(bob)
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="hello?")
    gid = guest.login_data["gid"]
    await agent.ok(32400, gid=gid, aix=bob)
    guest.close()
    bodies = await receiver.wait_for(2)
    assert bodies[0]["data"]["from_admin_id"] == admin
    assert bodies[0]["data"]["to_admin_id"] == bob
    assert (bodies[1]["data"]["reason"], bodies[1]["data"]["missed"]) == ("released", True)
    bob_console.close()


@pytest.mark.gen_test
async def test_no_webhook_means_no_outbox_rows(make_server):
    # PROTOCOL §11: events are written only for webhooks that want them
    h = await make_server()
    group, = [await h.group()]
    await h.agent(group)
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="hi")
    assert h.db("SELECT COUNT(*) FROM outbox") == [(0,)]
    assert h.db("SELECT guest_messages FROM conversations") == [(1,)]


@pytest.mark.gen_test(timeout=20)
async def test_events_follow_webhooks_added_and_deleted_while_running(make_server, receiver):
    # PROTOCOL §11: a webhook gets the events that happen after it was added, and none
    # after it was deleted (the server keeps which events are wanted in memory)
    h = await make_server()
    group = await h.group()
    admin = await h.agent(group, "Alice", role="admin")
    token = h.server.tokens.mint_agent(admin)
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="before any webhook")
    webhook = await add_webhook(h, token, receiver.url, ["message.created"])
    await guest.ok(22300, msg="while it is there")
    assert [body["data"]["message"]["msg"] for body in await receiver.wait_for(1)] == \
        ["while it is there"]
    code, _ = await http(h.url, "DELETE", f"/api/admin/webhooks/{webhook['id']}", None,
                         {"Authorization": f"Bearer {token}"})
    assert code == 200
    await guest.ok(22300, msg="after it was deleted")
    assert h.db("SELECT payload FROM outbox") == []
    assert h.db("SELECT COUNT(*) FROM messages WHERE sender = 'guest'") == [(3,)]


@pytest.mark.gen_test(timeout=40)
async def test_an_unconfirmed_delivery_is_sent_again_after_sigkill(tmp_path, receiver):
    # PROTOCOL §11: at least once: a delivery under way when the process is killed was never
    # confirmed, so the restarted server sends it again (same X-Cschat-Delivery); nothing
    # written to the outbox is lost, and messages not yet taken from the messages table
    # are taken after the restart
    config, port = config_and_port(tmp_path, {"webhooks": QUICK_RETRIES})
    group = await cli(config, "group", "add", "Shop")
    admin = await cli(config, "agent", "add", "--group", group, "--name", "Olivia",
                      "--role", "admin")
    token = await cli(config, "token", "agent", admin)
    guest_token = await cli(config, "token", "guest", "u1", "--group", group)
    server = ServerProcess(tmp_path, config, port)
    try:
        await server.start()
        await add_webhook(server.url, token, receiver.url, ["message.created"])
        receiver.hold = True
        guest = await Client.login(port, 1, guest_token)
        for n in range(3):
            await guest.ok(22300, msg=f"m{n}")
        await receiver.wait_for(1)
        server.kill()
        receiver.hold = False
        taken = read_db(tmp_path, "SELECT state FROM outbox")
        assert taken and set(taken) == {("pending",)}
        assert read_db(tmp_path, "SELECT COUNT(*) FROM messages WHERE id > "
                       "(SELECT message_cursor FROM webhooks)") == [(3 - len(taken),)]
        await server.start()
        bodies = await receiver.wait_for(4)
        assert [b["data"]["message"]["msg"] for b in bodies] == ["m0", "m0", "m1", "m2"]
        deliveries = [r["headers"]["X-Cschat-Delivery"] for r in receiver.requests]
        assert deliveries[0] == deliveries[1]
        await asyncio.sleep(0.2)
        assert read_db(tmp_path, "SELECT state FROM outbox") == [("delivered",)] * 3
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=20)
async def test_left_message_and_rating_events(make_server, receiver):
    # PROTOCOL §11: visitor.left_message (the away form) and conversation.rated
    h, group, admin, agent = await webhook_server(
        make_server, receiver, ["visitor.left_message", "conversation.rated"])
    guest = await h.guest_client("u1", group)
    await guest.ok(22900, name="Ann", email="ann@example.org", msg="call me back")
    await guest.ok(22950, rating=2, comment="slow")
    left, rated = await receiver.wait_for(2)
    assert (left["event"], left["data"]["email"], left["data"]["msg"]) == (
        "visitor.left_message", "ann@example.org", "call me back")
    assert (rated["event"], rated["data"]["rating"], rated["data"]["comment"]) == (
        "conversation.rated", 2, "slow")
    assert rated["data"]["conversation_id"] == left["data"]["conversation_id"]
