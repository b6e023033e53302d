"""Fault injection for a simulated station (issue 4 point 6): what a scenario can break.

All times of a `FaultPlan` are simulated seconds after the station started, except
`answer_delay_s`, which is a protocol delay and so on the wall clock (DESIGN.md §2).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from simulators.physics import NO_DERATE, Derate


class FaultPlanError(ValueError):
    """A fault plan that cannot be executed; the message names the field."""


@dataclass(frozen=True)
class FaultPlan:
    drop_connection_at_s: tuple[float, ...] = ()  # sim seconds after start: close the socket
    offline_for_s: float = 0.0  # stay offline that long (sim s) after a drop
    answer_delay_s: float = 0.0  # wall seconds before answering CSMS CALLs
    reject_profiles: bool = False  # answer SetChargingProfile Rejected
    derate: tuple[tuple[float, float], ...] = ()  # (from sim second, factor 0..1) steps

    def __post_init__(self) -> None:
        drops = tuple(float(t) for t in self.drop_connection_at_s)
        if any(not math.isfinite(t) or t < 0 for t in drops):
            raise FaultPlanError(f"drop_connection_at_s must be >= 0 s, got {drops}")
        object.__setattr__(self, "drop_connection_at_s", tuple(sorted(drops)))
        for name in ("offline_for_s", "answer_delay_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise FaultPlanError(f"{name} must be a finite number >= 0, got {value!r}")
        steps = tuple((float(t), float(f)) for t, f in self.derate)
        for at_s, factor in steps:
            if at_s < 0 or not 0.0 <= factor <= 1.0:
                raise FaultPlanError(
                    f"derate step ({at_s}, {factor}) needs a time >= 0 and a factor in [0, 1]"
                )
        object.__setattr__(self, "derate", tuple(sorted(steps)))

    @classmethod
    def none(cls) -> FaultPlan:
        return cls()

    def derate_at(self, elapsed_s: float) -> Derate:
        """The derate in force `elapsed_s` sim seconds after start (the last step begun)."""
        if not self.derate:
            return NO_DERATE
        index = bisect_right([t for t, _ in self.derate], elapsed_s) - 1
        return NO_DERATE if index < 0 else Derate(heat=self.derate[index][1])
