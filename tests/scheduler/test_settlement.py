"""Settlement from hand-made meter samples: register arithmetic (units, multipliers, phases,
interpolation, the ends of a series), per-participant and per-event numbers, opt-outs, SoC-floor
violations, restatement when settled again after late data, and the report of an event still
running or never run. On SQLite and PostgreSQL.

Also the seeding helpers and the store-only services that tests/scheduler/test_restater.py,
test_seasons.py and tests/api/test_reports.py build on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, select

from csms.scheduler.reports import event_report
from csms.scheduler.settlement import (
    FLOOR_TOLERANCE_PCT,
    SettlementError,
    UnknownEventError,
    measure_event,
    settle_event,
    with_settlement_note,
)
from csms.scheduler.telemetry import (
    EXPORT_REGISTER,
    IMPORT_REGISTER,
    SOC,
    Series,
    series_of,
    value_at,
)
from csms.services import Services
from csms.store.db import Database, upgrade_schema_async
from csms.store.models import (
    DrEvent,
    Enrollment,
    EventParticipant,
    MeterSample,
    Station,
    Transaction,
    Vehicle,
)
from csms.store.writer import GroupWriter
from simclock import Clock
from tests.conftest import make_settings

T0 = datetime(2026, 7, 15, 19, 0, tzinfo=UTC)  # 15:00 EDT: inside ConnectedSolutions' window
T1 = T0 + timedelta(hours=1)
AFTER = T1 + timedelta(days=1)  # "now" for a settlement: the window is over


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- seeding (also used by test_restater, test_seasons, tests/api/test_reports.py) -----------


@contextlib.asynccontextmanager
async def transaction(services: Services) -> AsyncIterator[AsyncSession]:
    """One transaction for rows that must appear together: a running CSMS's events service
    settles a completed event as soon as it sees it, so its participants come with it."""
    async with services.db.sessions() as session, session.begin():
        yield session


async def add(session: AsyncSession, *objects: SQLModel) -> None:
    """Add rows in an open transaction; their ids are set."""
    for obj in objects:
        session.add(obj)
        await session.flush()


async def insert(services: Services, *objects: SQLModel) -> None:
    """Insert rows directly (the events service is not what is under test); ids are set."""
    async with transaction(services) as session:
        await add(session, *objects)


def sample(
    station_id: str,
    when: datetime,
    measurand: str,
    value: float,
    *,
    unit: str = "Wh",
    multiplier: int = 0,
    phase: str = "",
    location: str = "",
    transaction_id: str | None = "tx-1",
    evse_id: int = 1,
) -> MeterSample:
    return MeterSample(
        station_id=station_id,
        evse_id=evse_id,
        transaction_id=transaction_id,
        timestamp=when,
        measurand=measurand,
        phase=phase,
        location=location,
        unit=unit,
        multiplier=multiplier,
        value=value,
    )


def registers(
    station_id: str, when: datetime, export_wh: float, import_wh: float, soc: float | None = None
) -> list[MeterSample]:
    """Export and import registers (Wh) and, when given, the SoC at one instant."""
    rows = [
        sample(station_id, when, EXPORT_REGISTER, export_wh),
        sample(station_id, when, IMPORT_REGISTER, import_wh),
    ]
    if soc is not None:
        rows.append(sample(station_id, when, SOC, soc, unit="Percent", location="EV"))
    return rows


async def add_event(
    session: AsyncSession,
    *,
    state: str = "completed",
    start: datetime = T0,
    end: datetime = T1,
    program_id: str = "ma-connectedsolutions",
    committed_kw: float | None = 10.0,
    season: str = "summer",
) -> DrEvent:
    event = DrEvent(
        program_id=program_id,
        start=start,
        end=end,
        time_zone="America/New_York",
        season=season,
        state=state,
        notify_at=start - timedelta(hours=18),
        committed_kw=committed_kw,
        interval_s=900,
    )
    await add(session, event)
    return event


async def add_participant(
    session: AsyncSession,
    event: DrEvent,
    station_id: str,
    *,
    min_soc_pct: float = 30.0,
    participant_class: str = "residential",
    status: str = "done",
    opted_out_at: datetime | None = None,
    enrollment: Enrollment | None = None,
) -> tuple[Enrollment, EventParticipant]:
    """A vehicle, its enrolment on the station's EVSE 1, and its part in the event."""
    if enrollment is None:
        vehicle = Vehicle(id=f"car-{station_id}", ev_model="nissan-leaf-40")
        enrollment = Enrollment(
            participant=f"owner of {station_id}",
            participant_class=participant_class,
            vehicle_id=vehicle.id,
            station_id=station_id,
            programs=[event.program_id],
            min_soc_pct=min_soc_pct,
        )
        await add(session, vehicle, enrollment)
    participant = EventParticipant(
        event_id=event.id or 0,
        enrollment_id=enrollment.id or 0,
        station_id=station_id,
        evse_id=1,
        status=status,
        opted_out_at=opted_out_at,
        reason="opted out by the owner" if status == "opted_out" else "",
    )
    await add(session, participant)
    return enrollment, participant


async def stored(services: Services, model: type[Any], **where: Any) -> list[Any]:
    async with services.db.read() as session:
        query = select(model).filter_by(**where).order_by(model.id)
        return list((await session.execute(query)).scalars())


# --- a store without the rest of the CSMS, on a simulated clock ---------------------------------


@contextlib.asynccontextmanager
async def store_services(db_url: str) -> AsyncIterator[Services]:
    """The store and writer only (no websockets, no V2G room acting on the rows we insert), on
    a simulated clock a day after the test window."""
    await upgrade_schema_async(db_url)
    db = Database(db_url)
    writer = GroupWriter(db)
    writer.start()
    clock = Clock.create(speed=1.0, start=AFTER)
    system = Services(settings=make_settings(db_url, clock=clock), db=db, writer=writer)
    try:
        yield system
    finally:
        await writer.close()
        await db.close()


@pytest.fixture
async def services(db_url: str) -> AsyncIterator[Services]:
    async with store_services(db_url) as system:
        yield system


# --- register arithmetic -------------------------------------------------------------------


def test_registers_read_in_wh_from_kwh_units_and_multipliers() -> None:
    rows = [
        sample("S", at(0), EXPORT_REGISTER, 12.5, unit="kWh"),
        sample("S", at(1), EXPORT_REGISTER, 1.3, unit="Wh", multiplier=4),  # 13,000 Wh
        sample("S", at(2), EXPORT_REGISTER, 0.0136, unit="kWh", multiplier=3),  # 13,600 Wh
    ]
    assert series_of(rows, EXPORT_REGISTER).points == (
        (at(0), 12500.0),
        (at(1), pytest.approx(13000.0)),
        (at(2), pytest.approx(13600.0)),
    )


def test_a_whole_evse_row_wins_over_phase_rows_and_phases_alone_are_summed() -> None:
    rows = [
        sample("S", at(0), IMPORT_REGISTER, 900.0),
        sample("S", at(0), IMPORT_REGISTER, 300.0, phase="L1"),
        sample("S", at(0), IMPORT_REGISTER, 300.0, phase="L2"),
        sample("S", at(1), IMPORT_REGISTER, 310.0, phase="L1"),
        sample("S", at(1), IMPORT_REGISTER, 320.0, phase="L2"),
        sample("S", at(1), IMPORT_REGISTER, 330.0, phase="L3"),
        sample("S", at(1), IMPORT_REGISTER, 5.0, phase="N"),
    ]
    assert series_of(rows, IMPORT_REGISTER).points == ((at(0), 900.0), (at(1), 960.0))


def test_outlet_rows_win_over_other_locations() -> None:
    rows = [
        sample("S", at(0), EXPORT_REGISTER, 100.0, location="Inlet"),
        sample("S", at(0), EXPORT_REGISTER, 90.0),  # no location: Outlet
    ]
    assert series_of(rows, EXPORT_REGISTER).points == ((at(0), 90.0),)


def test_value_between_samples_is_interpolated_linearly() -> None:
    series = Series(((at(-0.5), 1000.0), (at(0.5), 1200.0), (at(59.5), 7000.0)))
    assert value_at(series, at(0)).value == pytest.approx(1100.0)
    assert value_at(series, at(30)).value == pytest.approx(1200.0 + 5800.0 * 29.5 / 59.0)
    assert value_at(series, at(0.5)).value == 1200.0  # an exact instant is the sample itself


def test_past_the_last_sample_only_within_one_meter_interval() -> None:
    series = Series(tuple((at(m), 100.0 * m) for m in range(10)))  # every 60 s: tolerance 120 s
    assert value_at(series, at(11)).value == 900.0
    unknown = value_at(series, at(12.5))
    assert unknown.value is None
    assert "no sample after 2026-07-15T19:09:00Z within 120 s" in unknown.note
    before = value_at(series, at(-3))
    assert before.value is None and "no sample before" in before.note


def test_a_gap_in_which_no_transaction_ran_keeps_the_register_still() -> None:
    """The car left at 19:09 (transaction ended): its registers cannot move until the next."""
    series = Series(tuple((at(m), 100.0 * m) for m in range(10)))
    ended = [(at(-30), at(9))]
    assert value_at(series, at(50), ended).value == 900.0
    running = [(at(-30), None)]
    assert value_at(series, at(50), running).value is None
    later = [(at(-30), at(9)), (at(40), None)]  # a new car from 19:40: the gap is not quiet
    assert value_at(series, at(50), later).value is None


def test_settlement_note_replaces_its_own_text_and_keeps_the_dispatchers() -> None:
    reason = with_settlement_note("station went offline", "export register at end unknown")
    assert reason == "station went offline; settlement: export register at end unknown"
    assert with_settlement_note(reason, "") == "station went offline"
    assert with_settlement_note(reason, "x") == "station went offline; settlement: x"


# --- one event -----------------------------------------------------------------------------


async def seed_fleet(services: Services) -> dict[str, Any]:
    """Four participants of a one-hour event (19:00-20:00):
    A: Wh registers around the edges; exports 6.1 kWh; SoC 80 -> 29.6 % (floor 30: rounding).
    B: kWh registers sampled only at 18:58 and 20:02 (interpolated across the gap); SoC floor 40,
       lowest 39.4 % (a violation).
    C: phase rows only, Wh × 10; opted out mid-event although its registers show export.
    D: samples stop at 19:30 while its transaction runs: end registers unknown.
    """
    rows: list[MeterSample] = []
    a = [(-0.5, 1000, 500, 80), (0.5, 1200, 500, 79), (30, 4000, 500, 50), (59.5, 7000, 500, 30)]
    a += [(60.5, 7400, 500, 29.6)]
    for minute, export_wh, import_wh, soc in a:
        rows += registers("A", at(minute), export_wh, import_wh, soc)
    for minute, export_kwh, import_kwh in ((-2, 10.0, 2.0), (62, 14.0, 2.5)):
        rows.append(sample("B", at(minute), EXPORT_REGISTER, export_kwh, unit="kWh"))
        rows.append(sample("B", at(minute), IMPORT_REGISTER, import_kwh, unit="kWh"))
    rows += [sample("B", at(m), SOC, soc, unit="Percent") for m, soc in ((0, 70), (40, 39.4))]
    rows += [sample("B", at(60), SOC, 41.0, unit="Percent")]
    for minute, per_phase in ((0, 100.0), (60, 200.0)):  # 3 phases × 1,000 Wh more
        for phase in ("L1", "L2", "L3"):
            rows.append(
                sample("C", at(minute), EXPORT_REGISTER, per_phase, multiplier=1, phase=phase)
            )
            rows.append(sample("C", at(minute), IMPORT_REGISTER, 0.0, phase=phase))
    for minute in range(0, 31):
        rows += registers("D", at(minute), 100.0 * minute, 0.0, 60 - minute / 10)
    await insert(services, *rows)
    await insert(
        services,
        Station(id="D"),
        Transaction(station_id="D", transaction_id="tx-1", evse_id=1, started_at=at(-10)),
    )
    async with transaction(services) as db:
        event = await add_event(db)
        _, pa = await add_participant(db, event, "A", min_soc_pct=30)
        _, pb = await add_participant(
            db, event, "B", min_soc_pct=40, participant_class="commercial"
        )
        _, pc = await add_participant(db, event, "C", status="opted_out", opted_out_at=at(20))
        _, pd = await add_participant(db, event, "D", status="offline")
    return {"event": event, "A": pa, "B": pb, "C": pc, "D": pd}


async def test_settle_event_measures_each_participant_from_its_registers(services) -> None:
    fleet = await seed_fleet(services)
    settled = await settle_event(services, fleet["event"].id)
    by_station = {p.station_id: p for p in settled.participants}

    a = by_station["A"]
    assert (a.export_start_wh, a.export_end_wh) == (pytest.approx(1100.0), pytest.approx(7200.0))
    assert a.delivered_kwh == pytest.approx(6.1) and a.average_kw == pytest.approx(6.1)
    assert a.counted_kw == pytest.approx(6.1)
    assert (a.soc_start_pct, a.soc_end_pct) == (pytest.approx(79.5), pytest.approx(29.8))
    assert a.min_soc_seen_pct == pytest.approx(29.8)  # 30 - 0.2: rounding, not a violation
    assert not a.floor_violated

    b = by_station["B"]
    export_kwh = 4.0 * 60 / 64  # 10 -> 14 kWh over 64 minutes, 60 of them in the window
    import_kwh = 0.5 * 60 / 64
    assert b.exported_kwh == pytest.approx(export_kwh) and b.imported_kwh == pytest.approx(
        import_kwh
    )
    assert b.average_kw == pytest.approx(export_kwh - import_kwh)
    assert b.min_soc_seen_pct == pytest.approx(39.4) and b.floor_violated
    assert b.min_soc_seen_pct < b.min_soc_pct - FLOOR_TOLERANCE_PCT

    c = by_station["C"]
    assert c.opted_out and c.delivered_kwh == pytest.approx(3.0)  # phases summed, × 10
    assert c.counted_kw == 0.0  # an opt-out counts 0 kW whatever the registers say

    d = by_station["D"]
    assert d.export_start_wh == 0.0 and d.export_end_wh is None and d.delivered_kwh is None
    assert d.counted_kw == 0.0
    assert "export register at end unknown (no sample after 2026-07-15T19:30:00Z" in d.note

    assert settled.delivered_kw == pytest.approx(6.1 + export_kwh - import_kwh)
    assert settled.exported_kwh == pytest.approx(6.1 + export_kwh - import_kwh + 3.0)

    (event,) = await stored(services, DrEvent)
    assert event.delivered_kw == pytest.approx(settled.delivered_kw)
    assert event.exported_kwh == pytest.approx(settled.exported_kwh)
    assert abs(event.settled_at - AFTER) < timedelta(minutes=5)  # the simulated clock
    assert (event.restatements, event.restated_at) == (0, None)
    rows = {p.station_id: p for p in await stored(services, EventParticipant)}
    assert rows["A"].average_kw == pytest.approx(6.1)
    assert rows["A"].min_soc_seen_pct == pytest.approx(29.8)
    assert rows["B"].soc_end_pct == pytest.approx(41.0)
    assert rows["C"].reason.startswith("opted out by the owner; settlement: SoC at start unknown")
    assert rows["D"].reason.startswith("settlement: export register at end unknown")
    assert rows["D"].delivered_kwh is None


async def test_settling_again_with_the_same_data_changes_nothing(services) -> None:
    fleet = await seed_fleet(services)
    first = await settle_event(services, fleet["event"].id)
    with structlog.testing.capture_logs() as logs:
        again = await settle_event(services, fleet["event"].id)
    assert not again.restated and again.restatements == 0
    assert again.settled_at == first.settled_at
    assert not [entry for entry in logs if entry["event"].startswith("settlement.")]


async def test_late_samples_restate_the_settlement_and_say_so(services) -> None:
    fleet = await seed_fleet(services)
    first = await settle_event(services, fleet["event"].id)
    late = []
    for minute in range(31, 62):  # D's offline queue arrives: 100 Wh a minute on to 20:01
        late += registers("D", at(minute), 100.0 * minute, 0.0, 60 - minute / 10)
    await insert(services, *late)

    with structlog.testing.capture_logs() as logs:
        restated = await settle_event(services, fleet["event"].id)

    assert restated.restated and restated.restatements == 1
    assert restated.delivered_kw == pytest.approx(first.delivered_kw + 6.0)
    (entry,) = [e for e in logs if e["event"] == "settlement.restated"]
    assert entry["old_delivered_kw"] == pytest.approx(first.delivered_kw)
    assert entry["new_delivered_kw"] == pytest.approx(first.delivered_kw + 6.0)
    (event,) = await stored(services, DrEvent)
    assert event.restatements == 1 and event.restated_at is not None
    assert event.settled_at == first.settled_at  # the first settlement's time is kept
    rows = {p.station_id: p for p in await stored(services, EventParticipant)}
    assert rows["D"].delivered_kwh == pytest.approx(6.0) and rows["D"].reason == ""


async def test_an_event_still_running_or_cancelled_is_not_settled(services) -> None:
    async with transaction(services) as db:
        running = await add_event(
            db, state="active", start=AFTER - timedelta(hours=1), end=AFTER + timedelta(hours=1)
        )
        cancelled = await add_event(db, state="cancelled")
    with pytest.raises(SettlementError, match=r"runs until .*: it is settled once its window"):
        await settle_event(services, running.id)
    with pytest.raises(SettlementError, match="was cancelled"):
        await settle_event(services, cancelled.id)
    with pytest.raises(UnknownEventError, match="no event 999"):
        await settle_event(services, 999)


async def _active_event_so_far(services: Services) -> DrEvent:
    """An event that started 30 minutes ago; A has exported 200 Wh a minute (12 kW) since."""
    start = AFTER - timedelta(minutes=30)
    rows = []
    for minute in range(0, 31):
        rows += registers("A", start + timedelta(minutes=minute), 200.0 * minute, 0.0, 80)
    await insert(services, *rows)
    async with transaction(services) as db:
        event = await add_event(db, state="active", start=start, end=start + timedelta(hours=1))
        await add_participant(db, event, "A")
    return event


async def test_an_active_event_is_measured_so_far_without_writing(services) -> None:
    event = await _active_event_so_far(services)
    now = services.clock.now()
    so_far = await measure_event(services, event.id, until=now)
    (a,) = so_far.participants
    assert so_far.until == now
    assert a.average_kw == pytest.approx(12.0, rel=0.02)  # 200 Wh a minute
    (row,) = await stored(services, EventParticipant)
    assert row.average_kw is None  # nothing written


async def test_report_of_an_active_event_shows_the_data_so_far(services) -> None:
    event = await _active_event_so_far(services)

    report = await event_report(services, event.id)

    assert report["event"]["settled_at"] is None and report["event"]["delivered_kw"] > 11.5
    assert [i["delivered_kw"] for i in report["intervals"]] == [
        pytest.approx(12.0),
        pytest.approx(12.0),
        None,  # not over yet
        None,
    ]
    (row,) = await stored(services, DrEvent)
    assert row.settled_at is None and row.delivered_kw is None  # nothing written


async def test_report_of_an_event_that_never_ran_has_no_measurements(services) -> None:
    async with transaction(services) as db:
        event = await add_event(
            db, state="scheduled", start=AFTER + timedelta(days=1), end=AFTER + timedelta(days=2)
        )
        await add_participant(db, event, "A")
    report = await event_report(services, event.id)
    (participant,) = report["participants"]
    assert participant["delivered_kwh"] is None and participant["pay_usd"] is None
    assert {i["delivered_kw"] for i in report["intervals"]} == {None}
    assert report["event"]["delivered_kw"] is None and report["totals"]["pay_usd"] == 0.0
