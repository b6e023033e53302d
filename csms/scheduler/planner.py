"""Discharge planner (DESIGN.md §3.4): each vehicle's grid-side export kW per interval of an event.

Pure data in, data out: no clock, no network, no database. Quantities are program-side: power is
positive export kW at the grid (`power_kw`), battery-side quantities say so (`battery_kw`).

Model
-----
* The window is split into intervals of `interval` length (5 min default); the last one is
  shorter when the window is not a multiple. A vehicle may discharge in an interval only if it
  lies wholly inside [available_from, plug-out), where plug-out is the earlier of the expected
  plug-out time and the departure time (the car has left then).
* Power limits: grid-side `evse_max_discharge_kw` (the EVSE's export rating) and battery-side
  `ev_max_discharge_kw` (the car's discharge limit). Both bound every interval.
* Efficiency: grid kW = f(battery kW), a piecewise-linear CONCAVE function through the origin
  (marginal efficiency non-increasing with power, as resistive losses grow with current). A linear
  program can represent only that shape. Real converters also lose efficiency at very low power
  (fixed losses); a concave model cannot show it, so `Efficiency.from_hardware_curve` takes the
  least concave majorant of a hardware curve, which is exact at rated power and optimistic below
  the knee (at 5 % of rating our catalog's 0.80 becomes ~0.93). The dispatcher measures delivery
  from the registers and re-plans, and the simulators' BMS floor protects the battery.
* Floors: the battery never goes below `max(floor SoC × capacity, departure energy)`. The planner
  only discharges, so energy only falls during the window: the departure need is met iff the
  energy withdrawn before departure leaves at least that much, and no discharge happens after
  departure. This gives no credit for recharging after the window: conservative by design.
* Site export limit: the fleet's grid-side aggregate in each interval stays at or below it.

Objective (lexicographic): first maximise the grid-side energy exported in the window (what
average-kW pay rewards), then, among plans within that optimum, maximise the lowest interval's
aggregate kW (flatness).

Committed kW
------------
`committed_kw` is L* = max { L : some feasible plan has aggregate ≥ L in every interval }, the flat
level the fleet can hold for the whole window, solved as its own LP. Relation to the objectives:
the lexicographic plan's lowest interval (`min_interval_kw`) is ≤ L*, and L* × window hours ≤ the
maximum energy. With a constant efficiency per vehicle the two are EQUAL: in grid units the
problem is a max-flow (source → vehicle, capacity its energy budget; vehicle → interval, capacity
its power × hours; interval → sink, capacity the site limit), and a lower bound L on every
interval → sink edge never lowers the max flow value when a flow meeting it exists (every s-t cut
crosses those edges forwards only). With power-dependent efficiency they may differ: holding a
flat L* can need higher power, hence more losses, than the energy optimum. `priority="committed"`
plans in the other order (hold L* in every interval, then maximise energy) for a dispatcher that
has nominated L*.

Methods
-------
* "lp": the reference, an LP solved with HiGHS (highspy). Battery power is split into the
  efficiency curve's segments; three solves on one model, warm-started (energy, flatness, L*).
* "waterfill": a heuristic for large fleets. Vehicles, least flexible first, each spend their
  energy budget filling the lowest aggregate intervals they can reach (exact water-filling on
  battery cost, which is piecewise linear in the water level), then a few passes re-fill each
  vehicle against the others. Property-tested against the LP (energy within 1 %).
"""

from __future__ import annotations

import math
import os
import sys
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal

import highspy
import numpy as np

DEFAULT_INTERVAL = timedelta(minutes=5)
# One-way conversion efficiency at rated power: 0.933² ≈ 0.87 round trip (DOMAIN.md physics).
DEFAULT_EFFICIENCY = 0.933
# Energy below this (kWh) is "nothing": float noise, not a budget.
ENERGY_EPS_KWH = 1e-9
# Power below this (kW) is "none": a limit of 1e-7 kW is float noise, not a capability.
POWER_EPS_KW = 1e-6
# Stage 2 keeps the energy optimum within these tolerances: the solver's own feasibility
# tolerance is ~1e-7, so a tighter bound can make the optimum it just found infeasible.
ENERGY_REL_TOL = 1e-7
ENERGY_ABS_TOL_KWH = 1e-6
REFILL_PASSES = 3
Method = Literal["lp", "waterfill"]
Priority = Literal["energy", "committed"]


def _construct_once_quietly() -> None:
    """HiGHS prints a banner on C stdout at its first construction in a process; it would
    corrupt `--json` output (the summary must be the last line). Construct it once at import,
    with fd 1 pointed at /dev/null (imports are single-threaded, so nothing else is lost)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_construct_once_quietly()


class PlanningError(ValueError):
    """Planner input is inconsistent; the message names the vehicle and the field."""


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Grid kW as a concave piecewise-linear function of battery kW, from the origin.

    `segments` are (battery-side width kW, marginal efficiency) in order; efficiencies lie in
    (0, 1] and never increase. The last width may be `math.inf`.
    """

    segments: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise PlanningError("efficiency needs at least one segment")
        last = 1.0
        for i, (width, eta) in enumerate(self.segments):
            if not width > 0 or (math.isinf(width) and i != len(self.segments) - 1):
                raise PlanningError(f"efficiency segment {i} width {width} must be > 0 (inf last)")
            if not 0 < eta <= last:
                raise PlanningError(
                    f"efficiency segment {i}: marginal efficiency {eta} must be in (0, {last}] "
                    "(concave: never rising with power)"
                )
            last = eta

    @classmethod
    def constant(cls, eta: float = DEFAULT_EFFICIENCY) -> Efficiency:
        return cls(((math.inf, eta),))

    @classmethod
    def from_hardware_curve(
        cls, curve: Sequence[tuple[float, float]], rated_kw: float
    ) -> Efficiency:
        """Least concave majorant of a catalog curve of (fraction of rated grid power, η).

        Exact where the curve is concave (e.g. at rated power), optimistic at low power where
        fixed losses make the real curve convex; see the module docstring.
        """
        points = [(0.0, 0.0)] + [(f * rated_kw / eta, f * rated_kw) for f, eta in curve]
        hull = [points[0]]
        for point in points[1:]:
            while len(hull) >= 2 and _slope(hull[-2], hull[-1]) <= _slope(hull[-2], point):
                hull.pop()
            hull.append(point)
        segments = [(b1 - b0, (g1 - g0) / (b1 - b0)) for (b0, g0), (b1, g1) in pairwise(hull)]
        return cls((*segments[:-1], (math.inf, segments[-1][1])))  # beyond rating: the last slope

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """Battery-side and grid-side breakpoints (finite; the last extends the last slope)."""
        widths = np.array([w if math.isfinite(w) else 1e9 for w, _ in self.segments])
        etas = np.array([eta for _, eta in self.segments])
        battery = np.concatenate(([0.0], np.cumsum(widths)))
        grid = np.concatenate(([0.0], np.cumsum(widths * etas)))
        return battery, grid

    def grid_kw(self, battery_kw: np.ndarray | float) -> np.ndarray:
        battery, grid = self.knots()
        return np.interp(battery_kw, battery, grid)

    def battery_kw(self, grid_kw: np.ndarray | float) -> np.ndarray:
        battery, grid = self.knots()
        return np.interp(grid_kw, grid, battery)


def _slope(a: tuple[float, float], b: tuple[float, float]) -> float:
    return (b[1] - a[1]) / (b[0] - a[0])


@dataclass(frozen=True, slots=True)
class Departure:
    """The owner's need: at least `energy_kwh` in the battery at `at` (never violated)."""

    at: datetime
    energy_kwh: float


@dataclass(frozen=True, slots=True)
class Vehicle:
    """One plugged-in (or expected) vehicle on a matched bidirectional EVSE."""

    id: str
    capacity_kwh: float
    soc_pct: float
    floor_soc_pct: float
    evse_max_discharge_kw: float  # grid side
    ev_max_discharge_kw: float  # battery side
    efficiency: Efficiency = field(default_factory=Efficiency.constant)
    plug_out: datetime | None = None  # expected; no discharge after it
    available_from: datetime | None = None  # None: plugged in at the window's start
    departure: Departure | None = None

    def __post_init__(self) -> None:
        checks = {
            "capacity_kwh must be > 0": self.capacity_kwh > 0,
            "soc_pct must be within [0, 100]": 0 <= self.soc_pct <= 100,
            "floor_soc_pct must be within [0, 100]": 0 <= self.floor_soc_pct <= 100,
            "evse_max_discharge_kw must be >= 0": self.evse_max_discharge_kw >= 0,
            "ev_max_discharge_kw must be >= 0": self.ev_max_discharge_kw >= 0,
            "departure energy_kwh must be within [0, capacity]": self.departure is None
            or 0 <= self.departure.energy_kwh <= self.capacity_kwh,
        }
        for message, ok in checks.items():
            if not ok:
                raise PlanningError(f"vehicle {self.id!r}: {message}")

    @property
    def reserve_kwh(self) -> float:
        need = self.departure.energy_kwh if self.departure else 0.0
        return max(self.floor_soc_pct / 100.0 * self.capacity_kwh, need)

    @property
    def budget_kwh(self) -> float:
        """Battery-side energy the plan may take without crossing floor or departure need."""
        return self.soc_pct / 100.0 * self.capacity_kwh - self.reserve_kwh

    @property
    def leaves_at(self) -> datetime | None:
        times = [t for t in (self.plug_out, self.departure and self.departure.at) if t]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class EventWindow:
    start: datetime  # tz-aware UTC
    duration: timedelta
    interval: timedelta = DEFAULT_INTERVAL

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise PlanningError("window start must be a timezone-aware instant")
        if self.duration <= timedelta(0) or self.interval <= timedelta(0):
            raise PlanningError("window duration and interval must be positive")

    def bounds(self) -> list[tuple[datetime, datetime]]:
        """Interval [start, end) pairs; the last is shorter if the window is not a multiple."""
        end, out, t = self.start + self.duration, [], self.start
        while t < end:
            out.append((t, min(t + self.interval, end)))
            t += self.interval
        return out


@dataclass(frozen=True, slots=True)
class PlanRequest:
    window: EventWindow
    vehicles: tuple[Vehicle, ...]
    site_export_limit_kw: tuple[float, ...] | float | None = None  # per interval or constant


@dataclass(frozen=True, slots=True)
class VehiclePlan:
    vehicle_id: str
    power_kw: tuple[float, ...]  # grid side, + = export, one per interval
    soc_pct: tuple[float, ...]  # battery side, at each interval boundary (len intervals + 1)
    energy_kwh: float  # grid side, exported in the window
    battery_energy_kwh: float  # taken from the battery


@dataclass(frozen=True, slots=True)
class LeftOut:
    vehicle_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    method: str
    priority: str
    intervals: tuple[tuple[datetime, datetime], ...]
    vehicles: tuple[VehiclePlan, ...]
    left_out: tuple[LeftOut, ...]
    aggregate_kw: tuple[float, ...]  # grid side per interval
    energy_kwh: float  # grid side, whole fleet
    committed_kw: float  # LP: L* (module docstring); heuristic: its plan's lowest interval
    min_interval_kw: float  # lowest aggregate interval of this plan
    solve_s: float


@dataclass(frozen=True, slots=True)
class _Fleet:
    """The planning problem as arrays over the vehicles that take part (V × T)."""

    vehicles: tuple[Vehicle, ...]
    hours: np.ndarray  # (T,) interval lengths in hours
    available: np.ndarray  # (V, T) bool
    battery_max_kw: np.ndarray  # (V,) min(EV limit, battery kW that gives the EVSE rating)
    grid_max_kw: np.ndarray  # (V,)
    budget_kwh: np.ndarray  # (V,) battery side
    site_kw: np.ndarray | None  # (T,)
    knots: tuple[tuple[np.ndarray, np.ndarray], ...]  # per vehicle: efficiency breakpoints


def plan_discharge(
    request: PlanRequest, method: Method = "lp", priority: Priority = "energy"
) -> Plan:
    """Plan the event. `method` "lp" is the reference; "waterfill" the fast heuristic."""
    started = _time.perf_counter()
    bounds = request.window.bounds()
    fleet, left_out = _prepare(request, bounds)
    if method == "lp":
        power, committed = _solve_lp(fleet, priority)
    elif method == "waterfill":
        power = _waterfill(fleet)
        committed = float(power.sum(axis=0).min()) if fleet.vehicles else 0.0
    else:
        raise PlanningError(f"unknown planning method {method!r}; use 'lp' or 'waterfill'")
    return _result(method, priority, bounds, fleet, power, committed, left_out, started)


# --- preparation -------------------------------------------------------------------------------


def _prepare(
    request: PlanRequest, bounds: list[tuple[datetime, datetime]]
) -> tuple[_Fleet, list[LeftOut]]:
    hours = np.array([(e - s).total_seconds() / 3600.0 for s, e in bounds])
    seen: set[str] = set()
    kept, masks, left_out = [], [], []
    for vehicle in request.vehicles:
        if vehicle.id in seen:
            raise PlanningError(f"vehicle {vehicle.id!r} appears twice")
        seen.add(vehicle.id)
        mask = _availability(vehicle, bounds)
        reason = _leave_out_reason(vehicle, mask)
        if reason:
            left_out.append(LeftOut(vehicle.id, reason))
        else:
            kept.append(vehicle)
            masks.append(mask)
    knots = tuple(v.efficiency.knots() for v in kept)
    battery_max = np.array([_battery_max_kw(v, k) for v, k in zip(kept, knots, strict=True)])
    grid_max = np.array(
        [np.interp(b, *k) for b, k in zip(battery_max, knots, strict=True)], dtype=float
    )
    fleet = _Fleet(
        vehicles=tuple(kept),
        hours=hours,
        available=np.array(masks, dtype=bool).reshape(len(kept), len(bounds)),
        battery_max_kw=battery_max.reshape(len(kept)),
        grid_max_kw=grid_max.reshape(len(kept)),
        budget_kwh=np.array([v.budget_kwh for v in kept]).reshape(len(kept)),
        site_kw=_site_limits(request.site_export_limit_kw, len(bounds)),
        knots=knots,
    )
    return fleet, left_out


def _availability(vehicle: Vehicle, bounds: list[tuple[datetime, datetime]]) -> np.ndarray:
    leaves = vehicle.leaves_at
    return np.array(
        [
            (vehicle.available_from is None or s >= vehicle.available_from)
            and (leaves is None or e <= leaves)
            for s, e in bounds
        ],
        dtype=bool,
    )


def _leave_out_reason(vehicle: Vehicle, mask: np.ndarray) -> str | None:
    if vehicle.budget_kwh <= ENERGY_EPS_KWH:
        need = f", departure need {vehicle.departure.energy_kwh:g} kWh" if vehicle.departure else ""
        return (
            f"nothing above its floor: SoC {vehicle.soc_pct:g} % of {vehicle.capacity_kwh:g} kWh, "
            f"floor {vehicle.floor_soc_pct:g} %{need}"
        )
    if min(vehicle.evse_max_discharge_kw, vehicle.ev_max_discharge_kw) <= POWER_EPS_KW:
        return (
            f"no discharge power (EVSE {vehicle.evse_max_discharge_kw:g} kW, "
            f"EV {vehicle.ev_max_discharge_kw:g} kW)"
        )
    if not mask.any():
        return "not plugged in for any whole interval of the window (availability / plug-out)"
    return None


def _battery_max_kw(vehicle: Vehicle, knots: tuple[np.ndarray, np.ndarray]) -> float:
    battery, grid = knots
    from_evse = float(np.interp(vehicle.evse_max_discharge_kw, grid, battery))
    return min(vehicle.ev_max_discharge_kw, from_evse)


def _site_limits(limit: tuple[float, ...] | float | None, intervals: int) -> np.ndarray | None:
    if limit is None:
        return None
    values = np.broadcast_to(np.asarray(limit, dtype=float), (intervals,)).copy()
    if (values < 0).any() or not np.isfinite(values).all():
        raise PlanningError("site export limit must be finite and >= 0 kW in every interval")
    return values


# --- the reference LP --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Columns:
    """LP columns: one per (vehicle, available interval, efficiency segment) + the level z."""

    vehicle: np.ndarray
    interval: np.ndarray
    eta: np.ndarray
    upper: np.ndarray


def _columns(fleet: _Fleet) -> _Columns:
    vs, ts, etas, uppers = [], [], [], []
    for v, vehicle in enumerate(fleet.vehicles):
        widths, seg_eta = _truncated_segments(vehicle.efficiency, fleet.battery_max_kw[v])
        intervals = np.flatnonzero(fleet.available[v])
        vs.append(np.full(intervals.size * widths.size, v))
        ts.append(np.repeat(intervals, widths.size))
        etas.append(np.tile(seg_eta, intervals.size))
        uppers.append(np.tile(widths, intervals.size))
    if not vs:
        empty = np.zeros(0)
        return _Columns(empty.astype(int), empty.astype(int), empty, empty)
    return _Columns(*(np.concatenate(a) for a in (vs, ts, etas, uppers)))


def _truncated_segments(efficiency: Efficiency, battery_max: float) -> tuple[np.ndarray, ...]:
    widths, etas, used = [], [], 0.0
    for width, eta in efficiency.segments:
        take = min(width, battery_max - used)
        if take <= 0:
            break
        widths.append(take)
        etas.append(eta)
        used += take
    return np.array(widths), np.array(etas)


def _solve_lp(fleet: _Fleet, priority: Priority) -> tuple[np.ndarray, float]:
    """Three warm-started solves: energy, flatness within the energy optimum, and L*."""
    n_v, n_t = fleet.available.shape
    if n_v == 0:
        return np.zeros((0, n_t)), 0.0
    cols = _columns(fleet)
    highs, rows = _build_lp(fleet, cols)
    energy_cost = cols.eta * fleet.hours[cols.interval]
    n_x = cols.eta.size
    inf = highspy.kHighsInf
    if priority == "energy":
        best_energy = _maximise(highs, n_x, energy_cost, 0.0)
        keep = lambda lo: highs.changeRowBounds(rows.energy, lo, inf)  # noqa: E731
        # The flatness stage is highly degenerate: interior point (with crossover, so the plan
        # is a vertex) took 1.4x less time than dual simplex at 2,000 vehicles (bench/planner.py).
        highs.setOptionValue("solver", "ipm")
        _maximise_keeping(highs, best_energy, keep, n_x, np.zeros(n_x), 1.0)
        highs.setOptionValue("solver", "choose")
        x = np.array(highs.getSolution().col_value[:n_x])
        highs.changeRowBounds(rows.energy, -inf, inf)
        committed = _maximise(highs, n_x, np.zeros(n_x), 1.0)
    else:
        committed = _maximise(highs, n_x, np.zeros(n_x), 1.0)
        keep = lambda lo: highs.changeColBounds(n_x, max(0.0, lo), inf)  # noqa: E731
        _maximise_keeping(highs, committed, keep, n_x, energy_cost, 0.0)
        x = np.array(highs.getSolution().col_value[:n_x])
    grid = np.zeros((n_v, n_t))
    np.add.at(grid, (cols.vehicle, cols.interval), np.clip(x, 0.0, None) * cols.eta)
    return np.minimum(grid, fleet.grid_max_kw[:, None]), committed


@dataclass(frozen=True, slots=True)
class _Rows:
    energy: int


def _build_lp(fleet: _Fleet, cols: _Columns) -> tuple[highspy.Highs, _Rows]:
    """Rows: vehicle budgets (V), site limits (T, if any), aggregate − z ≥ 0 (T), energy (1)."""
    n_v, n_t = fleet.available.shape
    n_x = cols.eta.size
    site = fleet.site_kw is not None
    site_row0 = n_v
    flat_row0 = n_v + (n_t if site else 0)
    energy_row = flat_row0 + n_t
    hours = fleet.hours[cols.interval]
    per_col = [(cols.vehicle, hours), (flat_row0 + cols.interval, cols.eta)]
    if site:
        per_col.insert(1, (site_row0 + cols.interval, cols.eta))
    per_col.append((np.full(n_x, energy_row), cols.eta * hours))
    index = np.stack([r for r, _ in per_col], axis=1).ravel()
    value = np.stack([v for _, v in per_col], axis=1).ravel()
    z_index = flat_row0 + np.arange(n_t)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_x + 1, energy_row + 1
    lp.col_cost_ = np.zeros(n_x + 1)
    lp.col_lower_ = np.zeros(n_x + 1)
    lp.col_upper_ = np.append(cols.upper, highspy.kHighsInf)
    inf = highspy.kHighsInf
    lower = np.full(energy_row + 1, -inf)
    upper = np.full(energy_row + 1, inf)
    upper[:n_v] = fleet.budget_kwh
    if site:
        upper[site_row0 : site_row0 + n_t] = fleet.site_kw
    lower[flat_row0 : flat_row0 + n_t] = 0.0
    lp.row_lower_, lp.row_upper_ = lower, upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.append(np.arange(0, n_x + 1) * len(per_col), index.size + n_t)
    lp.a_matrix_.index_ = np.concatenate([index, z_index]).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate([value, -np.ones(n_t)])
    lp.sense_ = highspy.ObjSense.kMaximize
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.passModel(lp)
    return highs, _Rows(energy_row)


def _maximise(highs: highspy.Highs, n_x: int, x_cost: np.ndarray, z_cost: float) -> float:
    costs = np.append(x_cost, z_cost)
    highs.changeColsCost(costs.size, np.arange(costs.size, dtype=np.int32), costs)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise PlanningError(f"LP solver ended with {highs.modelStatusToString(status)}")
    return float(highs.getInfo().objective_function_value)


def _maximise_keeping(
    highs: highspy.Highs,
    optimum: float,
    keep: Callable[[float], None],
    n_x: int,
    x_cost: np.ndarray,
    z_cost: float,
) -> float:
    """Second stage: maximise a new objective with the first held at its optimum.

    Held tightly first; if the solver's own feasibility tolerance (~1e-7) made the optimum it
    found unreachable, loosened to ENERGY_ABS_TOL_KWH (seen only for near-zero optima).
    """
    slacks = (ENERGY_REL_TOL * abs(optimum), ENERGY_ABS_TOL_KWH)
    for slack in slacks[:-1]:
        keep(optimum - slack)
        try:
            return _maximise(highs, n_x, x_cost, z_cost)
        except PlanningError:
            continue
    keep(optimum - slacks[-1])
    return _maximise(highs, n_x, x_cost, z_cost)


# --- the water-filling heuristic ---------------------------------------------------------------


def _waterfill(fleet: _Fleet) -> np.ndarray:
    """Least flexible first, each vehicle fills the lowest intervals; then re-fill passes.

    Without a site limit, a vehicle that cannot spend its budget even at full power in every
    interval it is plugged in takes full power whatever the others do: it is settled once.
    """
    n_v, n_t = fleet.available.shape
    cap = np.where(fleet.available, fleet.grid_max_kw[:, None], 0.0)
    power = np.zeros((n_v, n_t))
    order = np.lexsort((fleet.grid_max_kw, fleet.available.sum(axis=1)))
    if fleet.site_kw is None:
        full_cost = np.array([_battery_kw(fleet, v, cap[v]) @ fleet.hours for v in range(n_v)])
        settled = full_cost <= fleet.budget_kwh
        power[settled] = cap[settled]
        order = order[~settled[order]]
    aggregate = power.sum(axis=0)
    for _ in range(REFILL_PASSES + 1):
        moved = 0.0
        for v in order:
            aggregate -= power[v]
            new = _fill_vehicle(fleet, int(v), aggregate)
            moved = max(moved, float(np.abs(new - power[v]).max()))
            power[v] = new
            aggregate += new
        if moved <= POWER_EPS_KW:
            break
    return power


def _battery_kw(fleet: _Fleet, v: int, grid_kw: np.ndarray) -> np.ndarray:
    battery, grid = fleet.knots[v]
    return np.interp(grid_kw, grid, battery)


def _fill_vehicle(fleet: _Fleet, v: int, aggregate: np.ndarray) -> np.ndarray:
    """Grid kW per interval: water level λ over `aggregate`, spending at most the budget.

    The battery cost C(λ) = Σ_t hours_t · f⁻¹(clip(λ − A_t, 0, cap_t)) is piecewise linear in λ
    with knots at A_t + each grid-side breakpoint of f, so λ is found exactly by evaluating C at
    every knot and interpolating between the two that bracket the budget.
    """
    cap = np.where(fleet.available[v], fleet.grid_max_kw[v], 0.0)
    if fleet.site_kw is not None:
        cap = np.minimum(cap, np.maximum(fleet.site_kw - aggregate, 0.0))
    budget = fleet.budget_kwh[v]
    if _battery_kw(fleet, v, cap) @ fleet.hours <= budget:
        return cap
    open_ = np.flatnonzero(cap > 0)
    base, room, hours = aggregate[open_], cap[open_], fleet.hours[open_]
    band_lo, band_hi = _efficient_band(fleet, v)
    low, high = np.minimum(band_lo, room), np.minimum(band_hi, room)
    offsets = np.clip(fleet.knots[v][1][None, :], low[:, None], high[:, None])
    levels = np.unique((base[:, None] + offsets).ravel())
    cost = _battery_kw(fleet, v, np.clip(levels[:, None] - base[None, :], low, high)) @ hours
    # Clamp: rounding in A + cap - A can put the budget just past the last knot's cost.
    i = min(max(int(np.searchsorted(cost, budget)), 1), levels.size - 1)
    share = min(1.0, (budget - cost[i - 1]) / max(cost[i] - cost[i - 1], 1e-300))
    level = levels[i - 1] + share * (levels[i] - levels[i - 1])
    out = np.zeros_like(cap)
    out[open_] = np.clip(level - base, low, high)
    return out


def _efficient_band(fleet: _Fleet, v: int) -> tuple[float, float]:
    """Grid kW range that keeps a budget-limited vehicle's energy at its optimum.

    Alone, a vehicle exports the most by spreading its budget evenly (Jensen, f concave). Any
    plan whose battery power stays, in every available interval, on the one linear piece of f
    that holds that even power exports exactly as much; leaving the piece (to flatten the
    aggregate) would trade energy for flatness, against the objective's order.
    """
    battery, grid = fleet.knots[v]
    hours = float(fleet.hours[fleet.available[v]].sum())
    even = min(fleet.battery_max_kw[v], fleet.budget_kwh[v] / hours)
    j = min(max(int(np.searchsorted(battery, even, side="right")) - 1, 0), battery.size - 2)
    upper = min(battery[j + 1], fleet.battery_max_kw[v])
    return float(np.interp(battery[j], battery, grid)), float(np.interp(upper, battery, grid))


# --- result ------------------------------------------------------------------------------------


def _result(
    method: str,
    priority: str,
    bounds: list[tuple[datetime, datetime]],
    fleet: _Fleet,
    power: np.ndarray,
    committed: float,
    left_out: list[LeftOut],
    started: float,
) -> Plan:
    plans = tuple(_vehicle_plan(fleet, v, power[v]) for v in range(len(fleet.vehicles)))
    aggregate = power.sum(axis=0) if plans else np.zeros(len(bounds))
    return Plan(
        method=method,
        priority=priority,
        intervals=tuple(bounds),
        vehicles=plans,
        left_out=tuple(left_out),
        aggregate_kw=tuple(float(a) for a in aggregate),
        energy_kwh=float(aggregate @ fleet.hours),
        committed_kw=max(0.0, committed),
        min_interval_kw=float(aggregate.min()),
        solve_s=_time.perf_counter() - started,
    )


def _vehicle_plan(fleet: _Fleet, v: int, grid_kw: np.ndarray) -> VehiclePlan:
    vehicle = fleet.vehicles[v]
    # The least battery power that yields this grid power (the LP may leave slack in segments).
    battery_kwh = _battery_kw(fleet, v, grid_kw) * fleet.hours
    start_kwh = vehicle.soc_pct / 100.0 * vehicle.capacity_kwh
    energy = start_kwh - np.concatenate(([0.0], np.cumsum(battery_kwh)))
    return VehiclePlan(
        vehicle_id=vehicle.id,
        power_kw=tuple(grid_kw.tolist()),
        soc_pct=tuple((100.0 * energy / vehicle.capacity_kwh).tolist()),
        energy_kwh=float(grid_kw @ fleet.hours),
        battery_energy_kwh=float(battery_kwh.sum()),
    )
