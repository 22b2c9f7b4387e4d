"""``POST /api/upload`` and ``GET /files/<id>[/thumb]`` (PROTOCOL R25, §7).

The upload body is streamed to a spool file as it arrives, so a large video
never sits in memory. Once its first bytes are in, the file is typed and
from then on held to its type's limit; it is refused as soon as its declared
or streamed size passes a limit. Every decision and all file work belong to
:class:`cschat.uploads.Uploads`; these handlers parse and answer.
"""

from __future__ import annotations

import os
import secrets
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any

import tornado.web

from cschat import media
from cschat.auth import TokenError
from cschat.handlers import JsonHandler
from cschat.media import UploadRefused
from cschat.multipart import MultipartError, MultipartParser, boundary_of
from cschat.protocol import FILE, IMAGE, VIDEO, VOICE
from cschat.uploads import MULTIPART_OVERHEAD, Allowance, Received

if TYPE_CHECKING:
    from cschat.app import Server

MAX_PARTS = 8
_FIELD_MAX_BYTES = 16
_FILE_TYPES = (IMAGE, VOICE, VIDEO, FILE)


class _Spool:
    """Receives the multipart parts: the ``file`` part goes to disk, ``file_type`` to memory.

    ``limit`` is the most bytes the file may have (lowered once it is typed)
    and ``allowance`` what the uploader's quotas leave; passing either refuses
    the upload at once (413, 429). A ``file_type`` sent before the file limits it.
    """

    def __init__(self, folder: str, policy: media.UploadPolicy, allowance: Allowance):
        self.folder = folder
        self.policy = policy
        self.limit = policy.limit(None)
        self.allowance = allowance
        self.path: str | None = None
        self.filename: str | None = None
        self.size = 0
        self.head = b""  # the first SNIFF_BYTES of the file, for typing it
        self.mime: str | None = None
        self.file_type_text = b""
        self._file_ended = False
        self._handle = None
        self._target: str | None = None

    def start_part(self, name: str, filename: str | None) -> None:
        self._target = name if name in ("file", "file_type") else None
        if name == "file":
            if self.path is not None:
                raise MultipartError("only one file per upload")
            requested = self.requested_type()
            if requested is not None:
                self.limit = self.policy.limit(requested)
            self.path = os.path.join(self.folder, secrets.token_hex(16) + ".part")
            self.filename = filename
            try:
                self._handle = media.create_file(self.path)
            except OSError as error:
                raise media.disk_refusal(error) from None

    def part_data(self, data: bytes) -> None:
        if self._target == "file":
            self.size += len(data)
            self._check_size()
            if len(self.head) < media.SNIFF_BYTES:
                self.head += data[:media.SNIFF_BYTES - len(self.head)]
            try:
                self._handle.write(data)
            except OSError as error:
                raise media.disk_refusal(error) from None
        elif self._target == "file_type":
            self.file_type_text += data
            if len(self.file_type_text) > _FIELD_MAX_BYTES:
                raise MultipartError("file_type is too long")

    def end_part(self) -> None:
        if self._target == "file":
            self._file_ended = True
            try:
                self._handle.close()
            except OSError as error:
                raise media.disk_refusal(error) from None
        self._target = None

    @property
    def ready_to_type(self) -> bool:
        """True once the file's first SNIFF_BYTES (or all of a smaller file) are in."""
        return self.mime is None and self.path is not None and (
            self._file_ended or len(self.head) >= media.SNIFF_BYTES)

    def typed(self, mime: str, limit: int) -> None:
        self.mime, self.limit = mime, min(self.limit, limit)
        self._check_size()

    def _check_size(self) -> None:
        if self.size > self.limit:
            raise UploadRefused(413, f"the file is larger than {self.limit} bytes")
        if self.size > self.allowance.room:
            raise self.allowance.refusal

    def requested_type(self) -> int | None:
        """The file_type field received so far; None without one. Raises 415 if bad."""
        text = self.file_type_text.strip()
        if not text:
            return None
        if not text.isdigit() or int(text) not in _FILE_TYPES:
            raise UploadRefused(415, "file_type must be 1, 2, 5 or 6")
        return int(text)

    def discard(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                pass  # a full disk failing the flush: the file goes anyway
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
        self.spool: _Spool | None = None
        self.parser: MultipartParser | None = None
        self.received = 0

    async def prepare(self) -> None:
        self.uploader = await self._authenticate()
        uploads = self.server.uploads
        length = self.request.headers.get("Content-Length", "")
        declared = int(length) if length.isdigit() else None
        try:
            boundary = boundary_of(self.request.headers.get("Content-Type", ""))
            allowance = await uploads.admit(self.uploader, self.request.remote_ip, declared)
        except MultipartError as error:
            self._refuse(UploadRefused(400, str(error)))
        except UploadRefused as refused:
            self._refuse(refused)
        # data_received counts the body against the file's limit; Tornado's own limit
        # would answer a bare 400, without JSON, to a chunk declared larger than it.
        self.request.connection.set_max_body_size(sys.maxsize)
        self.spool = _Spool(uploads.spool_folder, uploads.policy, allowance)
        self.parser = MultipartParser(boundary, self.spool, MAX_PARTS)

    async def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self.received += len(chunk)
        try:
            if self.received > self.spool.limit + MULTIPART_OVERHEAD:
                raise UploadRefused(413, f"uploads are limited to {self.spool.limit} bytes")
            self.parser.feed(chunk)
            if self.spool.ready_to_type:
                await self._type_file()
        except MultipartError as error:
            self._stop(UploadRefused(400, str(error)))
        except UploadRefused as refused:
            self._stop(refused)

    async def post(self) -> None:
        if self._finished:
            return
        spool = self.spool
        try:
            self.parser.close()
            if spool.path is None:
                raise UploadRefused(400, "the multipart field 'file' is missing")
            if spool.ready_to_type:
                await self._type_file()
            received = Received(spool.path, spool.size, spool.filename, spool.mime,
                                spool.requested_type())
            data = await self.server.uploads.keep(self.uploader, self.request.remote_ip,
                                                  received)
        except MultipartError as error:
            self._answer_refusal(UploadRefused(400, str(error)))
            return
        except UploadRefused as refused:
            self._answer_refusal(refused)
            return
        self.server.metrics.upload(data["size"])
        self.answer(200, data=data)

    async def _type_file(self) -> None:
        mime, limit = await self.server.uploads.sniff(self.spool.head,
                                                      self.spool.requested_type())
        self.spool.typed(mime, limit)

    async def _authenticate(self) -> tuple[str, int, int]:
        """``(role, uploader id, group id)`` of the Bearer token; answers 401 otherwise."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._refuse(UploadRefused(401, "an agent or guest token is required"))
        try:
            return await self.server.chat.identify_uploader(token.strip())
        except TokenError as error:
            self._refuse(UploadRefused(401, str(error)))

    def _answer_refusal(self, refused: UploadRefused) -> None:
        if refused.retry_after is not None:
            self.set_header("Retry-After", str(refused.retry_after))
        self.answer(refused.status, refused.code, refused.message)

    def _refuse(self, refused: UploadRefused) -> None:
        """Answer before the body is read, and end the request."""
        self._answer_refusal(refused)
        raise tornado.web.Finish()

    def _stop(self, refused: UploadRefused) -> None:
        """Answer now, mid-body; Tornado then drops the rest and closes the connection."""
        self._answer_refusal(refused)
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
    A file id is a bearer link, so shared caches must not keep a copy.
    """

    CACHE_MAX_AGE = 365 * 24 * 3600

    def initialize(self, server: Server) -> None:
        super().initialize(path=server.uploads.policy.folder)
        self.server = server
        self.record: dict[str, Any] = {}
        self.thumb = False

    async def get(self, file_id: str, thumb: str | None = None, include_body: bool = True
                  ) -> None:
        record = await self.server.uploads.file(file_id)
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
        self.set_header("Cache-Control", f"private, max-age={self.CACHE_MAX_AGE}, immutable")
        disposition = "attachment" if self.record["file_type"] == FILE and not self.thumb \
            else "inline"
        name = urllib.parse.quote(self.record["name"], safe="")
        self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{name}")
