"""Small pieces several functional blocks share: reading instants and integers the schemas
leave loose, inserting rows that replays may repeat, keeping a message for the record,
last-seen."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from csms.handlers.context import HandlerContext, Payload
from csms.store.models import StationReport
from ocppj.errors import ErrorCode, RpcError
from ocppj.schemas import RESPONSE, schema_set
from ocppj.versions import OcppVersion
from simclock import parse_instant

# Integer columns are 32-bit on PostgreSQL; the schemas put no bound on most integers.
_INT32 = (-(2**31), 2**31 - 1)


def instant(value: str, where: str) -> datetime:
    """A schema `date-time` field as a UTC instant. The validator does not check formats; a
    malformed one breaks the primitive type dateTime (TypeConstraintViolation)."""
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise RpcError(ErrorCode.TYPE_CONSTRAINT_VIOLATION, f"{where}: {exc}") from None


def int32(value: int, where: str) -> int:
    """An integer we store, refused with a clear error when no database column can hold it."""
    if not _INT32[0] <= value <= _INT32[1]:
        raise RpcError(
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, f"{where}: {value} is out of range (int32)"
        )
    return value


@cache
def answer_has_field(version: OcppVersion, action: str, name: str) -> bool:
    """Whether the version's response schema for `action` defines the top-level `name`:
    version differences read from the official schemas instead of version literals."""
    properties = schema_set(version).raw_schema(action, RESPONSE).get("properties", {})
    return name in properties


def insert_ignoring_duplicates(
    session: Session, model: type[SQLModel], rows: list[dict[str, Any]]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a row that a unique key already holds is dropped."""
    if rows:
        session.execute(insert_statement(session, model).on_conflict_do_nothing(), rows)


def insert_if_new(session: Session, model: type[SQLModel], row: dict[str, Any]) -> bool:
    """Insert one row unless a unique key already holds it; True when it was inserted."""
    table = model.__table__  # type: ignore[attr-defined]
    statement = (
        insert_statement(session, model)
        .values(**row)
        .on_conflict_do_nothing()
        .returning(table.c.id)
    )
    return session.execute(statement).first() is not None


def insert_statement(session: Session, model: type[SQLModel]) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite_insert(model)
    if dialect == "postgresql":
        return postgresql_insert(model)
    raise RuntimeError(f"no ON CONFLICT support for database dialect {dialect!r}")


async def store_report(
    ctx: HandlerContext, kind: str, req: Payload, *, evse_id: int = 0, status: str = ""
) -> None:
    """Keep a message for the record (StationReport), committed before the answer."""
    row = {
        "station_id": ctx.station_id,
        "kind": kind,
        "evse_id": int32(evse_id, "evseId"),
        "status": status,
        "payload": req,
    }

    def unit(session: Session) -> None:
        session.add(StationReport(**row))

    await ctx.write(unit)
    note_seen(ctx)


def note_seen(ctx: HandlerContext) -> None:
    """Station.last_seen: coalesced per station and written in bulk with the next batch."""
    ctx.services.writer.touch(ctx.station_id)
