"""Functional block R, DER control (OCPP 2.1 only): NotifyDERAlarm (R05), NotifyDERStartStop
and ReportDERControl (R04). A 2.0.1 station has none of these actions, so the session answers
them NotImplemented before they get here."""

from __future__ import annotations

from sqlalchemy.orm import Session

from csms.handlers.common import instant, store_report
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import DerAlarm


async def notify_der_alarm(ctx: HandlerContext, req: Payload) -> Payload:
    """R05: an inverter alarm (e.g. an over-voltage trip) started or ended."""
    fields = {
        "station_id": ctx.station_id,
        "control_type": req["controlType"],
        "grid_event_fault": req.get("gridEventFault", ""),
        "alarm_ended": req.get("alarmEnded", False),
        "timestamp": instant(req["timestamp"], "timestamp"),
        "extra_info": req.get("extraInfo", ""),
    }

    def unit(session: Session) -> None:
        session.add(DerAlarm(**fields))

    await ctx.write(unit)
    return {}


async def notify_der_start_stop(ctx: HandlerContext, req: Payload) -> Payload:
    """A DER control we set (SetDERControl, R04) started or stopped on the station."""
    status = "Started" if req["started"] else "Stopped"
    await store_report(ctx, "NotifyDERStartStop", req, status=status)
    return {}


async def report_der_control(ctx: HandlerContext, req: Payload) -> Payload:
    """The DER controls the station holds, in answer to GetDERControl (R04)."""
    await store_report(ctx, "ReportDERControl", req)
    return {}
