"""The device model of a simulated station (OCPP 2.0.1 / 2.1 Part 2 appendix 3 spellings).

The variables a bidirectional charger exposes: DeviceDataCtrlr, OCPPCommCtrlr (transaction
message attempts, B/E13), SampledDataCtrlr and AlignedDataCtrlr (what meter values carry and
how often, J01/J02), SmartChargingCtrlr (K), ISO15118Ctrlr, and on OCPP 2.1 one
V2XChargingCtrlr per EVSE of bidirectional hardware (Enabled, SupportedEnergyTransferModes,
SupportedOperationModes; Q01: Enabled starts false, V2X stays off until the CSMS sets it),
ConnectedEV while a car is plugged in, and the EVSE / Connector components.

`get` / `set` answer GetVariables (B06) / SetVariables (B05) entry by entry; `report` gives the
ReportDataType list of GetBaseReport (B07). Values are kept as the spec's strings; typed
accessors read them for the station engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from simulators.catalog import BPT_MODES, HardwareModel

# OCPP data types of VariableCharacteristicsType used here.
INTEGER, BOOLEAN, STRING, MEMBER_LIST, OPTION_LIST = (
    "integer",
    "boolean",
    "string",
    "MemberList",
    "OptionList",
)
RW, RO = "ReadWrite", "ReadOnly"

# SampledDataCtrlr / AlignedDataCtrlr measurands this meter can measure (J01/J02).
METER_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Energy.Active.Export.Register",
    "Power.Active.Import",
    "Power.Active.Export",
    "SoC",
)
# What a station of this kind answers for ItemsPerMessage / BytesPerMessage (B05-B07). assumed.
ITEMS_PER_MESSAGE = 32
BYTES_PER_MESSAGE = 65_536
# Report parts are split at this many ReportDataType entries (NotifyReport tbc, B07.FR.08).
REPORT_ITEMS_PER_PART = 20
# OCPPCommCtrlr defaults (E13): attempts and wall seconds between them. assumed.
DEFAULT_MESSAGE_ATTEMPTS = 3
DEFAULT_MESSAGE_ATTEMPT_INTERVAL_S = 10


@dataclass(frozen=True, slots=True)
class Key:
    component: str
    variable: str
    component_instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    variable_instance: str | None = None


@dataclass(frozen=True, slots=True)
class Variable:
    key: Key
    value: str
    data_type: str
    mutability: str = RO
    unit: str | None = None
    values_list: str | None = None

    def component_json(self) -> dict[str, Any]:
        k = self.key
        out: dict[str, Any] = {"name": k.component}
        if k.component_instance:
            out["instance"] = k.component_instance
        if k.evse_id is not None:
            out["evse"] = {"id": k.evse_id}
            if k.connector_id is not None:
                out["evse"]["connectorId"] = k.connector_id
        return out

    def variable_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.key.variable}
        if self.key.variable_instance:
            out["instance"] = self.key.variable_instance
        return out

    def report_data(self) -> dict[str, Any]:
        """ReportDataType (B07)."""
        characteristics: dict[str, Any] = {"dataType": self.data_type, "supportsMonitoring": False}
        if self.unit:
            characteristics["unit"] = self.unit
        if self.values_list:
            characteristics["valuesList"] = self.values_list
        return {
            "component": self.component_json(),
            "variable": self.variable_json(),
            "variableAttribute": [
                {"type": "Actual", "value": self.value, "mutability": self.mutability}
            ],
            "variableCharacteristics": characteristics,
        }


def key_of(component: dict[str, Any], variable: dict[str, Any]) -> Key:
    """The key of a ComponentType + VariableType pair as a request writes them."""
    evse = component.get("evse") or {}
    return Key(
        component=component["name"],
        variable=variable["name"],
        component_instance=component.get("instance"),
        evse_id=evse.get("id"),
        connector_id=evse.get("connectorId"),
        variable_instance=variable.get("instance"),
    )


class DeviceModel:
    """All variables of one station, keyed like the spec addresses them."""

    def __init__(self, variables: list[Variable]) -> None:
        self._vars: dict[Key, Variable] = {v.key: v for v in variables}

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def for_hardware(cls, hw: HardwareModel, version: str, meter_interval_s: int) -> DeviceModel:
        measurands = ",".join(m for m in METER_MEASURANDS if m in hw.measurands)
        options = ",".join(m for m in METER_MEASURANDS)
        out = [*_device_data(), *_comm()]
        out += _sampled(measurands, options, meter_interval_s)
        out += _aligned(measurands, options)
        out += _smart_charging(hw, version)
        out += [Variable(Key("ISO15118Ctrlr", "Enabled"), _b(hw.current_type == "DC"), BOOLEAN)]
        for evse_id in range(1, hw.evse_count + 1):
            out += _evse(hw, evse_id)
            if version == "2.1" and BPT_MODES & set(hw.energy_transfer_modes):
                out += _v2x(hw, evse_id)
        return cls(out)

    # --- B05 / B06 / B07 ------------------------------------------------------------------

    def _locate(self, request: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
        """The answer's identity part, the variable found, and the refusal when there is none
        (unknown component/variable, or an attribute type other than Actual)."""
        component, variable = request["component"], request["variable"]
        attribute = request.get("attributeType", "Actual")
        out: dict[str, Any] = {"component": component, "variable": variable}
        if attribute != "Actual":
            out["attributeType"] = attribute
        found, status = self._find(key_of(component, variable))
        if found is None:
            return out, None, {**out, "attributeStatus": status}
        if attribute != "Actual":
            return out, None, {**out, "attributeStatus": "NotSupportedAttributeType"}
        return out, found, None

    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        """One GetVariableResultType for one GetVariableDataType (B06)."""
        out, found, refusal = self._locate(request)
        if refusal is not None:
            return refusal
        return {**out, "attributeStatus": "Accepted", "attributeValue": found.value}

    def set(self, request: dict[str, Any]) -> dict[str, Any]:
        """One SetVariableResultType for one SetVariableDataType (B05)."""
        out, found, refusal = self._locate(request)
        if refusal is not None:
            return refusal
        if found.mutability == RO:
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": _why("ReadOnly")}
        value = _normalise(found, str(request["attributeValue"]))
        if value is None:
            info = _why("InvalidValue", f"not a valid {found.data_type} for {found.key.variable}")
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": info}
        self._vars[found.key] = replace(found, value=value)
        return {**out, "attributeStatus": "Accepted"}

    def report(self, report_base: str) -> list[dict[str, Any]]:
        """ReportDataType entries of GetBaseReport (B07): Full, Configuration (writable), or
        Summary (availability) inventory."""
        chosen = list(self._vars.values())
        if report_base == "ConfigurationInventory":
            chosen = [v for v in chosen if v.mutability != RO]
        elif report_base == "SummaryInventory":
            chosen = [v for v in chosen if v.key.variable in ("Available", "AvailabilityState")]
        return [v.report_data() for v in chosen]

    def _find(self, key: Key) -> tuple[Variable | None, str]:
        found = self._vars.get(key)
        if found is not None:
            return found, "Accepted"
        same_component = any(
            (k.component, k.component_instance, k.evse_id, k.connector_id)
            == (key.component, key.component_instance, key.evse_id, key.connector_id)
            for k in self._vars
        )
        return None, "UnknownVariable" if same_component else "UnknownComponent"

    # --- the engine's view ----------------------------------------------------------------

    def value(self, component: str, variable: str, **where: Any) -> str | None:
        found = self._vars.get(Key(component, variable, **where))
        return None if found is None else found.value

    def integer(self, component: str, variable: str, default: int, **where: Any) -> int:
        text = self.value(component, variable, **where)
        try:
            return int(text) if text is not None else default
        except ValueError:
            return default

    def members(self, component: str, variable: str) -> tuple[str, ...]:
        text = self.value(component, variable) or ""
        return tuple(m.strip() for m in text.split(",") if m.strip())

    def flag(self, component: str, variable: str, **where: Any) -> bool:
        return (self.value(component, variable, **where) or "").lower() == "true"

    def v2x_enabled(self, evse_id: int) -> bool:
        """Q01: `V2XChargingCtrlr.Enabled` of this EVSE (absent on 2.0.1: never)."""
        return self.flag("V2XChargingCtrlr", "Enabled", evse_id=evse_id)

    def message_attempts(self) -> int:
        default = DEFAULT_MESSAGE_ATTEMPTS
        return max(1, self.integer("OCPPCommCtrlr", "MessageAttempts", default, **_TX_INSTANCE))

    def message_attempt_interval_s(self) -> int:
        default = DEFAULT_MESSAGE_ATTEMPT_INTERVAL_S
        return self.integer("OCPPCommCtrlr", "MessageAttemptInterval", default, **_TX_INSTANCE)

    def plug(self, evse_id: int, vehicle_id: str, protocol: str) -> None:
        """ConnectedEV while a car is plugged in (2.1 device model; reported on request)."""
        base = {"component_instance": None, "evse_id": evse_id}
        for name, value in (
            ("Available", "true"),
            ("VehicleId", vehicle_id),
            ("ProtocolAgreed", protocol),
        ):
            data_type = BOOLEAN if name == "Available" else STRING
            self._vars[Key("ConnectedEV", name, **base)] = Variable(
                Key("ConnectedEV", name, **base), value, data_type
            )

    def unplug(self, evse_id: int) -> None:
        for key in [k for k in self._vars if k.component == "ConnectedEV" and k.evse_id == evse_id]:
            del self._vars[key]


_TX_INSTANCE = {"variable_instance": "TransactionEvent"}


def _b(value: bool) -> str:
    return "true" if value else "false"


def _why(code: str, detail: str | None = None) -> dict[str, Any]:
    return {"reasonCode": code, **({"additionalInfo": detail} if detail else {})}


def _normalise(var: Variable, text: str) -> str | None:
    """The value in canonical form, or None when it does not fit the variable's type."""
    text = text.strip()
    if var.data_type == INTEGER:
        try:
            number = int(text)
        except ValueError:
            return None
        return str(number) if number >= 0 else None
    if var.data_type == BOOLEAN:
        return text.lower() if text.lower() in ("true", "false") else None
    if var.data_type in (MEMBER_LIST, OPTION_LIST) and var.values_list:
        allowed = set(var.values_list.split(","))
        members = [m.strip() for m in text.split(",") if m.strip()]
        if not set(members) <= allowed or (var.data_type == OPTION_LIST and len(members) != 1):
            return None
        return ",".join(members)
    return text


def _device_data() -> list[Variable]:
    out = []
    for instance in ("GetReport", "GetVariables", "SetVariables"):
        out.append(
            Variable(
                Key("DeviceDataCtrlr", "ItemsPerMessage", variable_instance=instance),
                str(ITEMS_PER_MESSAGE),
                INTEGER,
            )
        )
        out.append(
            Variable(
                Key("DeviceDataCtrlr", "BytesPerMessage", variable_instance=instance),
                str(BYTES_PER_MESSAGE),
                INTEGER,
            )
        )
    return out


def _comm() -> list[Variable]:
    return [
        Variable(
            Key("OCPPCommCtrlr", "MessageAttempts", **_TX_INSTANCE),
            str(DEFAULT_MESSAGE_ATTEMPTS),
            INTEGER,
            RW,
        ),
        Variable(
            Key("OCPPCommCtrlr", "MessageAttemptInterval", **_TX_INSTANCE),
            str(DEFAULT_MESSAGE_ATTEMPT_INTERVAL_S),
            INTEGER,
            RW,
            unit="s",
        ),
        Variable(
            Key("OCPPCommCtrlr", "MessageTimeout", variable_instance="Default"),
            "30",
            INTEGER,
            RO,
            unit="s",
        ),
        Variable(Key("OCPPCommCtrlr", "HeartbeatInterval"), "300", INTEGER, RW, unit="s"),
    ]


def _sampled(measurands: str, options: str, interval_s: int) -> list[Variable]:
    c = "SampledDataCtrlr"
    return [
        Variable(Key(c, "Enabled"), "true", BOOLEAN, RW),
        Variable(Key(c, "TxStartedMeasurands"), measurands, MEMBER_LIST, RW, values_list=options),
        Variable(Key(c, "TxUpdatedMeasurands"), measurands, MEMBER_LIST, RW, values_list=options),
        Variable(Key(c, "TxEndedMeasurands"), measurands, MEMBER_LIST, RW, values_list=options),
        Variable(Key(c, "TxUpdatedInterval"), str(interval_s), INTEGER, RW, unit="s"),
        Variable(Key(c, "TxEndedInterval"), "0", INTEGER, RW, unit="s"),
    ]


def _aligned(measurands: str, options: str) -> list[Variable]:
    c = "AlignedDataCtrlr"
    return [
        Variable(Key(c, "Enabled"), "true", BOOLEAN, RW),
        Variable(Key(c, "Measurands"), measurands, MEMBER_LIST, RW, values_list=options),
        # 0 = no clock-aligned data until the CSMS asks for it (DESIGN §3.9 sets 900 s).
        Variable(Key(c, "Interval"), "0", INTEGER, RW, unit="s"),
    ]


# Profile-engine features of simulators.profiles, reported one instance each (2.1 only).
_FEATURES_21 = (
    "DynamicProfiles",
    "MaxOfflineDuration",
    "InvalidAfterOfflineDuration",
    "RandomizedDelay",
    "LimitAtSoC",
    "OperationModes",
)


def _smart_charging(hw: HardwareModel, version: str) -> list[Variable]:
    c = "SmartChargingCtrlr"
    out = [
        Variable(Key(c, "Enabled"), "true", BOOLEAN, RW),
        Variable(Key(c, "Available"), "true", BOOLEAN),
        Variable(Key(c, "RateUnit"), ",".join(hw.charging_rate_units), MEMBER_LIST),
        Variable(Key(c, "PeriodsPerSchedule"), "24", INTEGER),
        Variable(Key(c, "ProfileStackLevel"), "9", INTEGER),
        Variable(Key(c, "Entries", variable_instance="ChargingProfiles"), "16", INTEGER),
        Variable(Key(c, "ExternalControlSignalsEnabled"), "false", BOOLEAN, RW),
    ]
    if version == "2.1":
        out.append(
            Variable(
                Key(c, "SupportedAdditionalPurposes"),
                "PriorityCharging,LocalGeneration",
                MEMBER_LIST,
            )
        )
        out += [
            Variable(Key(c, "SupportsFeature", variable_instance=f), "true", BOOLEAN)
            for f in _FEATURES_21
        ]
    return out


def _evse(hw: HardwareModel, evse_id: int) -> list[Variable]:
    out = [
        Variable(Key("EVSE", "Available", evse_id=evse_id), "true", BOOLEAN),
        Variable(Key("EVSE", "AvailabilityState", evse_id=evse_id), "Available", STRING),
        Variable(
            Key("EVSE", "Power", evse_id=evse_id), str(round(hw.max_charge_w)), "decimal", unit="W"
        ),
    ]
    for connector_id, kind in enumerate(hw.connectors, start=1):
        where = {"evse_id": evse_id, "connector_id": connector_id}
        out += [
            Variable(Key("Connector", "Available", **where), "true", BOOLEAN),
            Variable(Key("Connector", "ConnectorType", **where), kind, STRING),
        ]
    return out


def _v2x(hw: HardwareModel, evse_id: int) -> list[Variable]:
    """V2XChargingCtrlr of one EVSE (2.1, bidirectional hardware). Enabled starts false (Q01)."""
    where = {"evse_id": evse_id}
    c = "V2XChargingCtrlr"
    return [
        Variable(Key(c, "Enabled", **where), "false", BOOLEAN, RW),
        Variable(
            Key(c, "SupportedEnergyTransferModes", **where),
            ",".join(hw.energy_transfer_modes),
            MEMBER_LIST,
        ),
        Variable(
            Key(c, "SupportedOperationModes", **where),
            ",".join(hw.v2x_operation_modes),
            MEMBER_LIST,
        ),
    ]
