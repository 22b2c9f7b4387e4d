"""The console's chat pane in a real browser against ``cschat run --demo``: a reply is never
hidden (at the bottom it scrolls into view, scrolled up a "New messages ↓" pill appears),
the phone layout with its visitor panel, the emoji picker and the photo lightbox."""

from __future__ import annotations

import re

import pytest
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect  # noqa: E402

from .pages import Desk, chat  # noqa: E402
from .test_console_desk import agent_sends  # noqa: E402


def test_a_reply_scrolls_into_view_at_the_bottom_else_a_pill_appears(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("Hello, one question")
    alice.open(gid)
    desk = Desk(alice)
    agent_sends(alice, gid, [f"Line {i} of a long answer" for i in range(20)])
    # At the bottom: each new message is scrolled into view (PROTOCOL §6 32398).
    expect(alice.message("Line 19 of a long answer")).to_be_in_viewport()
    expect(desk.pill).to_be_hidden()

    # Scrolled up, a reply does not move the view: the pill says there is more.
    desk.scroller.evaluate("e => { e.scrollTop = 0; }")
    alice.page.wait_for_timeout(300)
    expect(alice.message("Line 19 of a long answer")).not_to_be_in_viewport()
    visitor.send("Are you still there?")
    expect(desk.pill).to_be_visible()
    expect(alice.message("Are you still there?")).not_to_be_in_viewport()
    desk.pill.click()
    expect(alice.message("Are you still there?")).to_be_in_viewport()
    expect(desk.pill).to_be_hidden()

    # Within ~80 px of the bottom counts as the bottom: no pill, the reply is shown.
    desk.scroller.evaluate("e => { e.scrollTop = e.scrollHeight - e.clientHeight - 40; }")
    alice.page.wait_for_timeout(200)
    visitor.send("Thanks!")
    expect(alice.message("Thanks!")).to_be_in_viewport()
    expect(desk.pill).to_be_hidden()

    # Scrolling down by hand hides the pill too.
    desk.scroller.evaluate("e => { e.scrollTop = 0; }")
    alice.page.wait_for_timeout(300)
    visitor.send("One more thing")
    expect(desk.pill).to_be_visible()
    desk.scroller.evaluate("e => { e.scrollTop = e.scrollHeight; }")
    expect(desk.pill).to_be_hidden()


def test_on_a_phone_the_visitor_panel_opens_over_the_chat(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    alice.page.set_viewport_size({"width": 390, "height": 760})
    visitor.send("Hello from my phone")
    desk = Desk(alice)
    expect(desk.search).to_be_visible()
    alice.open(gid)
    expect(desk.search).to_be_hidden()  # the chat replaces the list
    toggle = alice.page.locator("#visitor-btn")
    expect(desk.visitor_panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(desk.visitor_panel).to_be_visible()
    expect(desk.fact("Page").get_by_role("link")).to_have_attribute("href", demo.demo_url)
    box = desk.visitor_panel.bounding_box()
    assert box and box["width"] >= 380, box  # over the whole width
    alice.page.keyboard.press("Escape")
    expect(desk.visitor_panel).to_be_hidden()
    expect(toggle).to_be_focused()
    alice.send("Answer on a small screen")
    expect(visitor.message("Answer on a small screen")).to_be_visible()
    alice.page.get_by_role("button", name="Back to the list").click()
    expect(alice.conversation(gid)).to_be_visible()


def test_emoji_picker_and_photo_lightbox(demo, new_page, tmp_path):
    alice, visitor, gid = chat(demo, new_page)
    alice.open(gid)
    page = alice.page
    desk = Desk(alice)
    desk.text.fill("Thanks ")
    emoji = page.get_by_role("button", name="Insert an emoji")
    emoji.click()
    expect(emoji).to_have_attribute("aria-expanded", "true")
    picker = page.get_by_role("dialog", name="Insert an emoji")
    expect(picker).to_be_visible()
    picker.get_by_role("button", name="🙏").click()
    expect(picker).to_be_hidden()
    expect(desk.text).to_have_value("Thanks 🙏")
    desk.text.press("Enter")
    expect(visitor.message("Thanks 🙏")).to_be_visible()

    picture = tmp_path / "parcel.png"
    Image.new("RGB", (400, 300), (40, 120, 200)).save(picture)
    visitor.frame.locator("input[type=file]").set_input_files(picture)
    thumb = page.locator("#message-list").get_by_role("img", name="parcel.png")
    expect(thumb).to_be_visible()
    thumb.click()
    box = page.locator("dialog.cs-lightbox")
    expect(box).to_be_visible()
    expect(box.get_by_role("img", name="parcel.png")).to_have_attribute(
        "src", re.compile(r"/files/[A-Za-z0-9_-]{22}$"))
    page.keyboard.press("Escape")
    expect(box).to_have_count(0)
    assert len(page.context.pages) == 1  # the console did not leave for the file
