"""Decisions other rooms plug into the handlers, so handlers stay free of business rules.

The V2G scheduler fills `allowed_energy_transfer` (use case Q01): what the Authorize answer
tells a 2.1 station about bidirectional transfer for a driver's transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# (station_id, evse_id or None, id_token) -> energy transfer modes to allow, or None for none
AllowedEnergyTransferPolicy = Callable[[str, int | None, str], Awaitable[list[str] | None]]


async def _allow_nothing_extra(station_id: str, evse_id: int | None, id_token: str) -> None:
    return None


@dataclass
class Policies:
    # Registration of stations that boot: "Accepted" for everyone, or a function's decision.
    boot_status: Callable[[str, dict[str, object]], Awaitable[str]] | None = None
    # Q01: AuthorizeResponse.allowedEnergyTransfer (2.1 only).
    allowed_energy_transfer: AllowedEnergyTransferPolicy = _allow_nothing_extra
    # Id tokens not in our list: accept them (a site without an authorisation list) or not.
    accept_unknown_id_tokens: bool = True
