"""/api/v1 vehicles, enrollments, programs and notifications over HTTP against a running CSMS
(SQLite and PostgreSQL): bad input gets a 4xx with the reason, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.scheduler.test_notify import Receiver

NEW_PROGRAM = {
    "id": "coop-summer",
    "aliases": ["coop"],
    "name": "Rural co-op summer peaks",
    "time_zone": "America/Chicago",
    "pay_rule": "average_kw",
    "max_event_duration_min": 120,
    "season": [
        {
            "name": "summer",
            "start": "06-15",
            "end": "09-15",
            "window": ["16:00", "19:00"],
            "rates": {"residential": 120, "commercial": 90},
        }
    ],
}


@pytest.fixture
async def api(csms) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api_port}", timeout=30) as c:
        yield c


def enrolment(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "participant": "Ana Silva",
        "participant_class": "residential",
        "vehicle_model": "nissan-leaf-40",
        "station_id": "ARA-1",
        "evse_model": "dcbel-ara",
        "programs": ["connected-solutions"],
        "min_soc_pct": 40,
        "departure_time": "07:30",
    }
    body.update(fields)
    return body


async def wait_for_status(api: httpx.AsyncClient, enrollment_id: int, status: str) -> dict:
    """Poll until the enrolment's first notification has this status (hang guard 20 s)."""
    async with asyncio.timeout(20):
        while True:
            found = (await api.get(f"/api/v1/notifications?enrollment_id={enrollment_id}")).json()
            if found and found[0]["status"] == status:
                return found[0]
            await asyncio.sleep(0.05)


# ---- programs -------------------------------------------------------------------------------


async def test_programs_list_shipped_with_aliases_seasons_windows_rates_zone(api) -> None:
    response = await api.get("/api/v1/programs")
    assert response.status_code == 200
    programs = {p["id"]: p for p in response.json()}
    assert set(programs) == {
        "ma-connectedsolutions",
        "ma-connectedsolutions-pa",
        "ma-clean-peak",
        "ca-elrp",
        "bge-v2g-pilot",
    }
    cs = programs["ma-connectedsolutions"]
    assert cs["aliases"] == ["connected-solutions"] and cs["custom"] is False
    assert cs["time_zone"] == "America/New_York" and cs["pay_rule"] == "average_kw"
    [summer] = cs["season"]
    assert (summer["start"], summer["end"], summer["window"]) == (
        "06-01",
        "09-30",
        ["15:00", "20:00"],
    )
    assert summer["rates"] == {"commercial": 200.0, "residential": 275.0}
    assert cs["max_event_duration_min"] == 180 and cs["events_per_season"]["typical"] == 45
    by_alias = await api.get("/api/v1/programs/connected-solutions")
    assert by_alias.status_code == 200 and by_alias.json() == cs
    missing = await api.get("/api/v1/programs/nope")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("unknown program 'nope'; known: ma-connected")


async def test_a_custom_program_is_created_listed_and_refused_twice(api) -> None:
    created = await api.post("/api/v1/programs", json=NEW_PROGRAM)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["id"], body["aliases"], body["custom"]) == ("coop-summer", ["coop"], True)
    assert body["season"][0]["weekdays"] == [0, 1, 2, 3, 4, 5, 6]
    assert (await api.get("/api/v1/programs/coop")).json() == body
    assert [p["id"] for p in (await api.get("/api/v1/programs")).json()][-1] == "coop-summer"
    again = await api.post("/api/v1/programs", json=NEW_PROGRAM)
    assert again.status_code == 409
    assert again.json() == {"detail": "program 'coop-summer' already exists"}
    clash = await api.post("/api/v1/programs", json={**NEW_PROGRAM, "id": "x", "aliases": ["elrp"]})
    assert clash.status_code == 409 and "already an alias of program 'ca-elrp'" in clash.text


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({**NEW_PROGRAM, "pay_rule": "per_smile"}, "pay_rule 'per_smile' is not one of"),
        ({**NEW_PROGRAM, "max_event_duration_min": 240}, "longer than season 'summer''s window"),
        ({**NEW_PROGRAM, "colour": "blue"}, "unknown field(s) colour"),
        ({k: v for k, v in NEW_PROGRAM.items() if k != "id"}, "'id' must be a non-empty string"),
    ],
)
async def test_an_invalid_custom_program_gets_422_naming_the_field(
    api, definition, message
) -> None:
    response = await api.post("/api/v1/programs", json=definition)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_a_program_body_that_is_not_an_object_is_422(api) -> None:
    for body in ([NEW_PROGRAM], "coop", None):
        response = await api.post("/api/v1/programs", json=body)
        assert response.status_code == 422, body


# ---- vehicles -------------------------------------------------------------------------------


async def test_vehicles_are_registered_with_their_model_facts(api) -> None:
    first = await api.post("/api/v1/vehicles", json={"ev_model": "kia-ev9-76", "label": "Bob"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["id"], body["ev_name"], body["usable_capacity_kwh"]) == (
        "kia-ev9-76-1",
        "Kia EV9 76.1 kWh",
        76.1,
    )
    assert (body["label"], body["bms_min_soc_pct"]) == ("Bob", 10.0)
    assert body["matched_evse_models"] == ["wallbox-quasar-2"] and body["bidirectional"]
    second = await api.post("/api/v1/vehicles", json={"ev_model": "kia-ev9-76"})
    assert second.json()["id"] == "kia-ev9-76-2"
    named = await api.post("/api/v1/vehicles", json={"id": "bus-7", "ev_model": "thomas-built-246"})
    assert named.status_code == 201 and named.json()["usable_capacity_kwh"] == 246.0
    assert [v["id"] for v in (await api.get("/api/v1/vehicles")).json()] == [
        "bus-7",
        "kia-ev9-76-1",
        "kia-ev9-76-2",
    ]
    assert (await api.get("/api/v1/vehicles/bus-7")).json() == named.json()


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"ev_model": "tesla-model-t"}, 404, "unknown EV model 'tesla-model-t'; known:"),
        ({"id": "bad id!", "ev_model": "kia-ev9-76"}, 422, None),
        ({"ev_model": "kia-ev9-76", "wheels": 4}, 422, None),
        ({}, 422, None),
    ],
)
async def test_bad_vehicles_are_refused(api, body, status, detail) -> None:
    response = await api.post("/api/v1/vehicles", json=body)
    assert response.status_code == status
    assert "detail" in response.json()
    if detail:
        assert response.json()["detail"].startswith(detail)


async def test_a_vehicle_id_is_taken_once_and_unknown_ones_are_404(api) -> None:
    assert (
        await api.post("/api/v1/vehicles", json={"id": "v1", "ev_model": "polestar-3"})
    ).is_success
    again = await api.post("/api/v1/vehicles", json={"id": "v1", "ev_model": "polestar-3"})
    assert again.status_code == 409 and again.json() == {"detail": "vehicle 'v1' already exists"}
    missing = await api.get("/api/v1/vehicles/nope")
    assert missing.status_code == 404 and missing.json() == {"detail": "unknown vehicle 'nope'"}


# ---- enrollments and notifications ----------------------------------------------------------


async def test_enrolment_over_rest_tells_the_participant_on_their_webhook(api) -> None:
    async with Receiver() as receiver:
        response = await api.post("/api/v1/enrollments", json=enrolment(webhook_url=receiver.url))
        assert response.status_code == 201, response.text
        row = response.json()
        told = await wait_for_status(api, row["id"], "delivered")
    assert row["programs"] == ["ma-connectedsolutions"] and row["active"]
    assert (row["vehicle_id"], row["time_zone"]) == ("ana-silva-nissan-leaf-40", "America/New_York")
    assert (told["kind"], told["channels"], told["attempts"]) == ("enrolled", ["webhook"], 1)
    [(_, _, _, message)] = receiver.requests
    assert message["kind"] == "enrolled" and message["enrollment_id"] == row["id"]
    assert message["body"]["programs"][0]["id"] == "ma-connectedsolutions"
    assert (await api.get(f"/api/v1/enrollments/{row['id']}")).json() == row
    vehicle = (await api.get(f"/api/v1/vehicles/{row['vehicle_id']}")).json()
    assert vehicle["ev_model"] == "nissan-leaf-40"


async def test_enrolment_refusals_over_rest(api) -> None:
    unmatched = await api.post("/api/v1/enrollments", json=enrolment(evse_model="heliox-44"))
    assert unmatched.status_code == 422
    assert unmatched.json()["detail"] == (
        "cannot enrol nissan-leaf-40 on heliox-44: unmatched pair: Nissan LEAF 40 kWh may "
        "discharge only on dcbel-ara, not on 'heliox-44'; it may still charge there"
    )
    unknown = await api.post("/api/v1/enrollments", json=enrolment(evse_model=None))
    assert unknown.status_code == 404 and "unknown station 'ARA-1'" in unknown.json()["detail"]
    program = await api.post("/api/v1/enrollments", json=enrolment(programs=["cs"]))
    assert program.status_code == 404 and "unknown program 'cs'" in program.json()["detail"]
    floor = await api.post("/api/v1/enrollments", json=enrolment(min_soc_pct=101))
    assert floor.status_code == 422 and floor.json()["detail"][0]["loc"] == ["body", "min_soc_pct"]
    hook = await api.post("/api/v1/enrollments", json=enrolment(webhook_url="mailto:a@b.c"))
    assert hook.status_code == 422 and "http:// or https://" in hook.text
    assert (await api.post("/api/v1/enrollments", json=enrolment())).status_code == 201
    busy = await api.post("/api/v1/enrollments", json=enrolment(vehicle_model="volvo-ex90"))
    assert busy.status_code == 409 and "already has active enrolment" in busy.json()["detail"]


async def test_enrollments_are_listed_filtered_and_withdrawn(api) -> None:
    one = (await api.post("/api/v1/enrollments", json=enrolment())).json()
    two = (
        await api.post(
            "/api/v1/enrollments",
            json=enrolment(
                participant="Bus depot",
                participant_class="commercial",
                vehicle_model="thomas-built-246",
                station_id="DEPOT-1",
                evse_model="heliox-44",
                programs=["elrp", "connected-solutions"],
                min_soc_pct=20,
            ),
        )
    ).json()
    assert two["programs"] == ["ca-elrp", "ma-connectedsolutions"]
    assert two["time_zone"] == "America/Los_Angeles"  # the first program's zone
    listed = (await api.get("/api/v1/enrollments")).json()
    assert [e["id"] for e in listed] == [one["id"], two["id"]]
    elrp = (await api.get("/api/v1/enrollments?program=ca-elrp")).json()
    assert [e["id"] for e in elrp] == [two["id"]]
    depot = (await api.get("/api/v1/enrollments?station_id=DEPOT-1")).json()
    assert [e["id"] for e in depot] == [two["id"]]
    gone = await api.delete(f"/api/v1/enrollments/{one['id']}")
    assert gone.status_code == 200
    assert gone.json()["active"] is False and gone.json()["withdrawn_at"] is not None
    active = (await api.get("/api/v1/enrollments?active=true")).json()
    assert [e["id"] for e in active] == [two["id"]]
    told = (await api.get(f"/api/v1/notifications?enrollment_id={one['id']}")).json()
    assert [n["kind"] for n in told] == ["enrolled", "withdrawn"]
    assert all(n["status"] == "recorded" for n in told)  # no channel: a record only
    kinds = (await api.get("/api/v1/notifications?kind=withdrawn")).json()
    assert [n["enrollment_id"] for n in kinds] == [one["id"]]
    assert (await api.get("/api/v1/notifications?event_id=5")).json() == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/enrollments/999", 404),
        ("DELETE", "/api/v1/enrollments/999", 404),
        ("GET", "/api/v1/enrollments/abc", 422),
        ("GET", "/api/v1/enrollments/99999999999999999999", 422),
        ("DELETE", "/api/v1/enrollments/0", 422),
        ("GET", "/api/v1/notifications?enrollment_id=99999999999", 422),
        ("GET", "/api/v1/notifications?limit=0", 422),
        ("GET", "/api/v1/enrollments?active=maybe", 422),
    ],
)
async def test_bad_ids_and_queries_are_4xx_not_500(api, method, path, status) -> None:
    response = await api.request(method, path)
    assert response.status_code == status
    assert "detail" in response.json()


async def test_the_routes_are_in_the_openapi_document(api) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/vehicles",
        "/api/v1/vehicles/{vehicle_id}",
        "/api/v1/enrollments",
        "/api/v1/enrollments/{enrollment_id}",
        "/api/v1/programs",
        "/api/v1/programs/{program_id}",
        "/api/v1/notifications",
    ):
        assert path in paths, path
    assert set(paths["/api/v1/enrollments/{enrollment_id}"]) == {"get", "delete"}
