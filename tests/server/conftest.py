"""Raw OCPP-J clients for the edge tests: they send exactly the bytes a test wants, which the
`ocpp` library's ChargePoint never would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from csms.runtime import CentralSystem
from tests.stations import ocpp_url

SUBPROTOCOLS = {"2.1": "ocpp2.1", "2.0.1": "ocpp2.0.1"}
HANG_GUARD_S = 20.0  # generous: only stops a broken test from hanging the suite

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "Ara", "vendorName": "dcbel"}}


class RawStation:
    """A websocket that speaks OCPP-J by hand and politely refuses the CSMS's own CALLs."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.csms_calls: list[list[Any]] = []

    async def send(self, frame: Any) -> None:
        await self.ws.send(
            frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        )

    async def reply(self) -> list[Any]:
        """The next frame that is not a CALL from the CSMS (those are answered NotSupported)."""
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                frame = orjson.loads(await self.ws.recv())
                if frame[0] != 2:
                    return frame
                self.csms_calls.append(frame)
                await self.send([4, frame[1], "NotSupported", "test station", {}])

    async def call(self, message_id: str, action: str, payload: dict[str, Any]) -> list[Any]:
        await self.send([2, message_id, action, payload])
        return await self.reply()

    async def heartbeat_answered(self, message_id: str = "hb") -> bool:
        answer = await self.call(message_id, "Heartbeat", {})
        return answer[:2] == [3, message_id] and "currentTime" in answer[2]


@contextlib.asynccontextmanager
async def raw_station(
    system: CentralSystem, station_id: str, version: str = "2.1", **kwargs: Any
) -> AsyncIterator[RawStation]:
    async with websockets.connect(
        ocpp_url(system, station_id), subprotocols=[SUBPROTOCOLS[version]], **kwargs
    ) as ws:
        yield RawStation(ws)
