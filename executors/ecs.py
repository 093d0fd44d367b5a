"""Roll back an AWS ECS service to an earlier task-definition revision through boto3, or
restart its tasks, or set its desired count (executors.ecs_operations).

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
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.ecs_operations import (
    DESIRED_BEFORE_SCALE_TAG,
    ECS_OPTIONS,
    RESTARTED_AT_TAG,
    decide_scale,
    describe_service,
    operation_of,
    restart_done,
    restart_stamp_of,
    scale_change,
)
from executors.options import Choice, restart_stamp

ROLLED_BACK_TO_TAG = "backout:rolled-back-to"
# The task-definition revisions the plan builder describes (images, registration time).
DESCRIBED_REVISIONS = 15


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
        return describe_service(self.client, self.config["cluster"], self.config["service"])

    # -- step options ------------------------------------------------------------------------

    options = ECS_OPTIONS

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class; a restart is stamped when drafted, so a retry restarts once."""
        cleaned = super().validate_params(params, live=live)
        if cleaned.get("operation") == "restart" and not cleaned.get("restarted_at"):
            cleaned["restarted_at"] = restart_stamp()
        return cleaned

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
        resource = self._resource
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

    @property
    def _resource(self) -> str:
        return f"ecs/{self.config['cluster']}/{self.config['service']}"

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which task definition and desired count UpdateService would set (or the restart
        or the count a scale sets); no writes."""
        service = self._service()
        operation = operation_of(target)
        if operation != "rollback":
            return self._plan_operation(service, target, operation)
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

    def _plan_operation(
        self, service: Mapping[str, Any], target: RollbackTarget, operation: str
    ) -> RollbackPlan:
        live = str(service["taskDefinition"])
        changes: tuple[Change, ...]
        if operation == "restart":
            stamp = restart_stamp_of(target)
            done = restart_done(service, stamp)
            changes = () if done else (Change(self._resource, "deployment", None, "new"),)
            summary = (
                f"{self._where} was restarted for {stamp}"
                if done
                else f"restart {self._where}: a new deployment of {_short(live)}"
            )
        else:
            scale = decide_scale(service, target, self._where)
            changes = scale_change(self._resource, scale)
            summary = f"scale {self._where}: {scale.current} → {scale.wanted} desired tasks"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=live,
            target_version=live,
            changes=changes,
        )

    def _apply_operation(
        self, service: Mapping[str, Any], target: RollbackTarget, operation: str, log: LogLine
    ) -> ApplyResult:
        live = str(service["taskDefinition"])
        cluster, name = self.config["cluster"], self.config["service"]
        if operation == "restart":
            stamp = restart_stamp_of(target)
            if restart_done(service, stamp):
                return ApplyResult(False, f"{self._where} was restarted for {stamp}", {})
            log(f"restarting {self._where}: a new deployment of {_short(live)}")
            aws_call(
                f"restart {self._where}",
                self.client.update_service,
                cluster=cluster,
                service=name,
                forceNewDeployment=True,
                desiredCount=int(service["desiredCount"]),
            )
            self._tag(service, RESTARTED_AT_TAG, stamp)
            return ApplyResult(True, f"{self._where}: restarted", {"restarted_at": stamp})
        scale = decide_scale(service, target, self._where)
        facts = {"from_desired_count": scale.current, "to_desired_count": scale.wanted}
        if not scale.changes:
            return ApplyResult(False, f"{self._where} already wants {scale.wanted} tasks", facts)
        if scale.remember is not None:  # recorded first, so a restore always finds it
            self._tag(service, DESIRED_BEFORE_SCALE_TAG, str(scale.remember))
        log(f"{self._where}: {scale.current} → {scale.wanted} desired tasks")
        aws_call(
            f"scale {self._where}",
            self.client.update_service,
            cluster=cluster,
            service=name,
            desiredCount=scale.wanted,
        )
        if scale.remember is None:
            aws_call(
                f"untag {self._where}",
                self.client.untag_resource,
                resourceArn=service["serviceArn"],
                tagKeys=[DESIRED_BEFORE_SCALE_TAG],
            )
        detail = f"{self._where}: {scale.current} → {scale.wanted} desired tasks"
        return ApplyResult(True, detail, facts)

    def _tag(self, service: Mapping[str, Any], key: str, value: str) -> None:
        aws_call(
            f"tag {self._where}",
            self.client.tag_resource,
            resourceArn=service["serviceArn"],
            tags=[{"key": key, "value": value}],
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Tag the service with the target, then UpdateService; a no-op when already there."""
        service = self._service()
        operation = operation_of(target)
        if operation != "rollback":
            return self._apply_operation(service, target, operation, log)
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
            if operation_of(target) != "rollback":  # the task definition stays as it is
                return _stable(service, str(service["taskDefinition"]))
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
        """Task definition matches the target, deployments settled, all tasks running (and,
        after a scale to a number, the desired count is that number)."""
        service = self._service()
        if operation_of(target) != "rollback":
            return self._operation_checks(service, target)
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
        results.append(_running_count(service))
        return results

    def _operation_checks(
        self, service: Mapping[str, Any], target: RollbackTarget
    ) -> list[CheckResult]:
        results = []
        wanted = target.params.get("replicas")
        if operation_of(target) == "scale" and isinstance(wanted, int):
            desired = int(service.get("desiredCount", 0))
            results.append(
                CheckResult(
                    "desired count",
                    CheckStatus.PASSED if desired == wanted else CheckStatus.FAILED,
                    f"{desired} desired tasks; the step set {wanted}",
                )
            )
        results.append(_running_count(service))
        return results


def _running_count(service: Mapping[str, Any]) -> CheckResult:
    running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
    return CheckResult(
        "running count",
        CheckStatus.PASSED if running == desired else CheckStatus.FAILED,
        f"{running} of {desired} desired tasks running",
    )


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
