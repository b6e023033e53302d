"""EV models, their ISO 15118-20 bidirectional (BPT) parameters, and the matched-pair table.

Shared by the CSMS (to refuse an unmatched discharge, DESIGN.md §3.6) and the simulators (to
drive the battery model and announce NotifyEVChargingNeeds). Data lives in `data/*.toml`; every
number there names its source. Nothing here touches the network or `csms`.

- `ev_models()`, `get_ev_model(id)`: the typed, validated models (ids like 'kia-ev9-76').
- `can_discharge(ev_id, evse_model_id) -> PairDecision(allowed, reason)`.
- `v2x_charging_parameters(...)`, `charging_needs(...)`: what the car announces at a SoC.
- `max_charge_power_w`, `max_discharge_power_w`: the CC-CV taper and the BMS floor.
"""

from iso15118_profiles.bpt import (
    ac_charging_parameters,
    charge_fraction,
    charging_needs,
    dc_charging_parameters,
    discharge_fraction,
    energy_to_soc_wh,
    max_charge_power_w,
    max_discharge_power_w,
    v2x_charging_parameters,
)
from iso15118_profiles.models import (
    BPT_MODES,
    EvDataError,
    EvModel,
    ev_models,
    get_ev_model,
    parse_models,
)
from iso15118_profiles.pairs import PairDecision, PairTable, can_discharge, pair_table, parse_pairs

__all__ = [
    "BPT_MODES",
    "EvDataError",
    "EvModel",
    "PairDecision",
    "PairTable",
    "ac_charging_parameters",
    "can_discharge",
    "charge_fraction",
    "charging_needs",
    "dc_charging_parameters",
    "discharge_fraction",
    "energy_to_soc_wh",
    "ev_models",
    "get_ev_model",
    "max_charge_power_w",
    "max_discharge_power_w",
    "pair_table",
    "parse_models",
    "parse_pairs",
    "v2x_charging_parameters",
]
