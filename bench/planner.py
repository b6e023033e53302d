"""Benchmark of the discharge planner: solve time and objective of each method vs the LP.

A random but realistic fleet (DOMAIN.md hardware: LEAF/dcbel, F-150/Ford, EV9/Quasar 2,
Cybertruck/Tesla, school buses on 44-60 kW chargers) over a 3-hour event at 5-minute intervals
(36 intervals). About 15 % of the cars unplug mid-window, 10 % arrive late, 20 % have a departure
need above their floor, a quarter have a two-segment concave efficiency (the rest the catalog
curve, constant at rated power), and a site export limit can cap the aggregate.

For each fleet size it runs the reference LP (HiGHS, three warm-started solves) and the
water-filling heuristic, and reports solve time, energy (the first objective), lowest interval
(the second) and committed kW, and the heuristic's gaps to the LP.

    .venv/bin/python bench/planner.py                           # 100, 1,000, 10,000 vehicles
    .venv/bin/python bench/planner.py --vehicles 10000 --json   # one JSON line
    .venv/bin/python bench/planner.py --site-limit 0.5          # export limit at 50 % of fleet kW
"""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import highspy
from common import machine  # bench/common.py: the script's own directory is on sys.path

from csms.scheduler.planner import (
    Departure,
    Efficiency,
    EventWindow,
    Plan,
    PlanRequest,
    Vehicle,
    plan_discharge,
)

START = datetime(2025, 7, 15, 19, tzinfo=UTC)  # 15:00 EDT
CATALOG_CURVE = [(0.05, 0.80), (0.10, 0.86), (0.25, 0.915), (0.50, 0.93), (1.0, 0.933)]
# (name, capacity kWh, EV discharge kW battery side, EVSE export kW grid side, floor range %)
PAIRS = [
    ("leaf-40/dcbel", 40.0, 15.2, 15.2, (20, 40)),
    ("leaf-62/dcbel", 62.0, 15.2, 15.2, (20, 40)),
    ("f150-98/ford", 98.0, 12.0, 9.6, (25, 50)),
    ("ev9-76/quasar2", 76.1, 12.0, 11.5, (20, 40)),
    ("cybertruck/tesla", 123.0, 12.0, 11.5, (20, 40)),
    ("bus-200/tellus60", 200.0, 150.0, 60.0, (20, 30)),
    ("bus-196/heliox44", 196.0, 150.0, 44.0, (20, 30)),
]


@dataclass(frozen=True)
class Run:
    method: str
    solve_s: float
    energy_kwh: float
    min_interval_kw: float
    committed_kw: float


def random_fleet(n: int, seed: int) -> tuple[Vehicle, ...]:
    rng = random.Random(seed)
    return tuple(_vehicle(rng, i) for i in range(n))


def _vehicle(rng: random.Random, i: int) -> Vehicle:
    name, capacity, ev_kw, evse_kw, (floor_lo, floor_hi) = rng.choice(PAIRS)
    soc = rng.uniform(30, 95)
    floor = rng.uniform(floor_lo, floor_hi)
    if rng.random() < 0.25:
        knee = rng.uniform(0.3, 0.7) * ev_kw
        efficiency = Efficiency(((knee, rng.uniform(0.94, 0.96)), (float("inf"), 0.90)))
    else:
        efficiency = Efficiency.from_hardware_curve(CATALOG_CURVE, evse_kw)
    plug_out = START + timedelta(minutes=rng.uniform(20, 170)) if rng.random() < 0.15 else None
    late = START + timedelta(minutes=rng.uniform(10, 120)) if rng.random() < 0.10 else None
    need = None
    if rng.random() < 0.20:
        need_kwh = capacity * rng.uniform(floor, max(floor, soc - 5)) / 100
        need = Departure(START + timedelta(hours=rng.uniform(4, 14)), need_kwh)
    return Vehicle(
        id=f"{name}-{i}",
        capacity_kwh=capacity,
        soc_pct=soc,
        floor_soc_pct=floor,
        evse_max_discharge_kw=evse_kw,
        ev_max_discharge_kw=ev_kw,
        efficiency=efficiency,
        plug_out=plug_out,
        available_from=late,
        departure=need,
    )


def measure(request: PlanRequest, method: str) -> tuple[Run, Plan]:
    plan = plan_discharge(request, method)  # type: ignore[arg-type]
    run = Run(method, plan.solve_s, plan.energy_kwh, plan.min_interval_kw, plan.committed_kw)
    return run, plan


def bench_size(n: int, intervals: int, seed: int, site_fraction: float | None) -> dict:
    vehicles = random_fleet(n, seed)
    window = EventWindow(START, timedelta(minutes=5 * intervals))
    site = None
    if site_fraction is not None:
        site = site_fraction * sum(
            min(v.evse_max_discharge_kw, v.ev_max_discharge_kw) for v in vehicles
        )
    request = PlanRequest(window, vehicles, site)
    lp, _ = measure(request, "lp")
    heuristic, plan = measure(request, "waterfill")
    return {
        "vehicles": n,
        "planned": len(plan.vehicles),
        "left_out": len(plan.left_out),
        "intervals": intervals,
        "site_limit_kw": site,
        "lp": lp.__dict__,
        "waterfill": heuristic.__dict__,
        "energy_gap_pct": 100 * (1 - heuristic.energy_kwh / lp.energy_kwh)
        if lp.energy_kwh
        else 0.0,
        "min_interval_gap_pct": (
            100 * (1 - heuristic.min_interval_kw / lp.min_interval_kw)
            if lp.min_interval_kw
            else 0.0
        ),
        "committed_gap_pct": (
            100 * (1 - heuristic.committed_kw / lp.committed_kw) if lp.committed_kw else 0.0
        ),
    }


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'vehicles':>8} {'method':>9} {'solve s':>8} {'energy kWh':>12} {'min kW':>10} "
        f"{'committed':>10} {'gap E %':>8} {'gap min %':>9}"
    )
    print(head)
    for row in rows:
        for method in ("lp", "waterfill"):
            r = row[method]
            gaps = (
                f"{row['energy_gap_pct']:8.4f} {row['min_interval_gap_pct']:9.4f}"
                if method == "waterfill"
                else f"{'':>8} {'':>9}"
            )
            print(
                f"{row['vehicles']:>8} {method:>9} {r['solve_s']:8.2f} {r['energy_kwh']:12.1f} "
                f"{r['min_interval_kw']:10.1f} {r['committed_kw']:10.1f} {gaps}"
            )


def quiet_highs_banner() -> None:
    """HiGHS prints its banner to the C-level stdout once per process, at the first Highs():
    send that one to stderr so `--json` prints exactly one line."""
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--intervals", type=int, default=36, help="5-minute intervals")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--site-limit", type=float, default=None, help="export limit as a fraction of fleet kW"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    quiet_highs_banner()
    rows = [bench_size(n, args.intervals, args.seed, args.site_limit) for n in args.vehicles]
    if args.json:
        print(json.dumps({"machine": machine(), "runs": rows}))
    else:
        print(f"machine: {machine()}")
        print_table(rows)


if __name__ == "__main__":
    main()
