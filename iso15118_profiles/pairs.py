"""The matched-pair table: which EV may *discharge* on which EVSE model (DOMAIN.md).

Every EV charges on any EVSE; it exports only on its own matched EVSE. `can_discharge` is the
one function the CSMS discharge gate (DESIGN.md §3.6 (c)) and the simulators use to decide, and
it always says why.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from iso15118_profiles.models import EvDataError, ev_models


@dataclass(frozen=True, slots=True)
class PairDecision:
    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PairTable:
    """EVSE model id -> EV ids that may discharge on it, with the source of each entry."""

    evs_by_evse: dict[str, frozenset[str]]
    source_by_evse: dict[str, str]

    def matched_evse_models(self, ev_id: str) -> list[str]:
        return sorted(e for e, evs in self.evs_by_evse.items() if ev_id in evs)


def parse_pairs(document: dict[str, Any], known_evs: set[str]) -> PairTable:
    """Validate the [[pairs]] document: known EV ids, non-empty lists, a source per entry."""
    unknown = sorted(set(document) - {"pairs"})
    if unknown:
        raise EvDataError(f"matched pairs: unknown top-level key(s) {unknown}")
    evs_by_evse: dict[str, set[str]] = {}
    sources: dict[str, str] = {}
    for index, entry in enumerate(document.get("pairs", [])):
        extra = sorted(set(entry) - {"evse", "evs", "source"})
        if extra:
            raise EvDataError(f"matched pairs entry {index}: unknown key(s) {extra}")
        evse, evs, source = entry.get("evse"), entry.get("evs"), entry.get("source")
        if not evse or not evs or not source:
            raise EvDataError(f"matched pairs entry {index}: needs evse, evs and source")
        strangers = sorted(set(evs) - known_evs)
        if strangers:
            raise EvDataError(f"matched pairs entry {index}: unknown EV model(s) {strangers}")
        for evse_id in evse:
            evs_by_evse.setdefault(evse_id, set()).update(evs)
            sources[evse_id] = source
    return PairTable({k: frozenset(v) for k, v in evs_by_evse.items()}, sources)


@cache
def pair_table() -> PairTable:
    text = resources.files("iso15118_profiles").joinpath("data/matched_pairs.toml").read_text()
    return parse_pairs(tomllib.loads(text), set(ev_models()))


def can_discharge(ev_id: str, evse_model_id: str) -> PairDecision:
    """May this EV model export on this EVSE model? Refusals name the matched EVSE instead."""
    models = ev_models()
    if ev_id not in models:
        return PairDecision(False, f"unknown EV model {ev_id!r}: discharge refused")
    ev = models[ev_id]
    if not ev.bidirectional:
        return PairDecision(False, f"{ev.name} cannot discharge (no bidirectional mode)")
    table = pair_table()
    if ev_id in table.evs_by_evse.get(evse_model_id, frozenset()):
        return PairDecision(True, f"matched pair: {table.source_by_evse[evse_model_id]}")
    matched = table.matched_evse_models(ev_id)
    where = ", ".join(matched) if matched else "no EVSE model"
    return PairDecision(
        False,
        f"unmatched pair: {ev.name} may discharge only on {where}, not on {evse_model_id!r}; "
        "it may still charge there",
    )
