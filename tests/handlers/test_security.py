"""Block A over real websockets: SecurityEventNotification (A04)."""

from __future__ import annotations

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.store.models import SecurityEvent
from simclock import parse_instant
from tests.handlers.support import rows
from tests.stations import connected


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_A04_security_event_is_stored(csms, version) -> None:
    calls = call21 if version == "2.1" else call201
    async with connected(csms, "CP-A04", version) as station:
        answer = await station.call(
            calls.SecurityEventNotification(
                type="InvalidFirmwareSignature",
                timestamp="2026-07-15T03:00:00Z",
                tech_info="signature does not match the vendor certificate",
            )
        )
        await station.call(
            calls.SecurityEventNotification(type="ResetOrReboot", timestamp="2026-07-15T03:01:00Z")
        )
    assert answer is not None
    events = await rows(csms, SecurityEvent, station_id="CP-A04")
    assert [(e.type, e.tech_info) for e in events] == [
        ("InvalidFirmwareSignature", "signature does not match the vendor certificate"),
        ("ResetOrReboot", ""),
    ]
    assert events[0].timestamp == parse_instant("2026-07-15T03:00:00Z")
