"""Group commit: many stations' writes in one database transaction, each acknowledged after it.

A handler submits a unit of work (an async function of a session) and awaits it; the writer
runs every unit waiting at that moment in one transaction, commits once, and only then resolves
the futures. So a station's message is answered only after what it carries is committed
(durability), while a burst of thousands of messages costs a handful of commits.

A unit is a plain function of a synchronous ORM session, and a batch runs on one dedicated
thread through the synchronous driver (sqlite3 / psycopg). Through the async drivers every
statement of every unit was a round trip through a busy event loop, one after another: the
writer waited far more than it worked (bench/RESULTS.md). Units must not touch asyncio.

Units run without a SAVEPOINT each: a savepoint costs more than most units. A unit that fails
rolls back the whole batch; the writer then runs every unit of that batch again in a
transaction of its own, so the failure stays with its unit and the others commit. Units must
therefore be safe to run twice: they build their rows inside, or add `fresh(row)` copies (a
rolled-back row keeps the primary key its flush drew, which PostgreSQL's sequence would hand
out again).

Two kinds of writes nobody waits for ride along in bulk instead of as units: journal rows (one
multi-row INSERT per batch) and stations' last-seen instants (coalesced, one UPDATE each).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import insert, update
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from csms.store.db import Database
from csms.store.models import JournalEntry, Station
from csms.store.types import utcnow

T = TypeVar("T")
M = TypeVar("M", bound=SQLModel)
Unit = Callable[[Session], Any]

log = structlog.get_logger(__name__)

# How long rows nobody waits for (journal, last-seen) may wait for a batch to ride along with.
SIDE_ROWS_FLUSH_S = 0.5


@dataclass(slots=True)
class _Pending:
    unit: Unit
    future: asyncio.Future[Any] | None
    label: str = ""
    result: Any = field(default=None)
    error: BaseException | None = None


@dataclass(slots=True)
class _SideRows:
    journal: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, datetime] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.journal or self.seen)


def fresh(row: M) -> M:
    """A new, unsaved copy of a row built outside a unit, for the unit to add."""
    return type(row).model_validate(row.model_dump(exclude={"id"}))


class WriterClosedError(RuntimeError):
    pass


class GroupWriter:
    def __init__(self, db: Database, *, max_batch: int = 1000) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._side = _SideRows()
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-writer")
        self._closed = False
        self.commits = 0
        self.units = 0
        self.isolations = 0  # batches re-run unit by unit after a failure

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-writer")

    async def write(self, unit: Callable[[Session], T], label: str = "") -> T:
        """Run `unit` in the next group transaction; return its result once committed."""
        if self._closed:
            raise WriterClosedError("the store is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(unit, future, label))
        return await future

    def write_later(self, unit: Unit, label: str = "") -> None:
        """Queue a unit nobody waits for; committed with the next batch."""
        if not self._closed:
            self._queue.put_nowait(_Pending(unit, None, label))

    def journal(self, row: dict[str, Any]) -> None:
        """Queue one message-journal row (the columns of JournalEntry) for the next batch."""
        if not self._closed:
            self._side.journal.append(row)

    def touch(self, station_id: str, at: datetime | None = None) -> None:
        """Record that a station was heard from; the latest instant per station is written."""
        if not self._closed:
            self._side.seen[station_id] = at or utcnow()

    async def close(self) -> None:
        """Commit everything queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = await self._next_batch()
            side, self._side = self._side, _SideRows()
            if batch or side:
                await self._commit(batch, side)

    async def _next_batch(self) -> tuple[list[_Pending], bool]:
        try:
            first = await asyncio.wait_for(self._queue.get(), SIDE_ROWS_FLUSH_S)
        except TimeoutError:
            return [], False
        if first is None:
            return [], True
        batch, stopping = [first], False
        while len(batch) < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                stopping = True
            else:
                batch.append(item)
        return batch, stopping

    async def _commit(self, batch: list[_Pending], side: _SideRows) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._commit_in_thread, batch, side)
        for item in batch:
            _settle(item)

    # ---- on the writer thread ----------------------------------------------------------

    def _commit_in_thread(self, batch: list[_Pending], side: _SideRows) -> None:
        try:
            self._transaction(batch, side)
        except Exception as exc:
            if len(batch) <= 1 and not side:
                self._fail(batch, exc)
            else:
                self._isolate(batch, side, exc)

    def _transaction(self, batch: list[_Pending], side: _SideRows) -> None:
        with self._db.writer_sessions() as session, session.begin():
            for item in batch:
                item.result = item.unit(session)
            _write_side_rows(session, side)
        self.commits += 1
        self.units += len(batch)

    def _isolate(self, batch: list[_Pending], side: _SideRows, cause: Exception) -> None:
        """Run each unit of a failed batch in a transaction of its own."""
        self.isolations += 1
        log.warning("store.batch_isolated", units=len(batch), cause=repr(cause))
        for item in batch:
            self._commit_in_thread([item], _SideRows())
        if side:
            self._commit_in_thread([], side)

    @staticmethod
    def _fail(batch: list[_Pending], exc: Exception) -> None:
        for item in batch:
            log.warning("store.unit_failed", unit=item.label, error=repr(exc))
            item.error = exc
        if not batch:
            log.error("store.side_rows_lost", error=repr(exc))


def _write_side_rows(session: Session, side: _SideRows) -> None:
    if side.journal:
        session.execute(insert(JournalEntry), side.journal)
    if side.seen:
        session.execute(
            update(Station), [{"id": sid, "last_seen": at} for sid, at in side.seen.items()]
        )


def _settle(item: _Pending) -> None:
    if item.future is None or item.future.done():
        return
    if item.error is None:
        item.future.set_result(item.result)
    else:
        item.future.set_exception(item.error)
