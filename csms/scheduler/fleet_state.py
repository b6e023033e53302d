"""What the dispatcher knows of each enrolled vehicle now, read from the store, and how that
becomes a planner `Vehicle` (DESIGN.md §3.2, §3.4).

A `Candidate` joins an enrolment with its EV model (iso15118_profiles), the station row and its
hardware (csms.scheduler.hardware), the running transaction, the EV's latest needs and the
latest SoC and registers the station reported. `why_not` says why a candidate cannot take part
now; `planner_vehicle` turns a candidate into the planner's input, keeping a guard above the
owner's floor so the meter interval between two looks cannot carry the car through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from csms.scheduler.hardware import hardware_of
from csms.scheduler.planner import Departure, Efficiency, Vehicle
from csms.store.models import (
    Enrollment,
    EvChargingNeeds,
    MeterSample,
    Station,
    Transaction,
)
from csms.store.models import Vehicle as VehicleRow
from csms.store.queries import latest_ev_needs, running_transaction
from iso15118_profiles import BPT_MODES, EvModel, get_ev_model
from ocppj.versions import V21, V201, OcppVersion
from simulators.catalog import HardwareModel

EXPORT = "Energy.Active.Export.Register"
IMPORT = "Energy.Active.Import.Register"
SOC = "SoC"
# Kept above the owner's floor: the energy of this long at the car's full discharge power, so
# that the control loop's look (every 20 s) and the SoC's rounding cannot carry the car through it.
FLOOR_GUARD_S = 30.0
VERSIONS = {"2.1": V21, "2.0.1": V201}


@dataclass(frozen=True, slots=True)
class Reading:
    """A register or SoC value as the station sent it, in Wh or %."""

    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Candidate:
    enrollment: Enrollment
    ev: EvModel
    station: Station | None
    hardware: HardwareModel | None
    connected: bool
    transaction: Transaction | None
    needs: EvChargingNeeds | None
    soc: Reading | None
    export: Reading | None
    import_: Reading | None

    @property
    def version(self) -> OcppVersion | None:
        return VERSIONS.get(self.station.ocpp_version) if self.station else None

    @property
    def key(self) -> str:
        return str(self.enrollment.id)

    @property
    def evse_max_kw(self) -> float:
        """Grid-side export ceiling: the product sheet's rating, capped by what the car and
        EVSE announced together (2.1 maxDischargePower is min(EV, EVSE), K15)."""
        rating = self.hardware.max_discharge_kw if self.hardware is not None else None
        announced = _v2x(self.needs, "maxDischargePower")
        limits = [x for x in (rating, announced / 1000.0 if announced else None) if x]
        return min(limits) if limits else self.ev.max_discharge_kw

    @property
    def ev_max_kw(self) -> float:
        """Battery-side discharge limit of the car model (ISO 15118-20 EVMaximumDischargePower)."""
        return self.ev.max_discharge_kw

    @property
    def efficiency(self) -> Efficiency:
        if self.hardware is None:
            return Efficiency.constant()
        return Efficiency.from_hardware_curve(
            self.hardware.efficiency_curve, self.hardware.max_discharge_kw
        )

    @property
    def bpt_mode(self) -> str | None:
        """The bidirectional mode the car offered in its latest needs (2.1), for Q01."""
        if self.needs is None:
            return None
        offered = [
            self.needs.requested_energy_transfer,
            *(self.needs.available_energy_transfer or []),
        ]
        return next((m for m in offered if m in BPT_MODES), None)

    def why_not(self) -> str | None:
        """Why this vehicle cannot discharge now, or None when it can."""
        if self.station is None:
            return f"station {self.enrollment.station_id} has never connected"
        if not self.connected:
            return f"station {self.enrollment.station_id} is offline"
        if self.transaction is None:
            return "not plugged in (no transaction running on the EVSE)"
        if self.version == V201:
            if not self.station.accepts_negative_limits:
                return "OCPP 2.0.1 station not marked as accepting negative limits"
        elif self.bpt_mode is None or (
            self.needs is not None
            and self.needs.transaction_id not in (None, self.transaction.transaction_id)
        ):
            return "the car has not offered a bidirectional (BPT) mode in this session"
        if self.soc is None:
            return "no state of charge reported yet"
        return None

    def planner_vehicle(
        self,
        window_start: datetime,
        window_end: datetime,
        *,
        grid_cap_kw: float | None = None,
        drawn_kwh: float = 0.0,
    ) -> Vehicle:
        """The planner's view; `grid_cap_kw` is a measured capability below the rating, and
        `drawn_kwh` what the battery gave since its last SoC sample."""
        assert self.soc is not None
        capacity = self.ev.usable_capacity_kwh
        soc = self.soc.value - 100.0 * drawn_kwh / capacity
        guard_pct = 100.0 * self.ev.max_discharge_kw * FLOOR_GUARD_S / 3600.0 / capacity
        floor = min(100.0, self.enrollment.min_soc_pct + guard_pct)
        evse = self.evse_max_kw if grid_cap_kw is None else min(self.evse_max_kw, grid_cap_kw)
        leaves = self.leaves_at(window_start, window_end)
        return Vehicle(
            id=self.key,
            capacity_kwh=capacity,
            soc_pct=max(0.0, min(100.0, soc)),
            floor_soc_pct=floor,
            evse_max_discharge_kw=max(0.0, evse),
            ev_max_discharge_kw=max(0.0, self.ev_max_kw),
            efficiency=self.efficiency,
            departure=Departure(leaves, floor / 100.0 * capacity) if leaves else None,
        )

    def leaves_at(self, window_start: datetime, window_end: datetime) -> datetime | None:
        """The car's departure if it falls inside the window: the EV's own departureTime or
        the owner's usual departure time (local), whichever comes first."""
        times = [
            t
            for t in (
                self.needs.departure_time if self.needs else None,
                _next_local(self.enrollment, window_start),
            )
            if t is not None and window_start <= t < window_end
        ]
        return min(times) if times else None


def _v2x(needs: EvChargingNeeds | None, name: str) -> float | None:
    if needs is None or not needs.v2x_parameters:
        return None
    value = needs.v2x_parameters.get(name)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _next_local(enrollment: Enrollment, after: datetime) -> datetime | None:
    if not enrollment.departure_time:
        return None
    hour, minute = (int(part) for part in enrollment.departure_time.split(":"))
    zone = ZoneInfo(enrollment.time_zone)
    local = after.astimezone(zone)
    at = datetime.combine(local.date(), time(hour, minute), zone)
    if at <= local:
        at = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), zone)
    return at.astimezone(after.tzinfo)


# ---- reading candidates ------------------------------------------------------------------


async def candidates(
    session: AsyncSession, enrollments: Iterable[Enrollment], connected: set[str]
) -> list[Candidate]:
    """Every enrolment's state now; `connected` holds the station ids with a live session."""
    out = []
    for enrollment in enrollments:
        vehicle = await session.get(VehicleRow, enrollment.vehicle_id)
        ev = get_ev_model(vehicle.ev_model) if vehicle else None
        if ev is None:
            continue
        out.append(await _candidate(session, enrollment, ev, connected))
    return out


async def _candidate(
    session: AsyncSession, enrollment: Enrollment, ev: EvModel, connected: set[str]
) -> Candidate:
    station = await session.get(Station, enrollment.station_id)
    sid, evse = enrollment.station_id, enrollment.evse_id
    tx = await running_transaction(session, sid, evse)
    readings = await latest_readings(session, sid, evse, tx.transaction_id if tx else None)
    return Candidate(
        enrollment=enrollment,
        ev=ev,
        station=station,
        hardware=hardware_of(station) if station else None,
        connected=sid in connected,
        transaction=tx,
        needs=await latest_ev_needs(session, sid, evse),
        soc=readings.get(SOC),
        export=readings.get(EXPORT),
        import_=readings.get(IMPORT),
    )


async def latest_readings(
    session: AsyncSession, station_id: str, evse_id: int, transaction_id: str | None
) -> dict[str, Reading]:
    """The newest SoC and energy registers of an EVSE (in its transaction when there is one)."""
    out: dict[str, Reading] = {}
    for measurand in (SOC, EXPORT, IMPORT):
        query = select(MeterSample).where(
            MeterSample.station_id == station_id,
            MeterSample.evse_id == evse_id,
            MeterSample.measurand == measurand,
            MeterSample.phase == "",
        )
        if transaction_id is not None:
            query = query.where(MeterSample.transaction_id == transaction_id)
        query = query.order_by(MeterSample.timestamp.desc()).limit(1)  # type: ignore[attr-defined]
        row = (await session.execute(query)).scalar_one_or_none()
        if row is not None:
            out[measurand] = Reading(row.timestamp, sample_value(row))
    return out


async def recent_samples(
    session: AsyncSession, keys: Sequence[tuple[str, int]], since: datetime
) -> dict[tuple[str, int], dict[str, list[Reading]]]:
    """Export/import registers and SoC of many EVSEs since an instant, in time order. Plain
    columns, not ORM rows: the control loop reads this every few seconds for the whole fleet."""
    if not keys:
        return {}
    stations = {station for station, _ in keys}
    m = MeterSample.__table__.c  # type: ignore[attr-defined]
    query = (
        select(m.station_id, m.evse_id, m.measurand, m.timestamp, m.value, m.unit, m.multiplier)
        .where(
            m.station_id.in_(stations),
            m.timestamp >= since,
            m.measurand.in_((SOC, EXPORT, IMPORT)),
            m.phase == "",
        )
        .order_by(m.timestamp)
    )
    wanted = set(keys)
    out: dict[tuple[str, int], dict[str, list[Reading]]] = {}
    for sid, evse, measurand, at, value, unit, multiplier in await session.execute(query):
        if (sid, evse) in wanted:
            out.setdefault((sid, evse), {}).setdefault(measurand, []).append(
                Reading(at, _scaled(value, unit, multiplier))
            )
    return out


def _scaled(value: float, unit: str, multiplier: int) -> float:
    scaled = value * (10.0**multiplier)
    return scaled * 1000.0 if unit.lower() == "kwh" else scaled


def sample_value(row: MeterSample) -> float:
    """A register in Wh (kWh converted), a SoC in %: value × 10^multiplier as sent."""
    return _scaled(row.value, row.unit, row.multiplier)


def measured_export_kw(samples: dict[str, list[Reading]], since: datetime) -> float | None:
    """Net grid export (kW) from the register differences since `since` (DESIGN §3.8)."""
    export = [r for r in samples.get(EXPORT, []) if r.at >= since]
    if len(export) < 2:
        return None
    hours = (export[-1].at - export[0].at).total_seconds() / 3600.0
    if hours <= 0:
        return None
    imported = [r for r in samples.get(IMPORT, []) if export[0].at <= r.at <= export[-1].at]
    net_wh = export[-1].value - export[0].value
    if len(imported) >= 2:
        net_wh -= imported[-1].value - imported[0].value
    return net_wh / 1000.0 / hours


def describe(candidate: Candidate) -> dict[str, Any]:
    """A short summary for logs and the event's participant rows."""
    return {
        "station_id": candidate.enrollment.station_id,
        "ev_model": candidate.ev.id,
        "soc_pct": candidate.soc.value if candidate.soc else None,
        "evse_max_kw": candidate.evse_max_kw,
    }
