"""What a CSMS process is made of, passed explicitly to whoever needs it (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from csms.domain import DomainEvents
from csms.policies import Policies
from csms.server.registry import SessionRegistry
from csms.settings import Settings
from csms.store.db import Database
from csms.store.writer import GroupWriter
from simclock import Clock

if TYPE_CHECKING:
    from csms.commands import Commands
    from csms.scheduler.v2g import V2G


@dataclass
class Services:
    settings: Settings
    db: Database
    writer: GroupWriter
    registry: SessionRegistry = field(default_factory=SessionRegistry)
    policies: Policies = field(default_factory=Policies)
    domain: DomainEvents = field(default_factory=DomainEvents)
    commands: Commands | None = None
    v2g: V2G | None = None

    @property
    def clock(self) -> Clock:
        return self.settings.clock
