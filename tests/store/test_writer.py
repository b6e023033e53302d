"""The group-commit writer: acknowledged means committed; one bad unit never sinks the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csms.store.db import Database, upgrade_schema_async
from csms.store.models import JournalEntry, Station
from csms.store.types import utcnow
from csms.store.writer import GroupWriter, WriterClosedError

HANG_GUARD_S = 30


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[tuple[Database, GroupWriter]]:
    await upgrade_schema_async(db_url)
    db = Database(db_url)
    writer = GroupWriter(db)
    writer.start()
    try:
        yield db, writer
    finally:
        await writer.close()
        await db.close()


def _add_station(station_id: str):
    def unit(session: Session) -> str:
        session.add(Station(id=station_id))
        return station_id

    return unit


async def _count(db: Database, model: type, **where: object) -> int:
    async with db.read() as session:
        query = select(func.count()).select_from(model).filter_by(**where)
        return (await session.execute(query)).scalar_one()


async def test_a_failing_unit_fails_alone_and_the_rest_of_its_batch_commits(store) -> None:
    db, writer = store
    await writer.write(_add_station("CP-DUP"))

    results = await asyncio.wait_for(
        asyncio.gather(
            writer.write(_add_station("CP-A")),
            writer.write(_add_station("CP-DUP")),  # primary key taken: this unit must fail
            writer.write(_add_station("CP-B")),
            return_exceptions=True,
        ),
        HANG_GUARD_S,
    )

    assert results[0] == "CP-A" and results[2] == "CP-B"
    assert isinstance(results[1], Exception)
    assert await _count(db, Station) == 3
    assert writer.isolations >= 1


async def test_journal_rows_and_last_seen_are_written_without_any_other_write(store) -> None:
    db, writer = store
    await writer.write(_add_station("CP-J"))
    seen_at = utcnow()
    writer.journal(
        {
            "station_id": "CP-J",
            "direction": "in",
            "message_type": 2,
            "message_id": "m-1",
            "action": "Heartbeat",
            "frame": '[2,"m-1","Heartbeat",{}]',
            "at": seen_at,
        }
    )
    writer.touch("CP-J", seen_at)

    async def written() -> None:
        for _ in range(HANG_GUARD_S * 20):  # polled: nothing signals a side-row flush
            if await _count(db, JournalEntry, station_id="CP-J"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("journal row never written")

    await written()
    async with db.read() as session:
        station = await session.get(Station, "CP-J")
    assert station is not None and station.last_seen == seen_at


async def test_close_commits_what_is_queued_and_refuses_new_writes(store) -> None:
    db, writer = store
    pending = asyncio.ensure_future(writer.write(_add_station("CP-LAST")))
    await asyncio.sleep(0)
    await asyncio.wait_for(writer.close(), HANG_GUARD_S)
    assert await pending == "CP-LAST"
    assert await _count(db, Station, id="CP-LAST") == 1
    with pytest.raises(WriterClosedError):
        await writer.write(_add_station("CP-TOO-LATE"))
