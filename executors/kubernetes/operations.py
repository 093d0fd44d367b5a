"""What each operation would change on one Deployment, decided from the Deployment as
read, without writing: the outcome, and the patch that makes it so.

The operation is `target.params["operation"]`: "undo" (the default; see
executors.kubernetes.revisions), "restart", "scale" or "apply_manifest" (see
executors.kubernetes.manifests).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from executors.base import Change, ConfigError, RollbackTarget
from executors.kubernetes.templates import (
    REPLICAS_BEFORE_SCALE_ANNOTATION,
    RESTARTED_AT_ANNOTATION,
    revision_of,
)

OPERATIONS = ("undo", "restart", "scale", "apply_manifest")


@dataclass(frozen=True)
class Outcome:
    """What one Deployment's apply did or would do."""

    deployment: str
    changed: bool
    changes: tuple[Change, ...]
    facts: dict[str, Any]
    message: str


def operation_of(target: RollbackTarget) -> str:
    """The operation the target asks for; ConfigError for an unknown one."""
    operation = str(target.params.get("operation", "undo"))
    if operation not in OPERATIONS:
        raise ConfigError(
            f"unknown operation {operation!r}; expected one of {', '.join(OPERATIONS)}"
        )
    return operation


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide_restart(
    deployment: dict[str, Any], target: RollbackTarget, *, namespace: str
) -> tuple[Outcome, Any]:
    """Restart: a new `restartedAt` on the pod template (a strategic merge patch); the
    same `params["restarted_at"]` twice changes nothing."""
    name = deployment["metadata"]["name"]
    stamp = str(target.params.get("restarted_at") or _now())
    template_annotations = (deployment["spec"]["template"].get("metadata") or {}).get(
        "annotations"
    ) or {}
    before = template_annotations.get(RESTARTED_AT_ANNOTATION)
    facts = {"restarted_at": stamp, "from_revision": revision_of(deployment)}
    if before == stamp:
        return Outcome(name, False, (), facts, f"{name} was already restarted at {stamp}"), None
    patch = {
        "metadata": {"resourceVersion": deployment["metadata"]["resourceVersion"]},
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}},
    }
    change = Change(f"deployment/{namespace}/{name}", "restartedAt", before, stamp)
    return Outcome(name, True, (change,), facts, f"{name}: restart at {stamp}"), patch


def decide_scale(
    deployment: dict[str, Any], target: RollbackTarget, *, namespace: str
) -> tuple[Outcome, Any]:
    """Scale to `params["replicas"]`, or "restore" the count a scale recorded (a merge
    patch that records or forgets the count it replaces)."""
    name = deployment["metadata"]["name"]
    annotations = deployment["metadata"].get("annotations") or {}
    current = int(deployment["spec"].get("replicas", 1))
    wanted_param = target.params.get("replicas")
    if wanted_param == "restore":
        recorded = annotations.get(REPLICAS_BEFORE_SCALE_ANNOTATION)
        if recorded is None:
            raise ConfigError(f"{name}: no replica count was recorded to restore")
        wanted = int(recorded)
    elif isinstance(wanted_param, int) and not isinstance(wanted_param, bool) and wanted_param >= 0:
        wanted = wanted_param
    else:
        raise ConfigError('scale needs params.replicas: a non-negative integer or "restore"')
    facts = {"from_replicas": current, "to_replicas": wanted}
    if current == wanted:
        return Outcome(name, False, (), facts, f"{name} already has {wanted} replicas"), None
    change = Change(f"deployment/{namespace}/{name}", "replicas", str(current), str(wanted))
    # One conditional write: the replica count and (for a later "restore") the count
    # it replaces; a restore forgets the recorded count.
    remembered = None if wanted_param == "restore" else str(current)
    patch = {
        "metadata": {
            "resourceVersion": deployment["metadata"]["resourceVersion"],
            "annotations": {REPLICAS_BEFORE_SCALE_ANNOTATION: remembered},
        },
        "spec": {"replicas": wanted},
    }
    return Outcome(name, True, (change,), facts, f"{name}: {current} → {wanted} replicas"), patch
