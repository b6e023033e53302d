"""/api/v1/events over HTTP against a running CSMS (SQLite and PostgreSQL): the program's rules
are checked in one place, bad input gets a 4xx with the reason, and the life cycle's requests
(opt-out, cancel) answer by state. The event itself runs in the e2e tests and the demo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.test_enrolments import enrolment

# A real-time clock in November: a ConnectedSolutions event must be next summer, 3-8 pm Boston.
SUMMER_3PM = "2027-07-14T19:00:00Z"


@pytest.fixture
async def api(csms) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api_port}", timeout=30) as c:
        yield c


def event(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "program": "connected-solutions",
        "start": SUMMER_3PM,
        "duration_minutes": 180,
    }
    body.update(fields)
    return body


async def test_event_is_created_scheduled_with_the_programs_notice_lead(api) -> None:
    r = await api.post("/api/v1/events", json=event())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["program"] == "ma-connectedsolutions"  # the alias resolves to the id
    assert body["state"] == "scheduled"
    assert body["end"] == "2027-07-14T22:00:00Z"
    assert body["notify_at"] == "2027-07-14T01:00:00Z"  # 18 h ahead: 9 pm the night before
    assert body["closed_loop"] is True and body["reserve_pct"] == 3.0
    listed = (await api.get("/api/v1/events")).json()
    assert [e["id"] for e in listed] == [body["id"]]
    detail = (await api.get(f"/api/v1/events/{body['id']}")).json()
    assert detail["participants"] == []


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"program": "no-such"}, 404, "no-such"),
        ({"start": "2027-07-14T12:00:00Z"}, 422, "window"),  # 8 am local
        ({"start": "2027-12-14T19:00:00Z"}, 422, "season"),
        ({"duration_minutes": 240}, 422, "maximum of 3h00m"),
        ({"start": "2020-07-14T19:00:00Z"}, 422, "not after now"),
        ({"start": "2027-07-14T19:00:00"}, 422, "time zone"),
        ({"duration_minutes": -5}, 422, "duration_minutes"),
        ({"target_kw": 0}, 422, "target_kw"),
        ({"reserve_pct": 80}, 422, "reserve_pct"),
        ({"colour": "red"}, 422, "colour"),
    ],
)
async def test_bad_events_are_refused_with_the_reason(api, fields, status, words) -> None:
    r = await api.post("/api/v1/events", json=event(**fields))
    assert r.status_code == status, r.text
    assert words in r.text


async def test_overlapping_events_conflict(api) -> None:
    assert (await api.post("/api/v1/events", json=event())).status_code == 201
    r = await api.post(
        "/api/v1/events", json=event(start="2027-07-14T20:00:00Z", duration_minutes=60)
    )
    assert r.status_code == 409 and "overlaps event" in r.json()["detail"]


async def test_opt_out_before_the_event_leaves_the_vehicle_out(api) -> None:
    enrolled = await api.post("/api/v1/enrollments", json=enrolment())
    assert enrolled.status_code == 201, enrolled.text
    eid = enrolled.json()["id"]
    created = (await api.post("/api/v1/events", json=event())).json()
    r = await api.post(f"/api/v1/events/{created['id']}/opt-outs", json={"enrollment_id": eid})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "opted_out" and r.json()["opted_out_at"]
    again = await api.post(f"/api/v1/events/{created['id']}/opt-outs", json={"enrollment_id": eid})
    assert again.status_code == 201 and again.json()["status"] == "opted_out"  # idempotent
    detail = (await api.get(f"/api/v1/events/{created['id']}")).json()
    assert [p["status"] for p in detail["participants"]] == ["opted_out"]
    kinds = [
        n["kind"] for n in (await api.get(f"/api/v1/notifications?enrollment_id={eid}")).json()
    ]
    assert "opted-out" in kinds


async def test_opt_out_names_what_is_wrong(api) -> None:
    created = (await api.post("/api/v1/events", json=event())).json()
    unknown = await api.post(f"/api/v1/events/{created['id']}/opt-outs", json={"enrollment_id": 99})
    assert unknown.status_code == 404 and "no enrollment 99" in unknown.text
    no_event = await api.post("/api/v1/events/999/opt-outs", json={"enrollment_id": 1})
    assert no_event.status_code == 404 and "no event 999" in no_event.text
    bad = await api.post(f"/api/v1/events/{created['id']}/opt-outs", json={"enrollment": 1})
    assert bad.status_code == 422


async def test_cancel_ends_an_open_event_once(api) -> None:
    created = (await api.post("/api/v1/events", json=event())).json()
    r = await api.delete(f"/api/v1/events/{created['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert r.json()["cancelled_at"] is not None
    again = await api.delete(f"/api/v1/events/{created['id']}")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    # A cancelled event no longer blocks its window.
    assert (await api.post("/api/v1/events", json=event())).status_code == 201


async def test_withdrawing_an_enrolment_leaves_its_open_events(api) -> None:
    eid = (await api.post("/api/v1/enrollments", json=enrolment())).json()["id"]
    # A notice lead longer than the wait: the participant is notified at once.
    created = (await api.post("/api/v1/events", json=event(notice_minutes=10**6))).json()
    async with asyncio.timeout(20):
        while (await api.get(f"/api/v1/events/{created['id']}")).json()["state"] != "notified":  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(0.2)
    detail = (await api.get(f"/api/v1/events/{created['id']}")).json()
    assert [p["status"] for p in detail["participants"]] == ["eligible"]
    assert detail["participants"][0]["notified_at"] is not None
    assert (await api.delete(f"/api/v1/enrollments/{eid}")).status_code == 200
    detail = (await api.get(f"/api/v1/events/{created['id']}")).json()
    assert [p["status"] for p in detail["participants"]] == ["opted_out"]
