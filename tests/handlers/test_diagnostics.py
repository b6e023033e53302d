"""Blocks L and N over real websockets: firmware and log status, NotifyEvent, and the 2.1
SEND NotifyPeriodicEventStream (stored, never answered)."""

from __future__ import annotations

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.store.models import StationReport
from tests.handlers.support import raw_station, rows
from tests.stations import connected


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_L01_N01_N07_status_notifications_and_events_are_kept(csms, version) -> None:
    calls = call21 if version == "2.1" else call201
    event = {
        "eventId": 17,
        "timestamp": "2026-07-15T18:00:00Z",
        "trigger": "Alerting",
        "actualValue": "95",
        "eventNotificationType": "HardWiredMonitor",
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Temperature"},
    }
    async with connected(csms, "CP-N07", version) as station:
        await station.call(calls.FirmwareStatusNotification(status="Installing", request_id=4))
        await station.call(calls.LogStatusNotification(status="Uploaded", request_id=8))
        await station.call(
            calls.NotifyEvent(generated_at="2026-07-15T18:00:01Z", seq_no=0, event_data=[event])
        )
    reports = await rows(csms, StationReport, station_id="CP-N07")
    assert [(r.kind, r.status) for r in reports] == [
        ("FirmwareStatusNotification", "Installing"),
        ("LogStatusNotification", "Uploaded"),
        ("NotifyEvent", ""),
    ]
    assert reports[2].payload["eventData"] == [event]


async def test_N_periodic_event_stream_send_is_stored_and_never_answered(csms) -> None:
    stream = {
        "id": 2,
        "pending": 0,
        "basetime": "2026-07-15T18:00:00Z",
        "data": [{"t": 0, "v": "7.2"}, {"t": 1.5, "v": "7.4"}],
    }
    async with raw_station(csms, "CP-N-SEND") as station:
        await station.send([6, "send-1", "NotifyPeriodicEventStream", stream])
        # Frames are handled in order: had the SEND been answered, that answer would come
        # before the heartbeat's.
        reply = await station.call("Heartbeat", {})
        assert reply[0] == 3
    (report,) = await rows(csms, StationReport, station_id="CP-N-SEND")
    assert report.kind == "NotifyPeriodicEventStream"
    assert report.payload == stream
