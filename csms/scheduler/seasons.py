"""Season performance and pay (DOMAIN.md, ConnectedSolutions): which program an id or alias
names, which season and season year an event belongs to, and per program season the completed
events (settled first where needed, csms.scheduler.settlement) and, per participant, the average
counted kW over the events it took part in and the pay the program's rule gives for it.

A participant is judged on the events it has a participant record in (an enrolment made
mid-season is not charged 0 kW for events before it); opt-outs count 0 kW, and so does a
negative net export.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from csms.scheduler import programs
from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.programs import EventDelivery, Program, ProgramError, Season
from csms.scheduler.settlement import is_opted_out, settle_event
from csms.store.models import DrEvent, Enrollment, EventParticipant, Vehicle

if TYPE_CHECKING:
    from csms.services import Services


class UnknownProgramError(LookupError):
    """No shipped or custom program has this id or alias."""

    def __init__(self, program_id: str) -> None:
        super().__init__(f"no program {program_id!r}")
        self.program_id = program_id


# --- programs and pay --------------------------------------------------------------------------


async def resolve_program(services: Services, program_id: str) -> Program:
    """A shipped or an operator's custom program, by id or alias (the program catalog)."""
    try:
        return await ProgramCatalog(services).get(program_id)
    except programs.UnknownProgramError:
        # Our own error, not the catalog's: callers answer 404 with this short message.
        raise UnknownProgramError(program_id) from None


def season_of(program: Program, event: DrEvent) -> Season | None:
    """The season an event belongs to: the name it was stored with, else its local start day."""
    if event.season:
        try:
            return program.season_named(event.season)
        except ProgramError:
            return None
    return program.season_on(event.start.astimezone(program.zone).date())


def season_year(season: Season, local_start: datetime) -> int:
    """The year a season instance is named for: a season wrapping the year end (Dec–Feb) is
    named for the year it starts in."""
    wraps = season.start_md > season.end_md
    if wraps and (local_start.month, local_start.day) <= season.end_md:
        return local_start.year - 1
    return local_start.year


def delivery(settled_kw: float | None, opted_out: bool, duration: timedelta) -> EventDelivery:
    """One event's outcome as the pay rules take it (negative net export counts 0 kW)."""
    return EventDelivery(max(0.0, settled_kw or 0.0), duration, opted_out=opted_out)


# --- season performance ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeasonEvent:
    """One completed event of the season."""

    event_id: int
    start: datetime
    end: datetime
    committed_kw: float | None
    delivered_kw: float | None
    participants: int
    opt_outs: int


@dataclass(frozen=True, slots=True)
class EventPerformance:
    """One participant in one event of the season."""

    event_id: int
    start: datetime
    opted_out: bool
    average_kw: float | None
    counted_kw: float
    delivered_kwh: float | None


@dataclass(frozen=True, slots=True)
class SeasonParticipant:
    """A participant's season: per-event performance, the average counted kW, and pay."""

    enrollment_id: int
    participant: str
    participant_class: str
    vehicle_id: str
    station_id: str
    evse_id: int
    events: tuple[EventPerformance, ...]
    average_kw: float  # mean counted kW over the events it took part in (opt-outs count 0)
    opt_outs: int
    pay_usd: float


@dataclass(frozen=True, slots=True)
class SeasonReport:
    program_id: str
    program_name: str
    pay_rule: str
    year: int
    season: str
    events: tuple[SeasonEvent, ...]
    participants: tuple[SeasonParticipant, ...]

    @property
    def pay_usd(self) -> float:
        return sum(p.pay_usd for p in self.participants)


async def season_report(
    services: Services, program_id: str, year: int, season_name: str
) -> SeasonReport:
    """Every completed event of a program's season in a year (settled first where needed), and
    per participant the average counted kW over the events it took part in and the season pay.

    A participant is judged on the events it has a participant record in (an enrolment made
    mid-season is not charged 0 kW for events before it); opt-outs count 0 kW (DOMAIN.md).
    """
    program = await resolve_program(services, program_id)
    season = program.season_named(season_name)
    events = await _season_events(services, program, season, year)
    for event in events:
        if event.settled_at is None:
            await settle_event(services, event.id or 0)
    rows = await _season_rows(services, [e.id or 0 for e in events])
    by_event: dict[int, list[EventParticipant]] = defaultdict(list)
    for participant, _, _ in rows:
        by_event[participant.event_id].append(participant)
    return SeasonReport(
        program_id=program.id,
        program_name=program.name,
        pay_rule=program.pay_rule,
        year=year,
        season=season.name,
        events=tuple(_season_event(e, by_event[e.id or 0]) for e in events),
        participants=_season_participants(program, season, events, rows),
    )


async def _season_events(
    services: Services, program: Program, season: Season, year: int
) -> list[DrEvent]:
    async with services.db.read() as session:
        query = (
            select(DrEvent)
            .where(DrEvent.program_id == program.id, DrEvent.state == "completed")
            .order_by(DrEvent.start, DrEvent.id)
        )
        candidates = list((await session.execute(query)).scalars())
    return [
        e
        for e in candidates
        if (found := season_of(program, e)) is not None
        and found.name == season.name
        and season_year(season, e.start.astimezone(program.zone)) == year
    ]


async def _season_rows(
    services: Services, event_ids: list[int]
) -> list[tuple[EventParticipant, Enrollment, str]]:
    if not event_ids:
        return []
    query = (
        select(EventParticipant, Enrollment, Vehicle.id)
        .join(Enrollment, Enrollment.id == EventParticipant.enrollment_id)
        .join(Vehicle, Vehicle.id == Enrollment.vehicle_id)
        .where(EventParticipant.event_id.in_(event_ids))  # type: ignore[attr-defined]
        .order_by(EventParticipant.enrollment_id, EventParticipant.event_id)
    )
    async with services.db.read() as session:
        return [tuple(r) for r in (await session.execute(query)).all()]  # type: ignore[misc]


def _season_event(event: DrEvent, participants: list[EventParticipant]) -> SeasonEvent:
    return SeasonEvent(
        event_id=event.id or 0,
        start=event.start,
        end=event.end,
        committed_kw=event.committed_kw,
        delivered_kw=event.delivered_kw,
        participants=len(participants),
        opt_outs=sum(is_opted_out(p) for p in participants),
    )


def _season_participants(
    program: Program,
    season: Season,
    events: list[DrEvent],
    rows: list[tuple[EventParticipant, Enrollment, str]],
) -> tuple[SeasonParticipant, ...]:
    by_id = {e.id: e for e in events}
    grouped: dict[int, list[tuple[EventParticipant, Enrollment, str]]] = defaultdict(list)
    for row in rows:
        grouped[row[1].id or 0].append(row)
    result = []
    for enrollment_id, group in grouped.items():
        enrollment, vehicle_id = group[0][1], group[0][2]
        performances = tuple(_performance(by_id[p.event_id], p) for p, _, _ in group)
        deliveries = [
            delivery(p.average_kw, p.opted_out, by_id[p.event_id].end - by_id[p.event_id].start)
            for p in performances
        ]
        result.append(
            SeasonParticipant(
                enrollment_id=enrollment_id,
                participant=enrollment.participant,
                participant_class=enrollment.participant_class,
                vehicle_id=vehicle_id,
                station_id=enrollment.station_id,
                evse_id=enrollment.evse_id,
                events=performances,
                average_kw=sum(p.counted_kw for p in performances) / len(performances),
                opt_outs=sum(p.opted_out for p in performances),
                pay_usd=programs.season_pay(
                    program, enrollment.participant_class, deliveries, season=season.name
                ),
            )
        )
    return tuple(result)


def _performance(event: DrEvent, participant: EventParticipant) -> EventPerformance:
    opted_out = is_opted_out(participant)
    average = participant.average_kw
    counted = 0.0 if opted_out or average is None else max(0.0, average)
    return EventPerformance(
        event_id=event.id or 0,
        start=event.start,
        opted_out=opted_out,
        average_kw=average,
        counted_kw=counted,
        delivered_kwh=participant.delivered_kwh,
    )
