"""The console, widget and embed.js routes: security headers, framing, compression and
caching (PROTOCOL §7, docs/security.md)."""

from __future__ import annotations

import asyncio
import gzip
import logging

import pytest
import tornado.httpclient
from conftest import Client
from test_uploads import PDF, image_bytes, upload

from cschat import pages

GZIP = {"Accept-Encoding": "gzip"}


async def get(h, path: str, headers: dict | None = None) -> tornado.httpclient.HTTPResponse:
    """The answer as sent: redirects not followed, gzip not undone."""
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        h.url + path, headers=headers, follow_redirects=False, raise_error=False,
        decompress_response=False)


@pytest.mark.gen_test
async def test_pages_carry_a_strict_policy_with_configured_framing(make_server):
    h = await make_server(server={"frame_ancestors": "'self' https://shop.example",
                                  "widget_frame_ancestors": "https://shop.example"})
    for path, ancestors in (("/console/", "'self' https://shop.example"),
                            ("/widget/", "https://shop.example")):
        page = await get(h, path)
        assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert policy.endswith(f"frame-ancestors {ancestors}")
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert b"<script" in page.body and b"<script>" not in page.body  # no inline script


@pytest.mark.gen_test
async def test_by_default_any_site_may_frame_the_widget_and_only_cschat_the_console(
        cschat_server):
    widget = await get(cschat_server, "/widget/")
    assert widget.headers["Content-Security-Policy"].endswith("frame-ancestors *")
    console = await get(cschat_server, "/console/")
    assert console.headers["Content-Security-Policy"].endswith("frame-ancestors 'self'")


@pytest.mark.gen_test
async def test_root_redirects_to_the_console_and_assets_are_served(cschat_server):
    root = await get(cschat_server, "/")
    assert root.code in (301, 302) and root.headers["Location"] == "/console/"
    embed = await get(cschat_server, "/embed.js")
    assert embed.code == 200 and embed.headers["Content-Type"].startswith("text/javascript")
    asset = await get(cschat_server, "/static/shared/chat-client.js")
    assert asset.code == 200 and asset.headers["X-Content-Type-Options"] == "nosniff"
    assert (await get(cschat_server, "/static/../cschat.db")).code in (403, 404)
    assert (await get(cschat_server, "/favicon.ico")).code == 204


@pytest.mark.gen_test
async def test_demo_page_only_in_demo_mode(cschat_server):
    # without --demo there is no demo shop page
    assert (await get(cschat_server, "/demo/")).code == 404


# -- framing where the policy forbids it is logged ---------------------------------------------

def framed(site: str | None = None, relation: str = "cross-site", **headers) -> dict:
    """The headers Chromium sends for a document loaded into an iframe of ``site``."""
    sent = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": relation, **headers}
    if site is not None:
        sent["Referer"] = site
    return sent


def framing_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cschat.pages" and r.levelno == logging.WARNING]


@pytest.mark.gen_test
async def test_console_framed_by_a_site_not_allowed_is_logged_once(make_server, caplog):
    caplog.set_level(logging.INFO, logger="cschat.pages")
    h = await make_server(server={"frame_ancestors": "'self' https://backoffice.example"})
    allowed = [
        {},  # opened as a page of its own
        framed("https://backoffice.example/chat?token=x"),
        framed("https://backoffice.example:443/", relation="same-site"),
        framed(None, relation="same-origin"),  # cschat's own pages send no Referer
        framed(f"{h.url}/console/", relation="same-origin"),
        framed(None, Origin="https://backoffice.example"),
    ]
    for headers in allowed:
        assert (await get(h, "/console/", headers)).code == 200
    assert framing_warnings(caplog) == []

    # The browser shows nothing there; the server says who framed it and which setting.
    refused = await get(h, "/console/", framed("https://evil.example/inbox?token=SECRET"))
    assert refused.code == 200
    assert refused.headers["Content-Security-Policy"].endswith(
        "frame-ancestors 'self' https://backoffice.example")
    [line] = framing_warnings(caplog)
    assert "/console/" in line and "https://evil.example" in line
    assert "[server] frame_ancestors = 'self' https://backoffice.example" in line
    assert "inbox" not in line and "SECRET" not in line  # only the framing site's origin

    # A busy page framed there cannot flood the log: one line a minute.
    for _ in range(30):
        await get(h, "/console/", framed("https://evil.example/"))
    await get(h, "/console/", framed("http://backoffice.example/"))  # http ≠ https
    assert len(framing_warnings(caplog)) == 1


@pytest.mark.gen_test
async def test_framing_warnings_are_throttled_and_count_what_they_left_out(
        make_server, caplog, monkeypatch):
    monkeypatch.setattr(pages, "FRAMING_LOG_SECONDS", 0.3)
    caplog.set_level(logging.INFO, logger="cschat.pages")
    h = await make_server()
    for _ in range(5):
        await get(h, "/console/", framed("https://evil.example/"))
    await asyncio.sleep(0.4)
    await get(h, "/console/", framed("https://other.example/"))
    first, second = framing_warnings(caplog)
    assert "https://evil.example" in first and "more like it" not in first
    assert "https://other.example" in second and "(and 4 more like it)" in second


@pytest.mark.gen_test
async def test_widget_framing_follows_its_own_setting(make_server, caplog):
    caplog.set_level(logging.INFO, logger="cschat.pages")
    # By default any site may frame the widget: nothing to say.
    h = await make_server()
    for site in ("https://shop.example/", "http://localhost:3000/cart", None):
        assert (await get(h, "/widget/", framed(site))).code == 200
    assert framing_warnings(caplog) == []

    # Restricted to the shop: another site is logged, under the widget's setting.
    h = await make_server(server={"widget_frame_ancestors": "https://*.shop.example"})
    await get(h, "/widget/", framed("https://www.shop.example/p/1"))
    assert framing_warnings(caplog) == []
    await get(h, "/widget/", framed("https://shop.example/"))  # *. means subdomains only
    [line] = framing_warnings(caplog)
    assert "/widget/" in line and "https://shop.example" in line
    assert "widget_frame_ancestors = https://*.shop.example" in line
    # The console's warnings have their own throttle: a busy widget cannot hide them.
    await get(h, "/console/", framed("https://www.shop.example/"))
    assert "[server] frame_ancestors = 'self'" in framing_warnings(caplog)[1]


@pytest.mark.gen_test
async def test_a_cross_site_frame_without_address_is_logged_only_when_certain(
        make_server, caplog):
    caplog.set_level(logging.INFO, logger="cschat.pages")
    h = await make_server(server={"widget_frame_ancestors": "https://shop.example"})
    # The framing page sent no Referer (its referrer policy): the widget's policy lets
    # some other sites in, so it may well be one of them.
    await get(h, "/widget/", framed(None))
    assert framing_warnings(caplog) == []
    # The console lets no other site in at all: any cross-site frame is refused.
    await get(h, "/console/", framed(None, relation="same-site"))
    [line] = framing_warnings(caplog)
    assert "a same-site page (the browser did not say which)" in line


@pytest.mark.parametrize("sources, ancestor, allowed", [
    ("'self'", "http://chat.example:8700", True),
    ("'self'", "https://chat.example", False),
    ("'none'", "http://chat.example:8700", False),
    ("*", "https://anything.example", True),
    ("https:", "https://anything.example", True),
    ("https:", "http://anything.example", False),
    ("http:", "https://anything.example", True),  # the secure upgrade
    ("https://shop.example", "https://shop.example", True),
    ("https://shop.example/", "https://shop.example", True),
    ("https://shop.example/shop/", "https://shop.example", False),  # an origin's path is /
    ("https://shop.example", "https://shop.example:8443", False),
    ("https://shop.example:*", "https://shop.example:8443", True),
    ("http://shop.example", "https://shop.example", True),
    ("shop.example", "http://shop.example", True),  # no scheme: as cschat's own (http)
    ("SHOP.example", "https://shop.example", True),
    ("*.shop.example", "http://a.b.shop.example", True),
    ("*.shop.example", "http://shop.example", False),
    ("'self' https://a.example https://b.example", "https://b.example", True),
    ("'unsafe-inline' 'nonce-x'", "https://b.example", False),
])
def test_frame_ancestors_source_matching(sources, ancestor, allowed):
    own = pages.origin_of("http://chat.example:8700")
    assert pages.frame_allowed(sources, pages.origin_of(ancestor), own) is allowed


@pytest.mark.parametrize("url", ["null", "", "javascript:alert(1)", "file:///etc/passwd",
                                 "https://exa mple.com/", "http://[::1", "https://a.example:99999"])
def test_addresses_that_name_no_http_origin_are_ignored(url):
    assert pages.origin_of(url) is None


# -- compression ---------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_scripts_and_pages_are_gzipped_when_the_client_accepts_it(cschat_server):
    h = cschat_server
    for path in ("/static/console/console.js", "/console/"):
        plain = await get(h, path)
        assert "Content-Encoding" not in plain.headers and len(plain.body) > 1024
        zipped = await get(h, path, GZIP)
        assert zipped.code == 200 and zipped.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in zipped.headers["Vary"]
        assert len(zipped.body) < len(plain.body) and gzip.decompress(zipped.body) == plain.body
        # (a file is streamed: chunked, or a Content-Length of the gzip bytes)
        assert zipped.headers.get("Content-Length", str(len(zipped.body))) == str(len(zipped.body))
        # The gzip bytes are not the ones the strong tag names: the tag is weak, and
        # revalidating with it (or with the strong one) still gets a 304.
        assert zipped.headers["Etag"] == "W/" + plain.headers["Etag"]
        for etag in (zipped.headers["Etag"], plain.headers["Etag"]):
            assert (await get(h, path, {**GZIP, "If-None-Match": etag})).code == 304
    # A byte range is of the file's own bytes, never compressed.
    plain = await get(h, "/static/console/console.js")
    part = await get(h, "/static/console/console.js", {**GZIP, "Range": "bytes=0-99"})
    assert part.code == 206 and "Content-Encoding" not in part.headers
    assert part.body == plain.body[:100]


@pytest.mark.gen_test
async def test_json_answers_are_gzipped(cschat_server):
    h = cschat_server
    group_id = await h.group()
    admin_id = await h.agent(group_id, "Alice", role="admin")
    for n in range(12):
        await h.agent(group_id, f"Agent number {n} of the very long names")
    headers = {"Authorization": f"Bearer {h.server.tokens.mint_agent(admin_id)}"}
    plain = await get(h, "/api/admin/agents", headers)
    assert plain.code == 200 and plain.headers["Content-Type"].startswith("application/json")
    assert len(plain.body) > 1024 and "Content-Encoding" not in plain.headers
    zipped = await get(h, "/api/admin/agents", {**headers, **GZIP})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == plain.body


@pytest.mark.gen_test
async def test_uploads_and_websockets_are_not_compressed(make_server):
    h = await make_server()
    group_id = await h.group()
    token = h.server.tokens.mint_agent(await h.agent(group_id))
    # A text file, which gzip would shrink: served as stored, ranges of its own bytes.
    text = b"All work and no play makes Jack a dull boy.\n" * 200
    status, body = await upload(h, token, text, "notes.txt")
    assert status == 200 and body["data"]["mime"] == "text/plain"
    url = body["data"]["url"]
    whole = await get(h, url, GZIP)
    assert "Content-Encoding" not in whole.headers and whole.body == text
    part = await get(h, url, {**GZIP, "Range": "bytes=10-19"})
    assert part.code == 206 and "Content-Encoding" not in part.headers
    assert part.body == text[10:20]
    # Media are compressed already: left as they are.
    for name, data in (("photo.png", image_bytes("PNG", (600, 400))), ("manual.pdf", PDF)):
        status, body = await upload(h, token, data, name)
        assert status == 200
        media = await get(h, body["data"]["url"], GZIP)
        assert "Content-Encoding" not in media.headers
    # A browser's WebSocket handshake accepts gzip too; the chat works as ever.
    guest = await Client.connect(h.port, 1, GZIP)
    login = await guest.ok(21000, token=h.server.tokens.mint_guest("v-1", group_id))
    assert login["group_id"] == group_id


# -- caching -------------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_embed_js_is_cached_for_minutes_and_modules_revalidated(cschat_server):
    h = cschat_server
    embed = await get(h, "/embed.js", GZIP)
    assert embed.headers["Cache-Control"] == f"public, max-age={pages.EMBED_MAX_AGE}"
    assert pages.EMBED_MAX_AGE <= 600 and "Expires" not in embed.headers
    assert (await get(h, "/embed.js", {**GZIP, "If-None-Match": embed.headers["Etag"]})
            ).code == 304
    # Modules import each other by fixed paths: always revalidated, a cheap 304.
    for path in ("/static/shared/i18n.js", "/static/widget/widget.css",
                 "/static/shared/i18n.js?v=123"):
        module = await get(h, path, GZIP)
        assert module.code == 200 and module.headers["Cache-Control"] == "no-cache"
        assert "Expires" not in module.headers and module.headers["Etag"]
        again = await get(h, path, {**GZIP, "If-None-Match": module.headers["Etag"]})
        assert again.code == 304 and again.body == b""
