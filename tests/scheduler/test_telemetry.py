"""15-minute telemetry per EVSE (DOMAIN.md promise 6) from what a real test station sent over
websockets: TransactionEvents with registers, signed power and SoC, a charge that turns into a
discharge inside one interval, plug-in and plug-out. Plus the pure parts (slots, ranges, sign
changes from register slopes, CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v21 import call as call21

from csms.scheduler.telemetry import (
    EXPORT_REGISTER,
    IMPORT_REGISTER,
    Series,
    TelemetryRangeError,
    TelemetryRow,
    aligned_slots,
    check_range,
    flow_changes,
    telemetry_csv,
    telemetry_rows,
)
from simclock import iso
from tests.stations import connected

DAY = datetime(2026, 7, 15, tzinfo=UTC)
CHARGE_W, DISCHARGE_W = 7000.0, -6000.0


def hm(hour: int, minute: int) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def meter_value(
    when: datetime, import_wh: float, export_wh: float, power_w: float, soc: float
) -> Any:
    power = "Power.Active.Import" if power_w >= 0 else "Power.Active.Export"
    return {
        "timestamp": iso(when),
        "sampledValue": [
            {
                "value": round(import_wh, 3),
                "measurand": IMPORT_REGISTER,
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": round(export_wh, 3),
                "measurand": EXPORT_REGISTER,
                "unitOfMeasure": {"unit": "Wh"},
            },
            {"value": abs(power_w), "measurand": power, "unitOfMeasure": {"unit": "W"}},
            {
                "value": soc,
                "measurand": "SoC",
                "location": "EV",
                "unitOfMeasure": {"unit": "Percent"},
            },
        ],
    }


def session_readings() -> list[tuple[datetime, float, float, float, float]]:
    """Plugged in at 10:05 charging at 7 kW; from 10:21 discharging at 6 kW; unplugged at 10:40.
    One reading a minute: (instant, import Wh, export Wh, signed power W, SoC %)."""
    readings = []
    for minute in range(5, 41):
        when = hm(10, minute)
        charged = min(minute, 20) - 5
        discharged = max(0, minute - 20)
        import_wh = 1000.0 + CHARGE_W / 60 * charged
        export_wh = -DISCHARGE_W / 60 * discharged
        power = CHARGE_W if minute <= 20 else DISCHARGE_W
        if minute == 40:
            power = 0.0  # the car left
        readings.append(
            (when, import_wh, export_wh, power, 50.0 + charged * 0.3 - discharged * 0.25)
        )
    return readings


async def send_session(station: Any) -> None:
    readings = session_readings()
    for seq_no, (when, import_wh, export_wh, power, soc) in enumerate(readings):
        first, last = seq_no == 0, seq_no == len(readings) - 1
        event_type = "Started" if first else "Ended" if last else "Updated"
        trigger = "CablePluggedIn" if first else "EVDeparted" if last else "MeterValuePeriodic"
        fields: dict[str, Any] = {}
        if first:
            fields["evse"] = {"id": 1, "connectorId": 1}
        await station.call(
            call21.TransactionEvent(
                event_type=event_type,
                timestamp=iso(when),
                trigger_reason=trigger,
                seq_no=seq_no,
                transaction_info={"transactionId": "tx-tel"},
                meter_value=[meter_value(when, import_wh, export_wh, power, soc)],
                **fields,
            )
        )


async def test_telemetry_rows_from_a_stations_transaction_with_a_charge_to_discharge_change(
    csms,
) -> None:
    async with connected(csms, "CP-TEL") as station:
        await send_session(station)

    rows = await telemetry_rows(csms.services, "CP-TEL", hm(10, 0), hm(11, 0))

    # 10:45-11:00 has no sample and no car: no row.
    assert [(r.interval_start, r.interval_end) for r in rows] == [
        (hm(10, 0), hm(10, 15)),
        (hm(10, 15), hm(10, 30)),
        (hm(10, 30), hm(10, 45)),
    ]
    plug_in, change, plug_out = rows
    assert {(r.station_id, r.evse_id) for r in rows} == {("CP-TEL", 1)}

    # 10:00-10:15: idle until the plug-in at 10:05 (the register stood still), then 7 kW.
    assert plug_in.plugged_in_at == hm(10, 5) and plug_in.plugged_out_at is None
    assert plug_in.charge_started_at == hm(10, 5) and plug_in.charge_stopped_at is None
    assert plug_in.energy_import_kwh == pytest.approx(7.0 * 10 / 60)
    assert plug_in.energy_export_kwh == pytest.approx(0.0)
    assert plug_in.power_kw == pytest.approx(7.0 * 10 / 15)
    assert plug_in.soc_pct == pytest.approx(50.0 + 9 * 0.3)  # the 10:14 sample

    # 10:15-10:30: charging until 10:20, discharging from 10:21.
    assert change.charge_stopped_at == hm(10, 21)
    assert change.discharge_started_at == hm(10, 21)
    assert change.charge_started_at is None and change.discharge_stopped_at is None
    assert change.energy_import_kwh == pytest.approx(7.0 * 5 / 60)
    assert change.energy_export_kwh == pytest.approx(6.0 * 10 / 60)
    assert change.power_kw == pytest.approx((7.0 * 5 / 60 - 6.0 * 10 / 60) / 0.25)
    assert change.power_kw < 0  # net export over the interval: negative, as stations sign it

    # 10:30-10:45: discharging until the car leaves at 10:40.
    assert plug_out.plugged_out_at == hm(10, 40)
    assert plug_out.discharge_stopped_at == hm(10, 40)
    assert plug_out.energy_export_kwh == pytest.approx(1.0)
    assert plug_out.power_kw == pytest.approx(-4.0)
    assert plug_out.soc_pct == pytest.approx(50.0 + 15 * 0.3 - 20 * 0.25)

    everyone = await telemetry_rows(csms.services, None, hm(10, 7), hm(10, 31))
    assert [r.interval_start for r in everyone] == [hm(10, 0), hm(10, 15), hm(10, 30)]


async def test_telemetry_of_a_quiet_range_is_empty(csms) -> None:
    assert await telemetry_rows(csms.services, "nobody", hm(0, 0), hm(1, 0)) == []


def test_slots_are_aligned_to_quarter_hours_utc() -> None:
    assert aligned_slots(hm(10, 7), hm(10, 31)) == [hm(10, 0), hm(10, 15), hm(10, 30)]
    assert aligned_slots(hm(10, 0), hm(10, 15)) == [hm(10, 0)]


def test_ranges_that_cannot_be_served_are_refused_with_the_reason() -> None:
    with pytest.raises(TelemetryRangeError, match="must end after it starts"):
        check_range(hm(11, 0), hm(10, 0))
    with pytest.raises(TelemetryRangeError, match=r"at most 31 days, this one 32\.0"):
        check_range(DAY, DAY + timedelta(days=32))
    with pytest.raises(TelemetryRangeError, match="time zone"):
        check_range(datetime(2026, 7, 15), datetime(2026, 7, 16))
    check_range(DAY, DAY + timedelta(days=31))


def test_without_power_samples_the_register_slopes_show_charge_and_discharge() -> None:
    minutes = range(0, 10)
    imported = Series(tuple((hm(12, m), 100.0 * min(m, 4)) for m in minutes))
    exported = Series(tuple((hm(12, m), 100.0 * max(0, m - 6)) for m in minutes))
    changes = flow_changes(Series(), exported, imported, busy=[(hm(12, 0), hm(12, 9))])
    assert changes == [
        (hm(12, 0), "charge_started"),  # 0 -> 100 Wh in the first minute: 6 kW
        (hm(12, 4), "charge_stopped"),
        (hm(12, 6), "discharge_started"),
        (hm(12, 9), "discharge_stopped"),  # the transaction ended
    ]


def test_telemetry_csv_has_a_header_iso_instants_and_empty_unknowns() -> None:
    row = TelemetryRow("CP-1", 1, hm(10, 0), hm(10, 15), 1.25, None, None, 55.5, hm(10, 5))
    lines = list(csv.reader(io.StringIO(telemetry_csv([row]))))
    assert lines[0][:8] == [
        "station_id",
        "evse_id",
        "interval_start",
        "interval_end",
        "energy_import_kwh",
        "energy_export_kwh",
        "power_kw",
        "soc_pct",
    ]
    assert lines[1][:9] == [
        "CP-1",
        "1",
        "2026-07-15T10:00:00Z",
        "2026-07-15T10:15:00Z",
        "1.25",
        "",
        "",
        "55.5",
        "2026-07-15T10:05:00Z",
    ]
