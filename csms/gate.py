"""The one discharge gate (DESIGN.md §3.6): every profile that can make a station export passes
here before it is sent, whatever its origin (REST, CLI, MQTT, the dispatcher).

`profile_discharges` says whether a request can discharge at all; `check_discharge` runs the
checks in order and returns the first refusal, or an allowance. A check is a small async
function of a `GateContext` returning a refusal reason or None, so the V2G issue adds (c)
matched pair, (d) SoC floor and (e) program window by appending to the list it passes (see
`FOUNDATION_CHECKS`), without touching the ones here. The context carries what the checks
of this issue need, already read, plus an open read session for checks that need more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from csms.store.models import EvChargingNeeds, Station, Transaction
from csms.store.queries import latest_ev_needs, running_transaction
from ocppj.versions import V201, OcppVersion

log = structlog.get_logger("csms.gate")

# Fields of a schedule period (or a dynamic schedule update) whose negative value asks the
# station to export: a negative setpoint (2.1 CentralSetpoint, Q03/Q04), a dischargeLimit
# (2.1, always <= 0; a non-zero one allows discharge), or a negative limit (2.0.1 style,
# kept in 2.1 for backward compatibility). Per-phase variants count alike.
_DISCHARGE_FIELDS = tuple(
    f"{name}{phase}"
    for name in ("setpoint", "dischargeLimit", "limit")
    for phase in ("", "_L2", "_L3")
)
# 2.0.1 has neither setpoint nor dischargeLimit: discharge there is only a negative limit.
_FIELDS_NOT_IN_201 = tuple(f for f in _DISCHARGE_FIELDS if not f.startswith("limit"))
# Purposes that would outlive the transaction and discharge whatever car plugs in next.
_NEVER_DISCHARGING_PURPOSES = frozenset(
    {"TxDefaultProfile", "ChargingStationMaxProfile", "ChargingStationExternalConstraints"}
)


@dataclass(frozen=True, slots=True)
class GateDecision:
    allowed: bool
    reason: str
    check: str  # the name of the check that refused, or "all" when allowed


@dataclass(frozen=True, slots=True)
class GateContext:
    """What the checks judge: the request, the station, and the facts read for them."""

    station_id: str
    version: OcppVersion
    evse_id: int
    profile: Mapping[str, Any]  # the chargingProfile as the spec writes it (camelCase)
    periods: tuple[Mapping[str, Any], ...]  # every period (or dynamic update) that is sent
    origin: str  # api | cli | dispatcher | mqtt
    station: Station | None
    latest_needs: EvChargingNeeds | None  # the EV's latest NotifyEVChargingNeeds on the EVSE
    running: tuple[Transaction, ...]  # the transaction running on the EVSE, if any
    session: AsyncSession  # open for checks that need to read more (enrolments, catalog...)


GateCheck = Callable[[GateContext], Awaitable[str | None]]


def discharging_periods(periods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The periods that ask for export: any discharge field below zero."""
    return [
        period
        for period in periods
        if any(_negative(period.get(name)) for name in _DISCHARGE_FIELDS)
    ]


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def schedule_periods(profile: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every chargingSchedulePeriod of every chargingSchedule of a chargingProfile."""
    schedules = profile.get("chargingSchedule") or []
    return [
        period
        for schedule in schedules
        if isinstance(schedule, Mapping)
        for period in schedule.get("chargingSchedulePeriod") or []
        if isinstance(period, Mapping)
    ]


def profile_discharges(request: Mapping[str, Any]) -> bool:
    """Whether a SetChargingProfile / RequestStartTransaction / UpdateDynamicSchedule request
    (spec camelCase) can make the station export (DESIGN §3.6)."""
    periods = list(schedule_periods(request.get("chargingProfile") or {}))
    update = request.get("scheduleUpdate")
    if isinstance(update, Mapping):
        periods.append(update)
    return bool(discharging_periods(periods))


# ---- the checks of the foundation issue --------------------------------------------------


async def check_purpose(ctx: GateContext) -> str | None:
    """§3.7: discharge is only ever a TxProfile bound to a transaction; a default or station-
    wide profile would discharge the next car plugged in."""
    purpose = ctx.profile.get("chargingProfilePurpose")
    if purpose in _NEVER_DISCHARGING_PURPOSES:
        return (
            f"a {purpose} may not discharge: discharge is only ever a TxProfile bound to "
            "the running transactionId (it would otherwise discharge the next car plugged in)"
        )
    if purpose != "TxProfile":
        return f"a discharging profile must be a TxProfile, not {purpose}"
    return None


async def check_version_fields(ctx: GateContext) -> str | None:
    """2.0.1 knows no setpoint or dischargeLimit: discharge there is only a negative limit."""
    if ctx.version != V201:
        return None
    for period in ctx.periods:
        present = [name for name in _FIELDS_NOT_IN_201 if name in period]
        if present:
            return (
                f"OCPP 2.0.1 has no {', '.join(present)}; a 2.0.1 station discharges "
                "only through a negative limit"
            )
    return None


async def check_capability(ctx: GateContext) -> str | None:
    """(a) the station has shown it can discharge: on 2.1 the EV's latest
    NotifyEVChargingNeeds on that EVSE offers a BPT mode (Q01); on 2.0.1 the operator marked
    the station as accepting negative limits."""
    if ctx.version == V201:
        if ctx.station is not None and ctx.station.accepts_negative_limits:
            return None
        return (
            f"station {ctx.station_id} (OCPP 2.0.1) is not marked as accepting negative "
            "limits; an operator can mark it with PATCH /api/v1/stations/{id} "
            '{"accepts_negative_limits": true}'
        )
    needs = ctx.latest_needs
    if needs is None:
        return (
            f"no NotifyEVChargingNeeds from the EV on EVSE {ctx.evse_id}: the EV has not "
            "offered a bidirectional (BPT) energy transfer mode"
        )
    if not needs.offers_bpt:
        offered = dict.fromkeys(
            [needs.requested_energy_transfer, *(needs.available_energy_transfer or [])]
        )
        return (
            f"the EV on EVSE {ctx.evse_id} offered no bidirectional (BPT) energy transfer "
            f"mode in its latest NotifyEVChargingNeeds (offered: {', '.join(offered)})"
        )
    wanted = ctx.profile.get("transactionId")
    if needs.transaction_id is not None and wanted and needs.transaction_id != wanted:
        # Needs that arrived during another transaction speak for another car (or an earlier
        # session of this one); a car plugged in since has not offered anything yet.
        return (
            f"the EV's latest NotifyEVChargingNeeds on EVSE {ctx.evse_id} came during "
            f"transaction {needs.transaction_id!r}, not {wanted!r}: this car has not offered "
            "a bidirectional mode yet"
        )
    return None


async def check_transaction(ctx: GateContext) -> str | None:
    """(b) a discharging TxProfile is bound to the transaction running on that EVSE."""
    wanted = ctx.profile.get("transactionId")
    if not wanted:
        return "a discharging TxProfile must carry the transactionId of the running transaction"
    if any(tx.transaction_id == wanted for tx in ctx.running):
        return None
    running = ", ".join(tx.transaction_id for tx in ctx.running) or "none"
    return (
        f"transaction {wanted!r} is not running on EVSE {ctx.evse_id} of station "
        f"{ctx.station_id} (running there: {running})"
    )


# In order: the cheapest and most fundamental refusal first. The V2G issue passes
# `[*FOUNDATION_CHECKS, check_matched_pair, check_soc_floor, check_program_window]`.
FOUNDATION_CHECKS: tuple[tuple[str, GateCheck], ...] = (
    ("purpose", check_purpose),
    ("version", check_version_fields),
    ("capability", check_capability),
    ("transaction", check_transaction),
)


# ---- running the gate --------------------------------------------------------------------


async def check_discharge(
    session: AsyncSession,
    *,
    station_id: str,
    version: OcppVersion,
    evse_id: int,
    profile: Mapping[str, Any],
    periods: Sequence[Mapping[str, Any]] | None = None,
    origin: str = "api",
    checks: Sequence[tuple[str, GateCheck]] = FOUNDATION_CHECKS,
) -> GateDecision:
    """Run `checks` on a discharging profile; the first refusal wins.

    `periods` defaults to the profile's schedule periods; an UpdateDynamicSchedule passes
    its `scheduleUpdate` as the one period it sends.
    """
    ctx = GateContext(
        station_id=station_id,
        version=version,
        evse_id=evse_id,
        profile=profile,
        periods=tuple(periods if periods is not None else schedule_periods(profile)),
        origin=origin,
        station=await session.get(Station, station_id),
        latest_needs=await latest_ev_needs(session, station_id, evse_id),
        running=tuple(r for r in [await running_transaction(session, station_id, evse_id)] if r),
        session=session,
    )
    for name, check in checks:
        reason = await check(ctx)
        if reason is not None:
            log.warning(
                "gate.refused",
                station_id=station_id,
                evse_id=evse_id,
                check=name,
                reason=reason,
                origin=origin,
                profile_id=profile.get("id"),
            )
            return GateDecision(False, reason, name)
    log.info("gate.allowed", station_id=station_id, evse_id=evse_id, origin=origin)
    return GateDecision(True, "every discharge check passed", "all")
