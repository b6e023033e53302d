"""Schema failures map to the CALLERROR codes of OCPP 2.0.1 / 2.1 Part 4 "Valid Error Codes"
(the reasoning per keyword is in ocppj/schemas.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ocppj.errors import ErrorCode, RpcError
from ocppj.schemas import REQUEST, RESPONSE, SEND, schema_set
from ocppj.versions import V21, V201, OcppVersion

VERSIONS = [V21, V201]
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "Ara", "vendorName": "dcbel"}}
STATUS = {
    "timestamp": "2025-07-01T17:00:00Z",
    "connectorStatus": "Available",
    "evseId": 1,
    "connectorId": 1,
}


def _error(version: OcppVersion, action: str, payload: dict[str, Any], direction=REQUEST):
    with pytest.raises(RpcError) as caught:
        schema_set(version).check(action, direction, payload)
    return caught.value


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


CASES = [
    # (what, action, payload, code, path)
    (
        "missing required field",
        "BootNotification",
        {"reason": "PowerUp"},
        ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
        "(payload)",
    ),
    (
        "missing nested required field",
        "BootNotification",
        _with(BOOT, chargingStation={"model": "Ara"}),
        ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
        "chargingStation",
    ),
    (
        "wrong JSON type",
        "StatusNotification",
        _with(STATUS, evseId="1"),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "evseId",
    ),
    (
        "integer field given a fraction",
        "StatusNotification",
        _with(STATUS, connectorId=1.5),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "connectorId",
    ),
    (
        "string longer than its string[20] type",
        "BootNotification",
        _with(BOOT, chargingStation={"model": "m" * 21, "vendorName": "dcbel"}),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "chargingStation/model",
    ),
    (
        "malformed dateTime",
        "StatusNotification",
        _with(STATUS, timestamp="yesterday"),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "timestamp",
    ),
    (
        "enum field given a number: the type is the fault",
        "StatusNotification",
        _with(STATUS, connectorStatus=7),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "connectorStatus",
    ),
    (
        "value outside the enum",
        "BootNotification",
        _with(BOOT, reason="BecauseICan"),
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        "reason",
    ),
    (
        "unknown property",
        "BootNotification",
        _with(BOOT, firmwareVersion="1.0"),
        ErrorCode.PROTOCOL_ERROR,
        "(payload)",
    ),
    (
        "misspelt property: structure before the missing field it also causes",
        "BootNotification",
        {"reason": "PowerUp", "chargingstation": {"model": "Ara", "vendorName": "dcbel"}},
        ErrorCode.PROTOCOL_ERROR,
        "(payload)",
    ),
]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
@pytest.mark.parametrize(
    ("what", "action", "payload", "code", "path"), CASES, ids=[c[0] for c in CASES]
)
def test_schema_failure_maps_to_the_specified_error(version, what, action, payload, code, path):
    schema_set(version).check(action, REQUEST, BOOT if action == "BootNotification" else STATUS)
    error = _error(version, action, payload)
    assert error.code == code, error.description
    assert error.details["path"] == path
    assert len(error.description) <= 255


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
@pytest.mark.parametrize("soc", [-1, 101])
def test_value_outside_its_range_is_a_property_violation(version, soc) -> None:
    """NotifyEVChargingNeeds (K15): stateOfCharge is 0..100 in both versions."""
    dc = {"evMaxCurrent": 200, "evMaxVoltage": 400, "stateOfCharge": 50}
    needs = {
        "evseId": 1,
        "chargingNeeds": {"requestedEnergyTransfer": "DC", "dcChargingParameters": dc},
    }
    schema_set(version).check("NotifyEVChargingNeeds", REQUEST, needs)
    dc["stateOfCharge"] = soc
    error = _error(version, "NotifyEVChargingNeeds", needs)
    assert error.code == ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert error.details["path"] == "chargingNeeds/dcChargingParameters/stateOfCharge"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
def test_array_below_its_minimum_cardinality_is_an_occurrence_violation(version) -> None:
    error = _error(
        version,
        "NotifyReport",
        {"requestId": 1, "generatedAt": STATUS["timestamp"], "seqNo": 0, "reportData": []},
    )
    assert error.code == ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
def test_responses_are_checked_with_the_same_table(version) -> None:
    error = _error(version, "SetChargingProfile", {"status": "Maybe"}, RESPONSE)
    assert error.code == ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    error = _error(version, "SetChargingProfile", {}, RESPONSE)
    assert error.code == ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
def test_every_action_reports_unknown_fields_and_missing_ones_with_their_codes(version) -> None:
    schemas = schema_set(version)
    for action in sorted(schemas.actions):
        for direction in (REQUEST, RESPONSE):
            error = _error(version, action, {"notAField": 1}, direction)
            assert error.code == ErrorCode.PROTOCOL_ERROR, f"{action}{direction}"
            if schemas.raw_schema(action, direction).get("required"):
                error = _error(version, action, {}, direction)
                assert error.code == ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION


def test_21_discharge_limit_above_zero_is_a_property_violation() -> None:
    """2.1 ChargingSchedulePeriodType.dischargeLimit has `maximum: 0` (export is negative)."""
    period = {"startPeriod": 0, "limit": 1000.0, "dischargeLimit": 500.0}
    payload = {
        "evseId": 1,
        "chargingProfile": {
            "id": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [period]}
            ],
        },
    }
    error = _error(V21, "SetChargingProfile", payload)
    assert error.code == ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert error.details["path"].endswith("dischargeLimit")


def test_action_of_another_version_is_a_key_error() -> None:
    assert "NotifyDERAlarm" in schema_set(V21).actions
    assert "NotifyDERAlarm" not in schema_set(V201).actions
    with pytest.raises(KeyError):
        schema_set(V201).check("NotifyDERAlarm", REQUEST, {})


def test_send_messages_have_their_own_schema_without_a_suffix() -> None:
    """2.1 SEND (type 6): NotifyPeriodicEventStream.json validates; 2.0.1 has no SEND at all."""
    assert schema_set(V21).send_actions == frozenset({"NotifyPeriodicEventStream"})
    assert schema_set(V201).send_actions == frozenset()
    stream = {
        "id": 1,
        "pending": 0,
        "basetime": "2026-07-15T18:00:00Z",
        "data": [{"t": 0, "v": "1"}],
    }
    schema_set(V21).check("NotifyPeriodicEventStream", SEND, stream)
    with pytest.raises(RpcError) as caught:
        schema_set(V21).check("NotifyPeriodicEventStream", SEND, {"id": 1})
    assert caught.value.code == ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
