"""The console, widget and embed.js routes and their security headers (PROTOCOL §7)."""

from __future__ import annotations

import pytest
import tornado.httpclient


async def get(h, path: str) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        h.url + path, follow_redirects=False, raise_error=False)


@pytest.mark.gen_test
async def test_pages_carry_a_strict_policy_with_configured_framing(make_server):
    h = await make_server(server={"frame_ancestors": "'self' https://shop.example"})
    for path in ("/console/", "/widget/"):
        page = await get(h, path)
        assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "frame-ancestors 'self' https://shop.example" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert b"<script" in page.body and b"<script>" not in page.body  # no inline script


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
