"""The upload service: what an upload must pass, the work on its bytes, and its records.

Handlers parse HTTP and answer; this service decides. Before a body is read
it checks the disk's free space (507) and the quotas (429): bytes an hour
per guest and per agent and the files a guest uploaded but did not send yet,
kept in the database so that a restart resets nothing, and bytes an hour per
client address for guests, in memory (anyone may become a new guest, but
not a new address as easily). File work (typing, image decoding, hashing)
runs in a pool of ``[uploads] image_workers`` threads of its own: uploads
queue for each other, never for password checks in the loop's default pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from cschat import media
from cschat.media import UploadPolicy, UploadRefused
from cschat.store import Store, UploadUsage, file_object, now_ms

QUOTA_WINDOW = 3600  # seconds: the byte quotas are per hour
# Room for the multipart headers and the other fields around the file.
MULTIPART_OVERHEAD = 64 * 1024
SPOOL_FOLDER = "tmp"

Uploader = tuple[str, int, int]  # (role "guest" or "agent", its id, its group_id)


@dataclasses.dataclass(frozen=True)
class Allowance:
    """What the quotas leave an upload: ``room`` bytes, and ``refusal`` (429) past them."""

    room: int
    refusal: UploadRefused


@dataclasses.dataclass(frozen=True)
class Received:
    """An upload's file as received: spooled at ``path``, typed by its first bytes."""

    path: str
    size: int
    filename: str | None
    mime: str
    requested: int | None  # the file_type field, if any


class Uploads:
    """Created per server from the ``[uploads]`` settings; :meth:`close` ends its threads."""

    def __init__(self, settings: dict, store: Store):
        self.policy = UploadPolicy.from_settings(settings)
        self.spool_folder = os.path.join(self.policy.folder, SPOOL_FOLDER)
        self._settings = settings
        self._store = store
        self._executor = ThreadPoolExecutor(settings["image_workers"],
                                            thread_name_prefix="cschat-upload")
        self._addresses = _RecentBytes(QUOTA_WINDOW)
        # Pillow's own guard agrees with the budget, for any path that would skip it.
        Image.MAX_IMAGE_PIXELS = self.policy.max_image_pixels
        shutil.rmtree(self.spool_folder, ignore_errors=True)  # uploads cut short by a stop
        media.make_folder(self.spool_folder)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def sweep_seconds(self) -> int:
        """How often to look for unused uploads: a quarter of the shorter TTL, 1 s to 1 h."""
        ttl = min(self._settings["orphan_ttl"], self._settings["guest_orphan_ttl"])
        return max(1, min(3600, ttl // 4))

    async def admit(self, uploader: Uploader, address: str, declared: int | None
                    ) -> Allowance:
        """Check an upload before its body is read; return what the quotas leave its file.

        ``declared`` is the body's Content-Length (None when chunked). Raises
        UploadRefused: 413 a declared body over every type's limit, 507 less
        free disk than ``min_free_bytes`` (with the body), 429 a quota used up.
        """
        limit = self.policy.limit(None)
        if declared is not None and declared > limit + MULTIPART_OVERHEAD:
            raise UploadRefused(413, f"uploads are limited to {limit} bytes")
        free = shutil.disk_usage(self.policy.folder).free - (declared or 0)
        if free < self._settings["min_free_bytes"]:
            raise UploadRefused(507, "the uploads disk is nearly full; try again later")
        role, uploader_id, _ = uploader
        usage = await self._store.upload_usage(role, uploader_id, self._since())
        least = max(1, (declared or 0) - MULTIPART_OVERHEAD)
        self._check_quota(role, usage, least)
        room = self._bytes_per_hour(role) - usage.bytes
        allowance = Allowance(room, self._quota_refusal(role, usage, room + 1))
        if role == "guest":
            self._check_address(address, least)
            room = self._address_room(address)
            if room < allowance.room:
                allowance = Allowance(room, self._address_refusal(address))
        return allowance

    async def sniff(self, head: bytes, requested: int | None) -> tuple[str, int]:
        """The MIME type of a file whose first bytes are ``head``, and the most bytes it
        may have as ``requested`` (None: as its type). Raises UploadRefused: 400 empty,
        415 a type not allowed or not ``requested``."""
        mime = await self._run(media.sniff, head)
        return mime, self.policy.limit(self.policy.classify(mime, requested))

    async def keep(self, uploader: Uploader, address: str, received: Received) -> dict:
        """Check, process, store and record an upload; its file object (R25) and file_type.

        Raises UploadRefused (413, 415, 400, 429, 507); then nothing is stored
        and no files row exists. The spooled file is left for the caller.
        """
        role, uploader_id, group_id = uploader
        file_type = self.policy.classify(received.mime, received.requested)
        if received.size > self.policy.limit(file_type):
            raise UploadRefused(413, f"file_type {file_type} is limited to "
                                     f"{self.policy.limit(file_type)} bytes")
        reservation = self._reserve_address(role, address, received.size)
        try:
            stored = await self._run(media.keep, received.path, received.mime, file_type,
                                     self.policy)
            record = {"id": stored.file_id, "file_type": file_type, "group_id": group_id,
                      "uploader": role, "uploader_id": uploader_id, "mime": received.mime,
                      "size": stored.size, "name": media.display_name(received.filename),
                      "sha256": stored.sha256, "width": stored.width, "height": stored.height,
                      "path": stored.path, "thumb_path": stored.thumb_path,
                      "thumb_mime": stored.thumb_mime}
            try:
                await self._store.add_file(
                    record, self._since(),
                    lambda usage: self._check_quota(role, usage, stored.size))
            except BaseException:
                media.remove(self.policy, [p for p in (stored.path, stored.thumb_path) if p])
                raise
        except BaseException:
            self._addresses.cancel(reservation)
            raise
        return {**file_object(record), "file_type": file_type}

    async def file(self, file_id: str) -> dict | None:
        """The files row of ``file_id``; None for an unknown or malformed id."""
        return await self._store.file(file_id) if media.FILE_ID.fullmatch(file_id) else None

    async def remove_unused(self) -> None:
        """Delete the uploads no message used: a guest's after ``guest_orphan_ttl``
        seconds, an agent's after ``orphan_ttl``."""
        now = now_ms()
        paths = await self._store.remove_unused_files(
            now - self._settings["orphan_ttl"] * 1000,
            now - self._settings["guest_orphan_ttl"] * 1000)
        await self._run(media.remove, self.policy, paths)

    # -- quotas ------------------------------------------------------------------------------

    def _since(self) -> int:
        return now_ms() - QUOTA_WINDOW * 1000

    def _bytes_per_hour(self, role: str) -> int:
        return self._settings[f"{role}_bytes_per_hour"]

    def _check_quota(self, role: str, usage: UploadUsage, adding: int) -> None:
        refusal = self._quota_refusal(role, usage, adding)
        if refusal is not None:
            raise refusal

    def _quota_refusal(self, role: str, usage: UploadUsage, adding: int
                       ) -> UploadRefused | None:
        """The 429 for an uploader with ``usage`` storing ``adding`` more bytes, if any."""
        most_unsent = self._settings["max_guest_unsent_files"]
        if role == "guest" and usage.unsent >= most_unsent:
            return UploadRefused(429, f"{most_unsent} uploads are waiting to be sent; send "
                                      "or wait for them to expire before uploading more")
        limit = self._bytes_per_hour(role)
        if usage.bytes + adding <= limit:
            return None
        wait = (usage.oldest_ms or now_ms()) / 1000 + QUOTA_WINDOW - time.time()
        return UploadRefused(429, f"a {role} may upload {limit} bytes an hour",
                             retry_after=max(1, math.ceil(wait)))

    def _address_room(self, address: str) -> int:
        return self._settings["address_bytes_per_hour"] - self._addresses.total(address)

    def _address_refusal(self, address: str) -> UploadRefused:
        return UploadRefused(429, f"guests at one address may upload "
                                  f"{self._settings['address_bytes_per_hour']} bytes an hour",
                             retry_after=self._addresses.retry_after(address))

    def _check_address(self, address: str, adding: int) -> None:
        if adding > self._address_room(address):
            raise self._address_refusal(address)

    def _reserve_address(self, role: str, address: str, size: int) -> _Event | None:
        """Count ``size`` bytes for a guest's address now, before any await, so that
        concurrent uploads cannot pass the quota together; cancel it if the upload fails."""
        if role != "guest":
            return None
        self._check_address(address, size)
        return self._addresses.add(address, size)

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


class _RecentBytes:
    """Bytes counted per client address over the last ``window`` seconds, in memory.

    An address is forgotten once its last bytes leave the window, so memory
    is bounded by the uploads of the last ``window`` seconds.
    """

    def __init__(self, window: float):
        self.window = window
        self._events: deque[_Event] = deque()  # all addresses, oldest first
        self._addresses: dict[str, _AddressBytes] = {}

    def total(self, address: str) -> int:
        self._expire()
        recent = self._addresses.get(address)
        return recent.total if recent else 0

    def retry_after(self, address: str) -> int:
        """Seconds until the oldest bytes counted for ``address`` stop counting."""
        recent = self._addresses.get(address)
        oldest = recent.events[0].at if recent else time.monotonic()
        return max(1, math.ceil(oldest + self.window - time.monotonic()))

    def add(self, address: str, size: int) -> _Event:
        event = _Event(time.monotonic(), address, size)
        self._events.append(event)
        recent = self._addresses.setdefault(address, _AddressBytes())
        recent.events.append(event)
        recent.total += size
        return event

    def cancel(self, event: _Event | None) -> None:
        """Stop counting what :meth:`add` returned (None, or already expired: nothing)."""
        recent = self._addresses.get(event.address) if event else None
        if recent is None or event not in recent.events:
            return
        self._events.remove(event)
        recent.events.remove(event)
        self._subtract(recent, event)

    def _expire(self) -> None:
        deadline = time.monotonic() - self.window
        while self._events and self._events[0].at <= deadline:
            event = self._events.popleft()
            recent = self._addresses[event.address]
            recent.events.popleft()  # its oldest too: both are in time order
            self._subtract(recent, event)

    def _subtract(self, recent: _AddressBytes, event: _Event) -> None:
        recent.total -= event.size
        if not recent.events:
            del self._addresses[event.address]


@dataclasses.dataclass(eq=False)
class _Event:
    """Bytes counted for an address; compared by identity, as each upload is its own."""

    at: float
    address: str
    size: int


@dataclasses.dataclass
class _AddressBytes:
    total: int = 0
    events: deque[_Event] = dataclasses.field(default_factory=deque)
