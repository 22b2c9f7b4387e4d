"""Logging that an attacker or a failing disk cannot turn into a flood, and the access log.

:class:`ThrottledLog` keeps a repeated failure to one line a second (a full
disk or an exhausted descriptor table would otherwise write megabytes a
second). :func:`log_request` is the access log: it never writes a file id,
which is a bearer link to the file.
"""

from __future__ import annotations

import logging
import re
import time

import tornado.web

access_log = logging.getLogger("tornado.access")
_FILE_ID_IN_PATH = re.compile(r"^/files/[^/?]+")


class ThrottledLog:
    """Log one line per ``interval`` seconds at most, with how many were left out."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0):
        self.logger = logger
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def error(self, message: str, *args, exc_info=None) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" (and {self._suppressed} more like it)"
        self._suppressed = 0
        self._next = now + self.interval
        self.logger.error(message, *args, exc_info=exc_info)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line, with file ids left out of ``/files/…`` paths."""
    status = handler.get_status()
    level = (access_log.info if status < 400 else
             access_log.warning if status < 500 else access_log.error)
    request = handler.request
    path = _FILE_ID_IN_PATH.sub("/files/…", request.path)
    level("%d %s %s (%s) %.2fms", status, request.method, path, request.remote_ip,
          1000.0 * request.request_time())
