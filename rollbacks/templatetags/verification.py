"""Template tags for the verification section of the room's rollback panel."""

from __future__ import annotations

from typing import Any

from django import template

from rollbacks.models import Run, RunWatch
from rollbacks.verification import RunVerification, attach_to_runs

register = template.Library()

# Outcomes drawn with the run and step state colours the stylesheet already has.
_OUTCOME_STYLE = {
    "passed": "state-succeeded",
    "failed": "state-failed",
    "inconclusive": "state-paused",
    "pending": "state-running",
    "running": "state-running",
    "watching": "state-running",
    "held": "state-succeeded",
    "regressed": "state-failed",
}


@register.simple_tag(takes_context=True)
def verification_of(context: template.Context, run: Run) -> RunVerification | None:
    """The run's latest verification round. The first call reads it for every run of the
    page (`runs` in the context) at once, so the panel's query count stays constant."""
    if not hasattr(run, "verification"):
        page_runs: list[Any] = list(context.get("runs") or [])
        pending = [r for r in page_runs if isinstance(r, Run) and not hasattr(r, "verification")]
        if all(r is not run for r in pending):
            pending.append(run)
        attach_to_runs(pending)
    return getattr(run, "verification", None)


@register.simple_tag(takes_context=True)
def watch_of(context: template.Context, run: Run) -> RunWatch | None:
    """The run's watch (rollbacks.watch), read for every run of the page at once."""
    if not hasattr(run, "watch_row"):
        page_runs: list[Any] = [r for r in (context.get("runs") or []) if isinstance(r, Run)]
        if all(r is not run for r in page_runs):
            page_runs.append(run)
        found = {w.run_id: w for w in RunWatch.objects.filter(run__in=page_runs)}
        for each in page_runs:
            each.watch_row = found.get(each.pk)  # type: ignore[attr-defined]
    return getattr(run, "watch_row", None)


@register.filter
def outcome_style(outcome: str) -> str:
    """The CSS class that colours an outcome badge."""
    return _OUTCOME_STYLE.get(outcome, "state-skipped")
