"""The chat service: every agent and guest operation of PROTOCOL §3–§5.

Handlers call these methods with a :class:`Session` and the request's
parameters; a method returns the response's ``data`` or raises
:class:`~cschat.protocol.ApiError`. Everything another connection must see
is published through the broker after the store has committed it.

Sends (:meth:`ChatService.agent_send`, :meth:`ChatService.guest_send`) are
plain functions that validate and queue their write before returning an
awaitable, so frames of one connection are committed, and pushed, in the
order they arrived (R22) even when the handler does not wait for each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from cschat import protocol as p
from cschat.auth import TokenError, Tokens, WrongRole
from cschat.availability import is_address
from cschat.broker import MemoryBroker, Subscriber, agent_channel, group_channel, guest_channel
from cschat.directory import Directory
from cschat.messages import message_info, parse_message
from cschat.metrics import Metrics
from cschat.protocol import ApiError
from cschat.reception import Reception
from cschat.routing import OFFLINE, Agent, Conversation, Routing
from cschat.store import Attachment, FileRefused, Store, now_ms
from cschat.store.conversations import ENDED_BY_AGENT, ROUTED, TRANSFERRED
from cschat.visitors import Client, login_context, public_context, visit_day

log = logging.getLogger("cschat.chat")

RECENT_MESSAGES = 20
MAX_PAGE_INDEX = 10**9  # keeps the page's offset within SQLite's 64-bit integers
MESSAGE_OVERHEAD_BYTES = 200  # a message_info's keys and numbers around its body
NAME_MAX_LENGTH = 64


@dataclasses.dataclass(eq=False)
class Session:
    """One logged-in connection."""

    ix: str
    subscriber: Subscriber
    role: str
    group_id: int
    admin_id: int | None = None
    gid: int | None = None


def _when_stored(stored: asyncio.Future, error_base: int,
                 answer: Callable[[dict, bool], dict]) -> asyncio.Future:
    """A future of ``answer(message, created)`` once ``stored`` commits.

    Runs as a callback of the store's future rather than in a Task of its
    own, which is one Task less per message on the busiest path. A refused
    file becomes the send's -x306 (or -x303 for a file of another file_type).
    """
    answered = asyncio.get_running_loop().create_future()

    def committed(future: asyncio.Future) -> None:
        try:
            answered.set_result(answer(*future.result()))
        except FileRefused as refused:
            answered.set_exception(ApiError(error_base - (3 if refused.wrong_type else 6),
                                            str(refused)))
        except Exception as error:  # noqa: BLE001 - handed to whoever awaits the answer
            answered.set_exception(error)
    stored.add_done_callback(committed)
    return answered


def _log_failure(future: asyncio.Future) -> None:
    """Log what a write nobody waits for raised."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("a background write failed: %s", future.exception())


def _within_bytes(messages: list[dict], limit: int, keep_oldest: bool) -> list[dict]:
    """As many of ``messages`` (oldest first) as fit in about ``limit`` bytes, at least one.

    Keeps the oldest when catching up (``after_id``: the client continues
    after the last one), else the newest (it scrolls up with ``before_id``).
    """
    ordered = messages if keep_oldest else messages[::-1]
    size, count = 0, 0
    for message in ordered:
        size += len(message["body"]) * 3 + MESSAGE_OVERHEAD_BYTES  # * 3: UTF-8 at worst
        if size > limit and count:
            break
        count += 1
    if count == len(messages):
        return messages
    return messages[:count] if keep_oldest else messages[len(messages) - count:]


IX_PATTERN = re.compile(r"[0-9a-f]{20}")


def new_ix() -> str:
    """A connection id: 20 hex characters (:data:`IX_PATTERN`)."""
    return secrets.token_hex(10)


class ChatService:
    """Presence, routing and messaging of one server. Start with :meth:`start`."""

    def __init__(self, store: Store, broker: MemoryBroker, tokens: Tokens, chat_settings: dict,
                 metrics: Metrics, store_ip: bool = False, mail_enabled: bool = False):
        self.store = store
        self.metrics = metrics
        self.broker = broker
        self.tokens = tokens
        self.settings = chat_settings
        self.routing = Routing(chat_settings["agent_capacity"])
        self.directory = Directory(store, broker, self.routing, self.agent_moved)
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        # Seconds between a client's heartbeats that keep it well within heartbeat_timeout
        # (R6); the login answers tell clients, so no timeout setting can make them loop.
        self.heartbeat_interval = max(1, chat_settings["heartbeat_timeout"] // 3)
        self.blocked: set[int] = set()  # guests whose messages are refused (禁言)
        self.reception: Reception  # set by the server once both exist
        self.store_ip = store_ip  # [privacy] store_ip
        self.mail_enabled = mail_enabled  # [email] smtp_host is set

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load agents and open conversations; start the timers a restart implies.

        Every agent holding conversations gets its grace period (R27) and
        every open conversation its guest's release period (R24), as if all
        connections had just closed.
        """
        await self.directory.reload()
        self.blocked = await self.store.blocked_guests()
        for row in await self.store.routing_state():
            self._restore(row)
            self._start_timer(("guest", row["gid"]), self.settings["release_after"],
                              self._release_offline_guest, row["gid"])
        for agent in self.routing.agents.values():
            if agent.gids:
                agent.in_grace = True
                self._start_timer(("agent", agent.admin_id), self.settings["agent_grace"],
                                  self._agent_gone, agent.admin_id)
        self.directory.start_polling()

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.directory.stop_polling()
        for task in list(self._tasks):
            task.cancel()

    # -- who holds a token -----------------------------------------------------------------

    async def identify_uploader(self, token: str) -> tuple[str, int, int]:
        """``(role, id, group_id)`` of an enabled agent's or guest's token, for HTTP calls.

        ``role`` is "agent" (id: admin_id) or "guest" (id: gid, the guest is
        created on first sight as at 21000). Raises :class:`TokenError` for a
        bad token, or a disabled or unknown agent or group.
        """
        try:
            claims = self.tokens.verify_agent(token)
        except TokenError as not_agent:
            agent_error = not_agent
        else:
            agent = await self.directory.known_agent(claims.admin_id)
            if agent is None or not agent.enabled:
                raise TokenError("agent unknown or disabled")
            if claims.revoked(agent.token_version):
                raise TokenError("token revoked")
            return "agent", agent.admin_id, agent.group_id
        try:
            guest = self.tokens.verify_guest(token)
        except WrongRole:
            raise agent_error from None  # say what is wrong with it as an agent's token
        if not await self.directory.group_enabled(guest.group_id):
            raise TokenError("group disabled or missing")
        row = await self.store.guest_by_uid(guest.group_id, guest.uid) or \
            await self.store.upsert_guest(guest.group_id, guest.uid, guest.name, guest.avatar)
        return "guest", row["gid"], guest.group_id

    # -- agent sessions ------------------------------------------------------------------

    async def agent_login(self, ix: str, subscriber: Subscriber,
                          params: dict) -> tuple[Session, dict]:
        """31000: verify the token, join the agent's channels, route queued guests (R14)."""
        try:
            claims = self.tokens.verify_agent(params.get("token"))
        except TokenError as error:
            raise ApiError(-31001, f"token invalid: {error}") from None
        agent = await self.directory.known_agent(claims.admin_id)
        if agent is None:
            raise ApiError(-31002, "admin_id does not exist")
        # Checked after the last await, right before the agent joins: the directory
        # may have changed while we waited.
        if not agent.account_enabled:
            raise ApiError(-31003, "agent disabled")
        if not agent.enabled:
            raise ApiError(-31004, "group disabled or missing")
        # After the checks above, so a disabled agent's old token still says why.
        if claims.revoked(agent.token_version):
            raise ApiError(-31001, "token revoked")
        if agent.connections >= self.settings["max_connections_per_agent"]:
            raise ApiError(p.RATE_LIMITED, "too many connections of this agent")
        session = Session(ix, subscriber, "agent", agent.group_id, admin_id=agent.admin_id)
        was_offline = agent.status == OFFLINE
        agent.connections += 1
        agent.ixs.append(ix)
        agent.in_grace = False
        self._cancel_timer(("agent", agent.admin_id))
        if was_offline and agent.suspended:
            agent.suspended = False
            self.spawn(self.store.set_agent_suspended(agent.admin_id, False))
        self.broker.subscribe(agent_channel(agent.admin_id), subscriber)
        self.broker.subscribe(group_channel(agent.group_id), subscriber)
        if was_offline:
            self._publish_status(agent)
        try:
            guest_list = await self._guest_list(agent.admin_id)
            admin_list = [a.info() for a in self.routing.agents_of_group(agent.group_id)]
            # Queued guests handed out now arrive as 32401 right after this answer.
            await self.drain_queue(agent.group_id)
        except BaseException:
            self.agent_disconnected(session)  # the connection never became a session
            raise
        is_refresh, refresh_token = self.tokens.refresh(claims.raw)
        # admin_id and group_id are not in the sheet; a console signed in by a
        # shop's token has no other way to learn who it is.
        return session, {"ix": ix, "admin_id": agent.admin_id, "group_id": agent.group_id,
                         "role": agent.role, "admin_list": admin_list, "guest_list": guest_list,
                         "is_refresh": is_refresh, "refresh_token": refresh_token,
                         "heartbeat_interval": self.heartbeat_interval}

    def agent_disconnected(self, session: Session) -> None:
        """Called once when a logged-in agent connection closes; starts the grace period."""
        agent = self.routing.agents[session.admin_id]
        self.broker.unsubscribe(agent_channel(agent.admin_id), session.subscriber)
        self.broker.unsubscribe(group_channel(session.group_id), session.subscriber)
        agent.connections -= 1
        agent.ixs.remove(session.ix)
        if agent.connections:
            return
        agent.in_grace = True
        grace = self.settings["agent_grace"] if agent.enabled else 0
        self._start_timer(("agent", agent.admin_id), grace, self._agent_gone, agent.admin_id)

    async def _agent_gone(self, admin_id: int) -> None:
        """R27: the grace period is over; re-route the agent's online guests, release the rest."""
        agent = self.routing.agents.get(admin_id)
        if agent is None or agent.connections:
            return
        agent.in_grace = False
        if agent.suspended:
            agent.suspended = False
            self.spawn(self.store.set_agent_suspended(admin_id, False))
        await self._hand_back(agent)

    def agent_moved(self, agent: Agent) -> None:
        """The agent now belongs to another group: its conversations stay with the old
        one (its sessions are ended by the directory), re-routed there at once."""
        self._cancel_timer(("agent", agent.admin_id))
        self.spawn(self._hand_back(agent))

    async def _hand_back(self, agent: Agent) -> None:
        """Re-route the agent's conversations whose guest is online, release the rest."""
        conversations = [self.routing.conversations[gid] for gid in sorted(agent.gids)]
        for conversation in conversations:
            if self.routing.guest_online(conversation.gid):
                self._route(conversation)
            else:
                self.routing.release(conversation)
        self._publish_status(agent)
        await self._save_and_announce(conversations)
        for conversation in conversations:
            if conversation.queued_at is not None and not conversation.queue_notified:
                self._publish_queue_position(conversation)

    def _agent(self, session: Session) -> Agent:
        return self.routing.agents[session.admin_id]

    # -- agent API -------------------------------------------------------------------------

    async def chat_list(self, session: Session, params: dict) -> dict:
        """32000: my conversations, in the sheet's block (my connection, my group's agents)."""
        return {"ix": session.ix, "guest_list": await self._guest_list(session.admin_id),
                "admin_list": [a.info() for a in self.routing.agents_of_group(session.group_id)],
                "is_refresh": 0, "refresh_token": ""}

    async def chat_content(self, session: Session, params: dict) -> dict:
        """32100: any conversation of the agent's own group."""
        gid = p.integer(params, "gid", -32101, low=1)
        group_id = p.integer(params, "group_id", -32102)
        await self._conversation_in_group(gid, group_id, session.group_id)
        return await self._history(gid, group_id, params)

    async def agent_mark_read(self, session: Session, params: dict) -> dict:
        """32200: mark the guest's messages read; the guest gets 22299."""
        gid = p.integer(params, "gid", -32201, low=1)
        group_id = p.integer(params, "group_id", -32202)
        await self._conversation_in_group(gid, group_id, session.group_id)
        last_read_id = await self.store.mark_read(gid, "agent")
        self.broker.publish(guest_channel(gid), p.push(p.PUSH_AGENT_READ,
                                                       {"last_read_id": last_read_id}))
        return {"group_id": group_id, "gid": gid}

    def agent_send(self, session: Session, params: dict) -> asyncio.Future:
        """32300: queue the message now; the future answers after its commit (R20)."""
        gid = p.integer(params, "gid", -32301, low=1)
        file_type, body = parse_message(params, -32300, self.settings["max_message_length"])
        client_msg_id = p.client_msg_id(params)
        conversation = self.routing.conversations.get(gid)
        if conversation is None or conversation.assigned != session.admin_id:
            raise ApiError(-32304, "the guest is not assigned to you")
        attachment = (Attachment(body, file_type, group_id=session.group_id)
                      if file_type in p.MEDIA_TYPES else None)
        # A guest who is away and left an address gets the replies by mail, batched.
        stored = self.store.add_message(
            gid, "agent", session.admin_id, file_type, body, client_msg_id, attachment,
            mail_if_unread=self.mail_enabled and not self.routing.guest_online(gid))
        return _when_stored(stored, -32300, lambda message, created: self._agent_sent(
            session, conversation, message, created))

    def _agent_sent(self, session: Session, conversation: Conversation, message: dict,
                    created: bool) -> dict:
        info = message_info(message, conversation.group_id)
        if created:
            self.metrics.message("agent")
            self.broker.publish(guest_channel(conversation.gid),
                                p.push(p.PUSH_AGENT_MESSAGE, {"message_info": info}))
            self.broker.publish(agent_channel(session.admin_id),
                                p.push(p.PUSH_OWN_MESSAGE,
                                       {"gid": conversation.gid, "message_info": info}),
                                exclude=session.subscriber)
        return {"gid": conversation.gid, "message_info": info}

    async def transfer(self, session: Session, params: dict) -> dict:
        """32400: hand my guest to another online agent of my group."""
        gid = p.integer(params, "gid", -32403, low=1)
        target = self._transfer_target(params.get("aix"))
        aix = target.admin_id
        if aix == session.admin_id:
            raise ApiError(-32406, "cannot transfer to yourself")
        conversation = self.routing.conversations.get(gid)
        if conversation is None or conversation.assigned != session.admin_id:
            raise ApiError(-32407, "the guest is not assigned to you")
        # 挂起 (suspended) stops new guests from routing, not a colleague's hand-over.
        if target.group_id != session.group_id or not target.connections or not target.enabled:
            raise ApiError(-32405, "target agent is not online or in another group")
        me = self._agent(session)
        self.routing.assign(conversation, target)
        note = self.system_message(
            conversation, me, f"{me.name} transferred the conversation to {target.name}",
            {"event": "transfer", "from": me.admin_id, "from_name": me.name,
             "to": aix, "to_name": target.name})
        snapshots, recorded = await asyncio.gather(
            self._save_routing([conversation], cause=TRANSFERRED), note)
        guest_info, recs = self._assignment(conversation, snapshots[gid])
        self.broker.publish(agent_channel(aix), p.push(p.PUSH_ASSIGNED,
            {"gid": gid, "guest_info": guest_info, "recs": recs, "from_aix": me.admin_id}))
        self.broker.publish(agent_channel(me.admin_id),
                            p.push(p.PUSH_TRANSFERRED, {"gid": gid, "aix": aix}))
        self.broker.publish(guest_channel(gid),
                            p.push(p.PUSH_GUEST_ASSIGNED, {"agent": target.info()}))
        self.spawn(self.drain_queue(session.group_id))
        return {"gid": gid, "aix": aix, "guest_info": guest_info, "recs": recs,
                "data": recorded}

    def _transfer_target(self, aix: Any) -> Agent:
        """The agent 32400's ``aix`` names: its admin_id, or the ``ix`` of one of its
        connections (the sheet's consoles know agents by connection)."""
        if isinstance(aix, str) and IX_PATTERN.fullmatch(aix):
            for agent in self.routing.agents.values():
                if aix in agent.ixs:
                    return agent
            raise ApiError(-32405, "no agent has that connection")
        target = self.routing.agents.get(p.integer({"aix": aix}, "aix", -32404))
        if target is None:
            raise ApiError(-32405, "target agent is not online or in another group")
        return target

    async def suspend(self, session: Session, params: dict) -> dict:
        """32500: 1 suspends (keep my chats, get no new ones), 0 resumes."""
        status = p.integer(params, "status", -32501, low=0, high=1)
        agent = self._agent(session)
        if agent.suspended != bool(status):
            await self.store.set_agent_suspended(agent.admin_id, bool(status))
            if agent.suspended != bool(status):  # unless a concurrent request did it first
                agent.suspended = bool(status)
                self._publish_status(agent)
                if not status:
                    await self.drain_queue(agent.group_id)
        return {"status": status}

    async def online_agents(self, session: Session, params: dict) -> dict:
        """33000: agents of my group that are online or suspended."""
        return {"admin_list": [a.info() for a in self.routing.agents_of_group(session.group_id)
                               if a.status != OFFLINE]}

    async def agent_typing(self, session: Session, params: dict) -> dict:
        """32600: tell my guest I am typing."""
        gid = p.integer(params, "gid", low=1)
        conversation = self.routing.conversations.get(gid)
        if conversation is None or conversation.assigned != session.admin_id:
            raise ApiError(p.BAD_PARAMETER, "the guest is not assigned to you")
        self.broker.publish(guest_channel(gid),
                            p.push(p.PUSH_AGENT_TYPING, {}))
        return {}

    async def end_conversation(self, session: Session, params: dict) -> dict:
        """32700: release my guest; its next login or message routes it again, sticky to me."""
        gid = p.integer(params, "gid", -32701, low=1)
        conversation = self.routing.conversations.get(gid)
        if conversation is None or conversation.assigned != session.admin_id:
            raise ApiError(-32702, "the guest is not assigned to you")
        me = self._agent(session)
        self.routing.release(conversation)
        await asyncio.gather(
            self._save_routing([conversation], 0, ENDED_BY_AGENT),
            self.system_message(conversation, me, f"{me.name} ended the conversation",
                                 {"event": "end", "by": me.admin_id, "by_name": me.name}))
        self.broker.publish(guest_channel(gid),
                            p.push(p.PUSH_ENDED, {"aix": me.admin_id}))
        self.spawn(self.drain_queue(session.group_id))
        return {"gid": gid}

    # -- guest sessions ----------------------------------------------------------------

    async def guest_login(self, ix: str, subscriber: Subscriber, params: dict,
                          client: Client) -> tuple[Session, dict]:
        """21000: verify the token, create the guest on first sight (R13), record what the
        visit tells of the visitor, route it (R24)."""
        try:
            claims = self.tokens.verify_guest(params.get("token"))
        except TokenError as error:
            raise ApiError(-21001, f"token invalid: {error}") from None
        if not await self.directory.group_enabled(claims.group_id):
            raise ApiError(-21004, "group disabled or missing")
        row = await self.store.guest_by_uid(claims.group_id, claims.uid)
        if (row is None or (claims.name and claims.name != row["name"])
                or (claims.avatar and claims.avatar != row["avatar"])):
            row = await self.store.upsert_guest(claims.group_id, claims.uid, claims.name,
                                                claims.avatar)
        gid = row["gid"]
        # Checked again after the awaits, right before the guest joins: the group may
        # have been disabled while we waited (R7).
        if not self.routing.groups.get(claims.group_id, False):
            raise ApiError(-21004, "group disabled or missing")
        if self.routing.guest_connections.get(gid, 0) >= \
                self.settings["max_connections_per_guest"]:
            raise ApiError(p.RATE_LIMITED, "too many connections of this guest")
        # Queued (once the login is admitted) before the routing save, so that the
        # assignment push carries this visit.
        visit = self.store.record_visit(gid, login_context(
            params, claims.raw, client, self.store_ip), visit_day())
        visit.add_done_callback(_log_failure)
        session = Session(ix, subscriber, "guest", claims.group_id, gid=gid)
        came_online = not self.routing.guest_online(gid)
        self.routing.guest_connections[gid] = self.routing.guest_connections.get(gid, 0) + 1
        self._cancel_timer(("guest", gid))
        self.broker.subscribe(guest_channel(gid), subscriber)
        conversation = self.routing.conversation(gid, claims.group_id, row["last_aix"])
        if came_online and conversation.assigned is not None:
            self._publish_guest_presence(conversation, True)
        if self._needs_routing(conversation):
            self._route(conversation)
            try:
                await self._save_and_announce([conversation])
            except BaseException:
                self.guest_disconnected(session)  # the connection never became a session
                raise
        agent = self.routing.assigned_agent(gid)
        is_refresh, refresh_token = self.tokens.refresh(claims.raw)
        context = params.get("context")
        try:
            welcome = await self.reception.welcome(
                claims.group_id, subscriber,
                context.get("language") if isinstance(context, dict) else None)
        except BaseException:
            self.guest_disconnected(session)  # the connection never became a session
            raise
        return session, {**welcome, "ix": ix, "gid": gid, "group_id": claims.group_id,
                         "agent": agent.info() if agent else None,
                         "unread": row["unread_by_guest"], "blocked": gid in self.blocked,
                         "is_refresh": is_refresh,
                         "refresh_token": refresh_token,
                         "heartbeat_interval": self.heartbeat_interval}

    def guest_disconnected(self, session: Session) -> None:
        """Called once when a logged-in guest connection closes."""
        gid = session.gid
        self.broker.unsubscribe(guest_channel(gid), session.subscriber)
        self.reception.leave(session.group_id, session.subscriber)
        remaining = self.routing.guest_connections.get(gid, 1) - 1
        if remaining:
            self.routing.guest_connections[gid] = remaining
            return
        self.routing.guest_connections.pop(gid, None)
        conversation = self.routing.conversations.get(gid)
        if conversation is not None and conversation.assigned is not None:
            self._publish_guest_presence(conversation, False)
        if conversation is not None and not conversation.engaged:
            # A visitor who left without writing holds no seat for release_after (R24).
            self.spawn(self._release_offline_guest(gid))
            return
        self.routing.forget_if_idle(gid)
        if gid in self.routing.conversations:
            self._start_timer(("guest", gid), self.settings["release_after"],
                              self._release_offline_guest, gid)

    async def _release_offline_guest(self, gid: int) -> None:
        """R24: a guest offline for ``release_after`` loses its agent.

        A queued conversation whose guest wrote something nobody has read
        stays queued: the next agent to come must see it (R23).
        """
        conversation = self.routing.conversations.get(gid)
        if conversation is None or self.routing.guest_online(gid):
            return
        if conversation.assigned is None:
            guest = await self.store.guest(gid)
            if guest is not None and guest["unread_by_agent"]:
                return
            if (self.routing.guest_online(gid) or conversation.assigned is not None
                    or self.routing.conversations.get(gid) is not conversation):
                return  # the guest came back while we read
        freed_group = conversation.group_id if conversation.assigned is not None else None
        self.routing.release(conversation)
        await self._save_routing([conversation], 0)
        if freed_group is not None:
            await self.drain_queue(freed_group)

    # -- guest API -------------------------------------------------------------------------

    async def guest_history(self, session: Session, params: dict) -> dict:
        """22100: my own conversation."""
        return await self._history(session.gid, session.group_id, params)

    async def guest_mark_read(self, session: Session, params: dict) -> dict:
        """22200: mark the agent's messages read; the assigned agent gets 32299."""
        last_read_id = await self.store.mark_read(session.gid, "guest")
        agent = self.routing.assigned_agent(session.gid)
        if agent is not None:
            self.broker.publish(agent_channel(agent.admin_id), p.push(p.PUSH_GUEST_READ,
                {"gid": session.gid, "group_id": session.group_id, "last_read_id": last_read_id}))
        return {"last_read_id": last_read_id}

    def guest_send(self, session: Session, params: dict) -> asyncio.Future:
        """22300: queue the message now, routing the guest first if it has no agent."""
        if session.gid in self.blocked:
            raise ApiError(-22307, "you cannot send messages in this chat")
        file_type, body = parse_message(params, -22300, self.settings["max_message_length"])
        client_msg_id = p.client_msg_id(params)
        conversation = self._route_for_message(session)
        attachment = (Attachment(body, file_type, guest_gid=session.gid)
                      if file_type in p.MEDIA_TYPES else None)
        stored = self.store.add_message(session.gid, "guest", None, file_type, body,
                                        client_msg_id, attachment)
        return _when_stored(stored, -22300, lambda message, created: self._guest_sent(
            session, conversation, message, created))

    def guest_leave_message(self, session: Session, params: dict) -> asyncio.Future:
        """22900: the away form — the visitor's name, e-mail and message. The message is
        a normal one (it waits in the queue); the shop is mailed."""
        if session.gid in self.blocked:
            raise ApiError(-22307, "you cannot send messages in this chat")
        name = params.get("name", "")
        if not isinstance(name, str) or len(name.strip()) > NAME_MAX_LENGTH or \
                not name.isprintable():
            raise ApiError(-22901, f"name must be one line of at most {NAME_MAX_LENGTH} "
                                   "characters")
        address = params.get("email")
        if not isinstance(address, str) or not is_address(address.strip()):
            raise ApiError(-22902, "email must be an e-mail address")
        _, body = parse_message({"msg": params.get("msg")}, -22300,
                                self.settings["max_message_length"])
        conversation = self._route_for_message(session)
        stored = self.store.leave_message(session.gid, name.strip(), address.strip(), body,
                                          p.client_msg_id(params), self.mail_enabled)
        # No automatic away reply: the visitor has just done what it would ask for.
        return _when_stored(stored, -22300, lambda message, created: self._guest_sent(
            session, conversation, message, created, auto_reply=False))

    def _route_for_message(self, session: Session) -> Conversation:
        """The guest's conversation, routed first if it has no agent (R24)."""
        conversation = self.routing.conversation(session.gid, session.group_id)
        if self._needs_routing(conversation):
            self._route(conversation)
            # Announced from its own commit, so a message refused later (an unusable
            # file) cannot leave an assignment nobody was told of.
            self._save_routing([conversation]).add_done_callback(
                lambda saved: saved.exception() or self._announce([conversation], saved.result()))
        return conversation

    def _guest_sent(self, session: Session, conversation: Conversation, message: dict,
                    created: bool, auto_reply: bool = True) -> dict:
        info = message_info(message, session.group_id)
        if not conversation.engaged and self.routing.conversations.get(session.gid) is \
                conversation:
            self.routing.engage(conversation)
        if created:
            self.metrics.message("guest")
            if auto_reply and message.get("started_conversation"):
                self.reception.after_first_message(conversation)
            agent = self.routing.assigned_agent(session.gid)
            if agent is not None:
                self.broker.publish(agent_channel(agent.admin_id), p.push(p.PUSH_GUEST_MESSAGE,
                    {"gid": session.gid, "group_id": session.group_id, "message_info": info}))
            elif conversation.queued_at is not None and not conversation.queue_notified:
                self._publish_queue_position(conversation)
            # The guest's other tabs see their own message as the agent's tabs do (32398).
            self.broker.publish(guest_channel(session.gid),
                                p.push(p.PUSH_AGENT_MESSAGE, {"message_info": info}),
                                exclude=session.subscriber)
        return {"message_info": info}

    async def guest_typing(self, session: Session, params: dict) -> dict:
        """22600: tell my agent I am typing."""
        agent = self.routing.assigned_agent(session.gid)
        if agent is not None:
            self.broker.publish(agent_channel(agent.admin_id),
                                p.push(p.PUSH_GUEST_TYPING, {"gid": session.gid}))
        return {}

    # -- routing ---------------------------------------------------------------------------

    def _needs_routing(self, conversation: Conversation) -> bool:
        """True unless the guest has an assigned agent that is still present (R24)."""
        agent = self.routing.assigned_agent(conversation.gid)
        return agent is None or agent.status == OFFLINE or not agent.enabled

    def _route(self, conversation: Conversation) -> None:
        """Assign to the agent R24 picks, or queue; the caller saves and announces."""
        # Outside business hours nobody takes new conversations: they wait in the queue.
        agent = self.routing.pick_agent(conversation.group_id, conversation.last_aix) \
            if self.reception.is_open(conversation.group_id) else None
        if agent is not None:
            self.routing.assign(conversation, agent)
        else:
            self.routing.enqueue(conversation, now_ms())

    async def drain_queue(self, group_id: int) -> None:
        """Give queued conversations, oldest first, to agents with room (within business
        hours)."""
        if not self.reception.is_open(group_id):
            return
        assigned = []
        for conversation in self.routing.queued(group_id):
            # No break on a miss: a later guest's own last agent may still take it (R24).
            agent = self.routing.pick_agent(group_id, conversation.last_aix)
            if agent is not None:
                self.routing.assign(conversation, agent)
                assigned.append(conversation)
        if assigned:
            await self._save_and_announce(assigned)

    async def _save_and_announce(self, conversations: list[Conversation]) -> None:
        self._announce(conversations, await self._save_routing(conversations))

    def _save_routing(self, conversations: list[Conversation], recent: int = RECENT_MESSAGES,
                      cause: str = ROUTED) -> asyncio.Future:
        """Commit the routing state of ``conversations`` (see :meth:`Store.save_routing`).

        Routing decides in memory first, so that no await splits a decision
        from its effect. Should the commit fail, each conversation that no
        later change has touched is put back as the database still has it:
        memory and database never disagree for long.
        """
        rows = [c.row() for c in conversations]
        saved = self.store.save_routing(rows, recent, cause)

        def undo_if_failed(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.spawn(self._undo_routing(rows))
        saved.add_done_callback(undo_if_failed)
        return saved

    async def _undo_routing(self, rows: list[tuple]) -> None:
        stored = {row["gid"]: row for row in
                  await self.store.routing_state([row[0] for row in rows])}
        for attempted in rows:
            gid = attempted[0]
            conversation = self.routing.conversations.get(gid)
            untouched = (conversation.row() == attempted if conversation is not None
                         else attempted[1] is None and attempted[3] is None)
            if untouched and gid in stored:
                log.warning("routing of guest %d was not saved; back to what is stored", gid)
                self._restore(stored[gid])

    def _restore(self, row: dict) -> Conversation:
        return self.routing.restore(row["gid"], row["group_id"], row["assigned_aix"],
                                    row["last_aix"], row["queued_at"], bool(row["engaged"]))

    def _announce(self, conversations: list[Conversation], snapshots: dict) -> None:
        """Push 32401 and 22401 for each conversation that the saved change assigned."""
        for conversation in conversations:
            agent = self.routing.assigned_agent(conversation.gid)
            if agent is None or conversation.gid not in snapshots:
                continue
            guest_info, recs = self._assignment(conversation, snapshots[conversation.gid])
            if not self.routing.guest_online(conversation.gid):
                # A waiting conversation handed out while its guest is away is
                # released like any other once the guest has been away long enough.
                self._start_timer(("guest", conversation.gid), self.settings["release_after"],
                                  self._release_offline_guest, conversation.gid)
            self.broker.publish(agent_channel(agent.admin_id), p.push(p.PUSH_ASSIGNED,
                {"gid": conversation.gid, "guest_info": guest_info, "recs": recs,
                 "from_aix": None}))
            self.broker.publish(guest_channel(conversation.gid),
                                p.push(p.PUSH_GUEST_ASSIGNED, {"agent": agent.info()}))

    def _assignment(self, conversation: Conversation, snapshot: tuple) -> tuple[dict, list]:
        guest, recent = snapshot
        return (self._guest_info(guest),
                [message_info(m, conversation.group_id) for m in recent])

    # -- helpers ---------------------------------------------------------------------------

    def system_message(self, conversation: Conversation, agent: Agent | None, text: str,
                        event: dict) -> Awaitable[dict]:
        """Record ``text`` (English) and ``event`` (its machine code and parameters, for
        other languages) in the conversation, by ``agent`` (None: by cschat itself);
        show it to the guest once committed.

        The awaitable returns the message_info.
        """
        stored = self.store.add_message(conversation.gid, "system",
                                        agent.admin_id if agent else None, p.TEXT, text, None,
                                        event=p.encode(event))

        async def publish() -> dict:
            message, _ = await stored
            self.metrics.message("system")
            info = message_info(message, conversation.group_id)
            self.broker.publish(guest_channel(conversation.gid),
                                p.push(p.PUSH_AGENT_MESSAGE, {"message_info": info}))
            return info
        return publish()

    async def _guest_list(self, admin_id: int) -> list[dict]:
        return [self._guest_info(row) for row in await self.store.conversations(
            assigned_to=admin_id)]

    def _guest_info(self, row: dict) -> dict:
        conversation = self.routing.conversations.get(row["gid"])
        last = row["last_message"]
        return {"gid": row["gid"], "group_id": row["group_id"], "name": row["name"],
                "avatar": row["avatar"], "online": self.routing.guest_online(row["gid"]),
                "unread": row["unread_by_agent"],
                "aix": conversation.assigned if conversation else None,
                "last_message": message_info(last, row["group_id"]) if last else None,
                "updated_at": row["updated_at"],
                "context": public_context(row["context"], row["created_at"], row["visits"]),
                "conversation_id": row["conversation_id"], "tags": json.loads(row["tags"]),
                "blocked": row["blocked_at"] is not None,
                "left_message": bool(row["left_message"])}

    async def _conversation_in_group(self, gid: int, group_id: int, my_group: int) -> None:
        if group_id != my_group:
            raise ApiError(-32103, "no such conversation in your group")
        conversation = self.routing.conversations.get(gid)
        if conversation is not None:
            if conversation.group_id == my_group:
                return
        else:
            guest = await self.store.guest(gid)
            if guest is not None and guest["group_id"] == my_group:
                return
        raise ApiError(-32103, "no such conversation in your group")

    async def _history(self, gid: int, group_id: int, params: dict) -> dict:
        page_index = p.integer(params, "page_index", default=1, low=1, high=MAX_PAGE_INDEX)
        page_size = p.integer(params, "page_size", default=10, low=1, high=100)
        before_id = p.optional_integer(params, "before_id")
        after_id = p.optional_integer(params, "after_id")
        messages, total = await self.store.history(gid, page_index, page_size, before_id,
                                                   after_id)
        kept = _within_bytes(messages, self.settings["max_history_bytes"],
                             keep_oldest=after_id is not None)
        return {"gid": gid, "group_id": group_id, "list": [message_info(m, group_id) for m in kept],
                "page_index": page_index, "page_size": page_size, "total": total,
                "truncated": len(kept) < len(messages)}

    def _publish_queue_position(self, conversation: Conversation) -> None:
        """22098 to a waiting guest, once per waiting period."""
        conversation.queue_notified = True
        self.broker.publish(guest_channel(conversation.gid), p.push(p.PUSH_QUEUED,
            {"queue_position": self.routing.queue_position(conversation)}))

    def _publish_status(self, agent: Agent) -> None:
        self.broker.publish(group_channel(agent.group_id),
                            p.push(p.PUSH_AGENT_STATUS, agent.info()))

    def _publish_guest_presence(self, conversation: Conversation, online: bool) -> None:
        self.broker.publish(agent_channel(conversation.assigned), p.push(p.PUSH_GUEST_ONLINE,
            {"gid": conversation.gid, "group_id": conversation.group_id, "online": online}))

    # -- timers and background work ----------------------------------------------------------

    def _start_timer(self, key: Hashable, seconds: float,
                     action: Callable[[Any], Awaitable], arg: Any) -> None:
        self._cancel_timer(key)

        def fire():
            self._timers.pop(key, None)
            self.spawn(action(arg))
        self._timers[key] = asyncio.get_running_loop().call_later(seconds, fire)

    def _cancel_timer(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def spawn(self, work: Awaitable) -> None:
        """Run ``work`` in the background; what it raises is logged."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())
