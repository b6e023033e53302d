"""Plug-in / plug-out schedules: pure, reproducible, and shaped like the vehicles' days."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.behaviour import (
    Behaviour,
    SocDistribution,
    away_intervals,
    plug_events,
    plugged_at,
)

BOSTON = ZoneInfo("America/New_York")
seeds = st.integers(min_value=0, max_value=2**32)
indexes = st.integers(min_value=0, max_value=10_000)
days = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))
starts = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BOSTON)


@settings(max_examples=200, deadline=None)
@given(seed=seeds, index=indexes, day=days)
def test_commuter_is_plugged_in_overnight_and_away_midday_on_weekdays(seed, index, day):
    commuter = Behaviour("commuter", jitter_min=120)
    assert plugged_at(commuter, seed, index, local(day, 2))  # 2 am: always at home
    assert plugged_at(commuter, seed, index, local(day, 21, 30))  # home by 8 pm at the latest
    if day.weekday() < 5:
        assert not plugged_at(commuter, seed, index, local(day, 12))  # at work at noon
    else:
        assert plugged_at(commuter, seed, index, local(day, 12))  # weekends at home


@settings(max_examples=150, deadline=None)
@given(seed=seeds, index=indexes, start=starts, hours=st.integers(1, 24 * 9))
def test_plug_events_alternate_in_order_and_plug_out_follows_plug_in(seed, index, start, hours):
    for kind in ("commuter", "school-bus"):
        b = Behaviour(kind, summer="away")
        end = start + timedelta(hours=hours)
        events = plug_events(b, seed, index, start, end, "light-duty")
        assert all(start <= e.at < end for e in events)
        assert [e.at for e in events] == sorted(e.at for e in events)
        assert all(a.at < b_.at for a, b_ in itertools.pairwise(events))
        for a, b_ in itertools.pairwise(events):
            assert a.plugged != b_.plugged  # never two plug-ins (or plug-outs) in a row
        if events:
            assert events[0].plugged == plugged_at(b, seed, index, start) or events[0].at > start
        for e in events:
            if e.plugged:
                assert e.soc_pct is not None and 15.0 <= e.soc_pct <= 90.0
                assert e.departure is not None and e.departure > e.at  # owners leave later


@settings(max_examples=100, deadline=None)
@given(seed=seeds, index=indexes, start=starts, hours=st.integers(1, 24 * 5))
def test_schedules_are_reproducible_per_seed_and_independent_of_the_window(
    seed, index, start, hours
):
    b = Behaviour("commuter")
    end = start + timedelta(hours=hours)
    middle = start + (end - start) / 2
    whole = plug_events(b, seed, index, start, end, "light-duty")
    assert whole == plug_events(b, seed, index, start, end, "light-duty")
    halves = plug_events(b, seed, index, start, middle, "light-duty") + plug_events(
        b, seed, index, middle, end, "light-duty", include_initial=False
    )
    assert halves == whole


def test_different_seeds_and_stations_give_different_days():
    b = Behaviour("commuter")
    start = datetime(2026, 7, 13, 12, tzinfo=UTC)
    end = start + timedelta(days=5)
    plans = {
        tuple(e.at for e in plug_events(b, seed, i, start, end, "light-duty"))
        for seed in range(3)
        for i in range(5)
    }
    assert len(plans) == 15


def test_school_bus_idle_midday_and_evening_on_school_days_away_on_routes():
    bus = Behaviour("school-bus", timezone="America/New_York", jitter_min=20)
    day = date(2026, 5, 13)  # a Wednesday in term
    for seed in range(20):
        assert not plugged_at(bus, seed, 0, local(day, 7, 30))  # morning route
        assert plugged_at(bus, seed, 0, local(day, 11, 30))  # idle 9 am - 2 pm
        assert not plugged_at(bus, seed, 0, local(day, 15, 30))  # afternoon route
        assert plugged_at(bus, seed, 0, local(day, 19))  # at the depot for the evening
        assert plugged_at(bus, seed, 0, local(date(2026, 5, 16), 12))  # Saturday parked


def test_school_bus_summer_break_parked_or_away_per_scenario():
    july = date(2026, 7, 15)
    parked = Behaviour("school-bus", summer="parked")
    away = Behaviour("school-bus", summer="away")
    for hour in (3, 8, 12, 15, 18, 22):
        assert plugged_at(parked, 1, 0, local(july, hour))
        assert not plugged_at(away, 1, 0, local(july, hour))
    # A bus away all summer comes back (plug-in) the day after the break ends.
    start = datetime(2026, 8, 30, tzinfo=UTC)
    events = plug_events(away, 1, 0, start, start + timedelta(days=3), "bus")
    assert events[0].plugged and events[0].at.astimezone(BOSTON).date() == date(2026, 9, 1)


def test_commuter_keeps_local_hours_across_the_dst_change():
    b = Behaviour("commuter", jitter_min=0)
    for day in (date(2026, 3, 6), date(2026, 3, 9)):  # Friday before and Monday after DST
        ((leave, back),) = away_intervals(b, 1, 0, day)
        assert leave.astimezone(BOSTON).time() == time(7, 0)
        assert back.astimezone(BOSTON).time() == time(18, 0)


def test_always_and_never():
    start = datetime(2026, 7, 15, tzinfo=UTC)
    end = start + timedelta(days=2)
    always = plug_events(Behaviour("always"), 1, 0, start, end, "bus")
    assert len(always) == 1 and always[0].plugged and always[0].at == start
    assert plug_events(Behaviour("never"), 1, 0, start, end, "bus") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "weekender"}, "behaviour kind 'weekender' unknown; allowed: commuter"),
        ({"summer": "camp"}, "summer 'camp' unknown"),
        ({"timezone": "Mars/Olympus"}, "unknown IANA time zone"),
        ({"jitter_min": 500}, "jitter_min must be within"),
        ({"summer_break": ("13-01", "08-31")}, "not a MM-DD date"),
    ],
)
def test_bad_behaviour_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Behaviour(**kwargs)


def test_arrival_soc_is_clipped_to_its_range():
    import random

    d = SocDistribution(mean_pct=50, sd_pct=40, min_pct=20, max_pct=80)
    draws = [d.draw(random.Random(i)) for i in range(500)]
    assert min(draws) == 20 and max(draws) == 80
