"""One connected station: read frames, answer CALLs in order, send our CALLs one at a time.

The receive loop never blocks on a handler: CALLs go to a bounded inbox served by one worker
(a station's messages are handled in the order sent), while CALLRESULTs to our own requests
are matched at once. No frame, however broken, ends the session or the server; only abuse
(a flood beyond the inbox) closes the connection, cleanly.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from csms.handlers.context import HandlerContext
from csms.handlers.routes import ROUTES, SEND_ROUTES
from csms.store.types import utcnow
from ocppj import frames
from ocppj.errors import ErrorCode, RpcError
from ocppj.schemas import REQUEST, RESPONSE, SEND, schema_set
from ocppj.versions import OcppVersion

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.session")

CLOSE_POLICY_VIOLATION = 1008


class CallFailedError(Exception):
    """Our CALL to a station did not get a usable CALLRESULT."""

    def __init__(self, kind: str, description: str, code: str | None = None) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind  # "timeout" | "call-error" | "invalid-response" | "disconnected" | ...
        self.code = code
        self.description = description


@dataclass(slots=True)
class _Outstanding:
    action: str
    future: asyncio.Future[frames.CallResult | frames.CallError]


class StationSession:
    def __init__(
        self,
        station_id: str,
        version: OcppVersion,
        connection: ServerConnection,
        services: Services,
    ) -> None:
        self.station_id = station_id
        self.version = version
        self.connection = connection
        self.services = services
        self.schemas = schema_set(version)
        self.log = log.bind(station_id=station_id, ocpp=version.name)
        self._outstanding: dict[str, _Outstanding] = {}
        self._call_lock = asyncio.Lock()
        self._inbox: asyncio.Queue[frames.Call] = asyncio.Queue(
            maxsize=services.settings.max_queued_calls
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._abusive = False  # set when we closed the connection for abuse: stop reading
        self.closed = asyncio.Event()

    # ---- receiving ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        worker = asyncio.create_task(self._work(), name=f"calls-{self.station_id}")
        try:
            async for raw in self.connection:
                await self._receive_safely(raw)
                if self._abusive:
                    break
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()  # first, so no new CALL of ours starts waiting
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()
            for outstanding in self._outstanding.values():
                if not outstanding.future.done():
                    outstanding.future.set_exception(
                        CallFailedError("disconnected", "the station disconnected")
                    )

    async def _receive_safely(self, raw: str | bytes) -> None:
        """One frame; a bug in handling it is logged and must not end the session."""
        try:
            await self._receive(raw)
        except ConnectionClosed:
            raise
        except Exception:
            self.log.exception("session.frame_crashed", frame=_preview(raw))

    async def _receive(self, raw: str | bytes) -> None:
        self._journal("in", raw)
        if isinstance(raw, bytes):
            await self._answer_error(
                RpcError(
                    ErrorCode.FORMAT_VIOLATION,
                    "binary frames are not OCPP-J; send text frames",
                    message_id=_readable_id(raw),
                )
            )
            return
        try:
            frame = frames.parse_frame(raw, message_types=self.version.message_types)
        except RpcError as error:
            await self._answer_parse_error(error)
            return
        match frame:
            case frames.Call():
                if self._inbox.full():
                    # A station sends one CALL at a time (OCPP-J); a full inbox is a flood.
                    self.log.warning("session.flood", queued=self._inbox.qsize())
                    self._abusive = True
                    await self.connection.close(CLOSE_POLICY_VIOLATION, "too many pending CALLs")
                    return
                if "\\u0000" in raw and _has_nul(frame.payload):
                    # Valid JSON, but no database text column holds NUL (PostgreSQL refuses
                    # it): refuse it here, clearly, rather than fail in the store.
                    await self._answer_error(
                        RpcError(
                            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
                            "NUL characters (\\u0000) are not allowed in OCPP strings",
                            message_id=frame.message_id,
                        )
                    )
                    return
                self._inbox.put_nowait(frame)
            case frames.CallError(result_error=True):
                # 2.1: the station found one of our CALLRESULTs invalid. Nothing of ours waits
                # for it (it answers the station's own CALL), so it is only worth a log line.
                self.log.warning(
                    "ocpp.callresulterror_received",
                    message_id=frame.message_id,
                    code=frame.code,
                    reason=frame.description,
                )
            case frames.CallResult() | frames.CallError():
                self._settle(frame)
            case frames.Send():
                await self._handle_send(frame)

    async def _answer_parse_error(self, error: RpcError) -> None:
        self.log.info(
            "ocpp.bad_frame",
            message_id=error.message_id,
            code=error.code,
            reason=error.description,
        )
        if error.frame_type in (None, frames.CALL):
            await self._answer_error(error)
            return
        if error.frame_type in (frames.CALLRESULT, frames.CALLERROR):
            self._fail_outstanding(error)  # the caller learns now, not at its timeout
        if error.frame_type == frames.CALLRESULT and self.version.has_send:
            await self._send(frames.error_frame(error, result_error=True))
        # a broken CALLERROR, CALLRESULTERROR or SEND is never answered (OCPP-J)

    def _fail_outstanding(self, error: RpcError) -> None:
        outstanding = self._outstanding.get(error.message_id)
        if outstanding is not None and not outstanding.future.done():
            outstanding.future.set_exception(
                CallFailedError("invalid-response", error.description, error.code)
            )

    def _settle(self, frame: frames.CallResult | frames.CallError) -> None:
        outstanding = self._outstanding.get(frame.message_id)
        if outstanding is None or outstanding.future.done():
            # A late or unknown answer: nothing waits for it any more (OCPP-J: ignore it).
            self.log.info("session.unmatched_reply", message_id=frame.message_id)
            return
        outstanding.future.set_result(frame)

    async def _work(self) -> None:
        while True:
            call = await self._inbox.get()
            try:
                await self._handle_call(call)
            except ConnectionClosed:
                return
            except Exception:  # never let one message stop the station's queue
                self.log.exception("session.call_crashed", action=call.action)

    async def _handle_call(self, call: frames.Call) -> None:
        started = time.perf_counter()
        ctx = HandlerContext(self.station_id, self.version, call.message_id, self.services)
        try:
            reply = await self._reply_to(call, ctx)
            text = frames.serialise(frames.CallResult(call.message_id, reply))
        except RpcError as error:
            await self._answer_error(error.with_message_id(call.message_id))
            self.log.info(
                "ocpp.call_error",
                action=call.action,
                message_id=call.message_id,
                code=error.code,
                reason=error.description,
            )
            return
        except Exception as exc:  # e.g. a reply orjson cannot encode: still answer the station
            self.log.exception("handler.bad_reply", action=call.action, message_id=call.message_id)
            await self._answer_error(_internal_error(call, exc).with_message_id(call.message_id))
            return
        await self._send_text(text)
        self.log.debug(
            "ocpp.call",
            action=call.action,
            message_id=call.message_id,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        for action in ctx.after_reply:
            self.spawn(_run_after(action))

    async def _reply_to(self, call: frames.Call, ctx: HandlerContext) -> dict[str, Any]:
        # Unknown to this version -> NotImplemented; known but not ours to handle (e.g. a
        # CSMS->station action sent our way, or a 2.1 action on 2.0.1) -> NotSupported.
        if call.action not in self.schemas.actions:
            raise RpcError(
                ErrorCode.NOT_IMPLEMENTED,
                f"{call.action} is not an OCPP {self.version.name} action",
            )
        handler = ROUTES.get(call.action)
        if handler is None:
            raise RpcError(
                ErrorCode.NOT_SUPPORTED,
                f"{call.action} is not supported by this CSMS (OCPP {self.version.name})",
            )
        self.schemas.check(call.action, REQUEST, call.payload)
        try:
            reply = await handler(ctx, call.payload)
        except RpcError:
            raise
        except Exception as exc:  # a bug or an outage must not end the session
            self.log.exception("handler.failed", action=call.action, message_id=call.message_id)
            raise _internal_error(call, exc) from exc
        try:
            self.schemas.check(call.action, RESPONSE, reply)
        except RpcError as error:
            # Our reply is wrong, not the station's request: never blame the station for it.
            self.log.error("handler.invalid_reply", action=call.action, error=error.description)
            raise RpcError(
                ErrorCode.INTERNAL_ERROR, f"{call.action}: the CSMS built an invalid reply"
            ) from error
        return reply

    async def _handle_send(self, send: frames.Send) -> None:
        handler = SEND_ROUTES.get(send.action)
        try:
            if handler is None or send.action not in self.schemas.send_actions:
                raise RpcError(ErrorCode.NOT_SUPPORTED, f"SEND {send.action} is not handled")
            self.schemas.check(send.action, SEND, send.payload)
            ctx = HandlerContext(self.station_id, self.version, send.message_id, self.services)
            await handler(ctx, send.payload)
        except RpcError as error:  # SEND is never answered, not even with an error
            self.log.warning("ocpp.send_dropped", action=send.action, reason=error.description)
        except Exception:
            self.log.exception("handler.failed", action=send.action, message_id=send.message_id)

    # ---- sending -----------------------------------------------------------------------

    async def call(self, action: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a CALL and return the station's validated CALLRESULT payload.

        One CALL is outstanding per station at a time (OCPP-J); waiting for the turn counts
        toward `timeout`. Raises CallFailedError for anything but a usable answer.
        """
        try:
            self.schemas.check(action, REQUEST, payload)
        except KeyError as error:  # an action this station's OCPP version does not have
            raise CallFailedError("invalid-request", str(error.args[0])) from None
        except RpcError as error:
            raise CallFailedError("invalid-request", error.description, error.code) from None
        try:
            async with asyncio.timeout(timeout):
                async with self._call_lock:
                    answer = await self._exchange(action, payload)
        except TimeoutError:
            raise CallFailedError(
                "timeout", f"no answer to {action} within {timeout:g} s"
            ) from None
        if isinstance(answer, frames.CallError):
            raise CallFailedError("call-error", answer.description, answer.code)
        try:
            self.schemas.check(action, RESPONSE, answer.payload)
        except RpcError as error:
            if self.version.has_send:  # 2.1: tell the station its CALLRESULT was invalid
                await self._send(
                    frames.error_frame(error.with_message_id(answer.message_id), result_error=True)
                )
            raise CallFailedError("invalid-response", error.description, error.code) from None
        return answer.payload

    async def _exchange(
        self, action: str, payload: dict[str, Any]
    ) -> frames.CallResult | frames.CallError:
        if self.closed.is_set():
            raise CallFailedError("disconnected", "the station is not connected")
        message_id = str(uuid.uuid4())
        future: asyncio.Future[frames.CallResult | frames.CallError]
        future = asyncio.get_running_loop().create_future()
        self._outstanding[message_id] = _Outstanding(action, future)
        try:
            await self._send(frames.Call(message_id, action, payload))
            return await future
        finally:
            self._outstanding.pop(message_id, None)

    async def _answer_error(self, error: RpcError) -> None:
        await self._send(frames.error_frame(error))

    async def _send(self, frame: frames.Frame) -> None:
        try:
            await self._send_text(frames.serialise(frame))
        except ConnectionClosed:
            if isinstance(frame, frames.Call):
                raise CallFailedError("disconnected", "the connection closed") from None

    async def _send_text(self, text: str) -> None:
        """Send one frame; a closed connection is only logged (its reader ends the session)."""
        self._journal("out", text)
        try:
            await self.connection.send(text)
        except ConnectionClosed:
            self.log.info("session.send_after_close", frame=_preview(text))
            raise

    # ---- housekeeping ------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("session.task_failed", error=repr(task.exception()))

    def _journal(self, direction: str, raw: str | bytes) -> None:
        if not self.services.settings.journal:
            return
        self.services.writer.journal(_journal_row(self.station_id, direction, raw))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def _run_after(action: Any) -> None:
    await action()


def _internal_error(call: frames.Call, exc: BaseException) -> RpcError:
    return RpcError(
        ErrorCode.INTERNAL_ERROR,
        f"{call.action} could not be processed: {type(exc).__name__}",
    )


def _preview(raw: str | bytes) -> str:
    text = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
    return text[:200]


def _journal_row(station_id: str, direction: str, raw: str | bytes) -> dict[str, Any]:
    """The columns of one JournalEntry, for the writer's bulk insert."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    message_type, message_id, action = 0, "", ""
    try:
        data = orjson.loads(raw)
        if isinstance(data, list) and data:
            # Only real type ids: a frame's [99999999999, ...] must not overflow the column.
            message_type = int(data[0]) if data[0] in _KNOWN_TYPES else 0
            message_id = str(data[1])[:40] if len(data) > 1 else ""
            if message_type in (frames.CALL, frames.SEND) and len(data) > 2:
                action = str(data[2])[:64]
    except (orjson.JSONDecodeError, TypeError):
        pass
    return {
        "station_id": station_id,
        "direction": direction,
        "message_type": message_type,
        "message_id": _storable(message_id),
        "action": _storable(action),
        "frame": _storable(text[:65536]),
        "at": utcnow(),
    }


_KNOWN_TYPES = (
    frames.CALL,
    frames.CALLRESULT,
    frames.CALLERROR,
    frames.CALLRESULTERROR,
    frames.SEND,
)


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a frame carrying one is still journaled."""
    return text.replace("\x00", "\ufffd")


def _readable_id(raw: str | bytes) -> str:
    try:
        data = orjson.loads(raw)
        candidate = data[1] if isinstance(data, list) and len(data) > 1 else None
    except (orjson.JSONDecodeError, TypeError):
        candidate = None
    if isinstance(candidate, str) and 0 < len(candidate) <= frames.MAX_MESSAGE_ID_LENGTH:
        return candidate
    return "-1"
