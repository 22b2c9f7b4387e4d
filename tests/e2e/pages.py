"""The agent console and the visitor widget as the tests see them (English UI).

Elements are found by role, label, placeholder or text where the pages give one,
else by the element ids and ``cs-*`` classes of the pages' markup.
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from .conftest import DemoServer

READ = "Read"  # the tick's label on a message the other side has read
SENT = "Sent"


class Console:
    """The agent console of one agent, in its own browser context."""

    def __init__(self, page: Page, server: DemoServer, username: str):
        self.page, self.server, self.username = page, server, username

    def sign_in(self, name: str) -> Console:
        page = self.page
        page.goto(self.server.console_url)
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(self.server.passwords[self.username])
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#me-name")).to_have_text(name)
        expect(page.locator("#status-toggle")).to_have_text("Online")
        return self

    # -- the conversation list --
    @property
    def conversations(self) -> Locator:
        return self.page.locator("#conv-list").get_by_role("listitem")

    def conversation(self, gid: int) -> Locator:
        # The item's accessible name is "Visitor #gid", with " (unread)" while there are some.
        return self.page.locator("#conv-list").get_by_role(
            "listitem", name=re.compile(rf"^Visitor #{gid}( \(\d+\))?$"))

    def only_conversation(self) -> int:
        """The gid of the one conversation listed (shown as "Visitor #gid")."""
        expect(self.conversations).to_have_count(1)
        name = self.conversations.first.locator(".conv-name")
        expect(name).to_have_text(re.compile(r"^Visitor #\d+$"))
        return int(name.inner_text().split("#")[1])

    def badge(self, gid: int) -> Locator:
        return self.conversation(gid).locator(".conv-badge")

    def open(self, gid: int) -> None:
        self.conversation(gid).click()
        expect(self.page.locator("#chat-name")).to_have_text(f"Visitor #{gid}")

    # -- the open conversation --
    @property
    def messages(self) -> Locator:
        return self.page.locator("#message-list .cs-msg")

    def message(self, text: str) -> Locator:
        return self.messages.filter(has_text=text)

    @property
    def composer(self) -> Locator:
        return self.page.get_by_placeholder("Type a message")

    def send(self, text: str) -> None:
        self.composer.fill(text)
        self.composer.press("Enter")

    def tick(self, text: str) -> Locator:
        return self.message(text).locator(".cs-tick")

    @property
    def connection(self) -> Locator:
        return self.page.locator("#conn-state")


class Widget:
    """A visitor on the demo shop page with the chat widget (an iframe from embed.js)."""

    def __init__(self, page: Page, server: DemoServer):
        self.page, self.server = page, server
        self.frame = page.frame_locator("iframe")

    @property
    def bubble(self) -> Locator:
        return self.page.get_by_role("button", name="Chat with us")

    def open(self) -> None:
        """Load the demo page (first time) and open the chat panel."""
        if not self.page.url.startswith(self.server.demo_url):
            self.page.goto(self.server.demo_url)
        self.bubble.click()
        expect(self.bubble).to_have_attribute("aria-expanded", "true")
        expect(self.input).to_be_visible()

    def close(self) -> None:
        self.frame.get_by_role("button", name="Close").click()
        expect(self.bubble).to_have_attribute("aria-expanded", "false")
        expect(self.page.locator("iframe")).to_be_hidden()

    def wait_agent(self, name: str) -> None:
        """Connected and assigned to the agent ``name``."""
        expect(self.frame.locator("#agent-name")).to_have_text(name)
        expect(self.frame.locator("#status")).to_have_text("Online")

    @property
    def input(self) -> Locator:
        return self.frame.get_by_placeholder("Write a message…")

    def send(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")

    @property
    def messages(self) -> Locator:
        return self.frame.locator("#list .cs-msg")

    def message(self, text: str) -> Locator:
        return self.messages.filter(has_text=text)

    def tick(self, text: str) -> Locator:
        return self.message(text).locator(".cs-tick")

    @property
    def banner(self) -> Locator:
        return self.frame.locator("#banner")
