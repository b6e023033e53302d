"""The program catalog of a running CSMS: shipped + custom programs, by id or alias, stored
through the writer (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy.orm import Session

from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.programs import (
    DuplicateProgramError,
    ProgramError,
    UnknownProgramError,
    load_programs,
)
from csms.store.models import CustomProgram


def definition(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "coop-summer",
        "aliases": ["coop"],
        "name": "Rural co-op summer peaks",
        "time_zone": "America/Chicago",
        "pay_rule": "average_kw",
        "max_event_duration_min": 120,
        "notice_lead_min": 240,
        "season": [
            {
                "name": "summer",
                "start": "06-15",
                "end": "09-15",
                "window": ["16:00", "19:00"],
                "rates": {"residential": 120, "commercial": 90},
            }
        ],
    }
    data.update(changes)
    return data


async def test_shipped_programs_are_found_by_id_or_alias(csms) -> None:
    catalog = ProgramCatalog(csms.services)
    programs = await catalog.all()
    assert list(programs) == list(load_programs())
    assert (await catalog.get("connected-solutions")).id == "ma-connectedsolutions"
    assert (await catalog.get("ca-elrp")).aliases == ("elrp",)
    with pytest.raises(LookupError, match="unknown program 'nope'; known: ma-connectedsolutions"):
        await catalog.get("nope")


async def test_custom_program_is_stored_and_found_by_a_new_catalog(csms) -> None:
    program = await ProgramCatalog(csms.services).add_custom(definition())
    assert program.id == "coop-summer" and program.aliases == ("coop",)
    fresh = ProgramCatalog(csms.services)  # nothing cached: it reads the table
    assert (await fresh.get("coop")) == program
    assert list(await fresh.all())[-1] == "coop-summer"
    assert not ProgramCatalog.is_shipped(program)
    assert ProgramCatalog.is_shipped(await fresh.get("elrp"))
    async with csms.services.db.read() as session:
        row = await session.get(CustomProgram, "coop-summer")
    assert row is not None and row.definition["aliases"] == ["coop"]
    assert abs(row.created_at - csms.services.clock.now()) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"id": "ma-clean-peak"}, DuplicateProgramError, "'ma-clean-peak' already exists"),
        ({"id": "elrp"}, DuplicateProgramError, "'elrp' is already an alias of program 'ca-elrp'"),
        ({"aliases": ["connected-solutions"]}, DuplicateProgramError, "already an alias"),
        ({"pay_rule": "per_hug"}, ProgramError, "pay_rule 'per_hug' is not one of"),
        ({"time_zone": "Chicago"}, ProgramError, "time_zone 'Chicago' is not a known IANA zone"),
        ({"season": []}, ProgramError, "needs at least one [[season]]"),
    ],
)
async def test_custom_program_refusals_name_the_problem(csms, changes, error, message) -> None:
    catalog = ProgramCatalog(csms.services)
    with pytest.raises(error) as info:
        await catalog.add_custom(definition(**changes))
    assert message in str(info.value)
    assert list(await catalog.all()) == list(load_programs())


async def test_a_custom_program_may_not_reuse_another_custom_programs_names(csms) -> None:
    catalog = ProgramCatalog(csms.services)
    await catalog.add_custom(definition())
    with pytest.raises(DuplicateProgramError, match="'coop' is already an alias"):
        await catalog.add_custom(definition(id="coop", aliases=[]))
    with pytest.raises(DuplicateProgramError, match="'coop-summer' already exists"):
        await catalog.add_custom(definition(aliases=[]))


async def test_two_operators_adding_the_same_program_at_once_get_one(csms) -> None:
    catalog = ProgramCatalog(csms.services)
    results = await asyncio.gather(
        catalog.add_custom(definition()),
        catalog.add_custom(definition(id="coop-2")),  # same alias "coop"
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], DuplicateProgramError)
    custom = [p for p in (await catalog.all()).values() if not ProgramCatalog.is_shipped(p)]
    assert len(custom) == 1


async def test_a_stored_definition_that_no_longer_validates_is_left_out(csms) -> None:
    def unit(session: Session) -> None:
        session.add(CustomProgram(id="broken", definition=definition(id="broken", pay_rule="x")))

    await csms.services.writer.write(unit)
    catalog = ProgramCatalog(csms.services)
    with structlog.testing.capture_logs() as logs:
        programs = await catalog.all()
    assert "broken" not in programs and "ma-connectedsolutions" in programs
    [entry] = [e for e in logs if e["event"] == "catalog.custom_program_invalid"]
    assert entry["program_id"] == "broken" and "pay_rule 'x'" in entry["reason"]
    with pytest.raises(UnknownProgramError):
        await catalog.get("broken")
