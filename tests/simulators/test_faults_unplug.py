"""Planned unplugs and replugs (FaultPlan.unplug_at_s / replug_after_s): validation in the plan
and the scenario file, and the station's behaviour against the independent `ocpp`-library CSMS
(E10 at unplug, a new transaction with the SoC the car left with at replug, an unplug while
offline replayed with offline=true). Clock speed 600 unless a test says otherwise."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from simulators.catalog import get_hardware
from simulators.faults import FaultPlan, FaultPlanError
from simulators.fleet import plan_fleet
from simulators.scenario import ScenarioError, parse_scenario
from simulators.station import SimulatedStation
from tests.simulators.independent_csms import IndependentCsms, independent_csms
from tests.simulators.test_station_models import (
    allow_v2x,
    discharge_profile,
    matched_ev,
    running,
    samples,
    set_profile,
    station,
    tx_id_of,
)

HW = get_hardware("wallbox-quasar-2")
WAIT_S = 30.0  # wall hang guard for one wait (the test timeout is the outer one)


# ---- the plan ----------------------------------------------------------------------------------


def test_unplug_times_are_sorted_and_replugs_follow_each_unplug() -> None:
    plan = FaultPlan(unplug_at_s=(1800, 600), replug_after_s=300)
    assert plan.unplug_at_s == (600.0, 1800.0)
    assert plan.replug_at_s == (900.0, 2100.0)
    assert FaultPlan(unplug_at_s=(600,)).replug_at_s == ()


@pytest.mark.parametrize(
    ("kwargs", "field", "what"),
    [
        ({"unplug_at_s": (-1.0,)}, "unplug_at_s", "must be sim seconds >= 0"),
        ({"unplug_at_s": (float("inf"),)}, "unplug_at_s", "must be sim seconds >= 0"),
        ({"unplug_at_s": (10.0,), "replug_after_s": -1.0}, "replug_after_s", ">= 0"),
        ({"unplug_at_s": (10.0,), "replug_after_s": float("nan")}, "replug_after_s", ">= 0"),
        ({"replug_after_s": 60.0}, "replug_after_s", "needs unplug_at_s"),
        (
            {"unplug_at_s": (100.0, 150.0), "replug_after_s": 60.0},
            "unplug_at_s",
            "150 comes before the car unplugged at 100 is back",
        ),
    ],
)
def test_bad_unplug_plans_are_refused_naming_the_field(
    kwargs: dict[str, Any], field: str, what: str
) -> None:
    with pytest.raises(FaultPlanError) as caught:
        FaultPlan(**kwargs)
    assert caught.value.field == field
    assert what in caught.value.what


# ---- the scenario file -------------------------------------------------------------------------


def faults_scenario(faults: dict[str, Any]) -> dict[str, Any]:
    return {"fleet": {"count": 4, "id_prefix": "U-"}, "faults": [{"fraction": 0.5, **faults}]}


def test_scenario_unplug_fields_reach_the_planned_stations() -> None:
    scenario = parse_scenario(
        faults_scenario({"unplug_at_s": [1200, 300], "replug_after_s": 600}), "u.toml"
    )
    expected = FaultPlan(unplug_at_s=(300.0, 1200.0), replug_after_s=600.0)
    assert scenario.faults[0].settings == expected
    plans = plan_fleet(scenario)
    assert sum(p.faults == expected for p in plans) == 2
    assert sum(p.faults == FaultPlan() for p in plans) == 2


def test_explicit_station_takes_unplug_faults() -> None:
    document = {
        "stations": [
            {
                "id": "BUS-1",
                "model": "heliox-44",
                "faults": {"unplug_at_s": [900]},
            }
        ]
    }
    scenario = parse_scenario(document, "s.toml")
    assert scenario.stations[0].faults == FaultPlan(unplug_at_s=(900.0,))


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"unplug_at_s": 600}, "u.toml:faults[0].unplug_at_s: must be a list of sim seconds >= 0"),
        ({"unplug_at_s": [-5]}, "u.toml:faults[0].unplug_at_s: must be a list of sim seconds"),
        ({"unplug_at_s": [True]}, "u.toml:faults[0].unplug_at_s: must be a list of sim seconds"),
        (
            {"unplug_at_s": [60], "replug_after_s": -1},
            "u.toml:faults[0].replug_after_s: must be a number within 0..604800, got -1",
        ),
        (
            {"unplug_at_s": [60], "replug_after_s": "soon"},
            "u.toml:faults[0].replug_after_s: must be a number within",
        ),
        (
            {"replug_after_s": 60},
            "u.toml:faults[0].replug_after_s: needs unplug_at_s (when the car leaves)",
        ),
        (
            {"unplug_at_s": [100, 150], "replug_after_s": 60},
            "u.toml:faults[0].unplug_at_s: 150 comes before the car unplugged at 100 is back",
        ),
        ({"unplug_at": [60]}, "u.toml:faults[0].unplug_at: unknown key; allowed here:"),
    ],
)
def test_scenario_unplug_errors_name_file_and_key(faults: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(faults_scenario(faults), "u.toml")
    assert str(caught.value).startswith(expected)


def test_unknown_fault_key_lists_the_unplug_fields() -> None:
    with pytest.raises(ScenarioError, match="unplug_at_s, replug_after_s"):
        parse_scenario(faults_scenario({"explode": True}), "u.toml")


# ---- the station -------------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def since_start(st: SimulatedStation, payload: dict[str, Any]) -> float:
    """Sim seconds from the station's start to a recorded message's timestamp."""
    assert st.started_at is not None
    return (at(payload["timestamp"]) - st.started_at).total_seconds()


async def until(predicate: Any) -> None:
    """Poll a condition on the station (hang guard WAIT_S wall seconds)."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110 (a condition on sim time, no event)
            await asyncio.sleep(0.02)


async def discharging(csms: IndependentCsms, sid: str, st: SimulatedStation) -> str:
    """Q01 then a 5 kW discharge TxProfile on the running transaction; its id."""
    tx = await tx_id_of(csms, sid)
    await csms.wait_for(sid, "NotifyEVChargingNeeds")
    await allow_v2x(csms, sid, HW, tx)
    assert await set_profile(csms, sid, st.version, discharge_profile("2.1", tx, 5000.0)) == (
        "Accepted"
    )
    return tx


def ended(csms: IndependentCsms, sid: str) -> list[dict[str, Any]]:
    return [e for e in csms.recorded[sid].of("TransactionEvent") if e["eventType"] == "Ended"]


def started(csms: IndependentCsms, sid: str) -> list[dict[str, Any]]:
    return [e for e in csms.recorded[sid].of("TransactionEvent") if e["eventType"] == "Started"]


async def test_E10_unplug_at_ends_the_transaction_and_frees_the_connector() -> None:
    """Speed 600. While discharging, the car leaves at sim 900 s: TransactionEvent Ended
    (EVCommunicationLost, EVDisconnected) at that instant, the connector Available, no power,
    registers frozen; without replug_after_s no new transaction follows."""
    faults = FaultPlan(unplug_at_s=(900.0,))
    async with independent_csms() as csms:
        st = station(csms.url, "UP", HW, matched_ev(HW), meter_interval_s=60, faults=faults)
        async with running(st):
            tx = await discharging(csms, "UP", st)
            await csms.wait_for("UP", "TransactionEvent", lambda p: p["eventType"] == "Ended")
            frozen = st.snapshot()
            await until(lambda: (st.clock.now() - st.started_at).total_seconds() > 2400)
            later = st.snapshot()
    end = ended(csms, "UP")
    assert len(end) == 1 and end[0]["transactionInfo"]["transactionId"] == tx
    assert end[0]["triggerReason"] == "EVCommunicationLost"
    assert end[0]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert 900 <= since_start(st, end[0]) < 960, "at the planned instant (wake-up latency)"
    assert max(samples(csms.recorded["UP"].of("TransactionEvent"), "Power.Active.Export")) > 4000
    statuses = [p["connectorStatus"] for p in csms.recorded["UP"].of("StatusNotification")]
    assert statuses[-1] == "Available" and "Occupied" in statuses
    assert len(started(csms, "UP")) == 1, "the car stays away without replug_after_s"
    assert (frozen.power_w, frozen.transaction_id, frozen.state) == (0.0, None, "available")
    assert (later.import_wh, later.export_wh, later.power_w) == (
        frozen.import_wh,
        frozen.export_wh,
        0.0,
    )


async def test_E10_E02_replug_after_starts_a_new_transaction_at_the_soc_it_left_with() -> None:
    """Speed 600. Unplugged at sim 900 s while discharging, the same car is back 600 sim s
    later: a new transaction (CablePluggedIn) whose first SoC is the SoC of the Ended event,
    and the connector Occupied again."""
    faults = FaultPlan(unplug_at_s=(900.0,), replug_after_s=600.0)
    async with independent_csms() as csms:
        st = station(csms.url, "RP", HW, matched_ev(HW), meter_interval_s=60, faults=faults)
        async with running(st):
            first_tx = await discharging(csms, "RP", st)
            await csms.wait_for("RP", "TransactionEvent", lambda p: p["eventType"] == "Started", 2)
            await csms.wait_for("RP", "NotifyEVChargingNeeds", count=2)
    end, again = ended(csms, "RP")[0], started(csms, "RP")[1]
    assert again["triggerReason"] == "CablePluggedIn"
    assert again["transactionInfo"]["transactionId"] != first_tx
    assert 1500 <= since_start(st, again) < 1560
    left_soc = samples([end], "SoC")[0]
    assert left_soc < 60.0, "it left lower than it came: it was discharging"
    assert samples([again], "SoC")[0] == pytest.approx(left_soc, abs=0.01)
    statuses = [p["connectorStatus"] for p in csms.recorded["RP"].of("StatusNotification")]
    assert statuses[-1] == "Occupied" and "Available" in statuses


async def test_E04_unplug_while_offline_is_replayed_with_offline_true() -> None:
    """Speed 600. The link drops at sim 600 s for 1200 sim s and the car leaves at 900 s: the
    Ended event (created offline) arrives after the reconnect with offline=true, in seqNo
    order after the other offline events; the connector reports Available on reconnect."""
    faults = FaultPlan(drop_connection_at_s=(600.0,), offline_for_s=1200.0, unplug_at_s=(900.0,))
    async with independent_csms() as csms:
        st = station(csms.url, "UO", HW, matched_ev(HW), meter_interval_s=60, faults=faults)
        async with running(st):
            await tx_id_of(csms, "UO")
            await csms.wait_for("UO", "TransactionEvent", lambda p: p["eventType"] == "Ended")
            await csms.wait_for("UO", "StatusNotification", count=3)
            assert csms.connections["UO"] == 2
    events = csms.recorded["UO"].of("TransactionEvent")
    end = ended(csms, "UO")[0]
    assert end["offline"] is True
    assert 900 <= since_start(st, end) < 960
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    offline = [e for e in events if e.get("offline")]
    assert offline[-1] is end and len(offline) >= 4, "meter values of 600..900 s, then Ended"
    assert all(since_start(st, e) >= 600 for e in offline)
    made_offline = [e for e in events if 600 <= since_start(st, e) < 1800]
    assert made_offline == offline, "offline from the planned drop instant, not the close"
    assert csms.recorded["UO"].of("StatusNotification")[-1]["connectorStatus"] == "Available"


async def test_unplug_before_the_first_boot_takes_the_waiting_car_and_replug_brings_it() -> None:
    """Speed 600. A station that cannot reach its CSMS until after the planned unplug never
    starts the first session; the replugged car is the one that starts (its SoC unchanged)."""
    faults = FaultPlan(
        drop_connection_at_s=(0.0,), offline_for_s=600.0, unplug_at_s=(60.0,), replug_after_s=120.0
    )
    async with independent_csms() as csms:
        st = station(csms.url, "PB", HW, matched_ev(HW), soc_pct=42.0, faults=faults)
        async with running(st):
            first = await csms.wait_for(
                "PB", "TransactionEvent", lambda p: p["eventType"] == "Started"
            )
            await csms.wait_for("PB", "BootNotification")
    assert len(started(csms, "PB")) == 1 and not ended(csms, "PB")
    assert samples(first, "SoC")[0] == pytest.approx(42.0, abs=0.01)
    assert since_start(st, first[0]) >= 600, "the session began only once the station booted"
