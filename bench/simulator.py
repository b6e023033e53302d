"""Simulator benchmark: a `csms-sim fleet` process against a `csms serve` process.

(a) hold: N stations (default 5,000) connected at real time with the hardware's 60-s meter
    values, held for a while (default 120 s): stations held, messages/s, RSS per station of the
    simulator process and of the CSMS.
(b) accelerated: M stations (default 1,000) at speed X (default 15: one meter value per station
    every 4 wall seconds, the highest rate measured without backlog on the 2-core bench
    machine, bench/RESULTS.md), printing the message rate, the offered rate and the errors.

The ramp lets at most --max-booting (default 100) stations boot at once: with 500, the CSMS's
boot storm made CALLs time out and stations retry (bench/RESULTS.md, "Simulator").

Each run starts a fresh `csms serve` (SQLite in a temporary folder, --allow-unknown-stations)
and a fleet in its own process; RSS is sampled from both.

    .venv/bin/python bench/simulator.py                                   # both runs, full size
    .venv/bin/python bench/simulator.py --count 500 --hold 30 --fast-count 200 --fast-hold 20
    .venv/bin/python bench/simulator.py --skip-hold --fast-speed 10 20 40  # find the top rate
    .venv/bin/python bench/simulator.py --json                            # one JSON line
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResourceSampler, machine, start_server, stop_server

CSMS_READY = re.compile(r"^ocpp (?P<url>ws://\S+)\s+api http://\S+")
FLEET_GUARD_S = 1800.0  # hang guard for one fleet process, not a performance bound
METER_INTERVAL_S = 60.0  # the residential and bus hardware's TxUpdatedInterval (sim seconds)


def _csms(workdir: Path, speed: float, start: str, anchor: float) -> Any:
    command = [
        str(Path(sys.executable).with_name("csms")), "serve", "--db",
        f"sqlite:///{workdir / 'bench.db'}", "--ocpp-port", "0", "--api-port", "0",
        "--allow-unknown-stations", "--log-level", "warning",
    ]  # fmt: skip
    if speed != 1.0:
        command += ["--speed", str(speed), "--clock-start", start, "--clock-anchor", str(anchor)]
    return start_server("csms", command, CSMS_READY, workdir / "csms.log")


def run(label: str, count: int, hold_s: float, speed: float, args: argparse.Namespace) -> dict:
    """One CSMS + one fleet process; the fleet's JSON summary plus both processes' RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        workdir = Path(tmp)
        start = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        anchor = time.time()
        server = _csms(workdir, speed, start, anchor)
        sampler = ResourceSampler()
        sampler.watch("csms", server.measured_pid)
        fleet_cmd = [
            str(Path(sys.executable).with_name("csms-sim")), "fleet", "--url", f"{server.url}/ocpp",
            "--count", str(count), "--mix", args.mix, "--behaviour", "always",
            "--duration", str(hold_s), "--ramp", str(args.ramp), "--json",
            "--max-booting", str(args.max_booting), "--boot-guard", str(args.boot_guard),
            "--log-level", "error",
        ]  # fmt: skip
        if speed != 1.0:
            fleet_cmd += ["--speed", str(speed), "--clock-start", start]
            fleet_cmd += ["--clock-anchor", str(anchor)]
        _log(f"[{label}] {count} stations, speed {speed:g}, hold {hold_s:g} s -> {server.url}")
        try:
            with (workdir / "fleet.err").open("w") as fleet_err:
                fleet = subprocess.Popen(fleet_cmd, stdout=subprocess.PIPE, stderr=fleet_err)
                sampler.watch("fleet", fleet.pid)
                stdout, _ = fleet.communicate(timeout=FLEET_GUARD_S)
            rss = {"csms": sampler.peak_rss_mb("csms"), "fleet": sampler.peak_rss_mb("fleet")}
        finally:
            sampler.close()
            stop_server(server)
        if fleet.returncode != 0 or not stdout.strip():
            tail = (workdir / "fleet.err").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"fleet failed ({fleet.returncode}):\n{tail}")
        summary = json.loads(stdout.decode().strip().splitlines()[-1])
    held = summary["connected"]
    return {
        "label": label,
        "count": count,
        "speed": speed,
        "hold_s": summary["hold_s"],
        "ramp_s": summary["ramp_s"],
        "stations_held": held,
        "booted": summary["booted"],
        "messages_per_s": summary["messages_per_s"],
        "errors": summary["errors"],
        "fleet_rss_mb": round(rss["fleet"], 1),
        "csms_rss_mb": round(rss["csms"], 1),
        "fleet_kb_per_station": round(rss["fleet"] * 1024 / max(1, count), 1),
        "csms_kb_per_station": round(rss["csms"] * 1024 / max(1, held), 1),
        "energy_imported_kwh": summary["energy_imported_kwh"],
        # What the fleet offers once every car charges: a TransactionEvent per station per meter
        # interval (60 sim s), each a CALL and its answer; the counts are frames both ways.
        "offered_msg_per_s": round(2 * count * speed / METER_INTERVAL_S, 1),
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def describe(r: dict) -> str:
    return (
        f"{r['label']}: {r['stations_held']}/{r['count']} stations held (booted {r['booted']}) "
        f"at speed {r['speed']:g} for {r['hold_s']:.0f} s after a {r['ramp_s']:.0f} s ramp; "
        f"{r['messages_per_s']:.0f} msg/s (offered {r['offered_msg_per_s']:.0f}), "
        f"{r['errors']} errors; RSS fleet "
        f"{r['fleet_rss_mb']:.0f} MB ({r['fleet_kb_per_station']:.0f} kB/station), CSMS "
        f"{r['csms_rss_mb']:.0f} MB ({r['csms_kb_per_station']:.0f} kB/station)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="stations of the real-time hold")
    parser.add_argument("--hold", type=float, default=120.0, help="wall seconds of the hold")
    parser.add_argument("--fast-count", type=int, default=1000, help="stations, accelerated run")
    parser.add_argument(
        "--fast-speed", type=float, nargs="+", default=[15.0], help="clock speed(s): one run each"
    )
    parser.add_argument("--fast-hold", type=float, default=60.0, help="wall seconds")
    parser.add_argument("--mix", default="residential", choices=["residential", "bus", "all"])
    parser.add_argument("--ramp", type=float, default=200.0, help="connections per second")
    parser.add_argument("--max-booting", type=int, default=100, help="stations booting at once")
    parser.add_argument(
        "--boot-guard", type=float, default=900.0, help="wall seconds to wait for every boot"
    )
    parser.add_argument("--skip-hold", action="store_true", help="only the accelerated run")
    parser.add_argument("--skip-fast", action="store_true", help="only the real-time hold")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()
    runs = []
    if not args.skip_hold:
        runs.append(run("hold", args.count, args.hold, 1.0, args))
        _log(describe(runs[-1]))
    for speed in [] if args.skip_fast else args.fast_speed:
        runs.append(run("accelerated", args.fast_count, args.fast_hold, speed, args))
        _log(describe(runs[-1]))
    report = {"runs": runs, "machine": machine(), "date": datetime.now(UTC).date().isoformat()}
    if args.json:
        print(json.dumps(report))
    else:
        for r in runs:
            print(describe(r))


if __name__ == "__main__":
    main()
