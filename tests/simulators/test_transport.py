"""The client-side OCPP-J session against a raw websockets server that plays the CSMS."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets

from simulators.transport import (
    CallErrorReceived,
    HandshakeError,
    Unsupported,
    basic_auth_header,
    open_connection,
)


async def handler(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    if action == "Reset":
        return {"status": "Accepted"}
    raise Unsupported(action)


async def exchange(frames_out: list[list[Any]]) -> tuple[list[Any], dict[str, str]]:
    """A CSMS that sends `frames_out` one by one and records each answer and the headers."""
    answers: list[Any] = []
    headers: dict[str, str] = {}

    async def serve(ws: Any) -> None:
        headers.update(ws.request.headers)
        for frame in frames_out:
            await ws.send(orjson.dumps(frame).decode())
            answers.append(orjson.loads(await ws.recv()))
        await ws.close()

    async with websockets.serve(serve, "127.0.0.1", 0, subprotocols=["ocpp2.1"]) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(
            f"ws://127.0.0.1:{port}/ocpp", "T 1", ["2.1"], handler, password="s3cret"
        )
        await asyncio.wait_for(conn.serve(), 10)
        assert headers.get("authorization") == basic_auth_header("T 1", "s3cret")
    return answers, headers


async def test_answers_known_unknown_unsupported_and_invalid_calls() -> None:
    answers, _ = await exchange(
        [
            [2, "a", "Reset", {"type": "Immediate"}],
            [2, "b", "MadeUpAction", {}],
            [
                2,
                "c",
                "GetLog",
                {
                    "logType": "DiagnosticsLog",
                    "requestId": 1,
                    "log": {"remoteLocation": "ftp://x/y"},
                },
            ],
            [2, "d", "Reset", {"type": 7}],
            "not a frame",
        ]
    )
    assert answers[0] == [3, "a", {"status": "Accepted"}]
    assert answers[1][:3] == [4, "b", "NotImplemented"]
    assert answers[2][:3] == [4, "c", "NotSupported"]
    assert answers[3][:3] == [4, "d", "TypeConstraintViolation"]
    assert answers[4][0] == 4 and answers[4][1] == "-1"


async def test_call_gets_result_or_error_and_refuses_invalid_payloads() -> None:
    async def serve(ws: Any) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame[2] == "Heartbeat":
                await ws.send(
                    orjson.dumps([3, frame[1], {"currentTime": "2026-07-15T18:00:00Z"}]).decode()
                )
            else:
                await ws.send(orjson.dumps([4, frame[1], "InternalError", "no", {}]).decode())

    async with websockets.serve(serve, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"ws://127.0.0.1:{port}", "T2", ["2.0.1"], handler)
        reader = asyncio.create_task(conn.serve())
        assert conn.version.name == "2.0.1"
        assert (await conn.call("Heartbeat", {}))["currentTime"]
        with pytest.raises(CallErrorReceived) as error:
            await conn.call(
                "StatusNotification",
                {
                    "timestamp": "2026-07-15T18:00:00Z",
                    "connectorStatus": "Available",
                    "evseId": 1,
                    "connectorId": 1,
                },
            )
        assert error.value.code == "InternalError"
        with pytest.raises(ValueError):
            await conn.call("Heartbeat", {"unexpected": 1})
        await conn.close()
        await reader


async def test_handshake_without_a_common_subprotocol_fails() -> None:
    async def serve(ws: Any) -> None:
        await ws.wait_closed()

    async with websockets.serve(serve, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(HandshakeError):
            await open_connection(f"ws://127.0.0.1:{port}", "T3", ["2.1"], handler)
