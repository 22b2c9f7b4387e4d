"""Wire vocabulary of PROTOCOL.md: api_keys, push and error codes, frame shapes.

Nothing here does I/O. :class:`ApiError` is what every layer raises to
answer a request with a negative code; :func:`response` and :func:`push`
build the frames of R4 and R5.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

try:  # the [fast] extra: the same JSON, parsed and written several times faster
    import orjson
except ImportError:
    orjson = None

# call_type (R3)
HEARTBEAT, GUEST, AGENT = 0, 1, 3

# Agent API (§3)
AGENT_LOGIN = 31000
CHAT_LIST = 32000
CHAT_CONTENT = 32100
AGENT_MARK_READ = 32200
AGENT_SEND = 32300
TRANSFER = 32400
SUSPEND = 32500
AGENT_TYPING = 32600
END_CONVERSATION = 32700
ONLINE_AGENTS = 33000
# The desk (§3, "The desk")
CONVERSATIONS = 32800
SEARCH = 32810
ADD_NOTE = 32820
NOTES = 32830
TAGS = 32840
BLOCK = 32850
CANNED = 32860

# Guest API (§4)
GUEST_LOGIN = 21000
GUEST_HISTORY = 22100
GUEST_MARK_READ = 22200
GUEST_SEND = 22300
GUEST_TYPING = 22600
GUEST_PAGE = 22800
RATE = 22950
LEAVE_MESSAGE = 22900
TRANSCRIPT = 22960

# Pushes (§6)
PUSH_GUEST_MESSAGE = 32399
PUSH_OWN_MESSAGE = 32398
PUSH_GUEST_READ = 32299
PUSH_ASSIGNED = 32401
PUSH_TRANSFERRED = 32402
PUSH_GUEST_ONLINE = 32098
PUSH_GUEST_TYPING = 32699
PUSH_AGENT_STATUS = 33099
PUSH_AGENT_MESSAGE = 22399
PUSH_AGENT_READ = 22299
PUSH_GUEST_ASSIGNED = 22401
PUSH_QUEUED = 22098
PUSH_AGENT_TYPING = 22699
PUSH_ENDED = 22701

# Errors (§8)
LOGIN_REQUIRED = -9999
NOT_JSON_OBJECT = -10001
UNKNOWN_API = -10002
CALL_TYPE_MISMATCH = -10003
BAD_PARAMETER = -10004
RATE_LIMITED = -10029
STORAGE_UNAVAILABLE = -10005

MAX_SEQ_LENGTH = 64
MAX_CLIENT_MSG_ID_LENGTH = 64

FILE_TYPES = range(0, 7)
TEXT, IMAGE, VOICE, PRODUCT, ORDER, VIDEO, FILE = 0, 1, 2, 3, 4, 5, 6
MEDIA_TYPES = (IMAGE, VOICE, VIDEO, FILE)
CARD_TYPES = (PRODUCT, ORDER)


class ApiError(Exception):
    """Answer the current request with ``code`` (negative) and ``message``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def encode(frame: dict) -> str:
    """The JSON text of ``frame``; raises ValueError for NaN, Infinity or a lone surrogate
    (with orjson, NaN and Infinity are written as null: no value cschat decodes or reads
    back from its database can hold them).
    """
    if orjson is not None:
        try:
            return orjson.dumps(frame).decode()
        except TypeError:  # a lone surrogate, an integer beyond 64 bits: as without orjson
            pass
    text = _ENCODER.encode(frame)
    if _SURROGATE.search(text):
        raise ValueError("a string holds a lone surrogate")
    return text


# One encoder for every frame: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class BadNumber(ValueError):
    """A JSON number that does not fit a double (``1e400``): valid syntax, unusable value."""


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadNumber(f"the number {text[:40]} is out of range")
    return value


_MISSING = object()


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# A lone (unpaired) surrogate can only come from a \uD8xx escape; it is not
# Unicode text, so it could be neither stored nor sent back.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode(text: str | bytes, numbers_out_of_range: Any = _MISSING) -> Any:
    """Parse strict JSON into Python values that can always be encoded back.

    NaN and Infinity (which browsers cannot parse back), numbers beyond a
    double (:class:`BadNumber`, unless ``numbers_out_of_range`` gives a value
    to put in their place), lone surrogates and nesting too deep to parse
    all raise ValueError. (With orjson an integer beyond 64 bits comes back
    as a float; without, as an integer: either is refused where an integer
    is asked for.)
    """
    if orjson is not None and numbers_out_of_range is _MISSING:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # what is wrong is said below, as without orjson
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    parse_float = _finite if numbers_out_of_range is _MISSING else (
        lambda number: numbers_out_of_range if math.isinf(float(number)) else float(number))
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=parse_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        for string in _strings(value):
            if _SURROGATE.search(string):
                raise ValueError("a string holds a lone surrogate")
    return value


def _strings(value: Any):
    """Every string in a decoded JSON value, keys included (iteratively: no recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


NO_SEQ = object()  # a request without "seq": its response has none either


def response(api_key: int, data: dict | None = None, seq: Any = NO_SEQ,
             code: int = 200, message: str = "") -> dict:
    """A reply to one request (R4): success when ``code`` is 200, else an error."""
    frame = {"api_key": api_key, "code": code, "status": "Success" if code == 200 else "Error",
             "message": message, "data": data if data is not None and code == 200 else {}}
    if seq is not NO_SEQ:
        frame["seq"] = seq
    return frame


def push(code: int, data: dict) -> dict:
    """A server-initiated event (R5); ``code`` is the event code of §6.

    Its ``api_key`` is the code rounded down to the hundred: the family of
    requests it belongs to (22399 → 22300).
    """
    return {"api_key": code // 100 * 100, "code": code, "status": "Success", "message": "",
            "data": data}


def session_ended(api_key: int, reason: str) -> dict:
    """The -9999 push that precedes closing a session (R7)."""
    return {"api_key": api_key, "code": LOGIN_REQUIRED, "status": "Error", "message": reason,
            "data": {}}


# -- parameters ------------------------------------------------------------------------

# SQLite integers are 64-bit; a larger id or page number can match nothing.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DIGITS = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only; longer cannot fit 64 bits


def integer(params: dict, name: str, code: int = BAD_PARAMETER, *, default: Any = _MISSING,
            low: int | None = None, high: int | None = None) -> int:
    """Read an integer parameter (a JSON number or a string of digits).

    Raises ``ApiError(code)`` when it is absent (and has no default), of
    another type, or outside ``low..high``.
    """
    value = params.get(name)
    if value is None:
        if default is _MISSING:
            raise ApiError(code, f"{name} missing")
        return default
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value)
    if type(value) is not int:
        raise ApiError(code, f"{name} must be an integer")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ApiError(code, f"{name} out of range")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ApiError(code, f"{name} out of range")
    return value


def optional_integer(params: dict, name: str, low: int = 0) -> int | None:
    return integer(params, name, default=None, low=low)


def client_msg_id(params: dict) -> str | None:
    value = params.get("client_msg_id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_MSG_ID_LENGTH:
        raise ApiError(BAD_PARAMETER,
                       f"client_msg_id must be a string of 1 to {MAX_CLIENT_MSG_ID_LENGTH} chars")
    return value


def valid_seq(seq: Any) -> bool:
    if seq is None or seq is NO_SEQ:
        return True
    if isinstance(seq, bool):
        return False
    return isinstance(seq, int) or (isinstance(seq, str) and len(seq) <= MAX_SEQ_LENGTH)
