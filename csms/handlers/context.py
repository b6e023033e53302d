"""What a handler is given: who sent the message, and the services to act on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from ocppj.versions import OcppVersion

if TYPE_CHECKING:
    from csms.services import Services

T = TypeVar("T")
Payload = dict[str, Any]


@dataclass
class HandlerContext:
    station_id: str
    version: OcppVersion
    message_id: str
    services: Services
    after_reply: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.services.clock.now()

    async def write(self, unit: Callable[[Session], T]) -> T:
        """Commit `unit` before the reply is sent (a station is acknowledged only after it)."""
        return await self.services.writer.write(unit, label=self.station_id)

    def after(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once the reply has been sent (e.g. configure a station that booted)."""
        self.after_reply.append(action)


Handler = Callable[[HandlerContext, Payload], Awaitable[Payload]]
SendHandler = Callable[[HandlerContext, Payload], Awaitable[None]]
