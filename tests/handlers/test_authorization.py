"""Block C over real websockets: Authorize against the id-token list and the policies, with
the 2.1 allowedEnergyTransfer of use case Q01."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from csms.store.models import IdToken
from tests.handlers.support import add
from tests.stations import connected

CALLS = {"2.1": call21, "2.0.1": call201}


def authorize(version: str, token: str, kind: str = "ISO14443") -> object:
    return CALLS[version].Authorize(id_token={"idToken": token, "type": kind})


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_C01_token_statuses_from_the_list(csms, version) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=30)
    await add(
        csms,
        IdToken(id_token="GOOD", type="ISO14443", status="Accepted", group_id="FLEET-7"),
        IdToken(id_token="STOLEN", type="ISO14443", status="Blocked"),
        IdToken(id_token="OLD", type="ISO14443", status="Accepted", expires_at=past),
        IdToken(id_token="SOON", type="ISO14443", status="Accepted", expires_at=future),
        IdToken(id_token="BROKEN", type="ISO14443", status="Invalid"),
    )
    async with connected(csms, "CP-C01", version) as station:
        good = await station.call(authorize(version, "GOOD"))
        good_lower = await station.call(authorize(version, "good"))  # IdToken: case-insensitive
        stolen = await station.call(authorize(version, "STOLEN"))
        old = await station.call(authorize(version, "OLD"))
        soon = await station.call(authorize(version, "SOON"))
        broken = await station.call(authorize(version, "BROKEN"))
        other_type = await station.call(authorize(version, "STOLEN", "KeyCode"))
    assert good.id_token_info == {
        "status": "Accepted",
        "group_id_token": {"id_token": "FLEET-7", "type": "Central"},
    }
    assert good_lower.id_token_info["status"] == "Accepted"
    assert stolen.id_token_info == {"status": "Blocked"}
    assert old.id_token_info["status"] == "Expired"
    assert soon.id_token_info["status"] == "Accepted"
    assert soon.id_token_info["cache_expiry_date_time"].endswith("Z")
    assert broken.id_token_info == {"status": "Invalid"}
    # a token not in the list, here of another type: accepted by the default policy
    assert other_type.id_token_info == {"status": "Accepted"}


async def test_C01_unknown_token_follows_the_policy(csms) -> None:
    csms.services.policies.accept_unknown_id_tokens = False
    async with connected(csms, "CP-C01U") as station:
        unknown = await station.call(authorize("2.1", "NEVER-SEEN"))
        free_vend = await station.call(authorize("2.1", "", "NoAuthorization"))
    assert unknown.id_token_info == {"status": "Unknown"}
    assert free_vend.id_token_info == {"status": "Accepted"}


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_Q01_allowed_energy_transfer_only_on_2_1(csms, version) -> None:
    asked: list[tuple[str, int | None, str]] = []

    async def allow_dc_bpt(station_id: str, evse_id: int | None, id_token: str) -> list[str]:
        asked.append((station_id, evse_id, id_token))
        return ["DC_BPT"]

    csms.services.policies.allowed_energy_transfer = allow_dc_bpt
    async with connected(csms, "CP-Q01", version) as station:
        answer = await station.call(authorize(version, "DRIVER-1"))
    assert answer.id_token_info == {"status": "Accepted"}
    if version == "2.1":
        assert answer.allowed_energy_transfer == ["DC_BPT"]
        assert asked == [("CP-Q01", None, "DRIVER-1")]
    else:  # 2.0.1 has no such field: the policy is not even asked
        assert not hasattr(answer, "allowed_energy_transfer")
        assert asked == []


async def test_Q01_no_modes_for_a_blocked_token_or_an_empty_policy(csms) -> None:
    await add(csms, IdToken(id_token="STOLEN", type="ISO14443", status="Blocked"))

    async def allow_dc_bpt(station_id: str, evse_id: int | None, id_token: str) -> list[str]:
        return ["DC_BPT"] if id_token == "STOLEN" else []

    csms.services.policies.allowed_energy_transfer = allow_dc_bpt
    async with connected(csms, "CP-Q01B") as station:
        blocked = await station.call(authorize("2.1", "STOLEN"))
        charging_only = await station.call(authorize("2.1", "DRIVER-2"))
    assert blocked.id_token_info == {"status": "Blocked"}
    assert blocked.allowed_energy_transfer is None
    assert charging_only.allowed_energy_transfer is None


async def test_Q01_a_failing_policy_leaves_the_station_charging_only(csms) -> None:
    async def broken(station_id: str, evse_id: int | None, id_token: str) -> list[str]:
        raise RuntimeError("scheduler unavailable")

    csms.services.policies.allowed_energy_transfer = broken
    async with connected(csms, "CP-Q01F") as station:
        answer = await station.call(authorize("2.1", "DRIVER-3"))
    assert answer.id_token_info == {"status": "Accepted"}
    assert answer.allowed_energy_transfer is None
