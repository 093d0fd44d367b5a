"""What every commander operation on a run starts with: the run's row locked, and its state
checked against those the operation allows."""

from __future__ import annotations

from collections.abc import Sequence

from incidents.errors import DomainError
from rollbacks.models import Run


def run_lock(run: Run) -> Run:
    """The run again, its row locked for the rest of the transaction (with its incident)."""
    return Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run.pk)


def run_require_state(run: Run, allowed: Sequence[str], doing: str) -> None:
    """Refuse `doing` (DomainError) unless the run is in one of the `allowed` states."""
    if run.state not in allowed:
        raise DomainError(f"Run #{run.pk} is {run.get_state_display().lower()}; cannot {doing}.")
