"""Settings of one CSMS process, from the CLI and CSMS_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from csms.store.db import DEFAULT_DATABASE_URL
from simclock import Clock


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    ocpp_port: int = 9000
    api_port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    mqtt_url: str | None = None
    allow_unknown_stations: bool = False
    heartbeat_interval_s: int = 300
    call_timeout_s: float = 30.0
    ping_interval_s: float | None = 60.0
    ping_timeout_s: float | None = 60.0
    max_frame_bytes: int = 1_048_576
    # A station sends one CALL at a time (OCPP-J); more than this many waiting is abuse.
    max_queued_calls: int = 32
    journal: bool = True
    boot_configuration: bool = True
    node_id: str = "node-1"
    clock: Clock = field(default_factory=Clock)
