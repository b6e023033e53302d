"""LateDataRestater on a running CSMS (SQLite and PostgreSQL): an offline replay for a settled
event's window re-settles it once per burst; live data after every settled window is not late,
live data inside one is."""

from __future__ import annotations

import asyncio

import pytest

from csms.domain import StationData
from csms.scheduler.restater import LateDataRestater
from csms.scheduler.settlement import settle_event
from csms.store.models import DrEvent
from tests.scheduler.test_settlement import AFTER, at, insert, registers, seed_fleet, stored


async def test_late_offline_transaction_event_restates_through_the_restater(csms) -> None:
    services = csms.services
    fleet = await seed_fleet(services)
    first = await settle_event(services, fleet["event"].id)
    restater = LateDataRestater(services, debounce_s=0.2, refresh_s=0.2)
    restater.start()
    try:
        late = []
        for minute in range(31, 62):
            late += registers("D", at(minute), 100.0 * minute, 0.0)
        await insert(services, *late)
        for minute in range(31, 62, 10):  # a replay is a burst: coalesced into one settlement
            services.domain.publish(
                StationData("transaction", "D", 1, "tx-1", "Updated", at(minute), offline=True)
            )
        async with asyncio.timeout(20):
            await restater.wait_resettled()
        await asyncio.sleep(0.5)  # nothing else is pending: one re-settlement for the burst
    finally:
        await restater.stop()
    assert restater.resettled == [fleet["event"].id]
    (event,) = await stored(services, DrEvent, id=fleet["event"].id)
    assert event.restatements == 1 and event.restated_at is not None
    assert event.delivered_kw == pytest.approx(first.delivered_kw + 6.0)


async def test_live_data_after_every_settled_window_is_not_late(csms) -> None:
    services = csms.services
    fleet = await seed_fleet(services)
    await settle_event(services, fleet["event"].id)
    restater = LateDataRestater(services, debounce_s=0.1, refresh_s=0.1)
    restater.start()
    try:
        await asyncio.sleep(0.5)  # the horizon is read
        services.domain.publish(StationData("meter", "D", 1, timestamp=AFTER))
        services.domain.publish(StationData("meter", "D", 1, timestamp=at(90)))  # 30 min after
        services.domain.publish(StationData("connected", "D"))
        await asyncio.sleep(0.5)
        assert restater.resettled == []
        services.domain.publish(StationData("meter", "D", 1, timestamp=at(45)))  # inside: late
        async with asyncio.timeout(20):
            await restater.wait_resettled()
    finally:
        await restater.stop()
    (event,) = await stored(services, DrEvent, id=fleet["event"].id)
    assert event.restatements == 0  # re-settled, but nothing had changed
