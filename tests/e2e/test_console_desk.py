"""The console's desk in a real browser against ``cschat run --demo`` (docs/protocol.md §3
"The desk: visitors, past conversations, search, notes, tags, blocks, canned replies", §6,
§10): private notes that never reach the visitor, search, canned replies typed with "/",
cards sent from a form, tags, blocks, and the visitor panel."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from conftest import write_config  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from .pages import Console, Desk, Settings, chat  # noqa: E402

# In a console's page: connect(callType, loginKey, token) → {call(api_key, params), close,
# login} — one more WebSocket connection, logged in (PROTOCOL §1, R3).
_CONNECT = """async function connect(callType, loginKey, token) {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let seq = 0;
  const waits = {};
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.seq && waits[f.seq]) waits[f.seq](f);
  };
  const call = (api_key, params) => new Promise((resolve) => {
    const s = ++seq;
    waits[s] = resolve;
    ws.send(JSON.stringify({ api_key, call_type: callType, seq: s, ...params }));
  });
  const login = await call(loginKey, { token });
  if (login.code !== 200) throw new Error("login " + login.code);
  return { call, close: () => ws.close(), login: login.data };
}
const pause = () => new Promise((resolve) => setTimeout(resolve, 60)); // within R9's rate
const agentToken = () => sessionStorage.getItem("cschat.console.token");
"""


def agent_sends(console: Console, gid: int, texts: list[str]) -> None:
    """Send texts to ``gid`` as the console's agent over a second WebSocket connection of
    its own (they reach the console as 32398, "sent from another tab")."""
    console.page.evaluate("async ([gid, texts]) => {" + _CONNECT + """
      const agent = await connect(3, 31000, agentToken());
      for (const msg of texts) {
        const r = await agent.call(32300, { gid, msg, file_type: 0 });
        if (r.code !== 200) throw new Error("send " + r.code);
        await pause();
      }
      agent.close();
    }""", [gid, texts])


def row_texts(console: Console) -> list[str]:
    """The chat pane's rows in order: messages (their text) and notes ("NOTE: …")."""
    return console.page.locator("#message-list > *").evaluate_all("""rows => rows.map(r =>
      r.classList.contains('cs-note-row') ? 'NOTE: ' + r.querySelector('.cs-text').textContent
        : (r.querySelector('.cs-text, .cs-system') || r).textContent)""")


def test_a_note_is_shown_to_agents_and_never_reaches_the_visitor(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    question = "Can I still change the colour of order 1042?"
    visitor.send(question)
    alice.open(gid)
    desk = Desk(alice)
    expect(alice.message(question)).to_be_visible()

    # PROTOCOL §3 32820: a private note of the agents, shown distinctly, after the
    # conversation's last message; the next send is a message again.
    note = "Regular customer: offer free shipping"
    desk.write_note(note)
    expect(desk.note(note)).to_contain_text("Private note · Alice")
    expect(desk.note_toggle).to_have_attribute("aria-pressed", "false")
    expect(alice.composer).to_be_visible()
    answer = "Yes, which colour would you like?"
    alice.send(answer)
    expect(visitor.message(answer)).to_be_visible()

    # PROTOCOL §3 note: never sent to the guest — not shown, not stored as a message.
    expect(visitor.messages).to_have_count(2)
    expect(visitor.frame.get_by_text(note)).to_have_count(0)
    stored = [body for body, in demo.db("SELECT body FROM messages ORDER BY id")]
    assert stored == [question, answer]

    # Bob opens the same conversation read-only from "All conversations" and gets the
    # notes (32830) and Alice's next note live (PROTOCOL §6 32821).
    bob = Console(new_page(), demo, "bob").sign_in("Bob")
    bob_desk = Desk(bob)
    bob_desk.show_all()
    bob_desk.all_rows.first.get_by_role("button").click()
    expect(bob.page.locator("#chat-name")).to_have_text(f"Visitor #{gid}")
    expect(bob_desk.notice).to_have_text("Read only: this conversation is assigned to Alice.")
    expect(bob.composer).to_be_disabled()
    expect(bob_desk.note(note)).to_be_visible()
    second = "Colour change done in the shop's back office"
    desk.write_note(second)
    expect(bob_desk.note(second)).to_contain_text("Private note · Alice")

    # PROTOCOL §3 32830: loaded again with the conversation, each after its message.
    alice.page.reload()
    expect(alice.page.locator("#status-toggle")).to_have_text("Online")
    alice.open(gid)
    expect(desk.notes).to_have_count(2)
    assert row_texts(alice) == [question, "NOTE: " + note, answer, "NOTE: " + second]
    expect(visitor.messages).to_have_count(2)
    # In Chinese (strings.js): the label and the note toggle.
    alice.page.locator(".lang-switch:visible").click()
    expect(desk.note(note).locator(".cs-note-label")).to_have_text("内部备注 · Alice")
    expect(alice.page.get_by_role("button", name="内部备注", exact=True)).to_be_visible()
    mine = alice.page.get_by_role("button", name="我的会话")
    expect(mine).to_have_attribute("aria-pressed", "true")


def test_search_finds_a_word_inside_chinese_text_and_opens_the_message(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("我想退货")
    alice.open(gid)
    expect(alice.message("我想退货")).to_be_visible()
    agent_sends(alice, gid, [f"Answer number {i}" for i in range(25)])  # pushes it far up
    expect(alice.message("Answer number 24")).to_be_in_viewport()
    expect(alice.message("我想退货")).not_to_be_in_viewport()

    # PROTOCOL §3 32810: CJK text is found by any two consecutive characters; the match
    # is highlighted with <mark> (text, never HTML).
    desk = Desk(alice)
    desk.search.fill("退货")
    expect(desk.results).to_be_visible()
    expect(desk.search).to_have_attribute("aria-expanded", "true")
    option = desk.results.get_by_role("option").filter(has_text="我想退货")
    expect(option).to_have_count(1)
    expect(option.locator("mark")).to_have_text("退货")
    # Arrows and Enter pick it: the conversation opens scrolled to the message.
    desk.search.press("ArrowDown")
    expect(option).to_have_attribute("aria-selected", "true")
    expect(desk.search).to_have_attribute("aria-activedescendant", re.compile(r"^search-opt-\d+$"))
    desk.search.press("Enter")
    expect(desk.results).to_be_hidden()
    found = alice.message("我想退货")
    expect(found).to_be_in_viewport()
    expect(found).to_have_class(re.compile(r"\bcs-hit\b"))
    expect(alice.message("Answer number 24")).to_have_count(1)  # the rest is there too
    expect(alice.composer).to_be_enabled()  # her own conversation: writable

    # Bob finds it too and reads it without taking it over.
    bob = Console(new_page(), demo, "bob").sign_in("Bob")
    bob_desk = Desk(bob)
    bob_desk.search.fill("退货")
    bob_desk.results.get_by_role("option").filter(has_text="我想退货").click()
    expect(bob.message("我想退货")).to_be_in_viewport()
    expect(bob.composer).to_be_disabled()
    bob_desk.search.fill("nothing-like-this")
    expect(bob_desk.results).to_contain_text("Nothing found for “nothing-like-this”.")
    bob_desk.search.press("Escape")
    expect(bob_desk.results).to_be_hidden()


def test_search_says_when_the_server_keeps_no_message_index(demo, new_page):
    # PROTOCOL §3 32810, [privacy] search_index = false: only visitors' names are searched,
    # and the console says so rather than that nothing was found
    demo.config = write_config(demo.folder, {"server": {"port": demo.port, "host": "127.0.0.1"},
                                             "privacy": {"search_index": False}})
    demo.restart()
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("I want a refund")
    desk = Desk(alice)
    desk.search.fill("refund")
    expect(desk.results).to_contain_text("Message search is off on this server.")


def test_canned_replies_from_settings_are_inserted_with_slash_and_the_keyboard(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("Hi, how do refunds work?")
    settings = Settings(alice).open("Canned replies")
    page = alice.page

    # PROTOCOL §10 POST /api/admin/canned, shown per group in Settings.
    for shortcut, text in [("hello", "Hello {visitor_name}, this is {agent_name}. How can I help?"),
                           ("refund", "Refunds reach your card within 3 working days."),
                           ("bye", "Thanks for visiting!")]:
        page.get_by_role("button", name="Add a reply").click()
        dialog = settings.dialog
        dialog.get_by_label("Shortcut").fill(shortcut)
        dialog.get_by_label("Text").fill(text)
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        expect(settings.status).to_have_text(f"/{shortcut} was added.")
    expect(settings.row("canned", "/refund")).to_contain_text("3 working days")
    # Edit and delete.
    settings.row("canned", "/bye").get_by_role("button", name="Edit /bye").click()
    settings.dialog.get_by_label("Text").fill("Thanks for visiting, see you soon!")
    settings.dialog.get_by_role("button", name="Save").click()
    expect(settings.row("canned", "/bye")).to_contain_text("see you soon")
    settings.row("canned", "/bye").get_by_role("button", name="Delete /bye").click()
    settings.confirm()
    expect(settings.row("canned", "/bye")).to_have_count(0)
    shortcuts = demo.db("SELECT shortcut FROM canned_replies ORDER BY shortcut")
    assert shortcuts == [("hello",), ("refund",)]

    settings.button.click()  # back to the chats
    alice.open(gid)
    desk = Desk(alice)
    # PROTOCOL §3 32860: "/" opens the list, filtered by shortcut and text.
    desk.text.press_sequentially("/")
    expect(desk.canned).to_be_visible()
    expect(desk.canned.get_by_role("option")).to_have_count(2)
    desk.text.press_sequentially("working")  # a word of the text
    expect(desk.canned.get_by_role("option")).to_have_count(1)
    expect(desk.canned.get_by_role("option")).to_contain_text("/refund")
    desk.text.press("Escape")
    expect(desk.canned).to_be_hidden()
    expect(desk.text).to_have_value("/working")

    desk.text.fill("")
    desk.text.press_sequentially("/")
    expect(desk.canned.get_by_role("option")).to_have_count(2)
    desk.text.press("ArrowDown")
    desk.text.press("ArrowDown")  # around to the first again
    expect(desk.canned.get_by_role("option").filter(has_text="/hello")).to_have_attribute(
        "aria-selected", "true")
    desk.text.press("Enter")  # inserts, with the names filled in
    expect(desk.canned).to_be_hidden()
    reply = f"Hello Visitor #{gid}, this is Alice. How can I help?"
    expect(desk.text).to_have_value(reply)
    desk.text.press("Enter")  # sends
    expect(visitor.message(reply)).to_be_visible()


def test_a_product_card_sent_from_the_form_renders_in_the_widget(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("Do you have this teapot in blue?")
    alice.open(gid)
    page = alice.page
    page.get_by_role("button", name="Send a product or order card").click()
    dialog = Desk(alice).dialog
    expect(dialog.get_by_role("heading", name="Send a card")).to_be_visible()
    dialog.get_by_role("button", name="Send the card").click()
    expect(dialog.get_by_role("alert")).to_have_text("Please fill in: Product ID, Title, Price.")

    # PROTOCOL R26: url and image must be http(s) addresses.
    dialog.get_by_label("Product ID").fill("SKU-42")
    dialog.get_by_label("Title", exact=True).fill("Stoneware teapot, blue")
    dialog.get_by_label("Price").fill("¥199.00")
    link = dialog.locator("#card-product").get_by_label("Link (optional)")
    link.fill("javascript:alert(1)")
    dialog.get_by_role("button", name="Send the card").click()
    expect(dialog.get_by_role("alert")).to_contain_text("must be an address starting with http")
    expect(link).to_have_attribute("aria-invalid", "true")
    link.fill("https://shop.example/p/42")
    dialog.get_by_role("button", name="Send the card").click()
    expect(dialog).to_be_hidden()

    card = visitor.frame.locator("#list .cs-card")
    expect(card).to_contain_text("Stoneware teapot, blue")
    expect(card).to_contain_text("¥199.00")
    expect(card).to_have_attribute("href", "https://shop.example/p/42")
    expect(alice.page.locator("#message-list .cs-card")).to_contain_text("Stoneware teapot, blue")
    (body, file_type), = demo.db("SELECT body, file_type FROM messages WHERE sender = 'agent'")
    assert file_type == 3
    assert json.loads(body) == {"id": "SKU-42", "title": "Stoneware teapot, blue",
                                "price": "¥199.00", "url": "https://shop.example/p/42"}

    # An order card (file_type 4): order_no and amount, the rest optional.
    page.get_by_role("button", name="Send a product or order card").click()
    dialog.get_by_role("radio", name="Order").check()
    dialog.get_by_label("Order number").fill("1042")
    dialog.get_by_label("Amount").fill("¥398.00")
    dialog.get_by_label("Status (optional)").fill("Shipped")
    dialog.get_by_role("button", name="Send the card").click()
    expect(dialog).to_be_hidden()
    order = visitor.frame.locator("#list .cs-card").filter(has_text="Order no. 1042")
    expect(order).to_contain_text("Shipped")
    expect(order).to_contain_text("¥398.00")
    expect(visitor.messages).to_have_count(3)


def test_tags_are_added_removed_shown_live_and_filter_the_conversations(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("My parcel arrived broken")
    alice.open(gid)
    desk = Desk(alice)
    # PROTOCOL §3 32840: tags of the conversation, in the chat header.
    desk.add_tag("damaged")
    desk.add_tag("vip")
    expect(desk.tags).to_have_count(2)
    alice.page.get_by_role("button", name="+ Add a tag").click()
    alice.page.get_by_label("New tag").fill("a,b")
    alice.page.get_by_label("New tag").press("Enter")
    expect(alice.page.locator("#tags-error")).to_have_text(
        "A tag has 1–32 characters and no commas.")
    alice.page.get_by_label("New tag").press("Escape")

    # Bob filters all conversations by tag and opens it read-only.
    bob = Console(new_page(), demo, "bob").sign_in("Bob")
    bob_desk = Desk(bob)
    bob_desk.show_all()
    expect(bob_desk.all_rows).to_have_count(1)
    bob.page.get_by_label("Tag", exact=True).fill("nothing-tagged")
    expect(bob.page.locator("#all-status")).to_have_text("No conversations.")
    expect(bob_desk.all_rows).to_have_count(0)
    bob.page.get_by_label("Tag", exact=True).fill("damaged")
    expect(bob_desk.all_rows).to_have_count(1)
    expect(bob_desk.all_rows.first).to_contain_text("damaged")
    expect(bob_desk.all_rows.first).to_contain_text("with Alice")
    bob_desk.all_rows.first.get_by_role("button").click()
    expect(bob_desk.tags).to_have_count(2)

    # PROTOCOL §6 32841: Alice removes one; Bob's header and list follow.
    desk.remove_tag("vip")
    expect(bob_desk.tags).to_have_count(1)
    expect(bob_desk.tags).to_have_text("damaged×")
    expect(bob_desk.all_rows.first).not_to_contain_text("vip")
    assert demo.db("SELECT COUNT(*) FROM conversation_tags") == [(1,)]


def test_block_shows_the_notice_in_the_widget_and_an_admin_lifts_it(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("You are all useless!!!")
    alice.open(gid)
    desk = Desk(alice)
    page = alice.page
    # PROTOCOL §3 32850 (禁言), after a confirmation.
    page.get_by_role("button", name="Block visitor").click()
    expect(page.locator("#confirm-text")).to_contain_text(f"Block Visitor #{gid}?")
    desk.confirm()
    expect(desk.blocked_badge).to_be_visible()
    expect(page.get_by_role("button", name="Unblock")).to_be_visible()
    expect(desk.notice).to_have_text(
        f"Visitor #{gid} is blocked: messages from this visitor are refused.")
    # PROTOCOL §6 22097: the widget says so; what the visitor writes is not delivered.
    expect(visitor.frame.locator("#blocked")).to_be_visible()
    visitor.input.fill("Let me write!")
    visitor.input.press("Enter")
    page.wait_for_timeout(500)
    expect(alice.message("Let me write!")).to_have_count(0)

    # PROTOCOL §10 GET /api/admin/blocks and DELETE: an admin lifts it in Settings.
    settings = Settings(alice).open("Blocked visitors")
    row = settings.row("blocks", f"Visitor #{gid}")
    expect(row).to_contain_text("Alice")
    row.get_by_role("button", name=f"Lift the block on Visitor #{gid}").click()
    settings.confirm()
    expect(settings.status).to_have_text(f"The block on Visitor #{gid} was lifted.")
    expect(page.locator("#blocks-empty")).to_be_visible()
    expect(visitor.frame.locator("#blocked")).to_be_hidden()
    settings.button.click()
    expect(desk.blocked_badge).to_be_hidden()
    expect(desk.notice).to_be_hidden()
    expect(page.get_by_role("button", name="Block visitor")).to_be_visible()
    visitor.send("Sorry, I was upset.")
    expect(alice.message("Sorry, I was upset.")).to_be_visible()


def test_the_visitor_panel_shows_the_page_and_opens_past_conversations(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    visitor.send("First question")
    alice.open(gid)
    desk = Desk(alice)
    panel = desk.visitor_panel
    expect(panel).to_be_visible()
    # PROTOCOL §3 context: the page the visitor is on (a link that leaves no referrer),
    # parsed User-Agent, local time.
    link = desk.fact("Page").get_by_role("link")
    expect(link).to_have_attribute("href", demo.demo_url)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(desk.fact("Browser")).to_contain_text("Chrome")
    expect(desk.fact("Device")).to_have_text("Computer")
    expect(desk.fact("Local time")).to_have_text(re.compile(r"\d{1,2}:\d{2}"))
    expect(desk.fact("Visits")).to_have_text("1")
    expect(panel.locator("#visitor-pages").get_by_role("link")).to_have_count(1)
    # PROTOCOL §6 32097: the visitor moves to another page (the shop's page changes its
    # address in place); the panel follows.
    visitor.page.evaluate("""() => {
      document.title = "Stoneware teapot";
      history.pushState({}, "", "/demo/?item=teapot");
    }""")
    expect(link).to_have_attribute("href", demo.demo_url + "?item=teapot")
    expect(link).to_have_text("Stoneware teapot")
    expect(panel.locator("#visitor-pages").get_by_role("link")).to_have_count(2)

    # The conversation ends; the visitor writes again: a second conversation (PROTOCOL §11).
    alice.page.get_by_role("button", name="End", exact=True).click()
    desk.confirm()
    visitor.send("Second question")
    expect(alice.conversation(gid)).to_be_visible()
    alice.open(gid)
    expect(desk.past_conversations).to_have_count(2)
    # PROTOCOL §3 32800 gid: the earlier one opens read-only, only its own messages.
    desk.past_conversations.nth(1).get_by_role("button").first.click()
    expect(desk.notice).to_have_text("Read only: an earlier conversation with this visitor.")
    expect(alice.message("First question")).to_be_visible()
    expect(alice.message("Second question")).to_have_count(0)
    expect(alice.composer).to_be_disabled()
    expect(desk.past_conversations.nth(1).get_by_role("button").first).to_have_attribute(
        "aria-current", "true")
    # Back to the current one: writable again.
    desk.past_conversations.nth(0).get_by_role("button").first.click()
    expect(alice.message("Second question")).to_be_visible()
    expect(alice.composer).to_be_enabled()
    # The panel folds away and comes back.
    alice.page.get_by_role("button", name="Hide the visitor panel").click()
    expect(panel).to_be_hidden()
    expect(alice.page.locator("#visitor-btn")).to_have_attribute("aria-expanded", "false")
    alice.page.locator("#visitor-btn").click()
    expect(panel).to_be_visible()


def make_conversations(console: Console, count: int) -> int:
    """One visitor with ``count`` conversations, all but the last ended by the console's
    agent (PROTOCOL §11: a conversation starts with a message and ends at 32700); its gid."""
    return console.page.evaluate("async (count) => {" + _CONNECT + """
      const agent = await connect(3, 31000, agentToken());
      const body = JSON.stringify({ group_id: agent.login.group_id });
      const headers = { "Content-Type": "application/json" };
      const r = await fetch("/api/visitor", { method: "POST", headers, body });
      const guest = await connect(1, 21000, (await r.json()).data.token);
      const gid = guest.login.gid;
      for (let i = 1; i <= count; i++) {
        const sent = await guest.call(22300, { msg: "Conversation number " + i, file_type: 0 });
        if (sent.code !== 200) throw new Error("send " + sent.code);
        await pause();
        if (i === count) break;
        for (let tries = 0; ; tries++) { // the guest is routed to the agent as it writes
          const ended = await agent.call(32700, { gid });
          if (ended.code === 200) break;
          if (tries > 20) throw new Error("end " + ended.code);
          await pause();
        }
        await pause();
      }
      agent.close();
      guest.close();
      return gid;
    }""", count)


def test_all_conversations_are_paged_on_scroll_filtered_and_open_read_only(demo, new_page):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    make_conversations(alice, 32)
    desk = Desk(alice)
    desk.show_all()
    # PROTOCOL §3 32800: newest first, 30 a page; the next page comes on scrolling down.
    expect(desk.all_rows).to_have_count(30)
    expect(desk.all_rows.first).to_contain_text("Conversation number 32")
    expect(desk.all_rows.first).to_contain_text("open")
    more = alice.page.get_by_role("button", name="Load more")
    expect(more).to_be_visible()
    alice.page.locator(".list-pane").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    expect(desk.all_rows).to_have_count(32)
    expect(desk.all_rows.last).to_contain_text("Conversation number 1")
    expect(more).to_be_hidden()
    expect(alice.page.locator("#all-status")).to_have_text("32 conversation(s) shown.")

    alice.page.get_by_label("Show", exact=True).select_option("ended")
    expect(desk.all_rows.first).to_contain_text("Conversation number 31")
    # The button loads the next page too. (Not .click(): scrolling the button into view
    # for the click loads the page on its own first, and the button goes.)
    more.dispatch_event("click")
    expect(desk.all_rows).to_have_count(31)
    alice.page.get_by_label("Show", exact=True).select_option("waiting")
    expect(alice.page.locator("#all-status")).to_have_text("No conversations.")
    alice.page.get_by_label("Show", exact=True).select_option("ended")

    # An ended conversation opens read-only with its own messages only.
    desk.all_rows.filter(has_text="Conversation number 7").get_by_role("button").click()
    expect(alice.message("Conversation number 7")).to_be_visible()
    expect(alice.messages.filter(has_text="Conversation number")).to_have_count(1)
    expect(alice.composer).to_be_disabled()
    expect(desk.notice).to_have_text(re.compile(r"^Read only: "))
    seventh = desk.all_rows.filter(has_text="Conversation number 7")
    expect(seventh).to_have_class(re.compile(r"\bactive\b"))
