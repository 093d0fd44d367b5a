"""An ECS service scaled to zero and back, and restarted once per drafted stamp, against a
moto server over HTTP (the database recovery playbook does this to ECS writers)."""

from __future__ import annotations

import time

import boto3
import pytest

from executors.base import CheckStatus, ConfigError, Connections, RollbackTarget
from executors.ecs import EcsServiceBackend
from executors.ecs_operations import DESIRED_BEFORE_SCALE_TAG, RESTARTED_AT_TAG
from executors.options import OptionError


@pytest.fixture
def ecs(aws: Connections):
    """Service "orders" on cluster prod, 3 tasks of orders:1."""
    client = boto3.client("ecs", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_cluster(clusterName="prod")
    client.register_task_definition(
        family="orders", containerDefinitions=[{"name": "orders", "image": "o:1", "memory": 128}]
    )
    client.create_service(
        cluster="prod",
        serviceName="orders",
        taskDefinition="orders:1",
        desiredCount=3,
        launchType="EC2",
    )
    client.update_service(cluster="prod", service="orders", desiredCount=3)
    return client


@pytest.fixture
def backend(aws: Connections, ecs) -> EcsServiceBackend:
    return EcsServiceBackend({"cluster": "prod", "service": "orders"}, aws, poll_interval=0.05)


def described(ecs) -> dict:
    return ecs.describe_services(cluster="prod", services=["orders"], include=["TAGS"])["services"][
        0
    ]


def tags(ecs) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in described(ecs).get("tags") or []}


def step(backend: EcsServiceBackend, **options) -> RollbackTarget:
    return RollbackTarget(params=backend.validate_params(options))


def run(backend: EcsServiceBackend, target: RollbackTarget) -> bool:
    changed = backend.apply(target).changed
    backend.wait(target, deadline=time.monotonic() + 10)
    return changed


def test_scale_to_zero_then_restore_the_count_it_replaced(backend, ecs):
    to_zero = step(backend, operation="scale", replicas=0)
    plan = backend.plan(to_zero)
    assert [(c.attribute, c.before, c.after) for c in plan.changes] == [("desiredCount", "3", "0")]
    assert described(ecs)["desiredCount"] == 3  # planning wrote nothing

    assert run(backend, to_zero)
    assert described(ecs)["desiredCount"] == 0
    assert tags(ecs)[DESIRED_BEFORE_SCALE_TAG] == "3"
    assert not run(backend, to_zero)  # retried: nothing left to do, the count kept
    assert tags(ecs)[DESIRED_BEFORE_SCALE_TAG] == "3"
    assert {c.name: c.status for c in backend.checks(to_zero)} == {
        "desired count": CheckStatus.PASSED,
        "running count": CheckStatus.PASSED,
    }

    back = step(backend, operation="scale", replicas="restore")
    assert run(backend, back)
    service = described(ecs)
    assert service["desiredCount"] == service["runningCount"] == 3
    assert DESIRED_BEFORE_SCALE_TAG not in tags(ecs)
    assert service["taskDefinition"].endswith("orders:1")


def test_restore_without_a_recorded_count_is_refused(backend):
    with pytest.raises(ConfigError, match="no desired count was recorded to restore"):
        backend.plan(step(backend, operation="scale", replicas="restore"))


def test_a_restart_is_stamped_when_drafted_and_happens_once(backend, ecs):
    target = step(backend, operation="restart")
    stamp = target.params["restarted_at"]
    assert backend.plan(target).changes[0].attribute == "deployment"

    assert run(backend, target)
    assert tags(ecs)[RESTARTED_AT_TAG] == stamp
    assert not run(backend, target)  # a retry of the same step
    assert backend.plan(target).is_noop
    assert [c.status for c in backend.checks(target)] == [CheckStatus.PASSED]
    again = RollbackTarget(params={**target.params, "restarted_at": "2099-01-01T00:00:00Z"})
    assert run(backend, again)  # a new step restarts again


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"operation": "scale"}, "replicas"),
        ({"operation": "scale", "replicas": -1}, "replicas"),
        ({"operation": "scale", "replicas": "lots"}, "replicas"),
        ({"operation": "reboot"}, "operation"),
        ({"operation": "restart", "replicas": 2}, "replicas"),
    ],
)
def test_bad_options_are_refused_naming_the_option(backend, options, says):
    with pytest.raises(OptionError) as refused:
        backend.validate_params(options)
    assert refused.value.option == says
