"""PROTOCOL §2 (R10–R13) tokens and identity, the logins 31000 / 21000, and the HTTP
endpoints /api/login, /api/visitor and /healthz of §7."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import jwt
import pytest
from conftest import AGENT_INFO_KEYS, GUEST_INFO_KEYS, Client, assert_error, cschat_ok

from cschat.auth import SCRYPT_N, check_password, hash_password

# Hashes made with this cost take a millisecond instead of a third of a second;
# a successful sign-in upgrades them to the production cost (SECURITY tokens and sign-in).
WEAK_N = 2**10

SECRET = "test-secret-for-auth-tests-" + "0123456789abcdef" * 3
OTHER_SECRET = "another-secret-that-is-not-the-configured-one"


def sign(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    """A token as a shop backend sharing the secret would mint it (R11)."""
    return jwt.encode(claims, key, algorithm=algorithm)


def unsigned(claims: dict) -> str:
    """A token with ``alg: none`` and no signature."""
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def agent_claims(admin_id, ttl: int = 3600, issued_ago: int = 0, **extra) -> dict:
    """Claims of a token issued ``issued_ago`` seconds ago with ``ttl`` seconds left."""
    now = int(time.time())
    return {"typ": "agent", "admin_id": admin_id, "iat": now - issued_ago, "exp": now + ttl,
            **extra}


def guest_claims(uid, group_id, ttl: int = 3600, issued_ago: int = 0, **extra) -> dict:
    now = int(time.time())
    return {"typ": "guest", "uid": uid, "group_id": group_id, "iat": now - issued_ago,
            "exp": now + ttl, **extra}


def claims_of(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"])


def without(claims: dict, key: str) -> dict:
    return {k: v for k, v in claims.items() if k != key}


async def secret_server(make_server, **auth):
    return await make_server(auth={"secret": SECRET, **auth})


async def secret_server_and_agent(make_server, **auth):
    """A server signing with SECRET, a group and one agent of it: ``(h, group, aid)``."""
    h = await secret_server(make_server, **auth)
    group = await h.group()
    return h, group, await h.agent(group)


async def taken_in(h) -> None:
    """Wait until the server has taken in a change to groups and agents made behind its
    back (by the CLI, or the store directly): it polls every second (README)."""
    for _ in range(150):
        if h.server.chat.directory.version == await h.server.store.directory_version():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server did not take in the directory change")


async def login(h, api_key: int, **params) -> dict:
    """One login on a fresh connection; returns the response frame."""
    client = await Client.connect(h.port, 3 if api_key == 31000 else 1)
    reply = await client.call(api_key, **params)
    client.close()
    return reply


# -- R10: tokens that must not log in --------------------------------------------------------


def bad_agent_tokens(admin_id: int, group_id: int) -> dict[str, object]:
    now = int(time.time())
    return {
        "bad signature": sign(agent_claims(admin_id), OTHER_SECRET),
        "alg none": unsigned(agent_claims(admin_id)),
        "HS512 with the right secret": sign(agent_claims(admin_id), SECRET, "HS512"),
        "HS384 with the right secret": sign(agent_claims(admin_id), SECRET, "HS384"),
        "expired": sign({**agent_claims(admin_id), "iat": now - 7200, "exp": now - 60}),
        "no exp": sign(without(agent_claims(admin_id), "exp")),
        "exp not a number": sign({**agent_claims(admin_id), "exp": "tomorrow"}),
        "guest token": sign(guest_claims("u1", group_id)),
        "no typ": sign(without(agent_claims(admin_id), "typ")),
        "garbage": "not-a-token",
        "empty": "",
        "number": 12345,
        "admin_id as string": sign(agent_claims(str(admin_id))),
        "admin_id missing": sign(without(agent_claims(admin_id), "admin_id")),
        "tampered payload": _tamper(sign(agent_claims(admin_id)), {"admin_id": admin_id + 1}),
    }


def bad_guest_tokens(admin_id: int, group_id: int) -> dict[str, object]:
    now = int(time.time())
    return {
        "bad signature": sign(guest_claims("u1", group_id), OTHER_SECRET),
        "alg none": unsigned(guest_claims("u1", group_id)),
        "HS512 with the right secret": sign(guest_claims("u1", group_id), SECRET, "HS512"),
        "expired": sign({**guest_claims("u1", group_id), "iat": now - 7200, "exp": now - 60}),
        "no exp": sign(without(guest_claims("u1", group_id), "exp")),
        "agent token": sign(agent_claims(admin_id)),
        "no typ": sign(without(guest_claims("u1", group_id), "typ")),
        "garbage": "a.b.c",
        "empty": "",
        "number": 12345,
        "group_id as string": sign(guest_claims("u1", str(group_id))),
        "uid as number": sign(guest_claims(42, group_id)),
        "uid too long": sign(guest_claims("u" * 65, group_id)),
        "uid empty": sign(guest_claims("", group_id)),
        "uid missing": sign(without(guest_claims("u1", group_id), "uid")),
    }


def _tamper(token: str, changes: dict) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


async def assert_tokens_refused(h, api_key: int, tokens: dict[str, object], code: int) -> None:
    """Each of ``tokens``, and no token at all, gets the login error ``code``."""
    for name, token in tokens.items():
        reply = await login(h, api_key, token=token)
        assert reply["code"] == code, (name, reply)
        assert_error(reply, code)
    assert_error(await login(h, api_key), code)  # token missing
    assert_error(await login(h, api_key, token=None), code)


@pytest.mark.gen_test(timeout=15)
async def test_bad_agent_tokens_get_31001(make_server):
    # PROTOCOL R10 31000 -31001
    h, group, aid = await secret_server_and_agent(make_server)
    await assert_tokens_refused(h, 31000, bad_agent_tokens(aid, group), -31001)
    # the well-formed token of the same agent works
    assert (await login(h, 31000, token=sign(agent_claims(aid))))["code"] == 200


@pytest.mark.gen_test(timeout=15)
async def test_bad_guest_tokens_get_21001(make_server):
    # PROTOCOL R10 21000 -21001
    h, group, aid = await secret_server_and_agent(make_server)
    await assert_tokens_refused(h, 21000, bad_guest_tokens(aid, group), -21001)
    assert h.db("SELECT COUNT(*) FROM guests")[0][0] == 0  # no guest made from a bad token
    assert (await login(h, 21000, token=sign(guest_claims("u1", group))))["code"] == 200


@pytest.mark.gen_test
async def test_failed_login_connection_stays_usable(make_server):
    # PROTOCOL R10 R7: a failed login keeps the connection; a good login on it then works
    h, group, aid = await secret_server_and_agent(make_server)
    client = await Client.connect(h.port, 3)
    assert (await client.call(31000, token=sign(agent_claims(aid), OTHER_SECRET)))["code"] \
        == -31001
    data = await client.ok(31000, token=sign(agent_claims(aid)))
    assert data["admin_list"][0]["admin_id"] == aid


@pytest.mark.gen_test
async def test_shop_minted_tokens_log_in(make_server):
    # PROTOCOL R10 R11: tokens signed by a shop backend with the shared secret
    h = await secret_server(make_server)
    group = await h.group()
    aid = await h.agent(group, "Alice")
    agent = await h.agent_client(aid, token=sign(agent_claims(aid)))
    assert agent.login_data["admin_list"][0]["admin_id"] == aid
    token = sign(guest_claims("shop-user-7", group, name="Ann",
                              avatar="https://shop.example/a.png"))
    guest = await h.guest_client("ignored", group, token=token)
    assert guest.login_data["group_id"] == group
    assert h.db("SELECT uid, name, avatar FROM guests") == [
        ("shop-user-7", "Ann", "https://shop.example/a.png")]


@pytest.mark.gen_test
async def test_uid_of_64_chars_is_accepted(make_server):
    # PROTOCOL R10: uid is a string of at most 64 characters
    h = await secret_server(make_server)
    group = await h.group()
    reply = await login(h, 21000, token=sign(guest_claims("u" * 64, group)))
    assert reply["code"] == 200, reply


@pytest.mark.gen_test
async def test_generated_secret_is_kept_in_database(cschat_server):
    # PROTOCOL R10: with no [auth] secret, a random 32-byte secret is kept in the database
    h = cschat_server
    rows = h.db("SELECT value FROM meta WHERE key = 'secret'")
    assert len(rows) == 1
    stored = rows[0][0]
    assert len(stored) >= 32
    group = await h.group()
    aid = await h.agent(group)
    # a token signed with the stored value is accepted by the server
    agent = await h.agent_client(aid, token=sign(agent_claims(aid), stored))
    assert agent.login_data["admin_list"][0]["aix"] == aid
    guest = await h.guest_client("x", group, token=sign(guest_claims("u-db", group), stored))
    assert guest.login_data["gid"] > 0


@pytest.mark.gen_test(timeout=20)
async def test_generated_secret_survives_restart(make_server):
    # PROTOCOL R10: tokens survive restarts when the secret is generated
    first = await make_server()
    group = await first.group()
    aid = await first.agent(group)
    agent_token = first.server.tokens.mint_agent(aid)
    guest_token = first.server.tokens.mint_guest("u-restart", group)
    await first.server.stop()
    second = await make_server(database={"path": first.db_path})
    assert (await login(second, 31000, token=agent_token))["code"] == 200
    reply = await login(second, 21000, token=guest_token)
    assert reply["code"] == 200, reply
    assert len(second.db("SELECT value FROM meta WHERE key = 'secret'")) == 1


@pytest.mark.gen_test
async def test_configured_secret_is_used(make_server):
    # PROTOCOL R10: tokens are signed with [auth] secret
    h, group, aid = await secret_server_and_agent(make_server)
    token = h.server.tokens.mint_agent(aid)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["typ"] == "agent" and claims["admin_id"] == aid
    assert claims["exp"] > time.time()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


# -- 31000 / 21000 refusals of valid tokens --------------------------------------------------


@pytest.mark.gen_test
async def test_agent_login_unknown_disabled_and_group_disabled(make_server):
    # PROTOCOL 31000 -31002 -31003 -31004
    h = await secret_server(make_server)
    group = await h.group("A")
    other_group = await h.group("B")
    aid = await h.agent(group, "Alice")
    bob = await h.agent(other_group, "Bob")
    assert_error(await login(h, 31000, token=sign(agent_claims(aid + bob + 100))), -31002)
    await h.server.store.set_agent_enabled(aid, False)
    await taken_in(h)
    assert_error(await login(h, 31000, token=sign(agent_claims(aid))), -31003)
    await h.server.store.set_agent_enabled(aid, True)
    assert (await login(h, 31000, token=sign(agent_claims(aid))))["code"] == 200
    await h.server.store.set_group_enabled(other_group, False)
    await taken_in(h)
    assert_error(await login(h, 31000, token=sign(agent_claims(bob))), -31004)
    await h.server.store.set_group_enabled(other_group, True)
    assert (await login(h, 31000, token=sign(agent_claims(bob))))["code"] == 200


@pytest.mark.gen_test
async def test_guest_login_disabled_or_missing_group(make_server):
    # PROTOCOL 21000 -21004
    h = await secret_server(make_server)
    group = await h.group()
    assert_error(await login(h, 21000, token=sign(guest_claims("u", group + 50))), -21004)
    await h.server.store.set_group_enabled(group, False)
    await taken_in(h)
    assert_error(await login(h, 21000, token=sign(guest_claims("u", group))), -21004)
    assert h.db("SELECT COUNT(*) FROM guests")[0][0] == 0
    await h.server.store.set_group_enabled(group, True)
    assert (await login(h, 21000, token=sign(guest_claims("u", group))))["code"] == 200


# -- R12: refresh ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_agent_token_refresh(make_server):
    # PROTOCOL R12: less than refresh_window left → is_refresh 1 and a working refresh_token
    # token_ttl 3600: refresh_window defaults to 1800
    h, group, aid = await secret_server_and_agent(make_server, token_ttl=3600)
    old = agent_claims(aid, ttl=600, issued_ago=3000)
    data = (await h.agent_client(aid, token=sign(old))).login_data
    assert data["is_refresh"] == 1
    new_token = data["refresh_token"]
    assert isinstance(new_token, str) and new_token
    new = jwt.decode(new_token, SECRET, algorithms=["HS256"])
    assert new["typ"] == "agent" and new["admin_id"] == aid
    assert new["exp"] > old["exp"]
    assert abs(new["exp"] - (time.time() + 3600)) < 60
    again = (await h.agent_client(aid, token=new_token)).login_data
    assert again["is_refresh"] == 0 and again["refresh_token"] == ""


@pytest.mark.gen_test
async def test_fresh_agent_token_is_not_refreshed(make_server):
    # PROTOCOL R12
    h, group, aid = await secret_server_and_agent(make_server, token_ttl=3600)
    data = (await h.agent_client(aid, token=sign(agent_claims(aid, ttl=3000)))).login_data
    assert data["is_refresh"] == 0
    assert data["refresh_token"] == ""


@pytest.mark.gen_test
async def test_guest_token_refresh_keeps_claims(make_server):
    # PROTOCOL R12 for 21000: same claims, fresh exp
    h = await secret_server(make_server, token_ttl=3600)
    group = await h.group()
    old = guest_claims("shop-9", group, ttl=120, issued_ago=3480, name="Ann",
                       avatar="https://shop.example/ann.png")
    first = (await h.guest_client("x", group, token=sign(old))).login_data
    assert first["is_refresh"] == 1
    new = jwt.decode(first["refresh_token"], SECRET, algorithms=["HS256"])
    for key in ("typ", "uid", "group_id", "name", "avatar"):
        assert new[key] == old[key], key
    assert new["exp"] > old["exp"]
    second = (await h.guest_client("x", group, token=first["refresh_token"])).login_data
    assert second["gid"] == first["gid"]
    assert second["is_refresh"] == 0 and second["refresh_token"] == ""
    fresh = (await h.guest_client("x", group, token=sign(guest_claims("shop-9", group,
                                                                      ttl=3500)))).login_data
    assert fresh["is_refresh"] == 0 and fresh["refresh_token"] == ""


@pytest.mark.gen_test
async def test_refresh_window_setting(make_server):
    # PROTOCOL R12: refresh_window is configurable
    h, group, aid = await secret_server_and_agent(make_server, token_ttl=3600, refresh_window=100)
    first = await h.agent_client(aid, token=sign(agent_claims(aid, ttl=600, issued_ago=3000)))
    assert first.login_data["is_refresh"] == 0 and first.login_data["refresh_token"] == ""
    second = await h.agent_client(aid, token=sign(agent_claims(aid, ttl=50, issued_ago=3000)))
    assert second.login_data["is_refresh"] == 1 and second.login_data["refresh_token"]
    guest = await h.guest_client("g", group, token=sign(guest_claims("g", group, ttl=50,
                                                                     issued_ago=3000)))
    assert guest.login_data["is_refresh"] == 1 and guest.login_data["refresh_token"]


# -- R13: guest identity ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_guest_created_once_per_group_and_uid(make_server):
    # PROTOCOL R13
    h = await secret_server(make_server)
    group = await h.group("A")
    other_group = await h.group("B")
    first = (await h.guest_client("x", group, token=sign(guest_claims("alice", group))))
    gid = first.login_data["gid"]
    assert isinstance(gid, int) and gid > 0
    assert h.db("SELECT gid, group_id, uid FROM guests") == [(gid, group, "alice")]
    first.close()
    again = await h.guest_client("x", group, token=sign(guest_claims("alice", group)))
    assert again.login_data["gid"] == gid
    tab = await h.guest_client("x", group, token=sign(guest_claims("alice", group)))
    assert tab.login_data["gid"] == gid
    assert h.db("SELECT COUNT(*) FROM guests")[0][0] == 1
    elsewhere = await h.guest_client("x", other_group,
                                     token=sign(guest_claims("alice", other_group)))
    assert elsewhere.login_data["gid"] != gid
    assert elsewhere.login_data["group_id"] == other_group
    bob = await h.guest_client("x", group, token=sign(guest_claims("bob", group)))
    assert bob.login_data["gid"] not in (gid, elsewhere.login_data["gid"])
    assert sorted(h.db("SELECT group_id, uid FROM guests")) == sorted(
        [(group, "alice"), (other_group, "alice"), (group, "bob")])


# -- login response data ---------------------------------------------------------------------

@pytest.mark.gen_test
async def test_agent_login_data(cschat_server):
    # PROTOCOL 31000 data: ix, admin_list, guest_list, is_refresh, refresh_token
    h = cschat_server
    group = await h.group("A")
    other_group = await h.group("B")
    alice = await h.agent(group, "Alice")
    bob = await h.agent(group, "Bob")
    await h.agent(other_group, "Olga")
    tab1 = await h.agent_client(alice)
    data = tab1.login_data
    assert {"ix", "admin_list", "guest_list", "is_refresh", "refresh_token"} <= set(data)
    assert re.fullmatch(r"[0-9a-f]{20}", data["ix"])
    assert data["is_refresh"] == 0 and data["refresh_token"] == ""
    assert data["guest_list"] == []
    by_id = {a["admin_id"]: a for a in data["admin_list"]}
    assert set(by_id) == {alice, bob}  # every agent of my group, online or not; no other group
    for info in data["admin_list"]:
        assert AGENT_INFO_KEYS <= set(info)
        assert info["aix"] == info["admin_id"]
        assert info["group_id"] == group
        assert info["load"] == 0
    assert by_id[alice]["name"] == "Alice" and by_id[alice]["status"] == "online"
    assert by_id[bob]["name"] == "Bob" and by_id[bob]["status"] == "offline"
    guest = await h.guest_client("g1", group, "Gina")
    await tab1.push(32401)
    await guest.ok(22300, msg="hello")  # a conversation the guest wrote in counts in load
    await tab1.push(32399)
    tab2 = await h.agent_client(alice)
    data2 = tab2.login_data
    assert re.fullmatch(r"[0-9a-f]{20}", data2["ix"])
    assert data2["ix"] != data["ix"]
    assert [g["gid"] for g in data2["guest_list"]] == [guest.login_data["gid"]]
    info = data2["guest_list"][0]
    assert GUEST_INFO_KEYS <= set(info)
    assert info["group_id"] == group and info["aix"] == alice and info["online"] is True
    assert info["name"] == "Gina"
    me = {a["admin_id"]: a for a in data2["admin_list"]}[alice]
    assert me["load"] == 1


@pytest.mark.gen_test
async def test_guest_login_data(cschat_server):
    # PROTOCOL 21000 data: ix, gid, group_id, agent, unread, is_refresh, refresh_token
    h = cschat_server
    group = await h.group()
    nobody = await h.guest_client("lonely", group)
    data = nobody.login_data
    assert {"ix", "gid", "group_id", "agent", "unread", "is_refresh", "refresh_token"} \
        <= set(data)
    assert re.fullmatch(r"[0-9a-f]{20}", data["ix"])
    assert data["group_id"] == group
    assert data["agent"] is None
    assert data["unread"] == 0
    assert data["is_refresh"] == 0 and data["refresh_token"] == ""
    aid = await h.agent(group, "Alice")
    agent = await h.agent_client(aid)
    guest = await h.guest_client("u1", group)
    assert guest.login_data["ix"] != data["ix"]
    info = guest.login_data["agent"]
    assert AGENT_INFO_KEYS <= set(info)
    assert info["admin_id"] == aid and info["aix"] == aid and info["name"] == "Alice"
    await agent.ok(32300, gid=guest.login_data["gid"], msg="one")
    await agent.ok(32300, gid=guest.login_data["gid"], msg="two")
    guest.close()
    await guest.closed()
    back = await h.guest_client("u1", group)
    assert back.login_data["gid"] == guest.login_data["gid"]
    assert back.login_data["unread"] == 2


# -- POST /api/login -------------------------------------------------------------------------


async def agent_with_password(h, group, username="alice", password="s3cret pw"):
    return await h.agent(group, "Alice", username=username,
                         password_hash=hash_password(password, n=WEAK_N))


async def sign_in(h, username="alice", password="s3cret pw") -> tuple[int, dict]:
    return await h.http("POST", "/api/login", {"username": username, "password": password})


@pytest.mark.gen_test
async def test_http_login_success(cschat_server):
    # PROTOCOL §7 /api/login, R11
    h = cschat_server
    group = await h.group()
    aid = await agent_with_password(h, group)
    status, body = await h.http("POST", "/api/login", {"username": "alice",
                                                        "password": "s3cret pw"})
    assert status == 200, body
    assert body["code"] == 200
    assert body["data"]["admin_id"] == aid
    agent = await h.agent_client(aid, token=body["data"]["token"])
    assert agent.login_data["admin_list"][0]["admin_id"] == aid


@pytest.mark.gen_test
async def test_http_login_wrong_credentials_look_the_same(cschat_server):
    # PROTOCOL §7 /api/login: 401 -31002, same answer whether the username exists or not
    h = cschat_server
    group = await h.group()
    await agent_with_password(h, group)
    wrong_password = await h.http("POST", "/api/login", {"username": "alice",
                                                          "password": "nope"})
    unknown_user = await h.http("POST", "/api/login", {"username": "mallory",
                                                        "password": "nope"})
    empty_password = await h.http("POST", "/api/login", {"username": "alice", "password": ""})
    assert wrong_password[0] == 401 and wrong_password[1]["code"] == -31002
    assert unknown_user == wrong_password
    assert empty_password == wrong_password
    assert "token" not in json.dumps(wrong_password[1]["data"])


@pytest.mark.gen_test
async def test_http_login_agent_without_password_cannot_log_in(cschat_server):
    # PROTOCOL §7 /api/login: an agent with no password set cannot sign in by password
    h = cschat_server
    group = await h.group()
    await h.agent(group, "NoPw", username="nopw")
    status, body = await h.http("POST", "/api/login", {"username": "nopw", "password": ""})
    assert status == 401 and body["code"] == -31002


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [{}, {"username": "alice"}, {"password": "s3cret pw"},
                                  {"username": 5, "password": "s3cret pw"},
                                  {"username": "alice", "password": None},
                                  "not json", "[1, 2]"])
async def test_http_login_bad_body_is_400(cschat_server, body):
    # PROTOCOL §7 /api/login: missing fields or a body that is not a JSON object
    h = cschat_server
    group = await h.group()
    await agent_with_password(h, group)
    status, reply = await h.http("POST", "/api/login", body)
    assert status == 400, reply
    assert reply["code"] < 0
    assert not reply.get("data")


@pytest.mark.gen_test
async def test_http_login_disabled_account_answers_as_a_wrong_password(cschat_server):
    # PROTOCOL §7 /api/login: a disabled agent or group gets 401 -31002 for the right password
    # as for a wrong one, so the answer never confirms a disabled account's password
    h = cschat_server
    group = await h.group()
    aid = await agent_with_password(h, group)
    await h.server.store.set_agent_enabled(aid, False)
    wrong = await sign_in(h, password="not it")
    assert wrong[0] == 401 and wrong[1]["code"] == -31002
    assert await sign_in(h) == wrong
    await h.server.store.set_agent_enabled(aid, True)
    await h.server.store.set_group_enabled(group, False)
    assert await sign_in(h, password="not it") == wrong
    assert await sign_in(h) == wrong
    await h.server.store.set_group_enabled(group, True)
    status, body = await sign_in(h)
    assert status == 200 and body["data"]["admin_id"] == aid


# -- POST /api/visitor -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_http_visitor_token_logs_in_as_new_guest(cschat_server):
    # PROTOCOL §7 /api/visitor, R11 R13
    h = cschat_server
    group = await h.group()
    status, body = await h.http("POST", "/api/visitor", {"group_id": group})
    assert status == 200, body
    assert body["code"] == 200
    token = body["data"]["token"]
    guest = await h.guest_client("ignored", group, token=token)
    assert guest.login_data["group_id"] == group
    status, body2 = await h.http("POST", "/api/visitor", {"group_id": group})
    assert status == 200
    other = await h.guest_client("ignored", group, token=body2["data"]["token"])
    assert other.login_data["gid"] != guest.login_data["gid"]
    rows = h.db("SELECT gid, group_id, uid FROM guests ORDER BY gid")
    assert len(rows) == 2
    assert {r[0] for r in rows} == {guest.login_data["gid"], other.login_data["gid"]}
    assert all(r[1] == group and r[2] for r in rows)
    assert rows[0][2] != rows[1][2]
    # the visitor token is a guest token: it does not log in as an agent
    reply = await login(h, 31000, token=token)
    assert reply["code"] == -31001


@pytest.mark.gen_test
async def test_http_visitor_off(make_server):
    # PROTOCOL §7 /api/visitor: 403 when allow_anonymous is off
    h = await make_server(auth={"allow_anonymous": "false"})
    group = await h.group()
    status, body = await h.http("POST", "/api/visitor", {"group_id": group})
    assert status == 403
    assert body["code"] != 200 and not body.get("data", {}).get("token")


@pytest.mark.gen_test
async def test_http_visitor_unknown_or_disabled_group_refused(cschat_server):
    # PROTOCOL §7 /api/visitor with 21000 -21004: no token for a missing or disabled group
    h = cschat_server
    group = await h.group()
    status, body = await h.http("POST", "/api/visitor", {"group_id": group + 99})
    assert 400 <= status < 500 and body["code"] != 200
    assert not body.get("data", {}).get("token")
    await h.server.store.set_group_enabled(group, False)
    status, body = await h.http("POST", "/api/visitor", {"group_id": group})
    assert 400 <= status < 500 and body["code"] != 200
    assert not body.get("data", {}).get("token")


@pytest.mark.gen_test
@pytest.mark.parametrize("body", ["not json", "[1]", {}, {"group_id": "abc"},
                                  {"group_id": None}])
async def test_http_visitor_bad_body_is_400(cschat_server, body):
    # PROTOCOL §7 /api/visitor: a body that is not a JSON object with a group_id → 400
    h = cschat_server
    await h.group()
    status, reply = await h.http("POST", "/api/visitor", body)
    assert status == 400, reply
    assert reply["code"] < 0


# -- GET /healthz ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_healthz(cschat_server):
    # PROTOCOL §7 /healthz
    status, body = await cschat_server.http("GET", "/healthz")
    assert status == 200
    assert body == {"status": "ok"}


@pytest.mark.gen_test
async def test_token_errors_say_why_in_plain_words(make_server):
    # PROTOCOL R4: message is a short English reason, not a library's internals
    h, group, aid = await secret_server_and_agent(make_server)
    expired = jwt.encode({"typ": "agent", "admin_id": aid, "exp": int(time.time()) - 5},
                         SECRET, algorithm="HS256")
    assert (await login(h, 31000, token=expired))["message"] == "token invalid: token expired"
    garbage = "\xb7" + "x" * 30
    assert (await login(h, 31000, token=garbage))["message"] == \
        "token invalid: token cannot be verified"


@pytest.mark.gen_test
async def test_refresh_keeps_the_shops_own_claims(make_server):
    # PROTOCOL R12: the refresh token has the same claims (the shop's extra ones too)
    h, group, _ = await secret_server_and_agent(make_server)
    token = sign(guest_claims("shopper-9", group, ttl=60, issued_ago=7140, name="Ann",
                              vip="gold"))
    data = (await login(h, 21000, token=token))["data"]
    assert data["is_refresh"] == 1
    claims = claims_of(data["refresh_token"])
    assert claims["vip"] == "gold" and claims["uid"] == "shopper-9" and claims["name"] == "Ann"
    assert abs(claims["exp"] - (time.time() + 7200)) < 10


@pytest.mark.gen_test
async def test_token_without_iat_is_not_refreshed(make_server):
    # PROTOCOL R12: a token without iat has an unknown lifetime: it works until its exp,
    # and is never refreshed (a refresh must not outlive the token it replaces)
    h, group, aid = await secret_server_and_agent(make_server)
    now = int(time.time())
    data = (await login(h, 21000, token=sign({"typ": "guest", "uid": "u", "group_id": group,
                                              "exp": now + 60})))["data"]
    assert data["is_refresh"] == 0 and data["refresh_token"] == ""
    data = (await login(h, 31000, token=sign({"typ": "agent", "admin_id": aid,
                                              "exp": now + 60})))["data"]
    assert data["is_refresh"] == 0 and data["refresh_token"] == ""


# -- sessions: auth_time, max_session_age, token_version ---------------------------------------


@pytest.mark.gen_test
async def test_minted_tokens_carry_auth_time_and_token_version(make_server):
    # PROTOCOL R10: tokens cschat mints carry auth_time; agent tokens also tv (token_version)
    h, group, _ = await secret_server_and_agent(make_server)
    aid = await agent_with_password(h, group)
    await h.server.store.sign_out_agent(aid)  # token_version 0 → 1
    status, body = await sign_in(h)
    assert status == 200, body
    agent = claims_of(body["data"]["token"])
    assert agent["tv"] == 1 == h.db("SELECT token_version FROM agents WHERE id = ?", (aid,))[0][0]
    assert agent["auth_time"] == agent["iat"] and abs(agent["auth_time"] - time.time()) < 5
    status, body = await h.http("POST", "/api/visitor", {"group_id": group})
    guest = claims_of(body["data"]["token"])
    assert abs(guest["auth_time"] - time.time()) < 5 and "tv" not in guest


@pytest.mark.gen_test
async def test_refresh_keeps_auth_time(make_server):
    # PROTOCOL R12: a refresh keeps auth_time; a token without one gets its iat as auth_time,
    # so refreshing never restarts the session
    h, group, aid = await secret_server_and_agent(make_server, token_ttl=3600)
    now = int(time.time())
    ours = agent_claims(aid, ttl=600, issued_ago=3000, tv=0, auth_time=now - 50000)
    refreshed = claims_of((await login(h, 31000, token=sign(ours)))["data"]["refresh_token"])
    assert refreshed["auth_time"] == now - 50000
    assert abs(refreshed["iat"] - now) < 5 and abs(refreshed["exp"] - (now + 3600)) < 5
    assert (await login(h, 31000, token=sign(refreshed)))["code"] == 200
    shops = guest_claims("shopper", group, ttl=600, issued_ago=3000)
    refreshed = claims_of((await login(h, 21000, token=sign(shops)))["data"]["refresh_token"])
    assert refreshed["auth_time"] == shops["iat"]


@pytest.mark.gen_test
async def test_refresh_never_passes_the_max_session_age(make_server):
    # PROTOCOL R12 + SECURITY tokens: a refreshed token expires at auth_time + max_session_age
    # at the latest; when its exp is there already, there is no refresh
    h, group, aid = await secret_server_and_agent(make_server, token_ttl=3600,
                                                  max_session_age=7200)
    now = int(time.time())
    token = sign(agent_claims(aid, ttl=600, issued_ago=3000, tv=0, auth_time=now - 6000))
    refreshed = claims_of((await login(h, 31000, token=token))["data"]["refresh_token"])
    assert abs(refreshed["exp"] - (now + 1200)) < 5
    ending = sign(guest_claims("g", group, ttl=100, issued_ago=3000, auth_time=now - 7100))
    data = (await login(h, 21000, token=ending))["data"]
    assert data["is_refresh"] == 0 and data["refresh_token"] == ""


@pytest.mark.gen_test
async def test_session_older_than_max_session_age_is_refused(make_server):
    # PROTOCOL R10 + SECURITY tokens: a token whose auth_time (else iat) is older than
    # max_session_age is refused at 31000 / 21000 and /api/upload, whatever its exp
    h, group, aid = await secret_server_and_agent(make_server, max_session_age=3600)
    now = int(time.time())
    too_old = {
        31000: [sign(agent_claims(aid, issued_ago=3700)),
                sign(agent_claims(aid, tv=0, auth_time=now - 3700))],
        21000: [sign(guest_claims("g", group, issued_ago=3700)),
                sign(guest_claims("g", group, auth_time=now - 3700))],
    }
    for api_key, tokens in too_old.items():
        for token in tokens:
            reply = await login(h, api_key, token=token)
            assert_error(reply, -31001 if api_key == 31000 else -21001)
            assert "session too old" in reply["message"]
            status, body = await upload(h, token)
            assert status == 401 and "session too old" in body["message"], body
    assert (await login(h, 31000, token=sign(agent_claims(aid, issued_ago=3500))))["code"] == 200
    assert (await upload(h, sign(agent_claims(aid, issued_ago=3500))))[0] == 200


@pytest.mark.gen_test
async def test_shop_tokens_keep_their_lifetime_on_refresh(make_server):
    # PROTOCOL R12: a refreshed token lives min(token_ttl, exp - iat) of the token it
    # replaces: a shop's 5-minute token does not become a day-long one
    h, group, aid = await secret_server_and_agent(make_server)
    for api_key, claims in ((31000, agent_claims(aid, ttl=60, issued_ago=240)),
                            (21000, guest_claims("sso-1", group, ttl=60, issued_ago=240))):
        data = (await login(h, api_key, token=sign(claims)))["data"]
        assert data["is_refresh"] == 1
        assert abs(claims_of(data["refresh_token"])["exp"] - (time.time() + 300)) < 5


async def upload(h, token: str) -> tuple[int, dict]:
    """POST /api/upload of a small text file with ``token``."""
    boundary = "cschat-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"note.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            f"--{boundary}--\r\n")
    return await h.http("POST", "/api/upload", body, headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}"})


async def cli(h, *args: str, stdin: str = "") -> str:
    """Run the ``cschat`` command on the test server's configuration and database."""
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: cschat_ok(*args, config=h.server.settings.source, stdin=stdin))


@pytest.mark.gen_test(timeout=30)
async def test_password_change_signout_and_disable_revoke_agent_tokens(make_server):
    # SECURITY tokens: `cschat agent password`, `cschat agent signout` and a disable bump
    # token_version; tokens cschat minted before are refused at 31000 (-31001 "token
    # revoked") and /api/upload (401), open connections end (-9999); a shop's token
    # without tv is not affected
    h, group, _ = await secret_server_and_agent(make_server)
    aid = await agent_with_password(h, group)
    shops = sign(agent_claims(aid))
    for version, change in enumerate((
            lambda: cli(h, "agent", "password", str(aid), stdin="a new password\n"),
            lambda: cli(h, "agent", "signout", str(aid)),
            lambda: cli(h, "agent", "disable", str(aid)))):
        before = h.server.tokens.mint_agent(aid, version)
        assert (await upload(h, before))[0] == 200
        tab = await h.agent_client(aid, token=before)
        await change()
        assert h.db("SELECT token_version FROM agents WHERE id = ?", (aid,)) == [(version + 1,)]
        if version == 2:
            await cli(h, "agent", "enable", str(aid))
        await taken_in(h)
        assert (await tab.push(-9999))["code"] == -9999
        await tab.closed()
        reply = await login(h, 31000, token=before)
        assert_error(reply, -31001)
        assert reply["message"] == "token revoked"
        status, body = await upload(h, before)
        assert status == 401 and body["message"] == "token revoked", body
        assert (await login(h, 31000, token=h.server.tokens.mint_agent(aid, version + 1)))[
            "code"] == 200
        assert (await login(h, 31000, token=shops))["code"] == 200
    # The password really changed (and the old one no longer signs in).
    assert (await sign_in(h))[0] == 401
    status, body = await sign_in(h, password="a new password")
    assert status == 200 and claims_of(body["data"]["token"])["tv"] == 3


@pytest.mark.gen_test(timeout=20)
async def test_weak_hash_is_upgraded_on_the_next_sign_in(make_server):
    # SECURITY sign-in: a hash made with weaker scrypt parameters than N=2^17, r=8, p=1 is
    # replaced on the next successful sign-in; that is no password change: tokens stay valid
    h, group, _ = await secret_server_and_agent(make_server)
    aid = await agent_with_password(h, group)
    (weak,), = h.db("SELECT password_hash FROM agents WHERE id = ?", (aid,))
    assert weak.startswith(f"scrypt${WEAK_N}$")
    status, body = await sign_in(h)
    assert status == 200, body
    (strong,), = h.db("SELECT password_hash FROM agents WHERE id = ?", (aid,))
    assert strong.startswith(f"scrypt${SCRYPT_N}$8$1$") and SCRYPT_N == 2**17
    assert check_password("s3cret pw", strong) and not check_password("other", strong)
    assert h.db("SELECT token_version FROM agents WHERE id = ?", (aid,)) == [(0,)]
    assert (await login(h, 31000, token=body["data"]["token"]))["code"] == 200
    assert (await sign_in(h))[0] == 200
    assert h.db("SELECT password_hash FROM agents WHERE id = ?", (aid,)) == [(strong,)]


@pytest.mark.gen_test
async def test_admin_list_has_every_agent_and_avatars_are_web_addresses(make_server):
    # PROTOCOL 31000: admin_list is every agent of my group, online or not (disabled ones
    # show as offline); a guest avatar that is not an http(s) address is dropped
    h, group, aid = await secret_server_and_agent(make_server)
    gone = await h.agent(group, "Gone")
    await h.server.store.set_agent_enabled(gone, False)
    await h.server.chat.directory.reload()
    agent = await h.agent_client(aid)
    listed = {a["aix"]: a["status"] for a in agent.login_data["admin_list"]}
    assert listed == {aid: "online", gone: "offline"}
    token = jwt.encode({"typ": "guest", "uid": "u", "group_id": group,
                        "avatar": "javascript:alert(1)", "exp": int(time.time()) + 3600},
                       SECRET, algorithm="HS256")
    await login(h, 21000, token=token)
    assert h.db("SELECT avatar FROM guests") == [("",)]
