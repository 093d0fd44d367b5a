"""Roll back Kubernetes Deployments through the official `kubernetes` client.

The default operation does what `kubectl rollout undo [--to-revision]` does: read the
ReplicaSets the Deployment owns, pick the revision to return to (the one before the live
revision, a chosen revision number, or the newest revision whose container image is the
target release's artifact), and patch the Deployment's pod template back to that
ReplicaSet's template (minus its pod-template-hash label), carrying over the ReplicaSet's
annotations as kubectl does. The Deployment controller then reuses that ReplicaSet and
gives it the next revision number.

Other operations, chosen with `target.params["operation"]`:

- "restart": set `kubectl.kubernetes.io/restartedAt` on the pod template (a new revision).
  Pass `params["restarted_at"]` (any stable string) to make a repeated apply a no-op.
- "scale": set `spec.replicas` to `params["replicas"]` through the scale subresource, e.g.
  0 before a database restore; `"restore"` returns to the count recorded when a previous
  scale changed it.
- "apply_manifest": replace the Deployment with the saved manifest `params["manifest"]`
  (a dict), or create it if it is gone.

A target is one Deployment (`deployment`) or every Deployment of the namespace
(`all_in_namespace`, optionally narrowed by `label_selector`), handled in parallel.

Errors: 5xx, 429 and network timeouts raise a retryable BackendError; a 409 conflict is
retried here (re-read, re-patch) a few times and then raised as retryable; any other 4xx
is permanent. Responses are handled as plain JSON (not the client's models) so templates
compare exactly as kubectl compares them.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.json_docs import json_copy

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
# Recorded on the Deployment by an undo: the template it rolled back to, so a repeated
# "previous" undo sees it has already happened instead of flipping back again.
ROLLBACK_TARGET_ANNOTATION = "backout.dev/rollback-target"
# Recorded by a scale that changed the replica count, for `replicas: "restore"`.
REPLICAS_BEFORE_SCALE_ANNOTATION = "backout.dev/replicas-before-scale"

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
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
_OPERATIONS = ("undo", "restart", "scale", "apply_manifest")
_T = TypeVar("_T")


class _Conflict(BackendError):
    """A 409 from the API server: someone else changed the object first."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class _NotFound(BackendError):
    """A 404 from the API server."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class Revision:
    """One entry of a Deployment's rollout history (one owned ReplicaSet)."""

    number: int
    replica_set: str
    template: dict[str, Any]  # without the pod-template-hash label
    annotations: dict[str, str]
    pod_template_hash: str | None

    def image(self, container: str | None) -> str | None:
        """The image of `container` (or of the first container) in this revision."""
        return _container_image(self.template, container)


@dataclass(frozen=True)
class _Outcome:
    """What one Deployment's apply did or would do."""

    deployment: str
    changed: bool
    changes: tuple[Change, ...]
    facts: dict[str, Any]
    message: str


def _prune_empty(value: Any) -> Any:
    if isinstance(value, Mapping):
        pruned = {key: _prune_empty(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in (None, "", {}, [])}
    if isinstance(value, list):
        return [_prune_empty(item) for item in value]
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
    return _prune_empty(template_without_hash(left)) == _prune_empty(template_without_hash(right))


def template_fingerprint(template: Mapping[str, Any]) -> str:
    """A short stable digest of a pod template under `templates_equal`."""
    canonical = json.dumps(
        _prune_empty(template_without_hash(template)), sort_keys=True, separators=(",", ":")
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


def _container_image(template: Mapping[str, Any], container: str | None) -> str | None:
    containers = (template.get("spec") or {}).get("containers") or []
    for entry in containers:
        if container is None or entry.get("name") == container:
            return entry.get("image")
    return None


def _revision_of(obj: Mapping[str, Any]) -> int:
    try:
        return int(
            ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0)
        )
    except (TypeError, ValueError):
        return 0


def rollout_state(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """(complete, message) for a Deployment, judged as `kubectl rollout status` does.

    Raises a permanent BackendError when the rollout exceeded its progress deadline.
    """
    name = deployment["metadata"]["name"]
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = deployment["metadata"].get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False, f"{name}: waiting for the spec update to be observed"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            raise BackendError(f"{name}: rollout exceeded its progress deadline", retryable=False)
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return False, f"{name}: {updated} of {wanted} new replicas updated"
    if total > updated:
        return False, f"{name}: {total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{name}: {available} of {updated} updated replicas available"
    return True, f"{name}: rolled out ({available}/{wanted} available)"


def kube_api_client(
    connections: Connections, *, connect_retries: int, pool_size: int | None = None
) -> kube_client.ApiClient:
    """An ApiClient for the cluster `connections` names: an explicit host, else a kubeconfig
    (file and/or context), else in-cluster settings, else the default kubeconfig file.

    Only failed connects are retried (`connect_retries` times); everything else is the
    caller's decision. `pool_size` is the most connections kept open per host (the
    client's default is five per CPU). Raises ConfigError when no settings can be loaded.
    """
    configuration = kube_client.Configuration()
    try:
        if connections.kube_host:
            configuration.host = connections.kube_host
        elif connections.kubeconfig or connections.kube_context:
            kube_config.load_kube_config(
                config_file=connections.kubeconfig,
                context=connections.kube_context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                kube_config.load_kube_config(
                    client_configuration=configuration, persist_config=False
                )
    except (ConfigException, OSError) as error:
        raise ConfigError(f"cannot load the Kubernetes connection settings: {error}") from error
    configuration.retries = urllib3.Retry(
        total=connect_retries, connect=connect_retries, read=0, status=0, redirect=0, other=0
    )
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    return kube_client.ApiClient(configuration)


# A worker runs many steps on one cluster at once (a parallel group is one thread per
# step): they share one client, so each step skips building one (a few milliseconds of
# CPU that a burst of steps would spend one after another) and reuses its connections.
_SHARED_CLIENT_SECONDS = 60.0
_OBSERVATION_REUSE_SECONDS = 1.0
# How long the rollout history a backend listed may name the ReplicaSet whose pods the
# checks read (a template's ReplicaSet keeps its hash; the pods are always read afresh).
_HISTORY_REUSE_SECONDS = 900.0
_SHARED_POOL_SIZE = 64
_shared_lock = threading.Lock()
_shared_clients: dict[tuple[Any, ...], tuple[float, kube_client.ApiClient]] = {}


def shared_kube_api_client(
    connections: Connections, *, connect_retries: int
) -> kube_client.ApiClient:
    """kube_api_client, shared by this process's threads for a minute per cluster setting
    (so a rotated kubeconfig takes effect soon), with a connection pool large enough for
    a parallel group. urllib3's pools are thread-safe; the client holds no other state
    that requests change."""
    key = (
        os.getpid(),
        connections.kube_host,
        connections.kubeconfig,
        connections.kube_context,
        connect_retries,
    )
    now = time.monotonic()
    with _shared_lock:
        made = _shared_clients.get(key)
        if made is None or now - made[0] > _SHARED_CLIENT_SECONDS:
            client = kube_api_client(
                connections, connect_retries=connect_retries, pool_size=_SHARED_POOL_SIZE
            )
            made = _shared_clients[key] = (now, client)
        return made[1]


class KubernetesDeploymentBackend(Backend):
    """Deployments: undo to a previous or chosen revision, restart, scale, re-apply."""

    kind = "kubernetes"
    label = "Kubernetes Deployment"
    config_schema = {
        "type": "object",
        "properties": {
            "namespace": {"type": "string", "minLength": 1},
            "deployment": {"type": "string", "minLength": 1},
            "all_in_namespace": {"type": "boolean"},
            "container": {"type": "string", "minLength": 1},
            "label_selector": {"type": "string", "minLength": 1},
        },
        "required": ["namespace"],
        "additionalProperties": False,
    }

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        request_timeout: float = 10.0,
        poll_interval: float = 1.0,
        conflict_retries: int = 3,
        max_workers: int = 8,
    ) -> None:
        super().__init__(config, connections)
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.conflict_retries = conflict_retries
        self.max_workers = max_workers
        self._api_client: kube_client.ApiClient | None = None
        self._observed: dict[str, tuple[float, dict[str, Any]]] = {}  # name: (when, as read)
        self._changed_at: float | None = None  # monotonic: when apply last wrote
        # A Deployment's rollout history as this backend last listed it: uid -> (when, revisions)
        self._histories: dict[str, tuple[float, list[Revision]]] = {}

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the schema, then that exactly one of deployment / all_in_namespace is set."""
        validated = super().validate_config(config)
        single = "deployment" in validated
        namespace_wide = bool(validated.get("all_in_namespace"))
        if single == namespace_wide:
            raise ConfigError(
                "config: set either 'deployment' (one Deployment) or 'all_in_namespace': true"
            )
        if single and "label_selector" in validated:
            raise ConfigError("config: 'label_selector' only narrows 'all_in_namespace'")
        return validated

    # -- connection ----------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The namespace of the target Deployment(s)."""
        return str(self.config["namespace"])

    def _client(self) -> kube_client.ApiClient:
        if self._api_client is None:
            self._api_client = shared_kube_api_client(self.connections, connect_retries=2)
        return self._api_client

    def _apps(self) -> kube_client.AppsV1Api:
        return kube_client.AppsV1Api(self._client())

    def _core(self) -> kube_client.CoreV1Api:
        return kube_client.CoreV1Api(self._client())

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call an API method and return the response body as JSON, mapping failures."""
        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs
            )
            return json.loads(response.data)
        except ApiException as error:
            raise _api_error(what, error) from error
        except urllib3.exceptions.HTTPError as error:
            raise BackendError(f"{what}: {error}", retryable=True) from error
        except ValueError as error:
            raise BackendError(f"{what}: unreadable response: {error}", retryable=True) from error

    # -- reading -------------------------------------------------------------------------

    def _read_deployment(self, name: str) -> dict[str, Any]:
        return self._call(
            f"read deployment {self.namespace}/{name}",
            self._apps().read_namespaced_deployment,
            name,
            self.namespace,
        )

    def _recent_deployment(self, name: str) -> dict[str, Any]:
        """The Deployment as `wait` last read it, if that was less than a second ago (and
        nothing was applied since), else read now.

        For the checks and the live version right after `wait`: its last poll is the
        outcome they verify, and reading it again a few milliseconds later only adds
        requests when a whole namespace settles at once. Never used to decide a change.
        """
        seen = self._observed.get(name)
        if seen is not None and time.monotonic() - seen[0] <= _OBSERVATION_REUSE_SECONDS:
            return seen[1]
        return self._read_deployment(name)

    def _deployments(self) -> list[dict[str, Any]]:
        """The target Deployments, sorted by name."""
        if "deployment" in self.config:
            return [self._read_deployment(self.config["deployment"])]
        listing = self._call(
            f"list deployments in {self.namespace}",
            self._apps().list_namespaced_deployment,
            self.namespace,
            label_selector=self.config.get("label_selector"),
        )
        return sorted(listing.get("items") or [], key=lambda d: d["metadata"]["name"])

    def _container_name(self, deployment: Mapping[str, Any]) -> str:
        containers = deployment["spec"]["template"]["spec"].get("containers") or []
        wanted = self.config.get("container")
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

    def revisions(self, deployment: Mapping[str, Any]) -> list[Revision]:
        """The Deployment's rollout history, oldest first (what `rollout history` lists)."""
        uid = deployment["metadata"]["uid"]
        listing = self._call(
            f"list replicasets of {self.namespace}/{deployment['metadata']['name']}",
            self._apps().list_namespaced_replica_set,
            self.namespace,
            label_selector=selector_string(deployment["spec"].get("selector")) or None,
        )
        history = []
        for replica_set in listing.get("items") or []:
            owners = replica_set["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == uid and ref.get("controller") for ref in owners):
                continue
            template = replica_set["spec"]["template"]
            history.append(
                Revision(
                    number=_revision_of(replica_set),
                    replica_set=replica_set["metadata"]["name"],
                    template=template_without_hash(template),
                    annotations=dict(replica_set["metadata"].get("annotations") or {}),
                    pod_template_hash=((template.get("metadata") or {}).get("labels") or {}).get(
                        POD_TEMPLATE_HASH_LABEL
                    ),
                )
            )
        history.sort(key=lambda revision: revision.number)
        self._histories[uid] = (time.monotonic(), history)
        return history

    def live_version(self) -> str | None:
        """The container image running now; for a namespace, `name=image` pairs."""
        if "deployment" in self.config:
            deployments = [self._recent_deployment(self.config["deployment"])]
        else:
            deployments = self._deployments()
        if not deployments:
            return None
        if "deployment" in self.config:
            deployment = deployments[0]
            return _container_image(
                deployment["spec"]["template"], self._container_name(deployment)
            )
        pairs = []
        for deployment in deployments:
            image = _container_image(
                deployment["spec"]["template"], self._container_name(deployment)
            )
            pairs.append(f"{deployment['metadata']['name']}={image}")
        return ", ".join(pairs)

    # -- planning ------------------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Describe, per Deployment, what apply would change; reads only."""
        operation = _operation(target)
        if operation == "apply_manifest":
            outcomes = [self._decide_manifest(self._find_manifest_target(target), target)[0]]
        else:
            outcomes = self._for_each(lambda d: self._decide(d, target, operation))
        changes = tuple(change for outcome in outcomes for change in outcome.changes)
        pending = [outcome.deployment for outcome in outcomes if outcome.changed]
        if not outcomes:
            summary = f"no Deployments match in namespace {self.namespace}"
        elif pending:
            summary = (
                f"{operation}: {len(pending)} of {len(outcomes)} Deployment(s) would change: "
                + "; ".join(outcome.message for outcome in outcomes if outcome.changed)
            )
        else:
            summary = f"{operation}: every Deployment is already at the target"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=self.live_version() if outcomes else None,
            target_version=target.version or target.artifact,
            changes=changes,
        )

    def _decide(
        self, deployment: dict[str, Any], target: RollbackTarget, operation: str
    ) -> _Outcome:
        """What the operation would do to this Deployment (no writes)."""
        if operation == "undo":
            return self._decide_undo(deployment, target)[0]
        if operation == "restart":
            return self._decide_restart(deployment, target)[0]
        return self._decide_scale(deployment, target)[0]

    def _find_manifest_target(self, target: RollbackTarget) -> dict[str, Any] | None:
        try:
            return self._read_deployment(self._saved_manifest(target)["metadata"]["name"])
        except _NotFound:
            return None

    def _decide_undo(
        self, deployment: dict[str, Any], target: RollbackTarget
    ) -> tuple[_Outcome, list[dict[str, Any]] | None]:
        name = deployment["metadata"]["name"]
        container = self._container_name(deployment)
        current_template = deployment["spec"]["template"]
        current_image = _container_image(current_template, container)
        current_revision = _revision_of(deployment)
        annotations = deployment["metadata"].get("annotations") or {}
        history = self.revisions(deployment)

        chosen = self._choose_revision(deployment, history, target, container)
        if chosen is None:  # a "previous" undo this backend already made
            return (
                _Outcome(
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
            message = (
                f"{name} already runs the template of revision {chosen.number} ({target_image})"
            )
            return _Outcome(name, False, (), facts, message), None

        kept = {
            key: value for key, value in annotations.items() if key in _ANNOTATIONS_KEPT_ON_UNDO
        }
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
        resource = f"deployment/{self.namespace}/{name}"
        changes = (
            Change(resource, f"container {container} image", current_image, target_image),
            Change(
                resource, "revision", str(current_revision), f"{chosen.number} (as a new revision)"
            ),
        )
        message = (
            f"{name}: revision {current_revision} ({current_image}) → "
            f"revision {chosen.number} ({target_image})"
        )
        return _Outcome(name, True, changes, facts, message), patch

    def _choose_revision(
        self,
        deployment: Mapping[str, Any],
        history: list[Revision],
        target: RollbackTarget,
        container: str,
    ) -> Revision | None:
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
        current = _revision_of(deployment)
        earlier = [r for r in history if r.number != current]
        if not earlier:
            raise BackendError(f"{name}: no previous revision to roll back to", retryable=False)
        return earlier[-1]

    def _decide_restart(
        self, deployment: dict[str, Any], target: RollbackTarget
    ) -> tuple[_Outcome, Any]:
        name = deployment["metadata"]["name"]
        stamp = str(target.params.get("restarted_at") or _now())
        template_annotations = (deployment["spec"]["template"].get("metadata") or {}).get(
            "annotations"
        ) or {}
        before = template_annotations.get(RESTARTED_AT_ANNOTATION)
        facts = {"restarted_at": stamp, "from_revision": _revision_of(deployment)}
        if before == stamp:
            return _Outcome(
                name, False, (), facts, f"{name} was already restarted at {stamp}"
            ), None
        patch = {
            "metadata": {"resourceVersion": deployment["metadata"]["resourceVersion"]},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}},
        }
        change = Change(f"deployment/{self.namespace}/{name}", "restartedAt", before, stamp)
        return _Outcome(name, True, (change,), facts, f"{name}: restart at {stamp}"), patch

    def _decide_scale(
        self, deployment: dict[str, Any], target: RollbackTarget
    ) -> tuple[_Outcome, Any]:
        name = deployment["metadata"]["name"]
        annotations = deployment["metadata"].get("annotations") or {}
        current = int(deployment["spec"].get("replicas", 1))
        wanted_param = target.params.get("replicas")
        if wanted_param == "restore":
            recorded = annotations.get(REPLICAS_BEFORE_SCALE_ANNOTATION)
            if recorded is None:
                raise ConfigError(f"{name}: no replica count was recorded to restore")
            wanted = int(recorded)
        elif (
            isinstance(wanted_param, int)
            and not isinstance(wanted_param, bool)
            and wanted_param >= 0
        ):
            wanted = wanted_param
        else:
            raise ConfigError('scale needs params.replicas: a non-negative integer or "restore"')
        facts = {"from_replicas": current, "to_replicas": wanted}
        if current == wanted:
            return _Outcome(name, False, (), facts, f"{name} already has {wanted} replicas"), None
        change = Change(
            f"deployment/{self.namespace}/{name}", "replicas", str(current), str(wanted)
        )
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
        return _Outcome(
            name, True, (change,), facts, f"{name}: {current} → {wanted} replicas"
        ), patch

    def _decide_manifest(
        self, deployment: dict[str, Any] | None, target: RollbackTarget
    ) -> tuple[_Outcome, Any]:
        manifest = self._saved_manifest(target)
        name = manifest["metadata"]["name"]
        resource = f"deployment/{self.namespace}/{name}"
        wanted_template = manifest["spec"]["template"]
        container = self.config.get("container")
        wanted_image = _container_image(wanted_template, container)
        if deployment is None:
            change = Change(
                resource, "existence", None, f"created from the saved manifest ({wanted_image})"
            )
            return _Outcome(name, True, (change,), {"created": True}, f"{name}: recreate"), manifest
        current_image = _container_image(deployment["spec"]["template"], container)
        # Ask the server what the manifest becomes once defaulted, without writing anything.
        preview = self._call(
            f"dry-run replace deployment {self.namespace}/{name}",
            self._apps().replace_namespaced_deployment,
            name,
            self.namespace,
            _replacement(manifest, deployment),
            dry_run="All",
        )
        facts = {"from_image": current_image, "to_image": wanted_image}
        if _manifest_matches(preview, deployment):
            return _Outcome(
                name, False, (), facts, f"{name} already matches the saved manifest"
            ), None
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
        return _Outcome(
            name, True, tuple(changes), facts, f"{name}: re-apply the saved manifest"
        ), manifest

    def _saved_manifest(self, target: RollbackTarget) -> dict[str, Any]:
        manifest = target.params.get("manifest")
        if not isinstance(manifest, Mapping):
            raise ConfigError("apply_manifest needs params.manifest: a Deployment manifest (dict)")
        if manifest.get("kind") != "Deployment" or manifest.get("apiVersion") != "apps/v1":
            raise ConfigError("params.manifest must be an apps/v1 Deployment")
        name = (manifest.get("metadata") or {}).get("name")
        if not name:
            raise ConfigError("params.manifest has no metadata.name")
        if "deployment" in self.config and name != self.config["deployment"]:
            raise ConfigError(
                f"params.manifest is for {name!r}, the target is {self.config['deployment']!r}"
            )
        if not ((manifest.get("spec") or {}).get("template") or {}).get("spec"):
            raise ConfigError("params.manifest has no spec.template")
        return copy.deepcopy(dict(manifest))

    # -- applying ------------------------------------------------------------------------

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Roll back every target Deployment (in parallel); a repeat changes nothing."""
        self._observed.clear()  # what an earlier wait saw is no longer the outcome
        self._changed_at = None
        operation = _operation(target)
        if operation == "apply_manifest":
            outcomes = [self._apply_manifest(target, log)]
        else:
            if "deployment" not in self.config:
                # Surface a bad target (unknown image, revision) before any Deployment of
                # the namespace is touched.
                self._for_each(lambda d: self._decide(d, target, operation))
            outcomes = self._for_each(
                lambda d: self._apply_one(d["metadata"]["name"], target, operation, log, read=d)
            )
        changed = [outcome for outcome in outcomes if outcome.changed]
        if changed:
            self._changed_at = time.monotonic()
        if not outcomes:
            detail = f"no Deployments match in namespace {self.namespace}"
        elif changed:
            detail = (
                f"{operation}: changed {len(changed)} of {len(outcomes)} Deployment(s): "
                + "; ".join(outcome.message for outcome in changed)
            )
        else:
            detail = f"{operation}: nothing to do; " + "; ".join(
                outcome.message for outcome in outcomes
            )
        return ApplyResult(
            changed=bool(changed),
            detail=detail,
            facts={
                outcome.deployment: {**outcome.facts, "changed": outcome.changed}
                for outcome in outcomes
            },
        )

    def _apply_one(
        self,
        name: str,
        target: RollbackTarget,
        operation: str,
        log: LogLine,
        *,
        read: dict[str, Any] | None = None,
    ) -> _Outcome:
        """Decide and write for one Deployment (`read`: as just read, saving a second read),
        re-reading and retrying on 409 conflicts."""
        deciders = {
            "undo": (self._decide_undo, "application/json-patch+json"),
            "restart": (self._decide_restart, "application/strategic-merge-patch+json"),
            "scale": (self._decide_scale, "application/merge-patch+json"),
        }
        decide, content_type = deciders[operation]
        attempts = max(1, self.conflict_retries + 1)
        for attempt in range(1, attempts + 1):
            try:
                current = read if read is not None and attempt == 1 else None
                outcome, patch = decide(current or self._read_deployment(name), target)
                log(f"{self.namespace}/{outcome.message}")
                if outcome.changed:
                    self._patch(name, patch, content_type)
                return outcome
            except _Conflict as conflict:
                if attempt == attempts:
                    raise BackendError(
                        f"{name}: still conflicting after {attempts} attempts: {conflict}",
                        retryable=True,
                    ) from conflict
                log(f"{self.namespace}/{name}: changed by someone else meanwhile; re-reading")
        raise AssertionError("unreachable")

    def _patch(self, name: str, body: Any, content_type: str) -> dict[str, Any]:
        return self._call(
            f"patch deployment {self.namespace}/{name}",
            self._apps().patch_namespaced_deployment,
            name,
            self.namespace,
            body,
            _content_type=content_type,
        )

    def _apply_manifest(self, target: RollbackTarget, log: LogLine) -> _Outcome:
        manifest = self._saved_manifest(target)
        name = manifest["metadata"]["name"]
        attempts = max(1, self.conflict_retries + 1)
        for attempt in range(1, attempts + 1):
            try:
                deployment = self._find_manifest_target(target)
                outcome, _ = self._decide_manifest(deployment, target)
                log(f"{self.namespace}/{outcome.message}")
                if not outcome.changed:
                    return outcome
                if deployment is None:
                    self._call(
                        f"create deployment {self.namespace}/{name}",
                        self._apps().create_namespaced_deployment,
                        self.namespace,
                        _replacement(manifest, None, namespace=self.namespace),
                    )
                else:
                    self._call(
                        f"replace deployment {self.namespace}/{name}",
                        self._apps().replace_namespaced_deployment,
                        name,
                        self.namespace,
                        _replacement(manifest, deployment),
                    )
                return outcome
            except _Conflict as conflict:
                if attempt == attempts:
                    raise BackendError(
                        f"{name}: still conflicting after {attempts} attempts: {conflict}",
                        retryable=True,
                    ) from conflict
                log(f"{self.namespace}/{name}: changed by someone else meanwhile; re-reading")
        raise AssertionError("unreachable")

    def _for_each(self, work: Callable[[dict[str, Any]], _T]) -> list[_T]:
        """Run `work` on every target Deployment in parallel; failures are gathered."""
        deployments = self._deployments()
        if len(deployments) <= 1:
            return [work(deployment) for deployment in deployments]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(deployments))) as pool:
            futures = [(d["metadata"]["name"], pool.submit(work, d)) for d in deployments]
        results: list[_T] = []
        failures: list[tuple[str, BaseException]] = []
        for name, future in futures:
            error = future.exception()
            if error is None:
                results.append(future.result())
            else:
                failures.append((name, error))
        if not failures:
            return results
        for _, error in failures:
            if not isinstance(error, BackendError):
                raise error
        summary = f"{len(failures)} of {len(deployments)} Deployment(s) failed: " + "; ".join(
            str(error) for _, error in failures
        )
        if all(isinstance(error, ConfigError) for _, error in failures):
            raise ConfigError(summary)
        retryable = all(getattr(error, "retryable", False) for _, error in failures)
        raise BackendError(summary, retryable=retryable)

    # -- waiting and checking ------------------------------------------------------------

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Block until every target Deployment's rollout is complete (as `kubectl rollout
        status` judges it), logging progress; DeadlineExceeded at `deadline`."""
        names: list[str] = []

        def condition() -> tuple[bool, str]:
            try:
                if not names:
                    names.extend(self._target_names(target))
                deployments = [self._read_deployment(name) for name in names]
                read_at = time.monotonic()
                for name, deployment in zip(names, deployments, strict=True):
                    self._observed[name] = (read_at, deployment)
                states = [rollout_state(deployment) for deployment in deployments]
            except BackendError as error:
                if error.retryable:
                    return False, f"API error, will retry: {error}"
                raise
            if not states:
                return True, "no Deployments to wait for"
            return all(done for done, _ in states), "; ".join(message for _, message in states)

        poll_until(
            condition,
            deadline=deadline,
            log=log,
            interval=self.poll_interval,
            what=f"rollout in namespace {self.namespace}",
            since=self._changed_at,  # the rollout's clock starts at the write
        )

    def _target_names(self, target: RollbackTarget) -> list[str]:
        if _operation(target) == "apply_manifest":
            return [self._saved_manifest(target)["metadata"]["name"]]
        if "deployment" in self.config:
            return [self.config["deployment"]]
        return [deployment["metadata"]["name"] for deployment in self._deployments()]

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """Rollout complete, pods Running, no crash loops, image is the target's."""
        deployments = [self._recent_deployment(name) for name in self._target_names(target)]
        if not deployments:
            return [
                CheckResult(
                    "deployments found", CheckStatus.INCONCLUSIVE, f"none in {self.namespace}"
                )
            ]
        return [
            self._check_rollout(deployments),
            *self._check_pods(deployments, target),
            self._check_image(deployments, target),
        ]

    def _check_rollout(self, deployments: list[dict[str, Any]]) -> CheckResult:
        problems: list[str] = []
        notes: list[str] = []
        for deployment in deployments:
            try:
                done, message = rollout_state(deployment)
            except BackendError as error:
                done, message = False, str(error)
            (notes if done else problems).append(message)
        if problems:
            return CheckResult("rollout complete", CheckStatus.FAILED, "; ".join(problems))
        return CheckResult("rollout complete", CheckStatus.PASSED, "; ".join(notes))

    def _current_pods(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Pods of the ReplicaSet that runs the Deployment's current template.

        A template's ReplicaSet keeps its pod-template-hash: after an undo, the history
        this backend listed to decide it (minutes ago at most) names the ReplicaSet, and
        only the pods are read. Should they be fewer than wanted, or the template not be in
        that history, the ReplicaSets are listed afresh.
        """
        uid = deployment["metadata"]["uid"]
        seen = self._histories.get(uid)
        if seen is not None and time.monotonic() - seen[0] <= _HISTORY_REUSE_SECONDS:
            known = self._revision_running(seen[1], deployment)
            if known is not None:
                pods = self._pods_with_hash(deployment, known)
                if len(pods) >= deployment["spec"].get("replicas", 1):
                    return pods
        current = self._revision_running(self.revisions(deployment), deployment)
        return [] if current is None else self._pods_with_hash(deployment, current)

    @staticmethod
    def _revision_running(
        history: list[Revision], deployment: Mapping[str, Any]
    ) -> Revision | None:
        """The revision whose template the Deployment runs, if it has a pod-template-hash."""
        template = deployment["spec"]["template"]
        for revision in history:
            if revision.pod_template_hash and templates_equal(revision.template, template):
                return revision
        return None

    def _pods_with_hash(
        self, deployment: Mapping[str, Any], current: Revision
    ) -> list[dict[str, Any]]:
        selector = selector_string(deployment["spec"].get("selector"))
        selector = ",".join(
            filter(None, [selector, f"{POD_TEMPLATE_HASH_LABEL}={current.pod_template_hash}"])
        )
        listing = self._call(
            f"list pods of {self.namespace}/{deployment['metadata']['name']}",
            self._core().list_namespaced_pod,
            self.namespace,
            label_selector=selector,
        )
        return listing.get("items") or []

    def _check_pods(
        self, deployments: list[dict[str, Any]], target: RollbackTarget
    ) -> list[CheckResult]:
        max_restarts = int(target.params.get("max_restarts", 3))
        not_running, crash_loops, notes = [], [], []
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            wanted = deployment["spec"].get("replicas", 1)
            pods = self._current_pods(deployment)
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            if len(running) < wanted or len(running) < len(pods):
                phases = ", ".join(
                    f"{p['metadata']['name']}={(p.get('status') or {}).get('phase', 'Unknown')}"
                    for p in pods
                )
                not_running.append(
                    f"{name}: {len(running)} of {wanted} pods Running ({phases or 'no pods'})"
                )
            else:
                notes.append(f"{name}: {len(running)}/{wanted} Running")
            for pod in pods:
                for status in (pod.get("status") or {}).get("containerStatuses") or []:
                    waiting = (status.get("state") or {}).get("waiting") or {}
                    restarts = int(status.get("restartCount", 0))
                    if waiting.get("reason") == "CrashLoopBackOff" or restarts > max_restarts:
                        crash_loops.append(
                            f"{pod['metadata']['name']}/{status.get('name')}: "
                            f"{waiting.get('reason') or 'restarting'}, {restarts} restarts"
                        )
        return [
            CheckResult(
                "pods running",
                CheckStatus.FAILED if not_running else CheckStatus.PASSED,
                "; ".join(not_running or notes),
            ),
            CheckResult(
                "no crash loops",
                CheckStatus.FAILED if crash_loops else CheckStatus.PASSED,
                "; ".join(crash_loops)
                if crash_loops
                else f"no container restarted more than {max_restarts} times",
            ),
        ]

    def _check_image(
        self, deployments: list[dict[str, Any]], target: RollbackTarget
    ) -> CheckResult:
        operation = _operation(target)
        expected: str | None = target.artifact
        if operation == "apply_manifest":
            manifest = self._saved_manifest(target)
            expected = _container_image(manifest["spec"]["template"], self.config.get("container"))
        mismatches, notes = [], []
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            live = _container_image(
                deployment["spec"]["template"], self._container_name(deployment)
            )
            if expected is not None:
                if live == expected:
                    notes.append(f"{name}: {live}")
                else:
                    mismatches.append(f"{name}: runs {live}, expected {expected}")
                continue
            if operation != "undo":
                return CheckResult(
                    "image matches target", CheckStatus.INCONCLUSIVE, "no target image given"
                )
            # An undo without an image: the live template must be the one this undo chose.
            annotations = deployment["metadata"].get("annotations") or {}
            recorded = annotations.get(ROLLBACK_TARGET_ANNOTATION)
            if recorded == template_fingerprint(deployment["spec"]["template"]):
                notes.append(f"{name}: {live} (the rolled-back revision)")
            else:
                mismatches.append(f"{name}: runs {live}, not the revision the undo chose")
        if mismatches:
            return CheckResult("image matches target", CheckStatus.FAILED, "; ".join(mismatches))
        return CheckResult("image matches target", CheckStatus.PASSED, "; ".join(notes))


def _operation(target: RollbackTarget) -> str:
    operation = str(target.params.get("operation", "undo"))
    if operation not in _OPERATIONS:
        raise ConfigError(
            f"unknown operation {operation!r}; expected one of {', '.join(_OPERATIONS)}"
        )
    return operation


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replacement(
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


def _manifest_matches(preview: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    def comparable(obj: Mapping[str, Any]) -> Any:
        metadata = obj.get("metadata") or {}
        return _prune_empty(
            {
                "spec": obj.get("spec"),
                "labels": metadata.get("labels"),
                "annotations": metadata.get("annotations"),
            }
        )

    return bool(comparable(preview) == comparable(live))


def _api_error(what: str, error: ApiException) -> BackendError:
    status = int(error.status or 0)
    message = error.reason or "error"
    try:
        body = json.loads(error.body or "{}")
        message = body.get("message") or message
    except (TypeError, ValueError):
        pass
    text = f"{what}: HTTP {status}: {message}"
    if status == 409:
        return _Conflict(text)
    if status == 404:
        return _NotFound(text)
    if status == 429 or status >= 500 or status in (0, 408):
        return BackendError(text, retryable=True)
    return BackendError(text, retryable=False)
