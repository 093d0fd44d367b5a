"""The Kubernetes Deployment backend: reads, writes, waits and checks (see the package's
docstring for the operations and targets)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client as kube_client

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LiveChange,
    LiveOption,
    LogLine,
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.kubernetes import rollout
from executors.kubernetes.changes import template_change
from executors.kubernetes.client import (
    ConflictError,
    NotFoundError,
    api_json,
    shared_kube_api_client,
)
from executors.kubernetes.manifests import decide_manifest, replacement, saved_manifest
from executors.kubernetes.operations import Outcome, decide_restart, decide_scale, operation_of
from executors.kubernetes.revisions import Revision, decide_undo, revision_running, rollout_history
from executors.kubernetes.step_options import (
    NAMESPACE_OPTIONS,
    SINGLE_DEPLOYMENT_OPTIONS,
    manifest_backup,
    revision_choices,
)
from executors.kubernetes.templates import (
    POD_TEMPLATE_HASH_LABEL,
    container_image,
    container_name,
    selector_string,
)
from executors.options import restart_stamp

_OBSERVATION_REUSE_SECONDS = 1.0
# How long the rollout history a backend listed may name the ReplicaSet whose pods the
# checks read (a template's ReplicaSet keeps its hash; the pods are always read afresh).
_HISTORY_REUSE_SECONDS = 900.0
# The patch each operation writes; apply_manifest replaces the Deployment instead.
_PATCH_TYPES = {
    "undo": "application/json-patch+json",
    "restart": "application/strategic-merge-patch+json",
    "scale": "application/merge-patch+json",
}
_T = TypeVar("_T")


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
        return api_json(what, method, *args, request_timeout=self.request_timeout, **kwargs)

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
        return container_name(deployment, self.config.get("container"))

    def revisions(self, deployment: Mapping[str, Any]) -> list[Revision]:
        """The Deployment's rollout history, oldest first (what `rollout history` lists)."""
        uid = deployment["metadata"]["uid"]
        listing = self._call(
            f"list replicasets of {self.namespace}/{deployment['metadata']['name']}",
            self._apps().list_namespaced_replica_set,
            self.namespace,
            label_selector=selector_string(deployment["spec"].get("selector")) or None,
        )
        history = rollout_history(listing.get("items") or [], uid)
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
            return container_image(deployment["spec"]["template"], self._container_name(deployment))
        pairs = []
        for deployment in deployments:
            image = container_image(
                deployment["spec"]["template"], self._container_name(deployment)
            )
            pairs.append(f"{deployment['metadata']['name']}={image}")
        return ", ".join(pairs)

    def live_change(self) -> LiveChange | None:
        """Who last changed the Deployment's pod template (changes.template_change)."""
        if "deployment" not in self.config:
            return None
        return template_change(self._read_deployment(self.config["deployment"]))

    # -- step options --------------------------------------------------------------------

    def option_fields(self) -> tuple[Option, ...]:
        """Undo to a revision and re-apply a manifest name one Deployment; a namespace
        target takes the operations that apply to each of its Deployments alike."""
        return SINGLE_DEPLOYMENT_OPTIONS if "deployment" in self.config else NAMESPACE_OPTIONS

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, and a restart gets its stamp when drafted."""
        cleaned = super().validate_params(params, live=live)
        if cleaned.get("operation") == "restart" and not cleaned.get("restarted_at"):
            cleaned["restarted_at"] = restart_stamp()
        return cleaned

    def live_options(self) -> dict[str, LiveOption]:
        """The rollout history to undo to, read now (one Deployment only)."""
        if "deployment" not in self.config:
            return {}
        deployment = self._read_deployment(self.config["deployment"])
        history = self.revisions(deployment)
        return {"to_revision": revision_choices(deployment, history, self.config.get("container"))}

    def describe_backup(self, key: str, content: Any) -> str:
        template = (
            ((content or {}).get("spec") or {}).get("template") if key == "manifest" else None
        )
        return (
            str(container_image(template, self.config.get("container")) or "") if template else ""
        )

    def capture_backup(self) -> dict[str, Any]:
        """The Deployment's manifest as it stands (one Deployment only)."""
        if "deployment" not in self.config:
            return {}
        return {"manifest": manifest_backup(self._read_deployment(self.config["deployment"]))}

    # -- planning ------------------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Describe, per Deployment, what apply would change; reads only."""
        operation = operation_of(target)
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
    ) -> Outcome:
        """What the operation would do to this Deployment (no writes)."""
        return self._decide_patch(deployment, target, operation)[0]

    def _decide_patch(
        self, deployment: dict[str, Any], target: RollbackTarget, operation: str
    ) -> tuple[Outcome, Any]:
        """What the operation would do to this Deployment, and the patch that does it."""
        if operation == "undo":
            return self._decide_undo(deployment, target)
        if operation == "restart":
            return decide_restart(deployment, target, namespace=self.namespace)
        return decide_scale(deployment, target, namespace=self.namespace)

    def _find_manifest_target(self, target: RollbackTarget) -> dict[str, Any] | None:
        try:
            return self._read_deployment(self._saved_manifest(target)["metadata"]["name"])
        except NotFoundError:
            return None

    def _decide_undo(
        self, deployment: dict[str, Any], target: RollbackTarget
    ) -> tuple[Outcome, list[dict[str, Any]] | None]:
        container = self._container_name(deployment)
        history = self.revisions(deployment)
        return decide_undo(
            deployment, history, target, namespace=self.namespace, container=container
        )

    def _decide_manifest(
        self, deployment: dict[str, Any] | None, target: RollbackTarget
    ) -> tuple[Outcome, Any]:
        manifest = self._saved_manifest(target)
        name = manifest["metadata"]["name"]

        def dry_run(body: dict[str, Any]) -> dict[str, Any]:
            # What the server makes of the replacement once defaulted; nothing is written.
            return self._call(
                f"dry-run replace deployment {self.namespace}/{name}",
                self._apps().replace_namespaced_deployment,
                name,
                self.namespace,
                body,
                dry_run="All",
            )

        return decide_manifest(
            manifest,
            deployment,
            namespace=self.namespace,
            container=self.config.get("container"),
            dry_run=dry_run,
        )

    def _saved_manifest(self, target: RollbackTarget) -> dict[str, Any]:
        return saved_manifest(target, deployment=self.config.get("deployment"))

    # -- applying ------------------------------------------------------------------------

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Roll back every target Deployment (in parallel); a repeat changes nothing."""
        self._observed.clear()  # what an earlier wait saw is no longer the outcome
        self._changed_at = None
        operation = operation_of(target)
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
    ) -> Outcome:
        """Decide and write for one Deployment (`read`: as just read, saving a second read),
        re-reading and retrying on 409 conflicts."""
        content_type = _PATCH_TYPES[operation]
        attempts = max(1, self.conflict_retries + 1)
        for attempt in range(1, attempts + 1):
            try:
                current = read if read is not None and attempt == 1 else None
                outcome, patch = self._decide_patch(
                    current or self._read_deployment(name), target, operation
                )
                log(f"{self.namespace}/{outcome.message}")
                if outcome.changed:
                    self._patch(name, patch, content_type)
                return outcome
            except ConflictError as conflict:
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

    def _apply_manifest(self, target: RollbackTarget, log: LogLine) -> Outcome:
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
                        replacement(manifest, None, namespace=self.namespace),
                    )
                else:
                    self._call(
                        f"replace deployment {self.namespace}/{name}",
                        self._apps().replace_namespaced_deployment,
                        name,
                        self.namespace,
                        replacement(manifest, deployment),
                    )
                return outcome
            except ConflictError as conflict:
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
                since = rollout.rollout_since(target)
                states = [rollout.rollout_state(d, since=since) for d in deployments]
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
        if operation_of(target) == "apply_manifest":
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
            rollout.check_rollout(deployments, since=rollout.rollout_since(target)),
            *self._check_pods(deployments, target),
            self._check_image(deployments, target),
        ]

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
            known = revision_running(seen[1], deployment)
            if known is not None:
                pods = self._pods_with_hash(deployment, known)
                if len(pods) >= deployment["spec"].get("replicas", 1):
                    return pods
        current = revision_running(self.revisions(deployment), deployment)
        return [] if current is None else self._pods_with_hash(deployment, current)

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
        pods_of = [(deployment, self._current_pods(deployment)) for deployment in deployments]
        return rollout.check_pods(pods_of, max_restarts=max_restarts)

    def _check_image(
        self, deployments: list[dict[str, Any]], target: RollbackTarget
    ) -> CheckResult:
        operation = operation_of(target)
        expected: str | None = target.artifact
        if operation == "apply_manifest":
            manifest = self._saved_manifest(target)
            expected = container_image(manifest["spec"]["template"], self.config.get("container"))
        return rollout.check_image(
            deployments,
            operation=operation,
            expected=expected,
            container=self.config.get("container"),
        )
