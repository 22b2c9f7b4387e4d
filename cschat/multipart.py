"""A streaming ``multipart/form-data`` parser, so an upload never sits in memory whole.

Feed it the body in chunks as they arrive; it calls back with each part's
headers, its data in pieces, and its end. It keeps at most one delimiter's
length of body plus one chunk in memory, and refuses more than ``max_parts``
parts or headers larger than ``MAX_HEADER_BYTES``.
"""

from __future__ import annotations

import re
from typing import Protocol

MAX_HEADER_BYTES = 8192
_NAME = re.compile(r'(?:^|;)\s*name="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(r'(?:^|;)\s*filename="([^"]*)"', re.IGNORECASE)


class MultipartError(Exception):
    """The body is not well-formed multipart, or breaks a limit."""


class PartSink(Protocol):
    def start_part(self, name: str, filename: str | None) -> None: ...
    def part_data(self, data: bytes) -> None: ...
    def end_part(self) -> None: ...


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; raises MultipartError."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise MultipartError("the body must be multipart/form-data")
    match = re.search(r'boundary=("?)([^";]{1,200})\1', params)
    if not match:
        raise MultipartError("multipart boundary missing")
    return match.group(2).encode("latin-1")


class MultipartParser:
    """Parse one body; call :meth:`feed` per chunk, then :meth:`close`."""

    def __init__(self, boundary: bytes, sink: PartSink, max_parts: int):
        self._delimiter = b"\r\n--" + boundary
        self._sink = sink
        self._max_parts = max_parts
        self._parts = 0
        # The body starts with "--boundary"; pretend a CRLF came first so
        # every delimiter looks the same.
        self._buffer = b"\r\n"
        self._state = "preamble"

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while True:
            if self._state == "preamble":
                if not self._skip_to_delimiter():
                    return
            elif self._state == "after_delimiter":
                if len(self._buffer) < 2:
                    return
                ending, self._buffer = self._buffer[:2], self._buffer[2:]
                if ending == b"--":
                    self._state = "done"
                elif ending == b"\r\n":
                    self._state = "headers"
                else:
                    raise MultipartError("malformed multipart delimiter")
            elif self._state == "headers":
                if not self._read_headers():
                    return
            elif self._state == "body":
                if not self._read_body():
                    return
            else:  # done: the epilogue is ignored
                self._buffer = b""
                return

    def close(self) -> None:
        """Raise MultipartError unless the closing delimiter was seen."""
        if self._state != "done":
            raise MultipartError("the multipart body is incomplete")

    def _skip_to_delimiter(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            self._buffer = self._buffer[-len(self._delimiter):]
            return False
        self._buffer = self._buffer[index + len(self._delimiter):]
        self._state = "after_delimiter"
        return True

    def _read_headers(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise MultipartError("multipart headers too large")
            return False
        if end > MAX_HEADER_BYTES:
            raise MultipartError("multipart headers too large")
        raw, self._buffer = self._buffer[:end], self._buffer[end + 4:]
        self._parts += 1
        if self._parts > self._max_parts:
            raise MultipartError(f"more than {self._max_parts} multipart parts")
        disposition = ""
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value
        name, filename = _NAME.search(disposition), _FILENAME.search(disposition)
        if name is None:
            raise MultipartError("a multipart part has no name")
        self._sink.start_part(name.group(1), filename.group(1) if filename else None)
        self._state = "body"
        return True

    def _read_body(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            # Keep what could be the start of a delimiter split across chunks.
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                self._sink.part_data(self._buffer[:-keep])
                self._buffer = self._buffer[-keep:]
            return False
        if index:
            self._sink.part_data(self._buffer[:index])
        self._buffer = self._buffer[index + len(self._delimiter):]
        self._sink.end_part()
        self._state = "after_delimiter"
        return True
