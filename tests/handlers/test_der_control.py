"""Block R (2.1 only) over real websockets: DER alarms and control reports; a 2.0.1 station
sending them is told NotImplemented (the action is not in its version)."""

from __future__ import annotations

from ocpp.v21 import call as call21

from csms.store.models import DerAlarm, StationReport
from simclock import parse_instant
from tests.handlers.support import raw_station, rows
from tests.stations import connected


async def test_R05_der_alarm_is_stored(csms) -> None:
    async with connected(csms, "CP-R05") as station:
        raised = await station.call(
            call21.NotifyDERAlarm(
                control_type="HVMustTrip",
                timestamp="2026-07-15T18:05:00Z",
                grid_event_fault="OverVoltage",
                extra_info="L1 at 264 V",
            )
        )
        ended = await station.call(
            call21.NotifyDERAlarm(
                control_type="HVMustTrip", timestamp="2026-07-15T18:07:30Z", alarm_ended=True
            )
        )
    assert raised is not None and ended is not None
    alarms = await rows(csms, DerAlarm, station_id="CP-R05")
    assert [(a.control_type, a.grid_event_fault, a.alarm_ended, a.extra_info) for a in alarms] == [
        ("HVMustTrip", "OverVoltage", False, "L1 at 264 V"),
        ("HVMustTrip", "", True, ""),
    ]
    assert alarms[1].timestamp == parse_instant("2026-07-15T18:07:30Z")


async def test_R04_der_start_stop_and_control_report_are_kept(csms) -> None:
    curve = {
        "id": "curve-1",
        "curveType": "VoltVar",
        "isDefault": True,
        "isSuperseded": False,
        "curve": {
            "priority": 0,
            "yUnit": "PctMaxVar",
            "curveData": [{"x": 92, "y": 30}, {"x": 108, "y": -30}],
        },
    }
    async with connected(csms, "CP-R04") as station:
        await station.call(
            call21.NotifyDERStartStop(
                control_id="ctl-9", started=True, timestamp="2026-07-15T18:00:00Z"
            )
        )
        await station.call(call21.ReportDERControl(request_id=3, curve=[curve]))
    reports = await rows(csms, StationReport, station_id="CP-R04")
    assert [(r.kind, r.status) for r in reports] == [
        ("NotifyDERStartStop", "Started"),
        ("ReportDERControl", ""),
    ]
    assert reports[0].payload["controlId"] == "ctl-9"
    assert reports[1].payload["curve"] == [curve]


async def test_R05_der_alarm_from_a_2_0_1_station_is_not_implemented(csms) -> None:
    alarm = {"controlType": "HVMustTrip", "timestamp": "2026-07-15T18:05:00Z"}
    async with raw_station(csms, "CP-R05-201", "2.0.1") as station:
        reply = await station.call("NotifyDERAlarm", alarm)
        assert reply[0] == 4 and reply[2] == "NotImplemented"
        still_up = await station.call("Heartbeat", {})
        assert still_up[0] == 3
    assert await rows(csms, DerAlarm, station_id="CP-R05-201") == []
