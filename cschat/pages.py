"""The console, the widget, ``/embed.js`` and the demo shop page: security headers,
framing, compression and caching.

Pages get a strict Content-Security-Policy (only this server's own scripts,
styles and connections) and ``Referrer-Policy: no-referrer``, so a token in a
console URL fragment never leaks and no injected markup could run. Framing is
limited by ``[server] frame_ancestors`` for the console (and the demo page) and by
``[server] widget_frame_ancestors`` for the visitor widget; a browser that frames a
page where the policy forbids it shows it blank, so the server says so in its log
(:func:`framing_refused`), once a minute at most.

Text answers are gzipped (:class:`TextCompression`); how assets are cached is
explained at :class:`AssetHandler`.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from typing import TYPE_CHECKING, NamedTuple

import tornado.httputil
import tornado.web

import cschat
from cschat.logs import ThrottledLog

if TYPE_CHECKING:
    from cschat.app import Server

log = logging.getLogger("cschat.pages")

CONSOLE_FRAMING = "frame_ancestors"
WIDGET_FRAMING = "widget_frame_ancestors"
# At most one framing warning a minute per setting; the next one counts those left out.
FRAMING_LOG_SECONDS = 60.0
# embed.js is on every page of a shop: browsers reuse it this long without asking.
EMBED_MAX_AGE = 300


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


def _security_headers(handler: tornado.web.RequestHandler, server: Server,
                      framing: str = CONSOLE_FRAMING) -> None:
    handler.set_header("Content-Security-Policy",
                       content_security_policy(server.settings.server[framing]))
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Content-Type-Options", "nosniff")


# -- who framed a page, and whether frame-ancestors lets it ------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\]")
_SCHEME_SOURCE = re.compile(r"[a-z][a-z0-9+.-]*:")
_HOST_SOURCE = re.compile(
    r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?"
    r"(?P<host>\*|(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]+|\*))?(?P<path>/[^?#]*)?")
# Sec-Fetch-Dest of a document loaded into a frame (frame-ancestors covers all four).
_FRAME_DESTINATIONS = {"iframe", "frame", "object", "embed"}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")


def origin_of(url: str) -> Origin | None:
    """The http(s) origin of ``url``, or None for anything else (``null``, garbage): only
    the origin is ever logged, never a path or query that might hold a token."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if scheme not in _DEFAULT_PORTS or len(host) > 253 or not _HOST.fullmatch(host):
        return None
    return Origin(scheme, host, port or _DEFAULT_PORTS[scheme])


def _scheme_matches(source: str, scheme: str) -> bool:
    # CSP3: a source's http also matches https (the secure upgrade), not the reverse.
    return source == scheme or (source == "http" and scheme == "https")


def _matches_self(ancestor: Origin, own: Origin) -> bool:
    if ancestor == own:
        return True
    return (ancestor.host == own.host and own.scheme == "http" and ancestor.scheme == "https"
            and own.port == 80 and ancestor.port == 443)


def _matches_host_source(match: re.Match, ancestor: Origin, own: Origin) -> bool:
    scheme, host, port, path = match.group("scheme", "host", "port", "path")
    if not _scheme_matches(scheme or own.scheme, ancestor.scheme):
        return False
    if host.startswith("*."):
        if not ancestor.host.endswith(host[1:]):
            return False
    elif host != "*" and host != ancestor.host:
        return False
    if port is None:
        port_ok = ancestor.port == _DEFAULT_PORTS[ancestor.scheme]
    else:
        port_ok = port == "*" or int(port) == ancestor.port or (
            port == "80" and ancestor.scheme == "https" and ancestor.port == 443)
    # frame-ancestors compares an ancestor's origin (path "/"): a deeper path never matches.
    return port_ok and path in (None, "", "/")


def frame_allowed(sources: str, ancestor: Origin, own: Origin) -> bool:
    """Whether a page of ``own`` origin whose policy says ``frame-ancestors <sources>``
    may be framed by a page of ``ancestor`` origin (CSP Level 3 source matching)."""
    for source in sources.lower().split():
        if source == "*":
            return True  # ancestors are http(s) origins here
        if source == "'self'":
            if _matches_self(ancestor, own):
                return True
        elif source.startswith("'"):
            continue  # 'none'; other keywords mean nothing for frame-ancestors
        elif _SCHEME_SOURCE.fullmatch(source):
            if _scheme_matches(source[:-1], ancestor.scheme):
                return True
        else:
            match = _HOST_SOURCE.fullmatch(source)
            if match and _matches_host_source(match, ancestor, own):
                return True
    return False


def _allows_other_origins(sources: str) -> bool:
    """Whether a policy could let some origin other than this server's frame the page."""
    return any(not source.startswith("'") for source in sources.lower().split())


def framing_refused(request: tornado.httputil.HTTPServerRequest, sources: str) -> str | None:
    """Who framed this request's page, when the browser will refuse to show it there
    because ``frame-ancestors <sources>`` does not allow them; else None.

    Browsers say that a document is being loaded into a frame (``Sec-Fetch-Dest:
    iframe``) and how the framing page relates to this server (``Sec-Fetch-Site``);
    ``Origin`` or ``Referer``, when the framing page's referrer policy lets them
    through, tell which site it is. Without them, a cross-site frame is reported only
    when the policy allows no other origin at all. Only the framing page's origin is
    returned: what a shop's URL holds beyond that stays out of the log.
    """
    if request.headers.get("Sec-Fetch-Dest", "").lower() not in _FRAME_DESTINATIONS:
        return None
    own = origin_of(f"{request.protocol}://{request.host}")
    if own is None:
        return None
    relation = request.headers.get("Sec-Fetch-Site", "").lower()
    ancestor = None
    for header in ("Origin", "Referer"):
        ancestor = origin_of(request.headers.get(header, ""))
        if ancestor is not None:
            break
    if ancestor is None and relation == "same-origin":
        ancestor = own
    if ancestor is not None:
        return None if frame_allowed(sources, ancestor, own) else str(ancestor)
    if relation in ("same-site", "cross-site") and not _allows_other_origins(sources):
        return f"a {relation} page (the browser did not say which)"
    return None


class _AsWarnings:
    """A logger whose ``error`` writes warnings, for :class:`ThrottledLog`: a page framed
    where the policy forbids it is a matter of configuration, not a failure."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def error(self, message: str, *args, exc_info=None) -> None:
        self.logger.warning(message, *args, exc_info=exc_info)


def framing_logs() -> dict[str, ThrottledLog]:
    """One throttled log per framing setting, so that a busy page framed in the wrong
    place writes one line a minute, and cannot hide a warning about the other one."""
    return {setting: ThrottledLog(_AsWarnings(log), FRAMING_LOG_SECONDS)
            for setting in (CONSOLE_FRAMING, WIDGET_FRAMING)}


# -- handlers ----------------------------------------------------------------------------------

class PageHandler(tornado.web.RequestHandler):
    """One HTML page from the static folder; ``{{group_id}}`` is filled in on the demo page.

    ``framing`` names the setting that lists who may frame the page.
    """

    def initialize(self, server: Server, page: str, framing_logs: dict[str, ThrottledLog],
                   framing: str = CONSOLE_FRAMING, group_id: int | None = None) -> None:
        self.server = server
        self.page = page
        self.framing = framing
        self.framing_log = framing_logs[framing]
        self.group_id = group_id

    def get(self) -> None:
        try:
            with open(os.path.join(self.server.static_folder, self.page), encoding="utf-8") as f:
                html = f.read()
        except FileNotFoundError:
            raise tornado.web.HTTPError(404) from None
        if self.group_id is not None:
            html = html.replace("{{group_id}}", str(self.group_id))
        sources = self.server.settings.server[self.framing]
        framer = framing_refused(self.request, sources)
        if framer is not None:
            self.framing_log.error(
                "%s was loaded in a frame by %s, which [server] %s = %s does not allow: the "
                "browser shows a blank frame there (add the site to %s if it should frame it)",
                self.request.path, framer, self.framing, sources, self.framing)
        _security_headers(self, self.server, self.framing)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(html)

    head = get


class AssetHandler(tornado.web.StaticFileHandler):
    """Scripts, styles and images of the pages, and ``/embed.js``; every answer has an
    ETag (a hash of the file), so revalidating costs a 304 without a body.

    ``/embed.js`` is on every page of a shop, so browsers and shared caches may reuse it
    for :data:`EMBED_MAX_AGE` seconds without asking: a shop's visitors get an update
    within minutes, and a page view costs no request to cschat.

    Everything under ``/static/`` is ``Cache-Control: no-cache``: revalidated on every
    load. The console and the widget are ES modules that import each other by fixed
    absolute paths (``/static/shared/i18n.js``), so versioned URLs would mean rewriting
    every import (an import map would be an inline script, which the CSP forbids). And
    long-caching only what can be versioned (the pages' entry modules and styles) would
    be unsound: a fresh entry module could run against a cached older dependency. A
    cheap 304 per module keeps the modules of one page load from one release; pages
    are loaded once per visit (the widget only once its bubble is clicked), over a
    kept-alive connection. The hashes are computed once per process: cschat is
    restarted to be upgraded.
    """

    def initialize(self, server: Server) -> None:
        super().initialize(path=server.static_folder)
        self.server = server

    def get_cache_time(self, path: str, modified, mime_type: str) -> int:
        return 0  # no Expires header, even for ?v=; Cache-Control below says it all

    def set_extra_headers(self, path: str) -> None:
        _security_headers(self, self.server)
        if path == "embed.js":
            self.set_header("Cache-Control", f"public, max-age={EMBED_MAX_AGE}")
        else:
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


class TextCompression(tornado.web.OutputTransform):
    """gzip for text answers (pages, scripts, styles, JSON, CSV) when the client accepts it:
    Tornado's ``compress_response`` (its GZipContentEncoding), with three differences.

    - ``/files/…`` is never touched: stored uploads are served as stored, so a byte
      range (a seeking player, a resumed download) is a range of the file's own bytes.
      Media (images, voice, video) would not be compressed anyway: GZipContentEncoding
      takes only ``text/*`` and a few textual ``application/*`` types.
    - A partial answer (206) is never compressed, whatever the path.
    - A compressed answer's ETag is made weak (``W/"…"``): the gzip bytes are not those
      the strong tag names. Tornado compares ETags weakly, so revalidation still gets 304.

    WebSocket handshakes (101) and bodiless answers are left alone, as by Tornado. No
    answer mixes a secret with text a cross-site page could choose and make a browser
    send with credentials (cschat's credentials are bearer tokens, never cookies), so
    compression reveals nothing by its size (BREACH).
    """

    def __init__(self, request: tornado.httputil.HTTPServerRequest) -> None:
        self._gzip: tornado.web.GZipContentEncoding | None = None
        if not request.path.startswith("/files/"):
            self._gzip = tornado.web.GZipContentEncoding(request)

    def transform_first_chunk(self, status_code: int, headers: tornado.httputil.HTTPHeaders,
                              chunk: bytes, finishing: bool
                              ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        if self._gzip is None or status_code == 206:
            self._gzip = None
            return status_code, headers, chunk
        encoded = "Content-Encoding" in headers
        status_code, headers, chunk = self._gzip.transform_first_chunk(
            status_code, headers, chunk, finishing)
        etag = headers.get("Etag", "")
        if not encoded and headers.get("Content-Encoding") == "gzip" and etag.startswith('"'):
            headers["Etag"] = "W/" + etag
        return status_code, headers, chunk

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        return chunk if self._gzip is None else self._gzip.transform_chunk(chunk, finishing)


TRANSFORMS: list[type[tornado.web.OutputTransform]] = [TextCompression]


def routes(server: Server, demo_group: int | None) -> list[tuple]:
    context = {"server": server}
    pages = {**context, "framing_logs": framing_logs()}
    routes_ = [
        (r"/console", tornado.web.RedirectHandler, {"url": "/console/"}),
        (r"/console/", PageHandler, {**pages, "page": "console/index.html"}),
        (r"/widget", tornado.web.RedirectHandler, {"url": "/widget/"}),
        (r"/widget/", PageHandler, {**pages, "page": "widget/index.html",
                                    "framing": WIDGET_FRAMING}),
        (r"/(embed\.js)", AssetHandler, context),
        (r"/static/(.+)", AssetHandler, context),
        (r"/favicon\.ico", NoFaviconHandler),
    ]
    if demo_group is not None:
        routes_ += [
            (r"/demo", tornado.web.RedirectHandler, {"url": "/demo/"}),
            (r"/demo/", PageHandler, {**pages, "page": "demo/index.html",
                                      "group_id": demo_group}),
        ]
    return routes_
