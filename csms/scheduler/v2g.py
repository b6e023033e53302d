"""The V2G room assembled: programs, notifications, the event loop, the dispatcher and the
late-data restater, started and stopped with the CSMS (csms.runtime).

It also plugs the room into the foundation: gate checks (c)-(e) join the one discharge gate,
and the Q01 policy answers Authorize with the bidirectional modes an enrolled, matched car may
use (the dispatcher still sends NotifyAllowedEnergyTransfer for a running transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select

from csms.scheduler.catalog import ProgramCatalog
from csms.scheduler.dispatcher import Dispatcher
from csms.scheduler.events import EventService
from csms.scheduler.gate_checks import V2G_CHECKS
from csms.scheduler.hardware import hardware_of
from csms.scheduler.notify import Notifier
from csms.scheduler.restater import LateDataRestater
from csms.store.models import Enrollment, Station

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler")


class V2G:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.catalog = ProgramCatalog(services)
        self.notifier = Notifier(services)
        self.dispatcher = Dispatcher(services)
        self.events = EventService(services, self.catalog, self.notifier, self.dispatcher)
        self.restater = LateDataRestater(services)
        commands = services.commands
        assert commands is not None
        commands.gate_checks.extend(V2G_CHECKS)
        services.policies.allowed_energy_transfer = self.allowed_energy_transfer

    async def start(self) -> None:
        self.restater.start()
        self.events.start()

    async def stop(self) -> None:
        await self.events.stop()
        await self.restater.stop()
        await self.notifier.drain()
        await self.notifier.close()

    async def allowed_energy_transfer(
        self, station_id: str, evse_id: int | None, id_token: str
    ) -> list[str] | None:
        """Q01 at Authorize: the station's bidirectional modes, when an active enrolment puts a
        car on it (the pair was checked at enrolment; the gate checks it again)."""
        async with self.services.db.read() as session:
            query = select(Enrollment.id).where(
                Enrollment.station_id == station_id, Enrollment.active
            )
            if evse_id is not None:
                query = query.where(Enrollment.evse_id == evse_id)
            enrolled = (await session.execute(query.limit(1))).scalar_one_or_none()
            station = await session.get(Station, station_id) if enrolled else None
        hardware = hardware_of(station) if station else None
        if hardware is None:
            return None
        return [m for m in hardware.energy_transfer_modes if "BPT" in m] or None
