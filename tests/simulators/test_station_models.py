"""Every hardware model of the catalog against the independent `ocpp`-library CSMS.

Clock: speed 600 (10 sim minutes per wall second) unless a test names another; sim-time
bounds below name their speed. Waits are polls with the test timeout as the only hang guard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from iso15118_profiles import EvModel, ev_models, get_ev_model, pair_table
from simclock import Clock
from simulators.catalog import BPT_MODES, HardwareModel, hardware_models
from simulators.station import SimulatedStation, StationConfig
from tests.simulators.independent_csms import IndependentCsms, independent_csms

START = datetime(2026, 7, 15, 18, 0, tzinfo=UTC)
MODELS = sorted(hardware_models())


def matched_ev(hw: HardwareModel) -> EvModel:
    """The first EV the matched-pair table lets discharge on this EVSE model."""
    ev_id = sorted(pair_table().evs_by_evse[hw.id])[0]
    return get_ev_model(ev_id)


def unmatched_ev(hw: HardwareModel) -> EvModel:
    """A bidirectional EV whose matched EVSE is another model."""
    allowed = pair_table().evs_by_evse.get(hw.id, frozenset())
    return next(ev for ev in ev_models().values() if ev.bidirectional and ev.id not in allowed)


def speaks_v2x_21(hw: HardwareModel) -> bool:
    return hw.speaks_21 and bool(BPT_MODES & set(hw.energy_transfer_modes))


@contextlib.asynccontextmanager
async def running(station: SimulatedStation) -> AsyncIterator[SimulatedStation]:
    task = asyncio.create_task(station.run())
    try:
        yield station
    finally:
        await station.stop()
        await asyncio.wait_for(task, 10)


def station(
    csms_url: str,
    station_id: str,
    hw: HardwareModel,
    ev: EvModel | None,
    *,
    soc_pct: float = 60.0,
    speed: float = 600.0,
    **config: Any,
) -> SimulatedStation:
    cfg = StationConfig(station_id, hw, csms_url, ev=ev, soc_pct=soc_pct, **config)
    return SimulatedStation(cfg, Clock.create(speed=speed, start=START))


def samples(events: list[dict[str, Any]], measurand: str) -> list[float]:
    """One measurand's values over the recorded TransactionEvents, in order."""
    out = []
    for event in events:
        for mv in event.get("meterValue", []):
            out += [s["value"] for s in mv["sampledValue"] if s.get("measurand") == measurand]
    return out


def discharge_profile(version: str, tx_id: str, power_w: float, duration_s: int = 7200) -> dict:
    """A TxProfile that asks for `power_w` of export: 2.1 CentralSetpoint, 2.0.1 a negative
    limit (DESIGN §3.7)."""
    period: dict[str, Any] = {"startPeriod": 0}
    if version == "2.1":
        period |= {
            "operationMode": "CentralSetpoint",
            "setpoint": -power_w,
            "dischargeLimit": -power_w,
            "limit": power_w,
        }
    else:
        period["limit"] = -power_w
    return {
        "id": 42,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": tx_id,
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "W",
                "duration": duration_s,
                "chargingSchedulePeriod": [period],
            }
        ],
    }


async def set_profile(csms: IndependentCsms, sid: str, version: str, profile: dict) -> str:
    calls = call21 if version == "2.1" else call201
    answer = await csms.call(sid, calls.SetChargingProfile(evse_id=1, charging_profile=profile))
    return answer.status


async def allow_v2x(csms: IndependentCsms, sid: str, hw: HardwareModel, tx_id: str) -> None:
    """Q01 on 2.1: V2XChargingCtrlr.Enabled and a BPT mode for the running transaction."""
    enable = {
        "attribute_value": "true",
        "component": {"name": "V2XChargingCtrlr", "evse": {"id": 1}},
        "variable": {"name": "Enabled"},
    }
    answer = await csms.call(sid, call21.SetVariables(set_variable_data=[enable]))
    assert answer.set_variable_result[0]["attribute_status"] == "Accepted"
    bpt = sorted(BPT_MODES & set(hw.energy_transfer_modes))
    allowed = await csms.call(
        sid,
        call21.NotifyAllowedEnergyTransfer(transaction_id=tx_id, allowed_energy_transfer=bpt),
    )
    assert allowed.status == "Accepted"


async def tx_id_of(csms: IndependentCsms, sid: str) -> str:
    started = await csms.wait_for(sid, "TransactionEvent", lambda p: p["eventType"] == "Started")
    return started[0]["transactionInfo"]["transactionId"]


@pytest.mark.parametrize("model_id", MODELS)
async def test_B01_B07_K15_boot_report_and_charging_needs_per_model(model_id: str) -> None:
    """Boot strings are the catalog's; the report has V2XChargingCtrlr exactly on 2.1 V2X
    units; a matched pair announces V2X parameters on 2.1 only, an unmatched pair never."""
    hw = hardware_models()[model_id]
    async with independent_csms() as csms:
        one, two = (
            station(csms.url, "M1", hw, matched_ev(hw)),
            station(csms.url, "M2", hw, unmatched_ev(hw)),
        )
        async with running(one), running(two):
            boot = (await csms.wait_for("M1", "BootNotification"))[0]["chargingStation"]
            assert (boot["vendorName"], boot["model"], boot["firmwareVersion"]) == (
                hw.vendor_name,
                hw.model,
                hw.firmware_version,
            )
            assert boot["serialNumber"].startswith(hw.serial_prefix)
            calls = call21 if one.version == "2.1" else call201
            answer = await csms.call(
                "M1", calls.GetBaseReport(request_id=1, report_base="FullInventory")
            )
            assert answer.status == "Accepted"
            parts = await csms.wait_for("M1", "NotifyReport", lambda p: not p.get("tbc"))
            reports = csms.recorded["M1"].of("NotifyReport")
            components = {d["component"]["name"] for r in reports for d in r["reportData"]}
            assert ("V2XChargingCtrlr" in components) == speaks_v2x_21(hw)
            assert {"SmartChargingCtrlr", "SampledDataCtrlr", "OCPPCommCtrlr"} <= components
            assert [r["seqNo"] for r in reports] == list(range(len(reports)))
            assert parts
            matched = (await csms.wait_for("M1", "NotifyEVChargingNeeds"))[0]["chargingNeeds"]
            other = (await csms.wait_for("M2", "NotifyEVChargingNeeds"))[0]["chargingNeeds"]
    assert ("v2xChargingParameters" in matched) == speaks_v2x_21(hw)
    assert "v2xChargingParameters" not in other
    assert "_BPT" not in other["requestedEnergyTransfer"]
    if speaks_v2x_21(hw):
        assert matched["requestedEnergyTransfer"] in BPT_MODES
        v2x = matched["v2xChargingParameters"]
        assert 0 < v2x["maxDischargePower"] <= hw.max_discharge_w


@pytest.mark.parametrize("model_id", MODELS)
async def test_Q01_Q03_discharge_only_once_allowed_within_limits_per_model(model_id: str) -> None:
    """Speed 600, TxUpdatedInterval 30 sim s. Before Q01 a discharge profile runs as
    charging-only (no export); once allowed, export stays within the hardware limit, the SoC
    falls and the export register rises."""
    hw = hardware_models()[model_id]
    ev = matched_ev(hw)
    async with independent_csms() as csms:
        st = station(csms.url, "D1", hw, ev, meter_interval_s=30)
        async with running(st):
            tx = await tx_id_of(csms, "D1")
            await csms.wait_for("D1", "NotifyEVChargingNeeds")
            status = await set_profile(
                csms, "D1", st.version, discharge_profile(st.version, tx, hw.max_discharge_w)
            )
            assert status == "Accepted"
            if st.version == "2.1":
                mark = len(csms.recorded["D1"].of("TransactionEvent"))
                await csms.wait_for("D1", "TransactionEvent", count=mark + 4)
                before = csms.recorded["D1"].of("TransactionEvent")
                assert max(samples(before, "Power.Active.Export")) == 0
                assert max(samples(before, "Energy.Active.Export.Register")) == 0
                await allow_v2x(csms, "D1", hw, tx)
            mark = len(csms.recorded["D1"].of("TransactionEvent"))
            events = await csms.wait_for("D1", "TransactionEvent", count=mark + 6)
    after = events[mark:]
    exported = samples(after, "Power.Active.Export")
    assert max(exported) > 0.5 * min(hw.max_discharge_w, ev.max_discharge_kw * 1000)
    assert max(exported) <= hw.max_discharge_w + 1e-6
    registers = samples(after, "Energy.Active.Export.Register")
    assert registers == sorted(registers) and registers[-1] > registers[0]
    socs = samples(after, "SoC")
    assert socs[-1] < socs[0]


@pytest.mark.parametrize("model_id", MODELS)
async def test_Q03_ramp_and_bms_floor_never_crossed_per_model(model_id: str) -> None:
    """Speed 60, TxUpdatedInterval 1 sim s, the car 1.5 % above its BMS floor: the export
    power rises no faster than the hardware ramp between samples, and the SoC never goes
    below the floor however long the profile asks."""
    hw = hardware_models()[model_id]
    ev = matched_ev(hw)
    async with independent_csms() as csms:
        soc = ev.bms_min_soc_pct + 1.5
        st = station(csms.url, "F1", hw, ev, soc_pct=soc, speed=60, meter_interval_s=1)
        async with running(st):
            tx = await tx_id_of(csms, "F1")
            await csms.wait_for("F1", "NotifyEVChargingNeeds")
            if st.version == "2.1":
                await allow_v2x(csms, "F1", hw, tx)
            profile = discharge_profile(st.version, tx, hw.max_discharge_w)
            assert await set_profile(csms, "F1", st.version, profile) == "Accepted"
            mark = len(csms.recorded["F1"].of("TransactionEvent"))
            events = await csms.wait_for("F1", "TransactionEvent", count=mark + 40)
    after = events[mark:]
    power = samples(after, "Power.Active.Export")
    times = [datetime.fromisoformat(e["timestamp"]) for e in after if e.get("meterValue")]
    for i in range(1, min(len(power), len(times))):
        dt_s = (times[i] - times[i - 1]).total_seconds()
        assert power[i] - power[i - 1] <= hw.ramp_w_per_s * dt_s + 1.0
    assert max(power) > 0
    assert min(samples(after, "SoC")) >= ev.bms_min_soc_pct - 1e-6
    battery = st.evses[1].battery
    assert battery is not None and battery.soc_pct >= ev.bms_min_soc_pct - 1e-9


@pytest.mark.parametrize("model_id", MODELS)
async def test_Q01_unmatched_pair_never_discharges_per_model(model_id: str) -> None:
    """Speed 600: V2X allowed by the CSMS and a discharge profile accepted, yet a car on an
    EVSE that is not its matched one never exports (DOMAIN.md matched pairs)."""
    hw = hardware_models()[model_id]
    async with independent_csms() as csms:
        st = station(csms.url, "U1", hw, unmatched_ev(hw), meter_interval_s=30)
        async with running(st):
            tx = await tx_id_of(csms, "U1")
            await csms.wait_for("U1", "NotifyEVChargingNeeds")
            if st.version == "2.1":
                await allow_v2x(csms, "U1", hw, tx)
            await set_profile(
                csms, "U1", st.version, discharge_profile(st.version, tx, hw.max_discharge_w)
            )
            mark = len(csms.recorded["U1"].of("TransactionEvent"))
            events = await csms.wait_for("U1", "TransactionEvent", count=mark + 5)
    assert max(samples(events, "Power.Active.Export")) == 0
    assert max(samples(events, "Energy.Active.Export.Register")) == 0
