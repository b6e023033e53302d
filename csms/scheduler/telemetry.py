"""Meter readings per EVSE, and the 15-minute telemetry built on them (DOMAIN.md promise 6).

Register arithmetic (also what settlement measures with, DESIGN §3.8)
- A sample's quantity is value × 10^multiplier in its unit; kWh and kW are turned into Wh and W.
  At one instant a row for the whole EVSE (no phase) wins over phase rows; with phase rows only,
  the phases are summed (N excluded). Rows at the Outlet (OCPP's default location) win over other
  locations; several reading contexts at one instant read the same register (the first is kept).
- `value_at`: linear interpolation between the samples that bracket an instant. Before the first
  or after the last sample, the nearest sample counts only if it lies within one meter interval
  (2 × the median sample spacing), or if no transaction ran on the EVSE in the gap (registers do
  not move without a car); otherwise the value is unknown, with the reason.

Telemetry rows: one per EVSE and 15-minute interval aligned to :00/:15/:30/:45 UTC, for every
interval that overlaps the requested range and in which the EVSE sent a sample, a transaction
started or ended, or a transaction ran. Energies are register differences over the interval
(None when a register is unknown at either end); power_kw is the average signed power (+ import
into the car, − export); soc_pct the last SoC sample in [start, end); plug-in is the
transaction's CablePluggedIn/EVDetected event (else its start), plug-out its EVDeparted/
EVCommunicationLost event (else its end). Charge and discharge start/stop instants are where the
sign of the signed power changes (Power.Active.Import counts +, Power.Active.Export −; from
register slopes when a station sends no power), with |power| <= IDLE_BAND_W as idle; an interval
with several changes reports the first start and the last stop of each.
"""

from __future__ import annotations

import csv
import io
import statistics
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from csms.store.models import MeterSample, Transaction, TransactionEventRecord
from simclock import iso

if TYPE_CHECKING:
    from csms.services import Services

EXPORT_REGISTER = "Energy.Active.Export.Register"
IMPORT_REGISTER = "Energy.Active.Import.Register"
SOC = "SoC"
POWER_IMPORT = "Power.Active.Import"
POWER_EXPORT = "Power.Active.Export"
TELEMETRY_MEASURANDS = (EXPORT_REGISTER, IMPORT_REGISTER, SOC, POWER_IMPORT, POWER_EXPORT)

TELEMETRY_INTERVAL = timedelta(minutes=15)
MAX_RANGE = timedelta(days=31)
# Standby draw and meter noise: below this the EVSE neither charges nor discharges.
IDLE_BAND_W = 50.0
# The spacing assumed when a series has fewer than two samples (stations sample every ~60 s).
DEFAULT_METER_INTERVAL = timedelta(seconds=60)
# How far outside a range samples and transactions are read, to bracket its edges.
EDGE_MARGIN = timedelta(hours=1)
_UNIT_FACTORS = {"kWh": 1000.0, "kW": 1000.0, "kvarh": 1000.0, "kvar": 1000.0}
_LOCATION_PREFERENCE = ("Outlet", "Inlet", "EV", "Cable", "Body")
_PLUG_IN_TRIGGERS = ("CablePluggedIn", "EVDetected")
_PLUG_OUT_TRIGGERS = ("EVDeparted", "EVCommunicationLost")


class TelemetryRangeError(ValueError):
    """A telemetry range that cannot be served; the message says why."""


# --- register arithmetic -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One quantity of one EVSE in time order: (instant, value) in Wh, W or percent."""

    points: tuple[tuple[datetime, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.points)

    def tolerance(self) -> timedelta:
        """One meter interval: twice the median spacing of the samples."""
        gaps = [(b[0] - a[0]).total_seconds() for a, b in pairwise(self.points) if b[0] > a[0]]
        spacing = statistics.median(gaps) if gaps else DEFAULT_METER_INTERVAL.total_seconds()
        return timedelta(seconds=2 * spacing)

    def between(self, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """The samples with start <= instant <= end."""
        lo = bisect_left(self.points, start, key=_instant)
        hi = bisect_left(self.points, end, key=_instant)
        hi += hi < len(self.points) and self.points[hi][0] == end
        return list(self.points[lo:hi])


def _instant(point: tuple[datetime, float]) -> datetime:
    return point[0]


@dataclass(frozen=True, slots=True)
class Reading:
    """A value at an instant, or None with the reason it is unknown."""

    value: float | None
    note: str = ""


Span = tuple[datetime, datetime | None]  # a transaction on the EVSE: started, ended (None: running)


def scaled(row: MeterSample) -> float:
    """The sample's quantity in its base unit (Wh, W, percent): value × 10^multiplier."""
    return row.value * (10.0**row.multiplier) * _UNIT_FACTORS.get(row.unit, 1.0)


def series_of(rows: Iterable[MeterSample], measurand: str) -> Series:
    """The samples of one measurand as one series: the preferred location, and per instant the
    whole-EVSE row, or the sum of the phase rows when the station sent phases only."""
    chosen = [row for row in rows if row.measurand == measurand]
    if not chosen:
        return Series()
    location = min({_location(row) for row in chosen}, key=_location_rank)
    by_time: dict[datetime, list[MeterSample]] = defaultdict(list)
    for row in chosen:
        if _location(row) == location:
            by_time[row.timestamp].append(row)
    return Series(tuple(sorted((at, _instant_total(group)) for at, group in by_time.items())))


def _location(row: MeterSample) -> str:
    return row.location or "Outlet"  # absent location means Outlet (SampledValueType)


def _location_rank(location: str) -> tuple[int, str]:
    known = _LOCATION_PREFERENCE
    return (known.index(location) if location in known else len(known), location)


def _instant_total(group: Sequence[MeterSample]) -> float:
    totals = [row for row in group if not row.phase]
    if totals:
        return scaled(totals[0])
    per_phase = {row.phase: scaled(row) for row in group if row.phase != "N"}
    return sum(per_phase.values())


def value_at(series: Series, at: datetime, busy: Sequence[Span] | None = None) -> Reading:
    """The series' value at an instant: interpolated between bracketing samples; the nearest
    sample within one meter interval at the ends, or across a gap in which none of the EVSE's
    transactions (`busy`) ran; without `busy`, only within one meter interval."""
    points = series.points
    if not points:
        return Reading(None, "no samples")
    after = bisect_left(points, at, key=_instant)
    if after < len(points) and points[after][0] == at:
        return Reading(points[after][1])
    if 0 < after < len(points):
        (t0, v0), (t1, v1) = points[after - 1], points[after]
        share = (at - t0).total_seconds() / (t1 - t0).total_seconds()
        return Reading(v0 + share * (v1 - v0))
    tolerance = series.tolerance()
    if after == len(points):  # past the last sample
        last_at, last = points[-1]
        if at - last_at <= tolerance or _quiet(busy, last_at + tolerance, at):
            return Reading(last)
        return Reading(None, f"no sample after {iso(last_at)} within {_secs(tolerance)}")
    first_at, first = points[0]
    if first_at - at <= tolerance or _quiet(busy, at, first_at - tolerance):
        return Reading(first)
    return Reading(None, f"no sample before {iso(first_at)} within {_secs(tolerance)}")


def _quiet(busy: Sequence[Span] | None, start: datetime, end: datetime) -> bool:
    """No transaction overlaps (start, end) on the EVSE: its registers stood still."""
    if busy is None:
        return False  # nothing known about cars on the EVSE
    return all(not (began < end and (ended is None or ended > start)) for began, ended in busy)


def _secs(span: timedelta) -> str:
    return f"{span.total_seconds():.0f} s"


async def load_samples(
    session: AsyncSession,
    station_id: str | None,
    evse_id: int | None,
    start: datetime,
    end: datetime,
    measurands: Sequence[str],
) -> list[MeterSample]:
    """Samples of the measurands with start <= timestamp <= end, in time order."""
    query = select(MeterSample).where(
        MeterSample.timestamp >= start,
        MeterSample.timestamp <= end,
        MeterSample.measurand.in_(measurands),  # type: ignore[attr-defined]
    )
    if station_id is not None:
        query = query.where(MeterSample.station_id == station_id)
    if evse_id is not None:
        query = query.where(MeterSample.evse_id == evse_id)
    query = query.order_by(MeterSample.timestamp, MeterSample.id)
    return list((await session.execute(query)).scalars())


async def load_transactions(
    session: AsyncSession, station_id: str | None, start: datetime, end: datetime
) -> list[Transaction]:
    """Transactions that overlap [start, end] (a running one has no end)."""
    query = select(Transaction).where(
        Transaction.started_at <= end,  # type: ignore[operator]
        (Transaction.ended_at.is_(None)) | (Transaction.ended_at >= start),  # type: ignore[union-attr,operator]
    )
    if station_id is not None:
        query = query.where(Transaction.station_id == station_id)
    return list((await session.execute(query.order_by(Transaction.started_at))).scalars())


def busy_spans(
    rows: Sequence[MeterSample], transactions: Sequence[Transaction], evse_id: int
) -> tuple[Span, ...]:
    """When a car was on the EVSE: its transactions, and for a transaction the samples name but
    the store does not know (its events lost or still to come), from its first sample on with
    no known end."""
    spans = {
        tx.transaction_id: (tx.started_at, tx.ended_at)
        for tx in transactions
        if tx.evse_id == evse_id and tx.started_at is not None
    }
    for row in rows:  # in time order: the first sample of an unknown transaction opens it
        if row.evse_id == evse_id and row.transaction_id and row.transaction_id not in spans:
            spans[row.transaction_id] = (row.timestamp, None)
    return tuple(sorted(spans.values(), key=_instant))  # type: ignore[arg-type]


# --- 15-minute telemetry -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """One EVSE over one 15-minute interval (energies in kWh, power in kW, SoC in %)."""

    station_id: str
    evse_id: int
    interval_start: datetime
    interval_end: datetime
    energy_import_kwh: float | None
    energy_export_kwh: float | None
    power_kw: float | None  # average, signed: + import into the car, − export
    soc_pct: float | None
    plugged_in_at: datetime | None = None
    plugged_out_at: datetime | None = None
    charge_started_at: datetime | None = None
    charge_stopped_at: datetime | None = None
    discharge_started_at: datetime | None = None
    discharge_stopped_at: datetime | None = None


Flow = Literal["charge", "discharge", "idle"]
Change = Literal["charge_started", "charge_stopped", "discharge_started", "discharge_stopped"]


@dataclass(frozen=True, slots=True)
class _Plug:
    """A transaction's plug-in and plug-out instants (None: not known or not yet)."""

    plugged_in: datetime
    plugged_out: datetime | None


def check_range(start: datetime, end: datetime) -> None:
    """Refuse a range the telemetry cannot serve, saying why."""
    if start.tzinfo is None or end.tzinfo is None:
        raise TelemetryRangeError("telemetry instants need a time zone (e.g. 'Z')")
    if end <= start:
        raise TelemetryRangeError(f"the range must end after it starts: {iso(start)} .. {iso(end)}")
    if end - start > MAX_RANGE:
        days = (end - start).total_seconds() / 86400
        raise TelemetryRangeError(
            f"a telemetry range spans at most {MAX_RANGE.days} days, this one {days:.1f}"
        )


def aligned_slots(start: datetime, end: datetime) -> list[datetime]:
    """Starts of the 15-minute intervals (:00/:15/:30/:45 UTC) that overlap [start, end)."""
    step = TELEMETRY_INTERVAL.total_seconds()
    first = datetime.fromtimestamp(start.timestamp() // step * step, UTC)
    slots = []
    while first < end:
        slots.append(first)
        first += TELEMETRY_INTERVAL
    return slots


async def telemetry_rows(
    services: Services, station_id: str | None, start: datetime, end: datetime
) -> list[TelemetryRow]:
    """The 15-minute rows of one station (or all, for None) over [start, end), by station,
    EVSE and time."""
    check_range(start, end)
    slots = aligned_slots(start, end)
    lo, hi = slots[0] - EDGE_MARGIN, slots[-1] + TELEMETRY_INTERVAL + EDGE_MARGIN
    async with services.db.read() as session:
        samples = await load_samples(session, station_id, None, lo, hi, TELEMETRY_MEASURANDS)
        transactions = await load_transactions(session, station_id, lo, hi)
        plugs = await _plugs(session, transactions)
    by_evse: dict[tuple[str, int], list[MeterSample]] = defaultdict(list)
    for row in samples:
        by_evse[(row.station_id, row.evse_id)].append(row)
    txs_by_evse: dict[tuple[str, int], list[Transaction]] = defaultdict(list)
    for tx in transactions:
        txs_by_evse[(tx.station_id, tx.evse_id)].append(tx)
    rows: list[TelemetryRow] = []
    for key in sorted(set(by_evse) | set(txs_by_evse)):
        evse_txs = txs_by_evse.get(key, [])
        evse_plugs = [plugs[(tx.station_id, tx.transaction_id)] for tx in evse_txs]
        rows += _evse_rows(key, by_evse.get(key, []), evse_txs, evse_plugs, slots)
    return rows


async def _plugs(
    session: AsyncSession, transactions: Sequence[Transaction]
) -> dict[tuple[str, str], _Plug]:
    """Plug-in / plug-out instants per transaction, from its events' trigger reasons."""
    ids = {tx.transaction_id for tx in transactions}
    found: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
    if ids:
        query = select(
            TransactionEventRecord.station_id,
            TransactionEventRecord.transaction_id,
            TransactionEventRecord.trigger_reason,
            TransactionEventRecord.timestamp,
        ).where(
            TransactionEventRecord.transaction_id.in_(ids),  # type: ignore[attr-defined]
            TransactionEventRecord.trigger_reason.in_(  # type: ignore[attr-defined]
                _PLUG_IN_TRIGGERS + _PLUG_OUT_TRIGGERS
            ),
        )
        for station, tx_id, trigger, at in (await session.execute(query)).all():
            kind = "in" if trigger in _PLUG_IN_TRIGGERS else "out"
            earliest = found[(station, tx_id)].get(kind)
            found[(station, tx_id)][kind] = at if earliest is None else min(earliest, at)
    result = {}
    for tx in transactions:
        seen = found.get((tx.station_id, tx.transaction_id), {})
        plugged_in = seen.get("in") or tx.started_at
        assert plugged_in is not None, "load_transactions reads started transactions only"
        result[(tx.station_id, tx.transaction_id)] = _Plug(
            plugged_in, seen.get("out") or tx.ended_at
        )
    return result


def _evse_rows(
    key: tuple[str, int],
    samples: list[MeterSample],
    transactions: list[Transaction],
    plugs: list[_Plug],
    slots: list[datetime],
) -> list[TelemetryRow]:
    busy = busy_spans(samples, transactions, key[1])
    export, imported = series_of(samples, EXPORT_REGISTER), series_of(samples, IMPORT_REGISTER)
    soc = series_of(samples, SOC)
    changes = flow_changes(signed_power(samples), export, imported, busy)
    sample_times = sorted({row.timestamp for row in samples})
    rows = []
    for start in slots:
        end = start + TELEMETRY_INTERVAL
        if not _has_data(start, end, sample_times, busy):
            continue
        imported_kwh = _energy_kwh(imported, start, end, busy)
        exported_kwh = _energy_kwh(export, start, end, busy)
        rows.append(
            TelemetryRow(
                station_id=key[0],
                evse_id=key[1],
                interval_start=start,
                interval_end=end,
                energy_import_kwh=imported_kwh,
                energy_export_kwh=exported_kwh,
                power_kw=_average_kw(imported_kwh, exported_kwh),
                soc_pct=_last_before(soc, start, end),
                plugged_in_at=_first_in(start, end, [p.plugged_in for p in plugs]),
                plugged_out_at=_last_in(start, end, [p.plugged_out for p in plugs]),
                **_changes_in(start, end, changes),
            )
        )
    return rows


def _has_data(
    start: datetime, end: datetime, sample_times: list[datetime], busy: Sequence[Span]
) -> bool:
    first = bisect_left(sample_times, start)
    if first < len(sample_times) and sample_times[first] < end:
        return True
    return not _quiet(busy, start, end)


def _energy_kwh(
    series: Series, start: datetime, end: datetime, busy: Sequence[Span]
) -> float | None:
    first, last = value_at(series, start, busy).value, value_at(series, end, busy).value
    if first is None or last is None:
        return None
    return (last - first) / 1000.0


def _average_kw(imported_kwh: float | None, exported_kwh: float | None) -> float | None:
    if imported_kwh is None or exported_kwh is None:
        return None
    return (imported_kwh - exported_kwh) / (TELEMETRY_INTERVAL.total_seconds() / 3600.0)


def _last_before(series: Series, start: datetime, end: datetime) -> float | None:
    inside = [v for t, v in series.between(start, end) if t < end]
    return inside[-1] if inside else None


def _first_in(
    start: datetime, end: datetime, instants: Iterable[datetime | None]
) -> datetime | None:
    inside = [t for t in instants if t is not None and start <= t < end]
    return min(inside) if inside else None


def _last_in(
    start: datetime, end: datetime, instants: Iterable[datetime | None]
) -> datetime | None:
    inside = [t for t in instants if t is not None and start <= t < end]
    return max(inside) if inside else None


# --- charge / discharge changes ----------------------------------------------------------------


def signed_power(samples: Iterable[MeterSample]) -> Series:
    """Signed power (W, + import) per instant: Power.Active.Import as sent (a station may sign
    it) minus Power.Active.Export."""
    imported = dict(series_of(samples, POWER_IMPORT).points)
    exported = dict(series_of(samples, POWER_EXPORT).points)
    instants = sorted(set(imported) | set(exported))
    return Series(tuple((t, imported.get(t, 0.0) - exported.get(t, 0.0)) for t in instants))


def flow_of(power_w: float) -> Flow:
    if power_w > IDLE_BAND_W:
        return "charge"
    if power_w < -IDLE_BAND_W:
        return "discharge"
    return "idle"


def flow_changes(
    power: Series, export: Series, imported: Series, busy: Sequence[Span]
) -> list[tuple[datetime, Change]]:
    """Instants where charging or discharging started or stopped, in time order.

    Before a transaction starts and after it ends the EVSE is idle; before the first reading
    of the range nothing is known, so the first reading starts nothing by itself.
    """
    readings = list(power.points) if power else _register_slopes(export, imported)
    marks: list[tuple[datetime, int, Flow]] = [(t, 1, flow_of(p)) for t, p in readings]
    for began, ended in busy:
        marks.append((began, 0, "idle"))
        if ended is not None:
            marks.append((ended, 2, "idle"))
    changes: list[tuple[datetime, Change]] = []
    previous: Flow | None = None
    for at, _, flow in sorted(marks, key=lambda mark: (mark[0], mark[1])):
        if previous is not None and flow != previous:
            if previous != "idle":
                changes.append((at, f"{previous}_stopped"))  # type: ignore[arg-type]
            if flow != "idle":
                changes.append((at, f"{flow}_started"))  # type: ignore[arg-type]
        previous = flow
    return changes


def _register_slopes(export: Series, imported: Series) -> list[tuple[datetime, float]]:
    """Average signed power between successive register readings, dated at the earlier one
    (when the registers started to move)."""
    instants = sorted({t for t, _ in export.points} | {t for t, _ in imported.points})
    slopes = []
    for t0, t1 in pairwise(instants):
        values = [value_at(s, t).value for s in (imported, export) for t in (t0, t1)]
        if any(v is None for v in values):
            continue
        i0, i1, e0, e1 = values
        hours = (t1 - t0).total_seconds() / 3600.0
        slopes.append((t0, ((i1 - i0) - (e1 - e0)) / hours))  # type: ignore[operator]
    return slopes


def _changes_in(
    start: datetime, end: datetime, changes: Sequence[tuple[datetime, Change]]
) -> dict[str, datetime | None]:
    found: dict[str, datetime | None] = {
        "charge_started_at": None,
        "charge_stopped_at": None,
        "discharge_started_at": None,
        "discharge_stopped_at": None,
    }
    for at, change in changes:
        if not start <= at < end:
            continue
        name = f"{change}_at"
        if change.endswith("started") and found[name] is not None:
            continue  # the first start of the interval
        found[name] = at  # ... and the last stop
    return found


# --- CSV ---------------------------------------------------------------------------------------


def telemetry_csv(rows: Sequence[TelemetryRow]) -> str:
    """The rows as CSV: a header of the field names, instants in ISO-8601 UTC ('Z'), an unknown
    value as an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(TelemetryRow)])
    for row in rows:
        writer.writerow([csv_cell(value) for value in astuple(row)])
    return out.getvalue()


def csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float):
        return str(round(value, 6))
    return str(value)
