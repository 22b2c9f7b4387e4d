"""The admin API's service: who may manage the installation, and the changes it makes.

:class:`AdminService` checks the input of each request (raising
:class:`AdminError` with the HTTP status and code of docs/protocol.md §10),
asks the store for the change (which writes the audit entry in the same
commit) and makes the running server take it in at once.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from cschat.accounts import PASSWORD_MAX_LENGTH
from cschat.admin import reports
from cschat.admin.errors import FORBIDDEN, NOT_FOUND, UNAUTHORIZED, AdminError, bad_input
from cschat.auth import TokenError, is_web_url
from cschat.availability import SettingsError, check_settings
from cschat.store import Actor

if TYPE_CHECKING:
    from cschat.accounts import Accounts
    from cschat.chat import ChatService
    from cschat.desk import DeskService
    from cschat.store import Store

ROLES = ("agent", "admin")
WEBHOOK_EVENTS = ("conversation.created", "message.created", "conversation.assigned",
                  "conversation.transferred", "conversation.ended", "conversation.rated",
                  "visitor.left_message")
NAME_MAX_LENGTH = 64
CANNED_SHORTCUT_MAX_LENGTH, CANNED_TEXT_MAX_LENGTH = 32, 2000
USERNAME_MAX_LENGTH = 128
URL_MAX_LENGTH = 2048
SECRET_LENGTHS = (16, 256)


# -- input ------------------------------------------------------------------------------------

def text(body: dict, key: str, longest: int, *, shortest: int = 1) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise bad_input(f"{key} must be a string")
    value = value.strip()
    if not shortest <= len(value) <= longest:
        raise bad_input(f"{key} must have {shortest} to {longest} characters")
    return value


def flag(body: dict, key: str) -> int:
    value = body.get(key)
    if not isinstance(value, bool):
        raise bad_input(f"{key} must be true or false")
    return int(value)


def whole_number(value: Any, key: str, low: int = 1, high: int = 2**53) -> int:
    if type(value) is not int or not low <= value <= high:
        upto = f" to {high}" if high < 2**53 else ""
        raise bad_input(f"{key} must be a whole number from {low}{upto}")
    return value


def _choice(body: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = body.get(key)
    if value not in allowed:
        raise bad_input(f"{key} must be one of {', '.join(allowed)}")
    return value


def _avatar(body: dict) -> str:
    avatar = body.get("avatar", "")
    if not isinstance(avatar, str) or len(avatar) > URL_MAX_LENGTH or not is_web_url(avatar):
        raise bad_input("avatar must be an http(s) URL or empty")
    return avatar


def _username(body: dict) -> str:
    username = text(body, "username", USERNAME_MAX_LENGTH)
    if any(character.isspace() for character in username):
        raise bad_input("username must not contain spaces")
    return username


def _only(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_input(f"unknown field {unknown[0]}; allowed: {', '.join(allowed)}")


class AdminService:
    """The admin API of one server."""

    def __init__(self, store: Store, chat: ChatService, desk: DeskService, accounts: Accounts,
                 settings: Any):
        self.store, self.chat, self.desk, self.accounts = store, chat, desk, accounts
        self.reception = chat.reception
        self._min_password = settings.auth["min_password_length"]
        self._capacity = settings.chat["agent_capacity"]

    async def authenticate(self, authorization: str | None) -> Actor:
        """The admin an ``Authorization: Bearer`` header names.

        Raises :class:`AdminError` 401 for a missing, invalid, expired or
        revoked token or a disabled agent or group; 403 for an agent that is
        not an admin. The role is read from the database on every request.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AdminError(401, UNAUTHORIZED, "Authorization: Bearer <agent token> required")
        try:
            claims = self.chat.tokens.verify_agent(token.strip())
        except TokenError as error:
            raise AdminError(401, UNAUTHORIZED, f"token invalid: {error}") from None
        agent = await self.store.agent(claims.admin_id)
        if agent is None or not agent["enabled"] or not agent["group_enabled"]:
            raise AdminError(401, UNAUTHORIZED, "agent unknown or disabled")
        if claims.revoked(agent["token_version"]):
            raise AdminError(401, UNAUTHORIZED, "token revoked")
        if agent["role"] != "admin":
            raise AdminError(403, FORBIDDEN, "only an admin may do this")
        return Actor.admin(agent["id"])

    # -- groups --------------------------------------------------------------------------

    async def groups(self) -> dict:
        return {"groups": [_group(group) for group in await self.store.list_groups()]}

    async def add_group(self, body: dict, actor: Actor) -> dict:
        _only(body, ("name",))
        group_id = await self.store.add_group(text(body, "name", NAME_MAX_LENGTH), actor)
        await self.chat.directory.refresh()
        return {"group": _group(await self.store.group(group_id))}

    async def update_group(self, group_id: int, body: dict, actor: Actor) -> dict:
        _only(body, ("name", "enabled"))
        changes = {}
        if "name" in body:
            changes["name"] = text(body, "name", NAME_MAX_LENGTH)
        if "enabled" in body:
            changes["enabled"] = flag(body, "enabled")
        group = await self.store.update_group(group_id, changes, actor)
        await self.chat.directory.refresh()
        return {"group": _group(group)}

    async def group_settings(self, group_id: int) -> dict:
        if await self.store.group(group_id) is None:
            raise AdminError(404, NOT_FOUND, f"no group {group_id}")
        return {"settings": self.reception.settings_of(group_id),
                "availability": self.reception.availability(group_id),
                "mail_configured": self.chat.mail_enabled}

    async def save_group_settings(self, group_id: int, body: dict, actor: Actor) -> dict:
        """Replace a group's business hours, texts and address; in effect at once."""
        try:
            settings = check_settings(body)
        except SettingsError as error:
            raise bad_input(str(error)) from None
        await self.store.save_group_settings(group_id, settings, actor)
        self.reception.set_group_settings(group_id, settings)
        return await self.group_settings(group_id)

    # -- agents --------------------------------------------------------------------------

    async def agents(self) -> dict:
        return {"agents": [self._live(agent) for agent in await self.store.list_agents()]}

    async def add_agent(self, body: dict, actor: Actor) -> dict:
        _only(body, ("group_id", "name", "username", "password", "role", "avatar"))
        group_id = whole_number(body.get("group_id"), "group_id")
        name = text(body, "name", NAME_MAX_LENGTH)
        if ("username" in body) != ("password" in body):
            raise bad_input("username and password go together")
        username = _username(body) if "username" in body else None
        password_hash = await self._password_hash(body) if "password" in body else None
        role = _choice(body, "role", ROLES) if "role" in body else "agent"
        admin_id = await self.store.add_agent(group_id, name, _avatar(body), username,
                                              password_hash, role, actor)
        await self.chat.directory.refresh()
        return {"agent": await self._agent(admin_id)}

    async def update_agent(self, admin_id: int, body: dict, actor: Actor) -> dict:
        """A new password, group or a disable signs the agent out everywhere at once."""
        _only(body, ("name", "avatar", "username", "group_id", "role", "enabled", "password"))
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = text(body, "name", NAME_MAX_LENGTH)
        if "avatar" in body:
            changes["avatar"] = _avatar(body)
        if "username" in body:
            changes["username"] = _username(body)
        if "group_id" in body:
            changes["group_id"] = whole_number(body["group_id"], "group_id")
        if "role" in body:
            changes["role"] = _choice(body, "role", ROLES)
        if "enabled" in body:
            changes["enabled"] = flag(body, "enabled")
        if "password" in body:
            changes["password_hash"] = await self._password_hash(body)
        await self.store.update_agent(admin_id, changes, actor)
        await self.chat.directory.refresh()
        return {"agent": await self._agent(admin_id)}

    async def _password_hash(self, body: dict) -> str:
        password = body.get("password")
        if not isinstance(password, str) or not \
                self._min_password <= len(password) <= PASSWORD_MAX_LENGTH:
            raise bad_input(f"password must have {self._min_password} to "
                            f"{PASSWORD_MAX_LENGTH} characters")
        return await self.accounts.hash_new_password(password)

    async def _agent(self, admin_id: int) -> dict:
        agents = {agent["admin_id"]: agent for agent in await self.store.list_agents()}
        return self._live(agents[admin_id])

    def _live(self, agent: dict) -> dict:
        """``agent`` with what the running server knows: status, load, connections."""
        live = self.chat.routing.agents.get(agent["admin_id"])
        return {**agent, "enabled": bool(agent["enabled"]),
                "has_password": bool(agent["has_password"]),
                "status": live.status if live else "offline", "load": live.load if live else 0,
                "capacity": self._capacity, "connections": live.connections if live else 0}

    # -- audit log -------------------------------------------------------------------------

    async def audit(self, limit: int, before: int | None) -> dict:
        entries = await self.store.audit_entries(limit, before)
        return {"entries": entries,
                "next_before": entries[-1]["id"] if len(entries) == limit else None}

    # -- webhooks --------------------------------------------------------------------------

    async def webhooks(self) -> dict:
        return {"webhooks": [_public(webhook) for webhook in await self.store.webhooks()]}

    async def add_webhook(self, body: dict, actor: Actor) -> dict:
        _only(body, ("url", "events", "secret"))
        url = text(body, "url", URL_MAX_LENGTH)
        if not url.lower().startswith(("https://", "http://")):
            raise bad_input("url must be an http(s) URL")
        events = body.get("events")
        if not isinstance(events, list) or not events or \
                any(event not in WEBHOOK_EVENTS for event in events):
            raise bad_input(f"events must be a non-empty list of: {', '.join(WEBHOOK_EVENTS)}")
        secret = _secret(body) if "secret" in body else secrets.token_hex(24)
        webhook = await self.store.add_webhook(url, secret, sorted(set(events)), actor)
        return {"webhook": {**_public(webhook), "secret": secret}}

    async def delete_webhook(self, webhook_id: int, actor: Actor) -> dict:
        await self.store.delete_webhook(webhook_id, actor)
        return {"id": webhook_id}

    async def deliveries(self, webhook_id: int, limit: int) -> dict:
        return {"deliveries": await self.store.deliveries(webhook_id, limit)}

    # -- canned replies and blocks ------------------------------------------------------------

    async def canned(self, group_id: str | None) -> dict:
        if group_id is not None and not group_id.isdigit():
            raise bad_input("group_id must be a whole number")
        return {"canned": await self.store.canned_replies(
            int(group_id) if group_id else None)}

    async def save_canned(self, canned_id: int | None, body: dict, actor: Actor) -> dict:
        """Add (``canned_id`` None: ``group_id``, ``shortcut`` and ``text`` required) or
        change a canned reply."""
        _only(body, ("shortcut", "text") if canned_id else ("group_id", "shortcut", "text"))
        changes = {}
        if canned_id is None or "shortcut" in body:
            changes["shortcut"] = text(body, "shortcut", CANNED_SHORTCUT_MAX_LENGTH)
            if any(character.isspace() for character in changes["shortcut"]):
                raise bad_input("shortcut must not contain spaces")
        if canned_id is None or "text" in body:
            changes["text"] = text(body, "text", CANNED_TEXT_MAX_LENGTH)
        if not changes:
            raise bad_input("give shortcut and/or text")
        group_id = whole_number(body.get("group_id"), "group_id") if canned_id is None else None
        return {"canned": await self.store.save_canned(canned_id, group_id, changes, actor)}

    async def delete_canned(self, canned_id: int, actor: Actor) -> dict:
        await self.store.delete_canned(canned_id, actor)
        return {"id": canned_id}

    async def blocks(self) -> dict:
        return {"blocks": await self.store.blocks()}

    async def lift_block(self, gid: int, actor: Actor) -> dict:
        guest = await self.store.guest(gid)
        if guest is None or guest["blocked_at"] is None:
            raise AdminError(404, NOT_FOUND, f"visitor {gid} is not blocked")
        await self.desk.set_blocked(gid, guest["group_id"], False, actor.admin_id, actor)
        return {"gid": gid}

    # -- reports ---------------------------------------------------------------------------

    async def report(self, arguments: dict[str, str]) -> dict:
        """The report of docs/protocol.md §12 for the query ``arguments``."""
        query = reports.parse_query(arguments)
        data = await self.store.report_data(query.midnights_ms(), query.group_id)
        return reports.build(query, data, await self.store.list_agents())


def _secret(body: dict) -> str:
    """The secret as given: kept exactly, since the receiver signs with its own copy."""
    secret = body["secret"]
    shortest, longest = SECRET_LENGTHS
    if not isinstance(secret, str) or not shortest <= len(secret) <= longest or \
            secret != secret.strip():
        raise bad_input(f"secret must have {shortest} to {longest} characters, "
                        "without spaces at either end")
    return secret


def _group(group: dict) -> dict:
    return {**group, "enabled": bool(group["enabled"])}


def _public(webhook: dict) -> dict:
    """A webhook as the API shows it: its secret only as a hint."""
    shown = {key: value for key, value in webhook.items() if key != "secret"}
    shown["secret_hint"] = webhook["secret"][-4:]
    return shown
