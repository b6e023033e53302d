"""The websocket handshake (OCPP 2.0.1 / 2.1 Part 4 §3 and Part 2 security profile 1)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging

import pytest
import structlog
import websockets
from sqlmodel import select
from websockets.exceptions import ConnectionClosed, InvalidStatus

from csms.runtime import CentralSystem
from csms.server import app as server_app
from csms.server import auth as server_auth
from csms.server import session as server_session
from csms.server.auth import hash_password, station_id_from_path
from csms.store.models import Station
from tests.conftest import make_settings
from tests.server.conftest import HANG_GUARD_S, RawStation, raw_station


async def _station(system: CentralSystem, station_id: str) -> Station | None:
    async with system.services.db.read() as session:
        query = select(Station).where(Station.id == station_id)
        return (await session.execute(query)).scalar_one_or_none()


def _url(system: CentralSystem, path: str) -> str:
    return f"ws://127.0.0.1:{system.ocpp_port}{path}"


@pytest.mark.parametrize(("version", "subprotocol"), [("2.1", "ocpp2.1"), ("2.0.1", "ocpp2.0.1")])
async def test_both_subprotocols_on_one_port_and_the_version_is_stored(
    csms, version, subprotocol
) -> None:
    async with websockets.connect(
        _url(csms, "/ocpp/CP-V"), subprotocols=["ocpp1.6", subprotocol]
    ) as ws:
        assert ws.subprotocol == subprotocol
        assert await RawStation(ws).heartbeat_answered()
        stored = await _station(csms, "CP-V")
        assert stored is not None and stored.connected and stored.ocpp_version == version


async def test_newest_version_is_chosen_when_both_are_offered(csms_sqlite) -> None:
    async with websockets.connect(
        _url(csms_sqlite, "/ocpp/CP-BOTH"), subprotocols=["ocpp2.0.1", "ocpp2.1"]
    ) as ws:
        assert ws.subprotocol == "ocpp2.1"


@pytest.mark.parametrize("offered", [None, ["ocpp1.6"]], ids=["none", "ocpp1.6"])
async def test_no_supported_subprotocol_completes_without_header_and_closes(
    csms_sqlite, offered
) -> None:
    """OCPP-J: complete the handshake without Sec-WebSocket-Protocol, then close at once."""
    async with websockets.connect(
        _url(csms_sqlite, "/ocpp/CP-NOPROTO"), subprotocols=offered
    ) as ws:
        assert ws.response.status_code == 101
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(HANG_GUARD_S):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    assert "CP-NOPROTO" not in csms_sqlite.services.registry


@pytest.mark.parametrize(
    ("path", "station_id"),
    [
        ("/ocpp/CP-PATH-1", "CP-PATH-1"),
        ("/CP-PATH-2", "CP-PATH-2"),
        ("/ocpp/CP%7CPATH%2A3", "CP|PATH*3"),  # URL-encoded identifier characters
        ("/ocpp/CP-PATH-4?x=1", "CP-PATH-4"),
    ],
)
async def test_path_forms_and_url_encoded_ids(csms_sqlite, path, station_id) -> None:
    async with websockets.connect(_url(csms_sqlite, path), subprotocols=["ocpp2.1"]) as ws:
        assert await RawStation(ws).heartbeat_answered()
        assert station_id in csms_sqlite.services.registry
    assert station_id_from_path(path) == station_id


@pytest.mark.parametrize(
    "path",
    [
        "/ocpp/" + "A" * 49,
        "/ocpp/CP%20SPACE",
        "/ocpp/CP%2FSLASH",
        "/ocpp/CP%00",
        "/ocpp/cp%23x",
        "/",
    ],
)
async def test_invalid_station_id_is_refused_with_404_before_the_upgrade(csms_sqlite, path):
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(_url(csms_sqlite, path), subprotocols=["ocpp2.1"]):
            pass
    assert refused.value.response.status_code == 404


async def test_second_connection_replaces_the_first_cleanly(csms) -> None:
    async with raw_station(csms, "CP-TWICE") as first:
        assert await first.heartbeat_answered()
        old_session = csms.services.registry.get("CP-TWICE")
        async with raw_station(csms, "CP-TWICE") as second:
            with pytest.raises(ConnectionClosed) as closed:
                await first.reply()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert await second.heartbeat_answered()
            async with asyncio.timeout(HANG_GUARD_S):
                await old_session.closed.wait()
            current = csms.services.registry.get("CP-TWICE")
            assert current is not None and current is not old_session
            stored = await _station(csms, "CP-TWICE")
            assert stored is not None and stored.connected  # the old session did not unmark it
            assert await second.heartbeat_answered("hb-2")


async def test_unknown_station_is_refused_when_not_allowed(sqlite_url) -> None:
    system = CentralSystem(make_settings(sqlite_url, allow_unknown_stations=False))
    await system.start()
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(
                _url(system, "/ocpp/CP-STRANGER"), subprotocols=["ocpp2.1"]
            ):
                pass
        assert refused.value.response.status_code == 404
        assert await _station(system, "CP-STRANGER") is None
    finally:
        await system.stop()


# ---- security profile 1: HTTP Basic auth ------------------------------------------------

PASSWORD = "correct-horse-battery-9"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _add_profile1_station(system: CentralSystem, station_id: str) -> None:
    def unit(session) -> None:
        session.add(
            Station(id=station_id, security_profile=1, password_hash=hash_password(PASSWORD))
        )

    await system.services.writer.write(unit)


async def _refused_401(system: CentralSystem, station_id: str, headers) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            _url(system, f"/ocpp/{station_id}"),
            subprotocols=["ocpp2.1"],
            additional_headers=headers,
        ):
            pass
    assert refused.value.response.status_code == 401
    assert "WWW-Authenticate" in refused.value.response.headers


@pytest.fixture
def captured_logs(caplog):
    """Everything structlog (as JSON lines) and the server's stdlib logging write meanwhile
    (the test client's own websockets log is left out: it is the one sending the secret)."""
    buffer = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    for module in (server_app, server_auth, server_session):
        vars(module.log).pop("bind", None)  # forget a logger cached under an earlier config
    caplog.set_level(logging.DEBUG)
    yield (
        lambda: (
            buffer.getvalue()
            + "\n".join(
                f"{r.name} {r.getMessage()}"
                for r in caplog.records
                if r.name != "websockets.client"
            )
        )
    )
    structlog.reset_defaults()


@pytest.mark.parametrize("station_id", ["CP-SP1", "CP:SP1"])  # ':' is a legal identifier char
async def test_security_profile_1_needs_the_station_password(csms, captured_logs, station_id):
    await _add_profile1_station(csms, station_id)
    await _refused_401(csms, station_id, {})
    await _refused_401(csms, station_id, _basic(station_id, "wrong-password-123456"))
    await _refused_401(csms, station_id, _basic("someone-else", PASSWORD))  # user = station id
    await _refused_401(csms, station_id, {"Authorization": "Basic !!!not-base64"})
    await _refused_401(csms, station_id, _basic(station_id, "é" * 40))  # > 72 bytes for bcrypt
    for _ in range(2):  # the second time through the verified-password cache
        async with websockets.connect(
            _url(csms, f"/ocpp/{station_id}"),
            subprotocols=["ocpp2.1"],
            additional_headers=_basic(station_id, PASSWORD),
        ) as ws:
            assert await RawStation(ws).heartbeat_answered()
    logs = captured_logs()
    assert "handshake.bad_credentials" in logs  # the capture works...
    assert PASSWORD not in logs and "wrong-password-123456" not in logs  # ...and holds no secret
    assert base64.b64encode(f"{station_id}:{PASSWORD}".encode()).decode() not in logs


async def test_keepalive_pings_keep_an_idle_connection_open(sqlite_url) -> None:
    """Pings every 0.2 s (settings.ping_interval_s); the client answers them; after several
    answered pings on an otherwise idle connection it is still open and working."""
    system = CentralSystem(make_settings(sqlite_url, ping_interval_s=0.2, ping_timeout_s=5.0))
    await system.start()
    try:
        async with raw_station(system, "CP-IDLE", ping_interval=None) as station:
            assert await station.heartbeat_answered()
            three_pongs = _answered_pings(system, "CP-IDLE", wanted=3)
            async with asyncio.timeout(HANG_GUARD_S):
                await three_pongs.wait()
            assert station.ws.close_code is None
            assert await station.heartbeat_answered("hb-after-idle")
    finally:
        await system.stop()


def _answered_pings(system: CentralSystem, station_id: str, wanted: int) -> asyncio.Event:
    """Wrap the server connection's ping() (which its keep-alive loop calls) to count pongs."""
    session = system.services.registry.get(station_id)
    assert session is not None
    connection = session.connection
    original = connection.ping
    answered = 0
    done = asyncio.Event()

    def on_pong(waiter: asyncio.Future) -> None:
        nonlocal answered
        if not waiter.cancelled() and waiter.exception() is None:
            answered += 1
            if answered >= wanted:
                done.set()

    async def counting_ping(*args, **kwargs):
        waiter = await original(*args, **kwargs)
        waiter.add_done_callback(on_pong)
        return waiter

    connection.ping = counting_ping  # type: ignore[method-assign]
    return done
