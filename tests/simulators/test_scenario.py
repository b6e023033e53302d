"""Scenario files: the shipped examples load; bad files are refused naming file:key and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.faults import FaultPlan
from simulators.scenario import (
    ScenarioError,
    example_scenarios,
    load_scenario,
    named_mix,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_scenarios_load():
    examples = example_scenarios()
    assert {"residential-evening", "school-bus-summer", "mixed-faults"} <= set(examples)
    for path in examples.values():
        scenario = load_scenario(path)
        assert scenario.count + len(scenario.stations) > 0
    evening = load_scenario(examples["residential-evening"])
    assert evening.behaviour.kind == "commuter" and evening.clock.speed == 60
    assert evening.faults[0].settings == FaultPlan(
        drop_connection_at_s=(7200.0,), offline_for_s=600
    )
    mixed = load_scenario(examples["mixed-faults"])
    assert mixed.stations[0].faults == FaultPlan(reject_profiles=True)
    assert mixed.faults[1].settings.derate == ((0.0, 1.0), (600.0, 0.5), (1200.0, 0.8))


def test_a_minimal_scenario_takes_the_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, "[fleet]\ncount = 3\n"))
    assert scenario.count == 3 and scenario.mix == named_mix("residential")
    assert scenario.behaviour.kind == "always" and scenario.clock.speed == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[fleet]\ncont = 3\n", "fleet.toml:fleet.cont: unknown key; allowed here: count,"),
        ("colour = 'red'\n", "fleet.toml:colour: unknown key"),
        ("[fleet]\ncount = -1\n", "fleet.toml:fleet.count: must be an integer within 0..100000"),
        ("[fleet]\ncount = 'ten'\n", "fleet.count: must be an integer"),
        (
            "[fleet]\nmix = 'campus'\n",
            "fleet.mix: 'campus' unknown; allowed: residential, bus, all",
        ),
        (
            "[[fleet.mix]]\nmodel = 'dcbel-aro'\n",
            "fleet.mix[0].model: unknown hardware model 'dcbel-aro'; known: dcbel-ara,",
        ),
        (
            "[[fleet.mix]]\nmodel = 'dcbel-ara'\nev = 'leaf'\n",
            "fleet.mix[0].ev: unknown EV model 'leaf'; known: blue-bird-155,",
        ),
        ("[[fleet.mix]]\nmodel = 'dcbel-ara'\nweight = 0\n", "fleet.mix: needs at least one entry"),
        (
            "[fleet]\nmix = 'bus'\nocpp_version = '2.1'\n",
            "fleet.ocpp_version: heliox-44 does not offer OCPP 2.1; it offers ['2.0.1']",
        ),
        (
            "[fleet]\nocpp_version = '1.6'\n",
            "fleet.ocpp_version: '1.6' is not allowed; allowed: 2.1",
        ),
        ("[clock]\nstart = '2026-07-15T14:00:00'\n", "clock.start: instant needs a time zone"),
        ("[clock]\nspeed = 0\n", "clock.speed: must be a number within"),
        ("[behaviour]\nkind = 'weekender'\n", "behaviour.kind: 'weekender' is not allowed"),
        ("[behaviour]\ntimezone = 'Mars/Base'\n", "behaviour.timezone: unknown IANA time zone"),
        ("[behaviour]\nsummer_break = ['06-20']\n", "behaviour.summer_break: must be"),
        ("[behaviour]\nsummer_break = ['06-31', '08-01']\n", "not a MM-DD date: '06-31'"),
        ("[arrival_soc]\nsd_pct = 5\n", "arrival_soc.mean_pct: is required"),
        ("[arrival_soc]\nmean_pct = 50\nmin_pct = 60\nmax_pct = 40\n", "arrival_soc.max_pct"),
        ("[[faults]]\noffline_for_s = 10\n", "faults[0].fraction: give exactly one of fraction"),
        ("[[faults]]\nfraction = 1.5\n", "faults[0].fraction: must be a number within 0..1"),
        ("[[faults]]\nfraction = 0.1\ndrop_connection_at_s = [-5]\n", "faults[0].drop_connection"),
        ("[[faults]]\nfraction = 0.1\nderate = [[0, 2.0]]\n", "faults[0].derate: must be a list"),
        (
            "[[faults]]\nstations = ['NOPE']\nreject_profiles = true\n",
            "unknown station id(s) ['NOPE']",
        ),
        ("[[faults]]\nfraction = 0.1\nreject_profiles = 'yes'\n", "must be true or false"),
        ("[[stations]]\nmodel = 'dcbel-ara'\n", "stations[0].id: needs 1-48 characters"),
        ("[[stations]]\nid = 'A/B'\nmodel = 'dcbel-ara'\n", "stations[0].id: needs 1-48"),
        ("[[stations]]\nid = 'A'\n", "stations[0].model: is required; known models: dcbel-ara"),
        (
            "[[stations]]\nid = 'A'\nmodel = 'heliox-44'\nocpp_version = '2.1'\n",
            "stations[0].ocpp_version: heliox-44 does not offer OCPP 2.1",
        ),
        (
            "[[stations]]\nid = 'A'\nmodel = 'heliox-44'\n" * 2,
            "fleet.toml:stations: duplicate station id(s) ['A']",
        ),
        (
            "[[stations]]\nid = 'A'\nmodel = 'heliox-44'\n[stations.faults]\nexplode = true\n",
            "stations[0].faults.explode: unknown key",
        ),
        ("[fleet]\ncount = 0\n", "fleet.count: the scenario has no stations"),
        ("[fleet]\nid_prefix = 'a b'\n", "fleet.id_prefix: needs <= 40 of A-Z"),
        ("[fleet\ncount = 1\n", "fleet.toml: not valid TOML"),
    ],
)
def test_bad_scenarios_name_file_key_and_what_is_allowed(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.toml")


def test_explicit_ids_must_not_collide_with_generated_ones(tmp_path):
    text = (
        "[fleet]\ncount = 3\nid_prefix = 'S-'\n[[stations]]\nid = 'S-00002'\nmodel = 'dcbel-ara'\n"
    )
    with pytest.raises(ScenarioError, match="collides with the generated S-NNNNN"):
        load_scenario(write(tmp_path, text))
