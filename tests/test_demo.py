"""`csms demo` runs to completion on simulated hardware: the discharge gate decides right for
every station, and the stations it lets through really export (their registers say so)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from csms.cli import app


def test_demo_discharges_exactly_the_stations_that_showed_they_can() -> None:
    result = CliRunner().invoke(app, ["demo", "--stations", "8"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("DEMO-")]
    assert len(lines) == 8
    accepted = [line for line in lines if "station answered Accepted" in line]
    refused = [line for line in lines if "refused (403)" in line]
    assert len(accepted) == 4 and len(refused) == 4
    assert {line.split()[1] for line in accepted} == {"dcbel-ara", "heliox-44"}
    exported = [float(re.search(r"exported ([\d.]+) kWh", line)[1]) for line in accepted]
    assert all(kwh > 0 for kwh in exported)
    assert any("offered no bidirectional" in line for line in refused)
    assert any("not marked as accepting negative limits" in line for line in refused)
    assert "4 discharge profiles reached their stations, 4 refused." in result.output
