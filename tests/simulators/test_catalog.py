"""The hardware catalog: every product, OCPP string limits, V2X capabilities."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from importlib import resources

import pytest
from ocpp.v21.enums import DERControlEnumType

from simclock import Clock
from simulators.catalog import HardwareDataError, get_hardware, hardware_models, parse_catalog
from simulators.station import SimulatedStation, StationConfig

EXPECTED = {
    "dcbel-ara",
    "wallbox-quasar-2",
    "ford-charge-station-pro",
    "gm-energy-powershift",
    "tesla-universal-wall-connector",
    "tellus-20",
    "tellus-30",
    "tellus-40",
    "tellus-60",
    "incharge-22",
    "incharge-44",
    "incharge-66",
    "heliox-44",
}


def _raw() -> dict:
    return tomllib.loads(resources.files("simulators").joinpath("data/hardware.toml").read_text())


def test_catalog_lists_every_product_with_its_domain_ratings() -> None:
    models = hardware_models()
    assert set(models) == EXPECTED
    assert (models["dcbel-ara"].max_charge_kw, models["dcbel-ara"].max_discharge_kw) == (15.2, 15.2)
    ford = models["ford-charge-station-pro"]
    assert (ford.current_type, ford.max_charge_kw, ford.max_discharge_kw) == ("AC", 19.2, 9.6)
    assert models["tesla-universal-wall-connector"].current_type == "AC"
    assert models["heliox-44"].max_discharge_kw == 44.0


@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_boot_strings_fit_the_ocpp_length_limits(model_id: str) -> None:
    hw = get_hardware(model_id)
    assert 0 < len(hw.vendor_name) <= 50 and 0 < len(hw.model) <= 20
    assert 0 < len(hw.firmware_version) <= 50


@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_v2x_units_offer_the_spec_minimum_modes_and_201_units_declare_negative_limits(
    model_id: str,
) -> None:
    hw = get_hardware(model_id)
    assert hw.bidirectional
    if hw.speaks_21:
        assert {"ChargingOnly", "CentralSetpoint", "CentralFrequency"} <= set(
            hw.v2x_operation_modes
        )
    else:
        assert hw.accepts_negative_limits and not hw.v2x_operation_modes


def test_efficiency_is_about_87_pct_round_trip_at_rated_power_and_worse_at_low_power() -> None:
    hw = get_hardware("wallbox-quasar-2")
    round_trip = hw.efficiency_at(hw.max_charge_w) * hw.efficiency_at(-hw.max_discharge_w)
    assert round_trip == pytest.approx(0.87, abs=0.005)
    assert hw.efficiency_at(500) < hw.efficiency_at(5_000) < hw.efficiency_at(11_500)


def test_to_dict_is_json_for_csms_sim_models() -> None:
    out = json.loads(json.dumps([m.to_dict() for m in hardware_models().values()]))
    ara = next(m for m in out if m["id"] == "dcbel-ara")
    assert ara["ocpp_versions"] == ["ocpp2.1", "ocpp2.0.1"]
    assert ara["bidirectional"] is True and ara["efficiency_curve"][0] == [0.05, 0.8]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(model="Quasar 2 Bidirectional DC"), "model .* 1..20 characters"),
        (lambda m: m.update(max_charge_kw=-1), "non-negative"),
        (lambda m: m.update(turbo=True), "unknown key"),
        (lambda m: m.pop("vendor_name"), "missing field"),
        (lambda m: m.update(v2x_operation_modes=["ChargingOnly"]), "spec minimum"),
        (lambda m: m.update(efficiency_curve=[[0.5, 1.4], [1.0, 0.9]]), "out of range"),
    ],
)
def test_loader_refuses_bad_hardware_data(mutate, message: str) -> None:
    doc = _raw()
    mutate(doc["models"]["wallbox-quasar-2"])
    with pytest.raises(HardwareDataError, match=message):
        parse_catalog(doc)


def test_unknown_model_lists_the_known_ids() -> None:
    with pytest.raises(KeyError, match="dcbel-ara"):
        get_hardware("acme-9000")


SPEC_DER_CONTROL_TYPES = {e.value for e in DERControlEnumType}


@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_der_control_types_are_spec_values_and_only_on_21_units(model_id: str) -> None:
    """R04: SetDERControl exists in 2.1 only; every listed type is a DERControlEnumType value."""
    hw = get_hardware(model_id)
    assert set(hw.der_control_types) <= SPEC_DER_CONTROL_TYPES
    assert hw.sources["der_control_types"]
    if not hw.speaks_21:
        assert hw.der_control_types == ()
    else:
        assert "LimitMaxDischarge" in hw.der_control_types


def test_loader_refuses_unknown_or_201_der_control_types() -> None:
    doc = _raw()
    doc["models"]["wallbox-quasar-2"]["der_control_types"] = ["VoltVar", "TurboWatt"]
    with pytest.raises(HardwareDataError, match=r"unknown der_control_types.*TurboWatt"):
        parse_catalog(doc)
    doc = _raw()
    doc["models"]["heliox-44"]["der_control_types"] = ["VoltVar"]
    with pytest.raises(HardwareDataError, match=r"2\.0\.1-only unit has no DER control"):
        parse_catalog(doc)


@pytest.mark.parametrize(
    ("model_id", "control_type", "status"),
    [
        ("wallbox-quasar-2", "VoltVar", "Accepted"),
        ("tesla-universal-wall-connector", "LimitMaxDischarge", "Accepted"),
        ("tesla-universal-wall-connector", "VoltVar", "NotSupported"),
        ("dcbel-ara", "HVMustTrip", "NotSupported"),
    ],
)
def test_station_takes_only_its_models_der_control_types(
    model_id: str, control_type: str, status: str
) -> None:
    """R04: SetDERControl of a type the hardware lacks is NotSupported (UnsupportedControl)."""
    station = SimulatedStation(
        StationConfig("DER-1", get_hardware(model_id), "ws://127.0.0.1:1/ocpp"), Clock()
    )
    curve = {"priority": 1, "yUnit": "PctMaxW", "curveData": [{"x": 1.0, "y": 50.0}]}
    request = {
        "isDefault": False,
        "controlId": "c-1",
        "controlType": control_type,
        "curve": curve,
        "limitMaxDischarge": {"priority": 1, "pctMaxDischargePower": 50.0},
    }
    answer = station._on_SetDERControl(request, datetime(2026, 7, 15, 18, tzinfo=UTC))
    assert answer["status"] == status
    if status == "NotSupported":
        assert answer["statusInfo"]["reasonCode"] == "UnsupportedControl"
