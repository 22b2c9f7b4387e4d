"""Whether a group can answer now (docs/protocol.md §4, "Availability"), and the group
settings that decide it: business hours, closed days, greeting and automatic replies.

Plain functions of the routing state and the settings: no I/O. ``online``:
an agent can take a new conversation; ``busy``: agents are there but all at
capacity (the queue); ``away``: nobody is there, or it is outside business
hours (agents still answer the conversations they hold).
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Any

from cschat.routing import Routing

ONLINE, BUSY, AWAY = "online", "busy", "away"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LANGUAGES = ("en", "zh")
TEXTS = ("greeting", "busy_reply", "away_reply")
MAX_TEXT, MAX_RANGES, MAX_CLOSED_DAYS = 500, 4, 366
_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")
DEFAULT_SETTINGS: dict[str, Any] = {"timezone": "UTC", "hours": None, "closed_days": [],
                                    "greeting": {}, "busy_reply": {}, "away_reply": {},
                                    "notify_email": None}


class SettingsError(ValueError):
    """Group settings that cannot be used; the message names the field."""


def check_settings(raw: Any) -> dict:
    """Group settings as stored, from what an admin sent; raises :class:`SettingsError`.

    ``hours`` null means always open; otherwise a day missing from it is
    closed all day. Times are "HH:MM" (24:00 ends a day), ranges do not cross
    midnight.
    """
    if not isinstance(raw, dict):
        raise SettingsError("the settings must be a JSON object")
    unknown = sorted(set(raw) - set(DEFAULT_SETTINGS))
    if unknown:
        raise SettingsError(f"unknown field {unknown[0]}")
    settings = {**DEFAULT_SETTINGS, **raw}
    try:
        zoneinfo.ZoneInfo(settings["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise SettingsError("timezone must be a time zone name like Asia/Shanghai") from None
    settings["hours"] = _hours(settings["hours"])
    closed = settings["closed_days"]
    if not isinstance(closed, list) or len(closed) > MAX_CLOSED_DAYS:
        raise SettingsError(f"closed_days must be a list of at most {MAX_CLOSED_DAYS} dates")
    try:
        settings["closed_days"] = sorted({datetime.date.fromisoformat(day).isoformat()
                                          for day in closed})
    except (TypeError, ValueError):
        raise SettingsError("closed_days must hold dates like 2026-12-25") from None
    for field in TEXTS:
        texts = settings[field]
        if not isinstance(texts, dict) or set(texts) - set(LANGUAGES) or any(
                not isinstance(text, str) or len(text) > MAX_TEXT for text in texts.values()):
            raise SettingsError(f"{field} must be {{\"en\": text, \"zh\": text}}, each at most "
                                f"{MAX_TEXT} characters")
        settings[field] = {language: text.strip() for language, text in texts.items()
                           if text.strip()}
    email = settings["notify_email"]
    if email is not None and (not isinstance(email, str) or not is_address(email)):
        raise SettingsError("notify_email must be an e-mail address or null")
    return settings


def is_address(text: str) -> bool:
    """A plausible e-mail address (one @, a dot in the domain, no spaces or brackets)."""
    return bool(re.fullmatch(r"[^@\s<>\"]{1,64}@[^@\s<>\"]{1,255}\.[^@\s<>\".]{2,63}", text))


def _hours(hours: Any) -> dict | None:
    if hours is None:
        return None
    if not isinstance(hours, dict) or set(hours) - set(DAYS):
        raise SettingsError(f"hours must map days ({', '.join(DAYS)}) to ranges")
    checked = {}
    for day, ranges in hours.items():
        if not isinstance(ranges, list) or len(ranges) > MAX_RANGES:
            raise SettingsError(f"hours.{day} must be a list of at most {MAX_RANGES} ranges")
        for pair in ranges:
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(t, str) and _TIME.fullmatch(t) for t in pair)
                    or pair[0] >= pair[1]):
                raise SettingsError(f"hours.{day} ranges look like [\"09:00\", \"18:00\"]")
        checked[day] = sorted(ranges)
    return checked


def is_open(settings: dict, now: datetime.datetime) -> bool:
    """Whether ``now`` (aware) falls within the group's business hours."""
    local = now.astimezone(zoneinfo.ZoneInfo(settings["timezone"]))
    if local.date().isoformat() in settings["closed_days"]:
        return False
    if settings["hours"] is None:
        return True
    clock = local.strftime("%H:%M")
    return any(start <= clock < end
               for start, end in settings["hours"].get(DAYS[local.weekday()], []))


def availability(routing: Routing, group_id: int, settings: dict,
                 now: datetime.datetime) -> str:
    """``online``, ``busy`` or ``away`` for a group right now."""
    if not is_open(settings, now):
        return AWAY
    present = [agent for agent in routing.agents_of_group(group_id) if agent.takes_guests]
    if not present:
        return AWAY
    return ONLINE if any(agent.load < routing.capacity for agent in present) else BUSY


def text_for(settings: dict, field: str, language: str | None) -> str | None:
    """The group's ``field`` text in the visitor's language (zh for any Chinese, else
    en), falling back to the other language; None when the group has none."""
    texts = settings[field]
    first = "zh" if (language or "").lower().startswith("zh") else "en"
    return texts.get(first) or texts.get("en" if first == "zh" else "zh")
