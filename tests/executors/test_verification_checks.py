"""Service verification specs and the checks they add: pod health through the official
Kubernetes client against the stand-in, registered commands as smoke tests, and the
`checks` list a service's target config may carry."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from devinfra.kube_standin import KubeStandinHandle
from devinfra.processes import free_port
from executors.base import CheckStatus, ConfigError, Connections
from executors.check_specs import check_name, checklist_key, validate_checks
from executors.checks import (
    VerificationDefaults,
    kubernetes_pods,
    registered_command,
    run_check,
)
from executors.kubernetes.backend import KubernetesDeploymentBackend


def _wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- the checks list -------------------------------------------------------------------------


def test_validate_checks_accepts_one_check_of_each_kind():
    checks = [
        {"kind": "http", "url": "http://127.0.0.1:1/healthz", "json_field": "version"},
        {"kind": "command", "command": "smoke", "arguments": {"flow": "checkout"}},
        {"kind": "kubernetes_pods", "namespace": "shop", "selector": "app=web"},
        {"kind": "prometheus", "query": "errors", "threshold": 0.05, "measures": "error_rate"},
    ]

    assert validate_checks(checks) == checks


def test_validate_checks_names_the_entry_and_field_that_is_wrong():
    with pytest.raises(ConfigError, match=r"checks/1/url: .*does not match"):
        validate_checks(
            [
                {"kind": "http", "url": "http://127.0.0.1/ok"},
                {"kind": "http", "url": "ftp://nope"},
            ]
        )


def test_validate_checks_refuses_an_unknown_kind():
    with pytest.raises(ConfigError, match="checks/0/kind: must be one of http, command"):
        validate_checks([{"kind": "ping", "host": "web"}])


def test_validate_checks_refuses_a_field_its_kind_does_not_know():
    with pytest.raises(ConfigError, match="checks/0: Additional properties"):
        validate_checks([{"kind": "prometheus", "query": "up", "threshold": 1, "url2": "x"}])


def test_validate_checks_refuses_two_checks_with_one_name():
    spec = {"kind": "kubernetes_pods", "namespace": "shop", "selector": "app=web"}

    with pytest.raises(ConfigError, match="checks/1/name: another check"):
        validate_checks([spec, dict(spec)])


def test_a_backend_config_may_carry_checks_which_the_backend_never_sees():
    config = {
        "namespace": "shop",
        "deployment": "web",
        "checks": [{"kind": "kubernetes_pods", "namespace": "shop", "selector": "app=web"}],
    }

    assert KubernetesDeploymentBackend.validate_config(config) == {
        "namespace": "shop",
        "deployment": "web",
    }


def test_a_backend_config_with_an_invalid_check_is_refused():
    config = {"namespace": "shop", "deployment": "web", "checks": [{"kind": "http"}]}

    with pytest.raises(ConfigError, match="checks/0: 'url' is a required property"):
        KubernetesDeploymentBackend.validate_config(config)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"kind": "http", "url": "http://x"}, "http_health"),
        ({"kind": "kubernetes_pods", "namespace": "a", "selector": "b"}, "pods_healthy"),
        ({"kind": "command", "command": "smoke"}, "smoke_command"),
        ({"kind": "prometheus", "query": "q", "threshold": 1, "measures": "latency"}, "latency"),
        ({"kind": "prometheus", "query": "q", "threshold": 1}, ""),
        ({"kind": "http", "url": "http://x", "ticks": "data_integrity"}, "data_integrity"),
        ({"kind": "http", "url": "http://x", "ticks": ""}, ""),
    ],
)
def test_each_check_ticks_the_checklist_item_its_kind_or_its_spec_names(spec, key):
    assert checklist_key(spec) == key


def test_a_check_without_a_name_is_named_after_what_it_looks_at():
    assert check_name({"kind": "prometheus", "query": "p99", "threshold": 0.5}) == "p99 below 0.5"
    assert check_name({"kind": "http", "url": "http://x/h", "name": "web health"}) == "web health"


# -- Kubernetes pods through the official client ---------------------------------------------


def test_pods_check_passes_when_every_pod_is_ready(kube_standin: KubeStandinHandle, kube):
    kube_standin.seed([{"namespace": "shop", "name": "web", "images": ["web:1"], "replicas": 3}])

    result = kubernetes_pods(kube, "shop", "app=web")

    assert result.status is CheckStatus.PASSED
    assert result.observed == "3/3 ready, most restarts 0"
    assert "3 of 3 pods Ready" in result.detail


def test_pods_check_fails_on_a_container_waiting_in_crash_loop_back_off(
    kube_standin: KubeStandinHandle, kube
):
    kube_standin.seed([{"namespace": "shop", "name": "web", "images": ["web:1"], "replicas": 2}])
    kube_standin.crash_loop_image("web:1")
    _wait_until(
        lambda: all(
            pod["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
            for pod in kube_standin.list("pods", "shop")
        )
    )

    result = kubernetes_pods(kube, "shop", "app=web", max_restarts=1000)

    assert result.status is CheckStatus.FAILED
    assert "crash-looping" in result.detail and "CrashLoopBackOff" in result.detail
    assert str(result.observed).startswith("0/2 ready")


def test_pods_check_fails_when_a_container_restarted_too_often(
    kube_standin: KubeStandinHandle, kube
):
    kube_standin.seed([{"namespace": "shop", "name": "web", "images": ["web:1"], "replicas": 1}])
    kube_standin.crash_loop_image("web:1")
    _wait_until(
        lambda: (
            kube_standin.list("pods", "shop")[0]["status"]["containerStatuses"][0]["restartCount"]
            > 3
        )
    )
    kube_standin.crash_loop_image("web:1", crashing=False)
    kube_standin.call(_mark_pods_running, kube_standin, "shop")

    result = kubernetes_pods(kube, "shop", "app=web", max_restarts=3)

    assert result.status is CheckStatus.FAILED
    assert "restarting" in result.detail
    assert result.threshold == "ready ≥ 100%, restarts ≤ 3"


def _mark_pods_running(kube_standin: KubeStandinHandle, namespace: str) -> None:
    """A crash-looped container that came back: running and ready, restarts kept."""
    for pod in kube_standin.standin.list_objects("pods", namespace):
        for status in pod["status"]["containerStatuses"]:
            status["state"] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
            status["ready"] = True
        for condition in pod["status"]["conditions"]:
            condition["status"] = "True"
        kube_standin.standin.put_object("pods", pod)


def test_pods_check_fails_when_too_few_pods_are_ready(kube_standin: KubeStandinHandle, kube):
    kube_standin.seed([{"namespace": "shop", "name": "web", "images": ["web:1"], "replicas": 2}])
    pods = kube_standin.list("pods", "shop")
    unready = pods[0]
    for condition in unready["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = "False"
    kube_standin.call(kube_standin.standin.put_object, "pods", unready)

    result = kubernetes_pods(kube, "shop", "app=web", min_ready_ratio=0.75, max_restarts=5)

    assert result.status is CheckStatus.FAILED
    assert "only 1 of 2 pods Ready (want 75%)" in result.detail


def test_pods_check_reads_only_the_pods_its_selector_picks(kube_standin: KubeStandinHandle, kube):
    kube_standin.seed(
        [
            {"namespace": "shop", "name": "web", "images": ["web:1"], "replicas": 2},
            {"namespace": "shop", "name": "api", "images": ["api:1"], "replicas": 1},
        ]
    )
    kube_standin.crash_loop_image("api:1")

    result = kubernetes_pods(kube, "shop", "app=web")

    assert result.status is CheckStatus.PASSED
    assert result.observed == "2/2 ready, most restarts 0"


def test_pods_check_is_inconclusive_when_no_pod_matches(kube_standin: KubeStandinHandle, kube):
    kube_standin.seed([{"namespace": "shop"}])

    result = kubernetes_pods(kube, "shop", "app=web")

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "no pods in shop match app=web" in result.detail


def test_pods_check_is_inconclusive_when_the_api_does_not_answer():
    nowhere = Connections(kube_host=f"http://127.0.0.1:{free_port()}")

    result = kubernetes_pods(nowhere, "shop", "app=web", timeout=1)

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "the Kubernetes API did not answer" in result.detail


# -- registered commands as smoke tests ------------------------------------------------------


def _registered(script: str, **extra) -> Connections:
    return Connections(
        registered_commands={
            "smoke": {
                "argv": [sys.executable, "-c", script, "{flow}"],
                "arguments": {
                    "type": "object",
                    "properties": {"flow": {"enum": ["checkout", "search"]}},
                    "required": ["flow"],
                },
                "timeout": 10,
                **extra,
            }
        }
    )


def test_a_registered_smoke_command_passes_on_exit_status_zero():
    connections = _registered("import sys; print('journey', sys.argv[1], 'ok')")

    result = registered_command(connections, "smoke", {"flow": "checkout"})

    assert result.status is CheckStatus.PASSED
    assert result.observed == "exit 0"


def test_a_registered_smoke_command_fails_with_its_exit_status_and_output():
    connections = _registered("import sys; print('card form broken'); sys.exit(2)")

    result = registered_command(connections, "smoke", {"flow": "checkout"})

    assert result.status is CheckStatus.FAILED
    assert "exited with status 2" in result.detail and "card form broken" in result.detail


def test_a_failing_smoke_command_masks_its_secrets_and_sees_none_of_ours(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://console:console-db-pass@db:5432/backout")
    script = (
        "import os, sys; print(os.environ['SMOKE_TOKEN'], os.environ.get('DATABASE_URL'),"
        " 'https://bot:hook-secret-42@hooks.example.com/x'); sys.exit(3)"
    )
    connections = _registered(script, env={"SMOKE_TOKEN": "smoke-token-123456"})

    result = registered_command(connections, "smoke", {"flow": "checkout"})

    assert result.status is CheckStatus.FAILED
    assert "smoke-token-123456" not in result.detail and "hook-secret-42" not in result.detail
    assert "**** None https://bot:****@hooks.example.com/x" in result.detail
    assert "console-db-pass" not in result.detail


def test_a_smoke_command_with_arguments_outside_its_schema_is_not_run():
    connections = _registered("raise SystemExit(0)")

    result = registered_command(connections, "smoke", {"flow": "rm -rf"})

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "arguments" in result.detail


def test_an_unregistered_smoke_command_is_inconclusive():
    result = registered_command(Connections(), "smoke", {})

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "no registered command is named 'smoke'" in result.detail


# -- run_check -------------------------------------------------------------------------------


def test_an_expected_version_placeholder_without_a_known_version_is_inconclusive():
    spec = {"kind": "http", "url": "http://127.0.0.1:1/", "json_field": "v", "expect": "{version}"}

    result = run_check(
        spec, version=None, connections=Connections(), defaults=VerificationDefaults()
    )

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "target version is unknown" in result.detail


def test_a_prometheus_check_with_no_server_configured_is_inconclusive():
    spec = {"kind": "prometheus", "query": "up", "threshold": 1}

    result = run_check(
        spec, version="v1", connections=Connections(), defaults=VerificationDefaults()
    )

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "PROMETHEUS_URL" in result.detail
