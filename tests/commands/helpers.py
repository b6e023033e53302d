"""Test stations that answer every command, and seeding of the rows the gate reads.

Until the station->CSMS handlers for TransactionEvent and NotifyEVChargingNeeds exist, the
tests write those rows directly through the group-commit writer, as the handlers will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v21.datatypes import ChargingStationType
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.datatypes import ChargingStationType as ChargingStationType201
from sqlalchemy.orm import Session

from csms.runtime import CentralSystem
from csms.store.models import EvChargingNeeds, Transaction
from csms.store.types import utcnow
from tests.stations import TestStation21, TestStation201

HANG_GUARD_S = 20.0  # generous: a hang fails the test instead of blocking the suite


def _answering(action: str, make: Callable[[dict[str, Any]], Any]) -> Any:
    """A handler that records the request and answers `make(request)`, or misbehaves as the
    test asked (`self.fail_action` -> CALLERROR; `self.hold_action` -> wait for release)."""

    async def handler(self: Any, **kwargs: Any) -> Any:
        self.received.append((action, kwargs))
        if self.fail_action == action:
            raise InternalError(description=f"{action} broke on purpose")
        if self.hold_action == action:
            await self.release.wait()
        return make(kwargs)

    # The library finds handlers by function name: give each its own.
    handler.__name__ = handler.__qualname__ = f"on_{action}"
    return on(action)(handler)


def _composite(kw: dict[str, Any]) -> Any:
    return result21.GetCompositeSchedule(
        status="Accepted",
        schedule={
            "evse_id": kw["evse_id"],
            "duration": kw["duration"],
            "schedule_start": "2026-07-15T19:00:00Z",
            "charging_rate_unit": kw.get("charging_rate_unit", "W"),
            "charging_schedule_period": [{"start_period": 0, "limit": 7000.0}],
        },
    )


def _variables(kw: dict[str, Any]) -> Any:
    return result21.GetVariables(
        get_variable_result=[
            {
                "attribute_status": "Accepted",
                "attribute_value": "900",
                "component": d["component"],
                "variable": d["variable"],
            }
            for d in kw["get_variable_data"]
        ]
    )


ANSWERS_21: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ClearChargingProfile": lambda kw: result21.ClearChargingProfile("Accepted"),
    "GetChargingProfiles": lambda kw: result21.GetChargingProfiles("NoProfiles"),
    "GetCompositeSchedule": _composite,
    "RequestStartTransaction": lambda kw: result21.RequestStartTransaction(
        "Accepted", transaction_id="tx-remote"
    ),
    "RequestStopTransaction": lambda kw: result21.RequestStopTransaction("Accepted"),
    "GetVariables": _variables,
    "GetBaseReport": lambda kw: result21.GetBaseReport("Accepted"),
    "TriggerMessage": lambda kw: result21.TriggerMessage("Accepted"),
    "Reset": lambda kw: result21.Reset("Scheduled"),
    "UpdateFirmware": lambda kw: result21.UpdateFirmware("Accepted"),
    "GetLog": lambda kw: result21.GetLog("Accepted", filename="log.tgz"),
    "NotifyAllowedEnergyTransfer": lambda kw: result21.NotifyAllowedEnergyTransfer("Accepted"),
    "UpdateDynamicSchedule": lambda kw: result21.UpdateDynamicSchedule("Accepted"),
    "SetDERControl": lambda kw: result21.SetDERControl("Accepted"),
    "GetDERControl": lambda kw: result21.GetDERControl("NotFound"),
    "ClearDERControl": lambda kw: result21.ClearDERControl("Accepted"),
}
ANSWERS_201: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ClearChargingProfile": lambda kw: result201.ClearChargingProfile("Accepted"),
    "GetCompositeSchedule": lambda kw: result201.GetCompositeSchedule("Rejected"),
    "Reset": lambda kw: result201.Reset("Accepted"),
    "RequestStopTransaction": lambda kw: result201.RequestStopTransaction("Rejected"),
}


class _Misbehaving:
    """What a test can make a station do wrong."""

    def _init_misbehaviour(self) -> None:
        self.fail_action: str | None = None
        self.hold_action: str | None = None
        self.release = asyncio.Event()


class CommandStation21(TestStation21, _Misbehaving):
    """A 2.1 station answering every command of csms.commands."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_misbehaviour()


class CommandStation201(TestStation201, _Misbehaving):
    """A 2.0.1 station answering the commands 2.0.1 has."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_misbehaviour()


for _cls, _answers in ((CommandStation21, ANSWERS_21), (CommandStation201, ANSWERS_201)):
    for _action, _make in _answers.items():
        setattr(_cls, f"on_{_action}", _answering(_action, _make))


async def boot(station: Any, version: str = "2.1") -> None:
    """BootNotification; once answered, the Station row is committed (and the boot-time
    configuration starts in the background)."""
    if version == "2.1":
        request: Any = call21.BootNotification(
            charging_station=ChargingStationType(vendor_name="Test", model="Bidi"),
            reason="PowerUp",
        )
    else:
        request = call201.BootNotification(
            charging_station=ChargingStationType201(vendor_name="Test", model="Bidi"),
            reason="PowerUp",
        )
    answer = await station.call(request)
    assert answer.status == "Accepted"


async def seed_transaction(
    csms: CentralSystem, station_id: str, evse_id: int, transaction_id: str
) -> None:
    def unit(session: Session) -> None:
        session.add(
            Transaction(
                station_id=station_id,
                transaction_id=transaction_id,
                evse_id=evse_id,
                connector_id=1,
                started_at=utcnow(),
                charging_state="Charging",
                last_seq_no=0,
            )
        )

    await csms.services.writer.write(unit)


async def seed_needs(
    csms: CentralSystem,
    station_id: str,
    evse_id: int,
    *,
    requested: str = "DC_BPT",
    available: list[str] | None = None,
    transaction_id: str | None = None,
) -> None:
    modes = [requested, *(available or [])]

    def unit(session: Session) -> None:
        session.add(
            EvChargingNeeds(
                station_id=station_id,
                evse_id=evse_id,
                requested_energy_transfer=requested,
                available_energy_transfer=available,
                control_mode="DynamicControl",
                offers_bpt=any("BPT" in mode for mode in modes),
                transaction_id=transaction_id,
                payload={"requestedEnergyTransfer": requested},
            )
        )

    await csms.services.writer.write(unit)


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until true; fail after the hang guard (not a timing assertion)."""
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                if await condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"hang guard ({HANG_GUARD_S:g} s): {what}") from None


def discharge_profile_21(transaction_id: str, *, profile_id: int = 7) -> dict[str, Any]:
    """Q03/Q04: a 2.1 TxProfile discharging 7 kW with CentralSetpoint, bound to the
    transaction; setpoint within [dischargeLimit, limit]; chargingRateUnit W."""
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": transaction_id,
            "maxOfflineDuration": 900,
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "W",
                    "startSchedule": "2026-07-15T19:00:00Z",
                    "duration": 3600,
                    "chargingSchedulePeriod": [
                        {
                            "startPeriod": 0,
                            "operationMode": "CentralSetpoint",
                            "setpoint": -7000.0,
                            "dischargeLimit": -11000.0,
                            "limit": 11000.0,
                        }
                    ],
                }
            ],
        },
    }


def negative_limit_profile_201(transaction_id: str) -> dict[str, Any]:
    """A 2.0.1 TxProfile discharging through a negative limit (W)."""
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": 8,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": transaction_id,
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "W",
                    "startSchedule": "2026-07-15T19:00:00Z",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": -6000.0}],
                }
            ],
        },
    }


def charging_profile(purpose: str = "TxDefaultProfile", limit: float = 7400.0) -> dict[str, Any]:
    """A plain charging-only profile (both versions)."""
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": 3,
            "stackLevel": 0,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
                }
            ],
        },
    }


def received(station: Any, action: str) -> list[dict[str, Any]]:
    return [payload for name, payload in station.received if name == action]
