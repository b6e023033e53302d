"""The tables. One class per thing a station tells us or we tell it.

Conventions: instants are timezone-aware UTC (`UTCDateTime`); payloads we keep verbatim are the
spec's camelCase JSON; meter values are stored as sent (registers non-negative, power signed as
the station reports it). Identity columns that OCPP leaves optional use "" or 0 instead of NULL
so that unique constraints hold on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from csms.store.types import JSONType, UTCDateTime, utcnow


def _at(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _json(**kw: Any) -> Any:
    return Field(sa_type=JSONType, **kw)


class Station(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=48)
    vendor: str = ""
    model: str = ""
    serial_number: str = ""
    firmware_version: str = ""
    ocpp_version: str = ""
    registration_status: str = "Unknown"  # Accepted | Pending | Rejected as we last answered
    boot_reason: str = ""
    last_boot_at: datetime | None = _at(default=None)
    connected: bool = False
    connected_since: datetime | None = _at(default=None)
    last_seen: datetime | None = _at(default=None)
    node_id: str = ""
    # Security profile 1 (HTTP Basic auth): the bcrypt hash of the station's password.
    security_profile: int = 0
    password_hash: str | None = None
    # OCPP 2.0.1 has no standard way to declare discharge; the operator says so (DESIGN §3.6a).
    accepts_negative_limits: bool = False
    boot_configured_at: datetime | None = _at(default=None)
    created_at: datetime = _at(default_factory=utcnow)


class ConnectorStatus(SQLModel, table=True):
    __tablename__ = "connector_status"
    station_id: str = Field(primary_key=True, foreign_key="station.id", max_length=48)
    evse_id: int = Field(primary_key=True)
    connector_id: int = Field(primary_key=True)
    status: str
    updated_at: datetime = _at(default_factory=utcnow)


class DeviceVariable(SQLModel, table=True):
    """One attribute of one variable of the station's device model (from NotifyReport)."""

    __tablename__ = "device_variable"
    __table_args__ = (
        UniqueConstraint(
            "station_id",
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "attribute_type",
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(foreign_key="station.id", index=True, max_length=48)
    component: str
    component_instance: str = ""
    evse_id: int = 0  # 0: not bound to an EVSE
    connector_id: int = 0
    variable: str
    variable_instance: str = ""
    attribute_type: str = "Actual"
    value: str | None = None
    mutability: str | None = None
    characteristics: dict[str, Any] | None = _json(default=None)
    updated_at: datetime = _at(default_factory=utcnow)


class VariableSetResult(SQLModel, table=True):
    """What a station answered to each SetVariables entry we sent (boot configuration etc.)."""

    __tablename__ = "variable_set_result"
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(foreign_key="station.id", index=True, max_length=48)
    component: str
    component_instance: str = ""
    evse_id: int = 0
    variable: str
    variable_instance: str = ""
    attribute_type: str = "Actual"
    value: str
    status: str  # Accepted | Rejected | UnknownComponent | ... | Error (no answer)
    reason: str = ""
    purpose: str = ""  # e.g. "boot-configuration"
    requested_at: datetime = _at(default_factory=utcnow)


class IdToken(SQLModel, table=True):
    __tablename__ = "id_token"
    id_token: str = Field(primary_key=True, max_length=255)
    type: str = Field(primary_key=True, max_length=20)
    status: str = "Accepted"
    group_id: str | None = None
    expires_at: datetime | None = _at(default=None)


class Transaction(SQLModel, table=True):
    station_id: str = Field(primary_key=True, foreign_key="station.id", max_length=48)
    transaction_id: str = Field(primary_key=True, max_length=36)
    evse_id: int = 0
    connector_id: int = 0
    id_token: str | None = None
    started_at: datetime | None = _at(default=None)
    ended_at: datetime | None = _at(default=None)
    charging_state: str | None = None
    stopped_reason: str | None = None
    last_seq_no: int = -1
    remote_start_id: int | None = None
    updated_at: datetime = _at(default_factory=utcnow)


class TransactionEventRecord(SQLModel, table=True):
    """Each TransactionEvent once: a replay with the same seqNo is recognised and not re-applied."""

    __tablename__ = "transaction_event"
    __table_args__ = (UniqueConstraint("station_id", "transaction_id", "seq_no"),)
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(foreign_key="station.id", max_length=48)
    transaction_id: str = Field(max_length=36)
    seq_no: int
    event_type: str
    trigger_reason: str
    timestamp: datetime = _at()
    offline: bool = False
    received_at: datetime = _at(default_factory=utcnow)
    payload: dict[str, Any] = _json()


class MeterSample(SQLModel, table=True):
    """One sampled value as sent; duplicates from replays are dropped by the unique key."""

    __tablename__ = "meter_sample"
    __table_args__ = (
        UniqueConstraint(
            "station_id",
            "evse_id",
            "timestamp",
            "measurand",
            "phase",
            "location",
            "context",
        ),
        Index("ix_meter_sample_station_time", "station_id", "timestamp"),
        # Settlement reads a transaction's registers (DESIGN §3.8).
        Index("ix_meter_sample_station_tx", "station_id", "transaction_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(max_length=48)
    evse_id: int = 0
    transaction_id: str | None = None
    timestamp: datetime = _at()
    measurand: str = "Energy.Active.Import.Register"
    phase: str = ""
    location: str = ""
    context: str = ""
    unit: str = ""
    # unitOfMeasure.multiplier as sent: the quantity is value × 10^multiplier in `unit`.
    multiplier: int = 0
    value: float


class EvChargingNeeds(SQLModel, table=True):
    """What the EV asked for in NotifyEVChargingNeeds; the latest per EVSE is what counts."""

    __tablename__ = "ev_charging_needs"
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(foreign_key="station.id", index=True, max_length=48)
    evse_id: int
    # The transaction running on the EVSE when the needs arrived: needs speak for one car, and
    # must not vouch for the next one plugged in (the discharge gate checks it).
    transaction_id: str | None = Field(default=None, max_length=36)
    received_at: datetime = _at(default_factory=utcnow)
    requested_energy_transfer: str
    available_energy_transfer: list[str] | None = _json(default=None)
    control_mode: str | None = None
    departure_time: datetime | None = _at(default=None)
    offers_bpt: bool = False  # the EV offered a bidirectional (BPT) mode: it can discharge
    v2x_parameters: dict[str, Any] | None = _json(default=None)
    payload: dict[str, Any] = _json()


class ChargingProfileRecord(SQLModel, table=True):
    """A SetChargingProfile we sent, and what the station answered."""

    __tablename__ = "charging_profile"
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(foreign_key="station.id", index=True, max_length=48)
    evse_id: int
    profile_id: int
    stack_level: int
    purpose: str
    kind: str
    transaction_id: str | None = None
    discharges: bool = False
    origin: str = "api"  # api | cli | dispatcher | mqtt
    status: str = "Sent"  # Sent | Accepted | Rejected | Error | Cleared
    status_reason: str = ""
    request: dict[str, Any] = _json()
    sent_at: datetime = _at(default_factory=utcnow)
    answered_at: datetime | None = _at(default=None)
    # Dynamic profiles (2.1): the last UpdateDynamicSchedule `scheduleUpdate` the station
    # accepted for this profile; a PullDynamicScheduleUpdate is answered with it (Q04).
    schedule_update: dict[str, Any] | None = _json(default=None)
    schedule_updated_at: datetime | None = _at(default=None)


class StationReport(SQLModel, table=True):
    """Messages a station sends for the record, kept verbatim with their kind.

    ReportChargingProfiles, NotifyEVChargingSchedule, NotifyChargingLimit,
    ClearedChargingLimit, FirmwareStatusNotification, LogStatusNotification, NotifyEvent,
    NotifyDERStartStop, ReportDERControl, DataTransfer, NotifyPeriodicEventStream.
    """

    __tablename__ = "station_report"
    __table_args__ = (Index("ix_station_report_station_kind", "station_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(max_length=48)
    kind: str
    evse_id: int = 0
    status: str = ""
    received_at: datetime = _at(default_factory=utcnow)
    payload: dict[str, Any] = _json()


class SecurityEvent(SQLModel, table=True):
    __tablename__ = "security_event"
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(index=True, max_length=48)
    type: str
    timestamp: datetime = _at()
    tech_info: str = ""


class DerAlarm(SQLModel, table=True):
    """NotifyDERAlarm (R05): an inverter alarm raised or cleared."""

    __tablename__ = "der_alarm"
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(index=True, max_length=48)
    control_type: str
    grid_event_fault: str = ""
    alarm_ended: bool = False
    timestamp: datetime = _at()
    extra_info: str = ""


class JournalEntry(SQLModel, table=True):
    """Every OCPP frame in and out, as text: the audit trail and the debugger's best friend."""

    __tablename__ = "message_journal"
    __table_args__ = (Index("ix_journal_station_time", "station_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    station_id: str = Field(max_length=48)
    direction: str  # in | out
    message_type: int
    message_id: str = Field(max_length=40)
    action: str = ""
    frame: str
    at: datetime = _at(default_factory=utcnow)


# ---- V2G programs, enrolment and events (csms/scheduler; DESIGN §3) ------------------------


class Vehicle(SQLModel, table=True):
    """A participant's car or bus: its model from iso15118_profiles (capacity, BPT limits)."""

    id: str = Field(primary_key=True, max_length=64)
    ev_model: str = Field(max_length=64)
    label: str = ""
    created_at: datetime = _at(default_factory=utcnow)


class Enrollment(SQLModel, table=True):
    """A participant's vehicle on one EVSE, enrolled in programs, with the owner's promises:
    the floor (minimum SoC) and the usual departure (local time in `time_zone`)."""

    id: int | None = Field(default=None, primary_key=True)
    participant: str = Field(max_length=120)
    participant_class: str = (
        "residential"  # residential | commercial (programs.PARTICIPANT_CLASSES)
    )
    vehicle_id: str = Field(foreign_key="vehicle.id", max_length=64)
    station_id: str = Field(index=True, max_length=48)
    evse_id: int = 1
    # The hardware catalog id the pair was checked against (the station's reported hardware,
    # or the operator's `evse_model` where the station is not in the catalog).
    evse_model: str = Field(default="", max_length=64)
    programs: list[str] = _json(default_factory=list)
    min_soc_pct: float
    departure_time: str | None = None  # "HH:MM" local, usual departure on days it leaves
    time_zone: str = "America/New_York"
    webhook_url: str | None = None
    mqtt: bool = False
    active: bool = True
    created_at: datetime = _at(default_factory=utcnow)
    withdrawn_at: datetime | None = _at(default=None)


class CustomProgram(SQLModel, table=True):
    """An operator-defined program: the same definition the shipped TOML holds, as JSON."""

    __tablename__ = "custom_program"
    id: str = Field(primary_key=True, max_length=64)
    definition: dict[str, Any] = _json()
    created_at: datetime = _at(default_factory=utcnow)


class DrEvent(SQLModel, table=True):
    """A demand-response event: scheduled -> notified -> active -> completed | cancelled.

    `committed_kw` is what the plan nominates (a flat level the fleet holds for the window);
    `delivered_kw` is measured from registers at settlement (DESIGN §3.8, §3.10)."""

    __tablename__ = "dr_event"
    id: int | None = Field(default=None, primary_key=True)
    program_id: str = Field(max_length=64)
    start: datetime = _at()
    end: datetime = _at()
    time_zone: str = ""
    season: str = ""
    target_kw: float | None = None
    interval_s: int = 300
    # Share of the plan's flat level held back when committing: a car that leaves takes its
    # energy with it, and only a reserve lets the others cover it (ADR 0005).
    reserve_pct: float = 3.0
    closed_loop: bool = True  # re-plan on deviation; False only to measure what it is worth
    state: str = Field(default="scheduled", index=True)
    source: str = "api"  # api | cli | mqtt | openadr
    notify_at: datetime = _at()
    committed_kw: float | None = None
    optimum_kw: float | None = None  # the plan's flat level before the reserve margin
    delivered_kw: float | None = None
    exported_kwh: float | None = None
    plan_revision: int = 0
    created_at: datetime = _at(default_factory=utcnow)
    notified_at: datetime | None = _at(default=None)
    activated_at: datetime | None = _at(default=None)
    completed_at: datetime | None = _at(default=None)
    cancelled_at: datetime | None = _at(default=None)
    cancel_reason: str = ""
    settled_at: datetime | None = _at(default=None)
    restated_at: datetime | None = _at(default=None)
    restatements: int = 0
    owner_node: str = ""


class EventParticipant(SQLModel, table=True):
    """One enrolment's part in one event: notification, opt-out, dispatch and settlement."""

    __tablename__ = "event_participant"
    __table_args__ = (UniqueConstraint("event_id", "enrollment_id"),)
    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="dr_event.id", index=True)
    enrollment_id: int = Field(foreign_key="enrollment.id")
    station_id: str = Field(max_length=48)
    evse_id: int = 1
    # eligible | left_out | opted_out | dispatched | rejected | offline | unplugged | done
    status: str = "eligible"
    reason: str = ""
    notified_at: datetime | None = _at(default=None)
    opted_out_at: datetime | None = _at(default=None)
    transaction_id: str | None = None
    profile_id: int | None = None
    planned_kwh: float = 0.0  # grid side, in the current plan
    expected_soc_end_pct: float | None = None
    soc_start_pct: float | None = None
    soc_end_pct: float | None = None
    min_soc_seen_pct: float | None = None
    export_start_wh: float | None = None
    export_end_wh: float | None = None
    import_start_wh: float | None = None
    import_end_wh: float | None = None
    delivered_kwh: float | None = None  # net grid export in the window, from registers
    average_kw: float | None = None
    last_setpoint_w: float | None = None
    updated_at: datetime = _at(default_factory=utcnow)


class EventPlan(SQLModel, table=True):
    """Each plan revision of an event: why it was made and who exports what per interval."""

    __tablename__ = "event_plan"
    __table_args__ = (UniqueConstraint("event_id", "revision"),)
    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="dr_event.id", index=True)
    revision: int
    reason: str = ""
    method: str = "lp"
    committed_kw: float = 0.0
    interval_starts: list[str] = _json(default_factory=list)  # ISO-8601 UTC
    allocation: dict[str, Any] = _json(default_factory=dict)  # enrollment id -> [grid kW, ...]
    left_out: dict[str, Any] = _json(default_factory=dict)  # enrollment id -> reason
    created_at: datetime = _at(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """What a participant was told (DOMAIN promises 1 and 3), and how it was delivered."""

    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    participant: str = Field(max_length=120)
    event_id: int | None = Field(default=None, index=True)
    kind: str  # enrolled | event-scheduled | event-updated | event-cancelled | opted-out
    body: dict[str, Any] = _json()
    channels: list[str] = _json(default_factory=list)  # webhook, mqtt; [] = record only
    status: str = "pending"  # pending | delivered | failed | recorded
    attempts: int = 0
    last_error: str = ""
    created_at: datetime = _at(default_factory=utcnow)
    delivered_at: datetime | None = _at(default=None)
