"""Webhook deliveries (docs/protocol.md §11): a signed POST over kept-alive connections."""

from __future__ import annotations

import hashlib
import hmac

import aiohttp

from cschat import __version__
from cschat.outbox.worker import Attempt, OutboxWorker, RetryPolicy
from cschat.store import Store
from cschat.store.outbox import WEBHOOK

# An idle connection to a receiver is closed after this long: shorter than the idle
# timeouts servers commonly use (Node's 5 s), so that cschat is the side that closes it
# and a POST never goes out on a connection the receiver is closing at the same moment.
KEEPALIVE_SECONDS = 4
# An answer's body is read (so that its connection can carry the next POST) only when its
# length is given and at most this; any other is left unread (never buffered whole), and
# its connection closed unless the body had already arrived.
MAX_ANSWER_BYTES = 64 * 1024


def signature(secret: str, body: bytes) -> str:
    """The ``X-Cschat-Signature`` header of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Sends one outbox row to its webhook, keeping connections to receivers open between
    deliveries (a busy shop's events reuse them). Create and use it on the running event
    loop; end with :meth:`close`."""

    def __init__(self, timeout: int, concurrency: int):
        # No proxy from the environment (trust_env is off), cookies never kept.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency,
                                           keepalive_timeout=KEEPALIVE_SECONDS),
            timeout=aiohttp.ClientTimeout(total=timeout, connect=timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": f"cschat/{__version__}"})

    async def close(self) -> None:
        await self._session.close()

    async def deliver(self, row: dict, webhooks: dict) -> Attempt:
        webhook = webhooks.get(row["target_id"])
        if webhook is None:  # deleted since the row was read: nothing to send it to
            return Attempt(False, None, "the webhook was deleted")
        body = row["payload"].encode()
        headers = {"Content-Type": "application/json", "X-Cschat-Event": row["event"],
                   "X-Cschat-Delivery": str(row["id"]),
                   "X-Cschat-Signature": signature(webhook["secret"], body)}
        try:
            async with self._session.post(webhook["url"], data=body, headers=headers,
                                          allow_redirects=False) as response:
                if response.content_length is not None \
                        and response.content_length <= MAX_ANSWER_BYTES:
                    await response.read()
        except TimeoutError:
            return Attempt(False, None, "no answer within the timeout")
        except Exception as error:  # noqa: BLE001 - a bad address, refused TLS, a reset, ...
            return Attempt(False, None, f"{type(error).__name__}: {error}")
        if 200 <= response.status < 300:
            return Attempt(True, response.status)
        return Attempt(False, response.status, f"HTTP {response.status} {response.reason}")


def webhook_worker(store: Store, settings: dict, on_attempt) -> tuple[OutboxWorker,
                                                                        WebhookSender]:
    """The worker that delivers webhook events, and the sender it uses."""
    sender = WebhookSender(settings["timeout"], settings["concurrency"])
    policy = RetryPolicy(settings["first_retry"], settings["max_retry_interval"],
                         settings["give_up_after"])
    worker = OutboxWorker(store, WEBHOOK, sender.deliver, policy, settings["concurrency"],
                          settings["keep_days"], on_attempt)
    return worker, sender
