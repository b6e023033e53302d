"""The HTML report of an event (csms.scheduler.report_html): one self-contained file with the
header, the summary, two embedded plots and the participants, built from report dicts in the
shape of the report contract (GET /api/v1/events/{id}/report)."""

from __future__ import annotations

import base64
import re
import struct
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_hex

from csms.scheduler.report_html import (
    MAX_SOC_LINES,
    MISSING,
    ReportError,
    power_figure,
    render_event_report,
    soc_figure,
    soc_lines,
    sort_participants,
)

START = datetime(2026, 7, 15, 19, 0, tzinfo=UTC)  # 15:00 EDT, a ConnectedSolutions window


def z(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def participant(
    n: int,
    name: str,
    *,
    status: str = "done",
    soc: tuple[float, float] | None = (80.0, 52.0),
    floor: float = 30.0,
    delivered_kwh: float | None = 11.2,
    hours: float = 3.0,
    steps: int = 36,
    opted_out: bool = False,
    ev_model: str = "nissan-leaf-40",
    reason: str = "",
) -> dict[str, Any]:
    """One participant of the contract; SoC falls linearly from soc[0] to soc[1]."""
    series = []
    if soc is not None:
        for k in range(steps + 1):
            at = START + timedelta(hours=hours * k / steps)
            series.append([z(at), round(soc[0] + (soc[1] - soc[0]) * k / steps, 2)])
    average = None if delivered_kwh is None else round(delivered_kwh / hours, 3)
    return {
        "enrollment_id": n,
        "participant": name,
        "participant_class": "residential",
        "vehicle_id": f"car-{n}",
        "ev_model": ev_model,
        "station_id": f"ST-{n}",
        "evse_id": 1,
        "status": status,
        "reason": reason,
        "notified_at": z(START - timedelta(hours=20)),
        "opted_out": opted_out,
        "opted_out_at": z(START + timedelta(minutes=40)) if opted_out else None,
        "min_soc_pct": floor,
        "soc_start_pct": soc[0] if soc else None,
        "soc_end_pct": soc[1] if soc else None,
        "min_soc_seen_pct": min(soc) if soc else None,
        "floor_violated": bool(soc) and min(soc) < floor,
        "exported_kwh": delivered_kwh,
        "imported_kwh": 0.0 if delivered_kwh is not None else None,
        "delivered_kwh": delivered_kwh,
        "average_kw": average,
        "counted_kw": 0.0 if opted_out else average,
        "pay_usd": None if average is None else round(275.0 * (0.0 if opted_out else average), 2),
        "soc_series": series,
    }


def report(participants: list[dict[str, Any]], *, interval_s: int = 300) -> dict[str, Any]:
    """A completed 3-hour ConnectedSolutions event over the given participants."""
    end = START + timedelta(hours=3)
    count = int((end - START).total_seconds() // interval_s)
    intervals = [
        {
            "start": z(START + timedelta(seconds=k * interval_s)),
            "end": z(START + timedelta(seconds=(k + 1) * interval_s)),
            "committed_kw": 410.0,
            "planned_kw": 420.1 if k < count // 2 else 415.0,
            "delivered_kw": 418.7 - (k % 3),
        }
        for k in range(count)
    ]
    return {
        "event": {
            "id": 7,
            "program": "ma-connectedsolutions",
            "program_name": "ConnectedSolutions (MA)",
            "state": "completed",
            "start": z(START),
            "end": z(end),
            "time_zone": "America/New_York",
            "interval_s": interval_s,
            "committed_kw": 410.0,
            "delivered_kw": 415.0,
            "exported_kwh": 1245.0,
            "delivery_ratio": round(415.0 / 410.0, 4),
            "plan_revisions": 3,
            "settled_at": None,
            "restatements": 1,
            "restated_at": z(end + timedelta(hours=2)),
            "restated": True,
        },
        "intervals": intervals,
        "participants": participants,
        "totals": {
            "participants": len(participants),
            "notified_before_start": len(participants) - 1,
            "opt_outs": sum(p["opted_out"] for p in participants),
            "soc_floor_violations": sum(p["floor_violated"] for p in participants),
            "pay_usd": 123456.0,
        },
    }


def five() -> list[dict[str, Any]]:
    """Ana, an opt-out whose name is a script, a bus hugging its floor, one left out with
    nothing measured, one that unplugged."""
    return [
        participant(1, "Ana", delivered_kwh=11.2),
        participant(
            2,
            "<script>alert('x')</script>",
            status="opted_out",
            opted_out=True,
            soc=(75.0, 70.0),
            delivered_kwh=1.5,
        ),
        participant(
            3,
            "Depot & Sons",
            soc=(60.0, 20.1),
            floor=20.0,
            delivered_kwh=150.0,
            ev_model="thomas-built-246",
        ),
        participant(
            4,
            "Lee",
            status="left_out",
            soc=None,
            delivered_kwh=None,
            reason="nothing above its floor",
        ),
        participant(5, "Kim", status="unplugged", soc=(70.0, 64.0), delivered_kwh=3.0),
    ]


class _Page(HTMLParser):
    """What a test reads back: image sources, table rows per section, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self._section = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self._section = values.get("id") or ""
        elif tag == "img":
            self.images.append(values.get("src") or "")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._section, []).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def read(path: Path) -> tuple[str, _Page]:
    raw = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(raw)
    return raw, page


def png_size(src: str) -> tuple[int, int]:
    """Width and height of an embedded PNG (its IHDR chunk)."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix) :], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def five_report(tmp_path: Path) -> tuple[str, _Page]:
    path = render_event_report(report(five()), tmp_path / "out" / "event-7.html")
    return read(path)


def test_the_report_is_one_self_contained_file_with_two_plots(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "event.html"
    path = render_event_report(report(five()), target)
    assert path == target and path.is_file()
    assert not list(target.parent.glob("*.partial")), "written atomically, nothing left over"
    raw, page = read(path)
    assert len(page.images) == 2
    for src in page.images:
        width, height = png_size(src)
        assert width > 500 and height > 250
    assert "http://" not in raw and "https://" not in raw
    assert not re.search(r"<(script|link|iframe)\b", raw), "no scripts, style sheets or frames"


def test_header_shows_program_window_in_local_time_and_utc_and_state(
    five_report: tuple[str, _Page],
) -> None:
    _, page = five_report
    text = " ".join(" ".join(page.text).split())
    assert "ConnectedSolutions (MA) (ma-connectedsolutions)" in text
    assert "Wed 15 Jul 2026 15:00 EDT – 18:00 EDT (America/New_York)" in text
    assert "Wed 15 Jul 2026 19:00 UTC – 22:00 UTC" in text
    assert "completed — restated 1×" in text


def summary(page: _Page) -> dict[str, str]:
    return {row[0]: row[1] for row in page.rows["summary"]}


def test_summary_table_carries_the_report_numbers(five_report: tuple[str, _Page]) -> None:
    _, page = five_report
    assert summary(page) == {
        "Committed": "410.0 kW",
        "Delivered": "415.0 kW",
        "Delivery ratio": "101.2 %",
        "Exported": "1,245.0 kWh",
        "Participants": "5",
        "Notified before start": "4",
        "Opt-outs": "1",
        "SoC-floor violations": "0",
        "Pay (season, at this performance)": "$123,456.00",
        "Restatements": "1 (last 2026-07-16T00:00:00Z)",
    }


def test_participant_names_are_escaped(five_report: tuple[str, _Page]) -> None:
    raw, page = five_report
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in raw
    assert "<script" not in raw
    assert "Depot &amp; Sons" in raw
    names = [row[0] for row in page.rows["participants"][1:]]
    assert "<script>alert('x')</script>" in names, "shown as text, not run"


def test_participants_table_sorted_took_part_first_then_who_did_not(
    five_report: tuple[str, _Page],
) -> None:
    _, page = five_report
    header, *rows = page.rows["participants"]
    assert header[:4] == ["Participant", "Vehicle", "Station", "Status / reason"]
    assert [r[0] for r in rows] == [
        "Depot & Sons",
        "Ana",
        "Kim",
        "<script>alert('x')</script>",
        "Lee",
    ]
    bus = rows[0]
    assert bus[1] == "car-3 thomas-built-246" and bus[2] == "ST-3 / 1"
    assert bus[4] == "60.0 % → 20.1 %" and bus[5] == "20.0 %"
    assert bus[6:] == ["150.00", "50.00", "50.00", "$13,750.00"]
    opted = rows[3]
    assert opted[3] == "opted_out" and opted[8] == "0.00"


def test_missing_values_show_an_em_dash(five_report: tuple[str, _Page]) -> None:
    raw, page = five_report
    left_out = next(r for r in page.rows["participants"] if r[0] == "Lee")
    assert left_out[3] == "left_out nothing above its floor"
    assert left_out[4] == MISSING and left_out[6:] == [MISSING] * 4
    assert "<dt>Settled at</dt><dd>—</dd>" in raw


def test_the_soc_plot_shows_the_twelve_lowest_margins_of_sixty_and_says_so(
    tmp_path: Path,
) -> None:
    people = [
        participant(
            n,
            f"Owner {n}",
            soc=(90.0, 30.0 + (n * 7) % 50),
            floor=25.0 + (n % 4) * 5,
            delivered_kwh=5.0 + n % 9,
        )
        for n in range(1, 61)
    ]
    people[10] = participant(11, "No Data", soc=None, status="left_out", delivered_kwh=None)
    path = render_event_report(report(people), tmp_path / "sixty.html", title="Sixty cars")
    raw, page = read(path)
    assert len(page.images) == 2 and len(page.rows["participants"]) == 61
    assert "Showing the 12 of 59 vehicles with the lowest margin above their floor." in raw
    assert "1 participant(s) have no SoC samples." in raw
    lines = soc_lines(people)
    assert len(lines) == 59
    margins = [line.margin_pct for line in lines]
    assert margins == sorted(margins)
    by_margin = sorted(
        (min(p["soc_start_pct"], p["soc_end_pct"]) - p["min_soc_pct"], p["participant"])
        for p in people
        if p["soc_series"]
    )
    shown = [line.label for line in lines[:MAX_SOC_LINES]]
    expected = [f"{name} (car-{name.split()[1]})" for _, name in by_margin[:MAX_SOC_LINES]]
    assert sorted(shown) == sorted(expected)


def test_power_plot_has_a_local_time_axis_and_the_three_series() -> None:
    data = report(five())
    data["intervals"][4]["delivered_kw"] = None  # not measured: a gap, not a zero bar
    figure = power_figure(data)
    figure.draw_without_rendering()
    ax = figure.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert {"15:00", "18:00"} <= set(ticks) and "19:00" not in ticks, "EDT, not UTC"
    assert ax.get_xlabel() == "local time (America/New_York)"
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"planned", "committed 410.0 kW"}
    assert list(lines["committed 410.0 kW"].get_ydata()) == [410.0, 410.0]
    assert lines["planned"].get_drawstyle() == "steps-post"
    assert list(lines["planned"].get_ydata()[[0, 17, 18, 36]]) == [420.1, 420.1, 415.0, 415.0]
    bars = [p.get_height() for p in ax.patches]
    assert len(bars) == 35 and bars[0] == pytest.approx(418.7)


def test_soc_plot_draws_each_floor_dashed_in_its_vehicles_colour() -> None:
    figure = soc_figure(report(five()))
    ax = figure.axes[0]
    solid = {to_hex(line.get_color()): line for line in ax.lines}
    assert len(solid) == 4, "one colour per vehicle with SoC samples"
    floors = {}
    for collection in ax.collections:
        (_dash_offset, dashes), *_ = collection.get_linestyle()
        assert dashes is not None, "floors are dashed"
        (segment,) = collection.get_segments()
        floors[to_hex(collection.get_color()[0])] = segment[0][1]
    assert set(floors) == set(solid)
    by_label = {line.get_label(): to_hex(line.get_color()) for line in ax.lines}
    assert floors[by_label["Depot & Sons (car-3)"]] == 20.0
    assert floors[by_label["Ana (car-1)"]] == 30.0
    assert min(solid[by_label["Depot & Sons (car-3)"]].get_ydata()) == pytest.approx(20.1)


def test_soc_plot_of_sixty_has_twelve_lines() -> None:
    people = [participant(n, f"Owner {n}", soc=(90.0, 30.0 + n % 40)) for n in range(1, 61)]
    ax = soc_figure(report(people)).axes[0]
    assert len(ax.lines) == MAX_SOC_LINES and len(ax.collections) == MAX_SOC_LINES
    assert len({to_hex(line.get_color()) for line in ax.lines}) == MAX_SOC_LINES


def test_few_participants_are_all_plotted_without_a_cut_note(
    five_report: tuple[str, _Page],
) -> None:
    raw, _ = five_report
    assert "Showing the" not in raw
    assert "1 participant(s) have no SoC samples." in raw


def test_three_hourly_intervals_and_an_unmeasured_event_render(tmp_path: Path) -> None:
    """A 3-interval event that is still active: delivered values missing everywhere."""
    data = report(five(), interval_s=3600)
    assert len(data["intervals"]) == 3
    for interval in data["intervals"]:
        interval["delivered_kw"] = None
    data["event"] |= {
        "state": "active",
        "delivered_kw": None,
        "delivery_ratio": None,
        "exported_kwh": None,
        "restated": False,
        "restatements": 0,
        "restated_at": None,
    }
    _raw, page = read(render_event_report(data, tmp_path / "active.html"))
    table = summary(page)
    assert table["Delivered"] == MISSING and table["Delivery ratio"] == MISSING
    assert table["Exported"] == MISSING and table["Restatements"] == "0"
    assert len(page.images) == 2


def test_an_empty_event_still_renders_both_figures(tmp_path: Path) -> None:
    data = report([])
    data["intervals"] = []
    _raw, page = read(render_event_report(data, tmp_path / "empty.html"))
    assert len(page.images) == 2
    assert page.rows["participants"] == [page.rows["participants"][0]], "only the header"


def test_names_with_mathtext_dollars_are_plotted_as_text(tmp_path: Path) -> None:
    """A '$' in a name must not reach matplotlib's mathtext (an unbalanced or bogus formula
    would fail the render)."""
    people = [participant(1, r"Big $\frac{spender"), participant(2, "$$ & $^")]
    _raw, page = read(render_event_report(report(people), tmp_path / "dollars.html"))
    assert len(page.images) == 2
    assert r"Big $\frac{spender" in " ".join(page.text)


def test_a_winter_window_shows_standard_time_and_a_given_title_is_escaped(tmp_path: Path) -> None:
    data = report(five())
    data["event"]["start"], data["event"]["end"] = "2026-01-15T23:00:00Z", "2026-01-16T02:00:00Z"
    raw, page = read(render_event_report(data, tmp_path / "winter.html", title="<b>Winter</b>"))
    text = " ".join(" ".join(page.text).split())
    assert "Thu 15 Jan 2026 18:00 EST – 21:00 EST (America/New_York)" in text
    assert "Thu 15 Jan 2026 23:00 UTC – Fri 16 Jan 2026 02:00 UTC" in text
    assert "<title>&lt;b&gt;Winter&lt;/b&gt;</title>" in raw and "<b>" not in raw


def test_sort_participants_puts_unknown_statuses_last() -> None:
    people = [
        participant(1, "Zed", status="mystery"),
        participant(2, "amy", status="done", delivered_kwh=2.0),
        participant(3, "Bea", status="done", delivered_kwh=2.0),
        participant(4, "Cy", status="done", delivered_kwh=9.0),
    ]
    assert [p["participant"] for p in sort_participants(people)] == ["Cy", "amy", "Bea", "Zed"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("intervals"), "report.intervals: missing or not a list"),
        (lambda r: r.update(event="x"), "report.event: missing or not a dict"),
        (lambda r: r["event"].update(time_zone="Mars/Base"), "report.event.time_zone: unknown"),
        (lambda r: r["event"].update(start="15 July"), "report.event.start: not an ISO-8601"),
        (
            lambda r: r["event"].update(end="2026-07-15T22:00:00"),
            "report.event.end: instant without",
        ),
        (
            lambda r: r["intervals"][2].update(start=None),
            "report.intervals[2].start: needs an ISO-8601 instant",
        ),
        (
            lambda r: r["participants"][0]["soc_series"].append(["soon", 50.0]),
            "report.participants[0].soc_series: not an ISO-8601 instant",
        ),
    ],
)
def test_a_report_of_the_wrong_shape_is_refused_naming_the_key(
    tmp_path: Path, change: Any, message: str
) -> None:
    data = report(five())
    change(data)
    with pytest.raises(ReportError, match=re.escape(message)):
        render_event_report(data, tmp_path / "bad.html")
    assert not (tmp_path / "bad.html").exists()
