"""The one declared table of settings, and the INI loader that checks it.

Every setting cschat knows is listed in :data:`DEFAULT_SETTINGS` with its
default, how its text is parsed and what it means. :func:`load_settings`
reads an INI file against that table and raises :class:`ConfigError` naming
the first unknown section or key or bad value, so a typo fails at start-up
instead of being ignored.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
from collections.abc import Callable
from typing import Any


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the culprit."""


@dataclasses.dataclass(frozen=True)
class Setting:
    default: str
    parse: Callable[[str], Any]
    help: str


def _integer(low: int, high: int = 2**31) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in configparser.ConfigParser.BOOLEAN_STATES:
        return configparser.ConfigParser.BOOLEAN_STATES[lowered]
    raise ValueError(f"expected true or false, got {text!r}")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return lowered

    return parse


def _text(text: str) -> str:
    return text.strip()


def _origins(text: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ValueError(f"an origin looks like https://shop.example, got {origin!r}")
    return origins


def _mime_list(text: str) -> tuple[str, ...]:
    types = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    for mime in types:
        if mime.count("/") != 1 or " " in mime:
            raise ValueError(f"a MIME type looks like image/png, got {mime!r}")
    return types


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in (part.strip() for part in text.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"an address or network looks like 127.0.0.1 or 10.0.0.0/8, "
                                 f"got {part!r}") from None
    return tuple(networks)


def _optional_seconds(text: str) -> int | None:
    return None if not text.strip() else _integer(1)(text)


SECRET_MIN_BYTES = 32


def _secret(text: str) -> str:
    secret = text.strip()
    # The message never repeats the secret: it ends up in terminals and logs.
    if secret and len(secret.encode()) < SECRET_MIN_BYTES:
        raise ValueError(f"must be at least {SECRET_MIN_BYTES} bytes long (empty: cschat "
                         "generates one)")
    return secret


DEFAULT_SETTINGS: dict[str, dict[str, Setting]] = {
    "server": {
        "host": Setting("127.0.0.1", _text, "Address to listen on."),
        "port": Setting("8700", _integer(0, 65535), "TCP port to listen on (0 picks a free one)."),
        "allowed_origins": Setting(
            "", _origins,
            "Comma list of exact browser origins allowed to open /ws; empty allows an "
            "origin whose host equals the Host header."),
        "frame_ancestors": Setting(
            "'self'", _text, "CSP frame-ancestors sources allowed to embed the console."),
        "widget_frame_ancestors": Setting(
            "*", _text,
            "CSP frame-ancestors sources allowed to embed the visitor widget: any site by "
            "default, so that the one-line embed works on the shop's own origin."),
        "behind_proxy": Setting(
            "false", _boolean,
            "A reverse proxy on this box forwards to cschat: take the client's address from "
            "X-Real-IP / X-Forwarded-For (never set it when clients reach cschat directly)."),
        "max_connections": Setting(
            "10000", _integer(16),
            "Most open HTTP and WebSocket connections in all; more are closed at once."),
        "max_connections_per_address": Setting(
            "200", _integer(1), "Most open connections from one client address."),
        "header_timeout": Setting(
            "15", _integer(1),
            "Seconds a connection may take to send a request's headers, or sit idle between "
            "requests, before it is closed."),
        "body_timeout": Setting(
            "300", _integer(1), "Seconds a request may take to send its whole body."),
        "login_timeout": Setting(
            "10", _integer(1), "Seconds a WebSocket may stay open without logging in."),
    },
    "database": {
        "path": Setting("cschat.db", _text, "SQLite file (WAL mode)."),
        "synchronous": Setting(
            "full", _choice("full", "normal"),
            "full survives power loss; normal survives a process crash only."),
        "max_wal_bytes": Setting(
            "33554432", _integer(1048576),
            "Past this size the write-ahead log is emptied between two commits."),
    },
    "auth": {
        "secret": Setting(
            "", _secret,
            "HS256 secret for tokens, at least 32 bytes; empty generates one and keeps it "
            "in the database."),
        "token_ttl": Setting("86400", _integer(60), "Lifetime in seconds of tokens cschat mints."),
        "refresh_window": Setting(
            "", _optional_seconds,
            "A login token with less than this many seconds left is refreshed; "
            "empty means half of token_ttl."),
        "max_session_age": Setting(
            "2592000", _integer(60),
            "Seconds after signing in (auth_time, else iat) that a token stops being "
            "accepted or refreshed, whoever minted it."),
        "allow_anonymous": Setting(
            "true", _boolean, "Let POST /api/visitor mint tokens for anonymous visitors."),
        "visitor_rate": Setting(
            "20", _integer(1), "Anonymous visitor tokens per client address per minute."),
        "min_password_length": Setting(
            "10", _integer(1, 1024), "Shortest password the cschat command accepts."),
        "login_user_failures": Setting(
            "5", _integer(1), "Failed sign-ins of one username before it must wait (429)."),
        "login_address_failures": Setting(
            "20", _integer(1), "Failed sign-ins from one client address before it must wait."),
        "login_backoff": Setting(
            "1", _integer(1),
            "Seconds of the first wait; each further failure doubles it."),
        "login_backoff_max": Setting("900", _integer(1), "Longest wait, in seconds."),
        "password_workers": Setting(
            "2", _integer(1, 64),
            "Password checks (scrypt, about 128 MiB each) run at once, in threads of their own."),
        "password_queue": Setting(
            "8", _integer(0), "Sign-ins that may wait for a password worker; more get 503."),
    },
    "chat": {
        "heartbeat_timeout": Setting(
            "60", _integer(1), "Close a connection that sends no frame for this many seconds."),
        "max_frame_bytes": Setting(
            "65536", _integer(1024), "Largest WebSocket frame; a larger one closes with 1009."),
        "rate_limit": Setting(
            "20", _integer(1), "Frames per second per connection (burst twice that)."),
        "identity_rate_limit": Setting(
            "30", _integer(1),
            "Frames per second one guest or agent may send over all its connections "
            "(burst twice that)."),
        "address_rate_limit": Setting(
            "200", _integer(1),
            "Frames per second all connections from one address may send (burst twice that)."),
        "max_connections_per_guest": Setting(
            "8", _integer(1), "Most logged-in connections (tabs) of one guest."),
        "max_connections_per_agent": Setting(
            "16", _integer(1), "Most logged-in connections of one agent."),
        "max_queued_bytes": Setting(
            "2097152", _integer(65536),
            "Bytes waiting to be sent to a connection that does not read; more closes it "
            "(1008), and the client catches up after reconnecting."),
        "max_history_bytes": Setting(
            "262144", _integer(16384),
            "Largest history page (22100/32100), roughly in bytes; a larger page is cut "
            "short and says so."),
        "agent_capacity": Setting(
            "8", _integer(1), "Most open conversations routing gives one agent."),
        "max_message_length": Setting(
            "5000", _integer(1, 1_000_000), "Longest text message, in characters."),
        "release_after": Setting(
            "600", _integer(1),
            "Seconds a guest may stay offline before its conversation is released."),
        "agent_grace": Setting(
            "60", _integer(1),
            "Seconds an agent may stay disconnected before it counts as offline."),
    },
    "uploads": {
        "dir": Setting("uploads", _text, "Folder for uploaded media."),
        "max_image_bytes": Setting("10485760", _integer(1), "Largest image (file_type 1)."),
        "max_voice_bytes": Setting("10485760", _integer(1), "Largest voice note (file_type 2)."),
        "max_video_bytes": Setting("52428800", _integer(1), "Largest video (file_type 5)."),
        "max_file_bytes": Setting("20971520", _integer(1), "Largest other file (file_type 6)."),
        "image_types": Setting(
            "image/jpeg, image/png, image/gif, image/webp", _mime_list,
            "Types (as libmagic names them) accepted as images."),
        "voice_types": Setting(
            "audio/mpeg, audio/ogg, audio/x-wav, audio/wav, audio/aac, audio/x-hx-aac-adts, "
            "audio/mp4, audio/x-m4a, audio/amr, audio/webm, video/webm, video/mp4", _mime_list,
            "Types accepted as voice notes; browsers record into WebM or MP4 containers."),
        "video_types": Setting(
            "video/mp4, video/webm, video/quicktime", _mime_list, "Types accepted as videos."),
        "blocked_types": Setting(
            "text/html, application/xhtml+xml, image/svg+xml, text/xml, application/xml, "
            "application/javascript, text/javascript", _mime_list,
            "Types refused in every case: what a browser would run or render as a page."),
        "max_image_pixels": Setting(
            "24000000", _integer(1),
            "Most pixels of an image, all its frames together (frames × width × height), "
            "checked before anything is decoded; a larger one gets 400."),
        "max_image_frames": Setting(
            "200", _integer(1), "Most frames of an animated image; more get 400."),
        "image_workers": Setting(
            "2", _integer(1, 64),
            "Threads for upload work (typing, image decoding, hashing), apart from the "
            "threads that check passwords; uploads beyond that wait their turn."),
        "guest_bytes_per_hour": Setting(
            "52428800", _integer(1, 2**50),
            "Bytes one guest may upload in any hour; more gets 429."),
        "agent_bytes_per_hour": Setting(
            "524288000", _integer(1, 2**50),
            "Bytes one agent may upload in any hour; more gets 429."),
        "address_bytes_per_hour": Setting(
            "209715200", _integer(1, 2**50),
            "Bytes all guests at one client address may upload in any hour; more gets 429."),
        "max_guest_unsent_files": Setting(
            "20", _integer(1),
            "Uploads one guest may keep that no message sent yet; more gets 429."),
        "min_free_bytes": Setting(
            "268435456", _integer(0, 2**50),
            "Free space the uploads disk must keep: an upload that would leave less gets 507."),
        "orphan_ttl": Setting(
            "86400", _integer(1),
            "Seconds before an agent's upload no message uses is deleted."),
        "guest_orphan_ttl": Setting(
            "3600", _integer(1),
            "Seconds before a guest's upload no message uses is deleted; below 3600 the "
            "hourly quotas forget what was deleted."),
    },
    "webhooks": {
        "timeout": Setting(
            "10", _integer(1, 300),
            "Seconds a receiver has to answer a delivery; a slower answer counts as a failure."),
        "first_retry": Setting(
            "10", _integer(1), "Seconds before the first retry of a failed delivery."),
        "max_retry_interval": Setting(
            "3600", _integer(1), "Longest wait between two retries; each failure doubles it."),
        "give_up_after": Setting(
            "172800", _integer(86400),
            "Seconds after an event that its delivery stops being retried (at least a day)."),
        "keep_days": Setting(
            "7", _integer(1), "Days a delivered or failed event is kept for the admin screens."),
        "concurrency": Setting(
            "8", _integer(1, 256), "Deliveries under way at once, over all webhooks."),
    },
    "email": {
        "smtp_host": Setting(
            "", _text, "SMTP server that sends cschat's mail; empty: nothing is mailed."),
        "smtp_port": Setting("587", _integer(1, 65535), "Its port."),
        "security": Setting(
            "starttls", _choice("starttls", "tls", "none"),
            "starttls (upgrade a plain connection), tls (TLS from the start, port 465) or "
            "none (a relay on this box only)."),
        "username": Setting("", _text, "SMTP user name; empty: no login."),
        "password": Setting("", _text, "SMTP password."),
        "from": Setting("", _text,
                        "The From address of cschat's mail, e.g. Shop <help@shop.example>."),
        "notify": Setting(
            "", _text,
            "The shop's address for left messages and long waits; a group's notify_email "
            "(admin settings) overrides it."),
        "reply_batch_seconds": Setting(
            "120", _integer(1),
            "An agent's replies to a visitor who is offline and left an e-mail are mailed at "
            "most once per conversation per this many seconds, together."),
        "queue_alert_seconds": Setting(
            "600", _integer(1),
            "The shop is mailed when a conversation has waited in the queue this long."),
        "timeout": Setting("30", _integer(1, 600), "Seconds an SMTP exchange may take."),
        "max_per_hour": Setting(
            "300", _integer(1),
            "Most mails queued in any hour; beyond, mail is not sent (logged), so that "
            "visitors cannot turn cschat into a mailer."),
    },
    "privacy": {
        "store_ip": Setting(
            "false", _boolean,
            "Keep the visitor's IP address with its context (off: never stored)."),
        "search_index": Setting(
            "true", _boolean,
            "Keep the text of messages in a search index for the agents' search (off: the "
            "index is emptied at start-up and search finds visitors by name only; on again: "
            "it is rebuilt in the background)."),
    },
    "metrics": {
        "enabled": Setting("false", _boolean, "Serve GET /metrics in Prometheus text format."),
        "allow": Setting(
            "127.0.0.1, ::1", _networks,
            "Comma list of client addresses or networks (CIDR) that may read /metrics."),
    },
}


class Settings:
    """Parsed settings: ``settings.chat["rate_limit"]`` is an ``int``, and so on.

    Paths (``database.path``, ``uploads.dir``) are absolute, resolved against
    the folder of the configuration file, or the working directory when
    running on the embedded defaults.
    """

    def __init__(self, values: dict[str, dict[str, Any]], source: str | None):
        self._values = values
        self.source = source

    def __getattr__(self, section: str) -> dict[str, Any]:
        try:
            return self._values[section]
        except KeyError:
            raise AttributeError(section) from None


def _build(raw: dict[str, dict[str, str]], base_dir: str, source: str | None) -> Settings:
    values: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        if section not in DEFAULT_SETTINGS:
            raise ConfigError(
                f"unknown section [{section}]; known: {', '.join(DEFAULT_SETTINGS)}")
        for key in keys:
            if key not in DEFAULT_SETTINGS[section]:
                raise ConfigError(f"unknown setting [{section}] {key}")
    for section, declared in DEFAULT_SETTINGS.items():
        values[section] = {}
        for key, setting in declared.items():
            text = raw.get(section, {}).get(key, setting.default)
            try:
                values[section][key] = setting.parse(text)
            except ValueError as error:
                raise ConfigError(f"[{section}] {key}: {error}") from None
    if values["auth"]["refresh_window"] is None:
        values["auth"]["refresh_window"] = values["auth"]["token_ttl"] // 2
    for section, key in (("database", "path"), ("uploads", "dir")):
        values[section][key] = os.path.abspath(os.path.join(base_dir, values[section][key]))
    return Settings(values, source)


def load_settings(path: str | None = None) -> Settings:
    """Read and check the INI file at ``path``, or the embedded defaults if ``None``.

    Raises :class:`ConfigError` for a missing or unreadable file, a syntax
    error, an unknown section or key, or a value its setting does not accept.
    """
    if path is None:
        return _build({}, os.getcwd(), None)
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except configparser.Error as error:
        raise ConfigError(f"{path}: {error.message}") from None
    raw = {section: dict(parser.items(section)) for section in parser.sections()}
    return _build(raw, os.path.dirname(os.path.abspath(path)), path)
