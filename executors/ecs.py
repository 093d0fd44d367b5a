"""Roll back an AWS ECS service to an earlier task-definition revision through boto3.

The target is either the ACTIVE revision just before the live one in the same family
(`target.previous`) or a chosen task definition (the step's `task_definition` option, chosen
from the family's ACTIVE revisions, else `target.artifact`: an ARN or `family:revision`,
which must belong to the service's family). Apply tags the service with
the task definition it rolls back to (`backout:rolled-back-to`) and then calls UpdateService
with that task definition and an explicit desiredCount (the configured `desired_count`, else
the service's current one). The tag is what makes a repeated "previous" rollback a no-op
instead of a second step back.

How settling is judged: on AWS a service is stable when the deployment running the target
task definition is the only one left and running equals desired (what boto3's
`services_stable` waiter checks). moto's UpdateService (5.2) changes the service's
`taskDefinition` but leaves `deployments[]` as it was, still naming the old revision with its
old counts, and fills the service's `runningCount` only when a desiredCount is passed (hence
always passing one). So wait and checks use the service's own `taskDefinition` and its
running / pending / desired counts (on AWS, with one deployment left, they are that
deployment's), and require the other deployments to be gone whenever one names the target;
when none does (only on moto) the "deployments settled" check says inconclusive.

Errors: throttling, 5xx, timeouts and unreachable endpoints raise a retryable BackendError;
everything else is permanent. A missing cluster, service or task definition is a ConfigError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executors.aws import AwsError, aws_call, aws_client
from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LiveOption,
    LogLine,
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import Choice

ROLLED_BACK_TO_TAG = "backout:rolled-back-to"
# The task-definition revisions the plan builder describes (images, registration time).
DESCRIBED_REVISIONS = 15

ECS_OPTIONS = (
    Option(
        "task_definition",
        "Task definition",
        type="choice",
        live=True,
        max_length=2048,
        help="An ACTIVE revision of the service's family; empty: the chosen release's, or "
        "the revision before the live one.",
    ),
)

# -- the backend -----------------------------------------------------------------------


def _family_and_revision(task_definition_arn: str) -> tuple[str, int]:
    """`arn:...:task-definition/web:7` → ("web", 7)."""
    family, _, revision = task_definition_arn.rpartition("/")[2].rpartition(":")
    return family, int(revision)


def _short(task_definition_arn: str) -> str:
    family, revision = _family_and_revision(task_definition_arn)
    return f"{family}:{revision}"


class EcsServiceBackend(Backend):
    """An ECS service: update it to the previous or a chosen task-definition revision."""

    kind = "ecs"
    label = "AWS ECS service"
    config_schema = {
        "type": "object",
        "properties": {
            "cluster": {"type": "string", "minLength": 1},
            "service": {"type": "string", "minLength": 1},
            "desired_count": {"type": "integer", "minimum": 0},
        },
        "required": ["cluster", "service"],
        "additionalProperties": False,
    }

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 5.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The boto3 ECS client, built on first use."""
        if self._client is None:
            self._client = aws_client(self.connections, "ecs")
        return self._client

    @property
    def _where(self) -> str:
        return f"ECS service {self.config['cluster']}/{self.config['service']}"

    def _service(self) -> dict[str, Any]:
        try:
            response = aws_call(
                f"describe {self._where}",
                self.client.describe_services,
                cluster=self.config["cluster"],
                services=[self.config["service"]],
                include=["TAGS"],
            )
        except AwsError as error:
            if error.code == "ClusterNotFoundException":
                raise ConfigError(f"ECS cluster {self.config['cluster']!r} not found") from error
            raise
        services = [s for s in response.get("services", []) if s.get("status") != "INACTIVE"]
        if not services:
            raise ConfigError(f"{self._where} not found")
        return dict(services[0])

    # -- step options ------------------------------------------------------------------------

    options = ECS_OPTIONS

    def live_options(self) -> dict[str, LiveOption]:
        """The family's ACTIVE revisions, newest first, with their images; the live one
        marked."""
        service = self._service()
        current = str(service["taskDefinition"])
        family, _ = _family_and_revision(current)
        revisions = sorted(
            self._active_revisions(family),
            key=lambda arn: _family_and_revision(arn)[1],
            reverse=True,
        )
        choices = []
        for number, arn in enumerate(revisions):
            detail = ""
            if number < DESCRIBED_REVISIONS:
                described = aws_call(
                    f"describe task definition {_short(arn)}",
                    self.client.describe_task_definition,
                    taskDefinition=arn,
                )["taskDefinition"]
                images = ", ".join(
                    str(container.get("image"))
                    for container in described.get("containerDefinitions", [])
                )
                registered = described.get("registeredAt")
                when = registered.strftime("%Y-%m-%d %H:%M UTC") if registered else ""
                detail = " · ".join(part for part in (images, when) if part)
            running = arn == current
            choices.append(
                Choice(arn, _short(arn) + (" (running)" if running else ""), detail, running)
            )
        return {"task_definition": LiveOption(choices=tuple(choices))}

    def capture_backup(self) -> dict[str, Any]:
        """The task definition the service runs before a release."""
        return {"task_definition": str(self._service()["taskDefinition"])}

    def _target_task_definition(self, target: RollbackTarget, service: Mapping[str, Any]) -> str:
        """The full ARN of the task definition the rollback goes to: the step's chosen
        `task_definition`, else the target's artifact, else the revision before."""
        current = str(service["taskDefinition"])
        family, revision = _family_and_revision(current)
        chosen = target.params.get("task_definition")
        if chosen:
            target = RollbackTarget(
                version=target.version, artifact=str(chosen), params=target.params
            )
        if target.artifact:
            try:
                described = aws_call(
                    f"describe task definition {target.artifact}",
                    self.client.describe_task_definition,
                    taskDefinition=target.artifact,
                )["taskDefinition"]
            except AwsError as error:
                if error.code == "ClientException":
                    raise ConfigError(f"task definition {target.artifact!r} not found") from error
                raise
            if described["family"] != family:
                raise ConfigError(
                    f"task definition {target.artifact!r} is of family {described['family']!r}; "
                    f"{self._where} runs family {family!r}"
                )
            return str(described["taskDefinitionArn"])
        if not target.previous:
            raise ConfigError(
                "an ECS rollback needs target.artifact (a task-definition ARN or family:revision) "
                "or target.previous"
            )
        tags = {tag["key"]: tag["value"] for tag in service.get("tags") or []}
        if tags.get(ROLLED_BACK_TO_TAG) == current:
            return current  # this backend already made that step back
        earlier = [
            arn for arn in self._active_revisions(family) if _family_and_revision(arn)[1] < revision
        ]
        if not earlier:
            raise ConfigError(f"no ACTIVE revision of {family!r} before revision {revision}")
        return max(earlier, key=lambda arn: _family_and_revision(arn)[1])

    def _active_revisions(self, family: str) -> list[str]:
        def listing() -> list[str]:
            paginator = self.client.get_paginator("list_task_definitions")
            pages = paginator.paginate(familyPrefix=family, status="ACTIVE")
            return [arn for page in pages for arn in page.get("taskDefinitionArns", [])]

        # familyPrefix matches "web-worker" for "web": keep the exact family only.
        arns = aws_call(f"list task definitions of {family}", listing)
        return [arn for arn in arns if _family_and_revision(arn)[0] == family]

    def _desired_count(self, service: Mapping[str, Any]) -> int:
        return int(self.config.get("desired_count", service["desiredCount"]))

    def _changes(self, service: Mapping[str, Any], target_arn: str) -> tuple[Change, ...]:
        resource = f"ecs/{self.config['cluster']}/{self.config['service']}"
        changes = []
        if service["taskDefinition"] != target_arn:
            changes.append(
                Change(resource, "taskDefinition", service["taskDefinition"], target_arn)
            )
        desired = self._desired_count(service)
        if service["desiredCount"] != desired:
            changes.append(
                Change(resource, "desiredCount", str(service["desiredCount"]), str(desired))
            )
        return tuple(changes)

    def live_version(self) -> str | None:
        """The task-definition ARN the service runs."""
        return str(self._service()["taskDefinition"])

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which task definition and desired count UpdateService would set; no writes."""
        service = self._service()
        target_arn = self._target_task_definition(target, service)
        changes = self._changes(service, target_arn)
        if changes:
            summary = (
                f"update {self._where}: {_short(service['taskDefinition'])} → {_short(target_arn)}"
            )
        else:
            summary = f"{self._where} already runs {_short(target_arn)}"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=service["taskDefinition"],
            target_version=target_arn,
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Tag the service with the target, then UpdateService; a no-op when already there."""
        service = self._service()
        target_arn = self._target_task_definition(target, service)
        desired = self._desired_count(service)
        facts = {
            "from_task_definition": service["taskDefinition"],
            "to_task_definition": target_arn,
            "desired_count": desired,
        }
        if not self._changes(service, target_arn):
            return ApplyResult(False, f"{self._where} already runs {_short(target_arn)}", facts)
        # Tag first: if the update then fails, a retry resolves "previous" to the same revision.
        aws_call(
            f"tag {self._where}",
            self.client.tag_resource,
            resourceArn=service["serviceArn"],
            tags=[{"key": ROLLED_BACK_TO_TAG, "value": target_arn}],
        )
        log(f"updating {self._where} to {_short(target_arn)} with {desired} desired tasks")
        aws_call(
            f"update {self._where}",
            self.client.update_service,
            cluster=self.config["cluster"],
            service=self.config["service"],
            taskDefinition=target_arn,
            desiredCount=desired,
        )
        detail = f"{self._where}: {_short(service['taskDefinition'])} → {_short(target_arn)}"
        return ApplyResult(True, detail, facts)

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Poll the service until it runs the target with every desired task running."""

        def settled() -> tuple[bool, str]:
            service = self._service()
            target_arn = self._target_task_definition(target, service)
            if service["taskDefinition"] != target_arn:
                raise BackendError(
                    f"{self._where} runs {_short(service['taskDefinition'])}, not the target "
                    f"{_short(target_arn)}: the update did not happen or was replaced"
                )
            deployment = _deployment_of(service, target_arn)
            if deployment is not None and deployment.get("rolloutState") == "FAILED":
                reason = deployment.get("rolloutStateReason") or "no reason given"
                raise BackendError(f"{self._where}: deployment {deployment['id']} failed: {reason}")
            return _stable(service, target_arn)

        poll_until(
            settled, deadline=deadline, log=log, interval=self.poll_interval, what=self._where
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """Task definition matches the target, deployments settled, all tasks running."""
        service = self._service()
        target_arn = self._target_task_definition(target, service)
        live = service["taskDefinition"]
        results = [
            CheckResult(
                "task definition matches target",
                CheckStatus.PASSED if live == target_arn else CheckStatus.FAILED,
                f"service runs {_short(live)}; target {_short(target_arn)}",
            )
        ]
        deployment = _deployment_of(service, target_arn)
        if deployment is None:
            results.append(
                CheckResult(
                    "deployments settled",
                    CheckStatus.INCONCLUSIVE,
                    "no deployment names the target revision (moto does not update "
                    "deployments[]); judged by the service's counts instead",
                )
            )
        else:
            done, message = _stable(service, target_arn)
            status = CheckStatus.PASSED if done else CheckStatus.FAILED
            results.append(CheckResult("deployments settled", status, message))
        running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
        results.append(
            CheckResult(
                "running count",
                CheckStatus.PASSED if running == desired else CheckStatus.FAILED,
                f"{running} of {desired} desired tasks running",
            )
        )
        return results


def _deployment_of(service: Mapping[str, Any], target_arn: str) -> dict[str, Any] | None:
    for deployment in service.get("deployments") or []:
        if deployment.get("taskDefinition") == target_arn:
            return dict(deployment)
    return None


def _stable(service: Mapping[str, Any], target_arn: str) -> tuple[bool, str]:
    """Whether the service has settled on `target_arn`, and a progress line saying why.

    Counts are the service's: with a single deployment left they are that deployment's on
    AWS, and moto keeps only the service's counts current.
    """
    running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
    pending = service.get("pendingCount", 0)
    counts = f"{running}/{desired} running, {pending} pending"
    counted = running == desired and pending == 0
    deployment = _deployment_of(service, target_arn)
    if deployment is None:
        return counted, f"service on {_short(target_arn)}: {counts}"
    others = len(service.get("deployments") or []) - 1
    message = f"deployment {deployment['id']} on {_short(target_arn)}: {counts}, {others} others"
    return counted and others == 0, message
