"""Event reports: the JSON of GET /api/v1/events/{id}/report (the report contract shared with the
HTML report and the demo) and its CSV form.

What the report measures depends on the event's state: a completed event is settled first
(settling an already settled one restates it only if late data changed a number), once
CLOSING_SAMPLES_WAIT has passed since its end so that the samples bracketing the end are in
(before that it is measured without writing); an active one is measured from its start to now,
without writing; one that never ran (scheduled, notified, cancelled before its start) has no
measurements (nulls). Per-interval delivered kW is the register difference (Δexport − Δimport)
over the interval summed over the participants whose registers are known at both its ends; an
interval not yet over is null.

CSV layout: a header and one row per participant (every participant field but `soc_series`),
then one blank line, then a header and one row per interval (start, end, committed_kw,
planned_kw, delivered_kw). Instants are ISO-8601 UTC ('Z'); a null is an empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from csms.scheduler import programs
from csms.scheduler.programs import Program, ProgramError
from csms.scheduler.seasons import UnknownProgramError, delivery, resolve_program, season_of
from csms.scheduler.settlement import (
    CLOSING_SAMPLES_WAIT,
    EventSettlement,
    ParticipantSettlement,
    SettlementError,
    UnknownEventError,
    is_opted_out,
    measure_event,
    settle_event,
    with_settlement_note,
)
from csms.scheduler.telemetry import csv_cell
from csms.store.models import (
    DrEvent,
    Enrollment,
    EventParticipant,
    EventPlan,
    Notification,
    Vehicle,
)
from simclock import iso

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.reports")

_KW_DECIMALS = 4
_INTERVAL_FIELDS = ("start", "end", "committed_kw", "planned_kw", "delivered_kw")
# The participant columns of the CSV: every field of a report participant but soc_series.
PARTICIPANT_CSV_FIELDS = (
    "enrollment_id",
    "participant",
    "participant_class",
    "vehicle_id",
    "ev_model",
    "station_id",
    "evse_id",
    "status",
    "reason",
    "notified_at",
    "opted_out",
    "opted_out_at",
    "min_soc_pct",
    "soc_start_pct",
    "soc_end_pct",
    "min_soc_seen_pct",
    "floor_violated",
    "exported_kwh",
    "imported_kwh",
    "delivered_kwh",
    "average_kw",
    "counted_kw",
    "pay_usd",
    "planned_kwh",
    "expected_soc_end_pct",
)


@dataclass(frozen=True, slots=True)
class _Row:
    """One participant as stored: its event record, enrolment and vehicle model."""

    participant: EventParticipant
    enrollment: Enrollment
    ev_model: str


async def event_report(services: Services, event_id: int) -> dict[str, Any]:
    """The event's report in the contract's shape (UnknownEventError for an unknown id)."""
    async with services.db.read() as session:
        event = await session.get(DrEvent, event_id)
    if event is None:
        raise UnknownEventError(event_id)
    settlement = await _measure(services, event)
    async with services.db.read() as session:
        event = await session.get(DrEvent, event_id)  # settling may have written to it
        assert event is not None, "events are never deleted"
        rows = await _rows(session, event_id)
        plans = list(
            (
                await session.execute(
                    select(EventPlan)
                    .where(EventPlan.event_id == event_id)
                    .order_by(EventPlan.revision)
                )
            ).scalars()
        )
        notified = await _notified_before_start(session, event)
    program = await _program(services, event.program_id)
    measured = {p.participant_id: p for p in settlement.participants} if settlement else {}
    participants = [
        _participant(event, program, r, measured.get(r.participant.id or 0)) for r in rows
    ]
    return {
        "event": _event(event, program, settlement, len(plans)),
        "intervals": _intervals(event, plans, settlement),
        "participants": participants,
        "totals": _totals(participants, notified),
    }


async def _measure(services: Services, event: DrEvent) -> EventSettlement | None:
    """Settle a completed event; measure an active one so far; None for one that never ran.

    A completed event is measured without settling until CLOSING_SAMPLES_WAIT after its end:
    the samples that bracket the end are still coming, and settling without them would only
    have to be restated.
    """
    now = services.clock.now()
    closed = event.settled_at is not None or now >= event.end + CLOSING_SAMPLES_WAIT
    if event.state == "completed" and closed:
        try:
            return await settle_event(services, event.id or 0)
        except SettlementError:  # completed before its window's end: measure what ran
            pass
    ran_until = event.cancelled_at if event.state == "cancelled" else now
    if ran_until is None or ran_until <= event.start:
        return None
    return await measure_event(services, event.id or 0, until=min(ran_until, event.end))


async def _rows(session: AsyncSession, event_id: int) -> list[_Row]:
    query = (
        select(EventParticipant, Enrollment, Vehicle.ev_model)
        .join(Enrollment, Enrollment.id == EventParticipant.enrollment_id)
        .outerjoin(Vehicle, Vehicle.id == Enrollment.vehicle_id)
        .where(EventParticipant.event_id == event_id)
        .order_by(EventParticipant.id)
    )
    return [_Row(p, e, model or "") for p, e, model in (await session.execute(query)).all()]


async def _notified_before_start(session: AsyncSession, event: DrEvent) -> set[int]:
    """Enrolments whose event-scheduled notification was created before the event's start."""
    query = select(Notification.enrollment_id).where(
        Notification.event_id == event.id,
        Notification.kind == "event-scheduled",
        Notification.created_at < event.start,
    )
    return set((await session.execute(query)).scalars())


async def _program(services: Services, program_id: str) -> Program | None:
    try:
        return await resolve_program(services, program_id)
    except (UnknownProgramError, ProgramError) as exc:
        log.warning("report.program_unknown", program_id=program_id, error=str(exc))
        return None


# --- the sections ------------------------------------------------------------------------------


def _event(
    event: DrEvent, program: Program | None, settlement: EventSettlement | None, revisions: int
) -> dict[str, Any]:
    delivered = settlement.delivered_kw if settlement else event.delivered_kw
    exported = settlement.exported_kwh if settlement else event.exported_kwh
    committed = event.committed_kw
    ratio = delivered / committed if committed and delivered is not None else None
    return {
        "id": event.id,
        "program": event.program_id,
        "program_name": program.name if program else event.program_id,
        "state": event.state,
        "start": iso(event.start),
        "end": iso(event.end),
        "time_zone": event.time_zone or (program.time_zone if program else "UTC"),
        "interval_s": event.interval_s,
        "committed_kw": _r(committed),
        "delivered_kw": _r(delivered),
        "exported_kwh": _r(exported),
        "delivery_ratio": _r(ratio),
        "plan_revisions": revisions,
        "settled_at": _t(event.settled_at),
        "restatements": event.restatements,
        "restated_at": _t(event.restated_at),
        "restated": event.restatements > 0,
        "measured_until": _t(settlement.until) if settlement else None,
    }


def _intervals(
    event: DrEvent, plans: Sequence[EventPlan], settlement: EventSettlement | None
) -> list[dict[str, Any]]:
    step = timedelta(seconds=event.interval_s)
    intervals = []
    start, index = event.start, 0
    while start < event.end:
        end = min(start + step, event.end)
        measured = settlement is not None and end <= settlement.until
        intervals.append(
            {
                "start": iso(start),
                "end": iso(end),
                "committed_kw": _r(event.committed_kw),
                "planned_kw": _r(_planned_kw(plans, start, index)),
                "delivered_kw": _r(
                    _delivered_kw(settlement.participants, start, end) if measured else None  # type: ignore[union-attr]
                ),
            }
        )
        start, index = end, index + 1
    return intervals


def _planned_kw(plans: Sequence[EventPlan], start: datetime, index: int) -> float | None:
    """The aggregate kW of the plan revision in force at `start`: the latest one created by
    then, or the first revision for intervals before it."""
    if not plans:
        return None
    in_force = [p for p in plans if p.created_at <= start] or [plans[0]]
    plan = in_force[-1]
    starts = [_parse(s) for s in plan.interval_starts]
    at = starts.index(start) if start in starts else index
    values = [kw[at] for kw in plan.allocation.values() if isinstance(kw, list) and at < len(kw)]
    return sum(values) if values else None


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _delivered_kw(
    participants: Sequence[ParticipantSettlement], start: datetime, end: datetime
) -> float | None:
    hours = (end - start).total_seconds() / 3600.0
    known = [p.meter.net_export_kwh(start, end) for p in participants]
    kwh = [k for k in known if k is not None]
    return sum(kwh) / hours if kwh and hours > 0 else None


def _participant(
    event: DrEvent, program: Program | None, row: _Row, settled: ParticipantSettlement | None
) -> dict[str, Any]:
    p, enrollment = row.participant, row.enrollment
    measured = _measured_fields(settled, p)
    return {
        "enrollment_id": p.enrollment_id,
        "participant": enrollment.participant,
        "participant_class": enrollment.participant_class,
        "vehicle_id": enrollment.vehicle_id,
        "ev_model": row.ev_model,
        "station_id": p.station_id,
        "evse_id": p.evse_id,
        "status": p.status,
        "reason": with_settlement_note(p.reason, settled.note) if settled else p.reason,
        "notified_at": _t(p.notified_at),
        "opted_out": is_opted_out(p),
        "opted_out_at": _t(p.opted_out_at),
        "min_soc_pct": enrollment.min_soc_pct,
        **measured,
        "pay_usd": _pay(event, program, enrollment, settled),
        "planned_kwh": _r(p.planned_kwh),
        "expected_soc_end_pct": _r(p.expected_soc_end_pct),
        "soc_series": [[iso(t), v] for t, v in settled.soc_series] if settled else [],
    }


def _measured_fields(settled: ParticipantSettlement | None, p: EventParticipant) -> dict[str, Any]:
    if settled is None:
        names = ("soc_start_pct", "soc_end_pct", "min_soc_seen_pct", "exported_kwh")
        names += ("imported_kwh", "delivered_kwh", "average_kw")
        return {name: None for name in names} | {"floor_violated": False, "counted_kw": 0.0}
    return {
        "soc_start_pct": _r(settled.soc_start_pct),
        "soc_end_pct": _r(settled.soc_end_pct),
        "min_soc_seen_pct": _r(settled.min_soc_seen_pct),
        "floor_violated": settled.floor_violated,
        "exported_kwh": _r(settled.exported_kwh),
        "imported_kwh": _r(settled.imported_kwh),
        "delivered_kwh": _r(settled.delivered_kwh),
        "average_kw": _r(settled.average_kw),
        "counted_kw": _r(settled.counted_kw),
    }


def _pay(
    event: DrEvent,
    program: Program | None,
    enrollment: Enrollment,
    settled: ParticipantSettlement | None,
) -> float | None:
    """Season pay at this event's performance (as if every event of the season went so)."""
    season = season_of(program, event) if program else None
    if program is None or season is None or settled is None:
        return None
    outcome = delivery(settled.average_kw, settled.opted_out, event.end - event.start)
    try:
        pay = programs.season_pay(
            program, enrollment.participant_class, [outcome], season=season.name
        )
    except ProgramError as exc:  # e.g. a custom program without a rate for this class
        log.warning("report.no_pay", event_id=event.id, error=str(exc))
        return None
    return round(pay, 2)


def _totals(participants: Sequence[dict[str, Any]], notified: set[int]) -> dict[str, Any]:
    pays = [p["pay_usd"] for p in participants if p["pay_usd"] is not None]
    return {
        "participants": len(participants),
        "notified_before_start": sum(p["enrollment_id"] in notified for p in participants),
        "opt_outs": sum(p["opted_out"] for p in participants),
        "soc_floor_violations": sum(p["floor_violated"] for p in participants),
        "pay_usd": round(sum(pays), 2),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, _KW_DECIMALS)


def _t(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


# --- CSV ---------------------------------------------------------------------------------------


def event_report_csv(report: dict[str, Any]) -> str:
    """The report as CSV: participants, a blank line, intervals (module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PARTICIPANT_CSV_FIELDS)
    for participant in report["participants"]:
        writer.writerow([_cell(participant.get(k)) for k in PARTICIPANT_CSV_FIELDS])
    writer.writerow([])
    writer.writerow(_INTERVAL_FIELDS)
    for interval in report["intervals"]:
        writer.writerow([_cell(interval.get(k)) for k in _INTERVAL_FIELDS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return csv_cell(value)
