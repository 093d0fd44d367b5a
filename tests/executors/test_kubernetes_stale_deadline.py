"""A Deployment that crash-looped past its progress deadline keeps the TimedOut condition
until the new rollout makes progress. A rollback judges the condition of its own rollout, as
`kubectl rollout status` does once the rollout moves: a ProgressDeadlineExceeded set before the
rollback began is stale, and the rollback waits for its own rollout instead of failing at once.
A deadline its own rollout exceeds still fails it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client as k8s

from executors.base import BackendError, RollbackTarget
from executors.kubernetes.client import shared_kube_api_client
from executors.kubernetes.rollout import rollout_state
from tests.executors.test_kubernetes import WEB_IMAGES, backend, seed_web, web

BAD = "registry.example.com/shop/web:v1.3.0-crashing"


def timed_out(standin) -> bool:
    conditions = web(standin)["status"].get("conditions") or []
    return any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions)


def patch_web(kube, spec: dict) -> None:
    api = k8s.AppsV1Api(shared_kube_api_client(kube, connect_retries=2))
    api.patch_namespaced_deployment("web", "shop", {"spec": spec})


def deploy_bad_release(kube) -> None:
    """What a pipeline does: a new image, which crash-loops, with a 1 s progress deadline."""
    container = {"name": "web", "image": BAD}
    patch_web(
        kube,
        {"progressDeadlineSeconds": 1, "template": {"spec": {"containers": [container]}}},
    )


def test_a_rollback_after_a_timed_out_rollout_waits_for_its_own_rollout(kube_standin, kube):
    seed_web(kube_standin)
    kube_standin.crash_loop_image(BAD)
    deploy_bad_release(kube)
    deadline = time.monotonic() + 10
    while not timed_out(kube_standin):
        assert time.monotonic() < deadline, "the bad rollout never timed out"
        time.sleep(0.05)
    patch_web(kube, {"progressDeadlineSeconds": 600})
    time.sleep(3.5)  # the condition is older than the clock skew the backend allows for

    since = datetime.now(UTC)
    target = RollbackTarget(artifact=WEB_IMAGES[-1], params={"rollout_since": since.isoformat()})
    rollback = backend(kube)
    assert rollback.apply(target).changed
    rollback.wait(target, deadline=time.monotonic() + 10)

    assert (
        web(kube_standin)["spec"]["template"]["spec"]["containers"][0]["image"] == (WEB_IMAGES[-1])
    )
    checks = {result.name: result.status.value for result in rollback.checks(target)}
    assert checks["rollout complete"] == "passed"


def deployment_with(reason: str, updated: datetime) -> dict:
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": "web", "generation": 4},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 4,
            "replicas": 3,
            "updatedReplicas": 1,
            "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "reason": reason, "lastUpdateTime": stamp}],
        },
    }


def test_a_deadline_exceeded_by_the_rollbacks_own_rollout_still_fails_it():
    began = datetime.now(UTC) - timedelta(minutes=11)
    stale = deployment_with("ProgressDeadlineExceeded", began - timedelta(minutes=5))
    assert rollout_state(stale, since=began) == (False, "web: 1 of 2 new replicas updated")
    own = deployment_with("ProgressDeadlineExceeded", began + timedelta(minutes=10))
    with pytest.raises(BackendError, match="exceeded its progress deadline"):
        rollout_state(own, since=began)
    with pytest.raises(BackendError, match="exceeded its progress deadline"):
        rollout_state(stale)  # not knowing when it began, as kubectl does
