"""Connectivity (issue 4 point 6) against the independent `ocpp`-library CSMS: profiles keep
running while disconnected (Q11) and end with their schedule, the offline queue is replayed in
order with offline=true (E04), failed transaction messages are retried (E13), and the fault
plan's knobs work. Clock speed 600 unless a test says otherwise."""

from __future__ import annotations

import asyncio

from ocpp.v21 import call as call21

from simulators.catalog import get_hardware
from simulators.faults import FaultPlan
from tests.simulators.independent_csms import independent_csms
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


async def test_Q11_E04_profile_runs_offline_ends_with_schedule_and_queue_replays_in_order() -> None:
    """Speed 600. A 600-sim-s discharge profile; the link drops at sim 900 s for 1800 sim s.
    Offline the car keeps exporting until the schedule ends, then charges again; on reconnect
    every TransactionEvent made offline arrives in seqNo order with offline=true."""
    faults = FaultPlan(drop_connection_at_s=(900.0,), offline_for_s=1800.0)
    async with independent_csms() as csms:
        st = station(csms.url, "Q11", HW, matched_ev(HW), meter_interval_s=60, faults=faults)
        async with running(st):
            tx = await tx_id_of(csms, "Q11")
            await csms.wait_for("Q11", "NotifyEVChargingNeeds")
            await allow_v2x(csms, "Q11", HW, tx)
            profile = discharge_profile("2.1", tx, 5000.0, duration_s=1500)
            profile["maxOfflineDuration"] = 3600
            assert await set_profile(csms, "Q11", "2.1", profile) == "Accepted"
            offline = await csms.wait_for(
                "Q11", "TransactionEvent", lambda p: p.get("offline") is True, count=20
            )
            assert csms.connections["Q11"] == 2
    events = csms.recorded["Q11"].of("TransactionEvent")
    seq = [e["seqNo"] for e in events]
    assert seq == list(range(len(seq))), "in order, none lost, none twice"
    assert all(e["timestamp"] >= offline[0]["timestamp"] for e in offline)
    exported = samples(offline, "Power.Active.Export")
    imported = samples(offline, "Power.Active.Import")
    assert max(exported) > 4000, "the profile kept discharging while offline (Q11)"
    assert exported[-1] == 0 and imported[-1] > 0, "its schedule ended: charging again"


async def test_Q12_max_offline_duration_stops_discharge_while_offline() -> None:
    """Speed 600. maxOfflineDuration 300 s: 300 sim s after the drop the profile no longer
    applies, so the station falls back to charging although its schedule runs on."""
    faults = FaultPlan(drop_connection_at_s=(600.0,), offline_for_s=1800.0)
    async with independent_csms() as csms:
        st = station(csms.url, "Q12", HW, matched_ev(HW), meter_interval_s=60, faults=faults)
        async with running(st):
            tx = await tx_id_of(csms, "Q12")
            await csms.wait_for("Q12", "NotifyEVChargingNeeds")
            await allow_v2x(csms, "Q12", HW, tx)
            profile = discharge_profile("2.1", tx, 5000.0, duration_s=7200)
            profile["maxOfflineDuration"] = 300
            assert await set_profile(csms, "Q12", "2.1", profile) == "Accepted"
            offline = await csms.wait_for(
                "Q12", "TransactionEvent", lambda p: p.get("offline") is True, count=25
            )
    exported = samples(offline, "Power.Active.Export")
    assert max(exported[:4]) > 4000
    assert exported[-1] == 0 and samples(offline, "Power.Active.Import")[-1] > 0


async def test_E13_transaction_event_retried_after_callerror() -> None:
    """Speed 600. The CSMS answers two TransactionEvents with a CALLERROR; with
    MessageAttempts 5 and MessageAttemptInterval 0 the same event is resent until accepted."""
    async with independent_csms() as csms:
        st = station(csms.url, "E13", HW, matched_ev(HW), meter_interval_s=60)
        async with running(st):
            await tx_id_of(csms, "E13")
            await csms.wait_for("E13", "NotifyEVChargingNeeds")
            settings = [
                ("MessageAttempts", "5"),
                ("MessageAttemptInterval", "0"),
            ]
            data = [
                {
                    "attribute_value": value,
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": name, "instance": "TransactionEvent"},
                }
                for name, value in settings
            ]
            await csms.call("E13", call21.SetVariables(set_variable_data=data))
            csms.points["E13"].fail_transaction_events = 2
            failed = await csms.wait_for("E13", "TransactionEvent!failed", count=2)
            mark = failed[0]["seqNo"]
            delivered = await csms.wait_for(
                "E13", "TransactionEvent", lambda p: p["seqNo"] >= mark, count=2
            )
    assert failed[0]["seqNo"] == failed[1]["seqNo"] == delivered[0]["seqNo"]
    assert delivered[1]["seqNo"] == mark + 1


async def test_fault_plan_rejects_profiles_and_delays_answers() -> None:
    """FaultPlan.reject_profiles answers Rejected; answer_delay_s (wall) still answers."""
    faults = FaultPlan(reject_profiles=True, answer_delay_s=0.2)
    async with independent_csms() as csms:
        st = station(csms.url, "FP", HW, matched_ev(HW), faults=faults)
        async with running(st):
            tx = await tx_id_of(csms, "FP")
            status = await set_profile(csms, "FP", "2.1", discharge_profile("2.1", tx, 1000.0))
    assert status == "Rejected"


async def test_derate_to_zero_faults_the_evse_and_stops_power() -> None:
    """Speed 600. A derate step to 0 at sim 300 s: StatusNotification Faulted, no power."""
    faults = FaultPlan(derate=((300.0, 0.0),))
    async with independent_csms() as csms:
        st = station(csms.url, "DR", HW, matched_ev(HW), meter_interval_s=60, faults=faults)
        async with running(st):
            await csms.wait_for(
                "DR", "StatusNotification", lambda p: p["connectorStatus"] == "Faulted"
            )
            mark = len(csms.recorded["DR"].of("TransactionEvent"))
            events = await csms.wait_for("DR", "TransactionEvent", count=mark + 3)
            assert st.snapshot().state == "faulted"
    assert samples(events[mark + 1 :], "Power.Active.Import") == [0.0, 0.0]


async def test_reconnect_with_backoff_after_the_csms_restarts() -> None:
    """The station reconnects by itself (wall-clock back-off) and does not boot again."""
    async with independent_csms() as csms:
        st = station(csms.url, "RC", HW, None)
        async with running(st):
            await csms.wait_for("RC", "StatusNotification")
            await csms.points["RC"]._connection.close()  # type: ignore[attr-defined]
            while csms.connections.get("RC", 0) < 2:  # noqa: ASYNC110 (a counter, no event)
                await asyncio.sleep(0.02)
            await csms.wait_for("RC", "StatusNotification", count=2)
    assert len(csms.recorded["RC"].of("BootNotification")) == 1
