"""Helpers for the handler tests: read the store after a station spoke, seed it before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
import websockets
from sqlmodel import SQLModel, select

from csms.runtime import CentralSystem
from tests.stations import ocpp_url

M = TypeVar("M", bound=SQLModel)

# A hang guard, never a timed assertion: a reply normally comes in milliseconds.
REPLY_GUARD_S = 10.0


async def rows(system: CentralSystem, model: type[M], **where: Any) -> list[M]:
    """Every row of `model` matching the column filters, in insertion order."""
    async with system.services.db.read() as session:
        query = select(model).filter_by(**where).order_by(*model.__table__.primary_key.columns)  # type: ignore[attr-defined]
        return list((await session.execute(query)).scalars())


async def add(system: CentralSystem, *objects: SQLModel) -> None:
    """Seed the store directly (e.g. the id-token list an operator maintains)."""
    async with system.services.db.sessions() as session, session.begin():
        session.add_all(objects)


def sampled(value: float, measurand: str | None = None, **extra: Any) -> dict[str, Any]:
    """A SampledValueType in the spec's JSON."""
    found: dict[str, Any] = {"value": value, **extra}
    if measurand is not None:
        found["measurand"] = measurand
    return found


def meter_value(timestamp: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": timestamp, "sampledValue": list(values)}


class RawStation:
    """A station speaking raw OCPP-J frames, for what the `ocpp` library cannot send (SEND
    frames, actions its version lacks) and to see every frame the CSMS sends back."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0

    async def send(self, frame: list[Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def receive(self) -> list[Any]:
        async with asyncio.timeout(REPLY_GUARD_S):
            return orjson.loads(await self.ws.recv())

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CALL; return the next frame, which must answer it."""
        self._next_id += 1
        message_id = f"raw-{self._next_id}"
        await self.send([2, message_id, action, payload])
        reply = await self.receive()
        assert reply[1] == message_id, f"expected the answer to {message_id}, got {reply}"
        return reply


@contextlib.asynccontextmanager
async def raw_station(
    system: CentralSystem, station_id: str, version: str = "2.1"
) -> AsyncIterator[RawStation]:
    subprotocol = "ocpp2.1" if version == "2.1" else "ocpp2.0.1"
    async with websockets.connect(ocpp_url(system, station_id), subprotocols=[subprotocol]) as ws:
        yield RawStation(ws)
