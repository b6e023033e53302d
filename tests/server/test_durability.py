"""Issue 3 acceptance: killing `csms serve` with SIGKILL right after a TransactionEvent was
acknowledged loses nothing that was acknowledged.

The real CLI runs as a child process on SQLite and on a fresh PostgreSQL database; test
stations (the `ocpp` library, OCPP 2.1) send TransactionEvent Started then Updated with meter
values (E01/E02: a station sends its transaction messages one at a time and treats the
CALLRESULT as the CSMS's promise that the message is stored, so it drops it from its offline
queue). The process is killed with SIGKILL, restarted on the same database (crash recovery must
work), stopped, and the database is read: every acknowledged seqNo and every meter sample it
carried must be there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from ocpp.v21 import call
from ocpp.v21.datatypes import (
    ChargingStationType,
    EVSEType,
    IdTokenType,
    MeterValueType,
    SampledValueType,
    TransactionType,
    UnitOfMeasureType,
)
from sqlalchemy import select

from csms.store.db import Database
from csms.store.models import MeterSample, TransactionEventRecord
from simclock import iso
from tests.stations import TestStation21, connected_to

pytestmark = pytest.mark.e2e

READY = re.compile(r"^ocpp (?P<ocpp>ws://\S+)\s+api (?P<api>http://\S+)\s*$")
START_GUARD_S = 60.0  # hang guard only: a cold start with migrations takes about a second
RUN_GUARD_S = 120.0
EVSE_ID = 1

# What a V2G station samples per TransactionEvent (DESIGN §3.9): registers, power, SoC.
MEASURANDS: tuple[tuple[str, str], ...] = (
    ("Energy.Active.Import.Register", "Wh"),
    ("Energy.Active.Export.Register", "Wh"),
    ("Power.Active.Import", "W"),
    ("SoC", "Percent"),
)


def _csms_executable() -> Path:
    """The `csms` console script of the interpreter running the tests (.venv/bin/csms)."""
    beside = Path(sys.executable).with_name("csms")
    if beside.exists():
        return beside
    return Path(__file__).resolve().parents[2] / ".venv" / "bin" / "csms"


@dataclass
class ServeProcess:
    process: asyncio.subprocess.Process
    ocpp_url: str
    api_url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def start_serve(db_url: str, log_path: Path) -> ServeProcess:
    """Start `csms serve` on ephemeral ports and wait for its ready line."""
    log = log_path.open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            str(_csms_executable()),
            "serve",
            "--db",
            db_url,
            "--ocpp-port",
            "0",  # the kernel picks a free port; the ready line tells us which
            "--api-port",
            "0",
            "--allow-unknown-stations",
            "--log-level",
            "warning",
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    finally:
        log.close()
    assert process.stdout is not None
    async with asyncio.timeout(START_GUARD_S):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                await process.wait()
                tail = ServeProcess(process, "", "", log_path).log_tail()
                raise AssertionError(f"csms serve exited ({process.returncode}):\n{tail}")
            ready = READY.match(line.strip())
            if ready:
                return ServeProcess(process, ready["ocpp"], ready["api"], log_path)


def send_signal(serve: ServeProcess, sig: signal.Signals) -> None:
    # os.kill, not Process.kill/terminate: those poll() first, which can reap the child
    # behind asyncio's watcher and turn its exit status into 255.
    with contextlib.suppress(ProcessLookupError):
        os.kill(serve.process.pid, sig)


def sigkill(serve: ServeProcess) -> None:
    send_signal(serve, signal.SIGKILL)


async def stop_serve(serve: ServeProcess) -> None:
    """SIGTERM and wait: a graceful stop of the restarted server."""
    send_signal(serve, signal.SIGTERM)
    async with asyncio.timeout(START_GUARD_S):
        await serve.process.wait()


@contextlib.asynccontextmanager
async def station_on(serve: ServeProcess, station_id: str) -> AsyncIterator[TestStation21]:
    url = f"{serve.ocpp_url}/ocpp/{station_id}"
    async with connected_to(url, station_id, response_timeout=30, open_timeout=30) as station:
        yield station


# ---- what the station sends --------------------------------------------------------------


@dataclass
class ChargingSession:
    """One transaction on one station, and what the CSMS acknowledged of it."""

    station_id: str
    transaction_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    )
    acked: dict[int, datetime] = field(default_factory=dict)  # seqNo -> its meter timestamp

    def at(self, seq_no: int) -> datetime:
        # One meter reading per second of simulated charging: distinct, ordered timestamps.
        return self.started_at + timedelta(seconds=seq_no)

    def event(self, seq_no: int) -> call.TransactionEvent:
        started = seq_no == 0
        return call.TransactionEvent(
            event_type="Started" if started else "Updated",
            seq_no=seq_no,
            timestamp=iso(self.at(seq_no)),
            trigger_reason="Authorized" if started else "MeterValuePeriodic",
            transaction_info=TransactionType(
                transaction_id=self.transaction_id, charging_state="Charging"
            ),
            evse=EVSEType(id=EVSE_ID, connector_id=1) if started else None,
            id_token=IdTokenType(id_token="TOKEN-DUR-1", type="ISO14443") if started else None,
            meter_value=[self.meter_value(seq_no)],
        )

    def meter_value(self, seq_no: int) -> MeterValueType:
        context = "Transaction.Begin" if seq_no == 0 else "Sample.Periodic"
        readings = {
            "Energy.Active.Import.Register": 1000.0 + 3.0 * seq_no,
            "Energy.Active.Export.Register": 500.0 + 2.0 * seq_no,
            "Power.Active.Import": 11000.0,
            "SoC": float(20 + seq_no % 80),
        }
        return MeterValueType(
            timestamp=iso(self.at(seq_no)),
            sampled_value=[
                SampledValueType(
                    value=readings[measurand],
                    measurand=measurand,
                    context=context,
                    unit_of_measure=UnitOfMeasureType(unit=unit),
                )
                for measurand, unit in MEASURANDS
            ],
        )


async def boot(station: TestStation21) -> None:
    answer = await station.call(
        call.BootNotification(
            charging_station=ChargingStationType(vendor_name="durability", model="kill-9"),
            reason="PowerUp",
        )
    )
    assert answer.status == "Accepted"


async def send_events(
    station: TestStation21,
    session: ChargingSession,
    count: int,
    on_ack: Callable[[], None] = lambda: None,
) -> None:
    """Started (seqNo 0), then Updated, one at a time as a station sends them (E01, E02)."""
    for seq_no in range(count):
        answer = await station.call(session.event(seq_no), suppress=False)
        assert answer is not None
        session.acked[seq_no] = session.at(seq_no)
        on_ack()


# ---- what the database holds -------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    seq_nos: set[int]
    samples: set[tuple[datetime, str]]  # (timestamp, measurand)


async def read_stored(db_url: str, session: ChargingSession) -> Stored:
    db = Database(db_url)
    try:
        async with db.read() as s:
            events = await s.execute(
                select(TransactionEventRecord.seq_no).where(
                    TransactionEventRecord.station_id == session.station_id,
                    TransactionEventRecord.transaction_id == session.transaction_id,
                )
            )
            samples = await s.execute(
                select(MeterSample.timestamp, MeterSample.measurand).where(
                    MeterSample.station_id == session.station_id
                )
            )
            return Stored(set(events.scalars()), {(t, m) for t, m in samples.all()})
    finally:
        await db.close()


async def restart_and_stop(db_url: str, log_path: Path) -> None:
    """The killed database must open again: start `csms serve` on it and stop it cleanly."""
    serve = await start_serve(db_url, log_path)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            health = await client.get(f"{serve.api_url}/healthz")
        assert health.status_code == 200, health.text
    finally:
        await stop_serve(serve)
    assert serve.process.returncode == 0, serve.log_tail()


def assert_acknowledged_present(session: ChargingSession, stored: Stored) -> None:
    missing_events = set(session.acked) - stored.seq_nos
    assert not missing_events, (
        f"{session.station_id}: {len(missing_events)} acknowledged seqNos lost after SIGKILL, "
        f"e.g. {sorted(missing_events)[:10]}"
    )
    expected = {(at, m) for at in session.acked.values() for m, _ in MEASURANDS}
    missing_samples = expected - stored.samples
    assert not missing_samples, (
        f"{session.station_id}: {len(missing_samples)} acknowledged meter samples lost, "
        f"e.g. {sorted(missing_samples)[:3]}"
    )


# ---- the tests ---------------------------------------------------------------------------


async def test_sigkill_after_acknowledged_transaction_events_loses_nothing_e01_e02(
    db_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "serve.log"
    serve = await start_serve(db_url, log_path)
    session = ChargingSession("CP-KILL-1")
    try:
        async with asyncio.timeout(RUN_GUARD_S), station_on(serve, session.station_id) as station:
            await boot(station)
            await send_events(station, session, count=1 + 200)  # Started + a burst of Updated
            sigkill(serve)  # at once after the last acknowledgement: nothing may be pending
    finally:
        sigkill(serve)  # a no-op when already killed; ends it if the test failed first
        await serve.process.wait()
    assert serve.process.returncode == -signal.SIGKILL
    await restart_and_stop(db_url, log_path)
    stored = await read_stored(db_url, session)
    assert_acknowledged_present(session, stored)
    # Sequential sends with the kill after the last answer: nothing unacknowledged existed.
    assert stored.seq_nos == set(session.acked)


STATIONS = 50
KILL_AFTER_ACKS = STATIONS * 8


async def test_sigkill_under_group_commit_from_50_stations_loses_no_acknowledged_event(
    db_url: str, tmp_path: Path
) -> None:
    """50 stations send at once so commits are grouped; the kill lands mid-burst, with
    messages of other stations in flight, which may or may not be stored, but every one
    already acknowledged must be."""
    log_path = tmp_path / "serve.log"
    serve = await start_serve(db_url, log_path)
    sessions = [ChargingSession(f"CP-KILL-{n:03d}") for n in range(STATIONS)]
    acks = 0
    killed = asyncio.Event()

    def count_ack() -> None:
        nonlocal acks
        acks += 1
        if acks == KILL_AFTER_ACKS:
            sigkill(serve)  # synchronously, in the same step as the acknowledgement
            killed.set()

    async def run(session: ChargingSession, booted: asyncio.Barrier) -> None:
        async with station_on(serve, session.station_id) as station:
            await boot(station)
            await booted.wait()  # start the burst together
            await send_events(station, session, count=10_000, on_ack=count_ack)

    booted = asyncio.Barrier(STATIONS)
    tasks = [asyncio.create_task(run(s, booted)) for s in sessions]
    kill_seen = asyncio.create_task(killed.wait())
    try:
        async with asyncio.timeout(RUN_GUARD_S):
            await asyncio.wait([kill_seen, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:  # a station that failed before the kill is the real error
            if task.done() and not killed.is_set():
                task.result()
    finally:
        kill_seen.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sigkill(serve)  # a no-op when already killed; ends it if the test failed first
        await serve.process.wait()
    assert serve.process.returncode == -signal.SIGKILL
    assert sum(len(s.acked) for s in sessions) >= KILL_AFTER_ACKS
    await restart_and_stop(db_url, log_path)
    for session in sessions:
        assert_acknowledged_present(session, await read_stored(db_url, session))
