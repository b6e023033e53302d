"""Block P over real websockets: DataTransfer from the station (P02)."""

from __future__ import annotations

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.handlers import data_transfer
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import StationReport
from tests.handlers.support import rows
from tests.stations import connected


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_P02_unknown_vendor_is_answered_unknown_vendor_id(csms, version) -> None:
    calls = call21 if version == "2.1" else call201
    async with connected(csms, "CP-P02", version) as station:
        answer = await station.call(
            calls.DataTransfer(vendor_id="com.example.nobody", message_id="hello", data={"a": 1})
        )
    assert answer.status == "UnknownVendorId"
    (report,) = await rows(csms, StationReport, station_id="CP-P02")
    assert (report.kind, report.status) == ("DataTransfer", "UnknownVendorId")
    assert report.payload["data"] == {"a": 1}


async def test_P02_registered_vendor_extension_answers(csms, monkeypatch) -> None:
    seen: list[tuple[str, Payload]] = []

    async def dcbel(ctx: HandlerContext, req: Payload) -> Payload:
        seen.append((ctx.station_id, req))
        if req.get("messageId") != "inverterTemp":
            return {"status": "UnknownMessageId"}
        return {"status": "Accepted", "data": {"celsius": 41.5}}

    monkeypatch.setitem(data_transfer.VENDOR_EXTENSIONS, "com.dcbel", dcbel)
    async with connected(csms, "CP-P02V") as station:
        known = await station.call(
            call21.DataTransfer(vendor_id="com.dcbel", message_id="inverterTemp")
        )
        other = await station.call(
            call21.DataTransfer(vendor_id="com.dcbel", message_id="fanSpeed")
        )
    assert (known.status, known.data) == ("Accepted", {"celsius": 41.5})
    assert other.status == "UnknownMessageId"
    assert [station_id for station_id, _ in seen] == ["CP-P02V", "CP-P02V"]
    reports = await rows(csms, StationReport, station_id="CP-P02V")
    assert [r.status for r in reports] == ["Accepted", "UnknownMessageId"]
