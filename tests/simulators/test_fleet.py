"""The fleet runner: planning, ramp and summary as pure functions; a faulted fleet end to end."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from simclock import Clock
from simulators.behaviour import Behaviour
from simulators.faults import FaultPlan
from simulators.fleet import (
    Fleet,
    FleetCounts,
    FleetProgress,
    allocate,
    count,
    plan_fleet,
    ramp_delays,
    schedule,
    station_config,
    summarise,
)
from simulators.scenario import FaultRule, MixEntry, Scenario, StationSpec, named_mix
from simulators.station import StationSnapshot

START = datetime(2026, 7, 15, 16, tzinfo=UTC)
HANG_GUARD_S = 120  # generous: a fleet that never boots fails here instead of hanging


def test_residential_mix_of_20_has_four_of_each_model_with_matched_evs():
    plans = plan_fleet(Scenario(count=20, mix=named_mix("residential")))
    assert [p.station_id for p in plans][:2] == ["SIM-00001", "SIM-00002"]
    assert Counter(p.model for p in plans) == {m.model: 4 for m in named_mix("residential")}
    from iso15118_profiles import can_discharge

    assert all(can_discharge(p.ev, p.model).allowed for p in plans)


def test_bus_and_all_mixes_hold_the_brief_models():
    bus = {m.model for m in named_mix("bus")}
    assert bus == {f"tellus-{k}" for k in (20, 30, 40, 60)} | {
        f"incharge-{k}" for k in (22, 44, 66)
    } | {"heliox-44"}
    assert {m.model for m in named_mix("all")} == bus | {m.model for m in named_mix("residential")}
    evs = {p.ev for p in plan_fleet(Scenario(count=40, mix=named_mix("bus")))}
    assert evs and all(not e.startswith(("nissan", "kia", "ford")) for e in evs)


def test_weighted_allocation_follows_the_weights_and_interleaves():
    a, b = MixEntry("dcbel-ara", weight=3), MixEntry("heliox-44", weight=1)
    chosen = allocate((a, b), 8)
    assert Counter(e.model for e in chosen) == {"dcbel-ara": 6, "heliox-44": 2}
    assert chosen[:4].count(b) == 1  # mixed, not 6 then 2


def test_planning_is_reproducible_and_the_seed_matters():
    scenario = Scenario(count=30, mix=named_mix("all"), seed=5)
    assert plan_fleet(scenario) == plan_fleet(scenario)
    assert plan_fleet(scenario) != plan_fleet(replace(scenario, seed=6))


def test_fault_fraction_and_named_stations_get_their_plans():
    drop = FaultPlan(drop_connection_at_s=(60.0,), offline_for_s=30.0)
    slow = FaultPlan(answer_delay_s=1.0)
    scenario = Scenario(
        count=40,
        stations=(StationSpec("ARA-1", "dcbel-ara", faults=FaultPlan(reject_profiles=True)),),
        faults=(FaultRule(drop, fraction=0.1), FaultRule(slow, stations=("SIM-00002",))),
    )
    plans = {p.station_id: p for p in plan_fleet(scenario)}
    assert sum(p.faults == drop for p in plans.values()) in (3, 4, 5)  # 10 % of 41, less overlap
    assert plans["SIM-00002"].faults == slow  # a later rule wins
    assert plans["ARA-1"].faults in (FaultPlan(reject_profiles=True), drop)


def test_explicit_station_keeps_its_version_and_first_soc():
    scenario = Scenario(
        count=0,
        ocpp_version="2.1",
        stations=(StationSpec("F150", "ford-charge-station-pro", "ford-f150-lightning-98", 80.0),),
    )
    (plan,) = plan_fleet(scenario)
    assert plan.ocpp_version is None and plan.ev == "ford-f150-lightning-98"
    events = schedule(scenario, plan, START, START + timedelta(days=1), first=True)
    config = station_config(plan, "ws://127.0.0.1:9000/ocpp", events[0])
    assert config.ev is not None and config.ev.id == "ford-f150-lightning-98"
    assert config.soc_pct == 80.0 and config.departure is not None
    assert config.hardware.id == "ford-charge-station-pro"


def test_a_commuter_away_at_start_starts_with_no_car():
    scenario = Scenario(count=1, behaviour=Behaviour("commuter", jitter_min=0))
    (plan,) = plan_fleet(scenario)
    noon = datetime(2026, 7, 15, 16, tzinfo=UTC)  # noon in Boston, a Wednesday
    events = schedule(scenario, plan, noon, noon + timedelta(days=1), first=True)
    assert events[0].plugged and events[0].at > noon  # comes home later
    config = station_config(plan, "ws://h/ocpp", None)
    assert config.ev is None


def test_ramp_spreads_connections_at_the_rate():
    assert ramp_delays(5, 2.0) == [0.0, 0.5, 1.0, 1.5, 2.0]
    with pytest.raises(ValueError, match="ramp rate must be > 0"):
        ramp_delays(3, 0)


def snap(sid: str, **kw) -> StationSnapshot:
    base = dict(
        station_id=sid, model_id="dcbel-ara", ocpp_version="2.1", connected=True,
        registered=True, state="charging", power_w=1000.0, soc_pct=50.0, import_wh=1500.0,
        export_wh=0.0, messages_sent=10, messages_received=9, errors=0, queued_offline=0,
        transaction_id="t", v2x_allowed=False,
    )  # fmt: skip
    return StationSnapshot(**{**base, **kw})


def test_counts_and_summary_arithmetic():
    counts = count(
        [
            snap("a"),
            snap("b", state="discharging", export_wh=2500.0, errors=2),
            snap("c", connected=False, registered=False, state="offline", messages_sent=1),
        ]
    )
    assert counts == FleetCounts(3, 2, 2, 1, 1, 1, 2, 48, 4500.0, 2500.0)
    summary = summarise(
        counts, wall_s=12.0, ramp_s=2.0, hold_s=10.0, hold_messages=40,
        sim_start=START, sim_end=START + timedelta(minutes=10), name="t",
    )  # fmt: skip
    assert summary["energy_imported_kwh"] == 4.5 and summary["energy_exported_kwh"] == 2.5
    assert summary["messages_per_s"] == 4.0 and summary["messages"] == 48
    assert summary["sim_end"] == "2026-07-15T16:10:00Z"
    line = FleetProgress(1.0, START, counts, 12.0).line()
    assert "connected 2/3" in line and "discharging 1" in line and "12 msg/s" in line


@pytest.mark.e2e
async def test_fleet_with_an_injected_drop_reconnects(csms_sqlite):
    """E04-style outage: the faulted station drops at 300 sim s, stays away 60 sim s (speed 60:
    one wall second), reconnects, and the whole fleet is connected and booted at the end."""
    url = f"ws://127.0.0.1:{csms_sqlite.ocpp_port}/ocpp"
    drop = FaultPlan(drop_connection_at_s=(300.0,), offline_for_s=60.0)
    scenario = Scenario(
        count=4, mix=named_mix("residential"), faults=(FaultRule(drop, stations=("SIM-00002",)),)
    )
    fleet = Fleet(scenario, url, Clock.create(60.0, START))
    phases: list[str] = []  # "up" (connected) / "down", each change once

    def watch(_: FleetProgress) -> None:
        now = fleet.members[1].station.snapshot()
        phase = "up" if now.connected else "down"
        if (not phases and phase == "up") or (phases and phases[-1] != phase):
            phases.append(phase)
        everyone_up = all(s.registered and s.connected for s in fleet.snapshots())
        if phases == ["up", "down", "up"] and everyone_up:
            fleet.stop()

    summary = await asyncio.wait_for(
        fleet.run(hold_s=HANG_GUARD_S, progress_every_s=0.05, on_progress=watch), HANG_GUARD_S + 30
    )
    assert phases == ["up", "down", "up"]  # booted, dropped by the fault, back
    assert summary["connected"] == summary["booted"] == summary["stations"] == 4
    assert summary["errors"] == 0
