"""Discharge gate checks (c) matched pair, (d) SoC floor, (e) program window (DESIGN.md §3.6):
the energy a profile can take, computed; then real stations (2.1 and 2.0.1) that plug in,
report SoC and offer BPT, and SetChargingProfile / UpdateDynamicSchedule through the gate."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v21 import call as call21
from ocpp.v21.datatypes import ChargingStationType
from ocpp.v201 import call as call201
from ocpp.v201.datatypes import ChargingStationType as ChargingStationType201
from sqlalchemy.orm import Session

from csms.commands import CommandResult
from csms.scheduler.enrolment import EnrolmentRequest, enrol, withdraw
from csms.scheduler.gate_checks import (
    V2G_CHECKS,
    UnboundedScheduleError,
    discharge_energy_wh,
    export_w,
)
from csms.store.models import DrEvent, Enrollment, EventParticipant, Station
from simclock import iso
from simulators.catalog import hardware_models
from tests.commands.helpers import CommandStation21, CommandStation201, received
from tests.handlers.support import meter_value, sampled
from tests.stations import connected

T0 = datetime(2026, 7, 15, 19, 0, tzinfo=UTC)
HOUR = 3600


def schedule(start: datetime | None, duration: int | None, *periods: dict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": 1,
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": list(periods),
    }
    if start is not None:
        out["startSchedule"] = iso(start)
    if duration is not None:
        out["duration"] = duration
    return out


def sp(start_s: int, setpoint_w: float, **extra: Any) -> dict[str, Any]:
    """A 2.1 CentralSetpoint period (Q03), within [dischargeLimit, limit]."""
    return {
        "startPeriod": start_s,
        "operationMode": "CentralSetpoint",
        "setpoint": setpoint_w,
        "dischargeLimit": min(setpoint_w, -11000.0),
        "limit": 11000.0,
    } | extra


def profile(*schedules: dict, profile_id: int = 7, tx: str = "tx-1", **extra: Any) -> dict:
    return {
        "id": profile_id,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": extra.pop("kind", "Absolute"),
        "transactionId": tx,
        "chargingSchedule": list(schedules),
        **extra,
    }


# ---- the energy a profile can take (pure) ----------------------------------------------


@pytest.mark.parametrize(
    ("period", "watts"),
    [
        ({"setpoint": -7000.0, "dischargeLimit": -11000.0, "limit": 11000.0}, 7000.0),
        ({"setpoint": 2000.0, "dischargeLimit": -11000.0}, 0.0),  # charging at a setpoint
        ({"limit": -6000.0}, 6000.0),  # 2.0.1 style
        ({"limit": 11000.0, "dischargeLimit": -5000.0}, 5000.0),  # no setpoint: the EMS may
        ({"setpoint": -1000.0, "setpoint_L2": -1000.0, "setpoint_L3": -1000.0}, 3000.0),
        ({"limit": 0.0}, 0.0),
    ],
)
def test_export_of_a_period(period: dict, watts: float) -> None:
    assert export_w(period) == watts


def test_energy_of_an_absolute_schedule_sums_its_discharging_periods() -> None:
    p = profile(schedule(T0, HOUR, sp(0, -6000.0), sp(1200, 0.0), sp(2400, -3000.0)))
    assert discharge_energy_wh(p) == pytest.approx(6000 / 3 + 3000 / 3)


def test_energy_already_reflected_in_the_soc_reading_is_not_counted_again() -> None:
    p = profile(schedule(T0, HOUR, sp(0, -6000.0)))
    assert discharge_energy_wh(p, since=T0 - timedelta(hours=1)) == pytest.approx(6000.0)
    assert discharge_energy_wh(p, since=T0 + timedelta(minutes=45)) == pytest.approx(1500.0)
    assert discharge_energy_wh(p, since=T0 + timedelta(hours=2)) == 0.0


def test_valid_to_cuts_the_schedule_and_bounds_one_without_duration() -> None:
    capped = profile(schedule(T0, HOUR, sp(0, -6000.0)), validTo=iso(T0 + timedelta(minutes=30)))
    assert discharge_energy_wh(capped) == pytest.approx(3000.0)
    open_ended = profile(schedule(T0, None, sp(0, -6000.0)), validTo=iso(T0 + timedelta(hours=2)))
    assert discharge_energy_wh(open_ended) == pytest.approx(12000.0)
    relative = profile(schedule(None, None, sp(0, -4000.0)), validTo=iso(T0 + timedelta(hours=1)))
    assert discharge_energy_wh(relative, since=T0) == pytest.approx(4000.0)


def test_an_unbounded_discharging_schedule_cannot_be_bounded() -> None:
    with pytest.raises(UnboundedScheduleError, match="cannot bound the energy it takes"):
        discharge_energy_wh(profile(schedule(T0, None, sp(0, -6000.0))))
    charging_only = profile(schedule(T0, None, {"startPeriod": 0, "limit": 7000.0}))
    assert discharge_energy_wh(charging_only) == 0.0
    in_amps = profile(
        dict(schedule(T0, HOUR, {"startPeriod": 0, "limit": -16.0}), chargingRateUnit="A")
    )
    with pytest.raises(UnboundedScheduleError, match="in A"):
        discharge_energy_wh(in_amps)
    daily = profile(schedule(T0, HOUR, sp(0, -6000.0)), kind="Recurring", recurrencyKind="Daily")
    with pytest.raises(UnboundedScheduleError, match="recurring discharging schedule repeats"):
        discharge_energy_wh(daily)


def test_a_dynamic_update_applies_from_now_until_the_schedule_ends() -> None:
    """Q04: an UpdateDynamicSchedule's setpoint holds until the next one or the end."""
    p = profile(schedule(T0, HOUR, sp(0, -1000.0)), kind="Dynamic")
    update = [{"setpoint": -8000.0, "dischargeLimit": -11000.0}]
    assert discharge_energy_wh(p, update, since=T0 + timedelta(minutes=30)) == pytest.approx(4000.0)
    assert discharge_energy_wh(p, update, since=T0 - timedelta(minutes=5)) == pytest.approx(8000.0)


def test_of_several_schedules_the_ev_may_pick_the_largest() -> None:
    p = profile(schedule(T0, HOUR, sp(0, -2000.0)), schedule(T0, HOUR, sp(0, -5000.0)))
    assert discharge_energy_wh(p) == pytest.approx(5000.0)


# ---- real stations through the gate -------------------------------------------------------


@pytest.fixture
def gated(csms: Any) -> Any:
    """The CSMS with checks (c)-(e) in its gate, after the foundation's (a) and (b)."""
    checks = csms.services.commands.gate_checks
    checks.extend(check for check in V2G_CHECKS if check not in checks)
    assert [name for name, _ in checks][-3:] == ["matched_pair", "soc_floor", "program_window"]
    return csms


@contextlib.asynccontextmanager
async def plugged(
    csms: Any, station_id: str, hardware_id: str, soc: float | None, tx: str = "tx-1"
) -> AsyncIterator[tuple[Any, datetime]]:
    """A station of a catalog product boots, an EV plugs in (TransactionEvent Started with its
    SoC) and, on 2.1, offers its BPT mode (NotifyEVChargingNeeds, Q01). A 2.0.1 unit is marked
    by the operator as taking negative limits. Yields the station and the SoC reading's time."""
    hw = hardware_models()[hardware_id]
    v21 = hw.speaks_21
    version, calls = ("2.1", call21) if v21 else ("2.0.1", call201)
    cls = CommandStation21 if v21 else CommandStation201
    station_type = ChargingStationType if v21 else ChargingStationType201
    async with connected(csms, station_id, version, station_class=cls) as station:
        boot = calls.BootNotification(
            charging_station=station_type(vendor_name=hw.vendor_name, model=hw.model),
            reason="PowerUp",
        )
        assert (await station.call(boot)).status == "Accepted"
        if not v21:
            await _mark_negative_limits(csms, station_id)
        now = csms.services.clock.now().replace(microsecond=0)
        extra = {}
        if soc is not None:
            soc_value = sampled(soc, "SoC", location="EV", unitOfMeasure={"unit": "Percent"})
            extra["meter_value"] = [meter_value(iso(now), soc_value)]
        await station.call(
            calls.TransactionEvent(
                event_type="Started",
                timestamp=iso(now),
                trigger_reason="CablePluggedIn",
                seq_no=0,
                transaction_info={"transaction_id": tx, "charging_state": "EVConnected"},
                evse={"id": 1, "connector_id": 1},
                **extra,
            )
        )
        if v21:
            mode = "DC_BPT" if hw.current_type == "DC" else "AC_BPT"
            needs = await station.call(
                call21.NotifyEVChargingNeeds(
                    evse_id=1,
                    charging_needs={
                        "requested_energy_transfer": mode,
                        "available_energy_transfer": [mode],
                        "control_mode": "DynamicControl",
                    },
                )
            )
            assert needs.status == "Accepted"
        yield station, now


async def _mark_negative_limits(csms: Any, station_id: str) -> None:
    def unit(session: Session) -> None:
        row = session.get(Station, station_id)
        assert row is not None
        row.accepts_negative_limits = True

    await csms.services.writer.write(unit)


async def enrolled(csms: Any, station_id: str, ev: str, floor: float, **fields: Any) -> Enrollment:
    return await enrol(
        csms.services,
        EnrolmentRequest(
            participant=fields.pop("participant", "Ana"),
            vehicle_model=ev,
            station_id=station_id,
            programs=["connected-solutions"],
            min_soc_pct=floor,
            **fields,
        ),
    )


async def push(csms: Any, station_id: str, p: dict, origin: str = "api") -> CommandResult:
    request = {"evseId": 1, "chargingProfile": p}
    return await csms.services.commands.set_charging_profile(station_id, request, origin=origin)


def refusal(result: CommandResult, check: str) -> str:
    assert (result.failure, result.error_code) == ("refused", check), result
    return result.reason


async def test_q03_discharge_allowed_on_a_matched_pair_above_the_floor(gated) -> None:
    async with plugged(gated, "ARA-1", "dcbel-ara", soc=80) as (station, at):
        await enrolled(gated, "ARA-1", "nissan-leaf-40", floor=30)
        result = await push(gated, "ARA-1", profile(schedule(at, HOUR, sp(0, -7000.0))))
        assert result.accepted, result
        assert len(received(station, "SetChargingProfile")) == 1


async def test_q03_dispatch_refused_below_floor(gated) -> None:
    """Leaf 40 (39 kWh) at 50 %, floor 40 %: 3.9 kWh above the floor. 7 kW for an hour takes
    7 / 0.933 = 7.5 kWh from the battery: refused; for half an hour 3.75 kWh: allowed."""
    async with plugged(gated, "ARA-2", "dcbel-ara", soc=50) as (station, at):
        enrollment = await enrolled(gated, "ARA-2", "nissan-leaf-40", floor=40)
        hour = await push(gated, "ARA-2", profile(schedule(at, HOUR, sp(0, -7000.0))))
        assert refusal(hour, "soc_floor") == (
            "the profile can take 7.50 kWh from the battery (7.00 kWh at the grid / 0.933), "
            f"but only 3.90 kWh lie above the owner's floor: SoC 50 % at {iso(at)}, floor 40 % "
            f"of 39 kWh (nissan-leaf-40, enrolment {enrollment.id})"
        )
        half = await push(gated, "ARA-2", profile(schedule(at, HOUR // 2, sp(0, -7000.0))))
        assert half.accepted, half
        assert len(received(station, "SetChargingProfile")) == 1  # the refused one never left


async def test_q03_no_soc_reported_yet_is_refused(gated) -> None:
    async with plugged(gated, "ARA-3", "dcbel-ara", soc=None) as (station, at):
        await enrolled(gated, "ARA-3", "nissan-leaf-40", floor=30)
        result = await push(gated, "ARA-3", profile(schedule(at, 600, sp(0, -1000.0))))
        reason = refusal(result, "soc_floor")
        assert reason.startswith("no SoC reported yet on EVSE 1 of station ARA-3")
        assert "cannot check the owner's floor of 30 %" in reason
        assert received(station, "SetChargingProfile") == []


async def test_q03_unbounded_discharge_of_an_enrolled_car_is_refused(gated) -> None:
    async with plugged(gated, "ARA-4", "dcbel-ara", soc=90) as (_, at):
        await enrolled(gated, "ARA-4", "nissan-leaf-40", floor=30)
        result = await push(gated, "ARA-4", profile(schedule(at, None, sp(0, -1000.0))))
        assert "cannot bound the energy it takes" in refusal(result, "soc_floor")


async def test_q03_unmatched_pair_refused_naming_both(gated) -> None:
    """Enrolled on a station not yet seen as a dcbel Ara; it turns out to be a Quasar 2."""
    await enrolled(gated, "SWAP-1", "nissan-leaf-40", floor=30, evse_model="dcbel-ara")
    async with plugged(gated, "SWAP-1", "wallbox-quasar-2", soc=80) as (station, at):
        result = await push(gated, "SWAP-1", profile(schedule(at, 600, sp(0, -1000.0))))
        reason = refusal(result, "matched_pair")
        assert "nissan-leaf-40" in reason and "wallbox-quasar-2 (Wallbox Quasar 2" in reason
        assert "may discharge only on dcbel-ara" in reason
        assert received(station, "SetChargingProfile") == []


async def test_q03_station_outside_the_catalog_is_paired_by_the_enrolments_evse_model(
    gated,
) -> None:
    """The station reports hardware we do not know; the operator named it at enrolment
    (a dcbel Ara): the pair is checked against that, and the next check (the floor) decides."""
    await enrolled(gated, "ODD-1", "nissan-leaf-40", floor=30, evse_model="dcbel-ara")
    async with connected(gated, "ODD-1", station_class=CommandStation21) as station:
        await station.call(
            call21.BootNotification(
                charging_station=ChargingStationType(vendor_name="Acme", model="X1"),
                reason="PowerUp",
            )
        )
        await station.call(
            call21.TransactionEvent(
                event_type="Started",
                timestamp=iso(gated.services.clock.now()),
                trigger_reason="CablePluggedIn",
                seq_no=0,
                transaction_info={"transaction_id": "tx-1"},
                evse={"id": 1, "connector_id": 1},
            )
        )
        await station.call(
            call21.NotifyEVChargingNeeds(
                evse_id=1, charging_needs={"requested_energy_transfer": "DC_BPT"}
            )
        )
        result = await push(gated, "ODD-1", profile(schedule(T0, 600, sp(0, -1000.0))))
    assert result.failure == "refused" and result.error_code == "soc_floor", result


async def test_without_an_enrolment_the_pair_and_floor_checks_do_not_apply(gated) -> None:
    """An operator's manual push to a car nobody enrolled: (a) and (b) only (DESIGN §3.6)."""
    async with plugged(gated, "ARA-5", "dcbel-ara", soc=None) as (_, at):
        result = await push(gated, "ARA-5", profile(schedule(at, HOUR, sp(0, -7000.0))))
        assert result.accepted, result
        withdrawn = await enrolled(gated, "ARA-5", "nissan-leaf-40", floor=90)
        assert (await push(gated, "ARA-5", profile(schedule(at, HOUR, sp(0, -7000.0))))).failure
        await withdraw(gated.services, withdrawn.id or 0)
        again = await push(gated, "ARA-5", profile(schedule(at, HOUR, sp(0, -7000.0))))
        assert again.accepted, again


async def test_q03_201_negative_limit_is_held_to_the_floor(gated) -> None:
    """F-150 Lightning 98 kWh on a Ford Charge Station Pro (2.0.1, negative limit), 60 %,
    floor 50 %: 9.8 kWh above it. 6 kW for 1 h takes 6.43 kWh: allowed; for 2 h: refused."""
    async with plugged(gated, "FORD-1", "ford-charge-station-pro", soc=60) as (station, at):
        await enrolled(gated, "FORD-1", "ford-f150-lightning-98", floor=50)
        limit = {"startPeriod": 0, "limit": -6000.0}
        one = await push(gated, "FORD-1", profile(schedule(at, HOUR, limit), profile_id=8))
        assert one.accepted, one
        two = await push(gated, "FORD-1", profile(schedule(at, 2 * HOUR, limit), profile_id=8))
        assert "12.86 kWh from the battery" in refusal(two, "soc_floor")
        [sent] = received(station, "SetChargingProfile")
        assert sent["charging_profile"]["charging_schedule"][0]["duration"] == HOUR


async def test_q04_dynamic_update_is_held_to_the_floor(gated) -> None:
    async with plugged(gated, "ARA-6", "dcbel-ara", soc=50) as (station, at):
        await enrolled(gated, "ARA-6", "nissan-leaf-40", floor=40)
        dynamic = profile(schedule(at, HOUR, sp(0, -1000.0)), kind="Dynamic")
        assert (await push(gated, "ARA-6", dynamic)).accepted
        commands = gated.services.commands

        async def update(setpoint_w: float) -> CommandResult:
            change = {"setpoint": setpoint_w, "dischargeLimit": -11000.0, "limit": 0.0}
            return await commands.update_dynamic_schedule(
                "ARA-6", {"chargingProfileId": 7, "scheduleUpdate": change}, origin="api"
            )

        assert "11.79 kWh from the battery" in refusal(await update(-11000.0), "soc_floor")
        assert (await update(-2000.0)).accepted
        assert len(received(station, "UpdateDynamicSchedule")) == 1


# ---- (e) the dispatcher's own profiles keep to the program window -----------------------


async def an_event(
    csms: Any,
    enrollment: Enrollment,
    start: datetime,
    *,
    state: str = "notified",
    profile_id: int = 7,
    status: str = "eligible",
) -> DrEvent:
    def unit(session: Session) -> DrEvent:
        event = DrEvent(
            program_id="ma-connectedsolutions",
            start=start,
            end=start + timedelta(hours=1),
            time_zone="America/New_York",
            state=state,
            notify_at=start - timedelta(hours=18),
            settled_at=start if state == "completed" else None,  # nothing left to settle
        )
        session.add(event)
        session.flush()
        session.add(
            EventParticipant(
                event_id=event.id or 0,
                enrollment_id=enrollment.id or 0,
                station_id=enrollment.station_id,
                evse_id=enrollment.evse_id,
                profile_id=profile_id,
                status=status,
            )
        )
        return event

    return await csms.services.writer.write(unit)


async def test_q03_dispatcher_profile_must_lie_in_the_event_window(gated) -> None:
    async with plugged(gated, "ARA-7", "dcbel-ara", soc=90) as (station, at):
        enrollment = await enrolled(gated, "ARA-7", "nissan-leaf-40", floor=30)
        start = at + timedelta(days=1)  # far enough that the event loop leaves it alone
        event = await an_event(gated, enrollment, start)
        window = f"event {event.id} [{iso(start)}, {iso(start + timedelta(hours=1))}]"

        inside = await push(
            gated, "ARA-7", profile(schedule(start, HOUR, sp(0, -7000.0))), "dispatcher"
        )
        assert inside.accepted, inside
        late = await push(
            gated, "ARA-7", profile(schedule(start, HOUR + 600, sp(0, -7000.0))), "dispatcher"
        )
        assert refusal(late, "program_window") == (
            f"the schedule runs until {iso(start + timedelta(seconds=HOUR + 600))}, after the "
            f"end of {window}"
        )
        early_start = start - timedelta(minutes=10)
        early = await push(
            gated, "ARA-7", profile(schedule(early_start, HOUR + 600, sp(0, -7000.0))), "dispatcher"
        )
        assert refusal(early, "program_window") == (
            f"the schedule discharges from {iso(early_start)}, before {window}"
        )
        # Installed ahead of the event, it may start early as long as it waits to discharge.
        waiting = profile(
            schedule(early_start, HOUR + 600, sp(0, 0.0, dischargeLimit=0.0), sp(600, -7000.0))
        )
        assert (await push(gated, "ARA-7", waiting, "dispatcher")).accepted
        # An operator's manual push is not held to a program window (DESIGN §3.6).
        manual = await push(gated, "ARA-7", profile(schedule(early_start, 600, sp(0, -7000.0))))
        assert manual.accepted, manual
        assert len(received(station, "SetChargingProfile")) == 3


async def test_q03_dispatcher_profile_needs_a_live_event_and_a_participant(gated) -> None:
    async with plugged(gated, "ARA-8", "dcbel-ara", soc=90) as (_, at):
        enrollment = await enrolled(gated, "ARA-8", "nissan-leaf-40", floor=30)
        start = at + timedelta(days=1)
        nothing = await push(
            gated, "ARA-8", profile(schedule(start, HOUR, sp(0, -7000.0))), "dispatcher"
        )
        assert refusal(nothing, "program_window") == (
            "profile 7 on EVSE 1 of station ARA-8 belongs to no participant of a notified or "
            "active event: the dispatcher discharges only inside a program event"
        )
        await an_event(gated, enrollment, start, state="completed")
        over = await push(
            gated, "ARA-8", profile(schedule(start, HOUR, sp(0, -7000.0))), "dispatcher"
        )
        assert "belongs to no participant of a notified or active event" in refusal(
            over, "program_window"
        )
        await an_event(gated, enrollment, start + timedelta(days=1), profile_id=9)
        other = await push(
            gated, "ARA-8", profile(schedule(start, HOUR, sp(0, -7000.0))), "dispatcher"
        )
        assert "profile 7 on EVSE 1" in refusal(other, "program_window")
        relative = profile(schedule(None, HOUR, sp(0, -7000.0)), profile_id=9, kind="Relative")
        assert "needs startSchedule and duration" in refusal(
            await push(gated, "ARA-8", relative, "dispatcher"), "program_window"
        )


async def test_q03_an_opted_out_participant_is_not_discharged(gated) -> None:
    """DOMAIN.md promise 4: an opt-out stops the car's part, whatever the dispatcher plans."""
    async with plugged(gated, "ARA-9", "dcbel-ara", soc=90) as (_, at):
        enrollment = await enrolled(gated, "ARA-9", "nissan-leaf-40", floor=30)
        start = at + timedelta(days=1)
        event = await an_event(gated, enrollment, start, status="opted_out")
        result = await push(
            gated, "ARA-9", profile(schedule(start, HOUR, sp(0, -7000.0))), "dispatcher"
        )
        assert refusal(result, "program_window") == (
            f"enrolment {enrollment.id} has opted out (DOMAIN.md promise 4) (event {event.id})"
        )
