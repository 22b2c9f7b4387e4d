"""``POST /api/upload`` and ``GET /files/<id>[/thumb]`` (PROTOCOL R25, §7).

The upload body is streamed to a spool file as it arrives, so a large video
never sits in memory; it is refused as soon as its declared or streamed size
passes the limit. Typing, image processing and hashing run in a thread.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

import tornado.web

from cschat import media
from cschat.auth import TokenError
from cschat.handlers import JsonHandler
from cschat.media import UploadRefused
from cschat.multipart import MultipartError, MultipartParser, boundary_of
from cschat.protocol import FILE, FILE_TYPES, TEXT
from cschat.store import file_object

if TYPE_CHECKING:
    from cschat.app import Server

MAX_PARTS = 8
MULTIPART_OVERHEAD = 64 * 1024
_FIELD_MAX_BYTES = 16
SPOOL_FOLDER = "tmp"


class _Spool:
    """Receives the multipart parts: the ``file`` part goes to disk, ``file_type`` to memory."""

    def __init__(self, folder: str, limit: int):
        self.folder = folder
        self.limit = limit
        self.path: str | None = None
        self.filename: str | None = None
        self.size = 0
        self.file_type_text = b""
        self._handle = None
        self._target: str | None = None

    def start_part(self, name: str, filename: str | None) -> None:
        self._target = name if name in ("file", "file_type") else None
        if name == "file":
            if self.path is not None:
                raise MultipartError("only one file per upload")
            os.makedirs(self.folder, exist_ok=True)
            self.path = os.path.join(self.folder, secrets.token_hex(16) + ".part")
            self._handle = open(self.path, "wb")  # noqa: SIM115 - closed in end_part/discard
            self.filename = filename

    def part_data(self, data: bytes) -> None:
        if self._target == "file":
            self.size += len(data)
            if self.size > self.limit:
                raise UploadRefused(413, f"the file is larger than {self.limit} bytes")
            self._handle.write(data)
        elif self._target == "file_type":
            self.file_type_text += data
            if len(self.file_type_text) > _FIELD_MAX_BYTES:
                raise MultipartError("file_type is too long")

    def end_part(self) -> None:
        if self._target == "file":
            self._handle.close()
        self._target = None

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


@tornado.web.stream_request_body
class UploadHandler(JsonHandler):
    """``POST /api/upload``: multipart ``file`` and optional ``file_type``, Bearer token."""

    def initialize(self, server: Server) -> None:
        super().initialize(server)
        self.policy: media.UploadPolicy = server.upload_policy
        self.spool: _Spool | None = None
        self.parser: MultipartParser | None = None

    async def prepare(self) -> None:
        self.uploader = await self._authenticate()
        limit = self.policy.limit(None)
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and \
                int(declared) > limit + MULTIPART_OVERHEAD:
            self._refuse(413, f"uploads are limited to {limit} bytes")
        self.request.connection.set_max_body_size(limit + MULTIPART_OVERHEAD)
        try:
            boundary = boundary_of(self.request.headers.get("Content-Type", ""))
        except MultipartError as error:
            self._refuse(400, str(error))
        self.spool = _Spool(os.path.join(self.policy.folder, SPOOL_FOLDER), limit)
        self.parser = MultipartParser(boundary, self.spool, MAX_PARTS)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        try:
            self.parser.feed(chunk)
        except MultipartError as error:
            self._stop(400, str(error))
        except UploadRefused as refused:
            self._stop(refused.status, refused.message)

    async def post(self) -> None:
        if self._finished:
            return
        try:
            self.parser.close()
            if self.spool.path is None:
                raise UploadRefused(400, "the multipart field 'file' is missing")
            requested = self._requested_type()
            record = await asyncio.get_running_loop().run_in_executor(
                None, self._keep, requested)
        except MultipartError as error:
            self.answer(400, -10004, str(error))
            return
        except UploadRefused as refused:
            self.answer(refused.status, -10004, refused.message)
            return
        await self.server.store.add_file(record)
        self.answer(200, data={**file_object(record), "file_type": record["file_type"]})

    def _keep(self, requested: int | None) -> dict:
        """Sniff, check and store the spooled file (in a thread); the files row to add."""
        mime = media.sniff(self.spool.path)
        file_type = self.policy.classify(mime, requested)
        if self.spool.size > self.policy.limit(file_type):
            raise UploadRefused(413, f"file_type {file_type} is limited to "
                                     f"{self.policy.limit(file_type)} bytes")
        stored = media.keep(self.spool.path, mime, file_type, self.policy)
        role, uploader_id, group_id = self.uploader
        return {"id": stored.file_id, "file_type": file_type, "group_id": group_id,
                "uploader": role, "uploader_id": uploader_id, "mime": mime,
                "size": stored.size, "name": media.display_name(self.spool.filename),
                "sha256": stored.sha256, "width": stored.width, "height": stored.height,
                "path": stored.path, "thumb_path": stored.thumb_path,
                "thumb_mime": stored.thumb_mime}

    def _requested_type(self) -> int | None:
        text = self.spool.file_type_text.strip()
        if not text:
            return None
        if not text.isdigit() or int(text) not in FILE_TYPES or int(text) in (TEXT, 3, 4):
            raise UploadRefused(415, "file_type must be 1, 2, 5 or 6")
        return int(text)

    async def _authenticate(self) -> tuple[str, int, int]:
        """``(role, uploader id, group id)`` of the Bearer token; answers 401 otherwise."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._refuse(401, "an agent or guest token is required")
        token = token.strip()
        store, tokens = self.server.store, self.server.tokens
        try:
            claims = tokens.verify_agent(token)
        except TokenError:
            pass
        else:
            agent = await store.agent(claims.admin_id)
            if agent is None or not agent["enabled"] or not agent["group_enabled"]:
                self._refuse(401, "agent unknown or disabled")
            return "agent", agent["id"], agent["group_id"]
        try:
            guest = tokens.verify_guest(token)
        except TokenError:
            self._refuse(401, "token invalid")
        group = await store.group(guest.group_id)
        if group is None or not group["enabled"]:
            self._refuse(401, "group disabled or missing")
        row = await store.guest_by_uid(guest.group_id, guest.uid) or await store.upsert_guest(
            guest.group_id, guest.uid, guest.name, guest.avatar)
        return "guest", row["gid"], guest.group_id

    def _refuse(self, status: int, message: str) -> None:
        self.answer(status, -10004, message)
        raise tornado.web.Finish()

    def _stop(self, status: int, message: str) -> None:
        """Answer now, mid-body; Tornado then drops the rest and closes the connection."""
        self.answer(status, -10004, message)
        self.spool.discard()

    def on_finish(self) -> None:
        if self.spool is not None:
            self.spool.discard()

    def on_connection_close(self) -> None:
        if self.spool is not None:
            self.spool.discard()


class FileHandler(tornado.web.StaticFileHandler):
    """``GET /files/<id>`` and ``/files/<id>/thumb``: stored bytes, safe to open.

    Range requests, ETags (the file's sha256) and long caching come from
    StaticFileHandler; the headers below keep a browser from running anything.
    """

    CACHE_MAX_AGE = 365 * 24 * 3600

    def initialize(self, server: Server) -> None:
        super().initialize(path=server.upload_policy.folder)
        self.server = server
        self.record: dict[str, Any] = {}
        self.thumb = False

    async def get(self, file_id: str, thumb: str | None = None, include_body: bool = True
                  ) -> None:
        record = await self.server.store.file(file_id) if media.FILE_ID.fullmatch(file_id) \
            else None
        if record is None or (thumb and not record["thumb_path"]):
            raise tornado.web.HTTPError(404)
        self.record, self.thumb = record, bool(thumb)
        await super().get(record["thumb_path"] if thumb else record["path"], include_body)

    async def head(self, file_id: str, thumb: str | None = None) -> None:
        await self.get(file_id, thumb, include_body=False)

    def compute_etag(self) -> str | None:
        return f'"{self.record["sha256"]}{"-thumb" if self.thumb else ""}"'

    def get_content_type(self) -> str:
        return self.record["thumb_mime"] if self.thumb else self.record["mime"]

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return self.CACHE_MAX_AGE

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("Cache-Control", f"public, max-age={self.CACHE_MAX_AGE}, immutable")
        disposition = "attachment" if self.record["file_type"] == FILE and not self.thumb \
            else "inline"
        name = urllib.parse.quote(self.record["name"], safe="")
        self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{name}")
