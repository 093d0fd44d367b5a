"""What the engine's timeline entries say: who writes them, how they name a step, how
long something took, and the payload every run and step entry carries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from executors.base import CheckResult, CheckStatus
from rollbacks.models import Run, Step

ENGINE_ACTOR = "rollback engine"


def describe_step(step: Step) -> str:
    """How entries name a step: "step 2 (web)"."""
    return f"step {step.position} ({step.service.name})"


def run_payload(run: Run, **extra: Any) -> dict[str, Any]:
    """A run entry's payload: the run, its state, and `extra`."""
    return {"run": run.pk, "state": run.state, **extra}


def step_payload(step: Step, **extra: Any) -> dict[str, Any]:
    """A step entry's payload: where the step sits in its run, its state and attempt, and
    `extra`."""
    return {
        "run": step.run_id,
        "step": step.pk,
        "position": step.position,
        "group": step.group,
        "service": step.service.name,
        "state": step.state,
        "attempt": step.attempts,
        **extra,
    }


def format_duration(span: timedelta | None) -> str:
    """ "4.2 s", "3 min 05 s", or "?" when unknown."""
    if span is None:
        return "?"
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


def checks_summary(results: list[CheckResult]) -> str:
    """ "3 passed (rollout complete, …)" or the failures and inconclusive ones in full."""
    passed = [result.name for result in results if result.status == CheckStatus.PASSED]
    others = [result for result in results if result.status != CheckStatus.PASSED]
    parts = [f"{result.name} {result.status}: {result.detail}" for result in others]
    if passed:
        parts.append(f"{len(passed)} passed ({', '.join(passed)})")
    return "; ".join(parts)


def check_json(result: CheckResult) -> dict[str, str]:
    """A check result as step rows and entry payloads store it."""
    return {"name": result.name, "status": str(result.status), "detail": result.detail}
