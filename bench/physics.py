"""Micro-benchmark of `simulators.physics.Plant.step`: wall cost per call and per simulated hour.

A fleet at speed X integrates X simulated seconds per wall second per station, so the cost of
one simulated hour of physics bounds how many stations one core carries at that speed:
stations × speed × (cost per sim hour / 3600) must stay well below 1.

Cases: steady charging at a 60-s meter interval and in 5-s chunks (the station's physics
loop), charging through the CC-CV taper, discharging into the BMS-floor derate, and a command
change every minute (delay and ramp each time).

    .venv/bin/python bench/physics.py            # table
    .venv/bin/python bench/physics.py --json     # one JSON line
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from iso15118_profiles import get_ev_model
from simulators.catalog import get_hardware
from simulators.physics import Plant, PlantState

CASES: dict[str, tuple[str, str, float, Callable[[int], float], float, int]] = {
    # name: (hardware, ev, start SoC %, command at call i, dt per call (sim s), calls)
    "steady charge, 60 s steps": ("wallbox-quasar-2", "kia-ev9-76", 20, lambda i: 11_500, 60, 150),
    "steady charge, 5 s steps": ("wallbox-quasar-2", "kia-ev9-76", 20, lambda i: 11_500, 5, 1800),
    "taper 80-100 %, 60 s steps": ("dcbel-ara", "nissan-leaf-40", 80, lambda i: 15_200, 60, 600),
    "discharge to floor, 60 s": ("dcbel-ara", "nissan-leaf-40", 40, lambda i: -15_200, 60, 600),
    "new command every 60 s": (
        "wallbox-quasar-2",
        "kia-ev9-76",
        50,
        lambda i: (11_500, -11_500, 4_000, 0)[i % 4],
        60,
        600,
    ),
}


def measure(hw: str, ev: str, soc: float, command: Callable[[int], float], dt: float, n: int):
    plant = Plant.for_pair(get_hardware(hw), get_ev_model(ev))
    best = float("inf")
    state: PlantState = plant.initial_state(soc)
    for _ in range(3):  # best of three: the machine is shared
        state = plant.initial_state(soc)
        t0 = time.perf_counter()
        for i in range(n):
            state, _ = plant.step(state, command(i), dt)
        best = min(best, time.perf_counter() - t0)
    per_call_us = best / n * 1e6
    per_sim_hour_ms = best / (n * dt) * 3600 * 1e3
    return {
        "calls": n,
        "dt_s": dt,
        "us_per_call": round(per_call_us, 2),
        "ms_per_sim_hour": round(per_sim_hour_ms, 3),
        "end_soc_pct": round(state.soc_pct, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    results = {name: measure(*case) for name, case in CASES.items()}
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'case':32} {'us/call':>9} {'ms/sim h':>9} {'end SoC':>8}")
    for name, r in results.items():
        print(
            f"{name:32} {r['us_per_call']:9.2f} {r['ms_per_sim_hour']:9.3f} {r['end_soc_pct']:8.2f}"
        )


if __name__ == "__main__":
    main()
