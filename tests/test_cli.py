"""The ``cschat`` command line, run as the installed console script in its own process.

Each test works in its own temp folder with a configuration file written
there, and checks the exit status, stdout, stderr and the SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import jwt
import pytest
from conftest import (
    CLI_TIMEOUT,
    cschat,
    cschat_ok,
    cschat_script,
    free_port,
    query,
    read_db,
    write_config,
)

from cschat.auth import check_password

SECRET = "a-test-secret-of-at-least-32-bytes"


def new_id(*args: str, config: str, stdin: str | None = None) -> int:
    """Run an ``add`` command; its stdout must be the new id alone."""
    out = cschat_ok(*args, config=config, stdin=stdin)
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
                   "--password-stdin", config=config, stdin="pa55word-long\n")
    bob = new_id("agent", "add", "--group", str(group_id), "--name", "Bob", config=config)
    assert alice != bob
    rows = read_db(tmp_path, "SELECT id, group_id, name, avatar, username, password_hash, "
                             "enabled FROM agents ORDER BY id")
    assert [row[:5] for row in rows] == [
        (alice, group_id, "Alice", "https://shop.example/a.png", "alice"),
        (bob, group_id, "Bob", "", None)]
    alice_hash = rows[0][5]
    assert alice_hash and "pa55word" not in alice_hash
    assert check_password("pa55word-long", alice_hash)
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
           "--password-stdin", config=config, stdin="password one\n")
    result = cschat("agent", "add", "--group", str(group_id), "--name", "Other",
                    "--username", "alice", "--password-stdin", config=config,
                    stdin="password two\n")
    failed(result)
    assert result.stdout.strip() == ""
    assert read_db(tmp_path, "SELECT name FROM agents") == [("Alice",)]


def test_agent_unknown_id_is_refused(tmp_path, config):
    cschat_ok("init", config=config)
    for action in ("disable", "enable"):
        failed(cschat("agent", action, "4242", config=config))
    failed(cschat("agent", "password", "4242", config=config, stdin="long enough secret\n"))
    failed(cschat("agent", "signout", "4242", config=config))


def test_agent_password_is_read_from_stdin(tmp_path, config):
    group_id = new_id("group", "add", "Shop", config=config)
    alice = new_id("agent", "add", "--group", str(group_id), "--name", "Alice",
                   "--username", "alice", "--password-stdin", config=config,
                   stdin="old-password\n")
    (before,), = read_db(tmp_path, "SELECT password_hash FROM agents WHERE id = ?", (alice,))
    result = cschat("agent", "password", str(alice), config=config, stdin="n3w passw0rd\n")
    assert result.returncode == 0, result.stderr
    assert "n3w passw0rd" not in result.stdout + result.stderr
    (after,), = read_db(tmp_path, "SELECT password_hash FROM agents WHERE id = ?", (alice,))
    assert after != before and "n3w passw0rd" not in after
    assert check_password("n3w passw0rd", after)
    assert not check_password("old-password", after)
    # Nothing on stdin is no password at all: refused, the hash stays.
    failed(cschat("agent", "password", str(alice), config=config, stdin=""))
    assert read_db(tmp_path, "SELECT password_hash FROM agents WHERE id = ?", (alice,)) \
        == [(after,)]


def test_agent_add_takes_no_password_argument(tmp_path, config):
    # SECURITY sign-in: a password given as an argument lands in shell history and `ps`:
    # `agent add` reads it from standard input (--password-stdin) and has no --password
    group_id = new_id("group", "add", "Shop", config=config)
    agent = ("agent", "add", "--group", str(group_id), "--name", "Alice")
    failed(cschat(*agent, "--username", "alice", "--password", "pa55word-long", config=config),
           2)
    # --username and --password-stdin go together.
    failed(cschat(*agent, "--username", "alice", config=config, stdin="pa55word-long\n"))
    failed(cschat(*agent, "--password-stdin", config=config, stdin="pa55word-long\n"))
    assert read_db(tmp_path, "SELECT COUNT(*) FROM agents") == [(0,)]


def test_passwords_shorter_than_the_minimum_are_refused(tmp_path, config):
    # SECURITY sign-in: `agent add` and `agent password` refuse a password shorter than
    # [auth] min_password_length (10 by default)
    group_id = new_id("group", "add", "Shop", config=config)
    agent = ("agent", "add", "--group", str(group_id), "--name", "Alice", "--username", "alice",
             "--password-stdin")
    result = cschat(*agent, config=config, stdin="nine-char\n")
    failed(result, 1)
    assert "at least 10 characters" in result.stderr
    assert read_db(tmp_path, "SELECT COUNT(*) FROM agents") == [(0,)]
    alice = new_id(*agent, config=config, stdin="ten-chars!\n")
    (stored,), = read_db(tmp_path, "SELECT password_hash FROM agents")
    failed(cschat("agent", "password", str(alice), config=config, stdin="too short\n"), 1)
    assert read_db(tmp_path, "SELECT password_hash FROM agents") == [(stored,)]
    relaxed = write_config(tmp_path, {"auth": {"min_password_length": 4}})
    cschat_ok("agent", "password", str(alice), config=relaxed, stdin="four\n")
    (stored,), = read_db(tmp_path, "SELECT password_hash FROM agents")
    assert check_password("four", stored)


def test_signout_password_and_disable_revoke_tokens(tmp_path):
    # SECURITY tokens: `agent signout` (sign out everywhere), `agent password` and
    # `agent disable` each bump the agent's token_version, which cschat's agent tokens
    # carry as tv; `agent enable` does not bring old tokens back
    config = write_config(tmp_path, {"auth": {"secret": SECRET}})
    group_id = new_id("group", "add", "Shop", config=config)
    alice = new_id("agent", "add", "--group", str(group_id), "--name", "Alice",
                   "--username", "alice", "--password-stdin", config=config,
                   stdin="first password\n")
    assert _claims(cschat_ok("token", "agent", str(alice), config=config))["tv"] == 0
    for version, (args, stdin) in enumerate((
            (("agent", "signout", str(alice)), None),
            (("agent", "password", str(alice)), "second password\n"),
            (("agent", "disable", str(alice)), None),
            (("agent", "enable", str(alice)), None)), start=1):
        cschat_ok(*args, config=config, stdin=stdin)
        assert read_db(tmp_path, "SELECT token_version FROM agents") == [(min(version, 3),)]
    assert _claims(cschat_ok("token", "agent", str(alice), config=config))["tv"] == 3


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
    assert claims["tv"] == 0  # the agent's token_version
    assert abs(claims["exp"] - (now + 120)) <= 5
    assert abs(claims["iat"] - now) <= 5 and claims["auth_time"] == claims["iat"]
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
    assert claims["auth_time"] == claims["iat"] and "tv" not in claims
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


def test_short_secret_exits_2(tmp_path):
    # SECURITY tokens: an [auth] secret shorter than 32 bytes stops cschat at start-up
    # (exit 2) without showing it; an empty one means "generate one and keep it"
    short = "s" * 31
    config = write_config(tmp_path, {"auth": {"secret": short}})
    for args in (("init",), ("run",)):
        result = cschat(*args, config=config)
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert "[auth] secret" in result.stderr and "32 bytes" in result.stderr
        assert short not in result.stderr
    assert not (tmp_path / "chat.db").exists()
    cschat_ok("init", config=write_config(tmp_path, {"auth": {"secret": "s" * 32}}))
    cschat_ok("init", config=write_config(tmp_path, {"auth": {"secret": ""}}))


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


# -- the demo --------------------------------------------------------------------------------

@contextlib.contextmanager
def serving(folder, *extra: str):
    """``cschat run EXTRA`` in a child process, up once /healthz answers (and, with --demo,
    its credentials are printed); stopped with SIGTERM. Yields its URL and its stdout text."""
    port = free_port()
    config = write_config(folder, {"server": {"port": port}})
    url = f"http://127.0.0.1:{port}"
    out_path = folder / f"run-{len(list(folder.glob('run-*')))}.out"
    with open(out_path, "w") as out:
        process = subprocess.Popen([cschat_script(), "run", *extra, "--config", config],
                                   stdout=out, stderr=subprocess.DEVNULL, cwd=folder)
    try:
        deadline = time.monotonic() + CLI_TIMEOUT
        while not _healthy(url) or ("--demo" in extra
                                    and "demo shop page" not in out_path.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "cschat run failed"
            time.sleep(0.05)
        yield url, out_path.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def sign_in_status(url: str, username: str, password: str) -> int:
    request = urllib.request.Request(url + "/api/login", method="POST", data=json.dumps(
        {"username": username, "password": password}).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_demo_passwords_end_with_a_run_without_demo(tmp_path):
    # SECURITY sign-in: the passwords `cschat run --demo` prints work only while runs use
    # --demo: `cschat run` without it removes them and revokes the demo agents' tokens
    with serving(tmp_path, "--demo") as (url, out):
        credentials = re.findall(r"sign in as\s+(\S+) / (\S+)", out)
        assert len(credentials) == 2
        assert sign_in_status(url, *credentials[0]) == 200
    before = read_db(tmp_path, "SELECT id, token_version FROM agents ORDER BY id")
    with serving(tmp_path) as (url, _):
        for username, password in credentials:
            assert sign_in_status(url, username, password) == 401
    assert read_db(tmp_path, "SELECT id, password_hash, token_version FROM agents ORDER BY id") \
        == [(admin_id, None, version + 1) for admin_id, version in before]
