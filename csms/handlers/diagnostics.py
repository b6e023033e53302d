"""Functional block N, diagnostics: LogStatusNotification (N01), NotifyEvent (N07), and the
2.1 periodic event streams' NotifyPeriodicEventStream (a SEND, never answered)."""

from __future__ import annotations

from csms.handlers.common import store_report
from csms.handlers.context import HandlerContext, Payload


async def log_status_notification(ctx: HandlerContext, req: Payload) -> Payload:
    """N01: progress of a GetLog upload."""
    await store_report(ctx, "LogStatusNotification", req, status=req["status"])
    return {}


async def notify_event(ctx: HandlerContext, req: Payload) -> Payload:
    """N07: monitoring events; one record per message (a report may span several, tbc)."""
    await store_report(ctx, "NotifyEvent", req)
    return {}


async def notify_periodic_event_stream(ctx: HandlerContext, payload: Payload) -> None:
    """2.1 SEND (message type 6): values of an open periodic event stream, kept verbatim."""
    await store_report(ctx, "NotifyPeriodicEventStream", payload)
