"""Connections benchmark: N stations boot, then send Heartbeat and MeterValues.

Runs the same load against `csms serve` (ours) and against a bare `ocpp`-library server (a
ChargePoint subclass answering BootNotification, Heartbeat and MeterValues with the library's
default validation, on websockets), each in its own process, and prints both and the ratio.

The load generator runs in separate processes (`--clients`, default 1) and speaks OCPP-J with
raw websockets + orjson, one outstanding CALL per station as OCPP-J requires, so that the client
is cheap next to the servers; its CPU use is reported, so a saturated client is visible.

    .venv/bin/python bench/connections.py                      # 1,000 stations, 30 s, SQLite
    .venv/bin/python bench/connections.py --stations 200 --duration 10 --json
    .venv/bin/python bench/connections.py --db postgresql://postgres@127.0.0.1/bench
    .venv/bin/python bench/connections.py --rate 1             # 1 message/station/s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# bench/ is a folder of scripts, not a package: its shared helpers are imported by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ResourceSampler,
    ServerHandle,
    machine,
    percentile,
    start_server,
    stop_server,
    top_frames,
)

CSMS_READY = re.compile(r"^ocpp (?P<url>ws://\S+)\s+api http://\S+")
BARE_READY = re.compile(r"^bare (?P<url>ws://\S+)")
CALL, CALLRESULT, CALLERROR, CALLRESULTERROR = 2, 3, 4, 5
CLIENT_SATURATED_PCT = 90.0  # a load-generator process this busy may be the bottleneck


# ---- the bare `ocpp`-library server (run as `connections.py --bare-server`) ---------------


def run_bare_server(host: str) -> None:
    """A ChargePoint subclass per connection, library defaults (validation in a thread pool)."""
    import websockets
    from ocpp.routing import on
    from ocpp.v21 import ChargePoint, call_result

    def now() -> str:
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")

    class BareCentral(ChargePoint):
        @on("BootNotification")
        async def on_boot(self, **_: Any) -> call_result.BootNotification:
            return call_result.BootNotification(current_time=now(), interval=300, status="Accepted")

        @on("Heartbeat")
        async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
            return call_result.Heartbeat(current_time=now())

        @on("MeterValues")
        async def on_meter_values(self, **_: Any) -> call_result.MeterValues:
            return call_result.MeterValues()

    async def handle(connection: Any) -> None:
        station = BareCentral(connection.request.path.rsplit("/", 1)[-1], connection)
        with contextlib.suppress(websockets.ConnectionClosed):
            await station.start()

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with websockets.serve(handle, host, 0, subprotocols=["ocpp2.1"]) as server:
            port = server.sockets[0].getsockname()[1]
            print(f"bare ws://{host}:{port}", flush=True)
            await stop.wait()

    asyncio.run(main())


# ---- the load generator (runs in its own processes) --------------------------------------


@dataclass(frozen=True)
class LoadConfig:
    base_url: str  # ws://host:port/ocpp or ws://host:port: the station id is appended
    station_ids: tuple[str, ...]
    duration_s: float
    rate: float  # CALLs per station per second; 0 = back-to-back
    heartbeat_every: int
    timeout_s: float
    connect_concurrency: int


@dataclass
class LoadStats:
    booted: int = 0
    sent: int = 0  # answered CALLs, all phases (progress)
    window_start: float = 0.0
    window_end: float = float("inf")
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: Counter[str] = field(default_factory=Counter)

    def answered(self, latency_s: float, at: float) -> None:
        self.sent += 1
        if self.window_start <= at <= self.window_end:
            self.latencies.append(latency_s)


class StationLink:
    """One station's websocket: one outstanding CALL at a time; answers the CSMS's CALLs."""

    def __init__(self, ws: Any, timeout_s: float) -> None:
        self.ws = ws
        self.timeout_s = timeout_s
        self._next_id = 0
        self._waiting: tuple[str, asyncio.Future[list[Any]]] | None = None
        self.reader = asyncio.create_task(self._read())

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        self._next_id += 1
        message_id = str(self._next_id)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting = (message_id, future)
        await self.ws.send(orjson.dumps([CALL, message_id, action, payload]), text=True)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        finally:
            self._waiting = None

    async def _read(self) -> None:
        try:
            while True:
                frame = orjson.loads(await self.ws.recv(decode=False))
                if frame[0] == CALL:
                    await self.ws.send(orjson.dumps(_answer(frame)), text=True)
                elif self._waiting is not None and frame[1] == self._waiting[0]:
                    _resolve(self._waiting[1], frame)
        except Exception as exc:  # closed, or garbage: whoever waits learns it
            if self._waiting is not None and not self._waiting[1].done():
                self._waiting[1].set_exception(ConnectionError(f"link lost: {exc!r}"))


def _resolve(future: asyncio.Future[list[Any]], frame: list[Any]) -> None:
    if not future.done():  # a late answer after a timeout finds nobody waiting
        future.set_result(frame)


def _answer(frame: list[Any]) -> list[Any]:
    """What a cooperative station answers to the CSMS's CALLs (boot configuration)."""
    message_id, action, payload = frame[1], frame[2], frame[3]
    if action == "SetVariables":
        results = [
            {
                "attributeStatus": "Accepted",
                "attributeType": entry.get("attributeType", "Actual"),
                "component": entry["component"],
                "variable": entry["variable"],
            }
            for entry in payload.get("setVariableData", [])
        ]
        return [CALLRESULT, message_id, {"setVariableResult": results}]
    return [CALLERROR, message_id, "NotSupported", f"{action} is not simulated", {}]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


BOOT = {
    "chargingStation": {"vendorName": "bench", "model": "connections", "firmwareVersion": "1"},
    "reason": "PowerUp",
}


def meter_values(n: int) -> dict[str, Any]:
    """A V2G station's periodic sample: both registers, power both ways, SoC (DESIGN §3.9)."""
    sampled = [
        ("Energy.Active.Import.Register", 10_000.0 + 5 * n, "Wh"),
        ("Energy.Active.Export.Register", 2_000.0 + 3 * n, "Wh"),
        ("Power.Active.Import", 7_200.0, "W"),
        ("Power.Active.Export", 0.0, "W"),
        ("SoC", float(20 + n % 80), "Percent"),
    ]
    return {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": _now(),
                "sampledValue": [
                    {"value": v, "measurand": m, "unitOfMeasure": {"unit": u}}
                    for m, v, u in sampled
                ],
            }
        ],
    }


async def _connect(cfg: LoadConfig, station_id: str, gate: asyncio.Semaphore) -> StationLink:
    import websockets

    async with gate:  # a bounded connection ramp: no SYN storm over the listen backlog
        ws = await websockets.connect(
            f"{cfg.base_url}/{station_id}",
            subprotocols=["ocpp2.1"],
            compression=None,
            ping_interval=None,
            open_timeout=cfg.timeout_s,
            max_queue=4,
        )
    return StationLink(ws, cfg.timeout_s)


async def _exchange(link: StationLink, stats: LoadStats, action: str, payload: dict) -> bool:
    """One CALL; False when the link is gone."""
    started = time.perf_counter()
    try:
        frame = await link.call(action, payload)
    except TimeoutError:
        stats.errors["timeout"] += 1
        return True
    except (ConnectionError, OSError) as exc:
        stats.errors[f"disconnected: {exc}"[:80]] += 1
        return False
    answered = time.perf_counter()
    if frame[0] == CALLRESULT:
        stats.answered(answered - started, answered)
    else:
        stats.errors[f"{action}: {frame[2]}"] += 1
    return True


async def _station(
    cfg: LoadConfig, station_id: str, stats: LoadStats, gate: asyncio.Semaphore, go: asyncio.Event
) -> None:
    try:
        link = await _connect(cfg, station_id, gate)
    except Exception as exc:
        stats.errors[f"connect: {type(exc).__name__}"] += 1
        return
    try:
        if not await _exchange(link, stats, "BootNotification", BOOT):
            return
        stats.booted += 1
        await go.wait()
        await _load(cfg, link, stats)
    finally:
        link.reader.cancel()
        await link.ws.close()


async def _load(cfg: LoadConfig, link: StationLink, stats: LoadStats) -> None:
    loop = asyncio.get_running_loop()
    period = 1 / cfg.rate if cfg.rate > 0 else 0.0
    next_at = loop.time() + random.random() * period  # spread the stations over the period
    n = 0
    while time.perf_counter() < stats.window_end:
        if period:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += period
        heartbeat = n % cfg.heartbeat_every == cfg.heartbeat_every - 1
        action, payload = ("Heartbeat", {}) if heartbeat else ("MeterValues", meter_values(n))
        if not await _exchange(link, stats, action, payload):
            return
        n += 1


async def _generate(cfg: LoadConfig, index: int, progress: Any, go_signal: Any) -> dict:
    stats = LoadStats()
    gate, go = asyncio.Semaphore(cfg.connect_concurrency), asyncio.Event()
    stations = [asyncio.create_task(_station(cfg, s, stats, gate, go)) for s in cfg.station_ids]
    reporter = asyncio.create_task(_report(index, stats, progress))
    started = time.perf_counter()
    await _until_booted(stations, stats, len(cfg.station_ids))
    boot_s = time.perf_counter() - started
    progress.put(("ready", index, stats.booted, dict(stats.errors)))
    await asyncio.to_thread(go_signal.wait)
    stats.window_start = time.perf_counter()
    stats.window_end = stats.window_start + cfg.duration_s
    go.set()
    await asyncio.gather(*stations, return_exceptions=True)
    reporter.cancel()
    return {
        "booted": stats.booted,
        "boot_s": boot_s,
        "window_s": cfg.duration_s,
        "latencies": stats.latencies.tobytes(),
        "errors": dict(stats.errors),
    }


async def _until_booted(stations: list[asyncio.Task], stats: LoadStats, total: int) -> None:
    while stats.booted + sum(stats.errors.values()) < total:
        if all(task.done() for task in stations):
            return
        await asyncio.sleep(0.05)


async def _report(index: int, stats: LoadStats, progress: Any) -> None:
    while True:
        await asyncio.sleep(1)
        progress.put(("tick", index, stats.booted, stats.sent, sum(stats.errors.values())))


def client_main(cfg: LoadConfig, index: int, progress: Any, results: Any, go: Any) -> None:
    """Entry point of one load-generator process."""
    try:
        results.put((index, asyncio.run(_generate(cfg, index, progress, go))))
    except BaseException as exc:  # the orchestrator must hear of it, not hang
        results.put((index, {"crash": repr(exc)}))
        progress.put(("ready", index, 0, {"crash": 1}))


# ---- the orchestrator ------------------------------------------------------------------


@dataclass
class Run:
    server: str
    stations: int
    booted: int = 0
    boot_s: float = 0.0
    duration_s: float = 0.0
    messages: int = 0
    messages_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    rss_after_boot_mb: float = 0.0
    rss_peak_mb: float = 0.0
    server_cpu_pct: float = 0.0
    client_cpu_pct: list[float] = field(default_factory=list)
    client_saturated: bool = False
    load_avg_1m: float = 0.0  # the machine's load when the window opened (shared machines)


def _server_command(kind: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    if kind == "bare":
        return [sys.executable, str(Path(__file__).resolve()), "--bare-server"]
    db = args.db or f"sqlite:///{workdir / 'bench.db'}"
    command = [
        str(Path(sys.executable).with_name("csms")),
        "serve",
        "--db",
        db,
        "--ocpp-port",
        "0",
        "--api-port",
        "0",
        "--allow-unknown-stations",
        "--log-level",
        "warning",
        *args.csms_arg,
    ]
    return command


def _start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes]:
    """py-spy attached to the server for the measured window only (not its start-up)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(round(args.duration))]
    command += ["--rate", "100", "--format", "raw", "--nonblocking", "-o", args.profile]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> Run:
    ready = BARE_READY if kind == "bare" else CSMS_READY
    command = _server_command(kind, args, workdir)
    server = start_server(kind, command, ready, workdir / f"{kind}.log")
    _log(f"[{kind}] {server.ready_line.strip()} pid {server.measured_pid}")
    sampler = ResourceSampler()
    sampler.watch("server", server.measured_pid)
    try:
        return _drive(kind, args, server, sampler)
    finally:
        sampler.close()
        code = stop_server(server)
        if code not in (0, None):
            _log(f"[{kind}] exited with {code}; log tail:\n{server.log_tail()}")


def _drive(kind: str, args: argparse.Namespace, server: ServerHandle, sampler: Any) -> Run:
    ctx = mp.get_context("spawn")
    progress, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    base = server.url + ("/ocpp" if kind == "csms" else "")
    ids = [f"BENCH-{n:05d}" for n in range(args.stations)]
    clients = []
    for index in range(args.clients):
        cfg = LoadConfig(
            base, tuple(ids[index :: args.clients]), args.duration, args.rate,
            args.heartbeat_every, args.timeout, args.connect_concurrency,
        )  # fmt: skip
        process = ctx.Process(target=client_main, args=(cfg, index, progress, results, go))
        process.start()
        sampler.watch(f"client{index}", process.pid)
        clients.append(process)
    run = Run(kind, args.stations)
    try:
        _await_ready(kind, args, progress)
        run.rss_after_boot_mb = sampler.rss_mb("server")
        time.sleep(args.warmup)  # let the boot configuration the CSMS sends settle
        sampler.mark("window")
        run.load_avg_1m = os.getloadavg()[0]
        go.set()
        profiler = _start_profiler(args, server.measured_pid) if args.profile else None
        _watch_window(kind, args, progress, sampler)
        if profiler is not None:
            profiler.wait(args.duration + 60)
        outcomes = [results.get(timeout=args.duration + 2 * args.timeout + 60) for _ in clients]
        _measure(run, args, outcomes, sampler)
    finally:
        for process in clients:
            process.join(30)
            if process.is_alive():
                process.kill()
    return run


def _await_ready(kind: str, args: argparse.Namespace, progress: Any) -> None:
    ready, booted = 0, {}
    while ready < args.clients:
        message = progress.get(timeout=args.timeout * 4 + args.stations / 10)
        if message[0] == "ready":
            ready += 1
        else:
            booted[message[1]] = message[2]
            _log(f"[{kind}] booting: {sum(booted.values())}/{args.stations} stations")


def _watch_window(kind: str, args: argparse.Namespace, progress: Any, sampler: Any) -> None:
    end = time.monotonic() + args.duration
    sent: dict[int, int] = {}
    errors: dict[int, int] = {}
    last_total, last_at = 0, time.monotonic()
    while time.monotonic() < end:
        with contextlib.suppress(queue.Empty):
            message = progress.get(timeout=max(0.05, min(1.0, end - time.monotonic())))
            if message[0] == "tick":
                sent[message[1]], errors[message[1]] = message[3], message[4]
        now = time.monotonic()
        if now - last_at >= 1.0:
            total = sum(sent.values())
            _log(
                f"[{kind}] t={args.duration - (end - now):4.0f}s "
                f"{(total - last_total) / (now - last_at):8.0f} msg/s  "
                f"errors {sum(errors.values())}  server RSS {sampler.rss_mb('server'):.0f} MB"
            )
            last_total, last_at = total, now


def _measure(run: Run, args: argparse.Namespace, outcomes: list, sampler: Any) -> None:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    for index, outcome in outcomes:
        if "crash" in outcome:
            errors[f"load generator {index} crashed: {outcome['crash']}"] += 1
            continue
        run.booted += outcome["booted"]
        run.boot_s = max(run.boot_s, outcome["boot_s"])
        latencies.extend(array("d", outcome["latencies"]))
        errors.update(outcome["errors"])
    latencies.sort()
    run.duration_s = args.duration
    run.messages = len(latencies)
    run.messages_per_s = len(latencies) / args.duration
    run.p50_ms = 1000 * percentile(latencies, 50)
    run.p99_ms = 1000 * percentile(latencies, 99)
    run.max_ms = 1000 * (latencies[-1] if latencies else 0.0)
    run.errors = sum(errors.values())
    run.error_kinds = dict(errors)
    run.rss_peak_mb = sampler.peak_rss_mb("server")
    run.server_cpu_pct = sampler.cpu_percent_since("window", "server")
    run.client_cpu_pct = [
        sampler.cpu_percent_since("window", f"client{i}") for i in range(args.clients)
    ]
    run.client_saturated = any(pct >= CLIENT_SATURATED_PCT for pct in run.client_cpu_pct)


ROWS = (
    ("stations booted", "booted", "{:.0f}"),
    ("boot time (s)", "boot_s", "{:.1f}"),
    ("messages/s", "messages_per_s", "{:.0f}"),
    ("latency p50 (ms)", "p50_ms", "{:.1f}"),
    ("latency p99 (ms)", "p99_ms", "{:.1f}"),
    ("latency max (ms)", "max_ms", "{:.1f}"),
    ("errors", "errors", "{:.0f}"),
    ("server RSS after boot (MB)", "rss_after_boot_mb", "{:.0f}"),
    ("server RSS peak (MB)", "rss_peak_mb", "{:.0f}"),
    ("server CPU (%)", "server_cpu_pct", "{:.0f}"),
    ("machine load (1 min)", "load_avg_1m", "{:.1f}"),
)


def ratios(runs: dict[str, Run]) -> dict[str, float]:
    if "csms" not in runs or "bare" not in runs:
        return {}
    ours, bare = asdict(runs["csms"]), asdict(runs["bare"])
    keys = ("messages_per_s", "p50_ms", "p99_ms", "rss_peak_mb", "server_cpu_pct")
    return {k: round(ours[k] / bare[k], 3) for k in keys if bare[k]}


def print_table(runs: dict[str, Run]) -> None:
    names = list(runs)
    ratio = ratios(runs)
    header = f"{'':28}" + "".join(f"{n:>12}" for n in names) + ("  ours/bare" if ratio else "")
    print(header)
    for label, key, fmt in ROWS:
        cells = "".join(f"{fmt.format(getattr(runs[n], key)):>12}" for n in names)
        extra = f"  {ratio[key]:9.2f}" if key in ratio else ""
        print(f"{label:28}{cells}{extra}")
    for name, run in runs.items():
        clients = ", ".join(f"{pct:.0f}%" for pct in run.client_cpu_pct)
        verdict = "SATURATED (the client may be the bottleneck)" if run.client_saturated else "ok"
        print(f"load generator CPU against {name}: {clients} -> {verdict}")
        for kind, count in sorted(run.error_kinds.items()):
            print(f"  {name} error: {kind} x{count}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stations", type=int, default=1000, help="stations (default 1000)")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds (default 30)")
    p.add_argument("--rate", type=float, default=0.0, help="CALLs/station/s; 0 = back-to-back")
    p.add_argument("--db", help="database URL for csms serve (default: a fresh SQLite file)")
    p.add_argument("--server", choices=("both", "csms", "bare"), default="both")
    p.add_argument("--clients", type=int, default=1, help="load-generator processes")
    p.add_argument("--heartbeat-every", type=int, default=4, help="every Nth CALL a Heartbeat")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    p.add_argument("--connect-concurrency", type=int, default=100)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds between boot and window")
    p.add_argument("--csms-arg", action="append", default=[], help="extra `csms serve` argument")
    p.add_argument("--profile", help="py-spy: profile csms serve over the window into FILE (raw)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.profile:
        args.profile = str(Path(args.profile).resolve())
    if args.stations < 1 or args.duration <= 0 or args.clients < 1 or args.heartbeat_every < 1:
        p.error("--stations, --duration, --clients and --heartbeat-every must be positive")
    args.clients = min(args.clients, args.stations)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_server:
        run_bare_server("127.0.0.1")
        return 0
    kinds = ("csms", "bare") if args.server == "both" else (args.server,)
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="csms-bench-") as tmp:
        for kind in kinds:
            runs[kind] = run_one(kind, args, Path(tmp))
    report = {
        "benchmark": "connections",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: getattr(args, k) for k in ("stations", "duration", "rate", "clients")},
        "database": args.db or "sqlite (fresh file)",
        "runs": {kind: asdict(run) for kind, run in runs.items()},
        "ratio_ours_over_bare": ratios(runs),
    }
    if args.profile and "csms" in runs:
        report["profile_top"] = top_frames(Path(args.profile))
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        print_table(runs)
        for name, self_pct, incl_pct in report.get("profile_top", []):
            print(f"  profile {self_pct:5.1f}% self {incl_pct:5.1f}% incl  {name}")
    # Errors (timeouts, CALLERRORs) are results to read, not a failed benchmark: `make bench`
    # goes on to its other benchmarks. A server that cannot start still exits non-zero.
    return 0


if __name__ == "__main__":
    sys.exit(main())
