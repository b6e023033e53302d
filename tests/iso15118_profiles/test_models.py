"""EV data, the matched-pair table (DOMAIN.md) and the BPT parameters the cars announce."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema_rs
import ocpp
import pytest

from iso15118_profiles import (
    EvDataError,
    can_discharge,
    charging_needs,
    ev_models,
    get_ev_model,
    max_charge_power_w,
    max_discharge_power_w,
    parse_models,
    v2x_charging_parameters,
)

EXPECTED_IDS = {
    "nissan-leaf-40",
    "nissan-leaf-62",
    "volvo-ex90",
    "polestar-3",
    "ford-f150-lightning-98",
    "ford-f150-lightning-131",
    "chevrolet-silverado-ev",
    "kia-ev9-76",
    "kia-ev9-100",
    "tesla-cybertruck",
    "blue-bird-155",
    "blue-bird-196",
    "byd-156",
    "byd-230",
    "byd-288",
    "thomas-built-246",
    "ic-bus-210",
    "ic-bus-315",
    "micro-bird-175",
    "evolectric-60",
    "evolectric-100",
    "evolectric-140",
    "evolectric-180",
}
MATCHED = {
    "dcbel-ara": ["nissan-leaf-40", "nissan-leaf-62", "volvo-ex90", "polestar-3"],
    "ford-charge-station-pro": ["ford-f150-lightning-98", "ford-f150-lightning-131"],
    "gm-energy-powershift": ["chevrolet-silverado-ev"],
    "wallbox-quasar-2": ["kia-ev9-76", "kia-ev9-100"],
    "tesla-universal-wall-connector": ["tesla-cybertruck"],
    "heliox-44": ["thomas-built-246", "evolectric-60"],
    "tellus-60": ["blue-bird-196", "byd-288"],
    "incharge-44": ["ic-bus-315", "micro-bird-175"],
}


def _raw() -> dict:
    text = resources.files("iso15118_profiles").joinpath("data/ev_models.toml").read_text()
    return tomllib.loads(text)


def test_every_listed_ev_model_is_present_with_positive_capacity() -> None:
    models = ev_models()
    assert set(models) == EXPECTED_IDS
    assert get_ev_model("kia-ev9-76").usable_capacity_kwh == 76.1
    assert all(m.capacity_wh > 0 and m.bidirectional for m in models.values())


def test_every_number_names_its_source() -> None:
    for model in ev_models().values():
        for key in ("usable_capacity_kwh", "max_dc_charge_kw", "max_discharge_kw"):
            assert model.sources[key].strip(), (model.id, key)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(colour="red"), "unknown key"),
        (lambda m: m.pop("usable_capacity_kwh"), "missing field"),
        (lambda m: m.update(usable_capacity_kwh=-5.0), "must not be negative"),
        (lambda m: m.update(max_dc_charge_kw="fast"), "must be a number"),
        (lambda m: m.update(connector="Type9"), "connector must be one of"),
        (lambda m: m["sources"].pop("max_discharge_kw"), "no source"),
    ],
)
def test_loader_refuses_bad_data_with_a_clear_error(mutate, message: str) -> None:
    doc = _raw()
    mutate(doc["models"]["kia-ev9-76"])
    with pytest.raises(EvDataError, match=message) as info:
        parse_models(doc)
    assert "kia-ev9-76" in str(info.value)


@pytest.mark.parametrize(("evse", "evs"), MATCHED.items())
def test_matched_pairs_may_discharge(evse: str, evs: list[str]) -> None:
    for ev in evs:
        decision = can_discharge(ev, evse)
        assert decision.allowed, decision.reason
        assert "matched pair" in decision.reason


def test_unmatched_pair_is_refused_with_a_reason_naming_the_matched_evse() -> None:
    decision = can_discharge("kia-ev9-76", "dcbel-ara")
    assert not decision.allowed
    assert "wallbox-quasar-2" in decision.reason and "dcbel-ara" in decision.reason
    assert not can_discharge("tesla-cybertruck", "heliox-44").allowed
    assert not can_discharge("thomas-built-246", "wallbox-quasar-2").allowed


def test_unknown_ev_is_refused_not_raised() -> None:
    decision = can_discharge("delorean-dmc12", "dcbel-ara")
    assert not decision.allowed and "unknown EV model" in decision.reason


def test_cc_cv_taper_full_power_to_80_pct_then_falls() -> None:
    ev = get_ev_model("kia-ev9-76")
    full = max_charge_power_w(ev, 50, "DC")
    assert full == max_charge_power_w(ev, 80, "DC") == 210_000
    assert max_charge_power_w(ev, 90, "DC") < full
    assert max_charge_power_w(ev, 99.9, "DC") < max_charge_power_w(ev, 90, "DC")
    assert max_charge_power_w(ev, 100, "DC") == 0


def test_discharge_power_is_zero_at_the_bms_floor_and_derated_near_it() -> None:
    ev = get_ev_model("nissan-leaf-40")
    assert max_discharge_power_w(ev, ev.bms_min_soc_pct) == 0
    assert max_discharge_power_w(ev, ev.bms_min_soc_pct - 3) == 0
    assert 0 < max_discharge_power_w(ev, ev.bms_min_soc_pct + 1) < 15_200
    assert max_discharge_power_w(ev, 50) == 15_200


def test_v2x_parameters_use_the_ocpp_21_field_names_and_min_of_ev_and_evse() -> None:
    ev = get_ev_model("kia-ev9-76")
    params = v2x_charging_parameters(ev, 50, "DC", 11_500, 11_500, min_soc_pct=30)
    assert params["maxChargePower"] == 11_500
    assert params["maxDischargePower"] == 11_500
    assert params["evMinEnergyRequest"] == round(-0.20 * 76_100)  # 30 % owner floor
    assert params["evMaxEnergyRequest"] == round(0.50 * 76_100)
    assert params["evMinV2XEnergyRequest"] < 0 < params["evMaxV2XEnergyRequest"]
    schema = json.loads(
        (Path(ocpp.__file__).parent / "v21/schemas/NotifyEVChargingNeedsRequest.json").read_text()
    )
    assert set(params) <= set(schema["definitions"]["V2XChargingParametersType"]["properties"])


@pytest.mark.parametrize("ev_id", sorted(EXPECTED_IDS))
@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
@pytest.mark.parametrize("current_type", ["AC", "DC"])
def test_charging_needs_validate_against_the_official_schema(
    ev_id: str, version: str, current_type: str
) -> None:
    ev = get_ev_model(ev_id)
    needs = charging_needs(
        ev, 42.5, current_type, 11_500, 11_500, version=version, bidirectional=True
    )
    folder = "v21" if version == "2.1" else "v201"
    path = Path(ocpp.__file__).parent / folder / "schemas" / "NotifyEVChargingNeedsRequest.json"
    schema = json.loads(path.read_text())
    schema.pop("$schema", None)
    payload = {"evseId": 1, "chargingNeeds": needs}
    if version == "2.1":
        payload["timestamp"] = "2026-07-15T18:00:00Z"
    jsonschema_rs.validator_for(schema).validate(payload)
    assert ("v2xChargingParameters" in needs) == (
        version == "2.1" and ev.bpt_mode(current_type) is not None
    )


def test_charge_only_needs_for_an_unmatched_pair_carry_no_v2x_parameters() -> None:
    ev = get_ev_model("kia-ev9-76")
    needs = charging_needs(ev, 50, "DC", 15_200, 15_200, version="2.1", bidirectional=False)
    assert needs["requestedEnergyTransfer"] == "DC"
    assert "v2xChargingParameters" not in needs
