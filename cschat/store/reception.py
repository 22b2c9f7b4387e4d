"""Group settings (business hours, texts), recent response times and ratings."""

from __future__ import annotations

import json

from cschat.store.directory import Actor, write_audit
from cschat.store.errors import NotFound
from cschat.store.outbox import emit
from cschat.store.util import now_ms, one


class ReceptionQueries:
    """The reception part of :class:`~cschat.store.Store`."""

    async def all_group_settings(self) -> dict[int, dict]:
        return await self.read(lambda conn: {row[0]: json.loads(row[1]) for row in conn.execute(
            "SELECT group_id, settings FROM group_settings")})

    async def save_group_settings(self, group_id: int, settings: dict, actor: Actor) -> None:
        """Replace a group's settings (checked by the caller); raises :class:`NotFound`."""
        def unit(conn):
            if conn.execute("SELECT 1 FROM groups WHERE id = ?", (group_id,)).fetchone() is None:
                raise NotFound(f"no group {group_id}")
            conn.execute(
                "INSERT INTO group_settings (group_id, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id) DO UPDATE SET settings = excluded.settings, "
                "updated_at = excluded.updated_at",
                (group_id, json.dumps(settings, ensure_ascii=False), now_ms()))
            write_audit(conn, actor, "group.settings", "group", group_id, settings)
        await self.write(unit)

    async def recent_first_responses(self, group_id: int, since_ms: int) -> list[int]:
        """First-response times (ms) of the group's conversations started since then."""
        return await self.read(lambda conn: [row[0] for row in conn.execute(
            "SELECT first_response_at - first_guest_at FROM conversations "
            "WHERE started_at >= ? AND +group_id = ? AND first_response_at IS NOT NULL",
            (since_ms, group_id))])

    async def rate(self, gid: int, rating: int, comment: str | None) -> dict | None:
        """Rate the guest's last conversation (a webhook event in the same commit);
        returns ``{"conversation_id", "admin_id", "rating_comment"}``, or None when the
        guest has none."""
        def unit(conn):
            rated = one(conn.execute(
                "UPDATE conversations SET rating = ?, rating_comment = ?, rated_at = ? "
                "WHERE id = (SELECT MAX(id) FROM conversations WHERE gid = ?) "
                "RETURNING id AS conversation_id, admin_id, group_id, rating_comment",
                (rating, comment, now_ms(), gid)))
            if rated is not None:
                emit(conn, "conversation.rated", gid, {
                    "conversation_id": rated["conversation_id"], "gid": gid,
                    "group_id": rated["group_id"], "admin_id": rated["admin_id"],
                    "rating": rating, "comment": comment})
            return rated
        return await self.write(unit)
