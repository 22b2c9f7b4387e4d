"""Mail deliveries (docs/protocol.md §4, "E-mail"): written from the database when they
go out, sent with ``aiosmtplib``, a text and an HTML part, every user string escaped."""

from __future__ import annotations

import email.message
import email.utils
import html
import json
from typing import TYPE_CHECKING

import aiosmtplib

from cschat.outbox.worker import Attempt, OutboxWorker, RetryPolicy
from cschat.store import Store
from cschat.store.mail import MAIL

if TYPE_CHECKING:
    from cschat.reception import Reception

_SUBJECTS = {
    "left_message": {"en": "{name} left a message"},
    "queue_alert": {"en": "{name} has been waiting for an answer"},
    "replies": {"en": "New replies to your message", "zh": "您的留言有了新回复"},
    "transcript": {"en": "The transcript of your chat", "zh": "您的聊天记录"},
}
_INTROS = {
    "left_message": {"en": "{name} ({email}) left this message while nobody could answer:"},
    "queue_alert": {"en": "{name} has waited in the queue for a while. What they wrote:"},
    "replies": {"en": "You have new replies to your message:", "zh": "您的留言有了新回复："},
    "transcript": {"en": "Here is your chat with us:", "zh": "以下是您与我们的聊天记录："},
}
_CONTINUE = {"en": "Continue the chat", "zh": "继续聊天"}
_SENDERS = {"guest": {"en": "You", "zh": "您"}, "agent": {"en": "Agent", "zh": "客服"},
            "system": {"en": "Note", "zh": "提示"}}


def _language(kind: str, visitor_language: str | None) -> str:
    to_visitor = kind in ("replies", "transcript")
    return "zh" if to_visitor and (visitor_language or "").lower().startswith("zh") else "en"


def _text_of(message: dict) -> str:
    """What a message says, as plain text (a file or a card by its name or title)."""
    if message["file_type"] == 0:
        return message["body"]
    body = json.loads(message["body"])
    return f"[{body.get('name') or body.get('title') or body.get('order_no') or 'file'}]"


def compose(kind: str, content: dict, sender: str, to: str, message_id: str,
            language: str | None) -> email.message.EmailMessage:
    """The mail of ``kind`` from what :meth:`Store.mail_content` read."""
    lang = _language(kind, language)
    # A header cannot hold a line break; a name is one line in any case.
    name = " ".join((content["name"] or "").split()) or ("访客" if lang == "zh" else "A visitor")
    fields = {"name": name, "email": content["email"] or "-"}
    intro = _INTROS[kind][lang].format(**fields)
    lines = [(_SENDERS[m["sender"]][lang] if kind != "left_message" else name, _text_of(m))
             for m in content["messages"]]
    page = content["page"] if kind == "replies" else None
    mail = email.message.EmailMessage()
    mail["Subject"] = _SUBJECTS[kind][lang].format(**fields)
    mail["From"], mail["To"] = sender, to
    mail["Date"] = email.utils.formatdate(localtime=False)
    mail["Message-ID"] = message_id
    text = [intro, ""] + [f"{who}: {said}" for who, said in lines]
    if page:
        text += ["", f"{_CONTINUE[lang]}: {page}"]
    mail.set_content("\n".join(text))
    escape = html.escape
    rows = "".join(f"<p><b>{escape(who)}</b>: {escape(said)}</p>" for who, said in lines)
    link = f'<p><a href="{escape(page)}">{escape(_CONTINUE[lang])}</a></p>' if page else ""
    mail.add_alternative(f"<!doctype html><html><body><p>{escape(intro)}</p>{rows}{link}"
                         "</body></html>", subtype="html")
    return mail


class MailSender:
    """Sends the mail of one outbox row over SMTP (``[email]`` settings)."""

    def __init__(self, store: Store, reception: Reception, settings: dict):
        self.store, self.reception, self.settings = store, reception, settings

    async def deliver(self, row: dict, targets: dict) -> Attempt:
        payload = json.loads(row["payload"])
        content = await self.store.mail_content(payload)
        if content is None:
            return Attempt(True, None, "not sent: the visitor is gone")
        to = payload["to"] or self.reception.settings_of(
            content["group_id"])["notify_email"] or self.settings["notify"]
        if not to:
            return Attempt(True, None, "not sent: no address for the shop ([email] notify)")
        if payload["kind"] == "replies" and not content["messages"]:
            return Attempt(True, None, "not sent: the visitor read the replies")
        mail = compose(payload["kind"], content, self.settings["from"], to,
                       f"<cschat-{row['id']}-{row['created_at']}@cschat>",
                       content.get("language"))
        security = self.settings["security"]
        try:
            await aiosmtplib.send(
                mail, hostname=self.settings["smtp_host"], port=self.settings["smtp_port"],
                username=self.settings["username"] or None,
                password=self.settings["password"] or None,
                use_tls=security == "tls", start_tls=security == "starttls",
                timeout=self.settings["timeout"])
        except (aiosmtplib.SMTPException, OSError) as error:
            return Attempt(False, None, f"{type(error).__name__}: {error}")
        return Attempt(True, 250)


def mail_worker(store: Store, reception: Reception, email_settings: dict,
                retry_settings: dict) -> OutboxWorker:
    """The worker that sends queued mail, retried as webhooks are (``[webhooks]``)."""
    sender = MailSender(store, reception, email_settings)
    policy = RetryPolicy(retry_settings["first_retry"], retry_settings["max_retry_interval"],
                         retry_settings["give_up_after"])
    return OutboxWorker(store, MAIL, sender.deliver, policy, 1, retry_settings["keep_days"])
