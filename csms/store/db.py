"""The engines, schema migrations and sessions.

Two engines on the same database: an async one (aiosqlite / asyncpg) for reads on the event
loop, and a synchronous one (sqlite3 / psycopg) that only the group-commit writer's thread uses,
so a batch of writes runs without an event-loop round trip per statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///csms.db"


class DatabaseUrlError(ValueError):
    """A database URL we cannot use, with the reason."""


def normalise_url(url: str) -> str:
    """Accept the usual spellings and turn them into the async driver we use."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with a terse message
        raise DatabaseUrlError(f"not a database URL: {url!r} ({exc})") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseUrlError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def create_engine(url: str) -> AsyncEngine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def sync_url(url: str) -> str:
    """The same database through the synchronous driver the writer thread uses."""
    parsed = make_url(normalise_url(url))
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def create_writer_engine(url: str) -> Engine:
    """One connection, used by one thread: the group-commit writer's."""
    url = sync_url(url)
    if url.startswith("sqlite"):
        engine = create_sync_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=1
        )
        _configure_sqlite(engine)
        return engine
    return create_sync_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs: take control of
    # BEGIN as SQLAlchemy's docs advise, so a transaction is exactly what we asked for.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged message survives power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def _alembic_config(url: str) -> Config:
    root = resources.files("csms.store")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(root)) / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade_schema(url: str) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`). Blocking."""
    command.upgrade(_alembic_config(url), "head")


async def upgrade_schema_async(url: str) -> None:
    # Alembic's env.py runs its own event loop; keep it off ours.
    await asyncio.to_thread(upgrade_schema, url)


class Database:
    """The engines and session factories of one CSMS process."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = create_engine(self.url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.writer_engine = create_writer_engine(self.url)
        # Only the writer's thread opens these (csms.store.writer).
        self.writer_sessions = sessionmaker(self.writer_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
        await asyncio.to_thread(self.writer_engine.dispose)


WriterSession = Session  # what a unit of work receives: a synchronous ORM session
