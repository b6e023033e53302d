"""`csms demo`: the foundation shown end to end in one process, on simulated hardware.

A CSMS on a temporary SQLite file and simulated stations of four kinds, each with a car plugged
in: a dcbel Ara with a Nissan LEAF (OCPP 2.1, a matched pair: the car offers DC_BPT), a Wallbox
Quasar 2 with a car matched to another charger (it offers charging only), a Heliox 44 with a
school bus (OCPP 2.0.1, marked by the operator as accepting negative limits), and a Ford Charge
Station Pro (2.0.1, not marked). Each boots and is configured, starts a transaction and reports
its needs; then one discharge profile per station goes through the REST API and the discharge
gate. Where bidirectional transfer was allowed (Q01 on 2.1), the stations export: the summary
shows the gate's decision, the station's answer, and the energy its export register counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from csms.runtime import CentralSystem
from csms.settings import Settings
from iso15118_profiles import can_discharge, get_ev_model
from simclock import Clock
from simulators.catalog import hardware_models
from simulators.station import SimulatedStation, StationConfig

DISCHARGE_W = 7000.0
SPEED = 60.0  # one wall second is a simulated minute: a few seconds show kWh moving
EXPORT_SIM_S = 600.0  # how long the demo lets the stations discharge (simulated)
HANG_GUARD_S = 60.0


@dataclass(frozen=True)
class Case:
    model: str
    ev: str
    version: str
    marked: bool  # 2.0.1: the operator vouches that it discharges on a negative limit

    @property
    def can_discharge(self) -> bool:
        """2.1: the pair is matched, so the car offers BPT; 2.0.1: the operator's mark."""
        if self.version == "2.1":
            return can_discharge(self.ev, self.model).allowed
        return self.marked


# One of each decision the discharge gate makes (DESIGN.md §3.6a), cycled over the stations.
CASES = (
    Case("dcbel-ara", "nissan-leaf-40", "2.1", marked=False),
    Case("wallbox-quasar-2", "nissan-leaf-40", "2.1", marked=False),  # not its matched EVSE
    Case("heliox-44", "thomas-built-246", "2.0.1", marked=True),
    Case("ford-charge-station-pro", "ford-f150-lightning-98", "2.0.1", marked=False),
)


@dataclass
class DemoOutcome:
    station_id: str
    case: Case
    http_status: int
    answer: dict[str, Any]
    exported_kwh: float = 0.0
    soc_before: float | None = None
    soc_after: float | None = None

    @property
    def can_discharge(self) -> bool:
        return self.case.can_discharge


def _discharge_request(case: Case, profile_id: int, transaction_id: str) -> dict[str, Any]:
    period: dict[str, Any] = {"startPeriod": 0}
    if case.version == "2.1":  # Q03: a central setpoint inside [dischargeLimit, limit]
        period |= {
            "operationMode": "CentralSetpoint",
            "setpoint": -DISCHARGE_W,
            "dischargeLimit": -2 * DISCHARGE_W,
            "limit": 2 * DISCHARGE_W,
        }
    else:  # 2.0.1 knows discharge only as a negative limit
        period |= {"limit": -DISCHARGE_W}
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": transaction_id,
        "chargingSchedule": [
            {
                "id": profile_id,
                "duration": 3600,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [period],
            }
        ],
    }
    if case.version == "2.1":
        profile["maxOfflineDuration"] = 3600  # Q11: stop discharging if we lose it for an hour
    return {"evseId": 1, "chargingProfile": profile}


async def _until(check: Callable[[], Any], what: str) -> Any:
    async with asyncio.timeout(HANG_GUARD_S):
        while not (found := await check()):  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(0.2)
    return found


async def _running_transaction(api: httpx.AsyncClient, station_id: str) -> str | None:
    detail = (await api.get(f"/api/v1/stations/{station_id}")).json()
    needs = [e for e in detail.get("evses", []) if e.get("ev_needs")]
    running = detail.get("running_transactions") or []
    return running[0]["transaction_id"] if running and needs else None


async def _prepare(system: CentralSystem, api: httpx.AsyncClient, sid: str, case: Case) -> str:
    """Wait for the car's transaction and needs; then what an operator or the V2G dispatcher
    would do: mark a 2.0.1 unit, allow bidirectional transfer on 2.1 (Q01)."""
    tx = await _until(lambda: _running_transaction(api, sid), f"{sid} transaction")
    if case.marked:
        marked = await api.patch(f"/api/v1/stations/{sid}", json={"accepts_negative_limits": True})
        marked.raise_for_status()
    if case.version == "2.1" and case.can_discharge:
        request = {"transactionId": tx, "allowedEnergyTransfer": ["DC_BPT"]}
        assert system.services.commands is not None
        await system.services.commands.notify_allowed_energy_transfer(sid, request)
    return tx


@contextlib.asynccontextmanager
async def _stations(
    system: CentralSystem, count: int
) -> AsyncIterator[list[tuple[SimulatedStation, Case]]]:
    url = f"ws://127.0.0.1:{system.ocpp_port}/ocpp"
    catalog = hardware_models()
    fleet = []
    for index in range(count):
        case = CASES[index % len(CASES)]
        config = StationConfig(
            f"DEMO-{index + 1:02d}",
            catalog[case.model],
            url,
            ocpp_version=case.version,
            ev=get_ev_model(case.ev),
            soc_pct=70.0,
        )
        fleet.append((SimulatedStation(config, system.services.clock), case))
    tasks = [asyncio.create_task(station.run()) for station, _ in fleet]
    try:
        yield fleet
    finally:
        await asyncio.gather(*(station.stop() for station, _ in fleet))
        await asyncio.wait(tasks, timeout=HANG_GUARD_S)


async def _push(
    system: CentralSystem, api: httpx.AsyncClient, index: int, station: SimulatedStation, case: Case
) -> DemoOutcome:
    sid = station.config.station_id
    tx = await _prepare(system, api, sid, case)
    before = station.snapshot()
    body = _discharge_request(case, 1000 + index, tx)
    response = await api.post(f"/api/v1/stations/{sid}/charging-profiles", json=body)
    return DemoOutcome(sid, case, response.status_code, response.json(), 0.0, before.soc_pct)


async def run_demo(stations: int, database_dir: Path) -> list[DemoOutcome]:
    clock = Clock.create(SPEED, datetime.now(UTC).replace(microsecond=0))
    settings = Settings(
        ocpp_port=0,
        api_port=0,
        allow_unknown_stations=True,
        database_url=f"sqlite+aiosqlite:///{database_dir / 'demo.db'}",
        clock=clock,
    )
    system = CentralSystem(settings)
    await system.start()
    try:
        base = f"http://127.0.0.1:{system.api_port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as api,
            _stations(system, stations) as fleet,
        ):
            outcomes = await asyncio.gather(
                *(_push(system, api, i, st, case) for i, (st, case) in enumerate(fleet))
            )
            exported_before = [st.snapshot().export_wh for st, _ in fleet]
            await clock.sleep(EXPORT_SIM_S)
            for outcome, (st, _), start_wh in zip(outcomes, fleet, exported_before, strict=True):
                after = st.snapshot()
                outcome.exported_kwh = (after.export_wh - start_wh) / 1000
                outcome.soc_after = after.soc_pct
            return list(outcomes)
    finally:
        await system.stop()


def describe(outcome: DemoOutcome) -> str:
    case = outcome.case
    who = f"{outcome.station_id}  {case.model:<24} {case.ev:<23} OCPP {case.version:<5}"
    if outcome.http_status != 200:
        return f"{who}  refused ({outcome.http_status}): {outcome.answer.get('detail')}"
    soc = ""
    if outcome.soc_before is not None and outcome.soc_after is not None:
        soc = f", SoC {outcome.soc_before:.1f} -> {outcome.soc_after:.1f} %"
    return (
        f"{who}  station answered {outcome.answer.get('status')}: "
        f"exported {outcome.exported_kwh:.2f} kWh in {EXPORT_SIM_S / 60:g} simulated min{soc}"
    )


def main(stations: int) -> list[DemoOutcome]:
    with tempfile.TemporaryDirectory(prefix="csms-demo-") as tmp:
        return asyncio.run(run_demo(stations, Path(tmp)))
