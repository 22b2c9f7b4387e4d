"""The pages pass axe-core's accessibility rules (WCAG 2.x A/AA and best practices) in a
real browser against ``cschat run --demo``: the console signed out and signed in with a
conversation open, every tab of its Settings area, a conversation left with the away form
and a rated one (with the notice of the rating), the demo shop page with the widget open,
and the widget page on its own.

A violation of impact "serious" or "critical" fails the test, with each rule, its
impact and the elements it found; lesser ones are only written down. Every scan's
full answer goes to ``test-output/axe-<page>.json``.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytest.importorskip("axe_playwright_python.sync_playwright",
                    reason="the axe-playwright-python package is not installed")
from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

from .pages import Console, Desk, Settings, Widget, guest_calls, leave_shop  # noqa: E402

BLOCKING = ("critical", "serious")
SETTINGS_TABS = ("Agents", "Groups", "Audit log", "Webhooks", "Reports", "Canned replies",
                 "Blocked visitors", "Hours & messages")

axe = Axe()


def _selector(target) -> str:
    """An axe target: a selector, or a list of them, one per frame (or shadow root)."""
    if isinstance(target, str):
        return target
    return " >>> ".join(_selector(part) for part in target)


class Scans:
    """The scans of one test; :meth:`check` fails it on any serious or critical finding."""

    def __init__(self, output_dir):
        self.output_dir = output_dir
        self.found: list[tuple[str, dict]] = []  # (page, violation)

    def scan(self, page: Page, where: str) -> None:
        """Run axe on ``page`` and its frames (axe is put into each frame first, so that it
        reaches into the widget's iframe)."""
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # let transitions end: colours are read as shown
        for frame in page.frames[1:]:
            frame.evaluate(axe.axe_script)
        results = axe.run(page)  # axe's default rules: WCAG 2.x A/AA and best practices
        name = re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-")
        (self.output_dir / f"axe-{name}.json").write_text(
            json.dumps(results.response["violations"], indent=1))
        self.found += [(where, violation) for violation in results.response["violations"]]

    def report(self, impacts=BLOCKING) -> str:
        lines = []
        for where, violation in self.found:
            if violation["impact"] not in impacts:
                continue
            lines.append(f"- {where}: {violation['id']} ({violation['impact']}): "
                         f"{violation['help']}  <{violation['helpUrl']}>")
            for node in violation["nodes"]:
                checks = node.get("any", []) + node.get("all", []) + node.get("none", [])
                why = checks[0]["message"] if checks else ""
                lines.append(f"    {_selector(node['target'])}" + (f"  ({why})" if why else ""))
        return "\n".join(lines)

    def check(self) -> None:
        blocking = self.report()
        minor = self.report(("moderate", "minor"))
        if minor:
            print("accessibility findings of lesser impact:\n" + minor)
        assert not blocking, "serious or critical accessibility violations:\n" + blocking


@pytest.fixture
def scans(output_dir) -> Scans:
    return Scans(output_dir)


def test_console_sign_in_page(demo, new_page, scans):
    page = new_page()
    page.goto(demo.console_url)
    expect(page.get_by_label("Username")).to_be_visible()
    scans.scan(page, "console sign-in")
    # A failed sign-in shows its message: scanned too.
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_be_visible()
    scans.scan(page, "console sign-in failed")
    scans.check()


def test_console_with_a_conversation_and_the_shop_with_the_widget(demo, new_page, scans):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    visitor = Widget(new_page(), demo)
    visitor.open()
    visitor.wait_agent("Alice")
    gid = alice.only_conversation()
    visitor.send("Hello! Is the stoneware teapot in stock?")
    expect(alice.badge(gid)).to_be_visible()
    scans.scan(alice.page, "console conversation list")
    alice.open(gid)
    expect(alice.message("stoneware teapot")).to_be_visible()
    alice.send("Yes, three are left.")
    expect(visitor.message("three are left")).to_be_visible()
    scans.scan(alice.page, "console conversation open")
    scans.scan(visitor.page, "demo shop with the widget open")
    scans.check()


def test_console_settings_tabs(demo, new_page, scans):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    settings = Settings(alice).open()
    for tab in SETTINGS_TABS:
        settings.tab(tab)
        expect(settings.panel).to_be_visible()
        alice.page.wait_for_load_state("networkidle")
        scans.scan(alice.page, f"console settings {tab}")
    scans.check()


def test_console_settings_hours_with_a_failed_save(demo, new_page, scans):
    """Hours & messages with its hours shown, a closed day, the mail notice and an error
    from the server next to the form (PROTOCOL §10 group settings)."""
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    Settings(alice).open("Hours & messages")
    page = alice.page
    page.get_by_label("Open at these hours").check()
    page.get_by_label("Add a closed day").fill("2026-12-25")
    page.locator("#hours-closed-add").click()
    page.get_by_label("Time zone of the hours and closed days").fill("Nowhere/Atlantis")
    page.locator("#hours-form").get_by_role("button", name="Save").click()
    expect(page.locator("#hours-form-error")).to_contain_text("timezone")
    expect(page.locator("#hours-mail")).to_be_visible()
    scans.scan(page, "console settings hours error")
    scans.check()


def test_console_left_message_and_rating(demo, new_page, scans):
    """A conversation left with the away form in the list, a rated one in the chat and the
    visitor panel, and the notice of the rating (PROTOCOL §4 22900, 22950; §6 32951)."""
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    visitor = Widget(new_page(), demo)
    visitor.open()
    visitor.wait_agent("Alice")
    gid = alice.only_conversation()
    visitor.send("Is the green tea organic?")
    alice.open(gid)
    alice.send("Yes, it is.")
    expect(visitor.message("Yes, it is.")).to_be_visible()
    rater = leave_shop(visitor)
    alice.page.get_by_role("button", name="End", exact=True).click()
    Desk(alice).confirm()
    guest_calls(rater, {"api_key": 22950, "rating": 5, "comment": "Very helpful"})
    expect(alice.page.locator("#toast")).to_be_visible()
    other = Widget(new_page(), demo)
    other.open()
    other.wait_agent("Alice")
    guest_calls(other, {"api_key": 22900, "name": "Mei", "email": "mei@example.com",
                        "msg": "Please call me back"})
    left = alice.page.locator("#conv-list .conv-marks").filter(has_text="Left a message")
    expect(left).to_be_visible()
    expect(alice.page.locator("#chat-marks")).to_be_visible()
    scans.scan(alice.page, "console left message and rating")
    scans.check()


def test_widget_page_on_its_own(demo, new_page, scans):
    page = new_page()
    group = demo.db("SELECT group_id FROM agents WHERE username = 'alice'")[0][0]
    page.goto(f"{demo.url}/widget/#group={group}")
    expect(page.get_by_placeholder("Write a message…")).to_be_visible()
    page.get_by_placeholder("Write a message…").fill("Do you ship to Norway?")
    page.get_by_placeholder("Write a message…").press("Enter")
    expect(page.locator("#list .cs-msg")).to_have_count(1)
    scans.scan(page, "widget page")
    scans.check()
