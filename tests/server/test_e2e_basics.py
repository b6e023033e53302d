"""The server end to end over real websockets, on SQLite and PostgreSQL."""

from __future__ import annotations

from ocpp.v21 import call
from ocpp.v21.datatypes import ChargingStationType
from sqlmodel import select

from csms.store.models import Station
from tests.stations import connected


async def test_boot_notification_is_accepted_and_stored(csms) -> None:
    async with connected(csms, "CP-B01") as station:
        answer = await station.call(
            call.BootNotification(
                charging_station=ChargingStationType(
                    vendor_name="dcbel", model="Ara", firmware_version="3.2.1"
                ),
                reason="PowerUp",
            )
        )
        assert answer.status == "Accepted"
        assert answer.interval == csms.settings.heartbeat_interval_s
        heartbeat = await station.call(call.Heartbeat())
        assert heartbeat.current_time.endswith("Z")
    async with csms.services.db.read() as session:
        stored = (await session.execute(select(Station).where(Station.id == "CP-B01"))).scalar_one()
    assert (stored.vendor, stored.model, stored.firmware_version) == ("dcbel", "Ara", "3.2.1")
    assert stored.ocpp_version == "2.1"
