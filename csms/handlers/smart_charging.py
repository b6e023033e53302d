"""Functional block K, smart charging, with the 2.1 V2X additions (block Q):
NotifyEVChargingNeeds (K15-K18, Q01-Q04), NotifyEVChargingSchedule (K15/K17),
NotifyChargingLimit (K12), ClearedChargingLimit (K13), ReportChargingProfiles (K09) and the
2.1 PullDynamicScheduleUpdate (a Dynamic profile's station pulls its setpoints, Q04)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from csms.domain import StationData
from csms.handlers.common import instant, int32, store_report
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import ChargingProfileRecord, EvChargingNeeds
from csms.store.queries import accepted_dynamic_profile, running_transaction_query
from simclock import parse_instant

# Bidirectional power transfer modes of EnergyTransferModeEnumType (2.1): DC_BPT, AC_BPT,
# AC_BPT_DER, DC_ACDP_BPT. OCPP 2.0.1 defines none of them.
BPT_MARKER = "_BPT"

# ChargingScheduleUpdateType (2.1): the values of a period a Dynamic profile update carries.
SCHEDULE_UPDATE_FIELDS = (
    "limit",
    "limit_L2",
    "limit_L3",
    "dischargeLimit",
    "dischargeLimit_L2",
    "dischargeLimit_L3",
    "setpoint",
    "setpoint_L2",
    "setpoint_L3",
    "setpointReactive",
    "setpointReactive_L2",
    "setpointReactive_L3",
)


def offers_bpt(modes: list[str]) -> bool:
    """Whether any energy-transfer mode the EV named is bidirectional (it can discharge)."""
    return any(BPT_MARKER in mode for mode in modes)


def ev_charging_needs_fields(station_id: str, req: Payload) -> dict[str, Any]:
    """The columns of a NotifyEVChargingNeedsRequest's EvChargingNeeds row; 2.0.1 simply lacks
    the V2X fields. Reading them checks the instants (before any unit of work runs)."""
    needs = req["chargingNeeds"]
    requested = needs["requestedEnergyTransfer"]
    available = needs.get("availableEnergyTransfer")
    departure = needs.get("departureTime")
    return {
        "station_id": station_id,
        "evse_id": int32(req["evseId"], "evseId"),
        "requested_energy_transfer": requested,
        "available_energy_transfer": available,
        "control_mode": needs.get("controlMode"),
        "departure_time": instant(departure, "departureTime") if departure else None,
        "offers_bpt": offers_bpt([requested, *(available or [])]),
        "v2x_parameters": needs.get("v2xChargingParameters"),
        "payload": req,
    }


async def notify_ev_charging_needs(ctx: HandlerContext, req: Payload) -> Payload:
    """K15-K18 / Q01: keep what the EV asked for and, on 2.1, what it can give back.

    Accepted means processed (K17): the profile that meets the needs, if any, comes from
    the scheduler afterwards, through commands.
    """
    fields = ev_charging_needs_fields(ctx.station_id, req)

    def unit(session: Session) -> None:
        running = session.execute(
            running_transaction_query(ctx.station_id, fields["evse_id"])
        ).scalar()
        transaction_id = running.transaction_id if running is not None else None
        session.add(EvChargingNeeds(**fields, transaction_id=transaction_id))

    await ctx.write(unit)
    ctx.services.domain.publish(StationData("needs", ctx.station_id, fields["evse_id"]))
    return {"status": "Accepted"}


async def notify_ev_charging_schedule(ctx: HandlerContext, req: Payload) -> Payload:
    """K15/K17: the schedule the EV chose within our limits; kept for the record."""
    await store_report(ctx, "NotifyEVChargingSchedule", req, evse_id=req["evseId"])
    return {"status": "Accepted"}


async def notify_charging_limit(ctx: HandlerContext, req: Payload) -> Payload:
    """K12: an external system (EMS, SO...) set a limit on the station."""
    await store_report(
        ctx,
        "NotifyChargingLimit",
        req,
        evse_id=req.get("evseId", 0),
        status=req["chargingLimit"]["chargingLimitSource"],
    )
    return {}


async def cleared_charging_limit(ctx: HandlerContext, req: Payload) -> Payload:
    """K13: that external limit is gone."""
    await store_report(
        ctx,
        "ClearedChargingLimit",
        req,
        evse_id=req.get("evseId", 0),
        status=req["chargingLimitSource"],
    )
    return {}


async def report_charging_profiles(ctx: HandlerContext, req: Payload) -> Payload:
    """K09: the station's answer to GetChargingProfiles, one message per source and EVSE."""
    await store_report(
        ctx,
        "ReportChargingProfiles",
        req,
        evse_id=req["evseId"],
        status=req["chargingLimitSource"],
    )
    return {}


async def pull_dynamic_schedule_update(ctx: HandlerContext, req: Payload) -> Payload:
    """2.1 Dynamic profiles (Q04): the station asks for the current values of a profile we
    set; answered from the one it accepted, or Rejected when there is none."""
    profile_id = int32(req["chargingProfileId"], "chargingProfileId")
    async with ctx.services.db.read() as session:
        record = await accepted_dynamic_profile(session, ctx.station_id, profile_id)
    if record is None:
        return {
            "status": "Rejected",
            "statusInfo": {
                "reasonCode": "UnknownProfile",
                "additionalInfo": f"no accepted Dynamic charging profile with id {profile_id}",
            },
        }
    return {"status": "Accepted", "scheduleUpdate": schedule_update(record, ctx.now())}


def schedule_update(record: ChargingProfileRecord, now: datetime) -> dict[str, Any]:
    """ChargingScheduleUpdateType: the last update the station accepted for the profile
    (UpdateDynamicSchedule), else the values of the profile's period in force at `now`."""
    if record.schedule_update is not None:
        return record.schedule_update
    # `request` is the SetChargingProfileRequest as sent: {"evseId", "chargingProfile"}.
    schedule = record.request["chargingProfile"]["chargingSchedule"][0]
    started = schedule.get("startSchedule")
    origin = parse_instant(started) if started else (record.answered_at or record.sent_at)
    period = period_at(schedule["chargingSchedulePeriod"], (now - origin).total_seconds())
    return {name: period[name] for name in SCHEDULE_UPDATE_FIELDS if name in period}


def period_at(periods: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
    """The period in force `elapsed_s` after the schedule's start (the first before it)."""
    ordered = sorted(periods, key=lambda period: period["startPeriod"])
    current = ordered[0]
    for period in ordered:
        if period["startPeriod"] <= elapsed_s:
            current = period
    return current
