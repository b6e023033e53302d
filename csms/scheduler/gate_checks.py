"""Checks (c)-(e) of the one discharge gate (DESIGN.md §3.6), added to csms.gate's list:

(c) `check_matched_pair`: where an active enrolment puts a known EV model on the EVSE, the EV
    may discharge on the station's hardware (iso15118_profiles `can_discharge`; DOMAIN.md
    "Matched pairs matter").
(d) `check_soc_floor`: where the owner is enrolled, the energy the profile can take from the
    battery stays above their minimum SoC (DOMAIN.md promise 2): the grid-side energy of its
    discharging periods, divided by the rated one-way efficiency, against what lies above the
    floor at the EV's latest reported SoC.
(e) `check_program_window`: a profile of the dispatcher's own belongs to a participant of a
    notified or active event, and discharges only inside that event's window. An operator's
    manual push (REST, CLI, MQTT) is not checked for (e).

Each is a `GateCheck`: an async function of a `GateContext` returning a refusal reason or None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from csms.gate import GateCheck, GateContext, discharging_periods, schedule_periods
from csms.scheduler.hardware import hardware_by_id, hardware_of
from csms.scheduler.planner import DEFAULT_EFFICIENCY
from csms.store.models import DrEvent, Enrollment, EventParticipant, MeterSample, Vehicle
from iso15118_profiles import can_discharge, ev_models

SOC_MEASURAND = "SoC"
LIVE_EVENT_STATES = ("notified", "active")
# A participant in these states may not be discharged by the dispatcher, whatever it plans.
_BARRED_PARTICIPANTS = {"opted_out": "opted out (DOMAIN.md promise 4)"}
# Float noise between the planner's arithmetic and ours (rounded watts and seconds): a plan
# that stops exactly at the floor must pass. 10 Wh plus 0.2 % of the energy above the floor.
FLOOR_SLACK_WH = 10.0
FLOOR_SLACK_FRACTION = 0.002
# Instants in profiles are written to the second; events may carry sub-second parts.
WINDOW_SLACK = timedelta(seconds=1)


class UnboundedScheduleError(ValueError):
    """The energy a discharging schedule takes has no upper bound we can compute."""


# ---- reads ------------------------------------------------------------------------------


async def _active_enrolment(ctx: GateContext) -> tuple[Enrollment, Vehicle] | None:
    """The active enrolment on the EVSE (at most one; enrolment refuses a second) and its car."""
    query = (
        select(Enrollment, Vehicle)
        .join(Vehicle, Vehicle.id == Enrollment.vehicle_id)  # type: ignore[arg-type]
        .where(
            Enrollment.station_id == ctx.station_id,
            Enrollment.evse_id == ctx.evse_id,
            Enrollment.active.is_(True),  # type: ignore[attr-defined]
        )
        .order_by(Enrollment.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    row = (await ctx.session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


@dataclass(frozen=True, slots=True)
class SocReading:
    soc_pct: float
    at: datetime


async def latest_soc(ctx: GateContext) -> SocReading | None:
    """The EV's latest SoC on the EVSE for the profile's transaction (a reading from another
    session speaks for another car, or for this one before it moved)."""
    query = select(MeterSample).where(
        MeterSample.station_id == ctx.station_id,
        MeterSample.evse_id == ctx.evse_id,
        MeterSample.measurand == SOC_MEASURAND,
    )
    transaction_id = ctx.profile.get("transactionId")
    if transaction_id:
        query = query.where(MeterSample.transaction_id == transaction_id)
    query = query.order_by(MeterSample.timestamp.desc(), MeterSample.id.desc()).limit(1)  # type: ignore[union-attr]
    sample = (await ctx.session.execute(query)).scalar_one_or_none()
    if sample is None:
        return None
    return SocReading(sample.value * 10.0**sample.multiplier, sample.timestamp)


# ---- the energy a profile can take ---------------------------------------------------------


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:  # the schema checks the format; treat anything else as absent
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _total(period: Mapping[str, Any], name: str) -> float | None:
    """A quantity over all phases: with per-phase values the base field is phase L1."""
    base = period.get(name)
    if base is None:
        return None
    phases = [period.get(f"{name}_L2"), period.get(f"{name}_L3")]
    return float(base) + sum(float(p) for p in phases if p is not None)


def export_w(period: Mapping[str, Any]) -> float:
    """The most a period asks the station to export (W, >= 0): its setpoint when it has one
    (the station keeps to it within [dischargeLimit, limit]), else its most negative limit."""
    setpoint = _total(period, "setpoint")
    if setpoint is not None:
        return max(0.0, -setpoint)
    limits = [_total(period, "limit"), _total(period, "dischargeLimit")]
    return max([0.0, *(-v for v in limits if v is not None)])


def _horizon_s(schedule: Mapping[str, Any], profile: Mapping[str, Any]) -> float | None:
    """Seconds from the schedule's start until it stops: its duration, cut at validTo."""
    candidates = []
    if schedule.get("duration") is not None:
        candidates.append(float(schedule["duration"]))
    start, valid_to = _instant(schedule.get("startSchedule")), _instant(profile.get("validTo"))
    if valid_to is not None and start is not None:
        candidates.append(max(0.0, (valid_to - start).total_seconds()))
    return min(candidates) if candidates else None


def _schedule_energy_wh(
    schedule: Mapping[str, Any],
    profile: Mapping[str, Any],
    periods: Sequence[Mapping[str, Any]],
    since: datetime | None,
) -> float:
    """Grid-side Wh the discharging periods of one schedule can export from `since` on."""
    if not discharging_periods(periods):
        return 0.0
    if schedule.get("chargingRateUnit", "W") != "W":
        raise UnboundedScheduleError(
            "the schedule is in A: the floor check needs W (we always send schedules in W)"
        )
    start = _instant(schedule.get("startSchedule"))
    horizon = _horizon_s(schedule, profile)
    valid_to = _instant(profile.get("validTo"))
    if horizon is None and start is None and valid_to is not None and since is not None:
        # Placed relative to a start we do not know: bound by its largest export until validTo.
        peak = max(export_w(p) for p in periods)
        return peak * max(0.0, (valid_to - since).total_seconds()) / 3600.0
    if horizon is None:
        raise UnboundedScheduleError(
            "the discharging schedule has neither a duration nor a validTo: cannot bound the "
            "energy it takes"
        )
    # Periods before the latest SoC reading have already happened: the reading reflects them.
    floor_s = (since - start).total_seconds() if start is not None and since is not None else 0.0
    ordered = sorted(periods, key=lambda p: float(p.get("startPeriod", 0)))
    energy = 0.0
    for index, period in enumerate(ordered):
        begin = float(period.get("startPeriod", 0))
        end = (
            float(ordered[index + 1].get("startPeriod", 0)) if index + 1 < len(ordered) else horizon
        )
        span = min(end, horizon) - max(begin, floor_s, 0.0)
        energy += export_w(period) * max(0.0, span) / 3600.0
    return energy


def discharge_energy_wh(
    profile: Mapping[str, Any],
    periods: Sequence[Mapping[str, Any]] | None = None,
    since: datetime | None = None,
) -> float:
    """The most grid-side energy (Wh) the profile can export from `since` to its end.

    `periods` other than the profile's own are an UpdateDynamicSchedule's update: it applies
    from now (`since`) until the schedule ends. With several chargingSchedules (the EV picks
    one) the largest counts. UnboundedScheduleError when there is no end to count to.
    """
    schedules = [s for s in profile.get("chargingSchedule") or [] if isinstance(s, Mapping)]
    own = schedule_periods(profile)
    if profile.get("chargingProfileKind") == "Recurring" and discharging_periods(own):
        raise UnboundedScheduleError(
            "a recurring discharging schedule repeats every day or week: cannot bound the "
            "energy it takes"
        )
    update = periods is not None and list(periods) != own
    energies = []
    for schedule in schedules:
        if update:
            assert periods is not None
            these: Sequence[Mapping[str, Any]] = [{**p, "startPeriod": 0} for p in periods]
            start = _instant(schedule.get("startSchedule"))
            since_here = since if start is None or since is None else max(since, start)
            if start is not None and since_here is not None:
                these = [{**p, "startPeriod": (since_here - start).total_seconds()} for p in these]
        else:
            these = [
                p for p in schedule.get("chargingSchedulePeriod") or [] if isinstance(p, Mapping)
            ]
        energies.append(_schedule_energy_wh(schedule, profile, these, since))
    return max(energies, default=0.0)


def rated_efficiency(ctx: GateContext) -> float:
    """One-way conversion efficiency at its best: the hardware curve's peak (what the planner
    assumes at most), else the rated default (0.933² ≈ 0.87 round trip, DOMAIN.md)."""
    hardware = hardware_of(ctx.station) if ctx.station is not None else None
    if hardware is None:
        return DEFAULT_EFFICIENCY
    return max(eta for _, eta in hardware.efficiency_curve)


# ---- the checks --------------------------------------------------------------------------


async def check_matched_pair(ctx: GateContext) -> str | None:
    """(c) an enrolled EV discharges only on its matched EVSE model."""
    enrolled = await _active_enrolment(ctx)
    if enrolled is None:
        return None
    enrollment, vehicle = enrolled
    station = ctx.station
    hardware = hardware_of(station) if station is not None else None
    if hardware is None and enrollment.evse_model:  # the operator named it at enrolment
        hardware = hardware_by_id(enrollment.evse_model)
    if hardware is None:
        boots_as = (
            f"vendor {station.vendor!r} model {station.model!r}"
            if station is not None and station.vendor
            else "no BootNotification yet"
        )
        return (
            f"station {ctx.station_id} ({boots_as}) is not in the hardware catalog: cannot "
            f"check that enrolment {enrollment.id}'s {vehicle.ev_model} may discharge on it"
        )
    decision = can_discharge(vehicle.ev_model, hardware.id)
    if decision.allowed:
        return None
    return (
        f"enrolment {enrollment.id}: {vehicle.ev_model} (vehicle {vehicle.id}) on "
        f"{hardware.id} ({hardware.vendor_name} {hardware.model}, station {ctx.station_id}): "
        f"{decision.reason}"
    )


async def check_soc_floor(ctx: GateContext) -> str | None:
    """(d) the profile cannot take the enrolled car below its owner's minimum SoC."""
    enrolled = await _active_enrolment(ctx)
    if enrolled is None:
        return None
    enrollment, vehicle = enrolled
    ev = ev_models().get(vehicle.ev_model)
    if ev is None:
        return f"enrolment {enrollment.id}: unknown EV model {vehicle.ev_model!r}"
    reading = await latest_soc(ctx)
    if reading is None:
        return (
            f"no SoC reported yet on EVSE {ctx.evse_id} of station {ctx.station_id}: cannot "
            f"check the owner's floor of {enrollment.min_soc_pct:g} % (enrolment {enrollment.id})"
        )
    try:
        grid_wh = discharge_energy_wh(ctx.profile, ctx.periods, reading.at)
    except UnboundedScheduleError as exc:
        return f"{exc} (owner's floor {enrollment.min_soc_pct:g} %, enrolment {enrollment.id})"
    eta = rated_efficiency(ctx)
    battery_wh = grid_wh / eta
    above_wh = max(0.0, reading.soc_pct - enrollment.min_soc_pct) / 100.0 * ev.capacity_wh
    if battery_wh <= above_wh * (1.0 + FLOOR_SLACK_FRACTION) + FLOOR_SLACK_WH:
        return None
    return (
        f"the profile can take {battery_wh / 1000:.2f} kWh from the battery "
        f"({grid_wh / 1000:.2f} kWh at the grid / {eta:.3f}), but only {above_wh / 1000:.2f} "
        f"kWh lie above the owner's floor: SoC {reading.soc_pct:g} % at "
        f"{reading.at:%Y-%m-%dT%H:%M:%SZ}, floor {enrollment.min_soc_pct:g} % of "
        f"{ev.usable_capacity_kwh:g} kWh ({ev.id}, enrolment {enrollment.id})"
    )


async def check_program_window(ctx: GateContext) -> str | None:
    """(e) the dispatcher discharges only a participant of a notified or active event, and
    only inside the event's window."""
    if ctx.origin != "dispatcher":
        return None
    profile_id = ctx.profile.get("id")
    query = (
        select(EventParticipant, DrEvent, Enrollment)
        .join(DrEvent, DrEvent.id == EventParticipant.event_id)  # type: ignore[arg-type]
        .join(Enrollment, Enrollment.id == EventParticipant.enrollment_id)  # type: ignore[arg-type]
        .where(
            EventParticipant.profile_id == profile_id,
            EventParticipant.station_id == ctx.station_id,
            EventParticipant.evse_id == ctx.evse_id,
            DrEvent.state.in_(LIVE_EVENT_STATES),  # type: ignore[attr-defined]
        )
        .order_by(DrEvent.start.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    row = (await ctx.session.execute(query)).first()
    if row is None:
        return (
            f"profile {profile_id} on EVSE {ctx.evse_id} of station {ctx.station_id} belongs "
            "to no participant of a notified or active event: the dispatcher discharges only "
            "inside a program event"
        )
    participant, event, enrollment = row
    barred = _BARRED_PARTICIPANTS.get(participant.status)
    if barred is not None or not enrollment.active:
        why = barred or "withdrawn from the programs"
        return f"enrolment {enrollment.id} has {why} (event {event.id})"
    return _window_problem(ctx, event)


def _window_problem(ctx: GateContext, event: DrEvent) -> str | None:
    window = f"event {event.id} [{event.start:%Y-%m-%dT%H:%M:%SZ}, {event.end:%Y-%m-%dT%H:%M:%SZ}]"
    own = schedule_periods(ctx.profile)
    if list(ctx.periods) != own and event.state != "active":
        return f"a dynamic update discharges at once, but {window} is {event.state}, not active"
    for schedule in ctx.profile.get("chargingSchedule") or []:
        start = _instant(schedule.get("startSchedule"))
        duration = schedule.get("duration")
        if start is None or duration is None:
            return (
                "the dispatcher's discharge schedule needs startSchedule and duration so that "
                f"it ends inside {window} (DESIGN §3.7)"
            )
        end = start + timedelta(seconds=float(duration))
        if end > event.end + WINDOW_SLACK:
            return f"the schedule runs until {end:%Y-%m-%dT%H:%M:%SZ}, after the end of {window}"
        first = _first_discharge(schedule, start)
        if first is not None and first < event.start - WINDOW_SLACK:
            return f"the schedule discharges from {first:%Y-%m-%dT%H:%M:%SZ}, before {window}"
    return None


def _first_discharge(schedule: Mapping[str, Any], start: datetime) -> datetime | None:
    periods = [p for p in schedule.get("chargingSchedulePeriod") or [] if isinstance(p, Mapping)]
    offsets = [float(p.get("startPeriod", 0)) for p in discharging_periods(periods)]
    return start + timedelta(seconds=min(offsets)) if offsets else None


# In order after the foundation's (a) and (b): the pair, the owner's floor, the program window.
V2G_CHECKS: tuple[tuple[str, GateCheck], ...] = (
    ("matched_pair", check_matched_pair),
    ("soc_floor", check_soc_floor),
    ("program_window", check_program_window),
)

__all__ = [
    "V2G_CHECKS",
    "UnboundedScheduleError",
    "check_matched_pair",
    "check_program_window",
    "check_soc_floor",
    "discharge_energy_wh",
    "export_w",
]
