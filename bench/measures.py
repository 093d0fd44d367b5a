"""Figures the benches compute from what they observed: latency percentiles and the CPU
time of the processes involved."""

from __future__ import annotations

import os
import statistics
from pathlib import Path


def percentiles(values: list[float]) -> str:
    """The median and 95th percentile of `values` (milliseconds), as one printed column."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"


def process_times(sessions: set[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by each process of `sessions` (as "client"), of PostgreSQL
    and of Redis: process id → (kind, seconds)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields, command = rest.split(), head.split("(", 1)[1]
        used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime+stime
        if int(fields[3]) in sessions:  # the session id
            found[int(stat.parent.name)] = ("client", used)
        elif command == "postgres":
            found[int(stat.parent.name)] = ("postgres", used)
        elif command == "redis-server":
            found[int(stat.parent.name)] = ("redis", used)
    return found


def process_cpu(
    sessions: set[int], since: dict[int, tuple[str, float]] | None = None
) -> dict[str, float]:
    """CPU seconds used by the processes of `sessions` (as "client"), PostgreSQL and Redis:
    so far, or since the `process_times` taken earlier. A process counts from zero if it
    started since; one that ended is not counted (PostgreSQL's backends and autovacuum
    workers come and go), so measure a phase's own processes while they run, or have them
    report their own."""
    total = {"client": 0.0, "postgres": 0.0, "redis": 0.0}
    before = since or {}
    for pid, (kind, used) in process_times(sessions).items():
        earlier = before.get(pid)
        total[kind] += used - (earlier[1] if earlier and earlier[0] == kind else 0.0)
    return total
