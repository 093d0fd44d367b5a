"""EcsServiceBackend against a moto server over HTTP."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.ecs import EcsServiceBackend
from executors.options import OptionError

CONFIG = {"cluster": "prod", "service": "web"}
PREVIOUS = RollbackTarget(previous=True)


def task_definition_arn(revision: int, family: str = "web") -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:{revision}"


@pytest.fixture
def ecs(aws: Connections):
    """A cluster with revisions web:1..3 registered and service "web" running web:3."""
    client = boto3.client("ecs", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_cluster(clusterName="prod")
    for image in ("web:v1", "web:v2", "web:v3"):
        client.register_task_definition(
            family="web", containerDefinitions=[{"name": "web", "image": image, "memory": 128}]
        )
    client.create_service(
        cluster="prod",
        serviceName="web",
        taskDefinition="web:3",
        desiredCount=2,
        launchType="EC2",
    )
    return client


@pytest.fixture
def backend(aws: Connections, ecs) -> EcsServiceBackend:
    return EcsServiceBackend(CONFIG, aws, poll_interval=0.05)


def service_task_definition(ecs) -> str:
    return ecs.describe_services(cluster="prod", services=["web"])["services"][0]["taskDefinition"]


def test_live_version_is_the_services_task_definition_arn(backend):
    assert backend.live_version() == task_definition_arn(3)


def test_plan_describes_the_step_back_without_changing_the_service(backend, ecs):
    plan = backend.plan(PREVIOUS)

    assert plan.current_version == task_definition_arn(3)
    assert plan.target_version == task_definition_arn(2)
    assert [(c.attribute, c.before, c.after) for c in plan.changes] == [
        ("taskDefinition", task_definition_arn(3), task_definition_arn(2))
    ]
    assert service_task_definition(ecs) == task_definition_arn(3)


def test_apply_moves_the_service_to_the_previous_revision(backend, ecs):
    result = backend.apply(PREVIOUS)

    assert result.changed
    assert result.facts["from_task_definition"] == task_definition_arn(3)
    assert service_task_definition(ecs) == task_definition_arn(2)


def test_applying_previous_twice_does_not_step_back_again(backend, ecs):
    backend.apply(PREVIOUS)

    second = backend.apply(PREVIOUS)

    assert not second.changed
    assert service_task_definition(ecs) == task_definition_arn(2)
    assert backend.plan(PREVIOUS).is_noop


def test_apply_to_a_chosen_revision_accepts_family_colon_revision(backend, ecs):
    result = backend.apply(RollbackTarget(artifact="web:1"))

    assert result.facts["to_task_definition"] == task_definition_arn(1)
    assert service_task_definition(ecs) == task_definition_arn(1)


def test_previous_skips_deregistered_revisions(backend, ecs):
    ecs.deregister_task_definition(taskDefinition="web:2")

    assert backend.plan(PREVIOUS).target_version == task_definition_arn(1)


def test_configured_desired_count_is_part_of_the_update(aws, ecs):
    backend = EcsServiceBackend({**CONFIG, "desired_count": 4}, aws)

    backend.apply(PREVIOUS)

    service = ecs.describe_services(cluster="prod", services=["web"])["services"][0]
    assert service["desiredCount"] == 4


def test_wait_returns_once_every_desired_task_runs_and_logs_progress(backend):
    backend.apply(PREVIOUS)
    lines: list[str] = []

    backend.wait(PREVIOUS, deadline=time.monotonic() + 5, log=lines.append)

    assert lines == ["service on web:2: 2/2 running, 0 pending"]


def test_wait_settles_when_returning_to_the_revision_the_service_was_created_with(backend):
    backend.apply(PREVIOUS)
    back = RollbackTarget(artifact=task_definition_arn(3))
    backend.apply(back)

    backend.wait(back, deadline=time.monotonic() + 5)


def test_wait_raises_deadline_exceeded_while_tasks_are_still_pending(backend):
    # moto leaves a freshly created service at 0 running / 2 pending.
    with pytest.raises(DeadlineExceeded, match="0/2 running"):
        backend.wait(RollbackTarget(artifact="web:3"), deadline=time.monotonic() + 0.2)


def test_wait_fails_at_once_when_the_service_does_not_run_the_target(backend):
    with pytest.raises(BackendError, match="runs web:3, not the target web:2") as raised:
        backend.wait(PREVIOUS, deadline=time.monotonic() + 5)

    assert not raised.value.retryable


def test_checks_pass_after_the_rollback(backend):
    backend.apply(PREVIOUS)

    results = {check.name: check.status for check in backend.checks(PREVIOUS)}

    assert results == {
        "task definition matches target": CheckStatus.PASSED,
        "deployments settled": CheckStatus.INCONCLUSIVE,  # moto keeps deployments[] stale
        "running count": CheckStatus.PASSED,
    }


def test_checks_fail_when_the_service_still_runs_the_bad_revision(backend):
    results = {check.name: check.status for check in backend.checks(PREVIOUS)}

    assert results["task definition matches target"] == CheckStatus.FAILED


@pytest.mark.parametrize(
    "config",
    [{"cluster": "prod"}, {**CONFIG, "desired_count": -1}, {**CONFIG, "namespace": "x"}],
)
def test_invalid_config_raises_config_error(aws, config):
    with pytest.raises(ConfigError):
        EcsServiceBackend(config, aws)


def test_unknown_task_definition_is_a_config_error_naming_it(backend):
    with pytest.raises(ConfigError, match="'web:9' not found"):
        backend.plan(RollbackTarget(artifact="web:9"))


def test_task_definition_of_another_family_is_refused(backend, ecs):
    ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "w", "image": "w", "memory": 128}]
    )

    with pytest.raises(ConfigError, match="family 'worker'"):
        backend.plan(RollbackTarget(artifact=task_definition_arn(1, family="worker")))


def test_target_without_artifact_or_previous_is_a_config_error(backend):
    with pytest.raises(ConfigError, match="needs target.artifact"):
        backend.plan(RollbackTarget(version="v1.0.0"))


def test_missing_service_is_a_config_error(aws, ecs):
    backend = EcsServiceBackend({"cluster": "prod", "service": "api"}, aws)

    with pytest.raises(ConfigError, match="not found"):
        backend.live_version()


def test_throttling_is_retryable(backend):
    with Stubber(backend.client) as stub:
        stub.add_client_error("describe_services", "ThrottlingException", http_status_code=400)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_access_denied_is_permanent(backend):
    with Stubber(backend.client) as stub:
        stub.add_client_error("describe_services", "AccessDeniedException", "not allowed", 400)

        with pytest.raises(BackendError, match="AccessDeniedException: not allowed") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable():
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        EcsServiceBackend(CONFIG, closed).live_version()

    assert raised.value.retryable


def test_the_options_offer_the_familys_revisions_newest_first_with_their_images(backend):
    choices = backend.live_options()["task_definition"].choices
    assert [choice.value for choice in choices] == [task_definition_arn(n) for n in (3, 2, 1)]
    assert choices[0].label == "web:3 (running)" and choices[0].current
    assert choices[1].detail.startswith("web:v2")


def test_a_chosen_task_definition_is_where_the_rollback_goes(backend, ecs):
    params = backend.validate_params({"task_definition": task_definition_arn(1)}, live=True)
    backend.apply(RollbackTarget(params=params))
    assert service_task_definition(ecs) == task_definition_arn(1)
    assert backend.capture_backup() == {"task_definition": task_definition_arn(1)}


def test_a_task_definition_of_another_family_is_refused_naming_the_option(backend, ecs):
    ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "w", "image": "worker:v1", "memory": 64}]
    )
    with pytest.raises(OptionError) as refused:
        backend.validate_params({"task_definition": task_definition_arn(1, "worker")}, live=True)
    assert refused.value.option == "task_definition"
