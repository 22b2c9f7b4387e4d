"""What a message may hold (PROTOCOL 32300 / 22300, R25, R26) and how it looks on the wire."""

from __future__ import annotations

import json
from typing import Any

from cschat.auth import is_web_url
from cschat.media import FILE_ID
from cschat.protocol import CARD_TYPES, FILE_TYPES, ORDER, PRODUCT, TEXT, ApiError, decode, integer

MAX_CARD_BYTES = 4096
MAX_CARD_KEY_LENGTH = 32
# (required, optional) fields of each card (R26): strings or numbers. A shop may add
# flat fields of its own, which may also be true or false.
_CARD_FIELDS = {PRODUCT: (("id", "title", "price"), ("image", "url")),
                ORDER: (("order_no", "amount"), ("title", "status", "url"))}
_CARD_LINKS = ("url", "image")


def parse_message(params: dict, error_base: int, max_length: int) -> tuple[int, str]:
    """Check ``msg`` and ``file_type`` of a send; return ``(file_type, body to store)``.

    For a file (R25) the body returned is the file_id; the store swaps it for
    the file object once it has checked the sender may send that file.

    ``error_base`` is -32300 for agents and -22300 for guests: the codes
    raised are ``error_base - 2`` (msg missing or empty), ``- 3`` (bad
    file_type or msg), ``- 5`` (too long) and ``- 6`` (unknown file).
    """
    file_type = integer(params, "file_type", error_base - 3, default=TEXT)
    if file_type not in FILE_TYPES:
        raise ApiError(error_base - 3, "file_type must be 0 to 6")
    msg = params.get("msg")
    if file_type == TEXT and isinstance(msg, (int, float)) and not isinstance(msg, bool):
        msg = json.dumps(msg)  # the sheet's clients may send a number as the text
    if msg is None or (isinstance(msg, (str, dict)) and not _has_content(msg)):
        raise ApiError(error_base - 2, "msg missing or empty")
    if file_type == TEXT:
        if not isinstance(msg, str):
            raise ApiError(error_base - 3, "a text msg must be a string")
        if len(msg) > max_length:
            raise ApiError(error_base - 5, f"text longer than {max_length} characters")
        return file_type, msg
    if file_type in CARD_TYPES:
        return file_type, _card(msg, file_type, error_base)
    if not isinstance(msg, str):
        raise ApiError(error_base - 3, "a file msg is the file_id from /api/upload")
    if not FILE_ID.fullmatch(msg):
        raise ApiError(error_base - 6, "unknown file id")
    return file_type, msg


def _has_content(msg: str | dict) -> bool:
    return bool(msg.strip()) if isinstance(msg, str) else bool(msg)


def _card(msg: Any, file_type: int, error_base: int) -> str:
    if isinstance(msg, str):  # a card sent as JSON-encoded text
        try:
            msg = decode(msg)
        except ValueError:
            raise ApiError(error_base - 3, "a card must be a JSON object") from None
    if not isinstance(msg, dict):
        raise ApiError(error_base - 3, "a card must be a JSON object")
    required, optional = _CARD_FIELDS[file_type]
    missing = [key for key in required if key not in msg]
    if missing:
        raise ApiError(error_base - 3, f"card needs {', '.join(missing)}")
    for key, value in msg.items():
        if not key or len(key) > MAX_CARD_KEY_LENGTH:
            raise ApiError(error_base - 3,
                           f"card field names have 1 to {MAX_CARD_KEY_LENGTH} characters")
        if not isinstance(value, (str, int, float)) or (
                isinstance(value, bool) and (key in required or key in optional)):
            raise ApiError(error_base - 3, f"card field {key} must be a string or a number"
                           + ("" if key in required or key in optional else " or true/false"))
        # A card's links are shown as links and images: only web addresses.
        if key in _CARD_LINKS and not (isinstance(value, str) and value and is_web_url(value)):
            raise ApiError(error_base - 3, f"card {key} must be an http(s) URL")
    body = json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if len(body.encode()) > MAX_CARD_BYTES:
        raise ApiError(error_base - 5, f"card over {MAX_CARD_BYTES} bytes")
    return body


def message_info(message: dict, group_id: int) -> dict:
    """message_info of PROTOCOL §3 from a stored message."""
    body = message["body"]
    info = {"id": message["id"], "gid": message["gid"], "group_id": group_id,
            "sender": message["sender"], "admin_id": message["admin_id"],
            "file_type": message["file_type"],
            # Strict: a card another program stored with Infinity fails here, not as null.
            "msg": body if message["file_type"] == TEXT else decode(body),
            "client_msg_id": message["client_msg_id"], "created_at": message["created_at"],
            "read": message["read"]}
    if message["sender"] == "system":
        info["event"] = json.loads(message["event"]) if message.get("event") else None
    return info
