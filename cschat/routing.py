"""Who is present and who talks to whom: the in-memory side of routing (PROTOCOL R24, R27).

Plain state, no I/O and no awaits, so every decision and its effect on the
state happen in one step of the event loop. The chat service persists the
changes this module reports and publishes the pushes they cause.
"""

from __future__ import annotations

import dataclasses
import time

ONLINE, SUSPENDED, OFFLINE = "online", "suspended", "offline"


@dataclasses.dataclass(eq=False)
class Agent:
    admin_id: int
    group_id: int
    name: str
    avatar: str
    enabled: bool = True  # the agent's account and its group are both enabled
    account_enabled: bool = True
    token_version: int = 0
    role: str = "agent"  # or "admin"; as the database had it at the last reload
    connections: int = 0
    ixs: list[str] = dataclasses.field(default_factory=list)  # live connections, oldest first
    in_grace: bool = False
    suspended: bool = False
    idle_since: float = 0.0
    gids: set[int] = dataclasses.field(default_factory=set)
    engaged: set[int] = dataclasses.field(default_factory=set)

    @property
    def load(self) -> int:
        """Assigned conversations in which the guest has written: what capacity counts.

        A visitor who opened the widget and said nothing takes no seat, so a
        few silent visitors cannot keep a real customer waiting.
        """
        return len(self.engaged)

    @property
    def status(self) -> str:
        if not self.connections and not self.in_grace:
            return OFFLINE
        return SUSPENDED if self.suspended else ONLINE

    @property
    def takes_guests(self) -> bool:
        """Connected right now, enabled and not suspended: routing may pick it."""
        return self.connections > 0 and self.enabled and not self.suspended

    def info(self) -> dict:
        """agent_info of PROTOCOL §3."""
        return {"aix": self.admin_id, "admin_id": self.admin_id, "name": self.name,
                "avatar": self.avatar, "group_id": self.group_id, "status": self.status,
                "load": self.load, "ix": self.ixs[-1] if self.ixs else ""}


@dataclasses.dataclass(eq=False)
class Conversation:
    """A conversation that is assigned to an agent or waiting in its group's queue."""

    gid: int
    group_id: int
    assigned: int | None = None
    last_aix: int | None = None
    queued_at: int | None = None
    queue_notified: bool = False
    engaged: bool = False  # the guest wrote since it was last routed

    def row(self) -> tuple[int, int | None, int | None, int | None, bool]:
        """The ``(gid, assigned_aix, last_aix, queued_at, engaged)`` row the store keeps."""
        return (self.gid, self.assigned, self.last_aix, self.queued_at, self.engaged)


class Routing:
    """Agents, guests' presence, assignments and queues of the whole server."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.agents: dict[int, Agent] = {}
        self.conversations: dict[int, Conversation] = {}
        self.queues: dict[int, dict[int, None]] = {}
        self.guest_connections: dict[int, int] = {}
        self.groups: dict[int, bool] = {}  # group_id → enabled

    # -- agents ------------------------------------------------------------------------

    def agents_of_group(self, group_id: int) -> list[Agent]:
        return sorted((a for a in self.agents.values() if a.group_id == group_id),
                      key=lambda a: a.admin_id)

    def pick_agent(self, group_id: int, last_aix: int | None) -> Agent | None:
        """The agent R24 gives a guest: sticky first, else least loaded below capacity.

        The sticky agent is taken whenever it is online and not suspended,
        whatever its load: the contract puts continuity first there.
        """
        sticky = self.agents.get(last_aix) if last_aix is not None else None
        if sticky is not None and sticky.group_id == group_id and sticky.takes_guests:
            return sticky
        candidates = [a for a in self.agents.values()
                      if a.group_id == group_id and a.takes_guests and a.load < self.capacity]
        if not candidates:
            return None
        return min(candidates, key=lambda a: (a.load, a.idle_since, a.admin_id))

    # -- conversations -------------------------------------------------------------------

    def conversation(self, gid: int, group_id: int, last_aix: int | None = None) -> Conversation:
        """The routing record of ``gid``, created unassigned if it has none."""
        conversation = self.conversations.get(gid)
        if conversation is None:
            conversation = Conversation(gid, group_id, last_aix=last_aix)
            self.conversations[gid] = conversation
        return conversation

    def assigned_agent(self, gid: int) -> Agent | None:
        conversation = self.conversations.get(gid)
        if conversation is None or conversation.assigned is None:
            return None
        return self.agents.get(conversation.assigned)

    def assign(self, conversation: Conversation, agent: Agent) -> None:
        self._leave_queue(conversation)
        self._unassign(conversation)
        conversation.assigned = agent.admin_id
        conversation.last_aix = agent.admin_id
        agent.gids.add(conversation.gid)
        if conversation.engaged:
            agent.engaged.add(conversation.gid)
        agent.idle_since = time.monotonic()

    def engage(self, conversation: Conversation) -> None:
        """The guest wrote: from now on the conversation counts toward its agent's load."""
        conversation.engaged = True
        agent = self.agents.get(conversation.assigned)
        if agent is not None:
            agent.engaged.add(conversation.gid)

    def enqueue(self, conversation: Conversation, now_ms: int) -> None:
        """Put an unassigned (or no longer assigned) conversation at the end of its queue."""
        self._unassign(conversation)
        if conversation.queued_at is None:
            conversation.queued_at = now_ms
            conversation.queue_notified = False
            self.queues.setdefault(conversation.group_id, {})[conversation.gid] = None

    def release(self, conversation: Conversation) -> None:
        """Unassign and unqueue, keeping ``last_aix`` for the next routing."""
        self._leave_queue(conversation)
        self._unassign(conversation)
        conversation.engaged = False
        self.forget_if_idle(conversation.gid)

    def forget_if_idle(self, gid: int) -> None:
        """Drop the record of an unassigned, unqueued conversation whose guest is offline."""
        conversation = self.conversations.get(gid)
        if (conversation is not None and conversation.assigned is None
                and conversation.queued_at is None and not self.guest_online(gid)):
            del self.conversations[gid]

    def queue_position(self, conversation: Conversation) -> int:
        """1 for the oldest waiting conversation of the group."""
        for position, gid in enumerate(self.queues.get(conversation.group_id, ()), start=1):
            if gid == conversation.gid:
                return position
        return 0

    def queued(self, group_id: int) -> list[Conversation]:
        return [self.conversations[gid] for gid in self.queues.get(group_id, ())]

    def _leave_queue(self, conversation: Conversation) -> None:
        if conversation.queued_at is not None:
            self.queues.get(conversation.group_id, {}).pop(conversation.gid, None)
            conversation.queued_at = None

    def _unassign(self, conversation: Conversation) -> None:
        if conversation.assigned is not None:
            agent = self.agents.get(conversation.assigned)
            if agent is not None:
                agent.gids.discard(conversation.gid)
                agent.engaged.discard(conversation.gid)
            conversation.assigned = None

    # -- guests' presence ------------------------------------------------------------------

    def guest_online(self, gid: int) -> bool:
        return self.guest_connections.get(gid, 0) > 0

    # -- restoring what the database holds -------------------------------------------------

    def restore(self, gid: int, group_id: int, assigned: int | None, last_aix: int | None,
                queued_at: int | None, engaged: bool) -> Conversation:
        """Make the routing record of ``gid`` what the database says (at start, or after
        a change to it failed to commit)."""
        conversation = self.conversation(gid, group_id, last_aix)
        self._leave_queue(conversation)
        self._unassign(conversation)
        conversation.last_aix = last_aix
        conversation.engaged = engaged
        agent = self.agents.get(assigned) if assigned is not None else None
        if agent is not None:
            self.assign(conversation, agent)
        elif queued_at is not None:
            self.enqueue(conversation, queued_at)
        else:
            self.forget_if_idle(gid)
        return conversation
