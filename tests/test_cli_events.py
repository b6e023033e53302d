"""`csms events ...` against a running CSMS's REST API: the operator's commands print the API's
answer, and an error prints its detail and exits 1."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import structlog
from typer.testing import CliRunner

from csms.cli import app

START = "2027-07-14T19:00:00Z"  # next summer, 3 pm in Boston


@pytest.fixture(autouse=True)
def _quiet_server() -> None:
    """The CSMS runs in this process: its info logs would land in the command's captured
    stdout (structlog's default). The autouse reset in conftest restores the defaults."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


async def _csms_events(csms, *args: str):
    api = f"http://127.0.0.1:{csms.api_port}"
    # The CLI's HTTP call is blocking; the CSMS serves it on this test's event loop.
    return await asyncio.to_thread(CliRunner().invoke, app, ["events", *args, "--api", api])


async def test_create_show_list_and_cancel_an_event(csms_sqlite) -> None:
    created = await _csms_events(
        csms_sqlite, "create", "--program", "connected-solutions", "--start", START,
        "--duration", "120", "--target-kw", "50",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    event = json.loads(created.stdout)
    assert event["target_kw"] == 50 and event["state"] == "scheduled"
    shown = await _csms_events(csms_sqlite, "show", str(event["id"]))
    assert json.loads(shown.stdout)["end"] == "2027-07-14T21:00:00Z"
    listed = await _csms_events(csms_sqlite, "list", "--state", "scheduled")
    assert [e["id"] for e in json.loads(listed.stdout)] == [event["id"]]
    cancelled = await _csms_events(csms_sqlite, "cancel", str(event["id"]))
    assert json.loads(cancelled.stdout)["state"] == "cancelled"


async def test_errors_print_the_apis_reason_and_exit_1(csms_sqlite) -> None:
    outside = await _csms_events(
        csms_sqlite, "create", "--program", "connected-solutions",
        "--start", "2027-07-14T12:00:00Z",
    )  # fmt: skip
    assert outside.exit_code == 1
    assert "422" in outside.stderr and "window" in outside.stderr
    missing = await _csms_events(csms_sqlite, "opt-out", "42", "--enrollment", "1")
    assert missing.exit_code == 1 and "no event 42" in missing.stderr


def test_an_unreachable_api_is_named() -> None:
    result = CliRunner().invoke(app, ["events", "list", "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/api/v1/events" in result.stderr
