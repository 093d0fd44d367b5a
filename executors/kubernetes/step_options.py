"""The options of a Kubernetes step, and what the cluster says about them now: the rollout
history to undo to (revision, images, age, which one runs), and the manifest to save before
a release so that "apply_manifest" can put it back."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from executors.kubernetes.manifests import replacement
from executors.kubernetes.operations import OPERATIONS
from executors.kubernetes.revisions import Revision, revision_running
from executors.kubernetes.templates import container_image
from executors.options import RESTART_STAMP, Choice, LiveOption, Option, scale_option

OPERATION_LABELS = {
    "undo": "Undo to an earlier revision",
    "restart": "Restart the pods",
    "scale": "Scale to a number of replicas",
    "apply_manifest": "Re-apply a saved manifest",
}

OPERATION = Option(
    "operation",
    "Operation",
    type="choice",
    default="undo",
    choices=tuple(Choice(name, OPERATION_LABELS[name]) for name in OPERATIONS),
)
TO_REVISION = Option(
    "to_revision",
    "Revision",
    type="choice",
    live=True,
    when={"operation": ("undo",)},
    help="A revision from the rollout history; leave empty to use the chosen release or "
    "the revision before the live one.",
)
REPLICAS = scale_option(
    "Replicas",
    maximum=1000,
    help='"restore" returns to the count recorded by an earlier scale (e.g. after a '
    "database restore).",
)
RESTARTED_AT = RESTART_STAMP
MANIFEST = Option(
    "manifest",
    "Saved manifest",
    type="backup",
    backup_key="manifest",
    required=True,
    when={"operation": ("apply_manifest",)},
    help="The Deployment manifest saved before a release; the dry run shows what changes.",
)
MAX_RESTARTS = Option(
    "max_restarts",
    "Container restarts tolerated by the checks",
    type="integer",
    minimum=0,
    maximum=100,
    help="Above this, the pod check fails (3 when empty).",
)

SINGLE_DEPLOYMENT_OPTIONS = (OPERATION, TO_REVISION, REPLICAS, RESTARTED_AT, MANIFEST, MAX_RESTARTS)
# A namespace's Deployments each have their own history and manifest.
NAMESPACE_OPTIONS = (OPERATION, REPLICAS, RESTARTED_AT, MAX_RESTARTS)


def age_text(created_at: str | None, now: datetime.datetime | None = None) -> str:
    """ "3 h 5 min ago" for an RFC 3339 instant; "" when unknown."""
    if not created_at:
        return ""
    try:
        created = datetime.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, int(((now or datetime.datetime.now(datetime.UTC)) - created).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h ago"
    if hours:
        return f"{hours} h {minutes} min ago"
    return f"{minutes} min ago"


def revision_choices(
    deployment: Mapping[str, Any], history: list[Revision], container: str | None
) -> LiveOption:
    """The rollout history as choices, newest first, the running one marked."""
    running = revision_running(history, deployment)
    choices = []
    for revision in reversed(history):
        images = ", ".join(
            str(item.get("image"))
            for item in (revision.template.get("spec") or {}).get("containers") or []
        ) or str(container_image(revision.template, container))
        age = age_text(revision.created_at)
        is_running = running is not None and running.number == revision.number
        choices.append(
            Choice(
                str(revision.number),
                f"revision {revision.number}" + (" (running)" if is_running else ""),
                detail=" · ".join(part for part in (images, age) if part),
                current=is_running,
            )
        )
    return LiveOption(choices=tuple(choices))


def manifest_backup(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment as a manifest to re-apply later: no status, no server-owned fields."""
    manifest = replacement(copy.deepcopy(dict(deployment)), None)
    manifest.setdefault("apiVersion", "apps/v1")
    manifest.setdefault("kind", "Deployment")
    return manifest
