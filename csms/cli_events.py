"""`csms events ...`: the operator's command line for demand-response events, over the REST API
of a running `csms serve` (the process that owns the dispatcher).

Every command prints the API's JSON answer (or CSV for `report --csv`); an error prints the
API's `detail` and exits with code 1 (2 for bad arguments, as Typer does).
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer

events_app = typer.Typer(help="Demand-response events (over the REST API).", no_args_is_help=True)

ApiOption = Annotated[
    str | None,
    typer.Option("--api", help="API base URL [env CSMS_API_URL, default http://127.0.0.1:8080]."),
]


def _base(api: str | None) -> str:
    return (api or os.environ.get("CSMS_API_URL") or "http://127.0.0.1:8080").rstrip("/")


def _call(api: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{_base(api)}{path}"
    try:
        response = httpx.request(method, url, json=body, timeout=30.0)
    except httpx.HTTPError as exc:
        typer.echo(f"csms events: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        typer.echo(f"csms events: {response.status_code}: {_detail(detail)}", err=True)
        raise typer.Exit(1)
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.text


def _detail(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI validation errors: name the field
        return "; ".join(
            f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
        )
    return str(detail)


def _print(value: Any) -> None:
    typer.echo(value if isinstance(value, str) else json.dumps(value, indent=2))


@events_app.command("create")
def create(
    program: Annotated[str, typer.Option(help="Program id or alias, e.g. connected-solutions.")],
    start: Annotated[str, typer.Option(help="Start, ISO-8601 with a zone.")],
    duration: Annotated[float, typer.Option(help="Duration in minutes.")] = 180.0,
    target_kw: Annotated[float | None, typer.Option(help="Export the utility asks for.")] = None,
    interval: Annotated[float, typer.Option(help="Plan interval in minutes.")] = 5.0,
    reserve_pct: Annotated[float, typer.Option(help="Share of the flat level held back.")] = 3.0,
    notice: Annotated[
        float | None, typer.Option(help="Notice lead in minutes (default: the program's).")
    ] = None,
    open_loop: Annotated[
        bool, typer.Option("--open-loop", help="Never re-plan (to measure the closed loop).")
    ] = False,
    api: ApiOption = None,
) -> None:
    """Schedule an event; participants are notified before it starts."""
    body: dict[str, Any] = {
        "program": program,
        "start": start,
        "duration_minutes": duration,
        "interval_minutes": interval,
        "reserve_pct": reserve_pct,
        "closed_loop": not open_loop,
    }
    if target_kw is not None:
        body["target_kw"] = target_kw
    if notice is not None:
        body["notice_minutes"] = notice
    _print(_call(api, "POST", "/api/v1/events", body))


@events_app.command("list")
def list_events(
    state: Annotated[str | None, typer.Option(help="Only events in this state.")] = None,
    api: ApiOption = None,
) -> None:
    """Every event, newest first."""
    _print(_call(api, "GET", "/api/v1/events" + (f"?state={state}" if state else "")))


@events_app.command("show")
def show(event_id: int, api: ApiOption = None) -> None:
    """An event with each participant's part."""
    _print(_call(api, "GET", f"/api/v1/events/{event_id}"))


@events_app.command("opt-out")
def opt_out(
    event_id: int,
    enrollment: Annotated[int, typer.Option(help="The enrolment that opts out.")],
    api: ApiOption = None,
) -> None:
    """Opt a participant out, before or during the event."""
    _print(_call(api, "POST", f"/api/v1/events/{event_id}/opt-outs", {"enrollment_id": enrollment}))


@events_app.command("cancel")
def cancel(event_id: int, api: ApiOption = None) -> None:
    """Cancel an open event (stations stop discharging at once)."""
    _print(_call(api, "DELETE", f"/api/v1/events/{event_id}"))


@events_app.command("report")
def report(
    event_id: int,
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of JSON.")] = False,
    api: ApiOption = None,
) -> None:
    """The event's settlement report."""
    suffix = "?format=csv" if csv else ""
    _print(_call(api, "GET", f"/api/v1/events/{event_id}/report{suffix}"))
