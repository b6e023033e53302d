"""Enrolment: a participant's vehicle on one EVSE, in one or more programs, with the owner's
promises (minimum SoC, usual departure) and the channels they are told on (DOMAIN.md promises
1, 2 and 3).

`enrol` validates a request against the program catalog, the EV models of iso15118_profiles and
the hardware catalog, refuses an EV that may not discharge on that EVSE (an unmatched pair,
DOMAIN.md "Matched pairs matter"), stores the Vehicle and the Enrollment, and tells the
participant which programs they are now in. Every refusal is an `EnrolmentError` with the
HTTP status the REST API answers (404 unknown thing, 409 conflict, 422 invalid value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.hardware import hardware_by_id, hardware_of, known_model_ids
from csms.scheduler.notify import Notifier
from csms.scheduler.programs import Program, ProgramError, UnknownProgramError, find_program
from csms.store.models import Enrollment, Station, Vehicle
from iso15118_profiles import EvModel, can_discharge, ev_models
from simulators.catalog import HardwareModel

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.enrolment")

_VEHICLE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SLUG = re.compile(r"[^a-z0-9]+")


class EnrolmentError(ValueError):
    """An enrolment request refused; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EnrolmentRequest(BaseModel):
    """What a participant (or the operator on their behalf) asks for."""

    model_config = ConfigDict(extra="forbid")

    participant: str = Field(min_length=1, max_length=120, description="Participant's name.")
    participant_class: Literal["residential", "commercial"] = Field(
        "residential", description="Decides the program rate that applies (DOMAIN.md)."
    )
    vehicle_id: str | None = Field(
        None,
        pattern=_VEHICLE_ID,
        description="An existing vehicle, or the id to give a new one (with vehicle_model).",
    )
    vehicle_model: str | None = Field(
        None,
        description="EV model id from iso15118_profiles (csms-sim evs), e.g. 'nissan-leaf-40'. "
        "Registers a new vehicle; its id is vehicle_id or derived from the participant.",
    )
    station_id: str = Field(min_length=1, max_length=48, description="The station of the EVSE.")
    evse_id: int = Field(1, ge=1, description="The EVSE the vehicle plugs into.")
    evse_model: str | None = Field(
        None,
        description="Hardware catalog id of the station (csms-sim models), e.g. 'dcbel-ara'. "
        "Needed when the station has not booted yet or its hardware is not in the catalog.",
    )
    programs: list[str] = Field(
        min_length=1, description="Program ids or aliases, e.g. ['connected-solutions']."
    )
    min_soc_pct: float = Field(
        ge=0, le=100, description="The owner's floor: events never take the car below it (%)."
    )
    departure_time: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="Usual departure, local 'HH:MM' in time_zone.",
    )
    time_zone: str | None = Field(
        None, description="IANA zone of the departure time; default: the first program's zone."
    )
    webhook_url: str | None = Field(
        None, max_length=2000, description="http(s) URL that receives notifications as JSON."
    )
    mqtt: bool = Field(False, description="Also publish notifications on MQTT.")

    @field_validator("participant")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("participant must not be blank")
        return value.strip()

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone {value!r} is not a known IANA zone") from None
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook_url {value!r} must be an http:// or https:// URL")
        return value


@dataclass(frozen=True, slots=True)
class _Checked:
    """A request that passed every check that needs no write: what the unit of work stores."""

    programs: tuple[Program, ...]
    ev: EvModel
    hardware: HardwareModel
    vehicle_id: str | None  # None: derive from the participant
    new_vehicle: bool
    time_zone: str


async def enrol(
    services: Services, request: EnrolmentRequest, notifier: Notifier | None = None
) -> Enrollment:
    """Store an enrolment and tell the participant which programs they are in.

    A long-running caller (the REST API) passes its Notifier, which delivers in the background.
    Without one (a one-shot CLI command) a Notifier is made for this call and closed before
    returning, so the message is not lost when the process exits.
    """
    checked = await _check(services, request)
    enrollment = await services.writer.write(
        lambda session: _store(session, request, checked, services), label="enrol"
    )
    log.info(
        "enrolment.created",
        enrollment_id=enrollment.id,
        participant=enrollment.participant,
        vehicle_id=enrollment.vehicle_id,
        station_id=enrollment.station_id,
        evse_id=enrollment.evse_id,
        programs=enrollment.programs,
    )
    await _tell(services, notifier, enrollment, "enrolled", _enrolled_body(enrollment, checked))
    return enrollment


async def withdraw(
    services: Services, enrollment_id: int, notifier: Notifier | None = None
) -> Enrollment:
    """End an enrolment (active False); the participant is told they are in no program now.
    Withdrawing an enrolment that already ended changes nothing."""
    now = services.clock.now()

    def unit(session: Session) -> tuple[Enrollment | None, bool]:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None or not enrollment.active:
            return enrollment, False
        enrollment.active = False
        enrollment.withdrawn_at = now
        return enrollment, True

    enrollment, changed = await services.writer.write(unit, label="withdraw")
    if enrollment is None:
        raise EnrolmentError(404, f"unknown enrolment {enrollment_id}")
    if changed:
        log.info("enrolment.withdrawn", enrollment_id=enrollment_id)
        body = {
            "message": "You are no longer enrolled in any program with this vehicle.",
            "withdrawn_programs": list(enrollment.programs),
            "programs": [],
        }
        await _tell(services, notifier, enrollment, "withdrawn", body)
    return enrollment


async def _tell(
    services: Services,
    notifier: Notifier | None,
    enrollment: Enrollment,
    kind: str,
    body: dict[str, Any],
) -> None:
    if notifier is not None:
        await notifier.notify(enrollment, kind, body)
        return
    own = Notifier(services)
    try:
        await own.notify(enrollment, kind, body)
    finally:
        await own.close()


# ---- checks that need no write ----------------------------------------------------------


async def _check(services: Services, request: EnrolmentRequest) -> _Checked:
    programs = await _programs(ProgramCatalog(services), request)
    async with services.db.read() as session:
        vehicle = await session.get(Vehicle, request.vehicle_id) if request.vehicle_id else None
        station = await session.get(Station, request.station_id)
    ev = _ev_model(request, vehicle)
    if request.min_soc_pct < ev.bms_min_soc_pct:
        raise EnrolmentError(
            422,
            f"min_soc_pct {request.min_soc_pct:g} is below the {ev.name}'s own BMS floor of "
            f"{ev.bms_min_soc_pct:g} %: the car never goes lower, so a lower promise is void",
        )
    hardware = _hardware(request, station)
    if request.evse_id > hardware.evse_count:
        raise EnrolmentError(
            422,
            f"{hardware.vendor_name} {hardware.model} has {hardware.evse_count} EVSE(s); "
            f"there is no EVSE {request.evse_id}",
        )
    pair = can_discharge(ev.id, hardware.id)
    if not pair.allowed:
        raise EnrolmentError(422, f"cannot enrol {ev.id} on {hardware.id}: {pair.reason}")
    return _Checked(
        programs=programs,
        ev=ev,
        hardware=hardware,
        vehicle_id=request.vehicle_id,
        new_vehicle=vehicle is None,
        time_zone=request.time_zone or programs[0].time_zone,
    )


async def _programs(catalog: ProgramCatalog, request: EnrolmentRequest) -> tuple[Program, ...]:
    known = await catalog.all()
    chosen: dict[str, Program] = {}
    for name in request.programs:
        try:
            program = find_program(known, name)
        except UnknownProgramError as exc:
            raise EnrolmentError(404, str(exc)) from None
        chosen.setdefault(program.id, program)
    for program in chosen.values():
        for season in program.seasons:
            try:
                season.rate(request.participant_class)
            except ProgramError as exc:
                raise EnrolmentError(
                    422,
                    f"program {program.id!r} does not pay {request.participant_class} "
                    f"participants: {exc}",
                ) from None
    return tuple(chosen.values())


def _ev_model(request: EnrolmentRequest, vehicle: Vehicle | None) -> EvModel:
    if vehicle is not None:
        if request.vehicle_model and request.vehicle_model != vehicle.ev_model:
            raise EnrolmentError(
                422,
                f"vehicle {vehicle.id!r} is a {vehicle.ev_model}, not a {request.vehicle_model}",
            )
        model_id = vehicle.ev_model
    elif request.vehicle_model:
        model_id = request.vehicle_model
    elif request.vehicle_id:
        raise EnrolmentError(
            404,
            f"unknown vehicle {request.vehicle_id!r}; to register it, also send its vehicle_model",
        )
    else:
        raise EnrolmentError(422, "name the vehicle: an existing vehicle_id or a vehicle_model")
    models = ev_models()
    if model_id not in models:
        raise EnrolmentError(
            404, f"unknown EV model {model_id!r}; known: {', '.join(sorted(models))}"
        )
    return models[model_id]


def _hardware(request: EnrolmentRequest, station: Station | None) -> HardwareModel:
    """The station's hardware: what it boots as when the catalog knows it, else the request's
    evse_model. An unknown pair is never accepted silently."""
    reported = hardware_of(station) if station is not None else None
    if reported is not None:
        if request.evse_model and request.evse_model != reported.id:
            raise EnrolmentError(
                422,
                f"station {request.station_id} boots as {reported.vendor_name} "
                f"{reported.model} ({reported.id}), not {request.evse_model!r}",
            )
        return reported
    if request.evse_model:
        named = hardware_by_id(request.evse_model)
        if named is None:
            raise EnrolmentError(
                422,
                f"unknown evse_model {request.evse_model!r}; known: {', '.join(known_model_ids())}",
            )
        return named
    if station is not None and not station.vendor:
        raise EnrolmentError(
            422,
            f"station {request.station_id} has not sent a BootNotification yet: name its "
            f"hardware with evse_model (one of {', '.join(known_model_ids())}) so the pair "
            "can be checked",
        )
    if station is None:
        raise EnrolmentError(
            404,
            f"unknown station {request.station_id!r}; if it has not connected yet, name its "
            "hardware with evse_model so the pair can be checked",
        )
    raise EnrolmentError(
        422,
        f"station {request.station_id} boots as vendor {station.vendor!r} model "
        f"{station.model!r}, which is not in the hardware catalog: name its hardware with "
        f"evse_model (one of {', '.join(known_model_ids())}) so the pair can be checked",
    )


# ---- the unit of work -------------------------------------------------------------------


def _store(
    session: Session, request: EnrolmentRequest, checked: _Checked, services: Services
) -> Enrollment:
    """Re-check what another writer could have changed since `_check`, then write. Runs on
    the writer thread, one unit at a time, so the EVSE check and the insert are atomic."""
    _refuse_busy_evse(session, request)
    vehicle_id = _vehicle(session, request, checked, services.clock.now())
    _refuse_busy_vehicle(session, vehicle_id)
    enrollment = Enrollment(
        participant=request.participant,
        participant_class=request.participant_class,
        vehicle_id=vehicle_id,
        station_id=request.station_id,
        evse_id=request.evse_id,
        evse_model=checked.hardware.id,
        programs=[p.id for p in checked.programs],
        min_soc_pct=request.min_soc_pct,
        departure_time=request.departure_time,
        time_zone=checked.time_zone,
        webhook_url=request.webhook_url,
        mqtt=request.mqtt,
        active=True,
        created_at=services.clock.now(),
    )
    session.add(enrollment)
    session.flush()
    return enrollment


def _refuse_busy_evse(session: Session, request: EnrolmentRequest) -> None:
    busy = session.execute(
        select(Enrollment).where(
            Enrollment.station_id == request.station_id,
            Enrollment.evse_id == request.evse_id,
            Enrollment.active.is_(True),  # type: ignore[attr-defined]
        )
    ).scalar()
    if busy is not None:
        raise EnrolmentError(
            409,
            f"EVSE {request.evse_id} of station {request.station_id} already has active "
            f"enrolment {busy.id} ({busy.participant}, vehicle {busy.vehicle_id}); withdraw "
            "it first",
        )


def _refuse_busy_vehicle(session: Session, vehicle_id: str) -> None:
    busy = session.execute(
        select(Enrollment).where(
            Enrollment.vehicle_id == vehicle_id,
            Enrollment.active.is_(True),  # type: ignore[attr-defined]
        )
    ).scalar()
    if busy is not None:
        raise EnrolmentError(
            409,
            f"vehicle {vehicle_id!r} already has active enrolment {busy.id} on station "
            f"{busy.station_id} EVSE {busy.evse_id}; withdraw it first",
        )


def _vehicle(session: Session, request: EnrolmentRequest, checked: _Checked, now: datetime) -> str:
    """The vehicle's id, creating the Vehicle row when it is new."""
    if checked.vehicle_id is not None:
        existing = session.get(Vehicle, checked.vehicle_id)
        if existing is not None:
            if existing.ev_model != checked.ev.id:  # registered meanwhile as something else
                raise EnrolmentError(
                    409, f"vehicle {existing.id!r} is a {existing.ev_model}, not a {checked.ev.id}"
                )
            return existing.id
        vehicle_id = checked.vehicle_id
    else:
        vehicle_id = _free_vehicle_id(session, request.participant, checked.ev.id)
    session.add(
        Vehicle(id=vehicle_id, ev_model=checked.ev.id, label=request.participant, created_at=now)
    )
    session.flush()  # the enrolment's foreign key needs the row (no ORM relationship orders it)
    return vehicle_id


def _free_vehicle_id(session: Session, participant: str, ev_model: str) -> str:
    base = f"{_SLUG.sub('-', participant.casefold()).strip('-')[:40] or 'vehicle'}-{ev_model}"
    base = base[:58].rstrip("-")
    taken = set(
        session.execute(select(Vehicle.id).where(Vehicle.id.startswith(base))).scalars()  # type: ignore[attr-defined]
    )
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def _enrolled_body(enrollment: Enrollment, checked: _Checked) -> dict[str, Any]:
    names = ", ".join(f"{p.name} ({p.id})" for p in checked.programs)
    return {
        "message": f"You are enrolled in: {names}.",
        "programs": [
            {
                "id": p.id,
                "name": p.name,
                "time_zone": p.time_zone,
                "seasons": [s.describe() for s in p.seasons],
            }
            for p in checked.programs
        ],
        "vehicle_id": enrollment.vehicle_id,
        "ev_model": checked.ev.id,
        "ev_name": checked.ev.name,
        "station_id": enrollment.station_id,
        "evse_id": enrollment.evse_id,
        "evse_model": checked.hardware.id,
        "min_soc_pct": enrollment.min_soc_pct,
        "departure_time": enrollment.departure_time,
        "time_zone": enrollment.time_zone,
    }
