"""/api/v1/events: create, list, show, cancel demand-response events, and opt out of them.

The service layer (csms.scheduler.events) checks the program's rules; an `EventError` maps to
its HTTP status with the reason as detail. The report lives in csms.api.reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from csms.api.deps import get_services
from csms.api.models import Problem
from csms.scheduler.events import EventError, EventRequest, EventService
from csms.services import Services
from csms.store.models import DrEvent, EventParticipant
from simclock import iso

router = APIRouter(prefix="/api/v1/events", tags=["events"])
ServicesDep = Annotated[Services, Depends(get_services)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown event, program or enrolment."},
    409: {"model": Problem, "description": "The event's state does not allow it."},
    422: {"model": Problem, "description": "The request breaks a rule (program window...)."},
}


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program: str = Field(description="Program id or alias, e.g. 'connected-solutions'.")
    start: datetime = Field(description="ISO-8601 instant with a zone.")
    duration_minutes: float = Field(gt=0, le=24 * 60)
    target_kw: float | None = Field(default=None, gt=0, description="Export the utility asks for.")
    interval_minutes: float = Field(default=5.0, ge=1, le=60)
    reserve_pct: float = Field(
        default=3.0, ge=0, le=50, description="Share of the plan's flat level held back."
    )
    closed_loop: bool = Field(default=True, description="Re-plan on deviation.")
    notice_minutes: float | None = Field(
        default=None, ge=0, description="Notice lead; default the program's."
    )

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2026-07-15T19:00:00Z")
        return value


class OptOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enrollment_id: int


class ParticipantView(BaseModel):
    enrollment_id: int
    station_id: str
    evse_id: int
    status: str
    reason: str
    notified_at: str | None
    opted_out_at: str | None
    transaction_id: str | None
    profile_id: int | None
    planned_kwh: float
    expected_soc_end_pct: float | None
    soc_start_pct: float | None
    soc_end_pct: float | None
    last_setpoint_w: float | None
    delivered_kwh: float | None
    average_kw: float | None


class EventView(BaseModel):
    id: int
    program: str
    state: str
    start: str
    end: str
    time_zone: str
    season: str
    source: str
    notify_at: str
    target_kw: float | None
    interval_s: int
    reserve_pct: float
    closed_loop: bool
    committed_kw: float | None
    optimum_kw: float | None
    delivered_kw: float | None
    exported_kwh: float | None
    plan_revisions: int
    notified_at: str | None
    activated_at: str | None
    completed_at: str | None
    cancelled_at: str | None
    cancel_reason: str
    settled_at: str | None
    restatements: int
    participants: list[ParticipantView] | None = None


def _service(services: Services) -> EventService:
    assert services.v2g is not None, "the CSMS runtime starts the V2G room"
    return services.v2g.events


def _t(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _view(event: DrEvent, participants: list[EventParticipant] | None = None) -> EventView:
    return EventView(
        id=event.id or 0,
        program=event.program_id,
        state=event.state,
        start=iso(event.start),
        end=iso(event.end),
        time_zone=event.time_zone,
        season=event.season,
        source=event.source,
        notify_at=iso(event.notify_at),
        target_kw=event.target_kw,
        interval_s=event.interval_s,
        reserve_pct=event.reserve_pct,
        closed_loop=event.closed_loop,
        committed_kw=event.committed_kw,
        optimum_kw=event.optimum_kw,
        delivered_kw=event.delivered_kw,
        exported_kwh=event.exported_kwh,
        plan_revisions=event.plan_revision,
        notified_at=_t(event.notified_at),
        activated_at=_t(event.activated_at),
        completed_at=_t(event.completed_at),
        cancelled_at=_t(event.cancelled_at),
        cancel_reason=event.cancel_reason,
        settled_at=_t(event.settled_at),
        restatements=event.restatements,
        participants=None if participants is None else [_participant(p) for p in participants],
    )


def _participant(row: EventParticipant) -> ParticipantView:
    return ParticipantView(
        enrollment_id=row.enrollment_id,
        station_id=row.station_id,
        evse_id=row.evse_id,
        status=row.status,
        reason=row.reason,
        notified_at=_t(row.notified_at),
        opted_out_at=_t(row.opted_out_at),
        transaction_id=row.transaction_id,
        profile_id=row.profile_id,
        planned_kwh=row.planned_kwh,
        expected_soc_end_pct=row.expected_soc_end_pct,
        soc_start_pct=row.soc_start_pct,
        soc_end_pct=row.soc_end_pct,
        last_setpoint_w=row.last_setpoint_w,
        delivered_kwh=row.delivered_kwh,
        average_kw=row.average_kw,
    )


def _http(error: EventError) -> HTTPException:
    return HTTPException(error.status, detail=str(error))


@router.post("", status_code=201, response_model=EventView, responses=_ERRORS)
async def create_event(body: EventCreate, services: ServicesDep) -> EventView:
    """Schedule an event; participants are notified at the program's notice lead."""
    request = EventRequest(source="api", **body.model_dump())
    try:
        event = await _service(services).create(request)
    except EventError as error:
        raise _http(error) from error
    return _view(event)


@router.get("", response_model=list[EventView])
async def list_events(
    services: ServicesDep, state: Annotated[str | None, Query()] = None
) -> list[EventView]:
    return [_view(e) for e in await _service(services).list(state)]


@router.get("/{event_id}", response_model=EventView, responses=_ERRORS)
async def get_event(event_id: int, services: ServicesDep) -> EventView:
    """State, committed and delivered kW, and each participant's part (the allocation)."""
    service = _service(services)
    try:
        event = await service.get(event_id)
    except EventError as error:
        raise _http(error) from error
    return _view(event, await service.participants(event_id))


@router.delete("/{event_id}", response_model=EventView, responses=_ERRORS)
async def cancel_event(event_id: int, services: ServicesDep) -> EventView:
    """Cancel an open event; during it, every station stops discharging at once."""
    try:
        return _view(await _service(services).cancel(event_id))
    except EventError as error:
        raise _http(error) from error


@router.post(
    "/{event_id}/opt-outs", status_code=201, response_model=ParticipantView, responses=_ERRORS
)
async def opt_out(event_id: int, body: OptOut, services: ServicesDep) -> ParticipantView:
    """Promise 4: opt a participant out, before or during the event, without penalty."""
    try:
        row = await _service(services).opt_out(event_id, body.enrollment_id)
    except EventError as error:
        raise _http(error) from error
    return _participant(row)
