"""`csms-sim`: the hardware catalog, the EV models, one simulated station, or a fleet.

Contract in DESIGN.md §2. Bad arguments (unknown model or EV, malformed URL, bad clock values,
a bad scenario) end with a clear message and exit code 2. The clock options are exactly those
of `csms serve`, so both processes compute the same simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import structlog
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from iso15118_profiles import ev_models, get_ev_model, pair_table
from simclock import Clock, parse_instant
from simulators.behaviour import KINDS
from simulators.catalog import get_hardware, hardware_models
from simulators.scenario import (
    MIX_NAMES,
    OCPP_VERSIONS,
    ClockSpec,
    Scenario,
    ScenarioError,
    load_scenario,
    named_mix,
    ocpp_version_of,
)

if TYPE_CHECKING:
    from simulators.fleet import FleetProgress
    from simulators.station import SimulatedStation

app = typer.Typer(
    help="Simulated bidirectional charging stations speaking OCPP 2.1 / 2.0.1.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

SpeedOpt = Annotated[
    float | None, typer.Option(help="Simulated clock speed, as given to csms serve (default 1).")
]
StartOpt = Annotated[
    str | None, typer.Option(help="Simulated time at the anchor, ISO-8601 with a zone.")
]
AnchorOpt = Annotated[
    float | None,
    typer.Option(help="Wall-clock epoch seconds of the anchor (the one csms serve printed)."),
]
LogOpt = Annotated[str, typer.Option(help="debug | info | warning | error (logs go to stderr).")]


@app.callback()
def _root() -> None:
    """Simulated bidirectional charging stations speaking OCPP 2.1 / 2.0.1."""


# ---- argument checks -------------------------------------------------------------------------


def check_url(url: str) -> str:
    """ws:// or wss:// with a host; the station id is appended as the last path segment."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise typer.BadParameter(
            f"{url!r} is not a websocket URL; expected ws://HOST:PORT/ocpp (or wss://)",
            param_hint="--url",
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise typer.BadParameter(f"{url!r} has a malformed port", param_hint="--url") from None
    if parts.query or parts.fragment:
        raise typer.BadParameter(f"{url!r}: no query or fragment allowed", param_hint="--url")
    return url.rstrip("/")


def make_clock(
    spec: ClockSpec, speed: float | None, start: str | None, anchor: float | None
) -> Clock:
    """The scenario's clock with any command-line value taking precedence."""
    try:
        start_at: datetime | None = parse_instant(start) if start is not None else spec.start
        return Clock.create(
            speed if speed is not None else spec.speed,
            start_at,
            anchor if anchor is not None else spec.anchor,
        )
    except ValueError as exc:
        raise typer.BadParameter(
            str(exc), param_hint="--speed/--clock-start/--clock-anchor"
        ) from None


def _hardware_id(model: str) -> str:
    if model not in hardware_models():
        known = ", ".join(sorted(hardware_models()))
        raise typer.BadParameter(
            f"unknown hardware model {model!r}; known: {known}", param_hint="--model"
        )
    return model


def _ev_id(ev: str | None) -> str | None:
    if ev is not None and ev not in ev_models():
        known = ", ".join(sorted(ev_models()))
        raise typer.BadParameter(f"unknown EV model {ev!r}; known: {known}", param_hint="--ev")
    return ev


def _version_for(model: str, version: str | None) -> str | None:
    if version is None:
        return None
    offered = [ocpp_version_of(v) for v in get_hardware(model).ocpp_versions]
    if version not in OCPP_VERSIONS or version not in offered:
        raise typer.BadParameter(
            f"{model} offers OCPP {', '.join(offered)}; got {version!r}",
            param_hint="--ocpp-version",
        )
    return version


def configure_logging(level: str) -> None:
    """structlog and the standard library to stderr, so stdout carries only results."""
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
    levels["error"] = logging.ERROR
    if level not in levels:
        raise typer.BadParameter(
            f"{level!r}; allowed: {', '.join(levels)}", param_hint="--log-level"
        )
    logging.basicConfig(level=levels[level], stream=sys.stderr, format="%(name)s %(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(levels[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def _on_signals(stop: Callable[[], None]) -> None:
    """SIGINT / SIGTERM end the run cleanly (stations close their sockets)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


# ---- catalog listings -------------------------------------------------------------------------


@app.command()
def models(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the hardware catalog (ids for --model)."""
    catalog = hardware_models()
    if json_out:
        typer.echo(json.dumps([m.to_dict() for m in catalog.values()]))
        return
    table = Table("id", "vendor / model", "kind", "OCPP", "AC/DC", "charge kW", "export kW", "V2X")
    for m in catalog.values():
        versions = ", ".join(ocpp_version_of(v) for v in m.ocpp_versions)
        v2x = "yes" if m.bidirectional else "no"
        table.add_row(
            m.id, f"{m.vendor_name} {m.model}", m.category, versions, m.current_type,
            f"{m.max_charge_kw:g}", f"{m.max_discharge_kw:g}", v2x,
        )  # fmt: skip
    out.print(table)


@app.command()
def evs(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the EV models (ids for --ev), with the EVSE each may discharge on."""
    pairs = pair_table()
    if json_out:
        rows = [
            {**e.to_dict(), "matched_evse": pairs.matched_evse_models(e.id)}
            for e in ev_models().values()
        ]
        typer.echo(json.dumps(rows))
        return
    table = Table("id", "name", "kind", "usable kWh", "AC/DC kW", "export kW", "discharges on")
    for e in ev_models().values():
        table.add_row(
            e.id, e.name, e.category, f"{e.usable_capacity_kwh:g}",
            f"{e.max_ac_charge_kw:g}/{e.max_dc_charge_kw:g}", f"{e.max_discharge_kw:g}",
            ", ".join(pairs.matched_evse_models(e.id)) or "-",
        )  # fmt: skip
    out.print(table)


# ---- one station ------------------------------------------------------------------------------


def status_text(snapshot: Any, now: datetime) -> Text:
    """The live status line of `csms-sim station`."""
    s = snapshot
    link = "connected" if s.connected else "offline"
    soc = f"{s.soc_pct:.1f} %" if s.soc_pct is not None else "-"
    return Text(
        f"{now:%Y-%m-%d %H:%M:%S}Z  {s.station_id} ({s.model_id}, OCPP {s.ocpp_version})  {link}"
        f"{' booted' if s.registered else ''}  {s.state}  {s.power_w / 1000:+.2f} kW  SoC {soc}  "
        f"import {s.import_wh / 1000:.3f} kWh  export {s.export_wh / 1000:.3f} kWh  "
        f"msgs {s.messages_sent}/{s.messages_received}  errors {s.errors}"
        f"{f'  queued {s.queued_offline}' if s.queued_offline else ''}"
    )


async def _run_station(station: SimulatedStation, clock: Clock, duration_s: float | None) -> Any:
    stop = asyncio.Event()
    _on_signals(stop.set)
    runner = asyncio.create_task(station.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s if duration_s is not None else float("inf")
    live = Live(status_text(station.snapshot(), clock.now()), console=err, transient=False)
    with live:
        while not stop.is_set() and not runner.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            live.update(status_text(station.snapshot(), clock.now()))
            if loop.time() >= deadline:
                break
    await station.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    return station.snapshot()


@app.command()
def station(
    model: Annotated[str, typer.Option(help="Hardware model id (csms-sim models).")],
    id: Annotated[str, typer.Option("--id", help="Station id (the last URL path segment).")],
    url: Annotated[str, typer.Option(help="CSMS OCPP endpoint, e.g. ws://127.0.0.1:9000/ocpp.")],
    ev: Annotated[
        str | None, typer.Option(help="EV model id plugged in at start (csms-sim evs).")
    ] = None,
    soc: Annotated[float, typer.Option(min=0, max=100, help="The EV's SoC at start, %.")] = 50.0,
    speed: SpeedOpt = None,
    clock_start: StartOpt = None,
    clock_anchor: AnchorOpt = None,
    password: Annotated[str | None, typer.Option(help="Security profile 1 password.")] = None,
    ocpp_version: Annotated[
        str | None, typer.Option(help="2.1 | 2.0.1 (default: the newest the hardware offers).")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many wall seconds (default: Ctrl-C)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the final snapshot as JSON.")
    ] = False,
    log_level: LogOpt = "warning",
) -> None:
    """Run one station with a live status line; Ctrl-C stops it cleanly."""
    configure_logging(log_level)
    hardware = get_hardware(_hardware_id(model))
    ev_id = _ev_id(ev)
    if not 0 < len(id) <= 48 or "/" in id:
        raise typer.BadParameter(f"{id!r}: 1-48 characters, no '/'", param_hint="--id")
    from simulators.faults import FaultPlan
    from simulators.station import SimulatedStation, StationConfig

    config = StationConfig(
        station_id=id,
        hardware=hardware,
        url=check_url(url),
        ocpp_version=_version_for(model, ocpp_version),
        password=password,
        ev=get_ev_model(ev_id) if ev_id else None,
        soc_pct=soc,
        faults=FaultPlan.none(),
    )
    clock = make_clock(ClockSpec(), speed, clock_start, clock_anchor)
    err.print(clock.describe())
    final = asyncio.run(_run_station(SimulatedStation(config, clock), clock, duration))
    if json_out:
        typer.echo(json.dumps(_snapshot_dict(final)))


def _snapshot_dict(snapshot: Any) -> dict[str, Any]:
    return asdict(snapshot)


# ---- a fleet ----------------------------------------------------------------------------------


def fleet_scenario(
    scenario_path: Path | None,
    count: int | None,
    mix: str | None,
    behaviour: str | None,
    seed: int | None,
) -> Scenario:
    """The scenario file (or the default) with the command-line overrides applied."""
    try:
        scenario = load_scenario(scenario_path) if scenario_path else Scenario(name="cli")
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    if count is not None:
        scenario = replace(scenario, count=count)
    if mix is not None:
        if mix not in MIX_NAMES:
            raise typer.BadParameter(
                f"{mix!r}; allowed: {', '.join(MIX_NAMES)}", param_hint="--mix"
            )
        scenario = replace(scenario, mix=named_mix(mix))
    if behaviour is not None:
        if behaviour not in KINDS:
            allowed = ", ".join(KINDS)
            raise typer.BadParameter(f"{behaviour!r}; allowed: {allowed}", param_hint="--behaviour")
        scenario = replace(scenario, behaviour=replace(scenario.behaviour, kind=behaviour))
    if seed is not None:
        scenario = replace(scenario, seed=seed)
    if scenario.count + len(scenario.stations) == 0:
        raise typer.BadParameter("the fleet has no stations", param_hint="--count")
    return scenario


class _ProgressView:
    """A progress bar on a terminal; one plain line per report otherwise (logs, CI)."""

    def __init__(self, total: int, every_plain_s: float) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.terminal = err.is_terminal
        self.every_plain_s, self._last_plain = every_plain_s, -1e9
        self.progress = Progress(
            TextColumn("connected"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=err, transient=False, disable=not self.terminal,
        )  # fmt: skip
        self.task = self.progress.add_task("", total=total)

    def update(self, report: FleetProgress) -> None:
        if self.terminal:
            self.progress.update(
                self.task, completed=report.counts.connected, description=report.line()
            )
        elif report.wall_s - self._last_plain >= self.every_plain_s:
            self._last_plain = report.wall_s
            err.print(report.line(), highlight=False, soft_wrap=True)


async def _run_fleet(
    fleet: Any, duration: float | None, view: _ProgressView, guard_s: float
) -> dict:
    _on_signals(fleet.stop)
    with view.progress:
        return await fleet.run(hold_s=duration, boot_guard_s=guard_s, on_progress=view.update)


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table("", "", title="fleet summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    return table


@app.command()
def fleet(
    url: Annotated[str, typer.Option(help="CSMS OCPP endpoint, e.g. ws://127.0.0.1:9000/ocpp.")],
    count: Annotated[
        int | None, typer.Option(min=0, max=100_000, help="Stations generated from the mix.")
    ] = None,
    mix: Annotated[
        str | None, typer.Option(help="residential | bus | all (default residential).")
    ] = None,
    speed: SpeedOpt = None,
    clock_start: StartOpt = None,
    clock_anchor: AnchorOpt = None,
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (TOML).")] = None,
    behaviour: Annotated[
        str | None, typer.Option(help="commuter | school-bus | always | never (default always).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Seed of mix, behaviour and faults.")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            min=0, help="Wall seconds to hold once every station booted (default: Ctrl-C)."
        ),
    ] = None,
    ramp: Annotated[float, typer.Option(min=0.1, help="New connections per second.")] = 200.0,
    max_booting: Annotated[
        int, typer.Option(min=1, help="Stations connecting or booting at once during the ramp.")
    ] = 100,
    boot_guard: Annotated[
        float, typer.Option(min=0, help="Longest wait, wall s, for every station to boot.")
    ] = 300.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON line.")
    ] = False,
    log_level: LogOpt = "warning",
) -> None:
    """Run many stations in this process: progress while running, a summary at the end."""
    configure_logging(log_level)
    chosen = fleet_scenario(scenario, count, mix, behaviour, seed)
    endpoint = check_url(url)
    clock = make_clock(chosen.clock, speed, clock_start, clock_anchor)
    from simulators.fleet import Fleet

    try:
        runner = Fleet(chosen, endpoint, clock, ramp_per_s=ramp, max_booting=max_booting)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    total = len(runner.members)
    err.print(
        f"{total} stations -> {endpoint}  {clock.describe()}", highlight=False, soft_wrap=True
    )
    view = _ProgressView(total, every_plain_s=10.0)
    summary = asyncio.run(_run_fleet(runner, duration, view, boot_guard))
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        out.print(_summary_table(summary))
    if summary["booted"] == 0:
        err.print("no station booted: is the CSMS reachable at that URL?")
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
