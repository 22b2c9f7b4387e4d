"""The delivery seam: services publish frames to channels after their commit.

A channel names who should get a frame: ``agent_channel(admin_id)`` (every
connection of one agent), ``guest_channel(gid)`` (every connection of one
guest) and ``group_channel(group_id)`` (every agent connection of a group).
:class:`MemoryBroker` delivers within this process; a broker for several
processes would implement the same three calls over a message bus.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from cschat.protocol import encode


class Subscriber(Protocol):
    """One connection, as the broker sees it."""

    def deliver(self, text: str) -> None:
        """Send one encoded frame; never raises, never blocks."""

    def end(self, text: str) -> None:
        """Send one last encoded frame, then close the connection."""


def agent_channel(admin_id: int) -> Hashable:
    return ("agent", admin_id)


def guest_channel(gid: int) -> Hashable:
    return ("guest", gid)


def group_channel(group_id: int) -> Hashable:
    return ("group", group_id)


def visitors_channel(group_id: int) -> Hashable:
    """Every guest connection of a group (for its availability)."""
    return ("visitors", group_id)


class MemoryBroker:
    """In-process delivery: a dict of channel → subscribers, in subscription order."""

    def __init__(self) -> None:
        self._channels: dict[Hashable, dict[Subscriber, None]] = {}

    def subscribe(self, channel: Hashable, subscriber: Subscriber) -> None:
        self._channels.setdefault(channel, {})[subscriber] = None

    def unsubscribe(self, channel: Hashable, subscriber: Subscriber) -> None:
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            subscribers.pop(subscriber, None)
            if not subscribers:
                del self._channels[channel]

    def publish(self, channel: Hashable, frame: dict, exclude: Subscriber | None = None) -> None:
        """Deliver ``frame`` to every subscriber of ``channel`` except ``exclude``.

        Frames published to one channel reach each subscriber in publish order.
        """
        subscribers = self._channels.get(channel)
        if not subscribers or (exclude is not None and len(subscribers) == 1
                               and exclude in subscribers):
            return
        text = encode(frame)
        for subscriber in list(subscribers):
            if subscriber is not exclude:
                subscriber.deliver(text)

    def end_sessions(self, channel: Hashable, frame: dict) -> None:
        """Send ``frame`` to every subscriber of ``channel``, then close each one."""
        text = encode(frame)
        for subscriber in list(self._channels.get(channel, ())):
            subscriber.end(text)
