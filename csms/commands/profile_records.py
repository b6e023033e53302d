"""The ChargingProfileRecord of every SetChargingProfile: sent, refused by the gate, answered,
replaced (K01.FR.05), cleared, and the last UpdateDynamicSchedule a station accepted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.commands.results import CommandResult, Request
from csms.gate import GateDecision
from csms.store.models import ChargingProfileRecord
from csms.store.types import utcnow
from csms.store.writer import GroupWriter, fresh

log = structlog.get_logger("csms.commands")


class ProfileRecords:
    def __init__(self, writer: GroupWriter) -> None:
        self.writer = writer

    async def sent(
        self, station_id: str, payload: dict[str, Any], origin: str, discharges: bool
    ) -> int:
        record = _profile_record(station_id, payload["evseId"], payload["chargingProfile"])
        record.request = payload
        record.origin = origin
        record.discharges = discharges

        def unit(session: Session) -> int:
            row = fresh(record)
            session.add(row)
            session.flush()
            assert row.id is not None
            return row.id

        return await self.writer.write(unit, label="charging-profile")

    async def refusal(
        self,
        station_id: str,
        evse_id: int,
        profile: Mapping[str, Any],
        payload: dict[str, Any],
        decision: GateDecision,
        origin: str,
    ) -> int | None:
        record = _profile_record(station_id, evse_id, profile)
        record.request = payload
        record.origin = origin
        record.discharges = True
        record.status = "Refused"
        record.status_reason = f"{decision.check}: {decision.reason}"[:1000]

        def unit(session: Session) -> int | None:
            row = fresh(record)
            session.add(row)
            session.flush()
            return row.id

        try:
            return await self.writer.write(unit, label="charging-profile")
        except Exception as exc:  # the refusal stands even if its record cannot be written
            log.error("gate.refusal_not_recorded", station_id=station_id, error=repr(exc))
            return None

    async def answer(self, record_id: int, result: CommandResult) -> None:
        status = result.status if result.ok and result.status else "Error"
        reason = _answer_reason(result)
        answered = utcnow()

        def unit(session: Session) -> None:
            record = session.get(ChargingProfileRecord, record_id)
            if record is None:
                return
            record.status = status
            record.status_reason = reason
            record.answered_at = answered
            if status == "Accepted":  # K01.FR.05: the same id replaces the profile in place
                _mark(session, record.station_id, "Replaced", _same_id(record))

        await self.writer.write(unit, label="charging-profile")

    async def cleared(self, station_id: str, request: Request) -> None:
        criteria = request.get("chargingProfileCriteria") or {}
        profile_id = request.get("chargingProfileId")

        def matches(record: ChargingProfileRecord) -> bool:
            return (
                (profile_id is None or record.profile_id == profile_id)
                and ("evseId" not in criteria or record.evse_id == criteria["evseId"])
                and (
                    "chargingProfilePurpose" not in criteria
                    or record.purpose == criteria["chargingProfilePurpose"]
                )
                and ("stackLevel" not in criteria or record.stack_level == criteria["stackLevel"])
            )

        def unit(session: Session) -> None:
            _mark(session, station_id, "Cleared", matches)

        await self.writer.write(unit, label="charging-profile")

    async def schedule_update(self, station_id: str, payload: dict[str, Any]) -> None:
        """Keep the update the station accepted on its profile's record: a station that pulls
        (PullDynamicScheduleUpdate) must get these setpoints, not the profile's first ones."""
        profile_id, update, at = payload["chargingProfileId"], payload["scheduleUpdate"], utcnow()

        def unit(session: Session) -> None:
            query = select(ChargingProfileRecord).where(
                ChargingProfileRecord.station_id == station_id,
                ChargingProfileRecord.profile_id == profile_id,
                ChargingProfileRecord.status == "Accepted",
            )
            for record in session.execute(query).scalars():
                record.schedule_update = update
                record.schedule_updated_at = at

        await self.writer.write(unit, label="charging-profile")


def _profile_record(
    station_id: str, evse_id: int, profile: Mapping[str, Any]
) -> ChargingProfileRecord:
    return ChargingProfileRecord(
        station_id=station_id,
        evse_id=evse_id,
        profile_id=profile.get("id", 0),
        stack_level=profile.get("stackLevel", 0),
        purpose=profile.get("chargingProfilePurpose", ""),
        kind=profile.get("chargingProfileKind", ""),
        transaction_id=profile.get("transactionId"),
        request={},
    )


def _answer_reason(result: CommandResult) -> str:
    if not result.ok:
        return f"{result.failure}: {result.reason}"
    info = result.payload.get("statusInfo") or {}
    return " ".join(str(info[k]) for k in ("reasonCode", "additionalInfo") if k in info)


def _same_id(newer: ChargingProfileRecord) -> Any:
    def matches(record: ChargingProfileRecord) -> bool:
        return record.profile_id == newer.profile_id and record.id != newer.id

    return matches


def _mark(session: Session, station_id: str, status: str, matches: Any) -> None:
    """Set `status` on the station's Accepted profile records that `matches` selects."""
    query = select(ChargingProfileRecord).where(
        ChargingProfileRecord.station_id == station_id,
        ChargingProfileRecord.status == "Accepted",
    )
    for record in session.execute(query).scalars():
        if matches(record):
            record.status = status
