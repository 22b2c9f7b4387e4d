"""The console, the widget, ``/embed.js`` and the demo shop page, with their security headers.

Pages get a strict Content-Security-Policy (only this server's own scripts,
styles and connections; framing limited by ``[server] frame_ancestors``) and
``Referrer-Policy: no-referrer``, so a token in a console URL fragment never
leaks and no injected markup could run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import tornado.web

import cschat

if TYPE_CHECKING:
    from cschat.app import Server


def static_folder() -> str:
    """Where the console and widget assets are: installed beside the package, or the
    repository's ``static/`` when running from a checkout."""
    installed = os.path.join(os.path.dirname(cschat.__file__), "static")
    if os.path.isdir(installed):
        return installed
    return os.path.abspath(os.path.join(os.path.dirname(cschat.__file__), os.pardir, "static"))


def content_security_policy(frame_ancestors: str) -> str:
    return ("default-src 'self'; img-src 'self' data: blob: https: http:; "
            "media-src 'self' blob:; connect-src 'self'; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {frame_ancestors}")


def _security_headers(handler: tornado.web.RequestHandler, server: Server) -> None:
    handler.set_header("Content-Security-Policy",
                       content_security_policy(server.settings.server["frame_ancestors"]))
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Content-Type-Options", "nosniff")


class PageHandler(tornado.web.RequestHandler):
    """One HTML page from the static folder; ``{{group_id}}`` is filled in on the demo page."""

    def initialize(self, server: Server, page: str, group_id: int | None = None) -> None:
        self.server = server
        self.page = page
        self.group_id = group_id

    def get(self) -> None:
        try:
            with open(os.path.join(self.server.static_folder, self.page), encoding="utf-8") as f:
                html = f.read()
        except FileNotFoundError:
            raise tornado.web.HTTPError(404) from None
        if self.group_id is not None:
            html = html.replace("{{group_id}}", str(self.group_id))
        _security_headers(self, self.server)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(html)

    head = get


class AssetHandler(tornado.web.StaticFileHandler):
    """Scripts, styles and images of the pages; revalidated by ETag so updates show at once."""

    def initialize(self, server: Server) -> None:
        super().initialize(path=server.static_folder)
        self.server = server

    def set_extra_headers(self, path: str) -> None:
        _security_headers(self, self.server)
        self.set_header("Cache-Control", "no-cache")

    def get_content_type(self) -> str:
        if self.absolute_path.endswith((".js", ".mjs")):
            return "text/javascript; charset=utf-8"
        return super().get_content_type()


class NoFaviconHandler(tornado.web.RequestHandler):
    """Browsers ask for /favicon.ico on every page; an empty answer keeps logs quiet."""

    def get(self) -> None:
        self.set_status(204)
        self.set_header("Cache-Control", "public, max-age=86400")


def routes(server: Server, demo_group: int | None) -> list[tuple]:
    context = {"server": server}
    pages = [
        (r"/console", tornado.web.RedirectHandler, {"url": "/console/"}),
        (r"/console/", PageHandler, {**context, "page": "console/index.html"}),
        (r"/widget", tornado.web.RedirectHandler, {"url": "/widget/"}),
        (r"/widget/", PageHandler, {**context, "page": "widget/index.html"}),
        (r"/(embed\.js)", AssetHandler, context),
        (r"/static/(.+)", AssetHandler, context),
        (r"/favicon\.ico", NoFaviconHandler),
    ]
    if demo_group is not None:
        pages += [
            (r"/demo", tornado.web.RedirectHandler, {"url": "/demo/"}),
            (r"/demo/", PageHandler, {**context, "page": "demo/index.html",
                                      "group_id": demo_group}),
        ]
    return pages
