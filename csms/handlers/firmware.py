"""Functional block L, firmware management: FirmwareStatusNotification (L01)."""

from __future__ import annotations

from csms.handlers.common import store_report
from csms.handlers.context import HandlerContext, Payload


async def firmware_status_notification(ctx: HandlerContext, req: Payload) -> Payload:
    """L01: progress of an UpdateFirmware (Downloading, Installed, InvalidSignature...)."""
    await store_report(ctx, "FirmwareStatusNotification", req, status=req["status"])
    return {}
