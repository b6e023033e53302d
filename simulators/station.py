"""One simulated charging station: the engine every hardware model of the catalog shares.

A real OCPP client over websockets (`simulators.transport`) built on the pure modules:
the hardware record (`catalog`), the car's battery (`physics.Plant`), the charging-profile
engine (`profiles.ProfileEngine`), the ISO 15118-20 parameters (`iso15118_profiles`) and the
device model (`device_model`). Never imports `csms`.

Tasks per station: `run()` (connect, boot, send), the connection's reader while connected, and
one domain task on the simulated clock (physics, meter values, heartbeats, fault plan). Domain
timers run on simulated time, protocol timers (call timeout, back-off, message retry interval)
on wall time (DESIGN.md §2).

Behaviour, with the use cases it follows:
- B01/B02/B03 BootNotification with the catalog's strings; Pending/Rejected -> boot again after
  the interval; Accepted -> Heartbeat (G02) on the interval, StatusNotification (G01) per
  connector.
- E01-E07 TransactionEvent Started at plug-in (CablePluggedIn), Updated on Authorized and every
  SampledDataCtrlr.TxUpdatedInterval, Ended at unplug or RequestStopTransaction; seqNo per
  transaction; meter values from the physics, never from the setpoint.
- C01 + Q01: Authorize at plug-in; on 2.1 `allowedEnergyTransfer` from the answer or a later
  NotifyAllowedEnergyTransfer, together with V2XChargingCtrlr.Enabled, lets the EVSE discharge;
  until then a discharge profile runs as charging-only. On 2.0.1 a negative limit discharges
  only on hardware the catalog marks as accepting negative limits.
- K15-K17 / Q02: NotifyEVChargingNeeds at plug-in, with V2X parameters only on 2.1 and a
  matched pair.
- E13 + E04 offline: transaction messages wait in order in an outbox; those created while
  offline carry `offline=true`; CALLERROR or no answer -> retried up to
  OCPPCommCtrlr.MessageAttempts, MessageAttemptInterval × attempt apart (wall seconds).
- Q11/Q12: profiles keep executing while disconnected (ProfileEngine.set_offline/set_online).
- Fault plan (`simulators.faults`): planned drops (offline from the planned instant, so every
  transaction message made after it carries offline=true), derates, slow answers, rejected
  profiles, and planned unplugs (E10: the transaction Ends as at any unplug) with an optional
  replug of the same car at the SoC it left with.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from iso15118_profiles import BPT_MODES, EvModel, charging_needs
from simclock import Clock, iso
from simulators.catalog import HardwareModel
from simulators.device_model import REPORT_ITEMS_PER_PART, DeviceModel
from simulators.faults import FaultPlan
from simulators.physics import Derate, Plant, PlantState
from simulators.profiles import EngineConfig, ProfileEngine, ProfileError
from simulators.transport import (
    CallErrorReceived,
    Counters,
    Disconnected,
    OcppConnection,
    Unsupported,
    open_connection,
)

log = structlog.get_logger("simulators.station")

# While a charging profile is installed, physics is integrated in chunks of at most this many
# sim seconds, each with the setpoint in force at its start (profile periods are whole seconds
# and a limit may depend on SoC; 5 s keeps the error small). Without one, a chunk runs to the
# next event or derate step.
PHYSICS_STEP_S = 5.0
# Reconnect back-off (wall seconds): base × 2^attempt, capped, with full jitter in [½, 1].
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
DEFAULT_HEARTBEAT_S = 300
BOOT_RETRY_S = 60
# Which SetDERControlRequest field carries each control type's data (2.1 schema).
DER_FIELD = {
    "EnterService": "enterService",
    "FreqDroop": "freqDroop",
    "FixedPFAbsorb": "fixedPFAbsorb",
    "FixedPFInject": "fixedPFInject",
    "FixedVar": "fixedVar",
    "Gradients": "gradient",
    "LimitMaxDischarge": "limitMaxDischarge",
}
UNITS = {
    "Energy.Active.Import.Register": "Wh",
    "Energy.Active.Export.Register": "Wh",
    "Power.Active.Import": "W",
    "Power.Active.Export": "W",
    "SoC": "Percent",
}


@dataclass(frozen=True)
class StationConfig:
    station_id: str
    hardware: HardwareModel
    url: str  # ws://host:port/ocpp  (station id appended as last segment)
    ocpp_version: str | None = None  # "2.1" | "2.0.1"; None = the newest the hardware offers
    password: str | None = None  # security profile 1
    ev: EvModel | None = None  # plugged in at start when given (iso15118_profiles)
    soc_pct: float = 50.0
    departure: datetime | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    meter_interval_s: float | None = None  # None: the hardware's interval (sim seconds)

    def chosen_version(self) -> str:
        offered = [v.removeprefix("ocpp") for v in self.hardware.ocpp_versions]
        if self.ocpp_version is None:
            return "2.1" if "2.1" in offered else "2.0.1"
        if self.ocpp_version not in offered:
            raise ValueError(
                f"{self.hardware.id} speaks OCPP {', '.join(offered)}, not {self.ocpp_version}"
            )
        return self.ocpp_version


@dataclass(frozen=True)
class StationSnapshot:
    station_id: str
    model_id: str
    ocpp_version: str
    connected: bool
    registered: bool
    state: str  # "available" | "charging" | "discharging" | "idle" | "offline" | "faulted"
    power_w: float
    soc_pct: float | None
    import_wh: float
    export_wh: float
    messages_sent: int
    messages_received: int
    errors: int
    queued_offline: int
    transaction_id: str | None
    v2x_allowed: bool


@dataclass
class Outgoing:
    """One station -> CSMS message waiting in the outbox."""

    action: str
    payload: dict[str, Any]
    transactional: bool = False
    on_answer: Callable[[dict[str, Any] | None], None] | None = None
    attempts: int = 0


@dataclass
class Evse:
    """What changes on one EVSE: the car, its battery, the transaction, the meter."""

    evse_id: int
    ev: EvModel | None = None
    plant: Plant | None = None
    battery: PlantState | None = None
    departure: datetime | None = None
    simulated_to: datetime | None = None
    transaction_id: str | None = None
    seq_no: int = 0
    authorized: bool = False
    allowed_transfer: tuple[str, ...] = ()
    next_meter_at: datetime | None = None
    import_wh: float = 0.0  # the station meter's registers (lifetime, monotonic)
    export_wh: float = 0.0
    power_w: float = 0.0
    remote_start_id: int | None = None
    pending_remote_start: dict[str, Any] | None = None
    status: str = "Available"


@dataclass
class DerControl:
    control_id: str
    control_type: str
    is_default: bool
    data: dict[str, Any]
    superseded: bool = False


@dataclass
class _Pending:
    """A plug-in asked for before the first boot: done once the station is accepted."""

    ev: EvModel
    soc_pct: float
    departure: datetime | None
    evse_id: int


@dataclass(frozen=True)
class _Away:
    """A car the fault plan unplugged, as it left: what a replug brings back."""

    ev: EvModel
    soc_pct: float
    departure: datetime | None
    evse_id: int


@dataclass
class _Timers:
    next_heartbeat_at: datetime | None = None
    next_aligned_at: datetime | None = None
    drop_index: int = 0
    offline_until: datetime | None = None  # set from a planned drop until the window is over
    unplug_index: int = 0
    replug_index: int = 0
    away: list[_Away] = field(default_factory=list)
    booted_once: bool = False
    reboot_reason: str = "PowerUp"
    pending_plugs: list[_Pending] = field(default_factory=list)


class SimulatedStation:
    def __init__(
        self,
        config: StationConfig,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        call_timeout_s: float = 30.0,
    ) -> None:
        self.config = config
        self.clock = clock
        self.hw = config.hardware
        self.version = config.chosen_version()
        self.rng = rng or random.Random(config.station_id)
        self.call_timeout_s = call_timeout_s
        interval = int(config.meter_interval_s or self.hw.meter_interval_s)
        self.dm = DeviceModel.for_hardware(self.hw, self.version, interval)
        self.engine = ProfileEngine(EngineConfig.from_hardware(self.hw, self.version), self.rng)
        self.evses = {i: Evse(i) for i in range(1, self.hw.evse_count + 1)}
        self.counters = Counters()
        self.registered = False
        self.heartbeat_interval_s = DEFAULT_HEARTBEAT_S
        self.der: dict[str, DerControl] = {}
        self.started_at: datetime | None = None
        self._outbox: deque[Outgoing] = deque()
        self._wake_sender = asyncio.Event()
        self._wake_domain = asyncio.Event()
        self._stop = asyncio.Event()
        self._conn: OcppConnection | None = None
        self._domain: asyncio.Task[None] | None = None
        self._timers = _Timers()
        self._closing: set[asyncio.Future[None]] = set()
        self._serial = f"{self.hw.serial_prefix}{abs(hash(config.station_id)) % 10**8:08d}"
        self.log = log.bind(station_id=config.station_id)
        if config.ev is not None:
            self.plug_in(config.ev, config.soc_pct, config.departure)

    # ================================================================== public contract

    async def run(self) -> None:
        """Connect, boot, serve; reconnect with back-off; until `stop()`."""
        self.started_at = self.started_at or self.clock.now()
        self._domain = asyncio.create_task(self._domain_loop(), name=f"sim-{self.station_id}")
        attempt = 0
        try:
            while not self._stop.is_set():
                await self._wait_offline_window()
                if self._stop.is_set():
                    break
                conn = await self._connect()
                if conn is None:
                    await self._sleep_wall(self._backoff(attempt))
                    attempt += 1
                    continue
                if self._timers.offline_until is not None:  # a planned drop fell mid-handshake
                    await conn.close()
                    continue
                attempt = 0
                await self._serve(conn)
        finally:
            self._domain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._domain

    async def stop(self) -> None:
        """End cleanly: close the socket; `run()` returns and cancels its tasks."""
        self._stop.set()
        self._wake_sender.set()
        self._wake_domain.set()
        if self._conn is not None:
            await self._conn.close()

    def plug_in(
        self, ev: EvModel, soc_pct: float, departure: datetime | None = None, evse_id: int = 1
    ) -> None:
        """A car arrives. Before the first boot the session starts once the CSMS accepted us."""
        evse = self.evses[evse_id]
        if evse.ev is not None:
            raise ValueError(f"EVSE {evse_id} of {self.station_id} already has a car plugged in")
        if not self._timers.booted_once:
            self._timers.pending_plugs.append(_Pending(ev, soc_pct, departure, evse_id))
            return
        self._start_session(evse, ev, soc_pct, departure)

    def unplug(self, evse_id: int = 1) -> None:
        """The car leaves: the transaction ends (EVDisconnected), the connector is free."""
        self._timers.pending_plugs = [p for p in self._timers.pending_plugs if p.evse_id != evse_id]
        evse = self.evses[evse_id]
        if evse.ev is None:
            return
        now = self.clock.now()
        self._advance(now)
        if evse.transaction_id is not None:
            self._end_transaction(evse, now, "EVCommunicationLost", "EVDisconnected")
        evse.ev = evse.plant = evse.battery = None
        evse.power_w = 0.0
        self.dm.unplug(evse_id)
        self._set_status(evse, "Available", now)
        self._wake_domain.set()

    def snapshot(self) -> StationSnapshot:
        evse = self.evses[1]
        power = sum(e.power_w for e in self.evses.values())
        battery = next((e.battery for e in self.evses.values() if e.battery is not None), None)
        return StationSnapshot(
            station_id=self.station_id,
            model_id=self.hw.id,
            ocpp_version=self.version,
            connected=self.connected,
            registered=self.registered,
            state=self._state_name(power),
            power_w=power,
            soc_pct=battery.soc_pct if battery is not None else None,
            import_wh=sum(e.import_wh for e in self.evses.values()),
            export_wh=sum(e.export_wh for e in self.evses.values()),
            messages_sent=self.counters.sent,
            messages_received=self.counters.received,
            errors=self.counters.errors,
            queued_offline=sum(1 for m in self._outbox if m.transactional),
            transaction_id=evse.transaction_id,
            v2x_allowed=self.engine.evse[1].v2x_allowed,
        )

    # ================================================================== facts

    @property
    def station_id(self) -> str:
        return self.config.station_id

    @property
    def connected(self) -> bool:
        """An open socket outside a planned drop: the drop counts from its planned instant,
        not from when the socket has finished closing."""
        return (
            self._conn is not None and not self._conn.closed and self._timers.offline_until is None
        )

    @property
    def online(self) -> bool:
        return self.connected and self.registered

    def _state_name(self, power_w: float) -> str:
        if self._derate(self.clock.now()).factor == 0.0:
            return "faulted"
        if not self.connected:
            return "offline"
        if power_w > 1.0:
            return "charging"
        if power_w < -1.0:
            return "discharging"
        return "idle" if any(e.ev is not None for e in self.evses.values()) else "available"

    def _elapsed_s(self, at: datetime) -> float:
        return (at - self.started_at).total_seconds() if self.started_at else 0.0

    def _derate(self, at: datetime) -> Derate:
        return self.config.faults.derate_at(self._elapsed_s(at))

    # ================================================================== connection

    async def _connect(self) -> OcppConnection | None:
        try:
            return await open_connection(
                self.config.url,
                self.station_id,
                [self.version],
                self._handle,
                password=self.config.password,
                counters=self.counters,
                call_timeout_s=self.call_timeout_s,
                answer_delay_s=self.config.faults.answer_delay_s,
            )
        except Exception as exc:  # refused, unreachable, bad handshake: all mean back off
            self.log.info("station.connect_failed", error=f"{type(exc).__name__}: {exc}")
            return None

    def _backoff(self, attempt: int) -> float:
        """Exponential back-off with jitter (wall seconds), so a fleet does not stampede."""
        return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * self.rng.uniform(0.5, 1.0)

    async def _sleep_wall(self, seconds: float) -> None:
        """Sleep on the wall clock, or less when the station is stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _wait_offline_window(self) -> None:
        """After an injected drop, stay away `offline_for_s` simulated seconds."""
        until = self._timers.offline_until
        while until is not None and not self._stop.is_set():
            left = (until - self.clock.now()).total_seconds()
            if left <= 0:
                break
            await self._sleep_wall(self.clock.wall_seconds(left))
        self._timers.offline_until = None

    async def _serve(self, conn: OcppConnection) -> None:
        self._conn = conn
        reader = asyncio.create_task(conn.serve())
        reader.add_done_callback(lambda _: self._wake_sender.set())
        try:
            await self._boot(conn)
            self._on_online()
            await self._send_loop(conn)
        except (Disconnected, TimeoutError, CallErrorReceived) as exc:
            self.log.info("station.session_ended", error=str(exc))
        finally:
            await conn.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._conn = None
            self.engine.set_offline(self.clock.now())  # Q11: profiles keep running offline
            self.log.info("station.disconnected")

    async def _boot(self, conn: OcppConnection) -> None:
        """B01-B03: boot after power-up or reset; a reconnect after a network loss does not."""
        if self.registered and self._timers.reboot_reason == "":
            return
        while not self._stop.is_set():
            answer = await conn.call("BootNotification", self._boot_payload())
            interval = int(answer.get("interval") or 0)
            if answer["status"] == "Accepted":
                self.registered = True
                self.heartbeat_interval_s = interval or DEFAULT_HEARTBEAT_S
                self._timers.reboot_reason = ""
                return
            self.registered = False
            # B02: while Pending the CSMS may ask for reports or set variables; what it asks
            # for is sent meanwhile. Then boot again after the interval (sim seconds).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.clock.wall_seconds(interval or BOOT_RETRY_S)):
                    await self._send_loop(conn)

    def _boot_payload(self) -> dict[str, Any]:
        return {
            "reason": self._timers.reboot_reason or "PowerUp",
            "chargingStation": {
                "vendorName": self.hw.vendor_name,
                "model": self.hw.model,
                "serialNumber": self._serial,
                "firmwareVersion": self.hw.firmware_version,
            },
        }

    def _on_online(self) -> None:
        now = self.clock.now()
        self.engine.set_online(now)  # Q12
        self._timers.next_heartbeat_at = now + timedelta(seconds=self.heartbeat_interval_s)
        for evse in self.evses.values():
            for connector_id in range(1, len(self.hw.connectors) + 1):
                self._send_status(evse, connector_id, evse.status, now)
        if not self._timers.booted_once:
            self._timers.booted_once = True
            pending, self._timers.pending_plugs = self._timers.pending_plugs, []
            for p in pending:
                self._start_session(self.evses[p.evse_id], p.ev, p.soc_pct, p.departure)
        self._wake_domain.set()
        self.log.info("station.online", version=self.version)

    async def _send_loop(self, conn: OcppConnection) -> None:
        """The only sender of station -> CSMS CALLs: one at a time, the outbox in order."""
        while not conn.closed and not self._stop.is_set():
            if not self._outbox:
                self._wake_sender.clear()
                await self._wake_sender.wait()
                continue
            item = self._outbox[0]
            try:
                answer = await conn.call(item.action, item.payload)
            except Disconnected:
                if not item.transactional:
                    self._drop_front(item)
                return
            except (CallErrorReceived, TimeoutError) as exc:
                await self._failed_attempt(item, exc)
                continue
            except ValueError as exc:  # our own message broke the schema: a bug, never sent
                self.log.error("station.invalid_message", action=item.action, error=str(exc))
                self._drop_front(item)
                continue
            self._outbox.popleft()
            if item.on_answer is not None:
                item.on_answer(answer)

    async def _failed_attempt(self, item: Outgoing, exc: Exception) -> None:
        """E13: a transaction message is retried MessageAttempts times, then dropped."""
        item.attempts += 1
        attempts = self.dm.message_attempts()
        self.log.info("station.call_failed", action=item.action, attempt=item.attempts, error=exc)
        if not item.transactional or item.attempts >= attempts:
            self._drop_front(item)
            return
        await self._sleep_wall(self.dm.message_attempt_interval_s() * item.attempts)

    def _drop_front(self, item: Outgoing) -> None:
        if self._outbox and self._outbox[0] is item:
            self._outbox.popleft()
        if item.transactional:
            self.log.warning("station.transaction_message_dropped", action=item.action)
        if item.on_answer is not None:
            item.on_answer(None)

    def _enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        transactional: bool = False,
        on_answer: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        """Queue a message. Offline, only transaction messages wait (E04); others are moot."""
        if not transactional and not self.connected:
            if on_answer is not None:
                on_answer(None)
            return
        self._outbox.append(Outgoing(action, payload, transactional, on_answer))
        self._wake_sender.set()

    # ================================================================== the simulated day

    async def _domain_loop(self) -> None:
        """Physics, meter values, heartbeats, aligned data and planned drops on sim time."""
        while not self._stop.is_set():
            now = self.clock.now()
            self._advance(now)
            self._due(now)
            wait_s = max(0.0, (self._next_due(now) - now).total_seconds())
            self._wake_domain.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.clock.wall_seconds(wait_s)):
                    await self._wake_domain.wait()

    def _next_due(self, now: datetime) -> datetime:
        cap = now + timedelta(seconds=max(self.hw.meter_interval_s, PHYSICS_STEP_S))
        heartbeat = self._timers.next_heartbeat_at if self.online else None
        candidates = [cap, heartbeat, self._timers.next_aligned_at]
        candidates += [e.next_meter_at for e in self.evses.values()]
        candidates += self._next_planned_faults()
        for at_s, _ in self.config.faults.derate:
            if self.started_at is not None and self._elapsed_s(now) < at_s:
                candidates.append(self.started_at + timedelta(seconds=at_s))
                break
        return min(c for c in candidates if c is not None)

    def _next_planned_faults(self) -> list[datetime]:
        """The next planned drop, unplug and replug of the fault plan (sim instants)."""
        if self.started_at is None:
            return []
        faults, timers = self.config.faults, self._timers
        pairs = (
            (faults.drop_connection_at_s, timers.drop_index),
            (faults.unplug_at_s, timers.unplug_index),
            (faults.replug_at_s, timers.replug_index),
        )
        return [
            self.started_at + timedelta(seconds=times[index])
            for times, index in pairs
            if index < len(times)
        ]

    def _due(self, now: datetime) -> None:
        self._due_drop(now)
        self._due_unplug(now)
        self._due_replug(now)
        if self.online and self._timers.next_heartbeat_at and now >= self._timers.next_heartbeat_at:
            self._enqueue("Heartbeat", {})
            self._timers.next_heartbeat_at = now + timedelta(seconds=self.heartbeat_interval_s)
        self._due_aligned(now)
        for evse in self.evses.values():
            if evse.next_meter_at is not None and now >= evse.next_meter_at:
                self._send_tx_event(evse, "Updated", "MeterValuePeriodic", now, "Sample.Periodic")
                evse.next_meter_at = self._next_meter(now)
            self._update_fault_status(evse, now)

    def _due_drop(self, now: datetime) -> None:
        """FaultPlan: close the socket at the planned sim times, then stay offline."""
        drops = self.config.faults.drop_connection_at_s
        index = self._timers.drop_index
        if index >= len(drops) or self._elapsed_s(now) < drops[index]:
            return
        self._timers.drop_index += 1
        self._timers.offline_until = now + timedelta(seconds=self.config.faults.offline_for_s)
        self.log.info("station.fault_drop", at_s=drops[index])
        if self._conn is not None:
            self.engine.set_offline(now)
            self._close_soon()

    def _due_unplug(self, now: datetime) -> None:
        """FaultPlan: at the planned sim times every car leaves (E10, as `unplug`)."""
        times, index = self.config.faults.unplug_at_s, self._timers.unplug_index
        if index >= len(times) or self._elapsed_s(now) < times[index]:
            return
        self._timers.unplug_index += 1
        self._advance(now)  # the SoC the car leaves with is the SoC at this instant
        away = [
            _Away(e.ev, e.battery.soc_pct, e.departure, e.evse_id)
            for e in self.evses.values()
            if e.ev is not None and e.battery is not None
        ]
        away += [_Away(p.ev, p.soc_pct, p.departure, p.evse_id) for p in self._timers.pending_plugs]
        for car in away:
            self.unplug(car.evse_id)
        self._timers.away = away
        self.log.info("station.fault_unplug", at_s=times[index], cars=len(away))

    def _due_replug(self, now: datetime) -> None:
        """FaultPlan: `replug_after_s` after an unplug the same cars come back as they left."""
        times, index = self.config.faults.replug_at_s, self._timers.replug_index
        if index >= len(times) or self._elapsed_s(now) < times[index]:
            return
        self._timers.replug_index += 1
        away, self._timers.away = self._timers.away, []
        for car in away:
            taken = self.evses[car.evse_id].ev is not None or any(
                p.evse_id == car.evse_id for p in self._timers.pending_plugs
            )
            if taken:  # the fleet's behaviour plugged another car in meanwhile
                self.log.info("station.fault_replug_skipped", evse_id=car.evse_id)
                continue
            departure = car.departure if car.departure is None or car.departure > now else None
            self.plug_in(car.ev, car.soc_pct, departure, car.evse_id)
        self.log.info("station.fault_replug", at_s=times[index], cars=len(away))

    def _due_aligned(self, now: datetime) -> None:
        """J01: clock-aligned MeterValues every AlignedDataCtrlr.Interval (0 = off)."""
        interval = self.dm.integer("AlignedDataCtrlr", "Interval", 0)
        if interval <= 0:
            self._timers.next_aligned_at = None
            return
        if self._timers.next_aligned_at is None:
            self._timers.next_aligned_at = _next_aligned(now, interval)
            return
        if now < self._timers.next_aligned_at:
            return
        self._timers.next_aligned_at = _next_aligned(now, interval)
        measurands = self.dm.members("AlignedDataCtrlr", "Measurands")
        if not measurands:
            return
        for evse in self.evses.values():
            values = self._meter_value(evse, now, "Sample.Clock", measurands)
            self._enqueue("MeterValues", {"evseId": evse.evse_id, "meterValue": [values]})

    def _next_meter(self, now: datetime) -> datetime | None:
        interval = self.dm.integer("SampledDataCtrlr", "TxUpdatedInterval", 0)
        return now + timedelta(seconds=interval) if interval > 0 else None

    def _update_fault_status(self, evse: Evse, now: datetime) -> None:
        """A derate to zero makes the EVSE unusable: Faulted until it recovers (G01)."""
        faulted = self._derate(now).factor == 0.0
        if faulted and evse.status != "Faulted":
            self._set_status(evse, "Faulted", now)
        elif not faulted and evse.status == "Faulted":
            self._set_status(evse, "Occupied" if evse.ev else "Available", now)

    # ================================================================== physics

    def _advance(self, now: datetime) -> None:
        """Integrate every plugged EVSE up to `now`, in chunks with one command and derate."""
        for evse in self.evses.values():
            if evse.plant is None or evse.battery is None or evse.simulated_to is None:
                continue
            while evse.simulated_to < now:
                t = evse.simulated_to
                h = min((now - t).total_seconds(), self._chunk_s(t))
                if h <= 1e-6:
                    break
                self.engine.set_evse(evse.evse_id, soc_pct=evse.battery.soc_pct)
                # The chunk's mid-point names its derate even if `t` rounds just before a step.
                derate = self._derate(t + timedelta(seconds=h / 2))
                state, delivered = evse.plant.step(
                    evse.battery, self._command_w(evse, t), h, derate
                )
                evse.battery = state
                evse.import_wh += delivered.import_wh
                evse.export_wh += delivered.export_wh
                evse.power_w = state.power_w
                evse.simulated_to = t + timedelta(seconds=h)

    def _chunk_s(self, at: datetime) -> float:
        """How long from `at` the command and the derate stay what they are (sim s). Without a
        charging profile the command changes only with an event (a CSMS command, plug-in,
        authorisation), each of which integrates up to its instant first; with one, at most
        PHYSICS_STEP_S (its setpoint moves at period starts and with SoC). A derate step of the
        fault plan ends a chunk; one closer than a millisecond counts as already begun."""
        chunk = PHYSICS_STEP_S if self.engine.profiles() else math.inf
        elapsed = self._elapsed_s(at)
        for at_s, _ in self.config.faults.derate:
            if at_s > elapsed + 1e-3:
                return min(chunk, at_s - elapsed)
        return chunk

    def _command_w(self, evse: Evse, at: datetime) -> float:
        """What the EVSE asks of the car: the profile engine's setpoint once authorised, never
        below LimitMaxDischarge (R04); the physics decides what is delivered."""
        if not evse.authorized or evse.transaction_id is None:
            return 0.0
        command = self.engine.effective_setpoint(at, evse.evse_id)
        pct = self._limit_max_discharge_pct()
        if pct is not None and command < 0:
            command = max(command, -pct / 100.0 * self.hw.max_discharge_w)
        return command

    def _limit_max_discharge_pct(self) -> float | None:
        active = [
            c.data.get("pctMaxDischargePower")
            for c in self.der.values()
            if c.control_type == "LimitMaxDischarge" and not c.superseded
        ]
        values = [float(v) for v in active if v is not None]
        return min(values) if values else None

    # ================================================================== sessions (E, C, Q)

    def _start_session(
        self, evse: Evse, ev: EvModel, soc_pct: float, departure: datetime | None
    ) -> None:
        """E02 cable first: TransactionEvent Started, then Authorize, then the EV's needs."""
        now = self.clock.now()
        self._advance(now)
        evse.ev, evse.departure = ev, departure
        evse.plant = Plant.for_pair(self.hw, ev)
        evse.battery = evse.plant.initial_state(soc_pct)
        evse.simulated_to = now
        evse.power_w = 0.0
        protocol = "urn:iso:std:iso:15118:-20:DC" if ev.protocol == "ISO15118-20" else ev.protocol
        self.dm.plug(evse.evse_id, f"{ev.id}", protocol)
        self._set_status(evse, "Occupied", now)
        evse.transaction_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        evse.seq_no, evse.authorized, evse.allowed_transfer = 0, False, ()
        self.engine.start_transaction(evse.evse_id, evse.transaction_id, now)
        self._refresh_v2x(evse)
        self._send_tx_event(evse, "Started", "CablePluggedIn", now, "Transaction.Begin")
        evse.next_meter_at = self._next_meter(now)
        remote = evse.pending_remote_start
        if remote is not None:
            evse.pending_remote_start = None
            self._authorized(evse, None, remote)
            return
        token = self._id_token(ev)
        self._enqueue(
            "Authorize",
            {"idToken": token},
            on_answer=lambda answer: self._authorized(evse, answer, {"idToken": token}),
        )
        self._wake_domain.set()

    def _id_token(self, ev: EvModel) -> dict[str, str]:
        """Plug and charge for ISO 15118 cars (eMAID), a local card otherwise."""
        kind = "eMAID" if ev.protocol.startswith("ISO15118") else "Local"
        return {"idToken": f"{self.station_id}-{ev.id}"[:36], "type": kind}

    def _authorized(self, evse: Evse, answer: dict[str, Any] | None, start: dict[str, Any]) -> None:
        """C01 answer (None: offline or no answer -> local authorisation, charging only)."""
        if evse.transaction_id is None or evse.ev is None or evse.authorized:
            return
        status = answer["idTokenInfo"]["status"] if answer else "Accepted"
        if status != "Accepted":
            self.log.info("station.authorization_refused", status=status)
            return
        now = self.clock.now()
        self._advance(now)
        evse.authorized = True
        if answer is not None and "allowedEnergyTransfer" in answer:  # Q01
            evse.allowed_transfer = tuple(answer["allowedEnergyTransfer"])
        evse.remote_start_id = start.get("remoteStartId")
        self._refresh_v2x(evse)
        trigger = "RemoteStart" if "remoteStartId" in start else "Authorized"
        self._send_tx_event(evse, "Updated", trigger, now, None, id_token=start["idToken"])
        self._send_charging_needs(evse, now)
        profile = start.get("chargingProfile")
        if profile is not None:
            self.engine.install(
                evse.evse_id, {**profile, "transactionId": evse.transaction_id}, now
            )
        self._wake_domain.set()

    def _send_charging_needs(self, evse: Evse, now: datetime) -> None:
        """K15/Q02: what the car needs; V2X parameters only on 2.1 with a matched pair."""
        assert evse.ev is not None and evse.plant is not None and evse.battery is not None
        bidirectional = (
            self.version == "2.1"
            and evse.plant.discharge_allowed
            and bool(BPT_MODES & set(self.hw.energy_transfer_modes))
        )
        needs = charging_needs(
            evse.ev,
            evse.battery.soc_pct,
            self.hw.current_type,
            self.hw.max_charge_w,
            self.hw.max_discharge_w,
            version=self.version,
            bidirectional=bidirectional,
            departure=evse.departure,
        )
        payload: dict[str, Any] = {"evseId": evse.evse_id, "chargingNeeds": needs}
        if self.version == "2.1":
            payload["timestamp"] = iso(now)
        self._enqueue("NotifyEVChargingNeeds", payload)

    def _refresh_v2x(self, evse: Evse) -> None:
        """Q01: discharge only when the CSMS allowed it. 2.1: V2XChargingCtrlr.Enabled and a
        BPT mode allowed for this transaction. 2.0.1: the catalog's negative-limit flag."""
        if evse.transaction_id is None:
            allowed = False
        elif self.version == "2.1":
            bpt = any(mode in BPT_MODES for mode in evse.allowed_transfer)
            allowed = self.dm.v2x_enabled(evse.evse_id) and bpt
        else:
            allowed = self.hw.accepts_negative_limits
        self.engine.set_evse(evse.evse_id, v2x_allowed=allowed)

    def _end_transaction(self, evse: Evse, now: datetime, trigger: str, reason: str) -> None:
        self._send_tx_event(evse, "Ended", trigger, now, "Transaction.End", stopped=reason)
        self.engine.end_transaction(evse.evse_id)
        evse.transaction_id, evse.authorized, evse.allowed_transfer = None, False, ()
        evse.next_meter_at = None
        evse.remote_start_id = None

    def _send_tx_event(
        self,
        evse: Evse,
        event_type: str,
        trigger: str,
        now: datetime,
        context: str | None,
        *,
        id_token: dict[str, Any] | None = None,
        stopped: str | None = None,
    ) -> None:
        """E01-E07 TransactionEvent, queued in order; `offline` when created offline (E04)."""
        assert evse.transaction_id is not None
        info: dict[str, Any] = {"transactionId": evse.transaction_id}
        info["chargingState"] = self._charging_state(evse, event_type)
        if stopped:
            info["stoppedReason"] = stopped
        if evse.remote_start_id is not None:
            info["remoteStartId"] = evse.remote_start_id
        if self.version == "2.1" and event_type != "Ended":
            info["operationMode"] = self.engine.evaluate(now, evse.evse_id).mode
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": iso(now),
            "triggerReason": trigger,
            "seqNo": evse.seq_no,
            "transactionInfo": info,
            "evse": {"id": evse.evse_id, "connectorId": 1},
        }
        evse.seq_no += 1
        if not self.online:
            payload["offline"] = True
        if id_token is not None:
            payload["idToken"] = id_token
        if context is not None:
            measurands = self._measurands(event_type)
            if measurands:
                payload["meterValue"] = [self._meter_value(evse, now, context, measurands)]
        self._enqueue("TransactionEvent", payload, transactional=True)

    def _measurands(self, event_type: str) -> tuple[str, ...]:
        name = {"Started": "TxStartedMeasurands", "Ended": "TxEndedMeasurands"}.get(
            event_type, "TxUpdatedMeasurands"
        )
        return self.dm.members("SampledDataCtrlr", name)

    def _charging_state(self, evse: Evse, event_type: str) -> str:
        if event_type == "Ended" or evse.ev is None:
            return "Idle"
        if not evse.authorized:
            return "EVConnected"
        if abs(evse.power_w) > 1.0:
            return "Charging"
        offered = self.engine.effective_setpoint(self.clock.now(), evse.evse_id)
        return "SuspendedEVSE" if offered == 0 else "SuspendedEV"

    def _meter_value(
        self, evse: Evse, now: datetime, context: str, measurands: tuple[str, ...]
    ) -> dict[str, Any]:
        """MeterValueType from the physics: registers, power both ways, SoC (J01/J02)."""
        readings = {
            "Energy.Active.Import.Register": evse.import_wh,
            "Energy.Active.Export.Register": evse.export_wh,
            "Power.Active.Import": max(evse.power_w, 0.0),
            "Power.Active.Export": max(-evse.power_w, 0.0) + 0.0,  # never "-0.0"
        }
        if evse.battery is not None:
            readings["SoC"] = evse.battery.soc_pct
        sampled = [
            {
                "value": round(readings[m], 3 if m.startswith("Energy") else 1),
                "measurand": m,
                "context": context,
                "unitOfMeasure": {"unit": UNITS[m]},
            }
            for m in measurands
            if m in readings
        ]
        return {"timestamp": iso(now), "sampledValue": sampled}

    def _set_status(self, evse: Evse, status: str, now: datetime) -> None:
        evse.status = status
        for connector_id in range(1, len(self.hw.connectors) + 1):
            self._send_status(evse, connector_id, status, now)

    def _send_status(self, evse: Evse, connector_id: int, status: str, now: datetime) -> None:
        payload = {
            "timestamp": iso(now),
            "connectorStatus": status,
            "evseId": evse.evse_id,
            "connectorId": connector_id,
        }
        self._enqueue("StatusNotification", payload)

    # ================================================================== CSMS -> station

    async def _handle(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self, "_on_" + action, None)
        if method is None or (action in V21_ONLY and self.version != "2.1"):
            raise Unsupported(action)
        now = self.clock.now()
        self._advance(now)  # what happened before this command, happened under the old one
        answer: dict[str, Any] = method(payload, now)
        self._wake_domain.set()
        return answer

    # --- K01 / K08 / K09 / K10 / Q04 --------------------------------------------------------

    def _on_SetChargingProfile(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        if self.config.faults.reject_profiles:  # fault injection
            return _status("Rejected", "FaultInjected", "the scenario rejects profiles")
        return self.engine.install(req["evseId"], req["chargingProfile"], now).to_response()

    def _on_ClearChargingProfile(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        criteria = req.get("chargingProfileCriteria") or {}
        gone = self.engine.clear(
            profile_id=req.get("chargingProfileId"),
            evse_id=criteria.get("evseId"),
            purpose=criteria.get("chargingProfilePurpose"),
            stack_level=criteria.get("stackLevel"),
        )
        return {"status": "Accepted" if gone else "Unknown"}

    def _on_GetChargingProfiles(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        crit = req["chargingProfile"]
        found = [
            inst
            for inst in self.engine.profiles(req.get("evseId"))
            if _profile_matches(inst.profile, crit)
        ]
        if not found or "CSO" not in crit.get("chargingLimitSource", ["CSO"]):
            return {"status": "NoProfiles"}
        by_evse: dict[int, list[dict[str, Any]]] = {}
        for inst in found:
            by_evse.setdefault(inst.evse_id, []).append(inst.profile.raw)
        parts = list(by_evse.items())
        for index, (evse_id, profiles) in enumerate(parts):
            report = {
                "requestId": req["requestId"],
                "chargingLimitSource": "CSO",
                "evseId": evse_id,
                "chargingProfile": profiles,
            }
            if index < len(parts) - 1:
                report["tbc"] = True
            self._enqueue("ReportChargingProfiles", report)
        return {"status": "Accepted"}

    def _on_GetCompositeSchedule(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        unit = req.get("chargingRateUnit", "W")
        try:
            schedule = self.engine.composite_payload(now, req["duration"], req["evseId"], unit)
        except ProfileError as exc:
            return _status("Rejected", exc.reason_code, exc.detail)
        return {"status": "Accepted", "schedule": schedule}

    def _on_UpdateDynamicSchedule(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        return self.engine.update_dynamic(
            req["chargingProfileId"], req["scheduleUpdate"], now
        ).to_response()

    # --- Q01 ---------------------------------------------------------------------------------

    def _on_NotifyAllowedEnergyTransfer(self, req: dict[str, Any], now: datetime) -> dict:
        evse = self._evse_of(req["transactionId"])
        if evse is None:
            return _status("Rejected", "TxNotFound", f"no transaction {req['transactionId']}")
        evse.allowed_transfer = tuple(req["allowedEnergyTransfer"])
        self._refresh_v2x(evse)
        return {"status": "Accepted"}

    def _evse_of(self, transaction_id: str) -> Evse | None:
        return next((e for e in self.evses.values() if e.transaction_id == transaction_id), None)

    # --- F01 / F03 ---------------------------------------------------------------------------

    def _on_RequestStartTransaction(self, req: dict[str, Any], now: datetime) -> dict:
        evse = self.evses.get(req.get("evseId") or 1)
        if evse is None:
            return _status("Rejected", "UnknownEvse", f"no EVSE {req.get('evseId')}")
        if evse.authorized:
            return _status("Rejected", "TxInProgress", "a transaction is already authorised")
        start = {k: req[k] for k in ("idToken", "remoteStartId", "chargingProfile") if k in req}
        if evse.transaction_id is None:  # no car yet: the next plug-in starts authorised
            evse.pending_remote_start = start
            return {"status": "Accepted"}
        tx = evse.transaction_id
        self._authorized(evse, None, start)
        return {"status": "Accepted", "transactionId": tx}

    def _on_RequestStopTransaction(self, req: dict[str, Any], now: datetime) -> dict:
        evse = self._evse_of(req["transactionId"])
        if evse is None:
            return {"status": "Rejected"}
        self._end_transaction(evse, now, "RemoteStop", "Remote")
        return {"status": "Accepted"}

    # --- B05-B07 -----------------------------------------------------------------------------

    def _on_GetVariables(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        return {"getVariableResult": [self.dm.get(item) for item in req["getVariableData"]]}

    def _on_SetVariables(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        results = [self.dm.set(item) for item in req["setVariableData"]]
        self.heartbeat_interval_s = self.dm.integer(
            "OCPPCommCtrlr", "HeartbeatInterval", self.heartbeat_interval_s
        )
        for evse in self.evses.values():
            self._refresh_v2x(evse)
            if evse.transaction_id is not None:
                evse.next_meter_at = self._next_meter(now)
        self._timers.next_aligned_at = None  # re-aligned to the (new) interval
        return {"setVariableResult": results}

    def _on_GetBaseReport(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        data = self.dm.report(req["reportBase"])
        if not data:
            return {"status": "EmptyResultSet"}
        step = REPORT_ITEMS_PER_PART  # B07.FR.08: a long report comes in parts (tbc)
        parts = [data[i : i + step] for i in range(0, len(data), step)]
        for seq_no, part in enumerate(parts):
            report: dict[str, Any] = {
                "requestId": req["requestId"],
                "generatedAt": iso(now),
                "seqNo": seq_no,
                "reportData": part,
            }
            if seq_no < len(parts) - 1:
                report["tbc"] = True
            self._enqueue("NotifyReport", report)
        return {"status": "Accepted"}

    # --- F06, B11/B12, L01, N01 --------------------------------------------------------------

    def _on_TriggerMessage(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        what = req["requestedMessage"]
        evse_ids = [req["evse"]["id"]] if req.get("evse") else list(self.evses)
        if any(i not in self.evses for i in evse_ids):
            return _status("Rejected", "UnknownEvse", f"no EVSE {evse_ids}")
        if what == "BootNotification":
            self._enqueue("BootNotification", {**self._boot_payload(), "reason": "Triggered"})
        elif what == "Heartbeat":
            self._enqueue("Heartbeat", {})
        elif what == "StatusNotification":
            for i in evse_ids:
                self._set_status(self.evses[i], self.evses[i].status, now)
        elif what == "MeterValues":
            measurands = self.dm.members("SampledDataCtrlr", "TxUpdatedMeasurands")
            for i in evse_ids:
                mv = self._meter_value(self.evses[i], now, "Trigger", measurands)
                self._enqueue("MeterValues", {"evseId": i, "meterValue": [mv]})
        elif what == "TransactionEvent":
            running = [self.evses[i] for i in evse_ids if self.evses[i].transaction_id]
            if not running:
                return _status("Rejected", "NoTransaction", "no transaction running")
            for evse in running:
                self._send_tx_event(evse, "Updated", "Trigger", now, "Trigger")
        elif what == "FirmwareStatusNotification":
            self._enqueue("FirmwareStatusNotification", {"status": "Idle"})
        elif what == "LogStatusNotification":
            self._enqueue("LogStatusNotification", {"status": "Idle"})
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def _on_Reset(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        busy = any(e.transaction_id for e in self.evses.values())
        if req.get("evseId"):
            return _status("Rejected", "EvseResetNotSupported", "only the whole station resets")
        if req["type"] == "OnIdle" and busy:
            return {"status": "Scheduled"}
        for evse in self.evses.values():
            if evse.transaction_id is not None:
                self._end_transaction(evse, now, "ResetCommand", "ImmediateReset")
        self._timers.reboot_reason = "RemoteReset"
        self.registered = False
        asyncio.get_running_loop().call_later(0.05, self._close_for_reset)
        return {"status": "Accepted"}

    def _close_for_reset(self) -> None:
        """After the answer went out: drop the socket; `run` reconnects and boots again."""
        self._close_soon()

    def _close_soon(self) -> None:
        if self._conn is not None:
            task = asyncio.ensure_future(self._conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _on_UpdateFirmware(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        request_id = req["requestId"]
        for status in ("Downloading", "Downloaded", "Installing", "Installed"):
            self._enqueue("FirmwareStatusNotification", {"status": status, "requestId": request_id})
        return {"status": "Accepted"}

    def _on_GetLog(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        request_id = req["requestId"]
        for status in ("Uploading", "Uploaded"):
            self._enqueue("LogStatusNotification", {"status": status, "requestId": request_id})
        return {"status": "Accepted", "filename": f"{self.station_id}-{request_id}.log"[:255]}

    # --- R04 DER control (2.1) ---------------------------------------------------------------

    def _der_supported(self, control_type: str) -> bool:
        """R04: the 2.1 control types this hardware's inverter takes (catalog, per model)."""
        return self.version == "2.1" and control_type in self.hw.der_control_types

    def _on_SetDERControl(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        kind = req["controlType"]
        if not self._der_supported(kind):
            return _status("NotSupported", "UnsupportedControl", f"{kind} is not supported")
        data = req.get(DER_FIELD.get(kind, "curve"))
        if data is None:
            return _status(
                "Rejected", "MissingData", f"{kind} needs {DER_FIELD.get(kind, 'curve')}"
            )
        superseded = [
            c.control_id
            for c in self.der.values()
            if c.control_type == kind and c.is_default == req["isDefault"] and not c.superseded
        ]
        for control_id in superseded:
            self.der[control_id].superseded = True
        self.der[req["controlId"]] = DerControl(req["controlId"], kind, req["isDefault"], data)
        answer: dict[str, Any] = {"status": "Accepted"}
        if superseded:
            answer["supersededIds"] = superseded
        return answer

    def _der_matching(self, req: dict[str, Any]) -> list[DerControl]:
        return [
            c
            for c in self.der.values()
            if req.get("controlId") in (None, c.control_id)
            and req.get("controlType") in (None, c.control_type)
            and req.get("isDefault") in (None, c.is_default)
        ]

    def _on_GetDERControl(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        if not self.hw.bidirectional:
            return {"status": "NotSupported"}
        found = self._der_matching(req)
        if not found:
            return {"status": "NotFound"}
        report: dict[str, Any] = {"requestId": req["requestId"]}
        for control in found:
            key, entry = _der_report_entry(control)
            report.setdefault(key, []).append(entry)
        self._enqueue("ReportDERControl", report)
        return {"status": "Accepted"}

    def _on_ClearDERControl(self, req: dict[str, Any], now: datetime) -> dict[str, Any]:
        found = self._der_matching(req)
        for control in found:
            del self.der[control.control_id]
        return {"status": "Accepted" if found else "NotFound"}


V21_ONLY = frozenset(
    {
        "NotifyAllowedEnergyTransfer",
        "UpdateDynamicSchedule",
        "SetDERControl",
        "GetDERControl",
        "ClearDERControl",
    }
)


def _status(status: str, reason: str, detail: str) -> dict[str, Any]:
    return {"status": status, "statusInfo": {"reasonCode": reason, "additionalInfo": detail}}


def _next_aligned(now: datetime, interval_s: int) -> datetime:
    """The next instant that is a whole multiple of the interval after midnight UTC."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds()
    return midnight + timedelta(seconds=(elapsed // interval_s + 1) * interval_s)


def _profile_matches(profile: Any, crit: dict[str, Any]) -> bool:
    """ChargingProfileCriterionType of GetChargingProfiles (K09)."""
    if crit.get("chargingProfilePurpose") not in (None, profile.purpose):
        return False
    if crit.get("stackLevel") not in (None, profile.stack_level):
        return False
    ids = crit.get("chargingProfileId")
    return not ids or profile.id in ids


def _der_report_entry(control: DerControl) -> tuple[str, dict[str, Any]]:
    """The ReportDERControlRequest list and entry for one stored control (R04)."""
    common = {"id": control.control_id}
    flags = {"isDefault": control.is_default, "isSuperseded": control.superseded}
    kind = control.control_type
    if kind == "EnterService":
        return "enterService", {**common, "enterService": control.data}
    if kind == "Gradients":
        return "gradient", {**common, "gradient": control.data}
    if kind in ("FixedPFAbsorb", "FixedPFInject"):
        return DER_FIELD[kind], {**common, **flags, "fixedPF": control.data}
    if kind in ("FixedVar", "FreqDroop", "LimitMaxDischarge"):
        return DER_FIELD[kind], {**common, **flags, DER_FIELD[kind]: control.data}
    return "curve", {**common, **flags, "curveType": kind, "curve": control.data}
