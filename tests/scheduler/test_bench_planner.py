"""bench/planner.py keeps working: a tiny fleet, both methods, the JSON shape RESULTS.md quotes.

No timing is asserted (the machine may be busy); only that the run completes, prints one JSON
line, and that the heuristic stays within 1 % of the LP on the bench's fleet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "planner.py"
RUN_GUARD_S = 300  # hang guard only


@pytest.fixture(scope="module")
def report() -> dict:
    args = ["--vehicles", "30", "60", "--intervals", "12", "--site-limit", "0.4", "--json"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=RUN_GUARD_S
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json prints one JSON object, got:\n{done.stdout}"
    return json.loads(lines[0])


def test_bench_reports_both_methods_per_fleet_size(report: dict) -> None:
    assert [run["vehicles"] for run in report["runs"]] == [30, 60]
    for run in report["runs"]:
        assert run["planned"] + run["left_out"] == run["vehicles"]
        assert run["lp"]["energy_kwh"] > 0
        assert run["waterfill"]["energy_kwh"] >= 0.99 * run["lp"]["energy_kwh"]
        assert max(run["lp"]["min_interval_kw"], run["waterfill"]["min_interval_kw"]) <= (
            run["site_limit_kw"] + 1e-6
        )
        assert run["energy_gap_pct"] <= 1.0
