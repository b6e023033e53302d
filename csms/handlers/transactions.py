"""Functional block E, transactions: TransactionEvent Started / Updated / Ended (E01-E15),
including the events a station queued while offline and sends again later.

Every event is recorded once per (station, transaction, seqNo): a replay (an offline resend,
or a resend after a lost answer) is recognised, not applied again, and answered as the first
time was. Events may arrive out of order; the transaction's state follows the newest seqNo,
and nothing reopens a transaction that has Ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from csms.domain import StationData
from csms.handlers.authorization import id_token_info
from csms.handlers.common import insert_if_new, instant, int32, note_seen
from csms.handlers.context import HandlerContext, Payload
from csms.handlers.meter_values import sample_rows, store_samples
from csms.store.models import Transaction, TransactionEventRecord
from csms.store.types import utcnow

log = structlog.get_logger("csms.handlers.transactions")


@dataclass(frozen=True, slots=True)
class TxEvent:
    """The parts of a TransactionEventRequest the store keeps, read once."""

    station_id: str
    transaction_id: str
    event_type: str  # Started | Updated | Ended
    seq_no: int
    timestamp: datetime
    trigger_reason: str
    offline: bool
    evse_id: int | None
    connector_id: int | None
    info: dict[str, Any]  # transactionInfo
    id_token: str | None
    payload: dict[str, Any]

    @classmethod
    def read(cls, station_id: str, req: Payload) -> TxEvent:
        evse = req.get("evse") or {}
        connector = evse.get("connectorId")
        return cls(
            station_id=station_id,
            transaction_id=req["transactionInfo"]["transactionId"],
            event_type=req["eventType"],
            seq_no=int32(req["seqNo"], "seqNo"),
            timestamp=instant(req["timestamp"], "timestamp"),
            trigger_reason=req["triggerReason"],
            offline=req.get("offline", False),
            evse_id=int32(evse["id"], "evse/id") if evse else None,
            connector_id=int32(connector, "evse/connectorId") if connector is not None else None,
            info=req["transactionInfo"],
            id_token=(req.get("idToken") or {}).get("idToken"),
            payload=req,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    replay: bool  # already recorded: nothing was applied again
    missing_before: int | None  # seqNo gap: the seqNo we expected when this one is ahead
    samples: int
    id_token_info: Payload | None


async def transaction_event(ctx: HandlerContext, req: Payload) -> Payload:
    """E01-E15: record the event, apply it to the transaction, store its meter values."""
    event = TxEvent.read(ctx.station_id, req)
    id_token, now = req.get("idToken"), ctx.now()
    accept_unknown = ctx.services.policies.accept_unknown_id_tokens

    def unit(session: Session) -> Outcome:
        info = None
        if id_token is not None:  # an event carrying a token is answered with its status
            info = id_token_info(session, id_token, now, accept_unknown)
        if not insert_if_new(session, TransactionEventRecord, _record(event)):
            return Outcome(True, None, 0, info)
        tx, missing_before = apply_event(session, event)
        rows = sample_rows(
            event.station_id, tx.evse_id, req.get("meterValue", []), event.transaction_id
        )
        store_samples(session, rows)
        return Outcome(False, missing_before, len(rows), info)

    outcome = await ctx.write(unit)
    note_seen(ctx)
    _log(event, outcome)
    if not outcome.replay:
        ctx.services.domain.publish(
            StationData(
                "transaction",
                event.station_id,
                event.evse_id,
                event.transaction_id,
                event.event_type,
                event.timestamp,
                event.offline,
            )
        )
    return {"idTokenInfo": outcome.id_token_info} if outcome.id_token_info else {}


def _record(event: TxEvent) -> dict[str, Any]:
    return {
        "station_id": event.station_id,
        "transaction_id": event.transaction_id,
        "seq_no": event.seq_no,
        "event_type": event.event_type,
        "trigger_reason": event.trigger_reason,
        "timestamp": event.timestamp,  # the station's own time, also for offline events
        "offline": event.offline,
        "received_at": utcnow(),
        "payload": event.payload,
    }


def apply_event(session: Session, event: TxEvent) -> tuple[Transaction, int | None]:
    """Upsert the transaction from a first-seen event; returns it and the seqNo expected when
    this event skipped some (a gap is tolerated: the missing ones may still come)."""
    key = (event.station_id, event.transaction_id)
    tx = session.get(Transaction, key)
    if tx is None:
        # The Started event may be late or lost: until it comes, the first event seen
        # stands for the start.
        tx = Transaction(
            station_id=event.station_id,
            transaction_id=event.transaction_id,
            started_at=event.timestamp,
        )
        session.add(tx)
    missing_before = tx.last_seq_no + 1 if event.seq_no > tx.last_seq_no + 1 else None
    _apply_identity(tx, event)
    _apply_state(tx, event)
    tx.last_seq_no = max(tx.last_seq_no, event.seq_no)
    tx.updated_at = utcnow()
    return tx, missing_before


def _apply_identity(tx: Transaction, event: TxEvent) -> None:
    """What does not change during a transaction, kept from whichever event carries it."""
    if event.event_type == "Started":
        tx.started_at = event.timestamp
    if event.evse_id is not None:
        tx.evse_id = event.evse_id
    if event.connector_id is not None:
        tx.connector_id = event.connector_id
    if tx.id_token is None and event.id_token is not None:
        tx.id_token = event.id_token  # the token that started it, not a later stop token
    if event.info.get("remoteStartId") is not None:
        tx.remote_start_id = int32(event.info["remoteStartId"], "remoteStartId")


def _apply_state(tx: Transaction, event: TxEvent) -> None:
    """The state follows the newest event; once Ended, only an Ended event touches it."""
    if event.event_type == "Ended":
        tx.ended_at = event.timestamp
        tx.stopped_reason = event.info.get("stoppedReason", tx.stopped_reason)
    elif tx.ended_at is not None:
        return  # a late Updated (sent before the Ended, received after it) reopens nothing
    if event.seq_no > tx.last_seq_no and "chargingState" in event.info:
        tx.charging_state = event.info["chargingState"]


def _log(event: TxEvent, outcome: Outcome) -> None:
    fields = {
        "station_id": event.station_id,
        "transaction_id": event.transaction_id,
        "seq_no": event.seq_no,
        "event_type": event.event_type,
        "offline": event.offline,
    }
    if outcome.replay:
        log.info("transaction_event.replay_ignored", **fields)
        return
    if outcome.missing_before is not None:
        log.warning("transaction_event.seq_no_gap", expected=outcome.missing_before, **fields)
    log.debug("transaction_event.applied", samples=outcome.samples, **fields)
