"""The storage seam: every SQL statement of cschat lives in this package.

:class:`Store` (:mod:`cschat.store.core`) owns the connections and the one
write path; its queries are grouped by what they serve: the directory of
groups and agents with the audit log (:mod:`~cschat.store.directory`),
conversations and their statistics (:mod:`~cschat.store.conversations`),
webhooks and the outbox (:mod:`~cschat.store.outbox`), reports
(:mod:`~cschat.store.reports`); the schema is :mod:`~cschat.store.schema`.
"""

from cschat.store.core import Store, UploadUsage
from cschat.store.directory import COMMAND_LINE, DEMO, Actor
from cschat.store.errors import Conflict, FileRefused, NotFound, StorageUnavailable, StoreError
from cschat.store.messages import Attachment, file_object
from cschat.store.schema import SCHEMA_VERSION
from cschat.store.util import now_ms

__all__ = ["COMMAND_LINE", "DEMO", "SCHEMA_VERSION", "Actor", "Attachment", "Conflict",
           "FileRefused", "NotFound", "StorageUnavailable", "Store", "StoreError",
           "UploadUsage", "file_object", "now_ms"]
