"""Season performance and pay from hand-made meter samples (SQLite and PostgreSQL): the average
counted kW over a season's events, opt-outs counting 0 kW, pay by the program's rule, and
programs resolved by id or alias, shipped or custom."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.seasons import UnknownProgramError, resolve_program, season_report
from csms.services import Services
from csms.store.models import DrEvent
from tests.scheduler.test_settlement import (
    T0,
    T1,
    add_event,
    add_participant,
    at,
    insert,
    registers,
    store_services,
    stored,
    transaction,
)


@pytest.fixture
async def services(db_url: str) -> AsyncIterator[Services]:
    async with store_services(db_url) as system:
        yield system


async def test_season_report_averages_counted_kw_over_all_events_and_pays_by_rule(services) -> None:
    """ConnectedSolutions pays $275/kW residential on the average kW over all events of the
    season; the event Ana opted out of counts 0 kW."""
    rows = []
    for day in (0, 1):
        for minute in range(-1, 62):
            when = at(minute) + timedelta(days=day)
            rows += registers("A", when, 20000.0 * day + 8000.0 * minute / 60, 0.0)
    await insert(services, *rows)
    december = datetime(2026, 12, 15, 19, tzinfo=UTC)  # outside the summer: not counted
    async with transaction(services) as db:
        first = await add_event(db)
        second = await add_event(db, start=T0 + timedelta(days=1), end=T1 + timedelta(days=1))
        await add_event(db, start=december, end=december + timedelta(hours=1), season="")
        ana, _ = await add_participant(db, first, "A")
        await add_participant(
            db, second, "A", status="opted_out", opted_out_at=at(0), enrollment=ana
        )

    report = await season_report(services, "ma-connectedsolutions", 2026, "summer")

    assert [e.event_id for e in report.events] == [first.id, second.id]  # not December's
    assert report.events[1].opt_outs == 1
    (row,) = report.participants
    assert [p.counted_kw for p in row.events] == [pytest.approx(8.0), 0.0]
    assert row.events[1].average_kw == pytest.approx(8.0)  # it exported, but opted out
    assert row.average_kw == pytest.approx(4.0) and row.opt_outs == 1
    assert row.pay_usd == pytest.approx(275.0 * 4.0)
    assert report.pay_usd == pytest.approx(1100.0)
    settled = {e.id: e.settled_at for e in await stored(services, DrEvent)}
    assert settled[first.id] is not None and settled[second.id] is not None  # settled first


async def test_programs_resolve_by_id_or_alias_shipped_or_custom_and_unknown_ones_are_refused(
    services,
) -> None:
    definition = {
        "id": "town-pilot",
        "aliases": ["pilot"],
        "name": "Town pilot",
        "time_zone": "America/New_York",
        "pay_rule": "per_kwh",
        "max_event_duration_min": 120,
        "season": [
            {
                "name": "year",
                "start": "01-01",
                "end": "12-31",
                "window": ["16:00", "20:00"],
                "rates": {"residential": 0.5, "commercial": 0.4},
            }
        ],
    }
    await ProgramCatalog(services).add_custom(definition)
    program = await resolve_program(services, "town-pilot")
    assert (program.id, program.pay_rule) == ("town-pilot", "per_kwh")
    assert (await resolve_program(services, "pilot")).id == "town-pilot"
    assert (await resolve_program(services, "ma-connectedsolutions")).name.startswith("MA")
    assert (await resolve_program(services, "connected-solutions")).id == "ma-connectedsolutions"
    with pytest.raises(UnknownProgramError, match="no program 'nope'"):
        await resolve_program(services, "nope")


async def test_a_season_report_asked_by_alias_is_the_programs(services) -> None:
    async with transaction(services) as db:
        event = await add_event(db)
        await add_participant(db, event, "A")
    report = await season_report(services, "connected-solutions", 2026, "summer")
    assert report.program_id == "ma-connectedsolutions"
    assert [e.event_id for e in report.events] == [event.id]
