"""Battery and charger power model: what a station actually delivers for a commanded power.

A simulator must never echo its setpoint (DESIGN.md §4). `Plant.step` turns a signed command
(W at the grid, + import into the car, − export) into delivered power through, in order:
the response delay (a new command takes effect `response_delay_s` later), the ramp toward it at
the hardware's rate, the limits of the pair (EVSE rating, the car's CC-CV taper, the car's
discharge derate near its BMS floor, the matched-pair rule, optional heat / grid-voltage
derates), and the conversion efficiency at that power. Limits that fall (taper, floor, derate)
cut power at once, as a BMS does; only commanded changes are ramped.

Energy accounting is exact: on import the battery stores E_grid × η(P); on export it gives
E_grid / η(P); the difference is losses, with η from the hardware's efficiency curve. So for
every step: Δimport − Δexport == Δbattery + Δlosses. The battery never crosses its BMS floor on
discharge, never exceeds its capacity, and the import/export registers only grow.

Cost: a fleet at speed 60 integrates an hour of every battery per wall minute, so a step is
cheap where nothing changes. Ramps take sub-steps of at most `max_substep_s`, the last ending
on the target; a power at its target is one analytic sub-step up to the next due command or the
SoC where a limit would cut it (limits move only with SoC, monotonically); a power riding a
moving limit (taper, floor derate) takes mid-point sub-steps of a bounded SoC change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from iso15118_profiles import (
    EvModel,
    can_discharge,
    max_charge_power_w,
    max_discharge_power_w,
)
from simulators.catalog import HardwareModel


@dataclass(frozen=True, slots=True)
class Derate:
    """Scenario derates as multipliers in [0, 1] on both charge and discharge limits."""

    heat: float = 1.0
    grid_voltage: float = 1.0

    def __post_init__(self) -> None:
        for name in ("heat", "grid_voltage"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"derate {name} must be within [0, 1], got {value}")

    @property
    def factor(self) -> float:
        return self.heat * self.grid_voltage


NO_DERATE = Derate()

# A power within this of its target has reached it (ramp sub-steps end on the target up to
# rounding in the energy accounting).
POWER_EPS_W = 1e-6
# Shorter steady stretches than this are the rounding of a limit crossing: follow the limit.
MIN_STEADY_S = 1e-6
# Where the power rides a limit that moves with SoC, a sub-step moves the SoC at most this far.
FOLLOW_SOC_STEP_PCT = 0.05
# Precision of the battery energy at which a limit crosses the power (bisection).
BISECT_WH = 1e-7


@dataclass(frozen=True, slots=True)
class PlantState:
    """Everything that changes. Registers and losses are cumulative Wh at the grid side."""

    capacity_wh: float
    energy_wh: float
    power_w: float  # delivered grid-side power over the last sub-step, signed
    command_w: float  # the command in effect (after the response delay)
    last_request_w: float  # the latest command received (may still be pending)
    pending: tuple[tuple[float, float], ...]  # (elapsed_s when it takes effect, command_w)
    elapsed_s: float
    import_register_wh: float = 0.0
    export_register_wh: float = 0.0
    losses_wh: float = 0.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh


@dataclass(frozen=True, slots=True)
class Delivered:
    """What one `step` delivered at the grid: energy both ways and the average power."""

    import_wh: float
    export_wh: float
    avg_power_w: float


@dataclass(frozen=True, slots=True)
class Plant:
    """One EV on one EVSE. `discharge_allowed` is the matched-pair decision (DOMAIN.md)."""

    hardware: HardwareModel
    ev: EvModel
    discharge_allowed: bool
    max_substep_s: float = 1.0

    @classmethod
    def for_pair(cls, hardware: HardwareModel, ev: EvModel) -> Plant:
        """An unmatched pair physically never discharges: the car refuses (DOMAIN.md)."""
        allowed = hardware.bidirectional and can_discharge(ev.id, hardware.id).allowed
        return cls(hardware=hardware, ev=ev, discharge_allowed=allowed)

    @property
    def floor_wh(self) -> float:
        return self.ev.bms_min_soc_pct / 100.0 * self.ev.capacity_wh

    def initial_state(self, soc_pct: float) -> PlantState:
        if not 0.0 <= soc_pct <= 100.0:
            raise ValueError(f"initial SoC must be within 0..100 %, got {soc_pct}")
        return PlantState(
            capacity_wh=self.ev.capacity_wh,
            energy_wh=soc_pct / 100.0 * self.ev.capacity_wh,
            power_w=0.0,
            command_w=0.0,
            last_request_w=0.0,
            pending=(),
            elapsed_s=0.0,
        )

    def charge_limit_w(self, soc_pct: float, derate: Derate = NO_DERATE) -> float:
        """Grid-side import ceiling: EVSE rating, the car's taper, derates."""
        car = max_charge_power_w(self.ev, soc_pct, self.hardware.current_type)
        return min(self.hardware.max_charge_w, car) * derate.factor

    def discharge_limit_w(self, soc_pct: float, derate: Derate = NO_DERATE) -> float:
        """Grid-side export ceiling (a magnitude): 0 on an unmatched pair or at the floor."""
        if not self.discharge_allowed:
            return 0.0
        car = max_discharge_power_w(self.ev, soc_pct)
        return min(self.hardware.max_discharge_w, car) * derate.factor

    def step(
        self, state: PlantState, command_w: float, dt_s: float, derate: Derate = NO_DERATE
    ) -> tuple[PlantState, Delivered]:
        """Advance `dt_s` seconds with `command_w` requested (signed W at the grid).

        The cost does not grow with `dt_s` where nothing changes: a power held at its target is
        one analytic sub-step up to the next due command or the SoC where a limit would cut it.
        """
        if dt_s < 0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        start = state
        state = self._receive(state, command_w)
        end = state.elapsed_s + dt_s
        while state.elapsed_s < end - 1e-12:
            state = self._apply_due(state)
            horizon = end - state.elapsed_s
            if state.pending:
                horizon = min(horizon, max(state.pending[0][0] - state.elapsed_s, 1e-9))
            state = self._substep(state, horizon, derate)
        state = self._apply_due(state)
        imported = state.import_register_wh - start.import_register_wh
        exported = state.export_register_wh - start.export_register_wh
        avg = (imported - exported) * 3600.0 / dt_s if dt_s > 0 else state.power_w
        return state, Delivered(imported, exported, avg)

    def _receive(self, state: PlantState, command_w: float) -> PlantState:
        """A changed command is queued to take effect after the hardware's response delay."""
        if command_w == state.last_request_w:
            return state
        due = state.elapsed_s + self.hardware.response_delay_s
        return replace(state, last_request_w=command_w, pending=(*state.pending, (due, command_w)))

    @staticmethod
    def _apply_due(state: PlantState) -> PlantState:
        if not state.pending:
            return state
        command, pending = state.command_w, list(state.pending)
        while pending and pending[0][0] <= state.elapsed_s + 1e-9:
            command = pending.pop(0)[1]
        if command == state.command_w and len(pending) == len(state.pending):
            return state
        return replace(state, command_w=command, pending=tuple(pending))

    def _limits(self, energy_wh: float, derate: Derate) -> tuple[float, float]:
        """(export floor <= 0, import ceiling >= 0) at this battery energy. Full and empty are
        judged on the energy itself: the SoC percentage of a full battery may round below 100."""
        soc = 100.0 * energy_wh / self.ev.capacity_wh
        ceiling = 0.0 if energy_wh >= self.ev.capacity_wh else self.charge_limit_w(soc, derate)
        floor = 0.0 if energy_wh <= self.floor_wh else -self.discharge_limit_w(soc, derate)
        return floor, ceiling

    def _substep(self, state: PlantState, horizon: float, derate: Derate) -> PlantState:
        """At most `horizon` seconds: ramp toward the target, hold it, or follow a moving limit."""
        floor, ceiling = self._limits(state.energy_wh, derate)
        target = min(max(state.command_w, floor), ceiling)
        power = min(max(state.power_w, floor), ceiling)  # falling limits cut at once, like a BMS
        if abs(target - power) > POWER_EPS_W:
            # Ramp in sub-steps of at most max_substep_s, the last one ending on the target.
            h = min(horizon, self.max_substep_s, abs(target - power) / self.hardware.ramp_w_per_s)
            delta = self.hardware.ramp_w_per_s * h
            ramped = power + min(max(target - power, -delta), delta)
            return self._account(state, min(max(ramped, floor), ceiling), h)
        if abs(target) <= POWER_EPS_W:
            return self._account(state, 0.0, horizon)  # no energy moves, so no limit moves
        steady = self._steady_s(state.energy_wh, target, horizon, derate)
        if steady > MIN_STEADY_S:
            return self._account(state, target, steady)
        return self._follow(state, target, horizon, derate)

    def _steady_s(self, energy_wh: float, power_w: float, horizon: float, derate: Derate) -> float:
        """How long `power_w` stays within the limits, at most `horizon`. The limits move only
        with SoC and monotonically (the import ceiling falls as SoC rises, the export ceiling
        falls as it sinks), so check the SoC reached at the horizon, else bisect for the SoC
        where the limit crosses `power_w` and return the time to reach it."""
        eta = self.hardware.efficiency_at(power_w)
        rate_wh_per_s = (power_w * eta if power_w > 0 else power_w / eta) / 3600.0

        def holds(energy: float) -> bool:
            floor, ceiling = self._limits(energy, derate)
            return floor <= power_w <= ceiling

        if holds(energy_wh + rate_wh_per_s * horizon):
            return horizon
        lo, hi = energy_wh, energy_wh + rate_wh_per_s * horizon  # holds(lo), not holds(hi)
        while abs(hi - lo) > BISECT_WH:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        return (lo - energy_wh) / rate_wh_per_s

    def _follow(
        self, state: PlantState, power_w: float, horizon: float, derate: Derate
    ) -> PlantState:
        """The power rides a limit that moves with SoC (CC-CV taper, derate near the floor):
        sub-steps move the SoC by at most FOLLOW_SOC_STEP_PCT (a twentieth of the way to the floor
        when discharging) and take the power at the sub-step's mid-point SoC."""
        soc = state.soc_pct
        if power_w > 0:
            soc_step = min(FOLLOW_SOC_STEP_PCT, 100.0 - soc)
        else:
            soc_step = min(FOLLOW_SOC_STEP_PCT, 0.05 * (soc - self.ev.bms_min_soc_pct))
        h = soc_step / 100.0 * state.capacity_wh * 3600.0 / abs(power_w)
        h = min(horizon, max(self.max_substep_s, h))
        eta = self.hardware.efficiency_at(power_w)
        mid = state.energy_wh + (power_w * eta if power_w > 0 else power_w / eta) * h / 7200.0
        if not self.floor_wh < mid < state.capacity_wh:
            return self._account(state, power_w, h)  # full (or empty) within this sub-step
        floor, ceiling = self._limits(mid, derate)
        return self._account(state, min(max(state.command_w, floor), ceiling), h)

    def _account(self, state: PlantState, power_w: float, h: float) -> PlantState:
        """Move energy for `h` seconds at `power_w`, trimmed at full and at the BMS floor."""
        grid_wh = abs(power_w) * h / 3600.0
        eta = self.hardware.efficiency_at(power_w)
        if power_w >= 0:
            stored = min(grid_wh * eta, max(0.0, state.capacity_wh - state.energy_wh))
            grid_wh = stored / eta
            battery_delta, imported, exported = stored, grid_wh, 0.0
        else:
            drawn = min(grid_wh / eta, max(0.0, state.energy_wh - self.floor_wh))
            grid_wh = drawn * eta
            battery_delta, imported, exported = -drawn, 0.0, grid_wh
        actual_w = (imported - exported) * 3600.0 / h
        return PlantState(  # not dataclasses.replace: this runs in every sub-step
            capacity_wh=state.capacity_wh,
            energy_wh=state.energy_wh + battery_delta,
            power_w=actual_w,
            command_w=state.command_w,
            last_request_w=state.last_request_w,
            pending=state.pending,
            elapsed_s=state.elapsed_s + h,
            import_register_wh=state.import_register_wh + imported,
            export_register_wh=state.export_register_wh + exported,
            losses_wh=state.losses_wh + (imported - exported) - battery_delta,
        )
