"""`csms demo`: one ConnectedSolutions event end to end, in one process, on simulated hardware.

A CSMS on a temporary SQLite file and a mixed fleet of every hardware family (residential DC
and AC bidirectional chargers, school-bus DC chargers; OCPP 2.1 and 2.0.1), each with a matched
car plugged in. Every car is enrolled with its owner's floor; one event is called at a high
simulated speed; a participant opts out and a car is unplugged during it; the dispatcher's
closed loop re-plans around both. At the end: a summary (committed vs delivered kW from the
registers, SoC-floor violations, opt-outs, pay) and an HTML report with plots.

`run_demo` is also what the in-process integration tests drive, with smaller numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from csms.runtime import CentralSystem
from csms.settings import Settings
from iso15118_profiles import get_ev_model
from simclock import Clock, iso, parse_instant
from simulators.catalog import hardware_models
from simulators.faults import FaultPlan
from simulators.station import SimulatedStation, StationConfig

PROGRAM = "connected-solutions"
# A summer Wednesday, 2:40 pm in Boston: the event starts at 3 pm, inside the 3-8 pm window.
CLOCK_START = "2026-07-15T18:40:00Z"
EVENT_START = "2026-07-15T19:00:00Z"
WINDOW_END = "2026-07-16T00:00:00Z"  # 8 pm local
NOTICE_MIN = 10
DEFAULT_SPEED = 150.0
HANG_GUARD_S = 240.0
POLL_S = 1.0
# (hardware, EV, residential?) cycled over the fleet: every hardware family, matched pairs.
FAMILIES = (
    ("dcbel-ara", "nissan-leaf-40"),
    ("wallbox-quasar-2", "kia-ev9-76"),
    ("ford-charge-station-pro", "ford-f150-lightning-98"),
    ("tellus-60", "thomas-built-246"),
    ("dcbel-ara", "volvo-ex90"),
    ("gm-energy-powershift", "chevrolet-silverado-ev"),
    ("tesla-universal-wall-connector", "tesla-cybertruck"),
    ("heliox-44", "blue-bird-196"),
    ("dcbel-ara", "nissan-leaf-62"),
    ("wallbox-quasar-2", "kia-ev9-100"),
    ("incharge-44", "byd-230"),
    ("ford-charge-station-pro", "ford-f150-lightning-131"),
    ("tellus-30", "micro-bird-175"),
    ("dcbel-ara", "polestar-3"),
    ("incharge-22", "evolectric-100"),
    ("tellus-40", "ic-bus-210"),
    ("incharge-66", "byd-288"),
    ("tellus-20", "evolectric-60"),
)
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kim")


@dataclass(frozen=True, slots=True)
class DemoCar:
    station_id: str
    model: str
    ev: str
    soc_pct: float
    floor_pct: float
    participant: str
    participant_class: str
    faults: FaultPlan = field(default_factory=FaultPlan)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    stations: int = 18
    speed: float = DEFAULT_SPEED
    duration_minutes: float = 180.0
    seed: int = 7
    opt_out: bool = True
    unplug: bool = True
    closed_loop: bool = True
    report_path: Path | None = None  # None: no HTML report


def demo_fleet(count: int, seed: int = 7) -> list[DemoCar]:
    """Cars on every hardware family; SoC and floors drawn reproducibly from the seed."""
    rng = random.Random(seed)
    catalog = hardware_models()
    cars = []
    for index in range(count):
        model, ev = FAMILIES[index % len(FAMILIES)]
        bus = catalog[model].category == "bus"
        cars.append(
            DemoCar(
                station_id=f"DEMO-{index + 1:03d}",
                model=model,
                ev=ev,
                soc_pct=round(rng.uniform(60, 90), 1),
                floor_pct=float(rng.choice((20, 25, 30)) if bus else rng.choice((30, 35, 40, 50))),
                participant=f"{NAMES[index % len(NAMES)]} {index + 1}"
                + (" (school district)" if bus else ""),
                participant_class="commercial" if bus else "residential",
            )
        )
    return cars


@dataclass
class DemoSummary:
    stations: int
    participants: int
    notified_before_start: int
    opt_outs: int
    committed_kw: float
    delivered_kw: float
    delivery_ratio: float | None
    soc_floor_violations: int
    pay_usd: float
    report: str | None
    event_id: int
    plan_revisions: int
    restatements: int
    wall_s: float
    unplugged: str | None = None
    opted_out: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


Progress = Callable[[str], None]


async def run_demo(options: DemoOptions, progress: Progress, database_dir: Path) -> DemoSummary:
    started = time.monotonic()
    clock = Clock.create(options.speed, parse_instant(CLOCK_START))
    settings = Settings(
        ocpp_port=0,
        api_port=0,
        allow_unknown_stations=True,
        database_url=f"sqlite+aiosqlite:///{database_dir / 'demo.db'}",
        clock=clock,
    )
    system = CentralSystem(settings)
    await system.start()
    cars = demo_fleet(options.stations, options.seed)
    try:
        base = f"http://127.0.0.1:{system.api_port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as api,
            _stations(system, cars) as stations,
        ):
            progress(f"{len(cars)} stations connecting to ws://127.0.0.1:{system.ocpp_port}")
            await _wait_ready(api, cars, progress)
            enrolled = await _enrol(api, cars)
            progress(f"{len(enrolled)} participants enrolled in {PROGRAM}")
            event = await _create_event(api, options, clock)
            progress(
                f"event {event['id']} called: {event['start']} - {event['end']} "
                f"(clock x{options.speed:g})"
            )
            actions = _Disruptions(options, cars, enrolled, stations, event, clock)
            final = await _follow(api, event, actions, progress)
            report = (await api.get(f"/api/v1/events/{event['id']}/report")).json()
        path = _render(report, options.report_path)
        return _summary(report, final, len(cars), path, time.monotonic() - started, actions)
    finally:
        await system.stop()


# ---- steps -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _stations(
    system: CentralSystem, cars: list[DemoCar]
) -> AsyncIterator[dict[str, SimulatedStation]]:
    url = f"ws://127.0.0.1:{system.ocpp_port}/ocpp"
    catalog = hardware_models()
    stations = {
        car.station_id: SimulatedStation(
            StationConfig(
                car.station_id,
                catalog[car.model],
                url,
                ev=get_ev_model(car.ev),
                soc_pct=car.soc_pct,
                faults=car.faults,
            ),
            system.services.clock,
        )
        for car in cars
    }
    tasks = [asyncio.create_task(s.run()) for s in stations.values()]
    try:
        yield stations
    finally:
        await asyncio.gather(*(s.stop() for s in stations.values()))
        await asyncio.wait(tasks, timeout=30)


async def _wait_ready(api: httpx.AsyncClient, cars: list[DemoCar], progress: Progress) -> None:
    """Every station booted, its car in a transaction; 2.0.1 units the product sheet says
    discharge on a negative limit are marked so by the operator (DESIGN §3.6a)."""
    catalog = hardware_models()
    pending = {car.station_id: car for car in cars}
    async with asyncio.timeout(HANG_GUARD_S):
        while pending:
            for sid, car in list(pending.items()):
                detail = await api.get(f"/api/v1/stations/{sid}")
                if detail.status_code != 200 or not detail.json().get("running_transactions"):
                    continue
                hardware = catalog[car.model]
                if (
                    detail.json().get("ocpp_version") == "2.0.1"
                    and hardware.accepts_negative_limits
                ):
                    await api.patch(
                        f"/api/v1/stations/{sid}", json={"accepts_negative_limits": True}
                    )
                del pending[sid]
            if pending:
                await asyncio.sleep(POLL_S)
    progress(f"{len(cars)} stations booted, every car plugged in")


async def _enrol(api: httpx.AsyncClient, cars: list[DemoCar]) -> dict[str, int]:
    out = {}
    for car in cars:
        body = {
            "participant": car.participant,
            "participant_class": car.participant_class,
            "vehicle_model": car.ev,
            "vehicle_id": f"{car.station_id.lower()}-car",
            "station_id": car.station_id,
            "evse_id": 1,
            "programs": [PROGRAM],
            "min_soc_pct": car.floor_pct,
        }
        response = await api.post("/api/v1/enrollments", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"enrolment of {car.station_id} failed: {response.text}")
        out[car.station_id] = response.json()["id"]
    return out


async def _create_event(
    api: httpx.AsyncClient, options: DemoOptions, clock: Clock
) -> dict[str, Any]:
    start, minutes = _event_window(clock, options.duration_minutes)
    body = {
        "program": PROGRAM,
        "start": iso(start),
        "duration_minutes": minutes,
        "closed_loop": options.closed_loop,
        "notice_minutes": NOTICE_MIN,
    }
    response = await api.post("/api/v1/events", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"the event was refused: {response.text}")
    return response.json()


def _event_window(clock: Clock, duration_minutes: float) -> tuple[datetime, float]:
    """3 pm local, or the next 5-minute mark with 10 minutes' notice if a slow start-up ran
    past it; the window stays inside the program's 3-8 pm (ConnectedSolutions)."""
    earliest = clock.now() + timedelta(minutes=NOTICE_MIN)
    start = max(parse_instant(EVENT_START), _ceil_5min(earliest))
    window_end = parse_instant(WINDOW_END)
    minutes = min(duration_minutes, (window_end - start).total_seconds() / 60)
    if minutes < 15:
        raise RuntimeError("the fleet took too long to start: the program window is over")
    return start, minutes


def _ceil_5min(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0) - timedelta(minutes=at.minute % 5)
    return floor if floor == at else floor + timedelta(minutes=5)


@dataclass
class _Disruptions:
    """One opt-out at 30 % of the window and one unplug at 45 %, on residential cars."""

    options: DemoOptions
    cars: list[DemoCar]
    enrolled: dict[str, int]
    stations: dict[str, SimulatedStation]
    event: dict[str, Any]
    clock: Clock
    opted_out: str | None = None
    unplugged: str | None = None

    def _pick(self, skip: set[str]) -> DemoCar | None:
        residential = [c for c in self.cars if c.participant_class == "residential"]
        return next((c for c in residential if c.station_id not in skip), None)

    async def apply(self, api: httpx.AsyncClient, now: datetime, progress: Progress) -> None:
        start, end = parse_instant(self.event["start"]), parse_instant(self.event["end"])
        done = (now - start) / (end - start)
        if self.options.opt_out and self.opted_out is None and done >= 0.30:
            car = self._pick(set())
            if car is not None:
                eid = self.enrolled[car.station_id]
                await api.post(
                    f"/api/v1/events/{self.event['id']}/opt-outs", json={"enrollment_id": eid}
                )
                self.opted_out = car.station_id
                progress(f"{car.participant} ({car.station_id}) opts out")
        if self.options.unplug and self.unplugged is None and done >= 0.45:
            car = self._pick({self.opted_out or ""})
            if car is not None:
                self.stations[car.station_id].unplug()
                self.unplugged = car.station_id
                progress(f"{car.participant} unplugs {car.station_id} and drives away")


async def _follow(
    api: httpx.AsyncClient, event: dict[str, Any], actions: _Disruptions, progress: Progress
) -> dict[str, Any]:
    """Poll the event until it is settled, printing its progress."""
    last = ""
    end = parse_instant(event["end"])
    guard = (
        end - parse_instant(CLOCK_START)
    ).total_seconds() / actions.options.speed + HANG_GUARD_S
    async with asyncio.timeout(guard):
        while True:
            current = (await api.get(f"/api/v1/events/{event['id']}")).json()
            now = actions.clock.now()
            if current["state"] == "active":
                await actions.apply(api, now, progress)
            line = _progress_line(current, now)
            if line != last:
                progress(line)
                last = line
            if current["state"] == "completed" and current.get("settled_at"):
                return current
            if current["state"] == "cancelled":
                raise RuntimeError(f"event {event['id']} was cancelled: {current['cancel_reason']}")
            await asyncio.sleep(POLL_S)


def _progress_line(event: dict[str, Any], now: datetime) -> str:
    parts = event.get("participants") or []
    by_status: dict[str, int] = {}
    for p in parts:
        by_status[p["status"]] = by_status.get(p["status"], 0) + 1
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    committed = event.get("committed_kw")
    c = f", committed {committed:.1f} kW" if committed else ""
    head = f"[{iso(now)[11:16]}Z] event {event['id']} {event['state']}{c}"
    return f"{head}; {statuses}; plan revision {event['plan_revisions']}"


def _render(report: dict[str, Any], path: Path | None) -> str | None:
    if path is None:
        return None
    from csms.scheduler.report_html import render_event_report

    return str(render_event_report(report, path, title="V2G demo: one ConnectedSolutions event"))


def _summary(
    report: dict[str, Any],
    event: dict[str, Any],
    stations: int,
    path: str | None,
    wall_s: float,
    actions: _Disruptions,
) -> DemoSummary:
    head, totals = report["event"], report["totals"]
    return DemoSummary(
        stations=stations,
        participants=totals["participants"],
        notified_before_start=totals["notified_before_start"],
        opt_outs=totals["opt_outs"],
        committed_kw=round(head["committed_kw"] or 0.0, 2),
        delivered_kw=round(head["delivered_kw"] or 0.0, 2),
        delivery_ratio=round(head["delivery_ratio"], 4) if head.get("delivery_ratio") else None,
        soc_floor_violations=totals["soc_floor_violations"],
        pay_usd=round(totals["pay_usd"], 2),
        report=path,
        event_id=head["id"],
        plan_revisions=head["plan_revisions"],
        restatements=head["restatements"],
        wall_s=round(wall_s, 1),
        unplugged=actions.unplugged,
        opted_out=actions.opted_out,
    )


def main(options: DemoOptions, progress: Progress) -> DemoSummary:
    with tempfile.TemporaryDirectory(prefix="csms-demo-") as tmp:
        return asyncio.run(run_demo(options, progress, Path(tmp)))


def describe(summary: DemoSummary, report: dict[str, Any] | None = None) -> list[str]:
    ratio = f"{summary.delivery_ratio:.1%}" if summary.delivery_ratio is not None else "—"
    return [
        f"stations               {summary.stations}",
        f"participants           {summary.participants} "
        f"({summary.notified_before_start} notified before the start)",
        f"committed              {summary.committed_kw:.1f} kW",
        f"delivered (registers)  {summary.delivered_kw:.1f} kW  ({ratio} of committed)",
        f"opt-outs               {summary.opt_outs}"
        + (f" ({summary.opted_out})" if summary.opted_out else ""),
        f"unplugged mid-event    {summary.unplugged or 'none'}",
        f"SoC-floor violations   {summary.soc_floor_violations}",
        f"plan revisions         {summary.plan_revisions}",
        f"pay (season rate)      ${summary.pay_usd:,.2f}",
        f"report                 {summary.report or '—'}",
        f"took                   {summary.wall_s:.0f} s",
    ]


__all__ = ["DemoOptions", "DemoSummary", "demo_fleet", "describe", "main", "run_demo"]
