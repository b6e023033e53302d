"""Test charge points built on the `ocpp` library, connected to a CSMS over real websockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from csms.runtime import CentralSystem


class _RecordingStation:
    """Records what the CSMS asks of the station and accepts by default; the version's
    call_result module is the only difference between 2.1 and 2.0.1."""

    results: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.profile_status = "Accepted"

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, **kwargs: Any) -> Any:
        self.received.append(("SetChargingProfile", kwargs))
        return self.results.SetChargingProfile(status=self.profile_status)

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self.received.append(("SetVariables", {"set_variable_data": set_variable_data}))
        return self.results.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in set_variable_data
            ]
        )


class TestStation21(_RecordingStation, ChargePoint21):
    __test__ = False
    results = result21


class TestStation201(_RecordingStation, ChargePoint201):
    __test__ = False
    results = result201


CALLS = {"2.1": call21, "2.0.1": call201}


def ocpp_url(system: CentralSystem, station_id: str) -> str:
    return f"ws://127.0.0.1:{system.ocpp_port}/ocpp/{station_id}"


@contextlib.asynccontextmanager
async def connected(
    system: CentralSystem,
    station_id: str,
    version: str = "2.1",
    station_class: type | None = None,
    **connect_kwargs: Any,
) -> AsyncIterator[Any]:
    """A started test station; closed (and its reader task ended) on exit."""
    async with connected_to(
        ocpp_url(system, station_id), station_id, version, station_class, **connect_kwargs
    ) as station:
        yield station


@contextlib.asynccontextmanager
async def connected_to(
    url: str,
    station_id: str,
    version: str = "2.1",
    station_class: type | None = None,
    response_timeout: float = 10,
    **connect_kwargs: Any,
) -> AsyncIterator[Any]:
    """A started test station on a full OCPP URL (e.g. a `csms serve` child process)."""
    subprotocol = "ocpp2.1" if version == "2.1" else "ocpp2.0.1"
    cls = station_class or (TestStation21 if version == "2.1" else TestStation201)
    async with websockets.connect(url, subprotocols=[subprotocol], **connect_kwargs) as ws:
        station = cls(station_id, ws, response_timeout=response_timeout)
        reader = asyncio.create_task(station.start())
        try:
            yield station
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
