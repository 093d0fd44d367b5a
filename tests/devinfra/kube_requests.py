"""Raw HTTP helpers for the Kubernetes stand-in's tests: a seeded `shop/web` Deployment,
reads and patches by path, and waiting for its rollout."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

from devinfra.kube_standin import KubeStandinHandle

DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
REPLICASETS = "/apis/apps/v1/namespaces/shop/replicasets"
PODS = "/api/v1/namespaces/shop/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def seed_web(standin: KubeStandinHandle, images: list[str] | None = None, **extra: Any) -> None:
    standin.seed(
        [{"namespace": "shop", "name": "web", "images": images or ["web:1", "web:2"], **extra}]
    )


def get(standin: KubeStandinHandle, path: str, **params: Any) -> dict[str, Any]:
    response = requests.get(standin.url + path, params=params, timeout=5)
    response.raise_for_status()
    return response.json()


def patch(standin: KubeStandinHandle, path: str, body: Any, headers=MERGE) -> requests.Response:
    return requests.patch(standin.url + path, data=json.dumps(body), headers=headers, timeout=5)


def set_image(standin: KubeStandinHandle, image: str) -> dict[str, Any]:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    response = patch(standin, f"{DEPLOYMENTS}/web", body, STRATEGIC)
    response.raise_for_status()
    return response.json()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def revisions(standin: KubeStandinHandle) -> dict[str, str]:
    """ReplicaSet name → revision annotation."""
    return {
        rs["metadata"]["name"]: rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        for rs in standin.list("replicasets", "shop")
    }


def rollout_complete(standin: KubeStandinHandle) -> bool:
    deployment = standin.get("deployments", "shop", "web") or {}
    status = deployment.get("status", {})
    return status.get("observedGeneration") == deployment["metadata"]["generation"] and status.get(
        "updatedReplicas"
    ) == status.get("replicas") == status.get("availableReplicas")
