"""Thin Tornado handlers: parse and check a frame or a request, call the service, answer.

:class:`ChatSocket` owns what belongs to one WebSocket (its id, its rate
limit, when it last spoke, pushes held back during login); everything about
chats is in :mod:`cschat.chat`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import urllib.parse
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import tornado.web
import tornado.websocket

from cschat import protocol as p
from cschat.accounts import Refused
from cschat.chat import Session, new_ix
from cschat.limits import TokenBucket
from cschat.logs import ThrottledLog
from cschat.protocol import ApiError
from cschat.store import StorageUnavailable
from cschat.visitors import Client

if TYPE_CHECKING:
    from cschat.app import Server

log = logging.getLogger("cschat.ws")
_storage_failures = ThrottledLog(log)  # a full disk fails every request alike

# api_key → (role, service: the server's "chat" or "desk", method name)
_APIS = {
    p.CHAT_LIST: ("agent", "chat", "chat_list"),
    p.CHAT_CONTENT: ("agent", "chat", "chat_content"),
    p.AGENT_MARK_READ: ("agent", "chat", "agent_mark_read"),
    p.AGENT_SEND: ("agent", "chat", "agent_send"),
    p.TRANSFER: ("agent", "chat", "transfer"),
    p.SUSPEND: ("agent", "chat", "suspend"),
    p.ONLINE_AGENTS: ("agent", "chat", "online_agents"),
    p.AGENT_TYPING: ("agent", "chat", "agent_typing"),
    p.END_CONVERSATION: ("agent", "chat", "end_conversation"),
    p.CONVERSATIONS: ("agent", "desk", "conversations"),
    p.SEARCH: ("agent", "desk", "search"),
    p.ADD_NOTE: ("agent", "desk", "add_note"),
    p.NOTES: ("agent", "desk", "notes"),
    p.TAGS: ("agent", "desk", "tags"),
    p.BLOCK: ("agent", "desk", "block"),
    p.CANNED: ("agent", "desk", "canned"),
    p.GUEST_HISTORY: ("guest", "chat", "guest_history"),
    p.GUEST_MARK_READ: ("guest", "chat", "guest_mark_read"),
    p.GUEST_SEND: ("guest", "chat", "guest_send"),
    p.GUEST_TYPING: ("guest", "chat", "guest_typing"),
    p.GUEST_PAGE: ("guest", "desk", "guest_page"),
    p.RATE: ("guest", "reception", "rate"),
    p.LEAVE_MESSAGE: ("guest", "chat", "guest_leave_message"),
    p.TRANSCRIPT: ("guest", "reception", "transcript"),
}
_LOGINS = {p.AGENT_LOGIN: "agent", p.GUEST_LOGIN: "guest"}
# Sends answer after their commit, on the hot path; the pushes they cause go to
# other connections (R21), so they need not hold this connection's pushes back.
_SENDS = (p.AGENT_SEND, p.GUEST_SEND, p.LEAVE_MESSAGE)
_CALL_TYPES = {"agent": p.AGENT, "guest": p.GUEST}
INTERNAL_ERROR = -10000
CLOSE_POLICY = 1008  # RFC 6455: the peer broke a rule (too slow, too many connections)
CLOSE_TRY_LATER = 1013


class ChatSocket(tornado.websocket.WebSocketHandler):
    """``GET /ws``: one connection of an agent or a guest (PROTOCOL §1)."""

    def initialize(self, server: Server) -> None:
        self.server = server
        self.chat = server.chat

    def check_origin(self, origin: str) -> bool:
        """Same host as cschat, or one of ``[server] allowed_origins``.

        Decided here in full rather than by Tornado's default, whose
        same-origin handling changed between versions.
        """
        if urllib.parse.urlsplit(origin).netloc.lower() == self.request.host.lower():
            return True
        return origin.rstrip("/") in self.server.settings.server["allowed_origins"]

    def open(self) -> None:
        chat = self.server.settings.chat
        self.ix = new_ix()
        self.session: Session | None = None
        self.logging_in = False
        self.held: list[str] | None = None
        self.holding = 0  # requests whose answers must go out before held pushes
        self.bucket = TokenBucket(chat["rate_limit"], 2 * chat["rate_limit"])
        self.identity_bucket: TokenBucket | None = None
        self.opened = self.last_frame = time.monotonic()
        self.queued_bytes = 0
        self.max_queued_bytes = chat["max_queued_bytes"]
        self.address = self.request.remote_ip or "?"
        self.admitted = self.server.connections.admit(self.address)
        if not self.admitted:
            log.warning("refused ix=%s ip=%s: too many connections", self.ix, self.address)
            self.close(CLOSE_TRY_LATER, "too many connections")
            return
        self.address_bucket = self.server.address_buckets.acquire(self.address)
        self.server.sockets.add(self)
        log.info("connect ix=%s ip=%s", self.ix, self.address)

    def on_close(self) -> None:
        if not self.admitted:
            return
        self.server.sockets.discard(self)
        self.server.connections.leave(self.address)
        self.server.address_buckets.release(self.address)
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
        self.server.metrics.frame_in()
        frame, code, problem = _decode(raw)
        if not self._within_rates():  # every frame counts, even one that is not JSON (R9)
            api_key, seq = (frame.get("api_key", 0), frame.get("seq", p.NO_SEQ)) if frame \
                else (0, p.NO_SEQ)
            self._reply(api_key, seq if p.valid_seq(seq) else p.NO_SEQ, code=p.RATE_LIMITED,
                        message="rate limited")
            return
        if frame is None:
            api_key, seq = 0, p.NO_SEQ
            if code == p.BAD_PARAMETER:  # the frame parses once its numbers are left out
                readable = p.decode(raw, numbers_out_of_range=None)
                api_key, seq = readable.get("api_key", 0), readable.get("seq", p.NO_SEQ)
                seq = seq if p.valid_seq(seq) else p.NO_SEQ
            self._reply(api_key, seq, code=code, message=problem)
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
        role, service, method = _APIS[api_key]
        # A request may leave call_type out: it is the connection's (R3).
        if call_type not in (None, _CALL_TYPES[self.session.role]) or role != self.session.role:
            raise ApiError(p.CALL_TYPE_MISMATCH, "call_type does not match this connection")
        call = getattr(getattr(self.server, service), method)
        if api_key in _SENDS:  # its future settles once the message is committed (R20)
            call(self.session, frame).add_done_callback(
                functools.partial(self._acked, api_key, seq, self.last_frame))
            return
        self._hold()
        self._answer(api_key, seq, call(self.session, frame))

    def _acked(self, api_key: int, seq: Any, arrived: float, stored: asyncio.Future) -> None:
        """Answer a send once its message is committed (or refused).

        The one callback of a send: sends are the hot path, and the store
        commits what is pending before the server stops, so they need no
        tracking as other requests do.
        """
        if stored.cancelled():
            return
        if stored.exception() is None:
            self.server.metrics.ack_latency(time.monotonic() - arrived)
        self._reply_with(api_key, seq, stored)

    def _within_rates(self) -> bool:
        """Take a token from this socket's, its address's and its identity's buckets."""
        return (self.bucket.take() and self.address_bucket.take()
                and (self.identity_bucket is None or self.identity_bucket.take()))

    def _login(self, api_key: int, call_type: Any, seq: Any, frame: dict) -> None:
        role = _LOGINS[api_key]
        if call_type != _CALL_TYPES[role]:
            raise ApiError(p.CALL_TYPE_MISMATCH, "call_type does not match the login")
        if self.session is not None or self.logging_in:
            raise ApiError(p.BAD_PARAMETER, "this connection is already logged in")
        self.logging_in = True
        self._hold()
        if role == "agent":
            login = self.chat.agent_login(self.ix, self, frame)
        else:
            login = self.chat.guest_login(self.ix, self, frame, Client(
                self.request.headers.get("User-Agent", ""), self.address))
        self._answer(api_key, seq, self._finish_login(login))

    async def _finish_login(self, login: Awaitable) -> dict:
        try:
            self.session, data = await login
        finally:
            self.logging_in = False
        if self.close_code is not None or self.ws_connection is None:
            self._leave()
            return data
        self.identity_bucket = self.server.identity_buckets.acquire(self._who())
        log.info("login ix=%s role=%s id=%s", self.ix, *self._who())
        self.server.metrics.login(self.session.role)
        return data

    def _hold(self) -> None:
        """Keep pushes for this connection back until the answers of the requests under
        way are sent, so that a client pairing by api_key sees its answer first (R4)."""
        if self.held is None:
            self.held = []
        self.holding += 1

    def _answer(self, api_key: int, seq: Any, result: Awaitable[dict]) -> None:
        """Reply once ``result`` (a coroutine) settles, then release the pushes held for
        it (:meth:`_hold`)."""
        outcome = asyncio.ensure_future(result)
        self.server.track(outcome)
        outcome.add_done_callback(functools.partial(self._send_answer, api_key, seq))

    def _send_answer(self, api_key: int, seq: Any, outcome: asyncio.Future) -> None:
        if not outcome.cancelled():
            self._reply_with(api_key, seq, outcome)
        # Even for a request cut short: held pushes must not stay held.
        self.holding -= 1
        if not self.holding:
            self._release_held()

    def _reply_with(self, api_key: int, seq: Any, outcome: asyncio.Future) -> None:
        """Answer with a settled request's data, or the code of the error it raised."""
        error = outcome.exception()
        if error is None:
            self._reply(api_key, seq, outcome.result())
        elif isinstance(error, ApiError):
            self._reply(api_key, seq, code=error.code, message=error.message)
        elif isinstance(error, StorageUnavailable):
            _storage_failures.error("request %s not stored: %s", api_key, error)
            self._reply(api_key, seq, code=p.STORAGE_UNAVAILABLE,
                        message="cannot store this now; try again shortly")
        else:
            log.error("request %s failed ix=%s", api_key, self.ix, exc_info=error)
            self._reply(api_key, seq, code=INTERNAL_ERROR, message="internal error")

    def _reply(self, api_key: Any, seq: Any, data: dict | None = None, code: int = 200,
               message: str = "") -> None:
        api_key = api_key if type(api_key) is int else 0
        try:
            text = p.encode(p.response(api_key, data, seq, code, message))
        except ValueError:
            # Every request gets its answer (R4), even one whose data cannot be encoded.
            log.exception("answer to %s cannot be encoded ix=%s", api_key, self.ix)
            text = p.encode(p.response(api_key, None, seq, INTERNAL_ERROR, "internal error"))
        self._send(text)

    def _send(self, text: str) -> None:
        """Write a frame; a peer that has gone is no error (its close is handled apart).

        A peer that does not read while frames pile up for it is closed
        (1008) once ``max_queued_bytes`` wait to be sent: it would otherwise
        hold that memory for as long as it likes.
        """
        size = len(text) if text.isascii() else len(text.encode())
        if self.queued_bytes + size > self.max_queued_bytes:
            if self.close_code is None and self.ws_connection is not None:
                log.warning("closing ix=%s: %d bytes wait unread", self.ix, self.queued_bytes)
                self.close(CLOSE_POLICY, "too slow: frames are waiting unread")
            return
        try:
            written = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            return
        self.server.metrics.frame_out()
        self.queued_bytes += size
        written.add_done_callback(functools.partial(self._sent, size))

    def _sent(self, size: int, written: asyncio.Future) -> None:
        self.queued_bytes -= size
        # Retrieve the outcome so a write cut short by the peer is not logged as unhandled.
        if not written.cancelled():
            written.exception()

    def _release_held(self) -> None:
        held, self.held = self.held, None
        for text in held or ():
            self.deliver(text)

    def _leave(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        if self.identity_bucket is not None:
            self.identity_bucket = None
            self.server.identity_buckets.release(self._identity(session))
        if session.role == "agent":
            self.chat.agent_disconnected(session)
        else:
            self.chat.guest_disconnected(session)

    def _who(self) -> tuple[str, Any]:
        return ("-", "-") if self.session is None else self._identity(self.session)

    @staticmethod
    def _identity(session: Session) -> tuple[str, int]:
        return session.role, (session.admin_id if session.role == "agent" else session.gid)


class RootSocket(ChatSocket):
    """``GET /``: a WebSocket upgrade is served as ``/ws`` is (the sheet's servers listen
    on any path); a plain request goes to the console."""

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            self.redirect("/console/")
            return
        await super().get(*args, **kwargs)


def _decode(raw: str | bytes) -> tuple[dict | None, int, str]:
    """``(frame, 200, "")`` for a JSON object, else ``(None, error code, what is wrong)``.

    A number beyond a double is a bad parameter (-10004, R3); anything else
    that is not one JSON object of Unicode text is -10001 (R1).
    """
    if isinstance(raw, bytes):
        return None, p.NOT_JSON_OBJECT, "a frame is one JSON object in a text frame"
    try:
        frame = p.decode(raw)
    except p.BadNumber as error:
        return None, p.BAD_PARAMETER, f"{error}: numbers must fit a double"
    except ValueError as error:
        return None, p.NOT_JSON_OBJECT, f"a frame is one JSON object: {error}"
    if not isinstance(frame, dict):
        return None, p.NOT_JSON_OBJECT, "a frame is one JSON object"
    return frame, 200, ""


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


class _TokenIssuer(JsonHandler):
    """Base of the endpoints that hand out tokens without one (PROTOCOL §7)."""

    def refuse(self, refused: Refused) -> None:
        if refused.retry_after is not None:
            self.set_header("Retry-After", str(refused.retry_after))
        self.answer(refused.status, refused.code, refused.message)


class LoginHandler(_TokenIssuer):
    """``POST /api/login``: an agent's username and password for an agent token."""

    async def post(self) -> None:
        body = self.body()
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            self.answer(400, p.BAD_PARAMETER, "username and password are required")
            return
        try:
            data = await self.server.accounts.sign_in(username, password,
                                                      self.request.remote_ip)
        except Refused as refused:
            self.refuse(refused)
            return
        self.answer(200, data=data)


class VisitorHandler(_TokenIssuer):
    """``POST /api/visitor``: a guest token for an anonymous visitor of a group."""

    async def post(self) -> None:
        try:
            group_id = p.integer(self.body(), "group_id")
        except ApiError as error:
            self.answer(400, error.code, error.message)
            return
        try:
            token = await self.server.accounts.visitor_token(group_id, self.request.remote_ip)
        except Refused as refused:
            self.refuse(refused)
            return
        self.answer(200, data={"token": token})


class HealthHandler(JsonHandler):
    """``GET /healthz``: ok when the database answers and, after a failed commit, can
    commit again."""

    async def get(self) -> None:
        try:
            healthy = await asyncio.wait_for(self.server.store.ping(), timeout=5)
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            healthy = False
        if not healthy:
            self.set_status(503)
            self.finish(p.encode({"status": "error"}))
            return
        self.finish(p.encode({"status": "ok"}))
