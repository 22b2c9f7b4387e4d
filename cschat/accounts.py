"""What a client gets without a token: an agent token for a password, a visitor token.

:class:`Accounts` holds the guards of both (docs/security.md, "Tokens and
sign-in"); the HTTP handlers only parse the request and answer:

* password checks (scrypt: about 0.35 s and 128 MiB each) run in a small
  executor of their own, never the loop's default one that image work uses,
  with a bounded number of sign-ins waiting for it (more get 503);
* failed sign-ins are counted per username and per client address, in
  memory (a restart forgets them): after ``login_user_failures`` /
  ``login_address_failures`` failures, attempts wait an exponential backoff
  and are refused with 429 before any password is checked;
* anonymous visitor tokens are limited per client address.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from cschat.auth import UID_MAX_LENGTH, Tokens, check_password, hash_password, needs_rehash
from cschat.store import Store

WRONG_CREDENTIALS = -31002
SIGN_IN_THROTTLED = -31029
VISITOR_REFUSED = -21001
VISITOR_GROUP = -21004
VISITORS_THROTTLED = -21029

# Longer usernames exist nowhere; longer passwords are cut, so a check costs what any costs.
USERNAME_MAX_LENGTH = 128
PASSWORD_MAX_LENGTH = 1024
# How many usernames, and addresses, each counter remembers at most; beyond, the
# oldest are forgotten. A day after its last failure, a username or address starts afresh.
MAX_KEYS = 100_000
FORGET_AFTER = 24 * 3600
VISITOR_WINDOW = 60


class Refused(Exception):
    """A request answered with HTTP ``status``, protocol ``code`` and ``message``;
    ``retry_after`` (seconds) for 429 and 503."""

    def __init__(self, status: int, code: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))


class _Failures:
    __slots__ = ("count", "in_flight", "last_failure", "blocked_until")

    def __init__(self, now: float):
        self.count, self.in_flight, self.last_failure, self.blocked_until = 0, 0, now, 0.0


def _forget_oldest(entries: collections.OrderedDict, is_old: Callable[[Any], bool]) -> None:
    """Drop entries from the oldest end while ``is_old`` holds, and any beyond :data:`MAX_KEYS`."""
    while entries:
        key, entry = next(iter(entries.items()))
        if len(entries) <= MAX_KEYS and not is_old(entry):
            return
        del entries[key]


class Backoff:
    """Failed attempts per key (a username or an address), with exponential backoff.

    After ``limit`` failures a key must wait ``first`` seconds, twice as long
    after each further failure, at most ``longest``. Attempts in flight count
    too: while under the limit, at most ``limit - failures`` attempts of a key
    may be under way at once (one after it), so concurrent guesses cannot pass
    the limit. Kept in memory; a key is forgotten :data:`FORGET_AFTER` seconds
    after its last failure.
    """

    def __init__(self, limit: int, first: int, longest: int):
        self.limit, self.first, self.longest = limit, first, longest
        self._entries: collections.OrderedDict[str, _Failures] = collections.OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds before an attempt for ``key`` may start; 0 when it may start now."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        now = time.monotonic()
        if entry.blocked_until > now:
            return entry.blocked_until - now
        if entry.in_flight >= max(1, self.limit - entry.count):
            return 1  # the attempts under way decide; one of them ends within a second
        return 0

    def begin(self, key: str) -> None:
        """An attempt for ``key`` starts; end it with :meth:`end`."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Failures(now)
            _forget_oldest(self._entries,
                           lambda old: not old.in_flight and now - old.last_failure > FORGET_AFTER)
        entry.in_flight += 1

    def end(self, key: str, failed: bool) -> None:
        """The attempt ended; a failure counts and may start a wait."""
        entry = self._entries.get(key)
        if entry is None:  # forgotten meanwhile, beyond MAX_KEYS
            return
        entry.in_flight -= 1
        if failed:
            now = time.monotonic()
            entry.count += 1
            entry.last_failure = now
            if entry.count >= self.limit:
                doublings = min(entry.count - self.limit, 32)
                entry.blocked_until = now + min(self.longest, self.first * 2 ** doublings)
            self._entries.move_to_end(key)
        elif not entry.count and not entry.in_flight:
            del self._entries[key]

    def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (its attempts under way still count)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.count, entry.blocked_until = 0, 0.0
        if not entry.in_flight:
            del self._entries[key]


class Window:
    """At most ``limit`` events per key in ``seconds``, counted from the key's first event."""

    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        # key → [start of its window, events in it], oldest window first
        self._windows: collections.OrderedDict[str, list] = collections.OrderedDict()

    def take(self, key: str) -> float:
        """Count an event for ``key`` and return 0, or return the seconds until one is allowed."""
        now = time.monotonic()
        _forget_oldest(self._windows, lambda window: now - window[0] >= self.seconds)
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = [now, 1]
            return 0
        if window[1] >= self.limit:
            return window[0] + self.seconds - now
        window[1] += 1
        return 0


class Accounts:
    """Password sign-in and anonymous visitor tokens for one server. End with :meth:`close`."""

    def __init__(self, store: Store, tokens: Tokens, auth: dict):
        self.store, self.tokens = store, tokens
        self._allow_anonymous = auth["allow_anonymous"]
        self._users = Backoff(auth["login_user_failures"], auth["login_backoff"],
                              auth["login_backoff_max"])
        self._addresses = Backoff(auth["login_address_failures"], auth["login_backoff"],
                                  auth["login_backoff_max"])
        self._visitors = Window(auth["visitor_rate"], VISITOR_WINDOW)
        self._most_sign_ins = auth["password_workers"] + auth["password_queue"]
        self._sign_ins = 0  # admitted and not finished
        self._executor = concurrent.futures.ThreadPoolExecutor(
            auth["password_workers"], thread_name_prefix="cschat-password")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def sign_in(self, username: str, password: str, address: str) -> dict:
        """``{"token", "admin_id"}`` for the right password of an enabled agent.

        Raises :class:`Refused`: 429 (-31029) while the username or the
        address waits out its backoff, checking no password; 503 (-31029)
        when too many sign-ins wait for a password worker; otherwise 401
        (-31002) — for a wrong password, an unknown username, an agent without
        a password, and also a disabled agent or group *whatever the
        password*, which counts as a failure too: no answer or counter tells
        whether a disabled account's password was right. A success resets the
        username's failures, and upgrades a hash made with weaker parameters.
        """
        username = username[:USERNAME_MAX_LENGTH + 1]
        wait = max(self._users.wait(username), self._addresses.wait(address))
        if wait:
            raise Refused(429, SIGN_IN_THROTTLED, "too many failed sign-ins; retry later", wait)
        if self._sign_ins >= self._most_sign_ins:
            raise Refused(503, SIGN_IN_THROTTLED, "too many sign-ins at once; retry shortly", 1)
        # Counted before the first await, so sign-ins arriving together see each other.
        self._sign_ins += 1
        self._users.begin(username)
        self._addresses.begin(address)
        agent = None
        try:
            agent = await self._check(username, password[:PASSWORD_MAX_LENGTH])
        finally:  # an error of the server's own counts as no failure
            self._sign_ins -= 1
            self._users.end(username, failed=agent is False)
            self._addresses.end(address, failed=agent is False)
        if not agent:
            raise Refused(401, WRONG_CREDENTIALS, "wrong username or password")
        self._users.reset(username)
        return {"token": self.tokens.mint_agent(agent["id"], agent["token_version"]),
                "admin_id": agent["id"]}

    async def _check(self, username: str, password: str) -> dict | bool:
        """The agent row for a right password of an enabled agent, else False."""
        agent = (await self.store.agent_login(username)
                 if len(username) <= USERNAME_MAX_LENGTH else None)
        stored = agent["password_hash"] if agent else None
        # Run even for an unknown username (on a decoy hash), so all failures take as long.
        if not await self._password_work(check_password, password, stored):
            return False
        if not agent["enabled"] or not agent["group_enabled"]:
            return False
        if needs_rehash(stored):
            await self.store.upgrade_password_hash(
                agent["id"], stored, await self._password_work(hash_password, password))
        return agent

    async def hash_new_password(self, password: str) -> str:
        """A hash of ``password``, made by the password workers (off the loop)."""
        return await self._password_work(hash_password, password)

    def _password_work(self, work: Callable, *args: Any) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    async def visitor_token(self, group_id: int, address: str) -> str:
        """A guest token with a new random uid, for an anonymous visitor of ``group_id``.

        Raises :class:`Refused`: 403 (-21001) when anonymous visitors are
        off; 429 (-21029) beyond ``visitor_rate`` tokens from ``address`` in a
        minute; 404 (-21004) for a missing or disabled group.
        """
        if not self._allow_anonymous:
            raise Refused(403, VISITOR_REFUSED, "anonymous visitors are turned off")
        wait = self._visitors.take(address)
        if wait:
            raise Refused(429, VISITORS_THROTTLED, "too many visitor tokens; retry later", wait)
        group = await self.store.group(group_id)
        if group is None or not group["enabled"]:
            raise Refused(404, VISITOR_GROUP, "group disabled or missing")
        uid = "anon-" + secrets.token_hex(12)
        assert len(uid) <= UID_MAX_LENGTH
        return self.tokens.mint_guest(uid, group_id)
