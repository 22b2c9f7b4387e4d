"""The admin API's errors (docs/protocol.md §10)."""

from __future__ import annotations

from cschat.store import Conflict, NotFound, StorageUnavailable, StoreError

BAD_INPUT, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT = -40000, -40001, -40003, -40004, -40009
STORAGE_UNAVAILABLE = -10005


class AdminError(Exception):
    """A request answered with HTTP ``status``, error ``code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_input(message: str) -> AdminError:
    return AdminError(400, BAD_INPUT, message)


def from_store_error(error: StoreError) -> AdminError:
    """The answer for what the store refused."""
    if isinstance(error, NotFound):
        return AdminError(404, NOT_FOUND, str(error))
    if isinstance(error, Conflict):
        return AdminError(409, CONFLICT, str(error))
    if isinstance(error, StorageUnavailable):
        return AdminError(503, STORAGE_UNAVAILABLE, "the database cannot store this now; "
                                                    "try again shortly")
    return AdminError(400, BAD_INPUT, str(error))
