"""/api/v1/stations against the real running API port, with real test stations."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from ocpp.routing import on
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from sqlalchemy.orm import Session
from sqlmodel import select

from csms.store.models import ChargingProfileRecord, ConnectorStatus, MeterSample, Station
from tests.commands.helpers import (
    CommandStation21,
    CommandStation201,
    boot,
    charging_profile,
    discharge_profile_21,
    negative_limit_profile_201,
    received,
    seed_needs,
    seed_transaction,
)
from tests.stations import connected


@pytest.fixture
async def api(csms) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api_port}", timeout=30) as c:
        yield c


@pytest.fixture
async def api_sqlite(csms_sqlite) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{csms_sqlite.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        yield c


async def _records(csms: Any, station_id: str) -> list[ChargingProfileRecord]:
    async with csms.services.db.read() as session:
        query = (
            select(ChargingProfileRecord)
            .where(ChargingProfileRecord.station_id == station_id)
            .order_by(ChargingProfileRecord.id)
        )
        return list((await session.execute(query)).scalars())


# ---- the acceptance cases of issue 3 -----------------------------------------------------


async def test_Q03_discharge_profile_reaches_a_21_station_whose_ev_offered_dc_bpt(
    csms, api
) -> None:
    async with connected(csms, "CP-V2G21", station_class=CommandStation21) as station:
        await boot(station)
        await seed_needs(csms, "CP-V2G21", 1, requested="DC_BPT", available=["DC", "DC_BPT"])
        await seed_transaction(csms, "CP-V2G21", 1, "tx-v2g-1")
        response = await api.post(
            "/api/v1/stations/CP-V2G21/charging-profiles", json=discharge_profile_21("tx-v2g-1")
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "Accepted" and body["record_id"] is not None
        [got] = received(station, "SetChargingProfile")
        period = got["charging_profile"]["charging_schedule"][0]["charging_schedule_period"][0]
        assert (period["setpoint"], period["operation_mode"]) == (-7000.0, "CentralSetpoint")
        assert got["charging_profile"]["transaction_id"] == "tx-v2g-1"
        station.profile_status = "Rejected"
        again = await api.post(
            "/api/v1/stations/CP-V2G21/charging-profiles", json=discharge_profile_21("tx-v2g-1")
        )
        assert again.status_code == 200 and again.json()["status"] == "Rejected"
    [first, second] = await _records(csms, "CP-V2G21")
    assert (first.status, first.discharges, first.origin) == ("Accepted", True, "api")
    assert second.status == "Rejected"


async def test_Q03_e2e_discharge_after_real_transaction_event_and_ev_needs(csms, api) -> None:
    """The same acceptance case driven by the station's own messages (E01, K15/Q01)."""
    async with connected(csms, "CP-E2E", station_class=CommandStation21) as station:
        await boot(station)
        started = await station.call(
            call21.TransactionEvent(
                event_type="Started",
                timestamp="2026-07-15T18:55:00Z",
                trigger_reason="CablePluggedIn",
                seq_no=0,
                transaction_info={"transaction_id": "tx-e2e", "charging_state": "EVConnected"},
                evse={"id": 1, "connector_id": 1},
            )
        )
        assert started is not None
        url = "/api/v1/stations/CP-E2E/charging-profiles"
        before_needs = await api.post(url, json=discharge_profile_21("tx-e2e"))
        assert before_needs.status_code == 403
        needs = await station.call(
            call21.NotifyEVChargingNeeds(
                evse_id=1,
                charging_needs={
                    "requested_energy_transfer": "DC_BPT",
                    "available_energy_transfer": ["DC", "DC_BPT"],
                    "control_mode": "DynamicControl",
                },
            )
        )
        assert needs.status == "Accepted"
        response = await api.post(url, json=discharge_profile_21("tx-e2e"))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "Accepted"
        assert len(received(station, "SetChargingProfile")) == 1


async def test_K01_201_negative_limit_reaches_a_station_marked_by_the_operator(csms, api) -> None:
    async with connected(csms, "CP-V2G201", "2.0.1", station_class=CommandStation201) as station:
        await boot(station, "2.0.1")
        await seed_transaction(csms, "CP-V2G201", 1, "tx-201")
        url = "/api/v1/stations/CP-V2G201/charging-profiles"
        refused = await api.post(url, json=negative_limit_profile_201("tx-201"))
        assert refused.status_code == 403
        assert "accepts_negative_limits" in refused.json()["detail"]
        assert received(station, "SetChargingProfile") == []
        marked = await api.patch(
            "/api/v1/stations/CP-V2G201", json={"accepts_negative_limits": True}
        )
        assert marked.status_code == 200 and marked.json()["accepts_negative_limits"] is True
        response = await api.post(url, json=negative_limit_profile_201("tx-201"))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "Accepted"
        [got] = received(station, "SetChargingProfile")
        assert got["charging_profile"]["charging_schedule"][0]["charging_schedule_period"] == [
            {"start_period": 0, "limit": -6000.0}
        ]
    statuses = [r.status for r in await _records(csms, "CP-V2G201")]
    assert statuses == ["Refused", "Accepted"]


async def test_Q01_discharge_to_a_station_that_has_not_shown_it_can_is_refused(csms, api) -> None:
    async with connected(csms, "CP-NOBPT", station_class=CommandStation21) as station:
        await boot(station)
        await seed_transaction(csms, "CP-NOBPT", 1, "tx-nobpt")
        url = "/api/v1/stations/CP-NOBPT/charging-profiles"
        no_needs = await api.post(url, json=discharge_profile_21("tx-nobpt"))
        assert no_needs.status_code == 403
        assert "BPT" in no_needs.json()["detail"]
        await seed_needs(csms, "CP-NOBPT", 1, requested="DC", available=["DC"])
        charging_only = await api.post(url, json=discharge_profile_21("tx-nobpt"))
        assert charging_only.status_code == 403
        assert "offered: DC" in charging_only.json()["detail"]
        assert received(station, "SetChargingProfile") == []
    records = await _records(csms, "CP-NOBPT")
    assert [r.status for r in records] == ["Refused", "Refused"]
    assert records[0].status_reason.startswith("capability:")


async def test_K01_discharging_tx_default_profile_is_refused(csms_sqlite, api_sqlite) -> None:
    csms, api = csms_sqlite, api_sqlite
    async with connected(csms, "CP-TXDEF", station_class=CommandStation21) as station:
        await boot(station)
        await seed_needs(csms, "CP-TXDEF", 1)
        await seed_transaction(csms, "CP-TXDEF", 1, "tx-def")
        request = discharge_profile_21("tx-def")
        request["chargingProfile"]["chargingProfilePurpose"] = "TxDefaultProfile"
        del request["chargingProfile"]["transactionId"]
        response = await api.post("/api/v1/stations/CP-TXDEF/charging-profiles", json=request)
        assert response.status_code == 403
        assert response.json()["detail"].startswith("discharge refused (purpose)")
        # A discharging TxProfile for a transaction that is not running: refused too (b).
        stale = await api.post(
            "/api/v1/stations/CP-TXDEF/charging-profiles", json=discharge_profile_21("tx-gone")
        )
        assert stale.status_code == 403 and "tx-gone" in stale.json()["detail"]
        assert received(station, "SetChargingProfile") == []


# ---- errors: not connected, unknown, timeouts, CALLERRORs, bad bodies ----------------------


async def test_push_errors_map_to_http_statuses(csms_sqlite, api_sqlite) -> None:
    csms, api = csms_sqlite, api_sqlite
    unknown = await api.post("/api/v1/stations/NOPE/charging-profiles", json=charging_profile())
    assert unknown.status_code == 404 and "NOPE" in unknown.json()["detail"]
    async with connected(csms, "CP-GONE", station_class=CommandStation21) as station:
        await boot(station)
    async with connected(csms, "CP-WAIT", station_class=CommandStation21) as station:
        await boot(station)
        gone = await api.post("/api/v1/stations/CP-GONE/charging-profiles", json=charging_profile())
        assert gone.status_code == 409 and "not connected" in gone.json()["detail"]
        station.fail_action = "GetCompositeSchedule"
        broken = await api.get(
            "/api/v1/stations/CP-WAIT/composite-schedule", params={"evseId": 1, "duration": 60}
        )
        assert broken.status_code == 502 and "InternalError" in broken.json()["detail"]


async def test_push_timeout_is_504(csms_sqlite, api_sqlite) -> None:
    csms, api = csms_sqlite, api_sqlite

    class SlowStation(CommandStation21):
        __test__ = False

        @on("SetChargingProfile")
        async def on_set_charging_profile(self, **kwargs: Any) -> Any:
            await self.release.wait()
            return result21.SetChargingProfile(status="Accepted")

    async with connected(csms, "CP-SLOWAPI", station_class=SlowStation) as station:
        await boot(station)
        # The configured call timeout of the test CSMS is 5 s (tests/conftest.py).
        response = await api.post(
            "/api/v1/stations/CP-SLOWAPI/charging-profiles", json=charging_profile()
        )
        station.release.set()
        assert response.status_code == 504
        assert "no answer to SetChargingProfile" in response.json()["detail"]
    [record] = await _records(csms, "CP-SLOWAPI")
    assert record.status == "Error" and record.status_reason.startswith("timeout")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"evseId": "1", "chargingProfile": {}}, "evseId"),  # wrong type
        ({"evseId": 1}, "chargingProfile"),  # missing
        ({"evseId": 1, "chargingProfile": {}, "colour": "red"}, "colour"),  # unknown field
        ([1, 2], "dict"),  # not an object
    ],
)
async def test_bad_bodies_are_422_with_detail(csms_sqlite, api_sqlite, body, fragment) -> None:
    response = await api_sqlite.post("/api/v1/stations/ANY/charging-profiles", json=body)
    assert response.status_code == 422
    assert fragment in str(response.json()["detail"])


async def test_malformed_json_and_schema_errors_are_422(csms_sqlite, api_sqlite) -> None:
    csms, api = csms_sqlite, api_sqlite
    url = "/api/v1/stations/CP-SCHEMA/charging-profiles"
    malformed = await api.post(
        url, content=b'{"evseId": 1,', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422 and "detail" in malformed.json()
    async with connected(csms, "CP-SCHEMA", station_class=CommandStation21) as station:
        await boot(station)
        request = charging_profile()
        request["chargingProfile"]["chargingProfileKind"] = "Sometimes"
        bad_enum = await api.post(url, json=request)
        assert bad_enum.status_code == 422
        assert "chargingProfileKind" in bad_enum.json()["detail"]
        extra = copy.deepcopy(charging_profile())
        extra["chargingProfile"]["colour"] = "red"
        unknown_nested = await api.post(url, json=extra)
        assert unknown_nested.status_code == 422 and "colour" in unknown_nested.json()["detail"]
        assert received(station, "SetChargingProfile") == []


async def test_201_schema_rejects_21_fields(csms_sqlite, api_sqlite) -> None:
    csms, api = csms_sqlite, api_sqlite
    async with connected(csms, "CP-201S", "2.0.1", station_class=CommandStation201) as station:
        await boot(station, "2.0.1")
        response = await api.post(
            "/api/v1/stations/CP-201S/charging-profiles", json=discharge_profile_21("tx")
        )
        assert response.status_code == 422
        assert "SetChargingProfileRequest" in response.json()["detail"]
        assert received(station, "SetChargingProfile") == []


# ---- reads and operator settings ------------------------------------------------------------


async def _seed_status_and_meters(csms: Any, station_id: str) -> None:
    t0 = datetime(2026, 7, 15, 19, 0, tzinfo=UTC)
    t1 = datetime(2026, 7, 15, 19, 1, tzinfo=UTC)

    def unit(session: Session) -> None:
        session.add(
            ConnectorStatus(
                station_id=station_id, evse_id=1, connector_id=1, status="Occupied", updated_at=t0
            )
        )
        for at, export_wh in ((t0, 100.0), (t1, 250.0)):
            session.add(
                MeterSample(
                    station_id=station_id,
                    evse_id=1,
                    transaction_id="tx-view",
                    timestamp=at,
                    measurand="Energy.Active.Export.Register",
                    unit="Wh",
                    value=export_wh,
                )
            )
        session.add(
            MeterSample(
                station_id=station_id,
                evse_id=1,
                timestamp=t1,
                measurand="Power.Active.Export",
                unit="W",
                value=7000.0,
            )
        )

    await csms.services.writer.write(unit)


async def test_station_list_and_detail(csms, api) -> None:
    async with connected(csms, "CP-VIEW", station_class=CommandStation21) as station:
        await boot(station)
        await _seed_status_and_meters(csms, "CP-VIEW")
        await seed_needs(csms, "CP-VIEW", 1, requested="DC_BPT")
        await seed_transaction(csms, "CP-VIEW", 1, "tx-view")
        listing = await api.get("/api/v1/stations")
        assert listing.status_code == 200
        [summary] = [s for s in listing.json() if s["id"] == "CP-VIEW"]
        assert summary["connected"] and summary["connected_here"]
        assert (summary["vendor"], summary["ocpp_version"]) == ("Test", "2.1")
        assert "password_hash" not in summary
        detail = (await api.get("/api/v1/stations/CP-VIEW")).json()
    [evse] = detail["evses"]
    assert evse["connectors"][0]["status"] == "Occupied"
    meters = {m["measurand"]: m["value"] for m in evse["last_meter_values"]}
    assert meters == {"Energy.Active.Export.Register": 250.0, "Power.Active.Export": 7000.0}
    assert evse["ev_needs"]["offers_bpt"] is True
    assert [t["transaction_id"] for t in detail["running_transactions"]] == ["tx-view"]
    missing = await api.get("/api/v1/stations/NOPE")
    assert missing.status_code == 404


async def test_B_patch_password_sets_security_profile_1_and_never_returns_the_hash(
    csms, api
) -> None:
    async with connected(csms, "CP-PW", station_class=CommandStation21) as station:
        await boot(station)
    short = await api.patch("/api/v1/stations/CP-PW", json={"password": "short"})
    assert short.status_code == 422
    needs_password = await api.patch("/api/v1/stations/CP-PW", json={"security_profile": 1})
    assert needs_password.status_code == 422 and "password" in needs_password.json()["detail"]
    response = await api.patch("/api/v1/stations/CP-PW", json={"password": "a-very-long-secret-1"})
    assert response.status_code == 200
    assert response.json()["security_profile"] == 1
    assert "hash" not in response.text and "a-very-long-secret-1" not in response.text
    async with csms.services.db.read() as session:
        stored = await session.get(Station, "CP-PW")
    assert stored is not None and stored.password_hash and stored.password_hash.startswith("$2")
    # The station now needs its password on the websocket handshake (security profile 1).
    with pytest.raises(Exception, match="401"):
        async with connected(csms, "CP-PW"):
            pass
    back = await api.patch("/api/v1/stations/CP-PW", json={"security_profile": 0})
    assert back.json()["security_profile"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"accepts_negative_limits": "yes"},
        {"accepts_negative_limits": None},
        {"security_profile": 3},
        {"password": "a-very-long-secret-1", "security_profile": 0},
        {"colour": "red"},
    ],
)
async def test_patch_bad_settings_are_422(csms_sqlite, api_sqlite, body) -> None:
    async with connected(csms_sqlite, "CP-PATCH", station_class=CommandStation21) as station:
        await boot(station)
    response = await api_sqlite.patch("/api/v1/stations/CP-PATCH", json=body)
    assert response.status_code == 422 and response.json()["detail"]


async def test_patch_unknown_station_is_404(csms_sqlite, api_sqlite) -> None:
    response = await api_sqlite.patch(
        "/api/v1/stations/NOPE", json={"accepts_negative_limits": True}
    )
    assert response.status_code == 404


async def test_K08_composite_schedule(csms_sqlite, api_sqlite) -> None:
    csms, api = csms_sqlite, api_sqlite
    async with connected(csms, "CP-K08", station_class=CommandStation21) as station:
        await boot(station)
        url = "/api/v1/stations/CP-K08/composite-schedule"
        response = await api.get(
            url, params={"evseId": 1, "duration": 900, "chargingRateUnit": "W"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "Accepted"
        assert body["schedule"]["chargingSchedulePeriod"][0]["limit"] == 7000
        [asked] = received(station, "GetCompositeSchedule")
        assert (asked["evse_id"], asked["duration"], asked["charging_rate_unit"]) == (1, 900, "W")
        for params in (
            {"evseId": 1},
            {"evseId": -1, "duration": 5},
            {"evseId": 1, "duration": 5, "chargingRateUnit": "kW"},
        ):
            bad = await api.get(url, params=params)
            assert bad.status_code == 422, params


async def test_openapi_fields_all_have_descriptions(csms_sqlite, api_sqlite) -> None:
    document = (await api_sqlite.get("/openapi.json")).json()
    ours = [
        "StationSummary",
        "StationDetail",
        "EvseView",
        "StationSettingsPatch",
        "ChargingProfilePush",
        "ChargingProfileAnswer",
        "CompositeScheduleAnswer",
    ]
    for name in ours:
        properties = document["components"]["schemas"][name]["properties"]
        undocumented = [p for p, spec in properties.items() if not spec.get("description")]
        assert undocumented == [], name
