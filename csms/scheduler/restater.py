"""Late data: `LateDataRestater`, which re-settles a settled event (csms.scheduler.settlement)
when station data for its window arrives after it was settled (an offline queue replayed, or the
sample that brackets the window's end coming in after the settlement), and LIVE_LATE_MARGIN, how
long after a settled window's end live data still counts as late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, select

from csms.domain import StationData
from csms.scheduler.settlement import settle_event
from csms.scheduler.telemetry import EDGE_MARGIN
from csms.store.models import DrEvent, EventParticipant

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.restater")

# Live (not offline) data this soon after a settled window's end may still bracket its end.
LIVE_LATE_MARGIN = timedelta(minutes=5)


class LateDataRestater:
    """Re-settles a settled event when late station data for its window arrives.

    Late data is what a station sends from its offline queue (`offline`), or live data whose
    timestamp is at or before the end of some settled event plus LIVE_LATE_MARGIN (the sample
    that brackets the end). An event is re-settled when late data of one of its stations falls
    in its window widened by EDGE_MARGIN (what settlement reads). The horizon is re-read every
    `refresh_s`, so live data for an event settled less than that ago may be missed here; the
    event's report re-settles it. Many arrivals within `debounce_s` cause one re-settlement per
    event; one with nothing changed writes nothing.
    """

    def __init__(
        self, services: Services, *, debounce_s: float = 1.0, refresh_s: float = 1.0
    ) -> None:
        self._services = services
        self._debounce_s = debounce_s
        self._refresh_s = refresh_s
        self._queue: asyncio.Queue[StationData] = asyncio.Queue()
        self._horizon: datetime | None = None
        self._unsubscribe: Any = None
        self._task: asyncio.Task[None] | None = None
        self.resettled: list[int] = []  # event ids re-settled, in order (for operators and tests)
        self._progress = asyncio.Event()

    def start(self) -> None:
        """Subscribe and start the background task (on the running event loop). Until the task
        has read the horizon (its first step), only offline data is recognised as late."""
        self._unsubscribe = self._services.domain.subscribe(self._on_data)
        self._task = asyncio.create_task(self._run(), name="late-data-restater")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait_resettled(self, count: int = 1) -> list[int]:
        """Wait until `count` re-settlements have run; the event ids so far."""
        while len(self.resettled) < count:
            self._progress.clear()
            await self._progress.wait()
        return list(self.resettled)

    def _on_data(self, data: StationData) -> None:
        """The domain-event subscriber: a comparison and a queue put, nothing that waits."""
        if data.kind not in ("transaction", "meter") or data.timestamp is None:
            return
        if data.offline or (self._horizon is not None and data.timestamp <= self._horizon):
            self._queue.put_nowait(data)

    async def _run(self) -> None:
        while True:
            try:
                await self._refresh_horizon()
                batch = await self._next_batch()
                for event_id in await self._affected_events(batch) if batch else []:
                    await settle_event(self._services, event_id)
                    self.resettled.append(event_id)
                    self._progress.set()
            except Exception:  # logged; the next late data (or the report) settles again
                log.exception("settlement.late_data_failed")
                await asyncio.sleep(self._refresh_s)

    async def _next_batch(self) -> list[StationData]:
        """The late data of the next `debounce_s` after one arrives ([] after `refresh_s`
        without any, so the horizon is re-read)."""
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout=self._refresh_s)
        except TimeoutError:
            return []
        await asyncio.sleep(self._debounce_s)  # an offline replay comes as a burst: gather it
        return [first, *self._drain()]

    def _drain(self) -> list[StationData]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _refresh_horizon(self) -> None:
        async with self._services.db.read() as session:
            latest = await session.scalar(
                select(func.max(DrEvent.end)).where(DrEvent.settled_at.is_not(None))  # type: ignore[union-attr]
            )
        self._horizon = None if latest is None else latest + LIVE_LATE_MARGIN

    async def _affected_events(self, batch: Sequence[StationData]) -> list[int]:
        """Settled events with a participant on a station of the batch whose (widened) window
        holds one of that station's timestamps."""
        stations = {d.station_id for d in batch}
        first = min(d.timestamp for d in batch if d.timestamp) - EDGE_MARGIN
        last = max(d.timestamp for d in batch if d.timestamp) + EDGE_MARGIN
        query = (
            select(DrEvent.id, DrEvent.start, DrEvent.end, EventParticipant.station_id)
            .join(EventParticipant, EventParticipant.event_id == DrEvent.id)
            .where(
                DrEvent.settled_at.is_not(None),  # type: ignore[union-attr]
                EventParticipant.station_id.in_(stations),  # type: ignore[attr-defined]
                DrEvent.start <= last,
                DrEvent.end >= first,
            )
        )
        async with self._services.db.read() as session:
            candidates = (await session.execute(query)).all()
        hit: set[int] = set()
        for event_id, start, end, station_id in candidates:
            lo, hi = start - EDGE_MARGIN, end + EDGE_MARGIN
            if any(
                d.station_id == station_id and d.timestamp and lo <= d.timestamp <= hi
                for d in batch
            ):
                hit.add(event_id)
        return sorted(hit)
