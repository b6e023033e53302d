"""Read helpers over what stations told us, for the rooms that act on it (commands and the
discharge gate, the dispatcher, the REST API, settlement). Each takes an open session and
returns rows; none writes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from csms.store.models import ChargingProfileRecord, EvChargingNeeds, MeterSample, Transaction


async def latest_ev_needs(
    session: AsyncSession, station_id: str, evse_id: int
) -> EvChargingNeeds | None:
    """The EV's most recent NotifyEVChargingNeeds on an EVSE (what it can do now: its
    `offers_bpt` is check (a) of the discharge gate, DESIGN §3.6), or None."""
    query = (
        select(EvChargingNeeds)
        .where(EvChargingNeeds.station_id == station_id, EvChargingNeeds.evse_id == evse_id)
        .order_by(EvChargingNeeds.received_at.desc(), EvChargingNeeds.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def running_transaction(
    session: AsyncSession, station_id: str, evse_id: int
) -> Transaction | None:
    """The transaction on an EVSE that has not Ended (at most one per EVSE, E01), or None.

    Should a station have left an older one open (a lost Ended), the latest started wins.
    """
    return (await session.execute(running_transaction_query(station_id, evse_id))).scalar()


def running_transaction_query(station_id: str, evse_id: int) -> Select[tuple[Transaction]]:
    """The statement of `running_transaction`, for units of work on the writer's session."""
    return (
        select(Transaction)
        .where(
            Transaction.station_id == station_id,
            Transaction.evse_id == evse_id,
            Transaction.ended_at.is_(None),  # type: ignore[union-attr]
        )
        .order_by(Transaction.started_at.desc(), Transaction.updated_at.desc())  # type: ignore[union-attr]
        .limit(1)
    )


async def transaction_samples(
    session: AsyncSession, station_id: str, transaction_id: str
) -> list[MeterSample]:
    """Every sample of a transaction in time order (registers for delivered energy, §3.8)."""
    query = (
        select(MeterSample)
        .where(MeterSample.station_id == station_id, MeterSample.transaction_id == transaction_id)
        .order_by(MeterSample.timestamp, MeterSample.id)
    )
    return list((await session.execute(query)).scalars())


async def last_meter_values(
    session: AsyncSession, station_id: str, lookback: timedelta = timedelta(hours=1)
) -> list[MeterSample]:
    """The newest sample of each (EVSE, measurand, phase, location) of a station.

    Only samples within `lookback` of the station's newest one are considered, so the read
    stays bounded however long the history is; a measurand last sent earlier is left out.
    """
    newest = await session.scalar(
        select(func.max(MeterSample.timestamp)).where(MeterSample.station_id == station_id)
    )
    if newest is None:
        return []
    rank = (
        func.row_number()
        .over(
            partition_by=(
                MeterSample.evse_id,
                MeterSample.measurand,
                MeterSample.phase,
                MeterSample.location,
            ),
            order_by=(MeterSample.timestamp.desc(), MeterSample.id.desc()),  # type: ignore[union-attr]
        )
        .label("rank")
    )
    recent = (
        select(MeterSample, rank)
        .where(MeterSample.station_id == station_id, MeterSample.timestamp >= newest - lookback)
        .subquery()
    )
    sample = aliased(MeterSample, recent)
    query = (
        select(sample)
        .where(recent.c.rank == 1)
        .order_by(sample.evse_id, sample.measurand, sample.phase, sample.location)
    )
    return list((await session.execute(query)).scalars())


async def accepted_dynamic_profile(
    session: AsyncSession, station_id: str, profile_id: int
) -> ChargingProfileRecord | None:
    """The Dynamic charging profile with this id that the station last accepted, or None."""
    query = (
        select(ChargingProfileRecord)
        .where(
            ChargingProfileRecord.station_id == station_id,
            ChargingProfileRecord.profile_id == profile_id,
            ChargingProfileRecord.kind == "Dynamic",
            ChargingProfileRecord.status == "Accepted",
        )
        .order_by(ChargingProfileRecord.sent_at.desc(), ChargingProfileRecord.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()
