"""Program rules as data: shipped programs, custom programs, local windows across DST, pay rules."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from csms.scheduler.programs import (
    PAY_RULES,
    DuplicateProgramError,
    EventDelivery,
    ProgramError,
    UnknownProgramError,
    custom_program,
    find_program,
    load_programs,
    parse_programs,
    program_from_dict,
    season_pay,
    validate_event,
)

NY = ZoneInfo("America/New_York")
HOURS_3 = timedelta(hours=3)


def local(year: int, month: int, day: int, hour: int, minute: int = 0, zone=NY) -> datetime:
    """A local wall-clock time as the UTC instant an event stores."""
    return datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC)


@pytest.fixture
def programs():
    return load_programs()


@pytest.fixture
def cs(programs):
    return programs["ma-connectedsolutions"]


def test_shipped_programs_load_with_their_rules(programs):
    assert set(programs) == {
        "ma-connectedsolutions",
        "ma-connectedsolutions-pa",
        "ma-clean-peak",
        "ca-elrp",
        "bge-v2g-pilot",
    }
    for program in programs.values():
        assert program.pay_rule in PAY_RULES
        assert program.sources, f"{program.id} must say where its numbers come from"


def test_connected_solutions_default_terms_are_the_decks(cs):
    (summer,) = cs.seasons
    assert (summer.start_md, summer.end_md) == ((6, 1), (9, 30))
    assert (summer.window_start, summer.window_end) == (time(15), time(20))
    assert cs.max_event_duration == HOURS_3
    assert (summer.rate("residential"), summer.rate("commercial")) == (275.0, 200.0)
    assert (cs.events_per_season.min, cs.events_per_season.typical) == (30, 45)
    assert cs.events_per_season.max == 60
    assert cs.time_zone == "America/New_York"
    assert cs.notice_lead >= timedelta(hours=12), "day-ahead notice"


def test_connected_solutions_variant_has_the_administrators_terms(programs):
    pa = programs["ma-connectedsolutions-pa"]
    assert pa.season_named("summer").window_start == time(14)
    assert pa.season_named("summer").window_end == time(19)
    assert pa.events_per_season.max == 60
    assert pa.season_named("summer").rate("residential") == 225.0
    assert pa.season_named("winter").rate("residential") == 50.0
    assert validate_event(pa, local(2025, 7, 15, 14), HOURS_3).ok
    assert not validate_event(pa, local(2025, 7, 15, 17), HOURS_3).ok  # ends 20:00 > 19:00


def test_clean_peak_seasonal_windows(programs):
    cp = programs["ma-clean-peak"]
    assert validate_event(cp, local(2025, 4, 10, 17), timedelta(hours=4)).season == "spring"
    assert validate_event(cp, local(2025, 4, 10, 17), timedelta(hours=4)).ok
    assert not validate_event(cp, local(2025, 4, 10, 16), timedelta(hours=4)).ok
    for day in (date(2025, 7, 10), date(2025, 10, 10), date(2026, 1, 10)):
        start = datetime.combine(day, time(16), NY).astimezone(UTC)
        assert validate_event(cp, start, timedelta(hours=4)).ok, day


def test_elrp_is_pacific_with_a_four_hour_window(programs):
    elrp = programs["ca-elrp"]
    la = ZoneInfo("America/Los_Angeles")
    assert validate_event(elrp, local(2025, 8, 20, 16, zone=la), timedelta(hours=4)).ok
    verdict = validate_event(elrp, local(2025, 8, 20, 16, zone=la), timedelta(hours=4, minutes=30))
    assert verdict.problems == ("lasts 4h30m, more than the program's maximum of 4h00m",)
    assert elrp.min_dispatchable_h_per_year == 30


def test_bge_pilot_runs_on_weekdays_only(programs):
    bge = programs["bge-v2g-pilot"]
    assert validate_event(bge, local(2025, 7, 16, 17), timedelta(hours=4)).ok  # Wednesday
    verdict = validate_event(bge, local(2025, 7, 19, 17), timedelta(hours=4))  # Saturday
    assert verdict.problems == ("Saturday 2025-07-19 is not an event day of season 'year'",)


def test_event_outside_the_season_names_the_seasons(cs):
    verdict = validate_event(cs, local(2025, 5, 31, 15), HOURS_3)
    assert verdict.season is None
    assert verdict.problems == (
        "2025-05-31 (America/New_York) is outside every season of 'ma-connectedsolutions': "
        "summer 06-01..09-30 15:00-20:00",
    )
    assert validate_event(cs, local(2025, 6, 1, 15), HOURS_3).ok
    assert validate_event(cs, local(2025, 9, 30, 17), HOURS_3).ok


def test_event_outside_the_window_or_too_long_gets_each_reason(cs):
    verdict = validate_event(cs, local(2025, 7, 1, 14, 30), timedelta(hours=3, minutes=30))
    assert verdict.problems == (
        "lasts 3h30m, more than the program's maximum of 3h00m",
        "starts 14:30 EDT, before the window 15:00-20:00 local (summer)",
    )
    late = validate_event(cs, local(2025, 7, 1, 18), HOURS_3)
    assert late.problems == (
        "ends 2025-07-01 21:00 EDT, after the window 15:00-20:00 local (summer)",
    )
    assert validate_event(cs, local(2025, 7, 1, 17), HOURS_3).ok  # ends exactly at 20:00


def test_event_must_be_positive_and_aware(cs):
    assert validate_event(cs, local(2025, 7, 1, 15), timedelta(0)).problems == (
        "duration 0h00m must be positive",
    )
    with pytest.raises(ProgramError, match="timezone-aware"):
        validate_event(cs, datetime(2025, 7, 1, 19), HOURS_3)


def test_window_on_the_spring_forward_day_follows_the_local_clock(programs):
    """Clean Peak spring window 17-21 on 2025-03-09 (clocks go forward at 02:00 that night)."""
    cp = programs["ma-clean-peak"]
    before, on_the_day = cp.window_on(date(2025, 3, 8)), cp.window_on(date(2025, 3, 9))
    assert before == (datetime(2025, 3, 8, 22, tzinfo=UTC), datetime(2025, 3, 9, 2, tzinfo=UTC))
    assert on_the_day == (
        datetime(2025, 3, 9, 21, tzinfo=UTC),
        datetime(2025, 3, 10, 1, tzinfo=UTC),
    )
    # The same UTC time of day is inside the window after the change and before it the day before.
    assert validate_event(cp, datetime(2025, 3, 9, 21, tzinfo=UTC), timedelta(hours=4)).ok
    early = validate_event(cp, datetime(2025, 3, 8, 21, tzinfo=UTC), timedelta(hours=4))
    assert early.problems[0] == "starts 16:00 EST, before the window 17:00-21:00 local (spring)"


def test_window_on_the_fall_back_day_follows_the_local_clock(programs):
    """Clean Peak fall window 16-20; clocks go back on 2025-11-02."""
    cp = programs["ma-clean-peak"]
    assert validate_event(cp, datetime(2025, 11, 1, 20, tzinfo=UTC), timedelta(hours=4)).ok
    after = validate_event(cp, datetime(2025, 11, 2, 20, tzinfo=UTC), timedelta(hours=4))
    assert after.problems[0] == "starts 15:00 EST, before the window 16:00-20:00 local (fall)"
    assert validate_event(cp, datetime(2025, 11, 2, 21, tzinfo=UTC), timedelta(hours=4)).ok


def test_window_containing_the_clock_change_holds_one_hour_less(programs):
    """A custom night window 01:00-04:00 is only 2 real hours on the spring-forward day."""
    night = dict(_custom(), id="night", time_zone="America/New_York", max_event_duration_min=180)
    night["season"] = [dict(_custom()["season"][0], start="01-01", end="12-31")]
    night["season"][0]["window"] = ["01:00", "04:00"]
    program = program_from_dict(night)
    start = local(2025, 3, 9, 1)
    assert validate_event(program, start, timedelta(hours=2)).ok  # 01:00 EST -> 04:00 EDT
    verdict = validate_event(program, start, timedelta(hours=2, minutes=30))
    assert verdict.problems == (
        "ends 2025-03-09 04:30 EDT, after the window 01:00-04:00 local (all)",
    )
    assert validate_event(program, local(2025, 3, 10, 1), HOURS_3).ok  # a normal day: 3 h


# --- pay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vehicle", "kw", "participant_class", "pay"),
    [
        ("Leaf 40 kWh", 7.6, "residential", 2090.0),
        ("EV9 76.1 kWh (deck's 12.4 kW)", 12.4, "residential", 3410.0),
        ("F-150 98 kWh", 9.6, "residential", 2640.0),
        ("bus 200 kWh on a 44 kW charger", 44.0, "commercial", 8800.0),
    ],
)
def test_connected_solutions_worked_examples(cs, vehicle, kw, participant_class, pay):
    assert season_pay(cs, participant_class, [kw] * 45) == pytest.approx(pay), vehicle


def test_deck_53_kw_bus_row_is_not_what_the_rule_pays(cs):
    pay = season_pay(cs, "commercial", [53.0] * 45)
    assert pay == pytest.approx(10_600.0)
    assert pay != pytest.approx(13_200.0), "the deck's $13,200 is not rate x kW"


def test_average_kw_counts_every_event_and_opt_outs_as_zero(cs):
    events = [7.6] * 44 + [None]
    assert season_pay(cs, "residential", events) == pytest.approx(275 * 7.6 * 44 / 45)
    opted = EventDelivery(7.6, HOURS_3, opted_out=True)
    assert season_pay(cs, "residential", [7.6] * 44 + [opted]) == pytest.approx(275 * 7.6 * 44 / 45)
    assert season_pay(cs, "residential", []) == 0.0


def test_variant_needs_the_season_and_pays_its_rate(programs):
    pa = programs["ma-connectedsolutions-pa"]
    with pytest.raises(ProgramError, match="several seasons"):
        season_pay(pa, "residential", [10.0])
    assert season_pay(pa, "residential", [10.0], season="summer") == pytest.approx(2250.0)
    assert season_pay(pa, "residential", [10.0], season="winter") == pytest.approx(500.0)


def test_elrp_pays_per_kwh(programs):
    elrp = programs["ca-elrp"]
    events = [EventDelivery(50.0, timedelta(hours=4)), EventDelivery(50.0, timedelta(hours=2))]
    assert season_pay(elrp, "commercial", events) == pytest.approx(2.0 * (200 + 100))
    with pytest.raises(ProgramError, match="needs each event's duration"):
        season_pay(elrp, "commercial", [50.0])


def test_bge_pay_is_capped_per_year(programs):
    bge = programs["bge-v2g-pilot"]
    small = [EventDelivery(9.6, timedelta(hours=4))] * 10  # 384 kWh x $0.50
    assert season_pay(bge, "residential", small) == pytest.approx(192.0)
    assert season_pay(bge, "residential", small * 10) == 1000.0


def test_clean_peak_pays_certificates_above_the_baseline(programs):
    cp = programs["ma-clean-peak"]
    event = EventDelivery(50.0, timedelta(hours=4), baseline_kw=10.0)  # 160 kWh above
    assert season_pay(cp, "commercial", [event] * 10, season="summer") == pytest.approx(45 * 1.6)
    below = EventDelivery(5.0, timedelta(hours=4), baseline_kw=10.0)
    assert season_pay(cp, "commercial", [below], season="summer") == 0.0


def test_unknown_participant_class_is_refused(cs):
    with pytest.raises(ProgramError, match="unknown participant class 'industrial'"):
        season_pay(cs, "industrial", [1.0])


def test_every_number_is_editable_data(cs):
    text = _shipped_text().replace("rates = { residential = 275.0", "rates = { residential = 300.0")
    edited = parse_programs(text)["ma-connectedsolutions"]
    assert season_pay(edited, "residential", [10.0]) == pytest.approx(3000.0)
    assert season_pay(cs, "residential", [10.0]) == pytest.approx(2750.0)


# --- custom programs ---------------------------------------------------------------------------


def _custom() -> dict:
    return {
        "id": "my-utility-summer",
        "name": "Operator's summer program",
        "time_zone": "America/Chicago",
        "pay_rule": "average_kw",
        "max_event_duration_min": 120,
        "notice_lead_min": 60,
        "season": [
            {
                "name": "all",
                "start": "06-15",
                "end": "08-31",
                "window": ["16:00", "19:00"],
                "rates": {"residential": 100, "commercial": 80},
            }
        ],
    }


def test_custom_program_is_validated_and_usable(programs):
    program = custom_program(_custom(), programs)
    chicago = ZoneInfo("America/Chicago")
    assert validate_event(program, local(2025, 7, 1, 16, zone=chicago), timedelta(hours=2)).ok
    assert season_pay(program, "commercial", [10.0, 20.0]) == pytest.approx(80 * 15)


def test_custom_program_id_must_be_new(programs):
    with pytest.raises(ProgramError, match="'ma-connectedsolutions' already exists"):
        custom_program(dict(_custom(), id="ma-connectedsolutions"), programs)


def _with(path: tuple, value) -> dict:
    data = copy.deepcopy(_custom())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("time_zone",), "Mars/Olympus", "time_zone 'Mars/Olympus' is not a known IANA zone"),
        (("pay_rule",), "per_smile", "pay_rule 'per_smile' is not one of"),
        (("max_event_duration_min",), 0, "'max_event_duration_min' must be > 0"),
        (("max_event_duration_min",), 240, "longer than season 'all''s window 16:00-19:00"),
        (("colour",), "blue", "unknown field(s) colour"),
        (("season", 0, "window"), ["19:00", "16:00"], "must end after it starts"),
        (("season", 0, "window"), ["16:00", "25:00"], "window bound '25:00'"),
        (("season", 0, "start"), "02-30", "start '02-30' must be a month-day"),
        (("season", 0, "rates"), {"residential": -1}, "rate for residential must be a number >= 0"),
        (("season", 0, "rates"), {"household": 5}, "unknown participant class 'household'"),
        (("season", 0, "weekdays"), [7], "weekdays [7] must be integers 0 (Monday)"),
        (("season",), [], "needs at least one [[season]]"),
        (("events_per_season",), {"min": 5, "typical": 3, "max": 9}, "min <= typical <= max"),
        (("max_event_duration_min",), float("nan"), "must be a finite number of sensible size"),
        (("notice_lead_min",), float("inf"), "must be a finite number of sensible size"),
        (("pay_rule",), ["average_kw"], "pay_rule ['average_kw'] is not one of"),
        (("sources",), "a book", "'sources' must map each field"),
        (("season", 0, "rates"), {"residential": float("nan")}, "rate for residential must be"),
        (("season", 0, "weekdays"), [True], "weekdays [True] must be integers"),
    ],
)
def test_custom_program_errors_name_the_field(path, value, message):
    with pytest.raises(ProgramError, match="my-utility-summer") as info:
        program_from_dict(_with(path, value))
    assert message in str(info.value)


def test_custom_program_seasons_must_not_overlap():
    data = _custom()
    data["season"].append(dict(data["season"][0], name="late", start="08-01", end="09-30"))
    with pytest.raises(ProgramError, match="seasons all and late overlap on 08-01"):
        program_from_dict(data)


def test_custom_program_without_id_is_refused():
    with pytest.raises(ProgramError, match="'id' must be a non-empty string"):
        program_from_dict({k: v for k, v in _custom().items() if k != "id"})


def test_bad_toml_is_a_program_error():
    with pytest.raises(ProgramError, match="not valid TOML"):
        parse_programs("[[program]\n")


# --- ids and aliases ---------------------------------------------------------------------------


def test_design_example_names_connected_solutions_by_its_alias(programs):
    """DESIGN.md §2 posts {"program": "connected-solutions", ...}."""
    assert find_program(programs, "connected-solutions").id == "ma-connectedsolutions"
    assert find_program(programs, "ma-connectedsolutions").id == "ma-connectedsolutions"
    assert find_program(programs, "Clean-Peak").id == "ma-clean-peak"
    assert find_program(programs, "elrp").id == "ca-elrp"
    for program in programs.values():
        assert program.aliases, f"{program.id} has a short name too"
        for alias in program.aliases:
            assert find_program(programs, alias) is program


def test_unknown_program_lists_the_known_ids_and_aliases(programs):
    with pytest.raises(UnknownProgramError) as info:
        find_program(programs, "connected-solution")
    assert isinstance(info.value, LookupError) and isinstance(info.value, ProgramError)
    message = str(info.value)
    assert "unknown program 'connected-solution'" in message
    assert "ma-connectedsolutions (connected-solutions)" in message
    assert "ca-elrp (elrp)" in message


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ("mine", "'aliases' must be a list of names"),
        (["Has Space"], "alias(es) 'Has Space' must be lowercase"),
        (["my-utility-summer"], "aliases must differ from the id and from each other"),
        (["a", "a"], "aliases must differ from the id and from each other"),
    ],
)
def test_aliases_are_validated(aliases, message):
    with pytest.raises(ProgramError, match="my-utility-summer") as info:
        program_from_dict(dict(_custom(), aliases=aliases))
    assert message in str(info.value)


def test_program_id_must_be_url_safe():
    with pytest.raises(ProgramError, match="'id' must be lowercase letters"):
        program_from_dict(dict(_custom(), id="My Program"))
    with pytest.raises(ProgramError, match="at most 64 characters"):
        program_from_dict(dict(_custom(), id="x" * 65))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "elrp"}, "name 'elrp' is already an alias of program 'ca-elrp'"),
        ({"aliases": ["clean-peak"]}, "name 'clean-peak' is already an alias of program"),
        ({"aliases": ["ca-elrp"]}, "name 'ca-elrp' is already the id of program 'ca-elrp'"),
        ({"id": "ca-elrp"}, "program 'ca-elrp' already exists"),
    ],
)
def test_custom_names_must_not_clash_with_any_program(programs, changes, message):
    with pytest.raises(DuplicateProgramError) as info:
        custom_program(dict(_custom(), **changes), programs)
    assert message in str(info.value)


def test_a_shipped_alias_may_not_name_another_program():
    text = _shipped_text().replace('aliases = ["elrp"]', 'aliases = ["clean-peak"]')
    with pytest.raises(DuplicateProgramError, match="'clean-peak' is already an alias"):
        parse_programs(text)


def test_definition_round_trips_every_program(programs):
    for program in [*programs.values(), custom_program(_custom(), programs)]:
        assert program_from_dict(program.definition()) == program
    assert programs["ma-connectedsolutions"].definition()["aliases"] == ["connected-solutions"]


def _shipped_text() -> str:
    from importlib import resources

    return resources.files("csms.scheduler").joinpath("data/programs.toml").read_text("utf-8")
