"""Deployment pod templates and annotations, compared as the Deployment controller and
kubectl compare them: plain JSON as the API serves it, not the client's models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from executors.base import BackendError, ConfigError
from executors.json_docs import json_copy

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
# Recorded on the Deployment by an undo: the template it rolled back to, so a repeated
# "previous" undo sees it has already happened instead of flipping back again.
ROLLBACK_TARGET_ANNOTATION = "backout.dev/rollback-target"
# Recorded by a scale that changed the replica count, for `replicas: "restore"`.
REPLICAS_BEFORE_SCALE_ANNOTATION = "backout.dev/replicas-before-scale"


def prune_empty(value: Any) -> Any:
    """A JSON document without its null, "", {} and [] values, which comparisons of pod
    templates and manifests ignore, as the Deployment controller does."""
    if isinstance(value, Mapping):
        pruned = {key: prune_empty(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in (None, "", {}, [])}
    if isinstance(value, list):
        return [prune_empty(item) for item in value]
    return value


def template_without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a pod template without the controller's pod-template-hash label."""
    result = json_copy(dict(template))
    labels = (result.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return result


def templates_equal(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Whether two pod templates are the same, ignoring the hash label and empty values
    (`creationTimestamp: null`, `resources: {}`), as the Deployment controller does."""
    return prune_empty(template_without_hash(left)) == prune_empty(template_without_hash(right))


def template_fingerprint(template: Mapping[str, Any]) -> str:
    """A short stable digest of a pod template under `templates_equal`."""
    canonical = json.dumps(
        prune_empty(template_without_hash(template)), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object rendered as a label selector query string."""
    selector = selector or {}
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[operator]
        )
    return ",".join(terms)


def container_image(template: Mapping[str, Any], container: str | None) -> str | None:
    """The image of `container` (or of the first container) in a pod template."""
    containers = (template.get("spec") or {}).get("containers") or []
    for entry in containers:
        if container is None or entry.get("name") == container:
            return entry.get("image")
    return None


def container_name(deployment: Mapping[str, Any], wanted: str | None) -> str:
    """The container a backend acts on: `wanted` (the config's `container`), which the
    Deployment must have, or its first container."""
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    if wanted is None:
        if not containers:
            raise BackendError(
                f"{deployment['metadata']['name']}: the pod template has no containers"
            )
        return str(containers[0]["name"])
    if not any(container.get("name") == wanted for container in containers):
        names = ", ".join(c.get("name", "?") for c in containers)
        raise ConfigError(
            f"{deployment['metadata']['name']}: no container named {wanted!r} (has {names})"
        )
    return str(wanted)


def revision_of(obj: Mapping[str, Any]) -> int:
    """The rollout revision a Deployment or ReplicaSet is annotated with; 0 when none."""
    try:
        return int(
            ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0)
        )
    except (TypeError, ValueError):
        return 0
