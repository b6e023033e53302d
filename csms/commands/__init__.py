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

Layout: this module holds `Commands` (the sender and one method per command, gated where it
must be); `results` what they return; `profile_records` the ChargingProfileRecord bookkeeping;
`boot` the boot-time configuration.

Every command that can make a station export (SetChargingProfile, RequestStartTransaction
with a charging profile, UpdateDynamicSchedule) passes the discharge gate (csms.gate) here,
so no caller can skip it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select

from csms.commands.boot import BootConfiguration
from csms.commands.profile_records import ProfileRecords
from csms.commands.results import (
    BootConfigurationResult,
    CommandResult,
    Request,
    check_origin,
    failed,
    refused,
)
from csms.gate import FOUNDATION_CHECKS, GateCheck, GateDecision, check_discharge
from csms.gate import profile_discharges as _profile_discharges
from csms.server.session import CallFailedError, StationSession
from csms.store.models import ChargingProfileRecord
from ocppj.casing import payload_of
from ocppj.errors import RpcError
from ocppj.schemas import REQUEST, schema_set
from ocppj.versions import OcppVersion

if TYPE_CHECKING:
    from csms.services import Services

__all__ = ["BootConfigurationResult", "CommandResult", "Commands", "Request"]

log = structlog.get_logger("csms.commands")


class Commands:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.records = ProfileRecords(services.writer)
        self.boot = BootConfiguration(self)
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
            return failed(station_id, name, "invalid-request", str(exc))
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
        check_origin(origin)
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
                return await self._refuse(
                    station_id, action, payload["evseId"], profile, payload, decision, origin
                )
        record_id = await self.records.sent(station_id, payload, origin, discharges)
        result = await self.send(station_id, payload, action=action, timeout=timeout)
        await self.records.answer(record_id, result)
        return replace(result, record_id=record_id)

    async def clear_charging_profile(
        self, station_id: str, request: Request, *, timeout: float | None = None
    ) -> CommandResult:
        """K10: clear profiles; the matching records become Cleared when the station accepts."""
        result = await self._plain(station_id, "ClearChargingProfile", request, timeout)
        if result.accepted:
            await self.records.cleared(station_id, request)
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
        check_origin(origin)
        checked = self._checked(station_id, action, request)
        if isinstance(checked, CommandResult):
            return checked
        version, payload = checked
        if _profile_discharges(payload):
            decision, known = await self._gate_dynamic_update(station_id, version, payload, origin)
            if not decision.allowed:
                evse_id = known.evse_id if known else 0
                profile = known.request.get("chargingProfile", {}) if known else {}
                return await self._refuse(
                    station_id, action, evse_id, profile, payload, decision, origin
                )
        result = await self.send(station_id, payload, action=action, timeout=timeout)
        if result.accepted:
            await self.records.schedule_update(station_id, payload)
        return result

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
        check_origin(origin)
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
                return await self._refuse(
                    station_id, action, evse_id, profile, payload, decision, origin
                )
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
        """Set what the V2G features need; see csms.commands.boot."""
        return await self.boot.configure(station_id, force)

    # ---- helpers: validation, gate, records ----------------------------------------------

    def _session_for(self, station_id: str, action: str) -> StationSession | CommandResult:
        """The station's session, or why `action` cannot be sent to it now."""
        session = self.services.registry.get(station_id)
        if session is None:
            return failed(
                station_id, action, "not-connected", f"station {station_id!r} is not connected"
            )
        if action not in schema_set(session.version).actions:  # e.g. a 2.1-only V2X command
            return failed(
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
            return failed(
                station_id, action, "invalid-request", error.description, error_code=error.code
            )
        except (KeyError, TypeError) as exc:
            return failed(station_id, action, "invalid-request", str(exc))
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

    async def _refuse(
        self,
        station_id: str,
        action: str,
        evse_id: int,
        profile: Mapping[str, Any],
        payload: dict[str, Any],
        decision: GateDecision,
        origin: str,
    ) -> CommandResult:
        """The gate said no: record the refusal; nothing reaches the station."""
        record_id = await self.records.refusal(
            station_id, evse_id, profile, payload, decision, origin
        )
        return refused(station_id, action, decision, record_id)

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
