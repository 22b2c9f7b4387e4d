"""One running cschat: the store, the chat service, the HTTP server, and their lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable

import tornado.httpserver
import tornado.netutil
import tornado.web

from cschat import handlers, media, pages
from cschat.auth import Tokens
from cschat.broker import MemoryBroker
from cschat.chat import ChatService
from cschat.media import UploadPolicy
from cschat.media_handlers import SPOOL_FOLDER, FileHandler, UploadHandler
from cschat.settings import Settings
from cschat.store import Store, now_ms

log = logging.getLogger("cschat")

# Largest body of a plain request; uploads stream theirs and set their own limit.
MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_SECONDS = 3.0


async def open_store(settings: Settings) -> Store:
    """Open (creating and migrating) the database the settings name."""
    os.makedirs(os.path.dirname(settings.database["path"]), exist_ok=True)
    return await Store(settings.database["path"], settings.database["synchronous"]).open()


async def make_tokens(settings: Settings, store: Store) -> Tokens:
    """Tokens signed with ``[auth] secret``, or with the secret kept in the database."""
    secret = settings.auth["secret"] or await store.secret()
    return Tokens(secret, settings.auth["token_ttl"], settings.auth["refresh_window"])


class Server:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port`` is the bound port."""

    def __init__(self, settings: Settings, demo_group: int | None = None):
        self.settings = settings
        self.demo_group = demo_group
        self.static_folder = pages.static_folder()
        self.sockets: set[handlers.ChatSocket] = set()
        self.port: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self._http: tornado.httpserver.HTTPServer | None = None
        self._sweepers: list[asyncio.Task] = []

    async def start(self) -> None:
        """Open the database and start listening; raises OSError if the port is taken."""
        self.upload_policy = UploadPolicy.from_settings(self.settings.uploads)
        spool = os.path.join(self.upload_policy.folder, SPOOL_FOLDER)
        shutil.rmtree(spool, ignore_errors=True)  # uploads cut short by a stop
        os.makedirs(spool, exist_ok=True)
        self.store = await open_store(self.settings)
        self.tokens = await make_tokens(self.settings, self.store)
        self.broker = MemoryBroker()
        self.chat = ChatService(self.store, self.broker, self.tokens, self.settings.chat)
        await self.chat.start()
        self._http = tornado.httpserver.HTTPServer(self.make_app(), max_body_size=MAX_BODY_BYTES)
        sockets = tornado.netutil.bind_sockets(self.settings.server["port"],
                                               self.settings.server["host"])
        self._http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._sweepers = [loop.create_task(self._sweep_silent()),
                          loop.create_task(self._sweep_unused_files())]
        log.info("cschat listening on http://%s:%d (database %s)", self.settings.server["host"],
                 self.port, self.settings.database["path"])

    def make_app(self) -> tornado.web.Application:
        chat = self.settings.chat
        context = {"server": self}
        return tornado.web.Application(
            [
                (r"/ws", handlers.ChatSocket, context),
                (r"/api/login", handlers.LoginHandler, context),
                (r"/api/visitor", handlers.VisitorHandler, context),
                (r"/healthz", handlers.HealthHandler, context),
                (r"/api/upload", UploadHandler, context),
                (r"/files/([^/]+)(/thumb)?", FileHandler, context),
                *pages.routes(self, self.demo_group),
            ],
            websocket_max_message_size=chat["max_frame_bytes"],
            websocket_ping_interval=max(1, chat["heartbeat_timeout"] // 2),
            websocket_ping_timeout=max(1, chat["heartbeat_timeout"] // 2),
        )

    async def _sweep_silent(self) -> None:
        """Close connections that sent no frame for ``heartbeat_timeout`` seconds (R6)."""
        timeout = self.settings.chat["heartbeat_timeout"]
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            deadline = time.monotonic() - timeout
            for socket in [s for s in self.sockets if s.last_frame < deadline]:
                socket.close(1000, "heartbeat timeout")

    async def _sweep_unused_files(self) -> None:
        """Delete uploads no message used within ``orphan_ttl`` seconds."""
        ttl = self.settings.uploads["orphan_ttl"]
        while True:
            await asyncio.sleep(max(1, min(3600, ttl // 4)))
            try:
                paths = await self.store.remove_unused_files(now_ms() - ttl * 1000)
                media.remove(self.upload_policy, paths)
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("removing unused uploads failed")

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
        await self.chat.stop()
        if self._http is not None:
            await asyncio.wait_for(self._http.close_all_connections(), SHUTDOWN_SECONDS)
        await self.store.close()
        log.info("cschat stopped")
