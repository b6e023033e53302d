"""Fixtures: a real CSMS on real ports, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import structlog

from csms.runtime import CentralSystem
from csms.settings import Settings
from tests.services import POSTGRES_ADMIN_URL, POSTGRES_HOST, POSTGRES_PORT, require


async def _admin(statement: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the shared server, dropped afterwards."""
    require(POSTGRES_HOST, POSTGRES_PORT, "PostgreSQL")
    name = f"csms_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'csms.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "ocpp_port": 0,
        "api_port": 0,
        "database_url": database_url,
        "allow_unknown_stations": True,
        "call_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def csms(db_url: str) -> AsyncIterator[CentralSystem]:
    """A running CSMS (OCPP + REST) on ephemeral ports, on each database."""
    system = CentralSystem(make_settings(db_url))
    await system.start()
    try:
        yield system
    finally:
        await system.stop()


@pytest.fixture
async def csms_sqlite(sqlite_url: str) -> AsyncIterator[CentralSystem]:
    """A running CSMS on SQLite only, for tests about the protocol rather than storage."""
    system = CentralSystem(make_settings(sqlite_url))
    await system.start()
    try:
        yield system
    finally:
        await system.stop()


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI test configures logging for its
    process, and a logger cached then must not outlive the test's captured streams."""
    yield
    structlog.reset_defaults()
