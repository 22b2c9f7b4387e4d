"""Tokens (HS256 JWTs, PROTOCOL §2) and password hashing.

Decoding always pins the algorithm and requires ``exp`` and ``typ``, so a
token signed with ``none`` or another algorithm, an expired token and a token
of the other role all fail the same way: :class:`TokenError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time

import jwt

ALGORITHM = "HS256"
UID_MAX_LENGTH = 64
_NAME_MAX_LENGTH = 64
_AVATAR_MAX_LENGTH = 512


class TokenError(Exception):
    """A token that cannot be parsed or verified, or whose claims are malformed."""


@dataclasses.dataclass(frozen=True)
class AgentClaims:
    admin_id: int
    exp: int


@dataclasses.dataclass(frozen=True)
class GuestClaims:
    uid: str
    group_id: int
    name: str
    avatar: str
    exp: int


class Tokens:
    """Mints and verifies the tokens of one secret."""

    def __init__(self, secret: str, ttl: int, refresh_window: int):
        self._key = secret
        self.ttl = ttl
        self.refresh_window = refresh_window

    def mint_agent(self, admin_id: int, ttl: int | None = None) -> str:
        return self._mint({"typ": "agent", "admin_id": admin_id}, ttl)

    def mint_guest(self, uid: str, group_id: int, name: str = "", avatar: str = "",
                   ttl: int | None = None) -> str:
        claims = {"typ": "guest", "uid": uid, "group_id": group_id}
        if name:
            claims["name"] = name
        if avatar:
            claims["avatar"] = avatar
        return self._mint(claims, ttl)

    def _mint(self, claims: dict, ttl: int | None) -> str:
        now = int(time.time())
        payload = {**claims, "iat": now, "exp": now + (self.ttl if ttl is None else ttl)}
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def _decode(self, token: object, typ: str) -> dict:
        if not isinstance(token, str) or not token:
            raise TokenError("token missing")
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                options={"require": ["exp"]})
        except jwt.PyJWTError as error:
            raise TokenError(str(error)) from None
        if claims.get("typ") != typ:
            raise TokenError("wrong token type")
        return claims

    def verify_agent(self, token: object) -> AgentClaims:
        """Return the claims of a valid agent token; raise :class:`TokenError` otherwise."""
        claims = self._decode(token, "agent")
        admin_id = claims.get("admin_id")
        if type(admin_id) is not int:
            raise TokenError("admin_id must be an integer")
        return AgentClaims(admin_id, int(claims["exp"]))

    def verify_guest(self, token: object) -> GuestClaims:
        """Return the claims of a valid guest token; raise :class:`TokenError` otherwise."""
        claims = self._decode(token, "guest")
        uid, group_id = claims.get("uid"), claims.get("group_id")
        if not isinstance(uid, str) or not 0 < len(uid) <= UID_MAX_LENGTH:
            raise TokenError(f"uid must be a string of 1 to {UID_MAX_LENGTH} characters")
        if type(group_id) is not int:
            raise TokenError("group_id must be an integer")
        name, avatar = claims.get("name", ""), claims.get("avatar", "")
        if not isinstance(name, str) or len(name) > _NAME_MAX_LENGTH:
            raise TokenError("name must be a short string")
        if not isinstance(avatar, str) or len(avatar) > _AVATAR_MAX_LENGTH:
            raise TokenError("avatar must be a URL")
        return GuestClaims(uid, group_id, name, avatar, int(claims["exp"]))

    def refresh(self, exp: int, mint) -> tuple[int, str]:
        """Return ``(is_refresh, refresh_token)`` for a login token expiring at ``exp``.

        ``mint`` is called with no argument to make the new token when the
        old one has less than ``refresh_window`` seconds left (PROTOCOL R12).
        """
        if exp - time.time() < self.refresh_window:
            return 1, mint()
        return 0, ""


# scrypt parameters: about 50 ms and 16 MiB per check on a small server.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """Return a salted scrypt hash of ``password`` in a self-describing string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


# Checked against when the username is unknown, so both answers take as long.
_DECOY_HASH = hash_password(secrets.token_hex(16))


def check_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``; costs the same when ``stored`` is None."""
    scheme, n, r, p, salt, digest = (stored or _DECOY_HASH).split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt),
                               n=int(n), r=int(r), p=int(p))
    return stored is not None and hmac.compare_digest(candidate.hex(), digest)
