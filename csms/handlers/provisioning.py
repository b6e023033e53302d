"""Functional block B, provisioning: BootNotification, Heartbeat, StatusNotification,
NotifyReport."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from csms.handlers.common import insert_statement, instant
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import ConnectorStatus, DeviceVariable, Station
from csms.store.types import utcnow
from simclock import iso

# How long a Pending/Rejected station waits before booting again (B02.FR.01, B03.FR.01).
RETRY_INTERVAL_S = 60


async def boot_notification(ctx: HandlerContext, req: Payload) -> Payload:
    """B01: store what the station says it is; answer with our registration decision."""
    cs = req["chargingStation"]
    policy = ctx.services.policies.boot_status
    status = await policy(ctx.station_id, req) if policy else "Accepted"

    def unit(session: Session) -> bool:
        station = session.get(Station, ctx.station_id) or Station(id=ctx.station_id)
        station.vendor = cs["vendorName"]
        station.model = cs["model"]
        station.serial_number = cs.get("serialNumber", "")
        station.firmware_version = cs.get("firmwareVersion", "")
        station.ocpp_version = ctx.version.name
        station.boot_reason = req["reason"]
        station.registration_status = status
        station.last_boot_at = utcnow()
        session.add(station)
        return station.boot_configured_at is None

    needs_configuration = await ctx.write(unit)
    settings = ctx.services.settings
    if status == "Accepted" and settings.boot_configuration and ctx.services.commands:
        # B01 then §3.9 of DESIGN: configure what V2G needs once the station is accepted.
        commands = ctx.services.commands
        ctx.after(lambda: commands.configure_station(ctx.station_id, force=needs_configuration))
    interval = settings.heartbeat_interval_s if status == "Accepted" else RETRY_INTERVAL_S
    return {"currentTime": iso(ctx.now()), "interval": interval, "status": status}


async def heartbeat(ctx: HandlerContext, req: Payload) -> Payload:
    """G02: the answer carries our time; last-seen is updated without delaying the answer."""
    ctx.services.writer.touch(ctx.station_id)
    return {"currentTime": iso(ctx.now())}


async def status_notification(ctx: HandlerContext, req: Payload) -> Payload:
    """G01: connector status per EVSE and connector."""
    at = instant(req["timestamp"], "timestamp")  # malformed: TypeConstraintViolation

    def unit(session: Session) -> None:
        key = (ctx.station_id, req["evseId"], req["connectorId"])
        row = session.get(ConnectorStatus, key)
        if row is None:
            row = ConnectorStatus(
                station_id=ctx.station_id,
                evse_id=req["evseId"],
                connector_id=req["connectorId"],
                status=req["connectorStatus"],
                updated_at=at,
            )
            session.add(row)
        elif at >= row.updated_at:  # an offline replay older than what we know changes nothing
            row.status = req["connectorStatus"]
            row.updated_at = at

    await ctx.write(unit)
    return {}


async def notify_report(ctx: HandlerContext, req: Payload) -> Payload:
    """B07/B08: the device model, possibly over several parts (seqNo, tbc); upserted."""
    rows = [row for entry in req.get("reportData", []) for row in _variable_rows(entry)]

    def unit(session: Session) -> None:
        upsert_variables(session, ctx.station_id, rows)

    await ctx.write(unit)
    commands = ctx.services.commands
    if not req.get("tbc", False) and ctx.services.settings.boot_configuration and commands:
        # The whole model is known now: set what differs from what V2G needs (DESIGN §3.9),
        # e.g. V2XChargingCtrlr.Enabled, which a first boot could not know the station has.
        station_id = ctx.station_id
        ctx.after(lambda: commands.configure_station(station_id, force=False))
    return {}


def _variable_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    component, variable = entry["component"], entry["variable"]
    evse = component.get("evse") or {}
    characteristics = entry.get("variableCharacteristics")
    base = {
        "component": component["name"],
        "component_instance": component.get("instance", ""),
        "evse_id": evse.get("id", 0),
        "connector_id": evse.get("connectorId", 0),
        "variable": variable["name"],
        "variable_instance": variable.get("instance", ""),
        "characteristics": characteristics,
    }
    return [
        {
            **base,
            "attribute_type": attribute.get("type", "Actual"),
            "value": attribute.get("value"),
            "mutability": attribute.get("mutability"),
        }
        for attribute in entry["variableAttribute"]
    ]


def upsert_variables(session: Session, station_id: str, rows: list[dict[str, Any]]) -> None:
    """Insert or update device-model attributes, keyed by their full identity, in one
    statement. A value a row leaves out (None) keeps what is stored."""
    if not rows:
        return
    now = utcnow()
    complete = [{**_DEFAULTS, **row} for row in rows]
    by_identity = {tuple(row[k] for k in _IDENTITY): row for row in complete}  # last one wins
    values = [{"station_id": station_id, **row, "updated_at": now} for row in by_identity.values()]
    statement = insert_statement(session, DeviceVariable)
    table = DeviceVariable.__table__  # type: ignore[attr-defined]
    keep = {name: func.coalesce(statement.excluded[name], table.c[name]) for name in _VALUES}
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["station_id", *_IDENTITY],
            set_={**keep, "updated_at": statement.excluded.updated_at},
        ),
        values,
    )


_IDENTITY = (
    "component",
    "component_instance",
    "evse_id",
    "connector_id",
    "variable",
    "variable_instance",
    "attribute_type",
)
_VALUES = ("value", "mutability", "characteristics")
# What an attribute's identity is when OCPP leaves a part out ("" and 0, not NULL: see models).
_DEFAULTS: dict[str, Any] = {
    "component_instance": "",
    "evse_id": 0,
    "connector_id": 0,
    "variable_instance": "",
    "attribute_type": "Actual",
    **dict.fromkeys(_VALUES),
}
