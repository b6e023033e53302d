"""Demand-response programs: rules as data (data/programs.toml) plus one function per pay rule.

A `Program` is a frozen record read from TOML (the shipped programs) or from an operator's dict
(custom programs); both go through the same validation, so every error names the program and the
field. Program windows are local wall-clock times in the program's IANA zone; events are UTC
instants (DESIGN.md §3.1). `validate_event` converts the instants into the zone, so an event is
judged by the local clock on its own day, including the days clocks change.

Pay is computed from the rule, never copied from a program's worked table (DOMAIN.md): the rule's
function receives the season's rate for the participant class and the per-event deliveries.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PARTICIPANT_CLASSES = ("residential", "commercial")
_MD = re.compile(r"^(\d{2})-(\d{2})$")
_HM = re.compile(r"^(\d{2}):(\d{2})$")
# Ids and aliases appear in URLs (/api/v1/programs/{id}) and on command lines.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_PROGRAM_KEYS = {
    "id",
    "name",
    "time_zone",
    "pay_rule",
    "max_event_duration_min",
    "notice_lead_min",
    "events_per_season",
    "season",
    "sources",
    "annual_cap_usd",
    "min_dispatchable_h_per_year",
    "aliases",
}
_SEASON_KEYS = {"name", "start", "end", "window", "weekdays", "rates"}
# Durations and money beyond this are typing errors (and overflow timedelta): a year is 525,960 min.
_MAX_NUMBER = 1e9
# A leap year, so "02-29" is a valid season bound.
_REFERENCE_YEAR = 2000


class ProgramError(ValueError):
    """A program definition or a pay request is invalid; the message names program and field."""


class UnknownProgramError(ProgramError, LookupError):
    """No program has this id or alias; the message lists the known ids."""


class DuplicateProgramError(ProgramError):
    """A new program's id or alias is already another program's id or alias."""


@dataclass(frozen=True, slots=True)
class Season:
    """A part of the year with its own local event window and rates."""

    name: str
    start_md: tuple[int, int]
    end_md: tuple[int, int]
    window_start: time
    window_end: time
    weekdays: frozenset[int]  # 0 = Monday
    rates: tuple[tuple[str, float], ...]  # (participant class, rate in the pay rule's unit)

    def contains(self, day: date) -> bool:
        md = (day.month, day.day)
        if self.start_md <= self.end_md:
            return self.start_md <= md <= self.end_md
        return md >= self.start_md or md <= self.end_md  # wraps the year end

    def rate(self, participant_class: str) -> float:
        for name, value in self.rates:
            if name == participant_class:
                return value
        known = ", ".join(name for name, _ in self.rates)
        raise ProgramError(
            f"season {self.name!r} has no rate for participant class {participant_class!r} "
            f"(has: {known})"
        )

    def definition(self) -> dict[str, Any]:
        """The season as a program definition writes it (TOML/JSON shape)."""
        return {
            "name": self.name,
            "start": f"{self.start_md[0]:02d}-{self.start_md[1]:02d}",
            "end": f"{self.end_md[0]:02d}-{self.end_md[1]:02d}",
            "window": [f"{self.window_start:%H:%M}", f"{self.window_end:%H:%M}"],
            "weekdays": sorted(self.weekdays),
            "rates": dict(self.rates),
        }

    def describe(self) -> str:
        return (
            f"{self.name} {self.start_md[0]:02d}-{self.start_md[1]:02d}..{self.end_md[0]:02d}-"
            f"{self.end_md[1]:02d} {self.window_start:%H:%M}-{self.window_end:%H:%M}"
        )


@dataclass(frozen=True, slots=True)
class EventCount:
    """How many events a season has: the program's minimum, typical and maximum."""

    min: int
    typical: int
    max: int


@dataclass(frozen=True, slots=True)
class Program:
    """One program. `pay_rule` names a function of PAY_RULES."""

    id: str
    name: str
    time_zone: str
    pay_rule: str
    max_event_duration: timedelta
    notice_lead: timedelta
    seasons: tuple[Season, ...]
    events_per_season: EventCount
    annual_cap_usd: float | None = None
    min_dispatchable_h_per_year: float | None = None
    sources: tuple[tuple[str, str], ...] = ()
    # Other names a caller may use for the program (DESIGN §2 posts "connected-solutions").
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The id and every alias."""
        return (self.id, *self.aliases)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def definition(self) -> dict[str, Any]:
        """The program as a definition writes it: `program_from_dict` of it is this program."""
        count = self.events_per_season
        out: dict[str, Any] = {
            "id": self.id,
            "aliases": list(self.aliases),
            "name": self.name,
            "time_zone": self.time_zone,
            "pay_rule": self.pay_rule,
            "max_event_duration_min": self.max_event_duration.total_seconds() / 60,
            "notice_lead_min": self.notice_lead.total_seconds() / 60,
            "events_per_season": {"min": count.min, "typical": count.typical, "max": count.max},
            "season": [season.definition() for season in self.seasons],
            "sources": dict(self.sources),
        }
        for key in ("annual_cap_usd", "min_dispatchable_h_per_year"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def season_on(self, local_day: date) -> Season | None:
        return next((s for s in self.seasons if s.contains(local_day)), None)

    def season_named(self, name: str) -> Season:
        for season in self.seasons:
            if season.name == name:
                return season
        known = ", ".join(s.name for s in self.seasons)
        raise ProgramError(f"program {self.id!r} has no season {name!r} (has: {known})")

    def window_on(self, local_day: date) -> tuple[datetime, datetime] | None:
        """The UTC instants of the window on a local day, or None outside every season/weekday."""
        season = self.season_on(local_day)
        if season is None or local_day.weekday() not in season.weekdays:
            return None
        start = datetime.combine(local_day, season.window_start, self.zone)
        end = datetime.combine(local_day, season.window_end, self.zone)
        return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


@dataclass(frozen=True, slots=True)
class EventValidation:
    """The verdict on an event: the season it falls in and every rule it breaks."""

    season: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class EventDelivery:
    """One event's outcome for one participant: average export kW over the event window."""

    delivered_kw: float
    duration: timedelta
    opted_out: bool = False
    baseline_kw: float = 0.0  # Clean Peak: what the site would have exported anyway

    @property
    def counted_kw(self) -> float:
        return 0.0 if self.opted_out else self.delivered_kw  # an opt-out counts 0 kW

    @property
    def energy_kwh(self) -> float:
        return self.counted_kw * self.duration.total_seconds() / 3600.0


# --- pay rules: one function each ------------------------------------------------------------


def _pay_average_kw(program: Program, rate: float, events: Sequence[EventDelivery]) -> float:
    """ConnectedSolutions: rate ($/kW-season) × the average kW over ALL events of the season."""
    if not events:
        return 0.0
    return rate * sum(e.counted_kw for e in events) / len(events)


def _pay_per_kwh(program: Program, rate: float, events: Sequence[EventDelivery]) -> float:
    """ELRP / BGE: rate ($/kWh) × kWh exported in events, capped by the program's yearly cap."""
    pay = rate * sum(e.energy_kwh for e in events)
    return pay if program.annual_cap_usd is None else min(pay, program.annual_cap_usd)


def _pay_clean_peak(program: Program, rate: float, events: Sequence[EventDelivery]) -> float:
    """Clean Peak: rate ($/certificate) × MWh discharged in the window above the baseline."""
    above_kwh = sum(
        max(0.0, e.energy_kwh - e.baseline_kw * e.duration.total_seconds() / 3600.0) for e in events
    )
    return rate * above_kwh / 1000.0


PayRule = Callable[[Program, float, Sequence[EventDelivery]], float]
PAY_RULES: Mapping[str, PayRule] = {
    "average_kw": _pay_average_kw,
    "per_kwh": _pay_per_kwh,
    "clean_peak_certificates": _pay_clean_peak,
}
# Rules whose pay depends on only the average kW, so a bare kW number per event is enough.
_KW_ONLY_RULES = frozenset({"average_kw"})


def season_pay(
    program: Program,
    participant_class: str,
    per_event_delivered_kw: Sequence[float | EventDelivery | None],
    *,
    season: str | None = None,
) -> float:
    """A participant's pay ($) for one season of events, from the program's pay rule.

    Each event is an `EventDelivery`, or for average-kW rules a bare kW figure; None (or an
    `EventDelivery` with `opted_out`) is an opted-out event, which counts 0 kW but still counts
    as an event of the season. `season` may be omitted when the program has only one.
    """
    if participant_class not in PARTICIPANT_CLASSES:
        raise ProgramError(
            f"unknown participant class {participant_class!r}; expected one of "
            f"{', '.join(PARTICIPANT_CLASSES)}"
        )
    chosen = _season_for_pay(program, season)
    events = [_as_delivery(program, e) for e in per_event_delivered_kw]
    return PAY_RULES[program.pay_rule](program, chosen.rate(participant_class), events)


def _season_for_pay(program: Program, season: str | None) -> Season:
    if season is not None:
        return program.season_named(season)
    if len(program.seasons) == 1:
        return program.seasons[0]
    names = ", ".join(s.name for s in program.seasons)
    raise ProgramError(f"program {program.id!r} has several seasons ({names}): name the season")


def _as_delivery(program: Program, event: float | EventDelivery | None) -> EventDelivery:
    if isinstance(event, EventDelivery):
        return event
    if program.pay_rule not in _KW_ONLY_RULES:
        raise ProgramError(
            f"program {program.id!r} pays by the {program.pay_rule!r} rule, which needs each "
            "event's duration: pass EventDelivery records, not bare kW"
        )
    if event is None:
        return EventDelivery(0.0, program.max_event_duration, opted_out=True)
    if event < 0:
        raise ProgramError(f"delivered kW must be >= 0, got {event}")
    return EventDelivery(float(event), program.max_event_duration)


# --- event validation --------------------------------------------------------------------------


def validate_event(program: Program, start_utc: datetime, duration: timedelta) -> EventValidation:
    """Every reason an event breaks the program's season, weekdays, window or maximum duration.

    Judged on the local clock of the program's zone: the event must start and end within the
    window of the local day it starts on. Durations are real elapsed time, so on a day the clocks
    change a wall-clock window may hold an hour more or less than usual.
    """
    if start_utc.tzinfo is None or start_utc.utcoffset() is None:
        raise ProgramError("an event start must be a timezone-aware instant (UTC)")
    if duration <= timedelta(0):
        return EventValidation(None, (f"duration {_fmt(duration)} must be positive",))
    local_start = start_utc.astimezone(program.zone)
    local_end = (start_utc + duration).astimezone(program.zone)
    season = program.season_on(local_start.date())
    if season is None:
        seasons = "; ".join(s.describe() for s in program.seasons)
        reason = (
            f"{local_start:%Y-%m-%d} ({program.time_zone}) is outside every season of "
            f"{program.id!r}: {seasons}"
        )
        return EventValidation(None, (reason,))
    problems = [
        *_duration_problems(program, duration),
        *_window_problems(season, local_start, local_end),
    ]
    return EventValidation(season.name, tuple(problems))


def _duration_problems(program: Program, duration: timedelta) -> list[str]:
    if duration <= program.max_event_duration:
        return []
    return [
        f"lasts {_fmt(duration)}, more than the program's maximum of "
        f"{_fmt(program.max_event_duration)}"
    ]


def _window_problems(season: Season, local_start: datetime, local_end: datetime) -> list[str]:
    window = f"{season.window_start:%H:%M}-{season.window_end:%H:%M} local ({season.name})"
    problems = []
    if local_start.weekday() not in season.weekdays:
        problems.append(f"{local_start:%A %Y-%m-%d} is not an event day of season {season.name!r}")
    if local_start.time() < season.window_start:
        problems.append(f"starts {local_start:%H:%M %Z}, before the window {window}")
    if local_start.time() >= season.window_end:
        problems.append(
            f"starts {local_start:%H:%M %Z}, at or after the end of the window {window}"
        )
    if local_end.date() != local_start.date() or local_end.time() > season.window_end:
        problems.append(f"ends {local_end:%Y-%m-%d %H:%M %Z}, after the window {window}")
    return problems


def _fmt(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    hours, rest = divmod(abs(minutes), 60)
    sign = "-" if minutes < 0 else ""
    return f"{sign}{hours}h{rest:02d}m"


# --- loading and validation of definitions ----------------------------------------------------


def program_from_dict(data: Mapping[str, Any]) -> Program:
    """Build and validate one program (shipped or operator-defined custom)."""
    pid = data.get("id")
    if not isinstance(pid, str) or not pid.strip():
        raise ProgramError("program: 'id' must be a non-empty string")
    if not _NAME.match(pid):
        raise ProgramError(
            f"program {pid!r}: 'id' must be lowercase letters, digits, '.', '_' or '-' "
            "(at most 64 characters), as it appears in URLs"
        )
    err = _Errors(f"program {pid!r}")
    err.unknown(data, _PROGRAM_KEYS)
    zone = err.zone(data.get("time_zone"))
    rule = data.get("pay_rule")
    if not isinstance(rule, str) or rule not in PAY_RULES:
        err.fail(f"pay_rule {rule!r} is not one of {', '.join(sorted(PAY_RULES))}")
    max_min = err.number(data, "max_event_duration_min", positive=True)
    seasons = tuple(_season(err, raw) for raw in err.list_of_tables(data, "season"))
    _check_seasons(err, seasons, max_min)
    return Program(
        id=pid,
        name=err.text(data, "name"),
        time_zone=zone,
        pay_rule=rule,
        max_event_duration=timedelta(minutes=max_min),
        notice_lead=timedelta(minutes=err.number(data, "notice_lead_min", default=0.0)),
        seasons=seasons,
        events_per_season=_event_count(err, data.get("events_per_season")),
        annual_cap_usd=err.optional_number(data, "annual_cap_usd"),
        min_dispatchable_h_per_year=err.optional_number(data, "min_dispatchable_h_per_year"),
        sources=err.sources(data.get("sources")),
        aliases=err.aliases(pid, data.get("aliases", [])),
    )


def custom_program(data: Mapping[str, Any], existing: Mapping[str, Program]) -> Program:
    """An operator-defined program, validated like the shipped ones; its id and aliases must
    be new (no other program's id or alias)."""
    program = program_from_dict(data)
    _check_names_free(program, existing)
    return program


def _check_names_free(program: Program, existing: Mapping[str, Program]) -> None:
    taken = {name: other.id for other in existing.values() for name in other.names}
    if program.id in existing:
        raise DuplicateProgramError(f"program {program.id!r} already exists")
    for name in program.names:
        if name in taken:
            owner = taken[name]
            what = "the id" if name == owner else "an alias"
            raise DuplicateProgramError(
                f"program {program.id!r}: name {name!r} is already {what} of program {owner!r}"
            )


def find_program(programs: Mapping[str, Program], id_or_alias: str) -> Program:
    """The program with this id or alias (case-insensitive), or UnknownProgramError."""
    if id_or_alias in programs:
        return programs[id_or_alias]
    wanted = id_or_alias.strip().casefold()
    for program in programs.values():
        if wanted in (name.casefold() for name in program.names):
            return program
    known = ", ".join(
        f"{p.id} ({', '.join(p.aliases)})" if p.aliases else p.id for p in programs.values()
    )
    raise UnknownProgramError(f"unknown program {id_or_alias!r}; known: {known}")


def parse_programs(text: str) -> dict[str, Program]:
    """Programs from TOML text ([[program]] tables), keyed by id."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"programs file is not valid TOML: {exc}") from exc
    programs: dict[str, Program] = {}
    for entry in raw.get("program", []):
        program = program_from_dict(entry)
        if program.id in programs:
            raise ProgramError(f"program {program.id!r} is defined twice")
        _check_names_free(program, programs)
        programs[program.id] = program
    return programs


@cache
def load_programs() -> Mapping[str, Program]:
    """The shipped programs (data/programs.toml)."""
    text = resources.files("csms.scheduler").joinpath("data/programs.toml").read_text("utf-8")
    return parse_programs(text)


def _season(err: _Errors, raw: Mapping[str, Any]) -> Season:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        err.fail("every season needs a non-empty 'name'")
    serr = _Errors(f"{err.where} season {name!r}")
    serr.unknown(raw, _SEASON_KEYS)
    window = raw.get("window")
    if not isinstance(window, list) or len(window) != 2:
        serr.fail('\'window\' must be ["HH:MM", "HH:MM"] local time')
    start, end = serr.hhmm(window[0]), serr.hhmm(window[1])
    if end <= start:
        serr.fail(f"window {window[0]}-{window[1]} must end after it starts on the same day")
    return Season(
        name=name,
        start_md=serr.month_day(raw.get("start"), "start"),
        end_md=serr.month_day(raw.get("end"), "end"),
        window_start=start,
        window_end=end,
        weekdays=serr.weekdays(raw.get("weekdays", list(range(7)))),
        rates=serr.rates(raw.get("rates")),
    )


def _check_seasons(err: _Errors, seasons: tuple[Season, ...], max_min: float) -> None:
    if not seasons:
        err.fail("needs at least one [[season]]")
    if len({s.name for s in seasons}) != len(seasons):
        err.fail("season names must be unique")
    day = date(_REFERENCE_YEAR, 1, 1)
    while day.year == _REFERENCE_YEAR:
        holders = [s.name for s in seasons if s.contains(day)]
        if len(holders) > 1:
            err.fail(f"seasons {' and '.join(holders)} overlap on {day:%m-%d}")
        day += timedelta(days=1)
    for s in seasons:
        length = datetime.combine(day, s.window_end) - datetime.combine(day, s.window_start)
        if timedelta(minutes=max_min) > length:
            err.fail(
                f"max_event_duration_min {max_min:g} is longer than season {s.name!r}'s "
                f"window {s.window_start:%H:%M}-{s.window_end:%H:%M}"
            )


def _event_count(err: _Errors, raw: Any) -> EventCount:
    if raw is None:
        return EventCount(0, 0, 366)
    if not isinstance(raw, Mapping) or set(raw) != {"min", "typical", "max"}:
        err.fail("events_per_season must be {min, typical, max}")
    values = [raw[k] for k in ("min", "typical", "max")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        err.fail(f"events_per_season values must be non-negative integers, got {values}")
    if not values[0] <= values[1] <= values[2]:
        err.fail(f"events_per_season needs min <= typical <= max, got {values}")
    return EventCount(*values)


class _Errors:
    """Field readers that raise ProgramError naming where the bad value is."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, message: str) -> Any:
        raise ProgramError(f"{self.where}: {message}")

    def unknown(self, data: Mapping[str, Any], known: set[str]) -> None:
        extra = sorted(set(data) - known)
        if extra:
            self.fail(f"unknown field(s) {', '.join(extra)}; known: {', '.join(sorted(known))}")

    def zone(self, value: Any) -> str:
        if not isinstance(value, str):
            self.fail("'time_zone' must be an IANA zone name such as 'America/New_York'")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(f"time_zone {value!r} is not a known IANA zone")
        return value

    def text(self, data: Mapping[str, Any], key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{key!r} must be a non-empty string")
        return value

    def number(
        self, data: Mapping[str, Any], key: str, *, positive: bool = False, default: Any = None
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{key!r} must be a number, got {value!r}")
        if not math.isfinite(value) or abs(value) > _MAX_NUMBER:
            self.fail(f"{key!r} must be a finite number of sensible size, got {value!r}")
        if value < 0 or (positive and value == 0):
            self.fail(f"{key!r} must be {'> 0' if positive else '>= 0'}, got {value}")
        return float(value)

    def optional_number(self, data: Mapping[str, Any], key: str) -> float | None:
        return None if data.get(key) is None else self.number(data, key)

    def list_of_tables(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.fail(f"{key!r} must be a list of tables ([[{key}]])")
        return value

    def month_day(self, value: Any, key: str) -> tuple[int, int]:
        match = _MD.match(value) if isinstance(value, str) else None
        try:
            parsed = date(_REFERENCE_YEAR, int(match[1]), int(match[2])) if match else None
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail(f"{key} {value!r} must be a month-day 'MM-DD'")
        return parsed.month, parsed.day

    def hhmm(self, value: Any) -> time:
        match = _HM.match(value) if isinstance(value, str) else None
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            self.fail(f"window bound {value!r} must be a local time 'HH:MM'")
        return time(int(match[1]), int(match[2]))

    def sources(self, value: Any) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.fail("'sources' must map each field to where its number comes from")
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))

    def aliases(self, pid: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            self.fail("'aliases' must be a list of names")
        bad = [a for a in value if not _NAME.match(a)]
        if bad:
            self.fail(
                f"alias(es) {', '.join(map(repr, bad))} must be lowercase letters, digits, "
                "'.', '_' or '-' (at most 64 characters)"
            )
        if pid in value or len(set(value)) != len(value):
            self.fail("aliases must differ from the id and from each other")
        return tuple(value)

    def weekdays(self, value: Any) -> frozenset[int]:
        if not isinstance(value, list) or not value:
            self.fail("'weekdays' must be a non-empty list of 0 (Monday) .. 6 (Sunday)")
        if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in value):
            self.fail(f"weekdays {value!r} must be integers 0 (Monday) .. 6 (Sunday)")
        return frozenset(value)

    def rates(self, value: Any) -> tuple[tuple[str, float], ...]:
        if not isinstance(value, Mapping) or not value:
            self.fail("'rates' must map participant classes to a rate")
        for cls, rate in value.items():
            if cls not in PARTICIPANT_CLASSES:
                self.fail(f"rate for unknown participant class {cls!r}")
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1e9:
                self.fail(f"rate for {cls} must be a number >= 0, got {rate!r}")
        return tuple(sorted((cls, float(rate)) for cls, rate in value.items()))
