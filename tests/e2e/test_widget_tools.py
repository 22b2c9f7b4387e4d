"""The widget's tools in a real browser against ``cschat run --demo``: the emoji picker and
the image lightbox (shared modules, loaded on first use), files dropped on the widget,
cards readable in both UIs, and the message embed.js shows when the widget cannot be
framed."""

from __future__ import annotations

import re

import pytest
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from conftest import write_config  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from .conftest import DemoServer  # noqa: E402
from .pages import READ, SENT, Widget, agent_calls, chat  # noqa: E402

# WCAG 2.x contrast of an element's text against the background it is drawn on (the
# first ancestor with an opaque background colour).
CONTRAST = """e => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92
    : ((v + 0.055) / 1.055) ** 2.4; }).reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  let bg = e;
  while (bg && (rgb(getComputedStyle(bg).backgroundColor)[3] ?? 1) === 0) bg = bg.parentElement;
  const a = lum(rgb(getComputedStyle(e).color));
  const b = lum(rgb(getComputedStyle(bg || document.body).backgroundColor));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_the_emoji_picker_inserts_at_the_caret_with_the_keyboard(demo, new_page):
    visitor = Widget(new_page(), demo)
    loaded: list[str] = []
    visitor.page.on("request", lambda request: loaded.append(request.url))
    visitor.open()
    button = visitor.frame.get_by_role("button", name="Emoji")
    # Loaded on first use only: not part of what opening the widget costs.
    assert not [url for url in loaded if url.endswith(("/emoji.js", "/lightbox.js"))], loaded
    picker = visitor.frame.get_by_role("dialog", name="Emoji")
    visitor.input.fill("Thanks a lot")
    visitor.input.evaluate("e => e.setSelectionRange(6, 6)")  # the caret after "Thanks"

    button.focus()
    visitor.page.keyboard.press("Enter")  # opens; the first emoji has the focus
    expect(picker).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    first = picker.get_by_role("button").first
    expect(first).to_be_focused()
    assert any(url.endswith("/static/shared/emoji.js") for url in loaded)
    for key in ("ArrowRight", "ArrowRight", "ArrowDown", "ArrowLeft"):  # row 2, column 2
        visitor.page.keyboard.press(key)
    chosen = picker.get_by_role("button").nth(9)
    expect(chosen).to_be_focused()
    emoji = chosen.inner_text()
    visitor.page.keyboard.press("Enter")
    expect(picker).to_be_hidden()
    expect(visitor.input).to_have_value(f"Thanks{emoji} a lot")
    expect(visitor.input).to_be_focused()
    caret = len("Thanks") + len(emoji.encode("utf-16-le")) // 2  # in UTF-16 units, as JS counts
    assert visitor.input.evaluate("e => e.selectionStart") == caret

    # Escape closes it and gives the focus back to the button; Tab away closes it too.
    button.focus()
    visitor.page.keyboard.press("Enter")
    expect(first).to_be_focused()
    visitor.page.keyboard.press("End")
    expect(picker.get_by_role("button").last).to_be_focused()
    assert picker.get_by_role("button").count() >= 70
    visitor.page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(visitor.input).to_have_value(f"Thanks{emoji} a lot")
    button.click()
    expect(picker).to_be_visible()
    visitor.page.keyboard.press("Tab")
    expect(picker).to_be_hidden()
    visitor.input.press("Enter")
    expect(visitor.message(f"Thanks{emoji} a lot")).to_be_visible()


def test_on_a_phone_the_panel_fills_the_screen_and_the_picker_fits(demo, new_page):
    page = new_page()
    page.set_viewport_size({"width": 360, "height": 640})
    visitor = Widget(page, demo)
    page.goto(demo.demo_url)
    visitor.bubble.click()
    expect(visitor.input).to_be_visible()
    expect(visitor.bubble).to_be_hidden()  # the panel covers the page, bubble included
    assert page.locator("iframe").bounding_box() == {"x": 0, "y": 0, "width": 360, "height": 640}
    visitor.frame.get_by_role("button", name="Emoji").click()
    picker = visitor.frame.get_by_role("dialog", name="Emoji")
    expect(picker).to_be_visible()
    box = picker.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= 640, box
    picker.get_by_role("button").nth(3).click()  # a tap inserts too
    expect(picker).to_be_hidden()
    expect(visitor.input).not_to_have_value("")
    visitor.frame.get_by_role("button", name="Close").click()
    expect(visitor.bubble).to_be_visible()
    expect(page.locator("iframe")).to_be_hidden()


def test_a_photo_opens_large_and_closes_with_escape(demo, new_page, tmp_path):
    alice, visitor, gid = chat(demo, new_page)
    picture = tmp_path / "teapot.png"
    Image.new("RGB", (1200, 900), (90, 120, 180)).save(picture)
    visitor.frame.locator("input[type=file]").set_input_files(picture)
    link = visitor.frame.locator("#list .cs-image-link")
    expect(link.get_by_role("img", name="teapot.png")).to_be_visible()
    expect(visitor.tick("")).to_have_attribute("aria-label", re.compile(f"^({SENT}|{READ})$"))

    link.click()
    box = visitor.frame.get_by_role("dialog", name="teapot.png")
    expect(box).to_be_visible()
    large = box.get_by_role("img", name="teapot.png")
    expect(large).to_have_attribute("src", re.compile(r"/files/[A-Za-z0-9_-]{22}$"))  # the original
    expect(large).to_have_js_property("naturalWidth", 1200)
    close = box.get_by_role("button", name="Close")
    expect(close).to_be_focused()
    visitor.page.keyboard.press("Tab")  # the focus stays in the lightbox
    expect(close).to_be_focused()
    visitor.page.keyboard.press("Shift+Tab")
    expect(close).to_be_focused()
    visitor.page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    expect(link).to_be_focused()
    assert len(visitor.page.context.pages) == 1  # not opened in a new tab

    link.click()  # and the close button closes it
    expect(box).to_be_visible()
    close.click()
    expect(box).to_be_hidden()

    # The console imports the same module; in Chinese the button says 关闭.
    visitor.frame.get_by_label("Language").select_option("zh-CN")
    link.click()
    expect(visitor.frame.get_by_role("dialog").get_by_role("button", name="关闭")).to_be_visible()
    visitor.page.keyboard.press("Escape")
    expect(visitor.frame.get_by_role("dialog")).to_have_count(0)


def test_files_dropped_on_the_widget_are_sent(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    log = visitor.frame.locator("#log")
    files = log.evaluate_handle("""() => {
        const data = new DataTransfer();
        const file = new File(["order 1042, two teapots"], "order-1042.txt", {type: "text/plain"});
        data.items.add(file);
        return data;
    }""")
    log.dispatch_event("dragenter", {"dataTransfer": files})
    log.dispatch_event("dragover", {"dataTransfer": files})
    hint = visitor.frame.get_by_text("Drop files to send them")
    expect(hint).to_be_visible()
    log.dispatch_event("drop", {"dataTransfer": files})
    expect(hint).to_be_hidden()
    expect(visitor.message("order-1042.txt")).to_be_visible()
    expect(visitor.tick("order-1042.txt")).to_have_attribute("aria-label", SENT)
    alice.open(gid)
    expect(alice.message("order-1042.txt")).to_be_visible()
    assert len(visitor.page.context.pages) == 1  # the browser did not open the file instead


def test_cards_are_readable_in_the_widget_and_in_the_console(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    alice.open(gid)
    product = {"id": "P-7", "title": "Stoneware teapot", "price": "€ 34.00",
               "url": "https://shop.example/teapot"}
    order = {"order_no": "1042", "amount": "€ 46.40", "title": "Teapot and biscotti",
             "status": "shipped", "url": "https://shop.example/orders/1042"}
    answers = agent_calls(alice, {"api_key": 32300, "gid": gid, "file_type": 3, "msg": product},
                          {"api_key": 32300, "gid": gid, "file_type": 4, "msg": order})
    assert [a["code"] for a in answers] == [200, 200], answers
    for side in (visitor, alice):  # the console shows them as the agent's own (other tab)
        for title in ("Stoneware teapot", "Teapot and biscotti"):
            card = side.messages.locator(".cs-card").filter(has_text=title)
            expect(card).to_be_visible()
            parts = card.locator(".cs-card-title, .cs-card-price, .cs-card-kind, .cs-card-line")
            for part in parts.all():
                ratio = part.evaluate(CONTRAST)
                where = f"{part.get_attribute('class')} of {title!r} in {side.page.url}"
                assert ratio >= 4.5, f"{where}: contrast {ratio:.2f}"


def test_the_bubble_says_so_when_the_site_may_not_frame_the_widget(browser, new_page, tmp_path):
    server = DemoServer(tmp_path)
    server.config = write_config(tmp_path, {"server": {
        "port": server.port, "host": "127.0.0.1",
        "frame_ancestors": "'none'", "widget_frame_ancestors": "'none'"}})
    server.start()
    try:
        page = new_page()
        errors = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        fake_clock = hasattr(page, "clock")  # Playwright 1.45 or later
        if fake_clock:
            page.clock.install()  # the 10 s wait, without waiting 10 s
        page.goto(server.demo_url)
        visitor = Widget(page, server)
        visitor.bubble.click()
        expect(visitor.bubble).to_have_attribute("aria-expanded", "true")
        if fake_clock:
            page.clock.run_for(11_000)
        notice = page.get_by_role("alert")
        message = ("This site cannot show the chat. Site owner: check cschat's [server] "
                   "widget_frame_ancestors.")
        expect(notice).to_have_text(message, timeout=15_000)
        expect(notice).to_be_visible()
        assert any(message in text for text in errors), errors
    finally:
        server.kill()
