"""When vehicles are plugged in: commuter cars and school buses on the simulated clock.

Pure functions of (seed, station index, simulated time window) -> planned plug events, so a
fleet run is reproducible and the schedules are testable without a network. A vehicle's day is
described by the intervals it is *away* (driving); it is plugged in at home or at the depot the
rest of the time. Each local day draws its own jitter from a generator seeded with
(seed, station index, date), so the plan of a day never depends on the window asked for.

- commuter: away on weekdays from ~7 am to ~6 pm local time, home (plugged in) overnight and at
  weekends (DOMAIN.md: "commuter car home 6 pm - 7 am").
- school-bus: on school days away on the morning route (~6 am - 9 am) and the afternoon route
  (~2 pm - 5 pm), idle at the depot 9 am - 2 pm and from 5 pm to the next morning; at weekends
  parked; during the summer break either parked at the depot ("parked", ideal for summer
  evening events) or away from it ("away"), per scenario.
- always: plugged in the whole run; never: never plugged in.

The owner's departure time announced at plug-in is the planned plug-out (the next away start).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KINDS = ("commuter", "school-bus", "always", "never")
SUMMER_MODES = ("parked", "away")
MAX_JITTER_MIN = 120.0  # keeps every away interval inside its own day, so none overlap


@dataclass(frozen=True, slots=True)
class SocDistribution:
    """Arrival SoC: a normal distribution clipped to [min_pct, max_pct]."""

    mean_pct: float
    sd_pct: float
    min_pct: float
    max_pct: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_pct <= self.max_pct <= 100.0:
            raise ValueError(f"need 0 <= min_pct <= max_pct <= 100, got {self}")
        if self.sd_pct < 0 or not math.isfinite(self.mean_pct):
            raise ValueError(f"sd_pct must be >= 0 and mean_pct finite, got {self}")

    def draw(self, rng: random.Random) -> float:
        value = rng.gauss(self.mean_pct, self.sd_pct) if self.sd_pct > 0 else self.mean_pct
        return round(min(self.max_pct, max(self.min_pct, value)), 1)


# Arrival SoC per EV category (assumed: a commuter uses ~30-40 % of a light-duty pack on a day's
# driving; a bus route day leaves roughly half of its pack; no public figure found).
ARRIVAL_SOC = {
    "light-duty": SocDistribution(mean_pct=55.0, sd_pct=15.0, min_pct=15.0, max_pct=90.0),
    "bus": SocDistribution(mean_pct=45.0, sd_pct=12.0, min_pct=20.0, max_pct=85.0),
}


@dataclass(frozen=True, slots=True)
class Behaviour:
    kind: str = "always"
    timezone: str = "America/New_York"
    jitter_min: float = 30.0  # standard deviation of each departure/arrival, minutes
    summer: str = "parked"  # school-bus during the summer break: parked | away
    summer_break: tuple[str, str] = ("06-20", "08-31")  # MM-DD, inclusive (assumed US school)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"behaviour kind {self.kind!r} unknown; allowed: {', '.join(KINDS)}")
        if self.summer not in SUMMER_MODES:
            raise ValueError(f"summer {self.summer!r} unknown; allowed: {', '.join(SUMMER_MODES)}")
        if not 0.0 <= self.jitter_min <= MAX_JITTER_MIN:
            raise ValueError(f"jitter_min must be within 0..{MAX_JITTER_MIN:g}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {self.timezone!r}") from None
        for text in self.summer_break:
            parse_month_day(text)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def in_summer_break(self, day: date) -> bool:
        first, last = (parse_month_day(t) for t in self.summer_break)
        key = (day.month, day.day)
        if first <= last:
            return first <= key <= last
        return key >= first or key <= last  # a break across New Year


@dataclass(frozen=True, slots=True)
class PlugEvent:
    """A planned plug-in (with the arrival SoC and the owner's departure) or plug-out."""

    at: datetime
    plugged: bool
    soc_pct: float | None = None
    departure: datetime | None = None


def parse_month_day(text: str) -> tuple[int, int]:
    """'06-20' -> (6, 20); a clear error for anything else."""
    try:
        month, day = (int(part) for part in text.split("-"))
        date(2024, month, day)  # a leap year accepts 02-29
    except (ValueError, TypeError):
        raise ValueError(f"not a MM-DD date: {text!r}") from None
    return month, day


def day_rng(seed: int, index: int, day: date) -> random.Random:
    """The generator of one vehicle's day; str seeds hash with SHA-512, stable across runs."""
    return random.Random(f"{seed}:{index}:{day.isoformat()}")


def _at(day: date, hour: float, jitter_min: float, rng: random.Random, zone: ZoneInfo) -> datetime:
    """Local `hour` on `day` plus bounded normal jitter, as a UTC instant."""
    offset = rng.gauss(0.0, jitter_min) if jitter_min > 0 else 0.0
    offset = max(-MAX_JITTER_MIN, min(MAX_JITTER_MIN, offset))
    # Aware arithmetic is wall-clock arithmetic: 7 am stays 7 am local across a DST change.
    local = datetime.combine(day, time(0), tzinfo=zone) + timedelta(
        hours=hour, seconds=round(offset * 60)
    )
    return local.astimezone(UTC)


def away_intervals(
    b: Behaviour, seed: int, index: int, day: date
) -> list[tuple[datetime, datetime]]:
    """The intervals of `day` (local date) the vehicle is away from its charger."""
    rng = day_rng(seed, index, day)
    zone, jitter = b.zone, b.jitter_min
    weekday = day.weekday() < 5
    if b.kind == "commuter" and weekday:
        return [(_at(day, 7.0, jitter, rng, zone), _at(day, 18.0, jitter, rng, zone))]
    if b.kind != "school-bus":
        return []
    if b.in_summer_break(day):
        if b.summer == "away":
            begin = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
            finish = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
            return [(begin, finish.astimezone(UTC))]
        return []
    if not weekday:
        return []
    return [
        (_at(day, 6.0, jitter / 2, rng, zone), _at(day, 9.0, jitter / 2, rng, zone)),
        (_at(day, 14.0, jitter / 2, rng, zone), _at(day, 17.0, jitter / 2, rng, zone)),
    ]


def _local_days(b: Behaviour, start: datetime, end: datetime) -> Iterator[date]:
    """Every local date touching [start, end], one day of margin either side."""
    day = start.astimezone(b.zone).date() - timedelta(days=1)
    last = end.astimezone(b.zone).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def merged_away(
    b: Behaviour, seed: int, index: int, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Away intervals touching [start, end], adjacent ones (a summer-away bus) merged."""
    if b.kind in ("always", "never"):
        return []
    merged: list[tuple[datetime, datetime]] = []
    for day in _local_days(b, start, end):
        for begin, finish in away_intervals(b, seed, index, day):
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
            else:
                merged.append((begin, finish))
    return [(s, e) for s, e in merged if e >= start and s < end]


def plugged_at(b: Behaviour, seed: int, index: int, at: datetime) -> bool:
    """Is the vehicle plugged in at instant `at`?"""
    if b.kind in ("always", "never"):
        return b.kind == "always"
    away = merged_away(b, seed, index, at, at + timedelta(microseconds=1))
    return not any(s <= at < e for s, e in away)


def next_departure(
    b: Behaviour, seed: int, index: int, after: datetime, default_local: str
) -> datetime:
    """When the owner leaves next: the next away start, or the EV's default departure time
    (HH:MM local) on the next day for a vehicle that does not leave in the next days."""
    for begin, _ in merged_away(b, seed, index, after, after + timedelta(days=8)):
        if begin > after:
            return begin
    hour, minute = (int(x) for x in default_local.split(":"))
    local = after.astimezone(b.zone)
    target = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), b.zone)
    return target.astimezone(UTC)


def plug_events(
    b: Behaviour,
    seed: int,
    index: int,
    start: datetime,
    end: datetime,
    category: str,
    default_departure_local: str = "07:00",
    arrival: SocDistribution | None = None,
    include_initial: bool = True,
) -> list[PlugEvent]:
    """Planned plug events in [start, end), ordered; plug-in and plug-out alternate.

    With `include_initial`, a vehicle plugged in at `start` gets a plug-in event at `start`
    (arrival SoC drawn like any other), so the first window of a run starts with a plug-in
    whenever the vehicle is at home. Later windows of the same run pass include_initial=False:
    consecutive half-open windows then yield exactly the events of one window spanning them.
    """
    if b.kind == "never":
        return []
    soc = arrival or ARRIVAL_SOC[category]
    events: list[PlugEvent] = []

    def plug_in(at: datetime) -> None:
        rng = random.Random(f"{seed}:{index}:soc:{at.isoformat()}")
        departure = next_departure(b, seed, index, at, default_departure_local)
        events.append(PlugEvent(at, True, soc.draw(rng), departure))

    away = merged_away(b, seed, index, start, end)
    came_home_at_start = any(finish == start for _, finish in away)
    if include_initial and not came_home_at_start and plugged_at(b, seed, index, start):
        plug_in(start)
    for begin, finish in away:
        if start <= begin < end:
            events.append(PlugEvent(begin, False))
        if start <= finish < end:
            plug_in(finish)
    return events
