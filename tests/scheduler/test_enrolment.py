"""Enrolment (DOMAIN.md promises 1-3): checks against programs, EV models and the hardware
catalog, matched pairs refused with the reason, the participant told, withdrawal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ocpp.v21 import call as call21
from ocpp.v21.datatypes import ChargingStationType
from pydantic import ValidationError
from sqlalchemy import select

from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.enrolment import EnrolmentError, EnrolmentRequest, enrol, withdraw
from csms.store.models import Enrollment, Notification, Station, Vehicle
from simulators.catalog import hardware_models
from tests.commands.helpers import wait_until
from tests.stations import connected


def request(**fields: Any) -> EnrolmentRequest:
    values: dict[str, Any] = {
        "participant": "Ana Silva",
        "vehicle_model": "nissan-leaf-40",
        "station_id": "ARA-1",
        "evse_model": "dcbel-ara",
        "programs": ["connected-solutions"],
        "min_soc_pct": 40.0,
        "departure_time": "07:30",
    }
    values.update(fields)
    return EnrolmentRequest(**values)


async def boot_as(csms: Any, station_id: str, hardware_id: str) -> None:
    """A real station connects and boots with the catalog product's vendor and model."""
    hw = hardware_models()[hardware_id]
    async with connected(csms, station_id) as station:
        answer = await station.call(
            call21.BootNotification(
                charging_station=ChargingStationType(vendor_name=hw.vendor_name, model=hw.model),
                reason="PowerUp",
            )
        )
        assert answer.status == "Accepted"


async def notifications(csms: Any, enrollment_id: int | None) -> list[Notification]:
    async with csms.services.db.read() as session:
        query = select(Notification).where(Notification.enrollment_id == enrollment_id)
        return list((await session.execute(query.order_by(Notification.id))).scalars())


async def refused(csms: Any, req: EnrolmentRequest) -> EnrolmentError:
    with pytest.raises(EnrolmentError) as info:
        await enrol(csms.services, req)
    return info.value


async def test_enrolment_stores_vehicle_and_enrolment_and_tells_the_participant(csms) -> None:
    row = await enrol(csms.services, request(programs=["connected-solutions", "elrp"]))
    assert row.id is not None and row.active
    assert row.programs == ["ma-connectedsolutions", "ca-elrp"]  # aliases normalised to ids
    assert (row.station_id, row.evse_id, row.min_soc_pct) == ("ARA-1", 1, 40.0)
    assert (row.departure_time, row.time_zone) == ("07:30", "America/New_York")  # 1st program
    assert row.vehicle_id == "ana-silva-nissan-leaf-40"
    async with csms.services.db.read() as session:
        vehicle = await session.get(Vehicle, row.vehicle_id)
    assert vehicle is not None and vehicle.ev_model == "nissan-leaf-40"
    [told] = await notifications(csms, row.id)
    assert (told.kind, told.status, told.channels) == ("enrolled", "recorded", [])
    assert told.participant == "Ana Silva"
    assert [p["id"] for p in told.body["programs"]] == ["ma-connectedsolutions", "ca-elrp"]
    assert "MA ConnectedSolutions daily dispatch (ma-connectedsolutions)" in told.body["message"]
    assert told.body["evse_model"] == "dcbel-ara" and told.body["min_soc_pct"] == 40.0


async def test_a_booted_station_is_known_by_its_hardware(csms) -> None:
    await boot_as(csms, "QUASAR-1", "wallbox-quasar-2")
    row = await enrol(
        csms.services,
        request(
            station_id="QUASAR-1",
            evse_model=None,
            vehicle_model="kia-ev9-76",
            vehicle_id="ev9-bob",
            participant="Bob",
            min_soc_pct=30,
            time_zone="America/Chicago",
        ),
    )
    assert (row.vehicle_id, row.time_zone) == ("ev9-bob", "America/Chicago")
    contradicted = await refused(
        csms, request(station_id="QUASAR-1", evse_model="dcbel-ara", vehicle_id="leaf-x")
    )
    assert contradicted.status == 422
    assert "boots as Wallbox Quasar 2 (wallbox-quasar-2), not 'dcbel-ara'" in str(contradicted)


async def test_an_unmatched_pair_is_refused_with_the_reason(csms) -> None:
    """DOMAIN.md: every EV charges anywhere but discharges only on its matched EVSE."""
    await boot_as(csms, "QUASAR-2", "wallbox-quasar-2")
    error = await refused(csms, request(station_id="QUASAR-2", evse_model=None))
    assert error.status == 422
    assert str(error) == (
        "cannot enrol nissan-leaf-40 on wallbox-quasar-2: unmatched pair: Nissan LEAF 40 kWh "
        "may discharge only on dcbel-ara, not on 'wallbox-quasar-2'; it may still charge there"
    )
    bus = await refused(csms, request(evse_model="heliox-44", vehicle_model="kia-ev9-76"))
    assert bus.status == 422 and "may discharge only on wallbox-quasar-2" in str(bus)
    async with csms.services.db.read() as session:
        assert (await session.execute(select(Enrollment))).first() is None
        assert (await session.execute(select(Vehicle))).first() is None


async def test_an_unknown_pair_is_never_accepted_silently(csms) -> None:
    unknown_station = await refused(csms, request(station_id="NEW-1", evse_model=None))
    assert unknown_station.status == 404
    assert "unknown station 'NEW-1'" in str(unknown_station) and "evse_model" in str(
        unknown_station
    )
    async with connected(csms, "ODD-1") as station:  # boots as a product the catalog lacks
        await station.call(
            call21.BootNotification(
                charging_station=ChargingStationType(vendor_name="Acme", model="X1"),
                reason="PowerUp",
            )
        )
    odd = await refused(csms, request(station_id="ODD-1", evse_model=None))
    assert odd.status == 422
    assert "vendor 'Acme' model 'X1', which is not in the hardware catalog" in str(odd)
    assert "name its hardware with evse_model" in str(odd)
    async with connected(csms, "SILENT-1"):  # connected, never booted

        async def registered() -> bool:
            async with csms.services.db.read() as session:
                return await session.get(Station, "SILENT-1") is not None

        await wait_until(registered, "the connection registers SILENT-1")
    silent = await refused(csms, request(station_id="SILENT-1", evse_model=None))
    assert silent.status == 422
    assert "station SILENT-1 has not sent a BootNotification yet" in str(silent)
    named = await enrol(csms.services, request(station_id="ODD-1", evse_model="dcbel-ara"))
    assert named.station_id == "ODD-1"
    bogus = await refused(csms, request(station_id="ODD-2", evse_model="acme-x1"))
    assert bogus.status == 422 and "unknown evse_model 'acme-x1'; known: dcbel-ara" in str(bogus)


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"programs": ["conected-solutions"]}, 404, "unknown program 'conected-solutions'"),
        ({"vehicle_model": "nissan-leaf-99"}, 404, "unknown EV model 'nissan-leaf-99'; known:"),
        (
            {"vehicle_model": None, "vehicle_id": "ghost"},
            404,
            "unknown vehicle 'ghost'; to register it, also send its vehicle_model",
        ),
        ({"vehicle_model": None}, 422, "name the vehicle"),
        ({"min_soc_pct": 5}, 422, "min_soc_pct 5 is below the Nissan LEAF 40 kWh's own BMS floor"),
        ({"evse_id": 2}, 422, "dcbel Ara has 1 EVSE(s); there is no EVSE 2"),
    ],
)
async def test_refusals_say_what_is_wrong(csms, fields, status, message) -> None:
    error = await refused(csms, request(**fields))
    assert error.status == status
    assert message in str(error)


def test_values_are_validated_at_the_edge() -> None:
    for fields, message in [
        ({"min_soc_pct": 120}, "less than or equal to 100"),
        ({"departure_time": "25:00"}, "should match pattern"),
        ({"time_zone": "Mars/Olympus"}, "time_zone 'Mars/Olympus' is not a known IANA zone"),
        ({"webhook_url": "ftp://example.com/x"}, "must be an http:// or https:// URL"),
        ({"participant_class": "industrial"}, "'residential' or 'commercial'"),
        ({"participant": "   "}, "participant must not be blank"),
        ({"programs": []}, "at least 1 item"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ]:
        with pytest.raises(ValidationError, match=message):
            request(**fields)


async def test_one_active_enrolment_per_evse_and_per_vehicle(csms) -> None:
    first = await enrol(csms.services, request())
    busy = await refused(csms, request(participant="Carl", vehicle_model="volvo-ex90"))
    assert busy.status == 409
    assert f"EVSE 1 of station ARA-1 already has active enrolment {first.id}" in str(busy)
    elsewhere = await refused(
        csms, request(station_id="ARA-2", vehicle_id=first.vehicle_id, vehicle_model=None)
    )
    assert elsewhere.status == 409
    assert f"vehicle '{first.vehicle_id}' already has active enrolment {first.id}" in str(elsewhere)
    await withdraw(csms.services, first.id or 0)
    again = await enrol(csms.services, request(vehicle_id=first.vehicle_id, vehicle_model=None))
    assert again.id != first.id and again.vehicle_id == first.vehicle_id


async def test_two_enrolments_racing_for_one_evse_get_one(csms) -> None:
    results = await asyncio.gather(
        enrol(csms.services, request()),
        enrol(csms.services, request(participant="Dora", vehicle_model="polestar-3")),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], EnrolmentError)
    assert errors[0].status == 409


async def test_an_existing_vehicle_keeps_its_model(csms) -> None:
    first = await enrol(csms.services, request(vehicle_id="car-7"))
    await withdraw(csms.services, first.id or 0)
    error = await refused(csms, request(vehicle_id="car-7", vehicle_model="volvo-ex90"))
    assert error.status == 422 and "vehicle 'car-7' is a nissan-leaf-40, not a volvo-ex90" in str(
        error
    )


async def test_derived_vehicle_ids_do_not_collide(csms) -> None:
    one = await enrol(csms.services, request())
    two = await enrol(csms.services, request(station_id="ARA-2"))
    assert (one.vehicle_id, two.vehicle_id) == (
        "ana-silva-nissan-leaf-40",
        "ana-silva-nissan-leaf-40-2",
    )


async def test_a_program_that_does_not_pay_the_class_is_refused(csms) -> None:
    await ProgramCatalog(csms.services).add_custom(
        {
            "id": "homes-only",
            "name": "Residential only",
            "time_zone": "America/Denver",
            "pay_rule": "average_kw",
            "max_event_duration_min": 60,
            "season": [
                {
                    "name": "s",
                    "start": "01-01",
                    "end": "12-31",
                    "window": ["17:00", "19:00"],
                    "rates": {"residential": 50},
                }
            ],
        }
    )
    error = await refused(csms, request(programs=["homes-only"], participant_class="commercial"))
    assert error.status == 422
    assert "program 'homes-only' does not pay commercial participants" in str(error)
    row = await enrol(csms.services, request(programs=["homes-only"]))
    assert (row.programs, row.time_zone) == (["homes-only"], "America/Denver")


async def test_withdrawal_ends_the_enrolment_and_tells_the_participant(csms) -> None:
    row = await enrol(csms.services, request())
    ended = await withdraw(csms.services, row.id or 0)
    assert not ended.active and ended.withdrawn_at is not None
    again = await withdraw(csms.services, row.id or 0)  # nothing more to do
    assert again.withdrawn_at == ended.withdrawn_at
    kinds = [(n.kind, n.body["programs"]) for n in await notifications(csms, row.id)]
    assert kinds[0][0] == "enrolled" and kinds[1:] == [("withdrawn", [])]
    with pytest.raises(EnrolmentError, match="unknown enrolment 999") as info:
        await withdraw(csms.services, 999)
    assert info.value.status == 404
