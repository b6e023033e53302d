"""Boot-time configuration (DESIGN §3.9): send what csms.boot_config plans, record every answer
in VariableSetResult, keep the stored device model in step, ask for the device model when none
is known yet."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from csms import boot_config
from csms.commands.results import BootConfigurationResult, CommandResult
from csms.handlers.provisioning import upsert_variables
from csms.store.models import DeviceVariable, Station, VariableSetResult
from csms.store.types import utcnow
from csms.store.writer import fresh
from ocppj.versions import V21

if TYPE_CHECKING:
    from csms.commands import Commands

log = structlog.get_logger("csms.commands")

# What a SetVariables entry may answer that still leaves the value set (B05).
_SET_OK = frozenset({"Accepted", "RebootRequired"})


class BootConfiguration:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    async def configure(self, station_id: str, force: bool = False) -> BootConfigurationResult:
        """Set what the V2G features need (csms.boot_config), record every entry's result in
        VariableSetResult, and mark the station configured when every entry took."""
        session = self.commands.services.registry.get(station_id)
        version = session.version if session is not None else V21
        known = await self._known_variables(station_id)
        plan = boot_config.plan_boot_configuration(version, known, force=force)
        statuses: list[str] = []
        rows: list[VariableSetResult] = []
        for batch in boot_config.batches(plan, known):
            request = {"setVariableData": [s.set_variable_data() for s in batch]}
            result = await self.commands.set_variables(station_id, request)
            batch_rows = _set_result_rows(station_id, batch, result)
            rows += batch_rows
            statuses += [row.status for row in batch_rows]
        configured = all(status in _SET_OK for status in statuses)
        await self._store_boot_configuration(station_id, plan, rows, configured)
        if not known:
            # Whether the station has V2XChargingCtrlr (and so what else to set) shows only in
            # its device model: ask for it; the complete report configures the rest
            # (csms.handlers.provisioning.notify_report).
            await self.commands.get_base_report(
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
        async with self.commands.services.db.read() as session:
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
            await self.commands.services.writer.write(unit, label="boot-configuration")
        except Exception as exc:  # runs after a reply: log, never raise into the session
            log.error("boot_configuration.not_recorded", station_id=station_id, error=repr(exc))


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
