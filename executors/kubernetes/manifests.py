"""Re-applying a saved Deployment manifest (`operation: "apply_manifest"`): the manifest
is replaced over the live Deployment (PUT, with the live resourceVersion as precondition),
or created when the Deployment is gone."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from executors.base import Change, ConfigError, RollbackTarget
from executors.kubernetes.operations import Outcome
from executors.kubernetes.templates import REVISION_ANNOTATION, container_image, prune_empty

_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def saved_manifest(target: RollbackTarget, *, deployment: str | None) -> dict[str, Any]:
    """A copy of `params["manifest"]`, checked to be an apps/v1 Deployment with a pod
    template and, when the config names one `deployment`, that Deployment."""
    manifest = target.params.get("manifest")
    if not isinstance(manifest, Mapping):
        raise ConfigError("apply_manifest needs params.manifest: a Deployment manifest (dict)")
    if manifest.get("kind") != "Deployment" or manifest.get("apiVersion") != "apps/v1":
        raise ConfigError("params.manifest must be an apps/v1 Deployment")
    name = (manifest.get("metadata") or {}).get("name")
    if not name:
        raise ConfigError("params.manifest has no metadata.name")
    if deployment is not None and name != deployment:
        raise ConfigError(f"params.manifest is for {name!r}, the target is {deployment!r}")
    if not ((manifest.get("spec") or {}).get("template") or {}).get("spec"):
        raise ConfigError("params.manifest has no spec.template")
    return copy.deepcopy(dict(manifest))


def decide_manifest(
    manifest: dict[str, Any],
    deployment: dict[str, Any] | None,
    *,
    namespace: str,
    container: str | None,
    dry_run: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[Outcome, Any]:
    """What re-applying `manifest` over `deployment` (None: gone, so created) would change,
    and the manifest to write (None when it already matches). `dry_run` asks the server
    what a replacement body becomes once defaulted, without writing anything."""
    name = manifest["metadata"]["name"]
    resource = f"deployment/{namespace}/{name}"
    wanted_template = manifest["spec"]["template"]
    wanted_image = container_image(wanted_template, container)
    if deployment is None:
        change = Change(
            resource, "existence", None, f"created from the saved manifest ({wanted_image})"
        )
        return Outcome(name, True, (change,), {"created": True}, f"{name}: recreate"), manifest
    current_image = container_image(deployment["spec"]["template"], container)
    preview = dry_run(replacement(manifest, deployment))
    facts = {"from_image": current_image, "to_image": wanted_image}
    if manifest_matches(preview, deployment):
        return Outcome(name, False, (), facts, f"{name} already matches the saved manifest"), None
    changes = []
    if current_image != wanted_image:
        changes.append(Change(resource, "image", current_image, wanted_image))
    if deployment["spec"].get("replicas") != preview["spec"].get("replicas"):
        changes.append(
            Change(
                resource,
                "replicas",
                str(deployment["spec"].get("replicas")),
                str(preview["spec"].get("replicas")),
            )
        )
    if not changes:
        changes.append(Change(resource, "manifest", "live spec", "saved manifest"))
    return Outcome(
        name, True, tuple(changes), facts, f"{name}: re-apply the saved manifest"
    ), manifest


def replacement(
    manifest: Mapping[str, Any], live: Mapping[str, Any] | None, *, namespace: str | None = None
) -> dict[str, Any]:
    """The saved manifest ready to PUT over `live` (or POST when None): server-owned fields
    dropped, the live resourceVersion as precondition, the live revision kept."""
    body = copy.deepcopy(dict(manifest))
    body.pop("status", None)
    metadata = body.setdefault("metadata", {})
    for server_field in _SERVER_FIELDS + ("selfLink",):
        metadata.pop(server_field, None)
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(REVISION_ANNOTATION, None)
    if live is not None:
        metadata["namespace"] = live["metadata"]["namespace"]
        metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
        live_revision = (live["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
        if live_revision is not None:
            annotations[REVISION_ANNOTATION] = live_revision
    elif namespace is not None:
        metadata["namespace"] = namespace
    metadata["annotations"] = annotations
    return body


def manifest_matches(preview: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether the live Deployment already has the spec, labels and annotations the saved
    manifest (as the server's dry run defaulted it) would give it."""

    def comparable(obj: Mapping[str, Any]) -> Any:
        metadata = obj.get("metadata") or {}
        return prune_empty(
            {
                "spec": obj.get("spec"),
                "labels": metadata.get("labels"),
                "annotations": metadata.get("annotations"),
            }
        )

    return bool(comparable(preview) == comparable(live))
