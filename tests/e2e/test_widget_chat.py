"""The visitor widget in a real browser against ``cschat run --demo``: replies are never
hidden (the "New messages" pill), the bubble counts and chimes while the panel is closed,
the host page's context reaches the server, a blocked visitor keeps its draft, and a
connection that stops answering is noticed in seconds."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect  # noqa: E402

from .pages import SENT, Console, Widget, agent_calls, chat  # noqa: E402

SENDING = "Sending…"
RECONNECTING = "Connection lost, reconnecting…"
# Counts the sounds the widget makes (WebAudio oscillators started), in every frame.
COUNT_CHIMES = """
window.__chimes = 0;
if (window.AudioContext) {
  const create = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    window.__chimes++;
    return create.call(this);
  };
}
"""


def say(alice: Console, gid: int, *texts: str) -> None:
    """Alice's messages to the visitor ``gid``, sent at once from another tab of hers."""
    answers = agent_calls(alice, *({"api_key": 32300, "gid": gid, "msg": text} for text in texts))
    assert all(a["code"] == 200 for a in answers), answers


def test_a_reply_scrolls_into_view_at_the_bottom_else_the_pill_shows(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    log = visitor.frame.locator("#log")
    pill = visitor.frame.get_by_role("button", name="New messages ↓")
    say(alice, gid, *(f"Line {i}: our teapots are glazed by hand.\nAsk me anything."
                      for i in range(14)))
    # At the bottom: each reply scrolls into view, no pill.
    expect(visitor.message("Line 13:")).to_be_in_viewport()
    assert log.evaluate("e => e.scrollHeight > e.clientHeight + 200")
    expect(pill).to_be_hidden()

    # Scrolled up to read: a reply does not move the page; the pill says it came.
    log.evaluate("e => { e.scrollTop = 0; }")
    say(alice, gid, "Shall I reserve one for you?")
    expect(pill).to_be_visible()
    expect(visitor.message("Shall I reserve")).to_be_attached()
    expect(visitor.message("Shall I reserve")).not_to_be_in_viewport()
    assert log.evaluate("e => e.scrollTop") < 80
    pill.focus()
    visitor.page.keyboard.press("Enter")
    expect(visitor.message("Shall I reserve")).to_be_in_viewport()
    expect(pill).to_be_hidden()
    expect(visitor.input).to_be_focused()  # the pill is gone: the keyboard goes on there

    # Within 80 px of the bottom counts as at the bottom (a long reply too).
    log.evaluate("e => { e.scrollTop = e.scrollHeight - e.clientHeight - 40; }")
    say(alice, gid, "A long answer:\n" + "\n".join(f"point {i}" for i in range(12)) + "\nThe end.")
    expect(visitor.message("The end.")).to_be_in_viewport()
    expect(pill).to_be_hidden()
    # Scrolling down by hand also puts the pill away.
    log.evaluate("e => { e.scrollTop = 0; }")
    say(alice, gid, "One more thing.")
    expect(pill).to_be_visible()
    log.evaluate("e => { e.scrollTop = e.scrollHeight; }")
    expect(pill).to_be_hidden()
    log.evaluate("e => { e.scrollTop = 0; }")
    say(alice, gid, "And the last one.")
    pill.click()
    expect(visitor.message("And the last one.")).to_be_in_viewport()
    expect(pill).to_be_hidden()


def test_the_bubble_counts_and_chimes_for_replies_while_the_panel_is_closed(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.page.context.add_init_script(COUNT_CHIMES)
    visitor.page.reload()  # the counter in every frame from the start
    visitor.open()
    visitor.wait_agent("Alice")
    chimes = visitor.frame.locator("body")
    visitor.send("Do you ship to Norway?")  # the visitor has interacted: sound is allowed
    expect(visitor.tick("Do you ship to Norway?")).to_have_attribute("aria-label", SENT)
    say(alice, gid, "Yes, we do.")  # panel open: no sound, no count
    expect(visitor.message("Yes, we do.")).to_be_visible()
    badge = visitor.bubble.locator("span")
    expect(badge).to_be_hidden()
    assert chimes.evaluate("() => window.__chimes") == 0

    visitor.close()
    say(alice, gid, "Shipping takes 3 days.", "It is free over € 40.")
    expect(badge).to_have_text("2")
    expect(badge).to_be_visible()
    _wait(visitor.page, lambda: chimes.evaluate("() => window.__chimes") >= 2)
    assert chimes.evaluate("() => window.__chimes") == 2  # one per reply

    visitor.open()  # seen: the count goes, the replies are in view
    expect(badge).to_be_hidden()
    expect(visitor.message("It is free over")).to_be_in_viewport()


def _frames_sent(page) -> list[dict]:
    """Every JSON frame the page's WebSockets send, as they go (appended to the list)."""
    sent: list[dict] = []

    def on_socket(ws):
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", on_socket)
    return sent


def test_the_host_pages_context_reaches_the_server(demo, new_page):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    visitor = Widget(new_page(), demo)
    sent = _frames_sent(visitor.page)
    visitor.open()
    visitor.wait_agent("Alice")
    gid = alice.only_conversation()

    # PROTOCOL §4 21000: the login carries the host page's context.
    login = next(f for f in sent if f.get("api_key") == 21000)
    context = login["context"]
    assert context["url"] == demo.demo_url
    assert context["title"] == "Demo Shop"
    assert context["referrer"] is None  # opened directly
    assert context["language"] == "en-US"
    assert isinstance(context["timezone"], str) and context["timezone"]

    # PROTOCOL §4 22800: a new page (a link to an anchor; a single-page shop's
    # pushState and title change) is sent as it happens, strings bounded.
    def pages() -> list[dict]:
        return [f["context"] for f in sent if f.get("api_key") == 22800]

    visitor.page.get_by_role("link", name="About").click()
    _wait(visitor.page, lambda: any(c["url"] == demo.demo_url + "#about" for c in pages()))
    visitor.page.evaluate("""() => {
        history.pushState({}, "", "/demo/?product=teapot&" + "x".repeat(3000));
        document.title = "Stoneware teapot — " + "t".repeat(300);
    }""")
    _wait(visitor.page, lambda: any(c["title"].startswith("Stoneware teapot") for c in pages()))
    last = pages()[-1]
    assert last["url"].startswith(demo.url + "/demo/?product=teapot&x") and len(last["url"]) == 2048
    assert len(last["title"]) == 256
    assert last["language"] == "en-US" and last["timezone"] == context["timezone"]
    assert visitor.page.evaluate("document.title").startswith("Stoneware teapot")
    expect(visitor.input).to_be_visible()  # nothing broke: the chat goes on
    visitor.send("Is this one in stock?")
    expect(alice.conversation(gid)).to_contain_text("Is this one in stock?")

    # The server keeps the latest page in the guest's context (PROTOCOL §3 "context").
    columns = {row[1] for row in demo.db("PRAGMA table_info(guests)")}
    if "context" not in columns:
        pytest.skip("the server does not store the visitor's context yet (guests.context)")
    def stored() -> dict:
        return json.loads(demo.db("SELECT context FROM guests WHERE gid = ?", (gid,))[0][0])

    _wait(visitor.page, lambda: stored().get("title", "").startswith("Stoneware teapot"))
    assert stored()["url"] == last["url"] and stored()["language"] == "en-US"


def _wait(page, condition, timeout: float = 10) -> None:
    """Wait for ``condition()``; Playwright's events (frames sent) come in meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)


def test_a_blocked_visitor_is_told_and_keeps_the_draft(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("First question")
    expect(visitor.tick("First question")).to_have_attribute("aria-label", SENT)
    draft = "Hello?\nWhy can't I write?"
    visitor.input.fill(draft)

    # PROTOCOL §3 32850 block → the guest gets 22097 {blocked}.
    answer, = agent_calls(alice, {"api_key": 32850, "gid": gid, "blocked": 1})
    if answer["code"] == -10002:
        pytest.skip("the server does not implement 32850 (block) yet")
    assert answer["code"] == 200, answer
    notice = visitor.frame.get_by_role("alert")
    expect(notice).to_have_text("You cannot send messages here for now. "
                                "What you write is kept until you can.")
    send = visitor.frame.get_by_role("button", name="Send", exact=True)
    expect(send).to_be_disabled()
    visitor.input.press("Enter")  # nothing is sent, nothing is lost
    expect(visitor.input).to_have_value(draft)
    expect(visitor.messages).to_have_count(1)

    # In Chinese too.
    visitor.frame.get_by_label("Language").select_option("zh-CN")
    expect(notice).to_have_text("您暂时无法在此发送消息，已输入的内容会为您保留。")
    visitor.frame.get_by_label("语言").select_option("en")

    # A reload is told by the login (PROTOCOL §4 21000 blocked).
    visitor.page.reload()
    visitor.open()
    expect(notice).to_be_visible()
    visitor.input.fill(draft)

    answer, = agent_calls(alice, {"api_key": 32850, "gid": gid, "blocked": 0})
    assert answer["code"] == 200, answer
    expect(notice).to_be_hidden()
    expect(send).to_be_enabled()
    visitor.input.press("Enter")
    expect(visitor.tick("Why can't I write?")).to_have_attribute("aria-label", SENT)
    expect(visitor.input).to_have_value("")


def test_a_message_refused_as_blocked_goes_back_into_the_composer(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    demo.kill()
    expect(visitor.banner).to_have_text(RECONNECTING)
    text = "Written while the server was down\n(second line)"
    visitor.input.fill(text)
    visitor.input.press("Enter")
    expect(visitor.tick("Written while the server was down")).to_have_attribute(
        "aria-label", SENDING)
    # Blocked meanwhile (as 32850 would store it); the restarted server refuses the
    # resend with -22307 (PROTOCOL §4 22300) and its login says blocked (21000).
    columns = {row[1] for row in demo.db("PRAGMA table_info(guests)")}
    if "blocked_at" not in columns:
        pytest.skip("the server does not store blocks yet (guests.blocked_at)")
    db = sqlite3.connect(demo.db_path)
    with db:  # committed
        db.execute("UPDATE guests SET blocked_at = ?, blocked_by = 1 WHERE gid = ?",
                   (int(time.time() * 1000), gid))
    db.close()
    demo.start()
    expect(visitor.banner).to_be_hidden(timeout=20_000)
    expect(visitor.frame.get_by_role("alert")).to_be_visible()
    expect(visitor.input).to_have_value(text)  # nothing lost
    expect(visitor.messages).to_have_count(0)
    assert demo.db("SELECT COUNT(*) FROM messages WHERE sender = 'guest'") == [(0,)]


def test_a_server_that_stops_answering_is_noticed_and_the_message_sent_after(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("Before the pause")
    expect(visitor.tick("Before the pause")).to_have_attribute("aria-label", SENT)

    # The process stops, its sockets stay open: only unanswered heartbeats tell
    # (PROTOCOL R6: heartbeat {"call_type": 0} is answered at once).
    os.kill(demo.process.pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        expect(visitor.banner).to_have_text(RECONNECTING, timeout=15_000)
        assert time.monotonic() - stopped < 15
        visitor.send("Sent while it was away")
        expect(visitor.tick("Sent while it was away")).to_have_attribute("aria-label", SENDING)
    finally:
        os.kill(demo.process.pid, signal.SIGCONT)
    expect(visitor.banner).to_be_hidden(timeout=15_000)
    expect(visitor.tick("Sent while it was away")).to_have_attribute("aria-label", SENT)
    alice.open(gid)
    expect(alice.message("Sent while it was away")).to_have_count(1)
    stored = [body for body, in demo.db("SELECT body FROM messages WHERE sender = 'guest'")]
    assert sorted(stored) == ["Before the pause", "Sent while it was away"], stored
    assert re.search(r"\bBefore the pause\b", visitor.messages.first.inner_text())
