"""Judging a rollout from the Deployments (and pods) as read: whether it is complete, as
`kubectl rollout status` judges it, and the checks of a rollback's outcome."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from executors.base import BackendError, CheckResult, CheckStatus, RollbackTarget
from executors.kubernetes.templates import (
    ROLLBACK_TARGET_ANNOTATION,
    container_image,
    container_name,
    template_fingerprint,
)

# The API server's clock and ours may differ by this much.
CLOCK_SKEW = datetime.timedelta(seconds=2)


def rollout_since(target: RollbackTarget) -> datetime.datetime | None:
    """When the step's rollout began (the engine passes its apply instant), if known."""
    value = target.params.get("rollout_since")
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _stale(condition: Mapping[str, Any], since: datetime.datetime | None) -> bool:
    """Whether a condition was last set before the rollout that began at `since`."""
    stamp = condition.get("lastUpdateTime") or condition.get("lastTransitionTime")
    if since is None or not isinstance(stamp, str):
        return False
    try:
        updated = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    return updated < since - CLOCK_SKEW


def rollout_state(
    deployment: Mapping[str, Any], *, since: datetime.datetime | None = None
) -> tuple[bool, str]:
    """(complete, message) for a Deployment, judged as `kubectl rollout status` does.

    Raises a permanent BackendError when the rollout exceeded its progress deadline. With
    `since` (when this rollout began), a ProgressDeadlineExceeded condition last set before
    then belongs to an earlier rollout (one that crash-looped past its deadline): the
    controller keeps it until the new rollout makes progress, and it is not this one's.
    """
    name = deployment["metadata"]["name"]
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = deployment["metadata"].get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False, f"{name}: waiting for the spec update to be observed"
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
            and not _stale(condition, since)
        ):
            raise BackendError(f"{name}: rollout exceeded its progress deadline", retryable=False)
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return False, f"{name}: {updated} of {wanted} new replicas updated"
    if total > updated:
        return False, f"{name}: {total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{name}: {available} of {updated} updated replicas available"
    return True, f"{name}: rolled out ({available}/{wanted} available)"


def check_rollout(
    deployments: list[dict[str, Any]], *, since: datetime.datetime | None = None
) -> CheckResult:
    """Every Deployment's rollout is complete."""
    problems: list[str] = []
    notes: list[str] = []
    for deployment in deployments:
        try:
            done, message = rollout_state(deployment, since=since)
        except BackendError as error:
            done, message = False, str(error)
        (notes if done else problems).append(message)
    if problems:
        return CheckResult("rollout complete", CheckStatus.FAILED, "; ".join(problems))
    return CheckResult("rollout complete", CheckStatus.PASSED, "; ".join(notes))


def check_pods(
    pods_of: list[tuple[dict[str, Any], list[dict[str, Any]]]], *, max_restarts: int
) -> list[CheckResult]:
    """Each Deployment's current pods (`pods_of`: Deployment and pods pairs) all Running,
    as many as it wants, and no container crash-looping or restarted more than
    `max_restarts` times."""
    not_running, crash_loops, notes = [], [], []
    for deployment, pods in pods_of:
        name = deployment["metadata"]["name"]
        wanted = deployment["spec"].get("replicas", 1)
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if len(running) < wanted or len(running) < len(pods):
            phases = ", ".join(
                f"{p['metadata']['name']}={(p.get('status') or {}).get('phase', 'Unknown')}"
                for p in pods
            )
            not_running.append(
                f"{name}: {len(running)} of {wanted} pods Running ({phases or 'no pods'})"
            )
        else:
            notes.append(f"{name}: {len(running)}/{wanted} Running")
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                restarts = int(status.get("restartCount", 0))
                if waiting.get("reason") == "CrashLoopBackOff" or restarts > max_restarts:
                    crash_loops.append(
                        f"{pod['metadata']['name']}/{status.get('name')}: "
                        f"{waiting.get('reason') or 'restarting'}, {restarts} restarts"
                    )
    return [
        CheckResult(
            "pods running",
            CheckStatus.FAILED if not_running else CheckStatus.PASSED,
            "; ".join(not_running or notes),
        ),
        CheckResult(
            "no crash loops",
            CheckStatus.FAILED if crash_loops else CheckStatus.PASSED,
            "; ".join(crash_loops)
            if crash_loops
            else f"no container restarted more than {max_restarts} times",
        ),
    ]


def check_image(
    deployments: list[dict[str, Any]],
    *,
    operation: str,
    expected: str | None,
    container: str | None,
) -> CheckResult:
    """Every Deployment's `container` runs the `expected` image; without one, after an
    undo, the live template is the one the undo chose (else inconclusive)."""
    mismatches, notes = [], []
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        live = container_image(
            deployment["spec"]["template"], container_name(deployment, container)
        )
        if expected is not None:
            if live == expected:
                notes.append(f"{name}: {live}")
            else:
                mismatches.append(f"{name}: runs {live}, expected {expected}")
            continue
        if operation != "undo":
            return CheckResult(
                "image matches target", CheckStatus.INCONCLUSIVE, "no target image given"
            )
        # An undo without an image: the live template must be the one this undo chose.
        annotations = deployment["metadata"].get("annotations") or {}
        recorded = annotations.get(ROLLBACK_TARGET_ANNOTATION)
        if recorded == template_fingerprint(deployment["spec"]["template"]):
            notes.append(f"{name}: {live} (the rolled-back revision)")
        else:
            mismatches.append(f"{name}: runs {live}, not the revision the undo chose")
    if mismatches:
        return CheckResult("image matches target", CheckStatus.FAILED, "; ".join(mismatches))
    return CheckResult("image matches target", CheckStatus.PASSED, "; ".join(notes))
