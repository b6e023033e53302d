"""The charging-profile engine of a simulated station: what it stores, and what it executes.

Profiles arrive as the spec's camelCase JSON (the `chargingProfile` of SetChargingProfileRequest)
and are parsed into frozen dataclasses with clear errors (`ProfileError`, whose `reason_code`
becomes the response's statusInfo). `ProfileEngine` keeps them per EVSE and answers two
questions with the same code, so the composite schedule reported to GetCompositeSchedule (K08)
is exactly what the station executes:

- `evaluate(at, evse_id) -> Slot`: the operation mode and signed power target at one instant;
  `effective_setpoint(at, evse_id)` is its signed W (+ import, − export) for the physics.
- `composite_schedule(at, duration_s, evse_id, unit)`: the same evaluation over a window,
  split at every instant where anything can change.

Supported (document of record for the station engine and docs/ocpp-status.md):
- K01 install rules: replace by id (K01.FR.05); refuse a second profile with the same purpose,
  stack level and EVSE with overlapping validity (K01.FR.06), or the same stack level and
  transaction for TxProfiles (K01.FR.39); first startPeriod 0 (K01.FR.31), increasing starts
  (K01.FR.35); ChargingStationMaxProfile only on EVSE 0 and never Relative (K01.FR.03,
  K01.FR.38); TxProfile needs a running transaction with that id on an EVSE > 0 (K01.FR.03,
  K01.FR.09, K01.FR.16, K01.FR.33); startSchedule required for Absolute/Recurring and forbidden
  for Relative (K01.FR.40, K01.FR.41); known EVSE (K01.FR.28) and unit (K01.FR.26).
- Kinds Absolute, Relative (to the transaction start), Recurring Daily/Weekly, and 2.1 Dynamic
  with one live period, updated by UpdateDynamicSchedule (Q04) and expiring when not refreshed
  within its schedule `duration` (the dead-man switch).
- Purposes: ChargingStationMaxProfile (EVSE 0; caps every EVSE), TxDefaultProfile (an
  EVSE-specific one overrides the EVSE-0 one), TxProfile (overrides TxDefault),
  ChargingStationExternalConstraints (caps, EVSE 0 or one EVSE), and of 2.1: PriorityCharging
  (replaces Tx/TxDefault while priority charging is active on the EVSE) and LocalGeneration
  (EVSE 0: extra import headroom added to the ChargingStationMaxProfile limit). Within a
  purpose the highest stack level with a period in force wins; when its schedule has ended or
  it is not valid, the next lower one applies. Caps combine as the minimum.
- 2.1 operation modes per period: ChargingOnly, CentralSetpoint (setpoint clamped into
  [dischargeLimit, limit], Q03), Idle (Q10), ExternalSetpoint and ExternalLimits (values from an
  EMS, Q05/Q06), CentralFrequency (v2xBaseline + v2xFreqWattCurve at the measured frequency,
  Q07), each only if the hardware lists it. LocalFrequency and LocalLoadBalancing are refused.
- V2X off until allowed (Q01): without `v2x_allowed` on the EVSE every discharge (negative
  setpoint, dischargeLimit, negative 2.0.1 limit) is executed as charging-only (0 W floor).
- OCPP 2.0.1 negative `limit` as discharge only on hardware that accepts it; refused otherwise.
- Q11/Q12: `maxOfflineDuration` after the station went offline makes a profile invalid while
  offline (the next lower stack level applies); with `invalidAfterOfflineDuration` it is
  removed for good when the station comes back (`set_online`).
- randomizedDelay (TxProfile/TxDefaultProfile only): one delay per profile drawn at install
  from the engine's seeded random source shifts every period after the first.
- limitAtSoC: applied with the EVSE's current SoC.
- Units W and A (A converted with the hardware's nominal voltage and phases).
- Composite for EVSE 0 is the station-wide cap (ChargingStationMax, EVSE-0 external
  constraints, LocalGeneration); a Relative profile without a transaction is anchored at the
  evaluation start.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from simclock import iso, parse_instant
from simulators.catalog import HardwareModel, interpolate

PURPOSES_201 = (
    "ChargingStationMaxProfile",
    "TxDefaultProfile",
    "TxProfile",
    "ChargingStationExternalConstraints",
)
PURPOSES_21 = (*PURPOSES_201, "PriorityCharging", "LocalGeneration")
KINDS = ("Absolute", "Relative", "Recurring", "Dynamic")
RECURRENCY_S = {"Daily": 86_400, "Weekly": 604_800}
SUPPORTED_MODES = (
    "ChargingOnly",
    "CentralSetpoint",
    "Idle",
    "ExternalSetpoint",
    "ExternalLimits",
    "CentralFrequency",
)
CAP_PURPOSES = ("ChargingStationMaxProfile", "ChargingStationExternalConstraints")
FIELDS_21 = {
    "period": {
        "dischargeLimit",
        "setpoint",
        "operationMode",
        "v2xBaseline",
        "v2xFreqWattCurve",
        "evseSleep",
        "setpointReactive",
        "preconditioningRequest",
        "v2xSignalWattCurve",
    },
    "profile": {
        "maxOfflineDuration",
        "invalidAfterOfflineDuration",
        "dynUpdateInterval",
        "dynUpdateTime",
        "priceScheduleSignature",
    },
}


class ProfileError(ValueError):
    """A profile the station refuses; `reason_code` goes into statusInfo.reasonCode."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Period:
    start_s: int
    limit: float | None = None
    discharge_limit: float | None = None
    setpoint: float | None = None
    operation_mode: str = "ChargingOnly"
    number_phases: int | None = None
    evse_sleep: bool = False
    v2x_baseline: float | None = None
    freq_watt_curve: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Schedule:
    id: int
    unit: str
    periods: tuple[Period, ...]
    start: datetime | None = None
    duration_s: int | None = None
    randomized_delay_s: int = 0
    limit_at_soc: tuple[float, float] | None = None  # (soc_pct, limit in unit)


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    id: int
    stack_level: int
    purpose: str
    kind: str
    schedule: Schedule
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None
    max_offline_duration_s: int | None = None
    invalid_after_offline: bool = False
    dyn_update_interval_s: int | None = None
    dyn_update_time: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


# ----------------------------------------------------------------------------- parsing


def _need(ok: bool, code: str, detail: str) -> None:
    if not ok:
        raise ProfileError(code, detail)


def _number(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    _need(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        "InvalidValue",
        f"{key} must be a number, got {value!r}",
    )
    return float(value)


def _integer(obj: dict[str, Any], key: str, required: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        _need(not required, "MissingField", f"{key} is required")
        return None
    _need(
        isinstance(value, int) and not isinstance(value, bool),
        "InvalidValue",
        f"{key} must be an integer, got {value!r}",
    )
    return int(value)


def _instant(obj: dict[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        return parse_instant(str(value))
    except ValueError as exc:
        raise ProfileError("InvalidValue", f"{key}: {exc}") from exc


def parse_period(raw: dict[str, Any]) -> Period:
    _need(isinstance(raw, dict), "InvalidValue", "chargingSchedulePeriod items must be objects")
    curve = raw.get("v2xFreqWattCurve") or []
    points = tuple(sorted((float(p["frequency"]), float(p["power"])) for p in curve))
    discharge = _number(raw, "dischargeLimit")
    _need(discharge is None or discharge <= 0, "InvalidValue", "dischargeLimit must be <= 0")
    phases = _integer(raw, "numberPhases")
    return Period(
        start_s=_integer(raw, "startPeriod", required=True) or 0,
        limit=_number(raw, "limit"),
        discharge_limit=discharge,
        setpoint=_number(raw, "setpoint"),
        operation_mode=str(raw.get("operationMode", "ChargingOnly")),
        number_phases=phases,
        evse_sleep=bool(raw.get("evseSleep", False)),
        v2x_baseline=_number(raw, "v2xBaseline"),
        freq_watt_curve=points,
    )


def parse_schedule(raw: dict[str, Any]) -> Schedule:
    _need(isinstance(raw, dict), "InvalidValue", "chargingSchedule must be an object")
    unit = raw.get("chargingRateUnit")
    _need(unit in ("W", "A"), "InvalidValue", f"chargingRateUnit must be W or A, got {unit!r}")
    periods_raw = raw.get("chargingSchedulePeriod")
    _need(
        isinstance(periods_raw, list) and len(periods_raw) > 0,
        "NoPeriods",
        "chargingSchedulePeriod needs at least one period",
    )
    periods = tuple(parse_period(p) for p in periods_raw)
    _need(
        periods[0].start_s == 0,
        "FirstStartPeriodNotZero",
        "the first startPeriod must be 0 (K01.FR.31)",
    )
    starts = [p.start_s for p in periods]
    _need(
        all(a < b for a, b in pairwise(starts)),
        "PeriodsOutOfOrder",
        "startPeriod values must increase (K01.FR.35)",
    )
    duration = _integer(raw, "duration")
    _need(duration is None or duration > 0, "InvalidValue", "duration must be > 0")
    soc_limit = raw.get("limitAtSoC")
    return Schedule(
        id=_integer(raw, "id") or 0,
        unit=str(unit),
        periods=periods,
        start=_instant(raw, "startSchedule"),
        duration_s=duration,
        randomized_delay_s=_integer(raw, "randomizedDelay") or 0,
        limit_at_soc=(float(soc_limit["soc"]), float(soc_limit["limit"])) if soc_limit else None,
    )


def parse_profile(raw: dict[str, Any]) -> ChargingProfile:
    """The `chargingProfile` object of SetChargingProfileRequest (camelCase) -> ChargingProfile."""
    _need(isinstance(raw, dict), "InvalidValue", "chargingProfile must be an object")
    for key in (
        "id",
        "stackLevel",
        "chargingProfilePurpose",
        "chargingProfileKind",
        "chargingSchedule",
    ):
        _need(key in raw, "MissingField", f"chargingProfile.{key} is required")
    purpose, kind = raw["chargingProfilePurpose"], raw["chargingProfileKind"]
    _need(purpose in PURPOSES_21, "InvalidValue", f"unknown chargingProfilePurpose {purpose!r}")
    _need(kind in KINDS, "InvalidValue", f"unknown chargingProfileKind {kind!r}")
    schedules = raw["chargingSchedule"]
    _need(
        isinstance(schedules, list) and 1 <= len(schedules) <= 3,
        "InvalidValue",
        "chargingSchedule must be a list of 1 to 3 schedules",
    )
    stack = _integer(raw, "stackLevel", required=True)
    _need(stack is not None and stack >= 0, "InvalidValue", "stackLevel must be >= 0")
    recurrency = raw.get("recurrencyKind")
    _need(recurrency in (None, *RECURRENCY_S), "InvalidValue", f"bad recurrencyKind {recurrency!r}")
    # A station offered several schedules (ISO 15118 choice) executes the first one.
    return ChargingProfile(
        id=_integer(raw, "id", required=True) or 0,
        stack_level=stack or 0,
        purpose=purpose,
        kind=kind,
        schedule=parse_schedule(schedules[0]),
        recurrency=recurrency,
        valid_from=_instant(raw, "validFrom"),
        valid_to=_instant(raw, "validTo"),
        transaction_id=raw.get("transactionId"),
        max_offline_duration_s=_integer(raw, "maxOfflineDuration"),
        invalid_after_offline=bool(raw.get("invalidAfterOfflineDuration", False)),
        dyn_update_interval_s=_integer(raw, "dynUpdateInterval"),
        dyn_update_time=_instant(raw, "dynUpdateTime"),
        raw=raw,
    )


# ----------------------------------------------------------------------------- station facts


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What the hardware can do, as the profile engine needs it."""

    version: str  # "2.1" or "2.0.1": the OCPP version of the current connection
    evse_count: int
    max_charge_w: float
    max_discharge_w: float
    operation_modes: frozenset[str]
    accepts_negative_limits: bool
    current_type: str = "DC"
    nominal_voltage_v: float = 400.0
    phases: int = 1
    units: frozenset[str] = frozenset({"W", "A"})

    @classmethod
    def from_hardware(cls, hw: HardwareModel, version: str) -> EngineConfig:
        modes = frozenset(hw.v2x_operation_modes) if version == "2.1" else frozenset()
        return cls(
            version=version,
            evse_count=hw.evse_count,
            max_charge_w=hw.max_charge_w,
            max_discharge_w=hw.max_discharge_w if hw.bidirectional else 0.0,
            operation_modes=modes | {"ChargingOnly"},
            accepts_negative_limits=hw.accepts_negative_limits,
            current_type=hw.current_type,
            nominal_voltage_v=hw.nominal_voltage_v,
            phases=hw.phases,
            units=frozenset(hw.charging_rate_units),
        )

    def to_watts(self, value: float, unit: str, phases: int | None = None) -> float:
        if unit == "W":
            return value
        used = 1 if self.current_type == "DC" else (phases or self.phases)
        return value * self.nominal_voltage_v * used

    def from_watts(self, value: float, unit: str) -> float:
        used = 1 if self.current_type == "DC" else self.phases
        return value if unit == "W" else value / (self.nominal_voltage_v * used)


@dataclass(frozen=True, slots=True)
class EvseState:
    """Per-EVSE facts the engine reads: transaction, V2X permission (Q01), EMS inputs."""

    transaction_id: str | None = None
    tx_started_at: datetime | None = None
    v2x_allowed: bool = False
    priority_charging: bool = False
    soc_pct: float | None = None
    external_setpoint_w: float | None = None  # from an EMS (ExternalSetpoint, Q05)
    external_limit_w: float | None = None  # from an EMS (ExternalLimits, Q06)
    external_discharge_limit_w: float | None = None
    frequency_hz: float = 60.0  # measured grid frequency (CentralFrequency, Q07)


@dataclass(frozen=True, slots=True)
class Installed:
    evse_id: int
    profile: ChargingProfile
    installed_at: datetime
    delay_s: int = 0  # the randomizedDelay drawn at install
    anchor: datetime | None = None  # Dynamic: last update (dead-man reference)
    live: Period | None = None  # Dynamic: the live period


@dataclass(frozen=True, slots=True)
class InstallResult:
    status: str  # "Accepted" | "Rejected"
    reason_code: str | None = None
    detail: str | None = None

    def to_response(self) -> dict[str, Any]:
        """SetChargingProfileResponse payload."""
        out: dict[str, Any] = {"status": self.status}
        if self.reason_code:
            out["statusInfo"] = {"reasonCode": self.reason_code, "additionalInfo": self.detail}
        return out


@dataclass(frozen=True, slots=True)
class Slot:
    """What the EVSE executes at one instant. W, signed: + import into the car, − export."""

    mode: str
    limit_w: float  # import ceiling (negative only for a 2.0.1 negative-limit discharge)
    discharge_limit_w: float  # export floor, <= 0
    setpoint_w: float | None  # None: charge as much as the car takes up to limit_w

    @property
    def target_w(self) -> float:
        return self.setpoint_w if self.setpoint_w is not None else self.limit_w


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    start_s: int
    slot: Slot

    def to_dict(self, version: str, unit: str, config: EngineConfig) -> dict[str, Any]:
        """ChargingSchedulePeriodType as GetCompositeSchedule answers it (K08)."""

        def conv(w: float) -> float:
            return round(config.from_watts(w, unit), 1)

        s = self.slot
        if version != "2.1":
            return {"startPeriod": self.start_s, "limit": conv(s.target_w)}
        out: dict[str, Any] = {
            "startPeriod": self.start_s,
            "limit": conv(s.limit_w),
            "operationMode": s.mode,
        }
        if s.discharge_limit_w < 0:
            out["dischargeLimit"] = conv(s.discharge_limit_w)
        if s.setpoint_w is not None:
            out["setpoint"] = conv(s.setpoint_w)
        return out


# ----------------------------------------------------------------------------- engine


def _overlap(a: ChargingProfile, b: ChargingProfile) -> bool:
    """Do the validity windows [validFrom, validTo) of two profiles intersect?"""
    lo = max((x for x in (a.valid_from, b.valid_from) if x is not None), default=None)
    hi = min((x for x in (a.valid_to, b.valid_to) if x is not None), default=None)
    return lo is None or hi is None or lo < hi


class ProfileEngine:
    """Installed profiles of one station and their execution. Times are always passed in."""

    def __init__(self, config: EngineConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random(0)
        self.evse: dict[int, EvseState] = {i: EvseState() for i in range(1, config.evse_count + 1)}
        self.offline_since: datetime | None = None
        self._installed: dict[int, Installed] = {}

    # --- station facts ---------------------------------------------------------------------

    def set_evse(self, evse_id: int, **changes: Any) -> EvseState:
        """Update an EVSE's facts (e.g. v2x_allowed=True on Q01, soc_pct, frequency_hz)."""
        self.evse[evse_id] = replace(self.evse[evse_id], **changes)
        return self.evse[evse_id]

    def start_transaction(self, evse_id: int, transaction_id: str, at: datetime) -> None:
        self.set_evse(evse_id, transaction_id=transaction_id, tx_started_at=at)

    def end_transaction(self, evse_id: int) -> list[int]:
        """The transaction ends: its TxProfiles go with it, V2X permission too (Q01 is per tx)."""
        tx = self.evse[evse_id].transaction_id
        gone = [
            pid
            for pid, inst in self._installed.items()
            if inst.profile.purpose == "TxProfile" and inst.profile.transaction_id == tx
        ]
        for pid in gone:
            del self._installed[pid]
        self.set_evse(evse_id, transaction_id=None, tx_started_at=None, v2x_allowed=False)
        return gone

    def set_offline(self, since: datetime) -> None:
        """Q11: the connection dropped at `since`; maxOfflineDuration counts from here."""
        if self.offline_since is None:
            self.offline_since = since

    def set_online(self, now: datetime) -> list[int]:
        """Q12: back online. Profiles with invalidAfterOfflineDuration whose maxOfflineDuration
        ran out while offline are removed for good; the others become valid again."""
        since, self.offline_since = self.offline_since, None
        if since is None:
            return []
        gone = [
            pid
            for pid, inst in self._installed.items()
            if inst.profile.invalid_after_offline
            and inst.profile.max_offline_duration_s is not None
            and now >= since + timedelta(seconds=inst.profile.max_offline_duration_s)
        ]
        for pid in gone:
            del self._installed[pid]
        return gone

    # --- K01 / K09 / K10 / Q04 -------------------------------------------------------------

    def install(self, evse_id: int, raw_profile: dict[str, Any], now: datetime) -> InstallResult:
        """SetChargingProfile (K01): parse, check the K01 rules, store. Never raises."""
        try:
            profile = parse_profile(raw_profile)
            self._validate(evse_id, profile)
        except ProfileError as exc:
            return InstallResult("Rejected", exc.reason_code, exc.detail)
        self._installed.pop(profile.id, None)  # K01.FR.05: same id replaces
        delay = self.rng.randint(0, profile.schedule.randomized_delay_s)
        anchor = profile.dyn_update_time or now if profile.kind == "Dynamic" else None
        live = profile.schedule.periods[0] if profile.kind == "Dynamic" else None
        self._installed[profile.id] = Installed(evse_id, profile, now, delay, anchor, live)
        return InstallResult("Accepted")

    def clear(
        self,
        *,
        profile_id: int | None = None,
        evse_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> list[int]:
        """ClearChargingProfile (K10): ids removed. External constraints are not the CSMS's
        to clear unless named by id."""
        gone = []
        for pid, inst in list(self._installed.items()):
            p = inst.profile
            if profile_id is not None and pid != profile_id:
                continue
            if profile_id is None and p.purpose == "ChargingStationExternalConstraints":
                continue
            if evse_id is not None and inst.evse_id != evse_id:
                continue
            if purpose is not None and p.purpose != purpose:
                continue
            if stack_level is not None and p.stack_level != stack_level:
                continue
            gone.append(pid)
            del self._installed[pid]
        return gone

    def profiles(self, evse_id: int | None = None) -> list[Installed]:
        """Installed profiles (GetChargingProfiles, K09), optionally of one EVSE."""
        return [i for i in self._installed.values() if evse_id in (None, i.evse_id)]

    def update_dynamic(
        self, profile_id: int, update: dict[str, Any], now: datetime
    ) -> InstallResult:
        """UpdateDynamicSchedule (Q04): new values for the live period; restarts the dead-man."""
        inst = self._installed.get(profile_id)
        if inst is None or inst.profile.kind != "Dynamic":
            return InstallResult("Rejected", "UnknownProfile", f"no Dynamic profile {profile_id}")
        assert inst.live is not None
        changes: dict[str, Any] = {}
        for key, attr in (
            ("limit", "limit"),
            ("setpoint", "setpoint"),
            ("dischargeLimit", "discharge_limit"),
        ):
            if key in update:
                changes[attr] = _number(update, key)
        live = replace(inst.live, **changes)
        try:
            self._check_period(inst.profile, live)
        except ProfileError as exc:
            return InstallResult("Rejected", exc.reason_code, exc.detail)
        self._installed[profile_id] = replace(inst, anchor=now, live=live)
        return InstallResult("Accepted")

    def _validate(self, evse_id: int, p: ChargingProfile) -> None:
        cfg = self.config
        _need(0 <= evse_id <= cfg.evse_count, "UnknownEvse", f"no EVSE {evse_id} (K01.FR.28)")
        purposes = PURPOSES_21 if cfg.version == "2.1" else PURPOSES_201
        _need(p.purpose in purposes, "UnsupportedPurpose", f"{p.purpose} needs OCPP 2.1")
        _need(
            p.schedule.unit in cfg.units,
            "UnsupportedRateUnit",
            f"unit {p.schedule.unit} not supported (K01.FR.26)",
        )
        if cfg.version != "2.1":
            used = (set(p.raw) & FIELDS_21["profile"]) | {
                k for per in p.raw["chargingSchedule"][0]["chargingSchedulePeriod"] for k in per
            } & FIELDS_21["period"]
            _need(
                not used and p.kind != "Dynamic",
                "UnsupportedField",
                f"OCPP 2.1 field(s) on a 2.0.1 connection: {sorted(used) or ['Dynamic']}",
            )
        self._check_kind(p)
        self._check_purpose(evse_id, p)
        for period in p.schedule.periods:
            self._check_period(p, period)
        self._check_conflicts(evse_id, p)

    @staticmethod
    def _check_kind(p: ChargingProfile) -> None:
        s = p.schedule
        if p.kind in ("Absolute", "Recurring"):
            _need(
                s.start is not None,
                "MissingStartSchedule",
                f"{p.kind} needs startSchedule (K01.FR.40)",
            )
        if p.kind == "Relative":
            _need(
                s.start is None,
                "ExtraneousStartSchedule",
                "Relative must not have startSchedule (K01.FR.41)",
            )
        if p.kind == "Recurring":
            _need(p.recurrency is not None, "MissingRecurrencyKind", "Recurring needs Daily/Weekly")
        if p.kind == "Dynamic":
            _need(
                len(s.periods) == 1,
                "DynamicNeedsOnePeriod",
                "a Dynamic schedule has one live period, updated by UpdateDynamicSchedule",
            )
        if s.randomized_delay_s:
            _need(
                p.purpose in ("TxProfile", "TxDefaultProfile"),
                "InvalidValue",
                "randomizedDelay is only allowed for TxProfile and TxDefaultProfile",
            )

    def _check_purpose(self, evse_id: int, p: ChargingProfile) -> None:
        if p.purpose in ("ChargingStationMaxProfile", "LocalGeneration"):
            _need(evse_id == 0, "EvseIdMustBeZero", f"{p.purpose} applies to EVSE 0 (K01.FR.03)")
            _need(
                p.kind != "Relative", "InvalidKind", f"{p.purpose} cannot be Relative (K01.FR.38)"
            )
        if p.purpose != "TxProfile":
            _need(
                p.transaction_id is None,
                "UnexpectedTransactionId",
                "transactionId is only for TxProfile",
            )
            return
        _need(evse_id > 0, "EvseIdMustBePositive", "TxProfile needs an EVSE > 0 (K01.FR.16)")
        _need(
            p.transaction_id is not None,
            "MissingTransactionId",
            "TxProfile needs a transactionId (K01.FR.03)",
        )
        running = self.evse[evse_id].transaction_id
        _need(running is not None, "NoTransaction", f"no transaction on EVSE {evse_id} (K01.FR.09)")
        _need(
            running == p.transaction_id,
            "TransactionNotOnEvse",
            f"transaction {p.transaction_id!r} is not running on EVSE {evse_id} (K01.FR.33)",
        )

    def _check_period(self, p: ChargingProfile, period: Period) -> None:
        cfg, mode = self.config, period.operation_mode
        _need(
            mode in SUPPORTED_MODES and mode in cfg.operation_modes,
            "UnsupportedOperationMode",
            f"operationMode {mode} is not supported by this station",
        )
        if period.limit is not None and period.limit < 0:
            _need(
                mode == "ChargingOnly",
                "InvalidValue",
                "a negative limit (2.0.1 discharge) is only valid in ChargingOnly; use "
                "setpoint/dischargeLimit",
            )
            _need(
                cfg.accepts_negative_limits,
                "NegativeLimitNotSupported",
                "this station does not execute negative limits as discharge",
            )
        if mode == "CentralSetpoint":
            _need(period.setpoint is not None, "MissingSetpoint", "CentralSetpoint needs setpoint")
        if mode == "CentralFrequency":
            _need(
                bool(period.freq_watt_curve) or period.v2x_baseline is not None,
                "MissingFrequencyCurve",
                "CentralFrequency needs v2xFreqWattCurve or v2xBaseline",
            )

    def _check_conflicts(self, evse_id: int, p: ChargingProfile) -> None:
        for other in self._installed.values():
            q = other.profile
            if q.id == p.id or q.purpose != p.purpose or q.stack_level != p.stack_level:
                continue
            if p.purpose == "TxProfile":
                _need(
                    q.transaction_id != p.transaction_id,
                    "DuplicateStackLevel",
                    f"TxProfile {q.id} has stack level {p.stack_level} for this transaction "
                    "(K01.FR.39)",
                )
            elif other.evse_id == evse_id and _overlap(p, q):
                _need(
                    False,
                    "DuplicateStackLevel",
                    f"profile {q.id} has the same purpose and stack level on EVSE {evse_id} "
                    "with an overlapping validity (K01.FR.06)",
                )

    # --- execution (K08, Q03-Q07, Q10-Q12) -------------------------------------------------

    def evaluate(self, at: datetime, evse_id: int, rel_anchor: datetime | None = None) -> Slot:
        """What the EVSE executes at `at` (EVSE 0: the station-wide cap)."""
        rel_anchor = rel_anchor or at
        cap_limit, cap_discharge = self._caps(at, evse_id, rel_anchor)
        if evse_id == 0:
            return Slot("ChargingOnly", cap_limit, cap_discharge, None)
        evse = self.evse[evse_id]
        drive = self._drive(at, evse_id, rel_anchor)
        permitted = self.config.max_discharge_w > 0 and evse.v2x_allowed  # Q01
        floor = cap_discharge if permitted else 0.0
        if drive is None:
            return Slot("ChargingOnly", cap_limit, 0.0, None)
        return self._execute(drive[0].profile, drive[1], evse, cap_limit, floor)

    def effective_setpoint(self, at: datetime, evse_id: int) -> float:
        """Signed W the EVSE aims for now (+ import, − export): the physics' command."""
        return self.evaluate(at, evse_id).target_w

    def composite_schedule(
        self, at: datetime, duration_s: int, evse_id: int, unit: str = "W"
    ) -> list[CompositePeriod]:
        """K08: the schedule the station will execute over [at, at + duration_s), periods
        starting at whole seconds, equal neighbours merged. Values in W (see `to_dict`)."""
        _need(0 <= evse_id <= self.config.evse_count, "UnknownEvse", f"no EVSE {evse_id}")
        _need(unit in self.config.units, "UnsupportedRateUnit", f"unit {unit} not supported")
        starts = {0}
        end = at + timedelta(seconds=duration_s)
        one_s = timedelta(seconds=1)
        for point in self._breakpoints(at, end, evse_id):
            if at < point < end:
                starts.add(-((at - point) // one_s))  # ceil to whole seconds, exactly
        periods: list[CompositePeriod] = []
        for start in sorted(s for s in starts if s < duration_s):
            slot = self.evaluate(at + timedelta(seconds=start), evse_id, rel_anchor=at)
            if not periods or periods[-1].slot != slot:
                periods.append(CompositePeriod(start, slot))
        return periods

    def composite_payload(
        self, at: datetime, duration_s: int, evse_id: int, unit: str = "W"
    ) -> dict[str, Any]:
        """CompositeScheduleType for GetCompositeScheduleResponse.schedule (K08)."""
        periods = self.composite_schedule(at, duration_s, evse_id, unit)
        version = self.config.version
        return {
            "evseId": evse_id,
            "duration": duration_s,
            "scheduleStart": iso(at),
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [p.to_dict(version, unit, self.config) for p in periods],
        }

    def _execute(
        self, p: ChargingProfile, period: Period, evse: EvseState, cap_limit: float, floor: float
    ) -> Slot:
        """One driving period under the caps. `floor` is the export floor (0 without V2X)."""
        cfg, unit = self.config, p.schedule.unit

        def watts(value: float) -> float:
            return cfg.to_watts(value, unit, period.number_phases)

        mode = "Idle" if period.evse_sleep else period.operation_mode
        if mode == "Idle":  # Q10
            return Slot("Idle", 0.0, 0.0, 0.0)
        if mode == "ChargingOnly" and period.limit is not None and period.limit < 0:
            negative = max(watts(period.limit), floor)  # 2.0.1 negative limit = discharge
            return Slot("ChargingOnly", negative, min(negative, 0.0), None)
        limit = cap_limit if period.limit is None else min(watts(period.limit), cap_limit)
        soc_rule = p.schedule.limit_at_soc
        if soc_rule and evse.soc_pct is not None and evse.soc_pct >= soc_rule[0]:
            limit = min(limit, watts(soc_rule[1]))
        if mode == "ChargingOnly":
            return Slot(mode, limit, 0.0, None)
        discharge = floor if period.discharge_limit is None else watts(period.discharge_limit)
        discharge = min(max(discharge, floor), 0.0)
        if mode == "ExternalLimits":  # Q06: the EMS narrows the limits, the car charges
            if evse.external_limit_w is not None:
                limit = min(limit, evse.external_limit_w)
            if evse.external_discharge_limit_w is not None:
                discharge = min(max(discharge, evse.external_discharge_limit_w), 0.0)
            return Slot(mode, limit, discharge, None)
        return Slot(
            mode, limit, discharge, min(max(self._wanted(period, evse, watts), discharge), limit)
        )

    @staticmethod
    def _wanted(period: Period, evse: EvseState, watts: Any) -> float:
        """The unclamped setpoint of CentralSetpoint (Q03/Q04), ExternalSetpoint (Q05, 0 W
        until the EMS gives one) or CentralFrequency (Q07)."""
        if period.operation_mode == "CentralSetpoint":
            return watts(period.setpoint or 0.0)
        if period.operation_mode == "ExternalSetpoint":
            return evse.external_setpoint_w or 0.0
        base = watts(period.v2x_baseline or 0.0)
        if not period.freq_watt_curve:
            return base
        return base + interpolate(period.freq_watt_curve, evse.frequency_hz)

    def _caps(self, at: datetime, evse_id: int, rel_anchor: datetime) -> tuple[float, float]:
        """(import ceiling >= 0, export floor <= 0) from the hardware and the cap purposes."""
        cfg = self.config
        limit, discharge = cfg.max_charge_w, -cfg.max_discharge_w
        extra = self._top("LocalGeneration", (0,), at, evse_id, rel_anchor)
        tops = [
            self._top("ChargingStationMaxProfile", (0,), at, evse_id, rel_anchor),
            self._top("ChargingStationExternalConstraints", (0,), at, evse_id, rel_anchor),
        ]
        if evse_id > 0:
            tops.append(
                self._top("ChargingStationExternalConstraints", (evse_id,), at, evse_id, rel_anchor)
            )
        for index, top in enumerate(tops):
            if top is None:
                continue
            p, period = top[0].profile, top[1]
            to_w = cfg.to_watts
            if period.limit is not None:
                cap = to_w(period.limit, p.schedule.unit, period.number_phases)
                if index == 0 and extra is not None and extra[1].limit is not None:
                    cap += to_w(extra[1].limit, extra[0].profile.schedule.unit)
                limit = min(limit, max(cap, 0.0))
            if period.discharge_limit is not None:
                discharge = max(discharge, to_w(period.discharge_limit, p.schedule.unit))
        return limit, min(discharge, 0.0)

    def _drive(
        self, at: datetime, evse_id: int, rel_anchor: datetime
    ) -> tuple[Installed, Period] | None:
        """PriorityCharging while active, else TxProfile, else the EVSE's or EVSE 0's default."""
        pick = None
        if self.evse[evse_id].priority_charging:
            pick = self._top("PriorityCharging", (evse_id, 0), at, evse_id, rel_anchor)
        return (
            pick
            or self._top("TxProfile", (evse_id,), at, evse_id, rel_anchor)
            or self._top("TxDefaultProfile", (evse_id,), at, evse_id, rel_anchor)
            or self._top("TxDefaultProfile", (0,), at, evse_id, rel_anchor)
        )

    def _top(
        self, purpose: str, owners: tuple[int, ...], at: datetime, evse_id: int, anchor: datetime
    ) -> tuple[Installed, Period] | None:
        """The highest stack level of `purpose` among `owners` with a period in force at `at`."""
        best: tuple[Installed, Period] | None = None
        for inst in self._installed.values():
            if inst.profile.purpose != purpose or inst.evse_id not in owners:
                continue
            period = self._period_at(inst, at, evse_id, anchor)
            if period is None:
                continue
            key = (inst.profile.stack_level, inst.evse_id, inst.profile.id)
            if best is None or key > (
                best[0].profile.stack_level,
                best[0].evse_id,
                best[0].profile.id,
            ):
                best = (inst, period)
        return best

    def _valid(self, inst: Installed, at: datetime, evse_id: int) -> bool:
        p = inst.profile
        if (p.valid_from and at < p.valid_from) or (p.valid_to and at >= p.valid_to):
            return False
        if p.purpose == "TxProfile" and self.evse[evse_id].transaction_id != p.transaction_id:
            return False
        offline_end = self._offline_end(inst)
        return offline_end is None or at < offline_end  # Q11

    def _offline_end(self, inst: Installed) -> datetime | None:
        if self.offline_since is None or inst.profile.max_offline_duration_s is None:
            return None
        return self.offline_since + timedelta(seconds=inst.profile.max_offline_duration_s)

    def _anchor(
        self, inst: Installed, at: datetime, evse_id: int, rel_anchor: datetime
    ) -> datetime | None:
        p = inst.profile
        if p.kind == "Absolute":
            return p.schedule.start
        if p.kind == "Dynamic":
            return inst.anchor
        if p.kind == "Relative":
            return (self.evse[evse_id].tx_started_at if evse_id else None) or rel_anchor
        start, cycle = p.schedule.start, RECURRENCY_S[p.recurrency or "Daily"]
        assert start is not None
        if at < start:
            return None
        return start + timedelta(seconds=cycle * ((at - start) // timedelta(seconds=cycle)))

    def _span_s(self, inst: Installed) -> float | None:
        """How long one run of the schedule lasts (a Recurring one at most its cycle)."""
        p = inst.profile
        duration = p.schedule.duration_s
        if p.kind == "Recurring":
            cycle = RECURRENCY_S[p.recurrency or "Daily"]
            return cycle if duration is None else min(duration, cycle)
        return duration

    def _starts(self, inst: Installed) -> list[int]:
        """Period start offsets after the randomized delay (the first is never delayed)."""
        periods = (inst.live,) if inst.live is not None else inst.profile.schedule.periods
        return [0] + [p.start_s + inst.delay_s for p in periods[1:]]  # type: ignore[union-attr]

    def _period_at(
        self, inst: Installed, at: datetime, evse_id: int, rel_anchor: datetime
    ) -> Period | None:
        if not self._valid(inst, at, evse_id):
            return None
        anchor = self._anchor(inst, at, evse_id, rel_anchor)
        if anchor is None or at < anchor:
            return None
        offset = (at - anchor).total_seconds()
        span = self._span_s(inst)
        if span is not None and offset >= span:
            return None  # schedule over (a Dynamic one not refreshed: dead-man expiry)
        if inst.live is not None:
            return inst.live
        starts = self._starts(inst)
        index = max(i for i, s in enumerate(starts) if s <= offset)
        return inst.profile.schedule.periods[index]

    def _breakpoints(self, start: datetime, end: datetime, evse_id: int) -> list[datetime]:
        """Every instant in the window where some profile's answer can change."""
        points: list[datetime] = []
        for inst in self._installed.values():
            p = inst.profile
            points += [x for x in (p.valid_from, p.valid_to, self._offline_end(inst)) if x]
            anchors = self._anchors_in(inst, start, end, evse_id)
            span = self._span_s(inst)
            for anchor in anchors:
                points += [anchor + timedelta(seconds=s) for s in self._starts(inst)]
                if span is not None:
                    points.append(anchor + timedelta(seconds=span))
        return points

    def _anchors_in(
        self, inst: Installed, start: datetime, end: datetime, evse_id: int
    ) -> list[datetime]:
        p = inst.profile
        if p.kind != "Recurring":
            anchor = self._anchor(inst, start, evse_id, start)
            return [anchor] if anchor is not None else []
        first, cycle = p.schedule.start, timedelta(seconds=RECURRENCY_S[p.recurrency or "Daily"])
        assert first is not None
        k = max(0, (start - first) // cycle - 1)
        anchors = []
        while first + k * cycle < end:
            anchors.append(first + k * cycle)
            k += 1
        return anchors
