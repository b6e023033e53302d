"""Every CSMS->station command round-trips against a real test station, with a typed result."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from csms.commands import CommandResult, Commands
from csms.store.models import ChargingProfileRecord
from tests.commands.helpers import (
    CommandStation21,
    CommandStation201,
    boot,
    charging_profile,
    discharge_profile_21,
    received,
    seed_needs,
    seed_transaction,
)
from tests.stations import connected

# (method, request, the station's expected answer status) for a 2.1 station.
ROUND_TRIPS_21: list[tuple[str, dict[str, Any], str]] = [
    ("clear_charging_profile", {"chargingProfileId": 3}, "Accepted"),
    (
        "get_charging_profiles",
        {"requestId": 1, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}},
        "NoProfiles",
    ),
    (
        "get_composite_schedule",
        {"evseId": 1, "duration": 3600, "chargingRateUnit": "W"},
        "Accepted",
    ),
    (
        "request_start_transaction",
        {"remoteStartId": 11, "evseId": 1, "idToken": {"idToken": "A1", "type": "Central"}},
        "Accepted",
    ),
    ("request_stop_transaction", {"transactionId": "tx-1"}, "Accepted"),
    ("get_base_report", {"requestId": 2, "reportBase": "FullInventory"}, "Accepted"),
    ("trigger_message", {"requestedMessage": "MeterValues", "evse": {"id": 1}}, "Accepted"),
    ("reset", {"type": "OnIdle"}, "Scheduled"),
    (
        "update_firmware",
        {
            "requestId": 3,
            "firmware": {
                "location": "https://fw.example/ara-3.3.bin",
                "retrieveDateTime": "2026-07-15T02:00:00Z",
            },
        },
        "Accepted",
    ),
    (
        "get_log",
        {"requestId": 4, "logType": "DiagnosticsLog", "log": {"remoteLocation": "https://l.ex/"}},
        "Accepted",
    ),
    (
        "notify_allowed_energy_transfer",
        {"transactionId": "tx-1", "allowedEnergyTransfer": ["DC_BPT"]},
        "Accepted",
    ),
    (
        "set_der_control",
        {
            "isDefault": False,
            "controlId": "lmd-1",
            "controlType": "LimitMaxDischarge",
            "limitMaxDischarge": {"priority": 1, "pctMaxDischargePower": 50.0},
        },
        "Accepted",
    ),
    ("get_der_control", {"requestId": 5}, "NotFound"),
    ("clear_der_control", {"isDefault": False, "controlId": "lmd-1"}, "Accepted"),
]
ACTIONS = {
    "clear_charging_profile": "ClearChargingProfile",
    "get_charging_profiles": "GetChargingProfiles",
    "get_composite_schedule": "GetCompositeSchedule",
    "request_start_transaction": "RequestStartTransaction",
    "request_stop_transaction": "RequestStopTransaction",
    "get_base_report": "GetBaseReport",
    "trigger_message": "TriggerMessage",
    "reset": "Reset",
    "update_firmware": "UpdateFirmware",
    "get_log": "GetLog",
    "notify_allowed_energy_transfer": "NotifyAllowedEnergyTransfer",
    "set_der_control": "SetDERControl",
    "get_der_control": "GetDERControl",
    "clear_der_control": "ClearDERControl",
}


def commands_of(csms: Any) -> Commands:
    assert csms.services.commands is not None
    return csms.services.commands


async def test_every_21_command_round_trips_with_typed_result(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-CMD21", station_class=CommandStation21) as station:
        for method, request, status in ROUND_TRIPS_21:
            result = await getattr(commands, method)("CP-CMD21", request)
            assert isinstance(result, CommandResult)
            assert (result.ok, result.action, result.status) == (True, ACTIONS[method], status), (
                method,
                result,
            )
            assert len(received(station, ACTIONS[method])) >= 1, method
        variables = await commands.get_variables(
            "CP-CMD21",
            {
                "getVariableData": [
                    {"component": {"name": "AlignedDataCtrlr"}, "variable": {"name": "Interval"}}
                ]
            },
        )
        assert variables.ok
        assert variables.payload["getVariableResult"][0]["attributeValue"] == "900"
        setting = await commands.set_variables(
            "CP-CMD21",
            {
                "setVariableData": [
                    {
                        "attributeValue": "900",
                        "component": {"name": "AlignedDataCtrlr"},
                        "variable": {"name": "Interval"},
                    }
                ]
            },
        )
        assert setting.payload["setVariableResult"][0]["attributeStatus"] == "Accepted"
        composite = await commands.get_composite_schedule(
            "CP-CMD21", {"evseId": 1, "duration": 3600}
        )
        assert composite.payload["schedule"]["chargingSchedulePeriod"][0]["limit"] == 7000


async def test_K01_set_and_K10_clear_charging_profile_are_recorded(csms) -> None:
    commands = commands_of(csms)
    async with connected(csms, "CP-K01", station_class=CommandStation21) as station:
        await boot(station)
        set_result = await commands.set_charging_profile("CP-K01", charging_profile(), origin="cli")
        assert set_result.accepted and set_result.record_id is not None
        assert received(station, "SetChargingProfile")[0]["charging_profile"]["id"] == 3
        clear = await commands.clear_charging_profile(
            "CP-K01", {"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}
        )
        assert clear.accepted
    async with csms.services.db.read() as session:
        record = await session.get(ChargingProfileRecord, set_result.record_id)
    assert record is not None
    assert (record.status, record.origin, record.discharges) == ("Cleared", "cli", False)
    assert record.purpose == "TxDefaultProfile" and record.answered_at is not None


async def test_K01_rejected_profile_is_recorded_with_the_station_answer(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-K01R", station_class=CommandStation21) as station:
        await boot(station)
        station.profile_status = "Rejected"
        result = await commands.set_charging_profile("CP-K01R", charging_profile())
        assert result.ok and result.status == "Rejected" and not result.accepted
    async with csms_sqlite.services.db.read() as session:
        record = await session.get(ChargingProfileRecord, result.record_id)
    assert record is not None and record.status == "Rejected"


async def test_K01_FR_05_same_profile_id_replaces_the_previous_record(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-K01X", station_class=CommandStation21) as station:
        await boot(station)
        first = await commands.set_charging_profile("CP-K01X", charging_profile(limit=7000))
        second = await commands.set_charging_profile("CP-K01X", charging_profile(limit=5000))
        assert first.accepted and second.accepted
    async with csms_sqlite.services.db.read() as session:
        rows = (
            await session.execute(select(ChargingProfileRecord).order_by(ChargingProfileRecord.id))
        ).scalars()
        statuses = [row.status for row in rows if row.station_id == "CP-K01X"]
    assert statuses == ["Replaced", "Accepted"]


async def test_201_station_round_trips_and_refuses_21_only_commands(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(
        csms_sqlite, "CP-CMD201", "2.0.1", station_class=CommandStation201
    ) as station:
        profile = await commands.set_charging_profile("CP-CMD201", charging_profile())
        assert profile.accepted
        reset = await commands.reset("CP-CMD201", {"type": "Immediate"})
        assert reset.accepted
        composite = await commands.get_composite_schedule(
            "CP-CMD201", {"evseId": 1, "duration": 600}
        )
        assert composite.ok and composite.status == "Rejected"
        for method in ("notify_allowed_energy_transfer", "set_der_control", "get_der_control"):
            result = await getattr(commands, method)("CP-CMD201", {"requestId": 1})
            assert result.failure == "not-supported-by-version", method
            assert "OCPP 2.0.1" in result.reason and "has no" in result.reason
        dynamic = await commands.update_dynamic_schedule(
            "CP-CMD201", {"chargingProfileId": 1, "scheduleUpdate": {"setpoint": -1.0}}
        )
        assert dynamic.failure == "not-supported-by-version"
        names = {name for name, _ in station.received}
        assert "UpdateDynamicSchedule" not in names and "SetDERControl" not in names


async def test_command_to_a_station_not_connected_fails_at_once(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    result = await commands.reset("CP-NOWHERE", {"type": "Immediate"})
    assert (result.ok, result.failure) == (False, "not-connected")
    assert "CP-NOWHERE" in result.reason
    profile = await commands.set_charging_profile("CP-NOWHERE", charging_profile())
    assert profile.failure == "not-connected" and profile.record_id is None
    boot_result = await commands.configure_station("CP-NOWHERE", force=True)
    assert not boot_result.configured


async def test_command_timeout_is_a_typed_failure(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-SLOW", station_class=CommandStation21) as station:
        station.hold_action = "TriggerMessage"
        result = await commands.trigger_message(
            "CP-SLOW", {"requestedMessage": "Heartbeat"}, timeout=0.2
        )
        station.release.set()
        assert (result.ok, result.failure) == (False, "timeout")
        assert "TriggerMessage" in result.reason
        # The late answer is ignored and the next command works.
        again = await commands.reset("CP-SLOW", {"type": "OnIdle"})
        assert again.ok


async def test_station_callerror_is_a_typed_failure_and_records_error(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-ERR", station_class=CommandStation21) as station:
        await boot(station)
        station.fail_action = "Reset"
        result = await commands.reset("CP-ERR", {"type": "Immediate"})
        assert (result.failure, result.error_code) == ("call-error", "InternalError")
        assert "on purpose" in result.reason


@pytest.mark.parametrize("bad", [{"evseId": "one"}, {"chargingProfile": {}}, {"evseId": 1}])
async def test_invalid_request_fails_before_sending(csms_sqlite, bad) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-BAD", station_class=CommandStation21) as station:
        result = await commands.set_charging_profile("CP-BAD", bad)
        assert result.failure == "invalid-request"
        assert "SetChargingProfileRequest" in result.reason
        assert received(station, "SetChargingProfile") == []


async def test_Q04_dynamic_discharge_update_is_gated_against_its_profile(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-Q04", station_class=CommandStation21) as station:
        await boot(station)
        update = {"chargingProfileId": 7, "scheduleUpdate": {"setpoint": -5000.0}}
        unknown = await commands.update_dynamic_schedule("CP-Q04", update, origin="api")
        assert unknown.failure == "refused" and "no Accepted charging profile 7" in unknown.reason
        await seed_needs(csms_sqlite, "CP-Q04", 1)
        await seed_transaction(csms_sqlite, "CP-Q04", 1, "tx-q04")
        sent = await commands.set_charging_profile("CP-Q04", discharge_profile_21("tx-q04"))
        assert sent.accepted, sent
        allowed = await commands.update_dynamic_schedule("CP-Q04", update, origin="api")
        assert allowed.accepted
        assert len(received(station, "UpdateDynamicSchedule")) == 1
    async with csms_sqlite.services.db.read() as session:
        query = select(ChargingProfileRecord).where(
            ChargingProfileRecord.station_id == "CP-Q04",
            ChargingProfileRecord.profile_id == 7,
            ChargingProfileRecord.status == "Accepted",
        )
        record = (await session.execute(query)).scalar_one()
    assert record.schedule_update == {"setpoint": -5000.0}  # what a pull must now return


async def test_F01_remote_start_with_a_discharging_profile_is_refused(csms_sqlite) -> None:
    commands = commands_of(csms_sqlite)
    async with connected(csms_sqlite, "CP-F01", station_class=CommandStation21) as station:
        await boot(station)
        await seed_needs(csms_sqlite, "CP-F01", 1)
        profile = discharge_profile_21("not-yet")["chargingProfile"]
        del profile["transactionId"]
        result = await commands.request_start_transaction(
            "CP-F01",
            {
                "remoteStartId": 1,
                "evseId": 1,
                "idToken": {"idToken": "A1", "type": "Central"},
                "chargingProfile": profile,
            },
        )
        assert result.failure == "refused" and result.error_code == "transaction"
        assert received(station, "RequestStartTransaction") == []
