"""The Kubernetes API stand-in, through raw HTTP, the Python client and kubectl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from devinfra.kube_patches import strategic_merge_patch
from devinfra.kube_selectors import labels_match, parse_label_selector
from devinfra.kube_standin import KubeStandinHandle
from devinfra.processes import free_port, wait_for_port
from tests.devinfra.kube_requests import (
    DEPLOYMENTS,
    MERGE,
    PODS,
    STRATEGIC,
    get,
    patch,
    seed_web,
)

# -- API semantics -------------------------------------------------------------------------


def test_lists_carry_kind_api_version_and_resource_version(kube_standin) -> None:
    seed_web(kube_standin)

    listing = get(kube_standin, DEPLOYMENTS)

    assert listing["kind"] == "DeploymentList"
    assert listing["apiVersion"] == "apps/v1"
    assert int(listing["metadata"]["resourceVersion"]) > 0


def test_created_objects_get_uid_resource_version_and_generation(kube_standin) -> None:
    kube_standin.seed([{"namespace": "shop"}])
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {},
    }

    created = requests.post(
        kube_standin.url + "/api/v1/namespaces/shop/configmaps", json=manifest, timeout=5
    )

    assert created.status_code == 201
    metadata = created.json()["metadata"]
    assert metadata["uid"] and metadata["resourceVersion"] and metadata["creationTimestamp"]


def test_generation_counts_spec_changes_only(kube_standin) -> None:
    seed_web(kube_standin)
    before = kube_standin.get("deployments", "shop", "web")["metadata"]["generation"]

    patch(kube_standin, f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"team": "a"}}})
    after_label = kube_standin.get("deployments", "shop", "web")["metadata"]["generation"]
    patch(kube_standin, f"{DEPLOYMENTS}/web", {"spec": {"replicas": 5}})
    after_spec = kube_standin.get("deployments", "shop", "web")["metadata"]["generation"]

    assert (after_label, after_spec) == (before, before + 1)


def test_an_update_that_changes_nothing_keeps_the_resource_version(kube_standin) -> None:
    seed_web(kube_standin)
    version = kube_standin.get("deployments", "shop", "web")["metadata"]["resourceVersion"]

    response = patch(kube_standin, f"{DEPLOYMENTS}/web", {"spec": {"replicas": 2}})

    assert response.json()["metadata"]["resourceVersion"] == version


def test_label_selector_filters_the_list(kube_standin) -> None:
    seed_web(kube_standin)
    kube_standin.seed([{"namespace": "shop", "name": "api", "images": ["api:1"]}])

    listing = get(kube_standin, PODS, labelSelector="app=api")

    assert {pod["metadata"]["labels"]["app"] for pod in listing["items"]} == {"api"}


def test_set_based_label_selectors_match_as_the_api_server_does() -> None:
    selector = parse_label_selector("tier in (web, api),!canary,env!=prod")

    assert labels_match(selector, {"tier": "web", "env": "dev"})
    assert not labels_match(selector, {"tier": "web", "canary": "yes"})
    assert not labels_match(selector, {"tier": "db"})


def test_field_selector_filters_by_name(kube_standin) -> None:
    seed_web(kube_standin)
    kube_standin.seed([{"namespace": "shop", "name": "api", "images": ["api:1"]}])

    listing = get(kube_standin, DEPLOYMENTS, fieldSelector="metadata.name=api")

    assert [d["metadata"]["name"] for d in listing["items"]] == ["api"]


def test_put_with_a_stale_resource_version_is_a_conflict(kube_standin) -> None:
    seed_web(kube_standin)
    stale = kube_standin.get("deployments", "shop", "web")
    patch(kube_standin, f"{DEPLOYMENTS}/web", {"spec": {"replicas": 4}})

    response = requests.put(f"{kube_standin.url}{DEPLOYMENTS}/web", json=stale, timeout=5)

    assert response.status_code == 409
    assert response.json()["reason"] == "Conflict"


def test_put_replaces_the_object(kube_standin) -> None:
    seed_web(kube_standin)
    current = kube_standin.get("deployments", "shop", "web")
    current["metadata"]["labels"] = {"app": "web", "replaced": "yes"}

    response = requests.put(f"{kube_standin.url}{DEPLOYMENTS}/web", json=current, timeout=5)

    assert response.status_code == 200
    assert response.json()["metadata"]["labels"] == {"app": "web", "replaced": "yes"}


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    spec = {"containers": [{"name": "web", "image": "a"}, {"name": "sidecar", "image": "s"}]}

    patched = strategic_merge_patch(spec, {"containers": [{"name": "web", "image": "b"}]})

    assert patched["containers"] == [
        {"name": "web", "image": "b"},
        {"name": "sidecar", "image": "s"},
    ]


def test_strategic_merge_patch_deletes_a_list_element_on_request() -> None:
    spec = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}

    patched = strategic_merge_patch(spec, {"env": [{"name": "A", "$patch": "delete"}]})

    assert patched["env"] == [{"name": "B", "value": "2"}]


def test_merge_patch_replaces_lists_whole(kube_standin) -> None:
    seed_web(kube_standin)
    body = {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}}

    response = patch(kube_standin, f"{DEPLOYMENTS}/web", body)

    containers = response.json()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["only"]


def test_a_missing_object_answers_a_not_found_status(kube_standin) -> None:
    response = requests.get(f"{kube_standin.url}{DEPLOYMENTS}/ghost", timeout=5)

    assert response.status_code == 404
    assert response.json()["kind"] == "Status"
    assert response.json()["message"] == 'deployments.apps "ghost" not found'


def test_dry_run_changes_nothing(kube_standin) -> None:
    seed_web(kube_standin)
    version = kube_standin.get("deployments", "shop", "web")["metadata"]["resourceVersion"]

    response = patch(kube_standin, f"{DEPLOYMENTS}/web?dryRun=All", {"spec": {"replicas": 9}})

    assert response.json()["spec"]["replicas"] == 9
    stored = kube_standin.get("deployments", "shop", "web")
    assert stored["metadata"]["resourceVersion"] == version
    assert stored["spec"]["replicas"] == 2


def test_deleting_a_deployment_deletes_its_replica_sets_and_pods(kube_standin) -> None:
    seed_web(kube_standin)

    requests.delete(f"{kube_standin.url}{DEPLOYMENTS}/web", timeout=5).raise_for_status()

    assert kube_standin.list("replicasets", "shop") == []
    assert kube_standin.list("pods", "shop") == []


def test_lists_hold_their_namespace_only_and_forget_deleted_objects(kube_standin) -> None:
    kube_standin.seed(
        [
            {"namespace": namespace, "name": name, "images": ["app:1"]}
            for namespace in ("shop", "blog")
            for name in ("web", "api")
        ]
    )

    requests.delete(f"{kube_standin.url}{DEPLOYMENTS}/api", timeout=5).raise_for_status()

    def names(namespace: str | None) -> list[tuple[str, str]]:
        return [
            (d["metadata"]["namespace"], d["metadata"]["name"])
            for d in kube_standin.list("deployments", namespace)
        ]

    assert names("shop") == [("shop", "web")]
    assert names("blog") == [("blog", "api"), ("blog", "web")]
    assert names(None) == [("blog", "api"), ("blog", "web"), ("shop", "web")]
    assert [rs["metadata"]["namespace"] for rs in kube_standin.list("replicasets", "shop")] == [
        "shop"
    ]


def test_apps_discovery_lists_deployments_and_their_scale_subresource(kube_standin) -> None:
    discovery = get(kube_standin, "/apis/apps/v1")

    entries = {entry["name"]: entry for entry in discovery["resources"]}
    assert entries["deployments"]["kind"] == "Deployment"
    assert entries["deployments"]["namespaced"] is True
    assert entries["deployments/scale"]["kind"] == "Scale"


def test_watch_ends_after_timeout_seconds(kube_standin) -> None:
    seed_web(kube_standin)
    started = time.monotonic()

    response = requests.get(
        kube_standin.url + DEPLOYMENTS,
        params={"watch": "true", "timeoutSeconds": "1"},
        timeout=10,
    )

    assert 0.9 < time.monotonic() - started < 5
    events = [json.loads(line) for line in response.text.splitlines() if line]
    assert [e["type"] for e in events] == ["ADDED"]


def test_watch_from_a_resource_version_replays_only_later_changes(kube_standin) -> None:
    seed_web(kube_standin)
    version = get(kube_standin, DEPLOYMENTS)["metadata"]["resourceVersion"]
    patch(kube_standin, f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"x": "y"}}})

    response = requests.get(
        kube_standin.url + DEPLOYMENTS,
        params={"watch": "true", "timeoutSeconds": "1", "resourceVersion": version},
        timeout=10,
    )

    events = [json.loads(line) for line in response.text.splitlines() if line]
    assert [e["type"] for e in events] == ["MODIFIED"]
    assert events[0]["object"]["metadata"]["labels"]["x"] == "y"


# -- ad-hoc reactions ----------------------------------------------------------------------


def test_reactions_added_while_serving_are_served_by_their_filters(kube_standin) -> None:
    kube_standin.call(lambda: kube_standin.standin["get /extra-a"] << {"reaction": "a"})
    first = requests.get(kube_standin.url + "/extra-a", timeout=5).json()
    kube_standin.call(lambda: kube_standin.standin["get /extra-b"] << {"reaction": "b"})

    second = requests.get(kube_standin.url + "/extra-b", timeout=5).json()
    again = requests.get(kube_standin.url + "/extra-a", timeout=5).json()
    resource = requests.get(kube_standin.url + DEPLOYMENTS, timeout=5)

    assert (first, second, again) == ({"reaction": "a"}, {"reaction": "b"}, {"reaction": "a"})
    assert resource.json()["kind"] == "DeploymentList"


# -- fault injection -----------------------------------------------------------------------


def test_a_fault_answers_the_next_requests_with_its_status(kube_standin) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(2, status=429)

    codes = [requests.get(kube_standin.url + DEPLOYMENTS, timeout=5).status_code for _ in "abc"]

    assert codes == [429, 429, 200]


def test_a_fault_can_be_limited_to_one_method(kube_standin) -> None:
    seed_web(kube_standin)
    kube_standin.fail_next(1, status=409, method="PATCH")

    read = requests.get(f"{kube_standin.url}{DEPLOYMENTS}/web", timeout=5)
    write = patch(kube_standin, f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"a": "b"}}})

    assert (read.status_code, write.status_code) == (200, 409)


def test_a_hang_holds_the_request_past_the_client_timeout(kube_standin) -> None:
    seed_web(kube_standin)
    kube_standin.hang_next(1, seconds=3)

    with pytest.raises(requests.Timeout):
        requests.get(kube_standin.url + DEPLOYMENTS, timeout=0.3)


# -- clients -------------------------------------------------------------------------------


def test_the_python_client_reads_through_a_written_kubeconfig(kube_standin, tmp_path) -> None:
    seed_web(kube_standin)
    configuration = kube_client.Configuration()
    kube_config.load_kube_config(
        config_file=str(kube_standin.write_kubeconfig(tmp_path / "config")),
        client_configuration=configuration,
    )
    apps = kube_client.AppsV1Api(kube_client.ApiClient(configuration))

    pod_spec = apps.read_namespaced_deployment("web", "shop").spec.template.spec

    assert pod_spec is not None and pod_spec.containers[0].image == "web:2"


def test_the_demo_seed_creates_settled_deployments_with_history(kube_standin) -> None:
    kube_standin.seed("demo")

    web = kube_standin.get("deployments", "storefront", "web")

    assert web["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert web["status"]["availableReplicas"] == web["spec"]["replicas"]


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@pytest.fixture
def kubectl(kube_standin: KubeStandinHandle, tmp_path: Path) -> Callable[..., str]:
    kubeconfig = kube_standin.write_kubeconfig(tmp_path / "kubeconfig", namespace="shop")

    def run(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@needs_kubectl
def test_kubectl_get_deploy_shows_the_ready_columns(kube_standin, kubectl) -> None:
    seed_web(kube_standin)

    output = kubectl("get", "deploy")

    assert output.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert output.split("\n")[1].split()[:2] == ["web", "2/2"]


@needs_kubectl
def test_kubectl_rollout_history_lists_every_revision(kube_standin, kubectl) -> None:
    seed_web(kube_standin, images=["web:1", "web:2", "web:3"])

    output = kubectl("rollout", "history", "deployment/web")

    assert [line.split()[0] for line in output.splitlines()[2:] if line.strip()] == ["1", "2", "3"]


@needs_kubectl
def test_kubectl_rollout_undo_then_status_completes(kube_standin, kubectl) -> None:
    seed_web(kube_standin, images=["web:1", "web:2", "web:3"])

    kubectl("rollout", "undo", "deployment/web", "--to-revision=1")
    status = kubectl("rollout", "status", "deployment/web", "--timeout=10s")

    assert 'deployment "web" successfully rolled out' in status
    image = kubectl(
        "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    )
    assert image == "web:1"


def test_the_command_line_serves_the_demo_seed(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devinfra.kube_standin",
            "--port",
            str(port),
            "--seed",
            "demo",
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_for_port(port, process=process)
        listing = requests.get(f"http://127.0.0.1:{port}/apis/apps/v1/deployments", timeout=5)
        assert len(listing.json()["items"]) == 4
        assert kubeconfig.exists()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_writes_are_recorded_by_field_manager(kube_standin) -> None:
    seed_web(kube_standin)
    image = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:3"}]}}}}
    path = f"{DEPLOYMENTS}/web"
    requests.patch(
        kube_standin.url + path,
        params={"fieldManager": "ci-deploy"},
        data=json.dumps(image),
        headers=STRATEGIC,
        timeout=5,
    ).raise_for_status()
    patch(
        kube_standin, path, {"spec": {"replicas": 3}}, {**MERGE, "User-Agent": "kubectl/v1.30"}
    ).raise_for_status()
    patch(kube_standin, path, {"spec": {"replicas": 3}}, {**MERGE, "User-Agent": "argocd/2"})

    entries = {
        entry["manager"]: entry for entry in get(kube_standin, path)["metadata"]["managedFields"]
    }
    assert set(entries) == {"ci-deploy", "kubectl"}  # argocd changed nothing: no entry
    ci = entries["ci-deploy"]
    assert ci["operation"] == "Update" and ci["fieldsType"] == "FieldsV1"
    assert "f:template" in ci["fieldsV1"]["f:spec"] and ci["time"].endswith("Z")
    assert entries["kubectl"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
