"""`csms-sim`: catalog listings, argument errors (exit 2), a 20-station fleet against the real
CSMS, and every command of docs/simulators.md parses."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from sqlmodel import func, select
from typer.testing import CliRunner

from csms.cli import app as csms_app
from csms.store.models import Station
from simulators.cli import app

ROOT = Path(__file__).resolve().parents[2]
CSMS_SIM = str(Path(sys.executable).with_name("csms-sim"))
FLEET_GUARD_S = 180  # hang guard for the fleet subprocess, not a performance bound
runner = CliRunner()


def test_models_json_lists_the_catalog_ids():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    ids = {m["id"] for m in json.loads(result.stdout)}
    assert {"dcbel-ara", "wallbox-quasar-2", "ford-charge-station-pro", "heliox-44"} <= ids
    table = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "dcbel-ara" in table.stdout


def test_evs_json_lists_the_ev_ids_with_their_matched_evse():
    result = runner.invoke(app, ["evs", "--json"])
    assert result.exit_code == 0, result.output
    evs = {e["id"]: e for e in json.loads(result.stdout)}
    for ev in ("nissan-leaf-40", "kia-ev9-76", "ford-f150-lightning-98", "thomas-built-246"):
        assert ev in evs
    assert evs["kia-ev9-76"]["matched_evse"] == ["wallbox-quasar-2"]
    assert "heliox-44" in evs["thomas-built-246"]["matched_evse"]


URL = "ws://127.0.0.1:9/ocpp"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["station", "--model", "dcbel-aro", "--id", "A", "--url", URL], "unknown hardware model"),
        (["station", "--model", "dcbel-ara", "--id", "A", "--url", URL, "--ev", "leaf"], "EV"),
        (["station", "--model", "dcbel-ara", "--id", "A", "--url", "http://h/ocpp"], "websocket"),
        (["station", "--model", "dcbel-ara", "--id", "A", "--url", "ws://h:port/x"], "port"),
        (["station", "--model", "heliox-44", "--id", "A", "--url", URL, "--ocpp-version", "2.1"],
         "heliox-44 offers OCPP 2.0.1"),
        (["station", "--model", "dcbel-ara", "--id", "A/B", "--url", URL], "no '/'"),
        (["station", "--model", "dcbel-ara", "--id", "A", "--url", URL, "--soc", "120"], "soc"),
        (["fleet", "--url", URL, "--count", "2", "--clock-start", "tomorrow"], "ISO-8601"),
        (["fleet", "--url", URL, "--count", "2", "--speed", "0"], "speed must be > 0"),
        (["fleet", "--url", URL, "--count", "2", "--speed", "2",
          "--clock-start", "2026-07-15T14:00:00"], "time zone"),
        (["fleet", "--url", URL, "--mix", "campus"], "allowed: residential, bus, all"),
        (["fleet", "--url", URL, "--behaviour", "weekender"], "allowed: commuter"),
        (["fleet", "--url", URL, "--count", "0"], "no stations"),
        (["fleet", "--url", URL, "--scenario", "/nonexistent.toml"], "cannot read"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_a_clear_message(args, message):
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message.lower() in " ".join(result.output.split()).lower()


def test_a_bad_scenario_file_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[fleet]\ncount = 2\nmix = 'campus'\n")
    result = runner.invoke(app, ["fleet", "--url", URL, "--scenario", str(bad)],
                           env={"COLUMNS": "300"})  # fmt: skip
    assert result.exit_code == 2
    assert "bad.toml:fleet.mix: 'campus' unknown" in " ".join(result.output.split())


@pytest.mark.e2e
async def test_fleet_of_20_at_speed_60_boots_every_station_into_the_csms(csms_sqlite):
    url = f"ws://127.0.0.1:{csms_sqlite.ocpp_port}/ocpp"
    args = ["fleet", "--url", url, "--count", "20", "--speed", "60", "--duration", "3", "--json"]
    process = await asyncio.create_subprocess_exec(
        CSMS_SIM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), FLEET_GUARD_S)
    assert process.returncode == 0, stderr.decode()[-3000:]
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["stations"] == summary["connected"] == summary["booted"] == 20
    assert summary["errors"] == 0 and summary["messages"] > 0
    async with csms_sqlite.services.db.read() as session:
        stored = (await session.execute(select(func.count()).select_from(Station))).scalar_one()
    assert stored == 20


def doc_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "simulators.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("csms-sim ", "csms ")):
                commands.append(shlex.split(line))
    return commands


def test_docs_show_the_main_commands():
    heads = {tuple(c[:2]) for c in doc_commands()}
    for sub in ("models", "evs", "station", "fleet"):
        assert ("csms-sim", sub) in heads


@pytest.mark.parametrize("command", doc_commands(), ids=lambda c: " ".join(c[:4]))
def test_every_command_in_the_docs_parses(command, monkeypatch):
    monkeypatch.chdir(ROOT)
    target = app if command[0] == "csms-sim" else csms_app
    result = runner.invoke(target, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output
    for arg in command[1:]:
        if arg.endswith(".toml"):
            assert (ROOT / arg).is_file(), f"{arg} named in the docs does not exist"
