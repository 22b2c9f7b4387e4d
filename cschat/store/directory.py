"""Groups and agents (with their roles), and the audit log of every change to them.

Each change is one unit of the writer: it checks what it needs, changes the
rows, writes its audit entry and bumps the directory version in the same
transaction, so the log never misses or invents a change and a rule such as
"one enabled admin stays" is checked at the moment of the change.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any

from cschat.store.errors import Conflict, NotFound, StoreError
from cschat.store.util import now_ms, one, rows


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who makes a change: an admin through the admin API (``admin_id``), or nobody
    in particular through the command line (``via`` "cli") or the demo ("demo")."""

    admin_id: int | None
    via: str

    @classmethod
    def admin(cls, admin_id: int) -> Actor:
        return cls(admin_id, "admin")


COMMAND_LINE = Actor(None, "cli")
DEMO = Actor(None, "demo")

_GROUP_COLUMNS = ("g.id, g.name, g.enabled, g.created_at, "
                  "(SELECT COUNT(*) FROM agents a WHERE a.group_id = g.id) AS agents")
_AGENT_COLUMNS = ("a.id AS admin_id, a.group_id, a.name, a.avatar, a.username, a.role, "
                  "a.enabled, a.password_hash IS NOT NULL AS has_password, a.created_at")
# Tokens cschat minted for an agent carry its token_version: bumping it revokes them.
_REVOKE_TOKENS = "token_version = token_version + 1"
# What the admin API may change; a password is changed through its hash.
GROUP_CHANGES = ("name", "enabled")
AGENT_CHANGES = ("name", "avatar", "username", "group_id", "role", "enabled", "password_hash")


def write_audit(conn: sqlite3.Connection, actor: Actor, action: str, target_type: str,
           target_id: int | None, detail: dict) -> None:
    conn.execute(
        "INSERT INTO audit (at, actor_id, via, action, target_type, target_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now_ms(), actor.admin_id, actor.via, action, target_type, target_id,
         json.dumps(detail, ensure_ascii=False, separators=(",", ":"))))


def _bump_directory(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('directory_version', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")


def _directory_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'directory_version'").fetchone()
    return int(row["value"]) if row else 0


def _keep_an_admin(conn: sqlite3.Connection) -> None:
    """Refuse a change by an admin that leaves no enabled admin in an enabled group:
    nobody could then manage the installation but from the command line."""
    left = conn.execute(
        "SELECT COUNT(*) FROM agents a JOIN groups g ON g.id = a.group_id "
        "WHERE a.role = 'admin' AND a.enabled = 1 AND g.enabled = 1").fetchone()[0]
    if not left:
        raise Conflict("this would leave no enabled admin")


def _group_row(conn: sqlite3.Connection, group_id: int) -> dict:
    return _existing(conn, "group", f"SELECT {_GROUP_COLUMNS} FROM groups g WHERE g.id = ?",
                     group_id)


def _agent_row(conn: sqlite3.Connection, admin_id: int) -> dict:
    return _existing(conn, "agent", f"SELECT {_AGENT_COLUMNS} FROM agents a WHERE a.id = ?",
                     admin_id)


def _existing(conn: sqlite3.Connection, kind: str, sql: str, row_id: int) -> dict:
    """The row ``sql`` finds for ``row_id``; raises :class:`NotFound` naming the ``kind``."""
    row = one(conn.execute(sql, (row_id,)))
    if row is None:
        raise NotFound(f"no {kind} {row_id}")
    return row


def _audited_detail(changes: dict) -> dict:
    """``changes`` as the audit log keeps them: never a password hash."""
    detail = {key: value for key, value in changes.items() if key != "password_hash"}
    if "password_hash" in changes:
        detail["password"] = "changed"
    return detail


class DirectoryQueries:
    """The directory part of :class:`~cschat.store.Store`."""

    # -- changes -----------------------------------------------------------------------

    async def add_group(self, name: str, actor: Actor = COMMAND_LINE) -> int:
        def unit(conn):
            group_id = conn.execute("INSERT INTO groups (name, created_at) VALUES (?, ?)",
                                    (name, now_ms())).lastrowid
            write_audit(conn, actor, "group.create", "group", group_id, {"name": name})
            _bump_directory(conn)
            return group_id
        return await self.write(unit)

    async def update_group(self, group_id: int, changes: dict[str, Any],
                           actor: Actor = COMMAND_LINE) -> dict:
        """Change a group's ``name`` and/or ``enabled``; returns the group as stored.

        Raises :class:`NotFound` for an unknown group, :class:`Conflict` when
        an admin would disable the group of the last enabled admin.
        """
        def unit(conn):
            before = _group_row(conn, group_id)
            changed = {key: value for key, value in changes.items() if before[key] != value}
            if not changed:
                return before
            conn.execute(f"UPDATE groups SET {', '.join(f'{key} = ?' for key in changed)} "
                         "WHERE id = ?", (*changed.values(), group_id))
            if actor.via == "admin":
                _keep_an_admin(conn)
            write_audit(conn, actor, "group.update", "group", group_id, changed)
            _bump_directory(conn)
            return _group_row(conn, group_id)
        return await self.write(unit)

    async def set_group_enabled(self, group_id: int, enabled: bool,
                                actor: Actor = COMMAND_LINE) -> None:
        """Raises :class:`NotFound` if the group does not exist."""
        await self.update_group(group_id, {"enabled": int(enabled)}, actor)

    async def add_agent(self, group_id: int, name: str, avatar: str, username: str | None,
                        password_hash: str | None, role: str = "agent",
                        actor: Actor = COMMAND_LINE) -> int:
        """Raises :class:`NotFound` for an unknown group, :class:`Conflict` for a taken
        username."""
        def unit(conn):
            _group_row(conn, group_id)
            try:
                admin_id = conn.execute(
                    "INSERT INTO agents (group_id, name, avatar, username, password_hash, role, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (group_id, name, avatar, username, password_hash, role, now_ms())).lastrowid
            except sqlite3.IntegrityError:
                raise Conflict(f"username {username!r} is taken") from None
            write_audit(conn, actor, "agent.create", "agent", admin_id, _audited_detail(
                {"group_id": group_id, "name": name, "avatar": avatar, "username": username,
                 "role": role, **({"password_hash": ""} if password_hash else {})}))
            _bump_directory(conn)
            return admin_id
        return await self.write(unit)

    async def update_agent(self, admin_id: int, changes: dict[str, Any],
                           actor: Actor = COMMAND_LINE) -> dict:
        """Change any of :data:`AGENT_CHANGES`; returns the agent as stored.

        A new password, a move to another group and disabling also revoke the
        agent's tokens, in the same write. Raises :class:`NotFound` for an
        unknown agent or group; :class:`Conflict` for a taken username, a
        password for an agent without a username, or (when an admin makes the
        change) one that leaves no enabled admin.
        """
        def unit(conn):
            before = conn.execute("SELECT * FROM agents WHERE id = ?", (admin_id,)).fetchone()
            if before is None:
                raise NotFound(f"no agent {admin_id}")
            if "group_id" in changes:
                _group_row(conn, changes["group_id"])
            changed = {key: value for key, value in changes.items()
                       if key == "password_hash" or before[key] != value}
            if not changed:
                return _agent_row(conn, admin_id)
            if "password_hash" in changed and changed.get("username",
                                                          before["username"]) is None:
                raise Conflict(f"agent {admin_id} has no username to sign in with")
            revoke = ("password_hash" in changed or "group_id" in changed
                      or changed.get("enabled") == 0)
            assignments = [f"{key} = ?" for key in changed] + ([_REVOKE_TOKENS] if revoke else [])
            try:
                conn.execute(f"UPDATE agents SET {', '.join(assignments)} WHERE id = ?",
                             (*changed.values(), admin_id))
            except sqlite3.IntegrityError:
                raise Conflict(f"username {changed.get('username')!r} is taken") from None
            if actor.via == "admin":
                _keep_an_admin(conn)
            write_audit(conn, actor, "agent.update", "agent", admin_id, _audited_detail(changed))
            _bump_directory(conn)
            return _agent_row(conn, admin_id)
        return await self.write(unit)

    async def set_agent_enabled(self, admin_id: int, enabled: bool,
                                actor: Actor = COMMAND_LINE) -> None:
        """Disabling also revokes the agent's tokens: enabling it again does not revive
        them. Raises :class:`NotFound` if the agent does not exist."""
        await self.update_agent(admin_id, {"enabled": int(enabled)}, actor)

    async def set_agent_password(self, admin_id: int, password_hash: str,
                                 revoke: bool = True, actor: Actor = COMMAND_LINE) -> None:
        """Set a new password and (unless ``revoke`` is False) revoke the agent's tokens
        in the same write.

        Raises :class:`StoreError` for an unknown agent or one without a username.
        """
        if revoke:
            await self.update_agent(admin_id, {"password_hash": password_hash}, actor)
            return

        def unit(conn):
            cursor = conn.execute("UPDATE agents SET password_hash = ? WHERE id = ? "
                                  "AND username IS NOT NULL", (password_hash, admin_id))
            if not cursor.rowcount:
                raise StoreError(f"no agent {admin_id} with a username")
            write_audit(conn, actor, "agent.update", "agent", admin_id,
                   _audited_detail({"password_hash": password_hash}))
        await self.write(unit)

    async def sign_out_agent(self, admin_id: int, actor: Actor = COMMAND_LINE) -> None:
        """Revoke every token cschat minted for the agent ("sign out everywhere").

        Raises :class:`NotFound` if the agent does not exist.
        """
        def unit(conn):
            cursor = conn.execute(f"UPDATE agents SET {_REVOKE_TOKENS} WHERE id = ?", (admin_id,))
            if cursor.rowcount == 0:
                raise NotFound(f"no agent {admin_id}")
            write_audit(conn, actor, "agent.signout", "agent", admin_id, {})
            _bump_directory(conn)
        await self.write(unit)

    async def forget_passwords(self, admin_ids: list[int], actor: Actor = DEMO) -> None:
        """Remove the passwords of these agents and revoke their tokens (if they had one)."""
        def unit(conn):
            for admin_id in admin_ids:
                cursor = conn.execute(
                    f"UPDATE agents SET password_hash = NULL, {_REVOKE_TOKENS} "
                    "WHERE id = ? AND password_hash IS NOT NULL", (admin_id,))
                if cursor.rowcount:
                    write_audit(conn, actor, "agent.update", "agent", admin_id, {"password": None})
                    _bump_directory(conn)
        await self.write(unit)

    async def upgrade_password_hash(self, admin_id: int, old_hash: str, new_hash: str) -> None:
        """Replace ``old_hash`` by a stronger hash of the same password; tokens stay valid.

        Does nothing if the password changed meanwhile.
        """
        await self.write(lambda conn: conn.execute(
            "UPDATE agents SET password_hash = ? WHERE id = ? AND password_hash = ?",
            (new_hash, admin_id, old_hash)))

    async def set_agent_suspended(self, admin_id: int, suspended: bool) -> None:
        """Keep an agent's suspension (32500) across restarts."""
        await self.write(lambda conn: conn.execute(
            "UPDATE agents SET suspended = ? WHERE id = ?", (int(suspended), admin_id)))

    # -- reads -----------------------------------------------------------------------------

    async def list_groups(self) -> list[dict]:
        return await self.read(lambda conn: rows(conn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM groups g ORDER BY g.id")))

    async def list_agents(self) -> list[dict]:
        return await self.read(lambda conn: rows(conn.execute(
            f"SELECT {_AGENT_COLUMNS} FROM agents a ORDER BY a.id")))

    async def group(self, group_id: int) -> dict | None:
        return await self.read(lambda conn: one(conn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM groups g WHERE g.id = ?", (group_id,))))

    async def agent(self, admin_id: int) -> dict | None:
        """The agent with its ``role``, ``token_version`` and its group's
        ``group_enabled`` flag (None if the group is gone)."""
        return await self.read(lambda conn: one(conn.execute(
            "SELECT a.id, a.group_id, a.name, a.avatar, a.enabled, a.token_version, a.role, "
            "g.enabled AS group_enabled "
            "FROM agents a LEFT JOIN groups g ON g.id = a.group_id WHERE a.id = ?",
            (admin_id,))))

    async def agent_login(self, username: str) -> dict | None:
        """What signing in by password needs of the agent with this username, or None."""
        return await self.read(lambda conn: one(conn.execute(
            "SELECT a.id, a.password_hash, a.enabled, a.token_version, "
            "g.enabled AS group_enabled "
            "FROM agents a LEFT JOIN groups g ON g.id = a.group_id WHERE a.username = ?",
            (username,))))

    async def directory_version(self) -> int:
        """A number that changes whenever a group or an agent is added or changed, or an
        agent's tokens are revoked."""
        return await self.read(_directory_version)

    async def directory(self) -> tuple[int, list[dict], list[dict]]:
        """``(directory_version, groups, agents)`` as of one moment: what the server keeps in
        memory of every group and agent."""
        def query(conn):
            return (_directory_version(conn),
                    rows(conn.execute("SELECT id, enabled FROM groups")),
                    rows(conn.execute(
                        "SELECT id, group_id, name, avatar, enabled, token_version, suspended, "
                        "role FROM agents ORDER BY id")))
        return await self.read(query)

    async def audit_entries(self, limit: int, before: int | None) -> list[dict]:
        """Audit entries newest first, below the id ``before`` when given, with the
        acting admin's current name."""
        return await self.read(lambda conn: [
            {**row, "detail": json.loads(row["detail"])} for row in rows(conn.execute(
                "SELECT l.id, l.at, l.actor_id, a.name AS actor_name, l.via, l.action, "
                "l.target_type, l.target_id, l.detail "
                "FROM audit l LEFT JOIN agents a ON a.id = l.actor_id "
                "WHERE l.id < ? ORDER BY l.id DESC LIMIT ?",
                (before if before is not None else 2**63 - 1, limit)))])
