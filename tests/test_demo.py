"""`csms demo` runs to completion and the discharge gate decides right for every station."""

from __future__ import annotations

from typer.testing import CliRunner

from csms.cli import app


def test_demo_pushes_discharge_only_to_stations_that_showed_they_can() -> None:
    result = CliRunner().invoke(app, ["demo", "--stations", "8"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("DEMO-")]
    assert len(lines) == 8
    accepted = [line for line in lines if "station answered Accepted" in line]
    refused = [line for line in lines if "refused (403)" in line]
    assert len(accepted) == 4 and len(refused) == 4
    assert all("can discharge " in line for line in accepted)
    assert all("has not shown it can discharge" in line for line in refused)
    assert "4 discharge profiles reached their stations, 4 refused." in result.output
