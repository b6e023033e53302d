"""/api/v1 vehicles, enrollments, programs and notifications: who takes part in V2G programs,
in which programs, and what they were told (DOMAIN.md participant promises 1-3).

Path operations stay short: enrolment rules live in csms.scheduler.enrolment, program rules in
csms.scheduler.programs (through the catalog), delivery in csms.scheduler.notify. A refused
request maps to its 4xx with the reason as `detail`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.api.deps import get_services
from csms.api.models import Problem
from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.enrolment import EnrolmentError, EnrolmentRequest, enrol, withdraw
from csms.scheduler.notify import Notifier
from csms.scheduler.programs import DuplicateProgramError, Program, ProgramError
from csms.services import Services
from csms.store.models import Enrollment, Notification, Vehicle
from iso15118_profiles import ev_models, pair_table

log = structlog.get_logger("csms.api")

router = APIRouter(prefix="/api/v1", tags=["enrolment"])
ServicesDep = Annotated[Services, Depends(get_services)]

_VEHICLE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Row ids are 32-bit integers in the store: a larger one is simply not there (404, not 500).
_MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=_MAX_ID, description="Row id.")]
_NOT_FOUND = {404: {"model": Problem, "description": "Unknown resource."}}


# ---- models ---------------------------------------------------------------------------------


class VehicleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, pattern=_VEHICLE_ID, description="Vehicle id; default '<ev_model>-<n>'."
    )
    ev_model: str = Field(description="EV model id from iso15118_profiles, e.g. 'kia-ev9-76'.")
    label: str = Field("", max_length=200, description="Free text, e.g. the owner's name.")


class VehicleView(BaseModel):
    id: str = Field(description="Vehicle id.")
    ev_model: str = Field(description="EV model id (iso15118_profiles).")
    ev_name: str = Field(description="The model's name.")
    label: str = Field(description="Free text.")
    usable_capacity_kwh: float = Field(description="Usable battery capacity of the model (kWh).")
    bms_min_soc_pct: float = Field(description="The car's own BMS floor (%).")
    bidirectional: bool = Field(description="The car itself can export.")
    matched_evse_models: list[str] = Field(
        description="Hardware catalog ids it may discharge on (the matched pairs)."
    )
    created_at: datetime = Field(description="When it was registered (UTC).")


class EnrollmentView(BaseModel):
    id: int = Field(description="Enrolment id.")
    participant: str = Field(description="Participant's name.")
    participant_class: str = Field(description="residential | commercial.")
    vehicle_id: str = Field(description="The enrolled vehicle.")
    station_id: str = Field(description="Station of the EVSE.")
    evse_id: int = Field(description="The EVSE the vehicle plugs into.")
    programs: list[str] = Field(description="Program ids it is enrolled in.")
    min_soc_pct: float = Field(description="The owner's floor (%).")
    departure_time: str | None = Field(description="Usual departure, local HH:MM.")
    time_zone: str = Field(description="IANA zone of the departure time.")
    webhook_url: str | None = Field(description="Where notifications are POSTed.")
    mqtt: bool = Field(description="Notifications are also published on MQTT.")
    active: bool = Field(description="False once withdrawn.")
    created_at: datetime = Field(description="When it was made (UTC).")
    withdrawn_at: datetime | None = Field(description="When it was withdrawn (UTC).")


class SeasonView(BaseModel):
    name: str = Field(description="Season name.")
    start: str = Field(description="First day, 'MM-DD' (inclusive).")
    end: str = Field(description="Last day, 'MM-DD' (inclusive; may wrap the year end).")
    window: list[str] = Field(description="Event window, local ['HH:MM', 'HH:MM'].")
    weekdays: list[int] = Field(description="Event days, 0 = Monday.")
    rates: dict[str, float] = Field(
        description="Rate per participant class, in the pay rule's unit ($/kW-season, "
        "$/kWh or $/MWh-certificate)."
    )


class ProgramView(BaseModel):
    id: str = Field(description="Program id.")
    aliases: list[str] = Field(description="Other names accepted for it.")
    name: str = Field(description="Program name.")
    custom: bool = Field(description="Defined by an operator (not shipped).")
    time_zone: str = Field(description="IANA zone of its windows.")
    pay_rule: str = Field(description="average_kw | per_kwh | clean_peak_certificates.")
    max_event_duration_min: float = Field(description="Longest event (minutes).")
    notice_lead_min: float = Field(description="Participants are told this long before.")
    events_per_season: dict[str, int] = Field(description="{min, typical, max} events.")
    season: list[SeasonView] = Field(
        description="Its seasons, as a definition's [[season]] tables write them."
    )
    annual_cap_usd: float | None = Field(None, description="Yearly pay cap, if any.")
    min_dispatchable_h_per_year: float | None = Field(
        None, description="Hours a year a participant must be dispatchable, if any."
    )
    sources: dict[str, str] = Field(description="Where each number comes from.")


class NotificationView(BaseModel):
    id: int = Field(description="Notification id.")
    enrollment_id: int = Field(description="Enrolment told.")
    participant: str = Field(description="Participant told.")
    event_id: int | None = Field(description="The event it is about, if any.")
    kind: str = Field(description="enrolled | withdrawn | event-scheduled | opted-out | ...")
    body: dict[str, Any] = Field(description="What they were told.")
    channels: list[str] = Field(description="webhook and/or mqtt; empty: a record only.")
    status: str = Field(description="pending | delivered | failed | recorded.")
    attempts: int = Field(description="Delivery attempts over all channels.")
    last_error: str = Field(description="Why delivery failed, if it did.")
    created_at: datetime = Field(description="When it was recorded (CSMS clock, UTC).")
    delivered_at: datetime | None = Field(description="When it was delivered (UTC).")


# ---- helpers --------------------------------------------------------------------------------


def _notifier(request: Request, services: Services) -> Notifier:
    """The process's notifier (the V2G room's), so deliveries drain at shutdown."""
    v2g = getattr(services, "v2g", None)
    if v2g is not None:
        return v2g.notifier
    state = request.app.state
    if getattr(state, "notifier", None) is None:
        state.notifier = Notifier(services)
    return state.notifier


def _raise(exc: EnrolmentError) -> HTTPException:
    return HTTPException(exc.status, detail=str(exc))


def _vehicle_view(vehicle: Vehicle) -> VehicleView:
    model = ev_models().get(vehicle.ev_model)
    return VehicleView(
        id=vehicle.id,
        ev_model=vehicle.ev_model,
        ev_name=model.name if model else vehicle.ev_model,
        label=vehicle.label,
        usable_capacity_kwh=model.usable_capacity_kwh if model else 0.0,
        bms_min_soc_pct=model.bms_min_soc_pct if model else 0.0,
        bidirectional=model.bidirectional if model else False,
        matched_evse_models=pair_table().matched_evse_models(vehicle.ev_model),
        created_at=vehicle.created_at,
    )


def _enrollment_view(row: Enrollment) -> EnrollmentView:
    return EnrollmentView.model_validate(row, from_attributes=True)


def _program_view(program: Program) -> ProgramView:
    return ProgramView(**program.definition(), custom=not ProgramCatalog.is_shipped(program))


# ---- vehicles -------------------------------------------------------------------------------


@router.get("/vehicles", summary="List vehicles", response_model=list[VehicleView])
async def list_vehicles(services: ServicesDep) -> list[VehicleView]:
    async with services.db.read() as session:
        rows = (await session.execute(select(Vehicle).order_by(Vehicle.id))).scalars()
        return [_vehicle_view(v) for v in rows]


@router.get(
    "/vehicles/{vehicle_id}",
    summary="One vehicle",
    response_model=VehicleView,
    responses=_NOT_FOUND,
)
async def get_vehicle(vehicle_id: str, services: ServicesDep) -> VehicleView:
    async with services.db.read() as session:
        vehicle = await session.get(Vehicle, vehicle_id)
    if vehicle is None:
        raise HTTPException(404, detail=f"unknown vehicle {vehicle_id!r}")
    return _vehicle_view(vehicle)


@router.post(
    "/vehicles",
    summary="Register a vehicle of a known EV model",
    status_code=201,
    response_model=VehicleView,
    responses={**_NOT_FOUND, 409: {"model": Problem, "description": "The id is taken."}},
)
async def create_vehicle(body: VehicleCreate, services: ServicesDep) -> VehicleView:
    models = ev_models()
    if body.ev_model not in models:
        known = ", ".join(sorted(models))
        raise HTTPException(404, detail=f"unknown EV model {body.ev_model!r}; known: {known}")
    now = services.clock.now()

    def unit(session: Session) -> Vehicle:
        vehicle_id = body.id or _next_vehicle_id(session, body.ev_model)
        if session.get(Vehicle, vehicle_id) is not None:
            raise EnrolmentError(409, f"vehicle {vehicle_id!r} already exists")
        vehicle = Vehicle(id=vehicle_id, ev_model=body.ev_model, label=body.label, created_at=now)
        session.add(vehicle)
        return vehicle

    try:
        vehicle = await services.writer.write(unit, label="api-vehicle")
    except EnrolmentError as exc:
        raise _raise(exc) from None
    log.info("vehicle.created", vehicle_id=vehicle.id, ev_model=vehicle.ev_model)
    return _vehicle_view(vehicle)


def _next_vehicle_id(session: Session, ev_model: str) -> str:
    taken = set(
        session.execute(select(Vehicle.id).where(Vehicle.id.startswith(ev_model))).scalars()  # type: ignore[attr-defined]
    )
    return next(
        f"{ev_model}-{n}" for n in range(1, len(taken) + 2) if f"{ev_model}-{n}" not in taken
    )


# ---- enrollments ----------------------------------------------------------------------------


@router.get("/enrollments", summary="List enrolments", response_model=list[EnrollmentView])
async def list_enrollments(
    services: ServicesDep,
    active: Annotated[bool | None, Query(description="Only active (or withdrawn) ones.")] = None,
    station_id: Annotated[str | None, Query(description="Only this station's.")] = None,
    program: Annotated[str | None, Query(description="Only those in this program (id).")] = None,
) -> list[EnrollmentView]:
    query = select(Enrollment).order_by(Enrollment.id)
    if active is not None:
        query = query.where(Enrollment.active.is_(active))  # type: ignore[attr-defined]
    if station_id is not None:
        query = query.where(Enrollment.station_id == station_id)
    async with services.db.read() as session:
        rows = list((await session.execute(query)).scalars())
    if program is not None:
        rows = [r for r in rows if program in r.programs]
    return [_enrollment_view(r) for r in rows]


@router.get(
    "/enrollments/{enrollment_id}",
    summary="One enrolment",
    response_model=EnrollmentView,
    responses=_NOT_FOUND,
)
async def get_enrollment(enrollment_id: RowId, services: ServicesDep) -> EnrollmentView:
    async with services.db.read() as session:
        row = await session.get(Enrollment, enrollment_id)
    if row is None:
        raise HTTPException(404, detail=f"unknown enrolment {enrollment_id}")
    return _enrollment_view(row)


@router.post(
    "/enrollments",
    summary="Enrol a participant's vehicle on an EVSE in programs (the pair must match)",
    status_code=201,
    response_model=EnrollmentView,
    responses={
        **_NOT_FOUND,
        409: {"model": Problem, "description": "The EVSE or vehicle is already enrolled."},
        422: {"model": Problem, "description": "Invalid values, or an unmatched pair."},
    },
)
async def create_enrollment(
    body: EnrolmentRequest, request: Request, services: ServicesDep
) -> EnrollmentView:
    try:
        row = await enrol(services, body, _notifier(request, services))
    except EnrolmentError as exc:
        raise _raise(exc) from None
    return _enrollment_view(row)


@router.delete(
    "/enrollments/{enrollment_id}",
    summary="Withdraw an enrolment (the participant is told)",
    response_model=EnrollmentView,
    responses=_NOT_FOUND,
)
async def delete_enrollment(
    enrollment_id: RowId, request: Request, services: ServicesDep
) -> EnrollmentView:
    try:
        row = await withdraw(services, enrollment_id, _notifier(request, services))
    except EnrolmentError as exc:
        raise _raise(exc) from None
    if services.v2g is not None:  # a car under an open event leaves it (promise 4)
        await services.v2g.events.withdrawn(enrollment_id)
    return _enrollment_view(row)


# ---- programs -------------------------------------------------------------------------------


@router.get("/programs", summary="Shipped and custom programs", response_model=list[ProgramView])
async def list_programs(services: ServicesDep) -> list[ProgramView]:
    programs = await ProgramCatalog(services).all()
    return [_program_view(p) for p in programs.values()]


@router.get(
    "/programs/{program_id}",
    summary="One program, by id or alias",
    response_model=ProgramView,
    responses=_NOT_FOUND,
)
async def get_program(program_id: str, services: ServicesDep) -> ProgramView:
    try:
        program = await ProgramCatalog(services).get(program_id)
    except LookupError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    return _program_view(program)


@router.post(
    "/programs",
    summary="Define a custom program (the shape of a programs.toml [[program]] table)",
    status_code=201,
    response_model=ProgramView,
    responses={
        409: {"model": Problem, "description": "Its id or an alias is taken."},
        422: {"model": Problem, "description": "Invalid definition; the reason names the field."},
    },
)
async def create_program(
    services: ServicesDep,
    definition: Annotated[dict[str, Any], Body(description="The program definition.")],
) -> ProgramView:
    try:
        program = await ProgramCatalog(services).add_custom(definition)
    except DuplicateProgramError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    except ProgramError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return _program_view(program)


# ---- notifications --------------------------------------------------------------------------


@router.get(
    "/notifications",
    summary="What participants were told, and how delivery went",
    response_model=list[NotificationView],
)
async def list_notifications(
    services: ServicesDep,
    enrollment_id: Annotated[
        int | None, Query(ge=1, le=_MAX_ID, description="Only this enrolment's.")
    ] = None,
    event_id: Annotated[
        int | None, Query(ge=1, le=_MAX_ID, description="Only those about this event.")
    ] = None,
    kind: Annotated[str | None, Query(description="Only this kind, e.g. enrolled.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many.")] = 1000,
) -> list[NotificationView]:
    query = select(Notification).order_by(Notification.id).limit(limit)
    if enrollment_id is not None:
        query = query.where(Notification.enrollment_id == enrollment_id)
    if event_id is not None:
        query = query.where(Notification.event_id == event_id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    async with services.db.read() as session:
        rows = (await session.execute(query)).scalars()
        return [NotificationView.model_validate(r, from_attributes=True) for r in rows]
