"""Group commit: many stations' writes in one database transaction, each acknowledged after it.

A handler submits a unit of work (an async function of a session) and awaits it; the writer
runs every unit waiting at that moment inside one transaction, each in its own SAVEPOINT so a
failing unit is rolled back alone, commits once, and only then resolves the futures. So a
station's message is answered only after what it carries is committed (durability), while a
burst of thousands of messages costs a handful of commits instead of thousands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from csms.store.db import Database

T = TypeVar("T")
Unit = Callable[[AsyncSession], Awaitable[Any]]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Pending:
    unit: Unit
    future: asyncio.Future[Any] | None
    label: str = ""
    result: Any = field(default=None)


class WriterClosedError(RuntimeError):
    pass


class GroupWriter:
    def __init__(self, db: Database, *, max_batch: int = 1000) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        self.units = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-writer")

    async def write(self, unit: Callable[[AsyncSession], Awaitable[T]], label: str = "") -> T:
        """Run `unit` in the next group transaction; return its result once committed."""
        if self._closed:
            raise WriterClosedError("the store is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(unit, future, label))
        return await future

    def write_later(self, unit: Unit, label: str = "") -> None:
        """Queue a write nobody waits for (journal, last-seen); committed with the next batch."""
        if not self._closed:
            self._queue.put_nowait(_Pending(unit, None, label))

    async def close(self) -> None:
        """Commit everything queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            batch: list[_Pending] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        outcomes: list[BaseException | None] = []
        try:
            async with self._db.sessions() as session, session.begin():
                for item in batch:
                    outcomes.append(await self._run_unit(session, item))
        except Exception as exc:  # the commit itself failed: nothing in the batch is durable
            log.error("store.commit_failed", error=str(exc), units=len(batch))
            for item in batch:
                _settle(item, exc)
            return
        self.commits += 1
        self.units += len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            _settle(item, outcome)

    @staticmethod
    async def _run_unit(session: AsyncSession, item: _Pending) -> BaseException | None:
        try:
            async with session.begin_nested():
                item.result = await item.unit(session)
        except Exception as exc:
            log.warning("store.unit_failed", unit=item.label, error=repr(exc))
            return exc
        return None


def _settle(item: _Pending, outcome: BaseException | None) -> None:
    if item.future is None or item.future.done():
        return
    if outcome is None:
        item.future.set_result(item.result)
    else:
        item.future.set_exception(outcome)
