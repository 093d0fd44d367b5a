"""EcsRestartBackend against a moto server over HTTP."""

from __future__ import annotations

import re
import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.demo_secrets_ecs import seed_ecs_restart
from devinfra.processes import free_port
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.ecs_restart import RESTART_TAG, EcsRestartBackend
from executors.options import OptionError

CONFIG = {"cluster": "prod", "service": "worker"}


@pytest.fixture
def ecs(aws: Connections):
    """Cluster prod with service worker (2 tasks, settled as moto reports it) and service
    stuck (2 tasks pending for good)."""
    client = boto3.client("ecs", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_cluster(clusterName="prod")
    client.register_task_definition(
        family="worker", containerDefinitions=[{"name": "w", "image": "worker:v1", "memory": 64}]
    )
    client.create_service(
        cluster="prod", serviceName="worker", taskDefinition="worker:1", desiredCount=0
    )
    client.update_service(cluster="prod", service="worker", desiredCount=2)
    client.create_service(
        cluster="prod", serviceName="stuck", taskDefinition="worker:1", desiredCount=2
    )
    return client


def backend_for(aws: Connections, service: str = "worker") -> EcsRestartBackend:
    return EcsRestartBackend({"cluster": "prod", "service": service}, aws, poll_interval=0.05)


def drafted(backend: EcsRestartBackend) -> RollbackTarget:
    return RollbackTarget(params=backend.validate_params({}, live=True))


def deployment_id(ecs, service: str = "worker") -> str:
    described = ecs.describe_services(cluster="prod", services=[service])["services"][0]
    return described["deployments"][0]["id"]


def test_drafting_stamps_the_step_and_never_reuses_a_stamp_given(aws, ecs):
    backend = backend_for(aws)
    params = backend.validate_params({}, live=True)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ-[0-9a-f]{6}", params["restarted_at"])
    again = backend.validate_params(params)
    assert again["restarted_at"] != params["restarted_at"]


def test_a_second_step_given_an_earlier_steps_stamp_still_restarts(aws, ecs):
    backend = backend_for(aws)
    first = drafted(backend)
    assert backend.apply(first).changed

    second = RollbackTarget(params=backend.validate_params(dict(first.params), live=True))

    assert backend.apply(second).changed


def test_a_stamp_not_set_by_the_server_is_refused_at_run_time(aws, ecs):
    with pytest.raises(ConfigError, match="draft it again"):
        backend_for(aws).apply(RollbackTarget(params={"restarted_at": "incident-42"}))


def test_plan_names_a_new_deployment_and_changes_nothing(aws, ecs):
    before = deployment_id(ecs)
    plan = backend_for(aws).plan(drafted(backend_for(aws)))

    assert [(c.attribute, c.before, c.after) for c in plan.changes] == [
        ("deployment", before, "new")
    ]
    assert deployment_id(ecs) == before


def test_apply_forces_a_new_deployment_and_records_the_request(aws, ecs):
    backend = backend_for(aws)
    target = drafted(backend)
    before = deployment_id(ecs)

    result = backend.apply(target)

    assert result.changed
    assert result.facts["replaced_deployment"] == before
    assert result.facts["deployment"] == deployment_id(ecs) != before
    tags = ecs.list_tags_for_resource(
        resourceArn=ecs.describe_services(cluster="prod", services=["worker"])["services"][0][
            "serviceArn"
        ]
    )["tags"]
    assert {"key": RESTART_TAG, "value": f"{target.params['restarted_at']} after {before}"} in tags


def test_a_retried_step_does_not_restart_twice(aws, ecs):
    backend = backend_for(aws)
    target = drafted(backend)
    backend.apply(target)
    after_first = deployment_id(ecs)

    second = backend_for(aws).apply(target)

    assert not second.changed
    assert deployment_id(ecs) == after_first
    assert backend.plan(target).is_noop


def test_another_step_restarts_again(aws, ecs):
    backend = backend_for(aws)
    backend.apply(drafted(backend))
    first = deployment_id(ecs)

    assert backend.apply(drafted(backend)).changed
    assert deployment_id(ecs) != first


def test_a_request_recorded_but_not_made_is_made_on_retry(aws, ecs):
    backend = backend_for(aws)
    target = drafted(backend)
    service = ecs.describe_services(cluster="prod", services=["worker"])["services"][0]
    before = deployment_id(ecs)
    ecs.tag_resource(
        resourceArn=service["serviceArn"],
        tags=[{"key": RESTART_TAG, "value": f"{target.params['restarted_at']} after {before}"}],
    )

    assert backend.apply(target).changed
    assert deployment_id(ecs) != before


def test_wait_follows_the_new_deployment_until_steady(aws, ecs):
    backend = backend_for(aws)
    target = drafted(backend)
    backend.apply(target)
    lines: list[str] = []

    backend.wait(target, deadline=time.monotonic() + 5, log=lines.append)

    assert lines == [f"deployment {deployment_id(ecs)}: COMPLETED, 2/2 running, 0 pending"]


def test_wait_raises_deadline_exceeded_while_the_rollout_is_in_progress(aws, ecs):
    backend = backend_for(aws, "stuck")
    target = drafted(backend)
    backend.apply(target)

    with pytest.raises(DeadlineExceeded, match="IN_PROGRESS, 0/2 running, 2 pending"):
        backend.wait(target, deadline=time.monotonic() + 0.2)


def test_wait_fails_at_once_without_a_restart(aws, ecs):
    backend = backend_for(aws)
    with pytest.raises(BackendError, match="no new deployment") as raised:
        backend.wait(drafted(backend), deadline=time.monotonic() + 5)

    assert not raised.value.retryable


def test_checks_pass_after_the_restart(aws, ecs):
    backend = backend_for(aws)
    target = drafted(backend)
    backend.apply(target)

    results = {check.name: check.status for check in backend.checks(target)}

    assert results == {
        "new deployment": CheckStatus.PASSED,
        "rollout completed": CheckStatus.PASSED,
        "running count": CheckStatus.PASSED,
    }


def test_checks_fail_a_rollout_still_in_progress(aws, ecs):
    backend = backend_for(aws, "stuck")
    target = drafted(backend)
    backend.apply(target)

    results = {check.name: check.status for check in backend.checks(target)}

    assert results["rollout completed"] == CheckStatus.FAILED
    assert results["running count"] == CheckStatus.FAILED


def test_a_missing_service_is_refused_when_drafted_naming_it(aws, ecs):
    backend = EcsRestartBackend({"cluster": "prod", "service": "ワーカー-" + "w" * 240}, aws)

    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)

    assert refused.value.option == "service" and "not found" in refused.value.reason


def test_a_missing_cluster_is_refused_when_drafted(aws, ecs):
    with pytest.raises(OptionError, match="cluster 'nope' not found"):
        EcsRestartBackend({"cluster": "nope", "service": "w"}, aws).validate_params({}, live=True)


def test_a_stamp_with_control_characters_is_replaced(aws, ecs):
    params = backend_for(aws).validate_params({"restarted_at": "2026\x00"})

    assert "\x00" not in params["restarted_at"]


@pytest.mark.parametrize("config", [{"cluster": "prod"}, {**CONFIG, "desired_count": 1}])
def test_invalid_config_raises_config_error(aws, config):
    with pytest.raises(ConfigError):
        EcsRestartBackend(config, aws)


def test_throttling_is_retryable(aws, ecs):
    backend = backend_for(aws)
    with Stubber(backend.client) as stub:
        stub.add_client_error("describe_services", "ThrottlingException", http_status_code=400)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_bad_credentials_are_permanent_and_name_the_service(aws, ecs):
    backend = backend_for(aws)
    with Stubber(backend.client) as stub:
        stub.add_client_error(
            "describe_services", "UnrecognizedClientException", "The security token is invalid"
        )

        with pytest.raises(BackendError, match="ECS service prod/worker") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable():
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        EcsRestartBackend(CONFIG, closed).live_version()

    assert raised.value.retryable


def test_the_demo_service_restarts_and_settles(aws):
    demo = seed_ecs_restart(aws)
    backend = EcsRestartBackend(
        {k: v for k, v in demo.target_config.items() if k != "checks"}, aws, poll_interval=0.05
    )
    assert backend.live_version() == demo.live_version
    target = RollbackTarget(params=backend.validate_params({}, live=True))

    backend.apply(target)
    backend.wait(target, deadline=time.monotonic() + 5)


def test_a_release_target_is_not_deployed_and_the_plan_says_so(aws, ecs):
    backend = backend_for(aws)
    params = backend.validate_params({}, live=True)

    plan = backend.plan(RollbackTarget(version="v0.9", artifact="worker:0", params=params))

    assert "worker:0 is not deployed: a restart keeps the running task definition" in plan.summary
    assert plan.target_version == plan.current_version
