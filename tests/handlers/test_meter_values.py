"""Block J over real websockets: MeterValues stored as sent; duplicates dropped."""

from __future__ import annotations

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.store.models import MeterSample, Station
from simclock import parse_instant
from tests.handlers.support import meter_value, rows, sampled
from tests.stations import connected

CALLS = {"2.1": call21, "2.0.1": call201}


def readings(at: str) -> list[dict]:
    return [
        meter_value(
            at,
            sampled(12.5, unitOfMeasure={"unit": "kWh", "multiplier": 0}),
            sampled(3.2, "Energy.Active.Export.Register", unitOfMeasure={"unit": "kWh"}),
            sampled(230.1, "Voltage", phase="L1-N", unitOfMeasure={"unit": "V"}),
            sampled(229.4, "Voltage", phase="L2-N", unitOfMeasure={"unit": "V"}),
            sampled(
                7,
                "Power.Active.Import",
                context="Sample.Clock",
                unitOfMeasure={"unit": "kW", "multiplier": 3},
            ),
        )
    ]


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_J01_meter_values_are_stored_as_sent_and_duplicates_dropped(csms, version) -> None:
    calls = CALLS[version]
    async with connected(csms, "CP-J01", version) as station:
        first = await station.call(
            calls.MeterValues(evse_id=0, meter_value=readings("2026-07-15T18:00:00Z"))
        )
        again = await station.call(
            calls.MeterValues(evse_id=0, meter_value=readings("2026-07-15T18:00:00Z"))
        )
        later = await station.call(
            calls.MeterValues(evse_id=0, meter_value=readings("2026-07-15T18:15:00Z"))
        )
    assert first is not None and again is not None and later is not None

    samples = await rows(csms, MeterSample, station_id="CP-J01")
    assert len(samples) == 10  # 5 per distinct timestamp; the repeat added nothing
    first_five = [s for s in samples if s.timestamp == parse_instant("2026-07-15T18:00:00Z")]
    stored = {(s.measurand, s.phase, s.context, s.unit, s.multiplier, s.value) for s in first_five}
    assert stored == {
        ("Energy.Active.Import.Register", "", "", "kWh", 0, 12.5),
        ("Energy.Active.Export.Register", "", "", "kWh", 0, 3.2),
        ("Voltage", "L1-N", "", "V", 0, 230.1),
        ("Voltage", "L2-N", "", "V", 0, 229.4),
        ("Power.Active.Import", "", "Sample.Clock", "kW", 3, 7),
    }
    assert {s.transaction_id for s in samples} == {None}
    assert {s.evse_id for s in samples} == {0}


async def test_J01_meter_values_update_last_seen(csms) -> None:
    async with connected(csms, "CP-J01S") as station:
        for minute in range(3):  # last-seen is written with a batch after the answer
            at = f"2026-07-15T18:0{minute}:00Z"
            await station.call(call21.MeterValues(evse_id=1, meter_value=readings(at)))
            if minute == 0:
                (before,) = await rows(csms, Station, id="CP-J01S")
    (after,) = await rows(csms, Station, id="CP-J01S")
    assert before.last_seen is not None and after.last_seen is not None
    assert after.last_seen > before.last_seen
