"""The OCPP websocket endpoint: ws://HOST:PORT/ocpp/{station_id} or ws://HOST:PORT/{station_id}."""

from __future__ import annotations

import asyncio
import http
import logging
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.orm import Session
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from csms.domain import StationData
from csms.server.auth import (
    PasswordChecker,
    StationIdError,
    station_id_from_path,
    station_password,
)
from csms.server.session import StationSession
from csms.store.models import Station
from csms.store.types import utcnow
from ocppj.versions import BY_SUBPROTOCOL, SUPPORTED

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.server")

# websockets logs every handshake header at DEBUG, the Authorization header (security profile 1
# credentials, only base64-encoded) included. Its server logs go to this logger, which never
# goes below INFO, so no log level can leak a station's password.
_WEBSOCKETS_LOG = logging.getLogger("csms.server.websockets")
_WEBSOCKETS_LOG.setLevel(logging.INFO)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_GOING_AWAY = 1001


def _refuse(status: http.HTTPStatus, reason: str, *, basic_auth: bool = False) -> Response:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    if basic_auth:
        headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
    body = (reason + "\n").encode()
    return Response(status.value, status.phrase, headers, body)


class OcppServer:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.passwords = PasswordChecker()
        self._server: Server | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> Server:
        s = self.services.settings
        self._server = await serve(
            self._handle,
            s.host,
            s.ocpp_port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            max_size=s.max_frame_bytes,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            compression=None,  # ~50 KB less per connection; OCPP frames are small
            max_queue=4,
            server_header="v2g-csms",
            logger=_WEBSOCKETS_LOG,
        )
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Refuse before the upgrade: bad station id, unknown station, bad credentials."""
        try:
            station_id = station_id_from_path(request.path)
        except StationIdError as exc:
            return _refuse(http.HTTPStatus.NOT_FOUND, str(exc))
        try:
            async with self.services.db.read() as session:
                station = await session.get(Station, station_id)
        except Exception as exc:  # database unreachable: the station retries with back-off
            log.error("handshake.store_unavailable", station_id=station_id, error=repr(exc))
            return _refuse(http.HTTPStatus.SERVICE_UNAVAILABLE, "try again later")
        if station is None and not self.services.settings.allow_unknown_stations:
            log.warning("handshake.unknown_station", station_id=station_id)
            return _refuse(http.HTTPStatus.NOT_FOUND, f"unknown station {station_id!r}")
        if station is not None and station.security_profile >= 1:
            refused = await self._check_basic_auth(station, request)
            if refused is not None:
                return refused
        return None

    async def _check_basic_auth(self, station: Station, request: Request) -> Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            log.warning("handshake.no_credentials", station_id=station.id)
            return _refuse(
                http.HTTPStatus.UNAUTHORIZED, "HTTP Basic auth required", basic_auth=True
            )
        # The username is the station id (OCPP security profile 1).
        password = station_password(header, station.id)
        ok = (
            password is not None
            and station.password_hash is not None
            and await self.passwords.check(station.id, password, station.password_hash)
        )
        if not ok:
            log.warning("handshake.bad_credentials", station_id=station.id)  # never the password
            return _refuse(http.HTTPStatus.UNAUTHORIZED, "invalid credentials", basic_auth=True)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        station_id = station_id_from_path(connection.request.path)
        version = BY_SUBPROTOCOL.get(connection.subprotocol or "")
        if version is None:
            # OCPP-J: complete the handshake without Sec-WebSocket-Protocol, then close at once.
            log.warning("handshake.no_subprotocol", station_id=station_id)
            await connection.close(CLOSE_PROTOCOL_ERROR, "no supported OCPP subprotocol offered")
            return
        session = StationSession(station_id, version, connection, self.services)
        previous = self.services.registry.replace(session)
        if previous is not None:
            # Not awaited: the old peer is often a half-dead TCP link that would hold the new
            # session for the whole close timeout. Its session ends on its own; being replaced
            # in the registry, it no longer marks the station disconnected.
            log.info("session.replaced", station_id=station_id)
            self._close_in_background(previous)
        await self._mark_connected(station_id, version.name, True)
        self.services.domain.publish(StationData("connected", station_id))
        session.log.info("session.open", peer=str(connection.remote_address))
        try:
            await session.run()
        finally:
            if self.services.registry.remove(session):
                await self._mark_connected(station_id, version.name, False)
                self.services.domain.publish(StationData("disconnected", station_id))
            session.log.info("session.closed", code=connection.close_code)

    def _close_in_background(self, previous: StationSession) -> None:
        task = asyncio.create_task(
            previous.connection.close(CLOSE_GOING_AWAY, "replaced by a new connection")
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _mark_connected(self, station_id: str, version: str, connected: bool) -> None:
        node_id = self.services.settings.node_id

        def unit(session: Session) -> None:
            station = session.get(Station, station_id)
            if station is None:  # auto-registration (--allow-unknown-stations)
                station = Station(id=station_id)
                session.add(station)
            now = utcnow()
            station.connected = connected
            station.last_seen = now
            station.node_id = node_id if connected else ""
            if connected:
                station.connected_since = now
                station.ocpp_version = version

        try:
            await self.services.writer.write(unit, label="connect")
        except Exception as exc:
            log.error("session.state_not_saved", station_id=station_id, error=repr(exc))


def _select_subprotocol(
    connection: ServerConnection, offered: list[str] | tuple[str, ...]
) -> str | None:
    for version in SUPPORTED:
        if version.subprotocol in offered:
            return version.subprotocol
    return None
