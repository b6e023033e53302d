"""Shared pieces of the benchmarks: server child processes, resource sampling, statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

READY_GUARD_S = 120.0  # hang guard for a server's start-up, not a performance bound


@dataclass
class ServerHandle:
    """A server child process and the URL it announced."""

    name: str
    popen: subprocess.Popen[str]
    measured_pid: int
    url: str
    ready_line: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_server(
    name: str, command: list[str], ready: re.Pattern[str], log_path: Path
) -> ServerHandle:
    """Start `command`, wait for the stdout line matching `ready` (its group `url`)."""
    with log_path.open("ab") as log:
        popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    found: list[re.Match[str]] = []

    def read_until_ready() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            match = ready.search(line)
            if match:
                found.append(match)
                return

    reader = threading.Thread(target=read_until_ready, daemon=True)
    reader.start()
    reader.join(READY_GUARD_S)
    if not found:
        popen.kill()
        popen.wait()
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} did not become ready ({' '.join(command)}):\n{tail}")
    # Keep draining stdout so a chatty server never blocks on a full pipe.
    threading.Thread(target=_drain, args=(popen,), daemon=True).start()
    return ServerHandle(name, popen, popen.pid, found[0]["url"], found[0].group(0), log_path)


def _drain(popen: subprocess.Popen[str]) -> None:
    assert popen.stdout is not None
    for _ in popen.stdout:
        pass


def stop_server(handle: ServerHandle, grace_s: float = 60.0) -> int:
    """SIGTERM, then SIGKILL if it does not stop within the grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(handle.measured_pid, signal.SIGTERM)
    try:
        return handle.popen.wait(grace_s)
    except subprocess.TimeoutExpired:
        handle.popen.kill()
        return handle.popen.wait()


@dataclass
class _Usage:
    cpu_s: float = 0.0
    rss_bytes: int = 0
    peak_rss_bytes: int = 0


@dataclass
class ResourceSampler:
    """Samples CPU time and RSS of some processes in a thread, twice a second."""

    interval_s: float = 0.5
    _pids: dict[str, int] = field(default_factory=dict)
    _usage: dict[str, _Usage] = field(default_factory=dict)
    _marks: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def watch(self, label: str, pid: int) -> None:
        with self._lock:
            self._pids[label] = pid
            self._usage.setdefault(label, _Usage())
        self._sample(label, pid)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                pids = dict(self._pids)
            for label, pid in pids.items():
                self._sample(label, pid)

    def _sample(self, label: str, pid: int) -> None:
        try:
            process = psutil.Process(pid)
            times, memory = process.cpu_times(), process.memory_info()
        except psutil.Error:  # gone: keep the last figures
            return
        with self._lock:
            usage = self._usage[label]
            usage.cpu_s = times.user + times.system
            usage.rss_bytes = memory.rss
            usage.peak_rss_bytes = max(usage.peak_rss_bytes, memory.rss)

    def rss_mb(self, label: str) -> float:
        with self._lock:
            return self._usage[label].rss_bytes / 2**20

    def peak_rss_mb(self, label: str) -> float:
        with self._lock:
            return self._usage[label].peak_rss_bytes / 2**20

    def mark(self, name: str) -> None:
        """Remember every process's CPU time now, to compute CPU % from here on."""
        for label, pid in list(self._pids.items()):
            self._sample(label, pid)
        with self._lock:
            cpu = {label: usage.cpu_s for label, usage in self._usage.items()}
        self._marks[name] = (time.monotonic(), cpu)

    def cpu_percent_since(self, name: str, label: str) -> float:
        """Average CPU % of one process since the mark (100 % = one core busy)."""
        self._sample(label, self._pids[label])
        started, cpu = self._marks[name]
        elapsed = time.monotonic() - started
        with self._lock:
            used = self._usage[label].cpu_s - cpu.get(label, 0.0)
        return 100.0 * used / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        self._stop.set()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def top_frames(collapsed_path: Path, top: int = 15) -> list[tuple[str, float, float]]:
    """From a py-spy `--format raw` (collapsed stacks) file: the functions with the most
    samples of their own, as (function, self %, inclusive %), by self share."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return []
    ranked = sorted(self_counts, key=lambda f: self_counts[f], reverse=True)[:top]
    return [(f, 100 * self_counts[f] / total, 100 * inclusive[f] / total) for f in ranked]
