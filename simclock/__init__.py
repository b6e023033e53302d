"""The simulated clock shared by `csms serve` and `csms-sim` (DESIGN.md §2).

Its own package because the simulators must not import `csms` (they are a separate OCPP
client) and both must compute the same simulated time from the same three values.

sim_time = clock_start + speed × (wall_time − anchor). Domain timers (meter intervals, profile
periods, event windows) run on it; protocol timers (call timeouts, pings, back-off) stay on
wall time. With speed 1 and no start given it is the real clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Clock:
    speed: float = 1.0
    start: datetime | None = None  # sim time at the anchor; None = real time
    anchor: float = 0.0  # wall-clock epoch seconds at which sim time was `start`

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"clock speed must be > 0, got {self.speed}")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("clock start must carry a time zone, e.g. 2026-07-15T14:00:00Z")

    @classmethod
    def create(
        cls, speed: float = 1.0, start: datetime | None = None, anchor: float | None = None
    ) -> Clock:
        if start is None and speed == 1.0:
            return cls()
        start = start or datetime.now(UTC)
        return cls(speed=speed, start=start, anchor=time.time() if anchor is None else anchor)

    @property
    def is_real(self) -> bool:
        return self.start is None

    def now(self) -> datetime:
        if self.start is None:
            return datetime.now(UTC)
        return self.start + timedelta(seconds=self.speed * (time.time() - self.anchor))

    def wall_seconds(self, sim_seconds: float) -> float:
        """How long `sim_seconds` of simulated time last on the wall clock."""
        return sim_seconds / self.speed

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(max(0.0, self.wall_seconds(sim_seconds)))

    def describe(self) -> str:
        if self.start is None:
            return "clock real-time"
        start = self.start.isoformat().replace("+00:00", "Z")
        return (
            f"clock --speed {self.speed:g} --clock-start {start} --clock-anchor {self.anchor:.6f}"
        )


def parse_instant(text: str) -> datetime:
    """ISO-8601 with a zone ('Z' accepted); a clear error otherwise."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 instant: {text!r}") from exc
    if value.tzinfo is None:
        raise ValueError(f"instant needs a time zone (e.g. 'Z'): {text!r}")
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """An instant as OCPP writes it: UTC with 'Z'."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
