"""Block E over real websockets: TransactionEvent Started / Updated / Ended, offline replays,
out-of-order arrival, seqNo gaps; the store checked afterwards (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.handlers import transactions
from csms.store.models import IdToken, MeterSample, Transaction, TransactionEventRecord
from csms.store.queries import last_meter_values, running_transaction, transaction_samples
from simclock import parse_instant
from tests.handlers.support import add, meter_value, raw_station, rows, sampled
from tests.stations import connected

CALLS = {"2.1": call21, "2.0.1": call201}
IMPORT = "Energy.Active.Import.Register"
EXPORT = "Energy.Active.Export.Register"
TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}


def registers(at: str, import_wh: float, export_wh: float, power_w: float, soc: float) -> Any:
    """Import and export registers, signed power and SoC, as a bidirectional station sends."""
    power = "Power.Active.Import" if power_w >= 0 else "Power.Active.Export"
    return meter_value(
        at,
        sampled(import_wh, unitOfMeasure={"unit": "Wh"}),  # measurand left to its default
        sampled(export_wh, EXPORT, unitOfMeasure={"unit": "Wh"}),
        sampled(abs(power_w), power, unitOfMeasure={"unit": "W"}),
        sampled(soc, "SoC", location="EV", unitOfMeasure={"unit": "Percent"}),
    )


def event(version: str, event_type: str, seq_no: int, at: str, **fields: Any) -> Any:
    info = {"transactionId": fields.pop("transaction_id", "tx-1")}
    info.update(fields.pop("info", {}))
    trigger = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}
    return CALLS[version].TransactionEvent(
        event_type=event_type,
        timestamp=at,
        trigger_reason=fields.pop("trigger_reason", trigger[event_type]),
        seq_no=seq_no,
        transaction_info=info,
        **fields,
    )


async def _sent_whole_transaction(station: Any, version: str) -> list[Any]:
    answers = [
        await station.call(
            event(
                version,
                "Started",
                0,
                "2026-07-15T17:00:00Z",
                evse={"id": 1, "connectorId": 1},
                id_token=TOKEN,
                info={"chargingState": "Charging", "remoteStartId": 7},
                meter_value=[registers("2026-07-15T17:00:00Z", 1000, 0, 7000, 40)],
            )
        ),
        await station.call(
            event(
                version,
                "Updated",
                1,
                "2026-07-15T17:15:00Z",
                info={"chargingState": "Charging"},
                meter_value=[registers("2026-07-15T17:15:00Z", 2750, 0, -9600, 47)],
            )
        ),
        await station.call(
            event(
                version,
                "Ended",
                2,
                "2026-07-15T17:30:00Z",
                info={"chargingState": "EVConnected", "stoppedReason": "EVDisconnected"},
                meter_value=[registers("2026-07-15T17:30:00Z", 2750, 2400, 0, 38)],
            )
        ),
    ]
    return answers


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_E01_E06_transaction_with_registers_power_and_soc_is_stored(csms, version) -> None:
    async with connected(csms, "CP-E01", version) as station:
        answers = await _sent_whole_transaction(station, version)
    assert answers[0].id_token_info == {"status": "Accepted"}  # token carried: answered
    assert answers[1].id_token_info is None  # no token: nothing to answer

    (tx,) = await rows(csms, Transaction, station_id="CP-E01")
    assert (tx.transaction_id, tx.evse_id, tx.connector_id) == ("tx-1", 1, 1)
    assert tx.id_token == "04A1B2C3"
    assert tx.started_at == parse_instant("2026-07-15T17:00:00Z")
    assert tx.ended_at == parse_instant("2026-07-15T17:30:00Z")
    assert (tx.charging_state, tx.stopped_reason) == ("EVConnected", "EVDisconnected")
    assert (tx.last_seq_no, tx.remote_start_id) == (2, 7)
    records = await rows(csms, TransactionEventRecord, station_id="CP-E01")
    assert [(r.seq_no, r.event_type) for r in records] == [
        (0, "Started"),
        (1, "Updated"),
        (2, "Ended"),
    ]

    async with csms.services.db.read() as session:
        samples = await transaction_samples(session, "CP-E01", "tx-1")
    assert len(samples) == 12 and {s.evse_id for s in samples} == {1}
    imports = [s.value for s in samples if s.measurand == IMPORT]
    exports = [s.value for s in samples if s.measurand == EXPORT]
    assert (imports, exports) == ([1000, 2750, 2750], [0, 0, 2400])
    soc = [(s.value, s.unit, s.location) for s in samples if s.measurand == "SoC"]
    assert soc == [(40, "Percent", "EV"), (47, "Percent", "EV"), (38, "Percent", "EV")]
    power = [(s.measurand, s.value) for s in samples if s.measurand.startswith("Power")]
    assert power == [
        ("Power.Active.Import", 7000),
        ("Power.Active.Export", 9600),
        ("Power.Active.Import", 0),
    ]
    assert all(s.unit and s.multiplier == 0 for s in samples)


async def test_E01_running_transaction_is_found_until_it_ends(csms) -> None:
    async with connected(csms, "CP-E01R") as station:
        await station.call(
            event("2.1", "Started", 0, "2026-07-15T17:00:00Z", evse={"id": 2, "connectorId": 1})
        )
        async with csms.services.db.read() as session:
            running = await running_transaction(session, "CP-E01R", 2)
            other_evse = await running_transaction(session, "CP-E01R", 1)
        assert running is not None and running.transaction_id == "tx-1"
        assert other_evse is None
        await station.call(event("2.1", "Ended", 1, "2026-07-15T18:00:00Z"))
    async with csms.services.db.read() as session:
        assert await running_transaction(session, "CP-E01R", 2) is None


async def test_E11_E12_replayed_offline_seqno_is_not_double_counted(csms) -> None:
    started = event(
        "2.1",
        "Started",
        0,
        "2026-07-15T17:00:00Z",
        evse={"id": 1, "connectorId": 1},
        id_token=TOKEN,
        meter_value=[registers("2026-07-15T17:00:00Z", 1000, 0, 7000, 40)],
    )
    offline_update = event(
        "2.1",
        "Updated",
        1,
        "2026-07-15T17:15:00Z",
        offline=True,
        id_token=TOKEN,
        meter_value=[registers("2026-07-15T17:15:00Z", 1000, 2400, -9600, 35)],
    )
    async with connected(csms, "CP-E11") as station:
        await station.call(started)
        first = await station.call(offline_update)
        again = await station.call(offline_update)  # the station did not see our answer
    assert first.id_token_info == again.id_token_info == {"status": "Accepted"}

    records = await rows(csms, TransactionEventRecord, station_id="CP-E11")
    assert [(r.seq_no, r.offline) for r in records] == [(0, False), (1, True)]
    assert records[1].timestamp == parse_instant("2026-07-15T17:15:00Z")  # its own time
    samples = await rows(csms, MeterSample, station_id="CP-E11")
    assert len(samples) == 8
    assert [s.value for s in samples if s.measurand == EXPORT] == [0, 2400]
    (tx,) = await rows(csms, Transaction, station_id="CP-E11")
    assert tx.last_seq_no == 1


async def test_E11_late_updated_after_ended_does_not_reopen_the_transaction(csms) -> None:
    async with connected(csms, "CP-E11L") as station:
        await station.call(
            event(
                "2.1",
                "Started",
                0,
                "2026-07-15T17:00:00Z",
                evse={"id": 1, "connectorId": 1},
                info={"chargingState": "Charging"},
            )
        )
        await station.call(
            event(
                "2.1",
                "Ended",
                2,
                "2026-07-15T17:30:00Z",
                info={"chargingState": "Idle", "stoppedReason": "Local"},
            )
        )
        late = await station.call(
            event(
                "2.1",
                "Updated",
                1,
                "2026-07-15T17:15:00Z",
                offline=True,
                info={"chargingState": "SuspendedEV"},
                meter_value=[registers("2026-07-15T17:15:00Z", 1500, 100, 2000, 44)],
            )
        )
    assert late is not None  # answered normally
    (tx,) = await rows(csms, Transaction, station_id="CP-E11L")
    assert tx.ended_at == parse_instant("2026-07-15T17:30:00Z")
    assert (tx.charging_state, tx.stopped_reason, tx.last_seq_no) == ("Idle", "Local", 2)
    async with csms.services.db.read() as session:
        assert await running_transaction(session, "CP-E11L", 1) is None
    # its meter values still count: the samples of the late event are kept
    samples = await rows(csms, MeterSample, station_id="CP-E11L", transaction_id="tx-1")
    assert len(samples) == 4


async def test_E01_seqno_gap_is_tolerated_and_logged(csms, monkeypatch) -> None:
    captured = structlog.testing.CapturingLogger()
    monkeypatch.setattr(transactions, "log", captured)
    async with connected(csms, "CP-GAP") as station:
        await station.call(
            event("2.1", "Started", 0, "2026-07-15T17:00:00Z", evse={"id": 1, "connectorId": 1})
        )
        answer = await station.call(event("2.1", "Updated", 3, "2026-07-15T17:45:00Z"))
        filler = await station.call(event("2.1", "Updated", 1, "2026-07-15T17:15:00Z"))
    assert answer is not None and filler is not None
    (tx,) = await rows(csms, Transaction, station_id="CP-GAP")
    assert tx.last_seq_no == 3 and tx.ended_at is None
    records = await rows(csms, TransactionEventRecord, station_id="CP-GAP")
    assert sorted(r.seq_no for r in records) == [0, 1, 3]
    gaps = [c.kwargs for c in captured.calls if c.args == ("transaction_event.seq_no_gap",)]
    assert [(g["seq_no"], g["expected"]) for g in gaps] == [(3, 1)]  # the filler is no gap


async def test_E05_blocked_token_in_transaction_event_is_answered_blocked(csms) -> None:
    await add(csms, IdToken(id_token="BLOCKED1", type="ISO14443", status="Blocked"))
    async with connected(csms, "CP-E05") as station:
        answer = await station.call(
            event(
                "2.1",
                "Started",
                0,
                "2026-07-15T17:00:00Z",
                evse={"id": 1, "connectorId": 1},
                id_token={"idToken": "BLOCKED1", "type": "ISO14443"},
            )
        )
    assert answer.id_token_info == {"status": "Blocked"}


async def test_J_last_meter_values_are_the_newest_per_measurand(csms) -> None:
    async with connected(csms, "CP-LAST") as station:
        await _sent_whole_transaction(station, "2.1")
    async with csms.services.db.read() as session:
        latest = await last_meter_values(session, "CP-LAST")
    by_measurand = {s.measurand: s.value for s in latest}
    assert by_measurand[IMPORT] == 2750 and by_measurand[EXPORT] == 2400
    assert by_measurand["SoC"] == 38
    assert by_measurand["Power.Active.Import"] == 0
    assert by_measurand["Power.Active.Export"] == 9600  # only sent at 17:15


async def test_E01_bad_timestamp_gets_a_clear_type_error_and_the_session_survives(csms) -> None:
    async with raw_station(csms, "CP-BADTS") as station:
        payload = {
            "eventType": "Started",
            "timestamp": "yesterday at noon",
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "tx-bad"},
        }
        reply = await station.call("TransactionEvent", payload)
        assert reply[0] == 4 and reply[2] == "TypeConstraintViolation"
        assert "timestamp" in reply[3]
        heartbeat = await station.call("Heartbeat", {})
        assert heartbeat[0] == 3
    assert await rows(csms, Transaction, station_id="CP-BADTS") == []
