"""A tiny CSMS written only with the `ocpp` library (server side) and `websockets.serve`.

It shares no code with our CSMS or our OCPP-J layer, so a simulated station that works against
both speaks OCPP, not just "whatever our server accepts". It records every frame a station
sends (as the raw spec JSON, camelCase), answers everything a station sends, lets a test set
the Authorize answer's `allowedEnergyTransfer` (Q01), and pushes commands through the library's
`call` (profiles, SetVariables, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201


@dataclass
class Recorded:
    """Every CALL a station sent, in order, as (action, camelCase payload)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.calls if a == action]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _Recording:
    """Mixin: record raw CALL frames before the library routes them."""

    recorded: Recorded
    fail_transaction_events: int = 0  # answer this many TransactionEvents with a CALLERROR

    async def route_message(self, raw: str) -> None:  # type: ignore[override]
        frame = orjson.loads(raw)
        if isinstance(frame, list) and frame and frame[0] == 2:
            action, payload = frame[2], frame[3]
            if action == "TransactionEvent" and self.fail_transaction_events > 0:
                self.fail_transaction_events -= 1
                self.recorded.calls.append(("TransactionEvent!failed", payload))
                error = [4, frame[1], "InternalError", "injected by the test CSMS", {}]
                await self._connection.send(orjson.dumps(error).decode())  # type: ignore[attr-defined]
                return
            self.recorded.calls.append((action, payload))
        await super().route_message(raw)  # type: ignore[misc]


class Station21(_Recording, ChargePoint21):
    allowed_energy_transfer: list[str] | None = None

    @on("BootNotification")
    async def boot(self, **_: Any) -> Any:
        return result21.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    async def heartbeat(self, **_: Any) -> Any:
        return result21.Heartbeat(current_time=_now())

    @on("StatusNotification")
    async def status(self, **_: Any) -> Any:
        return result21.StatusNotification()

    @on("Authorize")
    async def authorize(self, **_: Any) -> Any:
        return result21.Authorize(
            id_token_info={"status": "Accepted"},
            allowed_energy_transfer=self.allowed_energy_transfer,
        )

    @on("TransactionEvent")
    async def transaction_event(self, **_: Any) -> Any:
        return result21.TransactionEvent()

    @on("NotifyEVChargingNeeds")
    async def needs(self, **_: Any) -> Any:
        return result21.NotifyEVChargingNeeds(status="Accepted")

    @on("NotifyReport")
    async def report(self, **_: Any) -> Any:
        return result21.NotifyReport()

    @on("MeterValues")
    async def meter_values(self, **_: Any) -> Any:
        return result21.MeterValues()

    @on("ReportChargingProfiles")
    async def profiles(self, **_: Any) -> Any:
        return result21.ReportChargingProfiles()

    @on("FirmwareStatusNotification")
    async def firmware(self, **_: Any) -> Any:
        return result21.FirmwareStatusNotification()

    @on("LogStatusNotification")
    async def logs(self, **_: Any) -> Any:
        return result21.LogStatusNotification()

    @on("ReportDERControl")
    async def der(self, **_: Any) -> Any:
        return result21.ReportDERControl()


class Station201(_Recording, ChargePoint201):
    @on("BootNotification")
    async def boot(self, **_: Any) -> Any:
        return result201.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    async def heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    async def status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on("Authorize")
    async def authorize(self, **_: Any) -> Any:
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    async def transaction_event(self, **_: Any) -> Any:
        return result201.TransactionEvent()

    @on("NotifyEVChargingNeeds")
    async def needs(self, **_: Any) -> Any:
        return result201.NotifyEVChargingNeeds(status="Accepted")

    @on("NotifyReport")
    async def report(self, **_: Any) -> Any:
        return result201.NotifyReport()

    @on("MeterValues")
    async def meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()

    @on("ReportChargingProfiles")
    async def profiles(self, **_: Any) -> Any:
        return result201.ReportChargingProfiles()

    @on("FirmwareStatusNotification")
    async def firmware(self, **_: Any) -> Any:
        return result201.FirmwareStatusNotification()

    @on("LogStatusNotification")
    async def logs(self, **_: Any) -> Any:
        return result201.LogStatusNotification()


class IndependentCsms:
    """The server: one library ChargePoint per connection, records kept per station id."""

    def __init__(self) -> None:
        self.recorded: dict[str, Recorded] = {}
        self.points: dict[str, ChargePoint21 | ChargePoint201] = {}
        self.allowed_energy_transfer: dict[str, list[str]] = {}
        self.connections: dict[str, int] = {}
        self._server: Any = None

    @property
    def url(self) -> str:
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ocpp"

    async def _handle(self, connection: Any) -> None:
        station_id = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        cls = Station21 if connection.subprotocol == "ocpp2.1" else Station201
        point = cls(station_id, connection, response_timeout=10)
        point.recorded = self.recorded.setdefault(station_id, Recorded())
        if isinstance(point, Station21):
            point.allowed_energy_transfer = self.allowed_energy_transfer.get(station_id)
        self.points[station_id] = point
        self.connections[station_id] = self.connections.get(station_id, 0) + 1
        with contextlib.suppress(websockets.ConnectionClosed):
            await point.start()

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handle, "127.0.0.1", 0, subprotocols=["ocpp2.1", "ocpp2.0.1"]
        )

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def call(self, station_id: str, message: Any) -> Any:
        """Send a library call dataclass (e.g. `ocpp.v21.call.SetChargingProfile`)."""
        return await self.points[station_id].call(message)

    async def wait_for(
        self, station_id: str, action: str, predicate: Any = None, count: int = 1
    ) -> list[dict[str, Any]]:
        """Poll until `count` recorded `action` payloads match (hang guard: the test timeout)."""
        while True:
            found = [
                p
                for p in self.recorded.get(station_id, Recorded()).of(action)
                if predicate is None or predicate(p)
            ]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def independent_csms() -> AsyncIterator[IndependentCsms]:
    server = IndependentCsms()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
