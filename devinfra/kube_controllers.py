"""A simulation of the kube-controller-manager parts a rollback exercises.

Deployment controller: on a Deployment create or pod-template change it finds or makes
the ReplicaSet for the template (named `<deployment>-<template hash>`, owned by the
Deployment, `deployment.kubernetes.io/revision` = next revision); a template equal to an
older ReplicaSet's (hash ignoring null and empty values) reuses that ReplicaSet and moves
it to the next revision, as the real controller does for `kubectl rollout undo`. The
rollout then progresses in two timed steps (`status_delay` apart in total): new pods
appear and the status observes the generation, then the old ReplicaSets scale to zero
and the status reports every replica updated and available. Pods whose image is listed
as crash-looping (or whose Deployment or pod template carries CRASH_LOOP_ANNOTATION)
never become ready: their restart count grows, the container waits in CrashLoopBackOff,
the old ReplicaSet keeps its pods and the rollout never completes (until the progress
deadline marks it failed).

ReplicaSet controller: keeps each ReplicaSet's pods at its `spec.replicas`, replacing
deleted pods. Garbage collection of owned objects is done by the API layer.

Everything here runs on the stand-in's event loop thread, synchronously between awaits,
so no locking is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devinfra.kube_objects import (
    ANNOTATIONS_NOT_COPIED,
    CRASH_LOOP_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    ObjectStore,
    Reader,
    Scheduler,
    compact_counts,
    comparable_template,
    controller_reference,
    is_owned_by,
    now_rfc3339,
    revision_of,
    template_hash,
)
from devinfra.kube_pods import new_pod, pod_conditions, pod_ready, restart_crashing_containers
from executors.json_docs import json_copy


@dataclass
class _Rollout:
    """A rollout in progress for one Deployment generation."""

    generation: int
    started: float
    finished_step: int = 0


@dataclass
class WorkloadControllers:
    """Deployment and ReplicaSet controllers acting on an ObjectStore."""

    store: ObjectStore
    schedule: Scheduler
    clock: Callable[[], float]
    status_delay: float = 0.2
    crash_loop_images: set[str] = field(default_factory=set)
    _rollouts: dict[tuple[str, str], _Rollout] = field(default_factory=dict)

    # -- hooks called by the API layer after a client's write -----------------------------

    def deployment_written(self, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
        """A client created or changed a Deployment: roll out when its spec changed."""
        old_generation = ((old or {}).get("metadata") or {}).get("generation", 0)
        if new["metadata"].get("generation", 1) == old_generation:
            return
        namespace, name = new["metadata"]["namespace"], new["metadata"]["name"]
        self._sync_replica_set_for_template(namespace, name)
        self._start_rollout(namespace, name)

    def object_deleted(self, plural: str, obj: Mapping[str, Any]) -> None:
        """A client deleted an object: replace deleted pods, forget deleted Deployments."""
        namespace = obj["metadata"].get("namespace")
        if plural == "deployments":
            self._rollouts.pop((namespace, obj["metadata"]["name"]), None)
            return
        if plural != "pods":
            return
        for reference in obj["metadata"].get("ownerReferences") or []:
            if reference.get("kind") != "ReplicaSet":
                continue
            replica_set = self.store.get_object("replicasets", namespace, reference["name"])
            if replica_set is not None and replica_set["metadata"]["uid"] == reference.get("uid"):
                self._sync_pods(replica_set)
                deployment = self._owner_deployment(replica_set)
                if deployment is not None:
                    self._refresh_status(deployment)

    def settle(self, namespace: str, name: str) -> None:
        """Finish the Deployment's rollout now, skipping the simulated delay (for seeding)."""
        rollout = self._rollouts.get((namespace, name))
        if rollout is None:
            return
        if rollout.finished_step < 1:
            self._rollout_step(namespace, name, rollout, 1)
        if rollout.finished_step < 2:
            self._rollout_step(namespace, name, rollout, 2)

    def tick(self) -> None:
        """Advance time-driven state: crash-looping restarts and progress deadlines."""
        touched: dict[str, Mapping[str, Any]] = {}
        # Most ReplicaSets do not crash: judge them as stored, and copy only the pods of
        # those that do.
        for seen in self.store.peek_objects("replicasets"):
            crashing = self._crashing_containers(seen, read=self.store.peek_object)
            if not crashing:
                continue
            for pod in self._pods_of(seen):
                if restart_crashing_containers(pod, crashing):
                    self.store.put_object("pods", pod)
                    touched[seen["metadata"]["uid"]] = seen
        for crashed in touched.values():
            replica_set = self._reread("replicasets", crashed)
            if replica_set is None:
                continue
            self._refresh_replica_set_status(replica_set)
            deployment = self._owner_deployment(replica_set)
            if deployment is not None:
                self._refresh_status(deployment)
        for (namespace, name), rollout in list(self._rollouts.items()):
            deployment = self.store.get_object("deployments", namespace, name)
            if deployment is None or rollout.finished_step < 2:
                continue
            deadline = deployment["spec"].get("progressDeadlineSeconds", 600)
            if self.clock() - rollout.started >= deadline:
                self._mark_deadline_exceeded(deployment)

    # -- deployment controller --------------------------------------------------------------

    def owned_replica_sets(
        self, deployment: Mapping[str, Any], *, copies: bool = True
    ) -> list[dict[str, Any]]:
        """The ReplicaSets the Deployment controls, oldest revision first (`copies=False`:
        as stored, to read only)."""
        namespace = deployment["metadata"]["namespace"]
        read = self.store.list_objects if copies else self.store.peek_objects
        owned = [
            replica_set
            for replica_set in read("replicasets", namespace)
            if is_owned_by(replica_set, deployment)
        ]
        return sorted(owned, key=revision_of)

    def _current_replica_set(self, deployment: Mapping[str, Any]) -> dict[str, Any] | None:
        template = comparable_template(deployment["spec"]["template"])
        for replica_set in self.owned_replica_sets(deployment, copies=False):
            if comparable_template(replica_set["spec"]["template"]) == template:
                return json_copy(replica_set)
        return None

    def _sync_replica_set_for_template(self, namespace: str, name: str) -> None:
        deployment = self.store.get_object("deployments", namespace, name)
        if deployment is None:
            return
        owned = self.owned_replica_sets(deployment)
        newest_revision = max((revision_of(rs) for rs in owned), default=0)
        current = self._current_replica_set(deployment)
        copied = {
            key: value
            for key, value in (deployment["metadata"].get("annotations") or {}).items()
            if key not in ANNOTATIONS_NOT_COPIED
        }
        desired = deployment["spec"].get("replicas", 1)
        if current is None:
            revision = newest_revision + 1
            current = self._new_replica_set(deployment, revision, copied)
        elif revision_of(current) != newest_revision:
            # An older template came back (rollout undo): that ReplicaSet becomes the newest
            # revision and remembers the revisions it held before.
            revision = newest_revision + 1
            annotations = current["metadata"].setdefault("annotations", {})
            history = [h for h in annotations.get(REVISION_HISTORY_ANNOTATION, "").split(",") if h]
            history.append(str(revision_of(current)))
            annotations.update(copied)
            annotations[REVISION_HISTORY_ANNOTATION] = ",".join(history)
            annotations[REVISION_ANNOTATION] = str(revision)
            annotations[DESIRED_REPLICAS_ANNOTATION] = str(desired)
            current = self.store.put_object("replicasets", current)
        else:
            revision = newest_revision
            annotations = current["metadata"].setdefault("annotations", {})
            if any(annotations.get(key) != value for key, value in copied.items()):
                annotations.update(copied)
                current = self.store.put_object("replicasets", current)

        deployment_annotations = deployment["metadata"].setdefault("annotations", {})
        if deployment_annotations.get(REVISION_ANNOTATION) != str(revision):
            deployment_annotations[REVISION_ANNOTATION] = str(revision)
            self.store.put_object("deployments", deployment)

    def _new_replica_set(
        self, deployment: Mapping[str, Any], revision: int, annotations: Mapping[str, str]
    ) -> dict[str, Any]:
        metadata = deployment["metadata"]
        pod_hash = template_hash(deployment["spec"]["template"])
        template = json_copy(deployment["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH_LABEL] = (
            pod_hash
        )
        selector = json_copy(deployment["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH_LABEL] = pod_hash
        desired = deployment["spec"].get("replicas", 1)
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{metadata['name']}-{pod_hash}",
                "namespace": metadata["namespace"],
                "labels": json_copy(template["metadata"]["labels"]),
                "annotations": {
                    **annotations,
                    REVISION_ANNOTATION: str(revision),
                    DESIRED_REPLICAS_ANNOTATION: str(desired),
                    MAX_REPLICAS_ANNOTATION: str(desired + 1),
                },
                "ownerReferences": [controller_reference(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        return self.store.put_object("replicasets", replica_set)

    def _start_rollout(self, namespace: str, name: str) -> None:
        deployment = self.store.get_object("deployments", namespace, name)
        if deployment is None:
            return
        rollout = _Rollout(generation=deployment["metadata"]["generation"], started=self.clock())
        self._rollouts[(namespace, name)] = rollout
        half = max(self.status_delay / 2, 0.0)
        self.schedule(half, lambda: self._rollout_step(namespace, name, rollout, 1))
        self.schedule(self.status_delay, lambda: self._rollout_step(namespace, name, rollout, 2))

    def _rollout_step(self, namespace: str, name: str, rollout: _Rollout, step: int) -> None:
        if self._rollouts.get((namespace, name)) is not rollout or rollout.finished_step >= step:
            return  # superseded by a newer generation, or already done by settle()
        deployment = self.store.get_object("deployments", namespace, name)
        if deployment is None or deployment["metadata"].get("generation") != rollout.generation:
            return
        current = self._current_replica_set(deployment)
        if current is None:
            return
        desired = deployment["spec"].get("replicas", 1)
        if step == 1:
            # New pods are created beside the old ones (still starting); the controller
            # has observed the generation.
            self._scale_replica_set(current, desired, started=False)
        else:
            self._scale_replica_set(current, desired, started=True)
            self._start_pods(current)
            if self._replica_set_healthy(current):
                for replica_set in self.owned_replica_sets(deployment, copies=False):
                    if replica_set["metadata"]["uid"] != current["metadata"]["uid"]:
                        self._scale_replica_set(replica_set, 0)
                self._rollouts.pop((namespace, name), None)
                self._prune_history(deployment)
        rollout.finished_step = step
        deployment = self.store.get_object("deployments", namespace, name)
        if deployment is not None:
            self._refresh_status(deployment, observed=True)

    def _replica_set_healthy(self, replica_set: Mapping[str, Any]) -> bool:
        return all(pod_ready(pod) for pod in self._pods_of(replica_set, copies=False))

    def _prune_history(self, deployment: Mapping[str, Any]) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        idle = [
            rs
            for rs in self.owned_replica_sets(deployment, copies=False)
            if not rs["spec"].get("replicas")
        ]
        current = self._current_replica_set(deployment)
        idle = [
            rs
            for rs in idle
            if current is None or rs["metadata"]["uid"] != current["metadata"]["uid"]
        ]
        for replica_set in idle[: max(0, len(idle) - limit)]:
            for pod in self._pods_of(replica_set, copies=False):
                self.store.remove_object(
                    "pods", pod["metadata"]["namespace"], pod["metadata"]["name"]
                )
            self.store.remove_object(
                "replicasets", replica_set["metadata"]["namespace"], replica_set["metadata"]["name"]
            )

    def _refresh_status(self, seen: Mapping[str, Any], *, observed: bool = False) -> None:
        deployment = self._reread("deployments", seen)
        if deployment is None:
            return
        replica_sets = self.owned_replica_sets(deployment, copies=False)
        current = self._current_replica_set(deployment)
        desired = deployment["spec"].get("replicas", 1)
        total = ready = updated = 0
        for replica_set in replica_sets:
            pods = self._pods_of(replica_set, copies=False)
            total += len(pods)
            ready += sum(1 for pod in pods if pod_ready(pod))
            if current is not None and replica_set["metadata"]["uid"] == current["metadata"]["uid"]:
                updated = len(pods)
        old_status = deployment.get("status") or {}
        generation = deployment["metadata"].get("generation", 1)
        observed_generation = generation if observed else old_status.get("observedGeneration")
        rolling = (deployment["metadata"]["namespace"], deployment["metadata"]["name"]) in (
            self._rollouts
        )
        now = now_rfc3339()
        conditions = {c["type"]: c for c in old_status.get("conditions") or []}
        available = ready >= max(desired - _max_unavailable(deployment), 0)
        conditions["Available"] = _condition(
            conditions.get("Available"),
            "Available",
            available,
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
            now,
        )
        current_name = current["metadata"]["name"] if current else deployment["metadata"]["name"]
        progressing = conditions.get("Progressing")
        if not (
            progressing and progressing.get("reason") == "ProgressDeadlineExceeded" and rolling
        ):
            reason = "ReplicaSetUpdated" if rolling else "NewReplicaSetAvailable"
            message = (
                f'ReplicaSet "{current_name}" is progressing.'
                if rolling
                else f'ReplicaSet "{current_name}" has successfully progressed.'
            )
            conditions["Progressing"] = _condition(
                progressing, "Progressing", True, reason, message, now
            )
        deployment["status"] = {
            **compact_counts(
                {
                    "observedGeneration": observed_generation,
                    "replicas": total,
                    "updatedReplicas": updated,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "unavailableReplicas": max(desired, total) - ready if total else 0,
                }
            ),
            "conditions": [conditions["Available"], conditions["Progressing"]],
        }
        if deployment["status"] != old_status:
            self.store.put_object("deployments", deployment)

    def _mark_deadline_exceeded(self, deployment: dict[str, Any]) -> None:
        status = deployment.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Progressing"]
        current = self._current_replica_set(deployment)
        name = current["metadata"]["name"] if current else deployment["metadata"]["name"]
        if any(
            c.get("reason") == "ProgressDeadlineExceeded" for c in status.get("conditions") or []
        ):
            return
        now = now_rfc3339()
        conditions.append(
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{name}" has timed out progressing.',
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
        )
        status["conditions"] = conditions
        self.store.put_object("deployments", deployment)

    def _owner_deployment(
        self, replica_set: Mapping[str, Any], *, read: Reader | None = None
    ) -> dict[str, Any] | None:
        read = read or self.store.get_object
        for reference in replica_set["metadata"].get("ownerReferences") or []:
            if reference.get("kind") == "Deployment":
                deployment = read(
                    "deployments", replica_set["metadata"]["namespace"], reference["name"]
                )
                if deployment is not None and deployment["metadata"]["uid"] == reference.get("uid"):
                    return deployment
        return None

    def _reread(self, plural: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored version of `obj` (writes replace whole objects: never write a stale copy)."""
        metadata = obj["metadata"]
        fresh = self.store.get_object(plural, metadata.get("namespace"), metadata["name"])
        if fresh is None or fresh["metadata"].get("uid") != metadata.get("uid"):
            return None
        return fresh

    # -- replica set controller and pods ----------------------------------------------------

    def _scale_replica_set(
        self, seen: Mapping[str, Any], replicas: int, *, started: bool = True
    ) -> None:
        replica_set = self._reread("replicasets", seen)
        if replica_set is None:
            return
        annotations = replica_set["metadata"].setdefault("annotations", {})
        if replica_set["spec"].get("replicas") != replicas:
            replica_set["spec"]["replicas"] = replicas
            if replicas:
                annotations[DESIRED_REPLICAS_ANNOTATION] = str(replicas)
                annotations[MAX_REPLICAS_ANNOTATION] = str(replicas + 1)
            replica_set["metadata"]["generation"] = replica_set["metadata"].get("generation", 1) + 1
            replica_set = self.store.put_object("replicasets", replica_set)
        self._sync_pods(replica_set, started=started)

    def _pods_of(
        self, replica_set: Mapping[str, Any], *, copies: bool = True
    ) -> list[dict[str, Any]]:
        """The ReplicaSet's pods (`copies=False`: as stored, to read only)."""
        read = self.store.list_objects if copies else self.store.peek_objects
        return [
            pod
            for pod in read("pods", replica_set["metadata"]["namespace"])
            if is_owned_by(pod, replica_set)
        ]

    def _sync_pods(self, replica_set: Mapping[str, Any], *, started: bool = True) -> None:
        pods = self._pods_of(replica_set, copies=False)
        wanted = replica_set["spec"].get("replicas", 0)
        for pod in pods[wanted:]:
            self.store.remove_object("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        for _ in range(wanted - len(pods)):
            self.store.put_object(
                "pods",
                new_pod(
                    replica_set,
                    crashing=self._crashing_containers(replica_set),
                    started=started,
                ),
            )
        self._refresh_replica_set_status(replica_set)

    def _start_pods(self, replica_set: Mapping[str, Any]) -> None:
        """Starting containers that do not crash become running and ready."""
        crashing = self._crashing_containers(replica_set)
        for pod in self._pods_of(replica_set):
            changed = False
            for status in pod["status"].get("containerStatuses") or []:
                if status["name"] in crashing or status.get("ready"):
                    continue
                status |= {
                    "ready": True,
                    "started": True,
                    "state": {"running": {"startedAt": now_rfc3339()}},
                }
                changed = True
            if changed:
                pod["status"]["conditions"] = pod_conditions(
                    pod["status"]["containerStatuses"], pod["status"].get("startTime")
                )
                self.store.put_object("pods", pod)
        self._refresh_replica_set_status(replica_set)

    def _refresh_replica_set_status(self, seen: Mapping[str, Any]) -> None:
        replica_set = self._reread("replicasets", seen)
        if replica_set is None:
            return
        pods = self._pods_of(replica_set, copies=False)
        ready = sum(1 for pod in pods if pod_ready(pod))
        status = {
            "replicas": len(pods),
            **compact_counts(
                {
                    "fullyLabeledReplicas": len(pods),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": replica_set["metadata"].get("generation", 1),
                }
            ),
        }
        if replica_set.get("status") != status:
            replica_set["status"] = status
            self.store.put_object("replicasets", replica_set)

    def _crashing_containers(
        self, replica_set: Mapping[str, Any], *, read: Reader | None = None
    ) -> set[str]:
        template = replica_set["spec"]["template"]
        containers = (template.get("spec") or {}).get("containers") or []
        flagged = ((template.get("metadata") or {}).get("annotations") or {}).get(
            CRASH_LOOP_ANNOTATION
        ) == "true"
        deployment = self._owner_deployment(replica_set, read=read)
        if deployment is not None:
            annotations = deployment["metadata"].get("annotations") or {}
            flagged = flagged or annotations.get(CRASH_LOOP_ANNOTATION) == "true"
        return {
            container["name"]
            for container in containers
            if flagged or container.get("image") in self.crash_loop_images
        }

    def _owner_replica_set(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        for reference in pod["metadata"].get("ownerReferences") or []:
            if reference.get("kind") == "ReplicaSet":
                replica_set = self.store.get_object(
                    "replicasets", pod["metadata"]["namespace"], reference["name"]
                )
                if replica_set is not None and replica_set["metadata"]["uid"] == reference.get(
                    "uid"
                ):
                    return replica_set
        return None


def _max_unavailable(deployment: Mapping[str, Any]) -> int:
    desired = deployment["spec"].get("replicas", 1)
    rolling = ((deployment["spec"].get("strategy") or {}).get("rollingUpdate")) or {}
    value = rolling.get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return int(desired * int(value[:-1]) / 100)
    return int(value)


def _condition(
    previous: Mapping[str, Any] | None,
    kind: str,
    healthy: bool,
    reason: str,
    message: str,
    now: str,
) -> dict[str, Any]:
    status = "True" if healthy else "False"
    transition = (
        previous.get("lastTransitionTime", now)
        if previous is not None and previous.get("status") == status
        else now
    )
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
