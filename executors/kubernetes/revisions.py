"""A Deployment's rollout history, and the undo to one of its revisions.

An undo does what `kubectl rollout undo [--to-revision]` does: from the ReplicaSets the
Deployment owns, pick the revision to return to (the one before the live revision, a chosen
revision number, or the newest revision whose container image is the target release's
artifact), and patch the Deployment's pod template back to that ReplicaSet's template
(minus its pod-template-hash label), carrying over the ReplicaSet's annotations as kubectl
does. The Deployment controller then reuses that ReplicaSet and gives it the next revision
number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executors.base import BackendError, Change, ConfigError, RollbackTarget
from executors.kubernetes.operations import Outcome
from executors.kubernetes.templates import (
    POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION,
    ROLLBACK_TARGET_ANNOTATION,
    container_image,
    revision_of,
    template_fingerprint,
    template_without_hash,
    templates_equal,
)

# Annotations kubectl keeps from the Deployment rather than taking from the ReplicaSet.
_ANNOTATIONS_KEPT_ON_UNDO = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class Revision:
    """One entry of a Deployment's rollout history (one owned ReplicaSet)."""

    number: int
    replica_set: str
    template: dict[str, Any]  # without the pod-template-hash label
    annotations: dict[str, str]
    pod_template_hash: str | None
    created_at: str | None = None  # the ReplicaSet's creationTimestamp

    def image(self, container: str | None) -> str | None:
        """The image of `container` (or of the first container) in this revision."""
        return container_image(self.template, container)


def rollout_history(replica_sets: list[dict[str, Any]], uid: str) -> list[Revision]:
    """The rollout history of the Deployment with `uid`, oldest first (what `rollout
    history` lists), from a listing of its ReplicaSets: those it controls."""
    history = []
    for replica_set in replica_sets:
        owners = replica_set["metadata"].get("ownerReferences") or []
        if not any(ref.get("uid") == uid and ref.get("controller") for ref in owners):
            continue
        template = replica_set["spec"]["template"]
        history.append(
            Revision(
                number=revision_of(replica_set),
                replica_set=replica_set["metadata"]["name"],
                template=template_without_hash(template),
                annotations=dict(replica_set["metadata"].get("annotations") or {}),
                pod_template_hash=((template.get("metadata") or {}).get("labels") or {}).get(
                    POD_TEMPLATE_HASH_LABEL
                ),
                created_at=replica_set["metadata"].get("creationTimestamp"),
            )
        )
    history.sort(key=lambda revision: revision.number)
    return history


def revision_running(history: list[Revision], deployment: Mapping[str, Any]) -> Revision | None:
    """The revision whose template the Deployment runs, if it has a pod-template-hash."""
    template = deployment["spec"]["template"]
    for revision in history:
        if revision.pod_template_hash and templates_equal(revision.template, template):
            return revision
    return None


def choose_revision(
    deployment: Mapping[str, Any],
    history: list[Revision],
    target: RollbackTarget,
    container: str,
) -> Revision | None:
    """The revision to undo to: `params["to_revision"]`, else the newest revision running
    `target.artifact` in `container`, else (with `target.previous`) the one before the live
    revision; None when a "previous" undo this backend made is already live."""
    name = deployment["metadata"]["name"]
    if not history:
        raise BackendError(f"{name}: no rollout history found (no owned ReplicaSets)")
    wanted_revision = target.params.get("to_revision")
    if wanted_revision is not None:
        try:
            wanted_number = int(wanted_revision)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"params.to_revision must be a number: {error}") from error
        for revision in history:
            if revision.number == wanted_number:
                return revision
        known = ", ".join(str(r.number) for r in history)
        raise ConfigError(f"{name}: revision {wanted_revision} is not in the history ({known})")
    if target.artifact:
        matching = [r for r in history if r.image(container) == target.artifact]
        if not matching:
            images = ", ".join(f"{r.number}={r.image(container)}" for r in history)
            raise ConfigError(
                f"{name}: no revision runs image {target.artifact!r} in container "
                f"{container!r}; the history has {images}"
            )
        return matching[-1]
    if not target.previous:
        raise ConfigError(
            "undo needs target.artifact (an image), params.to_revision, or previous=True"
        )
    annotations = deployment["metadata"].get("annotations") or {}
    recorded = annotations.get(ROLLBACK_TARGET_ANNOTATION)
    if recorded and recorded == template_fingerprint(deployment["spec"]["template"]):
        return None
    current = revision_of(deployment)
    earlier = [r for r in history if r.number != current]
    if not earlier:
        raise BackendError(f"{name}: no previous revision to roll back to", retryable=False)
    return earlier[-1]


def decide_undo(
    deployment: dict[str, Any],
    history: list[Revision],
    target: RollbackTarget,
    *,
    namespace: str,
    container: str,
) -> tuple[Outcome, list[dict[str, Any]] | None]:
    """Undo `container`'s Deployment to the revision `choose_revision` picks from
    `history`: the outcome, and a conditional JSON patch (None when nothing changes)."""
    name = deployment["metadata"]["name"]
    current_template = deployment["spec"]["template"]
    current_image = container_image(current_template, container)
    current_revision = revision_of(deployment)
    annotations = deployment["metadata"].get("annotations") or {}

    chosen = choose_revision(deployment, history, target, container)
    if chosen is None:  # a "previous" undo this backend already made
        return (
            Outcome(
                name,
                False,
                (),
                {"revision": current_revision, "image": current_image},
                f"{name} is already rolled back: revision {current_revision} ({current_image})",
            ),
            None,
        )
    target_image = chosen.image(container)
    facts = {
        "from_revision": current_revision,
        "from_image": current_image,
        "to_revision": chosen.number,
        "to_image": target_image,
        "replica_set": chosen.replica_set,
    }
    if templates_equal(chosen.template, current_template):
        message = f"{name} already runs the template of revision {chosen.number} ({target_image})"
        return Outcome(name, False, (), facts, message), None

    kept = {key: value for key, value in annotations.items() if key in _ANNOTATIONS_KEPT_ON_UNDO}
    taken = {
        key: value
        for key, value in chosen.annotations.items()
        if key not in _ANNOTATIONS_KEPT_ON_UNDO and key != ROLLBACK_TARGET_ANNOTATION
    }
    new_annotations = {
        **kept,
        **taken,
        ROLLBACK_TARGET_ANNOTATION: template_fingerprint(chosen.template),
    }
    patch = [
        # A resourceVersion in the patch makes it conditional: 409 if anyone wrote since.
        {
            "op": "add",
            "path": "/metadata/resourceVersion",
            "value": deployment["metadata"]["resourceVersion"],
        },
        {"op": "add", "path": "/spec/template", "value": chosen.template},
        {"op": "add", "path": "/metadata/annotations", "value": new_annotations},
    ]
    resource = f"deployment/{namespace}/{name}"
    changes = (
        Change(resource, f"container {container} image", current_image, target_image),
        Change(resource, "revision", str(current_revision), f"{chosen.number} (as a new revision)"),
    )
    message = (
        f"{name}: revision {current_revision} ({current_image}) → "
        f"revision {chosen.number} ({target_image})"
    )
    return Outcome(name, True, changes, facts, message), patch
