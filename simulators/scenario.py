"""Scenario files (TOML) for `csms-sim fleet --scenario FILE`, validated with specific errors.

Every error names the file and the key (`fleet.toml:fleet.mix[2].model: ...`), says what is
wrong and what is allowed; unknown keys are refused so a typo never passes silently. The
layout (see simulators/data/scenarios/*.toml for complete examples):

    name = "..."                      description = "..."
    [fleet]     count, id_prefix, seed, ocpp_version ("2.1" | "2.0.1", for the generated
                stations; default: the newest each hardware offers), password,
                meter_interval_s, mix = "residential" | "bus" | "all" or [[fleet.mix]] tables
                with model, ev (optional: a matched EV of the model), weight
    [[stations]] explicit stations: id, model, ev, soc_pct, ocpp_version, password, [faults]
    [clock]     speed, start (ISO-8601 with zone), anchor (epoch seconds)
    [behaviour] kind (commuter | school-bus | always | never), timezone, jitter_min, summer,
                summer_break = ["06-20", "08-31"]
    [arrival_soc] mean_pct, sd_pct, min_pct, max_pct (default: per EV category)
    [[faults]]  fraction (0..1) or stations = [ids]; drop_connection_at_s = [sim s, ...],
                offline_for_s, answer_delay_s, reject_profiles, derate = [[from sim s, factor]],
                unplug_at_s = [sim s, ...], replug_after_s (optional)

Fault settings are the fields of `simulators.faults.FaultPlan`, by the same names.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from iso15118_profiles import ev_models, pair_table
from simclock import parse_instant
from simulators.behaviour import (
    KINDS,
    SUMMER_MODES,
    Behaviour,
    SocDistribution,
    parse_month_day,
)
from simulators.catalog import hardware_models
from simulators.faults import FaultPlan, FaultPlanError

OCPP_VERSIONS = ("2.1", "2.0.1")
MIX_NAMES = ("residential", "bus", "all")
STATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,48}$")
MAX_COUNT = 100_000
MAX_PREFIX = 40  # leaves room for the station number within OCPP's 48-character identity


class ScenarioError(ValueError):
    """A scenario file or fleet option is invalid; the message names file and key."""


@dataclass(frozen=True, slots=True)
class MixEntry:
    model: str
    ev: str | None = None  # None: one of the model's matched EVs, chosen per station
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class FaultRule:
    settings: FaultPlan
    fraction: float | None = None  # of the whole fleet, chosen reproducibly from the seed
    stations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StationSpec:
    id: str
    model: str
    ev: str | None = None
    soc_pct: float | None = None
    ocpp_version: str | None = None
    password: str | None = None
    faults: FaultPlan | None = None


@dataclass(frozen=True, slots=True)
class ClockSpec:
    speed: float = 1.0
    start: datetime | None = None
    anchor: float | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "default"
    description: str = ""
    count: int = 10
    id_prefix: str = "SIM-"
    seed: int = 1
    ocpp_version: str | None = None
    password: str | None = None
    meter_interval_s: float | None = None
    mix: tuple[MixEntry, ...] = field(default_factory=lambda: named_mix("residential"))
    stations: tuple[StationSpec, ...] = ()
    clock: ClockSpec = ClockSpec()
    behaviour: Behaviour = field(default_factory=Behaviour)
    arrival_soc: SocDistribution | None = None
    faults: tuple[FaultRule, ...] = ()


# ---- named mixes ----------------------------------------------------------------------------

_MIX_MODELS = {
    "residential": (
        "dcbel-ara",
        "wallbox-quasar-2",
        "ford-charge-station-pro",
        "gm-energy-powershift",
        "tesla-universal-wall-connector",
    ),
    "bus": (
        "tellus-20",
        "tellus-30",
        "tellus-40",
        "tellus-60",
        "incharge-22",
        "incharge-44",
        "incharge-66",
        "heliox-44",
    ),
}


def named_mix(name: str) -> tuple[MixEntry, ...]:
    """The hardware of a named mix, each with its matched EVs (chosen per station)."""
    if name == "all":
        return named_mix("residential") + named_mix("bus")
    if name not in _MIX_MODELS:
        raise ScenarioError(f"mix {name!r} unknown; allowed: {', '.join(MIX_NAMES)}")
    return tuple(MixEntry(model) for model in _MIX_MODELS[name])


def matched_evs(model_id: str) -> tuple[str, ...]:
    """EVs that may discharge on this hardware, sorted; the category's EVs if none is."""
    matched = sorted(pair_table().evs_by_evse.get(model_id, frozenset()))
    if matched:
        return tuple(matched)
    category = "bus" if hardware_models()[model_id].category == "bus" else "light-duty"
    return tuple(sorted(e.id for e in ev_models().values() if e.category == category))


def ocpp_version_of(value: str) -> str:
    """'ocpp2.1' (catalog) -> '2.1' (StationConfig)."""
    return value.removeprefix("ocpp")


# ---- the reader ------------------------------------------------------------------------------


class _Table:
    """One TOML table being read: typed getters with errors naming file and key."""

    def __init__(self, source: str, prefix: str, raw: object) -> None:
        self.source, self.prefix = source, prefix
        if not isinstance(raw, dict):
            raise self.error("", f"must be a table, got {type(raw).__name__}")
        self.raw: dict[str, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix and name else self.prefix or name

    def error(self, name: str, what: str) -> ScenarioError:
        return ScenarioError(f"{self.source}:{self.key(name)}: {what}")

    def only(self, *allowed: str) -> None:
        unknown = sorted(set(self.raw) - set(allowed))
        if unknown:
            raise self.error(unknown[0], f"unknown key; allowed here: {', '.join(allowed)}")

    def number(self, name: str, default: float | None, low: float, high: float) -> float | None:
        value = self.raw.get(name, default)
        if value is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not low <= value <= high:
            raise self.error(name, f"must be a number within {low:g}..{high:g}, got {value!r}")
        return float(value)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(name, f"must be an integer within {low}..{high}, got {value!r}")
        return value

    def text(self, name: str, default: str | None, choices: tuple[str, ...] = ()) -> str | None:
        value = self.raw.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {value!r}")
        if choices and value not in choices:
            raise self.error(name, f"{value!r} is not allowed; allowed: {', '.join(choices)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def table(self, name: str) -> _Table | None:
        return _Table(self.source, self.key(name), self.raw[name]) if name in self.raw else None

    def tables(self, name: str) -> list[_Table]:
        value = self.raw.get(name, [])
        if not isinstance(value, list):
            raise self.error(name, "must be an array of tables ([[...]])")
        return [_Table(self.source, f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]


def _model(t: _Table, name: str = "model") -> str:
    model = t.text(name, None)
    models = hardware_models()
    if model is None:
        raise t.error(name, f"is required; known models: {', '.join(sorted(models))}")
    if model not in models:
        raise t.error(name, f"unknown hardware model {model!r}; known: {', '.join(sorted(models))}")
    return model


def _ev(t: _Table) -> str | None:
    ev = t.text("ev", None)
    if ev is not None and ev not in ev_models():
        raise t.error("ev", f"unknown EV model {ev!r}; known: {', '.join(sorted(ev_models()))}")
    return ev


def _version_for(t: _Table, name: str, version: str | None, model: str) -> None:
    offered = [ocpp_version_of(v) for v in hardware_models()[model].ocpp_versions]
    if version is not None and version not in offered:
        raise t.error(name, f"{model} does not offer OCPP {version}; it offers {offered}")


# ---- sections ------------------------------------------------------------------------------


def _mix(fleet: _Table) -> tuple[MixEntry, ...]:
    raw = fleet.raw.get("mix", "residential")
    if isinstance(raw, str):
        if raw not in MIX_NAMES:
            raise fleet.error("mix", f"{raw!r} unknown; allowed: {', '.join(MIX_NAMES)}")
        return named_mix(raw)
    entries = []
    for t in fleet.tables("mix"):
        t.only("model", "ev", "weight")
        weight = t.number("weight", 1.0, 0.0, 1e6) or 0.0
        entries.append(MixEntry(_model(t), _ev(t), weight))
    if not entries or sum(e.weight for e in entries) <= 0:
        raise fleet.error("mix", "needs at least one entry with weight > 0")
    return tuple(entries)


def _faults(t: _Table) -> FaultPlan:
    try:
        return FaultPlan(
            drop_connection_at_s=_sim_seconds(t, "drop_connection_at_s"),
            offline_for_s=t.number("offline_for_s", 0.0, 0.0, 7 * 86400.0) or 0.0,
            answer_delay_s=t.number("answer_delay_s", 0.0, 0.0, 300.0) or 0.0,
            reject_profiles=t.boolean("reject_profiles", False),
            derate=_derate_steps(t, t.raw.get("derate", [])),
            unplug_at_s=_sim_seconds(t, "unplug_at_s"),
            replug_after_s=t.number("replug_after_s", None, 0.0, 7 * 86400.0),
        )
    except FaultPlanError as exc:  # rules across fields (a replug needs an unplug, ...)
        raise t.error(exc.field, exc.what) from None


FAULT_KEYS = (
    "drop_connection_at_s",
    "offline_for_s",
    "answer_delay_s",
    "reject_profiles",
    "derate",
    "unplug_at_s",
    "replug_after_s",
)


def _sim_seconds(t: _Table, name: str) -> tuple[float, ...]:
    """A list of instants in sim seconds after the station starts, sorted."""
    raw = t.raw.get(name, [])
    if not isinstance(raw, list) or not all(_non_negative(x) for x in raw):
        raise t.error(name, f"must be a list of sim seconds >= 0, got {raw!r}")
    return tuple(sorted(float(x) for x in raw))


def _non_negative(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _derate_steps(t: _Table, raw: object) -> tuple[tuple[float, float], ...]:
    what = "must be a list of [from sim second >= 0, factor 0..1] with increasing seconds"
    if not isinstance(raw, list):
        raise t.error("derate", f"{what}, got {raw!r}")
    steps: list[tuple[float, float]] = []
    for step in raw:
        ok = isinstance(step, list) and len(step) == 2 and all(_non_negative(x) for x in step)
        if not ok or step[1] > 1 or (steps and step[0] <= steps[-1][0]):
            raise t.error("derate", f"{what}, got {step!r}")
        steps.append((float(step[0]), float(step[1])))
    return tuple(steps)


def _stations(root: _Table) -> tuple[StationSpec, ...]:
    specs: list[StationSpec] = []
    for t in root.tables("stations"):
        t.only("id", "model", "ev", "soc_pct", "ocpp_version", "password", "faults")
        station_id = t.text("id", None)
        if station_id is None or not STATION_ID.match(station_id):
            raise t.error("id", f"needs 1-48 characters of A-Z a-z 0-9 . _ : -, got {station_id!r}")
        model = _model(t)
        version = t.text("ocpp_version", None, OCPP_VERSIONS)
        _version_for(t, "ocpp_version", version, model)
        faults_table = t.table("faults")
        if faults_table is not None:
            faults_table.only(*FAULT_KEYS)
        specs.append(
            StationSpec(
                id=station_id,
                model=model,
                ev=_ev(t),
                soc_pct=t.number("soc_pct", None, 0.0, 100.0),
                ocpp_version=version,
                password=t.text("password", None),
                faults=_faults(faults_table) if faults_table else None,
            )
        )
    ids = [s.id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise root.error("stations", f"duplicate station id(s) {duplicates}")
    return tuple(specs)


def _clock(t: _Table | None) -> ClockSpec:
    if t is None:
        return ClockSpec()
    t.only("speed", "start", "anchor")
    start_text = t.text("start", None)
    try:
        start = parse_instant(start_text) if start_text is not None else None
    except ValueError as exc:
        raise t.error("start", str(exc)) from None
    speed = t.number("speed", 1.0, 1e-6, 1e6) or 1.0
    return ClockSpec(speed, start, t.number("anchor", None, 0.0, 1e11))


def _behaviour(t: _Table | None) -> Behaviour:
    if t is None:
        return Behaviour()
    t.only("kind", "timezone", "jitter_min", "summer", "summer_break")
    window = t.raw.get("summer_break", ["06-20", "08-31"])
    if not (
        isinstance(window, list) and len(window) == 2 and all(isinstance(x, str) for x in window)
    ):
        raise t.error("summer_break", f'must be ["MM-DD", "MM-DD"], got {window!r}')
    for text in window:
        try:
            parse_month_day(text)
        except ValueError as exc:
            raise t.error("summer_break", str(exc)) from None
    try:
        return Behaviour(
            kind=t.text("kind", "always", KINDS) or "always",
            timezone=t.text("timezone", "America/New_York") or "",
            jitter_min=t.number("jitter_min", 30.0, 0.0, 120.0) or 0.0,
            summer=t.text("summer", "parked", SUMMER_MODES) or "parked",
            summer_break=(window[0], window[1]),
        )
    except ValueError as exc:  # the time zone: the only check left to Behaviour itself
        raise t.error("timezone", str(exc)) from None


def _arrival(t: _Table | None) -> SocDistribution | None:
    if t is None:
        return None
    t.only("mean_pct", "sd_pct", "min_pct", "max_pct")
    low = t.number("min_pct", 0.0, 0.0, 100.0) or 0.0
    high = t.number("max_pct", 100.0, 0.0, 100.0)
    if high is None or high < low:
        raise t.error("max_pct", f"must be >= min_pct ({low:g}), got {high!r}")
    mean = t.number("mean_pct", None, 0.0, 100.0)
    if mean is None:
        raise t.error("mean_pct", "is required (0..100)")
    return SocDistribution(mean, t.number("sd_pct", 10.0, 0.0, 100.0) or 0.0, low, high)


def _fault_rules(root: _Table, known_ids: set[str] | None) -> tuple[FaultRule, ...]:
    rules = []
    for t in root.tables("faults"):
        t.only("fraction", "stations", *FAULT_KEYS)
        fraction = t.number("fraction", None, 0.0, 1.0)
        ids = t.raw.get("stations", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise t.error("stations", f"must be a list of station ids, got {ids!r}")
        if (fraction is None) == (not ids):
            raise t.error("fraction", "give exactly one of fraction (0..1) or stations = [ids]")
        strangers = sorted(set(ids) - known_ids) if known_ids is not None else []
        if strangers:
            raise t.error("stations", f"unknown station id(s) {strangers[:5]}")
        rules.append(FaultRule(_faults(t), fraction, tuple(ids)))
    return tuple(rules)


def generated_ids(prefix: str, count: int) -> list[str]:
    """The ids of the mix-generated stations: PREFIX00001, PREFIX00002, ..."""
    return [f"{prefix}{i + 1:05d}" for i in range(count)]


def parse_scenario(document: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a parsed TOML document into a Scenario (ScenarioError naming the key)."""
    root = _Table(source, "", document)
    root.only(
        "name", "description", "fleet", "stations", "clock", "behaviour", "arrival_soc", "faults"
    )
    fleet = root.table("fleet") or _Table(source, "fleet", {})
    fleet.only("count", "id_prefix", "seed", "ocpp_version", "password", "meter_interval_s", "mix")
    stations = _stations(root)
    count = fleet.integer("count", 0 if stations else 10, 0, MAX_COUNT)
    prefix = fleet.text("id_prefix", "SIM-") or ""
    if len(prefix) > MAX_PREFIX or not STATION_ID.match(prefix + "0"):
        raise fleet.error("id_prefix", f"needs <= {MAX_PREFIX} of A-Z a-z 0-9 . _ : -")
    mix = _mix(fleet)
    version = fleet.text("ocpp_version", None, OCPP_VERSIONS)
    for entry in mix:
        _version_for(fleet, "ocpp_version", version, entry.model)
    if count + len(stations) == 0:
        raise fleet.error("count", "the scenario has no stations: set count > 0 or [[stations]]")
    ids = set(generated_ids(prefix, count)) | {s.id for s in stations}
    if len(ids) < count + len(stations):
        raise root.error("stations", f"an explicit id collides with the generated {prefix}NNNNN")
    return Scenario(
        name=root.text("name", "scenario") or "scenario",
        description=root.text("description", "") or "",
        count=count,
        id_prefix=prefix,
        seed=fleet.integer("seed", 1, 0, 2**63 - 1),
        ocpp_version=version,
        password=fleet.text("password", None),
        meter_interval_s=fleet.number("meter_interval_s", None, 1.0, 86400.0),
        mix=mix,
        stations=stations,
        clock=_clock(root.table("clock")),
        behaviour=_behaviour(root.table("behaviour")),
        arrival_soc=_arrival(root.table("arrival_soc")),
        faults=_fault_rules(root, ids),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every problem is a ScenarioError naming file:key."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return parse_scenario(document, source)


def example_scenarios() -> dict[str, Path]:
    """The scenarios shipped in simulators/data/scenarios, by file stem."""
    folder = Path(__file__).resolve().parent / "data" / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}
