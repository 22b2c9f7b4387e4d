"""Reports (docs/protocol.md §12): per day and per agent, in the shop's time zone.

The store sums the conversations and messages of each local day (cut at the
UTC instants of the local midnights, so days of 23 or 25 hours count right);
this module adds them up per day, per agent and in all, and works out the
medians.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import statistics
import zoneinfo
from collections import defaultdict

from cschat.admin.errors import bad_input
from cschat.store.reports import ReportData

MAX_DAYS = 366
COLUMNS = ("conversations", "guest_messages", "agent_messages", "first_response_median",
           "first_response_p90", "queued", "queue_wait_median", "queue_wait_max", "missed",
           "rating_average")


@dataclasses.dataclass(frozen=True)
class ReportQuery:
    first: datetime.date
    last: datetime.date
    zone: zoneinfo.ZoneInfo
    group_id: int | None

    def days(self) -> int:
        return (self.last - self.first).days + 1

    def midnights_ms(self) -> list[int]:
        """The UTC instants (ms) of the local midnights starting each day, and the end."""
        return [int(datetime.datetime.combine(self.first + datetime.timedelta(days=n),
                                              datetime.time(), self.zone).timestamp() * 1000)
                for n in range(self.days() + 1)]


def parse_query(arguments: dict[str, str]) -> ReportQuery:
    """Check ``from``, ``to`` (YYYY-MM-DD), ``tz`` (IANA name, default UTC) and
    ``group_id``; raises :class:`~cschat.admin.service.AdminError` 400."""
    dates = []
    for key in ("from", "to"):
        try:
            dates.append(datetime.date.fromisoformat(arguments.get(key, "")))
        except ValueError:
            raise bad_input(f"{key} must be a date like 2026-11-30") from None
    first, last = dates
    if last < first:
        raise bad_input("to must not be before from")
    if (last - first).days >= MAX_DAYS:
        raise bad_input(f"a report covers at most {MAX_DAYS} days")
    try:
        zone = zoneinfo.ZoneInfo(arguments.get("tz") or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise bad_input("tz must be a time zone name like Asia/Shanghai") from None
    group = arguments.get("group_id") or None
    if group is not None and not group.isdigit():
        raise bad_input("group_id must be a whole number")
    return ReportQuery(first, last, zone, int(group) if group else None)


class _Tally:
    """The figures of one row while it is being counted."""

    def __init__(self) -> None:
        self.conversations = self.guest_messages = self.agent_messages = 0
        self.queued = self.missed = self.rating_sum = self.ratings = 0
        self.responses: list[int] = []
        self.waits: list[int] = []

    def row(self, guest_messages: bool = True) -> dict:
        return {"conversations": self.conversations,
                "guest_messages": self.guest_messages if guest_messages else None,
                "agent_messages": self.agent_messages,
                "first_response_median": _seconds(_median(self.responses)),
                "first_response_p90": _seconds(_p90(self.responses)),
                "queued": self.queued, "queue_wait_median": _seconds(_median(self.waits)),
                "queue_wait_max": _seconds(max(self.waits, default=None)),
                "missed": self.missed,
                "rating_average": round(self.rating_sum / self.ratings, 2) if self.ratings
                else None}


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[int]) -> int | None:
    """The nearest-rank 90th percentile: the smallest value at least 90 % do not exceed."""
    if not values:
        return None
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def _seconds(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else round(milliseconds / 1000, 1)


def build(query: ReportQuery, data: ReportData, agents: list[dict]) -> dict:
    """The report of §12 from the store's rows (:meth:`Store.report_data`) and the
    agents of the directory (every agent of the group is listed, even with zeros)."""
    days = [query.first + datetime.timedelta(days=n) for n in range(query.days())]
    by_day = [_Tally() for _ in days]
    by_agent: dict[int, _Tally] = defaultdict(_Tally)
    total = _Tally()
    for day, admin_id, started, queued, missed, rating_sum, ratings in data.conversations:
        for tally in (by_day[day], total, by_agent[admin_id]):
            tally.conversations += started
            tally.queued += queued
            tally.missed += missed
            tally.rating_sum += rating_sum
            tally.ratings += ratings
    for day, responder_id, response_ms in data.responses:
        for tally in (by_day[day], total, by_agent[responder_id]):
            tally.responses.append(response_ms)
    for day, admin_id, wait_ms in data.waits:
        for tally in (by_day[day], total, by_agent[admin_id]):
            tally.waits.append(wait_ms)
    for day, admin_id, sender, count in data.messages:
        if sender == "guest":
            by_day[day].guest_messages += count
            total.guest_messages += count
        else:
            for tally in (by_day[day], total, by_agent[admin_id]):
                tally.agent_messages += count
    by_agent.pop(None, None)  # conversations no agent held
    names = {agent["admin_id"]: agent["name"] for agent in agents}
    listed = {agent["admin_id"] for agent in agents
              if query.group_id is None or agent["group_id"] == query.group_id}
    return {"from": query.first.isoformat(), "to": query.last.isoformat(),
            "tz": query.zone.key, "group_id": query.group_id,
            "days": [{"date": day.isoformat(), **tally.row()}
                     for day, tally in zip(days, by_day, strict=True)],
            "agents": [{"admin_id": admin_id, "name": names.get(admin_id, f"#{admin_id}"),
                        **by_agent[admin_id].row(guest_messages=False)}
                       for admin_id in sorted(listed | set(by_agent))],
            "totals": total.row()}


def to_csv(report: dict, rows: str) -> str:
    """The ``days`` or ``agents`` rows of ``report`` as CSV text."""
    keys = ("date",) if rows == "days" else ("admin_id", "name")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(keys + COLUMNS)
    for row in report[rows]:
        writer.writerow([_cell(row[key]) for key in keys + COLUMNS])
    return out.getvalue()


def _cell(value: object) -> object:
    """A value a spreadsheet shows as typed: text that starts like a formula is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
