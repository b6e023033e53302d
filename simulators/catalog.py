"""The hardware catalog: one frozen record per simulated charging-station product.

Read from `simulators/data/hardware.toml` and validated with clear errors (unknown key, missing
field, negative power, OCPP string length limits of BootNotification). One shared station engine
drives every model; everything that differs between products lives in these records.
`csms-sim models --json` prints `HardwareModel.to_dict()` for each.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

OCPP_VERSIONS = frozenset({"ocpp2.1", "ocpp2.0.1"})
# OperationModeEnumType of OCPP 2.1; the spec's minimum for a V2X station is the first three.
OPERATION_MODES = frozenset(
    {
        "ChargingOnly",
        "CentralSetpoint",
        "CentralFrequency",
        "Idle",
        "ExternalSetpoint",
        "ExternalLimits",
        "LocalFrequency",
        "LocalLoadBalancing",
    }
)
V2X_MINIMUM_MODES = ("ChargingOnly", "CentralSetpoint", "CentralFrequency")
ENERGY_TRANSFER_MODES = frozenset(
    {"AC_single_phase", "AC_two_phase", "AC_three_phase", "DC", "AC_BPT", "DC_BPT"}
)
BPT_MODES = frozenset({"AC_BPT", "DC_BPT"})
# DERControlEnumType of OCPP 2.1 (R04): what SetDERControl may name.
DER_CONTROL_TYPES = frozenset(
    {
        "EnterService",
        "FreqDroop",
        "FreqWatt",
        "FixedPFAbsorb",
        "FixedPFInject",
        "FixedVar",
        "Gradients",
        "HFMustTrip",
        "HFMayTrip",
        "HVMustTrip",
        "HVMomCess",
        "HVMayTrip",
        "LimitMaxDischarge",
        "LFMustTrip",
        "LVMustTrip",
        "LVMomCess",
        "LVMayTrip",
        "PowerMonitoringMustTrip",
        "VoltVar",
        "VoltWatt",
        "WattPF",
        "WattVar",
    }
)
# BootNotification ChargingStationType maxLength per field (OCPP 2.0.1 and 2.1 schemas).
BOOT_LIMITS = {"vendor_name": 50, "model": 20, "firmware_version": 50}
SERIAL_MAX = 25


class HardwareDataError(ValueError):
    """The hardware catalog is malformed; the message names the model and the field."""


@dataclass(frozen=True, slots=True)
class HardwareModel:
    """One product. Powers in kW as magnitudes; `efficiency_at` uses W."""

    id: str
    vendor_name: str
    model: str
    firmware_version: str
    serial_prefix: str
    category: str
    ocpp_versions: tuple[str, ...]
    current_type: str
    evse_count: int
    connectors: tuple[str, ...]  # connector types of each EVSE (connector ids 1..n)
    phases: int
    nominal_voltage_v: float
    max_charge_kw: float
    max_discharge_kw: float
    efficiency_curve: tuple[tuple[float, float], ...]
    ramp_kw_per_s: float
    response_delay_s: float
    meter_interval_s: int
    measurands: tuple[str, ...]
    charging_rate_units: tuple[str, ...]
    v2x_operation_modes: tuple[str, ...]
    energy_transfer_modes: tuple[str, ...]
    der_control_types: tuple[str, ...]  # DERControlEnumType values SetDERControl may name (R04)
    accepts_negative_limits: bool
    sources: dict[str, str]

    @property
    def max_charge_w(self) -> float:
        return self.max_charge_kw * 1000.0

    @property
    def max_discharge_w(self) -> float:
        return self.max_discharge_kw * 1000.0

    @property
    def ramp_w_per_s(self) -> float:
        return self.ramp_kw_per_s * 1000.0

    @property
    def speaks_21(self) -> bool:
        return "ocpp2.1" in self.ocpp_versions

    @property
    def bidirectional(self) -> bool:
        """Can export at all: a 2.1 BPT mode, or a 2.0.1 unit that takes negative limits."""
        if self.max_discharge_kw <= 0:
            return False
        return bool(BPT_MODES & set(self.energy_transfer_modes)) or self.accepts_negative_limits

    def efficiency_at(self, power_w: float) -> float:
        """One-way conversion efficiency at |power_w|, interpolated on the curve."""
        rated = self.max_charge_w if power_w >= 0 else self.max_discharge_w
        fraction = abs(power_w) / rated if rated > 0 else 0.0
        return interpolate(self.efficiency_curve, fraction)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = [list(p) for p in value] if f.name == "efficiency_curve" else value
            if isinstance(value, tuple) and f.name != "efficiency_curve":
                out[f.name] = list(value)
        out["sources"] = dict(self.sources)
        out["bidirectional"] = self.bidirectional
        return out


def interpolate(points: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear through sorted (x, y) points, flat beyond both ends. A linear scan:
    curves have a handful of points and this runs in every physics sub-step."""
    x0, y0 = points[0]
    if x <= x0:
        return y0
    for x1, y1 in points[1:]:
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        x0, y0 = x1, y1
    return y0


_NUMERIC = (
    "max_charge_kw",
    "max_discharge_kw",
    "ramp_kw_per_s",
    "response_delay_s",
    "meter_interval_s",
    "evse_count",
    "phases",
    "nominal_voltage_v",
)
_TEXT = ("vendor_name", "model", "firmware_version", "serial_prefix", "category", "current_type")
_LISTS = (
    "ocpp_versions",
    "connectors",
    "measurands",
    "charging_rate_units",
    "v2x_operation_modes",
    "energy_transfer_modes",
    "der_control_types",
)
_KNOWN = {*_NUMERIC, *_TEXT, *_LISTS, "efficiency_curve", "accepts_negative_limits", "sources"}


def _fail(model_id: str, what: str) -> HardwareDataError:
    return HardwareDataError(f"hardware model {model_id!r}: {what}")


def _curve(model_id: str, raw: object) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise _fail(model_id, "efficiency_curve needs at least two [fraction, efficiency] points")
    points = []
    for point in raw:
        if not (isinstance(point, list) and len(point) == 2):
            raise _fail(model_id, f"efficiency_curve point {point!r} is not [fraction, efficiency]")
        x, y = float(point[0]), float(point[1])
        if x < 0 or not 0 < y <= 1:
            raise _fail(model_id, f"efficiency_curve point {point!r} out of range")
        points.append((x, y))
    if [p[0] for p in points] != sorted({p[0] for p in points}):
        raise _fail(model_id, "efficiency_curve fractions must be strictly increasing")
    return tuple(points)


def _check(m: HardwareModel) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise _fail(m.id, what)

    for key, limit in BOOT_LIMITS.items():
        value = getattr(m, key)
        need(0 < len(value) <= limit, f"{key} {value!r} must be 1..{limit} characters (OCPP)")
    need(len(m.serial_prefix) <= SERIAL_MAX - 8, "serial_prefix leaves no room for a number")
    need(m.current_type in {"AC", "DC"}, "current_type must be AC or DC")
    need(m.max_charge_kw > 0, "max_charge_kw must be > 0")
    need(m.evse_count >= 1 and len(m.connectors) >= 1, "needs at least one EVSE and connector")
    need(m.meter_interval_s > 0 and m.ramp_kw_per_s > 0, "meter interval and ramp must be > 0")
    need(bool(m.ocpp_versions) and set(m.ocpp_versions) <= OCPP_VERSIONS, "bad ocpp_versions")
    bad_modes = set(m.v2x_operation_modes) - OPERATION_MODES
    need(not bad_modes, f"unknown v2x_operation_modes {sorted(bad_modes)}")
    bad_etm = set(m.energy_transfer_modes) - ENERGY_TRANSFER_MODES
    need(not bad_etm, f"unknown energy_transfer_modes {sorted(bad_etm)}")
    need(set(m.charging_rate_units) <= {"W", "A"} and "W" in m.charging_rate_units, "units")
    if m.speaks_21 and BPT_MODES & set(m.energy_transfer_modes):
        missing = [x for x in V2X_MINIMUM_MODES if x not in m.v2x_operation_modes]
        need(not missing, f"a 2.1 V2X unit must support {missing} (spec minimum)")
    bad_der = set(m.der_control_types) - DER_CONTROL_TYPES
    need(not bad_der, f"unknown der_control_types {sorted(bad_der)}")
    if not m.speaks_21:
        need(not m.v2x_operation_modes, "a 2.0.1-only unit has no 2.1 operation modes")
        need(not m.der_control_types, "a 2.0.1-only unit has no DER control (2.1 R04)")
    if not m.bidirectional:
        need(not m.der_control_types, "a unit that cannot export has no DER control")


def parse_model(model_id: str, raw: dict[str, Any], defaults: dict[str, Any]) -> HardwareModel:
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise _fail(model_id, f"unknown key(s) {unknown}")
    sources = {**defaults.get("sources", {}), **raw.get("sources", {})}
    merged = {**{k: v for k, v in defaults.items() if k != "sources"}, **raw}
    missing = [k for k in (*_NUMERIC, *_TEXT, *_LISTS, "efficiency_curve") if k not in merged]
    if missing:
        raise _fail(model_id, f"missing field(s) {missing}")
    sourced = (*_NUMERIC, "efficiency_curve", "der_control_types")
    unsourced = [k for k in sourced if not sources.get(k)]
    if unsourced:
        raise _fail(model_id, f"no source for {unsourced}")
    numbers: dict[str, Any] = {}
    for key in _NUMERIC:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _fail(model_id, f"{key} must be a non-negative number, got {value!r}")
        numbers[key] = int(value) if key in {"evse_count", "phases", "meter_interval_s"} else value
    model = HardwareModel(
        id=model_id,
        **{k: str(merged[k]) for k in _TEXT},
        **{k: float(v) if isinstance(v, float) else v for k, v in numbers.items()},
        **{k: tuple(str(x) for x in merged[k]) for k in _LISTS},
        efficiency_curve=_curve(model_id, merged["efficiency_curve"]),
        accepts_negative_limits=bool(merged.get("accepts_negative_limits", False)),
        sources=sources,
    )
    _check(model)
    return model


def parse_catalog(document: dict[str, Any]) -> dict[str, HardwareModel]:
    unknown = sorted(set(document) - {"defaults", "models"})
    if unknown:
        raise HardwareDataError(f"hardware catalog: unknown top-level table(s) {unknown}")
    models = document.get("models")
    if not isinstance(models, dict) or not models:
        raise HardwareDataError("hardware catalog: no [models.<id>] tables")
    defaults = document.get("defaults", {})
    return {mid: parse_model(mid, raw, defaults) for mid, raw in models.items()}


@cache
def hardware_models() -> dict[str, HardwareModel]:
    """Every catalog model keyed by id (e.g. 'dcbel-ara', 'heliox-44')."""
    text = resources.files("simulators").joinpath("data/hardware.toml").read_text()
    return parse_catalog(tomllib.loads(text))


def get_hardware(model_id: str) -> HardwareModel:
    models = hardware_models()
    if model_id not in models:
        raise KeyError(f"unknown hardware model {model_id!r}; known: {', '.join(sorted(models))}")
    return models[model_id]
