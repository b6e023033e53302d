"""Client side of OCPP-J for the simulated stations: one websocket session to a CSMS.

- Subprotocol negotiation: offer the version(s) chosen, newest first; a CSMS that accepts none
  (OCPP-J: handshake without Sec-WebSocket-Protocol) is a failed connection.
- One outstanding CALL at a time (OCPP-J), with a wall-clock timeout (a protocol timer).
- The CSMS's CALLs are validated and dispatched to the station's handler; an action the version
  does not define gets NotImplemented, one the station does not handle NotSupported, a payload
  breaking the schema the CALLERROR `ocppj.schemas` names.
- What we send and what we receive is checked against the official schemas, compiled once per
  process and shared by every station (`ocppj.schemas.schema_set`).
- Cheap per connection, for thousands of stations in one process: no client-side ping task
  (the CSMS pings), compression off, a small receive queue, one reader task.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog
import websockets
from websockets.asyncio.client import ClientConnection, connect

from ocppj import frames
from ocppj.errors import ErrorCode, RpcError
from ocppj.schemas import REQUEST, RESPONSE, schema_set
from ocppj.versions import BY_NAME, OcppVersion

log = structlog.get_logger("simulators.transport")

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

MAX_FRAME_BYTES = 1_048_576
# Frames buffered before websockets stops reading: a station gets one CALL at a time.
MAX_QUEUE = 4
OPEN_TIMEOUT_S = 10.0


class TransportError(Exception):
    """Base of what `call` raises besides TimeoutError."""


class CallErrorReceived(TransportError):
    """The CSMS answered our CALL with a CALLERROR (or a 2.1 CALLRESULTERROR)."""

    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: {code}: {description}")
        self.action, self.code, self.description = action, code, description


class Disconnected(TransportError):
    """The connection closed before the answer came (or was already closed)."""


class HandshakeError(TransportError):
    """The CSMS refused the connection or accepted none of our subprotocols."""


class Unsupported(Exception):
    """Raised by a station handler for an action it does not implement (-> NotSupported)."""


@dataclass
class Counters:
    """Shared by every connection of one station, for its snapshot."""

    sent: int = 0
    received: int = 0
    errors: int = 0


def station_url(base_url: str, station_id: str) -> str:
    """The endpoint of one station: the id (URL-encoded) as the last path segment."""
    return base_url.rstrip("/") + "/" + quote(station_id, safe="")


def basic_auth_header(station_id: str, password: str) -> str:
    """Security profile 1 (A00.FR.2xx): HTTP Basic with the station id as user name."""
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return f"Basic {token}"


async def open_connection(
    base_url: str,
    station_id: str,
    versions: Sequence[str],
    handler: Handler,
    *,
    password: str | None = None,
    counters: Counters | None = None,
    call_timeout_s: float = 30.0,
    answer_delay_s: float = 0.0,
) -> OcppConnection:
    """Open the websocket, offering `versions` ("2.1", "2.0.1") newest first."""
    offered = [BY_NAME[v] for v in versions]
    headers = {"Authorization": basic_auth_header(station_id, password)} if password else None
    try:
        ws = await connect(
            station_url(base_url, station_id),
            subprotocols=[v.subprotocol for v in offered],  # type: ignore[misc]
            additional_headers=headers,
            compression=None,
            max_queue=MAX_QUEUE,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,
            open_timeout=OPEN_TIMEOUT_S,
        )
    except websockets.InvalidStatus as exc:
        raise HandshakeError(
            f"CSMS refused the handshake: HTTP {exc.response.status_code}"
        ) from exc
    chosen = next((v for v in offered if v.subprotocol == ws.subprotocol), None)
    if chosen is None:
        await ws.close()
        raise HandshakeError(f"CSMS accepted none of {[v.subprotocol for v in offered]}")
    return OcppConnection(
        ws,
        chosen,
        station_id,
        handler,
        counters=counters or Counters(),
        call_timeout_s=call_timeout_s,
        answer_delay_s=answer_delay_s,
    )


class OcppConnection:
    """One open OCPP-J session. `serve()` reads until the socket closes."""

    def __init__(
        self,
        ws: ClientConnection,
        version: OcppVersion,
        station_id: str,
        handler: Handler,
        *,
        counters: Counters,
        call_timeout_s: float,
        answer_delay_s: float,
    ) -> None:
        self.ws = ws
        self.version = version
        self.station_id = station_id
        self.handler = handler
        self.counters = counters
        self.call_timeout_s = call_timeout_s
        self.answer_delay_s = answer_delay_s
        self._schemas = schema_set(version)
        self._lock = asyncio.Lock()
        self._pending: tuple[str, str, asyncio.Future[dict[str, Any]]] | None = None
        self._ids = itertools.count(1)
        self._answering: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    # --- station -> CSMS ------------------------------------------------------------------

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a CALL and wait for its CALLRESULT payload (schema-checked).

        Raises CallErrorReceived, TimeoutError, Disconnected; ValueError when `payload` breaks
        the schema (a bug in the station, never sent).
        """
        try:
            self._schemas.check(action, REQUEST, payload)
        except (RpcError, KeyError) as exc:
            raise ValueError(f"refusing to send an invalid {action}: {exc}") from exc
        async with self._lock:  # OCPP-J: one CALL in flight
            if self._closed:
                raise Disconnected(f"{action}: connection closed")
            message_id = f"{next(self._ids)}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending = (message_id, action, future)
            try:
                await self._send(frames.Call(message_id, action, payload))
                return await asyncio.wait_for(future, timeout or self.call_timeout_s)
            except TimeoutError:
                self.counters.errors += 1
                raise
            except websockets.ConnectionClosed as exc:
                raise Disconnected(f"{action}: {exc}") from exc
            finally:
                self._pending = None

    async def _send(self, frame: frames.Frame) -> None:
        await self.ws.send(frames.serialise(frame))
        self.counters.sent += 1

    # --- reading --------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read frames until the socket closes; then fail a waiting CALL with Disconnected."""
        try:
            async for raw in self.ws:
                self.counters.received += 1
                self._on_frame(raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._closed = True
            if self._pending is not None and not self._pending[2].done():
                self._pending[2].set_exception(Disconnected(f"{self._pending[1]}: closed"))
            for task in list(self._answering):
                task.cancel()

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = frames.parse_frame(raw, message_types=self.version.message_types)
        except RpcError as exc:
            self.counters.errors += 1
            log.warning("transport.bad_frame", station_id=self.station_id, error=str(exc))
            if exc.frame_type in (None, frames.CALL):
                self._spawn(self._send(frames.error_frame(exc)))
            return
        match frame:
            case frames.Call():
                self._spawn(self._answer(frame))
            case frames.CallResult():
                self._settle(frame.message_id, result=frame.payload)
            case frames.CallError():
                self._settle(frame.message_id, error=frame)
            case frames.Send():  # 2.1 SEND from a CSMS: nothing defined for a station to take
                log.info("transport.send_ignored", station_id=self.station_id, action=frame.action)

    def _settle(
        self,
        message_id: str,
        *,
        result: dict[str, Any] | None = None,
        error: frames.CallError | None = None,
    ) -> None:
        pending = self._pending
        if pending is None or pending[0] != message_id or pending[2].done():
            log.info("transport.unexpected_answer", station_id=self.station_id, id=message_id)
            return
        _, action, future = pending
        if error is not None:
            self.counters.errors += 1
            future.set_exception(CallErrorReceived(action, error.code, error.description))
            return
        assert result is not None
        try:
            self._schemas.check(action, RESPONSE, result)
        except RpcError as exc:
            self.counters.errors += 1
            future.set_exception(CallErrorReceived(action, exc.code, exc.description))
            return
        future.set_result(result)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    # --- CSMS -> station ------------------------------------------------------------------

    async def _answer(self, call: frames.Call) -> None:
        if self.answer_delay_s > 0:  # fault injection: a slow station (wall time)
            await asyncio.sleep(self.answer_delay_s)
        reply = await self._reply(call)
        try:
            await self._send(reply)
        except websockets.ConnectionClosed:
            log.info("transport.answer_lost", station_id=self.station_id, action=call.action)

    async def _reply(self, call: frames.Call) -> frames.Frame:
        if call.action not in self._schemas.actions:
            return self._error(call, ErrorCode.NOT_IMPLEMENTED, f"unknown action {call.action}")
        try:
            self._schemas.check(call.action, REQUEST, call.payload)
        except RpcError as exc:
            return frames.error_frame(exc.with_message_id(call.message_id))
        try:
            payload = await self.handler(call.action, call.payload)
        except Unsupported:
            return self._error(call, ErrorCode.NOT_SUPPORTED, f"{call.action} is not supported")
        except Exception as exc:  # a station bug must not kill the connection
            log.exception(
                "transport.handler_failed", station_id=self.station_id, action=call.action
            )
            return self._error(call, ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        try:
            self._schemas.check(call.action, RESPONSE, payload)
        except RpcError as exc:
            log.error("transport.invalid_answer", station_id=self.station_id, error=str(exc))
            return self._error(call, ErrorCode.INTERNAL_ERROR, f"invalid answer: {exc}")
        return frames.CallResult(call.message_id, payload)

    def _error(self, call: frames.Call, code: ErrorCode, description: str) -> frames.CallError:
        self.counters.errors += 1
        return frames.CallError(call.message_id, code, description, {})

    async def close(self) -> None:
        self._closed = True
        await self.ws.close()
