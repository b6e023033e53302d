"""Boot-time configuration (DESIGN §3.9) after BootNotification, end to end."""

from __future__ import annotations

from typing import Any

from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v21 import call_result as result21
from sqlalchemy.orm import Session
from sqlmodel import select

from csms.handlers.provisioning import upsert_variables
from csms.store.models import Station, VariableSetResult
from tests.commands.helpers import CommandStation21, boot, received, wait_until
from tests.stations import connected


async def _results(csms: Any, station_id: str) -> list[VariableSetResult]:
    async with csms.services.db.read() as session:
        query = (
            select(VariableSetResult)
            .where(VariableSetResult.station_id == station_id)
            .order_by(VariableSetResult.id)
        )
        return list((await session.execute(query)).scalars())


async def _station(csms: Any, station_id: str) -> Station:
    async with csms.services.db.read() as session:
        station = await session.get(Station, station_id)
    assert station is not None
    return station


async def test_B01_boot_configuration_is_sent_and_recorded(csms) -> None:
    async with connected(csms, "CP-BOOT21", station_class=CommandStation21) as station:
        await boot(station)

        async def recorded() -> bool:
            return len(await _results(csms, "CP-BOOT21")) == 3

        await wait_until(recorded, "boot configuration recorded")
        sent = received(station, "SetVariables")[0]["set_variable_data"]
    names = {(d["component"]["name"], d["variable"]["name"]) for d in sent}
    assert names == {
        ("SampledDataCtrlr", "TxUpdatedMeasurands"),
        ("AlignedDataCtrlr", "Interval"),
        ("OCPPCommCtrlr", "MessageAttempts"),
    }
    rows = await _results(csms, "CP-BOOT21")
    assert {r.status for r in rows} == {"Accepted"}
    assert {r.purpose for r in rows} == {"boot-configuration"}
    assert ("MessageAttempts", "TransactionEvent") in {
        (r.variable, r.variable_instance) for r in rows
    }
    assert (await _station(csms, "CP-BOOT21")).boot_configured_at is not None


class RejectingStation(CommandStation21):
    """Rejects the aligned-data interval, accepts the rest; has V2X on EVSE 1."""

    __test__ = False

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self.received.append(("SetVariables", {"set_variable_data": set_variable_data}))
        return result21.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Rejected"
                    if d["variable"]["name"] == "Interval"
                    else "Accepted",
                    "attribute_status_info": {"reason_code": "ReadOnly"},
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in set_variable_data
            ]
        )


async def test_B05_rejected_entry_is_recorded_and_station_stays_unconfigured(csms_sqlite) -> None:
    csms = csms_sqlite
    async with connected(csms, "CP-BOOTREJ", station_class=RejectingStation) as station:
        await boot(station)

        def device_model(session: Session) -> None:
            row = {
                "component": "V2XChargingCtrlr",
                "evse_id": 1,
                "variable": "Enabled",
                "value": "false",
            }
            upsert_variables(session, "CP-BOOTREJ", [row])

        async def first_done() -> bool:
            return len(await _results(csms, "CP-BOOTREJ")) == 3

        await wait_until(first_done, "first boot configuration recorded")
        await csms.services.writer.write(device_model)
        result = await csms.services.commands.configure_station("CP-BOOTREJ", force=False)
    # Only what differs is sent the second time: the rejected interval and V2X on EVSE 1.
    assert [(s.key.component, s.key.variable) for s in result.sent] == [
        ("AlignedDataCtrlr", "Interval"),
        ("V2XChargingCtrlr", "Enabled"),
    ]
    assert result.statuses == ("Rejected", "Accepted") and not result.configured
    rows = await _results(csms, "CP-BOOTREJ")
    rejected = [r for r in rows if r.status == "Rejected"]
    assert len(rejected) == 2 and rejected[0].reason == "ReadOnly"
    assert (await _station(csms, "CP-BOOTREJ")).boot_configured_at is None


class FailingStation(CommandStation21):
    __test__ = False

    @on("SetVariables")
    async def on_set_variables(self, **kw: Any) -> Any:
        raise InternalError(description="device model locked")


async def test_B05_call_failure_is_recorded_as_error_rows(csms_sqlite) -> None:
    csms = csms_sqlite
    async with connected(csms, "CP-BOOTERR", station_class=FailingStation) as station:
        await boot(station)

        async def recorded() -> bool:
            return len(await _results(csms, "CP-BOOTERR")) == 3

        await wait_until(recorded, "error rows recorded")
    rows = await _results(csms, "CP-BOOTERR")
    assert {r.status for r in rows} == {"Error"}
    assert all(r.reason.startswith("call-error") for r in rows)
    assert (await _station(csms, "CP-BOOTERR")).boot_configured_at is None


async def test_B07_first_boot_asks_for_the_device_model_then_enables_v2x(csms_sqlite) -> None:
    """A first boot cannot know whether the station has V2XChargingCtrlr: the CSMS asks for a
    FullInventory report, and the complete report leads to V2XChargingCtrlr.Enabled = true
    (DESIGN §3.9). Simulated dcbel Ara at speed 600; waits are polls under the test timeout."""
    from simulators.catalog import hardware_models
    from tests.simulators.test_station_models import matched_ev, running, station

    hw = hardware_models()["dcbel-ara"]
    url = f"ws://127.0.0.1:{csms_sqlite.ocpp_port}/ocpp"
    sim = station(url, "CP-B07-V2X", hw, matched_ev(hw))

    async def v2x_enabled() -> list[VariableSetResult]:
        rows = await _results(csms_sqlite, "CP-B07-V2X")
        return [r for r in rows if r.component == "V2XChargingCtrlr" and r.status == "Accepted"]

    async with running(sim):
        await wait_until(v2x_enabled, "V2XChargingCtrlr.Enabled set after the device report")
    enabled = await v2x_enabled()
    assert [(r.variable, r.value, r.evse_id) for r in enabled] == [("Enabled", "true", 1)]
    assert (await _station(csms_sqlite, "CP-B07-V2X")).boot_configured_at is not None
