"""Limits on what a client gets without a token (docs/security.md, "Tokens and sign-in"):
failed sign-ins per username and per address with exponential backoff, the bounded password
workers, and anonymous visitor tokens per address (PROTOCOL §7 /api/login, /api/visitor)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import tornado.httpclient

from cschat.auth import hash_password

WEAK_N = 2**10  # quick hashes; production hashes cost a third of a second


async def post(h, path: str, body: dict, source: str = "127.0.0.1"
               ) -> tuple[int, dict, str | None]:
    """POST from the address ``source`` (any 127.x.y.z reaches the loopback server);
    returns the status, the JSON body and the Retry-After header."""
    request = tornado.httpclient.HTTPRequest(h.url + path, method="POST", body=json.dumps(body),
                                             network_interface=source, request_timeout=20)
    response = await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
    return response.code, json.loads(response.body), response.headers.get("Retry-After")


async def sign_in(h, username: str, password: str, source: str = "127.0.0.1"):
    return await post(h, "/api/login", {"username": username, "password": password}, source)


async def agents_with_passwords(h, *usernames: str) -> int:
    """A group with one agent per username, each with the password ``"<username> pw"``."""
    group = await h.group()
    for username in usernames:
        await h.agent(group, username, username=username,
                      password_hash=hash_password(f"{username} pw", n=WEAK_N))
    return group


def throttled(reply, status: int = 429) -> int:
    """Assert a throttled sign-in (-31029, no token); return its Retry-After in seconds."""
    code, body, retry_after = reply
    assert code == status and body["code"] == -31029, reply
    assert not body["data"]
    return int(retry_after)


@pytest.mark.gen_test(timeout=20)
async def test_failed_sign_ins_of_a_username_back_off_exponentially(make_server):
    # SECURITY sign-in: after login_user_failures failures a username waits login_backoff
    # seconds, doubled by each further failure, refused with 429 before the password is
    # checked (even the right one); other usernames are not held up; a success resets it
    h = await make_server(auth={"login_user_failures": 2, "login_backoff": 1})
    await agents_with_passwords(h, "alice", "bob")
    for _ in range(2):
        assert (await sign_in(h, "alice", "wrong"))[0] == 401
    assert throttled(await sign_in(h, "alice", "alice pw")) == 1
    assert (await sign_in(h, "bob", "bob pw"))[0] == 200
    await asyncio.sleep(1.1)
    assert (await sign_in(h, "alice", "wrong"))[0] == 401
    assert throttled(await sign_in(h, "alice", "alice pw")) == 2
    await asyncio.sleep(2.1)
    assert (await sign_in(h, "alice", "alice pw"))[0] == 200
    assert (await sign_in(h, "alice", "wrong"))[0] == 401  # one failure: under the limit again
    assert (await sign_in(h, "alice", "alice pw"))[0] == 200


@pytest.mark.gen_test(timeout=20)
async def test_failed_sign_ins_from_an_address_back_off(make_server):
    # SECURITY sign-in: after login_address_failures failures from one address, every
    # username from it waits (429); other addresses do not
    h = await make_server(auth={"login_address_failures": 3, "login_backoff": 30})
    await agents_with_passwords(h, "u1", "u2", "u3", "u4")
    for username in ("u1", "u2", "u3"):
        assert (await sign_in(h, username, "wrong", "127.0.0.1"))[0] == 401
    assert throttled(await sign_in(h, "u4", "u4 pw", "127.0.0.1")) == 30
    assert (await sign_in(h, "u4", "u4 pw", "127.0.0.2"))[0] == 200


@pytest.mark.gen_test(timeout=20)
async def test_concurrent_guesses_cannot_pass_the_limit(make_server):
    # SECURITY sign-in: guesses sent at once count while in flight: no more than
    # login_user_failures of them are checked before the backoff starts
    h = await make_server(auth={"login_user_failures": 3, "login_backoff": 30})
    await agents_with_passwords(h, "alice")
    replies = await asyncio.gather(*(sign_in(h, "alice", f"guess {i}") for i in range(10)))
    assert sorted(reply[0] for reply in replies) == [401] * 3 + [429] * 7
    for reply in replies:
        if reply[0] == 429:
            throttled(reply)


@pytest.mark.gen_test(timeout=20)
async def test_password_checks_run_in_a_bounded_pool_of_their_own(make_server):
    # SECURITY sign-in: scrypt runs in password_workers threads of its own (not the loop's
    # default executor); beyond password_queue waiting sign-ins, 503 with Retry-After
    h = await make_server(auth={"password_workers": 1, "password_queue": 1})
    # Unknown usernames are checked against a decoy at the full cost (about 0.35 s each),
    # so the six sign-ins overlap.
    replies = await asyncio.gather(*(sign_in(h, f"nobody-{i}", "guess") for i in range(6)))
    statuses = sorted(reply[0] for reply in replies)
    assert statuses.count(401) >= 2 and statuses.count(503) >= 3, statuses
    assert set(statuses) == {401, 503}
    for reply in replies:
        if reply[0] == 503:
            assert throttled(reply, 503) == 1
    workers = [t.name for t in threading.enumerate() if t.name.startswith("cschat-password")]
    assert len(workers) == 1, workers


@pytest.mark.gen_test
async def test_visitor_tokens_are_limited_per_address(make_server):
    # PROTOCOL §7 /api/visitor + SECURITY: at most visitor_rate tokens per address a minute,
    # then 429 -21029 with Retry-After; other addresses are not held up
    h = await make_server(auth={"visitor_rate": 3})
    group = await h.group()
    for _ in range(3):
        code, body, _ = await post(h, "/api/visitor", {"group_id": group})
        assert code == 200 and body["data"]["token"]
    code, body, retry_after = await post(h, "/api/visitor", {"group_id": group})
    assert code == 429 and body["code"] == -21029 and not body["data"]
    assert 50 <= int(retry_after) <= 60
    code, body, _ = await post(h, "/api/visitor", {"group_id": group}, source="127.0.0.2")
    assert code == 200 and body["data"]["token"]
    assert h.db("SELECT COUNT(*) FROM guests") == [(0,)]  # tokens only: no guest until login
