"""Issue 5 acceptance, end to end: `csms serve` and `csms-sim fleet` as real processes over real
websockets on one simulated clock (speed 60), 52 mixed stations, one ConnectedSolutions event
with derates and answer delays injected, an opt-out, an unplug and a station killed mid-event.

The same run is made twice, with the closed loop on and off (an event setting), so the loop's
worth is measured rather than assumed. Bounds in simulated time name the speed (60).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from csms.demo import DemoCar, demo_fleet
from csms.scheduler.planner import Efficiency, EventWindow, PlanRequest, Vehicle, plan_discharge
from iso15118_profiles import get_ev_model
from simclock import iso, parse_instant
from simulators.catalog import hardware_models
from tests.e2e.harness import (
    Faults,
    SimClock,
    event_when,
    free_port,
    ready_and_enrolled,
    scenario_toml,
    start_fleet,
    start_serve,
    stop,
    tail,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SPEED = 60.0
CLOCK_START = "2026-07-15T18:20:00Z"  # 2:20 pm in Boston, a Wednesday in summer
EVENT_START = parse_instant("2026-07-15T19:00:00Z")  # 3 pm local, inside the 3-8 pm window
EVENT_MIN = 60
STATIONS = 52
OPT_OUT_AT = EVENT_START + timedelta(minutes=20)
UNPLUG_AT = EVENT_START + timedelta(minutes=25)
KILL_AT = EVENT_START + timedelta(minutes=30)
OFFLINE_MIN = 50  # the killed station is back 20 min after the end, with its offline queue
METER_INTERVAL_S = 60
FIXED = (0, 1, 2)  # the opt-out, the unplug and the killed station (residential)
LOW_SOC_MODELS = ("dcbel-ara", "wallbox-quasar-2")
TRIPPED = 14
RESERVE_PCT = 3.5
ENERGY_LIMITED_SHARE = 0.4


def _cars() -> list[DemoCar]:
    """Evening arrivals, SoC 45-75 %. The residential cars on DC chargers (dcbel, Wallbox)
    arrive low enough that, after charging until the event, they hold above their floors only
    40 % of what their charger exports in the hour: they run out of energy before the window
    ends, so a shortfall while tripped stays in the battery and a re-plan can spend it later."""
    cars = demo_fleet(STATIONS, seed=11)
    out = []
    for i, car in enumerate(cars):
        soc = 45.0 + (i * 7) % 31
        if car.model in LOW_SOC_MODELS and i not in FIXED:
            soc = _arrival_soc_for_budget(car, ENERGY_LIMITED_SHARE)
        out.append(dataclasses.replace(car, soc_pct=soc))
    return out


def _arrival_soc_for_budget(car: DemoCar, share: float) -> float:
    """The SoC at the clock start that leaves `share` x (rated export x window) above the
    floor at the event start, after charging at full power until then."""
    ev, hw = get_ev_model(car.ev), hardware_models()[car.model]
    export_kw = min(hw.max_discharge_kw, ev.max_discharge_kw)
    charge_kw = min(hw.max_charge_kw, ev.max_charge_w(hw.current_type) / 1000.0)
    before_h = (EVENT_START - parse_instant(CLOCK_START)).total_seconds() / 3600.0
    charged_kwh = charge_kw * before_h * 0.93
    budget_kwh = share * export_kw * EVENT_MIN / 60.0
    soc = car.floor_pct + 100.0 * (budget_kwh - charged_kwh) / ev.usable_capacity_kwh
    return round(max(soc, ev.bms_min_soc_pct + 1.0), 1)


def _energy_limited(car: DemoCar) -> bool:
    return car.model in LOW_SOC_MODELS and car.soc_pct < 45.0


def _at(instant: Any) -> float:
    """Simulated seconds from the clock start (the stations start then) to `instant`."""
    return (instant - parse_instant(CLOCK_START)).total_seconds()


@dataclasses.dataclass
class Run:
    closed_loop: bool
    cars: list[DemoCar]
    enrolled: dict[str, int]
    event: dict[str, Any]
    report: dict[str, Any]
    opted_out: str
    unplugged: str
    killed: str
    killed_after_end: list[dict[str, Any]]
    plans: int
    log: Path


def _plan_faults(cars: list[DemoCar]) -> tuple[dict[str, Faults], str, str, str]:
    residential = [c for c in cars if c.participant_class == "residential"]
    limited = [c for c in residential if _energy_limited(c)]
    opted, unplugged, killed = residential[0], residential[1], residential[2]
    faults: dict[str, Faults] = {}
    busy = {opted.station_id, unplugged.station_id, killed.station_id}
    for car in [c for c in limited if c.station_id not in busy][:TRIPPED]:
        start = _at(EVENT_START + timedelta(minutes=5))  # an inverter trip for 20 minutes
        faults[car.station_id] = Faults(derate=[(0, 1.0), (start, 0.05), (start + 1200, 1.0)])
    for car in [c for c in cars if c.station_id not in faults][:10]:
        faults[car.station_id] = Faults(answer_delay_s=1.0)
    faults[unplugged.station_id] = Faults(unplug_at_s=[_at(UNPLUG_AT)])
    faults[killed.station_id] = Faults(
        drop_connection_at_s=[_at(KILL_AT)], offline_for_s=OFFLINE_MIN * 60
    )
    return faults, opted.station_id, unplugged.station_id, killed.station_id


async def _run(tmp: Path, closed_loop: bool) -> Run:
    cars = _cars()
    faults, opted, unplugged, killed = _plan_faults(cars)
    scenario = tmp / "fleet.toml"
    scenario.write_text(scenario_toml(cars, faults))
    clock = SimClock(SPEED, CLOCK_START, time.time() + 1.0)
    log = tmp / "serve.log"
    serve = await start_serve(f"sqlite:///{tmp / 'csms.db'}", clock, log, free_port(), free_port())
    fleet = await start_fleet(serve.ocpp, scenario, clock, tmp / "fleet.log")
    try:
        async with httpx.AsyncClient(base_url=serve.api, timeout=30) as api:
            enrolled = await ready_and_enrolled(api, cars)
            assert clock.now() < EVENT_START - timedelta(minutes=5), "the fleet booted too slowly"
            created = await api.post(
                "/api/v1/events",
                json={
                    "program": "connected-solutions",
                    "start": iso(EVENT_START),
                    "duration_minutes": EVENT_MIN,
                    "closed_loop": closed_loop,
                    "notice_minutes": 20,
                    # The reserve covers what no re-plan recovers (an opt-out, an unplug, a
                    # dead station: about 2.5 % here); 3.5 % balances the two acceptance bounds
                    # (measured: committed 96.7 % of L*, delivered 98.5 % of it, at 3 %).
                    "reserve_pct": RESERVE_PCT,
                },
            )
            assert created.status_code == 201, created.text
            event_id = created.json()["id"]
            await clock.until(OPT_OUT_AT)
            r = await api.post(
                f"/api/v1/events/{event_id}/opt-outs", json={"enrollment_id": enrolled[opted]}
            )
            assert r.status_code == 201, r.text
            end = EVENT_START + timedelta(minutes=EVENT_MIN)
            event = await event_when(
                api,
                event_id,
                lambda e: e["settled_at"] is not None,
                guard_s=EVENT_MIN * 60 / SPEED + 120,
            )
            # The killed station comes back after the end and replays its offline queue.
            back = KILL_AT + timedelta(minutes=OFFLINE_MIN + 3)
            await clock.until(back)
            await wait_for(
                lambda: _restated(api, event_id), "a restatement after the late replay", 60
            )
            report = (await api.get(f"/api/v1/events/{event_id}/report")).json()
            after = await api.get(
                "/api/v1/telemetry",
                params={"station_id": killed, "from": iso(end), "to": iso(clock.now())},
            )
            assert after.status_code == 200, after.text
            plans = (await api.get(f"/api/v1/events/{event_id}")).json()["plan_revisions"]
        return Run(
            closed_loop,
            cars,
            enrolled,
            event,
            report,
            opted,
            unplugged,
            killed,
            after.json() if isinstance(after.json(), list) else after.json().get("rows", []),
            plans,
            log,
        )
    except BaseException:
        print(tail(log, 120))
        print(tail(tmp / "fleet.log", 40))
        raise
    finally:
        await stop(fleet)
        await stop(serve.process)


async def _restated(api: httpx.AsyncClient, event_id: int) -> bool:
    event = (await api.get(f"/api/v1/events/{event_id}")).json()
    return event["restatements"] >= 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Run]:
    """Both runs once per module: closed loop, then the same run open loop."""
    out = {}
    for closed in (True, False):
        out[closed] = asyncio.run(_run(tmp_path_factory.mktemp(f"closed-{closed}"), closed))
    return out


def _lp_optimum(run: Run) -> float:
    """The flat level L* the fleet could hold, recomputed here from what the stations reported
    at the start (SoC), the product sheets, the EV models and the owners' floors."""
    catalog = hardware_models()
    vehicles = []
    by_station = {c.station_id: c for c in run.cars}
    for p in run.report["participants"]:
        car = by_station[p["station_id"]]
        hw, ev = catalog[car.model], get_ev_model(car.ev)
        vehicles.append(
            Vehicle(
                id=car.station_id,
                capacity_kwh=ev.usable_capacity_kwh,
                soc_pct=p["soc_start_pct"],
                floor_soc_pct=car.floor_pct,
                evse_max_discharge_kw=hw.max_discharge_kw,
                ev_max_discharge_kw=ev.max_discharge_kw,
                efficiency=Efficiency.from_hardware_curve(hw.efficiency_curve, hw.max_discharge_kw),
            )
        )
    window = EventWindow(EVENT_START, timedelta(minutes=EVENT_MIN))
    return plan_discharge(PlanRequest(window, tuple(vehicles)), "lp").committed_kw


def test_committed_is_at_least_95_pct_of_the_lp_optimum_recomputed_from_the_fleet(runs) -> None:
    run = runs[True]
    optimum = _lp_optimum(run)
    committed = run.report["event"]["committed_kw"]
    assert committed >= 0.95 * optimum, (committed, optimum)


def test_delivered_from_registers_is_at_least_98_pct_of_committed(runs) -> None:
    head = runs[True].report["event"]
    assert head["delivery_ratio"] >= 0.98, head


def test_without_replanning_the_same_run_falls_measurably_short(runs) -> None:
    closed = runs[True].report["event"]["delivery_ratio"]
    open_ = runs[False].report["event"]["delivery_ratio"]
    assert runs[False].plans == 2  # ahead of the start and at it; never re-planned after
    assert open_ < closed - 0.01, (open_, closed)


def test_no_soc_below_any_floor(runs) -> None:
    for run in runs.values():
        assert run.report["totals"]["soc_floor_violations"] == 0
        for p in run.report["participants"]:
            assert not p["floor_violated"], p


def test_every_participant_notified_before_the_start(runs) -> None:
    totals = runs[True].report["totals"]
    assert totals["participants"] == STATIONS
    assert totals["notified_before_start"] == STATIONS


def test_opt_out_mid_event_stops_that_car_within_one_meter_interval(runs) -> None:
    run = runs[True]
    p = next(x for x in run.report["participants"] if x["station_id"] == run.opted_out)
    assert p["opted_out"] and p["counted_kw"] == 0.0
    stop_by = OPT_OUT_AT + timedelta(seconds=METER_INTERVAL_S + 30)  # + response delay
    series = [(parse_instant(t), soc) for t, soc in p["soc_series"]]
    later = [soc for t, soc in series if t >= stop_by]
    assert later and all(b >= a - 0.05 for a, b in itertools.pairwise(later)), series


def test_the_others_hold_the_committed_level_after_the_opt_out_and_the_unplug(runs) -> None:
    report = runs[True].report
    committed = report["event"]["committed_kw"]
    after = [
        i["delivered_kw"]
        for i in report["intervals"]
        if parse_instant(i["start"]) >= UNPLUG_AT + timedelta(minutes=5)
    ]
    assert sum(after) / len(after) >= 0.98 * committed, (after, committed)


def test_killed_station_is_replanned_around_and_stops_when_its_profile_ends(runs) -> None:
    run = runs[True]
    p = next(x for x in run.report["participants"] if x["station_id"] == run.killed)
    assert p["status"] == "offline", p
    # It came back after the end: its offline replay restated the settlement, and the
    # meters show no export after the event's end.
    assert run.report["event"]["restated"] is True
    measured = [
        r["energy_export_kwh"] for r in run.killed_after_end if r["energy_export_kwh"] is not None
    ]
    assert measured and sum(measured) < 0.05, run.killed_after_end


def test_unplugged_car_is_marked_and_left_out_of_the_rest(runs) -> None:
    run = runs[True]
    p = next(x for x in run.report["participants"] if x["station_id"] == run.unplugged)
    assert p["status"] == "unplugged", p
