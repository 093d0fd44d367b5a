"""KubernetesDeploymentBackend against the Kubernetes API stand-in, over HTTP."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client as kube_client

from devinfra.kube_standin import KubeStandinHandle
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.kubernetes.backend import KubernetesDeploymentBackend
from executors.registry import backend_class

WEB_IMAGES = [
    "registry.example.com/shop/web:v1.0.0",
    "registry.example.com/shop/web:v1.1.0",
    "registry.example.com/shop/web:v1.2.0",
]


def seed_web(standin: KubeStandinHandle, **extra: Any) -> None:
    standin.seed([{"namespace": "shop", "name": "web", "images": WEB_IMAGES, **extra}])


def backend(kube: Connections, **config: Any) -> KubernetesDeploymentBackend:
    return KubernetesDeploymentBackend(
        {"namespace": "shop", "deployment": "web", **config},
        kube,
        request_timeout=2.0,
        poll_interval=0.02,
    )


def web(standin: KubeStandinHandle) -> dict[str, Any]:
    deployment = standin.get("deployments", "shop", "web")
    assert deployment is not None
    return deployment


def image_of(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def revision_of(deployment: dict[str, Any]) -> str:
    return deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]


def test_backend_is_registered_as_kubernetes() -> None:
    assert backend_class("kubernetes") is KubernetesDeploymentBackend


def test_backends_on_one_cluster_share_a_client_and_other_clusters_get_their_own(
    kube: Connections,
) -> None:
    web, api = backend(kube), backend(kube, deployment="api")
    elsewhere = backend(replace(kube, kube_host="http://127.0.0.1:9"), deployment="web")

    assert web._client() is api._client()
    assert elsewhere._client() is not web._client()
    assert elsewhere._client().configuration.host == "http://127.0.0.1:9"


def test_config_must_name_a_deployment_or_the_whole_namespace(kube: Connections) -> None:
    with pytest.raises(ConfigError, match="either 'deployment'"):
        KubernetesDeploymentBackend({"namespace": "shop"}, kube)


def test_config_rejects_both_a_deployment_and_the_whole_namespace(kube: Connections) -> None:
    with pytest.raises(ConfigError):
        KubernetesDeploymentBackend(
            {"namespace": "shop", "deployment": "web", "all_in_namespace": True}, kube
        )


def test_live_version_is_the_container_image(kube_standin: KubeStandinHandle, kube) -> None:
    seed_web(kube_standin)

    assert backend(kube).live_version() == WEB_IMAGES[-1]


def test_live_version_of_a_namespace_lists_each_deployment(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.seed([{"namespace": "shop", "name": "api", "images": ["api:7"]}])

    version = KubernetesDeploymentBackend(
        {"namespace": "shop", "all_in_namespace": True}, kube
    ).live_version()

    assert version == f"api=api:7, web={WEB_IMAGES[-1]}"


def test_undo_rolls_back_to_the_previous_revision(kube_standin, kube) -> None:
    seed_web(kube_standin)

    result = backend(kube).apply(RollbackTarget(previous=True))

    assert result.changed
    assert image_of(web(kube_standin)) == WEB_IMAGES[1]
    assert revision_of(web(kube_standin)) == "4"
    assert result.facts["web"]["to_revision"] == 2


def test_undo_to_a_release_image_returns_to_that_revision(kube_standin, kube) -> None:
    seed_web(kube_standin)

    backend(kube).apply(RollbackTarget(version="v1.0.0", artifact=WEB_IMAGES[0]))

    assert image_of(web(kube_standin)) == WEB_IMAGES[0]
    replica_sets = kube_standin.list("replicasets", "shop")
    assert len(replica_sets) == 3  # the revision-1 ReplicaSet was reused, not duplicated


def test_undo_to_a_chosen_revision_number_returns_to_it(kube_standin, kube) -> None:
    seed_web(kube_standin)

    backend(kube).apply(RollbackTarget(params={"to_revision": 1}))

    assert image_of(web(kube_standin)) == WEB_IMAGES[0]


def test_undo_to_an_image_not_in_the_history_raises_config_error(kube_standin, kube) -> None:
    seed_web(kube_standin)

    with pytest.raises(ConfigError, match="no revision runs image 'web:nope'"):
        backend(kube).apply(RollbackTarget(artifact="web:nope"))


def test_undo_keeps_the_restored_template_free_of_the_hash_label(kube_standin, kube) -> None:
    seed_web(kube_standin)

    backend(kube).apply(RollbackTarget(previous=True))

    labels = web(kube_standin)["spec"]["template"]["metadata"]["labels"]
    assert "pod-template-hash" not in labels


def test_applying_the_same_undo_twice_changes_nothing_the_second_time(kube_standin, kube) -> None:
    seed_web(kube_standin)
    target = RollbackTarget(artifact=WEB_IMAGES[0])
    backend(kube).apply(target)
    version = web(kube_standin)["metadata"]["resourceVersion"]

    second = backend(kube).apply(target)

    assert not second.changed
    assert web(kube_standin)["metadata"]["resourceVersion"] == version


def test_applying_undo_to_previous_twice_does_not_flip_back(kube_standin, kube) -> None:
    seed_web(kube_standin)
    backend(kube).apply(RollbackTarget(previous=True))

    second = backend(kube).apply(RollbackTarget(previous=True))

    assert not second.changed
    assert image_of(web(kube_standin)) == WEB_IMAGES[1]


def test_namespace_wide_undo_rolls_back_every_deployment(kube_standin, kube) -> None:
    names = ["web", "api", "worker", "cron"]
    kube_standin.seed(
        [{"namespace": "shop", "name": n, "images": [f"{n}:1", f"{n}:2"]} for n in names]
    )
    everything = KubernetesDeploymentBackend({"namespace": "shop", "all_in_namespace": True}, kube)

    result = everything.apply(RollbackTarget(previous=True))

    assert result.changed
    assert sorted(result.facts) == sorted(names)
    for name in names:
        deployment = kube_standin.get("deployments", "shop", name)
        assert deployment is not None
        assert image_of(deployment) == f"{name}:1"


def test_namespace_wide_undo_respects_the_label_selector(kube_standin, kube) -> None:
    kube_standin.seed(
        [
            {"namespace": "shop", "name": "web", "images": ["web:1", "web:2"]},
            {
                "namespace": "shop",
                "name": "db-proxy",
                "images": ["proxy:1", "proxy:2"],
                "labels": {"app": "db-proxy", "tier": "data"},
            },
        ]
    )
    selected = KubernetesDeploymentBackend(
        {"namespace": "shop", "all_in_namespace": True, "label_selector": "tier!=data"}, kube
    )

    selected.apply(RollbackTarget(previous=True))

    assert image_of(web(kube_standin)) == "web:1"
    proxy = kube_standin.get("deployments", "shop", "db-proxy")
    assert proxy is not None and image_of(proxy) == "proxy:2"


def test_namespace_wide_undo_touches_nothing_when_one_target_is_invalid(kube_standin, kube) -> None:
    kube_standin.seed(
        [
            {"namespace": "shop", "name": "web", "images": ["web:1", "web:2"]},
            {"namespace": "shop", "name": "api", "images": ["api:1"]},
        ]
    )
    everything = KubernetesDeploymentBackend({"namespace": "shop", "all_in_namespace": True}, kube)

    with pytest.raises(BackendError, match="no previous revision"):
        everything.apply(RollbackTarget(previous=True))

    assert image_of(web(kube_standin)) == "web:2"


def test_plan_describes_the_change_without_making_it(kube_standin, kube) -> None:
    seed_web(kube_standin)
    version = web(kube_standin)["metadata"]["resourceVersion"]

    plan = backend(kube).plan(RollbackTarget(version="v1.1.0", artifact=WEB_IMAGES[1]))

    assert plan.current_version == WEB_IMAGES[-1]
    assert plan.target_version == "v1.1.0"
    image_change = plan.changes[0]
    assert (image_change.before, image_change.after) == (WEB_IMAGES[2], WEB_IMAGES[1])
    assert web(kube_standin)["metadata"]["resourceVersion"] == version


def test_plan_is_empty_when_already_at_the_target(kube_standin, kube) -> None:
    seed_web(kube_standin)

    plan = backend(kube).plan(RollbackTarget(artifact=WEB_IMAGES[-1]))

    assert plan.is_noop


def test_wait_returns_once_the_rollout_is_complete(kube_standin, kube) -> None:
    seed_web(kube_standin)
    web_backend = backend(kube)
    target = RollbackTarget(previous=True)
    web_backend.apply(target)
    lines: list[str] = []

    web_backend.wait(target, deadline=time.monotonic() + 5, log=lines.append)

    assert lines[-1].startswith("web: rolled out")
    assert len(lines) > 1  # progress was reported on the way


def test_wait_raises_deadline_exceeded_when_the_status_never_catches_up(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.set_status_delay(60)
    web_backend = backend(kube)
    target = RollbackTarget(previous=True)
    web_backend.apply(target)

    with pytest.raises(DeadlineExceeded, match="spec update to be observed"):
        web_backend.wait(target, deadline=time.monotonic() + 0.3)


def test_checks_pass_after_a_healthy_rollback(kube_standin, kube) -> None:
    seed_web(kube_standin)
    web_backend = backend(kube)
    target = RollbackTarget(artifact=WEB_IMAGES[0])
    web_backend.apply(target)
    web_backend.wait(target, deadline=time.monotonic() + 5)

    results = web_backend.checks(target)

    assert [r.name for r in results] == [
        "rollout complete",
        "pods running",
        "no crash loops",
        "image matches target",
    ]
    assert all(r.status is CheckStatus.PASSED for r in results), results


def _requested(standin: KubeStandinHandle) -> list[tuple[str, str]]:
    requests = standin.call(lambda: list(standin.standin._requests))
    return [(request.method, request.url.path) for request in requests]


def _rolled_back(
    standin: KubeStandinHandle, kube: Connections
) -> tuple[KubernetesDeploymentBackend, RollbackTarget, int]:
    """The web Deployment undone and settled: the backend, its target, and how many
    requests the stand-in had served by then."""
    seed_web(standin)
    web_backend = backend(kube)
    target = RollbackTarget(previous=True)
    web_backend.apply(target)
    web_backend.wait(target, deadline=time.monotonic() + 10)
    return web_backend, target, len(_requested(standin))


def test_checks_right_after_an_undo_read_only_the_pods_of_the_replica_set_it_chose(
    kube_standin, kube
) -> None:
    web_backend, target, before = _rolled_back(kube_standin, kube)

    results = web_backend.checks(target)
    live = web_backend.live_version()

    asked = _requested(kube_standin)[before:]
    assert all(result.status is CheckStatus.PASSED for result in results)
    assert live == WEB_IMAGES[-2]  # the revision before the seeded live one
    # The Deployment from the wait's last poll, its ReplicaSet from the undo's listing.
    assert asked == [("GET", "/api/v1/namespaces/shop/pods")]


def test_checks_list_the_replica_sets_again_when_the_known_one_has_too_few_pods(
    kube_standin, kube
) -> None:
    web_backend, target, _ = _rolled_back(kube_standin, kube)
    kube_standin.set_status_delay(60)  # the scale-up below stays at its first pods
    patch = {"spec": {"replicas": 3}}
    kube_client.AppsV1Api(web_backend._client()).patch_namespaced_deployment("web", "shop", patch)
    time.sleep(1.1)  # past the reuse of the wait's last poll: the checks read the new spec
    before = len(_requested(kube_standin))

    web_backend.checks(target)

    assert "/apis/apps/v1/namespaces/shop/replicasets" in [
        path for _, path in _requested(kube_standin)[before:]
    ]


def test_checks_list_the_replica_sets_when_the_deployment_runs_a_template_not_seen(
    kube_standin, kube
) -> None:
    web_backend, target, _ = _rolled_back(kube_standin, kube)
    kube_standin.set_status_delay(0.05)
    patch = {"spec": {"template": {"metadata": {"annotations": {"changed": "by hand"}}}}}
    kube_client.AppsV1Api(web_backend._client()).patch_namespaced_deployment("web", "shop", patch)
    time.sleep(1.1)
    before = len(_requested(kube_standin))

    results = web_backend.checks(target)

    asked = [path for _, path in _requested(kube_standin)[before:]]
    assert "/apis/apps/v1/namespaces/shop/replicasets" in asked
    assert next(r for r in results if r.name == "pods running").status is CheckStatus.PASSED


def test_checks_long_after_the_wait_read_the_deployment_again(kube_standin, kube) -> None:
    web_backend, target, _ = _rolled_back(kube_standin, kube)
    time.sleep(1.1)
    before = len(_requested(kube_standin))

    web_backend.checks(target)

    assert ("GET", "/apis/apps/v1/namespaces/shop/deployments/web") in _requested(kube_standin)[
        before:
    ]


def test_crash_looping_pods_fail_the_checks(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.crash_loop_image(WEB_IMAGES[0])
    web_backend = backend(kube)
    target = RollbackTarget(artifact=WEB_IMAGES[0])
    web_backend.apply(target)
    wait_for_crash_loop(kube_standin)

    results = {r.name: r for r in web_backend.checks(target)}

    assert results["no crash loops"].status is CheckStatus.FAILED
    assert "CrashLoopBackOff" in results["no crash loops"].detail
    assert results["rollout complete"].status is CheckStatus.FAILED
    assert results["image matches target"].status is CheckStatus.PASSED


def wait_for_crash_loop(standin: KubeStandinHandle, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in standin.list("pods", "shop"):
            for status in pod["status"].get("containerStatuses") or []:
                if status["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff":
                    return
        time.sleep(0.02)
    raise AssertionError("no pod entered CrashLoopBackOff")


def test_restart_creates_a_new_revision(kube_standin, kube) -> None:
    seed_web(kube_standin)

    result = backend(kube).apply(RollbackTarget(params={"operation": "restart"}))

    assert result.changed
    assert revision_of(web(kube_standin)) == "4"
    assert image_of(web(kube_standin)) == WEB_IMAGES[-1]


def test_restart_with_the_same_stamp_twice_restarts_once(kube_standin, kube) -> None:
    seed_web(kube_standin)
    target = RollbackTarget(params={"operation": "restart", "restarted_at": "incident-42"})
    backend(kube).apply(target)

    second = backend(kube).apply(target)

    assert not second.changed
    assert revision_of(web(kube_standin)) == "4"


def test_scale_to_zero_then_restore_the_previous_count(kube_standin, kube) -> None:
    seed_web(kube_standin, replicas=3)
    web_backend = backend(kube)
    to_zero = RollbackTarget(params={"operation": "scale", "replicas": 0})
    web_backend.apply(to_zero)
    web_backend.wait(to_zero, deadline=time.monotonic() + 5)
    assert kube_standin.list("pods", "shop") == []

    back = RollbackTarget(params={"operation": "scale", "replicas": "restore"})
    web_backend.apply(back)
    web_backend.wait(back, deadline=time.monotonic() + 5)

    assert web(kube_standin)["spec"]["replicas"] == 3
    assert len(kube_standin.list("pods", "shop")) == 3


def test_scale_rejects_a_negative_replica_count(kube_standin, kube) -> None:
    seed_web(kube_standin)

    with pytest.raises(ConfigError, match="non-negative"):
        backend(kube).apply(RollbackTarget(params={"operation": "scale", "replicas": -1}))


def saved_manifest(image: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def test_apply_manifest_restores_the_saved_deployment(kube_standin, kube) -> None:
    seed_web(kube_standin)
    target = RollbackTarget(
        params={"operation": "apply_manifest", "manifest": saved_manifest("web:saved", 4)}
    )

    result = backend(kube).apply(target)

    assert result.changed
    assert image_of(web(kube_standin)) == "web:saved"
    assert web(kube_standin)["spec"]["replicas"] == 4


def test_apply_manifest_twice_changes_nothing_the_second_time(kube_standin, kube) -> None:
    seed_web(kube_standin)
    target = RollbackTarget(
        params={"operation": "apply_manifest", "manifest": saved_manifest("web:saved")}
    )
    backend(kube).apply(target)

    assert not backend(kube).apply(target).changed


def test_apply_manifest_recreates_a_deleted_deployment(kube_standin, kube) -> None:
    kube_standin.seed([{"namespace": "shop"}])
    target = RollbackTarget(
        params={"operation": "apply_manifest", "manifest": saved_manifest("web:saved")}
    )

    backend(kube).apply(target)
    backend(kube).wait(target, deadline=time.monotonic() + 5)

    assert image_of(web(kube_standin)) == "web:saved"


def test_server_errors_are_retryable(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(1, status=500)

    with pytest.raises(BackendError) as raised:
        backend(kube).apply(RollbackTarget(previous=True))

    assert raised.value.retryable
    assert "HTTP 500" in str(raised.value)


def test_too_many_requests_is_retryable(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(1, status=429)

    with pytest.raises(BackendError) as raised:
        backend(kube).live_version()

    assert raised.value.retryable


def test_a_hanging_server_times_out_as_retryable(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.hang_next(1, seconds=5)
    impatient = KubernetesDeploymentBackend(
        {"namespace": "shop", "deployment": "web"}, kube, request_timeout=0.3
    )

    with pytest.raises(BackendError) as raised:
        impatient.live_version()

    assert raised.value.retryable


def test_forbidden_is_permanent(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(1, status=403)

    with pytest.raises(BackendError) as raised:
        backend(kube).live_version()

    assert not raised.value.retryable


def test_a_missing_deployment_is_a_permanent_error(kube_standin, kube) -> None:
    with pytest.raises(BackendError) as raised:
        backend(kube, deployment="ghost").live_version()

    assert not raised.value.retryable
    assert "not found" in str(raised.value)


def test_conflicts_are_retried_internally(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(2, status=409, method="PATCH")
    lines: list[str] = []

    result = backend(kube).apply(RollbackTarget(previous=True), log=lines.append)

    assert result.changed
    assert image_of(web(kube_standin)) == WEB_IMAGES[1]
    assert sum("re-reading" in line for line in lines) == 2


def test_conflicts_that_persist_become_retryable_errors(kube_standin, kube) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(10, status=409, method="PATCH")

    with pytest.raises(BackendError) as raised:
        backend(kube).apply(RollbackTarget(previous=True))

    assert raised.value.retryable
    assert "still conflicting" in str(raised.value)


def test_wait_rides_out_a_transient_server_error(kube_standin, kube) -> None:
    seed_web(kube_standin)
    web_backend = backend(kube)
    target = RollbackTarget(previous=True)
    web_backend.apply(target)
    kube_standin.fail_next(1, status=503)

    web_backend.wait(target, deadline=time.monotonic() + 5)


def test_connects_through_a_kubeconfig_file(kube_standin, tmp_path) -> None:
    seed_web(kube_standin)
    kubeconfig = kube_standin.write_kubeconfig(tmp_path / "kubeconfig")

    via_file = KubernetesDeploymentBackend(
        {"namespace": "shop", "deployment": "web"}, Connections(kubeconfig=str(kubeconfig))
    )

    assert via_file.live_version() == WEB_IMAGES[-1]
