"""The HTML report of one V2G event: a single self-contained file an operator can open or mail.

Input is the report dict of `GET /api/v1/events/{id}/report` (the report contract, see
`csms.scheduler.reports`); output is one HTML file with a header (program, window in the
program's local time and in UTC, state), a summary table, two plots ("Committed vs delivered
kW" per interval, "State of charge per vehicle" with each floor dashed in the vehicle's colour)
and a table per participant. Nothing is fetched when it is opened: the plots are PNGs embedded
as base64 data URIs and the style sheet is inline.

Every string taken from the report is HTML-escaped (participant names are user input) and
kept out of matplotlib's mathtext; a missing value (None) shows as an em dash.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import matplotlib
import structlog

matplotlib.use("Agg")  # headless: the CSMS and CI have no display
import matplotlib.dates as mdates  # after the backend is chosen
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

log = structlog.get_logger("csms.scheduler.report_html")

MISSING = "—"
MAX_SOC_LINES = 12  # more vehicles than this: plot the lowest margins above their floors
LABEL_CHARS = 32  # legend labels are cut here so the legend stays beside the plot
FIGURE_SIZE_IN = (10.0, 4.2)
DPI = 100
# Who took part comes first in the participants table, then who did not and why.
STATUS_ORDER = (
    "done",
    "dispatched",
    "unplugged",
    "offline",
    "rejected",
    "opted_out",
    "left_out",
    "eligible",
)


class ReportError(ValueError):
    """The report dict does not have the contract's shape; the message names the key."""


@dataclass(frozen=True, slots=True)
class Window:
    """The event window and the program's time zone (for local-time display)."""

    start: datetime
    end: datetime
    zone: ZoneInfo


# ---- entry point ---------------------------------------------------------------------------


def render_event_report(report: dict[str, Any], path: Path, *, title: str | None = None) -> Path:
    """Write the event's HTML report to `path` (parents created, replaced atomically)."""
    started = time.perf_counter()
    event, _, participants, totals = _parts(report)
    window = _window(event)
    heading = title or f"Event {event.get('id', '')}: {event.get('program_name') or ''}".strip()
    power_png, soc_png = _png(power_figure(report)), _png(soc_figure(report))
    soc_caption = _soc_caption(soc_lines(participants), len(participants))
    page = _page(
        heading,
        [
            _header_html(event, window),
            _summary_html(event, totals),
            _figure_html("Committed vs delivered kW", power_png, _power_caption(event)),
            _figure_html("State of charge per vehicle", soc_png, soc_caption),
            _participants_html(participants),
        ],
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)  # a reader never sees half a report
    log.info(
        "report_html.written",
        path=str(target),
        bytes=len(page),
        participants=len(participants),
        ms=round(1000 * (time.perf_counter() - started)),
    )
    return target


# ---- the report's shape --------------------------------------------------------------------


def _parts(
    report: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    if not isinstance(report, dict):
        raise ReportError(f"report must be a dict, got {type(report).__name__}")
    kinds = {"event": dict, "intervals": list, "participants": list, "totals": dict}
    for key, kind in kinds.items():
        if not isinstance(report.get(key), kind):
            raise ReportError(f"report.{key}: missing or not a {kind.__name__}")
    return report["event"], report["intervals"], report["participants"], report["totals"]


def _instant(value: Any, where: str) -> datetime:
    """An ISO-8601 UTC instant of the report ('...Z')."""
    if not isinstance(value, str):
        raise ReportError(f"{where}: needs an ISO-8601 instant, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{where}: not an ISO-8601 instant: {value!r}") from None
    if parsed.tzinfo is None:
        raise ReportError(f"{where}: instant without a time zone: {value!r}")
    return parsed


def _window(event: dict[str, Any]) -> Window:
    zone_name = event.get("time_zone") or "UTC"
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"report.event.time_zone: unknown IANA time zone {zone_name!r}") from None
    start = _instant(event.get("start"), "report.event.start")
    end = _instant(event.get("end"), "report.event.end")
    return Window(start, end, zone)


# ---- formatting ----------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return MISSING if value is None else html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _esc(value)
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}" if unit else text


def _usd(value: Any) -> str:
    return MISSING if value is None else "$" + _number(value, 2)


def _ratio(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _esc(value)
    return _number(100.0 * value, 1, "%")


def _local(at: datetime, zone: ZoneInfo, with_date: bool = True) -> str:
    local = at.astimezone(zone)
    return local.strftime("%a %d %b %Y %H:%M %Z" if with_date else "%H:%M %Z")


def _window_text(window: Window, zone: ZoneInfo) -> str:
    """'Wed 15 Jul 2026 15:00 EDT – 18:00 EDT' (the end's date only when it differs)."""
    same_day = window.start.astimezone(zone).date() == window.end.astimezone(zone).date()
    return f"{_local(window.start, zone)} – {_local(window.end, zone, with_date=not same_day)}"


def _plain(text: Any, limit: int = LABEL_CHARS) -> str:
    """A report string as matplotlib text: cut, and with '$' escaped so user input never
    reaches mathtext (which would parse it, or fail to)."""
    value = str(text if text is not None else MISSING)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value.replace("$", r"\$")


# ---- HTML ----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.9rem}td,th{padding:.3rem .6rem;text-align:left;
border-bottom:1px solid #d8dee4}th{background:#f6f8fa}td.n{text-align:right;
font-variant-numeric:tabular-nums}tr.bad td{background:#ffebe9}tr.out td{color:#656d76}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:.5rem 0}
dt{color:#656d76}dd{margin:0}figure{margin:0}img{max-width:100%;height:auto}
figcaption{color:#656d76;font-size:.85rem}
"""


def _page(title: str, sections: Sequence[str]) -> str:
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _header_html(event: dict[str, Any], window: Window) -> str:
    program = f"{_esc(event.get('program_name'))} ({_esc(event.get('program'))})"
    state = _esc(event.get("state"))
    if event.get("restated"):
        state += f" — restated {_esc(event.get('restatements'))}×"
    rows = [
        ("Program", program),
        ("Window (local)", f"{_esc(_window_text(window, window.zone))} ({_esc(window.zone.key)})"),
        ("Window (UTC)", _esc(_window_text(window, ZoneInfo("UTC")))),
        ("State", state),
        ("Interval", _number(event.get("interval_s"), 0, "s")),
        ("Plan revisions", _number(event.get("plan_revisions"), 0)),
        ("Settled at", _esc(event.get("settled_at"))),
    ]
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<section id="event"><dl>{items}</dl></section>'


def _summary_html(event: dict[str, Any], totals: dict[str, Any]) -> str:
    restated = _number(event.get("restatements"), 0)
    if event.get("restated_at"):
        restated += f" (last {_esc(event.get('restated_at'))})"
    rows = [
        ("Committed", _number(event.get("committed_kw"), 1, "kW")),
        ("Delivered", _number(event.get("delivered_kw"), 1, "kW")),
        ("Delivery ratio", _ratio(event.get("delivery_ratio"))),
        ("Exported", _number(event.get("exported_kwh"), 1, "kWh")),
        ("Participants", _number(totals.get("participants"), 0)),
        ("Notified before start", _number(totals.get("notified_before_start"), 0)),
        ("Opt-outs", _number(totals.get("opt_outs"), 0)),
        ("SoC-floor violations", _number(totals.get("soc_floor_violations"), 0)),
        ("Pay (season, at this performance)", _usd(totals.get("pay_usd"))),
        ("Restatements", restated),
    ]
    body = "".join(f'<tr><th scope="row">{k}</th><td class="n">{v}</td></tr>' for k, v in rows)
    return f'<section id="summary"><h2>Summary</h2><table>{body}</table></section>'


def _figure_html(heading: str, png: str, caption: str) -> str:
    return (
        f"<section><h2>{_esc(heading)}</h2><figure>"
        f'<img alt="{_esc(heading)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure></section>"
    )


_COLUMNS = (
    "Participant",
    "Vehicle",
    "Station",
    "Status / reason",
    "SoC start → end",
    "Floor",
    "Delivered kWh",
    "Average kW",
    "Counted kW",
    "Pay",
)


def _participants_html(participants: Sequence[dict[str, Any]]) -> str:
    head = "".join(f'<th scope="col">{name}</th>' for name in _COLUMNS)
    rows = "\n".join(_participant_row(p) for p in sort_participants(participants))
    return (
        f'<section id="participants"><h2>Participants ({len(participants)})</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table></section>"
    )


def sort_participants(participants: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who took part first (by status, then most delivered), then who did not and why;
    ties by name."""

    def key(p: dict[str, Any]) -> tuple[int, float, str]:
        status = p.get("status")
        rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
        delivered = p.get("delivered_kwh")
        amount = float(delivered) if isinstance(delivered, int | float) else 0.0
        return rank, -amount, str(p.get("participant") or "").casefold()

    return sorted(participants, key=key)


def _participant_row(p: dict[str, Any]) -> str:
    vehicle = _esc(p.get("vehicle_id"))
    if p.get("ev_model"):
        vehicle += f"<br><small>{_esc(p.get('ev_model'))}</small>"
    station = _esc(p.get("station_id"))
    if p.get("evse_id") is not None:
        station += f" / {_esc(p.get('evse_id'))}"
    status = _esc(p.get("status"))
    if p.get("reason"):
        status += f"<br><small>{_esc(p.get('reason'))}</small>"
    soc = f"{_number(p.get('soc_start_pct'), 1, '%')} → {_number(p.get('soc_end_pct'), 1, '%')}"
    if p.get("soc_start_pct") is None and p.get("soc_end_pct") is None:
        soc = MISSING
    cells = [
        f"<td>{_esc(p.get('participant'))}</td>",
        f"<td>{vehicle}</td>",
        f"<td>{station}</td>",
        f"<td>{status}</td>",
        f'<td class="n">{soc}</td>',
        f'<td class="n">{_number(p.get("min_soc_pct"), 1, "%")}</td>',
        f'<td class="n">{_number(p.get("delivered_kwh"), 2)}</td>',
        f'<td class="n">{_number(p.get("average_kw"), 2)}</td>',
        f'<td class="n">{_number(p.get("counted_kw"), 2)}</td>',
        f'<td class="n">{_usd(p.get("pay_usd"))}</td>',
    ]
    css = "bad" if p.get("floor_violated") else "out" if p.get("opted_out") else ""
    attr = f' class="{css}"' if css else ""
    return f"<tr{attr}>{''.join(cells)}</tr>"


# ---- plots ---------------------------------------------------------------------------------


def _png(figure: Figure) -> str:
    """The figure as base64 PNG. Figure objects (not pyplot) keep no global registry, so
    nothing is left open and concurrent renders do not share state."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    figure.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _time_axis(ax: Axes, window: Window) -> None:
    locator = mdates.AutoDateLocator(tz=window.zone, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=window.zone))
    ax.set_xlabel(f"local time ({window.zone.key})")
    ax.grid(True, alpha=0.3)


def _kw(value: Any) -> float:
    """A kW value for plotting: NaN (a gap) where it is missing."""
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    )


def power_figure(report: dict[str, Any]) -> Figure:
    """Plot 1: committed kW (flat), planned kW (steps) and delivered kW (bars) per interval,
    on a local-time axis."""
    event, intervals, _, _ = _parts(report)
    window = _window(event)
    figure = Figure(figsize=FIGURE_SIZE_IN)
    ax = figure.add_subplot()
    if not intervals:
        ax.text(0.5, 0.5, "no intervals in this report", ha="center", transform=ax.transAxes)
    else:
        _draw_power(ax, intervals, event, window)
    _time_axis(ax, window)
    ax.set_xlim(mdates.date2num(window.start), mdates.date2num(window.end))
    ax.set_ylabel("kW exported")
    return figure


def _draw_power(
    ax: Axes, intervals: Sequence[dict[str, Any]], event: dict[str, Any], window: Window
) -> None:
    where = "report.intervals[{}].{}"
    starts = [_instant(i.get("start"), where.format(n, "start")) for n, i in enumerate(intervals)]
    ends = [_instant(i.get("end"), where.format(n, "end")) for n, i in enumerate(intervals)]
    edges = [*mdates.date2num(starts), mdates.date2num(ends[-1])]
    widths = [mdates.date2num(e) - mdates.date2num(s) for s, e in zip(starts, ends, strict=True)]
    measured = _draw_delivered(
        ax, edges[:-1], widths, [_kw(i.get("delivered_kw")) for i in intervals]
    )
    planned = [_kw(i.get("planned_kw")) for i in intervals]
    if any(not math.isnan(p) for p in planned):
        ax.plot(
            edges,
            [*planned, planned[-1]],
            drawstyle="steps-post",
            color="#e6550d",
            linewidth=1.6,
            label="planned",
        )
    committed = _kw(event.get("committed_kw"))
    if not math.isnan(committed):
        span = [mdates.date2num(window.start), mdates.date2num(window.end)]
        ax.plot(
            span,
            [committed, committed],
            color="#31a354",
            linewidth=2.0,
            label=f"committed {committed:,.1f} kW",
        )
    # Export from 0 up, set once everything is drawn (fixing a limit stops autoscaling).
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    if not measured:
        ax.text(
            0.5,
            0.92,
            "no interval measured yet",
            ha="center",
            transform=ax.transAxes,
            color="#656d76",
        )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize="small", frameon=False
        )  # above the plot: never over a bar


def _draw_delivered(
    ax: Axes, lefts: Sequence[float], widths: Sequence[float], delivered: Sequence[float]
) -> bool:
    """Bars of the measured intervals (a missing one is a gap); False when none is measured."""
    known = [
        (x, w, d) for x, w, d in zip(lefts, widths, delivered, strict=True) if not math.isnan(d)
    ]
    if not known:
        return False
    xs, ws, ds = zip(*known, strict=True)
    ax.bar(
        xs,
        ds,
        width=ws,
        align="edge",
        color="#9ecae1",
        edgecolor="#4292c6",
        linewidth=0.5,
        label="delivered (registers)",
    )
    if min(ds) < 0:  # an interval of net import shows below the axis
        ax.axhline(0.0, color="#656d76", linewidth=0.8)
    return True


def _power_caption(event: dict[str, Any]) -> str:
    return (
        "Bars: kW delivered per interval, from export and import register differences of all "
        "participants. Step line: the plan revision in force at each interval's start. "
        f"Flat line: the committed level ({_number(event.get('committed_kw'), 1, 'kW')})."
    )


@dataclass(frozen=True, slots=True)
class SocLine:
    label: str
    times: list[datetime]
    soc_pct: list[float]
    floor_pct: float | None

    @property
    def margin_pct(self) -> float:
        """How close it came to its floor (the lowest SoC minus the floor)."""
        return min(self.soc_pct) - (self.floor_pct or 0.0)


def soc_lines(participants: Sequence[dict[str, Any]]) -> list[SocLine]:
    """One line per participant with SoC samples, lowest margin above its floor first."""
    lines = []
    for n, p in enumerate(participants):
        series = p.get("soc_series") or []
        points = [
            (_instant(t, f"report.participants[{n}].soc_series"), float(v))
            for t, v in series
            if isinstance(v, int | float)
        ]
        if not points:
            continue
        points.sort()
        label = f"{p.get('participant') or MISSING} ({p.get('vehicle_id') or MISSING})"
        floor = p.get("min_soc_pct")
        floor_pct = float(floor) if isinstance(floor, int | float) else None
        lines.append(SocLine(label, [t for t, _ in points], [v for _, v in points], floor_pct))
    return sorted(lines, key=lambda line: (line.margin_pct, line.label))


def soc_figure(report: dict[str, Any]) -> Figure:
    """Plot 2: SoC per vehicle (at most MAX_SOC_LINES, the lowest margins), each floor dashed
    in its vehicle's colour, the event window shaded."""
    event, _, participants, _ = _parts(report)
    window = _window(event)
    shown = soc_lines(participants)[:MAX_SOC_LINES]
    figure = Figure(figsize=FIGURE_SIZE_IN)
    ax = figure.add_subplot()
    ax.axvspan(
        mdates.date2num(window.start), mdates.date2num(window.end), color="#f0f0f0", zorder=0
    )
    palette = colormaps["tab20"]
    for n, line in enumerate(shown):
        colour = palette((2 * n) % 20 + (2 * n) // 20)
        x = mdates.date2num(line.times)
        ax.plot(x, line.soc_pct, color=colour, linewidth=1.5, label=_plain(line.label))
        if line.floor_pct is not None:
            ax.hlines(
                line.floor_pct, min(x), max(x), colors=[colour], linestyles="dashed", linewidth=1.0
            )
    if not shown:
        ax.text(0.5, 0.5, "no SoC samples in this report", ha="center", transform=ax.transAxes)
    else:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    _time_axis(ax, window)
    ax.set_ylim(0, 100)
    ax.set_ylabel("SoC %")
    return figure


def _soc_caption(lines: Sequence[SocLine], participants: int) -> str:
    shown, with_data = min(len(lines), MAX_SOC_LINES), len(lines)
    text = "Solid: SoC of each vehicle; dashed, in the same colour: its owner's floor."
    if with_data > shown:
        text += (
            f" Showing the {shown} of {with_data} vehicles with the lowest margin above their "
            "floor."
        )
    if participants > with_data:
        text += f" {participants - with_data} participant(s) have no SoC samples."
    return text
