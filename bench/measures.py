"""Figures the benches compute from what they observed: latency percentiles, the CPU
time of the processes involved, and what a phase of a bench cost."""

from __future__ import annotations

import gc
import os
import statistics
import time
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


class Arrivals:
    """Every request the stand-in receives: (wall time, method, path)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str]] = []

    def first(self, prefix: str, since: float) -> float:
        return min(at for at, _, path in self.seen if path.startswith(prefix) and at >= since)

    def of_namespace(self, namespace: str, since: float) -> list[tuple[float, str, str]]:
        part = f"/namespaces/{namespace}/"
        return [seen for seen in self.seen if part in seen[2] and seen[0] >= since]


class Phase:
    """What one phase cost: wall time, requests the stand-in served, and the CPU seconds
    of the stand-in (this process), the client side (the worker, or the direct process),
    PostgreSQL and Redis.

    This process's garbage collector runs before a phase, not during it: what the rounds
    leave behind (each rollback's new ReplicaSets and pods, the request log) grew until a
    full collection paused the stand-in for up to 1.4 s in the middle of a phase, of
    either path at random, and doubled that round's wall time."""

    def __init__(self, arrivals: Arrivals, sessions: set[int]) -> None:
        gc.collect()
        gc.freeze()  # what survives is the store: no collection need scan it again
        gc.disable()
        self.arrivals, self.sessions = arrivals, sessions
        self.requests = len(arrivals.seen)
        self.standin = time.process_time()
        self.processes = process_times(sessions)
        self.started = time.monotonic()

    def end(self, client_cpu: float | None = None) -> dict[str, float]:
        """The phase's figures; `client_cpu` when the client reported its own."""
        gc.enable()
        used = process_cpu(self.sessions, since=self.processes)
        if client_cpu is not None:
            used["client"] = client_cpu
        return {
            "wall": time.monotonic() - self.started,
            "requests": len(self.arrivals.seen) - self.requests,
            "standin": time.process_time() - self.standin,
            **used,
        }
