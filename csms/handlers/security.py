"""Functional block A, security: SecurityEventNotification (A04)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from csms.handlers.common import instant
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import SecurityEvent


async def security_event_notification(ctx: HandlerContext, req: Payload) -> Payload:
    """A04: a security event the station reports (e.g. a failed firmware signature check)."""
    fields = {
        "station_id": ctx.station_id,
        "type": req["type"],
        "timestamp": instant(req["timestamp"], "timestamp"),
        "tech_info": req.get("techInfo", ""),
    }

    def unit(session: Session) -> None:
        session.add(SecurityEvent(**fields))

    await ctx.write(unit)
    return {}
