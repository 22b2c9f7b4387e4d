"""Thin handlers of the admin API (docs/protocol.md §10): authenticate, parse, answer.

Every request is checked by :meth:`AdminHandler.prepare` before its method
runs; errors of the service and the store become the API's error answers.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from cschat.admin import reports
from cschat.admin.errors import AdminError, bad_input, from_store_error
from cschat.admin.service import whole_number
from cschat.handlers import JsonHandler
from cschat.store import StoreError

if TYPE_CHECKING:
    from cschat.app import Server

AUDIT_PAGE = (50, 200)  # default and largest page of the audit log
DELIVERIES_PAGE = (20, 100)


class AdminHandler(JsonHandler):
    """Base of the admin endpoints: only an admin's token gets past :meth:`prepare`."""

    def initialize(self, server: Server) -> None:
        super().initialize(server)
        self.admin = server.admin

    async def prepare(self) -> None:
        try:
            self.actor = await self.admin.authenticate(self.request.headers.get("Authorization"))
        except AdminError as error:
            if error.status == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="cschat"')
            self.answer(error.status, error.code, error.message)

    async def respond(self, work: Awaitable[dict], status: int = 200) -> None:
        """Answer with what ``work`` returns, or with the error it raises."""
        try:
            data = await work
        except StoreError as error:
            error = from_store_error(error)
            self.answer(error.status, error.code, error.message)
        except AdminError as error:
            self.answer(error.status, error.code, error.message)
        else:
            self.answer(status, data=data)

    def number(self, name: str, default: tuple[int, int]) -> int:
        """The query argument ``name``: a whole number up to ``default[1]``, else ``default[0]``."""
        text = self.get_query_argument(name, "")
        if not text:
            return default[0]
        if not text.isdigit():
            raise bad_input(f"{name} must be a whole number")
        return whole_number(int(text), name, 1, default[1])

    def path_id(self, text: str) -> int:
        return whole_number(int(text), "id") if text.isdigit() and len(text) < 16 else 0


class GroupsHandler(AdminHandler):
    """``/api/admin/groups``"""

    async def get(self) -> None:
        await self.respond(self.admin.groups())

    async def post(self) -> None:
        await self.respond(self.admin.add_group(self.body(), self.actor), 201)


class GroupHandler(AdminHandler):
    """``/api/admin/groups/<id>``"""

    async def patch(self, group_id: str) -> None:
        await self.respond(self.admin.update_group(self.path_id(group_id), self.body(),
                                                   self.actor))


class GroupSettingsHandler(AdminHandler):
    """``/api/admin/groups/<id>/settings``"""

    async def get(self, group_id: str) -> None:
        await self.respond(self.admin.group_settings(self.path_id(group_id)))

    async def put(self, group_id: str) -> None:
        await self.respond(self.admin.save_group_settings(self.path_id(group_id), self.body(),
                                                          self.actor))


class AgentsHandler(AdminHandler):
    """``/api/admin/agents``"""

    async def get(self) -> None:
        await self.respond(self.admin.agents())

    async def post(self) -> None:
        await self.respond(self.admin.add_agent(self.body(), self.actor), 201)


class AgentHandler(AdminHandler):
    """``/api/admin/agents/<id>``"""

    async def patch(self, admin_id: str) -> None:
        await self.respond(self.admin.update_agent(self.path_id(admin_id), self.body(),
                                                   self.actor))


class AuditHandler(AdminHandler):
    """``/api/admin/audit?limit=&before=``"""

    async def get(self) -> None:
        await self.respond(self._page())

    async def _page(self) -> dict:
        limit = self.number("limit", AUDIT_PAGE)
        before = self.get_query_argument("before", "")
        return await self.admin.audit(limit, self.path_id(before) if before else None)


class WebhooksHandler(AdminHandler):
    """``/api/admin/webhooks``"""

    async def get(self) -> None:
        await self.respond(self.admin.webhooks())

    async def post(self) -> None:
        await self.respond(self.admin.add_webhook(self.body(), self.actor), 201)


class WebhookHandler(AdminHandler):
    """``/api/admin/webhooks/<id>``"""

    async def delete(self, webhook_id: str) -> None:
        await self.respond(self.admin.delete_webhook(self.path_id(webhook_id), self.actor))


class DeliveriesHandler(AdminHandler):
    """``/api/admin/webhooks/<id>/deliveries?limit=``"""

    async def get(self, webhook_id: str) -> None:
        await self.respond(self._deliveries(webhook_id))

    async def _deliveries(self, webhook_id: str) -> dict:
        return await self.admin.deliveries(self.path_id(webhook_id),
                                           self.number("limit", DELIVERIES_PAGE))


class CannedRepliesHandler(AdminHandler):
    """``/api/admin/canned?group_id=``"""

    async def get(self) -> None:
        await self.respond(self.admin.canned(self.get_query_argument("group_id", None)))

    async def post(self) -> None:
        await self.respond(self.admin.save_canned(None, self.body(), self.actor), 201)


class CannedReplyHandler(AdminHandler):
    """``/api/admin/canned/<id>``"""

    async def patch(self, canned_id: str) -> None:
        await self.respond(self.admin.save_canned(self.path_id(canned_id), self.body(),
                                                  self.actor))

    async def delete(self, canned_id: str) -> None:
        await self.respond(self.admin.delete_canned(self.path_id(canned_id), self.actor))


class BlocksHandler(AdminHandler):
    """``/api/admin/blocks``"""

    async def get(self) -> None:
        await self.respond(self.admin.blocks())


class BlockHandler(AdminHandler):
    """``/api/admin/blocks/<gid>``"""

    async def delete(self, gid: str) -> None:
        await self.respond(self.admin.lift_block(self.path_id(gid), self.actor))


class ReportsHandler(AdminHandler):
    """``/api/admin/reports?from=&to=&tz=&group_id=[&format=csv&rows=days|agents]``"""

    async def get(self) -> None:
        arguments = {key: self.get_query_argument(key) for key in self.request.query_arguments}
        if arguments.get("format", "json") == "json":
            await self.respond(self.admin.report(arguments))
            return
        try:
            csv_text = await self._csv(arguments)
        except AdminError as error:
            self.answer(error.status, error.code, error.message)
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="cschat-report-'
                        f'{arguments["rows"]}-{arguments["from"]}-{arguments["to"]}.csv"')
        self.finish(csv_text)

    async def _csv(self, arguments: dict[str, Any]) -> str:
        if arguments.get("format") != "csv" or arguments.get("rows", "days") not in (
                "days", "agents"):
            raise bad_input("format must be json or csv, and rows days or agents")
        arguments.setdefault("rows", "days")
        report = await self.admin.report(arguments)
        return reports.to_csv(report, arguments["rows"])


def routes(server: Server) -> list[tuple]:
    context = {"server": server}
    number = r"([^/]+)"
    return [
        (r"/api/admin/groups", GroupsHandler, context),
        (rf"/api/admin/groups/{number}", GroupHandler, context),
        (rf"/api/admin/groups/{number}/settings", GroupSettingsHandler, context),
        (r"/api/admin/agents", AgentsHandler, context),
        (rf"/api/admin/agents/{number}", AgentHandler, context),
        (r"/api/admin/audit", AuditHandler, context),
        (r"/api/admin/webhooks", WebhooksHandler, context),
        (rf"/api/admin/webhooks/{number}", WebhookHandler, context),
        (rf"/api/admin/webhooks/{number}/deliveries", DeliveriesHandler, context),
        (r"/api/admin/canned", CannedRepliesHandler, context),
        (rf"/api/admin/canned/{number}", CannedReplyHandler, context),
        (r"/api/admin/blocks", BlocksHandler, context),
        (rf"/api/admin/blocks/{number}", BlockHandler, context),
        (r"/api/admin/reports", ReportsHandler, context),
    ]
