"""Uploaded media: what a file is (by its bytes), whether it is allowed, and how it is kept.

Types come from libmagic on the file's first bytes, never from its name or
the Content-Type a client claims. Images are decoded with Pillow under a
pixel limit, turned upright by their EXIF orientation and stored again
without their metadata (GPS included), with a thumbnail. Files live under
``[uploads] dir`` as ``YYYY/MM/<random id>``: no part of a stored path comes
from the user. Nothing here touches the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import shutil
import time
import unicodedata

import magic
from PIL import Image, ImageOps

from cschat.protocol import FILE, IMAGE, VIDEO, VOICE

THUMB_SIDE = 320
SNIFF_BYTES = 16384
NAME_MAX_LENGTH = 200
_KEPT_AS_UPLOADED = ("image/gif",)  # animation survives; GIF has no EXIF to strip
_SAVE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
FILE_ID = re.compile(r"[A-Za-z0-9_-]{22}")


class UploadRefused(Exception):
    """An upload that cannot be accepted; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class UploadPolicy:
    """The ``[uploads]`` settings: allowed types and size limits per file_type."""

    folder: str
    max_bytes: dict[int, int]
    types: dict[int, frozenset[str]]
    blocked: frozenset[str]
    max_image_pixels: int

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
            max_image_pixels=uploads["max_image_pixels"])

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


def sniff(path: str) -> str:
    """The MIME type libmagic reads from the first bytes of the file at ``path``."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise UploadRefused(400, "the file is empty")
    return magic.from_buffer(head, mime=True)


def display_name(raw: str | None) -> str:
    """The original file name, for display only: no folders, no control characters."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:NAME_MAX_LENGTH] or "file"


def keep(spooled: str, mime: str, file_type: int, policy: UploadPolicy) -> StoredMedia:
    """Move the spooled upload into place, processing images; blocking, run it in a thread.

    Raises UploadRefused (400) for a corrupt image or one over the pixel limit.
    An image's spooled file is left for the caller to remove.
    """
    file_id = secrets.token_urlsafe(16)
    folder = time.strftime("%Y/%m", time.gmtime())
    os.makedirs(os.path.join(policy.folder, folder), exist_ok=True)
    path = f"{folder}/{file_id}"
    target = os.path.join(policy.folder, path)
    media = StoredMedia(file_id, path, 0, "")
    if file_type == IMAGE:
        _keep_image(spooled, target, mime, policy.max_image_pixels, media)
    else:
        os.replace(spooled, target)
    media.size = os.path.getsize(target)
    media.sha256 = _sha256(target)
    return media


def _keep_image(spooled: str, target: str, mime: str, max_pixels: int,
                media: StoredMedia) -> None:
    try:
        with Image.open(spooled) as image:
            if image.width * image.height > max_pixels:
                raise UploadRefused(400, "the image has too many pixels")
            image.verify()
        with Image.open(spooled) as image:
            image.load()
            icc_profile = image.info.get("icc_profile")
            if mime in _KEPT_AS_UPLOADED:
                shutil.copyfile(spooled, target)
                upright = image.copy()
            elif getattr(image, "is_animated", False):
                # Every frame is kept; turning them upright is left to EXIF-less
                # animations, which is what animated WebP and PNG almost always are.
                _save(image, target, _SAVE_FORMATS[mime], icc_profile, save_all=True)
                upright = image.copy()
            else:
                upright = ImageOps.exif_transpose(image)
                _save(upright, target, _SAVE_FORMATS[mime], icc_profile, save_all=False)
    except UploadRefused:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UploadRefused(400, f"not a readable image: {error}") from None
    media.width, media.height = upright.size
    thumb = upright.convert("RGBA" if _has_alpha(upright) else "RGB")
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    media.thumb_path = media.path + ".thumb"
    media.thumb_mime = "image/png" if thumb.mode == "RGBA" else "image/jpeg"
    thumb.save(os.path.join(os.path.dirname(target), os.path.basename(media.thumb_path)),
               "PNG" if thumb.mode == "RGBA" else "JPEG", quality=85)


def _save(image: Image.Image, target: str, fmt: str, icc_profile: bytes | None,
          save_all: bool) -> None:
    """Save without EXIF, XMP or text chunks: Pillow writes only what is passed here."""
    options: dict = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "JPEG":
        image = image.convert("RGB") if image.mode not in ("RGB", "L", "CMYK") else image
        options.update(quality=90)
    elif fmt == "WEBP":
        options.update(quality=90)
    if save_all:
        options.update(save_all=True)
    image.save(target, fmt, **options)


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
