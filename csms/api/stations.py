"""/api/v1/stations: what the stations are and do, operator settings, and pushing profiles.

Path operations stay short: reads go to csms.api.views, commands to csms.commands (which
runs the discharge gate), and a failed command maps to a 4xx/5xx with its reason as detail.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.orm import Session

from csms.api import views
from csms.api.deps import get_services
from csms.api.models import (
    ChargingProfileAnswer,
    ChargingProfilePush,
    CompositeScheduleAnswer,
    Problem,
    StationDetail,
    StationSettingsPatch,
    StationSummary,
)
from csms.commands import CommandResult, Commands
from csms.server.auth import hash_password
from csms.services import Services
from csms.store.models import Station

log = structlog.get_logger("csms.api")

router = APIRouter(prefix="/api/v1/stations", tags=["stations"])
ServicesDep = Annotated[Services, Depends(get_services)]

# How a command that got no usable answer maps to HTTP.
_FAILURE_STATUS = {
    "not-connected": 409,
    "disconnected": 409,
    "not-supported-by-version": 422,
    "invalid-request": 422,
    "refused": 403,  # the discharge gate (DESIGN §3.6)
    "timeout": 504,
    "call-error": 502,
    "invalid-response": 502,
}
_COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown station."},
    409: {"model": Problem, "description": "The station is not connected."},
    422: {"model": Problem, "description": "Invalid for the station's OCPP version schema."},
    502: {"model": Problem, "description": "The station answered with a CALLERROR."},
    504: {"model": Problem, "description": "The station did not answer in time."},
}


class _SettingsConflictError(ValueError):
    pass


def _commands(services: Services) -> Commands:
    assert services.commands is not None, "the CSMS runtime creates Commands at start"
    return services.commands


async def _station_or_404(services: Services, station_id: str) -> Station:
    async with services.db.read() as session:
        station = await session.get(Station, station_id)
    if station is None:
        raise HTTPException(404, detail=f"unknown station {station_id!r}")
    return station


def _raise_for(result: CommandResult) -> None:
    if result.ok:
        return
    status = _FAILURE_STATUS.get(result.failure or "", 502)
    detail = result.reason
    if result.failure == "refused":
        detail = f"discharge refused ({result.error_code}): {result.reason}"
    elif result.failure == "call-error":
        detail = f"the station answered {result.error_code}: {result.reason}"
    raise HTTPException(status, detail=detail)


@router.get("", summary="List stations", response_model=list[StationSummary])
async def list_stations(services: ServicesDep) -> list[StationSummary]:
    async with services.db.read() as session:
        return await views.list_stations(session, services.registry)


@router.get(
    "/{station_id}",
    summary="One station: connection, boot, EVSEs, meter values, EV needs, transactions",
    response_model=StationDetail,
    responses={404: {"model": Problem, "description": "Unknown station."}},
)
async def get_station(station_id: str, services: ServicesDep) -> StationDetail:
    station = await _station_or_404(services, station_id)
    async with services.db.read() as session:
        return await views.station_detail(session, station, services.registry)


@router.patch(
    "/{station_id}",
    summary="Operator settings: negative limits, password, security profile",
    response_model=StationSummary,
    responses={
        404: {"model": Problem, "description": "Unknown station."},
        422: {"model": Problem, "description": "Invalid or contradictory settings."},
    },
)
async def patch_station(
    station_id: str, body: StationSettingsPatch, services: ServicesDep
) -> StationSummary:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise HTTPException(422, detail="nothing to change: send at least one setting")
    nulls = sorted(name for name, value in changes.items() if value is None)
    if nulls:
        raise HTTPException(422, detail=f"{', '.join(nulls)} may not be null")
    password = changes.pop("password", None)
    if password is not None and changes.get("security_profile") == 0:
        raise HTTPException(422, detail="a password switches to security profile 1, not 0")
    # bcrypt costs tens of milliseconds of CPU: keep it off the event loop.
    try:
        password_hash = await asyncio.to_thread(hash_password, password) if password else None
    except ValueError as exc:  # e.g. over bcrypt's 72 bytes once encoded as UTF-8
        raise HTTPException(422, detail=str(exc)) from None

    def unit(session: Session) -> Station | None:
        station = session.get(Station, station_id)
        if station is None:
            return None
        _apply_settings(station, changes, password_hash)
        return station

    try:
        station = await services.writer.write(unit, label="api-settings")
    except _SettingsConflictError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if station is None:
        raise HTTPException(404, detail=f"unknown station {station_id!r}")
    log.info("station.settings_changed", station_id=station_id, changed=sorted(changes))
    return views.summary(station, services.registry)


def _apply_settings(station: Station, changes: dict[str, Any], password_hash: str | None) -> None:
    if "accepts_negative_limits" in changes:
        station.accepts_negative_limits = changes["accepts_negative_limits"]
    if password_hash is not None:
        station.password_hash = password_hash
        station.security_profile = 1
    if "security_profile" in changes:
        if changes["security_profile"] == 1 and station.password_hash is None:
            raise _SettingsConflictError(
                "security profile 1 needs a password: send one in the same request"
            )
        station.security_profile = changes["security_profile"]


@router.post(
    "/{station_id}/charging-profiles",
    summary="Push a SetChargingProfileRequest (through the discharge gate)",
    response_model=ChargingProfileAnswer,
    responses={
        **_COMMAND_ERRORS,
        403: {"model": Problem, "description": "The discharge gate refused the profile."},
    },
)
async def push_charging_profile(
    station_id: str, body: ChargingProfilePush, services: ServicesDep
) -> ChargingProfileAnswer:
    await _station_or_404(services, station_id)
    result = await _commands(services).set_charging_profile(
        station_id, body.payload(), origin="api"
    )
    _raise_for(result)
    return ChargingProfileAnswer(
        status=result.status or "",
        statusInfo=result.payload.get("statusInfo"),
        record_id=result.record_id,
    )


@router.get(
    "/{station_id}/composite-schedule",
    summary="Ask the station for its composite schedule on an EVSE (K08)",
    response_model=CompositeScheduleAnswer,
    responses=_COMMAND_ERRORS,
)
async def get_composite_schedule(
    station_id: str,
    services: ServicesDep,
    evseId: Annotated[int, Query(ge=0, description="EVSE id; 0 for the grid connection.")],
    duration: Annotated[int, Query(gt=0, description="Length of the schedule in seconds.")],
    chargingRateUnit: Annotated[
        Literal["W", "A"] | None, Query(description="Unit of the periods; we use W.")
    ] = None,
) -> CompositeScheduleAnswer:
    await _station_or_404(services, station_id)
    request: dict[str, Any] = {"evseId": evseId, "duration": duration}
    if chargingRateUnit is not None:
        request["chargingRateUnit"] = chargingRateUnit
    result = await _commands(services).get_composite_schedule(station_id, request)
    _raise_for(result)
    return CompositeScheduleAnswer(
        status=result.status or "",
        statusInfo=result.payload.get("statusInfo"),
        schedule=result.payload.get("schedule"),
    )
