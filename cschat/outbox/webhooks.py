"""Webhook deliveries (docs/protocol.md §11): a signed POST with Tornado's HTTP client."""

from __future__ import annotations

import hashlib
import hmac

import tornado.httpclient

from cschat import __version__
from cschat.outbox.worker import Attempt, OutboxWorker, RetryPolicy
from cschat.store import Store
from cschat.store.outbox import WEBHOOK


def signature(secret: str, body: bytes) -> str:
    """The ``X-Cschat-Signature`` header of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Sends one outbox row to its webhook. End with :meth:`close`."""

    def __init__(self, timeout: int, concurrency: int):
        self.timeout = timeout
        self._client = tornado.httpclient.AsyncHTTPClient(force_instance=True,
                                                          max_clients=concurrency)

    def close(self) -> None:
        self._client.close()

    async def deliver(self, row: dict, webhooks: dict) -> Attempt:
        webhook = webhooks.get(row["target_id"])
        if webhook is None:  # deleted since the row was read: nothing to send it to
            return Attempt(False, None, "the webhook was deleted")
        body = row["payload"].encode()
        request = tornado.httpclient.HTTPRequest(
            webhook["url"], method="POST", body=body, follow_redirects=False,
            connect_timeout=self.timeout, request_timeout=self.timeout,
            user_agent=f"cschat/{__version__}",
            headers={"Content-Type": "application/json", "X-Cschat-Event": row["event"],
                     "X-Cschat-Delivery": str(row["id"]),
                     "X-Cschat-Signature": signature(webhook["secret"], body)})
        try:
            response = await self._client.fetch(request, raise_error=False)
        except Exception as error:  # noqa: BLE001 - a bad address, refused TLS, ...
            return Attempt(False, None, f"{type(error).__name__}: {error}")
        if 200 <= response.code < 300:
            return Attempt(True, response.code)
        if response.code == 599:  # no answer: Tornado's code for a connection failure
            return Attempt(False, None, str(response.error))
        return Attempt(False, response.code, f"HTTP {response.code} {response.reason}")


def webhook_worker(store: Store, settings: dict, on_attempt) -> tuple[OutboxWorker,
                                                                        WebhookSender]:
    """The worker that delivers webhook events, and the sender it uses."""
    sender = WebhookSender(settings["timeout"], settings["concurrency"])
    policy = RetryPolicy(settings["first_retry"], settings["max_retry_interval"],
                         settings["give_up_after"])
    worker = OutboxWorker(store, WEBHOOK, sender.deliver, store.webhook_targets, policy,
                          settings["concurrency"], settings["keep_days"], on_attempt)
    return worker, sender
