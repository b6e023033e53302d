"""Demand-response events: creation, the life cycle and opt-outs (DESIGN.md §3.1-3.3).

    scheduled --(notify_at)--> notified --(start)--> active --(end)--> completed
         \\__________________________ cancel ___________________________/--> cancelled

Every state is persisted with the instant it was reached (simulated clock), so a CSMS that
restarts picks each event up where it was: a notified event is activated at its start, an
active one is resumed by the dispatcher (profiles replaced in place), a finished one settled.
The loop sleeps until the next event is due (at most `MAX_SLEEP_WALL_S`), or until a change
wakes it. Events come from REST and the CLI (and later MQTT, OpenADR): all go through
`EventService.create`, so the rules are checked in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.scheduler.dispatcher import Dispatcher
from csms.scheduler.fleet_state import candidates
from csms.scheduler.planner import EventWindow, PlanRequest, plan_discharge
from csms.scheduler.programs import Program, validate_event
from csms.scheduler.settlement import settle_event
from csms.store.models import DrEvent, Enrollment, EventParticipant
from simclock import iso

if TYPE_CHECKING:
    from csms.scheduler.catalog import ProgramCatalog
    from csms.scheduler.notify import Notifier
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.events")

OPEN_STATES = ("scheduled", "notified", "active")
MAX_SLEEP_WALL_S = 1.0
# Settlement waits for the meter values that close the window (one or two meter intervals).
SETTLE_DELAY = timedelta(minutes=3)
# Profiles are planned and sent this long before the start (simulated seconds, or wall seconds
# at the clock's speed, whichever is longer: a burst to a large fleet takes wall time).
PREPARE_LEAD_SIM_S = 120.0
PREPARE_LEAD_WALL_S = 15.0
MAX_INTERVAL_MIN = 60
MAX_RESERVE_PCT = 50.0


class EventError(ValueError):
    """A request about an event that cannot be honoured; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class EventRequest:
    program: str
    start: datetime
    duration_minutes: float
    target_kw: float | None = None
    interval_minutes: float = 5.0
    reserve_pct: float = 3.0
    closed_loop: bool = True
    notice_minutes: float | None = None  # default: the program's notice lead
    source: str = "api"


class EventService:
    def __init__(
        self,
        services: Services,
        catalog: ProgramCatalog,
        notifier: Notifier,
        dispatcher: Dispatcher,
    ) -> None:
        self.services = services
        self.catalog = catalog
        self.notifier = notifier
        self.dispatcher = dispatcher
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ---- requests --------------------------------------------------------------------------

    async def create(self, request: EventRequest) -> DrEvent:
        program = await self._program(request.program)
        start, now = request.start, self.services.clock.now()
        duration = timedelta(minutes=request.duration_minutes)
        _check_numbers(request)
        if start <= now:
            raise EventError(f"the event starts at {iso(start)}, not after now ({iso(now)})")
        verdict = validate_event(program, start, duration)
        if not verdict.ok:
            raise EventError(f"program {program.id}: " + "; ".join(verdict.problems))
        await self._check_overlap(start, start + duration)
        lead = (
            timedelta(minutes=request.notice_minutes)
            if request.notice_minutes is not None
            else program.notice_lead
        )
        event = DrEvent(
            program_id=program.id,
            start=start,
            end=start + duration,
            time_zone=program.time_zone,
            season=verdict.season or "",
            target_kw=request.target_kw,
            interval_s=round(request.interval_minutes * 60),
            reserve_pct=request.reserve_pct,
            closed_loop=request.closed_loop,
            source=request.source,
            notify_at=max(now, start - lead),
            created_at=now,
        )

        def unit(session: Session) -> DrEvent:
            session.add(event)
            session.flush()
            return event

        stored = await self.services.writer.write(unit, label="events")
        log.info(
            "event.created",
            event_id=stored.id,
            program=program.id,
            start=iso(start),
            end=iso(stored.end),
            notify_at=iso(stored.notify_at),
            source=request.source,
        )
        self._wake.set()
        return stored

    async def cancel(self, event_id: int, reason: str = "cancelled by the operator") -> DrEvent:
        async with self._lock:
            event = await self.get(event_id)
            if event.state not in OPEN_STATES:
                raise EventError(
                    f"event {event_id} is {event.state}; only an open event can be cancelled", 409
                )
            if event_id in self.dispatcher.runs:  # dispatched (maybe ahead of the start)
                await self.dispatcher.cancel(event_id)
            updated = await self._set_state(event, "cancelled", cancel_reason=reason)
        await self._tell_participants(updated, "event-cancelled", {"reason": reason})
        return updated

    async def opt_out(self, event_id: int, enrollment_id: int) -> EventParticipant:
        """Promise 4: before the event the vehicle is left out; during it, it stops now."""
        async with self._lock:
            event = await self.get(event_id)
            if event.state not in OPEN_STATES:
                raise EventError(
                    f"event {event_id} is {event.state}: there is nothing to opt out of", 409
                )
            enrollment = await self._enrollment_in(event, enrollment_id)
            row = await self._participant(event, enrollment)
            if row.status == "opted_out":
                return row
            if event_id in self.dispatcher.runs:
                await self.dispatcher.opt_out(event_id, enrollment_id)
            now = self.services.clock.now()

            def unit(session: Session) -> EventParticipant:
                part = session.get(EventParticipant, row.id)
                assert part is not None
                part.status, part.reason = "opted_out", "the participant opted out"
                part.opted_out_at, part.updated_at = now, now
                return part

            updated = await self.services.writer.write(unit, label=f"event-{event_id}")
        log.info(
            "event.opt_out",
            event_id=event_id,
            enrollment_id=enrollment_id,
            during=event.state == "active",
        )
        await self.notifier.notify(
            enrollment,
            "opted-out",
            {
                "event_id": event_id,
                "message": "You are opted out of this event; no penalty applies.",
            },
            event_id=event_id,
        )
        return updated

    async def withdrawn(self, enrollment_id: int) -> list[int]:
        """An enrolment that ends leaves every open event it is in, like an opt-out (a car
        already discharging stops now). Returns the events it left."""
        async with self.services.db.read() as session:
            query = (
                select(DrEvent.id)
                .join(EventParticipant, EventParticipant.event_id == DrEvent.id)  # type: ignore[arg-type]
                .where(
                    EventParticipant.enrollment_id == enrollment_id,
                    EventParticipant.status != "opted_out",
                    DrEvent.state.in_(OPEN_STATES),  # type: ignore[attr-defined]
                )
            )
            event_ids = [i for i in (await session.execute(query)).scalars() if i is not None]
        for event_id in event_ids:
            await self.opt_out(event_id, enrollment_id)
        return event_ids

    async def get(self, event_id: int) -> DrEvent:
        async with self.services.db.read() as session:
            event = await session.get(DrEvent, event_id)
        if event is None:
            raise EventError(f"no event {event_id}", 404)
        return event

    async def list(self, state: str | None = None) -> list[DrEvent]:
        query = select(DrEvent).order_by(DrEvent.start.desc())  # type: ignore[attr-defined]
        if state:
            query = query.where(DrEvent.state == state)
        async with self.services.db.read() as session:
            return list((await session.execute(query)).scalars())

    async def participants(self, event_id: int) -> list[EventParticipant]:
        async with self.services.db.read() as session:
            query = select(EventParticipant).where(EventParticipant.event_id == event_id)
            return list((await session.execute(query.order_by(EventParticipant.id))).scalars())  # type: ignore[arg-type]

    # ---- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.dispatcher.close()

    async def _loop(self) -> None:
        clock = self.services.clock
        while True:
            try:
                due = await self.advance()
            except Exception:  # a failing step must not end the loop; the next one retries
                log.exception("events.advance_failed")
                due = None
            wait = MAX_SLEEP_WALL_S
            if due is not None:
                ahead = (due - clock.now()).total_seconds()
                wait = min(wait, max(0.0, clock.wall_seconds(ahead)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    async def advance(self) -> datetime | None:
        """Move every open event along; returns when the next one is due."""
        async with self._lock:
            now = self.services.clock.now()
            async with self.services.db.read() as session:
                query = select(DrEvent).where(
                    (DrEvent.state.in_(OPEN_STATES))  # type: ignore[attr-defined]
                    | ((DrEvent.state == "completed") & DrEvent.settled_at.is_(None))  # type: ignore[union-attr]
                )
                events = list((await session.execute(query)).scalars())
            due: list[datetime] = []
            for event in events:
                when = await self._advance_one(event, now)
                if when is not None:
                    due.append(when)
            return min(due) if due else None

    async def _advance_one(self, event: DrEvent, now: datetime) -> datetime | None:
        if event.state == "scheduled":
            if now < event.notify_at:
                return event.notify_at
            event = await self._notify(event, now)
        if event.state == "notified":
            if now >= event.end:
                await self._set_state(event, "completed", completed_at=event.end)
                return now
            prepare = self._prepare_at(event)
            if now < prepare:
                return prepare
            if event.id not in self.dispatcher.runs:
                await self._dispatch(event, now)
            if now < event.start:
                return event.start
            await self._set_state(event, "active", activated_at=now)
            log.info("event.active", event_id=event.id)
            return event.end
        if event.state == "active":
            if event.id not in self.dispatcher.runs and now < event.end:  # after a restart
                await self.dispatcher.start(event, resumed=True)
                return event.end
            if now < event.end:
                return event.end
            await self.dispatcher.finish(event.id or 0)
            await self._set_state(event, "completed", completed_at=now)
            return event.end + SETTLE_DELAY
        if event.state == "completed" and event.settled_at is None:
            if now < event.end + SETTLE_DELAY:
                return event.end + SETTLE_DELAY
            await settle_event(self.services, event.id or 0)
            log.info("event.settled", event_id=event.id)
        return None

    # ---- transitions -----------------------------------------------------------------------

    async def _notify(self, event: DrEvent, now: datetime) -> DrEvent:
        """Promise 3: every eligible participant hears before the start, with what the event
        will take from the car and the SoC left afterwards."""
        enrollments = await self._enrolled(event.program_id)
        preview = await self._preview(event, enrollments)
        rows = await self._add_participants(event, enrollments, now)
        updated = await self._set_state(event, "notified", notified_at=now)
        for enrollment in enrollments:
            if rows.get(enrollment.id or 0) is None:
                continue
            await self.notifier.notify(
                enrollment,
                "event-scheduled",
                _notice(updated, enrollment, preview.get(str(enrollment.id))),
                event_id=event.id,
            )
        log.info("event.notified", event_id=event.id, participants=len(rows))
        return updated

    def _prepare_at(self, event: DrEvent) -> datetime:
        """When to plan and send the profiles: ahead of the start, so that stations hold a
        schedule that begins exactly at it (the first minutes are paid like the others)."""
        lead = max(PREPARE_LEAD_SIM_S, self.services.clock.speed * PREPARE_LEAD_WALL_S)
        return max(event.notify_at, event.start - timedelta(seconds=lead))

    async def _dispatch(self, event: DrEvent, now: datetime) -> None:
        late = await self._enrolled(event.program_id)
        rows = await self._add_participants(event, late, now)  # enrolled since the notice
        for enrollment in late:
            if rows.get(enrollment.id or 0) is not None:
                await self.notifier.notify(
                    enrollment,
                    "event-scheduled",
                    _notice(event, enrollment, None),
                    event_id=event.id,
                )
        await self.dispatcher.start(event)

    async def _set_state(self, event: DrEvent, state: str, **fields: Any) -> DrEvent:
        def unit(session: Session) -> DrEvent:
            row = session.get(DrEvent, event.id)
            assert row is not None
            row.state = state
            for name, value in fields.items():
                setattr(row, name, value)
            if state == "cancelled":
                row.cancelled_at = self.services.clock.now()
            return row

        updated = await self.services.writer.write(unit, label=f"event-{event.id}")
        log.info("event.state", event_id=event.id, state=state)
        return updated

    async def _add_participants(
        self, event: DrEvent, enrollments: list[Enrollment], now: datetime
    ) -> dict[int, EventParticipant | None]:
        """One row per enrolment not yet in the event (returned); existing ones map to None."""

        def unit(session: Session) -> dict[int, EventParticipant | None]:
            have = set(
                session.execute(
                    select(EventParticipant.enrollment_id).where(
                        EventParticipant.event_id == event.id
                    )
                ).scalars()
            )
            out: dict[int, EventParticipant | None] = {}
            for enrollment in enrollments:
                eid = enrollment.id or 0
                if eid in have:
                    out[eid] = None
                    continue
                row = EventParticipant(
                    event_id=event.id or 0,
                    enrollment_id=eid,
                    station_id=enrollment.station_id,
                    evse_id=enrollment.evse_id,
                    notified_at=now,
                    updated_at=now,
                )
                session.add(row)
                out[eid] = row
            return out

        return await self.services.writer.write(unit, label=f"event-{event.id}")

    async def _tell_participants(self, event: DrEvent, kind: str, body: dict[str, Any]) -> None:
        async with self.services.db.read() as session:
            rows = (
                await session.execute(
                    select(Enrollment)
                    .join(EventParticipant, EventParticipant.enrollment_id == Enrollment.id)  # type: ignore[arg-type]
                    .where(EventParticipant.event_id == event.id)
                )
            ).scalars()
            enrollments = list(rows)
        for enrollment in enrollments:
            await self.notifier.notify(
                enrollment, kind, {"event_id": event.id, **body}, event_id=event.id
            )

    # ---- reads -----------------------------------------------------------------------------

    async def _program(self, name: str) -> Program:
        try:
            return await self.catalog.get(name)
        except LookupError as exc:
            raise EventError(str(exc).strip("'\""), 404) from exc
        except ValueError as exc:
            raise EventError(str(exc), 404) from exc

    async def _enrolled(self, program_id: str) -> list[Enrollment]:
        async with self.services.db.read() as session:
            rows = (await session.execute(select(Enrollment).where(Enrollment.active))).scalars()
            return [e for e in rows if program_id in (e.programs or [])]

    async def _enrollment_in(self, event: DrEvent, enrollment_id: int) -> Enrollment:
        async with self.services.db.read() as session:
            enrollment = await session.get(Enrollment, enrollment_id)
        if enrollment is None:
            raise EventError(f"no enrollment {enrollment_id}", 404)
        if event.program_id not in (enrollment.programs or []):
            raise EventError(
                f"enrollment {enrollment_id} is not enrolled in program {event.program_id}", 404
            )
        return enrollment

    async def _participant(self, event: DrEvent, enrollment: Enrollment) -> EventParticipant:
        rows = await self._add_participants(event, [enrollment], self.services.clock.now())
        created = rows.get(enrollment.id or 0)
        if created is not None:
            return created
        async with self.services.db.read() as session:
            query = select(EventParticipant).where(
                EventParticipant.event_id == event.id,
                EventParticipant.enrollment_id == enrollment.id,
            )
            return (await session.execute(query)).scalar_one()

    async def _check_overlap(self, start: datetime, end: datetime) -> None:
        async with self.services.db.read() as session:
            query = select(DrEvent).where(
                DrEvent.state.in_(OPEN_STATES),  # type: ignore[attr-defined]
                DrEvent.start < end,
                DrEvent.end > start,
            )
            clash = (await session.execute(query.limit(1))).scalar_one_or_none()
        if clash is not None:
            raise EventError(
                f"the window overlaps event {clash.id} ({iso(clash.start)} - {iso(clash.end)}); "
                "a charger cannot follow two events at once",
                409,
            )

    async def _preview(self, event: DrEvent, enrollments: list[Enrollment]) -> dict[str, Any]:
        """What the event would take from each car whose SoC we know now (the notice says so)."""
        async with self.services.db.read() as session:
            found = await candidates(session, enrollments, set(self.services.registry.ids()))
        vehicles = [c.planner_vehicle(event.start, event.end) for c in found if c.soc is not None]
        if not vehicles:
            return {}
        window = EventWindow(
            event.start, event.end - event.start, timedelta(seconds=event.interval_s)
        )
        method = "lp" if len(vehicles) <= 300 else "waterfill"
        plan = await asyncio.to_thread(plan_discharge, PlanRequest(window, tuple(vehicles)), method)
        return {v.vehicle_id: v for v in plan.vehicles}


def _check_numbers(request: EventRequest) -> None:
    if not request.duration_minutes > 0:
        raise EventError("duration_minutes must be > 0")
    if not 1 <= request.interval_minutes <= MAX_INTERVAL_MIN:
        raise EventError(f"interval_minutes must be within 1..{MAX_INTERVAL_MIN}")
    if request.target_kw is not None and not request.target_kw > 0:
        raise EventError("target_kw must be > 0 when given")
    if not 0 <= request.reserve_pct <= MAX_RESERVE_PCT:
        raise EventError(f"reserve_pct must be within 0..{MAX_RESERVE_PCT:g}")
    if request.notice_minutes is not None and request.notice_minutes < 0:
        raise EventError("notice_minutes must be >= 0")


def _notice(event: DrEvent, enrollment: Enrollment, planned: Any) -> dict[str, Any]:
    """The notification body: when, what it takes, what is left (DOMAIN promise 3)."""
    zone = ZoneInfo(event.time_zone or enrollment.time_zone)
    body: dict[str, Any] = {
        "event_id": event.id,
        "program": event.program_id,
        "start": iso(event.start),
        "end": iso(event.end),
        "local_window": f"{event.start.astimezone(zone):%Y-%m-%d %H:%M} - "
        f"{event.end.astimezone(zone):%H:%M} {event.start.astimezone(zone):%Z}",
        "floor_soc_pct": enrollment.min_soc_pct,
        "opt_out": f'POST /api/v1/events/{event.id}/opt-outs {{"enrollment_id": {enrollment.id}}}',
    }
    if planned is not None:
        body["expected_export_kwh"] = round(planned.energy_kwh, 2)
        body["expected_battery_kwh"] = round(planned.battery_energy_kwh, 2)
        body["expected_soc_after_pct"] = round(planned.soc_pct[-1], 1)
        body["message"] = (
            f"Your car is expected to give {planned.battery_energy_kwh:.1f} kWh and keep "
            f"{planned.soc_pct[-1]:.0f} % (never below your {enrollment.min_soc_pct:.0f} % floor)."
        )
    else:
        body["message"] = (
            f"If your car is plugged in, it may discharge during the window; it never goes "
            f"below your {enrollment.min_soc_pct:.0f} % floor."
        )
    return body
