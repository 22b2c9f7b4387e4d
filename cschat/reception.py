"""What a visitor meets when nobody can answer, and after the chat (docs/protocol.md §4,
"Availability"): each group's availability pushed as it changes, the greeting, the
automatic reply when a conversation starts while busy or away, and ratings.

The group settings (business hours and texts) are kept in memory, loaded at
start and replaced by :meth:`Reception.set_group_settings` after an admin
saved them.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import statistics
import time
from typing import TYPE_CHECKING

from cschat import protocol as p
from cschat.availability import (
    AWAY,
    BUSY,
    DEFAULT_SETTINGS,
    availability,
    is_address,
    is_open,
    text_for,
)
from cschat.broker import MemoryBroker, Subscriber, agent_channel, visitors_channel
from cschat.protocol import ApiError
from cschat.store import Conflict, Store

if TYPE_CHECKING:
    from cschat.chat import ChatService, Session
    from cschat.routing import Conversation

log = logging.getLogger("cschat.reception")

WATCH_SECONDS = 1.0
WAIT_WINDOW_MS = 24 * 3600 * 1000  # first responses this recent estimate the wait
WAIT_REFRESH_SECONDS = 60
MAX_COMMENT = 1000
PUSH_AVAILABILITY = 22095
PUSH_RATED = 32951


class Reception:
    """Availability, greetings, automatic replies and ratings of one server."""

    def __init__(self, store: Store, broker: MemoryBroker, chat: ChatService,
                 queue_alert_seconds: int):
        self.store, self.broker, self.chat = store, broker, chat
        self.queue_alert_ms = queue_alert_seconds * 1000
        self._alerted: set[int] = set()  # guests whose long wait the shop was mailed about
        self.group_settings: dict[int, dict] = {}
        self._announced: dict[int, str] = {}  # group → availability last pushed
        self._open: dict[int, bool] = {}  # group → within business hours at the last look
        self._waits: dict[int, tuple[float, int | None]] = {}  # group → (when, seconds)
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        self.group_settings = await self.store.all_group_settings()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    def settings_of(self, group_id: int) -> dict:
        return self.group_settings.get(group_id, DEFAULT_SETTINGS)

    def set_group_settings(self, group_id: int, settings: dict) -> None:
        """Take in settings an admin saved; the change of availability goes out at once."""
        self.group_settings[group_id] = settings
        self._announce(group_id)

    def is_open(self, group_id: int) -> bool:
        """Within the group's business hours now."""
        return is_open(self.settings_of(group_id), datetime.datetime.now(datetime.UTC))

    def availability(self, group_id: int) -> str:
        return availability(self.chat.routing, group_id, self.settings_of(group_id),
                            datetime.datetime.now(datetime.UTC))

    # -- a visitor's login ---------------------------------------------------------------

    async def welcome(self, group_id: int, subscriber: Subscriber, language: str | None
                      ) -> dict:
        """What 21000 adds for a guest: ``availability``, ``expected_wait`` and the
        ``greeting`` in its language; the connection then gets 22095 on changes."""
        self.broker.subscribe(visitors_channel(group_id), subscriber)
        state = self.availability(group_id)
        # What this guest was told: a later change is pushed against it.
        self._announced.setdefault(group_id, state)
        return {"availability": state,
                "expected_wait": await self._expected_wait(group_id) if state == BUSY else None,
                "greeting": text_for(self.settings_of(group_id), "greeting", language)}

    def leave(self, group_id: int, subscriber: Subscriber) -> None:
        self.broker.unsubscribe(visitors_channel(group_id), subscriber)

    async def _expected_wait(self, group_id: int) -> int | None:
        """Seconds a guest may expect to wait: the median first response of the last
        day's conversations (refreshed once a minute), or None without any."""
        checked, seconds = self._waits.get(group_id, (0.0, None))
        if time.monotonic() - checked > WAIT_REFRESH_SECONDS:
            responses = await self.store.recent_first_responses(
                group_id, int(time.time() * 1000) - WAIT_WINDOW_MS)
            seconds = round(statistics.median(responses) / 1000) if responses else None
            self._waits[group_id] = (time.monotonic(), seconds)
        return seconds

    # -- changes of availability -------------------------------------------------------------

    async def _watch(self) -> None:
        """Push 22095 to a group's visitors when its availability changes: agents come
        and go, fill up, and business hours open and close."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            for group_id in list(self.chat.routing.groups):
                try:
                    self._announce(group_id)
                except Exception:  # noqa: BLE001 - one group must not stop the others
                    log.exception("availability of group %d", group_id)
            if self.chat.mail_enabled:
                self._alert_long_waits()

    def _alert_long_waits(self) -> None:
        """Mail the shop about conversations waiting in a queue past ``queue_alert_seconds``
        (once each: the database remembers it across restarts)."""
        now = time.time() * 1000
        waiting = {c.gid for group_id in self.chat.routing.queues
                   for c in self.chat.routing.queued(group_id)
                   if c.engaged and now - c.queued_at > self.queue_alert_ms}
        self._alerted &= waiting
        for gid in waiting - self._alerted:
            self._alerted.add(gid)  # while the write is under way, and after it succeeded
            self.chat.spawn(self._alert(gid))

    async def _alert(self, gid: int) -> None:
        try:
            await self.store.alert_long_wait(gid)
        except Exception:
            self._alerted.discard(gid)  # the next round tries again
            raise

    def _announce(self, group_id: int) -> None:
        opened = self.is_open(group_id)
        if opened and not self._open.get(group_id, True):
            self.chat.spawn(self.chat.drain_queue(group_id))  # those who waited go first
        self._open[group_id] = opened
        state = self.availability(group_id)
        if self._announced.get(group_id, state) != state:
            self.chat.spawn(self._publish(group_id, state))
        self._announced[group_id] = state

    async def _publish(self, group_id: int, state: str) -> None:
        wait = await self._expected_wait(group_id) if state == BUSY else None
        self.broker.publish(visitors_channel(group_id), p.push(PUSH_AVAILABILITY, {
            "availability": state, "expected_wait": wait}))

    # -- automatic replies -----------------------------------------------------------------

    def after_first_message(self, conversation: Conversation) -> None:
        """A guest started a conversation: if it waits in the queue, answer it at once
        with the group's busy or away text (a system message with its code)."""
        if conversation.queued_at is None:
            return
        state = self.availability(conversation.group_id)
        kind = "away_reply" if state == AWAY else "busy_reply"
        settings = self.settings_of(conversation.group_id)
        event = {"event": "away" if kind == "away_reply" else "busy",
                 "text": settings[kind] or None,
                 "queue_position": self.chat.routing.queue_position(conversation)}
        english = text_for(settings, kind, "en") or (
            "Nobody can answer right now; leave your message and e-mail and we will reply."
            if kind == "away_reply" else
            f"All our agents are busy; you are number {event['queue_position']} in line.")
        self.chat.spawn(self.chat.system_message(conversation, None, english, event))

    # -- transcripts --------------------------------------------------------------------------

    async def transcript(self, session: Session, params: dict) -> dict:
        """22960: mail me the transcript of my conversation (to ``email``, else to the
        address I left)."""
        if not self.chat.mail_enabled:
            raise ApiError(-22962, "this shop does not send e-mail")
        address = params.get("email")
        if address is not None and (not isinstance(address, str)
                                    or not is_address(address.strip())):
            raise ApiError(-22902, "email must be an e-mail address")
        try:
            sent_to = await self.store.request_transcript(session.gid,
                                                          address.strip() if address else None)
        except Conflict as refused:
            raise ApiError(-22963, f"not now: {refused}") from None
        if sent_to is None:
            raise ApiError(-22961, "no conversation yet, or no address to send it to")
        return {"email": sent_to}

    # -- ratings -------------------------------------------------------------------------------

    async def rate(self, session: Session, params: dict) -> dict:
        """22950: rate my last conversation, 1 to 5, with an optional comment; its agent
        gets 32951."""
        rating = p.integer(params, "rating", -22951, low=1, high=5)
        comment = params.get("comment", "")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise ApiError(-22952, f"comment must be text of at most {MAX_COMMENT} characters")
        rated = await self.store.rate(session.gid, rating, comment.strip() or None)
        if rated is None:
            raise ApiError(-22953, "there is no conversation to rate yet")
        if rated["admin_id"] is not None:
            self.broker.publish(agent_channel(rated["admin_id"]), p.push(PUSH_RATED, {
                "gid": session.gid, "conversation_id": rated["conversation_id"],
                "rating": rating, "comment": rated["rating_comment"]}))
        return {"conversation_id": rated["conversation_id"], "rating": rating}
