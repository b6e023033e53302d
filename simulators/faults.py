"""Fault injection for a simulated station (issue 4 point 6): what a scenario can break.

All times of a `FaultPlan` are simulated seconds after the station started, except
`answer_delay_s`, which is a protocol delay and so on the wall clock (DESIGN.md §2).
`unplug_at_s` takes the car away mid-session (the transaction ends as at any unplug);
`replug_after_s` brings the same car back that much later with the SoC it left with, so a
CSMS sees a new transaction from a car it already knows.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise

from simulators.physics import NO_DERATE, Derate


class FaultPlanError(ValueError):
    """A fault plan that cannot be executed: `field` names the setting, `what` the problem
    (the scenario reader reports them against its file and key)."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"{field}: {what}")
        self.field, self.what = field, what


@dataclass(frozen=True)
class FaultPlan:
    drop_connection_at_s: tuple[float, ...] = ()  # sim seconds after start: close the socket
    offline_for_s: float = 0.0  # stay offline that long (sim s) after a drop
    answer_delay_s: float = 0.0  # wall seconds before answering CSMS CALLs
    reject_profiles: bool = False  # answer SetChargingProfile Rejected
    derate: tuple[tuple[float, float], ...] = ()  # (from sim second, factor 0..1) steps
    unplug_at_s: tuple[float, ...] = ()  # sim seconds after start: the car is unplugged
    replug_after_s: float | None = None  # sim s after each unplug; None: the car stays away

    def __post_init__(self) -> None:
        for name in ("drop_connection_at_s", "unplug_at_s"):
            times = tuple(float(t) for t in getattr(self, name))
            if any(not math.isfinite(t) or t < 0 for t in times):
                raise FaultPlanError(name, f"must be sim seconds >= 0, got {list(times)}")
            object.__setattr__(self, name, tuple(sorted(times)))
        for name in ("offline_for_s", "answer_delay_s"):
            _check_duration(name, getattr(self, name))
        steps = tuple((float(t), float(f)) for t, f in self.derate)
        for at_s, factor in steps:
            if at_s < 0 or not 0.0 <= factor <= 1.0:
                raise FaultPlanError(
                    "derate", f"step ({at_s}, {factor}) needs a time >= 0 and a factor in [0, 1]"
                )
        object.__setattr__(self, "derate", tuple(sorted(steps)))
        self._check_replug()

    def _check_replug(self) -> None:
        """A replug needs an unplug, and the car must be back before it can leave again."""
        after = self.replug_after_s
        if after is None:
            return
        _check_duration("replug_after_s", after)
        if not self.unplug_at_s:
            raise FaultPlanError("replug_after_s", "needs unplug_at_s (when the car leaves)")
        for first, second in pairwise(self.unplug_at_s):
            if second <= first + after:
                raise FaultPlanError(
                    "unplug_at_s",
                    f"{second:g} comes before the car unplugged at {first:g} is back "
                    f"(replug_after_s {after:g}); space the unplugs more than that apart",
                )

    @classmethod
    def none(cls) -> FaultPlan:
        return cls()

    @property
    def replug_at_s(self) -> tuple[float, ...]:
        """When the unplugged car comes back (sim s after start); () when it stays away."""
        if self.replug_after_s is None:
            return ()
        return tuple(t + self.replug_after_s for t in self.unplug_at_s)

    def derate_at(self, elapsed_s: float) -> Derate:
        """The derate in force `elapsed_s` sim seconds after start (the last step begun)."""
        if not self.derate:
            return NO_DERATE
        index = bisect_right([t for t, _ in self.derate], elapsed_s) - 1
        return NO_DERATE if index < 0 else Derate(heat=self.derate[index][1])


def _check_duration(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise FaultPlanError(name, f"must be a finite number >= 0, got {value!r}")
