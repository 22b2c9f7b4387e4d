"""What the agent may know of a visitor (docs/protocol.md §3, "context"), checked and bounded.

Three sources: the widget (the host page, language and time zone, at login
and on every page change), the visitor's connection (its User-Agent, parsed
by ``ua-parser``; its address only with ``[privacy] store_ip``) and the
shop's token (``email``, ``phone``, a small flat ``attrs``). Nothing else is
kept, and every string has a length limit.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
from typing import Any

import ua_parser

from cschat.auth import is_web_url

# Widget-reported fields and their longest length.
PAGE_FIELDS = {"url": 2048, "title": 256, "referrer": 2048, "language": 35, "timezone": 64}
MAX_ATTRS, MAX_ATTR_KEY, MAX_ATTR_VALUE = 20, 32, 256
MAX_EMAIL, MAX_PHONE = 254, 32
MAX_USER_AGENT = 512


@dataclasses.dataclass(frozen=True)
class Client:
    """Where a connection comes from: its User-Agent header and its address."""

    user_agent: str
    address: str


def page_context(raw: Any) -> dict:
    """The widget's ``context`` object, bounded: unknown keys and non-strings are dropped,
    strings cut to their limits; a ``url`` or ``referrer`` must be http(s)."""
    if not isinstance(raw, dict):
        return {}
    context = {}
    for key, longest in PAGE_FIELDS.items():
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            value = value.strip()[:longest]
            if key in ("url", "referrer") and not is_web_url(value):
                continue
            context[key] = value
    return context


@functools.lru_cache(maxsize=1024)
def describe_user_agent(user_agent: str) -> dict:
    """``{"browser", "os", "device"}`` of a User-Agent; device is "desktop", "mobile",
    "tablet" or "bot"."""
    parsed = ua_parser.parse(user_agent[:MAX_USER_AGENT])
    agent, system, device = parsed.user_agent, parsed.os, parsed.device
    browser = f"{agent.family} {agent.major}" if agent and agent.major else \
        (agent.family if agent else None)
    os_name = f"{system.family} {system.major}" if system and system.major else \
        (system.family if system else None)
    family = (device.family if device else "") or ""
    lowered = user_agent.lower()
    if family == "Spider" or "bot" in lowered or "crawler" in lowered:
        kind = "bot"
    elif "ipad" in lowered or "tablet" in lowered or (
            "android" in lowered and "mobile" not in lowered):
        kind = "tablet"
    elif "mobi" in lowered or "iphone" in lowered:
        kind = "mobile"
    else:
        kind = "desktop"
    return {"browser": browser, "os": os_name, "device": kind}


def token_context(claims: dict) -> dict:
    """``email``, ``phone`` and ``attrs`` from a shop's guest token, where valid."""
    context: dict[str, Any] = {}
    email, phone, attrs = claims.get("email"), claims.get("phone"), claims.get("attrs")
    if isinstance(email, str) and "@" in email and len(email) <= MAX_EMAIL:
        context["email"] = email
    if isinstance(phone, str) and 0 < len(phone) <= MAX_PHONE:
        context["phone"] = phone
    if isinstance(attrs, dict):
        kept = {}
        for key, value in list(attrs.items())[:MAX_ATTRS]:
            if not isinstance(key, str) or not 0 < len(key) <= MAX_ATTR_KEY:
                continue
            if isinstance(value, str):
                kept[key] = value[:MAX_ATTR_VALUE]
            elif isinstance(value, bool) or (isinstance(value, (int, float))
                                              and math.isfinite(value)):
                kept[key] = value
        context["attrs"] = kept
    return context


def login_context(params: dict, claims: dict, client: Client, store_ip: bool) -> dict:
    """Everything a 21000 login tells about the visitor, to merge into what is stored."""
    context = {**page_context(params.get("context")), **token_context(claims)}
    if client.user_agent:
        context.update(describe_user_agent(client.user_agent))
    if store_ip:
        context["ip"] = client.address
    return context


def visit_day() -> str:
    """Today's UTC date: a visitor's logins on one such day count as one visit."""
    return datetime.datetime.now(datetime.UTC).date().isoformat()


CONTEXT_KEYS = ("url", "title", "referrer", "language", "timezone", "browser", "os", "device",
                "email", "phone", "attrs", "ip")


def public_context(stored: str, first_seen: int, visits: int) -> dict:
    """The ``context`` object of guest_info from the stored JSON: every key, null when
    not known."""
    known = json.loads(stored or "{}")
    return {**{key: known.get(key) for key in CONTEXT_KEYS}, "first_seen": first_seen,
            "visits": visits}
