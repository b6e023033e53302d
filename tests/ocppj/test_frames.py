"""OCPP-J frame parsing (OCPP 2.0.1 / 2.1 Part 4 §4): anything a peer sends either becomes a
frame or an RpcError naming the spec's error code, with the message id when it can be read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocppj import frames
from ocppj.errors import ErrorCode, RpcError
from ocppj.versions import V21, V201

VERSIONS = [V21, V201]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
message_ids = st.text(min_size=1, max_size=36)
actions = st.text(min_size=1, max_size=30)

# Frame-shaped arrays: the right type ids and lengths with arbitrary element values, so the
# parser's per-element checks are reached often, not only its first "is it an array" check.
frame_like = st.one_of(
    st.lists(json_values, max_size=6),
    st.tuples(st.sampled_from([2, 3, 4, 5, 6, 0, 7, -1, 2.0, "2"]), json_values).map(list),
    st.tuples(st.sampled_from([2, 6]), json_values, json_values, json_values).map(list),
    st.tuples(st.just(3), json_values, json_values).map(list),
    st.tuples(st.sampled_from([4, 5]), json_values, json_values, json_values, json_values).map(
        list
    ),
)


def _expected_id(data: Any) -> str:
    """The id the spec wants echoed: the frame's own when readable, else "-1"."""
    if isinstance(data, list) and len(data) > 1:
        candidate = data[1]
        if isinstance(candidate, str) and 0 < len(candidate) <= 36:
            return candidate
    return "-1"


def _parse_or_error(raw: str | bytes, version=V21) -> frames.Frame | RpcError:
    try:
        return frames.parse_frame(raw, message_types=version.message_types)
    except RpcError as error:
        return error


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
@given(raw=st.text(max_size=200) | st.binary(max_size=200))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_or_bytes_gives_a_frame_or_an_rpc_error(version, raw) -> None:
    outcome = _parse_or_error(raw, version)  # anything but RpcError propagates and fails
    if isinstance(outcome, RpcError):
        assert outcome.code in set(ErrorCode)
        assert isinstance(outcome.message_id, str)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
@given(data=json_values | frame_like)
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_value_gives_a_frame_or_an_error_with_the_readable_id(version, data) -> None:
    outcome = _parse_or_error(orjson.dumps(data), version)
    if isinstance(outcome, RpcError):
        assert outcome.message_id == _expected_id(data)
    else:
        assert outcome.message_id == data[1]
        assert data[0] in version.message_types


@given(data=json_values | frame_like)
@settings(max_examples=150)
def test_what_parses_serialises_back_to_the_same_json(data) -> None:
    outcome = _parse_or_error(orjson.dumps(data))
    if isinstance(outcome, RpcError):
        return
    again = frames.parse_frame(frames.serialise(outcome), message_types=V21.message_types)
    assert again == outcome


valid_frames = st.one_of(
    st.builds(frames.Call, message_ids, actions, json_objects),
    st.builds(frames.Send, message_ids, actions, json_objects),
    st.builds(frames.CallResult, message_ids, json_objects),
    st.builds(
        frames.CallError,
        message_ids,
        st.sampled_from([c.value for c in ErrorCode]),
        st.text(max_size=255),
        json_objects,
        st.booleans(),
    ),
)


@given(frame=valid_frames)
@settings(max_examples=150)
def test_every_valid_frame_type_round_trips(frame: frames.Frame) -> None:
    text = frames.serialise(frame)
    assert frames.parse_frame(text, message_types=V21.message_types) == frame
    assert frames.serialise(frames.parse_frame(text, message_types=V21.message_types)) == text


@given(frame=valid_frames.filter(lambda f: not isinstance(f, frames.Send)))
@settings(max_examples=60)
def test_201_frames_other_than_types_5_and_6_round_trip(frame: frames.Frame) -> None:
    if isinstance(frame, frames.CallError) and frame.result_error:
        return
    text = frames.serialise(frame)
    assert frames.parse_frame(text, message_types=V201.message_types) == frame


# ---- each malformation earns the code whose meaning fits it -----------------------------


@pytest.mark.parametrize(
    ("raw", "code", "message_id"),
    [
        ("not json", ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ("[2, 'single quotes', 'Heartbeat', {}]", ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        (b"\xff\xfe[2]", ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ('{"messageTypeId": 2}', ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ("[]", ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ('"a string"', ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ("[2]", ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ('[2, 17, "Heartbeat", {}]', ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ('[2, "", "Heartbeat", {}]', ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        (f'[2, "{"x" * 37}", "Heartbeat", {{}}]', ErrorCode.RPC_FRAMEWORK_ERROR, "-1"),
        ('["2", "m1", "Heartbeat", {}]', ErrorCode.RPC_FRAMEWORK_ERROR, "m1"),
        ('[2, "m1", "Heartbeat"]', ErrorCode.RPC_FRAMEWORK_ERROR, "m1"),
        ('[2, "m1", 42, {}]', ErrorCode.RPC_FRAMEWORK_ERROR, "m1"),
        ('[9, "m1", "Heartbeat", {}]', ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED, "m1"),
        ("[1]", ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED, "-1"),
        ('[2, "m1", "Heartbeat", []]', ErrorCode.FORMAT_VIOLATION, "m1"),
        ('[2, "m1", "Heartbeat", "x"]', ErrorCode.FORMAT_VIOLATION, "m1"),
        ('[3, "m1", null]', ErrorCode.FORMAT_VIOLATION, "m1"),
        ('[4, "m1", 5, "x", {}]', ErrorCode.RPC_FRAMEWORK_ERROR, "m1"),
    ],
)
def test_malformed_frame_gets_the_specified_error_code(raw, code, message_id) -> None:
    error = _parse_or_error(raw)
    assert isinstance(error, RpcError)
    assert (error.code, error.message_id) == (code, message_id)


@pytest.mark.parametrize("type_id", [frames.CALLRESULTERROR, frames.SEND])
def test_201_connection_refuses_message_types_5_and_6(type_id: int) -> None:
    raw = {5: '[5, "m1", "FormatViolation", "", {}]', 6: '[6, "m1", "Heartbeat", {}]'}[type_id]
    error = _parse_or_error(raw, V201)
    assert isinstance(error, RpcError)
    assert (error.code, error.message_id) == (ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED, "m1")
    assert isinstance(_parse_or_error(raw, V21), frames.CallError | frames.Send)


def test_broken_frames_remember_their_type_so_results_are_never_answered_as_calls() -> None:
    error = _parse_or_error('[3, "m1", "not an object"]')
    assert isinstance(error, RpcError) and error.frame_type == frames.CALLRESULT
    error = _parse_or_error('[2, "m1", "Heartbeat", 7]')
    assert isinstance(error, RpcError) and error.frame_type == frames.CALL


def test_error_description_is_cut_to_255_characters() -> None:
    text = frames.serialise(frames.CallError("m1", "GenericError", "x" * 1000, {}))
    parsed = frames.parse_frame(text, message_types=V21.message_types)
    assert isinstance(parsed, frames.CallError) and len(parsed.description) == 255
