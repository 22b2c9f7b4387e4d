"""The widget's reception screens in a real browser against ``cschat run --demo``
(docs/protocol.md §4 "Availability", "E-mail", "Ratings"; §6 22095, 22701; §3 system
messages with ``event``): the group's availability, the away form, the automatic replies in
the visitor's language, the rating after the agent ended the chat and the transcript by
e-mail — each checked against what the server's database then holds."""

from __future__ import annotations

import datetime
import json
import re
import urllib.request

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from conftest import free_port, write_config  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from .conftest import TIMEOUT_MS, DemoServer  # noqa: E402
from .pages import ChineseWidget, Console, Desk, Widget, WidgetReception  # noqa: E402
from .test_admin import admin_api  # noqa: E402

AWAY = "We are away"
LEFT_NOTE = "We'll answer by e-mail at {}"


def group_of_alice(demo) -> int:
    return int(demo.db("SELECT group_id FROM agents WHERE username = 'alice'")[0][0])


def alice_token(demo) -> str:
    """An agent token of Alice (an admin in the demo) from POST /api/login (PROTOCOL §7):
    signed in for the admin API, not online in the chat."""
    request = urllib.request.Request(
        demo.url + "/api/login", method="POST",
        data=json.dumps({"username": "alice", "password": demo.passwords["alice"]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["data"]["token"]


def set_group_settings(demo, token: str, **changes) -> dict:
    """PROTOCOL §10 PUT /api/admin/groups/<id>/settings: the whole object, with ``changes``."""
    group = group_of_alice(demo)
    status, answer = admin_api(demo, token, "GET", f"groups/{group}/settings")
    assert status == 200, answer
    settings = {**answer["data"]["settings"], **changes}
    status, answer = admin_api(demo, token, "PUT", f"groups/{group}/settings", settings)
    assert status == 200, answer
    return answer["data"]


def closed_today() -> list[str]:
    """Yesterday, today and tomorrow (UTC, the group's default time zone): closed now,
    whenever the test runs."""
    today = datetime.datetime.now(datetime.UTC).date()
    return [(today + datetime.timedelta(days=d)).isoformat() for d in (-1, 0, 1)]


@pytest.fixture
def zh_page(browser):
    """A page of a visitor whose browser speaks Chinese (locale zh-CN); script errors fail."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def scan(page, where: str, output_dir) -> None:
    """axe-core finds nothing serious or critical on ``page`` (as test_accessibility.py)."""
    pytest.importorskip("axe_playwright_python.sync_playwright")
    from .test_accessibility import Scans

    scans = Scans(output_dir)
    scans.scan(page, where)
    scans.check()


def test_with_no_agent_the_away_form_leaves_a_message_an_agent_gets_later(demo, new_page,
                                                                         output_dir):
    visitor = Widget(new_page(), demo)
    rx = WidgetReception(visitor)
    visitor.open()
    # PROTOCOL §4 21000 availability "away" (nobody signed in): said in the header, and the
    # away form instead of the promise to answer here; the chat's composer stays.
    expect(rx.status).to_have_text(AWAY)
    expect(rx.away_form).to_be_visible()
    expect(rx.empty).to_be_hidden()
    expect(visitor.input).to_be_visible()
    expect(rx.transcript_button).to_be_hidden()  # nothing to send yet
    scan(visitor.page, "widget away form", output_dir)

    # The address is checked in the browser before anything is sent.
    rx.leave_message("ann@example", "Do you ship teapots to Oslo?", name="Ann")
    expect(rx.alert).to_have_text("Please enter a valid e-mail address.")
    expect(rx.field("E-mail")).to_be_focused()
    expect(rx.field("E-mail")).to_have_attribute("aria-invalid", "true")
    assert demo.db("SELECT COUNT(*) FROM messages") == [(0,)]

    # PROTOCOL §4 22900: the message is shown in the chat with the address we answer to.
    rx.field("E-mail").fill("ann@example.com")
    rx.away_form.get_by_role("button", name="Send message").click()
    message = visitor.message("Do you ship teapots to Oslo?")
    expect(message).to_be_visible()
    expect(message).to_contain_text(LEFT_NOTE.format("ann@example.com"))
    expect(rx.away_form).to_have_count(0)
    # No automatic away reply (PROTOCOL §4 22900): the visitor has just left its address.
    expect(visitor.messages.filter(has_text="We are away right now.")).to_have_count(0)
    # The database holds the address and marks the conversation (PROTOCOL §4 "E-mail").
    (gid, name, context), = demo.db("SELECT gid, name, context FROM guests")
    assert name == "Ann" and json.loads(context)["email"] == "ann@example.com"
    assert demo.db("SELECT left_message FROM conversations WHERE gid = ?", (gid,)) == [(1,)]
    assert demo.db("SELECT body FROM messages WHERE sender = 'guest'") == [
        ("Do you ship teapots to Oslo?",)]

    # An agent who signs in afterwards is handed the guest with its message (PROTOCOL R24).
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    expect(alice.conversations).to_have_count(1)
    alice.conversations.first.click()
    expect(alice.message("Do you ship teapots to Oslo?")).to_be_visible()
    visitor.wait_agent("Alice")
    alice.send("Yes, in three days.")
    expect(visitor.message("in three days")).to_be_visible()

    # After a reload, the note is still there.
    visitor.page.reload()
    visitor.open()
    expect(visitor.message("Do you ship teapots to Oslo?")).to_contain_text(
        LEFT_NOTE.format("ann@example.com"))

    # PROTOCOL §4 22960: the transcript, to the address left (pre-filled); the demo has no
    # SMTP server, so -22962 is said plainly.
    rx.transcript_button.click()
    expect(rx.transcript).to_be_visible()
    email = rx.transcript.get_by_label("E-mail", exact=True)
    expect(email).to_have_value("ann@example.com")
    expect(email).to_be_focused()
    rx.transcript.get_by_role("button", name="Send transcript").click()
    expect(rx.alert).to_have_text("This shop does not send e-mail, so we cannot send the "
                                  "transcript.")
    scan(visitor.page, "widget transcript card", output_dir)
    visitor.page.keyboard.press("Escape")
    expect(rx.transcript).to_have_count(0)
    expect(rx.transcript_button).to_be_focused()


def test_outside_business_hours_the_away_form_shows_even_with_an_agent_signed_in(demo,
                                                                                new_page):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    # PROTOCOL §10 group settings: today is a closed day; a greeting in both languages.
    answer = set_group_settings(demo, alice.token(), closed_days=closed_today(),
                                greeting={"en": "Welcome to the Demo Shop!", "zh": "欢迎光临！"})
    assert answer["availability"] == "away", answer

    visitor = Widget(new_page(), demo)
    rx = WidgetReception(visitor)
    visitor.open()
    # PROTOCOL §4 "Availability": outside business hours the group is away, Alice or not;
    # the greeting (in the visitor's language) heads the form.
    expect(rx.status).to_have_text(AWAY)
    expect(rx.away_form).to_be_visible()
    expect(rx.away_form).to_contain_text("Welcome to the Demo Shop!")
    expect(visitor.frame.locator("#agent-name")).to_have_text("Customer service")
    rx.field("Message").fill("Is the teapot still in stock?")

    # PROTOCOL §6 22095: the hours open again; the visitor may go on in the chat with
    # what it wrote.
    set_group_settings(demo, alice.token(), closed_days=[])
    back = rx.away_form.get_by_role("status")
    expect(back).to_have_text("We are back online. Chat now")
    visitor.wait_agent("Alice")  # the queue is handed out as the hours open (R24)
    back.get_by_role("button", name="Chat now").click()
    expect(rx.away_form).to_have_count(0)
    expect(visitor.input).to_have_value("Is the teapot still in stock?")
    expect(visitor.input).to_be_focused()
    expect(rx.empty).to_have_text("Welcome to the Demo Shop!")  # the greeting, not the generic text
    visitor.input.press("Enter")
    gid = alice.only_conversation()
    alice.open(gid)
    expect(alice.message("Is the teapot still in stock?")).to_be_visible()
    assert demo.db("SELECT left_message FROM conversations WHERE gid = ?", (gid,)) == [(0,)]


def test_the_visitor_rates_the_chat_after_the_agent_ended_it(demo, new_page, output_dir):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    visitor = Widget(new_page(), demo)
    rx = WidgetReception(visitor)
    visitor.open()
    visitor.wait_agent("Alice")
    expect(rx.away_form).to_have_count(0)
    visitor.send("Where is my order 1042?")
    gid = alice.only_conversation()
    alice.open(gid)
    alice.send("It left the warehouse this morning.")
    expect(visitor.message("left the warehouse")).to_be_visible()
    expect(rx.rating).to_have_count(0)

    # PROTOCOL §3 32700 (the console's End button) → the visitor gets 22701: asked to rate.
    alice.page.get_by_role("button", name="End", exact=True).click()
    Desk(alice).confirm()
    expect(rx.rating).to_be_visible()
    stars = rx.rating.get_by_role("radiogroup", name="How was this chat?")
    expect(stars.get_by_role("radio")).to_have_count(5)
    scan(visitor.page, "widget rating card", output_dir)

    # No star chosen: said in the browser, nothing sent.
    rx.rating.get_by_role("button", name="Send rating").click()
    expect(rx.alert).to_have_text("Please choose from 1 to 5 stars.")
    expect(rx.star(1)).to_be_focused()
    # A radio group: the arrow keys choose.
    for _ in range(3):
        visitor.page.keyboard.press("ArrowRight")
    expect(rx.star(4)).to_be_checked()
    expect(rx.rating.locator(".rx-on")).to_have_count(4)
    # In Chinese too.
    visitor.frame.get_by_label("Language").select_option("zh-CN")
    expect(visitor.frame.get_by_role("region", name="这次服务您满意吗？")).to_be_visible()
    visitor.frame.get_by_label("语言").select_option("en")
    rx.rating.get_by_label("Comment (optional)").fill("Quick and friendly")
    rx.rating.get_by_role("button", name="Send rating").click()
    expect(rx.rating).to_contain_text("Thank you for your rating!")

    # PROTOCOL §4 22950: the database holds it (the agent's console shows it from there).
    assert demo.db("SELECT rating, rating_comment FROM conversations WHERE gid = ?",
                   (gid,)) == [(4, "Quick and friendly")]

    # A second chat ended: "Not now" dismisses the question, also after a reload.
    visitor.send("One more question")
    expect(rx.rating).to_have_count(0)  # a new conversation: the last one is not asked about
    expect(alice.message("One more question")).to_be_visible()
    alice.page.get_by_role("button", name="End", exact=True).click()
    Desk(alice).confirm()
    rx.rating.get_by_role("button", name="Not now").click()
    expect(rx.rating).to_have_count(0)
    expect(visitor.input).to_be_focused()

    # The last conversation ended and the group goes away (PROTOCOL §6 22095: business
    # hours closed): the away form is offered below the earlier messages.
    expect(rx.away_form).to_have_count(0)
    set_group_settings(demo, alice.token(), closed_days=closed_today())
    expect(rx.status).to_have_text(AWAY)
    expect(rx.away_form).to_be_in_viewport()

    # After a reload: not asked to rate again; still away (nobody is handed new visitors).
    visitor.page.reload()
    visitor.open()
    expect(visitor.message("One more question")).to_be_visible()
    expect(rx.away_form).to_be_visible()
    expect(rx.rating).to_have_count(0)
    assert demo.db("SELECT rating FROM conversations WHERE gid = ? ORDER BY id",
                   (gid,)) == [(4,), (None,)]


def test_the_away_reply_renders_in_chinese_for_a_chinese_visitor(demo, zh_page, new_page):
    token = alice_token(demo)
    set_group_settings(demo, token, away_reply={"en": "We are closed; back at 9 tomorrow.",
                                                "zh": "我们已下班，明早 9 点回来。"})
    visitor = ChineseWidget(zh_page, demo)
    rx = WidgetReception(visitor)
    visitor.open()
    expect(rx.status).to_have_text("客服暂时不在")
    expect(visitor.frame.get_by_role("region", name="我们现在不在线")).to_be_visible()
    visitor.send("你好，有人吗？")
    # PROTOCOL §4 "Availability" / §3: the reply is a system message with event "away" and
    # the group's text in both languages; the widget shows the visitor's.
    reply = visitor.messages.filter(has_text="我们已下班，明早 9 点回来。")
    expect(reply).to_be_visible()
    expect(visitor.messages.filter(has_text="We are closed")).to_have_count(0)
    stored = demo.db("SELECT body, event FROM messages WHERE sender = 'system'")
    assert [body for body, _ in stored] == ["We are closed; back at 9 tomorrow."], stored
    assert json.loads(stored[0][1])["event"] == "away"
    # In English when the visitor switches.
    visitor.frame.get_by_label("语言").select_option("en")
    expect(visitor.messages.filter(has_text="We are closed; back at 9 tomorrow.")).to_be_visible()


def test_the_busy_reply_and_queue_position_render_in_chinese(new_page, zh_page, tmp_path):
    # One conversation per agent: Alice is full after one visitor wrote (PROTOCOL R24).
    server = DemoServer(tmp_path)
    server.config = write_config(tmp_path, {"server": {"port": server.port, "host": "127.0.0.1"},
                                            "chat": {"agent_capacity": 1}})
    server.start()
    try:
        alice = Console(new_page(), server, "alice").sign_in("Alice")
        first = Widget(new_page(), server)
        first.open()
        first.wait_agent("Alice")
        first.send("Do you sell gift cards?")
        expect(alice.conversations).to_have_count(1)

        visitor = ChineseWidget(zh_page, server)
        rx = WidgetReception(visitor)
        visitor.open()
        # PROTOCOL §4 21000 availability "busy" (and expected_wait, when known).
        expect(rx.status).to_have_text(re.compile(r"^客服都在忙(，预计等待约 \d+ 分钟)?$"))
        expect(visitor.frame.get_by_role("region")).to_have_count(0)  # no away form
        visitor.send("请问茶壶有货吗？")
        # The automatic busy reply without a text of the group: the widget's own, with the
        # queue position (PROTOCOL §3 event "busy", queue_position); 22098 in the header.
        expect(visitor.messages.filter(has_text="客服正忙，您排在第 1 位。")).to_be_visible()
        expect(rx.status).to_contain_text("您排在第 1 位")
        (event,), = server.db("SELECT event FROM messages WHERE sender = 'system'")
        assert json.loads(event) == {"event": "busy", "text": None, "queue_position": 1}
    finally:
        server.kill()


def test_on_a_phone_the_away_form_fits_the_screen(demo, new_page):
    page = new_page()
    page.set_viewport_size({"width": 360, "height": 640})
    visitor = Widget(page, demo)
    rx = WidgetReception(visitor)
    page.goto(demo.demo_url)
    visitor.bubble.click()
    expect(rx.away_form).to_be_visible()
    for label in ("Name (optional)", "E-mail", "Message"):
        box = rx.field(label).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (label, box)
    rx.leave_message("li@example.com", "Please call me back")
    expect(visitor.message("Please call me back")).to_contain_text(
        LEFT_NOTE.format("li@example.com"))


def test_the_transcript_is_mailed_once_then_the_visitor_is_told_to_wait(new_page, tmp_path):
    # A shop that sends e-mail: an SMTP server is set up (nobody listens there; the mail
    # waits in the outbox, which is all 22960 does — PROTOCOL §4 "E-mail").
    server = DemoServer(tmp_path)
    server.config = write_config(tmp_path, {
        "server": {"port": server.port, "host": "127.0.0.1"},
        "email": {"smtp_host": "127.0.0.1", "smtp_port": free_port(), "security": "none",
                  "from": "Demo Shop <shop@example.com>"}})
    server.start()
    try:
        visitor = Widget(new_page(), server)
        rx = WidgetReception(visitor)
        visitor.open()
        rx.leave_message("mei@example.com", "Please send me the price list", name="Mei")
        expect(visitor.message("Please send me the price list")).to_contain_text(
            LEFT_NOTE.format("mei@example.com"))

        # PROTOCOL §4 22960: to the address left (pre-filled), said where it goes.
        rx.transcript_button.click()
        expect(rx.transcript.get_by_label("E-mail", exact=True)).to_have_value("mei@example.com")
        rx.transcript.get_by_role("button", name="Send transcript").click()
        expect(rx.transcript.get_by_role("status")).to_have_text(
            "The transcript is on its way to mei@example.com.")
        rx.transcript.get_by_role("button", name="Done").click()
        expect(rx.transcript).to_have_count(0)
        expect(rx.transcript_button).to_be_focused()
        assert server.db("SELECT COUNT(*) FROM outbox WHERE event = 'transcript'") == [(1,)]

        # Again at once: -22963, said plainly (in Chinese too); nothing more is queued.
        rx.transcript_button.click()
        rx.transcript.get_by_role("button", name="Send transcript").click()
        expect(rx.alert).to_have_text("A transcript was already sent a few minutes ago. "
                                      "Please try again later.")
        visitor.frame.get_by_label("Language").select_option("zh-CN")
        expect(rx.alert).to_have_text("几分钟前已经发送过聊天记录，请稍后再试。")
        assert server.db("SELECT COUNT(*) FROM outbox WHERE event = 'transcript'") == [(1,)]
    finally:
        server.kill()
