"""The agent's desk (docs/protocol.md §3, "The desk"): past conversations, search,
private notes, tags, blocking visitors and canned replies; and the visitor's page
changes (22800) that feed the agent's visitor panel.

Like :class:`~cschat.chat.ChatService`, methods take the :class:`Session` and
the request's parameters, return the answer's ``data`` or raise
:class:`~cschat.protocol.ApiError`, and publish through the broker after the
store has committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cschat import protocol as p
from cschat.broker import MemoryBroker, agent_channel, group_channel, guest_channel
from cschat.messages import message_info
from cschat.protocol import ApiError
from cschat.store import Actor, Conflict, Store
from cschat.store.search import snippet
from cschat.visitors import page_context, public_context, visit_day

if TYPE_CHECKING:
    from cschat.chat import ChatService, Session

FILTERS = ("mine", "waiting", "ended", "all")
MAX_QUERY, MAX_TAG, MAX_TAGS = 100, 32, 20
VISITOR_MATCHES = 10

PUSH_GUEST_CONTEXT = 32097
PUSH_NOTE = 32821
PUSH_TAGS = 32841
PUSH_BLOCKED_TO_AGENTS = 32851
PUSH_BLOCKED_TO_GUEST = 22097


def _tags(params: dict, key: str) -> list[str]:
    tags = params.get(key, [])
    if not isinstance(tags, list) or not all(
            isinstance(tag, str) and 0 < len(tag.strip()) <= MAX_TAG and "," not in tag
            for tag in tags):
        raise ApiError(-32842, f"{key} must be a list of tags of 1 to {MAX_TAG} characters, "
                               "without commas")
    return sorted({tag.strip() for tag in tags})


class DeskService:
    """The desk of one server; it shares the chat service's routing and blocked set."""

    def __init__(self, store: Store, broker: MemoryBroker, chat: ChatService,
                 chat_settings: dict, message_search: bool = True):
        self.store, self.broker, self.chat = store, broker, chat
        self.max_note_length = chat_settings["max_message_length"]
        self.message_search = message_search  # [privacy] search_index

    # -- past conversations and search -----------------------------------------------------

    async def conversations(self, session: Session, params: dict) -> dict:
        """32800: conversations of my group, filtered, newest first, paged."""
        state = params.get("filter", "all")
        if state not in FILTERS:
            raise ApiError(p.BAD_PARAMETER, f"filter must be one of {', '.join(FILTERS)}")
        tag = params.get("tag")
        if tag is not None and (not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG):
            raise ApiError(p.BAD_PARAMETER, "tag must be a tag")
        gid = p.optional_integer(params, "gid")
        before = p.optional_integer(params, "before")
        limit = p.integer(params, "limit", default=30, low=1, high=100)
        found = await self.store.conversation_list(session.group_id, state, session.admin_id,
                                                   tag, gid, before, limit)
        for conversation in found:
            last = conversation["last_message"]
            conversation["last_message"] = last and message_info(last, conversation["group_id"])
        return {"list": found,
                "next_before": found[-1]["conversation_id"] if len(found) == limit else None}

    async def search(self, session: Session, params: dict) -> dict:
        """32810: text messages and visitors of my group matching ``q``; visitors only
        when ``[privacy] search_index`` is off (``message_search`` false)."""
        query = params.get("q")
        if not isinstance(query, str) or not 0 < len(query.strip()) <= MAX_QUERY:
            raise ApiError(p.BAD_PARAMETER, f"q must have 1 to {MAX_QUERY} characters")
        query = query.strip()
        before = p.optional_integer(params, "before")
        limit = p.integer(params, "limit", default=20, low=1, high=50)
        hits, next_before = [], None
        if self.message_search:
            hits, next_before = await self.store.search_messages(session.group_id, query,
                                                                 before, limit)
        messages = [{**{k: v for k, v in hit.items() if k != "body"},
                     "snippet": snippet(hit["body"], query)} for hit in hits]
        visitors = [] if before is not None else await self.store.search_visitors(
            session.group_id, query, VISITOR_MATCHES)
        return {"messages": messages, "visitors": visitors, "next_before": next_before,
                "message_search": self.message_search}

    # -- notes and tags ------------------------------------------------------------------------

    async def add_note(self, session: Session, params: dict) -> dict:
        """32820: a private note on a visitor's conversation; the group's agents get 32821."""
        gid = await self._guest_of_my_group(session, params)
        body = params.get("msg")
        if not isinstance(body, str) or not body.strip() or len(body) > self.max_note_length:
            raise ApiError(-32822, f"msg must be text of 1 to {self.max_note_length} characters")
        note = await self.store.add_note(gid, session.admin_id, body)
        self.broker.publish(group_channel(session.group_id), p.push(PUSH_NOTE,
                                                                    {"gid": gid, "note": note}),
                            exclude=session.subscriber)
        return {"note": note}

    async def notes(self, session: Session, params: dict) -> dict:
        """32830: the notes of a visitor's conversation."""
        gid = await self._guest_of_my_group(session, params)
        return {"notes": await self.store.notes(gid, p.optional_integer(params,
                                                                        "conversation_id"))}

    async def tags(self, session: Session, params: dict) -> dict:
        """32840: add and remove tags of a conversation of my group."""
        conversation_id = p.integer(params, "conversation_id", -32841, low=1)
        owner = await self.store.conversation_group(conversation_id)
        if owner is None or owner[1] != session.group_id:
            raise ApiError(-32841, "no such conversation in your group")
        try:
            tags = await self.store.change_tags(conversation_id, _tags(params, "add"),
                                                _tags(params, "remove"), MAX_TAGS)
        except Conflict as error:
            raise ApiError(-32842, str(error)) from None
        self.broker.publish(group_channel(session.group_id), p.push(PUSH_TAGS, {
            "conversation_id": conversation_id, "gid": owner[0], "tags": tags}))
        return {"conversation_id": conversation_id, "tags": tags}

    # -- blocking -----------------------------------------------------------------------------

    async def block(self, session: Session, params: dict) -> dict:
        """32850: block (1) or unblock (0) a visitor of my group."""
        gid = await self._guest_of_my_group(session, params, -32851)
        blocked = bool(p.integer(params, "blocked", low=0, high=1))
        await self.set_blocked(gid, session.group_id, blocked, session.admin_id)
        return {"gid": gid, "blocked": blocked}

    async def set_blocked(self, gid: int, group_id: int, blocked: bool, admin_id: int,
                          actor: Actor | None = None) -> None:
        """Block or unblock guest ``gid`` (by ``admin_id``; audited when an ``actor`` of
        the admin API is given); tell the guest and the group's agents."""
        await self.store.set_blocked(gid, blocked, admin_id, actor)
        if blocked:
            self.chat.blocked.add(gid)
        else:
            self.chat.blocked.discard(gid)
        self.broker.publish(guest_channel(gid), p.push(PUSH_BLOCKED_TO_GUEST,
                                                       {"blocked": blocked}))
        self.broker.publish(group_channel(group_id), p.push(PUSH_BLOCKED_TO_AGENTS, {
            "gid": gid, "blocked": blocked, "admin_id": admin_id}))

    # -- canned replies --------------------------------------------------------------------------

    async def canned(self, session: Session, params: dict) -> dict:
        """32860: the canned replies of my group."""
        return {"list": [{"id": c["id"], "shortcut": c["shortcut"], "text": c["text"]}
                         for c in await self.store.canned_replies(session.group_id)]}

    # -- the visitor's pages -------------------------------------------------------------------

    async def guest_page(self, session: Session, params: dict) -> dict:
        """22800: the visitor moved to another page; its agent gets 32097."""
        context = page_context(params.get("context"))
        if not context:
            raise ApiError(p.BAD_PARAMETER, "context must hold the page's url and title")
        await self.store.record_visit(session.gid, context, visit_day())
        agent = self.chat.routing.assigned_agent(session.gid)
        if agent is not None:
            guest = await self.store.guest(session.gid)
            self.broker.publish(agent_channel(agent.admin_id), p.push(PUSH_GUEST_CONTEXT, {
                "gid": session.gid, "group_id": session.group_id,
                "context": public_context(guest["context"], guest["created_at"],
                                          guest["visits"])}))
        return {}

    async def _guest_of_my_group(self, session: Session, params: dict, code: int = -32821
                                 ) -> int:
        gid = p.integer(params, "gid", code, low=1)
        guest = await self.store.guest(gid)
        if guest is None or guest["group_id"] != session.group_id:
            raise ApiError(code, "no such visitor in your group")
        return gid
