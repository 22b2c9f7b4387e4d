"""Uploaded media: what a file is (by its bytes), whether it is allowed, and how it is kept.

Types come from libmagic on the file's first bytes, never from its name or
the Content-Type a client claims. Images are decoded with Pillow only once
their frames and pixels fit a budget, turned upright by their EXIF
orientation and stored again without their metadata (GPS included), with a
thumbnail. Files live under ``[uploads] dir`` as ``YYYY/MM/<random id>``: no
part of a stored path comes from the user. Folders are readable by cschat's
user only (0700), files too (0600). Nothing here touches the database; every
function that reads or writes files blocks, so callers run it in a thread.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import secrets
import time
import unicodedata

import magic
from PIL import Image, ImageOps

from cschat.protocol import BAD_PARAMETER, FILE, IMAGE, RATE_LIMITED, VIDEO, VOICE

THUMB_SIDE = 320
SNIFF_BYTES = 16384
NAME_MAX_LENGTH = 200
FOLDER_MODE = 0o700
FILE_MODE = 0o600
_KEPT_AS_UPLOADED = ("image/gif",)  # animation survives; GIF has no EXIF to strip
_SAVE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
FILE_ID = re.compile(r"[A-Za-z0-9_-]{22}")


class UploadRefused(Exception):
    """An upload that cannot be accepted.

    ``status`` is the HTTP status to answer, ``code`` the body's code (-10029
    for a quota, 429; -10004 otherwise) and ``retry_after`` the seconds worth
    waiting before trying again, when that is known.
    """

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = RATE_LIMITED if status == 429 else BAD_PARAMETER
        self.retry_after = retry_after


def disk_refusal(error: OSError) -> UploadRefused:
    """The 507 for an OSError writing an upload; its text names no path of the server."""
    if error.errno in _DISK_FULL:
        return UploadRefused(507, "the uploads disk is full; try again later")
    return UploadRefused(507, "the file could not be stored; try again later")


@dataclasses.dataclass(frozen=True)
class UploadPolicy:
    """The ``[uploads]`` settings about files: allowed types, size and image limits."""

    folder: str
    max_bytes: dict[int, int]
    types: dict[int, frozenset[str]]
    blocked: frozenset[str]
    max_image_pixels: int
    max_image_frames: int

    @classmethod
    def from_settings(cls, uploads: dict) -> UploadPolicy:
        return cls(
            folder=uploads["dir"],
            max_bytes={IMAGE: uploads["max_image_bytes"], VOICE: uploads["max_voice_bytes"],
                       VIDEO: uploads["max_video_bytes"], FILE: uploads["max_file_bytes"]},
            types={IMAGE: frozenset(uploads["image_types"]),
                   VIDEO: frozenset(uploads["video_types"]),
                   VOICE: frozenset(uploads["voice_types"])},
            blocked=frozenset(uploads["blocked_types"]),
            max_image_pixels=uploads["max_image_pixels"],
            max_image_frames=uploads["max_image_frames"])

    def limit(self, file_type: int | None) -> int:
        """Most bytes a file of ``file_type`` (or of any type, for None) may have."""
        return self.max_bytes[file_type] if file_type else max(self.max_bytes.values())

    def classify(self, mime: str, requested: int | None) -> int:
        """The file_type of a file whose bytes are ``mime``; raises UploadRefused (415).

        Without ``requested`` the sniffed type decides (image, then video,
        then voice, else file). A requested type must allow the sniffed one;
        any type that is not blocked may be sent as a plain file (6).
        """
        if mime in self.blocked:
            raise UploadRefused(415, f"{mime} files are not allowed")
        if requested is None:
            for file_type in (IMAGE, VIDEO, VOICE):
                if mime in self.types[file_type]:
                    return file_type
            return FILE
        if requested == FILE or mime in self.types[requested]:
            return requested
        raise UploadRefused(415, f"a {mime} file is not allowed as file_type {requested}")


@dataclasses.dataclass
class StoredMedia:
    """What :func:`keep` made of an upload: paths are relative to the uploads folder."""

    file_id: str
    path: str
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    thumb_path: str | None = None
    thumb_mime: str | None = None


@dataclasses.dataclass
class _Rendered:
    """An image decoded and encoded again, still in memory."""

    data: bytes | None  # None: the upload is kept as it is
    width: int
    height: int
    thumb: bytes
    thumb_mime: str


def sniff(head: bytes) -> str:
    """The MIME type libmagic reads from ``head``, a file's first :data:`SNIFF_BYTES`."""
    if not head:
        raise UploadRefused(400, "the file is empty")
    return magic.from_buffer(head, mime=True)


def display_name(raw: str | None) -> str:
    """The original file name, for display only: no folders, no control characters."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:NAME_MAX_LENGTH] or "file"


def make_folder(path: str) -> None:
    """Create ``path`` and its missing parents with mode 0700 (``os.makedirs`` would
    give the parents the default mode)."""
    if os.path.isdir(path):
        return
    make_folder(os.path.dirname(path))
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        pass


def create_file(path: str):
    """A new binary file at ``path``, open for writing, mode 0600; raises if it exists."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")


def keep(spooled: str, mime: str, file_type: int, policy: UploadPolicy) -> StoredMedia:
    """Move the spooled upload into place, processing images first.

    Raises UploadRefused: 400 for an image that is corrupt or over the frame
    or pixel budget (checked before anything is decoded), 507 when the file
    cannot be written (a full disk). Nothing is left in the uploads folder
    when it raises. An image's spooled file is left for the caller to remove.
    """
    rendered = _render_image(spooled, mime, policy) if file_type == IMAGE else None
    file_id = secrets.token_urlsafe(16)
    folder = time.strftime("%Y/%m", time.gmtime())
    media = StoredMedia(file_id, f"{folder}/{file_id}", 0, "")
    target = os.path.join(policy.folder, media.path)
    written: list[str] = []
    try:
        make_folder(os.path.dirname(target))
        written.append(media.path)
        if rendered is None or rendered.data is None:
            os.replace(spooled, target)
        else:
            _write(target, rendered.data)
        if rendered is not None:
            media.width, media.height = rendered.width, rendered.height
            media.thumb_path, media.thumb_mime = media.path + ".thumb", rendered.thumb_mime
            written.append(media.thumb_path)
            _write(os.path.join(policy.folder, media.thumb_path), rendered.thumb)
        media.size = os.path.getsize(target)
        media.sha256 = _sha256(target)
    except OSError as error:
        remove(policy, written)
        raise disk_refusal(error) from None
    return media


def _render_image(spooled: str, mime: str, policy: UploadPolicy) -> _Rendered:
    """Check the budget, then decode and encode again in memory, so that an error
    here is always the image's (400) and never the disk's. Works in place where
    it can: a copy of a 24-megapixel photo is another 72 MB."""
    try:
        with Image.open(spooled) as image:
            _check_budget(image, policy)
            image.verify()
        with Image.open(spooled) as image:
            image.load()
            icc_profile = image.info.get("icc_profile")
            if mime in _KEPT_AS_UPLOADED:
                upright, data = image, None
            elif getattr(image, "is_animated", False):
                # Every frame is kept; turning them upright is left to EXIF-less
                # animations, which is what animated WebP and PNG almost always are.
                upright = image.copy()  # the first frame, for the thumbnail
                data = _encode(image, _SAVE_FORMATS[mime], icc_profile, save_all=True)
            else:
                ImageOps.exif_transpose(image, in_place=True)
                upright = image
                data = _encode(upright, _SAVE_FORMATS[mime], icc_profile, save_all=False)
            width, height = upright.size
            thumb, thumb_mime = _thumbnail(upright)
    except UploadRefused:
        raise
    except Image.DecompressionBombError:
        raise UploadRefused(400, "the image has too many pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UploadRefused(400, "not a readable image") from None
    return _Rendered(data, width, height, thumb, thumb_mime)


def _thumbnail(image: Image.Image) -> tuple[bytes, str]:
    """A JPEG (PNG with transparency) of at most THUMB_SIDE pixels; shrinks ``image``."""
    mode = "RGBA" if _has_alpha(image) else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    fmt = "PNG" if mode == "RGBA" else "JPEG"
    image.save(buffer, fmt, quality=85)
    return buffer.getvalue(), f"image/{fmt.lower()}"


def _check_budget(image: Image.Image, policy: UploadPolicy) -> None:
    """Refuse (400) an image whose frames together have more pixels than the budget.

    Every frame is decoded onto the whole canvas, so a few kilobytes of
    animation can cost gigabytes; ``n_frames`` comes from the headers
    (PNG, WebP) or a scan of the blocks (GIF) and decodes nothing.
    """
    frames = getattr(image, "n_frames", 1)
    if frames > policy.max_image_frames:
        raise UploadRefused(400, f"the image has {frames} frames; at most "
                                 f"{policy.max_image_frames} are allowed")
    if frames * image.width * image.height > policy.max_image_pixels:
        raise UploadRefused(400, f"the image is too large: {frames} frame(s) of "
                                 f"{image.width}×{image.height} pixels pass the limit of "
                                 f"{policy.max_image_pixels} pixels in all")


def _encode(image: Image.Image, fmt: str, icc_profile: bytes | None, save_all: bool) -> bytes:
    """Encode without EXIF, XMP or text chunks: Pillow writes only what is passed here."""
    options: dict = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "JPEG":
        image = image.convert("RGB") if image.mode not in ("RGB", "L", "CMYK") else image
        options.update(quality=90)
    elif fmt == "WEBP":
        options.update(quality=90)
    if save_all:
        options.update(save_all=True)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _write(path: str, data: bytes) -> None:
    with create_file(path) as handle:
        handle.write(data)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove(policy: UploadPolicy, relative_paths: list[str]) -> None:
    """Delete stored files (and thumbnails) by their relative paths; missing ones are fine."""
    for relative in relative_paths:
        try:
            os.unlink(os.path.join(policy.folder, relative))
        except FileNotFoundError:
            pass
