"""The one discharge gate (DESIGN §3.6): what counts as discharging, and checks (a) and (b)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy.orm import Session

from csms.gate import (
    FOUNDATION_CHECKS,
    GateContext,
    GateDecision,
    check_discharge,
    profile_discharges,
)
from csms.store.models import Station
from ocppj.versions import V21, V201
from tests.commands.helpers import (
    charging_profile,
    discharge_profile_21,
    negative_limit_profile_201,
    seed_needs,
    seed_transaction,
)


def with_period(**period: Any) -> dict[str, Any]:
    request = charging_profile("TxProfile")
    request["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"] = [
        {"startPeriod": 0, "limit": 7000.0},
        {"startPeriod": 600, **period},
    ]
    return request


@pytest.mark.parametrize(
    "period",
    [
        {"setpoint": -1.0},
        {"dischargeLimit": -5000.0},
        {"limit": -3000.0},
        {"limit": 3000.0, "limit_L2": -1000.0},
        {"setpoint": 500.0, "setpoint_L3": -200.0},
        {"dischargeLimit_L2": -10.0},
    ],
)
def test_Q03_negative_setpoint_limit_or_discharge_limit_discharges(period) -> None:
    assert profile_discharges(with_period(**period))


@pytest.mark.parametrize(
    "period",
    [
        {"limit": 0.0},
        {"setpoint": 0.0, "dischargeLimit": 0.0},
        {"limit": 11000.0, "setpoint": 7000.0, "operationMode": "CentralSetpoint"},
        {"limit": 16.0, "numberPhases": 1},
    ],
)
def test_charging_only_profiles_do_not_discharge(period) -> None:
    assert not profile_discharges(with_period(**period))


def test_Q04_dynamic_update_with_negative_setpoint_discharges() -> None:
    assert profile_discharges({"chargingProfileId": 1, "scheduleUpdate": {"setpoint": -2.0}})
    assert not profile_discharges({"chargingProfileId": 1, "scheduleUpdate": {"limit": 2.0}})


async def _decide(csms: Any, station_id: str, version: Any, request: dict[str, Any], **kw: Any):
    async with csms.services.db.read() as session:
        return await check_discharge(
            session,
            station_id=station_id,
            version=version,
            evse_id=request["evseId"],
            profile=request["chargingProfile"],
            **kw,
        )


async def _station(csms: Any, station_id: str, version: str, negative: bool = False) -> None:
    def unit(session: Session) -> None:
        session.add(Station(id=station_id, ocpp_version=version, accepts_negative_limits=negative))

    await csms.services.writer.write(unit)


async def test_Q01_capability_21_needs_the_evs_bpt_offer_then_the_transaction(csms) -> None:
    await _station(csms, "G21", "2.1")
    request = discharge_profile_21("tx-g21")
    no_needs = await _decide(csms, "G21", V21, request)
    assert (no_needs.allowed, no_needs.check) == (False, "capability")
    await seed_needs(csms, "G21", 1, requested="DC", available=["DC"])
    charging_only = await _decide(csms, "G21", V21, request)
    assert charging_only.check == "capability" and "offered: DC" in charging_only.reason
    await seed_needs(csms, "G21", 1, requested="DC", available=["DC", "DC_BPT"])
    no_tx = await _decide(csms, "G21", V21, request)
    assert (no_tx.allowed, no_tx.check) == (False, "transaction")
    await seed_transaction(csms, "G21", 1, "tx-other")
    wrong_tx = await _decide(csms, "G21", V21, request)
    assert wrong_tx.check == "transaction" and "tx-other" in wrong_tx.reason
    await seed_transaction(csms, "G21", 1, "tx-g21")
    assert await _decide(csms, "G21", V21, request) == GateDecision(
        True, "every discharge check passed", "all"
    )
    # The latest needs count: a later charging-only EV on the EVSE closes the gate again.
    await seed_needs(csms, "G21", 1, requested="DC")
    assert (await _decide(csms, "G21", V21, request)).check == "capability"


async def test_capability_201_is_the_operators_mark(csms_sqlite) -> None:
    csms = csms_sqlite
    await _station(csms, "G201", "2.0.1")
    await _station(csms, "G201-NEG", "2.0.1", negative=True)
    for station_id in ("G201", "G201-NEG"):
        await seed_transaction(csms, station_id, 1, "tx-201")
    request = negative_limit_profile_201("tx-201")
    unmarked = await _decide(csms, "G201", V201, request)
    assert unmarked.check == "capability" and "accepts_negative_limits" in unmarked.reason
    assert (await _decide(csms, "G201-NEG", V201, request)).allowed
    setpoint = copy.deepcopy(request)
    setpoint["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0] = {
        "startPeriod": 0,
        "setpoint": -5000.0,
    }
    refused = await _decide(csms, "G201-NEG", V201, setpoint)
    assert refused.check == "version" and "setpoint" in refused.reason


@pytest.mark.parametrize("purpose", ["TxDefaultProfile", "ChargingStationMaxProfile"])
async def test_K01_discharging_default_or_station_max_profile_is_always_refused(
    csms_sqlite, purpose
) -> None:
    csms = csms_sqlite
    await _station(csms, "GDEF", "2.1")
    await seed_needs(csms, "GDEF", 1)
    await seed_transaction(csms, "GDEF", 1, "tx-def")
    request = discharge_profile_21("tx-def")
    request["chargingProfile"]["chargingProfilePurpose"] = purpose
    decision = await _decide(csms, "GDEF", V21, request)
    assert (decision.allowed, decision.check) == (False, "purpose")
    assert "next car" in decision.reason


async def test_gate_takes_further_checks_without_changes(csms_sqlite) -> None:
    """The V2G issue adds (c)-(e) as more small checks in the list."""
    csms = csms_sqlite
    await _station(csms, "GEXT", "2.1")
    await seed_needs(csms, "GEXT", 1)
    await seed_transaction(csms, "GEXT", 1, "tx-ext")
    seen: list[GateContext] = []

    async def soc_floor(ctx: GateContext) -> str | None:
        seen.append(ctx)
        return "would take the car below its owner's floor" if ctx.origin == "api" else None

    checks = [*FOUNDATION_CHECKS, ("soc-floor", soc_floor)]
    request = discharge_profile_21("tx-ext")
    refused = await _decide(csms, "GEXT", V21, request, checks=checks, origin="api")
    assert (refused.allowed, refused.check) == (False, "soc-floor")
    allowed = await _decide(csms, "GEXT", V21, request, checks=checks, origin="dispatcher")
    assert allowed.allowed
    assert seen[0].latest_needs is not None and seen[0].latest_needs.offers_bpt
    assert [tx.transaction_id for tx in seen[0].running] == ["tx-ext"]


async def test_Q01_needs_from_an_earlier_transaction_do_not_vouch_for_the_next_car(csms) -> None:
    """(a) is about the car plugged in now: BPT needs that arrived during transaction 1 open
    no gate for transaction 2 until that car offers BPT itself."""
    await _station(csms, "G-NEXT", "2.1")
    await seed_needs(csms, "G-NEXT", 1, requested="DC_BPT", transaction_id="tx-first-car")
    await seed_transaction(csms, "G-NEXT", 1, "tx-next-car")
    request = discharge_profile_21("tx-next-car")
    stale = await _decide(csms, "G-NEXT", V21, request)
    assert (stale.allowed, stale.check) == (False, "capability")
    assert "tx-first-car" in stale.reason and "has not offered" in stale.reason
    await seed_needs(csms, "G-NEXT", 1, requested="DC_BPT", transaction_id="tx-next-car")
    assert (await _decide(csms, "G-NEXT", V21, request)).allowed
