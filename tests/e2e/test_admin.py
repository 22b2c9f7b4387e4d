"""The console's Settings area (admins only) in a real browser against ``cschat run --demo``:
agents added, disabled and kept out, the audit log, webhooks and the reports, each
checked against what the server and its database then hold (docs/protocol.md §10–12)."""

from __future__ import annotations

import csv
import json
import re
import urllib.error
import urllib.request

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect  # noqa: E402

from .pages import Console, Settings, Widget  # noqa: E402

CAROL_PASSWORD = "carol-likes-tea-42"


def admin_api(demo, token: str, method: str, path: str, body: dict | None = None):
    """``(HTTP status, answer)`` of one Admin API request with ``token``."""
    request = urllib.request.Request(
        f"{demo.url}/api/admin/{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def alice_settings(demo, new_page, tab: str = "Agents") -> tuple[Console, Settings]:
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    return alice, Settings(alice).open(tab)


def test_admin_adds_an_agent_who_then_signs_in(demo, new_page, output_dir):
    alice, settings = alice_settings(demo, new_page)
    page = alice.page
    # PROTOCOL §10 GET /api/admin/agents: every agent, with its live status.
    expect(settings.agent("Alice")).to_contain_text("Online")
    expect(settings.agent("Alice")).to_contain_text("Admin")
    expect(settings.agent("Bob")).to_contain_text("Offline")
    expect(page.locator("#agents-body > tr")).to_have_count(2)

    page.get_by_role("button", name="Add an agent").click()
    dialog = settings.dialog
    expect(dialog.get_by_role("heading", name="Add an agent")).to_be_visible()
    dialog.get_by_label("Name", exact=True).fill("Carol")
    expect(dialog.get_by_label("Group")).to_have_value(re.compile(r"^\d+$"))
    dialog.get_by_label("Username").fill("bob")  # taken
    dialog.get_by_label("Password").fill(CAROL_PASSWORD)
    dialog.get_by_role("button", name="Save").click()
    # PROTOCOL §10: 409 -40009 for a username taken, shown next to the form.
    expect(dialog.get_by_role("alert")).to_contain_text("Not possible: ")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Username").fill("carol")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(settings.status).to_have_text("Carol was added.")
    carol_row = settings.agent("Carol")
    expect(carol_row).to_contain_text("carol")
    expect(carol_row).to_contain_text("Demo shop")
    expect(carol_row).to_contain_text("Enabled")
    assert demo.db("SELECT name, enabled, password_hash IS NOT NULL FROM agents "
                   "WHERE username = 'carol'") == [("Carol", 1, 1)]

    # PROTOCOL §10 POST /api/admin/agents: the new agent signs in with its password;
    # its 31000 role is "agent", so it has no Settings button.
    carol = Console(new_page(), demo, "carol").sign_in("Carol", CAROL_PASSWORD)
    expect(Settings(carol).button).to_be_hidden()
    page.get_by_role("button", name="Refresh").click()
    expect(carol_row).to_contain_text("Online")
    expect(carol_row).to_contain_text("0 / 8")

    # A few more agents for the picture of the Agents screen (docs/admin.png).
    token = alice.token()
    group_id = int(demo.db("SELECT group_id FROM agents WHERE username = 'alice'")[0][0])
    status, answer = admin_api(demo, token, "POST", "agents", {
        "group_id": group_id, "name": "Dave", "username": "dave", "password": CAROL_PASSWORD})
    assert status == 201 and answer["data"]["agent"]["role"] == "agent", answer
    dave = answer["data"]["agent"]["admin_id"]
    assert admin_api(demo, token, "PATCH", f"agents/{dave}", {"enabled": False})[0] == 200
    page.get_by_role("button", name="Refresh").click()
    expect(settings.agent("Dave")).to_contain_text("Disabled")
    page.mouse.move(640, 700)  # no hover on a button in the picture
    page.wait_for_timeout(200)
    page.screenshot(path=output_dir / "admin.png")


def test_disabling_an_agent_ends_its_open_console(demo, new_page):
    bob = Console(new_page(), demo, "bob").sign_in("Bob")
    alice, settings = alice_settings(demo, new_page)
    row = settings.agent("Bob")
    expect(row).to_contain_text("Online")

    row.get_by_role("button", name="Disable Bob").click()
    expect(alice.page.locator("#confirm-text")).to_contain_text("Disable Bob?")
    settings.confirm()
    expect(settings.status).to_have_text("Bob is disabled and was signed out everywhere.")
    expect(row).to_contain_text("Disabled")
    expect(row.get_by_role("button", name="Enable Bob")).to_be_visible()

    # PROTOCOL §10 PATCH enabled=false (and R7): Bob's open console gets -9999 and is
    # shown signed out at once; the database holds the change.
    expect(bob.page.locator("#signin")).to_be_visible()
    expect(bob.signed_out_notice).to_have_text("You were signed out. Please sign in again.")
    expect(bob.page.locator("#app")).to_be_hidden()
    assert demo.db("SELECT enabled FROM agents WHERE username = 'bob'") == [(0,)]

    # PROTOCOL §10: the last enabled admin cannot disable itself (409), shown in the screen.
    settings.agent("Alice").get_by_role("button", name="Disable Alice").click()
    settings.confirm()
    expect(alice.page.locator("#agents-error")).to_contain_text("Not possible: ")
    assert demo.db("SELECT enabled FROM agents WHERE username = 'alice'") == [(1,)]


def test_an_agent_who_is_not_admin_has_no_settings(demo, new_page):
    bob = Console(new_page(), demo, "bob").sign_in("Bob")
    # PROTOCOL §10: 31000 carries role "agent" for Bob: no Settings button, ever.
    expect(bob.page.get_by_role("button", name="Settings")).to_have_count(0)
    expect(Settings(bob).button).to_be_hidden()
    expect(bob.page.locator("#admin")).to_be_hidden()
    # PROTOCOL §10: the Admin API answers 403 -40003 with Bob's own console token.
    status, answer = admin_api(demo, bob.token(), "GET", "agents")
    assert status == 403 and answer["code"] == -40003, answer
    assert answer["status"] == "Error" and answer["message"], answer
    status, answer = admin_api(demo, "not-a-token", "GET", "agents")
    assert status == 401 and answer["code"] == -40001, answer


def test_audit_log_shows_the_changes_newest_first(demo, new_page):
    alice, settings = alice_settings(demo, new_page, "Groups")
    page = alice.page
    expect(settings.row("groups", "Demo shop")).to_contain_text("2")  # its two agents
    page.get_by_role("button", name="Add a group").click()
    settings.dialog.get_by_label("Name", exact=True).fill("Tea room")
    settings.dialog.get_by_role("button", name="Save").click()
    expect(settings.status).to_have_text("The group Tea room was added.")
    tea = settings.row("groups", "Tea room")
    tea.get_by_role("button", name="Rename Tea room").click()
    settings.dialog.get_by_label("Name", exact=True).fill("Tea house")
    settings.dialog.get_by_role("button", name="Save").click()
    expect(settings.row("groups", "Tea house")).to_contain_text("Enabled")

    settings.tab("Agents")
    page.get_by_role("button", name="Add an agent").click()
    settings.dialog.get_by_label("Name", exact=True).fill("Erin")
    settings.dialog.get_by_label("Group").select_option(label="Tea house")
    settings.dialog.get_by_label("Role").select_option(label="Admin")
    settings.dialog.get_by_role("button", name="Save").click()  # no username: SSO only
    expect(settings.agent("Erin")).to_contain_text("Tea house")
    expect(settings.agent("Erin")).to_contain_text("Admin")

    # PROTOCOL §10 GET /api/admin/audit: newest first, who (actor_name, or "demo"/"command
    # line" by `via`), the action and its detail.
    settings.tab("Audit log")
    rows = page.locator("#audit-body > tr")
    expect(rows.first).to_contain_text("Agent added")
    expect(rows.first).to_contain_text("Alice")
    expect(rows.first).to_contain_text("Erin")
    expect(rows.nth(1)).to_contain_text("Group changed")
    expect(rows.nth(1)).to_contain_text("Tea house")
    expect(rows.nth(2)).to_contain_text("Group added")
    expect(rows.nth(2)).to_contain_text("Tea room")
    assert demo.db("SELECT via, action FROM audit ORDER BY id DESC LIMIT 3") == [
        ("admin", "agent.create"), ("admin", "group.update"), ("admin", "group.create")]
    # The demo's own setup (via "demo") is listed as by "demo".
    by_demo = demo.db("SELECT count(*) FROM audit WHERE via = 'demo'")[0][0]
    expect(rows.filter(has=page.get_by_role("cell", name="demo", exact=True))).to_have_count(
        by_demo)


def test_audit_log_pages_with_older(demo, new_page):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    token = alice.token()
    group_id = int(demo.db("SELECT group_id FROM agents WHERE username = 'alice'")[0][0])
    for n in range(55):  # more than a page of 50
        status, _ = admin_api(demo, token, "POST", "agents", {"group_id": group_id,
                                                               "name": f"Temp {n:02d}"})
        assert status == 201
    settings = Settings(alice).open("Agents")
    # The tabs follow the WAI-ARIA tabs pattern: arrow keys move between them.
    alice.page.get_by_role("tab", name="Agents").press("ArrowRight")
    expect(alice.page.get_by_role("tab", name="Groups")).to_be_focused()
    alice.page.keyboard.press("ArrowRight")
    audit_tab = alice.page.get_by_role("tab", name="Audit log")
    expect(audit_tab).to_be_focused()
    expect(audit_tab).to_have_attribute("aria-selected", "true")
    rows = alice.page.locator("#audit-body > tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("Temp 54")
    total = demo.db("SELECT count(*) FROM audit")[0][0]
    # PROTOCOL §10: next_before pages on to the older entries, then is null.
    alice.page.get_by_role("button", name="Older entries").click()
    expect(rows).to_have_count(total)
    expect(settings.status).to_have_text(f"{total - 50} older entries shown.")
    expect(alice.page.get_by_role("button", name="Older entries")).to_be_hidden()


def test_webhooks_are_added_with_a_secret_shown_once_and_deleted(demo, new_page):
    alice, settings = alice_settings(demo, new_page, "Webhooks")
    page = alice.page
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()
    page.get_by_role("button", name="Add a webhook").click()
    dialog = settings.dialog
    url = "http://127.0.0.1:9/cschat-hook"
    dialog.get_by_label("Address").fill(url)
    # PROTOCOL §11: the seven events, as checkboxes.
    boxes = dialog.get_by_role("checkbox")
    expect(boxes).to_have_count(7)
    for event in ("conversation.created", "conversation.assigned", "conversation.transferred",
                  "conversation.rated", "visitor.left_message"):
        dialog.get_by_role("checkbox", name=re.compile(re.escape(event))).uncheck()
    dialog.get_by_role("button", name="Add").click()

    # PROTOCOL §10 POST /api/admin/webhooks: 201 with the secret, shown this once.
    secret_dialog = page.locator("#secret-dialog")
    expect(secret_dialog).to_be_visible()
    expect(secret_dialog).to_contain_text("shown only this once")
    secret = secret_dialog.get_by_label("Secret").input_value()
    assert len(secret) >= 16, secret
    secret_dialog.get_by_role("button", name="Done").click()
    expect(secret_dialog).to_be_hidden()
    row = settings.row("webhooks", url)
    expect(row).to_contain_text("…" + secret[-4:])
    expect(row).to_contain_text("message.created")
    expect(row).to_contain_text("conversation.ended")
    expect(row).not_to_contain_text("conversation.assigned")
    assert demo.db("SELECT url, secret FROM webhooks") == [(url, secret)]
    assert sorted(e for e, in demo.db("SELECT event FROM webhook_events")) == [
        "conversation.ended", "message.created"]

    # PROTOCOL §10 GET …/deliveries: none yet.
    row.get_by_role("button", name=f"Last deliveries to {url}").click()
    deliveries = page.locator("#deliveries-dialog")
    expect(deliveries.get_by_text("Nothing was sent yet.")).to_be_visible()
    deliveries.get_by_role("button", name="Close").click()
    expect(deliveries).to_be_hidden()

    # PROTOCOL §10 DELETE /api/admin/webhooks/<id>, after a confirmation.
    row.get_by_role("button", name=f"Delete the webhook to {url}").click()
    settings.confirm()
    expect(settings.status).to_have_text(f"The webhook to {url} was deleted.")
    expect(row).to_have_count(0)
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()
    assert demo.db("SELECT count(*) FROM webhooks") == [(0,)]


def test_reports_count_a_conversation(demo, new_page, tmp_path):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    visitor = Widget(new_page(), demo)
    visitor.open()
    visitor.wait_agent("Alice")
    gid = alice.only_conversation()
    visitor.send("Do you ship to Lyon?")
    alice.open(gid)
    alice.send("Yes, within three days.")
    expect(visitor.message("Yes, within three days.")).to_be_visible()
    visitor.send("Thanks!")
    expect(alice.message("Thanks!")).to_be_visible()

    settings = Settings(alice).open("Reports")
    page = alice.page
    # Defaults: the last 7 days, in the browser's time zone, all groups.
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    expect(settings.panel.get_by_label("Time zone")).to_have_value(zone)
    expect(settings.panel.get_by_label("Group")).to_have_value("")
    days = page.locator("#report-days tbody > tr")
    expect(days).to_have_count(7)

    # PROTOCOL §12: 1 conversation, 2 visitor messages, 1 agent message; per agent too.
    totals = page.locator("#report-totals")
    expect(totals.locator("[data-key=conversations] dd")).to_have_text("1")
    expect(totals.locator("[data-key=guest_messages] dd")).to_have_text("2")
    expect(totals.locator("[data-key=agent_messages] dd")).to_have_text("1")
    expect(totals.locator("[data-key=first_response_median] dd")).to_have_text(
        re.compile(r"^(\d+ s|\d+ min( \d+ s)?)$"))
    expect(totals.locator("[data-key=missed] dd")).to_have_text("0")
    total_row = page.locator("#report-days tfoot tr")
    cells = total_row.locator("td")
    expect(cells.nth(0)).to_have_text("1")
    expect(cells.nth(1)).to_have_text("2")
    expect(cells.nth(2)).to_have_text("1")
    expect(cells.nth(9)).to_have_text("—")  # rating_average: null until ratings exist
    today = days.last
    expect(today.locator("td").nth(0)).to_have_text("1")
    agent_row = page.locator("#report-agents tbody > tr").filter(
        has=page.get_by_role("rowheader", name="Alice", exact=True))
    expect(agent_row.locator("td").nth(0)).to_have_text("1")
    expect(agent_row.locator("td").nth(2)).to_have_text("1")

    # PROTOCOL §10 format=csv: fetched with the token, saved through a Blob URL.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download days (CSV)").click()
    download = info.value
    assert re.fullmatch(r"cschat-report-days-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv",
                        download.suggested_filename), download.suggested_filename
    path = tmp_path / "days.csv"
    download.save_as(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 7, table
    assert sum(int(row["conversations"]) for row in table) == 1, table
    assert sum(int(row["guest_messages"]) for row in table) == 2, table
    expect(settings.status).to_have_text("The CSV file was downloaded.")

    # Messages that arrive while the Settings area is open stay unread, and are counted on
    # the way back to the chats; back there, the open conversation is read.
    visitor.send("One more thing: gift wrap?")
    back = page.get_by_role("button", name="Back to chats (1 unread)")
    expect(back).to_be_visible()
    expect(visitor.tick("One more thing: gift wrap?")).to_have_attribute("aria-label", "Sent")
    back.click()
    expect(alice.message("One more thing: gift wrap?")).to_be_visible()
    expect(visitor.tick("One more thing: gift wrap?")).to_have_attribute("aria-label", "Read")
    expect(Settings(alice).button).to_have_accessible_name("Settings")
