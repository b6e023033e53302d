"""A station session: our CALLs to the station and what comes back, and handler failures."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sqlmodel import select

from csms.handlers import routes
from csms.server.session import CallFailedError
from csms.store.models import JournalEntry
from tests.server.conftest import HANG_GUARD_S, RawStation, raw_station

RESET = {"type": "Immediate"}


async def _incoming_call(station: RawStation) -> list:
    async with asyncio.timeout(HANG_GUARD_S):
        return orjson.loads(await station.ws.recv())


async def _start_call(system, station_id: str, action: str = "Reset", payload=None, timeout=10.0):
    session = system.services.registry.get(station_id)
    assert session is not None
    return asyncio.create_task(session.call(action, payload or RESET, timeout))


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_answer_breaking_the_response_schema_is_an_invalid_response(csms_sqlite, version):
    """On 2.1 the station is also told, with a CALLRESULTERROR (message type 5)."""
    async with raw_station(csms_sqlite, "CP-BADRES", version) as station:
        task = await _start_call(csms_sqlite, "CP-BADRES")
        call = await _incoming_call(station)
        assert call[0] == 2 and call[2] == "Reset"
        await station.send([3, call[1], {"status": "Perhaps"}])
        with pytest.raises(CallFailedError) as failed:
            await task
        assert failed.value.kind == "invalid-response"
        assert failed.value.code == "PropertyConstraintViolation"
        if version == "2.1":
            answer = await station.reply()
            assert answer[:3] == [5, call[1], "PropertyConstraintViolation"]
        assert await station.heartbeat_answered()


async def test_call_error_reply_is_a_call_error_with_its_code(csms_sqlite) -> None:
    async with raw_station(csms_sqlite, "CP-CE") as station:
        task = await _start_call(csms_sqlite, "CP-CE")
        call = await _incoming_call(station)
        await station.send([4, call[1], "NotSupported", "no resets here", {}])
        with pytest.raises(CallFailedError) as failed:
            await task
        assert (failed.value.kind, failed.value.code) == ("call-error", "NotSupported")


async def test_unparseable_reply_fails_the_call_at_once_not_at_its_timeout(csms_sqlite) -> None:
    async with raw_station(csms_sqlite, "CP-BROKEN", "2.0.1") as station:
        task = await _start_call(csms_sqlite, "CP-BROKEN", timeout=3600)
        call = await _incoming_call(station)
        await station.send([3, call[1], ["not", "an", "object"]])
        with pytest.raises(CallFailedError) as failed:
            async with asyncio.timeout(HANG_GUARD_S):
                await task
        assert (failed.value.kind, failed.value.code) == ("invalid-response", "FormatViolation")


async def test_a_callresulterror_never_answers_our_own_call(csms_sqlite) -> None:
    """Type 5 refers to one of our CALLRESULTs; even with a colliding id it settles nothing."""
    async with raw_station(csms_sqlite, "CP-T5") as station:
        task = await _start_call(csms_sqlite, "CP-T5")
        call = await _incoming_call(station)
        await station.send([5, call[1], "GenericError", "confused station", {}])
        await station.send([3, call[1], {"status": "Accepted"}])
        assert (await task)["status"] == "Accepted"


async def test_timeout_then_late_answer_is_ignored(csms_sqlite) -> None:
    async with raw_station(csms_sqlite, "CP-SLOW") as station:
        task = await _start_call(csms_sqlite, "CP-SLOW", timeout=0.2)
        call = await _incoming_call(station)
        with pytest.raises(CallFailedError) as failed:
            await task
        assert failed.value.kind == "timeout"
        await station.send([3, call[1], {"status": "Accepted"}])  # too late: ignored
        assert await station.heartbeat_answered()


async def test_disconnect_fails_the_waiting_call(csms_sqlite) -> None:
    async with raw_station(csms_sqlite, "CP-BYE") as station:
        task = await _start_call(csms_sqlite, "CP-BYE", timeout=3600)
        await _incoming_call(station)
    with pytest.raises(CallFailedError) as failed:
        async with asyncio.timeout(HANG_GUARD_S):
            await task
    assert failed.value.kind == "disconnected"


async def test_action_the_stations_version_lacks_is_an_invalid_request(csms_sqlite) -> None:
    async with raw_station(csms_sqlite, "CP-OLD", "2.0.1"):
        session = csms_sqlite.services.registry.get("CP-OLD")
        with pytest.raises(CallFailedError) as failed:
            await session.call("SetDERControl", {}, 5)
        assert failed.value.kind == "invalid-request"
        with pytest.raises(CallFailedError) as failed:
            await session.call("Reset", {"type": "Sometime"}, 5)
        assert (failed.value.kind, failed.value.code) == (
            "invalid-request",
            "PropertyConstraintViolation",
        )


async def test_one_call_at_a_time_per_station(csms_sqlite) -> None:
    """OCPP-J: the second CALL is sent only after the first is answered."""
    async with raw_station(csms_sqlite, "CP-SERIAL") as station:
        first = await _start_call(csms_sqlite, "CP-SERIAL")
        second = await _start_call(csms_sqlite, "CP-SERIAL")
        call_1 = await _incoming_call(station)
        await station.send([3, call_1[1], {"status": "Accepted"}])
        call_2 = await _incoming_call(station)
        assert call_2[1] != call_1[1] and first.done()
        await station.send([3, call_2[1], {"status": "Scheduled"}])
        assert (await second)["status"] == "Scheduled"


async def test_crashing_handler_answers_internal_error_and_the_session_goes_on(
    csms_sqlite, monkeypatch
) -> None:
    async def broken(ctx, req):
        raise RuntimeError("bug")

    async def invalid_reply(ctx, req):
        return {"currentTime": "not a time"}

    async with raw_station(csms_sqlite, "CP-BUG") as station:
        monkeypatch.setitem(routes.ROUTES, "Heartbeat", broken)
        answer = await station.call("m1", "Heartbeat", {})
        assert answer[:3] == [4, "m1", "InternalError"]
        monkeypatch.setitem(routes.ROUTES, "Heartbeat", invalid_reply)
        answer = await station.call("m2", "Heartbeat", {})
        assert answer[:3] == [4, "m2", "InternalError"]  # our fault, not a station's violation
        monkeypatch.undo()
        assert await station.heartbeat_answered()


async def test_journal_keeps_frames_with_nul_and_odd_type_ids(csms) -> None:
    """A frame PostgreSQL text cannot hold as is still reaches the journal, on both databases."""
    async with raw_station(csms, "CP-NUL") as station:
        await station.send('[99999999999, "nul\\u0000id", "X", {}]')
        await station.reply()
        await station.send(b'[2, "bin\x00", "Heartbeat", {}]')
        await station.reply()
        assert await station.heartbeat_answered()
    await csms.services.writer.write(_nothing)  # everything queued before is committed
    async with csms.services.db.read() as session:
        rows = (
            (await session.execute(select(JournalEntry).where(JournalEntry.station_id == "CP-NUL")))
            .scalars()
            .all()
        )
    inbound = [r for r in rows if r.direction == "in"]
    assert len(inbound) == 3
    assert all("\x00" not in r.frame for r in rows)


def _nothing(session) -> None:
    return None
