"""`csms serve` refuses bad settings with a clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from csms.cli import app

CSMS = str(Path(sys.executable).with_name("csms"))
runner = CliRunner()


def test_unsupported_database_is_a_usage_error() -> None:
    result = runner.invoke(app, ["serve", "--db", "mysql://x/y"])
    assert result.exit_code == 2
    assert "unsupported database 'mysql'" in result.output


def test_clock_start_must_be_an_instant() -> None:
    result = runner.invoke(app, ["serve", "--speed", "2", "--clock-start", "yesterday"])
    assert result.exit_code == 2
    assert "not an ISO-8601 instant" in result.output


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_names_it_without_its_password(tmp_path) -> None:
    url = f"postgresql://csms:secret-pw@127.0.0.1:{_unused_port()}/nope"
    done = subprocess.run(
        [CSMS, "serve", "--db", url, "--ocpp-port", "0", "--api-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "cannot open the database postgresql" in done.stderr
    assert "secret-pw" not in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_is_reported(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CSMS, "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--ocpp-port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert "address already in use" in done.stderr and "Traceback" not in done.stderr
