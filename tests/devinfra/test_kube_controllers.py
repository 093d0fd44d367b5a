"""The Kubernetes stand-in's Deployment and ReplicaSet controllers, through raw HTTP:
revisions, rollouts, pods, crash loops, scale and validation."""

from __future__ import annotations

from typing import Any

import requests

from devinfra.kube_objects import template_hash
from devinfra.kube_standin import KubeStandinHandle
from tests.devinfra.kube_requests import (
    DEPLOYMENTS,
    PODS,
    STRATEGIC,
    eventually,
    get,
    patch,
    revisions,
    rollout_complete,
    seed_web,
    set_image,
)


def test_a_new_deployment_gets_an_owned_replica_set_at_revision_one(kube_standin) -> None:
    seed_web(kube_standin, images=["web:1"])
    deployment = kube_standin.get("deployments", "shop", "web")

    (replica_set,) = kube_standin.list("replicasets", "shop")

    hash_label = replica_set["metadata"]["labels"]["pod-template-hash"]
    assert replica_set["metadata"]["name"] == f"web-{hash_label}"
    assert replica_set["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
    assert replica_set["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


def test_a_template_change_makes_a_replica_set_with_the_next_revision(kube_standin) -> None:
    seed_web(kube_standin, images=["web:1"])

    set_image(kube_standin, "web:2")

    assert sorted(revisions(kube_standin).values()) == ["1", "2"]
    deployment = kube_standin.get("deployments", "shop", "web")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


def test_returning_to_an_old_template_reuses_its_replica_set_at_a_new_revision(
    kube_standin,
) -> None:
    seed_web(kube_standin, images=["web:1", "web:2"])
    first = next(name for name, rev in revisions(kube_standin).items() if rev == "1")

    set_image(kube_standin, "web:1")

    assert revisions(kube_standin)[first] == "3"
    reused = kube_standin.get("replicasets", "shop", first)
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"


def test_template_hash_ignores_null_and_empty_values() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w"}]}}
    noisy = {
        "metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
        "spec": {"containers": [{"name": "w", "resources": {}, "env": []}]},
    }

    assert template_hash(template) == template_hash(noisy)


def test_status_catches_up_after_the_status_delay(kube_standin) -> None:
    seed_web(kube_standin)

    changed = set_image(kube_standin, "web:3")

    assert changed["status"]["observedGeneration"] < changed["metadata"]["generation"]
    eventually(lambda: rollout_complete(kube_standin), timeout=2)


def test_old_replica_sets_are_scaled_to_zero(kube_standin) -> None:
    seed_web(kube_standin)
    set_image(kube_standin, "web:3")

    eventually(lambda: rollout_complete(kube_standin))

    replicas = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
        for rs in kube_standin.list("replicasets", "shop")
    }
    assert replicas == {"web:1": 0, "web:2": 0, "web:3": 2}


def test_pods_run_with_the_template_labels_and_restart_counts(kube_standin) -> None:
    seed_web(kube_standin, replicas=3)

    pods = get(kube_standin, PODS, labelSelector="app=web")["items"]

    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        assert pod["status"]["containerStatuses"][0]["image"] == "web:2"


def crash_looping(standin: KubeStandinHandle) -> list[dict[str, Any]]:
    return [
        status
        for pod in standin.list("pods", "shop")
        for status in pod["status"]["containerStatuses"]
        if status["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
        and status["restartCount"] >= 2
    ]


def test_pods_of_a_crash_looping_image_restart_and_never_become_ready(kube_standin) -> None:
    seed_web(kube_standin)
    kube_standin.crash_loop_image("web:bad")

    set_image(kube_standin, "web:bad")

    eventually(lambda: len(crash_looping(kube_standin)) == 2)
    assert all(not status["ready"] for status in crash_looping(kube_standin))
    assert not rollout_complete(kube_standin)


def test_a_crash_loop_annotation_on_the_deployment_crashes_its_pods(kube_standin) -> None:
    seed_web(kube_standin, images=["web:1"], crash_loop=True)

    eventually(lambda: len(crash_looping(kube_standin)) == 2)


def test_the_scale_subresource_reads_and_sets_replicas(kube_standin) -> None:
    seed_web(kube_standin)

    scale = get(kube_standin, f"{DEPLOYMENTS}/web/scale")
    patch(kube_standin, f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": 4}})

    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 2)
    assert scale["status"]["selector"] == "app=web"
    eventually(lambda: len(kube_standin.list("pods", "shop")) == 4)


def test_the_restarted_at_annotation_creates_a_new_revision(kube_standin) -> None:
    seed_web(kube_standin)
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}
        }
    }

    patch(kube_standin, f"{DEPLOYMENTS}/web", body, STRATEGIC).raise_for_status()

    assert sorted(revisions(kube_standin).values()) == ["1", "2", "3"]


def test_a_deployment_whose_selector_misses_its_labels_is_invalid(kube_standin) -> None:
    kube_standin.seed([{"namespace": "shop"}])
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "y"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }

    response = requests.post(kube_standin.url + DEPLOYMENTS, json=manifest, timeout=5)

    assert response.status_code == 422
