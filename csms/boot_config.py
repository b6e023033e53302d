"""What the CSMS sets on a station at boot (DESIGN.md §3.9), as data and a pure planner.

The V2G features need, on every station: the transaction meter values to carry both energy
registers, both power directions and SoC (settlement measures export from registers, never
from setpoints); aligned data every 15 minutes (the telemetry interval the programs ask for);
enough TransactionEvent attempts for transaction messages to survive an outage; and on 2.1
`V2XChargingCtrlr.Enabled` on each EVSE that has that component (Q01: V2X stays off until the
CSMS enables it). Spellings follow the device model of OCPP 2.0.1 / 2.1 Part 2 appendix 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ocppj.versions import V21, OcppVersion

PURPOSE = "boot-configuration"

TX_UPDATED_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Energy.Active.Export.Register",
    "Power.Active.Import",
    "Power.Active.Export",
    "SoC",
)
ALIGNED_DATA_INTERVAL_S = 900  # the 15-minute telemetry interval (DOMAIN: promise 6)
# Attempts to deliver each TransactionEvent (E13); with the station's retry interval this
# rides out a CSMS restart or a short outage. *assumed* value: no program document names one.
TRANSACTION_MESSAGE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class VariableKey:
    """Where a device-model attribute lives; the identity of a DeviceVariable row."""

    component: str
    variable: str
    component_instance: str = ""
    evse_id: int = 0
    variable_instance: str = ""
    attribute_type: str = "Actual"


@dataclass(frozen=True, slots=True)
class VariableSetting:
    key: VariableKey
    value: str

    def set_variable_data(self) -> dict[str, object]:
        """This setting as one SetVariableDataType entry (spec camelCase)."""
        component: dict[str, object] = {"name": self.key.component}
        if self.key.component_instance:
            component["instance"] = self.key.component_instance
        if self.key.evse_id:
            component["evse"] = {"id": self.key.evse_id}
        variable: dict[str, object] = {"name": self.key.variable}
        if self.key.variable_instance:
            variable["instance"] = self.key.variable_instance
        return {
            "attributeType": self.key.attribute_type,
            "attributeValue": self.value,
            "component": component,
            "variable": variable,
        }


MEASURANDS = VariableKey("SampledDataCtrlr", "TxUpdatedMeasurands")
ALIGNED_INTERVAL = VariableKey("AlignedDataCtrlr", "Interval")
MESSAGE_ATTEMPTS = VariableKey(
    "OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent"
)
V2X_COMPONENT = "V2XChargingCtrlr"
# How many SetVariableData entries the station takes in one SetVariables (B05.FR.02 style
# limit); unknown means we send one message.
ITEMS_PER_SET_VARIABLES = VariableKey(
    "DeviceDataCtrlr", "ItemsPerMessage", variable_instance="SetVariables"
)


def desired_settings(
    version: OcppVersion, known: Mapping[VariableKey, str | None]
) -> list[VariableSetting]:
    """Everything the station should have, whatever it has now."""
    settings = [
        VariableSetting(MEASURANDS, ",".join(TX_UPDATED_MEASURANDS)),
        VariableSetting(ALIGNED_INTERVAL, str(ALIGNED_DATA_INTERVAL_S)),
        VariableSetting(MESSAGE_ATTEMPTS, str(TRANSACTION_MESSAGE_ATTEMPTS)),
    ]
    if version == V21:  # 2.0.1 has no V2XChargingCtrlr
        settings += [VariableSetting(key, "true") for key in v2x_enabled_keys(known)]
    return settings


def v2x_enabled_keys(known: Mapping[VariableKey, str | None]) -> list[VariableKey]:
    """`V2XChargingCtrlr.Enabled` of every V2XChargingCtrlr the device model shows (one per
    EVSE on bidirectional hardware), in a stable order."""
    places = {
        (key.component_instance, key.evse_id) for key in known if key.component == V2X_COMPONENT
    }
    return [
        VariableKey(V2X_COMPONENT, "Enabled", component_instance=instance, evse_id=evse_id)
        for instance, evse_id in sorted(places, key=lambda p: (p[1], p[0]))
    ]


def already_satisfied(setting: VariableSetting, current: str | None) -> bool:
    """Whether the station's reported value already does what `setting` asks."""
    if current is None:
        return False
    key = setting.key
    if key == MEASURANDS:  # "include": a station measuring more is fine
        have = {m.strip() for m in current.split(",") if m.strip()}
        return set(TX_UPDATED_MEASURANDS) <= have
    if key == MESSAGE_ATTEMPTS:  # "enough": more attempts are fine
        attempts = _as_int(current)
        return attempts is not None and attempts >= TRANSACTION_MESSAGE_ATTEMPTS
    if key == ALIGNED_INTERVAL:
        return _as_int(current) == ALIGNED_DATA_INTERVAL_S
    if key.component == V2X_COMPONENT:
        return current.strip().lower() == "true"
    return current.strip() == setting.value


def _as_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def plan_boot_configuration(
    version: OcppVersion,
    known_variables: Mapping[VariableKey, str | None],
    *,
    force: bool = False,
) -> list[VariableSetting]:
    """What to send now: everything when forced (first boot) or when the device model is not
    known yet; otherwise only what the stored device model shows differently."""
    wanted = desired_settings(version, known_variables)
    if force or not known_variables:
        return wanted
    return [s for s in wanted if not already_satisfied(s, known_variables.get(s.key))]


def batches(
    settings: list[VariableSetting], known: Mapping[VariableKey, str | None]
) -> list[list[VariableSetting]]:
    """Split `settings` into SetVariables messages the station accepts (ItemsPerMessage)."""
    limit = _as_int(known.get(ITEMS_PER_SET_VARIABLES) or "") or 0
    if limit < 1:  # not reported (or nonsense): everything in one message
        limit = max(1, len(settings))
    return [settings[i : i + limit] for i in range(0, len(settings), limit)]
