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

# OCPP 2.x identifierString: letters, digits and * - _ = : + | @ . ; max 48 characters.
_STATION_ID = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$")
MIN_PASSWORD_LENGTH = 16  # OCPP 2.x BasicAuthPassword: 16..40 characters
MAX_PASSWORD_LENGTH = 40


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


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


class PasswordChecker:
    """bcrypt checks, with a cache of passwords already verified.

    A bcrypt check costs tens of milliseconds of CPU; thousands of stations reconnecting after
    a restart would otherwise stall the event loop's thread pool. The cache keys on the stored
    hash, so changing a station's password invalidates it.
    """

    def __init__(self) -> None:
        self._verified: dict[tuple[str, str], bytes] = {}

    async def check(self, station_id: str, password: str, stored_hash: str) -> bool:
        digest = hashlib.sha256(password.encode()).digest()
        known = self._verified.get((station_id, stored_hash))
        if known is not None:
            return hmac.compare_digest(known, digest)
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), stored_hash.encode())
        if ok:
            self._verified[(station_id, stored_hash)] = digest
        return ok
