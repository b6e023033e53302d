"""Settlement: what each participant of a demand-response event delivered, measured from the
station's export and import registers (never from the setpoints we sent, DESIGN §3.8). This
module holds the meters around a window, one participant's and one event's numbers, and
`settle_event` with its write-or-restate bookkeeping. Late data re-settles through
csms.scheduler.restater; season performance and pay are in csms.scheduler.seasons.

Registers are read with the meter arithmetic of csms.scheduler.telemetry (units and
multipliers, phases, interpolation between bracketing samples, the nearest sample at an end only
within one meter interval or across a gap in which no transaction ran). Samples are read from
EDGE_MARGIN (one hour) either side of the window; a register that stays unknown at an edge
leaves the participant's delivered energy unknown, and its `reason` says why (an unmeasured
participant counts 0 kW until its data arrives, then the event is restated).

Per participant: delivered_kwh = Δexport − Δimport over the window (net export at the grid),
average_kw = delivered_kwh / window hours, counted_kw = 0 when opted out (program rule), else
max(0, average_kw). floor_violated: the
lowest SoC seen in the window is more than FLOOR_TOLERANCE_PCT below the owner's floor (meters
report SoC rounded, so a reading a few tenths under the floor is rounding, not a violation).

Per event: delivered_kw = Σ counted_kw (the program's performance figure); exported_kwh =
Σ delivered_kwh over participants with known registers (the fleet's net export at the grid).

Restatement: settling a settled event again writes only when a number changed (a late offline
replay arrived); then `restatements` goes up, `restated_at` is set and `settlement.restated` is
logged with the old and new delivered kW.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from csms.scheduler.telemetry import (
    EDGE_MARGIN,
    EXPORT_REGISTER,
    IMPORT_REGISTER,
    SOC,
    Reading,
    Series,
    Span,
    busy_spans,
    load_samples,
    load_transactions,
    series_of,
    value_at,
)
from csms.store.models import DrEvent, Enrollment, EventParticipant
from csms.store.writer import GroupWriter
from simclock import iso

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.settlement")

SETTLEMENT_MEASURANDS = (EXPORT_REGISTER, IMPORT_REGISTER, SOC)

# Meters report SoC in whole or tenth percents: half a percent under the floor is rounding.
FLOOR_TOLERANCE_PCT = 0.5
# Numbers equal to this many decimals are "identical" for restatement (float round trips).
_DECIMALS = 6
_NOTE_MARK = "settlement: "
# The sample that brackets a window's end comes up to one meter interval after it (and a
# busy station's queue a little later): settling before then would only be restated.
CLOSING_SAMPLES_WAIT = timedelta(minutes=3)


class SettlementError(ValueError):
    """An event cannot be settled (cancelled, or its window is not over); the message says why."""


class UnknownEventError(LookupError):
    """No such event."""

    def __init__(self, event_id: int) -> None:
        super().__init__(f"no event {event_id}")
        self.event_id = event_id


# --- one EVSE around a window ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvseMeter:
    """What one EVSE's meter said around a window: registers (Wh), SoC (%), and its transactions."""

    station_id: str
    evse_id: int
    export_wh: Series
    import_wh: Series
    soc_pct: Series
    busy: tuple[Span, ...]

    def export_at(self, at: datetime) -> Reading:
        return value_at(self.export_wh, at, self.busy)

    def import_at(self, at: datetime) -> Reading:
        return value_at(self.import_wh, at, self.busy)

    def soc_at(self, at: datetime) -> Reading:
        # SoC is the car's: only samples near the instant count, an idle EVSE has no car.
        return value_at(self.soc_pct, at)

    def net_export_kwh(self, start: datetime, end: datetime) -> float | None:
        """(Δexport − Δimport) / 1000 between two instants, or None if a register is unknown."""
        values = [self.export_at(start), self.export_at(end)]
        values += [self.import_at(start), self.import_at(end)]
        if any(r.value is None for r in values):
            return None
        e0, e1, i0, i1 = (r.value for r in values)
        return ((e1 - e0) - (i1 - i0)) / 1000.0  # type: ignore[operator]


async def load_meter(
    session: AsyncSession, station_id: str, evse_id: int, start: datetime, end: datetime
) -> EvseMeter:
    """The EVSE's registers, SoC and transactions from EDGE_MARGIN before start to after end."""
    lo, hi = start - EDGE_MARGIN, end + EDGE_MARGIN
    rows = await load_samples(session, station_id, evse_id, lo, hi, SETTLEMENT_MEASURANDS)
    txs = await load_transactions(session, station_id, lo, hi)
    return EvseMeter(
        station_id,
        evse_id,
        export_wh=series_of(rows, EXPORT_REGISTER),
        import_wh=series_of(rows, IMPORT_REGISTER),
        soc_pct=series_of(rows, SOC),
        busy=busy_spans(rows, txs, evse_id),
    )


# --- one participant ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantSettlement:
    """One participant's outcome over [start, until] of the event window, from registers."""

    participant_id: int
    enrollment_id: int
    station_id: str
    evse_id: int
    opted_out: bool
    min_soc_pct: float
    start: datetime
    until: datetime
    export_start_wh: float | None
    export_end_wh: float | None
    import_start_wh: float | None
    import_end_wh: float | None
    soc_start_pct: float | None
    soc_end_pct: float | None
    min_soc_seen_pct: float | None
    soc_series: tuple[tuple[datetime, float], ...]
    note: str  # why a number is unknown; "" when all are known
    meter: EvseMeter = field(repr=False, compare=False)

    @property
    def hours(self) -> float:
        return (self.until - self.start).total_seconds() / 3600.0

    @property
    def exported_kwh(self) -> float | None:
        return _delta_kwh(self.export_start_wh, self.export_end_wh)

    @property
    def imported_kwh(self) -> float | None:
        return _delta_kwh(self.import_start_wh, self.import_end_wh)

    @property
    def delivered_kwh(self) -> float | None:
        """Net export at the grid in the window (registers)."""
        if self.exported_kwh is None or self.imported_kwh is None:
            return None
        return self.exported_kwh - self.imported_kwh

    @property
    def average_kw(self) -> float | None:
        if self.delivered_kwh is None or self.hours <= 0:
            return None
        return self.delivered_kwh / self.hours

    @property
    def counted_kw(self) -> float:
        """What the program counts: 0 for an opt-out (or an unmeasured window), never negative."""
        if self.opted_out or self.average_kw is None:
            return 0.0
        return max(0.0, self.average_kw)

    @property
    def floor_violated(self) -> bool:
        if self.min_soc_seen_pct is None:
            return False
        return self.min_soc_seen_pct < self.min_soc_pct - FLOOR_TOLERANCE_PCT


def _delta_kwh(start_wh: float | None, end_wh: float | None) -> float | None:
    if start_wh is None or end_wh is None:
        return None
    return (end_wh - start_wh) / 1000.0


def settle_participant(
    participant: EventParticipant,
    min_soc_pct: float,
    meter: EvseMeter,
    start: datetime,
    until: datetime,
) -> ParticipantSettlement:
    """Registers and SoC at the edges of [start, until] and the lowest SoC seen in it."""
    readings = {
        "export register at start": meter.export_at(start),
        "export register at end": meter.export_at(until),
        "import register at start": meter.import_at(start),
        "import register at end": meter.import_at(until),
        "SoC at start": meter.soc_at(start),
        "SoC at end": meter.soc_at(until),
    }
    notes = [f"{name} unknown ({r.note})" for name, r in readings.items() if r.value is None]
    values = [r.value for r in readings.values()]
    series = tuple(meter.soc_pct.between(start, until))
    seen = [v for _, v in series] + [v for v in values[4:] if v is not None]
    return ParticipantSettlement(
        participant_id=participant.id or 0,
        enrollment_id=participant.enrollment_id,
        station_id=participant.station_id,
        evse_id=participant.evse_id,
        opted_out=is_opted_out(participant),
        min_soc_pct=min_soc_pct,
        start=start,
        until=until,
        export_start_wh=values[0],
        export_end_wh=values[1],
        import_start_wh=values[2],
        import_end_wh=values[3],
        soc_start_pct=values[4],
        soc_end_pct=values[5],
        min_soc_seen_pct=min(seen) if seen else None,
        soc_series=series,
        note="; ".join(notes),
        meter=meter,
    )


def is_opted_out(participant: EventParticipant) -> bool:
    return participant.status == "opted_out" or participant.opted_out_at is not None


# --- one event ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventSettlement:
    """An event's settlement: per participant, and the fleet's delivered kW and exported kWh."""

    event_id: int
    start: datetime
    until: datetime  # the window end, or "now" for an active event measured so far
    participants: tuple[ParticipantSettlement, ...]
    settled_at: datetime | None = None
    restatements: int = 0
    restated_at: datetime | None = None
    restated: bool = False  # this call changed an earlier settlement
    previous_delivered_kw: float | None = None

    @property
    def delivered_kw(self) -> float:
        """The program's performance figure: the sum of the counted kW."""
        return sum(p.counted_kw for p in self.participants)

    @property
    def exported_kwh(self) -> float:
        """The fleet's net export at the grid in the window (participants with known registers)."""
        return sum(p.delivered_kwh for p in self.participants if p.delivered_kwh is not None)


async def measure_event(
    services: Services, event_id: int, until: datetime | None = None
) -> EventSettlement:
    """Measure every participant of an event over [start, until] (default: the window end)
    without writing anything: what an active event's report shows so far."""
    async with services.db.read() as session:
        event = await session.get(DrEvent, event_id)
        if event is None:
            raise UnknownEventError(event_id)
        query = (
            select(EventParticipant, Enrollment.min_soc_pct)
            .join(Enrollment, Enrollment.id == EventParticipant.enrollment_id)
            .where(EventParticipant.event_id == event_id)
            .order_by(EventParticipant.id)
        )
        rows = (await session.execute(query)).all()
        end = min(until, event.end) if until is not None else event.end
        end = max(end, event.start)
        settled = []
        for participant, min_soc in rows:
            meter = await load_meter(
                session, participant.station_id, participant.evse_id, event.start, end
            )
            settled.append(settle_participant(participant, min_soc, meter, event.start, end))
    return EventSettlement(
        event_id=event_id,
        start=event.start,
        until=end,
        participants=tuple(settled),
        settled_at=event.settled_at,
        restatements=event.restatements,
        restated_at=event.restated_at,
    )


async def settle_event(services: Services, event_id: int) -> EventSettlement:
    """Settle an event whose window is over; settling again restates it if a number changed.

    Calls for one event are serialised in this process, so a slower computation on older data
    never overwrites a newer one.
    """
    async with _event_lock(services.writer, event_id):
        async with services.db.read() as session:
            event = await session.get(DrEvent, event_id)
        if event is None:
            raise UnknownEventError(event_id)
        now = services.clock.now()
        _check_settleable(event, now)
        measured = await measure_event(services, event_id)
        applied = await services.writer.write(
            lambda session: _apply(session, measured, now), label="settlement"
        )
    _log_applied(measured, applied)
    return EventSettlement(
        event_id=measured.event_id,
        start=measured.start,
        until=measured.until,
        participants=measured.participants,
        settled_at=applied.settled_at,
        restatements=applied.restatements,
        restated_at=applied.restated_at,
        restated=applied.restated,
        previous_delivered_kw=applied.previous_delivered_kw,
    )


def _check_settleable(event: DrEvent, now: datetime) -> None:
    if event.state == "cancelled":
        raise SettlementError(f"event {event.id} was cancelled: there is nothing to settle")
    if now < event.end:
        raise SettlementError(
            f"event {event.id} runs until {iso(event.end)} (now {iso(now)}): it is settled "
            "once its window is over"
        )


_LOCKS: weakref.WeakKeyDictionary[GroupWriter, dict[int, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _event_lock(writer: GroupWriter, event_id: int) -> asyncio.Lock:
    # Keyed by the process's writer (one per CSMS), so two systems in one test never share.
    return _LOCKS.setdefault(writer, {}).setdefault(event_id, asyncio.Lock())


@dataclass(frozen=True, slots=True)
class _Applied:
    changed: bool
    restated: bool
    previous_delivered_kw: float | None
    settled_at: datetime | None
    restatements: int
    restated_at: datetime | None


def _apply(session: Session, measured: EventSettlement, now: datetime) -> _Applied:
    """Write the settlement unless it equals the stored one (runs on the writer thread)."""
    event = session.get(DrEvent, measured.event_id)
    assert event is not None, "events are never deleted"
    rows = {
        p.id: p
        for p in session.scalars(
            select(EventParticipant).where(EventParticipant.event_id == measured.event_id)
        )
    }
    previous = event.delivered_kw
    if event.settled_at is not None and _stored(event, rows) == _fingerprint(measured):
        return _Applied(
            False, False, previous, event.settled_at, event.restatements, event.restated_at
        )
    restated = event.settled_at is not None
    for settled in measured.participants:
        row = rows.get(settled.participant_id)
        if row is not None:
            _write_participant(row, settled, now)
    event.delivered_kw = measured.delivered_kw
    event.exported_kwh = measured.exported_kwh
    if restated:
        event.restatements += 1
        event.restated_at = now
    else:
        event.settled_at = now
    return _Applied(
        True, restated, previous, event.settled_at, event.restatements, event.restated_at
    )


def _write_participant(
    row: EventParticipant, settled: ParticipantSettlement, now: datetime
) -> None:
    for name in _SETTLED_FIELDS:
        setattr(row, name, getattr(settled, name))
    row.reason = with_settlement_note(row.reason, settled.note)
    row.updated_at = now


def with_settlement_note(reason: str, note: str) -> str:
    """The participant's reason with the settlement's own note replaced (kept once)."""
    base = reason.split(_NOTE_MARK, 1)[0].rstrip("; ").strip()
    if not note:
        return base
    return f"{base}; {_NOTE_MARK}{note}" if base else f"{_NOTE_MARK}{note}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, _DECIMALS)


# The numbers a settlement writes per participant: equal ones mean nothing to restate.
_SETTLED_FIELDS = (
    "export_start_wh",
    "export_end_wh",
    "import_start_wh",
    "import_end_wh",
    "soc_start_pct",
    "soc_end_pct",
    "min_soc_seen_pct",
    "delivered_kwh",
    "average_kw",
)


def _numbers(pid: int, source: ParticipantSettlement | EventParticipant) -> tuple[Any, ...]:
    return (pid, *(_round(getattr(source, name)) for name in _SETTLED_FIELDS))


def _fingerprint(measured: EventSettlement) -> tuple[Any, ...]:
    participants = sorted(_numbers(p.participant_id, p) for p in measured.participants)
    return (_round(measured.delivered_kw), _round(measured.exported_kwh), tuple(participants))


def _stored(event: DrEvent, rows: dict[int | None, EventParticipant]) -> tuple[Any, ...]:
    participants = sorted(_numbers(pid or 0, row) for pid, row in rows.items())
    return (_round(event.delivered_kw), _round(event.exported_kwh), tuple(participants))


def _log_applied(measured: EventSettlement, applied: _Applied) -> None:
    if applied.restated:
        log.info(
            "settlement.restated",
            event_id=measured.event_id,
            old_delivered_kw=applied.previous_delivered_kw,
            new_delivered_kw=measured.delivered_kw,
            restatements=applied.restatements,
        )
    elif applied.changed:
        log.info(
            "settlement.settled",
            event_id=measured.event_id,
            delivered_kw=measured.delivered_kw,
            exported_kwh=measured.exported_kwh,
            participants=len(measured.participants),
        )
