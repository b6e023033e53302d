"""OCPP-J frames: parse what a peer sent, serialise what we send.

Message types (OCPP 2.1 Part 4 §4): 2 CALL, 3 CALLRESULT, 4 CALLERROR, and on 2.1 only
5 CALLRESULTERROR and 6 SEND. Parsing never raises anything but `RpcError`, carrying the
request's message id when it can be read and "-1" otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ocppj.errors import UNREADABLE_MESSAGE_ID, ErrorCode, RpcError

CALL = 2
CALLRESULT = 3
CALLERROR = 4
CALLRESULTERROR = 5
SEND = 6

MAX_MESSAGE_ID_LENGTH = 36  # OCPP-J: "maximum of 36 characters, to allow for GUIDs"


@dataclass(frozen=True, slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    """A CALLERROR (type 4) or, when `result_error`, a 2.1 CALLRESULTERROR (type 5)."""

    message_id: str
    code: str
    description: str
    details: dict[str, Any]
    result_error: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    """OCPP 2.1 SEND (type 6): a request that is never answered."""

    message_id: str
    action: str
    payload: dict[str, Any]


Frame = Call | CallResult | CallError | Send


def parse_frame(raw: str | bytes, *, message_types: frozenset[int]) -> Frame:
    """Turn one websocket message into a frame, or raise the RpcError to answer with."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RpcError(ErrorCode.RPC_FRAMEWORK_ERROR, f"frame is not valid JSON: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise RpcError(ErrorCode.RPC_FRAMEWORK_ERROR, "frame is not a non-empty JSON array")
    message_id = _read_message_id(data)
    type_id = data[0]
    if isinstance(type_id, bool) or not isinstance(type_id, int):
        raise RpcError(
            ErrorCode.RPC_FRAMEWORK_ERROR,
            "MessageTypeId must be an integer",
            message_id=message_id,
        )
    if type_id not in message_types:
        raise RpcError(
            ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED,
            f"MessageTypeId {type_id} is not supported on this connection",
            message_id=message_id,
        )
    try:
        if message_id == UNREADABLE_MESSAGE_ID and data[1:2] != [UNREADABLE_MESSAGE_ID]:
            raise RpcError(ErrorCode.RPC_FRAMEWORK_ERROR, "MessageId could not be read")
        return _BUILDERS[type_id](data, message_id)
    except RpcError as exc:
        exc.frame_type = type_id
        raise


def _read_message_id(data: list[Any]) -> str:
    if len(data) < 2:
        return UNREADABLE_MESSAGE_ID
    message_id = data[1]
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return UNREADABLE_MESSAGE_ID
    return message_id


def _expect_length(data: list[Any], length: int, what: str, message_id: str) -> None:
    if len(data) != length:
        raise RpcError(
            ErrorCode.RPC_FRAMEWORK_ERROR,
            f"{what} must have {length} elements, got {len(data)}",
            message_id=message_id,
        )


def _request(data: list[Any], message_id: str, what: str) -> tuple[str, dict[str, Any]]:
    _expect_length(data, 4, what, message_id)
    action, payload = data[2], data[3]
    if not isinstance(action, str) or not action:
        raise RpcError(
            ErrorCode.RPC_FRAMEWORK_ERROR, "Action must be a string", message_id=message_id
        )
    if not isinstance(payload, dict):
        raise RpcError(
            ErrorCode.FORMAT_VIOLATION,
            f"payload of {action} must be a JSON object",
            message_id=message_id,
        )
    return action, payload


def _build_call(data: list[Any], message_id: str) -> Call:
    return Call(message_id, *_request(data, message_id, "CALL"))


def _build_send(data: list[Any], message_id: str) -> Send:
    return Send(message_id, *_request(data, message_id, "SEND"))


def _build_result(data: list[Any], message_id: str) -> CallResult:
    _expect_length(data, 3, "CALLRESULT", message_id)
    if not isinstance(data[2], dict):
        raise RpcError(
            ErrorCode.FORMAT_VIOLATION,
            "CALLRESULT payload must be a JSON object",
            message_id=message_id,
        )
    return CallResult(message_id, data[2])


def _build_error(data: list[Any], message_id: str) -> CallError:
    _expect_length(data, 5, "CALLERROR", message_id)
    code, description, details = data[2], data[3], data[4]
    if not isinstance(code, str) or not isinstance(description, str):
        raise RpcError(
            ErrorCode.RPC_FRAMEWORK_ERROR,
            "errorCode and errorDescription must be strings",
            message_id=message_id,
        )
    details = details if isinstance(details, dict) else {"value": details}
    return CallError(message_id, code, description, details, result_error=data[0] == 5)


_BUILDERS = {
    CALL: _build_call,
    CALLRESULT: _build_result,
    CALLERROR: _build_error,
    CALLRESULTERROR: _build_error,
    SEND: _build_send,
}


def serialise(frame: Frame) -> str:
    """The frame as OCPP-J text, compact."""
    match frame:
        case Call(message_id, action, payload):
            data: list[Any] = [CALL, message_id, action, payload]
        case Send(message_id, action, payload):
            data = [SEND, message_id, action, payload]
        case CallResult(message_id, payload):
            data = [CALLRESULT, message_id, payload]
        case CallError(message_id, code, description, details, result_error):
            kind = CALLRESULTERROR if result_error else CALLERROR
            data = [kind, message_id, code, description[:255], details]
    return orjson.dumps(data).decode()


def error_frame(error: RpcError, *, result_error: bool = False) -> CallError:
    return CallError(error.message_id, error.code, error.description, error.details, result_error)
