"""Functional block J, meter values: MeterValues (J01/J02), and the sampled-value rows that
TransactionEvent (block E) stores the same way."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from csms.domain import StationData
from csms.handlers.common import insert_ignoring_duplicates, instant, int32, note_seen
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import MeterSample

# SampledValueType.measurand: "Default = Energy.Active.Import.Register" (OCPP 2.0.1 / 2.1).
DEFAULT_MEASURAND = "Energy.Active.Import.Register"


def sample_rows(
    station_id: str,
    evse_id: int,
    meter_values: list[dict[str, Any]],
    transaction_id: str | None = None,
) -> list[dict[str, Any]]:
    """One MeterSample row per sampledValue, stored as sent (value, unit, multiplier, phase,
    location, context); an absent optional field is "" so the unique key can drop replays."""
    rows = []
    for index, meter_value in enumerate(meter_values):
        at = instant(meter_value["timestamp"], f"meterValue/{index}/timestamp")
        for sampled in meter_value["sampledValue"]:
            unit = sampled.get("unitOfMeasure") or {}
            rows.append(
                {
                    "station_id": station_id,
                    "evse_id": evse_id,
                    "transaction_id": transaction_id,
                    "timestamp": at,
                    "measurand": sampled.get("measurand", DEFAULT_MEASURAND),
                    "phase": sampled.get("phase", ""),
                    "location": sampled.get("location", ""),
                    "context": sampled.get("context", ""),
                    "unit": unit.get("unit", ""),
                    "multiplier": int32(unit.get("multiplier", 0), "unitOfMeasure/multiplier"),
                    "value": float(sampled["value"]),
                }
            )
    return rows


def store_samples(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert samples; one the table already holds (an offline replay) is dropped."""
    insert_ignoring_duplicates(session, MeterSample, rows)


async def meter_values(ctx: HandlerContext, req: Payload) -> Payload:
    """J01/J02: samples outside a transaction (evseId 0 = the station's main meter)."""
    rows = sample_rows(ctx.station_id, int32(req["evseId"], "evseId"), req["meterValue"])

    def unit(session: Session) -> None:
        store_samples(session, rows)

    await ctx.write(unit)
    note_seen(ctx)
    if rows:
        latest = max(row["timestamp"] for row in rows)
        ctx.services.domain.publish(
            StationData("meter", ctx.station_id, rows[0]["evse_id"], timestamp=latest)
        )
    return {}
