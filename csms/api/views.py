"""Reads behind the station resources: rows in, response models out (no HTTP here)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from csms.api.models import (
    ConnectorView,
    EvNeedsView,
    EvseView,
    MeterValueView,
    StationDetail,
    StationSummary,
    TransactionView,
)
from csms.server.registry import SessionRegistry
from csms.store.models import ConnectorStatus, EvChargingNeeds, MeterSample, Station, Transaction


def summary(station: Station, registry: SessionRegistry) -> StationSummary:
    return StationSummary(**_summary_fields(station, registry))


def _summary_fields(station: Station, registry: SessionRegistry) -> dict[str, Any]:
    fields = {
        name: getattr(station, name)
        for name in StationSummary.model_fields
        if name != "connected_here"
    }
    fields["connected_here"] = station.id in registry
    return fields


async def list_stations(session: AsyncSession, registry: SessionRegistry) -> list[StationSummary]:
    rows = (await session.execute(select(Station).order_by(Station.id))).scalars()
    return [summary(row, registry) for row in rows]


async def station_detail(
    session: AsyncSession, station: Station, registry: SessionRegistry
) -> StationDetail:
    connectors = await _connectors(session, station.id)
    meters = await _latest_meter_values(session, station.id)
    needs = await _latest_needs(session, station.id)
    running = await _running(session, station.id)
    evse_ids = sorted({*connectors, *meters, *needs, *(tx.evse_id for tx in running)})
    evses = [
        EvseView(
            evse_id=evse_id,
            connectors=connectors.get(evse_id, []),
            last_meter_values=meters.get(evse_id, []),
            ev_needs=needs.get(evse_id),
        )
        for evse_id in evse_ids
    ]
    return StationDetail(
        **_summary_fields(station, registry), evses=evses, running_transactions=running
    )


async def _connectors(session: AsyncSession, station_id: str) -> dict[int, list[ConnectorView]]:
    query = (
        select(ConnectorStatus)
        .where(ConnectorStatus.station_id == station_id)
        .order_by(ConnectorStatus.evse_id, ConnectorStatus.connector_id)
    )
    found: dict[int, list[ConnectorView]] = defaultdict(list)
    for row in (await session.execute(query)).scalars():
        found[row.evse_id].append(
            ConnectorView(
                connector_id=row.connector_id, status=row.status, updated_at=row.updated_at
            )
        )
    return found


async def _latest_meter_values(
    session: AsyncSession, station_id: str
) -> dict[int, list[MeterValueView]]:
    """The newest sample of each (EVSE, measurand, phase, location, context)."""
    series = (
        MeterSample.evse_id,
        MeterSample.measurand,
        MeterSample.phase,
        MeterSample.location,
        MeterSample.context,
    )
    newest = (
        select(*series, func.max(MeterSample.timestamp).label("latest"))
        .where(MeterSample.station_id == station_id)
        .group_by(*series)
        .subquery()
    )
    query = (
        select(MeterSample)
        .join(
            newest,
            (MeterSample.evse_id == newest.c.evse_id)
            & (MeterSample.measurand == newest.c.measurand)
            & (MeterSample.phase == newest.c.phase)
            & (MeterSample.location == newest.c.location)
            & (MeterSample.context == newest.c.context)
            & (MeterSample.timestamp == newest.c.latest),
        )
        .where(MeterSample.station_id == station_id)
        .order_by(MeterSample.evse_id, MeterSample.measurand, MeterSample.phase)
    )
    found: dict[int, list[MeterValueView]] = defaultdict(list)
    for row in (await session.execute(query)).scalars():
        found[row.evse_id].append(
            MeterValueView(
                measurand=row.measurand,
                phase=row.phase,
                location=row.location,
                context=row.context,
                unit=row.unit,
                value=row.value,
                timestamp=row.timestamp,
                transaction_id=row.transaction_id,
            )
        )
    return found


async def _latest_needs(session: AsyncSession, station_id: str) -> dict[int, EvNeedsView]:
    """The newest NotifyEVChargingNeeds per EVSE (ids grow in arrival order)."""
    newest = (
        select(func.max(EvChargingNeeds.id))
        .where(EvChargingNeeds.station_id == station_id)
        .group_by(EvChargingNeeds.evse_id)
    )
    query = select(EvChargingNeeds).where(EvChargingNeeds.id.in_(newest))  # type: ignore[union-attr]
    return {
        row.evse_id: EvNeedsView(
            received_at=row.received_at,
            requested_energy_transfer=row.requested_energy_transfer,
            available_energy_transfer=row.available_energy_transfer,
            control_mode=row.control_mode,
            departure_time=row.departure_time,
            offers_bpt=row.offers_bpt,
            v2x_parameters=row.v2x_parameters,
        )
        for row in (await session.execute(query)).scalars()
    }


async def _running(session: AsyncSession, station_id: str) -> list[TransactionView]:
    query = (
        select(Transaction)
        .where(Transaction.station_id == station_id, Transaction.ended_at.is_(None))  # type: ignore[union-attr]
        .order_by(Transaction.evse_id, Transaction.started_at)
    )
    return [
        TransactionView(
            transaction_id=row.transaction_id,
            evse_id=row.evse_id,
            connector_id=row.connector_id,
            started_at=row.started_at,
            charging_state=row.charging_state,
            id_token=row.id_token,
        )
        for row in (await session.execute(query)).scalars()
    ]
