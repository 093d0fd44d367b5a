"""Who last changed a Deployment's pod template, from what the API server records: the
newest `metadata.managedFields` entry whose fields include `spec.template` (its field
manager, e.g. "kubectl-set", "argocd-controller", "helm"), and the
`kubernetes.io/change-cause` annotation that `kubectl rollout history` shows, when set."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from executors.base import LiveChange

CHANGE_CAUSE = "kubernetes.io/change-cause"


def template_change(deployment: Mapping[str, Any]) -> LiveChange | None:
    metadata = deployment.get("metadata") or {}
    cause = str((metadata.get("annotations") or {}).get(CHANGE_CAUSE, ""))[:300]
    newest: tuple[datetime, str] | None = None
    for entry in metadata.get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if "f:template" not in (fields.get("f:spec") or {}):
            continue
        at = parsed(entry.get("time"))
        if at is not None and (newest is None or at > newest[0]):
            newest = (at, str(entry.get("manager") or "unknown")[:128])
    if newest is None:
        return LiveChange(by="(not recorded)", cause=cause) if cause else None
    return LiveChange(by=newest[1], at=newest[0], cause=cause)


def parsed(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
