"""The program catalog of a running CSMS: the shipped programs (data/programs.toml) plus the
operator's custom programs (CustomProgram rows), looked up by id or alias.

Every rule about what a valid program is, and which names are free, lives in
csms.scheduler.programs; this module only reads and stores. A custom program is re-validated
inside the writer's unit of work, so two operators adding the same id or alias at once cannot
both succeed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.scheduler.programs import (
    Program,
    ProgramError,
    custom_program,
    find_program,
    load_programs,
)
from csms.store.models import CustomProgram

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.catalog")


def _with_custom(rows: list[CustomProgram]) -> dict[str, Program]:
    """Shipped programs, then each stored custom program that is still valid.

    A stored definition can stop being valid when the shipped file changes (a new alias that
    clashes, a rule tightened); it is logged and left out rather than breaking every lookup.
    """
    programs: dict[str, Program] = dict(load_programs())
    for row in rows:
        try:
            programs[row.id] = custom_program(row.definition, programs)
        except ProgramError as exc:
            log.error("catalog.custom_program_invalid", program_id=row.id, reason=str(exc))
    return programs


def _custom_rows_query() -> Any:
    return select(CustomProgram).order_by(CustomProgram.created_at, CustomProgram.id)


class ProgramCatalog:
    """Shipped plus custom programs of one CSMS (its `services`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def all(self) -> dict[str, Program]:
        """Every program keyed by id: shipped first, then custom in the order they were added."""
        async with self.services.db.read() as session:
            rows = list((await session.execute(_custom_rows_query())).scalars())
        return _with_custom(rows)

    async def get(self, id_or_alias: str) -> Program:
        """The program with this id or alias; UnknownProgramError (a LookupError) lists the
        known ones."""
        return find_program(await self.all(), id_or_alias)

    async def add_custom(self, data: Mapping[str, Any]) -> Program:
        """Validate and store an operator's program. ProgramError says what is wrong;
        DuplicateProgramError that its id or an alias is taken."""
        custom_program(data, await self.all())  # fail fast, before queueing a write
        now = self.services.clock.now()

        def unit(session: Session) -> Program:
            rows = list(session.execute(_custom_rows_query()).scalars())
            program = custom_program(data, _with_custom(rows))
            session.add(
                CustomProgram(id=program.id, definition=program.definition(), created_at=now)
            )
            return program

        program = await self.services.writer.write(unit, label="custom-program")
        log.info("catalog.custom_program_added", program_id=program.id, aliases=program.aliases)
        return program

    @staticmethod
    def is_shipped(program: Program) -> bool:
        return program.id in load_programs()
