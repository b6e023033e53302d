"""`csms`: run the central system, and the demo."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from csms import logs
from csms.cli_events import events_app
from csms.settings import Settings
from csms.store.db import DEFAULT_DATABASE_URL, DatabaseUrlError, normalise_url
from simclock import Clock, parse_instant

app = typer.Typer(
    help="OCPP 2.1 / 2.0.1 central system for bidirectional EV chargers.",
    no_args_is_help=True,
    add_completion=False,
)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{name}={value!r} is not a port number") from None


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


app.add_typer(events_app, name="events")


@app.callback()
def _root() -> None:
    """OCPP 2.1 / 2.0.1 central system for bidirectional EV chargers."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    ocpp_port: Annotated[
        int | None, typer.Option(help="OCPP websocket port [env CSMS_OCPP_PORT, default 9000].")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="REST API port [env CSMS_API_PORT, default 8080].")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL [env CSMS_DATABASE_URL]: sqlite:///file.db or postgresql://user@host/db."
        ),
    ] = None,
    mqtt: Annotated[str | None, typer.Option(help="MQTT broker URL [env CSMS_MQTT_URL].")] = None,
    allow_unknown_stations: Annotated[
        bool, typer.Option(help="Register stations on first connection instead of refusing them.")
    ] = False,
    heartbeat_interval: Annotated[
        int, typer.Option(help="Heartbeat interval given to stations, seconds.")
    ] = 300,
    speed: Annotated[float, typer.Option(help="Simulated clock speed (1 = real time).")] = 1.0,
    clock_start: Annotated[
        str | None, typer.Option(help="Simulated time at the anchor, ISO-8601.")
    ] = None,
    clock_anchor: Annotated[
        float | None, typer.Option(help="Wall-clock epoch seconds of the anchor (default: now).")
    ] = None,
    no_journal: Annotated[
        bool, typer.Option("--no-journal", help="Do not keep the OCPP message journal.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Run the CSMS: OCPP websockets and the REST API.

    Prints `ocpp ws://HOST:PORT  api http://HOST:PORT` when ready.
    """
    logs.configure(log_level)
    try:
        database_url = normalise_url(
            db or os.environ.get("CSMS_DATABASE_URL") or DEFAULT_DATABASE_URL
        )
        clock = Clock.create(speed, _instant(clock_start), clock_anchor)
    except (DatabaseUrlError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = Settings(
        host=host,
        ocpp_port=ocpp_port if ocpp_port is not None else _env_int("CSMS_OCPP_PORT", 9000),
        api_port=api_port if api_port is not None else _env_int("CSMS_API_PORT", 8080),
        database_url=database_url,
        mqtt_url=mqtt or os.environ.get("CSMS_MQTT_URL"),
        allow_unknown_stations=allow_unknown_stations,
        heartbeat_interval_s=heartbeat_interval,
        journal=not no_journal,
        clock=clock,
    )
    from csms.runtime import serve_until_signalled

    try:
        asyncio.run(serve_until_signalled(settings))
    except OSError as exc:
        typer.echo(f"csms: cannot start: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def demo(
    stations: Annotated[int, typer.Option(min=2, max=200, help="How many stations.")] = 18,
    speed: Annotated[float, typer.Option(min=1, max=600, help="Simulated clock speed.")] = 150.0,
    duration: Annotated[
        float, typer.Option(min=15, max=180, help="Event length, simulated minutes.")
    ] = 180.0,
    report: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "csms-demo-report.html"
    ),
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on the last line.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "error",
) -> None:
    """One ConnectedSolutions event on a simulated mixed fleet, end to end, in one process."""
    from csms import demo as demo_module

    logs.configure(log_level)

    def progress(line: str) -> None:
        typer.echo(line, err=json_output)

    progress(
        f"Starting a CSMS on a temporary SQLite file and {stations} simulated stations "
        f"(clock x{speed:g})..."
    )
    options = demo_module.DemoOptions(
        stations=stations, speed=speed, duration_minutes=duration, report_path=report
    )
    try:
        summary = demo_module.main(options, progress)
    except (RuntimeError, TimeoutError) as exc:
        typer.echo(f"csms demo: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in demo_module.describe(summary):
        progress(line)
    if json_output:
        typer.echo(json.dumps(summary.as_json()))
    if summary.soc_floor_violations:
        typer.echo("csms demo: a car went below its owner's floor", err=True)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
