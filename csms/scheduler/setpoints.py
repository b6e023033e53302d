"""The discharge profile the dispatcher sends (DESIGN.md §3.7): a plan row becomes one TxProfile.

Pure: plan powers in, a SetChargingProfileRequest (spec camelCase) out.

- Discharge is only ever a TxProfile bound to the running transactionId; its schedule starts
  now and ends at the event's end, so a station that goes offline returns to charging by itself
  when the event is over (Q11). `maxOfflineDuration` keeps the profile valid offline until then.
- OCPP 2.1: `operationMode = CentralSetpoint` with a negative `setpoint` inside
  `[dischargeLimit, limit]` (Q03); `limit = 0` so that no period of an event charges the car.
- OCPP 2.0.1: a negative `limit` (only for stations marked as accepting it; the gate checks).
- A station takes at most `PeriodsPerSchedule` periods: equal neighbours are merged first, then
  neighbouring periods are averaged by energy until the schedule fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ocppj.versions import V201, OcppVersion
from simclock import iso

# Two periods whose powers differ by less than this (W) are one period: the meters cannot tell.
MERGE_TOLERANCE_W = 50.0


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    export_kw: float  # grid side, >= 0


def profile_id_for(event_id: int, evse_id: int) -> int:
    """One chargingProfile id per (event, EVSE), stable across re-plans (replaced in place)."""
    return 900_000_000 + event_id * 100 + evse_id


def fit_periods(periods: Sequence[Period], end: datetime, max_periods: int) -> list[Period]:
    """Merge equal neighbours, then average neighbours (energy-preserving) until it fits."""
    merged = _merge_equal(periods)
    while len(merged) > max(1, max_periods):
        merged = _merge_equal(_halve(merged, end))
    return merged


def _merge_equal(periods: Sequence[Period]) -> list[Period]:
    out: list[Period] = []
    for period in periods:
        if out and abs(out[-1].export_kw - period.export_kw) * 1000.0 < MERGE_TOLERANCE_W:
            continue
        out.append(period)
    return out


def _halve(periods: Sequence[Period], end: datetime) -> list[Period]:
    """Pairs of neighbours become one period at their time-weighted mean power."""
    bounds = [p.start for p in periods] + [end]
    out: list[Period] = []
    for i in range(0, len(periods), 2):
        pair = periods[i : i + 2]
        spans = [(bounds[i + k + 1] - bounds[i + k]).total_seconds() for k in range(len(pair))]
        total = sum(spans) or 1.0
        mean = sum(p.export_kw * s for p, s in zip(pair, spans, strict=True)) / total
        out.append(Period(pair[0].start, mean))
    return out


def discharge_request(
    *,
    version: OcppVersion,
    evse_id: int,
    profile_id: int,
    stack_level: int,
    transaction_id: str,
    periods: Sequence[Period],
    end: datetime,
    max_discharge_kw: float,
) -> dict[str, Any]:
    """SetChargingProfileRequest for an event's share of one EVSE, from `periods[0].start`."""
    start = periods[0].start
    schedule: dict[str, Any] = {
        "id": profile_id % 1_000_000,
        "startSchedule": iso(start),
        "duration": max(1, round((end - start).total_seconds())),
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            _period(
                version, round((p.start - start).total_seconds()), p.export_kw, max_discharge_kw
            )
            for p in periods
        ],
    }
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "transactionId": transaction_id,
        "chargingSchedule": [schedule],
    }
    if version != V201:
        profile["maxOfflineDuration"] = schedule["duration"]  # Q11: keep it until the end
    return {"evseId": evse_id, "chargingProfile": profile}


def _period(version: OcppVersion, offset_s: int, export_kw: float, max_kw: float) -> dict:
    watts = round(max(0.0, export_kw) * 1000.0, 1)
    if version == V201:
        return {"startPeriod": offset_s, "limit": -watts}
    return {
        "startPeriod": offset_s,
        "operationMode": "CentralSetpoint",
        "setpoint": -watts,
        "dischargeLimit": -round(max(max_kw, export_kw) * 1000.0, 1),
        "limit": 0.0,
    }
