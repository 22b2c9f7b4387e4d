"""What the store raises."""

from __future__ import annotations


class StoreError(Exception):
    """A write that the data does not allow (duplicate username, unknown id, ...)."""


class StorageUnavailable(StoreError):
    """The database could not commit (full disk, I/O error, locked too long): nothing of
    the write was kept, and the same write may succeed later."""


class FileRefused(StoreError):
    """A message names a file that its sender may not send: unknown, foreign, or of
    another file_type (``wrong_type``)."""

    def __init__(self, message: str, wrong_type: bool = False):
        super().__init__(message)
        self.wrong_type = wrong_type


class NotFound(StoreError):
    """A change names a group, agent or webhook that does not exist."""


class Conflict(StoreError):
    """A change the current data does not allow: a taken username, no admin left."""
