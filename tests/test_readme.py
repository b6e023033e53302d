"""The README's walkthrough works when pasted: the commands of "Try it with a simulated charger"
and the security-profile PATCH run as written (ports moved to free ones), against a real
`csms serve` and a real `csms-sim station`."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HANG_GUARD_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _section_blocks(heading: str) -> list[str]:
    section = README.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _ported(text: str, ocpp: int, api: int) -> str:
    return text.replace(":9000", f":{ocpp}").replace(":8080", f":{api}")


@pytest.fixture
def walkthrough(tmp_path: Path) -> Iterator[tuple[int, int, dict[str, str]]]:
    """The block's two background commands, started as the README starts them."""
    if shutil.which("curl") is None:
        pytest.fail("the README's walkthrough uses curl: install it (apt-get install -y curl)")
    ocpp, api = _free_port(), _free_port()
    (block, *_rest) = _section_blocks("Try it with a simulated charger")
    background = [line.rstrip(" &") for line in block.splitlines() if line.endswith("&")]
    assert [b.split()[0] for b in background] == [".venv/bin/csms", ".venv/bin/csms-sim"]
    serve = background[0] + f" --ocpp-port {ocpp} --api-port {api}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    processes = []
    try:
        processes.append(_start(serve, ROOT, tmp_path, env))
        _wait_ready(processes[0])
        processes.append(_start(_ported(background[1], ocpp, api), ROOT, tmp_path, env))
        yield ocpp, api, env
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(HANG_GUARD_S)


def _start(command: str, root: Path, tmp: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    # The database goes to the test's own directory, the binaries come from the checkout.
    args = command.replace(".venv/bin/", f"{root}/.venv/bin/").split()
    return subprocess.Popen(args, cwd=tmp, env=env, stdout=subprocess.PIPE, text=True)


def _wait_ready(serve: subprocess.Popen[str]) -> None:
    assert serve.stdout is not None
    line = serve.stdout.readline()
    assert line.startswith("ocpp ws://"), line


def _bash(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_walkthrough_pushes_a_discharge_profile_to_the_simulated_charger(walkthrough):
    ocpp, api, env = walkthrough
    block, push = _section_blocks("Try it with a simulated charger")
    detail = _ported(block.splitlines()[-1], ocpp, api)
    deadline = time.monotonic() + HANG_GUARD_S
    while '"running_transactions": [\n        {' not in _bash(detail, env):
        assert time.monotonic() < deadline, "the simulated station never started a transaction"
        time.sleep(0.5)
    answer = _bash(_ported(push, ocpp, api), env)
    assert '"status":"Accepted"' in answer, answer
    (patch,) = _section_blocks("Connect a real charger")
    changed = _bash(_ported(patch, ocpp, api), env)
    assert '"security_profile":1' in changed and "password" not in changed
