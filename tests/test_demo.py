"""`csms demo`: one ConnectedSolutions event on a simulated mixed fleet, end to end, with the
summary on the last line as JSON (DESIGN.md §2) and a self-contained HTML report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from csms.cli import app

KEYS = {
    "stations",
    "participants",
    "notified_before_start",
    "opt_outs",
    "committed_kw",
    "delivered_kw",
    "delivery_ratio",
    "soc_floor_violations",
    "pay_usd",
    "report",
}


def test_demo_runs_an_event_and_prints_the_summary_as_json(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    args = ["demo", "--stations", "8", "--speed", "300", "--duration", "60"]
    result = CliRunner().invoke(app, [*args, "--report", str(report), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) >= KEYS
    assert summary["stations"] == summary["participants"] == 8
    assert summary["notified_before_start"] == 8
    assert summary["opt_outs"] == 1
    assert summary["soc_floor_violations"] == 0
    assert summary["committed_kw"] > 0 and summary["delivered_kw"] > 0
    assert summary["pay_usd"] > 0
    assert summary["plan_revisions"] > 1  # the opt-out and the unplug were re-planned around
    html = report.read_text()
    assert summary["report"] == str(report)
    assert html.count("data:image/png;base64,") == 2
    # Progress went to stderr; stdout is only the JSON line.
    assert len(result.stdout.strip().splitlines()) == 1
