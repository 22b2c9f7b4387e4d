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

    def sign_in(self, name: str, password: str | None = None) -> Console:
        """Sign in with the password the demo printed (or ``password``, for agents the
        test made) and wait until the agent is online."""
        page = self.page
        page.goto(self.server.console_url)
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(password or self.server.passwords[self.username])
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

    def token(self) -> str:
        """The agent token the console holds (sessionStorage), as its API calls send it."""
        return self.page.evaluate("sessionStorage.getItem('cschat.console.token')")

    @property
    def signed_out_notice(self) -> Locator:
        return self.page.locator("#signin-error")


class Settings:
    """The Settings area of an admin's console (admin*.js)."""

    def __init__(self, console: Console):
        self.console, self.page = console, console.page

    @property
    def button(self) -> Locator:
        return self.page.locator("#admin-btn")

    def open(self, tab: str = "Agents") -> Settings:
        self.button.click()
        expect(self.page.get_by_role("heading", name="Settings")).to_be_visible()
        return self.tab(tab)

    def tab(self, name: str) -> Settings:
        tab = self.page.get_by_role("tab", name=name)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")
        expect(self.page.get_by_role("tabpanel", name=name)).to_be_visible()
        return self

    @property
    def panel(self) -> Locator:
        return self.page.locator(".admin-panel:visible")

    @property
    def dialog(self) -> Locator:
        return self.page.locator("dialog[open]").last

    @property
    def status(self) -> Locator:
        """The polite status line ("Carol was added.")."""
        return self.page.locator("#admin-status")

    def row(self, table: str, header: str) -> Locator:
        """The row of ``#<table>-body`` whose row header is exactly ``header``."""
        return self.page.locator(f"#{table}-body > tr").filter(
            has=self.page.get_by_role("rowheader", name=header, exact=True))

    def agent(self, name: str) -> Locator:
        return self.page.locator("#agents-body > tr").filter(
            has=self.page.locator(".who-name", has_text=re.compile(rf"^{re.escape(name)}$")))

    def confirm(self) -> None:
        """OK in the console's confirmation dialog."""
        dialog = self.page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="OK").click()
        expect(dialog).to_be_hidden()


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


# -- The desk (docs/protocol.md §3 "The desk"): the console's visitor panel, conversations
# view, search, notes, tags, blocks, canned replies and cards, as test_console_*.py use them.
class Desk:
    """The desk parts of one agent's console (:class:`Console`)."""

    def __init__(self, console: Console):
        self.console, self.page = console, console.page

    # -- composer --
    @property
    def text(self) -> Locator:
        """The message box, whatever its mode (its placeholder changes for notes)."""
        return self.page.locator("#composer-text")

    @property
    def note_toggle(self) -> Locator:
        return self.page.get_by_role("button", name="Private note", exact=True)

    @property
    def notes(self) -> Locator:
        return self.page.locator("#message-list .cs-note-row")

    def note(self, text: str) -> Locator:
        return self.notes.filter(has_text=text)

    def write_note(self, text: str) -> None:
        self.note_toggle.click()
        expect(self.note_toggle).to_have_attribute("aria-pressed", "true")
        self.text.fill(text)
        self.text.press("Enter")
        expect(self.note(text)).to_be_visible()

    @property
    def canned(self) -> Locator:
        """The "/" list of canned replies."""
        return self.page.get_by_role("listbox", name="Canned replies")

    @property
    def pill(self) -> Locator:
        return self.page.get_by_role("button", name="New messages ↓")

    @property
    def scroller(self) -> Locator:
        return self.page.locator("#messages")

    # -- chat header --
    @property
    def tags(self) -> Locator:
        return self.page.locator("#tag-list .tag-chip")

    def add_tag(self, tag: str) -> None:
        self.page.get_by_role("button", name="+ Add a tag").click()
        self.page.get_by_label("New tag").fill(tag)
        self.page.get_by_label("New tag").press("Enter")
        expect(self.tags.filter(has_text=tag)).to_be_visible()

    def remove_tag(self, tag: str) -> None:
        self.page.get_by_role("button", name=f"Remove the tag {tag}").click()
        expect(self.tags.filter(has_text=tag)).to_have_count(0)

    @property
    def blocked_badge(self) -> Locator:
        return self.page.locator("#chat-blocked")

    @property
    def notice(self) -> Locator:
        return self.page.locator("#chat-notice")

    # -- visitor panel --
    @property
    def visitor_panel(self) -> Locator:
        return self.page.get_by_role("complementary", name="Visitor")

    def fact(self, name: str) -> Locator:
        """The value (<dd>) of one line of the visitor panel, by its label (<dt>)."""
        return self.page.locator("#visitor-facts .fact").filter(
            has=self.page.locator("dt", has_text=re.compile(rf"^{re.escape(name)}$"))).locator("dd")

    @property
    def past_conversations(self) -> Locator:
        return self.page.locator("#visitor-convs > li")

    # -- left pane --
    @property
    def search(self) -> Locator:
        return self.page.get_by_role("combobox", name="Search messages and visitors")

    @property
    def results(self) -> Locator:
        return self.page.get_by_role("listbox", name="Search results")

    def show_all(self) -> None:
        self.page.get_by_role("button", name="All conversations").click()
        expect(self.page.locator("#all-view")).to_be_visible()

    @property
    def all_rows(self) -> Locator:
        return self.page.locator("#all-list > li")

    # -- dialogs --
    @property
    def dialog(self) -> Locator:
        return self.page.locator("dialog[open]").last

    def confirm(self) -> None:
        dialog = self.page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="OK").click()
        expect(dialog).to_be_hidden()


# -- for the widget's tests (test_widget_*.py) --
_AGENT_CALLS = """async (calls) => {
  const token = sessionStorage.getItem("cschat.console.token");
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const waiting = new Map();
  let seq = 0;
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (waiting.has(f.seq)) { waiting.get(f.seq)(f); waiting.delete(f.seq); }
  };
  const call = (frame) => new Promise((resolve) => {
    waiting.set(++seq, resolve);
    ws.send(JSON.stringify({ ...frame, call_type: 3, seq }));
  });
  const answers = [await call({ api_key: 31000, token })];
  for (const frame of calls) answers.push(await call(frame));
  ws.close();
  return answers.slice(1);
}"""


def agent_calls(console: Console, *calls: dict) -> list[dict]:
    """Requests of the signed-in agent of ``console`` on a second connection of its own
    (another tab, PROTOCOL R14), one after the other; the answers, as sent."""
    return console.page.evaluate(_AGENT_CALLS, list(calls))


# -- Reception (docs/protocol.md §4 "Availability", "E-mail", "Ratings"; §10 group settings),
# as test_console_reception.py uses it.
_GUEST_CALLS = """async (calls) => {
  // The widget's own visitor token: the demo page and the widget's frame share the origin.
  const key = Object.keys(localStorage).find((k) => k.startsWith("cschat.guest."));
  const token = key && localStorage.getItem(key);
  if (!token) throw new Error("the widget left no visitor token in localStorage");
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const waiting = new Map();
  let seq = 0;
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (waiting.has(f.seq)) { waiting.get(f.seq)(f); waiting.delete(f.seq); }
  };
  const call = (frame) => new Promise((resolve) => {
    waiting.set(++seq, resolve);
    ws.send(JSON.stringify({ ...frame, call_type: 1, seq }));
  });
  const answers = [await call({ api_key: 21000, token })];
  for (const frame of calls) answers.push(await call(frame));
  ws.close();
  return answers;
}"""


def guest_calls(visitor: Widget | Page, *calls: dict) -> list[dict]:
    """Requests of the widget's visitor (its token from localStorage) on a guest connection
    of its own (another tab, PROTOCOL §4), from the widget's page or another page of the
    visitor's browser on the server's origin: the 21000 answer, then each request's, as
    sent."""
    page = visitor.page if isinstance(visitor, Widget) else visitor
    return page.evaluate(_GUEST_CALLS, list(calls))


def leave_shop(visitor: Widget) -> Page:
    """The visitor closes the shop's page (its widget goes offline) and keeps a plain page
    of the server's origin (no widget) in the same browser, for :func:`guest_calls`."""
    page = visitor.page.context.new_page()
    page.goto(visitor.server.url + "/healthz")
    visitor.page.close()
    return page


class Hours:
    """Settings › Hours & messages of an admin's console (admin-hours.js)."""

    def __init__(self, settings: Settings):
        self.settings, self.page = settings, settings.page

    @property
    def availability(self) -> Locator:
        return self.page.locator("#hours-availability")

    @property
    def mail_notice(self) -> Locator:
        return self.page.locator("#hours-mail")

    @property
    def error(self) -> Locator:
        """The form's error line, next to Save."""
        return self.page.locator("#hours-form-error")

    @property
    def time_zone(self) -> Locator:
        return self.page.get_by_label("Time zone of the hours and closed days")

    def day(self, name: str) -> Locator:
        """One weekday's row ("Monday"), a group of its ranges."""
        return self.page.get_by_role("group", name=name, exact=True)

    @property
    def closed_days(self) -> Locator:
        return self.page.locator("#hours-closed > .hours-closed-item")

    def add_closed_day(self, iso: str) -> None:
        self.page.get_by_label("Add a closed day").fill(iso)
        self.page.locator("#hours-closed-add").click()
        expect(self.closed_days.locator(f"time[datetime='{iso}']")).to_be_visible()

    def text(self, legend: str, language: str) -> Locator:
        """A text field: ``legend`` "Greeting", "Busy reply" or "Away reply"; ``language``
        "English" or "Chinese"."""
        return self.page.locator("#hours-texts fieldset").filter(
            has=self.page.locator("legend", has_text=re.compile(rf"^{re.escape(legend)}$"))
        ).get_by_label(language)

    @property
    def email(self) -> Locator:
        return self.page.get_by_label("The group's address for mail to the shop (optional)")

    def save(self) -> None:
        self.page.locator("#hours-form").get_by_role("button", name="Save").click()


# -- The widget's reception screens (docs/protocol.md §4 "Availability", "E-mail", "Ratings"):
# static/widget/reception.js, as test_widget_reception.py uses them.
class ChineseWidget(Widget):
    """A :class:`Widget` of a visitor whose browser speaks Chinese (locale zh-CN)."""

    @property
    def bubble(self) -> Locator:
        return self.page.get_by_role("button", name="在线客服")

    @property
    def input(self) -> Locator:
        return self.frame.get_by_placeholder("输入消息…")


class WidgetReception:
    """The availability line, the away form, the rating and the transcript of a
    :class:`Widget` (English UI unless said otherwise)."""

    def __init__(self, widget: Widget):
        self.widget, self.frame = widget, widget.frame

    @property
    def status(self) -> Locator:
        """The line under the agent's name: "Online", "All agents are busy…", "We are away…"."""
        return self.frame.locator("#status")

    @property
    def empty(self) -> Locator:
        """The text of the empty widget: the group's greeting, else the generic one."""
        return self.frame.locator("#empty")

    # -- away form (22900) --
    @property
    def away_form(self) -> Locator:
        return self.frame.get_by_role("region", name="We are away right now")

    def field(self, label: str) -> Locator:
        return self.away_form.get_by_label(label, exact=True)

    def leave_message(self, email: str, text: str, name: str = "") -> None:
        self.field("Name (optional)").fill(name)
        self.field("E-mail").fill(email)
        self.field("Message").fill(text)
        self.away_form.get_by_role("button", name="Send message").click()

    # -- rating (22950) --
    @property
    def rating(self) -> Locator:
        return self.frame.get_by_role("region", name="How was this chat?")

    def star(self, n: int) -> Locator:
        return self.rating.get_by_role("radio", name=f"{n} star" + ("s" if n > 1 else ""),
                                       exact=True)

    # -- transcript (22960) --
    @property
    def transcript_button(self) -> Locator:
        return self.frame.get_by_role("button", name="Send me the transcript")

    @property
    def transcript(self) -> Locator:
        return self.frame.get_by_role("region", name="Send me the transcript")

    @property
    def alert(self) -> Locator:
        """The error line of the card shown (role alert)."""
        return self.frame.locator(".rx-card [role=alert]:visible")


def chat(demo, new_page) -> tuple[Console, Widget, int]:
    """Alice signed in; a visitor on the demo page with the widget open, assigned to her:
    ``(alice, visitor, gid)``."""
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    visitor = Widget(new_page(), demo)
    visitor.open()
    visitor.wait_agent("Alice")
    return alice, visitor, alice.only_conversation()
