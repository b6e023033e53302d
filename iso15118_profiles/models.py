"""EV models read from `data/ev_models.toml`, validated into frozen dataclasses.

Every numeric field must carry a source (spec sheet, DOMAIN.md, program document or "assumed")
in the model's `sources` table or in `[defaults.sources]`; the loader refuses the file otherwise,
so an assumed number is always visible and lives in exactly one place.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

CONNECTORS = frozenset({"CHAdeMO", "CCS1", "NACS"})
PROTOCOLS = frozenset({"CHAdeMO", "ISO15118-2", "ISO15118-20"})
CATEGORIES = frozenset({"light-duty", "bus"})
TAPER_SHAPES = frozenset({"linear", "exponential"})
# EnergyTransferModeEnumType of OCPP 2.1 (NotifyEVChargingNeeds).
ENERGY_TRANSFER_MODES = frozenset(
    {
        "AC_single_phase",
        "AC_two_phase",
        "AC_three_phase",
        "DC",
        "AC_BPT",
        "AC_BPT_DER",
        "AC_DER",
        "DC_BPT",
        "DC_ACDP",
        "DC_ACDP_BPT",
        "WPT",
    }
)
BPT_MODES = frozenset({"AC_BPT", "AC_BPT_DER", "DC_BPT", "DC_ACDP_BPT"})


class EvDataError(ValueError):
    """The EV data file is malformed; the message names the model and the field."""


@dataclass(frozen=True, slots=True)
class EvModel:
    """One EV model. Powers are magnitudes in kW; the sign convention is applied by the code."""

    id: str
    name: str
    category: str
    usable_capacity_kwh: float
    max_ac_charge_kw: float
    max_dc_charge_kw: float
    max_discharge_kw: float
    min_charge_kw: float
    min_discharge_kw: float
    nominal_pack_voltage_v: float
    bms_min_soc_pct: float
    v2x_min_soc_pct: float
    v2x_max_soc_pct: float
    taper_start_soc_pct: float
    taper_end_fraction: float
    taper_shape: str
    discharge_derate_span_pct: float
    connector: str
    protocol: str
    energy_transfer_modes: tuple[str, ...]
    default_target_soc_pct: float
    default_departure_local: str
    sources: dict[str, str]

    @property
    def capacity_wh(self) -> float:
        return self.usable_capacity_kwh * 1000.0

    @property
    def bidirectional(self) -> bool:
        """The car itself can export (whether it may do so on a given EVSE is `can_discharge`)."""
        return self.max_discharge_kw > 0 and any(m in BPT_MODES for m in self.energy_transfer_modes)

    def max_charge_w(self, current_type: str) -> float:
        """The car's own charge ceiling on an AC or a DC EVSE, before taper."""
        kw = self.max_ac_charge_kw if current_type == "AC" else self.max_dc_charge_kw
        return kw * 1000.0

    def bpt_mode(self, current_type: str) -> str | None:
        """The BPT energy-transfer mode the car requests on an AC or DC EVSE, if it has one."""
        wanted = "AC_BPT" if current_type == "AC" else "DC_BPT"
        return wanted if wanted in self.energy_transfer_modes else None

    def charge_only_mode(self, current_type: str) -> str:
        """The charge-only mode the car announces (e.g. on 2.0.1 or an unmatched pair)."""
        if current_type == "DC":
            return "DC"
        ac = [m for m in self.energy_transfer_modes if m.startswith("AC_") and "BPT" not in m]
        return ac[0] if ac else "AC_single_phase"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["energy_transfer_modes"] = list(self.energy_transfer_modes)
        out["sources"] = dict(self.sources)
        return out


_NUMERIC = (
    "usable_capacity_kwh",
    "max_ac_charge_kw",
    "max_dc_charge_kw",
    "max_discharge_kw",
    "min_charge_kw",
    "min_discharge_kw",
    "nominal_pack_voltage_v",
    "bms_min_soc_pct",
    "v2x_min_soc_pct",
    "v2x_max_soc_pct",
    "taper_start_soc_pct",
    "taper_end_fraction",
    "discharge_derate_span_pct",
    "default_target_soc_pct",
)
_TEXT = ("name", "category", "connector", "protocol", "taper_shape", "default_departure_local")
_KNOWN = {*_NUMERIC, *_TEXT, "energy_transfer_modes", "sources"}


def _number(model_id: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvDataError(f"ev model {model_id!r}: {key} must be a number, got {value!r}")
    if value < 0:
        raise EvDataError(f"ev model {model_id!r}: {key} must not be negative, got {value}")
    return float(value)


def _check_ranges(m: EvModel) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise EvDataError(f"ev model {m.id!r}: {what}")

    need(m.usable_capacity_kwh > 0, "usable_capacity_kwh must be > 0")
    need(m.nominal_pack_voltage_v > 0, "nominal_pack_voltage_v must be > 0")
    for key in (
        "bms_min_soc_pct",
        "v2x_min_soc_pct",
        "v2x_max_soc_pct",
        "taper_start_soc_pct",
        "default_target_soc_pct",
    ):
        need(0 <= getattr(m, key) <= 100, f"{key} must be within 0..100")
    need(m.bms_min_soc_pct <= m.v2x_min_soc_pct <= m.v2x_max_soc_pct, "need bms <= v2x min <= max")
    need(0 < m.taper_end_fraction <= 1, "taper_end_fraction must be within (0, 1]")
    need(m.taper_shape in TAPER_SHAPES, f"taper_shape must be one of {sorted(TAPER_SHAPES)}")
    need(m.connector in CONNECTORS, f"connector must be one of {sorted(CONNECTORS)}")
    need(m.protocol in PROTOCOLS, f"protocol must be one of {sorted(PROTOCOLS)}")
    need(m.category in CATEGORIES, f"category must be one of {sorted(CATEGORIES)}")
    bad = [x for x in m.energy_transfer_modes if x not in ENERGY_TRANSFER_MODES]
    need(not bad, f"unknown energy_transfer_modes {bad}")
    need(m.min_charge_kw <= max(m.max_ac_charge_kw, m.max_dc_charge_kw), "min above max charge")
    hh, _, mm = m.default_departure_local.partition(":")
    need(
        hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60,
        "default_departure_local must be HH:MM",
    )


def parse_model(model_id: str, raw: dict[str, Any], defaults: dict[str, Any]) -> EvModel:
    """One model table (merged over [defaults]) into an EvModel, with clear errors."""
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise EvDataError(f"ev model {model_id!r}: unknown key(s) {unknown}")
    sources = {**defaults.get("sources", {}), **raw.get("sources", {})}
    merged = {**{k: v for k, v in defaults.items() if k != "sources"}, **raw}
    missing = [k for k in (*_NUMERIC, *_TEXT, "energy_transfer_modes") if k not in merged]
    if missing:
        raise EvDataError(f"ev model {model_id!r}: missing field(s) {missing}")
    unsourced = [k for k in _NUMERIC if not str(sources.get(k, "")).strip()]
    if unsourced:
        raise EvDataError(f"ev model {model_id!r}: no source for {unsourced}")
    values: dict[str, Any] = {k: _number(model_id, k, merged[k]) for k in _NUMERIC}
    values.update({k: str(merged[k]) for k in _TEXT})
    modes = merged["energy_transfer_modes"]
    if not isinstance(modes, list) or not modes:
        raise EvDataError(f"ev model {model_id!r}: energy_transfer_modes must be a non-empty list")
    model = EvModel(id=model_id, energy_transfer_modes=tuple(modes), sources=sources, **values)
    _check_ranges(model)
    return model


def parse_models(document: dict[str, Any]) -> dict[str, EvModel]:
    unknown = sorted(set(document) - {"defaults", "models"})
    if unknown:
        raise EvDataError(f"ev data: unknown top-level table(s) {unknown}")
    defaults = document.get("defaults", {})
    models = document.get("models")
    if not isinstance(models, dict) or not models:
        raise EvDataError("ev data: no [models.<id>] tables")
    return {mid: parse_model(mid, raw, defaults) for mid, raw in models.items()}


@cache
def ev_models() -> dict[str, EvModel]:
    """All EV models from the packaged data file, keyed by id (e.g. 'kia-ev9-76')."""
    text = resources.files("iso15118_profiles").joinpath("data/ev_models.toml").read_text()
    return parse_models(tomllib.loads(text))


def get_ev_model(ev_id: str) -> EvModel:
    """The model with this id, or a KeyError listing the known ids."""
    models = ev_models()
    if ev_id not in models:
        raise KeyError(f"unknown EV model {ev_id!r}; known: {', '.join(sorted(models))}")
    return models[ev_id]
