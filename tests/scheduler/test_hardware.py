"""The CSMS's view of known hardware: a booted station's vendor/model -> its catalog entry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from csms.scheduler.hardware import (
    evse_model_id,
    hardware_by_id,
    hardware_for,
    hardware_of,
    known_model_ids,
)
from csms.store.models import Station
from iso15118_profiles import pair_table
from simulators.catalog import hardware_models


def station(vendor: str, model: str) -> Station:
    return Station(id="CP-1", vendor=vendor, model=model)


@pytest.mark.parametrize("model_id", sorted(hardware_models()))
def test_every_catalog_model_is_recognised_from_what_it_boots_as(model_id: str) -> None:
    hw = hardware_models()[model_id]
    booted = station(hw.vendor_name, hw.model)
    assert hardware_of(booted) is hw
    assert evse_model_id(booted) == model_id


def test_boot_strings_are_matched_ignoring_case_and_padding() -> None:
    assert evse_model_id(station("  WALLBOX ", "quasar 2")) == "wallbox-quasar-2"
    assert evse_model_id(station("Tesla", "Univ Wall Connector")) == (
        "tesla-universal-wall-connector"
    )


@pytest.mark.parametrize(
    ("vendor", "model"),
    [("Test", "Bidi"), ("", ""), ("dcbel", ""), ("Wallbox", "Quasar"), ("Heliox", "Ara")],
)
def test_unknown_or_unbooted_hardware_is_none(vendor: str, model: str) -> None:
    assert hardware_of(station(vendor, model)) is None
    assert evse_model_id(station(vendor, model)) is None
    assert hardware_for(vendor, model) is None


def test_catalog_ids_and_ratings_are_the_simulators_data() -> None:
    assert hardware_by_id("heliox-44") is hardware_models()["heliox-44"]
    assert hardware_by_id("heliox-44").max_discharge_kw == 44.0
    assert hardware_by_id("heliox-44").accepts_negative_limits  # a 2.0.1 unit: the sheet says
    assert hardware_by_id("no-such-charger") is None
    assert known_model_ids() == sorted(hardware_models())


def test_every_evse_of_the_matched_pair_table_is_a_catalog_model() -> None:
    """Enrolment and the gate look pairs up by catalog id: the two data files must agree."""
    assert set(pair_table().evs_by_evse) <= set(known_model_ids())


def test_csms_imports_only_the_catalog_from_the_simulators() -> None:
    code = (
        "import sys, csms.runtime, csms.scheduler.hardware, csms.scheduler.enrolment; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'simulators'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['simulators', 'simulators.catalog']"
