"""Facts and helpers about Kubernetes objects that the stand-in's controllers
(devinfra.kube_controllers) and its API layer share: the annotations and labels the
Deployment controller writes, template hashes and comparison, ownership, and the store the
controllers act on."""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Protocol

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
CRASH_LOOP_ANNOTATION = "kube-standin.backout.dev/crash-loop"
NODE_NAME = "kube-standin-node"

# Deployment annotations the controller does not copy onto its ReplicaSets.
ANNOTATIONS_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        "deprecated.deployment.rollback.to",
    }
)
# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ObjectStore(Protocol):
    """What the controllers need from the API layer's storage."""

    def get_object(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A copy of the stored object, or None."""

    def list_objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored objects of a kind."""

    def peek_object(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object itself, not a copy (read it, never change it), or None."""

    def peek_objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """list_objects without the copies (read them, never change them)."""

    def put_object(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version (create or replace); returns it with its resourceVersion."""

    def remove_object(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """Delete without cascading; returns the last state."""


Scheduler = Callable[[float, Callable[[], None]], object]
Reader = Callable[[str, str | None, str], dict[str, Any] | None]


def now_rfc3339() -> str:
    """The current UTC time as the API server writes timestamps."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prune_empty(value: Any) -> Any:
    """Drop null, empty-string, empty-map and empty-list values, recursively."""
    if isinstance(value, Mapping):
        pruned = {key: prune_empty(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in (None, "", {}, [])}
    if isinstance(value, list):
        return [prune_empty(item) for item in value]
    return value


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable short hash of a pod template, ignoring null and empty values.

    The real controller hashes the Go struct with FNV-32a; the exact value differs, the
    properties that matter (same template, same hash; safe name characters) do not.
    """
    canonical = json.dumps(comparable_template(template), sort_keys=True, separators=(",", ":"))
    number = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    characters = []
    for _ in range(10):
        number, index = divmod(number, len(_SAFE_ALPHABET))
        characters.append(_SAFE_ALPHABET[index])
    return "".join(characters)


def comparable_template(template: Mapping[str, Any]) -> Any:
    """The template without its hash label, null and empty values: what templates_equal
    compares (built fresh: the template itself is not copied first)."""
    metadata = template.get("metadata") or {}
    labels = metadata.get("labels")
    if isinstance(labels, Mapping) and POD_TEMPLATE_HASH_LABEL in labels:
        labels = {key: value for key, value in labels.items() if key != POD_TEMPLATE_HASH_LABEL}
        template = {**template, "metadata": {**metadata, "labels": labels}}
    return prune_empty(template)


def templates_equal(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Whether two pod templates are the same once the hash label and empties are ignored."""
    return comparable_template(left) == comparable_template(right)


def revision_of(obj: Mapping[str, Any]) -> int:
    """The `deployment.kubernetes.io/revision` annotation as an int (0 when absent)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(REVISION_ANNOTATION, 0))
    except (TypeError, ValueError):
        return 0


def is_owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether `obj` names `owner` (by uid) as its controller."""
    owner_uid = (owner.get("metadata") or {}).get("uid")
    return any(
        reference.get("uid") == owner_uid and reference.get("controller")
        for reference in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def controller_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference marking `owner` as the controller of a dependent."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SAFE_ALPHABET) for _ in range(length))


def compact_counts(status: dict[str, Any]) -> dict[str, Any]:
    # The API omits zero replica counts (omitempty); clients must treat absent as 0.
    return {key: value for key, value in status.items() if value not in (0, None)}
