"""Reports over REST: an event's settlement report, 15-minute telemetry, and a program season's
performance and pay. JSON by default; `?format=csv` where the resource has a CSV form.

Path operations stay short: the numbers come from csms.scheduler.reports, .telemetry and
.seasons; this module parses the query, maps their errors to 4xx with the reason as detail,
and shapes the answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from csms.api.deps import get_services
from csms.api.models import Problem
from csms.scheduler.programs import ProgramError
from csms.scheduler.reports import event_report, event_report_csv
from csms.scheduler.seasons import (
    SeasonReport,
    UnknownProgramError,
    resolve_program,
    season_report,
)
from csms.scheduler.settlement import UnknownEventError
from csms.scheduler.telemetry import (
    TelemetryRangeError,
    TelemetryRow,
    telemetry_csv,
    telemetry_rows,
)
from csms.services import Services
from csms.store.models import Station
from simclock import iso, parse_instant

router = APIRouter(tags=["reports"])
ServicesDep = Annotated[Services, Depends(get_services)]
Format = Literal["json", "csv"]
DEFAULT_TELEMETRY_SPAN = timedelta(hours=24)


class TelemetryRowView(BaseModel):
    station_id: str = Field(description="The station.")
    evse_id: int = Field(description="The EVSE within the station.")
    interval_start: datetime = Field(
        description="Start of the 15-minute interval (UTC, :00/:15/:30/:45)."
    )
    interval_end: datetime = Field(description="End of the interval (UTC).")
    energy_import_kwh: float | None = Field(
        description="Import register difference over the interval (kWh); null if unknown."
    )
    energy_export_kwh: float | None = Field(
        description="Export register difference over the interval (kWh); null if unknown."
    )
    power_kw: float | None = Field(
        description="Average power over the interval, signed: + import into the car, - export."
    )
    soc_pct: float | None = Field(description="The last EV SoC sample in the interval (%).")
    plugged_in_at: datetime | None = Field(description="A car was plugged in at (UTC).")
    plugged_out_at: datetime | None = Field(description="A car was unplugged at (UTC).")
    charge_started_at: datetime | None = Field(description="Charging started at (UTC).")
    charge_stopped_at: datetime | None = Field(description="Charging stopped at (UTC).")
    discharge_started_at: datetime | None = Field(description="Discharging started at (UTC).")
    discharge_stopped_at: datetime | None = Field(description="Discharging stopped at (UTC).")


class SeasonEventView(BaseModel):
    event_id: int = Field(description="The event.")
    start: datetime = Field(description="Window start (UTC).")
    end: datetime = Field(description="Window end (UTC).")
    committed_kw: float | None = Field(description="The flat export level the plan nominated.")
    delivered_kw: float | None = Field(description="Sum of the participants' counted kW.")
    participants: int = Field(description="Participants of the event.")
    opt_outs: int = Field(description="Participants who opted out.")


class EventPerformanceView(BaseModel):
    event_id: int = Field(description="The event.")
    start: datetime = Field(description="Window start (UTC).")
    opted_out: bool = Field(description="The participant opted out (counts 0 kW).")
    average_kw: float | None = Field(description="Net export over the window / its hours (kW).")
    counted_kw: float = Field(description="What the program counts: 0 if opted out, >= 0.")
    delivered_kwh: float | None = Field(description="Net export at the grid in the window.")


class SeasonParticipantView(BaseModel):
    enrollment_id: int = Field(description="The enrolment.")
    participant: str = Field(description="Participant name.")
    participant_class: str = Field(description="residential or commercial (sets the rate).")
    vehicle_id: str = Field(description="The enrolled vehicle.")
    station_id: str = Field(description="Its station.")
    evse_id: int = Field(description="Its EVSE.")
    events: list[EventPerformanceView] = Field(description="Each event it took part in.")
    average_kw: float = Field(
        description="Mean counted kW over the events it took part in (opt-outs count 0)."
    )
    opt_outs: int = Field(description="Events it opted out of.")
    pay_usd: float = Field(description="Season pay by the program's pay rule ($).")


class SeasonReportView(BaseModel):
    program_id: str = Field(description="The program.")
    program_name: str = Field(description="Its name.")
    pay_rule: str = Field(description="How it pays: average_kw, per_kwh, ...")
    year: int = Field(description="The season's year (a season wrapping New Year: its start).")
    season: str = Field(description="The season's name.")
    events: list[SeasonEventView] = Field(description="The season's completed events.")
    participants: list[SeasonParticipantView] = Field(description="Per participant.")
    pay_usd: float = Field(description="Total pay of all participants ($).")


_EVENT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown event."},
}
_RANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown station."},
    422: {"model": Problem, "description": "Bad dates or range."},
}
_PROGRAM_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown program."},
    422: {"model": Problem, "description": "Unknown season or bad year."},
}


@router.get(
    "/api/v1/events/{event_id}/report",
    summary="An event's settlement report (JSON, or CSV with ?format=csv)",
    responses={
        **_EVENT_ERRORS,
        200: {"content": {"text/csv": {}}, "description": "The report (JSON or CSV)."},
    },
)
async def get_event_report(
    event_id: int,
    services: ServicesDep,
    format: Annotated[Format, Query(description="json (default) or csv.")] = "json",
) -> Any:
    try:
        report = await event_report(services, event_id)
    except UnknownEventError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    if format == "csv":
        return _csv(event_report_csv(report), f"event-{event_id}-report.csv")
    return report


@router.get(
    "/api/v1/telemetry",
    summary="15-minute telemetry per EVSE (JSON, or CSV with ?format=csv)",
    response_model=list[TelemetryRowView],
    responses={**_RANGE_ERRORS, 200: {"content": {"text/csv": {}}}},
)
async def get_telemetry(
    services: ServicesDep,
    station_id: Annotated[str | None, Query(description="One station; all when absent.")] = None,
    start: Annotated[
        str | None,
        Query(alias="from", description="ISO-8601 instant with a zone; default: `to` - 24 h."),
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description="ISO-8601 instant with a zone; default: now.")
    ] = None,
    format: Annotated[Format, Query(description="json (default) or csv.")] = "json",
) -> Any:
    until = _instant(end, "to") if end else services.clock.now()
    since = _instant(start, "from") if start else until - DEFAULT_TELEMETRY_SPAN
    if station_id is not None:
        await _station_or_404(services, station_id)
    try:
        rows = await telemetry_rows(services, station_id, since, until)
    except TelemetryRangeError as exc:
        raise HTTPException(422, detail=f"from/to: {exc}") from None
    if format == "csv":
        name = f"telemetry-{station_id or 'all'}-{iso(since)}-{iso(until)}.csv".replace(":", "")
        return _csv(telemetry_csv(rows), name)
    return [_row_view(row) for row in rows]


@router.get(
    "/api/v1/programs/{program_id}/performance",
    summary="A program season's performance and pay per participant",
    response_model=SeasonReportView,
    responses=_PROGRAM_ERRORS,
)
async def get_program_performance(
    program_id: str,
    services: ServicesDep,
    year: Annotated[
        int | None, Query(ge=2000, le=2200, description="Season year; default: this year.")
    ] = None,
    season: Annotated[
        str | None, Query(description="Season name; may be omitted for a one-season program.")
    ] = None,
) -> SeasonReportView:
    try:
        program = await resolve_program(services, program_id)
        name = season or _only_season(program.seasons, program_id)
        chosen_year = year or services.clock.now().astimezone(program.zone).year
        report = await season_report(services, program.id, chosen_year, name)
    except UnknownProgramError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    except ProgramError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return _season_view(report)


def _instant(text: str, name: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise HTTPException(
            422, detail=f"{name}: {exc}; expected e.g. 2026-07-15T19:00:00Z"
        ) from None


async def _station_or_404(services: Services, station_id: str) -> None:
    async with services.db.read() as session:
        if await session.get(Station, station_id) is None:
            raise HTTPException(404, detail=f"unknown station {station_id!r}")


def _only_season(seasons: Any, program_id: str) -> str:
    if len(seasons) == 1:
        return seasons[0].name
    names = ", ".join(s.name for s in seasons)
    raise ProgramError(f"program {program_id!r} has several seasons ({names}): pass ?season=")


def _csv(text: str, filename: str) -> Response:
    return Response(
        content=text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _row_view(row: TelemetryRow) -> TelemetryRowView:
    return TelemetryRowView.model_validate(row, from_attributes=True)


def _season_view(report: SeasonReport) -> SeasonReportView:
    return SeasonReportView.model_validate(report, from_attributes=True)
