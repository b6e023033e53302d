"""Functional block P, data transfer: DataTransfer from the station (P02).

Vendor-specific messages are answered by the extension registered for their vendorId in
VENDOR_EXTENSIONS; any other vendor gets UnknownVendorId, as P02 prescribes. Every message
is kept for the record with the status it was answered with.
"""

from __future__ import annotations

from csms.handlers.common import store_report
from csms.handlers.context import Handler, HandlerContext, Payload

# vendorId -> handler answering a DataTransferResponse. Empty: this CSMS knows no vendor.
VENDOR_EXTENSIONS: dict[str, Handler] = {}


async def data_transfer(ctx: HandlerContext, req: Payload) -> Payload:
    """P02: hand the message to its vendor's extension, or answer UnknownVendorId."""
    extension = VENDOR_EXTENSIONS.get(req["vendorId"])
    answer: Payload = {"status": "UnknownVendorId"}
    if extension is not None:
        answer = await extension(ctx, req)
    await store_report(ctx, "DataTransfer", req, status=answer["status"])
    return answer
