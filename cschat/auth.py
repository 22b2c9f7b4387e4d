"""Tokens (HS256 JWTs, PROTOCOL §2) and password hashing.

Decoding always pins the algorithm and requires ``exp`` and ``typ``, so a
token signed with ``none`` or another algorithm, an expired token and a token
of the other role all fail the same way: :class:`TokenError`.

Tokens cschat mints carry ``auth_time``, when the person signed in, which a
refresh keeps; agent tokens also carry ``tv``, the agent's ``token_version``
when the token was minted, so bumping that version revokes them. A session
(from ``auth_time``, else ``iat``) lasts at most ``max_session_age`` seconds,
whoever minted its token (docs/security.md, "Tokens and sign-in").
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


class WrongRole(TokenError):
    """A valid token of the other role (a guest's where an agent's is wanted, or back)."""


@dataclasses.dataclass(frozen=True)
class AgentClaims:
    admin_id: int
    # None for a token a shop minted without ``tv``: cschat cannot revoke it.
    token_version: int | None
    raw: dict

    def revoked(self, current_version: int) -> bool:
        """True for a token cschat minted before the agent's ``token_version`` last changed.

        A newer ``tv`` than ``current_version`` passes: only cschat mints ``tv``, so
        such a token was minted from a change the caller has not taken in yet.
        """
        return self.token_version is not None and self.token_version < current_version


@dataclasses.dataclass(frozen=True)
class GuestClaims:
    uid: str
    group_id: int
    name: str
    avatar: str
    raw: dict


class Tokens:
    """Mints and verifies the tokens of one secret."""

    def __init__(self, secret: str, ttl: int, refresh_window: int, max_session_age: int):
        self._key = secret
        self.ttl = ttl
        self.refresh_window = refresh_window
        self.max_session_age = max_session_age

    def mint_agent(self, admin_id: int, token_version: int = 0, ttl: int | None = None) -> str:
        """An agent token for the agent's current ``token_version`` (0 until first revoked)."""
        return self._mint({"typ": "agent", "admin_id": admin_id, "tv": token_version}, ttl)

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
        payload = {**claims, "auth_time": now, "iat": now,
                   "exp": now + (self.ttl if ttl is None else ttl)}
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
            raise WrongRole(f"not an {typ} token" if typ == "agent" else f"not a {typ} token")
        # PyJWT takes "123" for a time; refresh and the session age do arithmetic on them.
        for name in ("exp", "iat", "auth_time"):
            if name in claims and not _is_number(claims[name]):
                raise TokenError(f"{name} must be a number")
        started = claims.get("auth_time", claims.get("iat"))
        if started is not None and time.time() - started > self.max_session_age:
            raise TokenError("session too old, sign in again")
        return claims

    def verify_agent(self, token: object) -> AgentClaims:
        """Return the claims of a valid agent token; raise :class:`TokenError` otherwise.

        Whether the token is revoked depends on the agent's row: see
        :meth:`AgentClaims.revoked`.
        """
        claims = self._decode(token, "agent")
        admin_id, token_version = claims.get("admin_id"), claims.get("tv")
        if type(admin_id) is not int:
            raise TokenError("admin_id must be an integer")
        if token_version is not None and type(token_version) is not int:
            raise TokenError("tv must be an integer")
        return AgentClaims(admin_id, token_version, claims)

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
        """``(is_refresh, refresh_token)`` for a verified login token's ``claims`` (R12).

        When less than ``refresh_window`` seconds are left, the new token
        carries the same claims with ``iat`` now, ``auth_time`` kept (the old
        ``iat`` when there was none), and an ``exp`` that is the earlier of
        ``min(token_ttl, old exp - old iat)`` from now — a refresh never makes
        a token longer-lived than the one it replaces — and ``auth_time +
        max_session_age``. No refresh (``0, ""``) for a token without ``iat``,
        whose lifetime is unknown, or when the new ``exp`` would not be later.
        """
        now = time.time()
        issued = claims.get("iat")
        if claims["exp"] - now >= self.refresh_window or issued is None:
            return 0, ""
        started = claims.get("auth_time", issued)
        lifetime = min(self.ttl, claims["exp"] - issued)
        expires = int(min(now + lifetime, started + self.max_session_age))
        if expires <= claims["exp"]:
            return 0, ""
        fresh = {**claims, "auth_time": started, "iat": int(now), "exp": expires}
        return 1, jwt.encode(fresh, self._key, algorithm=ALGORITHM)


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def is_web_url(text: str) -> bool:
    """True for an http(s) address (or an empty string): safe as a link or image source."""
    return not text or text.lower().startswith(("https://", "http://"))


# OWASP's minimum for scrypt: about 0.35 s and 128 MiB per hash on a small server.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # OpenSSL needs 128·r·(n + p + 2) bytes; hashlib's default limit (32 MiB) is below that.
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * r * (n + p + 2) + 2**20)


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """Return a salted scrypt hash of ``password`` in a self-describing string.

    A lower ``n`` than the default makes a weak hash quickly: for tests only
    (of re-hashing, or with many accounts), never for a real password.
    """
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


# Checked against when the username is unknown, so both answers take as long
# as checking a current hash. Its digest matches nothing, so it is random.
_DECOY_HASH = (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${secrets.token_hex(16)}$"
               f"{secrets.token_hex(64)}")


def check_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``; costs the same when ``stored`` is None."""
    scheme, n, r, p, salt, digest = (stored or _DECOY_HASH).split("$")
    candidate = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return stored is not None and hmac.compare_digest(candidate.hex(), digest)


def needs_rehash(stored: str) -> bool:
    """True for a hash made with weaker scrypt parameters than :func:`hash_password` uses."""
    _, n, r, p, _, _ = stored.split("$")
    return int(n) < SCRYPT_N or int(r) < SCRYPT_R or int(p) < SCRYPT_P
