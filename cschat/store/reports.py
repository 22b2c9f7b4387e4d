"""What the reports read: conversations and message counts, per local day.

Both come from tables kept as the chat goes (:mod:`cschat.store.conversations`),
read through their time indexes one day's range at a time and summed in
SQL, so a report never scans the messages and hands Python little more than
the first-response and queue times its medians need.
"""

from __future__ import annotations

import dataclasses
import itertools

from cschat.store.schema import STATS_BUCKET_MS
from cschat.store.util import now_ms


@dataclasses.dataclass(frozen=True)
class ReportData:
    """Rows keyed by ``day`` (the index of the day in the span) and an agent (None or 0
    when there is none): conversations ``(day, admin_id, started, queued, missed,
    sum of ratings, ratings)``;
    ``responses`` ``(day, responder_id, ms)``; ``waits`` ``(day, admin_id, ms)``;
    ``messages`` ``(day, admin_id, sender, count)``."""

    conversations: list[tuple]
    responses: list[tuple]
    waits: list[tuple]
    messages: list[tuple]


def _days(midnights: list[int], scale: int = 1) -> tuple[str, list[int]]:
    """A ``days(n, first, after)`` table of the spans between ``midnights`` (divided by
    ``scale``), for a join that puts each row in its day."""
    values = ", ".join("(?, ?, ?)" for _ in midnights[1:])
    params = [value for n, (first, after) in enumerate(itertools.pairwise(midnights))
              for value in (n, first // scale, after // scale)]
    return f"WITH days (n, first, after) AS (VALUES {values})", params


class ReportQueries:
    """The reports part of :class:`~cschat.store.Store`."""

    async def report_data(self, midnights: list[int], group_id: int | None) -> ReportData:
        """What happened between each two of the instants ``midnights`` (ms): conversations
        started (a wait still going counts until now), messages sent; only
        ``group_id``'s when given."""
        # "+x.column" keeps SQLite from building an index on that column for the query:
        # it reads each day's range by time and filters as it goes.
        in_group, group_params = ("AND +x.group_id = ?", [group_id]) if group_id is not None \
            else ("", [])
        days, day_params = _days(midnights)
        buckets, bucket_params = _days(midnights, STATS_BUCKET_MS)

        def in_days(select: str, tail: str = "", where: str = "") -> tuple[str, list]:
            # CROSS JOIN: SQLite keeps this order, the days outside, each a range of times.
            return (f"{days} SELECT d.n, {select} FROM days d CROSS JOIN conversations x "
                    f"ON x.started_at >= d.first AND x.started_at < d.after {in_group} {where} "
                    f"{tail}", [*day_params, *group_params])

        def query(conn):
            def run(sql_params: tuple[str, list]) -> list[tuple]:
                sql, params = sql_params
                return [tuple(row) for row in conn.execute(sql, params)]
            conversations = run(in_days(
                "x.admin_id, COUNT(*), SUM(x.queued), SUM(x.ended_at IS NOT NULL AND "
                "x.guest_messages > 0 AND x.first_response_at IS NULL), "
                "COALESCE(SUM(x.rating), 0), COUNT(x.rating)",
                "GROUP BY d.n, x.admin_id"))
            responses = run(in_days("x.responder_id, x.first_response_at - x.first_guest_at",
                                    where="AND +x.first_response_at IS NOT NULL"))
            # now_ms() is an int: written into the SQL, it keeps the parameters in order.
            waits = run(in_days(f"x.admin_id, x.queue_wait_ms + "
                                f"COALESCE({now_ms()} - x.wait_started_at, 0)",
                                where="AND +x.queued = 1"))
            messages = [tuple(row) for row in conn.execute(
                f"{buckets} SELECT d.n, x.admin_id, x.sender, SUM(x.count) FROM days d "
                "CROSS JOIN message_stats x ON x.bucket >= d.first AND x.bucket < d.after "
                f"{in_group} GROUP BY d.n, x.admin_id, x.sender",
                [*bucket_params, *group_params])]
            return ReportData(conversations, responses, waits, messages)
        return await self.read(query)
