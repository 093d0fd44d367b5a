"""The decision helper's signals read from Prometheus instead of typed: each service of the
incident may name a PromQL query per signal (`Service.signal_queries`); the reading takes,
for each signal, the worst value across the incident's services, and from the error rate's
last hour also how long it has been above the watch level and its trend. A signal no
service names, or whose query fails, stays blank (unknown) and the reading says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from incidents.models import Service

SIGNALS = {
    "error_rate": "Error rate (%)",
    "p99_ms": "p99 latency (ms)",
    "p99_baseline_ms": "p99 baseline (ms)",
    "pods_failing": "Pods failing checks",
    "pods_total": "Pods in total",
    "memory_percent": "Memory (%)",
}
QUERY_MAX = 2000
# The error rate's history read for "above for" and the trend.
HISTORY_SECONDS, STEP_SECONDS, TREND_SECONDS = 3600, 30, 300


@dataclass
class Reading:
    values: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # signal -> service it came from
    minutes_above: float | None = None
    trend: str = "steady"
    read_at: datetime = field(default_factory=timezone.now)
    problems: list[str] = field(default_factory=list)

    def initial(self) -> dict[str, object]:
        """The values as the signals form's initial data."""
        data: dict[str, object] = {
            key: int(value) if key.startswith("pods") else round(value, 2)
            for key, value in self.values.items()
        }
        if self.minutes_above is not None:
            data["minutes_above"] = round(self.minutes_above, 1)
        data["error_trend"] = self.trend
        return data


def clean_queries(queries: Mapping[str, object]) -> dict[str, str]:
    """Signal queries as a service keeps them; ValueError naming the signal otherwise."""
    cleaned = {}
    for key, query in queries.items():
        if key not in SIGNALS:
            raise ValueError(f"{key}: not a signal (signals: {', '.join(SIGNALS)})")
        text = str(query or "").strip()
        if len(text) > QUERY_MAX or "\x00" in text:
            raise ValueError(f"{key}: a query is at most {QUERY_MAX} characters of text")
        if text:
            cleaned[key] = text
    return cleaned


def prometheus(path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    response = requests.get(
        f"{settings.PROMETHEUS_URL.rstrip('/')}/api/v1/{path}",
        params=params,
        timeout=float(settings.VERIFY_PROMETHEUS_TIMEOUT_SECONDS),
    )
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise ValueError(str(body.get("error") or f"HTTP {response.status_code}")[:200])
    data = body["data"]
    if data.get("resultType") == "scalar":  # `1 - x / y` over scalars: one unlabelled sample
        return [{"metric": {}, "value": data["result"]}]
    return list(data["result"])


def instant(query: str) -> float | None:
    samples = [float(s["value"][1]) for s in prometheus("query", {"query": query})]
    samples = [value for value in samples if math.isfinite(value)]  # NaN, ±Inf: no answer
    return max(samples) if samples else None


def history(query: str) -> list[tuple[float, float]]:
    end = time.time()
    series = prometheus(
        "query_range",
        {"query": query, "start": end - HISTORY_SECONDS, "end": end, "step": STEP_SECONDS},
    )
    worst: dict[float, float] = {}
    for each in series:
        for at, text in each["values"]:
            if math.isfinite(value := float(text)):
                worst[float(at)] = max(worst.get(float(at), float("-inf")), value)
    return sorted(worst.items())


def above_and_trend(points: Sequence[tuple[float, float]], level: float) -> tuple[float, str]:
    """Minutes the newest run of samples has been above `level`, and the trend over the
    last five minutes (rising or falling by more than a tenth, else steady)."""
    minutes = 0.0
    if points and points[-1][1] > level:
        start = points[-1][0]
        for at, value in reversed(points):
            if value <= level:
                break
            start = at
        minutes = (points[-1][0] - start) / 60
    trend = "steady"
    if points:
        now_at, now_value = points[-1]
        earlier = [value for at, value in points if at <= now_at - TREND_SECONDS]
        if earlier:
            then = earlier[-1]
            if now_value > then * 1.1 and now_value - then > 0.01:
                trend = "rising"
            elif now_value < then * 0.9:
                trend = "falling"
    return minutes, trend


# Signals read together, from the one service where they are worst: a p99 is held against
# its own baseline, failing pods against their own total.
PAIRS = (("p99_ms", "p99_baseline_ms"), ("pods_failing", "pods_total"))


def worst_pair(per_service: dict[str, dict[str, float]], high: str, low: str) -> str | None:
    ratios = {
        name: values[high] / values[low]
        for name, values in per_service.items()
        if high in values and values.get(low)
    }
    return max(ratios, key=lambda name: ratios[name]) if ratios else None


def signals_read(services: Sequence[Service], *, watch_level: float) -> Reading:
    reading = Reading()
    configured = [s for s in services if isinstance(s.signal_queries, dict) and s.signal_queries]
    if not configured:
        reading.problems.append("no service of this incident names Prometheus queries")
        return reading
    per_service: dict[str, dict[str, float]] = {}
    for service in configured:
        read = per_service.setdefault(service.name, {})
        for key, query in clean_queries(service.signal_queries).items():
            try:
                value = instant(query)
            except (requests.RequestException, ValueError, KeyError, TypeError) as error:
                problem = f"{service.name} {key}: {type(error).__name__}: {error}"
                reading.problems.append(problem[:200])
                continue
            if value is None:
                reading.problems.append(f"{service.name} {key}: no sample")
            else:
                read[key] = value
    for key in ("error_rate", "memory_percent"):
        having = {name: values[key] for name, values in per_service.items() if key in values}
        if having:
            name = max(having, key=lambda each: having[each])
            reading.values[key], reading.sources[key] = having[name], name
    for high, low in PAIRS:
        worst = worst_pair(per_service, high, low)
        if worst is not None:
            for key in (high, low):
                reading.values[key] = per_service[worst][key]
                reading.sources[key] = worst
    source = reading.sources.get("error_rate")
    if source is not None:
        query = next(s for s in configured if s.name == source).signal_queries["error_rate"]
        try:
            reading.minutes_above, reading.trend = above_and_trend(history(query), watch_level)
        except (requests.RequestException, ValueError, KeyError, TypeError) as error:
            reading.problems.append(f"{source} error_rate history: {error}"[:200])
    return reading
