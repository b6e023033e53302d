"""`csms demo`: the foundation shown end to end in one process.

A CSMS on a temporary SQLite file, a handful of stations built on the `ocpp` library (half on
OCPP 2.1 with an EV offering DC_BPT, half on 2.0.1), each booting, plugging in, starting a
transaction and metering; then one discharge profile per station pushed through the REST API,
through the discharge gate, and the stations' answers printed. Stations that have not shown they
can discharge are refused by the gate, which the summary shows too.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from csms.runtime import CentralSystem
from csms.settings import Settings
from simclock import iso

DISCHARGE_W = -7000


@dataclass
class DemoOutcome:
    station_id: str
    version: str
    can_discharge: bool
    http_status: int
    answer: dict[str, Any]


class _Station21(ChargePoint21):
    @on("SetChargingProfile")
    async def on_profile(self, **_: Any) -> result21.SetChargingProfile:
        return result21.SetChargingProfile(status="Accepted")

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return result21.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in set_variable_data
            ]
        )


class _Station201(ChargePoint201):
    @on("SetChargingProfile")
    async def on_profile(self, **_: Any) -> result201.SetChargingProfile:
        return result201.SetChargingProfile(status="Accepted")

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return result201.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in set_variable_data
            ]
        )


def _meter(at: str, import_wh: float, export_wh: float, power_w: float, soc: int) -> dict[str, Any]:
    """A meter value in the library's snake_case (it converts to the spec's camelCase)."""

    def sample(measurand: str, value: float, unit: str) -> dict[str, Any]:
        return {"measurand": measurand, "value": value, "unit_of_measure": {"unit": unit}}

    return {
        "timestamp": at,
        "sampled_value": [
            sample("Energy.Active.Import.Register", import_wh, "Wh"),
            sample("Energy.Active.Export.Register", export_wh, "Wh"),
            sample("Power.Active.Import", max(power_w, 0.0), "W"),
        ],
    }


@dataclass(frozen=True)
class _Kind:
    version: str
    offers_bpt: bool  # 2.1: the EV announces DC_BPT; 2.0.1: the operator marks negative limits
    vendor: str
    model: str


# One of each case the discharge gate decides (DESIGN.md §3.6a), cycled over the stations.
KINDS = (
    _Kind("2.1", True, "dcbel", "Ara"),
    _Kind("2.1", False, "Wallbox", "Quasar 2"),
    _Kind("2.0.1", True, "Heliox", "Flex 44"),
    _Kind("2.0.1", False, "Tellus Power", "Green 40"),
)


def _discharge_request(
    kind: _Kind, profile_id: int, transaction_id: str, now: str
) -> dict[str, Any]:
    period: dict[str, Any] = {"startPeriod": 0}
    if kind.version == "2.1":  # Q03: central setpoint, kept inside [dischargeLimit, limit]
        period |= {
            "operationMode": "CentralSetpoint",
            "setpoint": DISCHARGE_W,
            "dischargeLimit": -11000,
            "limit": 11000,
        }
    else:  # 2.0.1 knows discharge only as a negative limit
        period |= {"limit": DISCHARGE_W}
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "transactionId": transaction_id,
        "chargingSchedule": [
            {
                "id": profile_id,
                "startSchedule": now,
                "duration": 3600,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [period],
            }
        ],
    }
    if kind.version == "2.1":
        profile["maxOfflineDuration"] = 3600
    return {"evseId": 1, "chargingProfile": profile}


async def _plug_in(cp: Any, kind: _Kind, station_id: str, now: str) -> str:
    calls = call21 if kind.version == "2.1" else call201
    await cp.call(
        calls.BootNotification(
            charging_station={"vendor_name": kind.vendor, "model": kind.model}, reason="PowerUp"
        )
    )
    await cp.call(
        calls.StatusNotification(
            timestamp=now, connector_status="Occupied", evse_id=1, connector_id=1
        )
    )
    transaction_id = f"TX-{station_id}"
    await cp.call(
        calls.TransactionEvent(
            event_type="Started",
            timestamp=now,
            trigger_reason="CablePluggedIn",
            seq_no=0,
            transaction_info={"transaction_id": transaction_id, "charging_state": "EVConnected"},
            evse={"id": 1, "connector_id": 1},
            meter_value=[_meter(now, 1000.0, 0.0, 0.0, 70)],
        )
    )
    transfer = "DC_BPT" if kind.version == "2.1" and kind.offers_bpt else "DC"
    needs: dict[str, Any] = {
        "requested_energy_transfer": transfer,
        "dc_charging_parameters": {"ev_max_current": 200, "ev_max_voltage": 450},
    }
    if kind.version == "2.1" and kind.offers_bpt:
        needs["v2x_charging_parameters"] = {"max_charge_power": 11000, "max_discharge_power": 11000}
    await cp.call(calls.NotifyEVChargingNeeds(evse_id=1, charging_needs=needs))
    return transaction_id


async def _demo_station(
    system: CentralSystem, api: httpx.AsyncClient, index: int, kind: _Kind
) -> DemoOutcome:
    station_id = f"DEMO-{index:02d}"
    url = f"ws://127.0.0.1:{system.ocpp_port}/ocpp/{station_id}"
    subprotocol = "ocpp2.1" if kind.version == "2.1" else "ocpp2.0.1"
    cls = _Station21 if kind.version == "2.1" else _Station201
    async with websockets.connect(url, subprotocols=[subprotocol]) as ws:
        cp = cls(station_id, ws, response_timeout=15)
        reader = asyncio.create_task(cp.start())
        try:
            now = iso(system.services.clock.now())
            transaction_id = await _plug_in(cp, kind, station_id, now)
            if kind.version == "2.0.1" and kind.offers_bpt:  # the operator vouches for it
                marked = await api.patch(
                    f"/api/v1/stations/{station_id}", json={"accepts_negative_limits": True}
                )
                marked.raise_for_status()
            body = _discharge_request(kind, 1000 + index, transaction_id, now)
            response = await api.post(f"/api/v1/stations/{station_id}/charging-profiles", json=body)
            return DemoOutcome(
                station_id, kind.version, kind.offers_bpt, response.status_code, response.json()
            )
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def run_demo(stations: int, database_dir: Path) -> list[DemoOutcome]:
    settings = Settings(
        ocpp_port=0,
        api_port=0,
        allow_unknown_stations=True,
        database_url=f"sqlite+aiosqlite:///{database_dir / 'demo.db'}",
    )
    system = CentralSystem(settings)
    await system.start()
    try:
        base = f"http://127.0.0.1:{system.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            return list(
                await asyncio.gather(
                    *(
                        _demo_station(system, api, i + 1, KINDS[i % len(KINDS)])
                        for i in range(stations)
                    )
                )
            )
    finally:
        await system.stop()


def describe(outcome: DemoOutcome) -> str:
    capability = "can discharge" if outcome.can_discharge else "has not shown it can discharge"
    if outcome.http_status == 200:
        verdict = f"station answered {outcome.answer.get('status')}"
    else:
        verdict = f"refused ({outcome.http_status}): {outcome.answer.get('detail')}"
    return f"{outcome.station_id}  OCPP {outcome.version:<5}  {capability:<31}  {verdict}"


def main(stations: int) -> list[DemoOutcome]:
    with tempfile.TemporaryDirectory(prefix="csms-demo-") as tmp:
        return asyncio.run(run_demo(stations, Path(tmp)))
