"""The one place that sends CSMS -> station requests, with timeouts and typed results.

Every command returns a `CommandResult` instead of raising or returning None (the `ocpp`
library's `suppress=True` turns an error into None): a caller always learns whether the
station answered, what it answered, or why there is no answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from csms.protocol.casing import payload_of
from csms.server.session import CallFailedError

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.commands")


@dataclass(frozen=True, slots=True)
class CommandResult:
    station_id: str
    action: str
    ok: bool  # the station answered with a valid CALLRESULT
    payload: dict[str, Any] = field(default_factory=dict)
    # When not ok: not-connected | timeout | call-error | invalid-request | invalid-response
    # | disconnected | refused (the discharge gate)
    failure: str | None = None
    error_code: str | None = None
    reason: str = ""

    @property
    def status(self) -> str | None:
        """The `status` field most answers carry (Accepted, Rejected, ...)."""
        value = self.payload.get("status")
        return value if isinstance(value, str) else None

    @property
    def accepted(self) -> bool:
        return self.ok and self.status == "Accepted"


class Commands:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def send(
        self,
        station_id: str,
        message: Any,
        *,
        action: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Send a request (an `ocpp.v21.call.*` / `ocpp.v201.call.*` dataclass, or a spec-JSON
        dict with its `action`) and wait for the station's answer."""
        session = self.services.registry.get(station_id)
        name = action or type(message).__name__
        if session is None:
            return CommandResult(
                station_id,
                name,
                False,
                failure="not-connected",
                reason=f"station {station_id!r} is not connected",
            )
        try:
            name, payload = payload_of(message, session.version, action)
        except (KeyError, TypeError) as exc:
            return CommandResult(
                station_id, name, False, failure="invalid-request", reason=str(exc)
            )
        wait = timeout if timeout is not None else self.services.settings.call_timeout_s
        try:
            answer = await session.call(name, payload, wait)
        except CallFailedError as exc:
            log.info(
                "command.failed",
                station_id=station_id,
                action=name,
                failure=exc.kind,
                reason=exc.description,
            )
            return CommandResult(
                station_id,
                name,
                False,
                failure=exc.kind,
                error_code=exc.code,
                reason=exc.description,
            )
        return CommandResult(station_id, name, True, payload=answer)
