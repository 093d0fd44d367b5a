"""Server-side `Table` rendering, which `kubectl get` asks for (`Accept: ...;as=Table`).

Without it kubectl prints only NAME and AGE; with it the columns match a real cluster's
for the kinds a rollback demo shows (Deployments, ReplicaSets, Pods, Namespaces).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Row = list[Any]
_Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def wants_table(accept: str | None) -> bool:
    """Whether the Accept header asks for a meta.k8s.io Table."""
    return accept is not None and "as=Table" in accept


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """A duration in kubectl's short form: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    now = now or datetime.datetime.now(datetime.UTC)
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _images(spec: Mapping[str, Any]) -> tuple[str, str]:
    containers = spec.get("containers") or []
    return (
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
    )


def _selector(spec: Mapping[str, Any]) -> str:
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{key}={value}" for key, value in labels.items()) or "<none>"


def _deployment_row(obj: Mapping[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _images((spec.get("template") or {}).get("spec") or {})
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(spec),
    ]


def _replica_set_row(obj: Mapping[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _images((spec.get("template") or {}).get("spec") or {})
    return [
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(spec),
    ]


def _pod_row(obj: Mapping[str, Any]) -> Row:
    status = obj.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = sum(1 for c in containers if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    reason = status.get("phase", "Pending")
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    return [
        f"{ready}/{len(containers) or len((obj.get('spec') or {}).get('containers') or [])}",
        reason,
        restarts,
        age(obj["metadata"].get("creationTimestamp")),
        status.get("podIP", "<none>"),
        (obj.get("spec") or {}).get("nodeName", "<none>"),
    ]


def _namespace_row(obj: Mapping[str, Any]) -> Row:
    return [
        (obj.get("status") or {}).get("phase", "Active"),
        age(obj["metadata"].get("creationTimestamp")),
    ]


def _generic_row(obj: Mapping[str, Any]) -> Row:
    return [age(obj["metadata"].get("creationTimestamp"))]


_COLUMNS: dict[str, tuple[Sequence[_Column], Callable[[Mapping[str, Any]], Row]]] = {
    "deployments": (
        (
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ),
        _deployment_row,
    ),
    "replicasets": (
        (
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ),
        _replica_set_row,
    ),
    "pods": (
        (
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "integer", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ),
        _pod_row,
    ),
    "namespaces": ((("Status", "string", 0), ("Age", "string", 0)), _namespace_row),
}


def table(plural: str, objects: Sequence[Mapping[str, Any]], resource_version: str) -> dict:
    """A meta.k8s.io/v1 Table of `objects` of the given kind."""
    columns, row_of = _COLUMNS.get(plural, ((("Age", "string", 0),), _generic_row))
    definitions = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}
    ] + [
        {"name": name, "type": kind, "format": "", "description": name, "priority": priority}
        for name, kind, priority in columns
    ]
    rows = [
        {
            "cells": [obj["metadata"]["name"], *row_of(obj)],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
