"""Groups and agents as the running server knows them: kept in memory, and taken in
again from the database when they change (the admin API at once, the ``cschat``
command within :data:`POLL_SECONDS`).

A login checks this state right before it registers, after its last await;
:meth:`Directory.reload` changes it in one step of the event loop, so no login
slips in between a change and its effect (R7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cschat import protocol as p
from cschat.broker import MemoryBroker, agent_channel, guest_channel
from cschat.routing import Agent, Routing
from cschat.store import Store

log = logging.getLogger("cschat.directory")

POLL_SECONDS = 1.0


class Directory:
    """The groups and agents of :class:`~cschat.routing.Routing`, kept in step with the
    database."""

    def __init__(self, store: Store, broker: MemoryBroker, routing: Routing,
                 on_moved: Callable[[Agent], None]):
        """``on_moved(agent)`` is called when an agent holding conversations has moved
        to another group."""
        self.store, self.broker, self.routing = store, broker, routing
        self._on_moved = on_moved
        self.version = -1  # the database's directory_version last taken in
        self._poller: asyncio.Task | None = None

    def start_polling(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    async def known_agent(self, admin_id: int) -> Agent | None:
        """The agent ``admin_id``; one we do not know or have as disabled is looked up
        again first, so an agent the CLI just added or enabled need not wait for the poll."""
        agent = self.routing.agents.get(admin_id)
        if agent is None or not agent.enabled:
            await self.refresh()
        return self.routing.agents.get(admin_id)

    async def group_enabled(self, group_id: int) -> bool:
        """Whether ``group_id`` exists and is enabled (looked up again as for agents)."""
        if not self.routing.groups.get(group_id, False):
            await self.refresh()
        return self.routing.groups.get(group_id, False)

    async def refresh(self) -> None:
        """Take in changes to groups and agents now, if there are any; the admin API calls
        this after each change so that it takes effect at once."""
        if await self.store.directory_version() != self.version:
            await self.reload()

    async def _poll(self) -> None:
        """Notice changes the ``cschat`` command makes to groups and agents while we run."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - keep polling; the next round may succeed
                log.exception("reloading agents and groups failed")

    async def reload(self) -> None:
        """Take in agents and groups; end the sessions of what was disabled (R7), and of
        agents whose tokens were revoked (a new password, "sign out everywhere")."""
        version, groups, agents = await self.store.directory()
        # Everything below happens in one step: logins check this state right
        # before they register, so none can slip in between.
        self.version = version
        self.routing.groups = {g["id"]: bool(g["enabled"]) for g in groups}
        for row in agents:
            agent = self.routing.agents.get(row["id"])
            if agent is None:
                agent = Agent(row["id"], row["group_id"], row["name"], row["avatar"],
                              suspended=bool(row["suspended"]))
                self.routing.agents[agent.admin_id] = agent
            revoked = row["token_version"] != agent.token_version
            moved = row["group_id"] != agent.group_id
            agent.group_id, agent.name, agent.avatar = row["group_id"], row["name"], row["avatar"]
            agent.account_enabled = bool(row["enabled"])
            agent.enabled = agent.account_enabled and self.routing.groups.get(agent.group_id,
                                                                              False)
            agent.token_version = row["token_version"]
            agent.role = row["role"]
            if agent.connections and (not agent.enabled or revoked):
                self.broker.end_sessions(agent_channel(agent.admin_id), p.session_ended(
                    p.AGENT_LOGIN, "signed out" if agent.enabled else "agent or group disabled"))
            if moved and agent.gids:
                self._on_moved(agent)
        for gid, conversation in list(self.routing.conversations.items()):
            if not self.routing.groups.get(conversation.group_id, False) and \
                    self.routing.guest_online(gid):
                self.broker.end_sessions(guest_channel(gid), p.session_ended(
                    p.GUEST_LOGIN, "group disabled"))
