"""The ``cschat`` command line, run as the installed console script in its own process.

Each test works in its own temp folder with a configuration file written
there, and checks the exit status, stdout, stderr and the SQLite file.
"""

from __future__ import annotations

import re
import subprocess
import time

import jwt
import pytest
from conftest import cschat, cschat_ok, free_port, query, read_db, write_config

from cschat.auth import check_password

SECRET = "a-test-secret-of-at-least-32-bytes"


def new_id(*args: str, config: str) -> int:
    """Run an ``add`` command; its stdout must be the new id alone."""
    out = cschat_ok(*args, config=config)
    assert re.fullmatch(r"\d+\n?", out), repr(out)
    return int(out)


def failed(result: subprocess.CompletedProcess, status: int | None = None) -> None:
    """Assert a refused command: non-zero (or ``status``) exit, a message on stderr."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    if status is not None:
        assert result.returncode == status, (result.returncode, result.stderr)
    assert result.stderr.strip(), "a failing command explains itself on stderr"


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path)


# -- init ------------------------------------------------------------------------------------

def test_init_creates_the_database(tmp_path, config):
    # `cschat init` creates the SQLite file (schema migrated, WAL) and exits 0.
    cschat_ok("init", config=config)
    path = tmp_path / "chat.db"
    assert path.exists()
    assert read_db(tmp_path, "PRAGMA user_version")[0][0] >= 1
    assert read_db(tmp_path, "PRAGMA journal_mode")[0][0].lower() == "wal"
    group_id = new_id("group", "add", "Shop", config=config)
    # Running it again is harmless: nothing is lost.
    cschat_ok("init", config=config)
    assert read_db(tmp_path, "SELECT id, name FROM groups") == [(group_id, "Shop")]


def test_no_config_uses_the_working_directory(tmp_path):
    # Without --config cschat runs on the embedded defaults: database cschat.db in the cwd.
    work = tmp_path / "work"
    work.mkdir()
    cschat_ok("init", cwd=str(work))
    assert (work / "cschat.db").exists()
    result = cschat("group", "add", "Shop", cwd=str(work))
    assert result.returncode == 0, result.stderr
    group_id = int(result.stdout)
    assert str(group_id) in cschat("group", "list", cwd=str(work)).stdout
    assert query(work / "cschat.db", "SELECT name FROM groups WHERE id = ?", (group_id,)) \
        == [("Shop",)]


# -- groups ----------------------------------------------------------------------------------

def test_group_add_list_disable_enable(tmp_path, config):
    shop = new_id("group", "add", "Shop", config=config)
    support = new_id("group", "add", "Support Desk", config=config)
    assert shop != support
    listing = cschat_ok("group", "list", config=config)
    for group_id, name in ((shop, "Shop"), (support, "Support Desk")):
        assert any(line.split()[:1] == [str(group_id)] and name in line
                   for line in listing.splitlines()), listing

    assert cschat_ok("group", "disable", str(shop), config=config).strip() == ""
    assert read_db(tmp_path, "SELECT id, enabled FROM groups ORDER BY id") \
        == [(shop, 0), (support, 1)]
    cschat_ok("group", "enable", str(shop), config=config)
    assert read_db(tmp_path, "SELECT id, enabled FROM groups ORDER BY id") \
        == [(shop, 1), (support, 1)]


def test_group_unknown_id_is_refused(tmp_path, config):
    shop = new_id("group", "add", "Shop", config=config)
    for action in ("disable", "enable"):
        failed(cschat("group", action, str(shop + 100), config=config))
    assert read_db(tmp_path, "SELECT enabled FROM groups") == [(1,)]


# -- agents ----------------------------------------------------------------------------------

def test_agent_add_list_disable_enable(tmp_path, config):
    group_id = new_id("group", "add", "Shop", config=config)
    alice = new_id("agent", "add", "--group", str(group_id), "--name", "Alice",
                   "--avatar", "https://shop.example/a.png", "--username", "alice",
                   "--password", "pa55word", config=config)
    bob = new_id("agent", "add", "--group", str(group_id), "--name", "Bob", config=config)
    assert alice != bob
    rows = read_db(tmp_path, "SELECT id, group_id, name, avatar, username, password_hash, "
                             "enabled FROM agents ORDER BY id")
    assert [row[:5] for row in rows] == [
        (alice, group_id, "Alice", "https://shop.example/a.png", "alice"),
        (bob, group_id, "Bob", "", None)]
    alice_hash = rows[0][5]
    assert alice_hash and "pa55word" not in alice_hash
    assert check_password("pa55word", alice_hash)
    assert [row[6] for row in rows] == [1, 1]

    listing = cschat_ok("agent", "list", config=config)
    for admin_id, name in ((alice, "Alice"), (bob, "Bob")):
        assert any(line.split()[:1] == [str(admin_id)] and name in line
                   for line in listing.splitlines()), listing

    cschat_ok("agent", "disable", str(alice), config=config)
    assert read_db(tmp_path, "SELECT id, enabled FROM agents ORDER BY id") == [(alice, 0), (bob, 1)]
    cschat_ok("agent", "enable", str(alice), config=config)
    assert read_db(tmp_path, "SELECT id, enabled FROM agents ORDER BY id") == [(alice, 1), (bob, 1)]


def test_agent_add_refuses_unknown_group_and_taken_username(tmp_path, config):
    group_id = new_id("group", "add", "Shop", config=config)
    failed(cschat("agent", "add", "--group", str(group_id + 50), "--name", "Ghost",
                  config=config))
    new_id("agent", "add", "--group", str(group_id), "--name", "Alice", "--username", "alice",
           "--password", "one", config=config)
    result = cschat("agent", "add", "--group", str(group_id), "--name", "Other",
                    "--username", "alice", "--password", "two", config=config)
    failed(result)
    assert result.stdout.strip() == ""
    assert read_db(tmp_path, "SELECT name FROM agents") == [("Alice",)]


def test_agent_unknown_id_is_refused(tmp_path, config):
    cschat_ok("init", config=config)
    for action in ("disable", "enable"):
        failed(cschat("agent", action, "4242", config=config))
    failed(cschat("agent", "password", "4242", config=config, stdin="secret\n"))


def test_agent_password_is_read_from_stdin(tmp_path, config):
    group_id = new_id("group", "add", "Shop", config=config)
    alice = new_id("agent", "add", "--group", str(group_id), "--name", "Alice",
                   "--username", "alice", "--password", "old-password", config=config)
    (before,), = read_db(tmp_path, "SELECT password_hash FROM agents WHERE id = ?", (alice,))
    result = cschat("agent", "password", str(alice), config=config, stdin="n3w pass\n")
    assert result.returncode == 0, result.stderr
    assert "n3w pass" not in result.stdout + result.stderr
    (after,), = read_db(tmp_path, "SELECT password_hash FROM agents WHERE id = ?", (alice,))
    assert after != before and "n3w pass" not in after
    assert check_password("n3w pass", after)
    assert not check_password("old-password", after)
    # Nothing on stdin is no password at all: refused, the hash stays.
    failed(cschat("agent", "password", str(alice), config=config, stdin=""))
    assert read_db(tmp_path, "SELECT password_hash FROM agents WHERE id = ?", (alice,)) \
        == [(after,)]


# -- tokens (PROTOCOL R10, R11) ----------------------------------------------------------------

def _claims(out: str) -> dict:
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n?", out), repr(out)
    assert jwt.get_unverified_header(out.strip())["alg"] == "HS256"
    return jwt.decode(out.strip(), options={"verify_signature": False})


def test_token_agent(tmp_path):
    # PROTOCOL R10 agent claims; R11 `cschat token agent ID`.
    config = write_config(tmp_path, {"auth": {"secret": SECRET, "token_ttl": 3600}})
    group_id = new_id("group", "add", "Shop", config=config)
    alice = new_id("agent", "add", "--group", str(group_id), "--name", "Alice", config=config)

    now = time.time()
    out = cschat_ok("token", "agent", str(alice), "--ttl", "120", config=config)
    claims = _claims(out)
    assert claims["typ"] == "agent"
    assert claims["admin_id"] == alice and type(claims["admin_id"]) is int
    assert abs(claims["exp"] - (now + 120)) <= 5
    assert abs(claims["iat"] - now) <= 5
    # Signed with the configured secret.
    jwt.decode(out.strip(), SECRET, algorithms=["HS256"])

    default = _claims(cschat_ok("token", "agent", str(alice), config=config))
    assert abs(default["exp"] - (time.time() + 3600)) <= 5  # [auth] token_ttl

    result = cschat("token", "agent", str(alice + 99), config=config)
    failed(result)
    assert result.stdout.strip() == ""


def test_token_guest(tmp_path):
    # PROTOCOL R10 guest claims; R11 `cschat token guest UID --group ID`.
    config = write_config(tmp_path, {"auth": {"secret": SECRET, "token_ttl": 3600}})
    group_id = new_id("group", "add", "Shop", config=config)

    now = time.time()
    out = cschat_ok("token", "guest", "shop-user-7", "--group", str(group_id), "--name", "Ann",
             "--ttl", "300", config=config)
    claims = _claims(out)
    assert claims["typ"] == "guest"
    assert claims["uid"] == "shop-user-7"
    assert claims["group_id"] == group_id and type(claims["group_id"]) is int
    assert claims["name"] == "Ann"
    assert abs(claims["exp"] - (now + 300)) <= 5
    jwt.decode(out.strip(), SECRET, algorithms=["HS256"])

    plain = _claims(cschat_ok("token", "guest", "42", "--group", str(group_id), config=config))
    assert plain["uid"] == "42" and isinstance(plain["uid"], str)
    assert plain.get("name", "") == ""
    assert abs(plain["exp"] - (time.time() + 3600)) <= 5

    result = cschat("token", "guest", "u1", "--group", str(group_id + 99), config=config)
    failed(result)
    assert result.stdout.strip() == ""


def test_token_secret_is_kept_when_none_is_configured(tmp_path, config):
    # PROTOCOL R10: with no [auth] secret, one secret is generated once and kept.
    group_id = new_id("group", "add", "Shop", config=config)
    alice = new_id("agent", "add", "--group", str(group_id), "--name", "Alice", config=config)
    first = cschat_ok("token", "agent", str(alice), config=config).strip()
    second = cschat_ok("token", "guest", "u1", "--group", str(group_id), config=config).strip()
    (secret,), = read_db(tmp_path, "SELECT value FROM meta WHERE key = 'secret'")
    for token in (first, second):
        jwt.decode(token, secret, algorithms=["HS256"])


# -- configuration ---------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown section": ("[bogus]\nkey = 1\n", ["bogus"]),
    "unknown key": ("[chat]\nrate_limitt = 5\n", ["rate_limitt"]),
    "rate_limit not a number": ("[chat]\nrate_limit = abc\n", ["chat", "rate_limit"]),
    "synchronous not a choice": ("[database]\nsynchronous = maybe\n",
                                 ["database", "synchronous"]),
    "port out of range": ("[server]\nport = 70000\n", ["server", "port"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configuration_exits_2(tmp_path, case):
    text, names = BAD_CONFIGS[case]
    # The database would go to chat.db next to the file; a bad file must not create it.
    if "[database]" in text:
        text += "path = chat.db\n"
    else:
        text += "[database]\npath = chat.db\n"
    config = write_config(tmp_path, text=text)
    result = cschat("init", config=config)
    assert result.returncode == 2, (result.returncode, result.stderr)
    for name in names:
        assert name in result.stderr, result.stderr
    assert not (tmp_path / "chat.db").exists()


def test_bad_configuration_stops_run(tmp_path):
    # The server must refuse to start on a bad value rather than ignore it.
    config = write_config(tmp_path, text=f"[server]\nport = {free_port()}\n"
                                         "[chat]\nrate_limit = abc\n")
    result = cschat("run", config=config)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "rate_limit" in result.stderr


def test_missing_config_file_exits_2(tmp_path):
    missing = str(tmp_path / "nowhere.ini")
    result = cschat("group", "list", config=missing)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "nowhere.ini" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("agent", "add", "--name", "Alice"),              # no --group
    ("agent", "add", "--group", "1"),                 # no --name
    ("token", "guest", "u1"),                         # no --group
    ("group", "disable", "abc"),                      # id not a number
    ("group",),                                       # no action
    (),                                               # no command
    ("frobnicate",),                                  # unknown command
])
def test_bad_arguments_are_refused(tmp_path, config, args):
    result = cschat(*args, config=config)
    assert result.returncode != 0
    assert result.stderr.strip()
    assert not (tmp_path / "chat.db").exists()
