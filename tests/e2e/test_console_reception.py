"""Reception in the console, in a real browser against ``cschat run --demo``
(docs/protocol.md §4 "Availability", "E-mail", "Ratings"; §6 32951; §10 group settings;
§11 events; §12 rating_average): the Settings tab "Hours & messages", conversations left
with the away form, ratings that reach the agent live, the two new webhook events and the
reports' average rating.

The visitor's side of the away form (22900) and of rating (22950) is spoken over the raw
protocol from the visitor's page (its widget's token), not through the widget's screens."""

from __future__ import annotations

import datetime
import json
import re

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect  # noqa: E402

from .pages import Console, Desk, Hours, Settings, Widget, chat, guest_calls, leave_shop  # noqa: E402
from .test_admin import admin_api  # noqa: E402


def group_of_alice(demo) -> int:
    return int(demo.db("SELECT group_id FROM agents WHERE username = 'alice'")[0][0])


def test_a_closed_day_today_makes_the_group_away_and_the_admin_is_told_nothing_is_mailed(
        demo, new_page):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    hours = Hours(Settings(alice).open("Hours & messages"))
    page = alice.page
    group = group_of_alice(demo)
    # PROTOCOL §10 group settings: the defaults (UTC, always open) and, with Alice online,
    # availability "online" (§4 "Availability").
    expect(hours.time_zone).to_have_value("UTC")
    expect(page.get_by_label("Always open")).to_be_checked()
    expect(hours.availability).to_have_text("Online")
    # PROTOCOL §10 mail_configured false (the demo runs without [email] smtp_host): the
    # admin is told that nothing is mailed, and where to set it up.
    expect(hours.mail_notice).to_be_visible()
    expect(hours.mail_notice).to_contain_text("No SMTP server is set up")
    expect(hours.mail_notice).to_contain_text("[email]")

    # PROTOCOL §10 PUT: the server checks the time zone; its error is shown by the form and
    # nothing is stored.
    hours.time_zone.fill("Mars/Olympus_Mons")
    hours.save()
    expect(hours.error).to_contain_text("Please check the form: timezone must be")
    expect(hours.time_zone).to_have_attribute("aria-invalid", "true")
    assert demo.db("SELECT count(*) FROM group_settings") == [(0,)]

    # Hours Monday to Friday, today a closed day (in UTC, the group's zone), the texts and
    # the group's notify address.
    hours.time_zone.fill("UTC")
    page.get_by_label("Open at these hours").check()
    expect(hours.day("Monday").get_by_label("Monday, hours 1: from")).to_have_value("09:00")
    expect(hours.day("Friday").get_by_label("Friday, hours 1: to")).to_have_value("18:00")
    expect(hours.day("Sunday")).to_contain_text("Closed")
    hours.day("Saturday").get_by_role("button", name="Add hours on Saturday").click()
    hours.day("Saturday").get_by_label("Saturday, hours 1: from").fill("10:00")
    hours.day("Saturday").get_by_label("Saturday, hours 1: to").fill("00:00")  # midnight
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    hours.add_closed_day(today)
    expect(hours.closed_days.filter(has_text="today")).to_have_count(1)
    hours.text("Greeting", "English").fill("Welcome to the tea shop!")
    hours.text("Greeting", "Chinese").fill("欢迎光临茶叶店！")
    hours.text("Away reply", "English").fill("We are closed today; leave us a message.")
    hours.email.fill("tea@shop.example")
    hours.save()
    expect(Settings(alice).status).to_have_text("The hours and messages of Demo shop were saved.")
    expect(hours.error).to_be_hidden()
    # PROTOCOL §4 "Availability": a closed day is outside the business hours: "away",
    # whoever is online.
    expect(hours.availability).to_have_text("Away")

    # PROTOCOL §10: the whole settings object was PUT and is what the server now holds.
    status, answer = admin_api(demo, alice.token(), "GET", f"groups/{group}/settings")
    assert status == 200, answer
    assert answer["data"]["availability"] == "away"
    assert answer["data"]["mail_configured"] is False
    settings = answer["data"]["settings"]
    assert settings["timezone"] == "UTC"
    assert settings["closed_days"] == [today]
    weekdays = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    assert settings["hours"] == weekdays | {"sat": [["10:00", "24:00"]]}
    assert settings["greeting"] == {"en": "Welcome to the tea shop!", "zh": "欢迎光临茶叶店！"}
    assert settings["away_reply"] == {"en": "We are closed today; leave us a message."}
    assert settings["busy_reply"] == {}
    assert settings["notify_email"] == "tea@shop.example"
    # Audited as group.settings (PROTOCOL §10).
    assert demo.db("SELECT action, target_id FROM audit WHERE action = 'group.settings'") == [
        ("group.settings", group)]

    # Read again after a reload, as saved (24:00 shows as 00:00, midnight).
    page.reload()
    expect(page.locator("#status-toggle")).to_have_text("Online")
    hours = Hours(Settings(alice).open("Hours & messages"))
    expect(hours.availability).to_have_text("Away")
    expect(page.get_by_label("Open at these hours")).to_be_checked()
    expect(hours.day("Saturday").get_by_label("Saturday, hours 1: to")).to_have_value("00:00")
    expect(hours.closed_days).to_have_count(1)
    expect(hours.text("Greeting", "Chinese")).to_have_value("欢迎光临茶叶店！")

    # Always open again, without the closed day: online again.
    hours.closed_days.get_by_role("button").click()
    expect(hours.closed_days).to_have_count(0)
    page.get_by_label("Always open").check()
    expect(hours.day("Monday")).to_be_hidden()
    hours.save()
    expect(hours.availability).to_have_text("Online")
    settings = json.loads(demo.db("SELECT settings FROM group_settings WHERE group_id = ?",
                                  (group,))[0][0])
    assert settings["hours"] is None and settings["closed_days"] == []


def test_a_rating_after_the_agent_ended_the_chat_reaches_the_agent_live(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    desk = Desk(alice)
    page = alice.page
    visitor.send("Where is my order 1042?")
    alice.open(gid)
    alice.send("It left the warehouse this morning.")
    expect(visitor.message("left the warehouse")).to_be_visible()
    # The visitor closes the shop's page (the widget's own rating screen is not what this
    # tests) and rates from another page of its browser over the raw protocol.
    rater = leave_shop(visitor)
    page.get_by_role("button", name="End", exact=True).click()
    desk.confirm()
    expect(desk.notice).to_have_text("You ended this conversation.")
    marks = page.locator("#chat-marks")
    expect(marks).to_be_hidden()

    # PROTOCOL §4 "Ratings": after the end, 22950 rates the visitor's last conversation;
    # the agent who held it gets 32951 (§6) and sees it at once: a notice, the chat's
    # header, the visitor panel's conversations.
    answers = guest_calls(rater, {"api_key": 22950, "rating": 4, "comment": "Quick and friendly"})
    assert [a["code"] for a in answers] == [200, 200], answers
    conversation_id = answers[1]["data"]["conversation_id"]
    toast = page.locator("#toast")
    expect(toast).to_be_visible()
    said = f"Visitor #{gid} rated the conversation 4 / 5: “Quick and friendly”"
    expect(toast).to_contain_text(said)
    # … also said once in a polite live region, for screen readers.
    expect(page.get_by_role("status").filter(has_text=said)).to_have_count(1)
    expect(marks).to_be_visible()
    expect(marks.locator(".mark-rating")).to_have_text("★Rating: 4 / 5")
    expect(marks.locator(".mark-comment")).to_have_text("Quick and friendly")
    expect(desk.past_conversations).to_have_count(1)
    past_marks = desk.past_conversations.first.locator(".past-marks")
    expect(past_marks).to_contain_text("4 / 5")
    expect(past_marks).to_contain_text("Quick and friendly")
    toast.get_by_role("button", name="Dismiss").click()
    expect(toast).to_be_hidden()

    # A new rating replaces the previous one (PROTOCOL §4), live again.
    answers = guest_calls(rater, {"api_key": 22950, "rating": 5})
    assert answers[1]["data"] == {"conversation_id": conversation_id, "rating": 5}, answers
    expect(toast).to_contain_text(f"Visitor #{gid} rated the conversation 5 / 5.")
    expect(marks.locator(".mark-rating")).to_contain_text("5 / 5")
    expect(marks.locator(".mark-comment")).to_have_count(0)
    assert demo.db("SELECT rating, rating_comment FROM conversations WHERE id = ?",
                   (conversation_id,)) == [(5, None)]

    # PROTOCOL §3 conversation_info rating: in "All conversations" too, after a reload.
    page.reload()
    expect(page.locator("#status-toggle")).to_have_text("Online")
    desk.show_all()
    expect(desk.all_rows).to_have_count(1)
    expect(desk.all_rows.first.locator(".conv-marks")).to_contain_text("5 / 5")

    # A second visitor rates 4: PROTOCOL §12 rating_average is a number, shown "4.5 / 5".
    other = Widget(new_page(), demo)
    other.open()
    other.wait_agent("Alice")
    other.send("Do you ship to Norway?")
    answers = guest_calls(other, {"api_key": 22950, "rating": 4})
    assert answers[1]["code"] == 200, answers
    expect(toast).to_contain_text("rated the conversation 4 / 5.")
    Settings(alice).open("Reports")
    totals = page.locator("#report-totals")
    expect(totals.locator("[data-key=rating_average] dd")).to_have_text("4.5 / 5")
    expect(page.locator("#report-days tfoot tr td").nth(9)).to_have_text("4.5 / 5")
    expect(page.locator("#report-agents tbody tr").filter(has_text="Alice").locator("td").nth(9)
           ).to_have_text("4.5 / 5")


def test_a_message_left_with_the_away_form_is_marked_in_the_console(demo, new_page):
    alice, visitor, gid = chat(demo, new_page)
    desk = Desk(alice)
    page = alice.page
    expect(page.locator("#conv-list .conv-marks")).to_have_count(0)

    # PROTOCOL §4 22900 (the away form): the message is a normal one, its conversation
    # is marked left_message, the visitor's name and address are kept (context.email).
    answers = guest_calls(visitor, {"api_key": 22900, "name": "Mei", "email": "mei@example.com",
                                    "msg": "Please call me back about order 1042"})
    assert [a["code"] for a in answers] == [200, 200], answers

    row = page.locator("#conv-list > li").filter(has_text="Left a message")
    expect(row).to_have_count(1)
    expect(row.locator(".conv-name")).to_have_text("Mei")
    expect(row).to_have_attribute("aria-describedby", f"conv-marks-{gid}")
    row.click()
    expect(page.locator("#chat-name")).to_have_text("Mei")
    expect(alice.message("call me back about order 1042")).to_be_visible()
    expect(page.locator("#chat-marks")).to_have_text("Left a message")
    # The visitor panel shows the address the visitor left.
    expect(desk.fact("E-mail")).to_have_text("mei@example.com")
    expect(desk.past_conversations.first.locator(".past-marks")).to_have_text("Left a message")
    assert demo.db("SELECT left_message FROM conversations WHERE gid = ?", (gid,)) == [(1,)]

    # "All conversations" marks it too; in Chinese as well.
    desk.show_all()
    expect(desk.all_rows.filter(has_text="Left a message")).to_have_count(1)
    page.locator("#app .lang-switch").click()
    expect(page.locator("#conv-list .conv-marks")).to_have_count(1)
    expect(desk.all_rows.first.locator(".conv-marks")).to_have_text("已留言")
    expect(page.locator("#chat-marks")).to_have_text("已留言")


def test_webhooks_offer_the_rating_and_left_message_events(demo, new_page):
    alice = Console(new_page(), demo, "alice").sign_in("Alice")
    settings = Settings(alice).open("Webhooks")
    page = alice.page
    page.get_by_role("button", name="Add a webhook").click()
    dialog = settings.dialog
    # PROTOCOL §11: conversation.rated and visitor.left_message, with readable labels.
    rated = dialog.get_by_role("checkbox", name=re.compile(r"^A visitor rates a conversation"))
    left = dialog.get_by_role("checkbox", name=re.compile(r"^A visitor leaves a message"))
    expect(rated).to_be_checked()
    expect(left).to_be_checked()
    expect(dialog.get_by_role("checkbox")).to_have_count(7)
    dialog.get_by_role("checkbox", name=re.compile(r"^A message is sent")).uncheck()
    dialog.get_by_label("Address").fill("https://hooks.shop.example/cschat")
    dialog.get_by_role("button", name="Add", exact=True).click()
    secret = page.locator("#secret-dialog")
    expect(secret).to_be_visible()
    secret.get_by_role("button", name="Done").click()
    row = settings.row("webhooks", "https://hooks.shop.example/cschat")
    expect(row).to_contain_text("conversation.rated")
    expect(row).to_contain_text("visitor.left_message")
    events = {event for event, in demo.db("SELECT event FROM webhook_events")}
    assert events == {"conversation.created", "conversation.assigned", "conversation.transferred",
                      "conversation.ended", "conversation.rated", "visitor.left_message"}
    # In Chinese, the labels too.
    page.locator("#app .lang-switch").click()
    page.get_by_role("button", name="添加 Webhook").click()
    expect(settings.dialog.get_by_text("访客评价会话")).to_be_visible()
    expect(settings.dialog.get_by_text("访客留言")).to_be_visible()
