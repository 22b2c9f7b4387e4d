"""One running cschat: the store, the chat service, the HTTP server, and their lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable

import tornado.netutil
import tornado.web

from cschat import handlers, pages
from cschat.accounts import Accounts
from cschat.admin import handlers as admin_handlers
from cschat.admin.service import AdminService
from cschat.auth import Tokens
from cschat.broker import MemoryBroker
from cschat.chat import ChatService
from cschat.desk import DeskService
from cschat.limits import ConnectionCounter, SharedBuckets
from cschat.listener import GuardedHTTPServer, raise_file_limit
from cschat.logs import ThrottledLog, log_request
from cschat.media_handlers import FileHandler, UploadHandler
from cschat.metrics import Metrics, MetricsHandler, snapshot_of
from cschat.outbox.mail import mail_worker
from cschat.outbox.webhooks import webhook_worker
from cschat.reception import Reception
from cschat.settings import Settings
from cschat.store import Store
from cschat.uploads import Uploads

log = logging.getLogger("cschat")
_index_failures = ThrottledLog(log)

# Largest body of a plain request; uploads stream theirs and set their own limit.
MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_SECONDS = 3.0
SEARCH_INDEX_SECONDS = 0.25


async def open_store(settings: Settings) -> Store:
    """Open (creating and migrating) the database the settings name.

    The file (and with it SQLite's -wal and -shm files, which take its mode)
    is readable by its owner only: it holds the token secret and every chat.
    """
    path = settings.database["path"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    return await Store(path, settings.database["synchronous"],
                       settings.database["max_wal_bytes"]).open()


async def make_tokens(settings: Settings, store: Store) -> Tokens:
    """Tokens signed with ``[auth] secret``, or with the secret kept in the database."""
    secret = settings.auth["secret"] or await store.secret()
    return Tokens(secret, settings.auth["token_ttl"], settings.auth["refresh_window"],
                  settings.auth["max_session_age"])


class Server:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port`` is the bound port."""

    def __init__(self, settings: Settings, demo_group: int | None = None):
        self.settings = settings
        self.demo_group = demo_group
        self.static_folder = pages.static_folder()
        self.sockets: set[handlers.ChatSocket] = set()
        server, chat = settings.server, settings.chat
        self.connections = ConnectionCounter(server["max_connections"],
                                             server["max_connections_per_address"])
        self.address_buckets = SharedBuckets(chat["address_rate_limit"])
        self.identity_buckets = SharedBuckets(chat["identity_rate_limit"])
        self.port: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self._http: tornado.httpserver.HTTPServer | None = None
        self._sweepers: list[asyncio.Task] = []

    async def start(self) -> None:
        """Open the database and start listening; raises OSError if the port is taken."""
        self.store = await open_store(self.settings)
        self.uploads = Uploads(self.settings.uploads, self.store)
        self.tokens = await make_tokens(self.settings, self.store)
        self.accounts = Accounts(self.store, self.tokens, self.settings.auth)
        self.broker = MemoryBroker()
        self.metrics = Metrics(lambda: snapshot_of(self), self.settings.metrics["enabled"])
        self.chat = ChatService(self.store, self.broker, self.tokens, self.settings.chat,
                                self.metrics, self.settings.privacy["store_ip"],
                                mail_enabled=bool(self.settings.email["smtp_host"]))
        self.store.reply_batch_ms = self.settings.email["reply_batch_seconds"] * 1000
        self.store.mail_per_hour = self.settings.email["max_per_hour"]
        self.desk = DeskService(self.store, self.broker, self.chat, self.settings.chat,
                                self.settings.privacy["search_index"])
        await self.store.switch_search_index(self.settings.privacy["search_index"])
        self.reception = self.chat.reception = Reception(
            self.store, self.broker, self.chat, self.settings.email["queue_alert_seconds"])
        await self.chat.start()
        await self.reception.start()
        self.admin = AdminService(self.store, self.chat, self.desk, self.accounts,
                                  self.settings)
        self.webhooks, self._webhook_sender = webhook_worker(
            self.store, self.settings.webhooks, self.metrics.webhook_delivery)
        self.webhooks.start()
        self.mail = mail_worker(self.store, self.reception, self.settings.email,
                                self.settings.webhooks)
        if self.chat.mail_enabled:  # with no SMTP server, no mail is ever queued
            self.mail.start()
        raise_file_limit()
        server = self.settings.server
        self._http = GuardedHTTPServer(
            self.make_app(), max_body_size=MAX_BODY_BYTES, xheaders=server["behind_proxy"],
            idle_connection_timeout=server["header_timeout"],
            body_timeout=server["body_timeout"],
            connections=self.connections, per_address=not server["behind_proxy"])
        sockets = tornado.netutil.bind_sockets(self.settings.server["port"],
                                               self.settings.server["host"])
        self._http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._sweepers = [loop.create_task(self._sweep_silent()),
                          loop.create_task(self._sweep_unused_files()),
                          loop.create_task(self._follow_search_index())]
        log.info("cschat listening on http://%s:%d (database %s)", self.settings.server["host"],
                 self.port, self.settings.database["path"])

    def make_app(self) -> tornado.web.Application:
        chat = self.settings.chat
        context = {"server": self}
        return tornado.web.Application(
            [
                (r"/ws", handlers.ChatSocket, context),
                (r"/", handlers.RootSocket, context),
                (r"/api/login", handlers.LoginHandler, context),
                (r"/api/visitor", handlers.VisitorHandler, context),
                (r"/healthz", handlers.HealthHandler, context),
                (r"/metrics", MetricsHandler, context),
                (r"/api/upload", UploadHandler, context),
                (r"/files/([^/]+)(/thumb)?", FileHandler, context),
                *admin_handlers.routes(self),
                *pages.routes(self, self.demo_group),
            ],
            websocket_max_message_size=chat["max_frame_bytes"],
            websocket_ping_interval=max(1, chat["heartbeat_timeout"] // 2),
            websocket_ping_timeout=max(1, chat["heartbeat_timeout"] // 2),
            log_function=log_request,
            # gzip for text answers, as compress_response=True but never /files/ nor a 206
            transforms=pages.TRANSFORMS,
        )

    async def _sweep_silent(self) -> None:
        """Close connections that sent no frame for ``heartbeat_timeout`` seconds (R6),
        and those that did not log in within ``login_timeout`` seconds."""
        timeout = self.settings.chat["heartbeat_timeout"]
        login_timeout = self.settings.server["login_timeout"]
        while True:
            await asyncio.sleep(min(1.0, timeout / 4, login_timeout / 4))
            now = time.monotonic()
            for socket in list(self.sockets):
                if socket.last_frame < now - timeout:
                    socket.close(1000, "heartbeat timeout")
                elif socket.session is None and not socket.logging_in and \
                        socket.opened < now - login_timeout:
                    socket.close(handlers.CLOSE_POLICY, "login timeout")

    async def _sweep_unused_files(self) -> None:
        """Delete uploads no message used within their TTL (``[uploads] orphan_ttl``,
        ``guest_orphan_ttl`` for a guest's)."""
        while True:
            await asyncio.sleep(self.uploads.sweep_seconds)
            try:
                await self.uploads.remove_unused()
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("removing unused uploads failed")

    async def _follow_search_index(self) -> None:
        """Keep the search index a moment behind the messages (``[privacy] search_index``):
        a few hundred at a time cost the writer far less than one at a time."""
        while True:
            await asyncio.sleep(SEARCH_INDEX_SECONDS)
            try:
                await self.store.index_messages()
            except Exception as error:  # noqa: BLE001 - a full disk, say: again next round
                _index_failures.error("adding messages to the search index failed: %s", error)

    def track(self, work: Awaitable) -> None:
        """Run ``work`` in the background, kept alive until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop accepting, close every WebSocket with 1001, commit pending writes."""
        if self._http is not None:
            self._http.stop()
        for sweeper in self._sweepers:
            sweeper.cancel()
        for socket in list(self.sockets):
            socket.close(1001, "server shutting down")
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        while (self.sockets or self._tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.reception.stop()
        await self.chat.stop()
        await self.webhooks.stop()
        await self.mail.stop()
        await self._webhook_sender.close()
        self.accounts.close()
        if self._http is not None:
            await asyncio.wait_for(self._http.close_all_connections(), SHUTDOWN_SECONDS)
        self.uploads.close()
        await self.store.close()
        log.info("cschat stopped")
