"""E-mail (docs/protocol.md §4 "E-mail"): a real local SMTP server (aiosmtpd) receives
what cschat sends — the shop's mail for a message left while away, replies to an offline
visitor batched, transcripts — and nothing is lost or sent twice across a SIGKILL."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time

import pytest
from aiosmtpd.controller import Controller
from conftest import Client, assert_error, free_port, read_db
from test_process import ServerProcess, cli, config_and_port

SHOP = "shop@example.com"


class Mailbox:
    """An SMTP server on loopback that keeps every message it accepts."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=email.policy.default))
        return "250 OK"

    def start(self) -> Mailbox:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def wait_for(self, count: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} mails came"
            await asyncio.sleep(0.05)
        return self.messages


@pytest.fixture
def mailbox():
    box = Mailbox().start()
    yield box
    box.stop()


def email_settings(box: Mailbox, **more) -> dict:
    return {"smtp_host": "127.0.0.1", "smtp_port": box.port, "security": "none",
            "from": "Shop <help@example.com>", "notify": SHOP, **more}


def text_part(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def html_part(mail) -> str:
    return mail.get_body(("html",)).get_content()


@pytest.mark.gen_test(timeout=20)
async def test_a_message_left_while_away_is_mailed_to_the_shop(make_server, mailbox):
    # PROTOCOL §4 22900 and e-mail: the away form's message is a normal one, waiting in
    # the queue, marked "left a message"; the shop is mailed, every user string escaped
    h = await make_server(email=email_settings(mailbox), webhooks={"first_retry": 1})
    group = await h.group()
    guest = await h.guest_client("u1", group)
    assert guest.login_data["availability"] == "away"
    sent = await guest.ok(22900, name="Ann <b>", email="ann@example.org",
                          msg="Do you ship <script>alert(1)</script> to Mars?")
    assert sent["message_info"]["sender"] == "guest"
    mail, = await mailbox.wait_for(1)
    assert mail["To"] == SHOP and mail["Subject"] == "Ann <b> left a message"
    assert "ann@example.org" in text_part(mail)
    assert "Do you ship <script>alert(1)</script> to Mars?" in text_part(mail)
    assert "&lt;script&gt;" in html_part(mail) and "<script>" not in html_part(mail)
    assert h.db("SELECT left_message FROM conversations") == [(1,)]
    # No automatic away reply to a visitor that has just left its message and address.
    assert h.db("SELECT COUNT(*) FROM messages WHERE sender = 'system'") == [(0,)]
    assert h.db("SELECT queued_at IS NOT NULL FROM guests") == [(1,)]
    agent = await h.agent_client(await h.agent(group, "Bob"))
    info = (await agent.push(32401))["data"]["guest_info"]
    assert (info["name"], info["context"]["email"]) == ("Ann <b>", "ann@example.org")
    assert info["left_message"] is True
    assert (await agent.ok(32800))["list"][0]["left_message"] is True
    assert_error(await guest.call(22900, name="x", email="not-an-address", msg="hi"), -22902)


@pytest.mark.gen_test(timeout=20)
async def test_no_mail_while_someone_answers_or_without_smtp(make_server, mailbox):
    # PROTOCOL §4 e-mail: a normal conversation with an agent online mails nobody; with no
    # SMTP server configured, nothing is queued and a transcript is refused
    h = await make_server(email=email_settings(mailbox))
    group = await h.group()
    agent = await h.agent_client(await h.agent(group, "Bob"))
    guest = await h.guest_client("u1", group)
    await guest.ok(22300, msg="hello")
    await agent.ok(32300, gid=guest.login_data["gid"], msg="hi!")
    plain = await make_server()
    plain_group = await plain.group()
    other = await plain.guest_client("u2", plain_group)
    await other.ok(22900, name="Zoe", email="zoe@example.org", msg="anyone?")
    assert_error(await other.call(22960), -22962)
    await asyncio.sleep(0.5)
    assert mailbox.messages == []
    assert h.db("SELECT COUNT(*) FROM outbox") == [(0,)]
    assert plain.db("SELECT COUNT(*) FROM outbox") == [(0,)]


@pytest.mark.gen_test(timeout=20)
async def test_replies_to_an_offline_visitor_are_mailed_once_batched(make_server, mailbox):
    # PROTOCOL §4 e-mail: an agent's replies to a visitor who is offline and left an
    # address go out in one mail per reply_batch_seconds, with a link back to its page
    h = await make_server(email=email_settings(mailbox, reply_batch_seconds=1),
                          chat={"release_after": 60})
    group = await h.group()
    token = h.server.tokens.mint_guest("u1", group, "Ann")
    guest = await Client.connect(h.port, 1)
    guest.login_data = await guest.ok(21000, token=token, context={
        "url": "https://shop.example/p/7", "language": "en"})
    await guest.ok(22900, name="Ann", email="ann@example.org", msg="Is size 43 back?")
    await mailbox.wait_for(1)  # the shop's
    gid = guest.login_data["gid"]
    guest.close()
    agent = await h.agent_client(await h.agent(group, "Bob"))
    await agent.push(32401)
    await asyncio.sleep(0.3)  # the guest's close has reached the server
    await agent.ok(32300, gid=gid, msg="Yes, it is back.")
    await agent.ok(32300, gid=gid, msg="Shall I keep one for you?")
    mails = await mailbox.wait_for(2)
    await asyncio.sleep(1.5)
    assert len(mailbox.messages) == 2, "two replies, one mail"
    reply = mails[1]
    assert reply["To"] == "ann@example.org"
    body = text_part(reply)
    assert "Yes, it is back." in body and "Shall I keep one for you?" in body
    assert "https://shop.example/p/7" in body
    assert 'href="https://shop.example/p/7"' in html_part(reply)


@pytest.mark.gen_test(timeout=20)
async def test_a_visitor_gets_the_transcript(make_server, mailbox):
    # PROTOCOL §4 22960: the transcript of my conversation, to the address given
    h = await make_server(email=email_settings(mailbox))
    group = await h.group()
    agent = await h.agent_client(await h.agent(group, "Bob"))
    guest = await h.guest_client("u1", group)
    assert_error(await guest.call(22960, email="ann@example.org"), -22961)
    await guest.ok(22300, msg="Where is order 1001?")
    await agent.ok(32300, gid=guest.login_data["gid"], msg="It left today.")
    assert (await guest.ok(22960, email="ann@example.org")) == {"email": "ann@example.org"}
    mail, = await mailbox.wait_for(1)
    assert mail["To"] == "ann@example.org"
    assert mail["Subject"] == "The transcript of your chat"
    assert "You: Where is order 1001?" in text_part(mail)
    assert "Agent: It left today." in text_part(mail)
    # Once in ten minutes: the visitor types the address, so cschat must not be its mailer.
    assert_error(await guest.call(22960, email="someone.else@example.org"), -22963)


@pytest.mark.gen_test(timeout=60)
async def test_no_mail_is_lost_or_sent_twice_across_a_sigkill(tmp_path):
    # PROTOCOL §4 e-mail: mail is queued in the commit of what caused it; queued while the
    # SMTP server is down, it survives a SIGKILL and goes out once the server is back;
    # once sent, a SIGKILL and restart do not send it again
    box = Mailbox()
    config, port = config_and_port(tmp_path, {
        "email": email_settings(box), "webhooks": {"first_retry": 1, "max_retry_interval": 1}})
    group = await cli(config, "group", "add", "Shop")
    guest_token = await cli(config, "token", "guest", "u1", "--group", group)
    server = ServerProcess(tmp_path, config, port)
    try:
        await server.start()
        guest = await Client.login(port, 1, guest_token)
        await guest.ok(22900, name="Ann", email="ann@example.org", msg="hello?")
        await asyncio.sleep(0.5)  # at least one attempt failed: nobody listens
        server.kill()
        assert read_db(tmp_path, "SELECT state, attempts > 0 FROM outbox") == [("pending", 1)]
        box.start()
        await server.start()
        await box.wait_for(1)
        await asyncio.sleep(0.5)
        assert read_db(tmp_path, "SELECT state FROM outbox") == [("delivered",)]
        server.kill()
        await server.start()
        await asyncio.sleep(2)
        assert len(box.messages) == 1
    finally:
        server.stop()
        box.stop()


@pytest.mark.gen_test(timeout=20)
async def test_names_stay_one_line_and_mail_has_an_hourly_ceiling(make_server, mailbox):
    # PROTOCOL §4 e-mail, SECURITY mail: a name typed in the away form is one line; a
    # shop's token may carry any name, which a mail header gets on one line; past
    # [email] max_per_hour nothing more is queued (a transcript says so: -22963)
    h = await make_server(email=email_settings(mailbox, max_per_hour=2))
    group = await h.group()
    guest = await h.guest_client("u1", group, token=h.server.tokens.mint_guest(
        "u1", group, "Eve\nBcc: victim@example.org"))
    assert_error(await guest.call(22900, name="Eve\nX", email="e@example.org", msg="hi"),
                 -22901)
    await guest.ok(22900, email="e@example.org", msg="first")
    mail, = await mailbox.wait_for(1)
    assert mail["Subject"] == "Eve Bcc: victim@example.org left a message"
    assert mail["Bcc"] is None
    other = await h.guest_client("u2", group)
    await other.ok(22900, name="Sam", email="sam@example.org", msg="second")
    await other.ok(22900, name="Sam", email="sam@example.org", msg="third: over the ceiling")
    await mailbox.wait_for(2)
    assert_error(await other.call(22960), -22963)
    await asyncio.sleep(0.5)
    assert len(mailbox.messages) == 2
