"""The dispatcher's profile: a plan row as one TxProfile (DESIGN.md §3.7, Q03)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from csms.gate import profile_discharges
from csms.scheduler.setpoints import Period, discharge_request, fit_periods, profile_id_for
from ocppj.schemas import REQUEST, schema_set
from ocppj.versions import V21, V201

T0 = datetime(2026, 7, 15, 19, 0, tzinfo=UTC)
END = T0 + timedelta(hours=3)


def _periods(powers: list[float], minutes: int = 5) -> list[Period]:
    return [Period(T0 + timedelta(minutes=minutes * i), kw) for i, kw in enumerate(powers)]


def _energy(periods: list[Period], end: datetime) -> float:
    bounds = [p.start for p in periods[1:]] + [end]
    return sum(
        p.export_kw * (b - p.start).total_seconds() for p, b in zip(periods, bounds, strict=True)
    )


def test_q03_v21_profile_is_a_central_setpoint_txprofile_ending_with_the_event() -> None:
    request = discharge_request(
        version=V21,
        evse_id=1,
        profile_id=profile_id_for(7, 1),
        stack_level=8,
        transaction_id="tx-1",
        periods=_periods([10.0, 7.5]),
        end=END,
        max_discharge_kw=15.2,
    )
    schema_set(V21).check("SetChargingProfile", REQUEST, request)
    profile = request["chargingProfile"]
    assert profile["chargingProfilePurpose"] == "TxProfile"
    assert profile["transactionId"] == "tx-1"
    schedule = profile["chargingSchedule"][0]
    assert schedule["duration"] == 3 * 3600 and schedule["startSchedule"] == "2026-07-15T19:00:00Z"
    assert profile["maxOfflineDuration"] == 3 * 3600  # Q11: kept offline until the end
    first, second = schedule["chargingSchedulePeriod"]
    assert first == {
        "startPeriod": 0,
        "operationMode": "CentralSetpoint",
        "setpoint": -10000.0,
        "dischargeLimit": -15200.0,
        "limit": 0.0,
    }
    assert second["startPeriod"] == 300 and second["setpoint"] == -7500.0
    assert profile_discharges(request)


def test_201_profile_discharges_through_a_negative_limit_only() -> None:
    request = discharge_request(
        version=V201,
        evse_id=1,
        profile_id=profile_id_for(7, 1),
        stack_level=8,
        transaction_id="tx-1",
        periods=_periods([44.0]),
        end=END,
        max_discharge_kw=44.0,
    )
    schema_set(V201).check("SetChargingProfile", REQUEST, request)
    period = request["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]
    assert period == {"startPeriod": 0, "limit": -44000.0}
    assert "maxOfflineDuration" not in request["chargingProfile"]


def test_profile_ids_are_one_per_event_and_evse() -> None:
    ids = {profile_id_for(e, v) for e in range(1, 200) for v in (1, 2)}
    assert len(ids) == 398
    assert all(i < 2**31 for i in ids)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 60, allow_nan=False), min_size=1, max_size=60),
    st.integers(1, 30),
)
def test_fitting_a_schedule_keeps_its_energy_and_the_period_limit(powers, limit) -> None:
    periods = _periods(powers)
    end = T0 + timedelta(minutes=5 * len(powers))
    fitted = fit_periods(periods, end, limit)
    assert 1 <= len(fitted) <= limit
    assert fitted[0].start == T0
    # Merging equal neighbours moves at most MERGE_TOLERANCE_W per period; averaging none.
    tolerance = 0.05 * 1000 * 5 * 60 * len(powers) / 1000
    assert abs(_energy(fitted, end) - _energy(periods, end)) <= tolerance + 1e-6
