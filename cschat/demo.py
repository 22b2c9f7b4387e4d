"""``cschat run --demo``: a demo group with two agents, for a first look in a minute.

The demo agents' passwords are printed, so they live only as long as a run
with ``--demo``: ``cschat run`` without it removes them (:func:`retire_demo`).
"""

from __future__ import annotations

import dataclasses
import json
import secrets

from cschat.auth import hash_password
from cschat.store import DEMO, Conflict, Store

# (name, username, role): Alice may also manage the installation (the console's Settings).
DEMO_AGENTS = (("Alice", "alice", "admin"), ("Bob", "bob", "agent"))


@dataclasses.dataclass
class Demo:
    group_id: int
    credentials: list[tuple[str, str]]  # (username, password)


async def prepare_demo(store: Store) -> Demo:
    """Create the demo group and agents once; give the agents fresh passwords each run.

    Passwords are random and printed, never fixed, so a demo left running on a
    reachable address is not open to anyone who read this code.
    """
    group = await store.meta("demo_group")
    if group is None or await store.group(int(group)) is None:
        group_id = await store.add_group("Demo shop", DEMO)
        agents = []
        for name, username, role in DEMO_AGENTS:
            try:
                agents.append(await store.add_agent(group_id, name, "", username, None, role,
                                                    DEMO))
            except Conflict:  # the username belongs to a real agent already
                agents.append(await store.add_agent(
                    group_id, name, "", f"{username}-demo{group_id}", None, role, DEMO))
        await store.set_meta("demo_agents", json.dumps(agents))
        await store.set_meta("demo_group", str(group_id))
    else:
        group_id = int(group)
    await store.set_group_enabled(group_id, True, DEMO)
    credentials = []
    listed = {a["admin_id"]: a for a in await store.list_agents()}
    demo_agents = json.loads(await store.meta("demo_agents") or "[]")
    for admin_id, (_, _, role) in zip(demo_agents, DEMO_AGENTS, strict=False):
        if admin_id in listed:
            password = secrets.token_urlsafe(9)
            # A demo restarted with --demo keeps its consoles signed in (only the
            # printed passwords are new); a run without --demo revokes them.
            await store.set_agent_password(admin_id, hash_password(password), revoke=False,
                                           actor=DEMO)
            await store.update_agent(admin_id, {"enabled": 1, "role": role}, DEMO)
            credentials.append((listed[admin_id]["username"], password))
    return Demo(group_id, credentials)


async def retire_demo(store: Store) -> None:
    """Remove the demo agents' passwords and revoke their tokens, if a demo ran before.

    A shop that tried ``--demo`` and then runs for real must not keep accounts
    whose passwords were printed on a terminal. The group and the agents stay
    (with their conversations); the next ``--demo`` run gives them new passwords.
    """
    await store.forget_passwords(json.loads(await store.meta("demo_agents") or "[]"))
