"""`make bench` keeps working: bench/connections.py at tiny scale, against both servers.

No timing is asserted (the machine may be busy); only that both runs complete, carry messages
and see no error, and that the report has the shape RESULTS.md quotes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "connections.py"
RUN_GUARD_S = 900  # hang guard: two server start-ups, two 2 s windows, process spawns
# A generous per-CALL timeout: on a machine busy with other work a slow answer is not an error
# this test is about (the bench turns a timeout into an error).
CALL_TIMEOUT_S = "120"


@pytest.fixture(scope="module")
def report() -> dict:
    tiny = ["--stations", "5", "--duration", "2", "--timeout", CALL_TIMEOUT_S, "--json"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *tiny],
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_S,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json prints one JSON object, got:\n{done.stdout}"
    return json.loads(lines[0])


@pytest.mark.parametrize("server", ["csms", "bare"])
def test_bench_runs_both_servers_with_messages_and_no_errors(report: dict, server: str) -> None:
    run = report["runs"][server]
    assert run["booted"] == 5
    assert run["messages"] > 0
    assert run["errors"] == 0, run["error_kinds"]
    assert run["rss_peak_mb"] > 0
    assert run["p99_ms"] >= run["p50_ms"] > 0


def test_bench_reports_the_ratio_and_the_machine(report: dict) -> None:
    assert set(report["ratio_ours_over_bare"]) >= {"messages_per_s", "p50_ms", "p99_ms"}
    assert report["ratio_ours_over_bare"]["messages_per_s"] > 0
    assert report["machine"]["cores"] >= 1
    assert report["settings"]["stations"] == 5
