"""When the requests of each Deployment of a bench reached the Kubernetes stand-in, as the
scale-out bench reads them: first request, patch, the poll that saw the rollout complete, last
request; and the table it prints of them."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from bench.measures import Arrivals


def ms_after(instant: datetime | None, since: float) -> float:
    """Milliseconds from `since` (a time.time()) to a recorded `instant`."""
    if instant is None:
        raise SystemExit("a finished run lacks one of its instants")
    return (instant.timestamp() - since) * 1000


def namespace_of(path: str) -> str | None:
    """The namespace a Kubernetes API path addresses, if any."""
    parts = path.split("/")
    return parts[parts.index("namespaces") + 1] if "namespaces" in parts else None


def requests_by_namespace(arrivals: Arrivals) -> dict[str, list[tuple[float, str, str]]]:
    """Every request the stand-in served, by namespace: (instant, method, path), in order."""
    found: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for seen in arrivals.seen:
        namespace = namespace_of(seen[2])
        if namespace is not None:
            found[namespace].append(seen)
    return found


def request_milestones(requests: list[tuple[float, str, str]], since: float) -> dict[str, float]:
    """When a Deployment's first request, its patch, the poll that saw its rollout complete
    and its last request reached the stand-in, in ms after `since`."""
    requests = [seen for seen in requests if seen[0] >= since]
    polls = [at for at, method, path in requests if method == "GET" and path.endswith("/app")]
    at = {
        "first request": requests[0][0],
        "patch": next(at for at, method, _ in requests if method == "PATCH"),
        "last poll": polls[-1],
        "last request": requests[-1][0],
    }
    return {name: (instant - since) * 1000 for name, instant in at.items()}


def print_milestones(engine: dict[str, list[float]], direct: dict[str, list[float]]) -> None:
    print("  where the time goes, ms after the confirmations (direct: after its threads start)")
    print("  milestone            engine p50    max    direct p50    max")
    for name in list(engine) + [name for name in direct if name not in engine]:
        cells = [
            f"{statistics.median(found[name]):7.0f} {max(found[name]):7.0f}"
            if name in found
            else " " * 15
            for found in (engine, direct)
        ]
        print(f"  {name:18s}   {cells[0]}       {cells[1]}")


def print_rounds(measured: list[dict[str, Any]]) -> None:
    """Each round's wall times, and when its engine steps were claimed, sent their first
    request and their patch, saw their rollout complete and finished, and when its runs
    finished (p50/last, in ms after the confirmations)."""
    print(
        "  each round: wall s (engine, direct, per run); engine p50/last ms: claimed, first "
        "request, patch, last poll, step finished, run finished"
    )
    for number, figures in enumerate(measured, start=1):
        engine = figures["engine"]["milestones"]
        cells = [
            f"{statistics.median(engine[name]):5.0f}/{max(engine[name]):5.0f}"
            for name in (
                "claimed",
                "first request",
                "patch",
                "last poll",
                "step finished",
                "run finished",
            )
        ]
        walls = [figures[path]["wall"] for path in ("engine", "direct", "per run")]
        print(
            f"  {number:3d}   {walls[0]:5.2f} {walls[1]:5.2f} {walls[2]:5.2f}   " + " ".join(cells)
        )
