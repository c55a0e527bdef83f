"""What a benchmark window measures outside the code under test: CPU seconds and peak RSS of processes from
/proc, Redis `INFO commandstats` deltas, and nearest-rank percentiles.

Everything here reads the kernel or Redis directly, so the numbers do not depend on the instrumented code
being honest about itself. CPU comes from utime + stime in /proc/<pid>/stat (clock ticks, 10 ms on Linux),
peak RSS from VmHWM in /proc/<pid>/status (the high-water mark over the process's whole life).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PERCENTILES = (50, 95, 99)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far, in seconds (0 when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = raw.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had, in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def _status_kib(pid: int, field: str) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process (Celery's prefork pool processes, for instance)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [int(child) for child in text.split()]


@dataclass(frozen=True)
class ProcessUsage:
    name: str
    pid: int
    cpu_s: float
    peak_rss_mib: float


class CpuWindow:
    """CPU seconds of named processes between `start()` and `stop()`; a group (a name with several pids,
    e.g. a worker and its pool children) is summed and reports the largest peak RSS of its members."""

    def __init__(self, processes: Mapping[str, Sequence[int]]) -> None:
        self.processes = {name: list(pids) for name, pids in processes.items()}
        self._start: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.processes.items()}

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> list[ProcessUsage]:
        end = self._sample()
        return [
            ProcessUsage(
                name=name,
                pid=pids[0],
                cpu_s=end[name] - self._start[name],
                peak_rss_mib=max((peak_rss_mib(pid) for pid in pids), default=0.0),
            )
            for name, pids in self.processes.items()
        ]


def usage_rows(usage: Iterable[ProcessUsage], seconds: float, jobs: int | None = None) -> list[dict[str, Any]]:
    """Per process: CPU seconds, share of one core over the window, CPU ms per job (when jobs are given)
    and peak RSS, rounded for the report."""
    rows = []
    for u in usage:
        row: dict[str, Any] = {"name": u.name, "pid": u.pid, "cpu_s": round(u.cpu_s, 2), "cpu_share": round(u.cpu_s / seconds, 3)}
        if jobs is not None:
            row["cpu_ms_per_job"] = round(1000 * u.cpu_s / max(jobs, 1), 3)
        row["peak_rss_mib"] = round(u.peak_rss_mib, 1)
        rows.append(row)
    return rows


def command_calls(client: redis.Redis) -> dict[str, int]:
    """`INFO commandstats` as command -> calls so far (commands run inside Lua scripts included)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(fields["calls"]) for name, fields in stats.items()}


def command_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Calls per command between two snapshots, without the INFO calls that took them."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta["info"] = max(0, delta.get("info", 0) - 1)
    return {name: n for name, n in sorted(delta.items(), key=lambda item: -item[1]) if n > 0}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest rank: always an observed value (same definition as jobs.loadgen)."""
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def summary_ms(values_s: Iterable[float]) -> dict[str, float | int | None]:
    """count, p50/p95/p99 and max, in milliseconds, of latencies given in seconds."""
    ordered = sorted(values_s)
    result: dict[str, float | int | None] = {"count": len(ordered)}
    for p in PERCENTILES:
        result[f"p{p}"] = round(percentile(ordered, p) * 1000, 2) if ordered else None
    result["max"] = round(ordered[-1] * 1000, 2) if ordered else None
    return result


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the cumulative-histogram bucket that holds quantile q (None when empty)."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    return next(bound for bound, count in buckets if count >= q * total)
