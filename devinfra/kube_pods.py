"""Pods as the stand-in's ReplicaSet controller makes and restarts them: container
statuses, Ready conditions, and crash-looping containers in CrashLoopBackOff."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from devinfra.kube_objects import NODE_NAME, controller_reference, now_rfc3339, random_suffix
from executors.json_docs import json_copy


def new_pod(replica_set: Mapping[str, Any], *, crashing: set[str], started: bool) -> dict[str, Any]:
    """A new pod of `replica_set`: running and ready when `started`, except the containers
    named in `crashing`, which wait."""
    template = json_copy(replica_set["spec"]["template"])
    metadata = template.get("metadata") or {}
    spec = template.get("spec") or {}
    now = now_rfc3339()
    statuses = []
    for container in spec.get("containers") or []:
        digest = hashlib.sha256(str(container.get("image")).encode()).hexdigest()
        running = started and container["name"] not in crashing
        statuses.append(
            {
                "name": container["name"],
                "image": container.get("image"),
                "imageID": f"{container.get('image')}@sha256:{digest}",
                "containerID": f"containerd://{secrets.token_hex(32)}",
                "restartCount": 0,
                "ready": running,
                "started": running,
                "state": {"running": {"startedAt": now}}
                if running
                else {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
            }
        )
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{replica_set['metadata']['name']}-{random_suffix()}",
            "namespace": replica_set["metadata"]["namespace"],
            "labels": json_copy(metadata.get("labels") or {}),
            "annotations": json_copy(metadata.get("annotations") or {}),
            "ownerReferences": [controller_reference(replica_set)],
        },
        "spec": {**spec, "nodeName": NODE_NAME},
        "status": {
            "phase": "Running",
            "conditions": pod_conditions(statuses, now),
            "hostIP": "10.0.0.10",
            "podIP": f"10.244.0.{secrets.randbelow(250) + 2}",
            "startTime": now,
            "containerStatuses": statuses,
        },
    }
    if not pod["metadata"]["annotations"]:
        del pod["metadata"]["annotations"]
    return pod


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in (pod.get("status") or {}).get("conditions") or []
    )


def restart_crashing_containers(pod: dict[str, Any], crashing: set[str]) -> bool:
    changed = False
    now = now_rfc3339()
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status["name"] not in crashing:
            continue
        status["restartCount"] = status.get("restartCount", 0) + 1
        backoff = min(10 * 2 ** (status["restartCount"] - 1), 300)
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": (
                    f"back-off {backoff}s restarting failed container={status['name']}"
                    f" pod={pod['metadata']['name']}"
                ),
            }
        }
        status["lastState"] = {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": now,
                "finishedAt": now,
                "containerID": status.get("containerID"),
            }
        }
        status["ready"] = status["started"] = False
        changed = True
    if changed:
        pod["status"]["conditions"] = pod_conditions(
            pod["status"]["containerStatuses"], pod["status"].get("startTime")
        )
    return changed


def pod_conditions(statuses: list[dict[str, Any]], since: str | None) -> list[dict[str, Any]]:
    now = since or now_rfc3339()
    unready = sorted(status["name"] for status in statuses if not status.get("ready"))
    ready = "False" if unready else "True"
    conditions: list[dict[str, Any]] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
        {"type": "Ready", "status": ready, "lastTransitionTime": now},
    ]
    if unready:
        for condition in conditions[2:]:
            condition["reason"] = "ContainersNotReady"
            condition["message"] = f"containers with unready status: [{' '.join(unready)}]"
    return conditions
