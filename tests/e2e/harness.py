"""Real processes for the end-to-end tests: `csms serve` and `csms-sim fleet` on one simulated
clock, a scenario file written by the test, and the REST API polled over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from csms.demo import DemoCar
from simclock import iso, parse_instant

READY = re.compile(r"^ocpp (?P<ocpp>ws://\S+)\s+api (?P<api>http://\S+)$")
START_GUARD_S = 60.0
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SimClock:
    """The three values `csms serve` and `csms-sim` share (DESIGN.md §2)."""

    speed: float
    start: str
    anchor: float

    def args(self) -> list[str]:
        return [
            "--speed",
            f"{self.speed:g}",
            "--clock-start",
            self.start,
            "--clock-anchor",
            f"{self.anchor:.6f}",
        ]

    def now(self) -> Any:
        from datetime import timedelta

        return parse_instant(self.start) + timedelta(
            seconds=self.speed * (time.time() - self.anchor)
        )

    async def until(self, instant: Any) -> None:
        """Sleep (wall) until the simulated clock reaches `instant`."""
        ahead = (instant - self.now()).total_seconds()
        if ahead > 0:
            await asyncio.sleep(ahead / self.speed)


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    api: str
    ocpp: str
    log: Path


async def start_serve(
    db_url: str, clock: SimClock, log: Path, ocpp_port: int, api_port: int
) -> Serve:
    out = log.open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            str(BIN / "csms"),
            "serve",
            "--db",
            db_url,
            "--ocpp-port",
            str(ocpp_port),
            "--api-port",
            str(api_port),
            "--allow-unknown-stations",
            "--log-level",
            "info",
            *clock.args(),
            stdout=asyncio.subprocess.PIPE,
            stderr=out,
        )
    finally:
        out.close()
    assert process.stdout is not None
    async with asyncio.timeout(START_GUARD_S):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                await process.wait()
                raise AssertionError(f"csms serve exited {process.returncode}:\n{tail(log)}")
            ready = READY.match(line.strip())
            if ready:
                return Serve(process, ready["api"], ready["ocpp"], log)


async def stop(process: asyncio.subprocess.Process, sig: signal.Signals = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
    async with asyncio.timeout(START_GUARD_S):
        await process.wait()


async def start_fleet(ocpp_url: str, scenario: Path, clock: SimClock, log: Path) -> Any:
    out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            str(BIN / "csms-sim"),
            "fleet",
            "--url",
            f"{ocpp_url}/ocpp",
            "--scenario",
            str(scenario),
            *clock.args(),
            "--boot-guard",
            "120",
            stdout=out,
            stderr=out,
        )
    finally:
        out.close()


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Faults:
    derate: list[tuple[float, float]] = field(default_factory=list)
    answer_delay_s: float | None = None
    unplug_at_s: list[float] = field(default_factory=list)
    drop_connection_at_s: list[float] = field(default_factory=list)
    offline_for_s: float | None = None

    def toml(self) -> str:
        lines = []
        if self.derate:
            steps = ", ".join(f"[{a:g}, {b:g}]" for a, b in self.derate)
            lines.append(f"derate = [{steps}]")
        if self.answer_delay_s is not None:
            lines.append(f"answer_delay_s = {self.answer_delay_s:g}")
        if self.unplug_at_s:
            lines.append(f"unplug_at_s = [{', '.join(f'{t:g}' for t in self.unplug_at_s)}]")
        if self.drop_connection_at_s:
            at = ", ".join(f"{t:g}" for t in self.drop_connection_at_s)
            lines.append(f"drop_connection_at_s = [{at}]")
        if self.offline_for_s is not None:
            lines.append(f"offline_for_s = {self.offline_for_s:g}")
        return "\n".join(lines)


def scenario_toml(cars: Sequence[DemoCar], faults: dict[str, Faults]) -> str:
    out = [
        'name = "e2e"',
        'description = "end-to-end V2G event"',
        "",
        "[behaviour]",
        'kind = "always"',
    ]
    for car in cars:
        out += [
            "",
            "[[stations]]",
            f'id = "{car.station_id}"',
            f'model = "{car.model}"',
            f'ev = "{car.ev}"',
            f"soc_pct = {car.soc_pct:g}",
        ]
        if car.station_id in faults and faults[car.station_id].toml():
            out += ["", "[stations.faults]", faults[car.station_id].toml()]
    return "\n".join(out) + "\n"


async def wait_for(check: Callable[[], Any], what: str, guard_s: float = 120.0) -> Any:
    async with asyncio.timeout(guard_s):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.5)
    raise AssertionError(what)


async def ready_and_enrolled(
    api: httpx.AsyncClient, cars: Sequence[DemoCar], program: str = "connected-solutions"
) -> dict[str, int]:
    """Wait until every car is in a transaction; mark 2.0.1 units; enrol every car."""
    from simulators.catalog import hardware_models

    catalog = hardware_models()

    async def all_running() -> bool:
        rows = (await api.get("/api/v1/stations")).json()
        ids = {r["id"] for r in rows}
        if not all(c.station_id in ids for c in cars):
            return False
        for car in cars:
            detail = (await api.get(f"/api/v1/stations/{car.station_id}")).json()
            if not detail.get("running_transactions"):
                return False
        return True

    await wait_for(all_running, "every car in a transaction", guard_s=180)
    enrolled = {}
    for car in cars:
        detail = (await api.get(f"/api/v1/stations/{car.station_id}")).json()
        if detail.get("ocpp_version") == "2.0.1" and catalog[car.model].accepts_negative_limits:
            r = await api.patch(
                f"/api/v1/stations/{car.station_id}", json={"accepts_negative_limits": True}
            )
            assert r.status_code == 200, r.text
        body = {
            "participant": car.participant,
            "participant_class": car.participant_class,
            "vehicle_model": car.ev,
            "vehicle_id": f"{car.station_id.lower()}-car",
            "station_id": car.station_id,
            "programs": [program],
            "min_soc_pct": car.floor_pct,
        }
        r = await api.post("/api/v1/enrollments", json=body)
        assert r.status_code == 201, r.text
        enrolled[car.station_id] = r.json()["id"]
    return enrolled


async def event_when(
    api: httpx.AsyncClient, event_id: int, ready: Callable[[dict], bool], guard_s: float
) -> dict:
    async def check() -> dict | None:
        event = (await api.get(f"/api/v1/events/{event_id}")).json()
        return event if ready(event) else None

    return await wait_for(check, f"event {event_id}", guard_s)


__all__ = ["iso"]
