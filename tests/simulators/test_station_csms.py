"""Every hardware model against the project's own CSMS (`csms_sqlite`: a running
CentralSystem on real ports). Clock speed 600; waits are polls under the test timeout.

The CSMS side goes through its public pieces: the store it writes, `Commands` (GetBaseReport,
boot configuration, Q01 NotifyAllowedEnergyTransfer, SetChargingProfile through the discharge
gate)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from csms.runtime import CentralSystem
from csms.store.models import DeviceVariable, EvChargingNeeds, Station
from simulators.catalog import BPT_MODES, hardware_models
from tests.simulators.test_station_models import (
    MODELS,
    discharge_profile,
    matched_ev,
    running,
    speaks_v2x_21,
    station,
    unmatched_ev,
)


async def until(check: Callable[[], Awaitable[Any]]) -> Any:
    """Poll `check` until it returns something truthy (hang guard: the test timeout)."""
    while not (found := await check()):  # noqa: ASYNC110 (polls the store)
        await asyncio.sleep(0.05)
    return found


async def rows(system: CentralSystem, model: Any, station_id: str) -> list[Any]:
    async with system.services.db.read() as session:
        query = select(model).where(model.station_id == station_id)
        return list((await session.execute(query)).scalars())


async def booted_row(system: CentralSystem, station_id: str) -> Station | None:
    """The station's row once a BootNotification was stored."""
    async with system.services.db.read() as session:
        row = await session.get(Station, station_id)
    return row if row is not None and row.last_boot_at is not None else None


async def _at_least(found: Awaitable[list[Any]], count: int) -> list[Any] | None:
    items = await found
    return items if len(items) >= count else None


@pytest.mark.parametrize("model_id", MODELS)
async def test_B01_B07_K15_Q01_Q03_per_model_against_our_csms(
    csms_sqlite: CentralSystem, model_id: str
) -> None:
    """Boot strings and the device model are stored as the catalog says; the EV's needs offer
    BPT exactly on 2.1 V2X units; after boot configuration (V2XChargingCtrlr.Enabled) and Q01
    the gate lets a discharge TxProfile through and the station exports within its limit."""
    system, hw = csms_sqlite, hardware_models()[model_id]
    sid = f"own-{model_id}"[:48]
    url = f"ws://127.0.0.1:{system.ocpp_port}/ocpp"
    st = station(url, sid, hw, matched_ev(hw), meter_interval_s=30)
    commands = system.services.commands
    async with running(st):
        row = await until(lambda: booted_row(system, sid))
        assert (row.vendor, row.model, row.firmware_version) == (
            hw.vendor_name,
            hw.model,
            hw.firmware_version,
        )
        report = await commands.get_base_report(
            sid, {"requestId": 7, "reportBase": "FullInventory"}
        )
        assert report.status == "Accepted"
        total = len(st.dm.report("FullInventory"))
        variables = await until(lambda: _at_least(rows(system, DeviceVariable, sid), total))
        has_v2x = any(v.component == "V2XChargingCtrlr" for v in variables)
        assert has_v2x == speaks_v2x_21(hw)
        needs = await until(lambda: rows(system, EvChargingNeeds, sid))
        assert needs[-1].offers_bpt == speaks_v2x_21(hw)
        if not speaks_v2x_21(hw):
            return
        configured = await commands.configure_station(sid, force=True)
        assert configured.configured
        tx = st.evses[1].transaction_id
        bpt = sorted(BPT_MODES & set(hw.energy_transfer_modes))
        allowed = await commands.notify_allowed_energy_transfer(
            sid, {"transactionId": tx, "allowedEnergyTransfer": bpt}
        )
        assert allowed.status == "Accepted"
        profile = discharge_profile("2.1", tx, hw.max_discharge_w)
        result = await commands.set_charging_profile(sid, {"evseId": 1, "chargingProfile": profile})
        assert result.status == "Accepted", result.reason
        while st.snapshot().power_w > -0.5 * hw.max_discharge_w:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        snap = st.snapshot()
    assert -hw.max_discharge_w - 1e-6 <= snap.power_w < 0
    assert snap.export_wh > 0 and snap.v2x_allowed


async def test_Q01_gate_refuses_discharge_to_unmatched_pair_profile_runs_charging_only(
    csms_sqlite: CentralSystem,
) -> None:
    """Speed 600, 2.1 dcbel-ara with a car of another EVSE: the EV offers no BPT mode, so our
    gate refuses a discharge profile with a reason and it never reaches the station."""
    system, hw = csms_sqlite, hardware_models()["dcbel-ara"]
    url = f"ws://127.0.0.1:{system.ocpp_port}/ocpp"
    st = station(url, "own-unmatched", hw, unmatched_ev(hw))
    async with running(st):
        await until(lambda: rows(system, EvChargingNeeds, "own-unmatched"))
        tx = st.evses[1].transaction_id
        profile = discharge_profile("2.1", tx, hw.max_discharge_w)
        result = await system.services.commands.set_charging_profile(
            "own-unmatched", {"evseId": 1, "chargingProfile": profile}
        )
        assert result.failure == "refused" and result.reason
        assert st.engine.profiles() == []
        assert st.snapshot().export_wh == 0
