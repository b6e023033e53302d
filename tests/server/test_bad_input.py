"""Bad input on the OCPP socket, end to end over real websockets against the real server.

Each ordinary error gets the CALLERROR OCPP-J prescribes (Part 4 "Valid Error Codes") with the
request's message id where it can be read, and the connection, the server, the other stations
and what was stored before all survive it. Abuse (oversized frames, floods) gets a clean close
for that station alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from csms.handlers import routes
from csms.runtime import CentralSystem
from csms.store.models import Station
from tests.conftest import make_settings
from tests.server.conftest import BOOT, HANG_GUARD_S, SUBPROTOCOLS, raw_station
from tests.stations import ocpp_url

NEEDS_DC = {"evMaxCurrent": 200, "evMaxVoltage": 400, "stateOfCharge": 101}

# (what, frame, expected code, expected message id); both versions.
ERRORS: list[tuple[str, Any, str, str]] = [
    ("not JSON", "this is not json", "RpcFrameworkError", "-1"),
    ("JSON object, not an OCPP array", '{"messageTypeId": 2}', "RpcFrameworkError", "-1"),
    ("empty array", "[]", "RpcFrameworkError", "-1"),
    ("CALL without payload", '[2, "m-short", "Heartbeat"]', "RpcFrameworkError", "m-short"),
    ("numeric message id", '[2, 42, "Heartbeat", {}]', "RpcFrameworkError", "-1"),
    ("message id over 36 chars", [2, "x" * 37, "Heartbeat", {}], "RpcFrameworkError", "-1"),
    ("wrong message type id", [9, "m-type", "Heartbeat", {}], "MessageTypeNotSupported", "m-type"),
    ("payload not an object", [2, "m-arr", "Heartbeat", []], "FormatViolation", "m-arr"),
    ("unknown action", [2, "m-unk", "BrewCoffee", {}], "NotImplemented", "m-unk"),
    (
        "known action the CSMS does not handle",
        [2, "m-scp", "SetChargingProfile", {"evseId": 1, "chargingProfile": {}}],
        "NotSupported",
        "m-scp",
    ),
    (
        "wrong JSON type",
        [2, "m-type2", "BootNotification", {**BOOT, "reason": 7}],
        "TypeConstraintViolation",
        "m-type2",
    ),
    (
        "missing required field",
        [2, "m-req", "BootNotification", {"reason": "PowerUp"}],
        "OccurrenceConstraintViolation",
        "m-req",
    ),
    (
        "value out of range (K15 stateOfCharge 0..100)",
        [
            2,
            "m-range",
            "NotifyEVChargingNeeds",
            {
                "evseId": 1,
                "chargingNeeds": {
                    "requestedEnergyTransfer": "DC",
                    "dcChargingParameters": NEEDS_DC,
                },
            },
        ],
        "PropertyConstraintViolation",
        "m-range",
    ),
    (
        "value outside the enum",
        [2, "m-enum", "BootNotification", {**BOOT, "reason": "Whim"}],
        "PropertyConstraintViolation",
        "m-enum",
    ),
    (
        "string longer than string[20]",
        [
            2,
            "m-long",
            "BootNotification",
            {**BOOT, "chargingStation": {"model": "M" * 21, "vendorName": "dcbel"}},
        ],
        "TypeConstraintViolation",
        "m-long",
    ),
    (
        "unknown property",
        [2, "m-extra", "Heartbeat", {"mood": "grumpy"}],
        "ProtocolError",
        "m-extra",
    ),
    (
        "NUL character in a string (no database text column can hold it)",
        [
            2,
            "m-nul",
            "BootNotification",
            {**BOOT, "chargingStation": {"model": "A\x00", "vendorName": "x"}},
        ],
        "PropertyConstraintViolation",
        "m-nul",
    ),
    ("binary frame", b'[2, "m-bin", "Heartbeat", {}]', "FormatViolation", "m-bin"),
    ("binary garbage", b"\xff\x00\xfe", "FormatViolation", "-1"),
]
ONLY_201 = [
    ("type 5 on 2.0.1", [5, "m-5", "GenericError", "", {}], "MessageTypeNotSupported", "m-5"),
    (
        "type 6 on 2.0.1",
        [6, "m-6", "NotifyPeriodicEventStream", {}],
        "MessageTypeNotSupported",
        "m-6",
    ),
    (
        "2.1-only action on 2.0.1",
        [2, "m-der", "NotifyDERAlarm", {}],
        "NotImplemented",
        "m-der",
    ),
]


async def _stored_station(system: CentralSystem, station_id: str) -> Station:
    async with system.services.db.read() as session:
        query = select(Station).where(Station.id == station_id)
        return (await session.execute(query)).scalar_one()


async def _check_errors(system: CentralSystem, version: str, cases: list[Any]) -> None:
    station_id = f"CP-BAD-{version.replace('.', '')}"
    async with raw_station(system, station_id, version) as station:
        booted = await station.call("boot-1", "BootNotification", BOOT)
        assert booted[:2] == [3, "boot-1"] and booted[2]["status"] == "Accepted"
        for what, frame, code, message_id in cases:
            await station.send(frame)
            answer = await station.reply()
            assert answer[0] == 4, what
            assert (answer[1], answer[2]) == (message_id, code), (what, answer)
            assert isinstance(answer[3], str) and isinstance(answer[4], dict)
            assert await station.heartbeat_answered(f"hb-{message_id}"), what
        async with raw_station(system, station_id + "-other", version) as other:
            assert await other.heartbeat_answered()
    stored = await _stored_station(system, station_id)
    assert (stored.vendor, stored.model, stored.ocpp_version) == ("dcbel", "Ara", version)


async def test_bad_frames_get_the_specified_callerror_and_nothing_is_lost(csms) -> None:
    """Both databases: every error case on one 2.1 connection, after a BootNotification."""
    await _check_errors(csms, "2.1", ERRORS)


async def test_bad_frames_on_201_get_the_specified_callerror(csms_sqlite) -> None:
    await _check_errors(csms_sqlite, "2.0.1", ERRORS + ONLY_201)


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
async def test_replies_to_nothing_of_ours_are_ignored_and_the_connection_stays(
    csms_sqlite, version
) -> None:
    """A CALLRESULT / CALLERROR for an id we never sent gets no answer (OCPP-J)."""
    async with raw_station(csms_sqlite, "CP-ORPHAN", version) as station:
        await station.send([3, "never-sent", {"status": "Accepted"}])
        await station.send([4, "never-sent-2", "GenericError", "", {}])
        await station.send([3, "never-sent-3", "not an object"])  # broken too: on 2.0.1 silent
        answer = await station.call("hb-after", "Heartbeat", {})
        if version == "2.1":  # a broken CALLRESULT earns a CALLRESULTERROR on 2.1
            assert answer[:3] == [5, "never-sent-3", "FormatViolation"]
            answer = await station.reply()
        assert answer[:2] == [3, "hb-after"]


async def test_21_callresulterror_and_unhandled_send_are_taken_silently(csms_sqlite) -> None:
    """2.1 types 5 and 6: logged or dropped, never answered, nothing breaks."""
    async with raw_station(csms_sqlite, "CP-T56") as station:
        await station.send([5, "m-5", "FormatViolation", "your reply was odd", {}])
        await station.send([6, "m-6", "NotifyDERStartStop", {"controlId": "x"}])  # no SEND route
        await station.send([6, "m-6b", "NotAnAction", {}])
        await station.send([5, 17, "broken", "", {}])
        answer = await station.call("hb-56", "Heartbeat", {})
        assert answer[:2] == [3, "hb-56"]


async def test_frame_over_the_size_limit_closes_with_1009_and_nothing_else(csms_sqlite) -> None:
    limit = csms_sqlite.settings.max_frame_bytes
    async with raw_station(csms_sqlite, "CP-CALM") as calm:
        async with raw_station(csms_sqlite, "CP-HUGE") as huge:
            await huge.send([2, "big", "DataTransfer", {"vendorId": "x", "data": "A" * limit}])
            with pytest.raises(ConnectionClosed) as closed:
                await huge.reply()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert await calm.heartbeat_answered()
    async with raw_station(csms_sqlite, "CP-HUGE") as again:  # the server still accepts it
        assert await again.heartbeat_answered()


async def test_flood_of_calls_closes_that_station_with_1008_only(csms_sqlite, monkeypatch) -> None:
    """More CALLs than the inbox holds (OCPP-J: one at a time) is abuse: close 1008."""
    release = asyncio.Event()
    original = routes.ROUTES["Heartbeat"]

    async def slow_for_the_flooder(ctx, req):
        if ctx.station_id == "CP-FLOOD":
            await release.wait()
        return await original(ctx, req)

    monkeypatch.setitem(routes.ROUTES, "Heartbeat", slow_for_the_flooder)
    inbox = csms_sqlite.settings.max_queued_calls
    try:
        async with raw_station(csms_sqlite, "CP-QUIET") as quiet:
            async with raw_station(csms_sqlite, "CP-FLOOD") as flooder:
                for i in range(inbox + 5):
                    await flooder.send([2, f"f{i}", "Heartbeat", {}])
                with pytest.raises(ConnectionClosed) as closed:
                    await flooder.reply()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert await quiet.heartbeat_answered()
    finally:
        release.set()
    assert "CP-FLOOD" not in csms_sqlite.services.registry


# ---- hypothesis: random frames over one connection ----------------------------------------

ACTIONS = [
    "Heartbeat",
    "BootNotification",
    "StatusNotification",
    "Authorize",
    "MeterValues",
    "NotifyEVChargingNeeds",
    "SetChargingProfile",
    "Reset",
    "BrewCoffee",
    "",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(
    st.sampled_from(["reason", "chargingStation", "evseId", "idToken", "timestamp", "x"]),
    json_values,
    max_size=4,
)
junk = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60),
    json_values.map(lambda v: orjson.dumps(v).decode()),
    st.tuples(st.sampled_from([3, 4, 5, 6, 7, 0]), st.text(max_size=40), json_values).map(
        lambda t: orjson.dumps(list(t)).decode()
    ),
)
# ("call", action, payload) becomes a CALL with a unique id the test expects exactly one
# answer to; ("junk", text) is sent as it is.
items = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(ACTIONS), payloads),
    st.tuples(st.just("junk"), junk),
)


class ThreadedCsms:
    """The real server in its own event loop thread, so hypothesis can drive it synchronously."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.system = CentralSystem(make_settings(database_url, boot_configuration=False))
        self._run(self.system.start())

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(HANG_GUARD_S * 3)

    def stop(self) -> None:
        self._run(self.system.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(HANG_GUARD_S)


@pytest.fixture
def threaded_csms(sqlite_url: str) -> Iterator[ThreadedCsms]:
    server = ThreadedCsms(sqlite_url)
    try:
        yield server
    finally:
        server.stop()


_counter = iter(range(10**9))


@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
@given(sequence=st.lists(items, min_size=1, max_size=25))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_random_frames_never_break_the_connection(threaded_csms, version, sequence) -> None:
    station_id = f"CP-HYP-{next(_counter)}"
    expected_ids: set[str] = set()
    with sync_connect(
        ocpp_url(threaded_csms.system, station_id),
        subprotocols=[SUBPROTOCOLS[version]],
        open_timeout=HANG_GUARD_S,
    ) as ws:
        for n, item in enumerate(sequence):
            if item[0] == "call":
                expected_ids.add(f"c{n}")
                ws.send(orjson.dumps([2, f"c{n}", item[1], item[2]]).decode())
            else:
                ws.send(item[1])
        ws.send('[2, "final-hb", "Heartbeat", {}]')
        answers = _answers_until(ws, "final-hb")
    final = answers.pop()
    assert final[0] == 3 and "currentTime" in final[2]
    allowed_types = {3, 4, 5} if version == "2.1" else {3, 4}
    for answer in answers:
        assert isinstance(answer, list) and answer[0] in allowed_types, answer
        assert isinstance(answer[1], str)
        if answer[0] == 4:
            assert isinstance(answer[2], str) and isinstance(answer[3], str)
            assert isinstance(answer[4], dict)
        if answer[0] == 3:  # a CALLRESULT only ever answers one of our CALLs
            assert answer[1] in expected_ids
    answered = [a[1] for a in answers if a[1] in expected_ids]
    assert sorted(answered) == sorted(expected_ids)  # each CALL answered exactly once


def _answers_until(ws: Any, last_id: str) -> list[Any]:
    answers: list[Any] = []
    while True:
        frame = orjson.loads(ws.recv(timeout=HANG_GUARD_S))
        answers.append(frame)
        if frame[1] == last_id and frame[0] in (3, 4):
            return answers


async def test_server_survives_a_station_that_vanishes_mid_call(csms_sqlite) -> None:
    """Closing the TCP link with CALLs in flight ends only that session."""
    ws = await websockets.connect(ocpp_url(csms_sqlite, "CP-GONE"), subprotocols=["ocpp2.1"])
    for i in range(5):
        await ws.send(orjson.dumps([2, f"g{i}", "BootNotification", BOOT]).decode())
    ws.transport.abort()
    async with raw_station(csms_sqlite, "CP-STAYS") as station:
        assert await station.heartbeat_answered()
