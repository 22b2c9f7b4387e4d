"""A visitor on the demo shop page and agents in the console, in a real browser against
``cschat run --demo``: writing, unread badges, read ticks, images, transfers, text that
looks like HTML, and a server restart while both pages are open."""

from __future__ import annotations

import re

import pytest
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect  # noqa: E402

from .pages import READ, SENT, Console, chat  # noqa: E402

SENDING = "Sending…"


def test_visitor_writes_agent_answers_with_unread_badge_and_read_ticks(demo, new_page,
                                                                       output_dir):
    alice, visitor, gid = chat(demo, new_page)
    question = "Hello! Is the stoneware teapot in stock?"
    visitor.send(question)
    expect(visitor.tick(question)).to_have_attribute("aria-label", SENT)

    # Not open in the console yet: listed with an unread badge and a preview.
    expect(alice.badge(gid)).to_be_visible()
    expect(alice.badge(gid)).to_have_text("1")
    expect(alice.conversation(gid)).to_contain_text(question)
    expect(alice.page.locator("#chat-main")).to_be_hidden()

    alice.open(gid)
    expect(alice.message(question)).to_be_visible()
    expect(alice.badge(gid)).to_be_hidden()
    # The agent has read it: the visitor's message gets its read tick.
    expect(visitor.tick(question)).to_have_attribute("aria-label", READ)
    expect(visitor.tick(question)).to_have_text("✓✓")

    # The visitor closes the panel; the answer arrives while it is closed.
    visitor.close()
    answer = "Yes, we have three left. Shall I reserve one for you?"
    alice.send(answer)
    expect(alice.tick(answer)).to_have_attribute("aria-label", SENT)
    badge = visitor.bubble.locator("span")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("1")
    alice.page.wait_for_timeout(500)
    expect(alice.tick(answer)).to_have_attribute("aria-label", SENT)  # still unread

    # Opening the panel shows the answer and marks it read on the agent's side.
    visitor.open()
    expect(visitor.message(answer)).to_be_visible()
    expect(badge).to_be_hidden()
    expect(alice.tick(answer)).to_have_attribute("aria-label", READ)
    expect(alice.tick(answer)).to_have_text("✓✓")
    expect(visitor.messages).to_have_count(2)
    expect(alice.messages).to_have_count(2)

    alice.page.screenshot(path=output_dir / "console.png")
    visitor.page.screenshot(path=output_dir / "widget.png")


def test_visitor_image_shows_as_thumbnail_for_the_agent(demo, new_page, tmp_path):
    alice, visitor, gid = chat(demo, new_page)
    alice.open(gid)
    picture = tmp_path / "parcel.png"
    Image.new("RGB", (400, 300), (200, 90, 40)).save(picture)

    visitor.frame.locator("input[type=file]").set_input_files(picture)

    thumb = alice.page.locator("#message-list").get_by_role("img", name="parcel.png")
    expect(thumb).to_be_visible()
    expect(thumb).to_have_attribute("src", re.compile(r"^/files/[A-Za-z0-9_-]{22}/thumb$"))
    expect(thumb).to_have_js_property("naturalWidth", 320)  # the thumbnail, loaded
    expect(thumb).to_have_js_property("naturalHeight", 240)
    expect(alice.page.locator("#message-list .cs-image-link")).to_have_attribute(
        "href", re.compile(r"^/files/[A-Za-z0-9_-]{22}$"))
    expect(alice.conversation(gid)).to_contain_text("[Image]")
    # The visitor sees its own picture, stored and read by the agent, who has it open.
    own = visitor.frame.locator("#list").get_by_role("img", name="parcel.png")
    expect(own).to_be_visible()
    expect(own).to_have_js_property("naturalWidth", 320)
    expect(visitor.messages).to_have_count(1)
    expect(visitor.messages.locator(".cs-tick")).to_have_attribute("aria-label", READ)


def test_agent_transfers_to_a_second_agent(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    question = "Where is my order 1042?"
    visitor.send(question)
    alice.open(gid)
    expect(alice.message(question)).to_be_visible()

    bob = Console(new_page(), demo, "bob").sign_in("Bob")
    expect(bob.page.get_by_text("No conversations yet.")).to_be_visible()

    alice.page.get_by_role("button", name="Transfer").click()
    dialog = alice.page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=re.compile(r"\bBob\b")).click()
    expect(dialog).to_be_hidden()

    # Alice: out of her list, read only, told where it went.
    expect(alice.conversation(gid)).to_have_count(0)
    expect(alice.page.get_by_role("alert")).to_have_text(
        "This conversation was transferred to Bob.")
    expect(alice.composer).to_be_disabled()
    note = "Alice transferred the conversation to Bob"
    expect(alice.message(note)).to_have_count(1)

    # Bob: in his list, with the history; the visitor: Bob is the agent now.
    expect(bob.conversation(gid)).to_be_visible()
    bob.open(gid)
    expect(bob.message(question)).to_be_visible()
    expect(bob.message(note)).to_have_count(1)
    visitor.wait_agent("Bob")
    expect(visitor.message(note)).to_have_count(1)

    answer = "Bob here: order 1042 left our warehouse this morning."
    bob.send(answer)
    expect(visitor.message(answer)).to_be_visible()
    reply = "Thank you, Bob!"
    visitor.send(reply)
    expect(bob.message(reply)).to_be_visible()
    expect(alice.message(reply)).to_have_count(0)

    # PROTOCOL §3 message_info event: the note is shown in the reader's language.
    bob.page.locator(".lang-switch:visible").click()
    expect(bob.message("Alice 将会话转接给了 Bob")).to_have_count(1)
    expect(bob.message(note)).to_have_count(0)


def test_markup_in_messages_is_shown_as_text(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    from_visitor = '<img src=x onerror=alert("visitor")>'
    from_agent = '<img src=x onerror=alert("agent")><b>bold?</b>'
    visitor.send(from_visitor)
    expect(alice.conversation(gid)).to_contain_text(from_visitor)  # the list's preview
    alice.open(gid)
    alice.send(from_agent)

    for messages in (alice.messages, visitor.messages):
        texts = messages.locator(".cs-text")
        expect(texts).to_have_count(2)
        expect(texts.nth(0)).to_have_text(from_visitor)
        expect(texts.nth(1)).to_have_text(from_agent)
        expect(messages.locator("img, b")).to_have_count(0)
    expect(alice.page.locator('img[src="x"]')).to_have_count(0)
    expect(visitor.frame.locator('img[src="x"]')).to_have_count(0)
    # An alert() would have been recorded by the new_page fixture and fail the test.


def test_messages_sent_during_a_server_restart_appear_once(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("Before the restart (visitor)")
    alice.open(gid)
    alice.send("Before the restart (agent)")
    expect(visitor.message("Before the restart (agent)")).to_be_visible()

    demo.kill()
    expect(alice.connection).to_contain_text("Reconnecting")
    expect(visitor.banner).to_have_text("Connection lost, reconnecting…")
    from_visitor, from_agent = "Sent in the outage (visitor)", "Sent in the outage (agent)"
    visitor.send(from_visitor)
    alice.send(from_agent)
    expect(visitor.tick(from_visitor)).to_have_attribute("aria-label", SENDING)
    expect(alice.tick(from_agent)).to_have_attribute("aria-label", SENDING)
    expect(alice.connection).to_contain_text("1 message(s) waiting")

    demo.start()  # the same configuration file, port and database
    expect(alice.connection).to_be_hidden(timeout=30_000)
    expect(visitor.banner).to_be_hidden(timeout=30_000)
    texts = ["Before the restart (visitor)", "Before the restart (agent)", from_visitor,
             from_agent]
    for side in (alice, visitor):
        for text in texts:
            expect(side.message(text)).to_have_count(1)
    expect(visitor.tick(from_visitor)).not_to_have_attribute("aria-label", SENDING)
    expect(alice.tick(from_agent)).not_to_have_attribute("aria-label", SENDING)
    # No late duplicate from a resend or a second catch-up.
    alice.page.wait_for_timeout(1500)
    for side in (alice, visitor):
        expect(side.messages).to_have_count(4)
        for text in texts:
            expect(side.message(text)).to_have_count(1)
    stored = [body for body, in demo.db(
        "SELECT body FROM messages WHERE sender != 'system' ORDER BY id")]
    assert sorted(stored) == sorted(texts), stored  # each stored once: resends were idempotent
