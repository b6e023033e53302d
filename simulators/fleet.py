"""Many simulated stations in one process: planning, a connection ramp, behaviour, a summary.

The planning half is pure (scenario -> `StationPlan`s -> `StationConfig`s, ramp delays, counts
and the summary arithmetic), so it is tested without a network. `Fleet` runs the plans: it
starts the stations at a bounded rate (a fleet must not stampede the CSMS with thousands of
handshakes at once), applies the behaviour schedule (plug-in / plug-out on the simulated clock,
planned one simulated day ahead at a time), reports progress periodically, and stops every
station cleanly on request (SIGINT / SIGTERM in the CLI, or the end of `--duration`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from iso15118_profiles import get_ev_model
from simclock import Clock, iso
from simulators.behaviour import PlugEvent, plug_events
from simulators.catalog import get_hardware
from simulators.faults import FaultPlan
from simulators.scenario import (
    MixEntry,
    Scenario,
    ScenarioError,
    generated_ids,
    matched_evs,
)

if TYPE_CHECKING:  # the engine is imported where it is used: planning works without it
    from simulators.station import SimulatedStation, StationConfig, StationSnapshot

log = structlog.get_logger("simulators.fleet")

DEFAULT_RAMP_PER_S = 200.0  # new connections per wall second
DEFAULT_MAX_BOOTING = 100  # stations connecting or booting at once during the ramp
RAMP_POLL_S = 0.02
PLAN_CHUNK = timedelta(days=1)  # behaviour is planned one simulated day ahead
STOP_GUARD_S = 30.0  # hang guard for stopping every station
DRIVER_TICK_S = 0.5  # longest wall sleep of the behaviour driver (so a stop is noticed)


@dataclass(frozen=True, slots=True)
class StationPlan:
    """One station of a fleet, before it is given a URL and a start time."""

    index: int  # position in the fleet: seeds its behaviour
    station_id: str
    model: str
    ev: str
    ocpp_version: str | None = None
    password: str | None = None
    soc_pct: float | None = None  # explicit first SoC (else drawn from the arrival distribution)
    faults: FaultPlan = field(default_factory=FaultPlan)


# ---- planning (pure) ---------------------------------------------------------------------------


def allocate(entries: tuple[MixEntry, ...], count: int) -> list[MixEntry]:
    """Smooth weighted round robin: proportions follow the weights for any prefix of the
    fleet, and models interleave (a 20-station residential fleet has 4 of each, mixed)."""
    current = [0.0] * len(entries)
    total = sum(e.weight for e in entries)
    chosen: list[MixEntry] = []
    for _ in range(count):
        for i, entry in enumerate(entries):
            current[i] += entry.weight
        best = max(range(len(entries)), key=lambda i: current[i])
        current[best] -= total
        chosen.append(entries[best])
    return chosen


def _ev_for(entry_ev: str | None, model: str, seed: int, index: int) -> str:
    if entry_ev is not None:
        return entry_ev
    return random.Random(f"{seed}:ev:{index}").choice(matched_evs(model))


def _fault_targets(scenario: Scenario, ids: list[str]) -> dict[str, FaultPlan]:
    """Which station gets which plan: rules in file order, a later rule wins for a station."""
    plans: dict[str, FaultPlan] = {s.id: s.faults for s in scenario.stations if s.faults}
    known = set(ids)
    for number, rule in enumerate(scenario.faults):
        if rule.fraction is not None:
            k = round(rule.fraction * len(ids))
            k = max(1, k) if rule.fraction > 0 else 0
            targets = random.Random(f"{scenario.seed}:faults:{number}").sample(ids, k)
        else:
            strangers = sorted(set(rule.stations) - known)
            if strangers:
                raise ScenarioError(f"faults[{number}].stations: unknown id(s) {strangers[:5]}")
            targets = list(rule.stations)
        for station_id in targets:
            plans[station_id] = rule.settings
    return plans


def plan_fleet(scenario: Scenario) -> list[StationPlan]:
    """Every station of the scenario: generated from the mix first, then the explicit ones."""
    plans: list[StationPlan] = []
    ids = generated_ids(scenario.id_prefix, scenario.count)
    for index, (station_id, entry) in enumerate(
        zip(ids, allocate(scenario.mix, len(ids)), strict=True)
    ):
        ev = _ev_for(entry.ev, entry.model, scenario.seed, index)
        plans.append(StationPlan(index, station_id, entry.model, ev, scenario.ocpp_version))
    for spec in scenario.stations:
        index = len(plans)
        ev = _ev_for(spec.ev, spec.model, scenario.seed, index)
        # fleet.ocpp_version is for the generated stations; an explicit one names its own.
        plans.append(StationPlan(index, spec.id, spec.model, ev, spec.ocpp_version, spec.password))
        plans[-1] = replace(plans[-1], soc_pct=spec.soc_pct)
    faults = _fault_targets(scenario, [p.station_id for p in plans])
    return [
        replace(
            p, password=p.password or scenario.password, faults=faults.get(p.station_id, p.faults)
        )
        for p in plans
    ]


def schedule(
    scenario: Scenario, plan: StationPlan, start: datetime, end: datetime, first: bool
) -> list[PlugEvent]:
    """The station's planned plug events in [start, end) (`first`: the run's first window)."""
    ev = get_ev_model(plan.ev)
    events = plug_events(
        scenario.behaviour,
        scenario.seed,
        plan.index,
        start,
        end,
        ev.category,
        ev.default_departure_local,
        scenario.arrival_soc,
        include_initial=first,
    )
    if first and plan.soc_pct is not None and events and events[0].at == start:
        events[0] = replace(events[0], soc_pct=plan.soc_pct)
    return events


def station_config(
    plan: StationPlan,
    url: str,
    initial: PlugEvent | None,
    meter_interval_s: float | None = None,
) -> StationConfig:
    """The engine's config; `initial` is a plug-in at the start of the run (EV plugged in)."""
    from simulators.station import StationConfig

    plugged = initial is not None and initial.plugged
    return StationConfig(
        station_id=plan.station_id,
        hardware=get_hardware(plan.model),
        url=url,
        ocpp_version=plan.ocpp_version,
        password=plan.password,
        ev=get_ev_model(plan.ev) if plugged else None,
        soc_pct=initial.soc_pct if plugged and initial.soc_pct is not None else 50.0,
        departure=initial.departure if plugged else None,
        faults=plan.faults,
        meter_interval_s=meter_interval_s,
    )


def ramp_delays(count: int, per_s: float) -> list[float]:
    """Wall seconds after the start at which each station connects: `per_s` a second."""
    if per_s <= 0:
        raise ValueError(f"ramp rate must be > 0 per second, got {per_s}")
    return [i / per_s for i in range(count)]


# ---- counting (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetCounts:
    stations: int = 0
    connected: int = 0
    booted: int = 0
    charging: int = 0
    discharging: int = 0
    offline: int = 0
    errors: int = 0
    messages: int = 0
    import_wh: float = 0.0
    export_wh: float = 0.0


def count(snapshots: Iterable[StationSnapshot]) -> FleetCounts:
    n = connected = booted = charging = discharging = offline = errors = messages = 0
    import_wh = export_wh = 0.0
    for s in snapshots:
        n += 1
        connected += s.connected
        booted += s.registered
        charging += s.state == "charging"
        discharging += s.state == "discharging"
        offline += not s.connected
        errors += s.errors
        messages += s.messages_sent + s.messages_received
        import_wh += s.import_wh
        export_wh += s.export_wh
    return FleetCounts(
        n, connected, booted, charging, discharging, offline, errors, messages, import_wh, export_wh
    )


@dataclass(frozen=True, slots=True)
class FleetProgress:
    wall_s: float
    sim_time: datetime
    counts: FleetCounts
    messages_per_s: float  # since the previous progress report

    def line(self) -> str:
        c = self.counts
        return (
            f"sim {iso(self.sim_time)}  connected {c.connected}/{c.stations}  booted {c.booted}  "
            f"charging {c.charging}  discharging {c.discharging}  offline {c.offline}  "
            f"errors {c.errors}  {self.messages_per_s:.0f} msg/s"
        )


def summarise(
    counts: FleetCounts,
    *,
    wall_s: float,
    ramp_s: float,
    hold_s: float,
    hold_messages: int,
    sim_start: datetime,
    sim_end: datetime,
    name: str,
) -> dict[str, Any]:
    """The final summary (`csms-sim fleet --json` prints it as one JSON object)."""
    return {
        "scenario": name,
        "stations": counts.stations,
        "connected": counts.connected,
        "booted": counts.booted,
        "charging": counts.charging,
        "discharging": counts.discharging,
        "offline": counts.offline,
        "errors": counts.errors,
        "energy_imported_kwh": round(counts.import_wh / 1000.0, 3),
        "energy_exported_kwh": round(counts.export_wh / 1000.0, 3),
        "messages": counts.messages,
        "messages_per_s": round(hold_messages / hold_s, 1) if hold_s > 0 else 0.0,
        "ramp_s": round(ramp_s, 2),
        "hold_s": round(hold_s, 2),
        "wall_s": round(wall_s, 2),
        "sim_start": iso(sim_start),
        "sim_end": iso(sim_end),
    }


# ---- running -----------------------------------------------------------------------------------


@dataclass
class _Member:
    plan: StationPlan
    station: SimulatedStation


class Fleet:
    """Runs the planned stations on a shared clock until `stop()` or the end of the hold."""

    def __init__(
        self,
        scenario: Scenario,
        url: str,
        clock: Clock,
        ramp_per_s: float = DEFAULT_RAMP_PER_S,
        max_booting: int = DEFAULT_MAX_BOOTING,
    ) -> None:
        self.scenario, self.url, self.clock = scenario, url, clock
        self.ramp_per_s, self.max_booting = ramp_per_s, max(1, max_booting)
        self.start = clock.now()
        self.members: list[_Member] = []
        self._pending: list[tuple[datetime, int, int, PlugEvent]] = []  # heap
        self._planned_until = self.start
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._build()

    def _build(self) -> None:
        from simulators.station import SimulatedStation

        end = self.start + PLAN_CHUNK
        for plan in plan_fleet(self.scenario):
            events = schedule(self.scenario, plan, self.start, end, first=True)
            initial = events.pop(0) if events and events[0].at == self.start else None
            config = station_config(plan, self.url, initial, self.scenario.meter_interval_s)
            self.members.append(_Member(plan, SimulatedStation(config, self.clock)))
            self._push(plan.index, events)
        self._planned_until = end

    def _push(self, index: int, events: list[PlugEvent]) -> None:
        for n, event in enumerate(events):
            heapq.heappush(self._pending, (event.at, index, n, event))

    def snapshots(self) -> list[StationSnapshot]:
        return [m.station.snapshot() for m in self.members]

    def stop(self) -> None:
        """Ask the run to end (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _ramp(self) -> None:
        """Start stations at `ramp_per_s`, and never more than `max_booting` at once that have
        not booted yet: when the CSMS accepts handshakes slower than the rate, the ramp waits
        for it instead of piling up handshakes that time out and retry (a stampede)."""
        started = time.monotonic()
        booting: list[_Member] = []
        delays = ramp_delays(len(self.members), self.ramp_per_s)
        for member, delay in zip(self.members, delays, strict=True):
            wait = started + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # Prune only when full, and read the flag rather than a whole snapshot: this loop
            # runs once per station and then every RAMP_POLL_S while the CSMS is behind.
            while len(booting) >= self.max_booting and not self._stop.is_set():
                booting = [m for m in booting if not m.station.registered]
                if len(booting) >= self.max_booting:
                    await asyncio.sleep(RAMP_POLL_S)
            if self._stop.is_set():
                return
            booting.append(member)
            self._tasks.append(asyncio.create_task(self._run_station(member)))

    async def _run_station(self, member: _Member) -> None:
        try:
            await member.station.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # one broken station must not end the fleet
            log.exception("fleet.station_crashed", station_id=member.plan.station_id)

    def _apply(self, index: int, event: PlugEvent) -> None:
        member = self.members[index]
        try:
            if event.plugged:
                ev = get_ev_model(member.plan.ev)
                member.station.plug_in(ev, event.soc_pct or 50.0, event.departure)
            else:
                member.station.unplug()
        except ValueError as exc:  # e.g. a car already there: the schedule must not end a run
            log.warning("fleet.plug_refused", station_id=member.plan.station_id, error=str(exc))
            return
        log.debug("fleet.plug", station_id=member.plan.station_id, plugged=event.plugged)

    async def _drive_behaviour(self) -> None:
        """Apply due plug events; plan the next simulated day before the current one ends."""
        while not self._stop.is_set():
            now = self.clock.now()
            while self._pending and self._pending[0][0] <= now:
                _, index, _, event = heapq.heappop(self._pending)
                self._apply(index, event)
            if now >= self._planned_until - PLAN_CHUNK / 2:
                self._plan_next_chunk()
            next_at = self._pending[0][0] if self._pending else self._planned_until
            wait = self.clock.wall_seconds((next_at - now).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(DRIVER_TICK_S, max(0.0, wait)))

    def _plan_next_chunk(self) -> None:
        start, end = self._planned_until, self._planned_until + PLAN_CHUNK
        for member in self.members:
            self._push(
                member.plan.index, schedule(self.scenario, member.plan, start, end, first=False)
            )
        self._planned_until = end

    async def _report(self, every_s: float, on_progress: Callable[[FleetProgress], None]) -> None:
        started = last_at = time.monotonic()
        last_messages = 0
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every_s)
            now = time.monotonic()
            counts = count(self.snapshots())
            rate = (counts.messages - last_messages) / max(1e-9, now - last_at)
            last_at, last_messages = now, counts.messages
            on_progress(FleetProgress(now - started, self.clock.now(), counts, rate))

    async def _until_booted(self, guard_s: float) -> None:
        """Until every station has booted once (or the guard expires, or a stop)."""
        deadline = time.monotonic() + guard_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            if all(m.station.registered for m in self.members):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.2)

    async def run(
        self,
        hold_s: float | None = None,
        boot_guard_s: float = 300.0,
        progress_every_s: float = 1.0,
        on_progress: Callable[[FleetProgress], None] | None = None,
    ) -> dict[str, Any]:
        """Ramp up, wait for every boot (at most `boot_guard_s`), then hold for `hold_s` wall
        seconds (None: until stop()), stop every station and return the summary."""
        wall_started = time.monotonic()
        helpers = [asyncio.create_task(self._ramp()), asyncio.create_task(self._drive_behaviour())]
        if on_progress is not None:
            helpers.append(asyncio.create_task(self._report(progress_every_s, on_progress)))
        try:
            await self._until_booted(boot_guard_s)
            ramp_s = time.monotonic() - wall_started
            hold_started, hold_messages_start = time.monotonic(), count(self.snapshots()).messages
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), hold_s)
            hold_elapsed = time.monotonic() - hold_started
            final = count(self.snapshots())
        finally:
            self._stop.set()
            await self._shutdown(helpers)
        return summarise(
            final,
            wall_s=time.monotonic() - wall_started,
            ramp_s=ramp_s,
            hold_s=hold_elapsed,
            hold_messages=final.messages - hold_messages_start,
            sim_start=self.start,
            sim_end=self.clock.now(),
            name=self.scenario.name,
        )

    async def _shutdown(self, helpers: list[asyncio.Task[Any]]) -> None:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        stops = [asyncio.create_task(m.station.stop()) for m in self.members]
        done, pending = await asyncio.wait([*stops, *self._tasks], timeout=STOP_GUARD_S)
        for task in pending:  # a station that did not stop within the guard is cancelled
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("fleet.stop_failed", error=repr(task.exception()))
