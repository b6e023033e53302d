"""/api/v1/events/{id}/report, /api/v1/telemetry and /api/v1/programs/{id}/performance against
the real running API port, on SQLite and PostgreSQL: the report contract's shape and numbers,
CSV forms, and the 4xx answers to unknown ids and bad dates."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from csms.scheduler.reports import PARTICIPANT_CSV_FIELDS
from csms.store.models import EventPlan, MeterSample, Notification, Station
from simclock import iso
from tests.scheduler.test_settlement import (
    T0,
    add_event,
    add_participant,
    at,
    insert,
    registers,
    transaction,
)

CONTRACT_EVENT_KEYS = {
    "id", "program", "program_name", "state", "start", "end", "time_zone", "interval_s",
    "committed_kw", "delivered_kw", "exported_kwh", "delivery_ratio", "plan_revisions",
    "settled_at", "restatements", "restated_at", "restated",
}  # fmt: skip
CONTRACT_PARTICIPANT_KEYS = {
    "enrollment_id", "participant", "participant_class", "vehicle_id", "ev_model", "station_id",
    "evse_id", "status", "reason", "notified_at", "opted_out", "opted_out_at", "min_soc_pct",
    "soc_start_pct", "soc_end_pct", "min_soc_seen_pct", "floor_violated", "exported_kwh",
    "imported_kwh", "delivered_kwh", "average_kw", "counted_kw", "pay_usd", "soc_series",
}  # fmt: skip
CONTRACT_TOTALS_KEYS = {
    "participants", "notified_before_start", "opt_outs", "soc_floor_violations", "pay_usd",
}  # fmt: skip


@pytest.fixture
async def api(csms) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api_port}", timeout=30) as c:
        yield c


async def _completed_event(csms) -> dict[str, int]:
    """A one-hour ConnectedSolutions event (15-minute intervals): Ana exports 6 kW throughout
    (SoC 80 % falling 0.5 a minute), notified the day before; Bo opted out, was notified only
    after the start, and sent no samples. Two plan revisions, the second from 19:30."""
    services = csms.services
    rows: list[MeterSample] = []
    for minute in range(-1, 62):
        rows += registers("ANA", at(minute), 100.0 * minute + 100.0, 0.0, 80 - minute * 0.5)
    await insert(services, *rows)
    async with transaction(services) as db:  # the events service settles what it sees
        event = await add_event(db, committed_kw=10.0)
        ana, _ = await add_participant(db, event, "ANA", min_soc_pct=30)
        bo, _ = await add_participant(db, event, "BO", status="opted_out", opted_out_at=at(10))
    starts = [iso(at(m)) for m in (0, 15, 30, 45)]
    await insert(
        services,
        EventPlan(
            event_id=event.id or 0,
            revision=1,
            committed_kw=10.0,
            interval_starts=starts,
            allocation={str(ana.id): [5.0] * 4, str(bo.id): [3.0] * 4},
            created_at=T0 - timedelta(hours=18),
        ),
        EventPlan(
            event_id=event.id or 0,
            revision=2,
            reason="opt-out",
            committed_kw=10.0,
            interval_starts=starts,
            allocation={str(ana.id): [5.0, 5.0, 6.5, 6.5], str(bo.id): [0.0] * 4},
            created_at=at(20),
        ),
    )
    for enrollment, created in ((ana, T0 - timedelta(hours=18)), (bo, at(5))):
        await insert(
            services,
            Notification(
                enrollment_id=enrollment.id or 0,
                participant=enrollment.participant,
                event_id=event.id,
                kind="event-scheduled",
                body={},
                created_at=created,
            ),
        )
    return {"event": event.id or 0, "ana": ana.id or 0, "bo": bo.id or 0}


async def test_report_of_a_completed_event_settles_it_and_follows_the_contract(csms, api) -> None:
    ids = await _completed_event(csms)
    answer = await api.get(f"/api/v1/events/{ids['event']}/report")
    assert answer.status_code == 200, answer.text
    report = answer.json()

    event = report["event"]
    assert set(event) >= CONTRACT_EVENT_KEYS
    assert (event["id"], event["program"], event["state"]) == (
        ids["event"],
        "ma-connectedsolutions",
        "completed",
    )
    assert (event["start"], event["end"]) == ("2026-07-15T19:00:00Z", "2026-07-15T20:00:00Z")
    assert event["program_name"] == "MA ConnectedSolutions daily dispatch"
    assert event["delivered_kw"] == pytest.approx(6.0)
    assert event["exported_kwh"] == pytest.approx(6.0)
    assert event["delivery_ratio"] == pytest.approx(0.6)
    assert event["plan_revisions"] == 2
    assert event["settled_at"].endswith("Z") and event["restated"] is False

    assert [i["start"] for i in report["intervals"]] == [iso(at(m)) for m in (0, 15, 30, 45)]
    assert [i["committed_kw"] for i in report["intervals"]] == [10.0] * 4
    # Revision 2 was made at 19:20: in force from the 19:30 interval on.
    assert [i["planned_kw"] for i in report["intervals"]] == [8.0, 8.0, 6.5, 6.5]
    assert [i["delivered_kw"] for i in report["intervals"]] == [pytest.approx(6.0)] * 4

    ana, bo = report["participants"]
    assert set(ana) >= CONTRACT_PARTICIPANT_KEYS
    assert set(PARTICIPANT_CSV_FIELDS) | {"soc_series"} == set(ana)
    assert (ana["enrollment_id"], ana["station_id"], ana["ev_model"]) == (
        ids["ana"],
        "ANA",
        "nissan-leaf-40",
    )
    assert ana["exported_kwh"] == pytest.approx(6.0) and ana["imported_kwh"] == 0.0
    assert ana["average_kw"] == pytest.approx(6.0) and ana["counted_kw"] == pytest.approx(6.0)
    assert (ana["soc_start_pct"], ana["soc_end_pct"]) == (80.0, 50.0)
    assert ana["floor_violated"] is False
    assert ana["pay_usd"] == pytest.approx(275.0 * 6.0)
    assert ana["soc_series"][0] == ["2026-07-15T19:00:00Z", 80.0] and len(ana["soc_series"]) == 61
    assert bo["opted_out"] is True and bo["counted_kw"] == 0.0 and bo["pay_usd"] == 0.0
    assert (
        bo["delivered_kwh"] is None
        and "settlement: export register at start unknown" in (bo["reason"])
    )

    assert set(report["totals"]) >= CONTRACT_TOTALS_KEYS
    assert report["totals"] == {
        "participants": 2,
        "notified_before_start": 1,
        "opt_outs": 1,
        "soc_floor_violations": 0,
        "pay_usd": pytest.approx(1650.0),
    }


async def test_report_as_csv_lists_participants_then_intervals(csms, api) -> None:
    ids = await _completed_event(csms)
    answer = await api.get(f"/api/v1/events/{ids['event']}/report", params={"format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert f'filename="event-{ids["event"]}-report.csv"' in answer.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(answer.text)))
    assert lines[0] == list(PARTICIPANT_CSV_FIELDS) and "soc_series" not in lines[0]
    assert [line[0] for line in lines[1:3]] == [str(ids["ana"]), str(ids["bo"])]
    ana = dict(zip(lines[0], lines[1], strict=True))
    assert (ana["station_id"], float(ana["counted_kw"]), ana["opted_out"]) == ("ANA", 6.0, "false")
    assert lines[3] == []
    assert lines[4] == ["start", "end", "committed_kw", "planned_kw", "delivered_kw"]
    assert lines[5][:2] == ["2026-07-15T19:00:00Z", "2026-07-15T19:15:00Z"]
    assert len(lines) == 9


async def test_report_of_an_unknown_event_is_404(api) -> None:
    answer = await api.get("/api/v1/events/7/report")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "no event 7"}


async def test_telemetry_refuses_bad_dates_and_ranges_with_the_reason(csms, api) -> None:
    await insert(csms.services, Station(id="CP-1"))
    bad = await api.get("/api/v1/telemetry", params={"from": "yesterday"})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("from: not an ISO-8601 instant: 'yesterday'")
    naive = await api.get("/api/v1/telemetry", params={"to": "2026-07-15T10:00:00"})
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"]
    backwards = await api.get(
        "/api/v1/telemetry", params={"from": "2026-07-15T11:00:00Z", "to": "2026-07-15T10:00:00Z"}
    )
    assert backwards.status_code == 422 and "must end after it starts" in backwards.json()["detail"]
    too_long = await api.get(
        "/api/v1/telemetry", params={"from": "2026-06-01T00:00:00Z", "to": "2026-07-15T00:00:00Z"}
    )
    assert too_long.status_code == 422 and "at most 31 days" in too_long.json()["detail"]
    unknown = await api.get("/api/v1/telemetry", params={"station_id": "CP-404"})
    assert unknown.status_code == 404 and unknown.json() == {"detail": "unknown station 'CP-404'"}


async def test_telemetry_json_and_csv_of_stored_samples(csms, api) -> None:
    rows: list[MeterSample] = []
    for minute in range(0, 31):
        rows += registers("CP-2", at(minute), 0.0, 200.0 * minute, 40 + minute * 0.5)
    await insert(csms.services, Station(id="CP-2"), *rows)
    params = {"station_id": "CP-2", "from": iso(T0), "to": iso(T0 + timedelta(minutes=30))}
    answer = await api.get("/api/v1/telemetry", params=params)
    assert answer.status_code == 200, answer.text
    first, second = answer.json()
    assert (first["interval_start"], first["interval_end"]) == (
        "2026-07-15T19:00:00Z",
        "2026-07-15T19:15:00Z",
    )
    assert first["energy_import_kwh"] == pytest.approx(3.0) and first["power_kw"] == pytest.approx(
        12.0
    )
    assert second["soc_pct"] == pytest.approx(40 + 29 * 0.5)

    as_csv = await api.get("/api/v1/telemetry", params={**params, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment; filename=" in as_csv.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(as_csv.text)))
    assert lines[0][:3] == ["station_id", "evse_id", "interval_start"] and len(lines) == 3

    default = await api.get("/api/v1/telemetry")  # the last 24 h of the clock: nothing then
    assert default.status_code == 200 and default.json() == []


async def test_program_performance_of_a_season(csms, api) -> None:
    ids = await _completed_event(csms)
    answer = await api.get(
        "/api/v1/programs/ma-connectedsolutions/performance",
        params={"year": 2026, "season": "summer"},
    )
    assert answer.status_code == 200, answer.text
    season = answer.json()
    assert (season["program_id"], season["year"], season["season"]) == (
        "ma-connectedsolutions",
        2026,
        "summer",
    )
    assert [e["event_id"] for e in season["events"]] == [ids["event"]]
    by_id = {p["enrollment_id"]: p for p in season["participants"]}
    assert by_id[ids["ana"]]["average_kw"] == pytest.approx(6.0)
    assert by_id[ids["ana"]]["pay_usd"] == pytest.approx(1650.0)
    assert by_id[ids["bo"]]["opt_outs"] == 1 and by_id[ids["bo"]]["pay_usd"] == 0.0
    assert season["pay_usd"] == pytest.approx(1650.0)
    assert (await api.get("/api/v1/programs/ma-connectedsolutions/performance")).status_code == 200


async def test_program_performance_by_alias_is_the_programs(csms, api) -> None:
    ids = await _completed_event(csms)
    answer = await api.get(
        "/api/v1/programs/connected-solutions/performance",
        params={"year": 2026, "season": "summer"},
    )
    assert answer.status_code == 200, answer.text
    season = answer.json()
    assert season["program_id"] == "ma-connectedsolutions"
    assert [e["event_id"] for e in season["events"]] == [ids["event"]]
    assert season["pay_usd"] == pytest.approx(1650.0)


async def test_program_performance_refuses_unknown_programs_and_seasons(api) -> None:
    unknown = await api.get("/api/v1/programs/nope/performance", params={"season": "summer"})
    assert unknown.status_code == 404 and unknown.json() == {"detail": "no program 'nope'"}
    season = await api.get(
        "/api/v1/programs/ma-connectedsolutions/performance", params={"season": "monsoon"}
    )
    assert season.status_code == 422 and "has no season 'monsoon'" in season.json()["detail"]
    several = await api.get("/api/v1/programs/ma-clean-peak/performance")
    assert several.status_code == 422 and "pass ?season=" in several.json()["detail"]
    year = await api.get(
        "/api/v1/programs/ma-connectedsolutions/performance", params={"year": "soon"}
    )
    assert year.status_code == 422
