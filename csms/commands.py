"""The one place that sends CSMS -> station requests, with timeouts and typed results.

Every command returns a `CommandResult` instead of raising or returning None (the `ocpp`
library's `suppress=True` turns an error into None): a caller always learns whether the
station answered, what it answered, or why there is no answer.

Signature style: every typed method takes the station id and the request payload as the spec
writes it, a mapping in camelCase (`{"evseId": 1, "chargingProfile": {...}}`), the same JSON
the REST API accepts and the journal shows. The payload is the same for 2.0.1 and 2.1; the
session's negotiated version picks the schema it is validated against, and a 2.1-only action
to a 2.0.1 station fails at once. (`send` also takes `ocpp.v21.call.*` / `ocpp.v201.call.*`
dataclasses for callers that prefer them.)

Every command that can make a station export (SetChargingProfile, RequestStartTransaction
with a charging profile, UpdateDynamicSchedule) passes the discharge gate (csms.gate) here,
so no caller can skip it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms import boot_config
from csms.gate import FOUNDATION_CHECKS, GateCheck, GateDecision, check_discharge
from csms.gate import profile_discharges as _profile_discharges
from csms.handlers.provisioning import upsert_variables
from csms.server.session import CallFailedError, StationSession
from csms.store.models import ChargingProfileRecord, DeviceVariable, Station, VariableSetResult
from csms.store.types import utcnow
from csms.store.writer import fresh
from ocppj.casing import payload_of
from ocppj.errors import RpcError
from ocppj.schemas import REQUEST, schema_set
from ocppj.versions import V21, OcppVersion

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.commands")

Request = Mapping[str, Any]

ORIGINS = frozenset({"api", "cli", "dispatcher", "mqtt"})
# What a SetVariables entry may answer that still leaves the value set (B05).
_SET_OK = frozenset({"Accepted", "RebootRequired"})


@dataclass(frozen=True, slots=True)
class CommandResult:
    station_id: str
    action: str
    ok: bool  # the station answered with a valid CALLRESULT
    payload: dict[str, Any] = field(default_factory=dict)
    # When not ok: not-connected | not-supported-by-version | timeout | call-error
    # | invalid-request | invalid-response | disconnected | refused (the discharge gate)
    failure: str | None = None
    error_code: str | None = None
    reason: str = ""
    # The ChargingProfileRecord written for a SetChargingProfile (sent or refused).
    record_id: int | None = None

    @property
    def status(self) -> str | None:
        """The `status` field most answers carry (Accepted, Rejected, ...)."""
        value = self.payload.get("status")
        return value if isinstance(value, str) else None

    @property
    def accepted(self) -> bool:
        return self.ok and self.status == "Accepted"


@dataclass(frozen=True, slots=True)
class BootConfigurationResult:
    station_id: str
    sent: tuple[boot_config.VariableSetting, ...]
    statuses: tuple[str, ...]  # per setting: the station's attributeStatus, or "Error"
    configured: bool  # every setting Accepted (or RebootRequired)


def _failed(station_id: str, action: str, failure: str, reason: str, **kw: Any) -> CommandResult:
    return CommandResult(station_id, action, False, failure=failure, reason=reason, **kw)


class Commands:
    def __init__(self, services: Services) -> None:
        self.services = services
        # The discharge gate's checks, in order; the V2G issue appends (c)-(e) here.
        self.gate_checks: list[tuple[str, GateCheck]] = list(FOUNDATION_CHECKS)

    # ---- the generic sender --------------------------------------------------------------

    async def send(
        self,
        station_id: str,
        message: Any,
        *,
        action: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Send a request (an `ocpp.v21.call.*` / `ocpp.v201.call.*` dataclass, or a spec-JSON
        dict with its `action`) and wait for the station's answer."""
        name = action or type(message).__name__
        session = self._session_for(station_id, name)
        if isinstance(session, CommandResult):
            return session
        try:
            name, payload = payload_of(message, session.version, action)
        except (KeyError, TypeError) as exc:
            return _failed(station_id, name, "invalid-request", str(exc))
        wait = timeout if timeout is not None else self.services.settings.call_timeout_s
        try:
            answer = await session.call(name, payload, wait)
        except CallFailedError as exc:
            log.info(
                "command.failed",
                station_id=station_id,
                action=name,
                failure=exc.kind,
                reason=exc.description,
            )
            return CommandResult(
                station_id,
                name,
                False,
                failure=exc.kind,
                error_code=exc.code,
                reason=exc.description,
            )
        log.info(
            "command.answered", station_id=station_id, action=name, status=answer.get("status")
        )
        return CommandResult(station_id, name, True, payload=answer)

    async def _plain(
        self, station_id: str, action: str, request: Request, timeout: float | None
    ) -> CommandResult:
        return await self.send(station_id, dict(request), action=action, timeout=timeout)

    # ---- smart charging (block K) --------------------------------------------------------

    async def set_charging_profile(
        self,
        station_id: str,
        request: Request,
        *,
        origin: str = "api",
        timeout: float | None = None,
    ) -> CommandResult:
        """K01: install a charging profile, through the discharge gate (§3.6). Writes a
        ChargingProfileRecord: Refused by the gate, or Sent and then the station's answer
        (Accepted/Rejected) or Error with the failure."""
        action = "SetChargingProfile"
        _check_origin(origin)
        checked = self._checked(station_id, action, request)
        if isinstance(checked, CommandResult):
            return checked
        version, payload = checked
        discharges = _profile_discharges(payload)
        profile = payload["chargingProfile"]
        if discharges:
            decision = await self._gate(
                station_id, version, evse_id=payload["evseId"], profile=profile, origin=origin
            )
            if not decision.allowed:
                record_id = await self._record_refusal(
                    station_id, payload["evseId"], profile, payload, decision, origin
                )
                return _refused(station_id, action, decision, record_id)
        record_id = await self._record_sent(station_id, payload, origin, discharges)
        result = await self.send(station_id, payload, action=action, timeout=timeout)
        await self._record_answer(record_id, result)
        return replace(result, record_id=record_id)

    async def clear_charging_profile(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """K10: clear profiles; the matching records become Cleared when the station accepts."""
        result = await self._plain(station_id, "ClearChargingProfile", request, timeout)
        if result.accepted:
            await self._mark_cleared(station_id, request)
        return result

    async def get_charging_profiles(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """K09: the station answers Accepted/NoProfiles, then sends ReportChargingProfiles."""
        return await self._plain(station_id, "GetChargingProfiles", request, timeout)

    async def get_composite_schedule(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """K08: the schedule the station will actually follow on an EVSE."""
        return await self._plain(station_id, "GetCompositeSchedule", request, timeout)

    async def update_dynamic_schedule(
        self,
        station_id: str,
        request: Request,
        *,
        origin: str = "dispatcher",
        timeout: float | None = None,
    ) -> CommandResult:
        """Q04 / K-dynamic (2.1): new setpoints for a Dynamic profile. A discharging update is
        gated against the profile it updates, as we last had it Accepted."""
        action = "UpdateDynamicSchedule"
        _check_origin(origin)
        checked = self._checked(station_id, action, request)
        if isinstance(checked, CommandResult):
            return checked
        version, payload = checked
        if _profile_discharges(payload):
            decision, known = await self._gate_dynamic_update(station_id, version, payload, origin)
            if not decision.allowed:
                evse_id = known.evse_id if known else 0
                profile = known.request.get("chargingProfile", {}) if known else {}
                record_id = await self._record_refusal(
                    station_id, evse_id, profile, payload, decision, origin
                )
                return _refused(station_id, action, decision, record_id)
        result = await self.send(station_id, payload, action=action, timeout=timeout)
        if result.accepted:
            await self._record_schedule_update(station_id, payload)
        return result

    async def _record_schedule_update(self, station_id: str, payload: dict[str, Any]) -> None:
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

        await self.services.writer.write(unit, label="charging-profile")

    # ---- transactions (block F) ----------------------------------------------------------

    async def request_start_transaction(
        self,
        station_id: str,
        request: Request,
        *,
        origin: str = "api",
        timeout: float | None = None,
    ) -> CommandResult:
        """F01/F02: remote start. A charging profile in it is gated like any other; a
        discharging one is refused, since no transaction runs yet to bind it to (§3.7)."""
        action = "RequestStartTransaction"
        _check_origin(origin)
        checked = self._checked(station_id, action, request)
        if isinstance(checked, CommandResult):
            return checked
        version, payload = checked
        profile = payload.get("chargingProfile")
        if profile is not None and _profile_discharges(payload):
            evse_id = payload.get("evseId", 0)
            decision = await self._gate(
                station_id, version, evse_id=evse_id, profile=profile, origin=origin
            )
            if not decision.allowed:
                record_id = await self._record_refusal(
                    station_id, evse_id, profile, payload, decision, origin
                )
                return _refused(station_id, action, decision, record_id)
        return await self.send(station_id, payload, action=action, timeout=timeout)

    async def request_stop_transaction(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """F03: remote stop of a transaction by its id."""
        return await self._plain(station_id, "RequestStopTransaction", request, timeout)

    # ---- provisioning, diagnostics, firmware (blocks B, N, L) ----------------------------

    async def get_variables(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """B06: read device-model variables."""
        return await self._plain(station_id, "GetVariables", request, timeout)

    async def set_variables(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """B05: set device-model variables; each entry is answered on its own."""
        return await self._plain(station_id, "SetVariables", request, timeout)

    async def get_base_report(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """B07: ask for the device model; it arrives as NotifyReport messages."""
        return await self._plain(station_id, "GetBaseReport", request, timeout)

    async def trigger_message(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """F06: ask the station to send a message now (e.g. MeterValues, StatusNotification)."""
        return await self._plain(station_id, "TriggerMessage", request, timeout)

    async def reset(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """B11/B12: reset the station or one EVSE (Immediate or OnIdle)."""
        return await self._plain(station_id, "Reset", request, timeout)

    async def update_firmware(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """L01: firmware update; progress arrives as FirmwareStatusNotification."""
        return await self._plain(station_id, "UpdateFirmware", request, timeout)

    async def get_log(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """N01: upload a log; progress arrives as LogStatusNotification."""
        return await self._plain(station_id, "GetLog", request, timeout)

    # ---- V2X and DER control (blocks Q, R; OCPP 2.1 only) --------------------------------

    async def notify_allowed_energy_transfer(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """Q01: allow energy transfer modes (e.g. DC_BPT) for a running transaction."""
        return await self._plain(station_id, "NotifyAllowedEnergyTransfer", request, timeout)

    async def set_der_control(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """R04: install a DER control (IEEE 1547 style curves, limits, fixed PF...)."""
        return await self._plain(station_id, "SetDERControl", request, timeout)

    async def get_der_control(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """R04: ask for installed DER controls; they arrive as ReportDERControl."""
        return await self._plain(station_id, "GetDERControl", request, timeout)

    async def clear_der_control(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """R04: remove DER controls by id or type."""
        return await self._plain(station_id, "ClearDERControl", request, timeout)

    # ---- boot-time configuration (DESIGN §3.9) -------------------------------------------

    async def configure_station(
        self, station_id: str, force: bool = False
    ) -> BootConfigurationResult:
        """Set what the V2G features need (csms.boot_config), record every entry's result in
        VariableSetResult, and mark the station configured when every entry took."""
        session = self.services.registry.get(station_id)
        version = session.version if session is not None else V21
        known = await self._known_variables(station_id)
        plan = boot_config.plan_boot_configuration(version, known, force=force)
        statuses: list[str] = []
        rows: list[VariableSetResult] = []
        for batch in boot_config.batches(plan, known):
            request = {"setVariableData": [s.set_variable_data() for s in batch]}
            result = await self.set_variables(station_id, request)
            batch_rows = _set_result_rows(station_id, batch, result)
            rows += batch_rows
            statuses += [row.status for row in batch_rows]
        configured = all(status in _SET_OK for status in statuses)
        await self._store_boot_configuration(station_id, plan, rows, configured)
        if not known:
            # Whether the station has V2XChargingCtrlr (and so what else to set) shows only in
            # its device model: ask for it; the complete report configures the rest
            # (csms.handlers.provisioning.notify_report).
            await self.get_base_report(
                station_id, {"requestId": secrets.randbelow(2**31), "reportBase": "FullInventory"}
            )
        log.info(
            "boot_configuration.done",
            station_id=station_id,
            sent=len(plan),
            configured=configured,
            statuses=statuses,
        )
        return BootConfigurationResult(station_id, tuple(plan), tuple(statuses), configured)

    async def _known_variables(self, station_id: str) -> dict[boot_config.VariableKey, str | None]:
        async with self.services.db.read() as session:
            query = select(DeviceVariable).where(DeviceVariable.station_id == station_id)
            rows = (await session.execute(query)).scalars()
            return {
                boot_config.VariableKey(
                    component=row.component,
                    variable=row.variable,
                    component_instance=row.component_instance,
                    evse_id=row.evse_id,
                    variable_instance=row.variable_instance,
                    attribute_type=row.attribute_type,
                ): row.value
                for row in rows
            }

    async def _store_boot_configuration(
        self,
        station_id: str,
        plan: list[boot_config.VariableSetting],
        rows: list[VariableSetResult],
        configured: bool,
    ) -> None:
        # `rows` follow `plan` one to one (batches keep the order).
        accepted = [s for s, row in zip(plan, rows, strict=True) if row.status == "Accepted"]

        def unit(session: Session) -> None:
            station = session.get(Station, station_id)
            if station is None:  # never registered: nothing to record against
                return
            session.add_all(fresh(row) for row in rows)
            # The station confirmed these values: the stored device model follows, so the
            # next boot compares against what the station now has.
            upsert_variables(session, station_id, [_device_row(s) for s in accepted])
            if configured:
                station.boot_configured_at = utcnow()

        try:
            await self.services.writer.write(unit, label="boot-configuration")
        except Exception as exc:  # runs after a reply: log, never raise into the session
            log.error("boot_configuration.not_recorded", station_id=station_id, error=repr(exc))

    # ---- helpers: validation, gate, records ----------------------------------------------

    def _session_for(self, station_id: str, action: str) -> StationSession | CommandResult:
        """The station's session, or why `action` cannot be sent to it now."""
        session = self.services.registry.get(station_id)
        if session is None:
            return _failed(
                station_id, action, "not-connected", f"station {station_id!r} is not connected"
            )
        if action not in schema_set(session.version).actions:  # e.g. a 2.1-only V2X command
            return _failed(
                station_id,
                action,
                "not-supported-by-version",
                f"OCPP {session.version.name} (spoken by station {station_id!r}) has no {action}",
            )
        return session

    def _checked(
        self, station_id: str, action: str, request: Request
    ) -> CommandResult | tuple[OcppVersion, dict[str, Any]]:
        """The request in spec spelling, valid for the session's version, or why not."""
        session = self._session_for(station_id, action)
        if isinstance(session, CommandResult):
            return session
        try:
            _, payload = payload_of(dict(request), session.version, action)
            schema_set(session.version).check(action, REQUEST, payload)
        except RpcError as error:
            return _failed(
                station_id, action, "invalid-request", error.description, error_code=error.code
            )
        except (KeyError, TypeError) as exc:
            return _failed(station_id, action, "invalid-request", str(exc))
        return session.version, payload

    async def _gate(
        self,
        station_id: str,
        version: OcppVersion,
        *,
        evse_id: int,
        profile: Mapping[str, Any],
        origin: str,
        periods: list[Mapping[str, Any]] | None = None,
    ) -> GateDecision:
        async with self.services.db.read() as session:
            return await check_discharge(
                session,
                station_id=station_id,
                version=version,
                evse_id=evse_id,
                profile=profile,
                periods=periods,
                origin=origin,
                checks=self.gate_checks,
            )

    async def _gate_dynamic_update(
        self, station_id: str, version: OcppVersion, payload: dict[str, Any], origin: str
    ) -> tuple[GateDecision, ChargingProfileRecord | None]:
        profile_id = payload["chargingProfileId"]
        async with self.services.db.read() as session:
            query = (
                select(ChargingProfileRecord)
                .where(
                    ChargingProfileRecord.station_id == station_id,
                    ChargingProfileRecord.profile_id == profile_id,
                    ChargingProfileRecord.status == "Accepted",
                )
                .order_by(ChargingProfileRecord.id.desc())  # type: ignore[union-attr]
                .limit(1)
            )
            known = (await session.execute(query)).scalar_one_or_none()
        if known is None:
            reason = (
                f"no Accepted charging profile {profile_id} is known on station {station_id}: "
                "a discharging dynamic update needs the Dynamic TxProfile it updates"
            )
            return GateDecision(False, reason, "profile"), None
        decision = await self._gate(
            station_id,
            version,
            evse_id=known.evse_id,
            profile=known.request.get("chargingProfile", {}),
            origin=origin,
            periods=[payload["scheduleUpdate"]],
        )
        return decision, known

    async def _record_sent(
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

        return await self.services.writer.write(unit, label="charging-profile")

    async def _record_refusal(
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
            return await self.services.writer.write(unit, label="charging-profile")
        except Exception as exc:  # the refusal stands even if its record cannot be written
            log.error("gate.refusal_not_recorded", station_id=station_id, error=repr(exc))
            return None

    async def _record_answer(self, record_id: int, result: CommandResult) -> None:
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

        await self.services.writer.write(unit, label="charging-profile")

    async def _mark_cleared(self, station_id: str, request: Request) -> None:
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

        await self.services.writer.write(unit, label="charging-profile")


def _check_origin(origin: str) -> None:
    if origin not in ORIGINS:  # a caller's bug, not a station's or an operator's input
        raise ValueError(f"origin must be one of {sorted(ORIGINS)}, got {origin!r}")


def _refused(
    station_id: str, action: str, decision: GateDecision, record_id: int | None
) -> CommandResult:
    return _failed(
        station_id,
        action,
        "refused",
        decision.reason,
        error_code=decision.check,
        record_id=record_id,
    )


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


def _set_result_rows(
    station_id: str, batch: list[boot_config.VariableSetting], result: CommandResult
) -> list[VariableSetResult]:
    """One VariableSetResult per setting: the station's answer to it, or Error."""
    answers = result.payload.get("setVariableResult", []) if result.ok else []
    rows = []
    now = utcnow()
    for setting in batch:
        answer = next((a for a in answers if _answers(a, setting)), None)
        if answer is None:
            status = "Error"
            reason = (
                f"{result.failure}: {result.reason}"
                if not result.ok
                else "the station's answer has no result for this variable"
            )
        else:
            status = answer["attributeStatus"]
            info = answer.get("attributeStatusInfo") or {}
            reason = " ".join(str(info[k]) for k in ("reasonCode", "additionalInfo") if k in info)
        rows.append(_set_row(station_id, setting, status, reason, now))
    return rows


def _answers(answer: Mapping[str, Any], setting: boot_config.VariableSetting) -> bool:
    component, variable = answer.get("component", {}), answer.get("variable", {})
    key = setting.key
    return (
        component.get("name") == key.component
        and component.get("instance", "") == key.component_instance
        and (component.get("evse") or {}).get("id", 0) == key.evse_id
        and variable.get("name") == key.variable
        and variable.get("instance", "") == key.variable_instance
        and answer.get("attributeType", "Actual") == key.attribute_type
    )


def _set_row(
    station_id: str,
    setting: boot_config.VariableSetting,
    status: str,
    reason: str,
    at: datetime,
) -> VariableSetResult:
    key = setting.key
    return VariableSetResult(
        station_id=station_id,
        component=key.component,
        component_instance=key.component_instance,
        evse_id=key.evse_id,
        variable=key.variable,
        variable_instance=key.variable_instance,
        attribute_type=key.attribute_type,
        value=setting.value,
        status=status,
        reason=reason[:500],
        purpose=boot_config.PURPOSE,
        requested_at=at,
    )


def _device_row(setting: boot_config.VariableSetting) -> dict[str, Any]:
    key = setting.key
    return {
        "component": key.component,
        "component_instance": key.component_instance,
        "evse_id": key.evse_id,
        "connector_id": 0,
        "variable": key.variable,
        "variable_instance": key.variable_instance,
        "attribute_type": key.attribute_type,
        "value": setting.value,
    }
