"""Thin Tornado handlers: parse and check a frame or a request, call the service, answer.

:class:`ChatSocket` owns what belongs to one WebSocket (its id, its rate
limit, when it last spoke, pushes held back during login); everything about
chats is in :mod:`cschat.chat`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import tornado.web
import tornado.websocket

from cschat import protocol as p
from cschat.auth import UID_MAX_LENGTH, check_password
from cschat.chat import Session, new_ix
from cschat.protocol import ApiError

if TYPE_CHECKING:
    from cschat.app import Server

log = logging.getLogger("cschat.ws")

# api_key → (role, ChatService method name)
_APIS = {
    p.CHAT_LIST: ("agent", "chat_list"),
    p.CHAT_CONTENT: ("agent", "chat_content"),
    p.AGENT_MARK_READ: ("agent", "agent_mark_read"),
    p.AGENT_SEND: ("agent", "agent_send"),
    p.TRANSFER: ("agent", "transfer"),
    p.SUSPEND: ("agent", "suspend"),
    p.ONLINE_AGENTS: ("agent", "online_agents"),
    p.AGENT_TYPING: ("agent", "agent_typing"),
    p.END_CONVERSATION: ("agent", "end_conversation"),
    p.GUEST_HISTORY: ("guest", "guest_history"),
    p.GUEST_MARK_READ: ("guest", "guest_mark_read"),
    p.GUEST_SEND: ("guest", "guest_send"),
    p.GUEST_TYPING: ("guest", "guest_typing"),
}
_LOGINS = {p.AGENT_LOGIN: "agent", p.GUEST_LOGIN: "guest"}
_CALL_TYPES = {"agent": p.AGENT, "guest": p.GUEST}
INTERNAL_ERROR = -10000


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst`` (PROTOCOL R9)."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ChatSocket(tornado.websocket.WebSocketHandler):
    """``GET /ws``: one connection of an agent or a guest (PROTOCOL §1)."""

    def initialize(self, server: Server) -> None:
        self.server = server
        self.chat = server.chat

    def check_origin(self, origin: str) -> bool:
        allowed = self.server.settings.server["allowed_origins"]
        if not allowed:
            return super().check_origin(origin)
        return origin.rstrip("/") in allowed

    def open(self) -> None:
        rate = self.server.settings.chat["rate_limit"]
        self.ix = new_ix()
        self.session: Session | None = None
        self.logging_in = False
        self.held: list[str] | None = None
        self.bucket = TokenBucket(rate, 2 * rate)
        self.last_frame = time.monotonic()
        self.server.sockets.add(self)
        log.info("connect ix=%s ip=%s", self.ix, self.request.remote_ip)

    def on_close(self) -> None:
        self.server.sockets.discard(self)
        log.info("close ix=%s role=%s id=%s code=%s", self.ix, *self._who(), self.close_code)
        self._leave()

    # -- Subscriber ------------------------------------------------------------------

    def deliver(self, text: str) -> None:
        if self.held is not None:
            self.held.append(text)
            return
        self._send(text)

    def end(self, text: str) -> None:
        self.deliver(text)
        self.close(1000, "session ended")

    # -- frames ----------------------------------------------------------------------

    def on_message(self, raw: str | bytes) -> None:
        self.last_frame = time.monotonic()
        frame = _decode(raw)
        if not self.bucket.take():  # every frame counts, even one that is not JSON (R9)
            api_key, seq = (frame.get("api_key", 0), frame.get("seq", p.NO_SEQ)) if frame \
                else (0, p.NO_SEQ)
            self._reply(api_key, seq if p.valid_seq(seq) else p.NO_SEQ, code=p.RATE_LIMITED,
                        message="rate limited")
            return
        if frame is None:
            self._reply(0, p.NO_SEQ, code=p.NOT_JSON_OBJECT,
                        message="a frame is one JSON object")
            return
        api_key, seq = frame.get("api_key", 0), frame.get("seq", p.NO_SEQ)
        if not p.valid_seq(seq):
            self._reply(api_key, p.NO_SEQ, code=p.BAD_PARAMETER,
                        message="seq must be an integer or a string of at most 64 characters")
            return
        try:
            self._dispatch(frame, api_key, seq)
        except ApiError as error:
            self._reply(api_key, seq, code=error.code, message=error.message)

    def _dispatch(self, frame: dict, api_key: Any, seq: Any) -> None:
        api_key = p.integer(frame, "api_key", p.UNKNOWN_API, default=0)
        call_type = p.integer(frame, "call_type", p.CALL_TYPE_MISMATCH, default=None)
        if api_key == 0:
            self._reply(0, seq, {"time": int(time.time() * 1000)})
            return
        if api_key in _LOGINS:
            self._login(api_key, call_type, seq, frame)
            return
        if self.session is None:
            raise ApiError(p.LOGIN_REQUIRED, "login required")
        if api_key not in _APIS:
            raise ApiError(p.UNKNOWN_API, "unknown api_key")
        role, method = _APIS[api_key]
        if call_type != _CALL_TYPES[self.session.role] or role != self.session.role:
            raise ApiError(p.CALL_TYPE_MISMATCH, "call_type does not match this connection")
        self._answer(api_key, seq, getattr(self.chat, method)(self.session, frame))

    def _login(self, api_key: int, call_type: Any, seq: Any, frame: dict) -> None:
        role = _LOGINS[api_key]
        if call_type != _CALL_TYPES[role]:
            raise ApiError(p.CALL_TYPE_MISMATCH, "call_type does not match the login")
        if self.session is not None or self.logging_in:
            raise ApiError(p.BAD_PARAMETER, "this connection is already logged in")
        self.logging_in = True
        # Pushes published while the login is under way wait until its answer is sent.
        self.held = []
        login = self.chat.agent_login if role == "agent" else self.chat.guest_login
        self._answer(api_key, seq, self._finish_login(login(self.ix, self, frame)),
                     release_held=True)

    async def _finish_login(self, login: Awaitable) -> dict:
        try:
            self.session, data = await login
        finally:
            self.logging_in = False
        if self.close_code is not None or self.ws_connection is None:
            self._leave()
        log.info("login ix=%s role=%s id=%s", self.ix, *self._who())
        return data

    def _answer(self, api_key: int, seq: Any, result: Awaitable[dict],
                release_held: bool = False) -> None:
        """Reply once ``result`` (a coroutine, or a future from a send) settles."""
        outcome = asyncio.ensure_future(result)
        self.server.track(outcome)
        outcome.add_done_callback(
            functools.partial(self._send_answer, api_key, seq, release_held))

    def _send_answer(self, api_key: int, seq: Any, release_held: bool,
                     outcome: asyncio.Future) -> None:
        if outcome.cancelled():
            return
        error = outcome.exception()
        if error is None:
            self._reply(api_key, seq, outcome.result())
        elif isinstance(error, ApiError):
            self._reply(api_key, seq, code=error.code, message=error.message)
        else:
            log.error("request %s failed ix=%s", api_key, self.ix, exc_info=error)
            self._reply(api_key, seq, code=INTERNAL_ERROR, message="internal error")
        if release_held:
            self._release_held()

    def _reply(self, api_key: Any, seq: Any, data: dict | None = None, code: int = 200,
               message: str = "") -> None:
        self._send(p.encode(p.response(api_key if isinstance(api_key, int) else 0, data, seq,
                                       code, message)))

    def _send(self, text: str) -> None:
        """Write a frame; a peer that has gone is no error (its close is handled apart)."""
        try:
            self.write_message(text).add_done_callback(_ignore_closed)
        except tornado.websocket.WebSocketClosedError:
            pass

    def _release_held(self) -> None:
        held, self.held = self.held, None
        for text in held or ():
            self.deliver(text)

    def _leave(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        if session.role == "agent":
            self.chat.agent_disconnected(session)
        else:
            self.chat.guest_disconnected(session)

    def _who(self) -> tuple[str, Any]:
        if self.session is None:
            return "-", "-"
        return self.session.role, (self.session.admin_id if self.session.role == "agent"
                                   else self.session.gid)


def _ignore_closed(write: asyncio.Future) -> None:
    # Retrieve the outcome so a write cut short by the peer is not logged as unhandled.
    if not write.cancelled():
        write.exception()


def _decode(raw: str | bytes) -> dict | None:
    if isinstance(raw, bytes):
        return None
    try:
        frame = p.decode(raw)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


class JsonHandler(tornado.web.RequestHandler):
    """Base of the JSON endpoints of PROTOCOL §7."""

    MAX_BODY = 16 * 1024

    def initialize(self, server: Server) -> None:
        self.server = server

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def body(self) -> dict:
        if len(self.request.body) > self.MAX_BODY:
            self.answer(413, p.BAD_PARAMETER, "body too large")
            raise tornado.web.Finish()
        try:
            body = p.decode(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.answer(400, p.BAD_PARAMETER, "the body must be a JSON object")
            raise tornado.web.Finish()
        return body

    def answer(self, status: int, code: int = 200, message: str = "", data: dict | None = None
               ) -> None:
        self.set_status(status)
        self.finish(p.encode({"code": code, "status": "Success" if code == 200 else "Error",
                              "message": message, "data": data or {}}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(p.encode({"code": p.BAD_PARAMETER, "status": "Error",
                              "message": self._reason, "data": {}}))


class LoginHandler(JsonHandler):
    """``POST /api/login``: an agent's username and password for an agent token."""

    async def post(self) -> None:
        body = self.body()
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            self.answer(400, p.BAD_PARAMETER, "username and password are required")
            return
        store = self.server.store
        agent = await store.agent_login(username) if len(username) <= 128 else None
        stored_hash = agent["password_hash"] if agent else None
        # scrypt runs off the event loop, and runs even for an unknown username,
        # so both failures look and take the same.
        matches = await asyncio.get_running_loop().run_in_executor(
            None, check_password, password[:1024], stored_hash)
        if not matches:
            self.answer(401, -31002, "wrong username or password")
        elif not agent["enabled"]:
            self.answer(403, -31003, "agent disabled")
        elif not agent["group_enabled"]:
            self.answer(403, -31004, "group disabled or missing")
        else:
            token = self.server.tokens.mint_agent(agent["id"])
            self.answer(200, data={"token": token, "admin_id": agent["id"]})


class VisitorHandler(JsonHandler):
    """``POST /api/visitor``: a guest token for an anonymous visitor of a group."""

    async def post(self) -> None:
        if not self.server.settings.auth["allow_anonymous"]:
            self.answer(403, -21001, "anonymous visitors are turned off")
            return
        try:
            group_id = p.integer(self.body(), "group_id")
        except ApiError as error:
            self.answer(400, error.code, error.message)
            return
        group = await self.server.store.group(group_id)
        if group is None or not group["enabled"]:
            self.answer(404, -21004, "group disabled or missing")
            return
        uid = "anon-" + secrets.token_hex(12)
        assert len(uid) <= UID_MAX_LENGTH
        self.answer(200, data={"token": self.server.tokens.mint_guest(uid, group_id)})


class HealthHandler(JsonHandler):
    """``GET /healthz``: ok when the database answers."""

    async def get(self) -> None:
        try:
            await asyncio.wait_for(self.server.store.ping(), timeout=5)
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            self.set_status(503)
            self.finish(p.encode({"status": "error"}))
            return
        self.finish(p.encode({"status": "ok"}))
