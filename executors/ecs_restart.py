"""Restart an ECS service's tasks with a forced new deployment (UpdateService with
forceNewDeployment), so that they pick up a switched secret, and follow that deployment
until it is steady.

Target config: `cluster`, `service`. The service must use the ECS (rolling update)
deployment controller: CodeDeploy and external controllers deploy by other calls.

Once per step: the step is stamped when it is drafted (`restarted_at`, a UTC instant and a
random suffix, always set by the server: a value given is replaced). Before UpdateService
the service is tagged `backout:restart` = "<stamp> after <id of the PRIMARY deployment
then>". An apply that finds its own stamp there and a PRIMARY deployment other than the
recorded one has nothing left to do (the restart happened, even if its answer was lost);
with the recorded deployment still primary, the restart never reached ECS and is made. A
retried step therefore restarts once, and no clock is compared. Any deployment made since
the request counts: it restarted the tasks too.

Steady means the deployment that replaced the recorded one is the only deployment left,
its rolloutState is COMPLETED (when ECS reports one; FAILED fails the step at once), it runs
what it wants, and the service runs every desired task with none pending. That is what boto3's
`services_stable` waiter checks, plus the rollout state.

moto (5.2): a forced deployment keeps the deployment's dict and gives it a new id and
createdAt, and never updates its counts or rolloutState: a deployment created with the
service at desiredCount 0 reads COMPLETED with 0 of 0 tasks, one created with tasks to start
reads IN_PROGRESS for good. The demo and the tests create services at 0 and then set the
count (which moto reports running at once), so their restarts settle; a service created with
tasks pending is how the tests see a wait reach its deadline.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from executors.aws import aws_call, aws_client
from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.ecs_operations import describe_service, service_tags
from executors.options import OptionError, restart_stamp

RESTART_TAG = "backout:restart"
# The step parameter the server sets when a step is drafted (a value given is replaced), and
# its only accepted form: `restart_stamp()` and a random suffix.
RESTART_STAMP = "restarted_at"
STAMP_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ-[0-9a-f]{6}")


def _short(task_definition_arn: str) -> str:
    return task_definition_arn.rpartition("/")[2]


def _primary(service: Mapping[str, Any]) -> dict[str, Any] | None:
    for deployment in service.get("deployments") or []:
        if deployment.get("status") == "PRIMARY":
            return dict(deployment)
    return None


def steady(service: Mapping[str, Any], deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether `deployment` has settled (the only one left, rollout COMPLETED, its tasks
    and the service's all running), and a progress line saying where it is."""
    others = len(service.get("deployments") or []) - 1
    rollout = deployment.get("rolloutState")
    running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
    pending = service.get("pendingCount", 0)
    own = (deployment.get("runningCount", 0), deployment.get("desiredCount", 0))
    message = (
        f"deployment {deployment.get('id')}: {rollout or 'no rollout state'}, "
        f"{running}/{desired} running, {pending} pending"
        + (f", {others} older deployment(s) draining" if others else "")
    )
    done = (
        others == 0
        and rollout in (None, "COMPLETED")
        and own[0] == own[1]
        and running == desired
        and pending == 0
    )
    return done, message


class EcsRestartBackend(Backend):
    """An ECS service: a forced new deployment of what it runs, once per step."""

    kind = "ecs_restart"
    label = "AWS ECS service restart"
    config_schema = {
        "type": "object",
        "properties": {
            "cluster": {"type": "string", "minLength": 1, "maxLength": 255},
            "service": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        "required": ["cluster", "service"],
        "additionalProperties": False,
    }
    options = ()

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

    @property
    def _resource(self) -> str:
        return f"ecs/{self.config['cluster']}/{self.config['service']}"

    def _service(self) -> dict[str, Any]:
        service = describe_service(self.client, self.config["cluster"], self.config["service"])
        controller = (service.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS":
            raise ConfigError(
                f"{self._where} uses the {controller} deployment controller; a forced new "
                "deployment restarts only services with the ECS controller"
            )
        return service

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, stamped when drafted (a `restarted_at` given is replaced, so a
        stamp is never reused); with `live`, a service that does not
        exist (or cannot be restarted this way) is refused naming `service`."""
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name != RESTART_STAMP}
        cleaned = super().validate_params(params, live=live)
        cleaned[RESTART_STAMP] = f"{restart_stamp()}-{secrets.token_hex(3)}"
        if live:
            try:
                self._service()
            except ConfigError as error:
                raise OptionError("service", str(error)) from None
        return cleaned

    def live_version(self) -> str | None:
        """The task-definition ARN the service runs (a restart keeps it)."""
        return str(self._service()["taskDefinition"])

    def capture_backup(self) -> dict[str, Any]:
        """The task definition the service runs before a release."""
        return {"task_definition": self.live_version()}

    # -- the restart ---------------------------------------------------------------------------

    def _stamp(self, target: RollbackTarget) -> str:
        stamp = target.params.get(RESTART_STAMP)
        if not isinstance(stamp, str) or not STAMP_PATTERN.fullmatch(stamp):
            raise ConfigError(
                "a restart needs the restarted_at stamp set when it is drafted (draft it again)"
            )
        return stamp

    def _requested(self, service: Mapping[str, Any], stamp: str) -> str | None:
        """The deployment that was primary when this step asked for its restart, or None
        when it has not asked."""
        recorded = service_tags(service).get(RESTART_TAG, "")
        mine, _, before = recorded.partition(" after ")
        return before if mine == stamp else None

    def _restarted(self, service: Mapping[str, Any], stamp: str) -> dict[str, Any] | None:
        """The deployment that replaced the one primary at this step's request, if any."""
        before = self._requested(service, stamp)
        primary = _primary(service)
        if before is None or primary is None or primary.get("id") == before:
            return None
        return primary

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """A new deployment of the live task definition, unless this step made one."""
        service = self._service()
        stamp = self._stamp(target)
        live = str(service["taskDefinition"])
        done = self._restarted(service, stamp)
        primary = _primary(service) or {}
        changes: tuple[Change, ...] = ()
        if done is not None:
            summary = f"{self._where} was restarted for {stamp} (deployment {done.get('id')})"
        else:
            changes = (Change(self._resource, "deployment", primary.get("id"), "new"),)
            summary = f"restart {self._where}: a new deployment of {_short(live)}"
        if target.artifact and target.artifact not in (live, _short(live)):
            summary += (
                f"; {target.artifact} is not deployed: a restart keeps the running task "
                "definition (the ecs backend goes back to another)"
            )
        return RollbackPlan(self.kind, summary, live, live, changes)

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Record the request on the service, then force a new deployment; a no-op when
        this step's restart already happened."""
        service = self._service()
        stamp = self._stamp(target)
        done = self._restarted(service, stamp)
        if done is not None:
            detail = f"{self._where} was restarted for {stamp} (deployment {done.get('id')})"
            return ApplyResult(False, detail, {"deployment": done.get("id")})
        before = str((_primary(service) or {}).get("id") or "none")
        if self._requested(service, stamp) is None:
            aws_call(
                f"tag {self._where}",
                self.client.tag_resource,
                resourceArn=service["serviceArn"],
                tags=[{"key": RESTART_TAG, "value": f"{stamp} after {before}"}],
            )
        log(f"restarting {self._where}: a new deployment of {_short(service['taskDefinition'])}")
        answer = aws_call(
            f"restart {self._where}",
            self.client.update_service,
            cluster=self.config["cluster"],
            service=self.config["service"],
            forceNewDeployment=True,
        )
        new = (_primary(answer.get("service") or {}) or {}).get("id")
        facts = {"deployment": new, "replaced_deployment": before, "restarted_at": stamp}
        return ApplyResult(True, f"{self._where}: restarted (deployment {new})", facts)

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Follow the new deployment until it is steady; FAILED fails at once."""
        stamp = self._stamp(target)

        def settled() -> tuple[bool, str]:
            service = self._service()
            deployment = self._restarted(service, stamp)
            if deployment is None:
                raise BackendError(f"{self._where} shows no new deployment for {stamp}")
            if deployment.get("rolloutState") == "FAILED":
                reason = deployment.get("rolloutStateReason") or "no reason given"
                raise BackendError(f"{self._where}: deployment {deployment['id']} failed: {reason}")
            return steady(service, deployment)

        poll_until(
            settled, deadline=deadline, log=log, interval=self.poll_interval, what=self._where
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """A new deployment is primary, its rollout completed, every desired task runs."""
        service = self._service()
        deployment = self._restarted(service, self._stamp(target))
        running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
        counts = CheckResult(
            "running count",
            CheckStatus.PASSED if running == desired else CheckStatus.FAILED,
            f"{running} of {desired} desired tasks running",
            observed=running,
            threshold=desired,
        )
        if deployment is None:
            missing = "no deployment replaced the one primary when the restart was asked"
            return [CheckResult("new deployment", CheckStatus.FAILED, missing), counts]
        rollout = deployment.get("rolloutState")
        status = {
            "COMPLETED": CheckStatus.PASSED,
            None: CheckStatus.INCONCLUSIVE,
        }.get(rollout, CheckStatus.FAILED)
        return [
            CheckResult("new deployment", CheckStatus.PASSED, f"deployment {deployment['id']}"),
            CheckResult(
                "rollout completed",
                status,
                f"deployment {deployment['id']}: {rollout or 'ECS reports no rollout state'}",
                observed=rollout,
                threshold="COMPLETED",
            ),
            counts,
        ]
