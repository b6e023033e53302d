"""The dispatcher (DESIGN.md §3.5-3.8): plan -> charging profiles -> stations, and the closed
loop that re-plans when a vehicle rejects, unplugs, opts out, goes offline or under-delivers.

One `EventRun` per active event, each with its control task:
- activation: read every notified participant's state, plan (LP; the water-filling heuristic
  for large fleets), commit `(1 - reserve) x` the plan's flat level, persist the plan, then per
  station allow bidirectional transfer for the running transaction (Q01,
  NotifyAllowedEnergyTransfer) and send its TxProfile (csms.scheduler.setpoints), concurrently,
  through the commands layer and so through the one discharge gate (origin "dispatcher").
- control: every `TICK_SIM_S` of simulated time, or at once when a participant's station
  reports (csms.domain), look at what the registers say each station delivered; a deviation
  marks the participant lost (offline, unplugged, rejected) or caps it at what it showed it can
  do (under-delivery), and the plan is made again for the rest of the window from everyone's
  current SoC; the changed profiles are replaced in place (same id and stack level).
  A periodic re-plan each plan interval corrects the drift between the model and the physics.
- a car at its floor (plus a small margin) is stopped at once, whatever the plan says.
- the end: profiles end with the event by themselves; afterwards a ClearChargingProfile is sent
  as a backup to the stations still connected.

With `closed_loop` off (an event's setting, to measure what the loop is worth) the first plan
is never revised; opt-outs and floors are still honoured, because they are promises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.domain import StationData
from csms.scheduler.fleet_state import (
    SOC,
    Candidate,
    Reading,
    candidates,
    measured_export_kw,
    recent_samples,
)
from csms.scheduler.planner import EventWindow, Plan, PlanRequest, plan_discharge
from csms.scheduler.setpoints import Period, discharge_request, fit_periods, profile_id_for
from csms.store.models import (
    DeviceVariable,
    DrEvent,
    Enrollment,
    EventParticipant,
    EventPlan,
    Transaction,
)
from simclock import iso

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.dispatcher")

TICK_SIM_S = 20.0  # the control loop looks at the meters this often (simulated seconds)
MAX_TICK_WALL_S = 1.0
LP_MAX_VEHICLES = 300  # above this the water-filling heuristic plans (within 1 % of the LP)
UNDER_DELIVERY = 0.9  # measured below this share of the setpoint is a deviation
UNDER_DELIVERY_MIN_KW = 0.5
MEASURE_SPAN_S = 150.0  # register differences over at most this long (about two meter values)
SETTLE_GRACE_S = 90.0  # after a setpoint change: response delay, ramp and one meter value
WALL_GRACE_S = 2.0  # ... and messages in flight, in wall seconds
# A measured cap holds for one plan interval: long enough to move the shortfall onto others
# now, short enough not to starve a car whose derate lifted (its energy is re-planned later).
CAP_RETRY_S = 300.0
FLOOR_STOP_MARGIN_PCT = 0.2
MIN_REPLAN_WINDOW_S = 30.0
CHANGE_KW = 0.1  # a re-planned period differing less than this from what was sent is kept
MAX_SEND_ROUNDS = 3
DEFAULT_STACK_LEVEL = 8
DEFAULT_PERIODS = 24
RATED_EFFICIENCY = 0.933  # one way, at rated power (DOMAIN.md: 0.87 round trip)
# Parts the planner considers at every plan: left out once (at the floor, capped) is not forever.
LIVE = frozenset({"eligible", "dispatched", "left_out"})
TAKING_PART = frozenset({"eligible", "dispatched"})


@dataclass
class Part:
    """One participant of a running event, as the dispatcher tracks it."""

    enrollment: Enrollment
    row_id: int
    profile_id: int
    status: str
    reason: str = ""
    transaction_id: str | None = None
    allowed_for: str | None = None  # the transaction Q01 was sent for
    sent: list[Period] = field(default_factory=list)  # what the station accepted last
    changed_at: datetime | None = None  # when the power asked for last changed
    cap_kw: float | None = None  # measured capability (grid side)
    cap_at: datetime | None = None
    at_floor: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.enrollment.station_id, self.enrollment.evse_id)

    def asked_kw(self, start: datetime, end: datetime) -> float:
        """The time-weighted export we asked for over [start, end)."""
        if not self.sent or end <= start:
            return 0.0
        bounds = [p.start for p in self.sent[1:]] + [end]
        total = 0.0
        for period, until in zip(self.sent, bounds, strict=True):
            lo, hi = max(start, period.start), min(end, until)
            if hi > lo:
                total += period.export_kw * (hi - lo).total_seconds()
        return total / (end - start).total_seconds()


@dataclass
class EventRun:
    event_id: int
    program_id: str
    start: datetime
    end: datetime
    interval: timedelta
    closed_loop: bool
    reserve_pct: float
    target_kw: float | None
    committed_kw: float | None
    revision: int
    parts: dict[int, Part]
    grid: list[datetime]
    allocation: dict[str, list[float]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: list[str] = field(default_factory=list)  # why a re-plan is due
    next_replan: datetime | None = None
    task: asyncio.Task[None] | None = None
    commit_fixed: bool = False  # the commitment is made from the first plan at the start

    def live(self) -> list[Part]:
        return [p for p in self.parts.values() if p.status in LIVE]


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.runs: dict[int, EventRun] = {}
        self._unsubscribe = services.domain.subscribe(self._on_station_data)

    # ---- life cycle ------------------------------------------------------------------------

    async def start(self, event: DrEvent, *, resumed: bool = False) -> EventRun:
        """Plan and dispatch an event that has begun (or resume one after a restart)."""
        run = await self._load(event)
        self.runs[run.event_id] = run
        now = self.services.clock.now()
        run.commit_fixed = resumed and run.committed_kw is not None and now >= run.start
        if resumed:
            reason = "resumed after a CSMS restart"
        else:
            reason = "event start" if now >= run.start else "dispatched ahead of the start"
        await self._replan(run, [reason])
        run.task = asyncio.create_task(self._control(run), name=f"event-{run.event_id}")
        return run

    async def finish(self, event_id: int) -> None:
        """The window is over: stop the loop; the profiles ended with it. Clearing them is a
        backup for a station whose clock drifted (§3.7)."""
        run = self.runs.pop(event_id, None)
        if run is None:
            return
        await self._stop_task(run)
        await self._clear(run, [p for p in run.parts.values() if p.sent], "event over")
        dispatched = [p for p in run.parts.values() if p.status == "dispatched"]
        await self._store_parts(run, dispatched, "done")

    async def cancel(self, event_id: int) -> None:
        """A cancelled active event: every station stops discharging now."""
        run = self.runs.pop(event_id, None)
        if run is None:
            return
        await self._stop_task(run)
        await self._clear(run, [p for p in run.parts.values() if p.sent], "event cancelled")

    async def opt_out(self, event_id: int, enrollment_id: int) -> bool:
        """Promise 4: the car stops at once and the others take its share (closed loop)."""
        run = self.runs.get(event_id)
        part = run.parts.get(enrollment_id) if run else None
        if run is None or part is None:
            return False
        part.status, part.reason = "opted_out", "the participant opted out"
        await self._clear(run, [part], "opted out")
        run.pending.append(f"enrolment {enrollment_id} opted out")
        run.wake.set()
        return True

    async def close(self) -> None:
        self._unsubscribe()
        for run in list(self.runs.values()):
            await self._stop_task(run)
        self.runs.clear()

    async def _stop_task(self, run: EventRun) -> None:
        if run.task is not None and run.task is not asyncio.current_task():
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task

    def _on_station_data(self, data: StationData) -> None:
        for run in self.runs.values():
            if any(p.enrollment.station_id == data.station_id for p in run.parts.values()):
                run.wake.set()

    # ---- loading ---------------------------------------------------------------------------

    async def _load(self, event: DrEvent) -> EventRun:
        assert event.id is not None
        async with self.services.db.read() as session:
            rows = (
                await session.execute(
                    select(EventParticipant).where(EventParticipant.event_id == event.id)
                )
            ).scalars()
            parts = {}
            for row in rows:
                enrollment = await session.get(Enrollment, row.enrollment_id)
                if enrollment is None:
                    continue
                parts[row.enrollment_id] = Part(
                    enrollment=enrollment,
                    row_id=row.id or 0,
                    profile_id=profile_id_for(event.id, enrollment.evse_id),
                    status=row.status,
                    reason=row.reason,
                    transaction_id=row.transaction_id,
                )
            latest = (
                await session.execute(
                    select(EventPlan)
                    .where(EventPlan.event_id == event.id)
                    .order_by(EventPlan.revision.desc())  # type: ignore[attr-defined]
                    .limit(1)
                )
            ).scalar_one_or_none()
        interval = timedelta(seconds=event.interval_s)
        grid = EventWindow(event.start, event.end - event.start, interval).bounds()
        return EventRun(
            event_id=event.id,
            program_id=event.program_id,
            start=event.start,
            end=event.end,
            interval=interval,
            closed_loop=event.closed_loop,
            reserve_pct=event.reserve_pct,
            target_kw=event.target_kw,
            committed_kw=event.committed_kw,
            revision=latest.revision if latest else 0,
            parts=parts,
            grid=[lo for lo, _ in grid],
            allocation=dict(latest.allocation) if latest else {},
        )

    # ---- the control loop --------------------------------------------------------------

    async def _control(self, run: EventRun) -> None:
        clock = self.services.clock
        while True:
            now = clock.now()
            if now >= run.end:
                return
            left = clock.wall_seconds((run.end - now).total_seconds())
            wait = min(MAX_TICK_WALL_S, clock.wall_seconds(TICK_SIM_S), left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.wake.wait(), wait)
            run.wake.clear()
            try:
                await self._step(run)
            except Exception:  # the loop must outlive one bad look; the next tick retries
                log.exception("dispatcher.step_failed", event_id=run.event_id)

    async def _step(self, run: EventRun) -> None:
        now = self.services.clock.now()
        if now >= run.end:
            return
        await self._observe(run, now)
        if not run.commit_fixed and now >= run.start:
            # Dispatched ahead: plan once more from the SoCs of the start and commit to it
            # (open loop too: it never re-plans after this one).
            await self._replan(run, ["event start", *run.pending])
            run.pending = []
            return
        if not run.closed_loop:
            # No re-planning; a car at its floor is still stopped (a promise, not an option).
            floored = [p for p in run.parts.values() if p.at_floor and p.sent]
            for part in floored:
                part.status, part.reason = "done", "stopped at the owner's floor"
            if floored:
                await self._clear(run, floored, "floor reached")
            run.pending.clear()
            return
        if run.pending:
            reasons, run.pending = run.pending, []
            await self._replan(run, reasons)
        elif run.next_replan is not None and now >= run.next_replan:
            await self._replan(run, ["periodic correction"])

    async def _observe(self, run: EventRun, now: datetime) -> None:
        """Deviation detection from what the stations reported (never from our setpoints)."""
        watched = [p for p in run.parts.values() if p.status == "dispatched"]
        waiting = [p for p in run.parts.values() if p.status == "offline"]
        since = now - timedelta(seconds=MEASURE_SPAN_S * 2)
        async with self.services.db.read() as session:
            samples = await recent_samples(session, [p.key for p in watched], since)
            ended = await _ended(session, [p.transaction_id for p in watched if p.transaction_id])
        connected = set(self.services.registry.ids())
        for part in watched:
            reason = self._deviation(run, part, now, samples.get(part.key, {}), connected, ended)
            if reason:
                run.pending.append(f"enrolment {part.enrollment.id}: {reason}")
        for part in waiting:
            if part.enrollment.station_id in connected:
                part.status, part.reason = "eligible", "back online"
                run.pending.append(f"enrolment {part.enrollment.id}: station back online")
        if run.pending:
            log.info("dispatcher.deviation", event_id=run.event_id, reasons=run.pending[:5])

    def _deviation(
        self,
        run: EventRun,
        part: Part,
        now: datetime,
        samples: dict[str, list[Reading]],
        connected: set[str],
        ended: set[str],
    ) -> str | None:
        if part.enrollment.station_id not in connected:
            part.status, part.reason = "offline", "station went offline during the event"
            return part.reason
        if part.transaction_id in ended:
            part.status, part.reason = "unplugged", "the car was unplugged during the event"
            return part.reason
        soc = samples.get(SOC, [])
        floor = part.enrollment.min_soc_pct + FLOOR_STOP_MARGIN_PCT
        if soc and soc[-1].value <= floor and part.asked_kw(now, now + timedelta(seconds=1)) > 0:
            part.at_floor = True
            return f"SoC {soc[-1].value:.1f} % reached the floor margin"
        return self._under_delivery(part, now, samples)

    def _under_delivery(
        self, part: Part, now: datetime, samples: dict[str, list[Reading]]
    ) -> str | None:
        if part.cap_at is not None and now - part.cap_at > timedelta(seconds=CAP_RETRY_S):
            part.cap_kw, part.cap_at = None, None  # give a derated station another chance
            return "capability cap expired"
        if part.changed_at is None:
            return None
        since = max(
            part.changed_at + timedelta(seconds=self._grace_s()),
            now - timedelta(seconds=MEASURE_SPAN_S),
        )
        measured = measured_export_kw(samples, since)
        if measured is None:
            return None
        export = [r for r in samples.get("Energy.Active.Export.Register", []) if r.at >= since]
        asked = part.asked_kw(export[0].at, export[-1].at)
        if asked - measured > UNDER_DELIVERY_MIN_KW and measured < UNDER_DELIVERY * asked:
            part.cap_kw, part.cap_at = max(0.0, measured), now
            part.changed_at = now
            return f"delivered {measured:.1f} kW of {asked:.1f} kW asked"
        return None

    def _grace_s(self) -> float:
        """Simulated seconds to wait after a change before judging delivery: the station's
        response delay and ramp (simulated time) plus answers and meter values in flight
        (wall time, which a fast simulated clock stretches)."""
        return SETTLE_GRACE_S + self.services.clock.speed * WALL_GRACE_S

    # ---- planning and sending --------------------------------------------------------------

    async def _replan(self, run: EventRun, reasons: list[str]) -> None:
        for _ in range(MAX_SEND_ROUNDS):
            now = self.services.clock.now().replace(microsecond=0)
            start = max(now, run.start)
            if (run.end - start).total_seconds() < MIN_REPLAN_WINDOW_S:
                return
            plan, cands = await self._plan(run, start)
            commit = run.committed_kw is None or not run.commit_fixed
            if commit:
                # Provisional when dispatched ahead; made again, from the SoCs of the start,
                # by the first plan at the start, then fixed for the event.
                run.committed_kw = _committed(plan, run)
                run.commit_fixed = now >= run.start
            run.revision += 1
            run.next_replan = run.start if now < run.start else start + run.interval
            await self._store_plan(run, plan, cands, start, reasons, commit)
            failures = await self._send(run, plan, cands, start)
            if not failures:
                return
            reasons = failures

    async def _plan(self, run: EventRun, start: datetime) -> tuple[Plan, dict[int, Candidate]]:
        live = run.live()
        async with self.services.db.read() as session:
            found = await candidates(
                session, [p.enrollment for p in live], set(self.services.registry.ids())
            )
        cands = {c.enrollment.id or 0: c for c in found}
        vehicles = []
        for part in live:
            cand = cands.get(part.enrollment.id or 0)
            why = cand.why_not() if cand else "unknown vehicle model"
            if why is not None:
                part.status = "offline" if "offline" in why else "left_out"
                if "plugged" in why and part.transaction_id:
                    part.status = "unplugged"
                part.reason = why
                continue
            assert cand is not None
            part.transaction_id = cand.transaction.transaction_id if cand.transaction else None
            cap = 0.0 if part.at_floor else part.cap_kw
            drawn = _drawn_since(part, cand, start)
            vehicles.append(cand.planner_vehicle(start, run.end, grid_cap_kw=cap, drawn_kwh=drawn))
        window = EventWindow(start, run.end - start, run.interval)
        method = "lp" if len(vehicles) <= LP_MAX_VEHICLES else "waterfill"
        request = PlanRequest(window, tuple(vehicles), site_export_limit_kw=run.target_kw)
        plan = await asyncio.to_thread(plan_discharge, request, method)
        for left in plan.left_out:
            part = run.parts[int(left.vehicle_id)]
            part.status, part.reason = "left_out", left.reason
        return plan, cands

    async def _send(
        self, run: EventRun, plan: Plan, cands: dict[int, Candidate], start: datetime
    ) -> list[str]:
        """Send every changed profile at once; returns why any failed (for another round)."""
        jobs = []
        planned = {int(v.vehicle_id): v for v in plan.vehicles}
        for part in run.parts.values():
            if part.status == "opted_out":  # while this plan was being made
                continue
            vp = planned.get(part.enrollment.id or 0)
            if vp is not None:
                periods = [
                    Period(lo, kw) for (lo, _), kw in zip(plan.intervals, vp.power_kw, strict=True)
                ]
            elif part.sent and part.status in ("left_out", "eligible"):
                periods = [Period(start, 0.0)]  # no share any more: hold at zero export
            else:
                continue
            cand = cands.get(part.enrollment.id or 0)
            if cand is None or part.transaction_id is None or not _changed(part.sent, periods):
                continue
            if vp is not None:
                part.status = "dispatched"
            jobs.append(self._send_one(run, part, cand, periods))
        results = await asyncio.gather(*jobs)
        return [r for r in results if r]

    async def _send_one(
        self, run: EventRun, part: Part, cand: Candidate, periods: list[Period]
    ) -> str | None:
        commands = self.services.commands
        assert commands is not None and cand.version is not None
        sid, tx = part.enrollment.station_id, part.transaction_id
        assert tx is not None
        if cand.bpt_mode and part.allowed_for != tx and cand.version.name == "2.1":
            allowed = await commands.notify_allowed_energy_transfer(
                sid, {"transactionId": tx, "allowedEnergyTransfer": [cand.bpt_mode]}
            )
            if allowed.accepted:
                part.allowed_for = tx
        limits = await self._station_limits(sid)
        fitted = fit_periods(periods, run.end, limits[1])
        request = discharge_request(
            version=cand.version,
            evse_id=part.enrollment.evse_id,
            profile_id=part.profile_id,
            stack_level=limits[0],
            transaction_id=tx,
            periods=fitted,
            end=run.end,
            max_discharge_kw=cand.evse_max_kw,
        )
        result = await commands.set_charging_profile(sid, request, origin="dispatcher")
        if result.accepted and part.status == "opted_out":
            await self._clear(run, [part], "opted out while the profile was in flight")
            return None
        if result.accepted:
            previous = part.asked_kw(periods[0].start, periods[0].start + timedelta(seconds=1))
            if abs(previous - fitted[0].export_kw) > CHANGE_KW:
                # When the new power takes effect: now, or the event's start if ahead.
                part.changed_at = max(self.services.clock.now(), fitted[0].start)
            part.sent = fitted
            await self._store_parts(run, [part], None)
            return None
        why = result.reason or f"station answered {result.status}"
        if part.status == "opted_out":  # opted out while this plan was in flight: stays so
            return None
        connected = sid in set(self.services.registry.ids())
        if result.failure == "refused" and result.error_code == "soc_floor":
            # The SoC fell between the plan and the gate's look: plan again from the new one
            # (a car with nothing left above its floor is then left out by the planner).
            part.status, part.reason = "eligible", f"re-plan from a newer SoC: {why}"
        else:
            part.status = "rejected" if connected else "offline"
            part.reason = f"profile not accepted: {why}"
        part.sent = []
        await self._store_parts(run, [part], None)
        log.warning("dispatcher.profile_failed", event_id=run.event_id, station_id=sid, reason=why)
        return f"enrolment {part.enrollment.id}: {part.reason}"

    async def _clear(self, run: EventRun, parts: Sequence[Part], why: str) -> None:
        commands = self.services.commands
        assert commands is not None
        connected = set(self.services.registry.ids())

        async def clear(part: Part) -> None:
            if part.enrollment.station_id in connected:
                await commands.clear_charging_profile(
                    part.enrollment.station_id, {"chargingProfileId": part.profile_id}
                )
            part.sent = []

        await asyncio.gather(*(clear(p) for p in parts))
        await self._store_parts(run, list(parts), None)
        log.info("dispatcher.cleared", event_id=run.event_id, stations=len(parts), why=why)

    async def _station_limits(self, station_id: str) -> tuple[int, int]:
        """(stack level, periods per schedule) from the station's device model, or defaults."""
        async with self.services.db.read() as session:
            rows = (
                await session.execute(
                    select(DeviceVariable).where(
                        DeviceVariable.station_id == station_id,
                        DeviceVariable.component == "SmartChargingCtrlr",
                        DeviceVariable.variable.in_(("ProfileStackLevel", "PeriodsPerSchedule")),  # type: ignore[attr-defined]
                        DeviceVariable.attribute_type == "Actual",
                    )
                )
            ).scalars()
            values = {r.variable: _int(r.value) for r in rows}
        stack = values.get("ProfileStackLevel") or DEFAULT_STACK_LEVEL
        return min(stack, DEFAULT_STACK_LEVEL), values.get("PeriodsPerSchedule") or DEFAULT_PERIODS

    # ---- persistence -----------------------------------------------------------------------

    async def _store_plan(
        self,
        run: EventRun,
        plan: Plan,
        cands: dict[int, Candidate],
        start: datetime,
        reasons: list[str],
        commit: bool,
    ) -> None:
        run.allocation = _merge_allocation(run, plan, start)
        now = self.services.clock.now()
        parts = list(run.parts.values())
        planned = {int(v.vehicle_id): v for v in plan.vehicles}
        row = EventPlan(
            event_id=run.event_id,
            revision=run.revision,
            reason="; ".join(reasons)[:1000],
            method=plan.method,
            committed_kw=run.committed_kw or 0.0,
            interval_starts=[iso(t) for t in run.grid],
            allocation=run.allocation,
            left_out={str(p.enrollment.id): p.reason for p in parts if p.status not in TAKING_PART},
            created_at=now,
        )

        def unit(session: Session) -> None:
            session.add(row)
            event = session.get(DrEvent, run.event_id)
            if event is not None:
                event.plan_revision = run.revision
                if commit:
                    event.committed_kw = run.committed_kw
                    event.optimum_kw = plan.committed_kw
            for part in parts:
                _apply_part(session, part, planned.get(part.enrollment.id or 0), cands, now)

        await self.services.writer.write(unit, label=f"event-{run.event_id}")
        log.info(
            "dispatcher.planned",
            event_id=run.event_id,
            revision=run.revision,
            vehicles=len(plan.vehicles),
            left_out=len(plan.left_out),
            flat_kw=round(plan.committed_kw, 2),
            committed_kw=round(run.committed_kw or 0.0, 2),
            solve_s=round(plan.solve_s, 3),
            reasons=reasons[:5],
        )

    async def _store_parts(self, run: EventRun, parts: list[Part], status: str | None) -> None:
        if status is not None:
            for part in parts:
                part.status = status
        now = self.services.clock.now()

        def unit(session: Session) -> None:
            for part in parts:
                _apply_part(session, part, None, {}, now)

        if parts:
            await self.services.writer.write(unit, label=f"event-{run.event_id}")


# ---- small pure helpers --------------------------------------------------------------------


def _drawn_since(part: Part, cand: Candidate, now: datetime) -> float:
    """Battery energy (kWh) the car gave since its last SoC sample, at the power we asked and
    the rated efficiency: the SoC a plan starts from is now's, not the last sample's."""
    if cand.soc is None or not part.sent or now <= cand.soc.at:
        return 0.0
    hours = (now - cand.soc.at).total_seconds() / 3600.0
    return part.asked_kw(cand.soc.at, now) * hours / RATED_EFFICIENCY


def _committed(plan: Plan, run: EventRun) -> float:
    """The level promised for the whole window: the flat level less the reserve (ADR 0005)."""
    level = plan.committed_kw * (1.0 - run.reserve_pct / 100.0)
    return min(level, run.target_kw) if run.target_kw is not None else level


def _changed(sent: list[Period], periods: list[Period]) -> bool:
    if not sent:
        return any(p.export_kw > 0 for p in periods)
    for period in periods:
        old = _power_at(sent, period.start)
        if abs(old - period.export_kw) > CHANGE_KW:
            return True
    return False


def _power_at(periods: list[Period], at: datetime) -> float:
    power = 0.0
    for period in periods:
        if period.start <= at:
            power = period.export_kw
    return power


def _merge_allocation(run: EventRun, plan: Plan, start: datetime) -> dict[str, list[float]]:
    """Full-window allocation: intervals before `start` keep what the last revision said;
    the rest take the new plan's time-weighted mean over each grid interval."""
    ends = [*run.grid[1:], run.end]
    out: dict[str, list[float]] = {}
    planned = {v.vehicle_id: v for v in plan.vehicles}
    keys = set(run.allocation) | set(planned)
    for key in keys:
        old = run.allocation.get(key, [0.0] * len(run.grid))
        row = []
        for i, (lo, hi) in enumerate(zip(run.grid, ends, strict=True)):
            if hi <= start:
                row.append(old[i] if i < len(old) else 0.0)
                continue
            new = planned.get(key)
            kw = _mean_over(plan, new.power_kw, lo, hi) if new else 0.0
            if lo < start:  # the interval the re-plan cuts: what was, then what will be
                share = (start - lo) / (hi - lo)
                kw = (old[i] if i < len(old) else 0.0) * share + kw * (1 - share)
            row.append(round(kw, 4))
        out[key] = row
    return out


def _mean_over(plan: Plan, power: tuple[float, ...], lo: datetime, hi: datetime) -> float:
    total = 0.0
    for (a, b), kw in zip(plan.intervals, power, strict=True):
        x, y = max(a, lo), min(b, hi)
        if y > x:
            total += kw * (y - x).total_seconds()
    return total / (hi - lo).total_seconds()


def _apply_part(
    session: Session,
    part: Part,
    planned: Any,
    cands: dict[int, Candidate],
    now: datetime,
) -> None:
    row = session.get(EventParticipant, part.row_id)
    if row is None:
        return
    row.status, row.reason = part.status, part.reason[:500]
    row.transaction_id = part.transaction_id or row.transaction_id
    row.profile_id = part.profile_id
    if part.sent:
        row.last_setpoint_w = -part.sent[0].export_kw * 1000.0
    if planned is not None:
        row.planned_kwh = planned.energy_kwh
        row.expected_soc_end_pct = planned.soc_pct[-1]
        cand = cands.get(part.enrollment.id or 0)
        if row.soc_start_pct is None and cand is not None and cand.soc is not None:
            row.soc_start_pct = cand.soc.value
    row.updated_at = now


async def _ended(session: Any, transaction_ids: list[str]) -> set[str]:
    if not transaction_ids:
        return set()
    query = select(Transaction.transaction_id).where(
        Transaction.transaction_id.in_(transaction_ids),  # type: ignore[attr-defined]
        Transaction.ended_at.is_not(None),  # type: ignore[union-attr]
    )
    return set((await session.execute(query)).scalars())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
