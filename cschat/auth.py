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
    raw: dict


@dataclasses.dataclass(frozen=True)
class GuestClaims:
    uid: str
    group_id: int
    name: str
    avatar: str
    raw: dict


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
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.MissingRequiredClaimError:
            raise TokenError("token has no exp") from None
        except jwt.PyJWTError:
            raise TokenError("token cannot be verified") from None
        if claims.get("typ") != typ:
            raise TokenError(f"not an {typ} token" if typ == "agent" else f"not a {typ} token")
        return claims

    def verify_agent(self, token: object) -> AgentClaims:
        """Return the claims of a valid agent token; raise :class:`TokenError` otherwise."""
        claims = self._decode(token, "agent")
        admin_id = claims.get("admin_id")
        if type(admin_id) is not int:
            raise TokenError("admin_id must be an integer")
        return AgentClaims(admin_id, claims)

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
        # Agents' pages show the avatar as an image: only web addresses pass.
        if not is_web_url(avatar):
            avatar = ""
        return GuestClaims(uid, group_id, name, avatar, claims)

    def refresh(self, claims: dict) -> tuple[int, str]:
        """``(is_refresh, refresh_token)`` for a login token with these ``claims`` (R12).

        When less than ``refresh_window`` seconds are left, the new token
        carries the same claims with a fresh ``iat`` and ``exp``.
        """
        if claims["exp"] - time.time() >= self.refresh_window:
            return 0, ""
        now = int(time.time())
        fresh = {**claims, "iat": now, "exp": now + self.ttl}
        return 1, jwt.encode(fresh, self._key, algorithm=ALGORITHM)


def is_web_url(text: str) -> bool:
    """True for an http(s) address (or an empty string): safe as a link or image source."""
    return not text or text.lower().startswith(("https://", "http://"))


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
