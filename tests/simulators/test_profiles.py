"""The charging-profile engine: K01 install rules, K08 composite = execution, Q01-Q12 V2X."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import ocpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simclock import iso
from simulators.catalog import get_hardware
from simulators.profiles import EngineConfig, ProfileEngine, ProfileError, parse_profile

T0 = datetime(2026, 7, 15, 17, 0, tzinfo=UTC)


def engine(model: str = "wallbox-quasar-2", version: str = "2.1") -> ProfileEngine:
    return ProfileEngine(EngineConfig.from_hardware(get_hardware(model), version))


def profile(
    pid: int,
    purpose: str = "TxProfile",
    periods: list[dict[str, Any]] | None = None,
    *,
    stack: int = 0,
    kind: str = "Absolute",
    start: datetime | None = T0,
    duration: int | None = None,
    tx: str | None = "tx-1",
    unit: str = "W",
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "id": 1,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": 5000}],
    }
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = iso(start)
    if duration is not None:
        schedule["duration"] = duration
    raw: dict[str, Any] = {
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
        **extra,
    }
    if purpose == "TxProfile" and tx is not None:
        raw["transactionId"] = tx
    return raw


def with_tx(e: ProfileEngine, at: datetime = T0) -> ProfileEngine:
    e.start_transaction(1, "tx-1", at)
    return e


def discharge(setpoint: float = -9000, dl: float = -11_000, limit: float = 11_000) -> list[dict]:
    return [
        {
            "startPeriod": 0,
            "operationMode": "CentralSetpoint",
            "setpoint": setpoint,
            "dischargeLimit": dl,
            "limit": limit,
        }
    ]


# --- K01 install rules ----------------------------------------------------------------------


def test_k01_fr_05_same_id_replaces() -> None:
    e = with_tx(engine())
    assert e.install(1, profile(7, periods=[{"startPeriod": 0, "limit": 3000}]), T0).status == (
        "Accepted"
    )
    assert e.install(1, profile(7, periods=[{"startPeriod": 0, "limit": 4000}]), T0).status == (
        "Accepted"
    )
    assert len(e.profiles()) == 1 and e.effective_setpoint(T0, 1) == 4000


def test_k01_fr_06_same_purpose_stack_and_evse_with_overlapping_validity_is_rejected() -> None:
    e = engine()
    assert e.install(1, profile(1, "TxDefaultProfile", stack=2), T0).status == "Accepted"
    result = e.install(1, profile(2, "TxDefaultProfile", stack=2), T0)
    assert result.status == "Rejected" and result.reason_code == "DuplicateStackLevel"
    later = profile(3, "TxDefaultProfile", stack=2, validFrom=iso(T0 + timedelta(days=1)))
    first = profile(1, "TxDefaultProfile", stack=2, validTo=iso(T0 + timedelta(days=1)))
    assert e.install(1, first, T0).status == "Accepted"
    assert e.install(1, later, T0).status == "Accepted"  # no overlap


def test_k01_fr_39_txprofile_same_stack_same_transaction_rejected() -> None:
    e = with_tx(engine())
    assert e.install(1, profile(1, stack=1), T0).status == "Accepted"
    assert e.install(1, profile(2, stack=1), T0).reason_code == "DuplicateStackLevel"


@pytest.mark.parametrize(
    ("evse", "raw", "code"),
    [
        (1, profile(1, tx="tx-9"), "TransactionNotOnEvse"),  # K01.FR.33
        (0, profile(1), "EvseIdMustBePositive"),  # K01.FR.16
        (1, profile(1, "ChargingStationMaxProfile"), "EvseIdMustBeZero"),  # K01.FR.03
        (0, profile(1, "ChargingStationMaxProfile", kind="Relative"), "InvalidKind"),  # .FR.38
        (1, profile(1, start=None), "MissingStartSchedule"),  # K01.FR.40
        (1, profile(1, periods=[{"startPeriod": 5, "limit": 1}]), "FirstStartPeriodNotZero"),
        (
            1,
            profile(1, periods=[{"startPeriod": 0, "limit": 1}, {"startPeriod": 0, "limit": 2}]),
            "PeriodsOutOfOrder",
        ),  # K01.FR.35
        (7, profile(1), "UnknownEvse"),  # K01.FR.28
        (
            1,
            profile(1, periods=[{"startPeriod": 0, "operationMode": "LocalFrequency"}]),
            "UnsupportedOperationMode",
        ),
        (
            1,
            profile(1, periods=[{"startPeriod": 0, "operationMode": "ExternalLimits"}]),
            "UnsupportedOperationMode",
        ),  # the Quasar 2 has no ExternalLimits
        (
            1,
            profile(1, periods=[{"startPeriod": 0, "operationMode": "CentralSetpoint"}]),
            "MissingSetpoint",
        ),
        (1, profile(1, periods=[{"startPeriod": 0, "limit": -5000}]), "NegativeLimitNotSupported"),
        (1, {"id": 1, "stackLevel": 0}, "MissingField"),
        (
            1,
            profile(1, "TxDefaultProfile", tx=None, transactionId="tx-1"),
            "UnexpectedTransactionId",
        ),
    ],
)
def test_k01_invalid_profiles_are_rejected_with_a_reason(evse: int, raw: dict, code: str) -> None:
    e = with_tx(engine())
    result = e.install(evse, raw, T0)
    assert (result.status, result.reason_code) == ("Rejected", code)
    assert result.to_response()["statusInfo"]["reasonCode"] == code
    assert not e.profiles()


def test_k01_fr_09_txprofile_without_transaction_is_rejected() -> None:
    assert engine().install(1, profile(1), T0).reason_code == "NoTransaction"


def test_parse_profile_names_the_bad_field() -> None:
    raw = profile(1)
    raw["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] = "lots"
    with pytest.raises(ProfileError, match="limit must be a number"):
        parse_profile(raw)


def test_21_fields_on_a_201_connection_are_rejected() -> None:
    e = with_tx(engine("dcbel-ara", "2.0.1"))
    assert e.install(1, profile(1, periods=discharge()), T0).reason_code == "UnsupportedField"


# --- Q01/Q03: V2X only once allowed, setpoint inside [dischargeLimit, limit] -------------------


def test_q01_discharge_profile_runs_charging_only_until_v2x_is_allowed() -> None:
    e = with_tx(engine())
    assert e.install(1, profile(1, periods=discharge(-9000)), T0).status == "Accepted"
    assert e.effective_setpoint(T0, 1) == 0
    e.set_evse(1, v2x_allowed=True)
    assert e.effective_setpoint(T0, 1) == -9000
    e.end_transaction(1)
    assert not e.profiles() and e.effective_setpoint(T0, 1) == 11_500


def test_q03_setpoint_clamped_to_discharge_limit_and_hardware() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True)
    e.install(1, profile(1, periods=discharge(-20_000, -9_000)), T0)
    assert e.effective_setpoint(T0, 1) == -9_000
    e.install(1, profile(1, periods=discharge(-20_000, -50_000, 50_000)), T0)
    assert e.effective_setpoint(T0, 1) == -11_500  # the Quasar 2 exports at most 11.5 kW


@settings(max_examples=200, deadline=None)
@given(
    setpoint=st.floats(-60_000, 60_000),
    dl=st.floats(-60_000, 0),
    limit=st.floats(0, 60_000),
    v2x=st.booleans(),
    cap=st.one_of(st.none(), st.floats(0, 20_000)),
)
def test_q03_setpoint_always_inside_discharge_limit_and_limit(setpoint, dl, limit, v2x, cap):
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=v2x)
    e.install(1, profile(1, periods=discharge(setpoint, dl, limit)), T0)
    if cap is not None:
        e.install(
            0, profile(2, "ChargingStationMaxProfile", [{"startPeriod": 0, "limit": cap}]), T0
        )
    slot = e.evaluate(T0, 1)
    assert slot.discharge_limit_w <= slot.setpoint_w <= slot.limit_w
    assert dl - 1e-9 <= slot.setpoint_w <= limit + 1e-9 or slot.setpoint_w == 0
    if not v2x:
        assert slot.setpoint_w >= 0  # executed as charging-only
    assert -11_500 <= slot.setpoint_w <= min(11_500, cap if cap is not None else 11_500)


def test_201_negative_limit_discharges_only_on_hardware_that_accepts_it() -> None:
    e = with_tx(engine("heliox-44", "2.0.1"))
    assert e.install(1, profile(1, periods=[{"startPeriod": 0, "limit": -30_000}]), T0).status == (
        "Accepted"
    )
    assert e.effective_setpoint(T0, 1) == 0  # V2X not enabled yet: charging-only
    e.set_evse(1, v2x_allowed=True)
    assert e.effective_setpoint(T0, 1) == -30_000
    payload = e.composite_payload(T0, 600, 1)
    assert payload["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": -30_000}]


# --- schedules, stacking, combination ---------------------------------------------------------


def test_schedule_end_falls_back_to_lower_stack_then_hardware_default() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True)
    e.install(1, profile(1, "TxDefaultProfile", [{"startPeriod": 0, "limit": 7000}]), T0)
    e.install(1, profile(2, periods=discharge(-9000), duration=1800, stack=3), T0)
    periods = e.composite_schedule(T0, 3600, 1)
    assert [(p.start_s, p.slot.target_w) for p in periods] == [(0, -9000), (1800, 7000)]


def test_txprofile_overrides_txdefault_and_station_max_caps_both() -> None:
    e = with_tx(engine())
    e.install(1, profile(1, "TxDefaultProfile", [{"startPeriod": 0, "limit": 2000}], stack=9), T0)
    e.install(1, profile(2, periods=[{"startPeriod": 0, "limit": 10_000}]), T0)
    e.install(0, profile(3, "ChargingStationMaxProfile", [{"startPeriod": 0, "limit": 8000}]), T0)
    e.install(
        0,
        profile(
            4,
            "ChargingStationExternalConstraints",
            [{"startPeriod": 0, "limit": 9000}, {"startPeriod": 60, "limit": 6000}],
        ),
        T0,
    )
    assert e.effective_setpoint(T0, 1) == 8000
    assert e.effective_setpoint(T0 + timedelta(seconds=61), 1) == 6000


def test_evse_specific_txdefault_overrides_the_station_wide_one() -> None:
    e = with_tx(engine())
    e.install(0, profile(1, "TxDefaultProfile", [{"startPeriod": 0, "limit": 2000}], stack=5), T0)
    e.install(1, profile(2, "TxDefaultProfile", [{"startPeriod": 0, "limit": 3000}]), T0)
    assert e.effective_setpoint(T0, 1) == 3000


def test_relative_profile_runs_from_transaction_start() -> None:
    e = with_tx(engine(), T0 - timedelta(seconds=100))
    periods = [{"startPeriod": 0, "limit": 1000}, {"startPeriod": 150, "limit": 2000}]
    e.install(1, profile(1, kind="Relative", periods=periods), T0)
    assert e.effective_setpoint(T0, 1) == 1000
    assert e.effective_setpoint(T0 + timedelta(seconds=50), 1) == 2000


def test_daily_recurring_profile_repeats_each_day() -> None:
    e = with_tx(engine())
    periods = [{"startPeriod": 0, "limit": 1000}, {"startPeriod": 3600, "limit": 4000}]
    raw = profile(
        1, "TxDefaultProfile", periods, kind="Recurring", recurrencyKind="Daily", duration=7200
    )
    e.install(1, raw, T0)
    for day in (0, 1, 5):
        base = T0 + timedelta(days=day)
        assert e.effective_setpoint(base + timedelta(minutes=30), 1) == 1000
        assert e.effective_setpoint(base + timedelta(minutes=90), 1) == 4000
        assert e.effective_setpoint(base + timedelta(hours=3), 1) == 11_500


def test_validity_window_bounds_a_profile() -> None:
    e = with_tx(engine())
    raw = profile(
        1, validFrom=iso(T0 + timedelta(minutes=10)), validTo=iso(T0 + timedelta(minutes=20))
    )
    e.install(1, raw, T0)
    periods = e.composite_schedule(T0, 3600, 1)
    assert [(p.start_s, p.slot.target_w) for p in periods] == [
        (0, 11_500),
        (600, 5000),
        (1200, 11_500),
    ]


def test_amp_profiles_are_converted_with_the_nominal_voltage() -> None:
    e = with_tx(engine("tesla-universal-wall-connector"))
    e.install(1, profile(1, unit="A", periods=[{"startPeriod": 0, "limit": 32}]), T0)
    assert e.effective_setpoint(T0, 1) == 32 * 240
    payload = e.composite_payload(T0, 60, 1, unit="A")
    assert payload["chargingSchedulePeriod"][0]["limit"] == 32


def test_q10_idle_and_q07_central_frequency() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True, frequency_hz=59.9)
    curve = [{"frequency": 59.8, "power": -10_000}, {"frequency": 60.0, "power": 0}]
    periods = [
        {"startPeriod": 0, "operationMode": "Idle"},
        {
            "startPeriod": 60,
            "operationMode": "CentralFrequency",
            "v2xBaseline": 1000,
            "v2xFreqWattCurve": curve,
        },
    ]
    e.install(1, profile(1, periods=periods), T0)
    assert e.effective_setpoint(T0, 1) == 0
    assert e.effective_setpoint(T0 + timedelta(seconds=60), 1) == pytest.approx(1000 - 5000)


def test_q05_external_setpoint_follows_the_ems_within_limits() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True)
    e.install(
        1,
        profile(
            1,
            periods=[
                {
                    "startPeriod": 0,
                    "operationMode": "ExternalSetpoint",
                    "limit": 6000,
                    "dischargeLimit": -4000,
                }
            ],
        ),
        T0,
    )
    assert e.effective_setpoint(T0, 1) == 0  # no EMS value yet
    e.set_evse(1, external_setpoint_w=-7000)
    assert e.effective_setpoint(T0, 1) == -4000


def test_priority_charging_replaces_the_txprofile_while_active() -> None:
    e = with_tx(engine())
    e.install(1, profile(1, periods=[{"startPeriod": 0, "limit": 1000}]), T0)
    e.install(1, profile(2, "PriorityCharging", [{"startPeriod": 0, "limit": 11_000}]), T0)
    assert e.effective_setpoint(T0, 1) == 1000
    e.set_evse(1, priority_charging=True)
    assert e.effective_setpoint(T0, 1) == 11_000


# --- Q11/Q12 offline, Dynamic dead-man, Q04 updates -------------------------------------------


def test_q11_profile_expires_offline_after_max_offline_duration_and_q12_restores_it() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True)
    e.install(1, profile(1, "TxDefaultProfile", [{"startPeriod": 0, "limit": 3000}]), T0)
    e.install(1, profile(2, periods=discharge(-9000), stack=2, maxOfflineDuration=600), T0)
    e.set_offline(T0 + timedelta(minutes=5))
    assert e.effective_setpoint(T0 + timedelta(minutes=14), 1) == -9000  # still within 600 s
    assert e.effective_setpoint(T0 + timedelta(minutes=16), 1) == 3000  # lower stack level
    periods = e.composite_schedule(T0, 3600, 1)
    assert [(p.start_s, p.slot.target_w) for p in periods] == [(0, -9000), (900, 3000)]
    assert e.set_online(T0 + timedelta(minutes=30)) == []
    assert e.effective_setpoint(T0 + timedelta(minutes=31), 1) == -9000


def test_q12_invalid_after_offline_duration_removes_the_profile_for_good() -> None:
    e = with_tx(engine())
    e.install(1, profile(2, stack=2, maxOfflineDuration=0, invalidAfterOfflineDuration=True), T0)
    e.set_offline(T0)
    assert e.effective_setpoint(T0, 1) == 11_500
    assert e.set_online(T0 + timedelta(minutes=1)) == [2]
    assert not e.profiles()


def test_profiles_keep_running_while_offline_without_max_offline_duration() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True)
    e.install(1, profile(1, periods=discharge(-9000), duration=3600), T0)
    e.set_offline(T0)
    assert e.effective_setpoint(T0 + timedelta(minutes=59), 1) == -9000
    assert e.effective_setpoint(T0 + timedelta(minutes=61), 1) == 11_500  # schedule ended


def test_q04_dynamic_profile_updates_and_dead_man_expiry() -> None:
    e = with_tx(engine())
    e.set_evse(1, v2x_allowed=True)
    raw = profile(5, kind="Dynamic", start=None, duration=300, periods=discharge(-2000))
    assert e.install(1, raw, T0).status == "Accepted"
    assert e.effective_setpoint(T0 + timedelta(seconds=299), 1) == -2000
    assert e.effective_setpoint(T0 + timedelta(seconds=300), 1) == 11_500  # dead-man
    update = {"setpoint": -8000}
    assert e.update_dynamic(5, update, T0 + timedelta(seconds=250)).status == "Accepted"
    assert e.effective_setpoint(T0 + timedelta(seconds=500), 1) == -8000
    assert e.effective_setpoint(T0 + timedelta(seconds=551), 1) == 11_500
    assert e.update_dynamic(99, update, T0).reason_code == "UnknownProfile"


# --- K08 composite schedule ------------------------------------------------------------------


def _validator(version: str) -> Any:
    folder = "v21" if version == "2.1" else "v201"
    path = Path(ocpp.__file__).parent / folder / "schemas" / "GetCompositeScheduleResponse.json"
    schema = json.loads(path.read_text())
    schema.pop("$schema", None)
    return jsonschema_rs.validator_for(schema)


@pytest.mark.parametrize(("model", "version"), [("dcbel-ara", "2.1"), ("heliox-44", "2.0.1")])
def test_k08_composite_payload_validates_against_the_official_schema(model, version) -> None:
    e = with_tx(engine(model, version))
    e.install(
        1,
        profile(
            1, periods=[{"startPeriod": 0, "limit": 5000}, {"startPeriod": 300, "limit": 6000}]
        ),
        T0,
    )
    payload = e.composite_payload(T0, 900, 1)
    _validator(version).validate({"status": "Accepted", "schedule": payload})
    assert len(payload["chargingSchedulePeriod"]) == 2


# --- K08 hypothesis: composite == straightforward per-second reference -----------------------

HW_MAX = 11_500.0
DAY = 86_400


def _ref_period(raw: dict, evse_id: int, t: datetime, tx_start: datetime) -> float | None:
    """A plain reading of one profile at one instant (limits only)."""
    if raw.get("validFrom") and t < datetime.fromisoformat(raw["validFrom"]):
        return None
    if raw.get("validTo") and t >= datetime.fromisoformat(raw["validTo"]):
        return None
    sched = raw["chargingSchedule"][0]
    kind = raw["chargingProfileKind"]
    anchor = tx_start if kind == "Relative" else datetime.fromisoformat(sched["startSchedule"])
    duration = sched.get("duration")
    if kind == "Recurring":
        if t < anchor:
            return None
        anchor += timedelta(seconds=DAY * int((t - anchor).total_seconds() // DAY))
        duration = min(duration or DAY, DAY)
    offset = (t - anchor).total_seconds()
    if offset < 0 or (duration is not None and offset >= duration):
        return None
    limit = None
    for period in sched["chargingSchedulePeriod"]:
        if period["startPeriod"] <= offset:
            limit = period["limit"]
    return limit


def _reference(installed: list[tuple[int, dict]], t: datetime, tx_start: datetime) -> float:
    def top(purpose: str, owners: tuple[int, ...]) -> float | None:
        found = [
            ((raw["stackLevel"], evse, raw["id"]), value)
            for evse, raw in installed
            if raw["chargingProfilePurpose"] == purpose and evse in owners
            for value in [_ref_period(raw, evse, t, tx_start)]
            if value is not None
        ]
        return max(found)[1] if found else None

    drive = top("TxProfile", (1,))
    if drive is None:
        drive = top("TxDefaultProfile", (1,))
    if drive is None:
        drive = top("TxDefaultProfile", (0,))
    cap = HW_MAX
    for purpose, owner in (
        ("ChargingStationMaxProfile", 0),
        ("ChargingStationExternalConstraints", 0),
        ("ChargingStationExternalConstraints", 1),
    ):
        value = top(purpose, (owner,))
        if value is not None:
            cap = min(cap, max(value, 0.0))
    return cap if drive is None else min(drive, cap)


@st.composite
def random_profile(draw: st.DrawFn, pid: int) -> tuple[int, dict]:
    purpose = draw(
        st.sampled_from(
            [
                "TxProfile",
                "TxDefaultProfile",
                "ChargingStationMaxProfile",
                "ChargingStationExternalConstraints",
            ]
        )
    )
    evse = 0 if purpose == "ChargingStationMaxProfile" else 1
    if purpose in ("TxDefaultProfile", "ChargingStationExternalConstraints"):
        evse = draw(st.sampled_from([0, 1]))
    kinds = ["Absolute", "Recurring"] + (
        [] if evse == 0 and purpose != "TxDefaultProfile" else ["Relative"]
    )
    kind = draw(st.sampled_from(kinds))
    starts = sorted(draw(st.sets(st.integers(1, 2400), max_size=4)))
    periods = [{"startPeriod": s, "limit": draw(st.integers(0, 14_000))} for s in [0, *starts]]
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["validFrom"] = iso(T0 + timedelta(seconds=draw(st.integers(-600, 1800))))
    if draw(st.booleans()):
        extra["validTo"] = iso(T0 + timedelta(seconds=draw(st.integers(0, 3600))))
    if kind == "Recurring":
        extra["recurrencyKind"] = "Daily"
    start = T0 + timedelta(seconds=draw(st.integers(-DAY - 600, 1200)))
    duration = draw(st.one_of(st.none(), st.integers(1, 3000)))
    raw = profile(
        pid,
        purpose,
        periods,
        stack=draw(st.integers(0, 3)),
        kind=kind,
        start=start,
        duration=duration,
        **extra,
    )
    return evse, raw


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    count=st.integers(1, 6),
    at_offset=st.integers(-300, 900),
    tx_offset=st.integers(-1200, 0),
)
def test_k08_composite_schedule_equals_a_per_second_reference(data, count, at_offset, tx_offset):
    e = with_tx(engine(), T0 + timedelta(seconds=tx_offset))
    for pid in range(1, count + 1):
        evse, raw = data.draw(random_profile(pid))
        e.install(evse, raw, T0)
    installed = [(i.evse_id, i.profile.raw) for i in e.profiles()]
    at = T0 + timedelta(seconds=at_offset, microseconds=data.draw(st.integers(0, 999_999)))
    duration = 2400
    periods = e.composite_schedule(at, duration, 1)
    assert periods[0].start_s == 0
    index = 0
    for second in range(duration):
        while index + 1 < len(periods) and periods[index + 1].start_s <= second:
            index += 1
        t = at + timedelta(seconds=second)
        expected = _reference(installed, t, T0 + timedelta(seconds=tx_offset))
        assert periods[index].slot.target_w == pytest.approx(expected), (second, installed)
        if second % 7 == 0:
            assert e.effective_setpoint(t, 1) == pytest.approx(expected)
