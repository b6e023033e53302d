"""Issue 5 acceptance: a CSMS restart mid-event resumes it. `csms serve` is killed (SIGKILL) a
quarter into the event and started again on the same database, ports and clock; the stations,
which kept executing their profiles offline (Q11), reconnect (Q12), and the dispatcher picks the
event up where it was: profiles replaced in place, settlement at the end. Speed 60."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from csms.demo import demo_fleet
from simclock import iso, parse_instant
from tests.e2e.harness import (
    SimClock,
    event_when,
    free_port,
    ready_and_enrolled,
    scenario_toml,
    start_fleet,
    start_serve,
    stop,
    tail,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEED = 60.0
CLOCK_START = "2026-07-15T18:45:00Z"
EVENT_START = parse_instant("2026-07-15T19:00:00Z")
EVENT_MIN = 40
KILL_AT = EVENT_START + timedelta(minutes=10)


async def _run(tmp: Path) -> tuple[dict, list[tuple[int, str]]]:
    cars = demo_fleet(8, seed=5)
    scenario = tmp / "fleet.toml"
    scenario.write_text(scenario_toml(cars, {}))
    clock = SimClock(SPEED, CLOCK_START, time.time() + 1.0)
    db, ports = tmp / "csms.db", (free_port(), free_port())
    log = tmp / "serve.log"
    serve = await start_serve(f"sqlite:///{db}", clock, log, *ports)
    fleet = await start_fleet(serve.ocpp, scenario, clock, tmp / "fleet.log")
    try:
        async with httpx.AsyncClient(base_url=serve.api, timeout=30) as api:
            await ready_and_enrolled(api, cars)
            body = {
                "program": "connected-solutions",
                "start": iso(EVENT_START),
                "duration_minutes": EVENT_MIN,
                "notice_minutes": 3,
            }
            created = await api.post("/api/v1/events", json=body)
            assert created.status_code == 201, created.text
            event_id = created.json()["id"]
        await clock.until(KILL_AT)
        await stop(serve.process, signal.SIGKILL)
        await asyncio.sleep(3.0)  # three simulated minutes without a CSMS
        serve = await start_serve(f"sqlite:///{db}", clock, log, *ports)
        async with httpx.AsyncClient(base_url=serve.api, timeout=30) as api:
            guard = EVENT_MIN * 60 / SPEED + 120
            await event_when(api, event_id, lambda e: e["settled_at"] is not None, guard)
            report = (await api.get(f"/api/v1/events/{event_id}/report")).json()
        with sqlite3.connect(db) as con:
            plans = con.execute(
                "select revision, reason from event_plan where event_id = ? order by revision",
                (event_id,),
            ).fetchall()
        return report, plans
    except BaseException:
        print(tail(log, 80))
        raise
    finally:
        await stop(fleet)
        await stop(serve.process)


def test_csms_restart_mid_event_resumes_it(tmp_path: Path) -> None:
    report, plans = asyncio.run(_run(tmp_path))
    assert any("resumed after a CSMS restart" in reason for _, reason in plans), plans
    head = report["event"]
    assert head["state"] == "completed" and head["settled_at"] is not None
    # The stations kept their schedules while the CSMS was away: the outage costs little.
    assert head["delivery_ratio"] >= 0.95, head
    assert report["totals"]["soc_floor_violations"] == 0
    statuses = {p["status"] for p in report["participants"]}
    assert statuses <= {"done", "left_out"}, statuses
