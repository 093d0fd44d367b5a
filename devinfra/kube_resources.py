"""What the Kubernetes stand-in (devinfra.kube_standin) serves, and the API server's rules
for it: the resource types and discovery facts, Status error bodies, injected faults, watch
selections, API paths, and the defaults and validation a write goes through."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kmock

from devinfra.kube_objects import now_rfc3339
from devinfra.kube_selectors import (
    fields_match,
    labels_match,
    match_labels_selector,
    parse_label_selector,
)
from executors.json_docs import json_copy

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+kube-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
OBJECT_VERSIONS_KEPT = 20
ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One resource the stand-in serves, with what discovery says about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    tracks_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How error messages name the resource: `deployments.apps`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @functools.cached_property
    def resource(self) -> kmock.resource:
        # Built once: every list request asks each stored object's type for it.
        return kmock.resource(self.group, self.version, self.plural)


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType(
        "apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), True
    ),
    ResourceType(
        "apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), True
    ),
)
_TYPES_BY_PLURAL = {rt.plural: rt for rt in RESOURCE_TYPES}
IN_CATEGORY_ALL = frozenset({"pods", "services", "deployments", "replicasets"})


def resource_type(plural: str) -> ResourceType:
    """The served resource type with this plural name (KeyError if not served)."""
    return _TYPES_BY_PLURAL[plural]


def served_type(plural: str) -> ResourceType | None:
    """The served resource type with this plural name, or None."""
    return _TYPES_BY_PLURAL.get(plural)


# -- errors ----------------------------------------------------------------------------------


def status_body(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
    """A `Status` object as the API server returns it for failures."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": dict(details or {}),
        "code": code,
    }


def api_error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def not_found(rt: ResourceType, name: str) -> kmock.KubernetesError:
    return api_error(
        404,
        "NotFound",
        f'{rt.group_resource} "{name}" not found',
        name=name,
        group=rt.group,
        kind=rt.plural,
    )


def conflict(rt: ResourceType, name: str) -> kmock.KubernetesError:
    return api_error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been'
        " modified; please apply your changes to the latest version and try again",
        name=name,
        group=rt.group,
        kind=rt.plural,
    )


def invalid(rt: ResourceType, name: str, field_path: str, problem: str) -> kmock.KubernetesError:
    return api_error(
        422,
        "Invalid",
        f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {field_path}: {problem}'.replace(
            ".core ", " "
        ),
        name=name,
        group=rt.group,
        kind=rt.kind,
        causes=[{"reason": "FieldValueInvalid", "message": problem, "field": field_path}],
    )


FAULT_REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    403: ("Forbidden", "forbidden: injected fault"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: (
        "Conflict",
        "Operation cannot be fulfilled: the object has been modified; please apply your"
        " changes to the latest version and try again",
    ),
    422: ("Invalid", "the request is invalid"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


# -- faults and watches ----------------------------------------------------------------------


@dataclass
class Fault:
    """Answer the next `remaining` matching requests badly.

    `status` answers with that HTTP status and a Status body (None: answer normally);
    `hang` first holds the request that many seconds (a client timeout fires first).
    `method` ("PATCH") and `path` (a regular expression searched in the URL path) narrow
    which requests the fault applies to.
    """

    remaining: int
    status: int | None = 500
    hang: float = 0.0
    method: str | None = None
    path: str | None = None
    retry_after: int | None = 1

    def applies_to(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(eq=False)
class Watcher:
    rt: ResourceType
    namespace: str | None
    label_requirements: tuple
    field_requirements: tuple
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def selects(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        return labels_match(self.label_requirements, metadata.get("labels")) and fields_match(
            self.field_requirements, obj
        )

    def event_for(
        self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The event this watcher sees for a change, if any (objects leaving the selection
        are reported as DELETED, objects entering it as ADDED)."""
        if kind == "DELETED":
            return {"type": "DELETED", "object": new} if self.selects(new) else None
        was, now = self.selects(old), self.selects(new)
        if was and now:
            return {"type": "MODIFIED", "object": new}
        if now:
            return {"type": "ADDED", "object": new}
        if was:
            return {"type": "DELETED", "object": new}
        return None


@dataclass(frozen=True)
class ApiPath:
    group: str | None
    version: str | None
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> ApiPath | None:
    """Split a Kubernetes API path; None for paths outside /api/<v> and /apis/<g>."""
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return None
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        group, rest = parts[1], parts[2:]
    version, rest = (rest[0], rest[1:]) if rest else (None, [])
    namespace = None
    # /api/v1/namespaces/<ns>/<plural>... but /api/v1/namespaces/<name>/status is the
    # namespace's own subresource.
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return ApiPath(group, version, plural, namespace, name, subresource)


def group_version_path(rt: ResourceType) -> str:
    return f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"


def scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in metadata
        },
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": match_labels_selector(obj["spec"].get("selector")),
        },
    }


def with_server_fields(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    obj = json_copy(obj)
    obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
    obj["metadata"].setdefault("uid", str(uuid.uuid4()))
    obj["metadata"].setdefault("creationTimestamp", now_rfc3339())
    if rt.tracks_generation:
        obj["metadata"].setdefault("generation", 1)
    return obj


def apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """The defaults the real API server fills in (the ones visible in rollouts)."""
    if rt.plural == "deployments":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        default_pod_spec(template.setdefault("spec", {}))
    elif rt.plural == "replicasets":
        template = obj.setdefault("spec", {}).setdefault("template", {})
        default_pod_spec(template.setdefault("spec", {}))
    elif rt.plural == "pods":
        default_pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {"phase": "Pending"})
    elif rt.plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = str(container.get("image", ""))
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        pull = "IfNotPresent" if tagged and not image.endswith(":latest") else "Always"
        container.setdefault("imagePullPolicy", pull)
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def validate(rt: ResourceType, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    if rt.plural != "deployments":
        return
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise invalid(rt, name, "spec.selector", "Required value")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not labels_match(parse_label_selector(match_labels_selector(selector)), labels):
        raise invalid(
            rt,
            name,
            "spec.template.metadata.labels",
            f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        raise invalid(rt, name, "spec.template.spec.containers", "Required value")
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        raise invalid(rt, name, "spec.replicas", "must be greater than or equal to 0")
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        raise invalid(rt, name, "spec.selector", "field is immutable")
