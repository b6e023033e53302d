"""What a command returns, and the small rules every command shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from csms import boot_config
from csms.gate import GateDecision

# A request payload as the spec writes it (camelCase), the same JSON the REST API accepts.
Request = Mapping[str, Any]

ORIGINS = frozenset({"api", "cli", "dispatcher", "mqtt"})


@dataclass(frozen=True, slots=True)
class CommandResult:
    station_id: str
    action: str
    ok: bool  # the station answered with a valid CALLRESULT
    payload: dict[str, Any] = field(default_factory=dict)
    # When not ok: not-connected | not-supported-by-version | timeout | call-error
    # | invalid-request | invalid-response | disconnected | refused (the discharge gate)
    failure: str | None = None
    error_code: str | None = None
    reason: str = ""
    # The ChargingProfileRecord written for a SetChargingProfile (sent or refused).
    record_id: int | None = None

    @property
    def status(self) -> str | None:
        """The `status` field most answers carry (Accepted, Rejected, ...)."""
        value = self.payload.get("status")
        return value if isinstance(value, str) else None

    @property
    def accepted(self) -> bool:
        return self.ok and self.status == "Accepted"


@dataclass(frozen=True, slots=True)
class BootConfigurationResult:
    station_id: str
    sent: tuple[boot_config.VariableSetting, ...]
    statuses: tuple[str, ...]  # per setting: the station's attributeStatus, or "Error"
    configured: bool  # every setting Accepted (or RebootRequired)


def failed(station_id: str, action: str, failure: str, reason: str, **kw: Any) -> CommandResult:
    return CommandResult(station_id, action, False, failure=failure, reason=reason, **kw)


def check_origin(origin: str) -> None:
    if origin not in ORIGINS:  # a caller's bug, not a station's or an operator's input
        raise ValueError(f"origin must be one of {sorted(ORIGINS)}, got {origin!r}")


def refused(
    station_id: str, action: str, decision: GateDecision, record_id: int | None
) -> CommandResult:
    return failed(
        station_id,
        action,
        "refused",
        decision.reason,
        error_code=decision.check,
        record_id=record_id,
    )
