"""Station identity and security profile 1 (HTTP Basic auth over the websocket handshake)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
from urllib.parse import unquote

import bcrypt
import structlog

# OCPP 2.x identifierString: letters, digits and * - _ = : + | @ . ; max 48 characters.
_STATION_ID = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$")
log = structlog.get_logger("csms.auth")

MIN_PASSWORD_LENGTH = 16  # OCPP 2.x BasicAuthPassword: 16..40 characters
MAX_PASSWORD_LENGTH = 40
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further (bcrypt >= 5 refuses longer input outright)


class StationIdError(ValueError):
    pass


def station_id_from_path(path: str) -> str:
    """The last path segment, URL-decoded and checked against the OCPP identifier set."""
    segment = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    station_id = unquote(segment)
    if not _STATION_ID.match(station_id):
        raise StationIdError(
            f"station id {station_id!r} must be 1-48 characters of A-Z a-z 0-9 * - _ = : + | @ ."
        )
    return station_id


def hash_password(password: str) -> str:
    check_password_rules(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"a station password has {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters "
            f"(OCPP BasicAuthPassword), got {len(password)}"
        )
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"a station password must fit in {BCRYPT_MAX_BYTES} bytes of UTF-8")


def _basic_credentials(header: str | None) -> str | None:
    """The decoded "user:password" of an HTTP Basic Authorization header (RFC 7617)."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":  # the scheme name is case-insensitive (RFC 7235)
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, password), split at the first colon as RFC 7617 says."""
    decoded = _basic_credentials(header)
    if decoded is None:
        return None
    user, _, password = decoded.partition(":")
    return user, password


def station_password(header: str | None, station_id: str) -> str | None:
    """The password of a Basic header whose username is `station_id` (security profile 1).

    OCPP identities may contain ':' which RFC 7617 forbids in a user-id, so the header is
    matched against the known station id rather than split at the first colon.
    """
    decoded = _basic_credentials(header)
    prefix = station_id + ":"
    if decoded is None or not decoded.startswith(prefix):
        return None
    return decoded.removeprefix(prefix)


class PasswordChecker:
    """bcrypt checks, with a cache of passwords already verified.

    A bcrypt check costs tens of milliseconds of CPU; thousands of stations reconnecting after
    a restart would otherwise stall the event loop's thread pool. The cache keys on the stored
    hash, so changing a station's password invalidates it.
    """

    def __init__(self) -> None:
        self._verified: dict[tuple[str, str], bytes] = {}

    async def check(self, station_id: str, password: str, stored_hash: str) -> bool:
        """True when `password` matches; False for a wrong, overlong or unverifiable one."""
        secret = password.encode()
        if len(secret) > BCRYPT_MAX_BYTES:  # hash_password never stores such a password
            return False
        digest = hashlib.sha256(secret).digest()
        known = self._verified.get((station_id, stored_hash))
        if known is not None:
            return hmac.compare_digest(known, digest)
        try:
            ok = await asyncio.to_thread(bcrypt.checkpw, secret, stored_hash.encode())
        except ValueError:  # a stored value that is not a bcrypt hash: nobody gets in
            log.error("auth.bad_stored_hash", station_id=station_id)
            return False
        if ok:
            self._verified[(station_id, stored_hash)] = digest
        return ok
