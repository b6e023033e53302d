"""Block K (and the 2.1 V2X additions) over real websockets: the EV's needs and V2X
parameters, the station's reports on limits and profiles, the Dynamic-profile pull."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.store.models import ChargingProfileRecord, EvChargingNeeds, StationReport
from csms.store.queries import latest_ev_needs
from simclock import iso, parse_instant
from tests.handlers.support import add, rows
from tests.stations import connected

V2X = {
    "maxChargePower": 11000,
    "maxDischargePower": 9600,
    "minDischargePower": 1000,
    "evTargetEnergyRequest": 30000,
    "evMinEnergyRequest": 5000,
    "evMaxEnergyRequest": 45000,
    "evMinV2XEnergyRequest": -20000,
    "evMaxV2XEnergyRequest": 40000,
    "targetSoC": 80,
}
DC = {"evMaxCurrent": 200, "evMaxVoltage": 450, "evEnergyCapacity": 76100, "stateOfCharge": 55}


async def test_K15_Q01_v2x_needs_with_dc_bpt_offer_discharge(csms) -> None:
    needs = {
        "requestedEnergyTransfer": "DC_BPT",
        "availableEnergyTransfer": ["DC", "DC_BPT"],
        "controlMode": "ScheduledControl",
        "departureTime": "2026-07-16T07:00:00Z",
        "dcChargingParameters": DC,
        "v2xChargingParameters": V2X,
    }
    async with connected(csms, "CP-K15") as station:
        answer = await station.call(
            call21.NotifyEVChargingNeeds(
                evse_id=1, charging_needs=needs, timestamp=iso(datetime.now(UTC))
            )
        )
    assert answer.status == "Accepted"
    (row,) = await rows(csms, EvChargingNeeds, station_id="CP-K15")
    assert row.offers_bpt is True
    assert (row.evse_id, row.requested_energy_transfer) == (1, "DC_BPT")
    assert row.available_energy_transfer == ["DC", "DC_BPT"]
    assert row.control_mode == "ScheduledControl"
    assert row.departure_time == parse_instant("2026-07-16T07:00:00Z")
    assert row.v2x_parameters == V2X
    assert row.payload["chargingNeeds"]["dcChargingParameters"] == DC


@pytest.mark.parametrize(
    ("requested", "available", "bpt"),
    [("AC_three_phase", ["AC_three_phase", "AC_BPT_DER"], True), ("DC", ["DC"], False)],
)
async def test_K15_bpt_offer_is_read_from_requested_and_available_modes(
    csms, requested, available, bpt
) -> None:
    needs = {"requestedEnergyTransfer": requested, "availableEnergyTransfer": available}
    async with connected(csms, "CP-K15M") as station:
        await station.call(call21.NotifyEVChargingNeeds(evse_id=2, charging_needs=needs))
    (row,) = await rows(csms, EvChargingNeeds, station_id="CP-K15M")
    assert row.offers_bpt is bpt


async def test_K15_2_0_1_needs_carry_no_v2x_and_offer_no_discharge(csms) -> None:
    needs = {"requestedEnergyTransfer": "DC", "dcChargingParameters": DC}
    async with connected(csms, "CP-K15-201", "2.0.1") as station:
        answer = await station.call(call201.NotifyEVChargingNeeds(evse_id=1, charging_needs=needs))
    assert answer.status == "Accepted"
    (row,) = await rows(csms, EvChargingNeeds, station_id="CP-K15-201")
    assert row.offers_bpt is False
    assert row.v2x_parameters is None and row.available_energy_transfer is None
    assert row.control_mode is None and row.departure_time is None


async def test_K15_latest_needs_per_evse_are_what_counts(csms) -> None:
    bpt = {"requestedEnergyTransfer": "DC_BPT", "v2xChargingParameters": V2X}
    charge_only = {"requestedEnergyTransfer": "DC"}
    async with connected(csms, "CP-K15L") as station:
        await station.call(call21.NotifyEVChargingNeeds(evse_id=1, charging_needs=bpt))
        await station.call(call21.NotifyEVChargingNeeds(evse_id=2, charging_needs=bpt))
        await station.call(call21.NotifyEVChargingNeeds(evse_id=1, charging_needs=charge_only))
    async with csms.services.db.read() as session:
        evse1 = await latest_ev_needs(session, "CP-K15L", 1)
        evse2 = await latest_ev_needs(session, "CP-K15L", 2)
        evse3 = await latest_ev_needs(session, "CP-K15L", 3)
    assert evse1 is not None and evse1.offers_bpt is False  # a new car, charge-only
    assert evse2 is not None and evse2.offers_bpt is True
    assert evse3 is None


async def test_K17_ev_charging_schedule_is_accepted_and_kept(csms) -> None:
    schedule = {
        "id": 1,
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}],
    }
    async with connected(csms, "CP-K17") as station:
        answer = await station.call(
            call21.NotifyEVChargingSchedule(
                time_base="2026-07-15T18:00:00Z", charging_schedule=schedule, evse_id=1
            )
        )
    assert answer.status == "Accepted"
    (report,) = await rows(csms, StationReport, station_id="CP-K17")
    assert (report.kind, report.evse_id) == ("NotifyEVChargingSchedule", 1)
    assert report.payload["chargingSchedule"] == schedule


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_K12_K13_K09_limits_and_profile_reports_are_kept(csms, version) -> None:
    calls = call21 if version == "2.1" else call201
    profile = {
        "id": 12,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": 1,
                "startSchedule": "2026-07-15T00:00:00Z",
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
            }
        ],
    }
    async with connected(csms, "CP-K12", version) as station:
        await station.call(
            calls.NotifyChargingLimit(
                charging_limit={"chargingLimitSource": "EMS", "isGridCritical": True}, evse_id=1
            )
        )
        await station.call(calls.ClearedChargingLimit(charging_limit_source="EMS"))
        await station.call(
            calls.ReportChargingProfiles(
                request_id=5, charging_limit_source="CSO", charging_profile=[profile], evse_id=1
            )
        )
    reports = await rows(csms, StationReport, station_id="CP-K12")
    assert [(r.kind, r.evse_id, r.status) for r in reports] == [
        ("NotifyChargingLimit", 1, "EMS"),
        ("ClearedChargingLimit", 0, "EMS"),
        ("ReportChargingProfiles", 1, "CSO"),
    ]
    assert reports[0].payload["chargingLimit"]["isGridCritical"] is True
    assert reports[2].payload["chargingProfile"] == [profile]


def dynamic_profile(profile_id: int, start: datetime) -> dict:
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Dynamic",
            "transactionId": "tx-1",
            "dynUpdateInterval": 60,
            "chargingSchedule": [
                {
                    "id": 1,
                    "startSchedule": iso(start),
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [
                        {
                            "startPeriod": 0,
                            "operationMode": "CentralSetpoint",
                            "limit": 11000,
                            "dischargeLimit": -9600,
                            "setpoint": -5000,
                        },
                        {
                            "startPeriod": 3600,
                            "operationMode": "CentralSetpoint",
                            "limit": 11000,
                            "dischargeLimit": -9600,
                            "setpoint": -3000,
                            "setpoint_L2": -1000,
                        },
                    ],
                }
            ],
        },
    }


def profile_record(
    station_id: str, profile_id: int, status: str, request: dict
) -> ChargingProfileRecord:
    return ChargingProfileRecord(
        station_id=station_id,
        evse_id=1,
        profile_id=profile_id,
        stack_level=1,
        purpose="TxProfile",
        kind="Dynamic",
        transaction_id="tx-1",
        discharges=True,
        status=status,
        request=request,
    )


async def test_Q04_pull_dynamic_schedule_update_answers_the_current_period(csms) -> None:
    async with connected(csms, "CP-Q04") as station:
        await station.call(call21.Heartbeat())  # the station row exists once it has spoken
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        in_an_hour = datetime.now(UTC) + timedelta(hours=1)
        await add(
            csms,
            profile_record("CP-Q04", 31, "Accepted", dynamic_profile(31, two_hours_ago)),
            profile_record("CP-Q04", 32, "Accepted", dynamic_profile(32, in_an_hour)),
            profile_record("CP-Q04", 33, "Rejected", dynamic_profile(33, two_hours_ago)),
        )
        current = await station.call(call21.PullDynamicScheduleUpdate(charging_profile_id=31))
        not_started = await station.call(call21.PullDynamicScheduleUpdate(charging_profile_id=32))
        rejected = await station.call(call21.PullDynamicScheduleUpdate(charging_profile_id=33))
        unknown = await station.call(call21.PullDynamicScheduleUpdate(charging_profile_id=99))
    assert current.status == "Accepted"
    # the library's snake_case names this `setpoint_l2`; on the wire it is setpoint_L2
    assert current.schedule_update == {
        "limit": 11000,
        "discharge_limit": -9600,
        "setpoint": -3000,
        "setpoint_l2": -1000,
    }
    assert not_started.status == "Accepted"
    assert not_started.schedule_update["setpoint"] == -5000
    for refused in (rejected, unknown):
        assert refused.status == "Rejected" and refused.schedule_update is None
        assert refused.status_info["reason_code"] == "UnknownProfile"


async def test_Q04_pull_answers_the_last_accepted_dynamic_update(csms) -> None:
    pushed = {"limit": 11000, "dischargeLimit": -9600, "setpoint": -7200}
    record = profile_record("CP-Q04U", 41, "Accepted", dynamic_profile(41, datetime.now(UTC)))
    record.schedule_update = pushed
    record.schedule_updated_at = datetime.now(UTC)
    async with connected(csms, "CP-Q04U") as station:
        await station.call(call21.Heartbeat())
        await add(csms, record)
        answer = await station.call(call21.PullDynamicScheduleUpdate(charging_profile_id=41))
    assert answer.status == "Accepted"
    assert answer.schedule_update == {"limit": 11000, "discharge_limit": -9600, "setpoint": -7200}


async def test_K15_needs_are_bound_to_the_transaction_running_when_they_arrive(csms) -> None:
    """The needs speak for the car of the running transaction (the gate relies on it)."""
    now = iso(datetime.now(UTC))
    needs = {"requestedEnergyTransfer": "DC_BPT", "dcChargingParameters": DC}
    async with connected(csms, "CP-K15-TX") as station:
        await station.call(call21.NotifyEVChargingNeeds(evse_id=1, charging_needs=needs))
        await station.call(
            call21.TransactionEvent(
                event_type="Started",
                timestamp=now,
                trigger_reason="CablePluggedIn",
                seq_no=0,
                transaction_info={"transactionId": "tx-k15"},
                evse={"id": 1, "connectorId": 1},
            )
        )
        await station.call(call21.NotifyEVChargingNeeds(evse_id=1, charging_needs=needs))
    before, during = await rows(csms, EvChargingNeeds, station_id="CP-K15-TX")
    assert (before.transaction_id, during.transaction_id) == (None, "tx-k15")
