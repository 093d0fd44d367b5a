"""What an ECS step can do besides going back to a task definition: restart the tasks (a
new deployment of the same task definition, e.g. to pick up a switched secret) or set the
desired task count (to zero while a database is restored, then back to what it was).

- `operation`: "rollback" (the default: a task-definition revision), "restart" or "scale".
- `replicas`: for a scale, the desired task count, or "restore" for the count the last scale
  replaced. A scale records that count as the service tag `backout:desired-before-scale`
  before it changes anything; a restore scales back to it and removes the tag. The option
  is named as Kubernetes names it, so that one playbook step scales writers of either kind.
- `restarted_at`: stamped when the step is drafted. A restart calls UpdateService with
  forceNewDeployment and then tags the service `backout:restarted-at` with the stamp; an
  apply that finds the tag carrying its own stamp has nothing left to do, so a retried step
  restarts once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executors.aws import AwsError, aws_call
from executors.base import Change, ConfigError, RollbackTarget
from executors.options import RESTART_STAMP, Choice, Option, scale_option

DESIRED_BEFORE_SCALE_TAG = "backout:desired-before-scale"
RESTARTED_AT_TAG = "backout:restarted-at"
OPERATIONS = ("rollback", "restart", "scale")
OPERATION_LABELS = {
    "rollback": "Go back to a task definition",
    "restart": "Restart the tasks (force a new deployment)",
    "scale": "Set the desired task count",
}

OPERATION = Option(
    "operation",
    "Operation",
    type="choice",
    default="rollback",
    choices=tuple(Choice(name, OPERATION_LABELS[name]) for name in OPERATIONS),
)
TASK_DEFINITION = Option(
    "task_definition",
    "Task definition",
    type="choice",
    live=True,
    max_length=2048,
    when={"operation": ("rollback",)},
    help="An ACTIVE revision of the service's family; empty: the chosen release's, or "
    "the revision before the live one.",
)
REPLICAS = scale_option(
    "Desired tasks",
    maximum=5000,
    help='"restore" returns to the count an earlier scale replaced (e.g. after a database '
    "restore).",
)
ECS_OPTIONS = (OPERATION, TASK_DEFINITION, REPLICAS, RESTART_STAMP)


def describe_service(client: Any, cluster: str, name: str) -> dict[str, Any]:
    """The ECS service `cluster`/`name` with its tags (DescribeServices); ConfigError when
    the cluster or the service does not exist (an INACTIVE service counts as gone)."""
    where = f"ECS service {cluster}/{name}"
    try:
        response = aws_call(
            f"describe {where}",
            client.describe_services,
            cluster=cluster,
            services=[name],
            include=["TAGS"],
        )
    except AwsError as error:
        if error.code == "ClusterNotFoundException":
            raise ConfigError(f"ECS cluster {cluster!r} not found") from error
        raise
    services = [s for s in response.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise ConfigError(f"{where} not found")
    return dict(services[0])


def operation_of(target: RollbackTarget) -> str:
    operation = str(target.params.get("operation") or "rollback")
    if operation not in OPERATIONS:
        raise ConfigError(f"operation {operation!r}: choose one of {', '.join(OPERATIONS)}")
    return operation


def service_tags(service: Mapping[str, Any]) -> dict[str, str]:
    return {str(tag["key"]): str(tag["value"]) for tag in service.get("tags") or []}


@dataclass(frozen=True)
class Scale:
    """What a scale step does to a service: from and to, and the count to remember (None
    when it restores, and so forgets the remembered one)."""

    current: int
    wanted: int
    remember: int | None

    @property
    def changes(self) -> bool:
        return self.current != self.wanted


def decide_scale(service: Mapping[str, Any], target: RollbackTarget, where: str) -> Scale:
    current = int(service.get("desiredCount", 0))
    wanted_param = target.params.get("replicas")
    if wanted_param == "restore":
        recorded = service_tags(service).get(DESIRED_BEFORE_SCALE_TAG)
        if recorded is None:
            raise ConfigError(f"{where}: no desired count was recorded to restore")
        return Scale(current, int(recorded), None)
    if isinstance(wanted_param, int) and not isinstance(wanted_param, bool) and wanted_param >= 0:
        return Scale(current, wanted_param, current)
    raise ConfigError('scale needs params.replicas: a non-negative integer or "restore"')


def scale_change(resource: str, scale: Scale) -> tuple[Change, ...]:
    if not scale.changes:
        return ()
    return (Change(resource, "desiredCount", str(scale.current), str(scale.wanted)),)


def restart_stamp_of(target: RollbackTarget) -> str:
    stamp = target.params.get("restarted_at")
    if not isinstance(stamp, str) or not stamp:
        raise ConfigError("a restart needs params.restarted_at (stamped when it is drafted)")
    return stamp


def restart_done(service: Mapping[str, Any], stamp: str) -> bool:
    """Whether the service was restarted for this stamp already."""
    return service_tags(service).get(RESTARTED_AT_TAG) == stamp
