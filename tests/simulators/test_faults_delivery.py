"""Injected faults and the hardware's own dynamics change the power a station *delivers*, not
just what it answers: a derate, a slow answer (`answer_delay_s`), the response delay and the
ramp of the hardware, and a station offline across the end of its discharge profile (Q11 / E04).
Delivered power is read the way the CSMS reads it: from the meter values on the wire (export
register differences and Power.Active.Export), against the independent `ocpp`-library CSMS.
Clock speed 600 (10 sim minutes per wall second) unless a test says otherwise."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v21 import call as call21

from simclock import Clock, iso
from simulators.catalog import HardwareModel, get_hardware
from simulators.faults import FaultPlan
from simulators.station import SimulatedStation, StationConfig
from tests.simulators.independent_csms import IndependentCsms, independent_csms
from tests.simulators.test_station_models import (
    START,
    allow_v2x,
    discharge_profile,
    matched_ev,
    running,
    samples,
    set_profile,
    tx_id_of,
)

QUASAR = get_hardware("wallbox-quasar-2")  # 2.1, 11.5 kW both ways
FORD = get_hardware("ford-charge-station-pro")  # 2.0.1, negative limits, 9.6 kW export
SPEED = 600.0


def make_station(
    url: str, sid: str, hw: HardwareModel, clock: Clock, *, soc_pct: float = 60.0, **config: Any
) -> SimulatedStation:
    cfg = StationConfig(sid, hw, url, ev=matched_ev(hw), soc_pct=soc_pct, **config)
    return SimulatedStation(cfg, clock)


def shared_clock() -> Clock:
    return Clock.create(speed=SPEED, start=START)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def metered(events: list[dict[str, Any]]) -> list[tuple[datetime, dict[str, float]]]:
    """(timestamp, {measurand: value}) of every meter value in the recorded events."""
    out = []
    for event in events:
        for mv in event.get("meterValue", []):
            values = {s["measurand"]: s["value"] for s in mv["sampledValue"] if "measurand" in s}
            out.append((at(mv["timestamp"]), values))
    return out


def average_export_w(
    rows: list[tuple[datetime, dict[str, float]]], start: datetime, end: datetime
) -> float:
    """Average export power (W) over [start, end] from export register differences between
    the first and last meter values inside the window."""
    inside = [(t, v) for t, v in rows if start <= t <= end]
    assert len(inside) >= 2, f"need two meter values in {start}..{end}"
    (t0, v0), (t1, v1) = inside[0], inside[-1]
    wh = v1["Energy.Active.Export.Register"] - v0["Energy.Active.Export.Register"]
    return wh * 3600.0 / (t1 - t0).total_seconds()


def register_at(rows: list[tuple[datetime, dict[str, float]]], when: datetime) -> float:
    """The export register at `when`, linear between the meter values around it."""
    before = [(t, v["Energy.Active.Export.Register"]) for t, v in rows if t <= when]
    after = [(t, v["Energy.Active.Export.Register"]) for t, v in rows if t >= when]
    (t0, r0), (t1, r1) = before[-1], after[0]
    if t1 == t0:
        return r0
    return r0 + (r1 - r0) * (when - t0).total_seconds() / (t1 - t0).total_seconds()


async def wait_sim(st: SimulatedStation, elapsed_s: float) -> None:
    """Until the station has run `elapsed_s` sim seconds (hang guard: the test timeout)."""
    assert st.started_at is not None
    left = elapsed_s - (st.clock.now() - st.started_at).total_seconds()
    await asyncio.sleep(max(0.0, st.clock.wall_seconds(left)) + 0.05)


async def discharge_21(csms: IndependentCsms, st: SimulatedStation, power_w: float) -> str:
    """Q01 and a CentralSetpoint TxProfile asking `power_w` of export; the transaction id."""
    sid = st.station_id
    tx = await tx_id_of(csms, sid)
    await csms.wait_for(sid, "NotifyEVChargingNeeds")
    await allow_v2x(csms, sid, st.hw, tx)
    assert await set_profile(csms, sid, "2.1", discharge_profile("2.1", tx, power_w)) == "Accepted"
    return tx


async def test_derate_step_halves_delivered_export_while_the_setpoint_stays() -> None:
    """Speed 600, meter values every 60 sim s. A full-power discharge (11.5 kW); at sim
    1800 s the fault plan derates the EVSE to 0.5: the delivered export (register
    differences) halves, while the composite schedule still carries the full setpoint."""
    full_w = QUASAR.max_discharge_w
    faults = FaultPlan(derate=((1800.0, 0.5),))
    async with independent_csms() as csms:
        st = make_station(
            csms.url, "DR5", QUASAR, shared_clock(), meter_interval_s=60, faults=faults
        )
        async with running(st):
            await discharge_21(csms, st, full_w)
            await wait_sim(st, 3100)
            composite = await csms.call(
                "DR5", call21.GetCompositeSchedule(duration=300, evse_id=1, charging_rate_unit="W")
            )
    assert st.started_at is not None
    rows = metered(csms.recorded["DR5"].of("TransactionEvent"))
    before = average_export_w(
        rows, st.started_at + timedelta(seconds=600), st.started_at + timedelta(seconds=1790)
    )
    after = average_export_w(
        rows, st.started_at + timedelta(seconds=1810), st.started_at + timedelta(seconds=3050)
    )
    assert before == pytest.approx(full_w, rel=0.02)
    assert after == pytest.approx(0.5 * full_w, rel=0.02)
    power = [
        v["Power.Active.Export"] for t, v in rows if t > st.started_at + timedelta(seconds=1810)
    ]
    assert max(power) <= 0.5 * full_w + 1.0
    period = composite.schedule["charging_schedule_period"][0]
    assert period["setpoint"] == pytest.approx(-full_w), "the station was asked for full power"


async def test_answer_delay_delays_the_power_not_only_the_answer() -> None:
    """Speed 600. Two identical stations on one clock get the same 11.5 kW discharge profile
    at the same moment; one answers 1 wall second (600 sim s) late. Its export starts that
    much later and it has delivered P × 600 s less energy at a common later instant."""
    clock = shared_clock()
    full_w = QUASAR.max_discharge_w
    delay_s = 1.0
    async with independent_csms() as csms:
        fast = make_station(csms.url, "FAST", QUASAR, clock, meter_interval_s=30)
        slow = make_station(
            csms.url,
            "SLOW",
            QUASAR,
            clock,
            meter_interval_s=30,
            faults=FaultPlan(answer_delay_s=delay_s),
        )
        async with running(fast), running(slow):
            txs = {}
            for st in (fast, slow):
                txs[st.station_id] = await tx_id_of(csms, st.station_id)
                await csms.wait_for(st.station_id, "NotifyEVChargingNeeds")
                await allow_v2x(csms, st.station_id, QUASAR, txs[st.station_id])
            sent_at, wall = clock.now(), time.monotonic()
            statuses = await asyncio.gather(
                *(
                    set_profile(csms, sid, "2.1", discharge_profile("2.1", tx, full_w))
                    for sid, tx in txs.items()
                )
            )
            answered_wall_s = time.monotonic() - wall
            await wait_sim(fast, (clock.now() - fast.started_at).total_seconds() + 1500)
    assert statuses == ["Accepted", "Accepted"]
    assert answered_wall_s >= delay_s
    delay_sim_s = delay_s * SPEED

    def first_export(sid: str) -> float:
        rows = metered(csms.recorded[sid].of("TransactionEvent"))
        t = next(t for t, v in rows if v["Power.Active.Export"] > 0 and t >= sent_at)
        return (t - sent_at).total_seconds()

    assert first_export("FAST") <= 30 + 30, "within one meter interval (and the answer's latency)"
    assert first_export("SLOW") >= 0.95 * delay_sim_s
    common = sent_at + timedelta(seconds=1400)
    fast_wh = register_at(metered(csms.recorded["FAST"].of("TransactionEvent")), common)
    slow_wh = register_at(metered(csms.recorded["SLOW"].of("TransactionEvent")), common)
    lost_wh = full_w * delay_sim_s / 3600.0
    assert fast_wh - slow_wh == pytest.approx(lost_wh, rel=0.1)


async def test_response_delay_and_ramp_of_the_hardware_shape_delivered_power() -> None:
    """Speed 600, meter values every 30 sim s. A unit that answers at once but whose power
    electronics react 300 sim s late and ramp at 10 W/s (a variant of the Quasar 2), with a
    full battery (so nothing is charging before): export is 0 for 300 s after the profile,
    then rises 10 W/s to 11.5 kW; the export register is the integral of that ramp, far from
    what an echo of the setpoint would show."""
    hw = replace(QUASAR, response_delay_s=300.0, ramp_kw_per_s=0.01)
    ramp_w_per_s, delay_s, full_w = 10.0, 300.0, QUASAR.max_discharge_w
    clock = shared_clock()
    async with independent_csms() as csms:
        st = make_station(csms.url, "SLEW", hw, clock, soc_pct=100.0, meter_interval_s=30)
        async with running(st):
            tx = await tx_id_of(csms, "SLEW")
            await csms.wait_for("SLEW", "NotifyEVChargingNeeds")
            await allow_v2x(csms, "SLEW", hw, tx)
            lo = clock.now()
            status = await set_profile(csms, "SLEW", "2.1", discharge_profile("2.1", tx, full_w))
            hi = clock.now()
            await wait_sim(st, (hi - st.started_at).total_seconds() + 1700)
    assert status == "Accepted"
    rows = [(t, v) for t, v in metered(csms.recorded["SLEW"].of("TransactionEvent")) if t >= lo]

    def expected_w(t: datetime, installed: datetime) -> float:
        ramping_s = (t - installed).total_seconds() - delay_s
        return min(max(ramp_w_per_s * ramping_s, 0.0), full_w)

    for t, v in rows:
        power = v["Power.Active.Export"]
        assert expected_w(t, hi) - 20.0 <= power <= expected_w(t, lo) + 20.0, t
    assert any(0 < v["Power.Active.Export"] < full_w - 100 for _, v in rows), "seen mid-ramp"
    ramp_end = hi + timedelta(seconds=delay_s + full_w / ramp_w_per_s)
    registered = register_at(rows, ramp_end) - rows[0][1]["Energy.Active.Export.Register"]
    ramp_wh = 0.5 * full_w * (full_w / ramp_w_per_s) / 3600.0
    slack_wh = full_w * (hi - lo).total_seconds() / 3600.0 + 5.0
    assert ramp_wh - slack_wh <= registered <= ramp_wh + slack_wh
    echo_wh = full_w * (ramp_end - hi).total_seconds() / 3600.0
    assert registered < 0.5 * echo_wh


def absolute_profile(version: str, tx: str, power_w: float, start: datetime, end: datetime) -> dict:
    """The dispatcher's shape (DESIGN.md §3.7): a TxProfile bound to the transaction whose
    schedule starts now and ends at the event's end, with maxOfflineDuration beyond it (2.1)."""
    profile = discharge_profile(version, tx, power_w, duration_s=int((end - start).total_seconds()))
    profile["chargingProfileKind"] = "Absolute"
    profile["chargingSchedule"][0]["startSchedule"] = iso(start)
    if version == "2.1":  # a 2.1 field (Q11); a 2.0.1 profile keeps running offline anyway
        profile["maxOfflineDuration"] = 7200
    return profile


def dynamic_profile(tx: str, power_w: float, start: datetime, end: datetime) -> dict:
    """2.1 Dynamic: one live period; its schedule duration is the dead-man that ends it when
    no UpdateDynamicSchedule refreshes it (an offline station gets none)."""
    profile = discharge_profile("2.1", tx, power_w, duration_s=int((end - start).total_seconds()))
    profile["chargingProfileKind"] = "Dynamic"
    profile["maxOfflineDuration"] = 7200
    return profile


@pytest.mark.parametrize("shape", ["2.1-absolute", "2.1-dynamic", "2.0.1-negative-limit"])
async def test_Q11_E04_offline_station_discharges_until_its_profile_ends_then_charges(
    shape: str,
) -> None:
    """Speed 600, meter values every 60 sim s. The discharge profile ends at sim 1500 s; the
    link drops at 900 s and stays down until 2700 s. Offline, the station keeps exporting
    until 1500 s, then charges by itself; on reconnect every TransactionEvent made offline
    arrives with offline=true, in seqNo order, before the live ones."""
    hw = FORD if shape.startswith("2.0.1") else QUASAR
    faults = FaultPlan(drop_connection_at_s=(900.0,), offline_for_s=1800.0)
    clock = shared_clock()
    async with independent_csms() as csms:
        st = make_station(csms.url, "OFF", hw, clock, meter_interval_s=60, faults=faults)
        async with running(st):
            tx = await tx_id_of(csms, "OFF")
            await csms.wait_for("OFF", "NotifyEVChargingNeeds")
            if st.version == "2.1":
                await allow_v2x(csms, "OFF", hw, tx)
            assert st.started_at is not None
            start = clock.now().replace(microsecond=0)
            end = st.started_at + timedelta(seconds=1500)
            if shape == "2.1-dynamic":
                profile = dynamic_profile(tx, 5000.0, start, end)
            else:
                profile = absolute_profile(st.version, tx, 5000.0, start, end)
            assert await set_profile(csms, "OFF", st.version, profile) == "Accepted"
            await csms.wait_for(
                "OFF",
                "TransactionEvent",
                lambda p: at(p["timestamp"]) >= st.started_at + timedelta(seconds=2900),
            )
    events = csms.recorded["OFF"].of("TransactionEvent")
    assert [e["seqNo"] for e in events] == list(range(len(events))), "in order, none lost"
    elapsed = [(at(e["timestamp"]) - st.started_at).total_seconds() for e in events]
    flags = [bool(e.get("offline")) for e in events]
    # Offline from the planned drop (900 s) until the reconnect (2700 s plus the drop's
    # wake-up latency and the handshake): made before it online, during it offline.
    assert all(f == (s >= 900) for f, s in zip(flags, elapsed, strict=True) if s < 2700)
    first, count = flags.index(True), flags.count(True)
    assert all(flags[first : first + count]), "one offline block, replayed before the live ones"
    assert elapsed[first + count] >= 2700, "live events again after the reconnect"
    offline = events[first : first + count]
    rows = metered(offline)
    end = st.started_at + timedelta(seconds=1500)
    during = [v for t, v in rows if t < end - timedelta(seconds=5)]
    after = [v for t, v in rows if t > end + timedelta(seconds=30)]
    assert during and after
    assert all(v["Power.Active.Export"] > 4500 and v["Power.Active.Import"] == 0 for v in during)
    assert all(v["Power.Active.Export"] == 0 and v["Power.Active.Import"] > 0 for v in after)
    exported = [v["Energy.Active.Export.Register"] for v in after]
    assert exported[0] == exported[-1], "no export after the profile's end"
    assert samples(offline, "SoC")[-1] > min(samples(offline, "SoC")), "charging again"
