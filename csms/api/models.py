"""Request and response models of /api/v1, named for the resource; every field described,
since the OpenAPI document is the API's manual."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from csms.server.auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH


class Problem(BaseModel):
    detail: Any = Field(description="Why the request failed: a sentence, or a list of errors.")


class StationSummary(BaseModel):
    id: str = Field(description="The station id (the last path segment of its OCPP URL).")
    vendor: str = Field(description="Vendor name from the last BootNotification.")
    model: str = Field(description="Model from the last BootNotification.")
    serial_number: str = Field(description="Serial number from the last BootNotification.")
    firmware_version: str = Field(description="Firmware version from the last BootNotification.")
    ocpp_version: str = Field(description='OCPP version of the last connection: "2.1"/"2.0.1".')
    registration_status: str = Field(
        description="What we answered the last BootNotification: Accepted, Pending, Rejected "
        "(Unknown before the first boot)."
    )
    connected: bool = Field(description="Whether a CSMS node holds a websocket to it now.")
    connected_here: bool = Field(description="Whether this node holds that websocket.")
    connected_since: datetime | None = Field(description="When the current connection opened.")
    last_seen: datetime | None = Field(description="Last message or connection change (UTC).")
    boot_reason: str = Field(description="BootReason of the last BootNotification.")
    last_boot_at: datetime | None = Field(description="When the last BootNotification came.")
    boot_configured_at: datetime | None = Field(
        description="When the boot-time configuration (DESIGN §3.9) was last fully accepted."
    )
    accepts_negative_limits: bool = Field(
        description="Operator setting: a 2.0.1 station discharges on a negative limit."
    )
    security_profile: int = Field(
        description="0: no station authentication; 1: HTTP Basic auth with its password."
    )


class ConnectorView(BaseModel):
    connector_id: int = Field(description="Connector id within the EVSE.")
    status: str = Field(description="Last StatusNotification connectorStatus.")
    updated_at: datetime = Field(description="Timestamp of that StatusNotification (UTC).")


class MeterValueView(BaseModel):
    measurand: str = Field(description="OCPP measurand, e.g. Energy.Active.Export.Register.")
    phase: str = Field(description="Phase as sent, empty when none.")
    location: str = Field(description="Location as sent (Outlet, Inlet, EV...), empty if none.")
    context: str = Field(description="ReadingContext as sent, empty when none.")
    unit: str = Field(description="Unit as sent (Wh, W, Percent...), empty when none.")
    value: float = Field(
        description="The value as sent: registers non-negative; power signed as the station "
        "reports it (+ import into the car, - export)."
    )
    timestamp: datetime = Field(description="Sample time (UTC).")
    transaction_id: str | None = Field(description="Transaction the sample belongs to, if any.")


class EvNeedsView(BaseModel):
    received_at: datetime = Field(description="When the NotifyEVChargingNeeds arrived (UTC).")
    requested_energy_transfer: str = Field(description="Mode the EV requested, e.g. DC_BPT.")
    available_energy_transfer: list[str] | None = Field(
        description="Modes the EV offers (2.1 only)."
    )
    control_mode: str | None = Field(description="ScheduledControl or DynamicControl (2.1).")
    departure_time: datetime | None = Field(description="When the EV expects to leave (UTC).")
    offers_bpt: bool = Field(description="The EV offered a bidirectional (BPT) mode.")
    v2x_parameters: dict[str, Any] | None = Field(
        description="v2xChargingParameters as sent (2.1): powers in W, energies in Wh."
    )


class TransactionView(BaseModel):
    transaction_id: str = Field(description="The station's transactionId.")
    evse_id: int = Field(description="EVSE the transaction runs on.")
    connector_id: int = Field(description="Connector, 0 when not reported.")
    started_at: datetime | None = Field(description="When it started (station time, UTC).")
    charging_state: str | None = Field(description="Last chargingState reported.")
    id_token: str | None = Field(description="The id token that authorised it, if any.")


class EvseView(BaseModel):
    evse_id: int = Field(description="EVSE id (1-based; 0 is the station as a whole).")
    connectors: list[ConnectorView] = Field(description="Connector states of this EVSE.")
    last_meter_values: list[MeterValueView] = Field(
        description="The latest sample per measurand, phase, location and context."
    )
    ev_needs: EvNeedsView | None = Field(
        description="The EV's latest NotifyEVChargingNeeds on this EVSE, if any."
    )


class StationDetail(StationSummary):
    evses: list[EvseView] = Field(description="Per EVSE: connectors, meter values, EV needs.")
    running_transactions: list[TransactionView] = Field(
        description="Transactions started and not yet ended."
    )


class StationSettingsPatch(BaseModel):
    """Operator settings; send only what changes. The password hash is never returned."""

    model_config = ConfigDict(extra="forbid")

    accepts_negative_limits: StrictBool | None = Field(
        default=None,
        description="Mark a 2.0.1 station as discharging on a negative limit (DESIGN §3.6a).",
    )
    password: str | None = Field(
        default=None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description="Security profile 1 password (16-40 characters, OCPP BasicAuthPassword); "
        "stored as a bcrypt hash, switches the station to security profile 1.",
    )
    security_profile: Literal[0, 1] | None = Field(
        default=None,
        description="0: accept the station without credentials; 1: require HTTP Basic auth "
        "(needs a password, set now or before).",
    )


class ChargingProfilePush(BaseModel):
    """The OCPP SetChargingProfileRequest as the spec writes it (camelCase). The profile is
    validated against the official schema of the station's OCPP version."""

    model_config = ConfigDict(extra="forbid")

    evse_id: StrictInt = Field(
        alias="evseId",
        ge=0,
        description="EVSE the profile applies to; 0 for station-wide profiles.",
    )
    charging_profile: dict[str, Any] = Field(
        alias="chargingProfile",
        description="The ChargingProfileType. For discharge: a TxProfile with the running "
        "transactionId; 2.1: operationMode CentralSetpoint, negative setpoint within "
        "[dischargeLimit, limit], chargingRateUnit W; 2.0.1: a negative limit.",
    )
    custom_data: dict[str, Any] | None = Field(
        default=None, alias="customData", description="OCPP CustomDataType, passed through."
    )

    def payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ChargingProfileAnswer(BaseModel):
    status: str = Field(description="The station's answer: Accepted or Rejected.")
    statusInfo: dict[str, Any] | None = Field(
        default=None, description="The station's StatusInfoType, when it gave one."
    )
    record_id: int | None = Field(
        description="Id of the stored charging-profile record of this push."
    )


class CompositeScheduleAnswer(BaseModel):
    status: str = Field(description="The station's answer: Accepted or Rejected.")
    statusInfo: dict[str, Any] | None = Field(
        default=None, description="The station's StatusInfoType, when it gave one."
    )
    schedule: dict[str, Any] | None = Field(
        default=None,
        description="CompositeScheduleType as the station sent it (periods in "
        "chargingRateUnit, negative values discharge).",
    )
